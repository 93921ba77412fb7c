"""Envoy on the deployment in service, as our gateway follows it (gateway/deployment.py).

The same poll (`follow`: `DeployService/GetDeployment` on the query upstream once a second,
cheap while the version is unchanged) updates a `ServedRoutes`; on each new version this module
renders the route configuration for the new descriptor set and has Envoy load it.

How Envoy loads it: RDS from the filesystem. The listener's HTTP connection manager takes its
route configuration from a file (`rds` with a `path_config_source`); Envoy watches that file
and reloads it when a new one is renamed onto it (only a rename is atomic, so nothing half
written is ever read). Everything a descriptor set decides is in that route configuration: the
transcoder's own configuration (descriptor set inline, services) sits on the virtual host,
where it replaces the filter's (the filter takes the most specific per-route configuration
there is and reads every setting from it); the route per service; the Events API's paths; the
methods CORS allows. The clusters do not change: a deployment's services go to the
upstream of their role, which is one of the upstreams Envoy started with.

Why RDS and not the alternatives:
- A route configuration update touches no connection. Each request keeps the route
  configuration it started with until it ends (requests in flight finish on the old
  deployment); new requests, on the same connections, get the new one.
- A listener update (LDS from a file) and hot restart (`--restart-epoch`: a second Envoy
  taking the sockets over shared memory, with a `--base-id` of its own for every Envoy on a
  machine) both drain: Envoy's "Draining" overview lists "the server is being hot restarted"
  and "individual listeners are being modified or removed via LDS". Draining discourages
  requests (`Connection: close` on HTTP/1.1, GOAWAY on HTTP/2) and closes what is left at the
  end of the drain time, so clients lose their kept-alive connections, and one sending on a
  connection as it closes sees it reset. tests/test_envoy_deployments.py counts the
  connections its client opens across a deploy; a listener drain would make it open new ones.

A route configuration Envoy refuses (its `update_rejected` counter moves) leaves the previous
one serving; that is logged, with Envoy's own log line saying why. Envoy's admin interface
(`/stats`: `version_text` of the route configuration) tells when a version is in service.

Documentation relied on: Envoy's "Configuration: Dynamic from filesystem" quick start (Envoy
updates only when the file is replaced by a move) and `config.core.v3.PathConfigSource` (the
path is watched for moves); the HTTP connection manager's `rds` and its RDS statistics
(`version_text`, `update_rejected`); `config.route.v3.VirtualHost.typed_per_filter_config`
with the gRPC-JSON transcoder (its filter resolves the most specific per-route
`GrpcJsonTranscoder`, `proto_descriptor_bin` carrying the set inline); the "Draining"
architecture overview (what RDS avoids).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import structlog

from gateway.deployment import ServedRoutes, following
from gateway.upstreams import Upstreams, upstream_credentials

log = structlog.get_logger("gateway")

ROUTE_CONFIG_NAME = "pipit"
ROUTES_FILE_NAME = "routes.json"
# The route configuration's version before any deployment is read: the package's own.
BUILTIN_VERSION = "builtin"
# How long Envoy gets to report a route configuration loaded (it takes milliseconds).
CONFIRM_SECONDS = 10.0
_ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

# (descriptor set, where each of its services goes) -> the RouteConfiguration.
RenderRoutes = Callable[[bytes, Mapping[str, str]], dict[str, Any]]


def rds_from_file(path: Path) -> dict[str, Any]:
    """The connection manager's `rds`: the route configuration from `path`, reloaded when a
    file is renamed onto it."""
    return {
        "route_config_name": ROUTE_CONFIG_NAME,
        "config_source": {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"},
    }


def write_routes(path: Path, version: str, route_config: Mapping[str, Any]) -> None:
    """Writes the route configuration as a discovery response, atomically: a temporary file
    beside `path`, renamed onto it (the rename is what Envoy reloads on)."""
    response = {
        "version_info": version,
        "resources": [{"@type": _ROUTE_CONFIG_TYPE, **route_config}],
    }
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(response))
    os.replace(temporary, path)


class RoutesRejected(RuntimeError):
    """Envoy refused a route configuration; the previous one still serves."""


class EnvoyRoutes:
    """The route configuration file of one Envoy, and asking Envoy which version it serves."""

    def __init__(self, path: Path, render: RenderRoutes, stat_prefix: str) -> None:
        self.path = path
        self._render = render
        stats = f"http.{stat_prefix}.rds.{ROUTE_CONFIG_NAME}"
        self._version_stat = f"{stats}.version_text"
        self._rejected_stat = f"{stats}.update_rejected"

    def write(self, version: str, descriptor_set: bytes, targets: Mapping[str, str]) -> None:
        """Renders and writes the route configuration (blocking: run it in a thread once Envoy
        is serving). Raises ValueError when it cannot be rendered; the file is left as it is."""
        write_routes(self.path, version, self._render(descriptor_set, targets))

    async def served(self, admin_url: str, http: aiohttp.ClientSession) -> tuple[str, int]:
        """The version of the route configuration Envoy serves, and how many it refused."""
        names = f"^({self._version_stat}|{self._rejected_stat})$"
        async with http.get(
            f"{admin_url}/stats", params={"format": "json", "filter": names}
        ) as response:
            response.raise_for_status()
            stats = {s["name"]: s["value"] for s in (await response.json())["stats"]}
        return str(stats.get(self._version_stat, "")), int(stats.get(self._rejected_stat, 0))

    async def wait_served(
        self, version: str, admin_url: str, rejected_before: int, seconds: float = CONFIRM_SECONDS
    ) -> None:
        """Returns once Envoy serves `version`; raises RoutesRejected when Envoy refuses it
        (its log says why), TimeoutError when neither happens in `seconds`."""
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                served, rejected = await self.served(admin_url, http)
                if served == version:
                    return
                if rejected > rejected_before:
                    raise RoutesRejected(
                        f"envoy refused the route configuration of {version} (its log says why)"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"envoy did not load {version} within {seconds:g}s")
                await asyncio.sleep(0.05)

    async def apply(
        self,
        version: str,
        descriptor_set: bytes,
        targets: Mapping[str, str],
        admin_url: str | None,
    ) -> None:
        """Writes the route configuration of a deployment and, with an admin interface to ask,
        waits until Envoy serves it."""
        rejected = 0
        if admin_url is not None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
                _, rejected = await self.served(admin_url, http)
        await asyncio.to_thread(self.write, version, descriptor_set, targets)
        if admin_url is not None:
            await self.wait_served(version, admin_url, rejected)


async def keep_on_deployment(
    envoy_routes: EnvoyRoutes,
    routes: ServedRoutes,
    upstream_ca: Path | None,
    admin_url: str | None,
) -> None:
    """Keeps Envoy on the deployment in service until cancelled: `follow` swaps `routes`
    (asking the query upstream, over TLS trusting `upstream_ca` when given), this writes each
    new version's route configuration. Deployments that come faster than Envoy loads them are
    coalesced: the newest is written. A version Envoy refuses, or that cannot be rendered, is
    logged and the previous one keeps serving."""
    swapped = asyncio.Event()
    routes.on_swap(lambda _table: swapped.set())
    upstreams = Upstreams(routes.targets, upstream_credentials(upstream_ca))
    try:
        await _write_each_swap(envoy_routes, routes, swapped, upstreams.channel, admin_url)
    finally:
        await upstreams.close()


async def _write_each_swap(
    envoy_routes: EnvoyRoutes,
    routes: ServedRoutes,
    swapped: asyncio.Event,
    channel: Callable[[str], grpc.aio.Channel],
    admin_url: str | None,
) -> None:
    async with following(routes, channel):
        while True:
            await swapped.wait()
            swapped.clear()
            # Read together, with no await between: one deployment's version, set and targets.
            version, descriptor_set, targets = routes.version, routes.descriptor_set, routes.targets
            try:
                await envoy_routes.apply(version, descriptor_set, dict(targets), admin_url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the previous deployment keeps serving
                log.error("envoy keeps the previous deployment", version=version, error=str(exc))
            else:
                log.info("envoy serving deployment", version=version)
