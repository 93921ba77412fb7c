"""405 from both gateways over every HttpRule feature: Envoy's 405 filter is Lua rendered from the
route table (gateway/envoy/methods.lua), a port of gateway/routes.py's matching, so it is
held to our gateway's answers on a route table with what Pipit's protos do not use yet: `*`
beside a literal, `**`, a custom verb, a custom method, an additional binding. Nothing listens
upstream: a 405 is answered by the gateways alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from gateway_pair import GATEWAYS, Answer, assert_same, require_envoy
from harness import free_port

from gateway.app import bound_port, create_app, serve_gateway
from gateway.envoy import EnvoyConfig, start_envoy
from gateway.routes import load_routes
from pipit.protogen import include_paths

pytestmark = pytest.mark.envoy

SERVICE = "test.v1.Library"
# Every kind of path template, on methods that need no body; compiled by protoc as Pipit's
# protos are, so that Envoy's stricter descriptor pool takes it.
PROTO = """
syntax = "proto3";
package test.v1;
import "google/api/annotations.proto";

message BookRequest {
  string name = 1;
  Author author = 2;
}
message Author { string name = 1; }
message Book { string name = 1; }

service Library {
  rpc GetBook(BookRequest) returns (Book) {
    option (google.api.http) = {
      get: "/v1/{name=shelves/*/books/*}"
      additional_bindings { get: "/v1/books/{name}" }
    };
  }
  rpc SpecialBook(BookRequest) returns (Book) {
    option (google.api.http).get = "/v1/books/special";
  }
  rpc ListBooks(BookRequest) returns (Book) {
    option (google.api.http).get = "/v1/authors/{author.name}/books";
  }
  rpc Browse(BookRequest) returns (Book) { option (google.api.http).get = "/v1/browse/{name=**}"; }
  rpc ArchiveBook(BookRequest) returns (Book) {
    option (google.api.http) = { post: "/v1/books/{name}:archive" body: "*" };
  }
  rpc RenameBook(BookRequest) returns (Book) {
    option (google.api.http) = { patch: "/v1/books/{name}" body: "author" };
  }
  rpc Purge(BookRequest) returns (Book) {
    option (google.api.http) = { custom: { kind: "PURGE" path: "/v1/cache" } };
  }
  rpc Unrouted(BookRequest) returns (Book);
}
"""
METHODS = ("GET", "POST", "PATCH", "PURGE", "DELETE", "PUT", "OPTIONS", "HEAD")
PATHS = (
    "/v1/books/b1",
    "/v1/books/special",
    "/v1/books/special/",
    "/v1/books/b1:archive",
    "/v1/books/b1:unknownverb",
    "/v1/books/a%2Fb",
    "/v1/books/a:b/c",
    "/v1/shelves/1/books/2",
    "/v1/shelves/1/books",
    "/v1/authors/ann/books",
    "/v1/browse",
    "/v1/browse/",
    "/v1/browse/a/b/c",
    "/v1/cache",
    "/v1/cache?x=a:archive",
    "//v1/books/b1",
    "/v1//books",
    "/v2/books/b1",
    "/v1/Unrouted",
    "/",
)


def _descriptor_set(directory: Path) -> bytes:
    from grpc_tools import protoc

    (directory / "test" / "v1").mkdir(parents=True, exist_ok=True)
    (directory / "test" / "v1" / "library.proto").write_text(PROTO)
    out = directory / "library.binpb"
    args = ["protoc", f"-I{directory}", *(f"-I{p}" for p in include_paths())]
    args += [f"--descriptor_set_out={out}", "--include_imports", "test/v1/library.proto"]
    assert protoc.main(args) == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _descriptor_set(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
async def urls(
    descriptor_set: bytes, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    require_envoy()
    path = tmp_path_factory.mktemp("envoy-methods") / "library.binpb"
    path.write_bytes(descriptor_set)
    upstreams = {SERVICE: f"127.0.0.1:{free_port()}"}
    runner = await serve_gateway(
        create_app(upstreams, descriptor_set=descriptor_set, follow=False, dashboard=False),
        "127.0.0.1",
        0,
    )
    envoy = None
    try:
        envoy = await start_envoy(
            EnvoyConfig(upstreams, path, dashboard=False, access_log=False, timeout=2.0),
            concurrency=1,
            follow=False,
        )
        yield {"pipit": f"http://127.0.0.1:{bound_port(runner)}", "envoy": envoy.url}
    finally:
        if envoy is not None:
            await envoy.stop()
        await runner.cleanup()


async def _send(http: aiohttp.ClientSession, url: str, method: str, target: str) -> Answer:
    async with http.request(
        method, aiohttp.client.URL(url + target, encoded=True), allow_redirects=False
    ) as response:
        return Answer(response.status, response.headers, await response.read())


@pytest.mark.parametrize("target", PATHS)
async def test_envoy_answers_405_exactly_where_ours_does(
    urls: dict[str, str], descriptor_set: bytes, target: str
) -> None:
    table = load_routes(descriptor_set, [SERVICE])
    allowed = table.allowed_methods(target.partition("?")[0])
    async with aiohttp.ClientSession() as http:
        for method in METHODS:
            ours, envoy = [await _send(http, urls[g], method, target) for g in GATEWAYS]
            if allowed and method not in allowed:
                assert ours.status == 405, (method, ours.body)
                assert ours.headers["allow"] == ", ".join(allowed)
                assert_same(ours, envoy)
            else:
                # Routed (and then refused by the service that is not there) or unknown.
                assert 405 not in (ours.status, envoy.status), (method, ours.body, envoy.body)
                assert "allow" not in ours.headers and "allow" not in envoy.headers


def test_the_cases_cover_every_kind_of_answer(descriptor_set: bytes) -> None:
    table = load_routes(descriptor_set, [SERVICE])
    kinds = {len(table.allowed_methods(p.partition("?")[0])) for p in PATHS}
    assert kinds == {0, 1, 2}  # unknown paths, and paths with one method or two
