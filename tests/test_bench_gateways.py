"""bench/gateways.py at a tiny scale: it runs and writes its JSON. Timings are never asserted;
this only keeps the script working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_pair import require_envoy

pytestmark = [pytest.mark.bench, pytest.mark.envoy]

ROOT = Path(__file__).resolve().parent.parent


def test_the_gateway_benchmark_runs(tmp_path: Path) -> None:
    require_envoy()
    args = ["--requests", "20", "--rounds", "2", "--clients", "2", "--seed-events", "300"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench.gateways", *args, "--warmup", "5", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Its working directory (the suite's data, the logs) goes with it: none piles up.
    assert list(scratch.iterdir()) == []
    document = json.loads((tmp_path / "gateways.json").read_text())
    assert document["scenario"] == "gateways"
    expected = {"200": 40}, {"202": 40}, {"404": 40}
    for (name, per), statuses in zip(document["scenarios"].items(), expected, strict=True):
        for gateway in ("pipit", "envoy"):
            assert per[gateway]["statuses"] == statuses, name
            assert per[gateway]["requests_per_second"] > 0
        assert set(per["ours_over_envoy"]) == {
            "cpu_per_request",
            "requests_per_second",
            "p50_latency",
            "p99_latency",
        }
    assert "ours/envoy" in done.stdout
