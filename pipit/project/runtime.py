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
from common.range_views import RangeView
from pipit.clickhouse.v1 import options_pb2
from pipit.project.artifact import Artifact, PipeSource

# Services every deployment has, whatever the project: every pipe in every format, the Query
# API, deploys, tokens, the catalog (listings, OpenAPI) and the Data Sources API's bulk writes.
PLATFORM_SERVICES = frozenset(
    {
        "pipit.query.v1.PipeService",
        "pipit.query.v1.SqlService",
        "pipit.deploy.v1.DeployService",
        "pipit.ingest.v1.DatasourcesService",
        "pipit.tokens.v1.TokenService",
        "pipit.catalog.v1.CatalogService",
    }
)
INGEST = options_pb2.SERVICE_ROLE_INGEST
QUERY = options_pb2.SERVICE_ROLE_QUERY


def _messages(descriptor: Descriptor) -> Iterator[Descriptor]:
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


def _declaration_paths(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source-info path, full name) of every message, field, service and method of a file;
    the numbers are the FileDescriptorProto's own field numbers, as source info counts."""
    package = f"{file.package}." if file.package else ""

    def message(
        proto: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        name = prefix + proto.name
        yield path, name
        for index, field in enumerate(proto.field):
            yield (*path, 2, index), f"{name}.{field.name}"
        for index, nested in enumerate(proto.nested_type):
            yield from message(nested, (*path, 3, index), f"{name}.")

    for index, proto in enumerate(file.message_type):
        yield from message(proto, (4, index), package)
    for index, service in enumerate(file.service):
        yield (6, index), package + service.name
        for number, method in enumerate(service.method):
            yield (6, index, 2, number), f"{package}{service.name}.{method.name}"


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

    @property
    def range_views(self) -> list[RangeView]:
        """Every range view the project's datasources declare (their pipes may call them)."""
        return [view for ds in self.datasources.values() for view in ds.range_views]

    @cached_property
    def _by_message(self) -> dict[str, Datasource]:
        return {ds.descriptor.full_name: ds for ds in self.datasources.values()}

    def by_message(self, descriptor: Descriptor) -> Datasource:
        """The datasource whose rows the given message type carries."""
        try:
            return self._by_message[descriptor.full_name]
        except KeyError:
            raise KeyError(f"{descriptor.full_name} is not a datasource message") from None

    @cached_property
    def _comments(self) -> dict[str, str]:
        comments: dict[str, str] = {}
        for file in self.files:
            names = dict(_declaration_paths(file))
            for location in file.source_code_info.location:
                name = names.get(tuple(location.path))
                if name is not None and location.leading_comments.strip():
                    comments[name] = " ".join(location.leading_comments.split())
        return comments

    def comment(self, full_name: str) -> str:
        """The leading comment of a message, field, service or method (by full name), on
        one line; empty when it has none or the build kept no source info."""
        return self._comments.get(full_name, "")

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
