"""`python -m gateway.envoy`: prints the bootstrap, for running Envoy yourself."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.edge import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BODY_BYTES
from gateway.envoy.bootstrap import render_bootstrap
from gateway.envoy.config import EnvoyConfig


def main(argv: list[str] | None = None) -> int:
    """Prints the Envoy bootstrap Pipit's gateway settings give, for running Envoy yourself."""
    parser = argparse.ArgumentParser(prog="python -m gateway.envoy", description=main.__doc__)
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="SERVICE=HOST:PORT",
        help="where a gRPC service is served, e.g. pipit.query.v1.QueryService=query:50052 "
        "(once per service with HTTP rules)",
    )
    parser.add_argument("--descriptor-set", required=True, help="path Envoy reads it from")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - Envoy's listener, in a pod
    parser.add_argument("--port", type=int, default=7181)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--import-max-body-bytes", type=int, default=0, help="0: --max-body-bytes")
    parser.add_argument("--allowed-origins", default="*", help="comma-separated, * = any")
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a connection gets to send a request head; idle connections close then",
    )
    parser.add_argument("--admin-port", type=int, default=None, help="default: no admin")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: HTTPS listener")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--upstream-ca", type=Path, help="PEM CA bundle: TLS to the services")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("TLS needs both --tls-cert and --tls-key")
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    bootstrap = render_bootstrap(
        EnvoyConfig(
            upstreams=upstreams,
            descriptor_set_path=Path(args.descriptor_set),
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            import_max_body_bytes=args.import_max_body_bytes,
            allowed_origins=[o.strip() for o in args.allowed_origins.split(",") if o.strip()],
            header_timeout=args.header_timeout,
            admin_port=args.admin_port,
            tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
            upstream_ca=args.upstream_ca,
        )
    )
    json.dump(bootstrap, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
