"""Where the Tokens API keeps its tokens: a table in the warehouse, which every replica of
every service reads (the token file may be a read-only Secret mount, and replicas share no
disk). Each change appends a row — a token's whole state at that moment, its SHA-256 digest
and never the token — and a token's newest row is its state; a deleted token's newest row
says so. Every process polls the table once a second and puts the tokens in force in its
TokenStore when something changed, as deployments are followed (pipit/project/store.py).

Two replicas changing one name at the same instant both write; the newer row wins. Tokens
are changed by an administrator, rarely: that race is accepted rather than locked against."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import structlog

from common.background import in_background
from common.tokens import TokenEntry, TokenStore
from common.warehouse.base import Warehouse

log = structlog.get_logger("tokens")

TABLE = "_pipit_tokens"
POLL_SECONDS = 1.0
# A token's newest row is its state (the table's name is a constant: nothing is spliced).
_LOAD = (
    "SELECT name, argMax(sha256, changed_at) AS sha256, argMax(scopes, changed_at) AS scopes, "  # noqa: S608
    "argMax(description, changed_at) AS description, "
    "toString(argMax(created_at, changed_at)) AS created_at, "
    f"argMax(deleted, changed_at) AS deleted FROM `{TABLE}` "
    "GROUP BY name HAVING deleted = 0 ORDER BY name"
)
_STAMP = f"SELECT count() AS n, toString(max(changed_at)) AS newest FROM `{TABLE}`"  # noqa: S608
_COLUMNS = ("name", "sha256", "scopes", "description", "created_at", "changed_at", "deleted")


def create_sql(database: str) -> str:
    """The table on one node (a plain identifier: the settings check it). On a ClickHouse
    cluster `pipit migrate --cluster` creates it whole on every node from this same
    statement (ClusterSchema.everywhere_sql), so whichever node a service reaches knows
    every token."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\n"
        "    `name` String,\n"
        "    `sha256` String,\n"
        "    `scopes` Array(String),\n"
        "    `description` String,\n"
        "    `created_at` DateTime64(6, 'UTC'),\n"
        "    `changed_at` DateTime64(6, 'UTC'),\n"
        "    `deleted` UInt8\n"
        ")\n"
        "ENGINE = MergeTree\n"
        "ORDER BY (name, changed_at)"
    )


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _rfc3339(text: str) -> str:
    # The engine prints DateTime64(6) as `YYYY-MM-DD HH:MM:SS.ffffff`.
    return text[:19].replace(" ", "T") + "Z" if text else ""


class TokenTable:
    """The tokens table of one warehouse database."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    async def ensure(self) -> None:
        await self._warehouse.execute(create_sql(self._warehouse.database))

    async def stamp(self) -> tuple[int, str]:
        """What changes whenever a row is added: the row count and the newest change."""
        result = await self._warehouse.query(_STAMP, {})
        row = result.data[0]
        return int(row["n"]), str(row["newest"])

    async def load(self) -> list[TokenEntry]:
        """Every token in force, by name."""
        result = await self._warehouse.query(_LOAD, {})
        return [
            TokenEntry(
                name=str(row["name"]),
                sha256=str(row["sha256"]),
                scopes=tuple(row["scopes"]),
                created_at=_rfc3339(str(row["created_at"])),
                description=str(row["description"]),
            )
            for row in result.data
        ]

    async def write(self, entries: Sequence[TokenEntry], deleted: Sequence[str] = ()) -> None:
        """Records new states of tokens (`entries`) and the deletion of names (`deleted`),
        in one insert: a rename is both, and must not be seen half done."""
        changed = now_text()
        rows = [
            {
                "name": e.name,
                "sha256": e.sha256,
                "scopes": list(e.scopes),
                "description": e.description,
                "created_at": _engine_time(e.created_at) or changed,
                "changed_at": changed,
                "deleted": 0,
            }
            for e in entries
        ] + [
            {
                "name": name,
                "sha256": "",
                "scopes": [],
                "description": "",
                "created_at": changed,
                "changed_at": changed,
                "deleted": 1,
            }
            for name in deleted
        ]
        body = b"\n".join(orjson.dumps(row) for row in rows)
        await self._warehouse.insert_json_rows(TABLE, list(_COLUMNS), body)


def _engine_time(rfc3339: str) -> str:
    return rfc3339.replace("T", " ").rstrip("Z") if rfc3339 else ""


class TokenFollower:
    """Keeps a TokenStore's Tokens API tokens as the table holds them."""

    def __init__(self, table: TokenTable, store: TokenStore) -> None:
        self.table = table
        self.store = store
        self._stamp: tuple[int, str] | None = None

    async def refresh(self) -> None:
        """Loads the tokens when the table changed since the last look (always the first
        time). Raises what the warehouse raises."""
        stamp = await self.table.stamp()
        if stamp == self._stamp:
            return
        entries = await self.table.load()
        self.store.set_api_tokens(entries)
        if self._stamp is not None:
            log.info("api tokens loaded", tokens=len(entries))
        self._stamp = stamp

    async def follow(self, every: float = POLL_SECONDS) -> None:
        """Refreshes every `every` seconds until cancelled; a failed poll (the warehouse
        away) keeps the tokens in force and tries again."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - serve on; the next poll tries again
                log.warning("checking for token changes failed", error=str(exc)[:300])


@contextlib.asynccontextmanager
async def following_tokens(warehouse: Warehouse, store: TokenStore, every: float = POLL_SECONDS):
    """The Tokens API's tokens in force in `store` now (unless the table cannot be read yet:
    `pipit migrate` may not have made it), and kept so for the duration of the block."""
    follower = TokenFollower(TokenTable(warehouse), store)
    try:
        await follower.refresh()
    except Exception as exc:  # noqa: BLE001 - serve the static tokens; the poll tries again
        log.warning("reading the tokens table failed", error=str(exc)[:300])
    async with in_background(follower.follow(every), "follow-tokens") as task:
        yield task
