"""The Data Sources API (issue 16, item 1) through our gateway: imports from a multipart or
raw body and from url= (CSV with and without a header, NDJSON, Parquet, gzip), run as jobs
the Jobs API reports; invalid rows quarantined with their reasons; replace under concurrent
reads; truncate; delete with a checked condition and its attack corpus; who may do what.
Expected rows and counts are computed here in plain Python from the files the tests write."""

from __future__ import annotations

import asyncio
import gzip
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from harness import start_suite
from import_files import (
    DS,
    FileServer,
    ab_rows,
    api_call,
    csv_bytes,
    ndjson_bytes,
    parquet_bytes,
    run_import,
)

from common.tokens import TokenFile

pytestmark = pytest.mark.e2e


@pytest.fixture
async def suite(embedded_warehouse):
    running = await start_suite(
        embedded_warehouse, import_batch_rows=100, import_allow_private_urls=True
    )
    yield running
    await running.stop()


def _reason(answer: dict) -> str:
    # Tinybird's `error` once the error bodies carry it (issue 15), gRPC's message until then.
    return answer.get("error") or answer["message"]


async def _stored(suite, test_id: str) -> list[dict[str, Any]]:
    result = await suite.warehouse.query(
        "SELECT formatDateTime(timestamp, '%Y-%m-%d %H:%i:%S') AS timestamp, user_id, test_id, "
        "variant, event_type, conversion, revenue, session_id, device, country "
        "FROM ab_test_events WHERE test_id = {t:String} ORDER BY timestamp",
        {"t": test_id},
    )
    return result.data


async def _quarantine(suite) -> list[dict[str, Any]]:
    result = await suite.warehouse.query(
        "SELECT raw, error FROM ab_test_events_quarantine ORDER BY raw", {}
    )
    return result.data


