"""The datasource registry, derived from the protos: every message in
`pipit.datasources.v1` that carries the `pipit.clickhouse.v1.table` option is a
datasource, and its fields (in declaration order) are the table's columns. The DDL of
the table and of its quarantine table come from that one declaration."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from functools import cache

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

import pipit.datasources.v1 as datasources_pkg
from common import id_numbers, page_moves
from common.config import Settings
from common.range_views import (
    EMPTY_PREFIX,
    MONTHS_SUFFIX,
    WHOLE_SUFFIX,
    RangeView,
    day_query,
    month_query,
)
from pipit.clickhouse.v1 import options_pb2

QUARANTINE_SUFFIX = "_quarantine"
# A quarantine table's columns, declared once: its DDL and ingest's inserts read them here.
QUARANTINE_COLUMN_TYPES = {"raw": "String", "error": "String", "arrived_at": "DateTime64(3, 'UTC')"}
QUARANTINE_COLUMNS = tuple(QUARANTINE_COLUMN_TYPES)
QUARANTINE_TTL_DAYS = Settings.quarantine_ttl_days
# Each row names the insert that wrote it: its deduplication token (every insert Pipit makes
# into a datasource has one, unique for all time), '' for rows from before the column. A
# materialized pipe's backfill tells by it which rows its view carried
# (pipit/project/materialize.py). Hidden from `SELECT *`, never sent by ingest.
INSERT_COLUMN = "_pipit_insert"
INSERT_TOKEN = "getSetting('insert_deduplication_token')"
# Ingest retries a flush under the same deduplication token after a crash or timeout;
# the table must remember recent tokens for the retry to be dropped, not counted twice.
DEDUPLICATION_SETTING = "non_replicated_deduplication_window = 10000"
# A projection's own settings (options.proto `index_granularity`), which a server lacks.
_PROJECTION_SETTINGS = re.compile(r" WITH SETTINGS \([^()]*\)$")


@dataclass(frozen=True)
class Column:
    """One column of a datasource."""

    name: str
    type: str
    json_text: bool
    field: FieldDescriptor
    json_path: tuple[str, ...] = ()
    """Keys leading to the value in an ingested JSON event; () means the column's name."""
    default_expression: str = ""

    @property
    def definition(self) -> str:
        default = f" DEFAULT {self.default_expression}" if self.default_expression else ""
        return f"`{self.name}` {self.type}{default}"


