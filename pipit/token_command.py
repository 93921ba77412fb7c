"""`pipit token create|list|revoke`: manage scoped tokens in the token file the services
read (they pick up changes within a second, without a restart)."""

from __future__ import annotations

import argparse
import sys

from common import config
from common.tokens import TokenError, TokenFile


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
