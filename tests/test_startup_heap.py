"""Once a `pipit` process serves, the objects its start made are frozen out of Python's full
collections (pipit/heap.py): a full collection then walks only what serving made since,
instead of stalling every call in flight for tens of milliseconds. Each process logs how
many it froze."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import free_port
from processes import PipitProcess, start_pipit, start_up

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "heap-test-admin-token-0123456789"
# Far fewer than any service's start makes (gRPC's import alone makes ~12,000; the query
# service had ~124,000 at 10 M events), far more than a freeze before the imports would
# find (~8,000): a freeze in the wrong place fails this.
AT_LEAST = 40_000
WAIT_SECONDS = 60.0

pytestmark = pytest.mark.e2e


def _frozen(log: Path, process: PipitProcess) -> dict:
    """The process's `startup_objects_frozen` log line, once written."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"startup_objects_frozen"' in line:
                return json.loads(line)
        assert process.process.poll() is None, f"exited: {log.read_text()[-2000:]}"
        time.sleep(0.05)  # polling the log for the line, not waiting for time to pass
    raise AssertionError(f"no startup_objects_frozen line: {log.read_text()[-2000:]}")


def test_pipit_up_freezes_its_start_once_it_serves(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        running = start_up(tmp_path, TOKEN, stderr=stderr)
    try:
        line = _frozen(log, running)
        assert line["service"] == "up"
        assert line["objects"] >= AT_LEAST
        # After the announcements: what the whole start made is in it.
        assert running.listening.keys() >= {"ingest", "query", "gateway"}
    finally:
        assert running.stop() == 0


def test_each_service_alone_freezes_its_start(tmp_path: Path) -> None:
    data = {"PIPIT_DATA_DIR": str(tmp_path / "data"), "PIPIT_ADMIN_TOKEN": TOKEN}
    logs = {name: tmp_path / f"{name}.log" for name in ("query", "gateway")}
    with logs["query"].open("w") as stderr:
        query = start_pipit(
            ["query"], {**data, "PIPIT_QUERY_PORT": str(free_port())}, {"query"}, stderr=stderr
        )
    try:
        with logs["gateway"].open("w") as stderr:
            gateway = start_pipit(
                ["gateway"],
                {
                    "PIPIT_GATEWAY_PORT": str(free_port()),
                    "PIPIT_QUERY_TARGET": query.listening["query"],
                    "PIPIT_INGEST_TARGET": f"127.0.0.1:{free_port()}",
                    "PIPIT_ADMIN_TOKEN": TOKEN,
                },
                {"gateway"},
                stderr=stderr,
            )
        try:
            for name, process in (("query", query), ("gateway", gateway)):
                line = _frozen(logs[name], process)
                assert line["service"] == name
                assert line["objects"] >= AT_LEAST
        finally:
            assert gateway.stop() == 0
    finally:
        assert query.stop() == 0


def test_a_full_collection_after_the_freeze_walks_only_what_came_after() -> None:
    # In a process of its own: freezing this one would keep the test run's objects.
    probe = """
import gc, json
import services.query.server  # a service's imports
from pipit.heap import freeze_startup_objects
kept = [[n] for n in range(100_000)]  # a start's long-lived objects
frozen = freeze_startup_objects("probe")
made_since = [[n] for n in range(500)]
tracked = sum(len(gc.get_objects(generation)) for generation in range(3))
print(json.dumps({"frozen": frozen, "tracked": tracked}))
"""
    answer = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    counts = json.loads(answer.stdout.splitlines()[-1])
    assert counts["frozen"] >= 100_000 + AT_LEAST
    # What a collection still walks: the 500 made since, and little else.
    assert 500 <= counts["tracked"] < 2_000
