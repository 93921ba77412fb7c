"""Optional TLS, as an operator turns it on: the gRPC services and the gateway (ours or Envoy)
serve TLS only when given a certificate and key, and the gateway calls the services over TLS,
trusting the CA it is given and no other."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest
from gateway_pair import require_envoy
from harness import AUTH, free_port, start_suite
from processes import PipitProcess, start_pipit
from samples import ab_test_event

from common.datasources import registry
from pipit.query.v1 import query_service_pb2, query_service_pb2_grpc

pytestmark = pytest.mark.e2e

TOKEN = "tls-e2e-admin-token-0123456789"
GATEWAYS = ["pipit", pytest.param("envoy", marks=pytest.mark.envoy)]
EVENT = ab_test_event(test_id="tls_test")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _self_signed(cert: Path, key: Path, subject: str, *extra: str) -> tuple[Path, Path]:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(key), "-out", str(cert), "-subj", subject, *extra,
    )  # fmt: skip
    return cert, key


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    return _self_signed(
        directory / f"{name}-ca.pem", directory / f"{name}-ca.key", f"/CN={name} test CA"
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate it signed for localhost and 127.0.0.1 (as an operator's
    would be: not self-signed), and an unrelated CA the gateway must not accept."""
    directory = tmp_path_factory.mktemp("tls")
    ca_cert, ca_key = _ca(directory, "pipit")
    rogue_cert, _ = _ca(directory, "rogue")

    def issue(name: str, names: str) -> tuple[Path, Path]:
        cert, key, request = (directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr"))
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(request), "-subj", f"/CN={name}", "-addext", f"subjectAltName={names}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", str(cert),
        )  # fmt: skip
        return cert, key

    cert, key = issue("localhost", "DNS:localhost,IP:127.0.0.1")
    other_cert, other_key = issue("elsewhere", "DNS:elsewhere.example")
    return {
        "ca": ca_cert,
        "cert": cert,
        "key": key,
        "rogue_ca": rogue_cert,
        "other_cert": other_cert,
        "other_key": other_key,
    }


