"""Materialized pipes in the warehouse: the views that carry every insert into a source
datasource on to its pipe's target, and the backfill of the rows that came before.

Each materialized pipe is a chain of objects sharing one base name,
`_pipit_mv_<pipe>_<digest>`, the digest being that of everything the chain computes (its
SQL, source, target and the target's DDL), so the live database alone tells which chains
are current, and a changed pipe is a new chain:

    source ──<base>: the pipe's SQL, plus the insert's token──▶ <base>_stage (Null engine)
    <base>_stage ──<base>_fill──▶ target
    <base>_stage ──<base>_seen──▶ <base>_ledger        (while the backfill runs)

The cut between the backfill and the view. ClickHouse has no snapshot to cut at: an
insert that started before the view existed never reaches it, even if it commits after,
and part names or block numbers are given at commit. So each row carries what names its
insert: every datasource has a MATERIALIZED column `_pipit_insert` holding the insert's
deduplication token (every insert Pipit makes into a datasource has one, unique for all
time; rows from before the column read as ''). The view stamps each block it carries with
the same token, and the Null stage hands every block to both the target and the ledger,
so an insert reaches the target exactly when its token is in the ledger (the stage's
views exist before the view that feeds it: no insert sees one without the other). Then:

1. After the view is created, wait until every insert running then has finished: from
   now on every insert the view missed has committed its rows.
2. Take the tokens present in the source (`_ids`).
3. Wait until every insert running after that has finished: a token in `_ids` whose
   insert reached the view is in the ledger now (a source's part is committed before its
   views run, so without this wait a token could be in the source and not yet in the
   ledger).
4. Record the tokens about to be backfilled (`_ids` less the ledger) in `_backfilled`,
   which the view reads: from then on it skips a block under one of them.
5. Wait again, so that a block the view carried before it could see step 4 is in the
   ledger; then backfill the rows whose token is in `_ids` and not in the ledger, through
   the pipe's own SQL (a CTE named for the source, holding just those rows, stands in for
   it).

Retries. A retried flush is dropped by the source, yet with
`deduplicate_blocks_in_dependent_materialized_views` the view still carries it, and the
target drops it only if it has seen the token. A retry of a flush first tried after the
view existed: the target has, so it counts once. First tried before the view, retried
while the backfill runs: the ledger has it, so the backfill leaves it out. Retried after
the backfill (ingest's backoff or a write-ahead log replayed after a crash, spanning the
whole deploy): `_backfilled` has it, so the view skips it. Only a flush first tried before
its datasource had the column (before this version of Pipit) and retried after the
backfill would count twice: its token was never stored. Then the ledger and its view are
dropped; the stage hop stays (a Null table, one pass over each block) and `_backfilled`
too (a primary-key lookup per insert).

A changed pipe drops its old chain first (the view that feeds it first of all), empties
the target and builds the new chain: the rows inserted in between reach no view and are
backfilled, like every row before them. A chain whose ledger is still there did not finish
its backfill (a deploy that died half way): it is rebuilt the same way. A pipe no longer
in the project loses its chain; its target keeps its rows.

Single node, as the rest of deploy DDL is today (issue 17 renders it ON CLUSTER)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import structlog

from common.datasources import INSERT_COLUMN, INSERT_TOKEN
from common.warehouse.base import Warehouse
from pipit.project.artifact import Materialization
from pipit.project.runtime import Project

log = structlog.get_logger("materialize")

PREFIX = "_pipit_mv_"
_DIGEST = 12
_SUFFIXES = ("_stage", "_fill", "_seen", "_ledger", "_ids", "_backfilled")
_WAIT_POLL_SECONDS = 0.05
_WAIT_LIMIT_SECONDS = 600.0


class MaterializeError(RuntimeError):
    """A chain could not be built; the deploy stops, and the next one rebuilds it."""


@dataclass(frozen=True)
class Chain:
    """The warehouse objects of one materialized pipe."""

    materialization: Materialization
    database: str
    target_sql: str

    @property
    def base(self) -> str:
        m = self.materialization
        what = "\n".join(
            [m.target, m.source, self.target_sql, *(f"{n.name}\n{n.sql}" for n in m.nodes)]
        )
        digest = hashlib.sha256(what.encode()).hexdigest()[:_DIGEST]
        return f"{PREFIX}{m.name}_{digest}"

    def _name(self, suffix: str = "") -> str:
        return f"`{self.database}`.`{self.base}{suffix}`"

    def _table(self, name: str) -> str:
        return f"`{self.database}`.`{name}`"

    def create_sql(self) -> list[str]:
        """The chain, the view that feeds it last."""
        from services.query.template_binder import compose

        m = self.materialization
        stage_columns = ",\n    ".join(
            [f"`{name}` {kind}" for name, kind in m.columns] + [f"`{INSERT_COLUMN}` String"]
        )
        answer = ", ".join(f"`{name}`" for name, _ in m.columns)
        sql = compose([(n.name, n.sql) for n in m.nodes])
        return [
            # Every datasource has it (Datasource.upgrade_sql); a source deployed before
            # Pipit had it gets it here, before the view exists.
            f"ALTER TABLE {self._table(m.source)} ADD COLUMN IF NOT EXISTS "
            f"`{INSERT_COLUMN}` String MATERIALIZED {INSERT_TOKEN}",
            f"CREATE TABLE {self._name('_ledger')} (`insert` String) "
            "ENGINE = MergeTree ORDER BY insert",
            f"CREATE TABLE {self._name('_stage')} (\n    {stage_columns}\n) ENGINE = Null",
            f"CREATE MATERIALIZED VIEW {self._name('_fill')} TO {self._table(m.target)} "  # noqa: S608 - the project's (admin's) SQL and built names
            f"AS SELECT {answer} FROM {self._name('_stage')}",
            f"CREATE MATERIALIZED VIEW {self._name('_seen')} TO {self._name('_ledger')} "  # noqa: S608 - the project's (admin's) SQL and built names
            f"AS SELECT DISTINCT `{INSERT_COLUMN}` AS insert FROM {self._name('_stage')} "
            f"WHERE `{INSERT_COLUMN}` != ''",
            f"CREATE TABLE {self._name('_backfilled')} (`insert` String) "
            "ENGINE = MergeTree ORDER BY insert",
            # A block whose token the backfill carried is a retry of a flush first tried
            # before the view existed: the source dropped it, and so does the view. The
            # token is constant in an insert, so this is a primary-key lookup.
            f"CREATE MATERIALIZED VIEW {self._name()} TO {self._name('_stage')} "  # noqa: S608 - the project's (admin's) SQL and built names
            f"AS SELECT *, {INSERT_TOKEN} AS `{INSERT_COLUMN}` FROM ({sql}) "
            f"WHERE {INSERT_TOKEN} NOT IN (SELECT insert FROM {self._name('_backfilled')} "
            f"WHERE insert = {INSERT_TOKEN})",
        ]

    def snapshot_sql(self) -> str:
        source = self._table(self.materialization.source)
        return (
            f"CREATE TABLE {self._name('_ids')} ENGINE = MergeTree ORDER BY insert "  # noqa: S608 - the project's (admin's) SQL and built names
            f"AS SELECT DISTINCT `{INSERT_COLUMN}` AS insert FROM {source}"
        )

    def carried_sql(self) -> str:
        """Records the tokens the backfill is about to carry, for the view to skip."""
        return (
            f"INSERT INTO {self._name('_backfilled')} SELECT insert FROM {self._name('_ids')} "  # noqa: S608 - the project's (admin's) SQL and built names
            f"WHERE insert != '' AND insert NOT IN (SELECT insert FROM {self._name('_ledger')})"
        )

    def backfill_sql(self) -> str:
        from services.query.template_binder import compose

        m = self.materialization
        answer = ", ".join(f"`{name}`" for name, _ in m.columns)
        missed = (
            f"SELECT * FROM {self._table(m.source)} WHERE `{INSERT_COLUMN}` IN "  # noqa: S608 - the project's (admin's) SQL and built names
            f"(SELECT insert FROM {self._name('_ids')} "
            f"WHERE insert NOT IN (SELECT insert FROM {self._name('_ledger')}))"
        )
        sql = compose([(m.source, missed), *((n.name, n.sql) for n in m.nodes)])
        # insert_deduplicate = 0: the backfill's blocks have no token, and a block equal to
        # one the view wrote (same day, same states) must not be dropped as its copy.
        return (
            f"INSERT INTO {self._table(m.target)} ({answer}) "  # noqa: S608 - the project's (admin's) SQL and built names
            f"SETTINGS insert_deduplicate = 0 SELECT {answer} FROM ({sql})"
        )

    def finish_sql(self) -> list[str]:
        return [
            f"DROP VIEW IF EXISTS {self._name('_seen')}",
            f"DROP TABLE IF EXISTS {self._name('_ledger')}",
            f"DROP TABLE IF EXISTS {self._name('_ids')}",
        ]


def drop_sql(database: str, base: str) -> list[str]:
    """A chain's objects, the view that feeds it first so that nothing is half carried."""
    views = [base, f"{base}_fill", f"{base}_seen"]
    tables = [f"{base}_stage", f"{base}_ledger", f"{base}_ids", f"{base}_backfilled"]
    return [f"DROP VIEW IF EXISTS `{database}`.`{v}`" for v in views] + [
        f"DROP TABLE IF EXISTS `{database}`.`{t}`" for t in tables
    ]