def _form(field: str, filename: str, data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return form


async def test_csv_upload_with_header_lands_every_row_and_quarantines_bad_ones(suite):
    rows = ab_rows(450, seed=1, test_id="csv")
    bad = [
        ["2024-05-01 00:00:00", "u", "csv", "A", "view", "300", "1.0", "s", "d", "US"],
        ["not a time", "u", "csv", "A", "view", "1", "1.0", "s", "d", "US"],
    ]
    body = csv_bytes(rows) + b"".join((",".join(cells) + "\n").encode() for cells in bad)
    job = await run_import(
        suite, f"/v0/datasources?name={DS}&mode=append", data=_form("csv", "x.csv", body)
    )
    assert job["status"] == "done", job
    assert job["kind"] == "import" and job["mode"] == "append" and job["format"] == "csv"
    assert job["statistics"] == {"bytes": len(body), "row_count": 450}
    assert (job["quarantine_rows"], job["invalid_lines"], job["progress_percentage"]) == (2, 0, 100)
    assert job["datasource"] == {"id": DS, "name": DS}
    stored = await _stored(suite, "csv")
    assert sorted(stored, key=lambda r: (r["timestamp"], r["user_id"], r["revenue"])) == sorted(
        rows, key=lambda r: (r["timestamp"], r["user_id"], r["revenue"])
    )
    quarantined = await _quarantine(suite)
    assert [q["raw"] for q in quarantined] == sorted(",".join(cells) for cells in bad)
    reasons = {q["raw"].split(",")[0]: q["error"] for q in quarantined}
    assert (
        "conversion" in reasons["2024-05-01 00:00:00"] and "300" in reasons["2024-05-01 00:00:00"]
    )
    assert "timestamp" in reasons["not a time"]


async def test_raw_bodies_csv_without_header_with_a_dialect_and_gzip_ndjson(suite):
    rows = ab_rows(230, seed=2, test_id="raw")
    job = await run_import(
        suite,
        f"/v0/datasources?name={DS}&format=csv&dialect_delimiter=%3B",
        data=csv_bytes(rows, header=False, delimiter=";"),
    )
    assert (job["status"], job["statistics"]["row_count"]) == ("done", 230), job
    more = ab_rows(170, seed=3, test_id="gz")
    job = await run_import(
        suite, f"/v0/datasources?name={DS}&format=ndjson", data=gzip.compress(ndjson_bytes(more))
    )
    assert (job["status"], job["statistics"]["row_count"]) == ("done", 170), job
    assert len(await _stored(suite, "raw")) == 230
    assert len(await _stored(suite, "gz")) == 170


async def test_ndjson_lines_that_are_not_json_are_invalid_lines_with_reasons(suite):
    rows = ab_rows(120, seed=4, test_id="nd")
    body = ndjson_bytes(rows[:60]) + b"{not json\n" + ndjson_bytes(rows[60:])
    job = await run_import(
        suite, f"/v0/datasources?name={DS}", data=_form("ndjson", "e.ndjson", body)
    )
    assert job["status"] == "done", job
    assert (job["statistics"]["row_count"], job["quarantine_rows"], job["invalid_lines"]) == (
        120,
        1,
        1,
    )
    [quarantined] = await _quarantine(suite)
    assert quarantined["raw"] == "{not json"
    assert quarantined["error"].startswith("line 61: not valid JSON")


@pytest.fixture
async def files():
    server = FileServer()
    await server.start()
    yield server
    await server.stop()


async def test_parquet_from_a_url_following_a_redirect(suite, files):
    rows = ab_rows(333, seed=5, test_id="pq")
    files.files["data.parquet"] = parquet_bytes(rows)
    job = await run_import(suite, f"/v0/datasources?name={DS}", data={"url": f"{files.url}/moved"})
    assert job["status"] == "done", job
    assert job["format"] == "parquet"  # told by its magic number: the URL names no format
    assert (job["statistics"]["row_count"], job["quarantine_rows"]) == (333, 0)
    stored = await _stored(suite, "pq")
    key = lambda r: (r["timestamp"], r["user_id"], r["revenue"])  # noqa: E731
    assert sorted(stored, key=key) == sorted(rows, key=key)


async def test_a_url_that_fails_is_a_failed_job_and_bad_urls_are_refused(suite, files):
    job = await run_import(suite, f"/v0/datasources?name={DS}&url={files.url}/missing.csv")
    assert job["status"] == "error"
    assert job["error"] == "fetching the url answered HTTP 404"
    assert job["errors"] == [job["error"]]
    for url in ("file:///etc/passwd", "ftp://example.com/x.csv", "gopher://x"):
        status, answer = await api_call(
            suite, "POST", f"/v0/datasources?name={DS}", data={"url": url}
        )
        assert status == 400, answer
        assert "http or https" in _reason(answer)


async def test_private_addresses_are_refused_unless_allowed(embedded_warehouse, files):
    suite = await start_suite(embedded_warehouse)  # import_allow_private_urls off
    try:
        files.files["a.csv"] = csv_bytes(ab_rows(3, seed=6))
        status, answer = await api_call(
            suite, "POST", f"/v0/datasources?name={DS}", data={"url": f"{files.url}/a.csv"}
        )
        assert status == 400
        assert _reason(answer) == "url names a private or local address: 127.0.0.1"
        for host in ("10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0"):
            status, answer = await api_call(
                suite, "POST", f"/v0/datasources?name={DS}", data={"url": f"http://{host}/x.csv"}
            )
            assert status == 400, (host, answer)
        # A name that resolves to loopback: refused when the connection is made.
        job = await run_import(
            suite,
            f"/v0/datasources?name={DS}",
            data={"url": f"{files.url.replace('127.0.0.1', 'localhost')}/a.csv"},
        )
        assert job["status"] == "error"
        assert job["error"].startswith("fetching the url failed: Cannot connect to host localhost")
        assert await _stored(suite, "bulk") == []
    finally:
        await suite.stop()


async def _count_and_revenue(warehouse) -> tuple[int, float]:
    result = await warehouse.query(
        "SELECT count() AS n, round(sum(revenue), 2) AS revenue FROM ab_test_events", {}
    )
    return result.data[0]["n"], result.data[0]["revenue"]


async def test_replace_swaps_at_once_under_concurrent_reads(suite):
    old, new = ab_rows(2000, seed=7, test_id="old"), ab_rows(3000, seed=8, test_id="new")
    job = await run_import(suite, f"/v0/datasources?name={DS}", data=ndjson_bytes(old))
    assert job["status"] == "done", job
    states = {
        (len(old), round(sum(r["revenue"] for r in old), 2)): "old",
        (len(new), round(sum(r["revenue"] for r in new), 2)): "new",
    }
    # A file in the body is imported while it streams in: the call answers when it is in.
    finished = asyncio.create_task(
        api_call(
            suite,
            "POST",
            f"/v0/datasources?name={DS}&mode=replace&format=ndjson",
            data=ndjson_bytes(new),
        )
    )
    seen = []
    # Reads go on until the job is over: with 100-row batches, 30 inserts into the staging
    # table, each a moment a non-atomic load would show.
    while not finished.done():
        seen.append(await _count_and_revenue(suite.warehouse))
    status, answer = await finished
    assert status == 200, answer
    seen.append(await _count_and_revenue(suite.warehouse))
    assert {states.get(s, s) for s in seen} <= {"old", "new"}, seen
    assert states[seen[-1]] == "new"
    assert len(seen) > 2
    status, job = await api_call(suite, "GET", f"/v0/jobs/{answer['id']}")
    assert (job["status"], job["mode"], job["statistics"]["row_count"]) == ("done", "replace", 3000)
    tables = await suite.warehouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND name LIKE '%replace%'",
        {},
    )
    assert tables.data == []  # the staging table (holding the old rows at the end) is gone


