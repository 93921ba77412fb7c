"""Which ClickHouse user a service signs in as: PIPIT_CLICKHOUSE_USER / _PASSWORD beside a URL
that carries none (k8s/ gives each service its own user, and a password in a URL would reach
logs and process listings), and an https URL checked against PIPIT_CLICKHOUSE_CA."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest
from conftest import unique_database

from common import config
from common.warehouse.base import WarehouseError
from common.warehouse.clickhouse import ClickHouseWarehouse, Credentials, _client_args
from common.warehouse.factory import open_warehouse


def test_the_settings_credentials_win_over_the_urls() -> None:
    args = _client_args("http://old:secret@clickhouse:8123", Credentials("pipit_ingest", "pw"))
    assert (args["username"], args["password"]) == ("pipit_ingest", "pw")
    assert (args["host"], args["port"], args["secure"]) == ("clickhouse", 8123, False)


def test_without_settings_the_url_still_says_who_signs_in() -> None:
    args = _client_args("http://a%40b:p%3Aw@clickhouse")
    assert (args["username"], args["password"]) == ("a@b", "p:w")
    assert _client_args("http://clickhouse")["username"] == "default"
    # A user from the settings with the URL's password (an old URL, a new user).
    assert _client_args("http://x:pw@h", Credentials(user="u"))["password"] == "pw"


def test_a_ca_file_is_used_for_https_and_refused_for_plain_http(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    args = _client_args("https://clickhouse", Credentials(ca_file=ca))
    assert (args["port"], args["secure"], args["ca_cert"]) == (8443, True, str(ca))
    assert "ca_cert" not in _client_args("https://clickhouse:8443")
    with pytest.raises(WarehouseError, match="https"):
        _client_args("http://clickhouse", Credentials(ca_file=ca))


def test_the_environment_reaches_the_warehouse(tmp_path: Path) -> None:
    settings = config.load(
        environ={
            "PIPIT_CLICKHOUSE_URL": "https://clickhouse:8443",
            "PIPIT_CLICKHOUSE_USER": "pipit_query",
            "PIPIT_CLICKHOUSE_PASSWORD": "from-a-secret",
            "PIPIT_CLICKHOUSE_CA": str(tmp_path / "ca.crt"),
        }
    )
    warehouse = open_warehouse(settings)
    assert isinstance(warehouse, ClickHouseWarehouse)
    for w in (warehouse, warehouse.sibling("other")):
        assert w._args["username"] == "pipit_query"
        assert w._args["password"] == "from-a-secret"
        assert w._args["ca_cert"] == str(tmp_path / "ca.crt")


async def test_a_url_without_credentials_signs_in_with_the_settings(clickhouse_url: str) -> None:
    # The URL's credentials (a real server's, when one is configured) given apart, the URL
    # left bare: clickhouse-connect sends them as headers.
    parts = urlsplit(clickhouse_url)
    bare = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    credentials = Credentials(unquote(parts.username or ""), unquote(parts.password or ""))
    database = unique_database("credentials")
    warehouse = ClickHouseWarehouse(urlunsplit(bare), database, credentials=credentials)
    await warehouse.open()
    try:
        result = await warehouse.query("SELECT currentDatabase() AS db", {})
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{database}`")
        await warehouse.close()
    assert result.data == [{"db": database}]
