"""Each benchmark scenario, run at a tiny scale with its documented command, writes its
JSON (and its PNG when matplotlib is installed, as the `bench` extra does). Timings are
never asserted: this only keeps the scripts working."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "ingest": [
        "--events", "3000", "--batch", "500", "--clients", "2", "--rounds", "1",
        "--flush-interval", "0.05",
    ],
    "freshness": ["--probes", "3", "--every", "0.05", "--background", "0,2000"],
    "query": [
        "--events", "3000", "--repeat", "3", "--min-repeat", "2", "--max-seconds", "0.1",
        "--clients", "1,2", "--duration", "0.3",
    ],
    "isolation": ["--events", "2000", "--seconds", "2"],
    "import": ["--rows", "3000", "--bad", "10"],
    "projections": ["--rows", "2000", "--batch", "500", "--rounds", "2"],
    "reconcile": ["--events", "3000", "--batches", "4", "--batch", "200", "--every", "0.05"],
}  # fmt: skip


def test_every_scenario_runs_and_writes_its_results(tmp_path: Path) -> None:
    charts = importlib.util.find_spec("matplotlib") is not None
    running = {}
    for name, args in SCENARIOS.items():
        extra = [] if charts else ["--no-chart"]
        if name in ("query", "reconcile"):
            extra += ["--data-root", str(tmp_path / f"data-{name}")]
        running[name] = subprocess.Popen(
            [sys.executable, "-m", f"bench.{name}", *args, "--out", str(tmp_path), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in running.items():
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, f"bench.{name} failed:\n{err[-3000:]}"
        document = json.loads((tmp_path / f"{name}.json").read_text())
        assert document["scenario"] == name
        assert document["machine"]["cores"] >= 1
        if charts:
            assert (tmp_path / f"{name}.png").stat().st_size > 0

    projections = json.loads((tmp_path / "projections.json").read_text())
    assert [t["datasource"] for t in projections["tables"]] == [
        "ab_test_events",
        "user_events",
        "app_events",
        "clickstream_events",
    ]
    assert all(
        t["ratio"] > 0
        and t["ratio_to_bare"] > 0
        and t["inserts_alone_ratio"] > 0
        and len(t["rounds"][kept]) == len(t["rounds_inserts_alone"][kept]) == 2
        for t in projections["tables"]
        for kept in ("full", "lookups", "bare")
    )
    clickstream = projections["tables"][3]
    assert clickstream["aggregate_projections"] == ["page_view_hours"]
    assert clickstream["lookup_projections"] == ["by_session_rows", "by_user"]

    reconcile = json.loads((tmp_path / "reconcile.json").read_text())
    assert reconcile["writes"]["n"] == 4 and reconcile["read_settle_ms"] > 0
    # The first write of the four has nothing to reconcile before it; a later one may.
    assert len(reconcile["reconciles"]) <= 4

    ingest = json.loads((tmp_path / "ingest.json").read_text())
    assert {(r["path"], r["clients"]) for r in ingest["runs"]} == {
        (path, clients) for path in ("stream", "unary", "http") for clients in (2,)
    }
    assert all(r["events"] == 3000 and r["events_per_s"] > 0 for r in ingest["runs"])
    assert ingest["raw_insert"]["events_per_s"] > 0 and ingest["memory"]["peak_rss_mib"] > 0
    freshness = json.loads((tmp_path / "freshness.json").read_text())
    assert [p["freshness"]["n"] for p in freshness["phases"]] == [3, 3]
    query = json.loads((tmp_path / "query.json").read_text())
    (size,) = query["sizes"]
    assert len(size["endpoints"]) == 16
    for figures in size["endpoints"].values():
        assert figures["direct"]["n"] >= 2 and figures["http"]["n"] >= 2
    # The tutorial's get_popular_pages as the data spells its page views, beside it as written.
    respelled = {n for n, f in size["endpoints"].items() if "tutorial_respelled" in f}
    assert respelled == {"get_popular_pages"}
    assert size["endpoints"]["get_popular_pages"]["tutorial_respelled"]["n"] >= 2
    # The tutorials' twelve (issue 18's goal), then every endpoint.
    assert [(t["mix"], t["clients"]) for t in size["throughput"]] == [
        ("tutorials", 1),
        ("tutorials", 2),
        ("all", 1),
        ("all", 2),
    ]
    assert all(t["errors"] == 0 and t["requests"] > 0 for t in size["throughput"])
    assert all(
        set(t["cpu_ms_per_request"]) == {"gateway", "query_service", "query_service_python"}
        for t in size["throughput"]
    )
    control = size["overhead_cpu"]["idle_wake_control"]
    assert control["back_to_back_cpu_ms_per_call"] > 0 and control["gap_ms"] > 0
    assert set(size["overhead_cpu"]["idle_cpu_ms_per_s"]) == {
        "gateway",
        "query_service",
        "query_service_python",
    }
    isolation = json.loads((tmp_path / "isolation.json").read_text())
    for phase in ("baseline", "loaded"):
        assert isolation[phase]["pipes"]["n"] > 0 and isolation[phase]["ingest_wait"]["n"] > 0
    assert len(isolation["loaded"]["ad_hoc"]) == 4
    assert all(sum(statuses.values()) > 0 for statuses in isolation["loaded"]["ad_hoc"].values())
    imported = json.loads((tmp_path / "import.json").read_text())
    assert [r["format"] for r in imported["runs"]] == ["csv", "ndjson", "parquet"]
    for run in imported["runs"]:
        assert run["counts_match"], run
        assert run["chdb"]["rows_per_s"] > 0 and run["pipit"]["rows_per_s"] > 0
        assert run["pipit"]["peak_rss_mib"] > 0


def test_the_materialized_view_scenario_runs_and_writes_its_results(tmp_path: Path) -> None:
    # Apart from the others: it has no chart (two figures and their ratio say it all).
    done = subprocess.run(
        [sys.executable, "-m", "bench.matview", "--events", "3000", "--batch", "500"]
        + ["--clients", "2", "--rounds", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((tmp_path / "matview.json").read_text())
    assert document["scenario"] == "matview"
    assert [r["materialized"] for r in document["all_runs"]] == [False, True]
    assert all(r["events"] == 3000 and r["events_per_s"] > 0 for r in document["all_runs"])
    assert document["ratio"] > 0
