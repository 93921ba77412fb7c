"""Projects as code, end to end (issue 14's acceptance):

- the tutorials' own datafiles (tests/projects/tutorials/) build unchanged and run with a
  real `pipit up --project`: the tutorials' sample events and calls work, and on generated
  tie-free data every pipe answers what a plain-Python reading of its SQL gives;
- from `pipit init` to answers on a running `pipit up`, no restart: HTTP, and gRPC through
  a stub generated from `pipit protos`; a changed pipe is served within 5 s; a broken
  pipe is refused with file:line while every pipe keeps answering; a datasource gains a
  column and keeps its rows;
- three processes (ingest, query, gateway) against the ClickHouse HTTP test fixture: one
  deploy reaches all of them;
- nothing acknowledged is lost across deploys under ingest load."""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import tinybird_reference as reference
from conftest import unique_database
from harness import TOKEN, free_port, start_suite
from processes import PipitProcess, start_pipit
from samples import tutorial_event

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tests" / "projects" / "tutorials"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


# --- generated tie-free data -----------------------------------------------------------------


def _at(base: datetime, seconds: int) -> str:
    return (base + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def _ab_events() -> list[dict[str, Any]]:
    rng = random.Random(1)
    base = datetime(2023, 10, 1)
    return [
        {
            "timestamp": _at(base, i * 40_013),  # Oct 2023 .. Jan 2024: the default end cuts
            "user_id": f"u{i % 37}",
            "test_id": ("homepage_redesign", "checkout")[i % 3 == 0],
            "variant": "AB"[i % 2],
            "event_type": ("page_view", "click")[i % 2],
            "conversion": int(rng.random() < 0.3),
            "revenue": round(rng.uniform(0, 100), 2),
            "session_id": f"s{i % 53}",
            "device": ("mobile", "desktop")[i % 2],
            "country": ("US", "NL", "JP")[i % 3],
        }
        for i in range(240)
    ]


def _app_events() -> list[dict[str, Any]]:
    events = []
    base = datetime(2023, 2, 1)
    for s in range(30):
        start = s * 5 * 86_400 * 5 + s * 13  # Feb 2023 .. 2025: the default end cuts
        for i in range(1 + s % 6):  # one session of one event: zero seconds, left out
            events.append(
                {
                    "event_id": f"e{s}_{i}",
                    "user_id": f"user_{s % 4}",
                    "session_id": f"sess_{s}",
                    "event_type": ("login", "click", "view")[i % 3],
                    "feature": ("billing", "search")[s % 2],
                    "timestamp": _at(base, start + i * 61),
                    "device_type": ("mobile", "desktop")[s % 2],
                    "browser": ("Firefox", "Safari")[s % 2],
                    "os": ("iOS", "Linux")[s % 2],
                    "location": ("UK", "US")[s % 2],
                    "metadata": "{}",
                }
            )
    return events


def _clickstream_events() -> list[dict[str, Any]]:
    events = []
    base = datetime(2023, 1, 5)
    n = 0
    for page in range(12):
        # Page k is viewed k + 1 times (counts never tie); some spelled `page_view`, which the
        # tutorial's SQL leaves out; and a few views in 2024, past its default end.
        for view in range(page + 3):
            kind = "pageview" if view <= page else ("page_view", "click")[view % 2]
            n += 1
            events.append(
                {
                    "event_id": f"ev_{n}",
                    "user_id": f"user_{n % 5}",
                    "session_id": f"sess_{n % 9}",
                    "event_type": kind,
                    "page_url": f"https://example.com/p{page}",
                    "page_title": f"Page {page}",
                    "referrer": "https://google.com",
                    "timestamp": _at(base, n * 86_400 + n * 7),  # 2023 .. early 2024
                    "device_type": "desktop",
                    "browser": "Safari",
                    "properties": "{}",
                }
            )
    return events


DATA = {
    "ab_test_events": _ab_events(),
    "app_events": _app_events(),
    "clickstream_events": _clickstream_events(),
}
# The tutorials' sample events, as their curl calls send them.
SAMPLES = {
    name: tutorial_event(name)
    for name in ("ab_test_events", "user_events", "app_events", "clickstream_events")
}


def _up_env(data_dir: Path) -> dict[str, str]:
    return {
        "PIPIT_DATA_DIR": str(data_dir),
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_METRICS_PORT": "0",
        "PIPIT_FLUSH_INTERVAL": "0.05",
    }


async def _post(http: aiohttp.ClientSession, url: str, name: str, rows: list[dict]) -> dict:
    body = b"\n".join(orjson.dumps(row) for row in rows)
    async with http.post(
        f"{url}/v0/events", params={"name": name, "wait": "true"}, data=body, headers=HEADERS
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _pipe(http: aiohttp.ClientSession, url: str, name: str, **params: Any) -> list[dict]:
    async with http.get(
        f"{url}/v0/pipes/{name}.json",
        params={k: str(v) for k, v in params.items()},
        headers=HEADERS,
    ) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["data"]


def _same(answer: list[dict], expected: list[dict]) -> None:
    assert [set(row) for row in answer] == [set(row) for row in expected]
    for got, want in zip(answer, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, float) and not isinstance(got[key], str):
                assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), (key, got, want)
            else:
                assert got[key] == value, (key, got, want)


# --- the tutorials' datafiles, unchanged, under `pipit up --project` -------------------------


@pytest.fixture(scope="module")
def tutorials_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipitProcess]:
    data = tmp_path_factory.mktemp("tutorials-project")
    up = start_pipit(
        ["up", "--project", str(TUTORIALS)], _up_env(data), {"ingest", "gateway"}, cwd=str(data)
    )
    yield up
    assert up.stop() == 0