def chains(project: Project, database: str) -> dict[str, Chain]:
    """The project's chains by base name."""
    found = {}
    for m in project.artifact.materializations.values():
        target = project.datasources[m.target].create_table_sql(database)
        chain = Chain(m, database, target)
        found[chain.base] = chain
    return found


def pipe_of(base: str) -> str:
    return base[len(PREFIX) : -(_DIGEST + 1)]


async def live(warehouse: Warehouse) -> tuple[set[str], set[str]]:
    """(base names of the chains in the warehouse, those of them whose backfill is
    unfinished)."""
    result = await warehouse.query(
        "SELECT name, engine FROM system.tables WHERE database = {database:String} "
        "AND startsWith(name, {prefix:String})",
        {"database": warehouse.database, "prefix": PREFIX},
    )
    names = {str(row["name"]): str(row["engine"]) for row in result.data}
    bases = {
        name
        for name, engine in names.items()
        if engine == "MaterializedView" and not name.endswith(_SUFFIXES)
    }
    unfinished = {base for base in bases if f"{base}_ledger" in names or f"{base}_ids" in names}
    # Leftovers of a chain whose feeding view is gone count as unfinished chains too.
    for name in names:
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] not in bases:
                unfinished.add(name[: -len(suffix)])
    return bases | unfinished, unfinished


