"""Runs `pipit` commands as real processes for end-to-end tests, waiting until each
announces its listeners (`pipit: <service> listening on <address>`)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tiers import require_tier

STARTUP_SECONDS = 60.0


@dataclass
class PipitProcess:
    """A running `pipit` command and what it announced."""

    process: subprocess.Popen[str]
    listening: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as Kubernetes sends; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_pipit(
    command: list[str],
    env: Mapping[str, str],
    expect: set[str],
    cwd: str | None = None,
    stderr: IO[Any] | int = subprocess.DEVNULL,
) -> PipitProcess:
    """Starts `pipit <command>` and returns once every service in `expect` listens.
    `stderr` (its JSON log lines) is discarded unless a file is given."""
    require_tier("e2e", "starts `pipit` processes")
    if "envoy" in command:
        require_tier("envoy", "starts the real Envoy (`--gateway envoy`)")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipit.cli", *command],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    running = PipitProcess(process)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not expect <= running.listening.keys():
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            process.kill()
            raise TimeoutError(f"pipit {command} did not start: {running.lines}") from None
        if line is None:
            raise RuntimeError(f"pipit {command} exited with {process.wait()}: {running.lines}")
        running.lines.append(line.rstrip())
        if line.startswith("pipit: ") and " listening on " in line:
            service, _, address = line[len("pipit: ") :].strip().partition(" listening on ")
            running.listening[service] = address
    return running


def start_up(
    workdir: Path,
    admin_token: str,
    *args: str,
    stderr: IO[Any] | int = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
) -> PipitProcess:
    """`pipit up *args` on embedded chDB in `workdir/data`, on free ports, with
    `admin_token`, flushing every 0.1 s; returns once ingest, query and gateway listen (their
    addresses in `.listening`; the ingest and query ports also in `.ports`)."""
    from harness import free_port

    ports = {"PIPIT_INGEST_PORT": free_port(), "PIPIT_QUERY_PORT": free_port()}
    running = start_pipit(
        ["up", *args],
        {
            "PIPIT_DATA_DIR": str(workdir / "data"),
            **{name: str(port) for name, port in ports.items()},
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_METRICS_PORT": str(free_port()),
            "PIPIT_ADMIN_TOKEN": admin_token,
            "PIPIT_CLICKHOUSE_URL": "",
            "PIPIT_FLUSH_INTERVAL": "0.1",
            **(env or {}),
        },
        {"ingest", "query", "gateway"},
        cwd=str(workdir),
        stderr=stderr,
    )
    running.ports = {"ingest": ports["PIPIT_INGEST_PORT"], "query": ports["PIPIT_QUERY_PORT"]}
    return running