async def test_truncate_empties_the_datasource(suite):
    await run_import(suite, f"/v0/datasources?name={DS}", data=csv_bytes(ab_rows(50, seed=9)))
    status, answer = await api_call(suite, "POST", f"/v0/datasources/{DS}/truncate")
    assert status == 200, answer
    assert (answer["status"], answer["job"]["kind"]) == ("done", "truncate")
    assert await _count_and_revenue(suite.warehouse) == (0, 0)
    status, answer = await api_call(suite, "POST", "/v0/datasources/nope/truncate")
    assert status == 404


async def test_delete_counts_then_deletes_the_rows_its_condition_selects(suite):
    rows = ab_rows(400, seed=10, test_id="del")
    await run_import(suite, f"/v0/datasources?name={DS}", data=csv_bytes(rows))
    doomed = [r for r in rows if r["country"] == "ES" and r["revenue"] > 30]
    condition = "country = 'ES' AND revenue > 30"
    status, answer = await api_call(
        suite,
        "POST",
        f"/v0/datasources/{DS}/delete",
        data={"delete_condition": condition, "dry_run": "true"},
    )
    assert (status, answer["rows_to_be_deleted"]) == (200, len(doomed)), answer
    assert len(await _stored(suite, "del")) == len(rows)
    status, answer = await api_call(
        suite, "POST", f"/v0/datasources/{DS}/delete", data={"delete_condition": condition}
    )
    assert status == 200, answer
    assert answer["delete_id"] == answer["id"] == answer["job"]["id"]
    await suite.ingest.datasources.wait_deletes()
    status, job = await api_call(suite, "GET", f"/v0/jobs/{answer['id']}")
    assert (job["status"], job["kind"], job["rows_affected"]) == (
        "done",
        "delete_data",
        len(doomed),
    )
    assert job["delete_condition"] == "(country = 'ES') AND (revenue > 30)"
    key = lambda r: (r["timestamp"], r["user_id"], r["revenue"])  # noqa: E731
    kept = [r for r in rows if r not in doomed]
    assert sorted(await _stored(suite, "del"), key=key) == sorted(kept, key=key)


