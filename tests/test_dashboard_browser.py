"""The dashboard in a real browser: Debian's chromium, driven by playwright, against a suite
seeded with known events through the Events API.

Every number the page shows is checked against the public API's answer to the same call,
formatted as the page formats it (en-US); every chart must hold the API's series and show its
colours on the canvas. Screenshots of each tab go to the test's output directory, and with
PIPIT_SCREENSHOTS=1 to docs/screenshots/ too, which the README shows (so a run refreshes the
committed pictures only when asked to).

Chromium comes from the system (`apt-get install chromium`, which `.ci/run` does), never from
`playwright install`. Without it these tests are skipped, unless PIPIT_REQUIRE_BROWSER is set
(CI sets it) so that a missing browser fails there instead of passing unnoticed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import unique_database
from harness import TOKEN, free_port, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.embedded import EmbeddedWarehouse
from gateway.app import create_app, serve_gateway
from gateway.dashboard import add_dashboard
from pipit.seed.generator import generate_all
from services.ingest.service import SERVICE as INGEST
from services.query.service import SERVICE as QUERY

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = Path(os.environ.get("PIPIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing_browser() -> str:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium, or set PIPIT_CHROMIUM)"
    return ""


if _missing_browser():
    if os.environ.get("PIPIT_REQUIRE_BROWSER"):
        pytest.fail(_missing_browser(), pytrace=False)
    pytest.skip(_missing_browser(), allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# The events `pipit seed --events 80000` sends (20,000 per datasource, June 2023, seed 42), so
# the screenshots show what a reader who runs that command sees.
EVENTS_PER_DATASOURCE = 20_000
DAYS = 30
# The page's "Updated …" clock in screenshots, so they do not change from run to run.
SCREENSHOT_TIME = datetime(2023, 7, 1, 9, 30, tzinfo=UTC)
README_URL = "http://localhost:7181"  # where `pipit up` serves the dashboard
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


@dataclass
class Gateway:
    """A suite's gateway (which serves the dashboard), called as curl calls it."""

    gateway_url: str
    http: aiohttp.ClientSession

    async def api(self, pipe: str, **params: Any) -> list[dict[str, Any]]:
        """The public API's answer, fetched the way curl would."""
        return (await self.answer(pipe, **params))["data"]

    async def answer(self, pipe: str, **params: Any) -> dict[str, Any]:
        """The whole answer: meta, data, rows, statistics."""
        async with self.http.get(
            f"{self.gateway_url}/v0/pipes/{pipe}.json", params={"token": TOKEN, **params}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def pipes(self, token: str = TOKEN) -> list[dict[str, Any]]:
        """GET /v0/pipes: the pipes `token` may read."""
        async with self.http.get(
            f"{self.gateway_url}/v0/pipes", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["pipes"]

    async def send(self, datasource: str, rows: list[dict[str, Any]]) -> None:
        async with self.http.post(
            f"{self.gateway_url}/v0/events",
            params={"name": datasource, "wait": "true"},
            data=b"\n".join(orjson.dumps(row) for row in rows),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["successful_rows"] == len(rows)


@dataclass
class Site(Gateway):
    """The seeded suite of the built-in tutorials, and two other origins serving the same
    page: one the gateway allows, one it does not."""

    allowed_url: str
    foreign_url: str
    ab_token: str  # a scoped token that may read the A/B tests' pipes only


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    port = free_port()
    runner = await serve_gateway(app, "127.0.0.1", port)
    return runner, f"http://127.0.0.1:{port}"


def _page_only() -> web.Application:
    """The dashboard's files and nothing else: a page hosted away from the gateway."""
    app = web.Application()
    add_dashboard(app)
    return app


@pytest.fixture(scope="module")
async def site(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("dashboard"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    tokens_file = tmp_path_factory.mktemp("dashboard-tokens") / "tokens.json"
    ab_token = TokenFile(tokens_file).create("ab-dashboard", ["PIPES:READ:test_*"])
    suite = await start_suite(warehouse, gateway=False, tokens_file=tokens_file)
    allowed_runner, allowed_url = await _serve(_page_only())
    foreign_runner, foreign_url = await _serve(_page_only())
    gateway = create_app(
        {
            INGEST.full_name: f"127.0.0.1:{suite.ingest.port}",
            QUERY.full_name: f"127.0.0.1:{suite.query.port}",
        },
        allowed_origins=(allowed_url,),
    )
    gateway_runner, gateway_url = await _serve(gateway)
    async with aiohttp.ClientSession() as http:
        site = Site(gateway_url, http, allowed_url, foreign_url, ab_token)
        for datasource, rows in generate_all(EVENTS_PER_DATASOURCE, days=DAYS).items():
            await site.send(datasource, list(rows))
        yield site
    for runner in (gateway_runner, allowed_runner, foreign_runner):
        await runner.cleanup()
    await suite.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@dataclass
class Opened:
    """A page in a fresh browser profile (empty local storage) and what its console said."""

    page: Page
    console_errors: list[str]
    page_errors: list[str]


@pytest.fixture
async def opened(browser: Browser) -> AsyncIterator[Opened]:
    context = await browser.new_context(
        viewport=DESKTOP, locale="en-US", timezone_id="UTC", device_scale_factor=1
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    result = Opened(page, [], [])
    page.on("console", lambda m: m.type == "error" and result.console_errors.append(m.text))
    page.on("pageerror", lambda error: result.page_errors.append(str(error)))
    yield result
    await context.close()
    assert result.page_errors == [], "the page threw"


# --- what the page shows, read back ------------------------------------------------------


async def sign_in(page: Page, url: str, token: str = TOKEN) -> None:
    await page.goto(url)
    await page.fill("#token", token)
    await settle(page, page.click("#token-form button[type=submit]"))


async def settle(page: Page, action: Any) -> str:
    """Runs `action` (an awaitable that starts a load) and waits for the load to finish; returns
    the page's state, `ready` or `error`. The page sets `loading` synchronously on every
    action, so a finished earlier load cannot be mistaken for this one."""
    await action
    handle = await page.wait_for_function(
        "() => ['ready', 'error'].find(state => state === document.body.dataset.state)"
    )
    return await handle.json_value()


async def open_tab(page: Page, name: str) -> None:
    assert await settle(page, page.click(f"#tab-{name}")) == "ready"


async def table(page: Page, selector: str) -> list[dict[str, str]]:
    """Each body row of a table as {column: text shown}, with the row's key under `_key`."""
    return await page.eval_on_selector(
        selector,
        """table => [...table.tBodies[0].rows].filter(r => !r.classList.contains('empty'))
            .map(r => Object.fromEntries([['_key', r.dataset.key ?? ''],
                ...[...r.cells].map(c => [c.dataset.col, c.textContent])]))""",
    )


async def kpis(page: Page, panel: str) -> dict[str, str]:
    return await page.eval_on_selector(
        f"#panel-{panel}",
        """panel => Object.fromEntries([...panel.querySelectorAll('[data-kpi]')]
            .map(k => [k.dataset.kpi, k.textContent]))""",
    )


# Counts, per dataset, the pixels in the dataset's colour inside the plot area (so neither the
# legend's swatches nor the axes count): proof the series was drawn, not only handed over.
_CHART_JS = """figure => {
    const canvas = figure.querySelector('canvas');
    const chart = Chart.getChart(canvas);
    if (!chart) return null;
    const area = chart.chartArea;
    const scale = canvas.width / chart.width;
    const [x, y] = [Math.floor(area.left * scale), Math.floor(area.top * scale)];
    const width = Math.ceil((area.right - area.left) * scale);
    const height = Math.ceil((area.bottom - area.top) * scale);
    const pixels = canvas.getContext('2d').getImageData(x, y, width, height).data;
    const rgb = hex => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
    return {
        labels: chart.data.labels,
        empty: figure.hasAttribute('data-empty'),
        datasets: chart.data.datasets.map(d => {
            const [r, g, b] = rgb(d.backgroundColor);
            let ink = 0;
            for (let i = 0; i < pixels.length; i += 4) {
                if (Math.abs(pixels[i] - r) < 12 && Math.abs(pixels[i + 1] - g) < 12 &&
                    Math.abs(pixels[i + 2] - b) < 12 && pixels[i + 3] > 200) ink++;
            }
            return {label: d.label, data: d.data, ink};
        }),
    };
}"""
MIN_INK = 20  # one point's dot; a line or a bar has far more


async def chart(page: Page, name: str) -> dict[str, Any]:
    drawn = await page.eval_on_selector(f'[data-chart="{name}"]', _CHART_JS)
    assert drawn is not None, f"chart {name} was never drawn"
    assert not drawn["empty"], f"chart {name} says it has no data"
    for dataset in drawn["datasets"]:
        assert dataset["ink"] > MIN_INK, f"{name}: {dataset['label']} is not on the canvas"
    return drawn


def series(drawn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A drawn chart as {dataset label: {axis label: value}} (gaps left out)."""
    return {
        d["label"]: {
            label: value
            for label, value in zip(drawn["labels"], d["data"], strict=True)
            if value is not None
        }
        for d in drawn["datasets"]
    }


async def screenshot(page: Page, output: Path, name: str, selector: str = "") -> None:
    """Saves a screenshot (of the full page, or of the element `selector` names) in the test's
    output directory, and in docs/screenshots/ when PIPIT_SCREENSHOTS=1 asks for new ones: a
    test run never rewrites the committed pictures by itself."""
    path = output / f"{name}.png"
    options: dict[str, Any] = {"path": path, "animations": "disabled", "caret": "hide"}
    if selector:
        await page.locator(selector).screenshot(**options)
    else:
        await page.screenshot(full_page=True, **options)
    if os.environ.get("PIPIT_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)


async def as_documented(page: Page, site: Gateway) -> str:
    """Makes the page look as the README describes it, so screenshots do not change from run to
    run: served from http://localhost:7181 (requests are passed to the test's gateway; nothing
    listening on 7181 is touched) with the "Updated" clock frozen. Returns the page's URL."""
    await page.clock.set_fixed_time(SCREENSHOT_TIME)

    async def to_gateway(route: Any) -> None:
        # Fetched here and handed back, so the browser still sees the localhost:7181 origin.
        url = site.gateway_url + route.request.url.removeprefix(README_URL)
        await route.fulfill(response=await route.fetch(url=url))

    await page.route(f"{README_URL}/**", to_gateway)
    return README_URL


# --- the page's formats, for en-US --------------------------------------------------------


def _half_up(value: float | Decimal, places: str) -> Decimal:
    # Intl.NumberFormat rounds the exact binary value half away from zero; so does this.
    return Decimal(value).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def count(value: int) -> str:
    return f"{value:,}"


def money(value: float) -> str:
    return f"{_half_up(value, '0.01'):,f}"


def rate(value: float) -> str:
    return f"{_half_up(Decimal(value) * 100, '0.01'):,f}%"


def lift(value: float) -> str:
    text = rate(abs(value))
    return text if text == "0.00%" else ("+" if value > 0 else "-") + text


def duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def short_rate(value: float) -> str:
    """A share as the retention heatmap shows it: one decimal at most (43.1%, 100%). Chromium
    rounds a double's shortest decimal form, not its exact binary value (0.2045 shows as
    20.5%), so this does."""
    text = f"{_half_up(Decimal(repr(value)) * 100, '0.1'):,f}"
    return text.removesuffix(".0") + "%"


def seconds(value: float) -> str:
    """A median time as the funnel shows it: rounded half up to whole seconds."""
    return duration(int(_half_up(value, "1")))


def period(value: str) -> str:
    return value[:10] if value.endswith(" 00:00:00") else value[:16]


def path_of(url: str) -> str:
    return url.removeprefix("https://example.com") or "/"


# The Pipes tab knows no pipe: it shows each answer by its `meta` types.
_NUMBER_TYPE = re.compile(r"^(U?Int\d*|Float(32|64)|Decimal)")


def number(value: int | float | str) -> str:
    """A number as the Pipes tab shows it: grouped, every digit kept, no trailing zeros."""
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{Decimal(value if isinstance(value, str) else repr(value)):,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def as_shown(meta: list[dict[str, str]], row: dict[str, Any]) -> dict[str, str]:
    """A row of an answer as the Pipes tab's table shows it."""
    shown = {"_key": ""}
    for column in meta:
        value = row[column["name"]]
        if value is None:
            shown[column["name"]] = "null"
        elif _NUMBER_TYPE.match(column["type"]):
            shown[column["name"]] = number(value)
        else:
            shown[column["name"]] = str(value)
    return shown


def statistics(answer: dict[str, Any]) -> str:
    """The line above an answer in the Pipes tab: rows, time taken, rows and bytes read."""
    stats = answer["statistics"]
    seconds = stats["elapsed"]
    took = (
        f"{_half_up(seconds * 1000, '0.1')} ms" if seconds < 1 else f"{_half_up(seconds, '0.01')} s"
    )
    size, unit = float(stats["bytes_read"]), 0
    while size >= 1000 and unit < 4:
        size, unit = size / 1000, unit + 1
    read = f"{int(size)} B" if unit == 0 else f"{_half_up(size, '0.1')} {'BKMGT'[unit]}B"
    rows = f"{answer['rows']:,} {'row' if answer['rows'] == 1 else 'rows'}"
    return f"{rows} in {took} · read {stats['rows_read']:,} rows, {read}"


async def shown_tabs(page: Page) -> list[str]:
    return await page.eval_on_selector_all(
        '[role="tab"]', "tabs => tabs.filter(t => !t.hidden).map(t => t.dataset.tab)"
    )


async def listed_pipes(page: Page) -> list[str]:
    return await page.eval_on_selector_all(
        "#pipes-list [data-pipe]", "buttons => buttons.map(b => b.dataset.pipe)"
    )


async def pick_pipe(page: Page, name: str) -> str:
    """Clicks a pipe in the list: one that needs no parameter runs at once (and the page's
    state says how that went), one that does waits for its form."""
    state = await settle(page, page.click(f'#pipes-list [data-pipe="{name}"]'))
    assert await page.text_content("#pipes-name") == name
    return state


async def run_pipe(page: Page) -> str:
    return await settle(page, page.click("#pipes-form button[type=submit]"))


async def shown_call(page: Page) -> tuple[str, dict[str, str]]:
    """The call the Pipes tab says it made: its path and parameters."""
    method, url = (await page.text_content("#pipes-call")).split(" ", 1)
    assert method == "GET"
    parsed = urlsplit(url)
    return parsed.path, dict(parse_qsl(parsed.query))


async def serves(gateway: Gateway, pipe: str, gone: str) -> None:
    """Waits until the gateway serves the deployed project (it follows a deploy within a
    second or so): `pipe` of the project answers, `gone` of the built-in one is not found."""
    deadline = time.monotonic() + 30
    expected = {pipe: 200, gone: 404}
    while True:
        statuses = {}
        for name in expected:
            url = f"{gateway.gateway_url}/v0/pipes/{name}.json"
            async with gateway.http.get(url, params={"token": TOKEN}) as response:
                statuses[name] = response.status
        if statuses == expected:
            return
        assert time.monotonic() < deadline, f"the gateway still answers {statuses}"
        await asyncio.sleep(0.1)


# --- the four tabs ----------------------------------------------------------------------


async def test_ab_tests_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))

    every_test = await site.api("test_summary")
    test_ids = sorted({row["test_id"] for row in every_test})
    options = await page.eval_on_selector_all("#ab-test option", "os => os.map(o => o.value)")
    assert options == test_ids

    test_id = "homepage_redesign"
    assert await settle(page, page.select_option("#ab-test", test_id)) == "ready"
    summary = await site.api("test_summary", test_id=test_id)
    assert len(summary) >= 2
    baseline = summary[0]["conversion_rate"]
    assert await table(page, "#ab-summary") == [
        {
            "_key": row["variant"],
            "variant": row["variant"],
            "users": count(row["users"]),
            "conversions": count(row["conversions"]),
            "conversion_rate": rate(row["conversion_rate"]),
            "lift": "–" if i == 0 else lift(row["conversion_rate"] / baseline - 1),
            "total_revenue": money(row["total_revenue"]),
            "revenue_per_user": money(row["revenue_per_user"]),
        }
        for i, row in enumerate(summary)
    ]

    for interval in ("week", "day"):  # ends on day, the view in the screenshot
        await settle(page, page.select_option("#ab-interval", interval))
        buckets = await site.api("test_timeseries", test_id=test_id, interval=interval)
        conversion = await chart(page, "ab-conversion")
        revenue = await chart(page, "ab-revenue")
        assert conversion["labels"] == sorted({period(row["period"]) for row in buckets})
        expected_rates: dict[str, dict[str, float]] = {}
        expected_revenue: dict[str, dict[str, float]] = {}
        for row in buckets:
            label = period(row["period"])
            expected_rates.setdefault(row["variant"], {})[label] = row["conversion_rate"]
            expected_revenue.setdefault(row["variant"], {})[label] = row["total_revenue"]
        assert series(conversion) == expected_rates
        # A bucket without events brought in no revenue: drawn as 0.
        drawn_revenue = series(revenue)
        for variant, by_period in expected_revenue.items():
            assert {k: v for k, v in drawn_revenue[variant].items() if k in by_period} == by_period
            assert all(v == 0 for k, v in drawn_revenue[variant].items() if k not in by_period)

    for segment in ("country", "device"):
        await settle(page, page.select_option("#ab-segment", segment))
        rows = await site.api("test_segments", test_id=test_id, segment=segment)
        drawn = await chart(page, "ab-segments")
        assert drawn["labels"] == sorted({row["segment"] for row in rows})
        expected: dict[str, dict[str, float]] = {}
        for row in rows:
            expected.setdefault(row["variant"], {})[row["segment"]] = row["conversion_rate"]
        assert series(drawn) == expected
        assert await page.text_content("#ab-segment-name") == segment

    assert opened.console_errors == []
    await screenshot(page, tmp_path, "ab-tests")


def p_value(value: float) -> str:
    return "< 0.0001" if value < 0.0001 else f"{_half_up(value, '0.0001')}"


def points(value: float) -> str:
    """A difference of rates in percentage points, up to two decimals, signed."""
    rounded = _half_up(Decimal(value) * 100, "0.01")
    if rounded == 0:
        return "0 pp"
    text = f"{abs(rounded):,f}".rstrip("0").rstrip(".")
    return ("+" if rounded > 0 else "-") + text + " pp"


def signed_money(value: float) -> str:
    text = money(abs(value))
    return text if text == "0.00" else ("+" if value > 0 else "-") + text


def results_table(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The Significance table as the page must show test_results' rows (README's words)."""
    shown = []
    for row in rows:
        control = row["variant"] == row["control"]
        if control:
            verdict = "Control"
        elif not row["significant"]:
            verdict = "Not significant yet"
        else:
            verdict = "Significant: better" if row["lift"] > 0 else "Significant: worse"
        absolute = f"{points(row['lift'])} ({points(row['lift_low'])} to "
        absolute += f"{points(row['lift_high'])})"
        revenue = f"{signed_money(row['revenue_lift'])} ({signed_money(row['revenue_lift_low'])}"
        revenue += f" to {signed_money(row['revenue_lift_high'])})"
        conversion = f"{rate(row['conversion_rate'])} ({rate(row['conversion_rate_low'])}"
        conversion += f" to {rate(row['conversion_rate_high'])})"
        shown.append(
            {
                "_key": row["variant"],
                "variant": row["variant"],
                "conversion_rate": conversion,
                "lift": "–" if control else absolute,
                "relative_lift": "–" if control else lift(row["relative_lift"]),
                "p_value": "–" if control else p_value(row["p_value"]),
                "chance_to_beat_control": "–" if control else rate(row["chance_to_beat_control"]),
                "revenue_lift": money(row["revenue_per_user"]) if control else revenue,
                "verdict": verdict,
            }
        )
    return shown


async def test_ab_significance(site: Site, opened: Opened, tmp_path: Path) -> None:
    """test_results on the A/B tab: each variant's significance and intervals, "not
    significant yet" until the data says more, the lift chart with interval bars, the
    sequential switch and the sample-ratio warning."""
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    test_id = "homepage_redesign"
    assert await settle(page, page.select_option("#ab-test", test_id)) == "ready"
    for sequential in ("false", "true", "false"):
        if sequential == "true":
            assert await settle(page, page.check("#ab-sequential")) == "ready"
        elif await page.is_checked("#ab-sequential"):
            assert await settle(page, page.uncheck("#ab-sequential")) == "ready"
        rows = await site.api("test_results", test_id=test_id, sequential=sequential)
        assert await table(page, "#ab-results") == results_table(rows)
        assert await page.text_content("#ab-control") == rows[0]["control"]
        assert await page.is_hidden("#ab-srm")
        drawn = await chart(page, "ab-lift")
        variants = [row for row in rows if row["variant"] != row["control"]]
        assert drawn["labels"] == [row["variant"] for row in variants]
        interval, estimate = drawn["datasets"]
        assert interval["data"] == [[row["lift_low"], row["lift_high"]] for row in variants]
        assert estimate["data"] == [row["lift"] for row in variants]
    # The sequential interval is the wider: peeking has a price.
    fixed = await site.api("test_results", test_id=test_id)
    always = await site.api("test_results", test_id=test_id, sequential="true")

    def width(row: dict[str, Any]) -> float:
        return row["lift_high"] - row["lift_low"]

    assert width(always[1]) > width(fixed[1])
    assert opened.console_errors == []
    await screenshot(page, tmp_path, "ab-significance", "#ab-significance")

    # A broken split: 300 users on A for 150 on B of a test meant 50/50.
    events = [
        {
            "timestamp": "2023-06-20 12:00:00",
            "user_id": f"srm_user_{variant}_{i}",
            "test_id": "zz_broken_split",
            "variant": variant,
            "event_type": "page_view",
            "conversion": int(i % 7 == 0),
            "revenue": 10.0 if i % 7 == 0 else 0.0,
            "session_id": f"srm_session_{variant}_{i}",
            "device": "desktop",
            "country": "US",
        }
        for variant, users in (("A", 300), ("B", 150))
        for i in range(users)
    ]
    await site.send("ab_test_events", events)
    assert await settle(page, page.click("#refresh")) == "ready"
    assert await settle(page, page.select_option("#ab-test", "zz_broken_split")) == "ready"
    rows = await site.api("test_results", test_id="zz_broken_split")
    assert rows[0]["srm"]
    warning = await page.text_content("#ab-srm")
    assert await page.is_visible("#ab-srm")
    assert "Sample ratio mismatch" in warning and p_value(rows[0]["srm_p_value"]) in warning
    shown = await table(page, "#ab-results")
    assert shown == results_table(rows)
    # Both convert one user in seven: nothing to tell them apart.
    assert shown[1]["verdict"] == "Not significant yet"
    assert opened.console_errors == []


async def test_user_behaviour_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    await open_tab(page, "behaviour")

    days = await site.api("user_activity_metrics")
    page_views = sum(day["page_views"] for day in days)
    clicks = sum(day["clicks"] for day in days)
    assert await kpis(page, "behaviour") == {
        "total_events": count(sum(day["total_events"] for day in days)),
        "page_views": count(page_views),
        "clicks": count(clicks),
        "click_through_rate": rate(clicks / page_views),
    }
    oldest_first = list(reversed(days))
    activity = await chart(page, "behaviour-activity")
    assert activity["labels"] == [day["date"] for day in oldest_first]
    assert series(activity) == {
        "Events": {day["date"]: day["total_events"] for day in days},
        "Users": {day["date"]: day["unique_users"] for day in days},
        "Sessions": {day["date"]: day["sessions"] for day in days},
    }
    ctr = await chart(page, "behaviour-ctr")
    assert series(ctr) == {
        "Click-through rate": {day["date"]: day["click_through_rate"] for day in days}
    }

    sessions = await site.api("user_session_stats", limit=20)
    assert await table(page, "#behaviour-sessions") == [
        {
            "_key": row["session_id"],
            "session_start": row["session_start"],
            "user_id": row["user_id"],
            "duration_seconds": duration(row["duration_seconds"]),
            "event_count": count(row["event_count"]),
            "page_views": count(row["page_views"]),
            "unique_pages": count(row["unique_pages"]),
            "device_type": row["device_type"],
            "browser": row["browser"],
            "country": row["country"],
        }
        for row in sessions
    ]

    # A user's timeline, on a click.
    user = sessions[0]["user_id"]
    assert await page.is_hidden("#behaviour-timeline-card")
    first_row = page.locator("#behaviour-sessions tbody tr").first
    await settle(page, first_row.locator('[data-col="user_id"] button').click())
    assert await page.is_visible("#behaviour-timeline-card")
    assert await page.text_content("#behaviour-timeline-user") == user
    timeline = await site.api("user_event_timeline", user_id=user, limit=50)
    shown = await table(page, "#behaviour-timeline")
    assert [(r["_key"], r["timestamp"], r["event_type"], r["page_url"]) for r in shown] == [
        (r["event_id"], r["timestamp"], r["event_type"], r["page_url"]) for r in timeline
    ]

    assert opened.console_errors == []
    await screenshot(page, tmp_path, "user-behaviour")


async def test_saas_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    await open_tab(page, "saas")

    for interval in ("1 week", "1 month", "1 day"):
        await settle(page, page.select_option("#saas-interval", interval))
        periods = await site.api("active_users", interval=interval)
        drawn = await chart(page, "saas-active")
        assert series(drawn) == {
            "Active users": {period(row["period"]): row["active_users"] for row in periods},
            "Sessions": {period(row["period"]): row["sessions"] for row in periods},
        }
        assert drawn["labels"] == [period(row["period"]) for row in periods]

    features = await site.api("feature_usage")
    assert series(await chart(page, "saas-features")) == {
        "Events": {row["feature"]: row["total_events"] for row in features}
    }
    assert await kpis(page, "saas") == {
        "latest_active_users": count(periods[-1]["active_users"]),
        "total_events": count(sum(row["total_events"] for row in periods)),
        "top_feature": features[0]["feature"],
    }

    sessions = await site.api("session_insights", limit=20)
    assert await table(page, "#saas-sessions") == [
        {
            "_key": row["session_id"],
            "session_start": row["session_start"],
            "user_id": row["user_id"],
            "session_duration_seconds": duration(row["session_duration_seconds"]),
            "event_count": count(row["event_count"]),
            "device_type": row["device_type"],
            "browser": row["browser"],
            "os": row["os"],
            "location": row["location"],
        }
        for row in sessions
    ]

    assert opened.console_errors == []
    await screenshot(page, tmp_path, "saas")


async def test_clickstream_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    await open_tab(page, "clickstream")

    pages = await site.api("get_popular_pages", limit=10)
    assert await table(page, "#clickstream-pages") == [
        {
            "_key": row["page_url"],
            "page_title": row["page_title"],
            "page_url": path_of(row["page_url"]),
            "view_count": count(row["view_count"]),
        }
        for row in pages
    ]
    assert series(await chart(page, "clickstream-pages")) == {
        "Page views": {row["page_title"]: row["view_count"] for row in pages}
    }

    # A user's journey, then one of its sessions on a click.
    user = "user_2"
    await page.fill("#journey-user", user)
    await settle(page, page.click("#journey-form button"))
    journey = await site.api("get_user_journey", user_id=user)
    visits = list(dict.fromkeys(row["session_id"] for row in journey))
    assert len(visits) >= 2
    shown = await table(page, "#clickstream-journey")
    assert [(r["timestamp"], r["session_id"], r["event_type"], r["page_title"]) for r in shown] == [
        (r["timestamp"], r["session_id"], r["event_type"], r["page_title"]) for r in journey
    ]
    # One rule per change of session.
    assert await page.locator("#clickstream-journey tr.new-group").count() == len(visits) - 1

    session = max(visits, key=lambda v: sum(row["session_id"] == v for row in journey))
    await settle(
        page, page.locator(f'#clickstream-journey button:text-is("{session}")').first.click()
    )
    assert await page.input_value("#session-id") == session
    selected = await page.eval_on_selector_all(
        "#clickstream-journey tr.selected [data-col=session_id]", "cs => cs.map(c => c.textContent)"
    )
    assert selected and set(selected) == {session}
    events = await site.api("get_session_events", session_id=session)
    shown = await table(page, "#clickstream-session")
    assert [(r["_key"], r["timestamp"], r["event_type"], r["user_id"]) for r in shown] == [
        (r["event_id"], r["timestamp"], r["event_type"], user) for r in events
    ]

    assert opened.console_errors == []
    await screenshot(page, tmp_path, "clickstream")


def _retention_shown(rows: list[dict[str, Any]], period: str) -> list[dict[str, str]]:
    """The heatmap's rows: a cohort, its users and the share active n periods later, 0% where
    none came back in a period the data covers, blank after the latest period seen."""

    def index(day: str) -> int:  # periods since 1970 (weeks from the Monday of 1969-12-29)
        moment = datetime.strptime(day, "%Y-%m-%d")
        if period == "month":
            return moment.year * 12 + moment.month
        return (moment - datetime(1969, 12, 29)).days // (7 if period == "week" else 1)

    latest = max(index(r["cohort"]) + r["period_number"] for r in rows)
    width = latest - index(rows[0]["cohort"]) + 1
    shown = []
    for cohort in dict.fromkeys(r["cohort"] for r in rows):
        mine = {r["period_number"]: r for r in rows if r["cohort"] == cohort}
        observed = latest - index(cohort)
        cells = {
            f"p{n}": short_rate(mine[n]["retention"] if n in mine else 0.0) if n <= observed else ""
            for n in range(width)
        }
        users = count(mine[0]["cohort_users"])
        shown.append({"_key": cohort, "cohort": cohort, "cohort_users": users, **cells})
    return shown


async def test_journeys_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    await open_tab(page, "journeys")

    # The funnel as the form first asks for it; the API called with Tinybird's comma form.
    steps = ["page_view", "click", "form_submit"]
    for breakdown in ("device", "none"):  # ends on none, the view in the screenshot
        await settle(page, page.select_option("#funnel-breakdown", breakdown))
        rows = await site.api(
            "funnel", steps=",".join(steps), window_seconds=3600, breakdown=breakdown
        )
        assert rows and rows[-1]["users"] > 0
        broken = breakdown != "none"
        assert await table(page, "#journeys-funnel") == [
            {
                "_key": f"{row['breakdown']}|{row['step']}",
                **({"breakdown": row["breakdown"]} if broken else {}),
                "step": str(row["step"]),
                "step_name": row["step_name"],
                "users": count(row["users"]),
                "conversion_from_previous": rate(row["conversion_from_previous"]),
                "conversion_overall": rate(row["conversion_overall"]),
                "median_seconds_from_previous": "–"
                if row["step"] == 1
                else seconds(row["median_seconds_from_previous"]),
            }
            for row in rows
        ]
        labels = [f"{i + 1}. {step}" for i, step in enumerate(steps)]
        want = {}
        for row in rows:
            want.setdefault(row["breakdown"] if broken else "Users", {})[
                labels[row["step"] - 1]
            ] = row["users"]
        assert series(await chart(page, "journeys-funnel")) == want

    # Other steps and a stricter order, sent as one `steps` value per step.
    await page.fill("#funnel-steps", "page_view ,scroll, click")
    await page.select_option("#funnel-mode", "strict_order")
    await settle(page, page.click("#funnel-form button"))
    strict = await site.api(
        "funnel", steps="page_view,scroll,click", mode="strict_order", window_seconds=3600
    )
    shown = await table(page, "#journeys-funnel")
    assert [r["users"] for r in shown] == [count(r["users"]) for r in strict]
    await page.fill("#funnel-steps", ", ".join(steps))
    await settle(page, page.select_option("#funnel-mode", "default"))

    for period in ("day", "month", "week"):  # ends on week, the view in the screenshot
        await settle(page, page.select_option("#retention-period", period))
        cohorts = await site.api("retention", period=period)
        shown, want = await table(page, "#journeys-retention"), _retention_shown(cohorts, period)
        assert len(shown) == len(want), period
        for got, row in zip(shown, want, strict=True):
            assert got == row, {k: (got.get(k), v) for k, v in row.items() if got.get(k) != v}
    # Darker is more: a cohort's own period (everyone) is the darkest blue.
    first = await page.eval_on_selector(
        "#journeys-retention [data-col=p0] .heat", "c => getComputedStyle(c).backgroundColor"
    )
    assert first == "rgb(37, 99, 235)"

    for page_url in ("https://example.com/", "https://example.com/pricing"):
        await page.fill("#paths-page", page_url)
        await settle(page, page.click("#paths-form button"))
        paths = await site.api("page_paths", page_url=page_url, limit=10)
        assert {r["direction"] for r in paths} == {"next", "previous"}
        assert await table(page, "#journeys-paths") == [
            {
                "_key": f"{row['direction']}|{row['page_url']}",
                "direction": "went to" if row["direction"] == "next" else "came from",
                "page_url": path_of(row["page_url"]),
                "transitions": count(row["transitions"]),
                "share": rate(row["share"]),
            }
            for row in paths
        ]
        for direction in ("next", "previous"):
            assert series(await chart(page, f"journeys-{direction}")) == {
                "Sessions": {
                    path_of(r["page_url"]): r["transitions"]
                    for r in paths
                    if r["direction"] == direction
                }
            }

    assert opened.console_errors == []
    await screenshot(page, tmp_path, "journeys")


# --- the Pipes tab: any project ------------------------------------------------------


async def test_pipes_tab(site: Site, opened: Opened, tmp_path: Path) -> None:
    page = opened.page
    await sign_in(page, await as_documented(page, site))
    await open_tab(page, "pipes")
    # The tab's pipes come with their own dates: the top bar's are hidden.
    assert await page.is_hidden(".range")

    listed = await site.pipes()
    assert len(listed) == 16
    assert await listed_pipes(page) == sorted(pipe["name"] for pipe in listed)
    assert await page.is_visible("#pipes-pick")

    # test_summary requires nothing: picking it runs it with its defaults.
    assert await pick_pipe(page, "test_summary") == "ready"
    assert (
        await page.get_attribute('#pipes-list [data-pipe="test_summary"]', "aria-current") == "true"
    )
    assert await shown_call(page) == ("/v0/pipes/test_summary.json", {})
    every = await site.answer("test_summary")
    assert await table(page, "#pipes-table") == [as_shown(every["meta"], r) for r in every["data"]]

    # One input per parameter, typed by its ClickHouse type, defaults filled in.
    assert await page.get_attribute("#pipe-param-test_id", "type") == "text"
    assert await page.get_attribute("#pipe-param-start_date", "type") == "datetime-local"
    assert await page.input_value("#pipe-param-start_date") == "1970-01-01T00:00"
    await page.fill("#pipe-param-test_id", "homepage_redesign")
    await page.fill("#pipe-param-start_date", "2023-06-03T00:00")
    await page.fill("#pipe-param-end_date", "2023-06-05T23:59:59")
    async with page.expect_response(lambda r: "/v0/pipes/test_summary.json" in r.url) as got:
        assert await run_pipe(page) == "ready"
    params = {
        "test_id": "homepage_redesign",
        "start_date": "2023-06-03 00:00:00",
        "end_date": "2023-06-05 23:59:59",
    }
    assert await shown_call(page) == ("/v0/pipes/test_summary.json", params)
    answer = await (await got.value).json()
    assert answer["data"] == await site.api("test_summary", **params)
    assert answer["rows"] >= 2 and answer["data"] != every["data"]
    assert await page.eval_on_selector_all(
        "#pipes-table th", "ths => ths.map(th => th.textContent)"
    ) == [column["name"] for column in answer["meta"]]
    assert await table(page, "#pipes-table") == [
        as_shown(answer["meta"], r) for r in answer["data"]
    ]
    # Numbers right-aligned, text not.
    aligned = await page.eval_on_selector_all(
        "#pipes-table tbody tr:first-child td",
        "tds => Object.fromEntries(tds.map(td =>"
        " [td.dataset.col, getComputedStyle(td).textAlign]))",
    )
    assert aligned == {
        column["name"]: "right" if _NUMBER_TYPE.match(column["type"]) else "left"
        for column in answer["meta"]
    }
    assert await page.text_content("#pipes-stats") == statistics(answer)
    # No time column: no chart.
    assert await page.is_hidden('[data-chart="pipes-chart"]')

    # A time column and numbers: a line per number column, oldest first.
    await pick_pipe(page, "active_users")
    periods = await site.api("active_users")
    drawn = await chart(page, "pipes-chart")
    assert drawn["labels"] == sorted(period(row["period"]) for row in periods)
    assert series(drawn) == {
        column: {period(row["period"]): row[column] for row in periods}
        for column in ("active_users", "sessions", "total_events")
    }
    assert opened.console_errors == []

    # The screenshot shows fixed statistics (the time a query took varies), so that it does
    # not change from run to run.
    async def fixed_statistics(route: Any) -> None:
        url = site.gateway_url + route.request.url.removeprefix(README_URL)
        response = await route.fetch(url=url)
        body = await response.json()
        body["statistics"] = {"elapsed": 0.0042, "rows_read": 20_000, "bytes_read": 1_234_567}
        await route.fulfill(response=response, json=body)

    await page.route(f"{README_URL}/v0/pipes/active_users.json*", fixed_statistics)
    assert await settle(page, page.click("#refresh")) == "ready"
    assert await page.text_content("#pipes-stats") == "30 rows in 4.2 ms · read 20,000 rows, 1.2 MB"
    await screenshot(page, tmp_path, "pipes")
    await page.unroute(f"{README_URL}/v0/pipes/active_users.json*", fixed_statistics)

    # Times that repeat, one row per variant: a line per variant for the chosen number.
    await pick_pipe(page, "test_timeseries")
    await page.fill("#pipe-param-test_id", "homepage_redesign")
    assert await run_pipe(page) == "ready"
    buckets = await site.api("test_timeseries", test_id="homepage_redesign")
    for measure in ("users", "conversion_rate"):
        if measure != "users":  # the first number column is drawn first
            await page.select_option("#pipes-measure", measure)
        expected: dict[str, dict[str, Any]] = {}
        for row in buckets:
            expected.setdefault(row["variant"], {})[period(row["period"])] = row[measure]
        assert series(await chart(page, "pipes-chart")) == expected

    # A required parameter is marked; the server's refusal is shown as the other tabs show it.
    assert await pick_pipe(page, "user_event_timeline") == "ready"
    assert await page.is_visible("#pipes-hint") and await page.is_hidden("#pipes-result")
    user_field = '[data-param="user_id"]'
    assert await page.text_content(f"{user_field} .param-required") == "required"
    assert await page.get_attribute("#pipe-param-user_id", "aria-required") == "true"
    assert await page.get_attribute("#pipe-param-limit", "type") == "number"
    assert await page.get_attribute("#pipe-param-limit", "placeholder") == "100"
    assert await run_pipe(page) == "error"
    assert await page.get_attribute("#message", "data-problem") == "request"
    message = await page.text_content("#message")
    assert "user_event_timeline failed" in message and "HTTP 400" in message
    assert "user_id" in message
    await page.fill("#pipe-param-user_id", "user_2")
    await page.fill("#pipe-param-limit", "5")
    assert await run_pipe(page) == "ready"
    assert await page.is_hidden("#message")
    timeline = await site.answer("user_event_timeline", user_id="user_2", limit="5")
    assert timeline["rows"] == 5
    assert await table(page, "#pipes-table") == [
        as_shown(timeline["meta"], r) for r in timeline["data"]
    ]
    # A time column but no number column: no chart.
    assert await page.is_hidden('[data-chart="pipes-chart"]')


# --- a deployed project -------------------------------------------------------------------

TUTORIALS_PROJECT = Path(__file__).resolve().parent / "projects" / "tutorials"
# A project that is not the tutorials, with a parameter of every kind the form knows.
SENSORS_PROJECT = {
    "datasources/readings.datasource": """DESCRIPTION >
    Readings sent by sensors.

SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `sensor` String `json:$.sensor`,
    `value` Float64 `json:$.value`,
    `ok` UInt8 `json:$.ok`

ENGINE "MergeTree"
ENGINE_SORTING_KEY "timestamp, sensor"
""",
    "pipes/hourly.pipe": """DESCRIPTION >
    Readings per hour of one sensor.

NODE hourly_node
SQL >
    %
    SELECT toStartOfHour(timestamp) AS hour, count() AS readings, round(avg(value), 3) AS mean
    FROM readings
    WHERE sensor = {{String(sensor, required=True, description="Which sensor")}}
      AND timestamp >= {{DateTime(since, '2024-01-01 00:00:00', description="From, UTC")}}
      AND toDate(timestamp) <= {{Date(until, '2024-12-31')}}
      AND value >= {{Float64(min_value, 0)}}
      AND (ok = 1 OR NOT {{Boolean(only_ok, False, description="Leave out failed readings")}})
    GROUP BY hour
    ORDER BY hour
    LIMIT {{Int32(limit, 100)}}

TYPE endpoint
""",
    "pipes/sensors.pipe": """DESCRIPTION >
    Every sensor and how many readings it sent.

NODE sensors_node
SQL >
    SELECT sensor, count() AS readings FROM readings GROUP BY sensor ORDER BY sensor

TYPE endpoint
""",
}
READINGS = [
    {
        "timestamp": f"2024-01-02 {i // 6:02d}:{i % 6 * 10:02d}:00",
        "sensor": f"s{i % 3}",
        "value": i % 7 * 0.75,
        "ok": int(i % 4 != 0),
    }
    for i in range(60)
]


@asynccontextmanager
async def deployed(
    chdb_dir: Path, project: Path, http: aiohttp.ClientSession
) -> AsyncIterator[Gateway]:
    """A suite that deployed `project` at start, and its gateway once it serves the project."""
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("dashboard_project"))
    await warehouse.open()
    suite = await start_suite(warehouse, project=project)
    try:
        yield Gateway(suite.gateway_url, http)
    finally:
        await suite.stop()
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
        await warehouse.close()


async def test_a_project_of_its_own(chdb_dir: Path, opened: Opened, tmp_path: Path) -> None:
    for path, text in SENSORS_PROJECT.items():
        (tmp_path / "sensors" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sensors" / path).write_text(text)
    async with (
        aiohttp.ClientSession() as http,
        deployed(chdb_dir, tmp_path / "sensors", http) as gateway,
    ):
        await serves(gateway, "sensors", gone="test_summary")
        await gateway.send("readings", READINGS)
        page = opened.page
        await sign_in(page, gateway.gateway_url)
        assert await page.evaluate("document.body.dataset.state") == "ready"

        # None of the tutorials' pipes is listed: their tabs are hidden, the Pipes tab opens.
        assert await shown_tabs(page) == ["pipes"]
        assert await page.get_attribute("#tab-pipes", "aria-selected") == "true"
        assert page.url.endswith("#pipes")
        assert await listed_pipes(page) == ["hourly", "sensors"]
        descriptions = await page.eval_on_selector_all(
            "#pipes-list .pipe-description", "ds => ds.map(d => d.textContent)"
        )
        assert descriptions == [
            "Readings per hour of one sensor.",
            "Every sensor and how many readings it sent.",
        ]
        assert opened.console_errors == []

        # A required parameter: the form waits for it.
        assert await pick_pipe(page, "hourly") == "ready"
        assert await page.is_hidden("#pipes-result")
        inputs = await page.eval_on_selector_all(
            "#pipes-fields input",
            """inputs => inputs.map(i => [i.name, i.type, i.type === 'checkbox' ? String(i.checked)
                : i.value || i.placeholder, i.getAttribute('aria-required') === 'true'])""",
        )
        assert inputs == [
            ["sensor", "text", "", True],
            ["since", "datetime-local", "2024-01-01T00:00", False],
            ["until", "date", "2024-12-31", False],
            ["min_value", "number", "0.0", False],  # the default as GET /v0/pipes gives it
            ["only_ok", "checkbox", "false", False],
            ["limit", "number", "100", False],
        ]
        assert await page.get_attribute("#pipe-param-min_value", "step") == "any"
        assert await page.get_attribute("#pipe-param-limit", "step") == "1"
        help_text = await page.text_content('[data-param="only_ok"] .param-help')
        assert help_text == "Leave out failed readings · Default: false"

        await page.fill("#pipe-param-sensor", "s1")
        await page.fill("#pipe-param-min_value", "1.5")
        await page.check("#pipe-param-only_ok")
        assert await run_pipe(page) == "ready"
        # What the form sends: what was filled in; the defaults are the server's to apply.
        params = {"sensor": "s1", "min_value": "1.5", "only_ok": "true"}
        assert await shown_call(page) == ("/v0/pipes/hourly.json", params)
        answer = await gateway.answer("hourly", **params)
        everything = await gateway.answer("hourly", sensor="s1")
        assert 0 < answer["rows"] < everything["rows"]
        assert await table(page, "#pipes-table") == [
            as_shown(answer["meta"], r) for r in answer["data"]
        ]
        drawn = await chart(page, "pipes-chart")
        assert drawn["labels"] == [row["hour"][:16] for row in answer["data"]]
        assert series(drawn) == {
            column: {row["hour"][:16]: row[column] for row in answer["data"]}
            for column in ("readings", "mean")
        }

        # "Defaults" puts the form back; the pipe without parameters runs at once, no chart.
        await page.click("#pipes-form button[type=reset]")
        assert await page.input_value("#pipe-param-sensor") == ""
        assert not await page.is_checked("#pipe-param-only_ok")
        assert await pick_pipe(page, "sensors") == "ready"
        assert await page.is_visible("#pipes-no-params")
        sensors = await gateway.answer("sensors")
        assert [r["readings"] for r in sensors["data"]] == [20, 20, 20]
        assert await table(page, "#pipes-table") == [
            as_shown(sensors["meta"], r) for r in sensors["data"]
        ]
        assert await page.is_hidden('[data-chart="pipes-chart"]')
        assert opened.console_errors == []


async def test_the_tutorials_as_a_deployed_project(chdb_dir: Path, opened: Opened) -> None:
    async with (
        aiohttp.ClientSession() as http,
        deployed(chdb_dir, TUTORIALS_PROJECT, http) as gateway,
    ):
        await serves(gateway, "get_popular_pages", gone="active_users")
        for datasource, rows in generate_all(500, days=DAYS).items():
            await gateway.send(datasource, list(rows))
        listed = sorted(pipe["name"] for pipe in await gateway.pipes())
        # Five of the tutorials' pipes: the tabs that need the others are hidden.
        assert listed == [
            "get_popular_pages",
            "get_session_events",
            "get_user_journey",
            "session_insights",
            "test_summary",
        ]
        page = opened.page
        await sign_in(page, gateway.gateway_url)
        assert await page.evaluate("document.body.dataset.state") == "ready"
        assert await shown_tabs(page) == ["clickstream", "pipes"]
        assert await page.get_attribute("#tab-pipes", "aria-selected") == "true"
        assert await listed_pipes(page) == listed

        # session_insights (as tutorial 003 writes it) requires a user.
        assert await pick_pipe(page, "session_insights") == "ready"
        assert await page.get_attribute("#pipe-param-user_id", "aria-required") == "true"
        user = next(r["user_id"] for r in generate_all(500, days=DAYS)["app_events"])
        await page.fill("#pipe-param-user_id", user)
        assert await run_pipe(page) == "ready"
        insights = await gateway.answer("session_insights", user_id=user)
        assert insights["rows"] > 0
        assert await table(page, "#pipes-table") == [
            as_shown(insights["meta"], r) for r in insights["data"]
        ]

        # The tab whose pipes are all there works on them. (The tutorial's SQL counts
        # 'pageview' events, which the generator calls 'page_view'.)
        views = [("/pricing", 3), ("/docs", 2), ("/blog", 1)]
        await gateway.send(
            "clickstream_events",
            [
                {
                    "event_id": f"pv_{path}_{i}",
                    "user_id": "user_reader",
                    "session_id": "sess_reader",
                    "event_type": "pageview",
                    "page_url": f"https://example.com{path}",
                    "page_title": path,
                    "referrer": "",
                    "timestamp": f"2023-06-10 12:00:0{i}",
                    "device_type": "desktop",
                    "browser": "Firefox",
                    "properties": "{}",
                }
                for path, count in views
                for i in range(count)
            ],
        )
        await open_tab(page, "clickstream")
        assert await table(page, "#clickstream-pages") == [
            {
                "_key": f"https://example.com{path}",
                "page_title": path,
                "page_url": path,
                "view_count": str(count),
            }
            for path, count in views
        ]
        assert await gateway.api("get_popular_pages") == [
            {"page_url": f"https://example.com{path}", "page_title": path, "view_count": count}
            for path, count in views
        ]
        assert opened.console_errors == []


# --- controls, errors, live data ---------------------------------------------------------


async def test_the_date_range_filters_every_call(site: Site, opened: Opened) -> None:
    page = opened.page
    await sign_in(page, site.gateway_url)
    await settle(page, page.select_option("#ab-test", "checkout_flow"))
    await page.fill("#from", "2023-06-03")
    await settle(page, page.fill("#to", "2023-06-05"))
    bounded = await site.api(
        "test_summary",
        test_id="checkout_flow",
        start_date="2023-06-03 00:00:00",
        end_date="2023-06-05 23:59:59",
    )
    everything = await site.api("test_summary", test_id="checkout_flow")
    assert [r["users"] for r in bounded] != [r["users"] for r in everything]
    shown = await table(page, "#ab-summary")
    assert [(r["variant"], r["users"]) for r in shown] == [
        (r["variant"], count(r["users"])) for r in bounded
    ]
    buckets = (await chart(page, "ab-conversion"))["labels"]
    assert buckets == ["2023-06-03", "2023-06-04", "2023-06-05"]

    await settle(page, page.click("#all-time"))
    shown = await table(page, "#ab-summary")
    assert [r["users"] for r in shown] == [count(r["users"]) for r in everything]

    # A range the API refuses is explained with the API's own message.
    await page.fill("#from", "2023-06-20")
    assert await settle(page, page.fill("#to", "2023-06-10")) == "error"
    message = await page.text_content("#message")
    assert "HTTP 400" in message and "end_date" in message
    assert opened.console_errors  # the browser logs the failed request itself


async def test_a_missing_or_rejected_token_is_explained(site: Site, opened: Opened) -> None:
    page = opened.page
    await page.goto(site.gateway_url)
    await page.wait_for_function("() => document.body.dataset.state === 'error'")
    assert await page.get_attribute("#message", "data-problem") == "token-missing"
    assert "Enter your API token" in await page.text_content("#message")

    await page.fill("#token", "not-the-token")
    assert await settle(page, page.click("#token-form button[type=submit]")) == "error"
    assert await page.get_attribute("#message", "data-problem") == "token-rejected"
    message = await page.text_content("#message")
    assert "rejected this token" in message and "HTTP 403: invalid token" in message
    assert await page.get_attribute("#token", "aria-invalid") is not None

    await page.fill("#token", TOKEN)
    assert await settle(page, page.click("#token-form button[type=submit]")) == "ready"
    assert await page.is_hidden("#message")
    assert await page.get_attribute("#token", "aria-invalid") is None

    # The token is kept in local storage: a reload needs no typing.
    assert await settle(page, page.reload()) == "ready"
    assert await page.input_value("#token") == TOKEN
    assert await page.evaluate("localStorage.getItem('pipit.token')") == TOKEN


async def test_a_scoped_token_sees_what_it_may_read(site: Site, opened: Opened) -> None:
    page = opened.page
    await sign_in(page, site.gateway_url, token=site.ab_token)
    assert await page.evaluate("document.body.dataset.state") == "ready"
    assert await page.locator("#ab-summary tbody tr").count() >= 2
    # GET /v0/pipes lists only what the token may read: the other tabs are not offered.
    assert await shown_tabs(page) == ["ab", "pipes"]
    await open_tab(page, "pipes")
    assert await listed_pipes(page) == [
        "test_results",
        "test_segments",
        "test_summary",
        "test_timeseries",
    ]
    assert await pick_pipe(page, "test_segments") == "ready"
    segments = await site.answer("test_segments")
    assert await table(page, "#pipes-table") == [
        as_shown(segments["meta"], r) for r in segments["data"]
    ]
    # A tab not offered stays closed when its address is opened.
    await page.evaluate("window.location.hash = '#saas'")
    assert await settle(page, page.reload()) == "ready"
    assert await page.get_attribute("#tab-pipes", "aria-selected") == "true"
    assert await page.is_hidden("#panel-saas")
    assert page.url.endswith("#pipes")


async def test_a_pipe_the_token_may_not_read_is_explained(site: Site, opened: Opened) -> None:
    page = opened.page

    # A listing that went out of date (the token's scopes were narrowed since): the SaaS tab
    # is offered, and its pipes answer 403.
    async def listing_before(route: Any) -> None:
        admin = {**route.request.headers, "authorization": f"Bearer {TOKEN}"}
        await route.fulfill(response=await route.fetch(headers=admin))

    await page.route(f"{site.gateway_url}/v0/pipes", listing_before)
    await sign_in(page, site.gateway_url, token=site.ab_token)
    assert await page.evaluate("document.body.dataset.state") == "ready"
    assert await shown_tabs(page) == ["ab", "behaviour", "saas", "clickstream", "journeys", "pipes"]

    assert await settle(page, page.click("#tab-saas")) == "error"
    assert await page.get_attribute("#message", "data-problem") == "forbidden"
    message = await page.text_content("#message")
    pipe = next(p for p in ("active_users", "feature_usage", "session_insights") if p in message)
    assert f"This token may not read {pipe}" in message
    assert "HTTP 403" in message and f"PIPES:READ:{pipe}" in message
    # The token is valid, so it is not marked as wrong.
    assert await page.get_attribute("#token", "aria-invalid") is None

    assert await settle(page, page.click("#tab-ab")) == "ready"
    assert await page.is_hidden("#message")


async def test_an_unreachable_gateway_is_explained(site: Site, opened: Opened) -> None:
    page = opened.page
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await page.goto(f"{site.gateway_url}/?api={nowhere}")
    await page.fill("#token", TOKEN)
    assert await settle(page, page.click("#token-form button[type=submit]")) == "error"
    assert await page.get_attribute("#message", "data-problem") == "unreachable"
    message = await page.text_content("#message")
    assert f"Cannot reach the gateway at {nowhere}/" in message
    assert "PIPIT_ALLOWED_ORIGINS" in message


async def test_a_page_from_another_origin_uses_cors(site: Site, opened: Opened) -> None:
    page = opened.page
    answers: list[dict[str, str]] = []
    page.on(
        "response",
        lambda r: answers.append(r.headers) if r.url.startswith(site.gateway_url) else None,
    )
    # An origin in the gateway's allowed list: the data loads.
    await sign_in(page, f"{site.allowed_url}/?api={site.gateway_url}")
    assert await page.evaluate("document.body.dataset.state") == "ready"
    every_test = await site.api("test_summary")
    first = sorted({row["test_id"] for row in every_test})[0]
    shown = await table(page, "#ab-summary")
    assert [(r["variant"], r["users"]) for r in shown] == [
        (r["variant"], count(r["users"])) for r in every_test if r["test_id"] == first
    ]
    assert answers, "the page did not call the gateway"
    assert {a.get("access-control-allow-origin") for a in answers} == {site.allowed_url}
    assert opened.console_errors == []

    # Any other origin: the browser withholds the answers, and the page says why it may be.
    await sign_in(page, f"{site.foreign_url}/?api={site.gateway_url}")
    assert await page.evaluate("document.body.dataset.state") == "error"
    assert await page.get_attribute("#message", "data-problem") == "unreachable"
    assert any("CORS" in error for error in opened.console_errors)


async def test_a_new_event_shows_up_while_live(site: Site, opened: Opened) -> None:
    page = opened.page
    await sign_in(page, f"{site.gateway_url}/?refresh=1")
    await settle(page, page.select_option("#ab-test", "pricing_page"))
    before = {r["variant"]: r for r in await site.api("test_summary", test_id="pricing_page")}
    users_cell = '#ab-summary tr[data-key="A"] [data-col="users"]'
    assert await page.text_content(users_cell) == count(before["A"]["users"])

    await page.check("#live")
    event = {
        "timestamp": "2023-06-30 23:00:00",
        "user_id": "user_watching_live",
        "test_id": "pricing_page",
        "variant": "A",
        "event_type": "purchase",
        "conversion": 1,
        "revenue": 99.0,
        "session_id": "session_live",
        "device": "desktop",
        "country": "US",
    }
    await site.send("ab_test_events", [event])
    after = {r["variant"]: r for r in await site.api("test_summary", test_id="pricing_page")}
    assert after["A"]["users"] == before["A"]["users"] + 1
    # No click: the live refresh brings the new numbers in.
    await page.wait_for_function(
        "([cell, text]) => document.querySelector(cell).textContent === text",
        arg=[users_cell, count(after["A"]["users"])],
    )
    row = (await table(page, "#ab-summary"))[0]
    assert row["conversions"] == count(after["A"]["conversions"])
    assert row["total_revenue"] == money(after["A"]["total_revenue"])

    # With live refresh off, "Refresh now" does the same.
    await page.uncheck("#live")
    await site.send("ab_test_events", [{**event, "user_id": "user_refreshing"}])
    latest = (await site.api("test_summary", test_id="pricing_page"))[0]
    assert await settle(page, page.click("#refresh")) == "ready"
    assert await page.text_content(users_cell) == count(latest["users"])
    assert opened.console_errors == []


async def test_event_text_is_shown_as_text(site: Site, opened: Opened) -> None:
    page = opened.page
    title = '<img src=x onerror="window.pwned = 1"><b>Sale</b>'
    await site.send(
        "clickstream_events",
        [
            {
                "event_id": "ev_html",
                "user_id": "user_html",
                "session_id": "sess_html",
                "event_type": "page_view",
                "page_url": "https://example.com/sale",
                "page_title": title,
                "referrer": "",
                "timestamp": "2023-06-15 12:00:00",
                "device_type": "desktop",
                "browser": "Chrome",
                "properties": "{}",
            }
        ],
    )
    await sign_in(page, f"{site.gateway_url}/#clickstream")
    await page.fill("#journey-user", "user_html")
    await settle(page, page.click("#journey-form button"))
    assert [r["page_title"] for r in await table(page, "#clickstream-journey")] == [title]
    assert await page.locator("#clickstream-journey img, #clickstream-journey b").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_a_phone_screen_has_no_sideways_scrolling(site: Site, opened: Opened, tmp_path: Path):
    page = opened.page
    await page.set_viewport_size(PHONE)
    await sign_in(page, await as_documented(page, site))
    for name in ("ab", "behaviour", "saas", "clickstream", "journeys", "pipes"):
        if name != "ab":
            await open_tab(page, name)
        if name == "pipes":
            assert await pick_pipe(page, "active_users") == "ready"
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name}: the page scrolls sideways by {overflow}px"
        # Chart.js sizes a chart to its box when the box is laid out (a ResizeObserver): waited
        # for, not slept on.
        await page.wait_for_function(
            "s => [...document.querySelectorAll(s)].every(c => c.getBoundingClientRect().width)",
            arg=f"#panel-{name} canvas",
        )
        widths = await page.eval_on_selector_all(
            f"#panel-{name} canvas", "cs => cs.map(c => c.getBoundingClientRect().width)"
        )
        assert widths and all(0 < width <= PHONE["width"] for width in widths), (name, widths)
    await open_tab(page, "ab")
    await screenshot(page, tmp_path, "phone")
    assert opened.console_errors == []