async def test_the_tutorials_datafiles_serve_their_samples_and_calls(tutorials_up: PipitProcess):
    url = tutorials_up.listening["gateway"]
    async with aiohttp.ClientSession() as http:
        for name, event in SAMPLES.items():
            assert await _post(http, url, name, [event]) == {
                "successful_rows": 1,
                "quarantined_rows": 0,
            }
        # The tutorials' own calls, as written in them.
        summary = await _pipe(
            http,
            url,
            "test_summary",
            test_id="homepage_redesign",
            start_date="2023-06-01 00:00:00",
            end_date="2023-06-30 23:59:59",
        )
        assert summary == [
            {
                "test_id": "homepage_redesign",
                "variant": "B",
                "users": 1,
                "conversions": 1,
                "conversion_rate": 1,
                "total_revenue": 29.99,
                "revenue_per_user": 29.99,
            }
        ]
        journey = await _pipe(
            http, url, "get_user_journey", user_id="user_742", end_date="2025-12-31 23:59:59"
        )
        assert [row["page_url"] for row in journey] == ["https://example.com/contact"]
        session = await _pipe(http, url, "get_session_events", session_id="sess_4742")
        assert [row["event_id"] for row in session] == ["ev_14742"]
        # session_insights' SQL requires user_id (its prose says "optionally"): without one,
        # a 400 naming it.
        async with http.get(f"{url}/v0/pipes/session_insights.json", headers=HEADERS) as r:
            assert r.status == 400
            assert "user_id" in (await r.json())["message"]


async def test_the_tutorials_pipes_answer_what_their_sql_says(tutorials_up: PipitProcess):
    url = tutorials_up.listening["gateway"]
    async with aiohttp.ClientSession() as http:
        for name, rows in DATA.items():
            await _post(http, url, name, rows)
        every = {name: [*rows, SAMPLES[name]] for name, rows in DATA.items()}
        ab, app, clicks = every["ab_test_events"], every["app_events"], every["clickstream_events"]
        for params in (
            {"test_id": "homepage_redesign"},
            {"test_id": "checkout"},
            {"test_id": "checkout", "start_date": "2023-11-01 00:00:00"},
            {"test_id": "homepage_redesign", "end_date": "2024-02-01 00:00:00"},
            {},
        ):
            _same(
                await _pipe(http, url, "test_summary", **params),
                reference.test_summary(ab, **params),
            )
        for params in (
            {"user_id": "user_1"},
            {"user_id": "user_2", "limit": 3},
            {"user_id": "user_0", "end_date": "2025-12-31 23:59:59"},
        ):
            _same(
                await _pipe(http, url, "session_insights", **params),
                reference.session_insights(app, **params),
            )
        for params in (
            {"user_id": "user_3"},
            {"user_id": "user_1", "end_date": "2024-12-31 00:00:00"},
        ):
            _same(
                await _pipe(http, url, "get_user_journey", **params),
                reference.get_user_journey(clicks, **params),
            )
        for session in ("sess_2", "sess_7", "nope"):
            _same(
                await _pipe(http, url, "get_session_events", session_id=session),
                reference.get_session_events(clicks, session_id=session),
            )
        for params in ({}, {"limit": 3}, {"end_date": "2024-12-31 23:59:59", "limit": 20}):
            _same(
                await _pipe(http, url, "get_popular_pages", **params),
                reference.get_popular_pages(clicks, **params),
            )


