"""Tinybird's own clients, unchanged, against `pipit up` (our gateway and the real Envoy):
Python's `tinybird-sdk` (`create_tinybird_api`) and `tinybird-python-sdk` (`Datasource`,
`API`), and TypeScript's `@tinybirdco/sdk` (`createTinybirdApi`, run by Node.js from
tests/clients/js). Each ingests events, reads a pipe and runs SQL the way its README shows;
the answers are checked against plain Python over the events that client sent (each client
writes its own A/B test, so the clients' data never mix). The SQL is the test's own text
(S608 waived): composing queries is what a Query API client does."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from expected import test_summary as expected_summary
from gateway_pair import require_envoy
from harness import TOKEN
from processes import start_up

pytestmark = pytest.mark.e2e

CLIENTS = Path(__file__).parent / "clients"
JS_CLIENT = CLIENTS / "js"
PY_CLIENT = CLIENTS / "python"
DATASOURCE = "ab_test_events"
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)


def _events(test_id: str, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2024, 3, 1)
    return [
        {
            "timestamp": (start + timedelta(minutes=7 * i)).strftime("%Y-%m-%d %H:%M:%S"),
            "user_id": f"user_{rng.randrange(12)}",
            "test_id": test_id,
            "variant": rng.choice("AB"),
            "event_type": rng.choice(["page_view", "click", "purchase"]),
            "conversion": rng.choice([0, 0, 1]),
            "revenue": round(rng.uniform(0, 90), 2),
            "session_id": f"session_{rng.randrange(30)}",
            "device": rng.choice(["mobile", "desktop"]),
            "country": rng.choice(["US", "ES", "DE"]),
        }
        for i in range(count)
    ]


def _revenue(events: list[dict[str, Any]]) -> float:
    return round(sum(e["revenue"] for e in events), 2)


@pytest.fixture(scope="module", params=["ours", pytest.param("envoy", marks=pytest.mark.envoy)])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    kind = request.param
    if kind == "envoy":
        require_envoy()
    tmp = tmp_path_factory.mktemp(f"sdk-{kind}")
    logs = (tmp / "up.log").open("ab")
    up = start_up(tmp, TOKEN, *(["--gateway", "envoy"] if kind == "envoy" else []), stderr=logs)
    try:
        yield up.listening["gateway"]
    finally:
        code = up.stop()
        logs.close()
    assert code == 0


@pytest.fixture(scope="session")
def tinybird_sdk() -> Any:
    """`tinybird-sdk`, from tests/clients/python (installed there on first use)."""
    site = PY_CLIENT / "site-packages"
    if not (site / "tinybird_sdk").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                "-r",
                str(PY_CLIENT / "requirements.txt"),
            ],
            check=True,
        )
    sys.path.insert(0, str(site))
    import tinybird_sdk

    return tinybird_sdk


@pytest.fixture(scope="session")
def node() -> str:
    """Node.js, with tests/clients/js's packages (`npm ci` there on first use)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node and npm, "Node.js and npm are needed to run Tinybird's TypeScript SDK"
    if not (JS_CLIENT / "node_modules" / "@tinybirdco" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=JS_CLIENT, check=True
        )
    return node


def _expected_summary(events: list[dict[str, Any]], test_id: str) -> list[dict[str, Any]]:
    return expected_summary(events, test_id=test_id)


def _assert_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected) > 0
    for row, want in zip(got, expected, strict=True):
        assert row.keys() >= want.keys()
        for key, value in want.items():
            assert row[key] == pytest.approx(value), key