# Each is refused before anything runs: other tables, subqueries, table functions, functions
# off the allow-list, settings, parameters, other statements, text that closes the WHERE.
DELETE_ATTACKS = [
    "1=1) OR (1=1",
    "1 = 1) OR 1 = (1",
    "1; DROP TABLE ab_test_events",
    "1 SETTINGS max_threads = 1",
    "1 FORMAT JSON",
    "1 UNION ALL SELECT 1",
    "1 GROUP BY 1",
    "1 LIMIT 1",
    "country IN (SELECT country FROM ab_test_events_quarantine)",
    "country IN ab_test_events_quarantine",
    "exists(SELECT 1)",
    "1 IN (SELECT 1 FROM file('/etc/passwd'))",
    "(SELECT count() FROM system.tables) > 0",
    "ab_test_events_quarantine.raw = ''",
    "system.one.dummy = 0",
    "hostName() != ''",
    "currentUser() != ''",
    "dictGet('d', 'a', 1) = 1",
    "arrayExists(x -> x = 1, [1])",
    "{p:String} = ''",
    "nosuchcolumn = 1",
    "",
    "x" * 9000,
]


async def test_delete_conditions_of_the_attack_corpus_are_refused_and_delete_nothing(suite):
    rows = ab_rows(60, seed=11, test_id="corpus")
    await run_import(suite, f"/v0/datasources?name={DS}", data=csv_bytes(rows))
    before = await _count_and_revenue(suite.warehouse)
    for condition in DELETE_ATTACKS:
        for dry_run in ("true", "false"):
            status, answer = await api_call(
                suite,
                "POST",
                f"/v0/datasources/{DS}/delete",
                data={"delete_condition": condition, "dry_run": dry_run},
            )
            assert status == 400, (condition, answer)
    await suite.ingest.datasources.wait_deletes()
    assert await _count_and_revenue(suite.warehouse) == before
    status, listed = await api_call(suite, "GET", "/v0/jobs?kind=delete_data")
    assert listed["jobs"] == []


async def test_jobs_list_newest_first_and_filters(suite):
    first = await run_import(
        suite, f"/v0/datasources?name={DS}", data=csv_bytes(ab_rows(5, seed=12))
    )
    # CSV sent as Parquet: a job that fails, and says why.
    second = await run_import(
        suite, f"/v0/datasources?name={DS}&format=parquet", data=csv_bytes(ab_rows(5, seed=13))
    )
    assert (first["status"], second["status"]) == ("done", "error")
    assert second["error"].startswith("not a Parquet file")
    status, answer = await api_call(suite, "GET", "/v0/jobs")
    assert status == 200
    assert [j["id"] for j in answer["jobs"]] == [second["id"], first["id"]]
    status, answer = await api_call(suite, "GET", "/v0/jobs?status=error")
    assert [j["id"] for j in answer["jobs"]] == [second["id"]]
    status, answer = await api_call(suite, "GET", "/v0/jobs?kind=truncate")
    assert answer["jobs"] == []
    status, answer = await api_call(suite, "GET", "/v0/jobs/0123456789abcdef")
    assert status == 404
    status, answer = await api_call(suite, "POST", f"/v0/datasources?name={DS}", data=b"")
    assert status == 400
    assert "send the file" in _reason(answer)
    status, answer = await api_call(suite, "POST", "/v0/datasources?name=nope", data=b"a,b")
    assert status == 404


