"""The routes of the deployment in service, and following it.

A gateway starts from the package's descriptor set (the built-in tutorials and the
platform's services) and then asks the query service for the deployment in service
(`DeployService/GetDeployment`, once a second, answered without a descriptor set while the
version is unchanged). Each service of a deployment's descriptor set goes to the upstream
its `role` option names: the targets given for the built-in services say where ingest
and query are, and a project's own services (`pipit.project.v1.*`) follow them there. A new
deployment swaps the whole route table; requests in flight finish on the one they began
with."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import grpc
import structlog
from google.protobuf import descriptor_pb2

from common.background import in_background
from gateway.routes import RouteTable, load_routes
from pipit.clickhouse.v1 import options_pb2
from pipit.deploy.v1 import deploy_service_pb2 as deploy_pb
from pipit.query.v1 import query_service_pb2

log = structlog.get_logger("gateway")

POLL_SECONDS = 1.0
# How long a starting gateway waits to learn the deployment before serving the package's.
FIRST_POLL_SECONDS = 3.0
GET_DEPLOYMENT = "/pipit.deploy.v1.DeployService/GetDeployment"
# The name the query service's readiness is reported under (and Kubernetes' probe asks for).
QUERY_READINESS = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


def _roles(descriptor_set: bytes) -> dict[str, int]:
    """Every service of the set with its `role` option (0 when it has none)."""
    file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    return {
        f"{file.package}.{service.name}".lstrip("."): service.options.Extensions[options_pb2.role]
        for file in file_set.file
        for service in file.service
    }


def role_targets(explicit: Mapping[str, str], descriptor_set: bytes) -> dict[int, str]:
    """The target of each role, from the targets given for services of that role."""
    roles = _roles(descriptor_set)
    unknown = sorted(set(explicit) - set(roles))
    if unknown:
        raise ValueError(f"service {unknown[0]!r} is not in the descriptor set")
    return {roles[name]: target for name, target in explicit.items() if roles[name]}


def resolve_targets(
    explicit: Mapping[str, str], by_role: Mapping[int, str], descriptor_set: bytes
) -> dict[str, str]:
    """Where each service of the descriptor set is served: as given by name, else at its
    role's target. Services with neither are not routed."""
    targets = {}
    for name, role in _roles(descriptor_set).items():
        target = explicit.get(name) or by_role.get(role)
        if target is not None:
            targets[name] = target
    return targets


def readiness_checks(explicit: Mapping[str, str], by_role: Mapping[int, str]) -> dict[str, str]:
    """What a gateway's readiness asks (target → grpc.health.v1 service name): the query
    upstream's readiness, which holds while it can read the warehouse. Ingest is not
    asked: a gateway whose ingest is degraded (its log full, the warehouse refusing writes,
    every replica away) still answers queries, and taking it out of service would fail
    those too. Without a query upstream, every upstream's liveness (service "")."""
    target = by_role.get(options_pb2.SERVICE_ROLE_QUERY)
    if target is not None:
        return {target: QUERY_READINESS}
    return dict.fromkeys(sorted(set(explicit.values())), "")


class ServedRoutes:
    """The route table of the deployment in service and where each service is served."""

    def __init__(self, targets: Mapping[str, str], descriptor_set: bytes) -> None:
        if not targets:
            raise ValueError("the gateway needs at least one upstream service")
        self._explicit = dict(targets)
        # Kept from the first descriptor set: a deployment's services of a role go there.
        self._by_role = role_targets(targets, descriptor_set)
        self.version = ""
        self.table, self.targets = self._load(descriptor_set)
        # What the table was built from, for a gateway that must be handed the set itself.
        self.descriptor_set = descriptor_set
        self._listeners: list[Callable[[RouteTable], None]] = []
        self.refresh: Callable[[], Awaitable[None]] | None = None
        """Reads the deployment in service now, when something follows it."""

    def _load(self, descriptor_set: bytes) -> tuple[RouteTable, dict[str, str]]:
        targets = resolve_targets(self._explicit, self._by_role, descriptor_set)
        return load_routes(descriptor_set, list(targets)), targets

    @property
    def query_target(self) -> str | None:
        return self._by_role.get(options_pb2.SERVICE_ROLE_QUERY)

    @property
    def readiness_checks(self) -> dict[str, str]:
        """What a gateway's readiness asks: see `readiness_checks`."""
        return readiness_checks(self._explicit, self._by_role)

    def on_swap(self, listener: Callable[[RouteTable], None]) -> None:
        self._listeners.append(listener)

    def use(self, version: str, descriptor_set: bytes) -> None:
        """Routes the deployment `version` from now on."""
        self.table, self.targets = self._load(descriptor_set)
        self.version, self.descriptor_set = version, descriptor_set
        for listener in self._listeners:
            listener(self.table)
        log.info("routing deployment", version=version, routes=len(self.table.routes))

    def target(self, grpc_method: str) -> str:
        return self.targets[grpc_method[1:].partition("/")[0]]


class _Poller:
    """Asks the query service for the deployment in service."""

    def __init__(self, routes: ServedRoutes, channel: Callable[[str], grpc.aio.Channel]) -> None:
        self._routes = routes
        target = routes.query_target
        self._get = (
            None
            if target is None
            else channel(target).unary_unary(
                GET_DEPLOYMENT,
                request_serializer=deploy_pb.GetDeploymentRequest.SerializeToString,
                response_deserializer=deploy_pb.Deployment.FromString,
            )
        )
        self._failing = False

    async def poll(self, within: float = 5.0) -> None:
        """Routes the deployment in service if it changed; a failure (the query service
        away, or older than deployments) keeps the routes as they are."""
        if self._get is None:
            return
        routes = self._routes
        try:
            reply = await self._get(
                deploy_pb.GetDeploymentRequest(known_version=routes.version), timeout=within
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - route on; the next poll tries again
            if not self._failing:
                log.warning("cannot read the deployment in service", error=str(exc)[:300])
            self._failing = True
            return
        self._failing = False
        if reply.version != routes.version and reply.descriptor_set:
            routes.use(reply.version, reply.descriptor_set)


async def follow(
    routes: ServedRoutes,
    channel: Callable[[str], grpc.aio.Channel],
    *,
    every: float = POLL_SECONDS,
) -> None:
    """Keeps `routes` on the deployment in service until cancelled."""
    poller = _Poller(routes, channel)
    while True:
        await asyncio.sleep(every)
        await poller.poll()


@contextlib.asynccontextmanager
async def following(routes: ServedRoutes, channel: Callable[[str], grpc.aio.Channel]):
    """Routes the deployment in service before the block (so the first request meets it,
    not the package's tutorials), then follows it in the background."""
    poller = _Poller(routes, channel)
    await poller.poll(within=FIRST_POLL_SECONDS)
    # A deploy through this gateway is routed before its answer goes back (gateway/app.py).
    routes.refresh = poller.poll
    async with in_background(follow(routes, channel), "follow-deployment") as task:
        yield task
