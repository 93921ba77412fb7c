"""CORS, as Envoy's CORS filter answers it, so browsers see the same thing from either.

Envoy echoes the request's Origin (never a literal `*`) when it is allowed, answers a preflight
(OPTIONS with Origin and Access-Control-Request-Method) itself with 200 and no body, and passes
requests from other origins on untouched. The headers allowed and exposed, the max-age and
`Vary: Origin` are gateway/edge.py's, which gateway/envoy/ renders into Envoy's CORS policy and
first Lua filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiohttp import web

from gateway.edge import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS, CORS_MAX_AGE_SECONDS, CORS_VARY


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
                "Access-Control-Allow-Headers": ", ".join(CORS_ALLOW_HEADERS),
                "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS),
                # Envoy's CORS filter sends it on preflights too.
                "Access-Control-Expose-Headers": ", ".join(CORS_EXPOSE_HEADERS),
                "Vary": CORS_VARY,
            },
        )

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Adds the headers an actual (non-preflight) cross-origin answer needs."""
        origin = request.headers.get("Origin")
        response.headers.add("Vary", CORS_VARY)
        if self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin or ""
            response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)
