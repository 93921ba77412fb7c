"""`pipit import` (issue 16): a local file streamed to the Data Sources API as a multipart form,
and a URL handed to the service, each followed to the end of its job; the rows in the
datasource are the file's, counted here in plain Python."""

from __future__ import annotations

import asyncio
import csv
import io
import sys

import pytest
from harness import TOKEN, start_suite
from import_files import COLUMNS, FileServer, ab_rows

pytestmark = pytest.mark.e2e

DS = "ab_test_events"


@pytest.fixture
async def suite(embedded_warehouse):
    running = await start_suite(embedded_warehouse, import_allow_private_urls=True)
    yield running
    await running.stop()


async def _pipit(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipit.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def _count(suite, test_id: str) -> int:
    result = await suite.warehouse.query(
        "SELECT count() AS n FROM ab_test_events WHERE test_id = {t:String}", {"t": test_id}
    )
    return result.data[0]["n"]


async def test_a_local_file_and_a_url(suite, tmp_path):
    rows = ab_rows(2500, seed=21, test_id="cli")
    path = tmp_path / "events.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows([r[c] for c in COLUMNS] for r in rows)
        writer.writerow(["bad time", "u", "cli", "A", "v", "1", "1", "s", "d", "US"])
    code, out, err = await _pipit(
        "import", str(path), "--datasource", DS, "--url", suite.gateway_url, "--token", TOKEN
    )
    assert code == 0, err
    assert out.endswith(f"done, 2500 rows into {DS}, 1 quarantined\n"), out
    assert "upload" in err  # the progress bars
    assert await _count(suite, "cli") == 2500

    files = FileServer()
    await files.start()
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerows([r[c] for c in COLUMNS] for r in ab_rows(700, seed=22, test_id="cli-url"))
        files.files["more.csv"] = buffer.getvalue().encode()
        code, out, err = await _pipit(
            "import",
            f"{files.url}/more.csv",
            "--datasource",
            DS,
            "--url",
            suite.gateway_url,
            "--token",
            TOKEN,
            "--mode",
            "replace",
            "--quiet",
        )
    finally:
        await files.stop()
    assert code == 0, err
    assert out.endswith(f"done, 700 rows into {DS}, 0 quarantined\n"), out
    assert (await _count(suite, "cli"), await _count(suite, "cli-url")) == (0, 700)


async def test_failures_say_why(suite, tmp_path):
    code, _, err = await _pipit(
        "import", str(tmp_path / "missing.csv"), "--datasource", DS, "--url", suite.gateway_url
    )
    assert (code, err) == (1, f"pipit import: {tmp_path / 'missing.csv'}: no such file\n")
    path = tmp_path / "x.csv"
    path.write_text("a,b\n")
    code, _, err = await _pipit(
        "import", str(path), "--datasource", "nope", "--url", suite.gateway_url, "--token", TOKEN
    )
    assert code == 1
    assert err.endswith("\npipit import: HTTP 404: datasource 'nope' does not exist\n")
    code, out, err = await _pipit(
        "import",
        str(path),
        "--datasource",
        DS,
        "--format",
        "parquet",
        "--url",
        suite.gateway_url,
        "--token",
        TOKEN,
        "--quiet",
    )
    assert code == 1
    assert ": error, 0 rows" in out
    assert "error: not a Parquet file" in err
