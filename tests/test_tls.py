"""Optional TLS: the gRPC services serve over TLS when given a certificate and key, and
refuse plaintext clients then."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from harness import AUTH, start_suite

from common.datasources import registry
from pipit.query.v1 import query_service_pb2, query_service_pb2_grpc


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_grpc_over_tls(chdb_dir, certificate):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    cert, key = certificate
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tls"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, gateway=False, tls_cert=cert, tls_key=key)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
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
