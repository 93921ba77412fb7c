"""Runs `pipit` services as separate processes for the benchmarks, as production does,
and reads their resource use from /proc (Linux): resident memory now and at its peak
(VmHWM), and CPU seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_SECONDS = 90.0
TOKEN = "bench-admin-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _cpu_seconds(stat: Path) -> float:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    """A running `pipit <command>`."""

    command: list[str]
    process: subprocess.Popen[str]
    log_path: Path
    listening: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        return round(_status_kib(self.pid, "VmRSS") / 1024, 1)

    def peak_rss_mib(self) -> float:
        """The highest resident memory the process has had since it started."""
        return round(_status_kib(self.pid, "VmHWM") / 1024, 1)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process, all its threads."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/stat"))

    def main_thread_cpu_seconds(self) -> float:
        """CPU time of the main thread alone: the service's Python (the event loop),
        without the engine's threads (chDB runs its queries on threads of its own)."""
        return _cpu_seconds(Path(f"/proc/{self.pid}/task/{self.pid}/stat"))

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start(command: list[str], env: Mapping[str, str], expect: set[str], log_dir: Path) -> Service:
    """Starts `pipit <command>` and returns once every service in `expect` listens.
    Its stderr (the JSON logs) goes to a file in `log_dir`. With PIPIT_BENCH_PROFILE set
    to a directory, the process runs under pyinstrument and writes its profile there
    when it stops."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.monotonic_ns()
    log_path = log_dir / f"{command[0]}-{stamp}.log"
    runner = [sys.executable]
    profile_dir = os.environ.get("PIPIT_BENCH_PROFILE")
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        report = Path(profile_dir) / f"{command[0]}-{stamp}.txt"
        runner += ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(report)]
    with log_path.open("w") as stderr:
        process = subprocess.Popen(
            [*runner, "-m", "pipit.cli", *command],
            env={**os.environ, "PIPIT_ADMIN_TOKEN": TOKEN, "PIPIT_METRICS_PORT": "0", **env},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    service = Service(command, process, log_path)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("pipit: ") and " listening on " in line:
                name, _, address = line[len("pipit: ") :].strip().partition(" listening on ")
                service.listening[name] = address
                if expect <= service.listening.keys():
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(STARTUP_SECONDS) or not expect <= service.listening.keys():
        service.stop(5)
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"pipit {command[0]} did not start: {tail}")
    return service


@dataclass
class Suite:
    """A running `pipit up` on free ports."""

    service: Service
    ports: dict[str, int]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def ingest_target(self) -> str:
        return f"127.0.0.1:{self.ports['ingest']}"


# How many times `start_up` picks new ports when one it picked was taken meanwhile.
_PORT_ATTEMPTS = 3


def start_up(work: Path, env: Mapping[str, str] | None = None) -> Suite:
    """`pipit up` with its data and logs under `work`, on free ports, `env` added. A port
    found free may be taken before the suite binds it (another process's connection, the
    scenarios running side by side in tests/test_bench_smoke.py): then other ports."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        ports = {name: free_port() for name in ("ingest", "query", "gateway")}
        settings = {
            "PIPIT_DATA_DIR": str(work / "data"),
            "PIPIT_INGEST_PORT": str(ports["ingest"]),
            "PIPIT_QUERY_PORT": str(ports["query"]),
            "PIPIT_GATEWAY_PORT": str(ports["gateway"]),
            **(env or {}),
        }
        try:
            service = start(["up"], settings, {"ingest", "query", "gateway"}, work / "logs")
        except RuntimeError as error:
            taken = "Failed to bind" in str(error) or "address already in use" in str(error)
            if taken and attempt < _PORT_ATTEMPTS:
                continue
            raise
        return Suite(service, ports)
    raise AssertionError("unreachable: the last attempt returns or raises")
