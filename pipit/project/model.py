"""What a project declares, whichever form it was written in: datasources and pipes, each
with the file and line it came from so that every problem can be reported as
`file:line: message`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class ProjectError(ValueError):
    """A problem in a project's files, at a place in them."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class BuildFailed(Exception):
    """The project has problems; nothing of it was built."""

    def __init__(self, problems: Iterable[ProjectError]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a datasource."""

    name: str
    type: str
    """ClickHouse type as written, e.g. `String`, `DateTime64(3)`, `Nullable(Int32)`."""
    json_path: str = ""
    """Tinybird's `json:$.a.b`: where the value is in an ingested JSON event (`$.name` when
    not given)."""
    default: str = ""
    """`DEFAULT <expression>` when the column has one."""
    codec: str = ""
    """`CODEC(...)`'s arguments when the column has one, e.g. `ZSTD(1)`."""
    line: int = 0


@dataclass(frozen=True)
class DatasourceSpec:
    """A datasource: a table and how events reach it."""

    name: str
    columns: tuple[ColumnSpec, ...]
    description: str = ""
    engine: str = "MergeTree"
    """Engine family, e.g. `MergeTree`, `ReplacingMergeTree`, `AggregatingMergeTree`."""
    engine_arguments: str = ""
    """What goes in the engine's parentheses (ENGINE_VER, ENGINE_SIGN, …), already
    joined, e.g. `updated_at`; empty for none."""
    partition_key: str = ""
    sorting_key: str = ""
    primary_key: str = ""
    ttl: str = ""
    settings: str = ""
    """`ENGINE_SETTINGS`, e.g. `index_granularity = 8192`."""
    indexes: tuple[str, ...] = ()
    """Each `<name> <expression> TYPE <type> GRANULARITY <n>`."""
    projections: tuple[str, ...] = ()
    """Each `<name> (<query>)`."""
    sharding_key: str = ""
    """How a cluster spreads rows over shards; empty: chosen by Pipit."""
    materialized_by: str = ""
    """The pipe whose `TYPE materialized` node fills the table, if one does."""
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class NodeSpec:
    """One node of a pipe: a named SQL query (a template) that later nodes may read by
    name."""

    name: str
    sql: str
    """The SQL as written, template markup included (a leading `%` line removed)."""
    description: str = ""
    type: str = ""
    """`endpoint`, `materialized`, `copy`, … or empty for an intermediate node."""
    datasource: str = ""
    """`DATASOURCE` of a materialized or copy node."""
    file: str = ""
    line: int = 0
    """Line of the node's first SQL line in `file`."""


@dataclass(frozen=True)
class PipeSpec:
    """A pipe: its nodes, the last of which (or the one with TYPE endpoint) answers."""

    name: str
    nodes: tuple[NodeSpec, ...]
    description: str = ""
    file: str = ""
    line: int = 0

    @property
    def endpoint(self) -> NodeSpec | None:
        """The node that answers the pipe's API endpoint, if it has one."""
        for node in self.nodes:
            if node.type == "endpoint":
                return node
        return None


@dataclass(frozen=True)
class ProjectSpec:
    """Everything a project folder declares."""

    datasources: tuple[DatasourceSpec, ...] = ()
    pipes: tuple[PipeSpec, ...] = ()
    problems: tuple[ProjectError, ...] = field(default=())
