"""A Data Sources API upload streams through both gateways (issue 16: "a file larger than memory
is never held whole"): a multipart CSV several times larger than a memory cap set here is
imported through our gateway and through the real Envoy while every Python allocation of this
process (our gateway, the ingest service, the importer, the test's own client reading the file
from disk) stays under the cap; every row lands, the bad rows are in the quarantine with their
reasons. Envoy is another process: what proves it streams is that the service received the
body in many messages (ImportData is client-streaming) and that it holds no buffer for the
route (tests/test_envoy_config.py). Expected counts and sums come from the generated rows."""

from __future__ import annotations

import csv
import io
import random
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import unique_database
from gateway_pair import GATEWAYS, GatewayPair, service_targets, start_pair
from harness import TOKEN, Suite, start_suite
from import_files import COLUMNS, DS

from common.warehouse.embedded import EmbeddedWarehouse

pytestmark = [pytest.mark.e2e, pytest.mark.envoy]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
IMPORT_MAX_BODY = 64 * 1024 * 1024
ROWS = 120_000
BAD = 41
# Wide rows: the file is large in bytes (what a held body would cost) for the rows it has
# (what the import's time goes by).
PADDING = "0123456789abcdef" * 12


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("streamed"))
    await warehouse.open()
    running = await start_suite(
        warehouse,
        gateway=False,
        import_batch_rows=200,
        import_max_body_bytes=IMPORT_MAX_BODY,
    )
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def pair(
    suite: Suite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayPair]:
    running = await start_pair(
        service_targets(suite.ingest.grpc, suite.query),
        tmp_path_factory.mktemp("envoy-logs"),
        max_body_bytes=1024 * 1024,
        import_max_body_bytes=IMPORT_MAX_BODY,
        # From the body's end to the answer (as Envoy's route timeout counts): the import
        # still has what the pipes and gRPC's window hold, read slowly under tracemalloc.
        request_timeout=300,
    )
    yield running
    await running.stop()


def _write_csv(path: Path, test_id: str) -> tuple[int, float]:
    """A CSV file of ROWS good rows and BAD rows that fail validation, written a row at a
    time; answers the good rows' count and revenue."""
    rng = random.Random(test_id)
    revenue = 0.0
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(ROWS):
            amount = round(rng.uniform(0, 100), 2)
            revenue += amount
            # 2000 distinct times: the validator's cache of parsed times stays small.
            second = i % 2000
            writer.writerow(
                [
                    f"2024-05-01 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}",
                    f"user_{rng.randrange(50)}",
                    test_id,
                    rng.choice("AB"),
                    "view",
                    rng.choice([0, 1]),
                    amount,
                    f"s{rng.randrange(99)}-{PADDING}",
                    rng.choice(["mobile", "desktop"]),
                    rng.choice(["US", "ES"]),
                ]
            )
        for i in range(BAD):
            writer.writerow(["not a time", f"u{i}", test_id, "A", "view", 1, 1.0, "s", "d", "US"])
    return ROWS, round(revenue, 2)


async def _stored(suite: Suite, test_id: str) -> dict[str, Any]:
    result = await suite.warehouse.query(
        "SELECT count() AS n, round(sum(revenue), 2) AS revenue FROM ab_test_events "
        "WHERE test_id = {t:String}",
        {"t": test_id},
    )
    return result.data[0]


async def _quarantined(suite: Suite, test_id: str) -> list[str]:
    result = await suite.warehouse.query(
        "SELECT error FROM ab_test_events_quarantine WHERE positionUTF8(raw, {t:String}) > 0",
        {"t": test_id},
    )
    return [row["error"] for row in result.data]


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_an_upload_far_larger_than_a_memory_cap_streams_under_it(
    pair: GatewayPair, suite: Suite, tmp_path: Path, gateway: str
) -> None:
    test_id = f"streamed-{gateway}"
    path = tmp_path / "big.csv"
    rows, revenue = _write_csv(path, test_id)
    size = path.stat().st_size
    cap = size // 4  # about 6.6 MB
    tracemalloc.start()
    try:
        with path.open("rb") as file:
            form = aiohttp.FormData()
            form.add_field("csv", file, filename="big.csv", content_type="text/csv")
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{pair.urls[gateway]}/v0/datasources?name={DS}&mode=append",
                    data=form,
                    headers=AUTH,
                ) as response,
            ):
                status, answer = response.status, orjson.loads(await response.read())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 200, answer
    # The call answers once the file is in: its job is over.
    job = answer["job"]
    assert (job["status"], job["statistics"]["row_count"], job["quarantine_rows"]) == (
        "done",
        rows,
        BAD,
    ), job
    assert peak < cap, (peak, cap, size)
    assert await _stored(suite, test_id) == {"n": rows, "revenue": revenue}
    reasons = await _quarantined(suite, test_id)
    assert len(reasons) == BAD
    assert all("timestamp" in reason for reason in reasons), reasons[:3]


async def test_a_streamed_body_over_the_limit_is_refused_alike(
    pair: GatewayPair, suite: Suite
) -> None:
    async def over() -> AsyncIterator[bytes]:
        # Chunked: no length to refuse up front, so the limit is met while it streams (a
        # Parquet body, spooled to disk: nothing to import before the limit is reached).
        piece = b"PAR1" + b"\0" * (1024 * 1024 - 4)
        for _ in range(IMPORT_MAX_BODY // len(piece) + 2):
            yield piece

    answers = []
    async with aiohttp.ClientSession() as http:
        for gateway in GATEWAYS:
            async with http.post(
                f"{pair.urls[gateway]}/v0/datasources?name={DS}&format=parquet",
                data=over(),
                headers=AUTH,
            ) as response:
                answers.append((response.status, orjson.loads(await response.read())))
    status, answer = answers[0]
    assert status == 413, answer
    assert answer["error"] == f"request body exceeds the limit of {IMPORT_MAX_BODY} bytes"
    assert answers[1] == answers[0]


async def test_a_body_cut_short_ends_its_job_with_the_reason(
    suite: Suite, pair: GatewayPair
) -> None:
    boundary = "cut-7f"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csv"; filename="c.csv"\r\n\r\n'
    ).encode() + b"".join(
        f"2024-05-01 00:00:00,u{i},cut,A,view,1,1.0,s,d,US\n".encode() for i in range(5000)
    )
    answers = []
    async with aiohttp.ClientSession() as http:
        for gateway in GATEWAYS:
            # The form never closes: the body ends inside the file part, after its import
            # started (past the bytes read to tell the file's format).
            async with http.post(
                f"{pair.urls[gateway]}/v0/datasources?name={DS}",
                data=io.BytesIO(head),
                headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            ) as response:
                answers.append((response.status, orjson.loads(await response.read())))
    status, answer = answers[0]
    assert status == 400, answer
    assert answer["error"] == "multipart body without its closing boundary"
    assert answers[1] == answers[0]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{pair.urls['pipit']}/v0/jobs?status=error", headers=AUTH) as response,
    ):
        jobs = orjson.loads(await response.read())["jobs"]
    reasons = [j["error"] for j in jobs if j["datasource"]["name"] == DS]
    assert reasons.count("multipart body without its closing boundary") == 2
