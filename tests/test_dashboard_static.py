"""The gateway serves the dashboard's files (from the installed package) without shadowing the
API, and serves nothing else from disk. The page itself is tested in a browser in
test_dashboard_browser.py."""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.dashboard import STATIC_DIR
from services.ingest.service import SERVICE as INGEST
from services.query.service import SERVICE as QUERY

# Nothing listens here.
NOWHERE = "127.0.0.1:9"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = create_app({INGEST.full_name: NOWHERE, QUERY.full_name: NOWHERE}, timeout=1.0)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_page_and_its_files(client: TestClient) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = await page.text()
    assert '<script src="static/js/app.js" type="module">' in html

    expected_types = {
        "js/app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "favicon.svg": "image/svg+xml",
        "vendor/chart.umd.min.js": "text/javascript; charset=utf-8",
    }
    for name, content_type in expected_types.items():
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert response.headers["Content-Type"] == content_type
        assert await response.read() == (STATIC_DIR / name).read_bytes()


async def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    # Walks the imports from app.js, so a renamed file fails here rather than in a browser.
    pending = ["js/app.js"]
    served: set[str] = set()
    while pending:
        name = pending.pop()
        if name in served:
            continue
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        served.add(name)
        for line in (await response.text()).splitlines():
            if line.startswith("import ") and " from " in line:
                target = line.rsplit(" from ", 1)[1].strip(" \"';")
                pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    assert {
        "js/api.js",
        "js/charts.js",
        "js/dom.js",
        "js/format.js",
        "js/tabs/saas.js",
        "js/tabs/pipes.js",
    } <= served
    assert (STATIC_DIR / "vendor" / "chart.js.LICENSE.md").is_file()


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope.js",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fdashboard.py",
        "/static/js/../../dashboard.py",
    ],
)
async def test_nothing_outside_the_dashboard_is_served(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert b"import" not in await response.read()


async def test_the_api_is_not_shadowed(client: TestClient) -> None:
    # Transcoded and sent upstream (where nothing listens), not answered with a file.
    response = await client.get("/v0/pipes/test_summary.json")
    assert response.status == 503
    assert (await response.json())["code"] == 14
    missing = await client.get("/v0/nope")
    assert missing.status == 404
    assert (await missing.json())["code"] == 5


async def test_an_api_only_gateway_serves_no_page() -> None:
    app = create_app(
        {INGEST.full_name: NOWHERE, QUERY.full_name: NOWHERE}, timeout=1.0, dashboard=False
    )
    async with TestClient(TestServer(app)) as client:
        for path in ("/", "/static/js/app.js"):
            response = await client.get(path)
            assert response.status == 404
            assert (await response.json())["message"] == f"Could not resolve {path} to a method."
