"""A warehouse whose inserts fail on demand, as an unreachable server's would: the fault
the ingest tests inject (test_flush_failures, test_outage)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.warehouse.base import QueryResult, Warehouse, WarehouseError


class FlakyWarehouse(Warehouse):
    """Test-only: `inner`, but an insert fails while `down` is set, and so do the first
    `failures` inserts; everything else is passed on."""

    def __init__(self, inner: Warehouse, *, failures: int = 0) -> None:
        super().__init__(inner.database)
        self.inner = inner
        self.down = False
        self.failures = failures
        self.tries = 0
        self.failed_inserts = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def execute(self, sql: str) -> None:
        await self.inner.execute(sql)

    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        self.tries += 1
        if self.down or self.tries <= self.failures:
            self.failed_inserts += 1
            # No error code: the engine never answered (common/warehouse/failures.py).
            raise WarehouseError("Network Error: connection refused (injected)")
        await self.inner.insert_json_rows(table, columns, body, dedup_token=dedup_token, fmt=fmt)

    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        return await self.inner.query(sql, params)