def _client_tls(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def test_grpc_over_tls(chdb_dir, pki):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tls"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, gateway=False, tls_cert=pki["cert"], tls_key=pki["key"])
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{suite.query.port}", credentials) as ch:
            stub = query_service_pb2_grpc.QueryServiceStub(ch)
            response = await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=AUTH)
            assert response.rows == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.query.port}") as ch:
            stub = query_service_pb2_grpc.QueryServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.TestSummary(
                    query_service_pb2.TestSummaryRequest(), metadata=AUTH, timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await suite.stop()


@pytest.fixture(scope="module")
def suite_over_tls(pki, tmp_path_factory):
    """`pipit up` with a certificate, key and CA: every listener TLS, its gateway (ours)
    calling the services over TLS."""
    data = tmp_path_factory.mktemp("tls-data")
    up = start_pipit(
        ["up"],
        {
            "PIPIT_DATA_DIR": str(data),
            "PIPIT_INGEST_PORT": str(free_port()),
            "PIPIT_QUERY_PORT": str(free_port()),
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_METRICS_PORT": str(free_port()),
            "PIPIT_ADMIN_TOKEN": TOKEN,
            "PIPIT_CLICKHOUSE_URL": "",
            "PIPIT_FLUSH_INTERVAL": "0.1",
            "PIPIT_TLS_CERT": str(pki["cert"]),
            "PIPIT_TLS_KEY": str(pki["key"]),
            "PIPIT_TLS_CA": str(pki["ca"]),
        },
        {"ingest", "query", "gateway"},
        cwd=str(data),
    )
    try:
        yield up
    finally:
        up.stop()


def _gateway_alone(up: PipitProcess, pki: dict[str, Path], gateway: str, ca: Path | None):
    """`pipit gateway` over HTTPS in front of `up`'s services, trusting `ca` for them."""
    env = {
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_INGEST_TARGET": up.listening["ingest"],
        "PIPIT_QUERY_TARGET": up.listening["query"],
        "PIPIT_TLS_CERT": str(pki["cert"]),
        "PIPIT_TLS_KEY": str(pki["key"]),
    }
    if ca is not None:
        env["PIPIT_TLS_CA"] = str(ca)
    return start_pipit(["gateway", "--gateway", gateway], env, {"gateway"})


async def _summary(http: aiohttp.ClientSession, base: str, tls: ssl.SSLContext) -> dict:
    url = f"{base}/v0/pipes/test_summary.json?test_id=tls_test&token={TOKEN}"
    async with http.get(url, ssl=tls) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_pipit_up_serves_https_and_reaches_its_services_over_tls(suite_over_tls, pki):
    base = suite_over_tls.listening["gateway"]
    assert base.startswith("https://")
    tls = _client_tls(pki["ca"])
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/v0/events?name=ab_test_events&token={TOKEN}",
            data=orjson.dumps(EVENT),
            ssl=tls,
        ) as response:
            assert response.status == 202, await response.text()
            assert await response.json() == {"successful_rows": 1, "quarantined_rows": 0}
        for _ in range(100):
            summary = await _summary(http, base, tls)
            if summary["data"]:
                break
            await asyncio.sleep(0.1)
        assert [(r["variant"], r["users"], r["total_revenue"]) for r in summary["data"]] == [
            ("B", 1, 29.99)
        ]
        async with http.get(f"{base}/healthz", ssl=tls) as response:
            assert response.status == 200, await response.text()
        # Plain HTTP to the TLS port gets no answer; nor does a client that does not trust the CA.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(base.replace("https://", "http://", 1) + "/healthz") as response:
                await response.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"{base}/healthz", ssl=_client_tls(pki["rogue_ca"])):
                pass


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_gateway_alone_over_tls_answers_as_up_does(suite_over_tls, pki, gateway):
    if gateway == "envoy":
        require_envoy()
    alone = _gateway_alone(suite_over_tls, pki, gateway, pki["ca"])
    tls = _client_tls(pki["ca"])
    try:
        base = alone.listening["gateway"]
        assert base.startswith("https://")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz", ssl=tls) as response:
                assert response.status == 200, await response.text()
            expected = await _summary(http, suite_over_tls.listening["gateway"], tls)
            answer = await _summary(http, base, tls)
            for body in (expected, answer):
                body.pop("statistics")
            assert answer == expected
    finally:
        alone.stop()


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("trust", ["rogue_ca", "plaintext"])
async def test_gateway_refuses_services_it_cannot_verify(suite_over_tls, pki, gateway, trust):
    """Services whose certificate the gateway's CA did not sign, or a gateway told no CA
    (plaintext) in front of TLS services: unhealthy, and 503 UNAVAILABLE, never an answer."""
    if gateway == "envoy":
        require_envoy()
    alone = _gateway_alone(suite_over_tls, pki, gateway, pki.get(trust))
    tls = _client_tls(pki["ca"])
    try:
        base = alone.listening["gateway"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz", ssl=tls) as response:
                assert response.status == 503
            url = f"{base}/v0/pipes/test_summary.json?token={TOKEN}"
            async with http.get(url, ssl=tls) as response:
                assert response.status == 503
                assert (await response.json())["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    finally:
        alone.stop()


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_gateway_checks_the_services_certificate_names_them(chdb_dir, pki, tmp_path, gateway):
    """A certificate from the trusted CA issued to another host does not pass: the gateway
    checks the name it dialled, not only the chain (Envoy does only when told the SAN)."""
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    if gateway == "envoy":
        require_envoy()
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tls_name"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(
        warehouse, gateway=False, tls_cert=pki["other_cert"], tls_key=pki["other_key"]
    )
    alone = None
    try:
        env = {
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_INGEST_TARGET": f"127.0.0.1:{suite.ingest.port}",
            "PIPIT_QUERY_TARGET": f"127.0.0.1:{suite.query.port}",
            "PIPIT_TLS_CA": str(pki["ca"]),
        }
        alone = await asyncio.to_thread(
            start_pipit, ["gateway", "--gateway", gateway], env, {"gateway"}
        )
        base = alone.listening["gateway"]
        assert base.startswith("http://")  # no certificate of its own: plain HTTP
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/v0/pipes/test_summary.json", headers=dict(AUTH)) as answer:
                assert answer.status == 503
                assert (await answer.json())["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    finally:
        if alone is not None:
            alone.stop()
        await suite.stop()


async def test_pipit_up_with_a_self_signed_certificate_trusts_it(tmp_path):
    """The README's TLS walkthrough: one self-signed certificate and no CA; `pipit up` trusts
    the certificate for its own services."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    _self_signed(cert, key, "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    up = await asyncio.to_thread(
        start_pipit,
        ["up", "--tls-cert", str(cert), "--tls-key", str(key)],
        {
            "PIPIT_DATA_DIR": str(tmp_path / "data"),
            "PIPIT_INGEST_PORT": str(free_port()),
            "PIPIT_QUERY_PORT": str(free_port()),
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_METRICS_PORT": str(free_port()),
            "PIPIT_ADMIN_TOKEN": TOKEN,
            "PIPIT_CLICKHOUSE_URL": "",
        },
        {"ingest", "query", "gateway"},
        str(tmp_path),
    )
    try:
        base = up.listening["gateway"].replace("127.0.0.1", "localhost")
        async with aiohttp.ClientSession() as http:
            tls = _client_tls(cert)
            async with http.get(f"{base}/healthz", ssl=tls) as response:
                assert response.status == 200, await response.text()
            assert (await _summary(http, base, tls))["data"] == []
    finally:
        up.stop()