@dataclass(frozen=True)
class Datasource:
    """A datasource: its table, columns and the proto message that carries its rows."""

    name: str
    description: str
    engine: str
    partition_key: str
    sorting_key: str
    columns: tuple[Column, ...]
    descriptor: Descriptor
    skip_indexes: tuple[str, ...] = ()
    """`<name> <expression> TYPE <type> GRANULARITY <n>` of each data-skipping index."""
    projections: tuple[str, ...] = ()
    """`<name> (<query>)` of each aggregate projection."""
    range_views: tuple[RangeView, ...] = ()
    retired_projections: tuple[str, ...] = ()
    ttl: str = ""
    settings: str = ""
    primary_key: str = ""
    declared_sharding_key: str = ""
    materialized_by: str = ""
    """The materialized pipe that fills the table; empty when events are appended to it."""
    numbered_columns: tuple[str, ...] = ()
    """Columns whose ids get dense numbers on chDB (common/id_numbers.py)."""
    page_moves: bool = False
    """chDB keeps the table's page moves in a hidden table (common/page_moves.py)."""
    without_page_moves: tuple[str, ...] = ()
    """Projections built only where the table keeps no page moves (options.proto)."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def projection_names(self) -> tuple[str, ...]:
        """The declared projections' names, in the DDL's order."""
        return tuple(projection_name(p) for p in self.projections)

    def keeps_page_moves(self, numbered: bool) -> bool:
        """Whether the table keeps page moves where ids are `numbered` (chDB's one writer)."""
        return numbered and self.page_moves

    def projection_names_for(self, numbered: bool) -> tuple[str, ...]:
        """The names of the projections the table has where ids are `numbered` (chDB) or
        not: those `projections_for` builds."""
        return tuple(projection_name(p) for p in self.projections_for(numbered))

    def missing_projections(
        self, present: Container[str] | None, *, numbered: bool = False
    ) -> tuple[str, ...]:
        """The projections a table holding `present` lacks (none where `present` is
        unknown): those an upgrade adds and writes into the table's older parts."""
        if present is None:
            return ()
        return tuple(name for name in self.projection_names_for(numbered) if name not in present)

    def _dropped_projections(self, numbered: bool) -> tuple[str, ...]:
        """Projections an older table may have and this one must not: the retired ones,
        and where the table keeps page moves, those only a table without them builds."""
        unbuilt = self.without_page_moves if self.keeps_page_moves(numbered) else ()
        return self.retired_projections + unbuilt

    @property
    def quarantine_table(self) -> str:
        return self.name + QUARANTINE_SUFFIX

    @property
    def message_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor)

    def number_columns(self, database: str, numbered: bool) -> list[str]:
        """The hidden number columns (common/id_numbers.py), when ids are `numbered`."""
        if not numbered:
            return []
        return [id_numbers.number_column(database, c) for c in self.numbered_columns]

    def projections_for(self, numbered: bool) -> tuple[str, ...]:
        """The projections as declared where ids are `numbered` (chDB), else with the ids'
        uniqExact sets in place of bitmaps of their numbers and without the projections'
        own settings (a ClickHouse server: 25.8 has none)."""
        if self.keeps_page_moves(numbered):
            return tuple(
                p for p in self.projections if projection_name(p) not in self.without_page_moves
            )
        if numbered:
            return self.projections
        return tuple(
            id_numbers.server_form(_PROJECTION_SETTINGS.sub("", p)) for p in self.projections
        )

    def create_table_sql(self, database: str, *, numbered: bool = False) -> str:
        """Single-node DDL. Identifiers come from the protos and the validated database
        setting, never from requests. `numbered`: chDB's, with the hidden number columns
        (their lookup, common/id_numbers.py, must exist first); else a ClickHouse server's,
        without."""
        columns = ",\n    ".join(
            [c.definition for c in self.columns]
            + self.number_columns(database, numbered)
            + [f"INDEX {index}" for index in self.skip_indexes]
            + [f"PROJECTION {projection}" for projection in self.projections_for(numbered)]
        )
        clauses = [f"ENGINE = {self.engine}"]
        if self.partition_key:
            clauses.append(f"PARTITION BY {self.partition_key}")
        clauses.append(f"ORDER BY ({self.sorting_key})" if self.sorting_key else "ORDER BY tuple()")
        if self.primary_key:
            clauses.append(f"PRIMARY KEY ({self.primary_key})")
        if self.ttl:
            clauses.append(f"TTL {self.ttl}")
        settings = ", ".join(s for s in (DEDUPLICATION_SETTING, self.settings) if s)
        clauses.append(f"SETTINGS {settings}")
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}` (\n    {columns}\n)\n"
            + "\n".join(clauses)
        )

    def upgrade_sql(
        self,
        table: str,
        database: str = "",
        *,
        numbered: bool = False,
        present: Container[str] | None = None,
    ) -> list[str]:
        """Adds the insert column (INSERT_COLUMN), the declared skipping indexes and
        projections to `table` (its qualified
        name, `ON CLUSTER` included where it applies) when it was created before them. New
        parts (and parts that merge) get them; older parts are read as before, so answers
        do not change, only their cost; where `present` is known the engine writes a
        projection the table lacked into them). `numbered` (chDB, `database` the table's): first
        numbers the ids of the rows the table holds, then adds the hidden number columns,
        which older parts compute from the lookup when read or merged (before the lookup
        is refilled at a start they fail, and a merge is retried, rather than count 0)
        until the embedded warehouse's `ensure_schema` has them written (MATERIALIZE
        COLUMN, once, in the background). `present`, when known, names the projections the
        table has (None where the engine cannot say, or the table is new): a declared one
        not among them is written into the older parts, and a retired one is dropped only
        if among them, as the engine records every
        DROP PROJECTION as a mutation of the table's parts, even one with nothing to drop,
        and a start would otherwise add one per retired projection."""
        return (
            [self.insert_column_sql(table)]
            + self._numbering_upgrade_sql(table, database, numbered)
            + [
                f"ALTER TABLE {table} ADD INDEX IF NOT EXISTS {index}"
                for index in self.skip_indexes
            ]
            + [
                f"ALTER TABLE {table} ADD PROJECTION IF NOT EXISTS {projection}"
                for projection in self.projections_for(numbered)
            ]
            + [
                # A projection added to a table with parts is read from those parts' rows
                # until they merge (a big part may never): a range view's whole days would
                # scan them. The engine writes it into them in the background (a mutation;
                # reads are exact meanwhile), once: only where the table lacked it. chDB's
                # default waits for the mutation, and the start or deploy with it.
                f"ALTER TABLE {table} MATERIALIZE PROJECTION `{name}` SETTINGS mutations_sync = 0"
                for name in self.missing_projections(present, numbered=numbered)
            ]
            + [
                f"ALTER TABLE {table} DROP PROJECTION IF EXISTS `{name}`"
                for name in self._dropped_projections(numbered)
                if present is None or name in present
            ]
        )

    @staticmethod
    def insert_column_sql(table: str) -> str:
        """Adds the hidden insert column (INSERT_COLUMN) to `table`, which its CREATE does
        not declare: a table just created needs this one step of `upgrade_sql`."""
        return (
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS `{INSERT_COLUMN}` String "
            f"MATERIALIZED {INSERT_TOKEN}"
        )

    def _numbering_upgrade_sql(self, table: str, database: str, numbered: bool) -> list[str]:
        if not numbered or not self.numbered_columns:
            return []
        # Only while the table lacks the columns: once they exist, every row inserted
        # was numbered on its way in, and the scan is skipped (a constant false filter).
        missing = " OR ".join(
            f"NOT hasColumnInTable('{database}', '{self.name}', '{id_numbers.column_name(c)}')"
            for c in self.numbered_columns
        )
        source = f"{table} WHERE {missing}"
        first = "timestamp" if "timestamp" in self.column_names else "rowNumberInAllBlocks()"
        return [
            id_numbers.number_sql(database, self.numbered_columns, source, first),
            *(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {definition}"
                for definition in self.number_columns(database, numbered)
            ),
        ]

    def _page_moves_sql(
        self, database: str, numbered: bool, existing: Container[str] | None
    ) -> list[str]:
        # Kept where ids are numbered, for the same reason: one writer (chDB). A moves table
        # made beside a table with rows starts with their moves (and with none beside a
        # new one, at the cost of an empty read).
        if not numbered:
            return []
        if not self.page_moves:
            # A table whose declaration no longer keeps page moves (a deploy took the option
            # off) loses what was kept for them: its views would go on recording sessions
            # into a pending table no writer reconciles, growing with every insert. (Starts
            # and deploys know what exists; a printed migration does not take it off.)
            kept = page_moves.kept_tables(self.name)
            if existing is not None and any(name in existing for name in kept):
                return page_moves.dropped_sql(database, self.name)
            return []
        if existing is not None and page_moves.table(self.name) in existing:
            # Made again where a process stopped while the rows were replaced (the mark is
            # still there); and an older release's table goes, left where a start stopped
            # before dropping it.
            stale = page_moves.stale_table(self.name) in existing
            # The sessions' spans made from the rows where a release before them kept the
            # moves (a rebuild makes them anyway).
            spans = stale or page_moves.spans_table(self.name) in existing
            return [
                *page_moves.schema_sql(database, self.name, spans=spans),
                *(page_moves.rebuild_sql(database, self.name) if stale else []),
                *page_moves.retired_sql(database, self.name),
            ]
        # Missing, or not known to be there: made (again) from the rows, or from the table
        # an older release kept where that is known to be there (and not marked stale).
        return [
            *page_moves.pending_schema_sql(database, self.name),
            *page_moves.rebuild_sql(
                database,
                self.name,
                from_retired=existing is not None
                and page_moves.retired_table(self.name) in existing
                and page_moves.stale_table(self.name) not in existing,
            ),
        ]

    def range_views_sql(
        self, database: str, on_cluster: str = "", *, numbered: bool = False
    ) -> list[str]:
        """The range view of each projection that declares one, its siblings for ranges
        of whole periods and its empty table, over this table (on a cluster, over its
        Distributed table: every shard answers from its own parts)."""
        statements = []
        for view in self.range_views:
            statements += [
                view.create_sql(
                    f"`{database}`.`{self.name}`",
                    f"`{database}`.`{name}`{on_cluster}",
                    server_form=not numbered,
                    form=form,
                )
                for name, form in ((view.name, "full"), *view.siblings)
            ]
            statements.append(
                view.empty_sql(
                    f"`{database}`.`{view.whole_name}`",
                    f"`{database}`.`{view.empty_name}`{on_cluster}",
                )
            )
        return statements

    def stale_views(self, database: str, views: Mapping[str, str] | None) -> list[str]:
        """The range views (and their siblings) that an older release made for a
        projection since retired: nothing reads them, but they hold their names, which a
        team's datasource may want. `views` names the plain views `database` holds, each
        with its SELECT (`Warehouse.view_selects`); only a view of a retired projection's
        name that reads this table is one, so a team's table or view of that name stays
        (DROP VIEW of a table fails, and a start with it). None (not known): none."""
        if not views:
            return []
        reads_table = re.compile(
            rf"\bFROM\s+`?{re.escape(database)}`?\.`?{re.escape(self.name)}`?(?!\w)"
        )
        return [
            name
            for retired in self.retired_projections
            for name in (retired, retired + WHOLE_SUFFIX, retired + MONTHS_SUFFIX)
            if name in views and reads_table.search(views[name])
        ]

    def stale_views_sql(
        self, database: str, views: Mapping[str, str] | None, on_cluster: str = ""
    ) -> list[str]:
        """Drops the `stale_views`, and the empty table of each stale range view (a name of
        Pipit's own, so whatever holds it is ours)."""
        stale = self.stale_views(database, views)
        retired = set(self.retired_projections)
        return [
            *(f"DROP VIEW IF EXISTS `{database}`.`{name}`{on_cluster}" for name in stale),
            *(
                f"DROP TABLE IF EXISTS `{database}`.`{EMPTY_PREFIX}{name}`{on_cluster}"
                for name in stale
                if name in retired
            ),
        ]

    def add_columns_sql(self, table: str) -> list[str]:
        """Adds the declared columns `table` (qualified, `ON CLUSTER` included where it
        applies) lacks, each after the one declared before it: a table created by an older
        release gets a new column before ingest inserts into it (an insert naming a column
        the table lacks fails). One statement, so a cluster queues one DDL task per table."""
        clauses = [
            f"ADD COLUMN IF NOT EXISTS {column.definition} "
            + (f"AFTER `{self.columns[i - 1].name}`" if i else "FIRST")
            for i, column in enumerate(self.columns)
        ]
        return [f"ALTER TABLE {table} " + ", ".join(clauses)]

    def create_quarantine_sql(self, database: str, ttl_days: int = QUARANTINE_TTL_DAYS) -> str:
        """Rows that failed validation, kept as received with the reason for `ttl_days`."""
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.quarantine_table}` (\n"
            + ",\n".join(f"    `{name}` {kind}" for name, kind in QUARANTINE_COLUMN_TYPES.items())
            + "\n)\n"
            "ENGINE = MergeTree\n"
            "PARTITION BY toYYYYMM(arrived_at)\n"
            "ORDER BY arrived_at\n"
            f"TTL {quarantine_ttl(ttl_days)}\n"
            f"SETTINGS {DEDUPLICATION_SETTING}"
        )

    @staticmethod
    def quarantine_upgrade_sql(table: str, ttl_days: int = QUARANTINE_TTL_DAYS) -> list[str]:
        """Sets the quarantine TTL on `table` (qualified, `ON CLUSTER` included where it
        applies) when it was created without it or with another. The engine does nothing
        when the TTL is already this one."""
        return [f"ALTER TABLE {table} MODIFY TTL {quarantine_ttl(ttl_days)}"]

    def schema_sql(
        self,
        database: str,
        quarantine_ttl_days: int = QUARANTINE_TTL_DAYS,
        *,
        existing: Container[str] | None = None,
        numbered: bool = False,
        projections: Mapping[str, Container[str]] | None = None,
        views: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Every statement that brings this datasource's tables up to date, in the order
        they run; each is idempotent. `existing`, when known, names the tables `database`
        held before: a table not among them is created with every declared column, index,
        projection and TTL, so of the steps that bring an older one up to date only the
        insert column's is kept — the others cost most of a start's schema work and would
        change nothing. `numbered`: ids get dense numbers (chDB, whose numbering tables
        must exist: common/id_numbers.py), or not (a ClickHouse server). `projections`,
        when known, names each existing table's projections (`upgrade_sql`'s `present`);
        `views`, when known, the database's views (`stale_views_sql`)."""
        table = f"`{database}`.`{self.name}`"
        quarantine = f"`{database}`.`{self.quarantine_table}`"
        upgrade_table = existing is None or self.name in existing
        upgrade_quarantine = existing is None or self.quarantine_table in existing
        # The lookup a number column reads must exist before the column does.
        lookup = id_numbers.schema_sql(database) if numbered and self.numbered_columns else []
        return [
            *lookup,
            self.create_table_sql(database, numbered=numbered),
            *(
                self.add_columns_sql(table)
                + self.upgrade_sql(
                    table,
                    database,
                    numbered=numbered,
                    present=None if projections is None else projections.get(self.name, ()),
                )
                if upgrade_table
                else [self.insert_column_sql(table)]
            ),
            *self.range_views_sql(database, numbered=numbered),
            *self.stale_views_sql(database, views),
            *self._page_moves_sql(database, numbered, existing),
            self.create_quarantine_sql(database, quarantine_ttl_days),
            *(
                self.quarantine_upgrade_sql(quarantine, quarantine_ttl_days)
                if upgrade_quarantine
                else []
            ),
        ]