async def plan(warehouse: Warehouse, project: Project) -> list[str]:
    """What `apply` would change, in words."""
    wanted = chains(project, warehouse.database)
    have, unfinished = await live(warehouse)
    changes = []
    old_pipes = {pipe_of(base) for base in have - set(wanted)}
    for base, chain in sorted(wanted.items()):
        name, target = chain.materialization.name, chain.materialization.target
        if base in have and base not in unfinished:
            continue
        if name in old_pipes or base in unfinished:
            changes.append(f"rebuilt {target} from materialized pipe {name}")
        else:
            changes.append(f"materialized pipe {name} fills {target} (backfilled)")
    kept = {c.materialization.name for c in wanted.values()}
    changes += [f"removed materialized pipe {p}" for p in sorted(old_pipes - kept)]
    return changes


async def apply(warehouse: Warehouse, project: Project) -> None:
    """Brings the warehouse's chains to the project's; idempotent."""
    database = warehouse.database
    wanted = chains(project, database)
    have, unfinished = await live(warehouse)
    stale = (have - set(wanted)) | unfinished
    rebuilt = {pipe_of(base) for base in stale}
    for base in sorted(stale):
        for statement in drop_sql(database, base):
            await warehouse.execute(statement)
        log.info("dropped materialized chain", chain=base)
    for base, chain in sorted(wanted.items()):
        if base in have and base not in unfinished:
            continue
        m = chain.materialization
        if m.name in rebuilt:
            # Its rows came from the old SQL: the backfill below recomputes all of them.
            await warehouse.execute(f"TRUNCATE TABLE IF EXISTS `{database}`.`{m.target}`")
        await _build(warehouse, chain)
        log.info("materialized", pipe=m.name, target=m.target, chain=base)


async def _build(warehouse: Warehouse, chain: Chain) -> None:
    for statement in chain.create_sql():
        await warehouse.execute(statement)
    await _wait_for_running_inserts(warehouse)
    await warehouse.execute(chain.snapshot_sql())
    await _wait_for_running_inserts(warehouse)
    await warehouse.execute(chain.carried_sql())
    # A retry the view carried before it could see the token just recorded is in the
    # ledger once its insert is done: the backfill reads the ledger after that.
    await _wait_for_running_inserts(warehouse)
    await warehouse.execute(chain.backfill_sql())
    for statement in chain.finish_sql():
        await warehouse.execute(statement)


async def _wait_for_running_inserts(warehouse: Warehouse) -> None:
    """Returns once every insert running when it was called has finished (those that
    start meanwhile are not waited for, so a steady stream of inserts does not hold it)."""
    inserts = "SELECT query_id FROM system.processes WHERE query_kind = 'Insert'"
    waiting = {str(row["query_id"]) for row in (await warehouse.query(inserts, {})).data}
    deadline = time.monotonic() + _WAIT_LIMIT_SECONDS
    while waiting:
        await asyncio.sleep(_WAIT_POLL_SECONDS)
        waiting &= {str(row["query_id"]) for row in (await warehouse.query(inserts, {})).data}
        if waiting and time.monotonic() > deadline:
            raise MaterializeError(f"inserts still running after {_WAIT_LIMIT_SECONDS} s")
