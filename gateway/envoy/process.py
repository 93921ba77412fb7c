"""Envoy as a child process: started on a rendered configuration, kept on the deployment in
service, and stopped as our gateway stops."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import aiohttp

from gateway.app import (
    default_descriptor_set,
)
from gateway.deployment import ServedRoutes
from gateway.envoy.binary import envoy_binary
from gateway.envoy.bootstrap import descriptor_inline, render_bootstrap, render_route_config
from gateway.envoy.config import BOOTSTRAP_NAME, LISTENER_NAME, STARTUP_SECONDS, EnvoyConfig
from gateway.envoy_deployment import (
    BUILTIN_VERSION,
    ROUTES_FILE_NAME,
    EnvoyRoutes,
    keep_on_deployment,
)


@dataclass
class RunningEnvoy:
    """An Envoy process serving the gateway, and the directory holding its configuration."""

    process: asyncio.subprocess.Process
    workdir: Path
    host: str
    port: int
    admin_url: str | None = None
    scheme: str = "http"
    # Keeps Envoy on the deployment in service (gateway/envoy_deployment.py).
    follower: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / BOOTSTRAP_NAME

    async def stop(self, grace: float = 10.0) -> int:
        """Shuts Envoy down as our gateway shuts down: no new connections, requests in flight
        get up to `grace` seconds (both through the admin interface, when there is one), then
        SIGTERM, which Envoy answers by exiting at once; SIGKILL if it is still there a second
        later. Returns the exit code."""
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower
        if self.process.returncode is None:
            if self.admin_url is not None:
                await self._drain(time.monotonic() + grace)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 1.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode or 0

    async def _drain(self, deadline: float) -> None:
        # /drain_listeners closes the listening socket; connections already open go on.
        active = f"http.{LISTENER_NAME}.downstream_rq_active"
        timeout = aiohttp.ClientTimeout(total=2)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(f"{self.admin_url}/drain_listeners") as response:
                    response.raise_for_status()
                while time.monotonic() < deadline:
                    async with http.get(
                        f"{self.admin_url}/stats", params={"filter": f"^{active}$"}
                    ) as response:
                        text = await response.text()
                    if f"{active}: 0" in text or active not in text:
                        return
                    await asyncio.sleep(0.05)
        except (aiohttp.ClientError, TimeoutError):
            return  # Envoy is going anyway; SIGTERM follows.

    async def cleanup(self) -> None:
        """`stop`, under the name of aiohttp's `AppRunner.cleanup`, so that whoever started a
        gateway stops either kind the same way."""
        await self.stop()


# An Envoy outliving a killed parent would keep the port. On Linux a tiny wrapper asks the kernel
# for SIGTERM when the parent goes (PR_SET_PDEATHSIG survives exec), checks the parent did not
# already go, and execs Envoy. A wrapper rather than `preexec_fn`: forking a process that runs
# gRPC threads is unsafe, and without `preexec_fn` the child is spawned, not forked.
_WATCH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
# Envoy's own log in the shape of ours (structlog's JSON lines).
_LOG_FORMAT = '{"timestamp":"%Y-%m-%dT%T.%eZ","level":"%l","logger":"envoy.%n","event":"%j"}'
_LOG_LEVELS = {"warning": "warn", "error": "error", "info": "info", "debug": "debug"}


def _command(args: list[str]) -> list[str]:
    if sys.platform.startswith("linux"):
        return [sys.executable, "-S", "-c", _WATCH_PARENT, str(os.getpid()), *args]
    return args


async def start_envoy(
    config: EnvoyConfig,
    *,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    log_level: str = "warning",
    concurrency: int | None = None,
    startup_timeout: float = STARTUP_SECONDS,
    follow: bool = True,
) -> RunningEnvoy:
    """Writes the bootstrap, the route configuration (see gateway/envoy_deployment.py) and,
    when `config` names none, the packaged descriptor set to a temporary directory, starts
    Envoy on them and returns once the listener is open and serves that route configuration.
    `follow` then keeps Envoy on the deployment in service, as our gateway follows it.
    `stdout` gets the JSON access log, `stderr` Envoy's own log (both inherited by default);
    `concurrency` is Envoy's worker threads (default: one per core). Raises RuntimeError if
    Envoy exits or does not come up in time, EnvoyNotFound without a binary."""
    binary = envoy_binary()
    workdir = Path(tempfile.mkdtemp(prefix="pipit-envoy-"))
    try:
        descriptor = config.descriptor_set_path
        if descriptor is None:
            descriptor = workdir / "descriptor_set.binpb"
            descriptor.write_bytes(default_descriptor_set())
            config = replace(config, descriptor_set_path=descriptor)
        routes = ServedRoutes(config.upstreams, descriptor.read_bytes())
        envoy_routes = EnvoyRoutes(
            workdir / ROUTES_FILE_NAME, functools.partial(_inline_routes, config), LISTENER_NAME
        )
        envoy_routes.write(BUILTIN_VERSION, routes.descriptor_set, routes.targets)
        bootstrap = workdir / BOOTSTRAP_NAME
        bootstrap.write_text(json.dumps(render_bootstrap(config, envoy_routes.path), indent=2))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    admin_path = workdir / "admin_address"
    args = [
        str(binary),
        "--config-path",
        str(bootstrap),
        "--log-level",
        _LOG_LEVELS.get(log_level.lower(), "warn"),
        "--log-format",
        _LOG_FORMAT,
        # Several Envoys (tests, the bench) may share a machine; hot restart would need an id each.
        "--disable-hot-restart",
    ]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    if config.admin_port is not None:
        args += ["--admin-address-path", str(admin_path)]
    process = await asyncio.create_subprocess_exec(
        *_command(args), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
    )
    scheme = "http" if config.tls is None else "https"
    running = RunningEnvoy(process, workdir, config.host, config.port, scheme=scheme)
    try:
        await _wait_until_listening(running, config, admin_path, startup_timeout)
        if running.admin_url is not None:
            # A route configuration Envoy refused would leave it listening without routes.
            await envoy_routes.wait_served(BUILTIN_VERSION, running.admin_url, 0)
    except BaseException:
        await running.stop(1.0)
        raise
    if follow:
        running.follower = asyncio.create_task(
            keep_on_deployment(envoy_routes, routes, config.upstream_ca, running.admin_url),
            name="envoy-follow-deployment",
        )
    return running


def _inline_routes(
    config: EnvoyConfig, descriptor_set: bytes, targets: Mapping[str, str]
) -> dict[str, Any]:
    # The descriptor set inside the route configuration: one file, swapped by one rename.
    return render_route_config(config, descriptor_set, targets, descriptor_inline(descriptor_set))


async def _wait_until_listening(
    running: RunningEnvoy, config: EnvoyConfig, admin_path: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if running.process.returncode is not None:
                raise RuntimeError(
                    f"envoy exited with {running.process.returncode} on start-up "
                    "(its log, on stderr, says why)"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"envoy did not start listening within {seconds:g}s")
            port = await _listening_port(running, config, admin_path, http)
            if port:
                running.port = port
                return
            await asyncio.sleep(0.05)


def _read_admin_address(path: Path) -> str:
    # Envoy writes it once the admin interface listens.
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


async def _listening_port(
    running: RunningEnvoy, config: EnvoyConfig, admin_path: Path, http: aiohttp.ClientSession
) -> int:
    """The listener's port once Envoy serves on it, else 0."""
    if config.admin_port is None:
        # Without the admin interface, a connection that succeeds is the only sign; port 0
        # cannot be waited for this way (EnvoyConfig refuses the pair).
        try:
            _, writer = await asyncio.open_connection(config.host, config.port)
        except OSError:
            return 0
        writer.close()
        return config.port
    if running.admin_url is None:
        address = await asyncio.to_thread(_read_admin_address, admin_path)
        if not address:
            return 0
        running.admin_url = f"http://{address}"
    try:
        # /ready is 200 once initialisation is over (clusters, their first health checks) and
        # the listeners are open.
        async with http.get(f"{running.admin_url}/ready") as response:
            if response.status != 200:
                return 0
        async with http.get(f"{running.admin_url}/listeners?format=json") as response:
            listeners = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0
    for listener in listeners.get("listener_statuses", []):
        if listener.get("name") == LISTENER_NAME:
            return int(listener["local_address"]["socket_address"]["port_value"])
    return 0
