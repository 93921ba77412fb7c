"""CORS, as Envoy's CORS filter answers it, so browsers see the same thing from either.

Envoy echoes the request's Origin (never a literal `*`) when it is allowed, answers a preflight
(OPTIONS with Origin and Access-Control-Request-Method) itself with 200 and no body, and passes
requests from other origins on untouched. Browsers let a page read only the response headers
named in Access-Control-Expose-Headers (beyond a few simple ones), so that list holds every header
a client of Pipit relies on: the request id, the rate limit's figures and Retry-After. We also
send `Vary: Origin`, since the echoed value
depends on it and a shared cache must not serve one origin's answer to another (gateway/envoy/
has Envoy add it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiohttp import web

from common.telemetry import REQUEST_ID_HEADER

ALLOW_HEADERS = ("authorization", "content-type", "content-encoding", REQUEST_ID_HEADER)
# The services send the X-RateLimit-* figures on every rate-limited answer and Retry-After on a
# 429 (common/auth.py, services/ingest/service.py).
EXPOSE_HEADERS = (
    REQUEST_ID_HEADER,
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)
MAX_AGE_SECONDS = 86400


def allow_methods(methods: Iterable[str]) -> str:
    """The Access-Control-Allow-Methods value for routes with these HTTP methods."""
    return ", ".join(sorted(set(methods)) + ["OPTIONS"])


class CorsPolicy:
    def __init__(self, allowed_origins: Sequence[str], methods: Iterable[str]) -> None:
        self._any = "*" in allowed_origins
        self._origins = frozenset(o.strip() for o in allowed_origins if o.strip())
        self._methods = allow_methods(methods)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (self._any or origin in self._origins)

    def preflight(self, request: web.Request) -> web.Response | None:
        """The answer to a preflight from an allowed origin; None for any other request."""
        origin = request.headers.get("Origin")
        if (
            request.method != "OPTIONS"
            or not self.allows(origin)
            or not request.headers.get("Access-Control-Request-Method")
        ):
            return None
        return web.Response(
            status=200,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": self._methods,
                "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
                # Envoy's CORS filter sends it on preflights too.
                "Access-Control-Expose-Headers": ", ".join(EXPOSE_HEADERS),
                "Vary": "Origin",
            },
        )

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Adds the headers an actual (non-preflight) cross-origin answer needs."""
        origin = request.headers.get("Origin")
        response.headers.add("Vary", "Origin")
        if self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin or ""
            response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
