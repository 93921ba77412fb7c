"""Shared fixtures.

chDB allows one data directory per process, so the whole test session shares one
(`chdb_dir`); tests isolate themselves with a database of their own instead."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one embedded data directory."""
    return tmp_path_factory.mktemp("pipit-data")


def unique_database(prefix: str = "t") -> str:
    """A database name no other test in this session uses."""
    return f"{prefix}_{os.getpid()}_{next(_database_numbers)}"


@pytest.fixture
async def embedded_warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """An open chDB warehouse in a fresh database with every datasource table."""
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    yield warehouse
    await warehouse.close()
