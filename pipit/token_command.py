"""`pipit token create|list|revoke`: manage scoped tokens in the token file the services
read (they pick up changes within a second, without a restart). `pipit token jwt` signs a
JWT with the admin token, as an app's backend would (nothing is stored)."""

from __future__ import annotations

import argparse
import re
import sys
import time

from common import config, jwt_tokens
from common.tokens import ADMIN_TOKEN_FILE, TokenError, TokenFile, load_or_create_admin_token

_TTL = re.compile(r"([0-9]+)(s|m|min|h|d)")
_TTL_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def ttl_seconds(text: str) -> int:
    """`30s`, `10m`/`10min`, `1h`, `7d` (as `tb token create jwt --ttl`) in seconds."""
    found = _TTL.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"invalid --ttl {text!r}: use e.g. 30s, 10m, 1h or 7d")
    return int(found.group(1)) * _TTL_SECONDS[found.group(2)]


def fixed_param(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"invalid --fixed-param {text!r}: use name=value")
    return name, value


def add_token_command(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser("token", help="create, list or revoke scoped tokens")
    actions = sub.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--name", required=True, help="a label for the token")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="ADMIN, DATASOURCES:APPEND:<name>, DATASOURCES:READ:<name> or PIPES:READ:<name> "
        "(<name> may use *; repeatable)",
    )
    create.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="requests per minute for this token (0 = unlimited; default: the services' limit)",
    )
    jwt = actions.add_parser("jwt", help="sign a JWT for one pipe with the admin token")
    jwt.add_argument("--name", required=True, help="the JWT's name (its rate limit is per name)")
    jwt.add_argument("--pipe", required=True, action="append", help="a pipe it may read")
    jwt.add_argument(
        "--fixed-param",
        action="append",
        type=fixed_param,
        default=[],
        help="name=value the pipes run with whatever the caller sends (repeatable)",
    )
    jwt.add_argument("--ttl", type=ttl_seconds, default=3600, help="lifetime: 30s, 10m, 1h, 7d")
    jwt.add_argument("--rps", type=int, default=None, help="requests per second it may make")
    config.add_arguments(jwt, ["data_dir", "admin_token"])
    jwt.set_defaults(run=run_jwt)
    actions.add_parser("list", help="list tokens (names and scopes; tokens are not stored)")
    revoke = actions.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    for parser in (create, actions.choices["list"], revoke):
        config.add_arguments(parser, ["data_dir", "tokens_file"])
        parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args)
    tokens = TokenFile(settings.tokens_path)
    try:
        if args.action == "create":
            print(tokens.create(args.name, args.scope, args.rate_limit))
        elif args.action == "list":
            for entry in tokens.entries():
                limit = "default" if entry.rate_limit is None else f"{entry.rate_limit}/min"
                print(f"{entry.name}\t{' '.join(entry.scopes)}\t{limit}\t{entry.created_at}")
        else:
            tokens.revoke(args.name)
            print(f"revoked {args.name}")
    except TokenError as exc:
        print(f"pipit token: {exc}", file=sys.stderr)
        return 2
    return 0


def run_jwt(args: argparse.Namespace) -> int:
    settings = config.load(args)
    try:
        # The suite's own admin token (PIPIT_ADMIN_TOKEN, else the data directory's): a JWT
        # signed with another one would be refused.
        if not settings.admin_token and not (settings.data_dir / ADMIN_TOKEN_FILE).exists():
            raise TokenError(
                f"no admin token: set PIPIT_ADMIN_TOKEN, or run where `pipit up` keeps one "
                f"({settings.data_dir / ADMIN_TOKEN_FILE})"
            )
        admin, _ = load_or_create_admin_token(settings.admin_token, settings.data_dir)
        params = dict(args.fixed_param)
        token = jwt_tokens.mint(
            admin,
            name=args.name,
            expires_at=int(time.time()) + args.ttl,
            scopes=[
                {"type": jwt_tokens.PIPES_READ, "resource": pipe}
                | ({"fixed_params": params} if params else {})
                for pipe in args.pipe
            ],
            rps=args.rps,
        )
    except (TokenError, ValueError) as exc:
        print(f"pipit token jwt: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
