"""The dashboard: a static page at `/` whose scripts call only the public HTTP API, the same
`/v0/pipes/<name>.json` and `/v0/events` a curl user calls. It lives in the package
(`gateway/static/`), so serving it needs no Node and no build step.

Only files present in `static/` when the app is created are served, looked up by exact name, so
no request path can reach outside the folder. The page's Content-Security-Policy allows scripts
from this origin only and API calls to any origin, since the page may be pointed at another
gateway with `?api=`.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from aiohttp import web

from gateway.errors import GatewayError

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src *; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page and its scripts change together: revalidate (cheap 304s) rather than mix versions.
    "Cache-Control": "no-cache",
}
# Set rather than guessed: a platform's MIME table may call .js text/plain, which nosniff and
# module scripts refuse.
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}


def _static_files(root: Path) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def _file(path: Path) -> web.FileResponse:
    headers = dict(_SECURITY_HEADERS)
    content_type = _CONTENT_TYPES.get(path.suffix)
    if content_type:
        headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


def add_dashboard(app: web.Application, static_dir: Path = STATIC_DIR) -> None:
    """Routes `GET /` (the page) and `GET /static/<file>` on `app`. Call it before any catch-all
    route is added: aiohttp matches routes in the order they were added."""
    files = _static_files(static_dir)
    if "index.html" not in files:
        raise FileNotFoundError(f"no index.html in {static_dir}")

    async def page(_request: web.Request) -> web.FileResponse:
        return _file(files["index.html"])

    async def asset(request: web.Request) -> web.FileResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise GatewayError(grpc.StatusCode.NOT_FOUND, "no such dashboard file")
        return _file(path)

    app.router.add_get("/", page)
    app.router.add_get(STATIC_PREFIX + "{name:.+}", asset)
