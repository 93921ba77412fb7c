"""Cluster DDL for a sharded, replicated ClickHouse, derived from the same datasource
declaration as the single-node DDL (`common.datasources`).

Each datasource becomes two tables on every node of the cluster:

- `<name>_local`: the rows this shard holds, in the Replicated form of the declared
  engine, keyed in Keeper by `{shard}` and `{replica}` macros that each node defines;
- `<name>`: a Distributed table over the `_local` tables, sharded by a hash of
  `user_id`, so per-user queries read one shard and rows of one user stay together.

Every insert carries a deduplication token, and a shard drops a block whose token it has
seen. So every sharding key is a function of the row: a retried flush splits its rows
across the shards exactly as the first attempt did, and each shard drops its copy.
(`rand()` would send other rows under the same token: some dropped, some doubled.)

The Distributed table carries the datasource's own name, so the query SQL (which uses
unqualified datasource names) and ingest (which inserts into `<name>`) run unchanged."""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.datasources import DEDUPLICATION_SETTING, QUARANTINE_TTL_DAYS, Datasource

if TYPE_CHECKING:
    from common.warehouse.base import Warehouse

LOCAL_SUFFIX = "_local"
SHARDING_COLUMN = "user_id"
SHARDING_KEY = f"cityHash64({SHARDING_COLUMN})"
# Quarantined rows have no trustworthy user_id (they failed validation): spread them by
# what they are, which is as even as rand() and the same on every retry.
QUARANTINE_SHARDING_KEY = "cityHash64(raw)"
# The Replicated engines deduplicate through Keeper, with their own window setting:
# ingest retries a flush under the same token, and the retry must be dropped.
REPLICATED_DEDUPLICATION_SETTING = "replicated_deduplication_window = 10000"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENGINE = re.compile(r"^\s*(?P<name>[A-Za-z]*MergeTree)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


# How a server shows a Distributed table's engine (`system.tables.engine_full`): its cluster,
# database and local table, quoted, then the sharding key. Names holding a quote, a
# backslash or a backquote are not Pipit's and match nothing.
_DISTRIBUTED = re.compile(r"^Distributed\('([^'\\`]+)',\s*'([^'\\`]+)',\s*'([^'\\`]+)'")


@dataclass(frozen=True)
class ShardedRows:
    """Where a Distributed datasource's rows are: every shard's local table."""

    cluster: str
    database: str
    local_table: str

    @classmethod
    def of(cls, engine_full: str) -> ShardedRows | None:
        """The rows behind a table whose engine is `engine_full`, or None where it is no
        Distributed table (its rows are its own)."""
        found = _DISTRIBUTED.match(engine_full)
        return cls(*found.groups()) if found else None

    def target(self) -> str:
        """The local tables as a TRUNCATE or an ALTER names them: on every node. A
        Distributed table holds no rows: TRUNCATE of it drops only its queue of pending
        inserts and ALTER … DELETE of it fails, while its shards keep every row."""
        return f"`{self.database}`.`{self.local_table}` ON CLUSTER `{self.cluster}`"


# Each table's engine as a server shows it: a Distributed one names its cluster.
_ENGINES = "SELECT name, engine_full FROM system.tables WHERE database = {database:String}"


async def sharded_tables(warehouse: Warehouse, name: str = "") -> dict[str, ShardedRows]:
    """The Distributed tables of `warehouse`'s database (only `name`, where given), by name,
    with where each one's rows are: read from their engines each time, so the schema says
    it, whoever made it (`pipit migrate --cluster`). Raises what the warehouse raises."""
    params = {"database": warehouse.database, "name": name}
    where = " AND name = {name:String}" if name else ""
    answer = await warehouse.query(f"{_ENGINES}{where} ORDER BY name", params)
    found = ((row["name"], ShardedRows.of(str(row["engine_full"]))) for row in answer.data)
    return {table: rows for table, rows in found if rows is not None}


def sharding_key(ds: Datasource) -> str:
    """As the datasource declares; else by user_id where it has one; otherwise by its
    sorting key, which is made of its columns (so deterministic) and keeps rows that sort
    together together."""
    if ds.declared_sharding_key:
        return ds.declared_sharding_key
    if SHARDING_COLUMN in ds.column_names:
        return SHARDING_KEY
    return f"cityHash64({ds.sorting_key})"


def replicated_engine(engine: str, zookeeper_path: str) -> str:
    """The Replicated form of a MergeTree-family engine: `ReplacingMergeTree(ver)`
    becomes `ReplicatedReplacingMergeTree('<path>', '{replica}', ver)`."""
    match = _ENGINE.match(engine)
    if match is None:
        raise ValueError(f"only MergeTree-family engines can be replicated, got {engine!r}")
    name, args = match["name"], (match["args"] or "").strip()
    if name.startswith("Replicated"):
        raise ValueError(f"declare the plain engine; the cluster DDL replicates it: {engine!r}")
    replicated_args = [f"'{zookeeper_path}'", "'{replica}'", *([args] if args else [])]
    return f"Replicated{name}({', '.join(replicated_args)})"


_SINGLE_NODE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS `(?P<database>[^`]+)`\.`(?P<table>[^`]+)` "
    r"(?P<columns>\(\n.*?\n\))\nENGINE = (?P<engine>[^\n]+)\n(?P<tail>.*)$",
    re.S,
)


@dataclass(frozen=True)
class SingleNodeTable:
    """A single-node CREATE TABLE statement taken apart, so the cluster DDL reuses its
    columns, keys and settings rather than declaring them a second time."""

    table: str
    columns: str
    engine: str
    tail: str

    @property
    def columns_without_indexes(self) -> str:
        """The column list minus data-skipping indexes and projections, which only the
        tables that hold parts have (a Distributed table refuses them)."""
        return "\n".join(
            line
            for line in self.columns.split("\n")
            if not line.lstrip().startswith(("INDEX ", "PROJECTION "))
        ).replace(",\n)", "\n)")

    @classmethod
    def parse(cls, sql: str) -> SingleNodeTable:
        match = _SINGLE_NODE.match(sql)
        if match is None:
            raise ValueError(f"unexpected single-node DDL shape:\n{sql}")
        return cls(match["table"], match["columns"], match["engine"].strip(), match["tail"])


@dataclass(frozen=True)
class ClusterSchema:
    """The ON CLUSTER DDL of every datasource for one cluster and database."""

    cluster: str
    database: str
    quarantine_ttl_days: int = QUARANTINE_TTL_DAYS

    def __post_init__(self) -> None:
        # Both reach DDL as identifiers, so only plain identifiers pass.
        for label, value in (("cluster", self.cluster), ("database", self.database)):
            if not _IDENTIFIER.fullmatch(value):
                raise ValueError(f"{label} must be a plain identifier, got {value!r}")

    def _on_cluster(self, table: str) -> str:
        return f"`{self.database}`.`{table}` ON CLUSTER `{self.cluster}`"

    def zookeeper_path(self, local_table: str) -> str:
        # {shard} keeps each shard's replicas in one Keeper subtree and the shards apart;
        # {replica} (in the engine's second argument) tells the replicas apart.
        return f"/clickhouse/tables/{{shard}}/{self.database}/{local_table}"

    def create_database_sql(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS `{self.database}` ON CLUSTER `{self.cluster}`"

    def _pair(self, single_node_sql: str, sharding_key: str) -> list[str]:
        """`<table>_local` (replicated) and `<table>` (distributed over it). The local
        table comes first: inserts through a Distributed table fail until it exists."""
        single = SingleNodeTable.parse(single_node_sql)
        if DEDUPLICATION_SETTING not in single.tail:
            raise ValueError(f"{single.table}: expected {DEDUPLICATION_SETTING!r}")
        local = single.table + LOCAL_SUFFIX
        engine = replicated_engine(single.engine, self.zookeeper_path(local))
        tail = single.tail.replace(DEDUPLICATION_SETTING, REPLICATED_DEDUPLICATION_SETTING)
        return [
            f"CREATE TABLE IF NOT EXISTS {self._on_cluster(local)} {single.columns}\n"
            f"ENGINE = {engine}\n{tail}",
            f"CREATE TABLE IF NOT EXISTS {self._on_cluster(single.table)} "
            f"{single.columns_without_indexes}\n"
            f"ENGINE = Distributed('{self.cluster}', '{self.database}', '{local}', "
            f"{sharding_key})",
        ]

    def datasource_sql(
        self,
        ds: Datasource,
        present: Container[str] | None = None,
        views: Mapping[str, str] | None = None,
    ) -> list[str]:
        # Tables created by an older release get the columns, indexes and projections
        # declared since: columns on both tables (an insert through the Distributed table
        # names them, and it forwards them to the local one), the rest where parts are.
        # Several ingest replicas write a cluster, so no ids are numbered here
        # (common/id_numbers.py): the projections keep the ids' uniqExact sets. `present`,
        # when known, names the projections the local table had (`upgrade_sql`); `views`,
        # the node's views (`stale_views_sql`).
        local = self._on_cluster(ds.name + LOCAL_SUFFIX)
        on_cluster = f" ON CLUSTER `{self.cluster}`"
        return [
            *self._pair(ds.create_table_sql(self.database, numbered=False), sharding_key(ds)),
            *ds.add_columns_sql(local),
            *ds.add_columns_sql(self._on_cluster(ds.name)),
            *ds.upgrade_sql(local, numbered=False, present=present),
            *ds.range_views_sql(self.database, on_cluster, numbered=False),
            *ds.stale_views_sql(self.database, views, on_cluster),
        ]

    def everywhere_sql(self, single_node_sql: str) -> str:
        """One of Pipit's own small tables (jobs, tokens, deployments, the S3 ledger) on
        every node, each node a replica of all of it: one Keeper path for every shard, so
        whichever node a service reaches answers from the whole table without a
        Distributed table in front."""
        single = SingleNodeTable.parse(single_node_sql)
        path = f"/clickhouse/tables/all/{self.database}/{single.table}"
        return (
            f"CREATE TABLE IF NOT EXISTS {self._on_cluster(single.table)} {single.columns}\n"
            f"ENGINE = {replicated_engine(single.engine, path)}\n{single.tail}"
        )

    def quarantine_sql(self, ds: Datasource) -> list[str]:
        # The TTL lives on the local tables, which hold the parts; older ones get it too.
        local = self._on_cluster(ds.quarantine_table + LOCAL_SUFFIX)
        single = ds.create_quarantine_sql(self.database, self.quarantine_ttl_days)
        return self._pair(single, QUARANTINE_SHARDING_KEY) + ds.quarantine_upgrade_sql(
            local, self.quarantine_ttl_days
        )

    def statements(
        self,
        datasources: Iterable[Datasource],
        *,
        existing: Container[str] | None = None,
        projections: Mapping[str, Container[str]] | None = None,
        views: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Every statement, in the order they must run; each is idempotent. `existing` and
        `projections`, when known (read from a node before the statements run), name the
        tables there and each one's projections: a projection an existing local table
        lacks is written into its parts. `views`, when known, the node's views: a retired
        projection's range view is dropped."""
        out = [self.create_database_sql()]
        for ds in datasources:
            local = ds.name + LOCAL_SUFFIX
            known = existing is not None and projections is not None and local in existing
            out += self.datasource_sql(ds, projections.get(local, ()) if known else None, views)
            out += self.quarantine_sql(ds)
        return out
