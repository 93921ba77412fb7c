"""Shared fixtures.

chDB allows one data directory per process, so the whole test session shares one
(`chdb_dir`); tests isolate themselves with a database of their own instead."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from clickhouse_http_fixture import clickhouse_url_for_tests
from tiers import entering, mark_by_fixtures, mark_quick, require_tier, tier

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse

_database_numbers = itertools.count(1)

# A secret in the environment of this process and of every process the tests start (the
# ClickHouse fixture, `pipit up`), as PIPIT_ADMIN_TOKEN would be: the attack corpus checks no
# answer ever carries it (tests/security/).
ENVIRON_CANARY = os.environ.setdefault(
    "PIPIT_TEST_ENVIRON_CANARY", "environ-" + secrets.token_hex(16)
)


# The modules that run for minutes (a five-minute soak, schemathesis's runs) start first, so a
# parallel run's workers (pytest-xdist, a module at a time each) do not end on them alone.
LONGEST_FIRST = ("test_wal_soak.py", "test_openapi.py")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items)
    mark_quick(items)
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: else as collected


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # Around setup too: module fixtures start what the first test using them needs.
    entering(item)
    try:
        return (yield)
    finally:
        entering(None)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one embedded data directory."""
    return tmp_path_factory.mktemp("pipit-data")


@pytest.fixture(scope="session")
@tier("e2e")  # a server process of its own
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ClickHouse HTTP endpoint for the whole session: the real server named by
    PIPIT_TEST_CLICKHOUSE_URL, else the test fixture serving it from chDB."""
    # The tier mark reaches tests that name this fixture; this check also those that ask for
    # it by `request.getfixturevalue` (one param of several).
    require_tier("e2e", "uses the ClickHouse HTTP endpoint")
    url, stop = clickhouse_url_for_tests(tmp_path_factory.mktemp("clickhouse-http"))
    yield url
    stop()


def unique_database(prefix: str = "t") -> str:
    """A database name no other test in this session uses."""
    return f"{prefix}_{os.getpid()}_{next(_database_numbers)}"


async def _open_with_every_table(chdb_dir: Path) -> EmbeddedWarehouse:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    return warehouse


@pytest.fixture
async def embedded_warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """An open chDB warehouse in a fresh database with every datasource table."""
    warehouse = await _open_with_every_table(chdb_dir)
    yield warehouse
    await warehouse.close()


@pytest.fixture(scope="module")
async def module_warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """`embedded_warehouse` shared by a module's tests, for tests that only read its tables
    or write rows no other test reads: making every table takes about a second, which per
    test was a fifth of the quick tier."""
    warehouse = await _open_with_every_table(chdb_dir)
    yield warehouse
    await warehouse.close()
