"""A built project loaded for serving, and the one a process serves now.

`Project` reads an Artifact once: its descriptors in a pool of their own (so two
projects, or the package's own protos, never clash), its datasources (every message with
the `pipit.clickhouse.v1.table` option), its ingest and query services (found by their
`role` option), its pipes. `CurrentProject` holds the project in service and swaps it
whole, so a request sees one project from start to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from common.datasources import Datasource, from_descriptor
from pipit.clickhouse.v1 import options_pb2
from pipit.project.artifact import Artifact, PipeSource

# Services every deployment has, whatever the project: the Query API, deploys and the Data
# Sources API's bulk writes.
PLATFORM_SERVICES = frozenset(
    {
        "pipit.query.v1.SqlService",
        "pipit.deploy.v1.DeployService",
        "pipit.ingest.v1.DatasourcesService",
    }
)
INGEST = options_pb2.SERVICE_ROLE_INGEST
QUERY = options_pb2.SERVICE_ROLE_QUERY


def _messages(descriptor: Descriptor) -> Iterator[Descriptor]:
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


class Project:
    """One built project, ready to serve."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.version = artifact.version
        self.name = artifact.name
        files = descriptor_pb2.FileDescriptorSet.FromString(artifact.descriptor_set)
        self.files = tuple(files.file)
        self.pool = descriptor_pool.DescriptorPool()
        for file in self.files:
            self.pool.Add(file)
        datasources: dict[str, Datasource] = {}
        services: dict[int, ServiceDescriptor] = {}
        for file in self.files:
            described = self.pool.FindFileByName(file.name)
            for message in described.message_types_by_name.values():
                for descriptor in _messages(message):
                    ds = from_descriptor(descriptor)
                    if ds is not None:
                        datasources[ds.name] = ds
            for service in described.services_by_name.values():
                if service.full_name in PLATFORM_SERVICES:
                    continue
                role = service.GetOptions().Extensions[options_pb2.role]
                if role in services:
                    raise ValueError(
                        f"{service.full_name} and {services[role].full_name} both have "
                        f"role {options_pb2.ServiceRole.Name(role)}"
                    )
                if role:
                    services[role] = service
        self.datasources = dict(sorted(datasources.items()))
        self.ingest_service: ServiceDescriptor | None = services.get(INGEST)
        self.query_service: ServiceDescriptor | None = services.get(QUERY)
        self.pipes: dict[str, PipeSource] = dict(artifact.pipes)

    @cached_property
    def _by_message(self) -> dict[str, Datasource]:
        return {ds.descriptor.full_name: ds for ds in self.datasources.values()}

    def by_message(self, descriptor: Descriptor) -> Datasource:
        """The datasource whose rows the given message type carries."""
        try:
            return self._by_message[descriptor.full_name]
        except KeyError:
            raise KeyError(f"{descriptor.full_name} is not a datasource message") from None

    @property
    def services(self) -> tuple[ServiceDescriptor, ...]:
        """The project's own services (the platform's are not the project's)."""
        return tuple(s for s in (self.ingest_service, self.query_service) if s is not None)

    @property
    def descriptor_set(self) -> bytes:
        return self.artifact.descriptor_set


class CurrentProject:
    """The project a process serves. `swap` replaces it whole and tells the listeners
    (handler tables, health, gateways' routes) so they rebuild what depends on it."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._listeners: list[Callable[[Project], None]] = []

    @property
    def project(self) -> Project:
        return self._project

    def on_swap(self, listener: Callable[[Project], None]) -> None:
        self._listeners.append(listener)

    def swap(self, project: Project) -> bool:
        """Serves `project` from now on; False when it is the version already served."""
        if project.version == self._project.version:
            return False
        self._project = project
        for listener in self._listeners:
            listener(project)
        return True