def test_tinybird_sdk_python(base_url: str, tinybird_sdk: Any) -> None:
    api = tinybird_sdk.create_tinybird_api({"base_url": base_url, "token": TOKEN})
    test_id = "sdk_python"
    events = _events(test_id, 60, seed=1)
    # wait=true (the SDK's default): answered once the rows are stored.
    assert api.ingest_batch(DATASOURCE, events) == {
        "successful_rows": len(events),
        "quarantined_rows": 0,
    }

    summary = api.query("test_summary", {"test_id": test_id})
    _assert_rows(summary["data"], _expected_summary(events, test_id))

    answer = api.sql(
        f"SELECT count() AS events, sum(revenue) AS revenue FROM {DATASOURCE} "  # noqa: S608
        f"WHERE test_id = '{test_id}'"
    )
    assert answer["data"] == [{"events": len(events), "revenue": pytest.approx(_revenue(events))}]
    assert [c["name"] for c in answer["meta"]] == ["events", "revenue"]

    # 64-bit integers come back exact, as Tinybird prints them: numbers, not doubles.
    bounds = api.sql(
        f"SELECT toUInt64({UINT64_MAX}) AS top, toInt64({INT64_MIN}) AS bottom, "
        f"toInt64({2**53 + 1}) AS odd"
    )
    assert bounds["data"] == [{"top": UINT64_MAX, "bottom": INT64_MIN, "odd": 2**53 + 1}]

    # Errors carry the reason, which the SDK reports as the message.
    with pytest.raises(tinybird_sdk.TinybirdApiError) as refused:
        api.sql("SELECT * FROM no_such_datasource")
    assert refused.value.status_code in (400, 403, 404)
    assert "no_such_datasource" in str(refused.value)
    assert "Request failed" not in str(refused.value)
    with pytest.raises(tinybird_sdk.TinybirdApiError) as bad:
        api.query("test_summary", {"start_date": "yesterday"})
    assert bad.value.status_code == 400
    assert "start_date" in str(bad.value)


