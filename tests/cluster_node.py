"""A node of a ClickHouse cluster as the services see it, for tests: no cluster runs here
(chDB has none, and no server package exists), so the node is chDB whose `system.tables`
shows one datasource's engine as a Distributed one, as `pipit migrate --cluster` makes it;
and the part of a gRPC call's context the handlers use."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from common.warehouse.base import QueryResult
from common.warehouse.embedded import EmbeddedWarehouse

CLUSTER = "pipit"


class DistributedNode(EmbeddedWarehouse):
    """chDB whose `system.tables` shows `sharded`'s engine as a Distributed table over
    CLUSTER, its rows in every shard's `<sharded>_local`."""

    def __init__(self, path: Path, database: str, sharded: str) -> None:
        super().__init__(path, database)
        self.sharded = sharded

    async def query(self, sql: str, params: Mapping[str, str] | None = None) -> QueryResult:
        result = await super().query(sql, params or {})
        if "engine_full" not in sql:
            return result
        engine = (
            f"Distributed('{CLUSTER}', '{self.database}', '{self.sharded}_local', "
            "cityHash64(user_id))"
        )
        data = [
            {**row, "engine_full": engine} if row.get("name") == self.sharded else row
            for row in result.data
        ]
        return QueryResult(meta=result.meta, data=data, rows=len(data), statistics={})


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    """What the handlers use of a gRPC call's context."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def invocation_metadata(self) -> tuple[()]:
        return ()