def quarantine_ttl(days: int) -> str:
    """The TTL expression of a quarantine table: rows go `days` after they arrived."""
    if not isinstance(days, int) or days <= 0:
        raise ValueError(f"the quarantine TTL must be a positive number of days, got {days!r}")
    return f"toDateTime(arrived_at) + INTERVAL {days} DAY"


def projection_name(projection: str) -> str:
    """The name of a projection as `Datasource.projections` (or `projections_for`) holds it
    (`<name> (<query>)`)."""
    return projection.split(" ", 1)[0].strip("`")


def from_descriptor(descriptor: Descriptor) -> Datasource | None:
    """The datasource a message declares with the `pipit.clickhouse.v1.table` option, or
    None for any other message."""
    opts = descriptor.GetOptions()
    if not opts.HasExtension(options_pb2.table):
        return None
    table = opts.Extensions[options_pb2.table]
    skip_indexes = tuple(
        f"`{index.name}` {index.expression} TYPE {index.type} GRANULARITY {index.granularity or 1}"
        for index in table.skip_indexes
    )
    for p in table.projections:
        if (p.fold_hours or p.folded_view) and not p.range_view:
            raise ValueError(f"projection {p.name}: a folded view is a kind of range view")
        if p.day_projection and not p.range_view:
            raise ValueError(f"projection {p.name}: a day projection serves range views")
        if p.month_projection and not (p.day_projection and (p.fold_hours or p.folded_view)):
            raise ValueError(
                f"projection {p.name}: a month projection serves a folded view that reads days"
            )
    range_views = (
        tuple(
            RangeView(
                p.name,
                p.query,
                p.fold_hours,
                p.day_projection if p.fold_hours else "",
                month_projection=p.month_projection if p.fold_hours else "",
                one_row_per_key=p.one_row_per_key,
                table=table.name,
            )
            for p in table.projections
            if p.range_view
        )
        + tuple(
            RangeView(
                p.folded_view,
                p.query,
                fold_hours=True,
                day_projection=p.day_projection,
                month_projection=p.month_projection,
                projection=p.name,
                table=table.name,
            )
            for p in table.projections
            if p.range_view and p.folded_view
        )
        + tuple(
            RangeView(
                p.day_projection,
                p.query,
                day_projection=p.day_projection,
                by_day=True,
                projection=p.name,
                table=table.name,
            )
            for p in table.projections
            if p.day_projection
        )
    )
    # Day and month projections are derived from their hourly one, and follow it in the
    # table's DDL.
    projections: list[str] = []
    for p in table.projections:
        settings = (
            f" WITH SETTINGS (index_granularity = {p.index_granularity})"
            if p.index_granularity
            else ""
        )
        projections.append(f"`{p.name}` ({p.query}){settings}")
        if p.day_projection:
            projections.append(f"`{p.day_projection}` ({day_query(p.query)})")
        if p.month_projection:
            projections.append(f"`{p.month_projection}` ({month_query(p.query)})")
    for name in table.numbered_columns:
        field = descriptor.fields_by_name.get(name)
        column = field.GetOptions().Extensions[options_pb2.column] if field else None
        if column is None or column.type != "String" or column.default_expression:
            # The writer numbers what a batch holds, and an omitted value as '' (whatever
            # a DEFAULT expression would have made of it).
            raise ValueError(
                f"{descriptor.full_name}: numbered column {name!r} must be a String column "
                "without a DEFAULT expression"
            )
    columns = []
    for field in descriptor.fields:
        column = field.GetOptions().Extensions[options_pb2.column]
        if not column.type:
            raise ValueError(f"{descriptor.full_name}.{field.name} has no ClickHouse column type")
        path = column.json_path.removeprefix("$.") if column.json_path else ""
        columns.append(
            Column(
                field.name,
                column.type,
                column.json_text,
                field,
                json_path=tuple(path.split(".")) if path and path != field.name else (),
                default_expression=column.default_expression,
            )
        )
    ds = Datasource(
        name=table.name,
        description=table.description,
        engine=table.engine,
        partition_key=table.partition_key,
        sorting_key=table.sorting_key,
        columns=tuple(columns),
        descriptor=descriptor,
        skip_indexes=skip_indexes,
        projections=tuple(projections),
        range_views=range_views,
        retired_projections=tuple(table.retired_projections),
        ttl=table.ttl,
        settings=table.settings,
        primary_key=table.primary_key,
        declared_sharding_key=table.sharding_key,
        materialized_by=table.materialized_by,
        numbered_columns=tuple(table.numbered_columns),
        page_moves=table.page_moves,
        without_page_moves=tuple(p.name for p in table.projections if p.without_page_moves),
    )
    if ds.without_page_moves and not ds.page_moves:
        raise ValueError(
            f"{ds.name}: projection {ds.without_page_moves[0]} is built without page moves, "
            "which the table does not keep"
        )
    missing = [c for c in page_moves.SOURCE_COLUMNS if c not in ds.column_names]
    if ds.page_moves and missing:
        raise ValueError(f"{ds.name}: page_moves needs the columns {', '.join(missing)}")
    return ds


@cache
def registry() -> dict[str, Datasource]:
    """Every datasource by name, found by scanning the generated datasource modules."""
    found: dict[str, Datasource] = {}
    for info in pkgutil.iter_modules(datasources_pkg.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"{datasources_pkg.__name__}.{info.name}")
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            ds = from_descriptor(descriptor)
            if ds is not None:
                found[ds.name] = ds
    return dict(sorted(found.items()))


def by_message(descriptor: Descriptor) -> Datasource:
    """The datasource whose rows the given message type carries."""
    for ds in registry().values():
        if ds.descriptor.full_name == descriptor.full_name:
            return ds
    raise KeyError(f"{descriptor.full_name} is not a datasource message")