# --- from `pipit init` to answers, on a running `pipit up` -----------------------------------


def _pipit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipit.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def _deploy(folder: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _pipit("deploy", str(folder), "--url", url, "--token", TOKEN, *extra, cwd=folder)


_CLIENT = """
import json, sys
import grpc
from pipit.project.v1 import query_service_pb2 as pb, query_service_pb2_grpc as rpc

target, token = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(target) as channel:
    reply = rpc.QueryServiceStub(channel).TopPages(
        pb.TopPagesRequest(country="US", limit=1),
        metadata=[("authorization", "Bearer " + token)],
    )
print(json.dumps([[row.path, row.views, row.sessions] for row in reply.data]))
"""


def _call_through_generated_stubs(protos: Path, out: Path, target: str) -> list:
    """TopPages called as a client of the project would: Python stubs generated by
    grpcio-tools from `pipit protos` output alone, in a process of their own (whose `pipit`
    package is the generated one, not this one)."""
    out.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(protos)) for p in protos.rglob("*.proto")]
    files = [f for f in files if f.startswith("pipit/")]
    # As the README says to, with the well-known types grpcio-tools adds itself.
    generated = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={out}",
         f"--grpc_python_out={out}", *files],
        cwd=protos, capture_output=True, text=True,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    (out / "client.py").write_text(_CLIENT)
    done = subprocess.run(
        [sys.executable, "client.py", target, TOKEN], cwd=out, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@pytest.fixture
def builtin_up(tmp_path: Path) -> Iterator[PipitProcess]:
    up = start_pipit(
        ["up"], _up_env(tmp_path / "data"), {"ingest", "query", "gateway"}, cwd=str(tmp_path)
    )
    yield up
    assert up.stop() == 0


async def _until(check, deadline: float) -> Any:
    """Polls `check` (an awaitable factory returning a value or None) until it returns a
    value or `deadline` (monotonic seconds) passes."""
    while True:
        value = await check()
        if value is not None or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_from_init_to_answers_without_a_restart(builtin_up: PipitProcess, tmp_path: Path):
    url = builtin_up.listening["gateway"]
    project = tmp_path / "shop"
    made = _pipit("init", str(project), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    deployed = await asyncio.to_thread(_deploy, project, url)
    assert deployed.returncode == 0, deployed.stderr
    assert "created datasource page_views" in deployed.stdout
    views = [
        {"timestamp": f"2026-11-29 12:00:{i:02d}", "session_id": f"s{i % 3}", "path": f"/p{i % 4}",
         "country": ("NL", "US")[i % 2]}
        for i in range(20)
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        assert await _post(http, url, "page_views", views) == {
            "successful_rows": 20,
            "quarantined_rows": 0,
        }
        top = await _pipe(http, url, "top_pages", country="NL")
        assert top == [
            {"path": "/p0", "views": 5, "sessions": 3},
            {"path": "/p2", "views": 5, "sessions": 3},
        ]

        # gRPC, through stubs generated from `pipit protos`.
        protos = tmp_path / "protos"
        written = _pipit("protos", str(project), "--out", str(protos), cwd=tmp_path)
        assert written.returncode == 0, written.stderr
        rows = await asyncio.to_thread(
            _call_through_generated_stubs, protos, tmp_path / "stubs", builtin_up.listening["query"]
        )
        assert rows == [["/p1", 5.0, 3.0]]

        # A changed pipe is served within 5 s.
        pipe = project / "pipes" / "top_pages.pipe"
        pipe.write_text(pipe.read_text().replace("count() AS views", "count() * 10 AS views"))
        changed = await asyncio.to_thread(_deploy, project, url)
        assert changed.returncode == 0, changed.stderr
        assert "updated pipe top_pages" in changed.stdout
        deadline = time.monotonic() + 5

        async def tenfold() -> list | None:
            rows = await _pipe(http, url, "top_pages", country="NL")
            return rows if rows[0]["views"] == 50 else None

        assert await _until(tenfold, deadline) is not None

        # A broken pipe is refused with file:line; every pipe keeps answering.
        broken = project / "pipes" / "broken.pipe"
        broken.write_text("NODE broken_node\nSQL >\n    SELECT nope\n    FROM page_views\n")
        refused = await asyncio.to_thread(_deploy, project, url)
        assert refused.returncode == 1
        assert "pipes/broken.pipe:3:" in refused.stderr and "nope" in refused.stderr
        assert (await _pipe(http, url, "top_pages", country="NL"))[0]["views"] == 50
        broken.unlink()

        # The datasource gains a column and keeps its rows.
        datasource = project / "datasources" / "page_views.datasource"
        datasource.write_text(
            datasource.read_text().replace(
                "`country` LowCardinality(String) `json:$.country`",
                "`country` LowCardinality(String) `json:$.country`,\n"
                "    `referrer` String `json:$.referrer` DEFAULT 'direct'",
            )
        )
        grown = await asyncio.to_thread(_deploy, project, url)
        assert grown.returncode == 0, grown.stderr
        assert "added column page_views.referrer" in grown.stdout
        await _post(http, url, "page_views", [{**views[0], "referrer": "https://x.example"}])
        async with http.get(
            f"{url}/v0/sql",
            params={"q": "SELECT referrer, count() AS n FROM page_views GROUP BY referrer "
                    "ORDER BY referrer"},
            headers=HEADERS,
        ) as r:  # fmt: skip
            assert (await r.json())["data"] == [
                {"referrer": "direct", "n": 20},
                {"referrer": "https://x.example", "n": 1},
            ]

        # Dropping the column loses data: refused unless asked for.
        datasource.write_text(datasource.read_text().replace(
            ",\n    `referrer` String `json:$.referrer` DEFAULT 'direct'", ""))  # fmt: skip
        lossy = await asyncio.to_thread(_deploy, project, url)
        assert lossy.returncode == 1 and "dropping column page_views.referrer" in lossy.stderr


# --- three processes, one deploy ---------------------------------------------------------------


async def test_one_deploy_reaches_three_processes(tmp_path: Path, clickhouse_url: str):
    ingest_port, query_port, gateway_port = free_port(), free_port(), free_port()
    common = {
        "PIPIT_CLICKHOUSE_URL": clickhouse_url,
        "PIPIT_DATABASE": unique_database("deploys"),
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_DATA_DIR": str(tmp_path / "unused"),
        "PIPIT_FLUSH_INTERVAL": "0.05",
    }
    ingest = start_pipit(
        ["ingest"], {**common, "PIPIT_INGEST_PORT": str(ingest_port), "PIPIT_METRICS_PORT": "0"},
        {"ingest"},
    )  # fmt: skip
    query = start_pipit(["query"], {**common, "PIPIT_QUERY_PORT": str(query_port)}, {"query"})
    gateway = start_pipit(
        ["gateway"],
        {
            "PIPIT_GATEWAY_PORT": str(gateway_port),
            "PIPIT_INGEST_TARGET": f"127.0.0.1:{ingest_port}",
            "PIPIT_QUERY_TARGET": f"127.0.0.1:{query_port}",
        },
        {"gateway"},
    )
    url = gateway.listening["gateway"]
    try:
        project = tmp_path / "shop"
        assert _pipit("init", str(project), cwd=tmp_path).returncode == 0
        deployed = await asyncio.to_thread(_deploy, project, url)
        assert deployed.returncode == 0, deployed.stderr
        deadline = time.monotonic() + 5
        event = {
            "timestamp": "2026-11-29 12:00:00",
            "session_id": "s",
            "path": "/",
            "country": "NL",
        }
        async with aiohttp.ClientSession() as http:

            async def ingested() -> dict | None:
                # Through the gateway (its routes) to ingest (its datasources).
                async with http.post(
                    f"{url}/v0/events", params={"name": "page_views", "wait": "true"},
                    data=orjson.dumps(event), headers=HEADERS,
                ) as r:  # fmt: skip
                    return await r.json() if r.status == 200 else None

            assert await _until(ingested, deadline) == {"successful_rows": 1, "quarantined_rows": 0}
            assert await _pipe(http, url, "top_pages") == [{"path": "/", "views": 1, "sessions": 1}]
    finally:
        codes = [gateway.stop(), query.stop(), ingest.stop()]
    assert codes == [0, 0, 0]


# --- nothing acknowledged is lost across deploys --------------------------------------------


@pytest.fixture
async def project_suite(embedded_warehouse, tmp_path: Path) -> AsyncIterator[Any]:
    folder = tmp_path / "shop"
    assert _pipit("init", str(folder), cwd=tmp_path).returncode == 0
    suite = await start_suite(embedded_warehouse, project=folder)
    yield suite, folder
    await suite.stop()


async def test_nothing_acknowledged_is_lost_across_deploys_under_load(project_suite):
    suite, folder = project_suite
    acknowledged = 0
    stop = asyncio.Event()
    landed = asyncio.Condition()  # notified as `acknowledged` grows

    async def load(http: aiohttp.ClientSession, worker: int) -> None:
        nonlocal acknowledged
        n = 0
        while not stop.is_set():
            rows = [
                {"timestamp": "2026-11-29 12:00:00", "session_id": f"w{worker}", "path": f"/{n}",
                 "country": "NL"}
                for _ in range(50)
            ]  # fmt: skip
            body = b"\n".join(orjson.dumps(r) for r in rows)
            async with http.post(
                f"{suite.gateway_url}/v0/events", params={"name": "page_views"}, data=body,
                headers=HEADERS,
            ) as r:  # fmt: skip
                if r.status == 202:
                    acknowledged += (await r.json())["successful_rows"]
                    async with landed:
                        landed.notify_all()
            n += 1

    async def more_rows_acknowledged() -> None:
        """Until each loader's worth of rows more has been acknowledged (bounded)."""
        since = acknowledged
        async with asyncio.timeout(60), landed:
            await landed.wait_for(lambda: acknowledged >= since + 3 * 50)

    async with aiohttp.ClientSession() as http:
        loaders = [asyncio.create_task(load(http, w)) for w in range(3)]
        deployments = []
        datasource = folder / "datasources" / "page_views.datasource"
        pipe = folder / "pipes" / "top_pages.pipe"
        for step in range(3):
            await more_rows_acknowledged()  # rows flow between deploys
            if step == 0:
                datasource.write_text(datasource.read_text().replace(
                    "`country` LowCardinality(String) `json:$.country`",
                    "`country` LowCardinality(String) `json:$.country`,\n"
                    "    `campaign` String `json:$.campaign` DEFAULT ''"))  # fmt: skip
            else:
                pipe.write_text(pipe.read_text().replace("LIMIT", f"-- {step}\n    LIMIT"))
            deployments.append(await asyncio.to_thread(_deploy, folder, suite.gateway_url))
        stop.set()
        await asyncio.gather(*loaders)
    assert [d.returncode for d in deployments] == [0, 0, 0], [d.stderr for d in deployments]
    assert acknowledged > 0
    await suite.ingest.batcher.flush_all()
    stored = await suite.warehouse.query("SELECT count() AS n FROM page_views", {})
    assert stored.data == [{"n": acknowledged}]


async def test_pipit_seed_fills_a_deployed_datasource(builtin_up: PipitProcess, tmp_path: Path):
    url = builtin_up.listening["gateway"]
    project = tmp_path / "shop"
    assert _pipit("init", str(project), cwd=tmp_path).returncode == 0
    deployed = await asyncio.to_thread(_deploy, project, url)
    assert deployed.returncode == 0, deployed.stderr
    seeded = await asyncio.to_thread(
        _pipit,
        "seed", "--datasource", "page_views", "--events", "300",
        "--ingest-target", builtin_up.listening["ingest"],
        "--query-target", builtin_up.listening["query"],
        "--admin-token", TOKEN,
        cwd=tmp_path,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    assert "sent 300 rows" in seeded.stdout
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/v0/sql",
            params={"q": "SELECT count() AS n, uniqExact(path) AS paths FROM page_views"},
            headers=HEADERS,
        ) as r:
            data = (await r.json())["data"]
    assert data[0]["n"] == 300 and data[0]["paths"] > 1
