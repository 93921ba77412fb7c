"""The built project: the one thing every process loads. A descriptor set (the typed
messages and RPCs of every datasource and pipe, with their `google.api.http` rules and
ClickHouse options), the generated `.proto` sources for clients, and each pipe's SQL.
Serialised as one JSON document, stored whole, identified by a digest of its content."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from importlib import resources

import orjson

FORMAT = 1
NATIVE = "native"
TINYBIRD = "tinybird"


@dataclass(frozen=True)
class NodeSource:
    """One SQL node of a pipe, where it was written."""

    name: str
    sql: str
    file: str
    line: int


@dataclass(frozen=True)
class PipeSource:
    """A pipe's SQL: one node with `{name:Type}` placeholders (native form), or Tinybird
    template nodes that later ones may read by name (the last one answers)."""

    name: str
    form: str
    nodes: tuple[NodeSource, ...]
    description: str = ""


@dataclass(frozen=True)
class Materialization:
    """A materialized pipe: SQL without parameters whose answer, computed over each block
    inserted into `source`, is inserted into the `target` datasource. `nodes` are the
    rendered nodes up to the materialized one (earlier ones become its CTEs), so the
    backfill can put a CTE of its own, named for the source, ahead of them."""

    name: str
    target: str
    source: str
    """The datasource whose inserts drive it: the table its SQL reads first."""
    nodes: tuple[NodeSource, ...]
    columns: tuple[tuple[str, str], ...]
    """(name, ClickHouse type) of each answer column, each one of the target's."""

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "source": self.source,
            "nodes": [
                {"name": n.name, "sql": n.sql, "file": n.file, "line": n.line} for n in self.nodes
            ],
            "columns": [list(c) for c in self.columns],
        }

    @classmethod
    def from_json(cls, name: str, doc: dict) -> Materialization:
        return cls(
            name=name,
            target=doc["target"],
            source=doc["source"],
            nodes=tuple(NodeSource(**node) for node in doc["nodes"]),
            columns=tuple((c[0], c[1]) for c in doc["columns"]),
        )


@dataclass(frozen=True)
class Artifact:
    """A built project."""

    name: str
    descriptor_set: bytes
    pipes: dict[str, PipeSource]
    protos: dict[str, str] = field(default_factory=dict)
    """Generated `.proto` sources by path, for `pipit protos` (empty for a native project:
    its sources are its own)."""
    materializations: dict[str, Materialization] = field(default_factory=dict)
    """Materialized pipes by name."""

    def to_json(self) -> dict:
        doc = {
            "format": FORMAT,
            "name": self.name,
            "descriptor_set": base64.b64encode(self.descriptor_set).decode(),
            "protos": dict(sorted(self.protos.items())),
            "pipes": {
                name: {
                    "form": pipe.form,
                    "description": pipe.description,
                    "nodes": [
                        {"name": n.name, "sql": n.sql, "file": n.file, "line": n.line}
                        for n in pipe.nodes
                    ],
                }
                for name, pipe in sorted(self.pipes.items())
            },
        }
        if self.materializations:
            # Only when there are some, so a project without them keeps the version it had.
            doc["materializations"] = {
                name: m.to_json() for name, m in sorted(self.materializations.items())
            }
        return doc

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    @property
    def version(self) -> str:
        """A digest of the whole build: equal builds have equal versions."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:20]

    @classmethod
    def from_bytes(cls, data: bytes) -> Artifact:
        doc = orjson.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown project format {doc.get('format')!r}")
        return cls(
            name=doc["name"],
            descriptor_set=base64.b64decode(doc["descriptor_set"]),
            protos=dict(doc.get("protos", {})),
            pipes={
                name: PipeSource(
                    name=name,
                    form=pipe["form"],
                    description=pipe.get("description", ""),
                    nodes=tuple(NodeSource(**node) for node in pipe["nodes"]),
                )
                for name, pipe in doc["pipes"].items()
            },
            materializations={
                name: Materialization.from_json(name, m)
                for name, m in doc.get("materializations", {}).items()
            },
        )


def builtin() -> Artifact:
    """The four tutorials, in Pipit's native form: the package's own descriptor set (built
    from `protos/`) and `services/query/sql/*.sql`."""
    from pipit.clickhouse.v1 import options_pb2
    from pipit.query.v1 import query_service_pb2

    descriptor_set = resources.files("pipit").joinpath("descriptor_set.binpb").read_bytes()
    service = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"]
    pipes = {}
    for method in service.methods:
        name = method.GetOptions().Extensions[options_pb2.endpoint]
        if not name:
            continue
        sql = resources.files("services.query").joinpath("sql", f"{name}.sql").read_text()
        pipes[name] = PipeSource(
            name=name,
            form=NATIVE,
            nodes=(NodeSource(name, sql, f"services/query/sql/{name}.sql", 1),),
        )
    return Artifact(name="tutorials", descriptor_set=descriptor_set, pipes=pipes)
