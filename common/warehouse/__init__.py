"""Warehouse access: one interface (`Warehouse`), two engines — ClickHouse over HTTP
(clickhouse-connect) and chDB in-process. The same SQL runs on both."""

from common.warehouse.base import QueryResult, Warehouse, WarehouseError
from common.warehouse.factory import open_warehouse

__all__ = ["QueryResult", "Warehouse", "WarehouseError", "open_warehouse"]