async def test_an_append_token_appends_and_follows_its_job_but_destroys_nothing(
    embedded_warehouse, tmp_path
):
    tokens = TokenFile(tmp_path / "tokens.json")
    appender = tokens.create("appender", [f"DATASOURCES:APPEND:{DS}"])
    other = tokens.create("other", ["DATASOURCES:APPEND:user_events"])
    suite = await start_suite(embedded_warehouse, tokens_file=tmp_path / "tokens.json")
    try:
        auth = {"Authorization": f"Bearer {appender}"}
        job = await run_import(
            suite, f"/v0/datasources?name={DS}", data=csv_bytes(ab_rows(7, seed=14)), headers=auth
        )
        assert (job["status"], job["statistics"]["row_count"]) == ("done", 7)
        status, _ = await api_call(
            suite, "GET", f"/v0/jobs/{job['id']}", headers={"Authorization": f"Bearer {other}"}
        )
        assert status == 404  # as if there were no such job
        refused = [
            ("POST", f"/v0/datasources?name={DS}&mode=replace", {"data": b"x"}),
            (
                "POST",
                f"/v0/datasources?name={DS}",
                {"data": {"mode": "replace", "url": "http://a/b"}},
            ),
            ("POST", f"/v0/datasources/{DS}/truncate", {}),
            ("POST", f"/v0/datasources/{DS}/delete", {"data": {"delete_condition": "1"}}),
            ("GET", "/v0/jobs", {}),
            ("POST", "/v0/datasources?name=user_events", {"data": b"x"}),
        ]
        for method, path, kwargs in refused:
            status, answer = await api_call(suite, method, path, headers=auth, **kwargs)
            assert status == 403, (path, answer)
        assert (await _count_and_revenue(suite.warehouse))[0] == 7
    finally:
        await suite.stop()


async def _traced_import(url: str, batch_rows: int, tmp_path: Path) -> dict[str, Any]:
    """An import of `url` in batches of `batch_rows` by a suite in a process of its own
    (tests/import_memory_probe.py): its job, the most memory Python code held at once while
    it ran (every thread's allocations: the download, the reader, the validator, the inserts,
    and nothing of this process's), and what the datasource and its quarantine then hold."""
    out = tmp_path / f"probe-{batch_rows}.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("import_memory_probe.py")),
        str(tmp_path / f"data-{batch_rows}"),
        url,
        str(batch_rows),
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await process.communicate()
    assert process.returncode == 0, errors.decode()[-4000:]
    return orjson.loads(out.read_bytes())


async def test_an_import_far_larger_than_its_memory_cap_stays_under_it(files, tmp_path):
    # 2000 distinct times: the validator keeps a bounded cache of parsed times (100 000 of
    # them, common/column_values.py), which a file of more would fill to its bound; this test
    # measures the import's own buffers.
    rows = ab_rows(120_000, seed=15, test_id="big", times=2000)
    bad = 37
    path = tmp_path / "big.csv"
    body = csv_bytes(rows) + b"not a time,u,big,A,view,1,1.0,s,d,US\n" * bad
    path.write_bytes(body)
    files.paths["big.csv"] = path
    cap = len(body) // 4  # about 1.8 MB
    traced = await _traced_import(f"{files.url}/big.csv", 200, tmp_path)
    job = traced["job"]
    assert job["status"] == "done", job
    assert (job["statistics"]["row_count"], job["quarantine_rows"]) == (len(rows), bad)
    assert job["statistics"]["bytes"] == len(body)
    assert traced["peak"] < cap, (traced["peak"], cap)
    assert traced["stored"] == {
        "n": len(rows),
        "revenue": round(sum(r["revenue"] for r in rows), 2),
    }
    assert traced["quarantined"]["n"] == bad
    assert "timestamp" in traced["quarantined"]["error"]
    # The control: the same file in batches of 20 000 rows needs more than the cap, so the bound
    # above is the batch size's doing.
    traced = await _traced_import(f"{files.url}/big.csv", 20_000, tmp_path)
    job = traced["job"]
    assert (job["status"], job["statistics"]["row_count"]) == ("done", len(rows))
    assert traced["peak"] > cap, (traced["peak"], cap)
