"""What every scenario shares: percentiles, the machine the figures come from and the flush
settings the services ran with, its command line's common options, and writing the JSON and
PNG into bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from common.config import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Pipit's default flush, as the ingest scenarios' results say it.
DEFAULT_FLUSH = (
    f"flush {Settings.flush_rows} rows / {Settings.flush_bytes // 2**20} MiB / "
    f"{Settings.flush_interval:g} s"
)


def percentiles(seconds: list[float], points: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds (and the sample count)."""
    if not seconds:
        return {"n": 0}
    ordered = sorted(seconds)
    out: dict[str, float] = {"n": len(ordered)}
    for p in points:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
        out[f"p{p}_ms"] = round(ordered[rank - 1] * 1000, 3)
    out["mean_ms"] = round(statistics.fmean(ordered) * 1000, 3)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "chdb": _version("chdb"),
        "grpcio": _version("grpcio"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # Other work on the machine skews figures: the load at the start says how much.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def write(name: str, document: dict[str, Any], out: Path = RESULTS) -> Path:
    """Writes `<out>/<name>.json` with the command line added, and the machine unless
    the scenario took it at its start (when the load average says more)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    full = {
        "scenario": name,
        "command": "python -m bench." + name + "".join(" " + a for a in sys.argv[1:]),
        "machine": document.get("machine") or machine(),
        **document,
    }
    path.write_text(json.dumps(full, indent=2) + "\n")
    return path


def parser(doc: str | None, *, chart: bool = True) -> argparse.ArgumentParser:
    """A scenario's command line, its docstring as the help, with the options every
    scenario has: `--out` (where the results go) and, for one that draws a chart,
    `--no-chart`."""
    made = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    made.add_argument("--out", type=Path, default=RESULTS, help="where the results are written")
    if chart:
        made.add_argument("--no-chart", action="store_true", help="write the JSON only")
    return made


def publish(
    name: str,
    document: dict[str, Any],
    args: argparse.Namespace,
    chart: Callable[[dict[str, Any], Path], Any],
) -> Path:
    """Writes the scenario's JSON (`write`) and, unless `--no-chart`, its chart."""
    path = write(name, document, args.out)
    if not args.no_chart:
        chart(document, args.out)
    return path


def pyplot():
    """matplotlib's pyplot without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, name: str, out: Path = RESULTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