def test_tinybird_python_sdk(base_url: str) -> None:
    from tb.api import API
    from tb.datasource import Datasource

    test_id = "sdk_python_legacy"
    events = _events(test_id, 45, seed=2)
    # The README's ingest: buffered NDJSON to the Events API, flushed on leaving the block.
    with Datasource(DATASOURCE, TOKEN, api_url=base_url) as ds:
        for event in events:
            ds << event

    api = API(TOKEN, base_url)
    count_sql = f"SELECT count() AS n FROM {DATASOURCE} WHERE test_id = '{test_id}' FORMAT JSON"  # noqa: S608
    # The Events API acknowledged the rows without wait=true: readable once flushed (0.1 s).
    deadline = time.monotonic() + 30
    while (counted := api.get("sql", params={"q": count_sql}).json()["data"][0]["n"]) < len(
        events
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted == len(events)

    summary = api.get("pipes/test_summary.json", params={"test_id": test_id}).json()
    _assert_rows(summary["data"], _expected_summary(events, test_id))

    csv = api.post(
        "sql",
        data=f"SELECT variant, count() AS n FROM {DATASOURCE} "  # noqa: S608
        f"WHERE test_id = '{test_id}' GROUP BY variant ORDER BY variant FORMAT CSV",
    )
    variants = sorted({e["variant"] for e in events})
    assert csv.text == "".join(
        f'"{v}",{sum(e["variant"] == v for e in events)}\n' for v in variants
    )


def _node_calls(node: str, base_url: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, "calls.mjs"],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        cwd=JS_CLIENT,
        env={"PATH": str(Path(node).parent), "PIPIT_URL": base_url, "PIPIT_TOKEN": TOKEN},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_tinybird_sdk_typescript(base_url: str, node: str) -> None:
    test_id = "sdk_typescript"
    events = _events(test_id, 50, seed=3)
    sql = (
        f"SELECT count() AS events, uniqExact(user_id) AS users FROM {DATASOURCE} "  # noqa: S608
        f"WHERE test_id = '{test_id}'"
    )
    calls = [
        {"call": "ingest", "args": [DATASOURCE, events[0]]},
        {"call": "ingestBatch", "args": [DATASOURCE, events[1:]]},
        {"call": "query", "args": ["test_summary", {"test_id": test_id}]},
        {"call": "sql", "args": [sql]},
        {"call": "sql", "args": ["SELECT * FROM no_such_datasource"]},
        {"call": "query", "args": ["test_summary", {"start_date": "yesterday"}]},
    ]
    ingested, batch, summary, answer, refused, bad = _node_calls(node, base_url, calls)
    assert ingested == {"ok": True, "value": {"successful_rows": 1, "quarantined_rows": 0}}
    assert batch == {
        "ok": True,
        "value": {"successful_rows": len(events) - 1, "quarantined_rows": 0},
    }
    assert summary["ok"], summary
    _assert_rows(summary["value"]["data"], _expected_summary(events, test_id))
    assert answer["ok"], answer
    assert answer["value"]["data"] == [
        {"events": len(events), "users": len({e["user_id"] for e in events})}
    ]
    assert not refused["ok"] and "no_such_datasource" in refused["error"]
    assert "Request failed" not in refused["error"]
    assert not bad["ok"] and bad["status"] == 400 and "start_date" in bad["error"]


def _job_done(base_url: str, job_id: str) -> dict[str, Any]:
    """The job once it is over (a readiness wait, bounded)."""
    from tb.api import API

    api = API(TOKEN, base_url)
    deadline = time.monotonic() + 60
    while (job := api.get(f"jobs/{job_id}").json())["status"] not in ("done", "error"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def _count(base_url: str, test_id: str) -> int:
    from tb.api import API

    q = f"SELECT count() AS n FROM {DATASOURCE} WHERE test_id = '{test_id}'"  # noqa: S608
    return API(TOKEN, base_url).get("sql", params={"q": q}).json()["data"][0]["n"]


def _csv_of(events: list[dict[str, Any]]) -> str:
    columns = list(events[0])
    return (
        "\n".join([",".join(columns), *(",".join(str(e[c]) for c in columns) for e in events)])
        + "\n"
    )


def test_data_sources_api_from_the_python_sdk(base_url: str, tmp_path: Path) -> None:
    from tb.api import API

    test_id = "sdk_python_bulk"
    events = _events(test_id, 80, seed=4)
    api = API(TOKEN, base_url)
    # As Tinybird's docs call it: the file as a multipart `csv` part, the datasource in the query.
    answer = api.post(
        "datasources",
        params={"name": DATASOURCE, "mode": "append"},
        files={"csv": ("events.csv", _csv_of(events))},
    ).json()
    job = _job_done(base_url, answer["id"])
    assert (job["status"], job["statistics"]["row_count"], job["quarantine_rows"]) == (
        "done",
        len(events),
        0,
    )
    assert _count(base_url, test_id) == len(events)


def test_data_sources_api_from_the_typescript_sdk(base_url: str, node: str, tmp_path: Path) -> None:
    test_id = "sdk_typescript_bulk"
    events = _events(test_id, 90, seed=5)
    csv_file = tmp_path / "events.csv"
    csv_file.write_text(_csv_of(events))
    ndjson_file = tmp_path / "more.ndjson"
    more = _events(test_id, 30, seed=6)
    ndjson_file.write_text("".join(json.dumps(e) + "\n" for e in more))
    [appended, appended_ndjson] = _node_calls(
        node,
        base_url,
        [
            {"call": "appendDatasource", "args": [DATASOURCE, {"file": str(csv_file)}]},
            {"call": "appendDatasource", "args": [DATASOURCE, {"file": str(ndjson_file)}]},
        ],
    )
    assert appended["ok"] and appended_ndjson["ok"], (appended, appended_ndjson)
    for answer in (appended, appended_ndjson):
        assert _job_done(base_url, answer["value"]["id"])["status"] == "done"
    everything = events + more
    assert _count(base_url, test_id) == len(everything)

    doomed = sum(e["variant"] == "A" for e in everything)
    condition = f"test_id = '{test_id}' AND variant = 'A'"
    dry, deleted = _node_calls(
        node,
        base_url,
        [
            {
                "call": "deleteDatasource",
                "args": [DATASOURCE, {"deleteCondition": condition, "dryRun": True}],
            },
            {"call": "deleteDatasource", "args": [DATASOURCE, {"deleteCondition": condition}]},
        ],
    )
    assert dry["ok"] and dry["value"]["rows_to_be_deleted"] == doomed, dry
    assert deleted["ok"], deleted
    job = _job_done(base_url, deleted["value"]["id"])
    assert (job["status"], job["rows_affected"]) == ("done", doomed)
    assert _count(base_url, test_id) == len(everything) - doomed

    [refused, truncated] = _node_calls(
        node,
        base_url,
        [
            {"call": "deleteDatasource", "args": [DATASOURCE, {"deleteCondition": "1=1) OR (1=1"}]},
            {"call": "truncateDatasource", "args": [DATASOURCE]},
        ],
    )
    assert not refused["ok"] and refused["status"] == 400, refused
    assert truncated["ok"] and truncated["value"]["status"] == "done", truncated
    assert _count(base_url, test_id) == 0
