"""Chooses the engine from configuration."""

from __future__ import annotations

from common.config import Settings
from common.warehouse.base import AdhocLimits, Warehouse


def open_warehouse(settings: Settings) -> Warehouse:
    """A ClickHouse warehouse when a URL is configured, embedded chDB otherwise. The
    caller awaits `open()`."""
    limits = AdhocLimits(
        max_seconds=settings.sql_timeout,
        max_memory_bytes=settings.sql_max_memory_bytes,
        max_threads=settings.sql_max_threads,
        max_result_rows=settings.sql_max_rows,
    )
    if settings.clickhouse_url:
        from common.warehouse.clickhouse import ClickHouseWarehouse, Credentials

        return ClickHouseWarehouse(
            settings.clickhouse_url,
            settings.database,
            limits,
            insert_quorum=settings.insert_quorum,
            query_concurrency=settings.query_concurrency,
            credentials=Credentials(
                settings.clickhouse_user, settings.clickhouse_password, settings.clickhouse_ca
            ),
            connect_timeout=settings.clickhouse_connect_timeout,
        )
    from common.warehouse.embedded import EmbeddedWarehouse

    return EmbeddedWarehouse(
        settings.data_dir,
        settings.database,
        limits,
        insert_quorum=settings.insert_quorum,
        query_concurrency=settings.query_concurrency,
        answer_cache_bytes=settings.answer_cache_bytes,
    )
