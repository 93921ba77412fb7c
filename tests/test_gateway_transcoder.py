"""Unit tests of the gateway's route table and transcoding, against a descriptor set built here
so that every HttpRule feature is covered, not only the ones Pipit's protos use today."""

from __future__ import annotations

import base64

import grpc
import orjson
import pytest
from google.api import annotations_pb2, http_pb2, httpbody_pb2
from google.protobuf import any_pb2, descriptor_pb2, timestamp_pb2, wrappers_pb2
from status_table import README_STATUSES

from common.query_string import parse_query, unescape
from gateway.app import default_descriptor_set
from gateway.errors import GatewayError, http_status, status_body
from gateway.routes import RouteTable, load_routes, parse_template
from gateway.transcoder import build_request, render_response

FD = descriptor_pb2.FieldDescriptorProto
SERVICE = "test.v1.Library"


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False):
    parts = name.split("_")
    field = FD(
        name=name,
        number=number,
        type=kind,
        label=FD.LABEL_REPEATED if repeated else FD.LABEL_OPTIONAL,
        json_name=parts[0] + "".join(p.title() for p in parts[1:]),
    )
    if type_name:
        field.type_name = type_name
    return field


def _file_of(module) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)


def library_descriptor_set(*, streaming_rule: bool = False) -> bytes:
    f = descriptor_pb2.FileDescriptorProto(
        name="test/v1/library.proto",
        package="test.v1",
        syntax="proto3",
        dependency=[
            "google/api/httpbody.proto",
            "google/protobuf/wrappers.proto",
            "google/protobuf/timestamp.proto",
        ],
    )
    genre = f.enum_type.add(name="Genre")
    genre.value.add(name="GENRE_UNSPECIFIED", number=0)
    genre.value.add(name="FICTION", number=1)

    author = f.message_type.add(name="Author")
    author.field.extend([_field("name", 1, FD.TYPE_STRING), _field("id", 2, FD.TYPE_INT64)])

    book = f.message_type.add(name="Book")
    book.field.extend(
        [
            _field("name", 1, FD.TYPE_STRING),
            _field("page_count", 2, FD.TYPE_UINT32),
            _field("rating", 3, FD.TYPE_DOUBLE),
            _field("author", 4, FD.TYPE_MESSAGE, ".test.v1.Author"),
            _field("tags", 5, FD.TYPE_STRING, repeated=True),
            _field("views", 6, FD.TYPE_INT64),
            _field("scores", 7, FD.TYPE_DOUBLE, repeated=True),
        ]
    )

    request = f.message_type.add(name="BookRequest")
    request.field.extend(
        [
            _field("name", 1, FD.TYPE_STRING),
            _field("page_size", 2, FD.TYPE_INT32),
            _field("verbose", 4, FD.TYPE_BOOL),
            _field("ratio", 5, FD.TYPE_DOUBLE),
            _field("big", 6, FD.TYPE_UINT64),
            _field("ids", 7, FD.TYPE_INT32, repeated=True),
            _field("genre", 8, FD.TYPE_ENUM, ".test.v1.Genre"),
            _field("author", 9, FD.TYPE_MESSAGE, ".test.v1.Author"),
            _field("blob", 10, FD.TYPE_BYTES),
            _field("labels", 11, FD.TYPE_MESSAGE, ".test.v1.BookRequest.LabelsEntry", True),
            _field("min_rating", 12, FD.TYPE_MESSAGE, ".google.protobuf.DoubleValue"),
            _field("since", 13, FD.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ]
    )
    page = _field("page", 3, FD.TYPE_INT32)
    page.proto3_optional = True
    page.oneof_index = 0
    request.field.append(page)
    request.oneof_decl.add(name="_page")
    entry = request.nested_type.add(name="LabelsEntry")
    entry.field.extend([_field("key", 1, FD.TYPE_STRING), _field("value", 2, FD.TYPE_STRING)])
    entry.options.map_entry = True

    upload = f.message_type.add(name="UploadRequest")
    upload.field.extend(
        [
            _field("name", 1, FD.TYPE_STRING),
            _field("file", 2, FD.TYPE_MESSAGE, ".google.api.HttpBody"),
        ]
    )
    cover = f.message_type.add(name="CoverResponse")
    cover.field.append(_field("image", 1, FD.TYPE_MESSAGE, ".google.api.HttpBody"))

    service = f.service.add(name="Library")

    def rpc(name, input_type, output_type, rule=None, streaming=False):
        method = service.method.add(
            name=name,
            input_type=input_type,
            output_type=output_type,
            client_streaming=streaming,
        )
        if rule is not None:
            method.options.Extensions[annotations_pb2.http].CopyFrom(rule)

    req, out = ".test.v1.BookRequest", ".test.v1.Book"
    rpc(
        "GetBook",
        req,
        out,
        http_pb2.HttpRule(
            get="/v1/{name=shelves/*/books/*}",
            additional_bindings=[http_pb2.HttpRule(get="/v1/books/{name}")],
        ),
    )
    rpc("SpecialBook", req, out, http_pb2.HttpRule(get="/v1/books/special"))
    rpc("ListBooks", req, out, http_pb2.HttpRule(get="/v1/authors/{author.name}/books"))
    rpc("Browse", req, out, http_pb2.HttpRule(get="/v1/browse/{name=**}"))
    rpc("ArchiveBook", req, out, http_pb2.HttpRule(post="/v1/books/{name}:archive", body="*"))
    rpc("RenameBook", req, out, http_pb2.HttpRule(patch="/v1/books/{name}", body="author"))
    rpc(
        "Upload",
        ".test.v1.UploadRequest",
        out,
        http_pb2.HttpRule(post="/v1/uploads/{name}", body="file"),
    )
    rpc("Download", req, ".google.api.HttpBody", http_pb2.HttpRule(get="/v1/downloads/{name=**}"))
    rpc(
        "Cover",
        req,
        ".test.v1.CoverResponse",
        http_pb2.HttpRule(get="/v1/covers/{name}", response_body="image"),
    )
    rpc(
        "Purge",
        req,
        out,
        http_pb2.HttpRule(custom=http_pb2.CustomHttpPattern(kind="PURGE", path="/v1/cache")),
    )
    rpc(
        "Watch",
        req,
        out,
        http_pb2.HttpRule(post="/v1/watch", body="*") if streaming_rule else None,
        streaming=True,
    )

    files = [_file_of(m) for m in (httpbody_pb2, any_pb2, wrappers_pb2, timestamp_pb2)]
    # Listed dependents first: the loader must order files itself.
    return descriptor_pb2.FileDescriptorSet(file=[f, *files]).SerializeToString()


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return load_routes(library_descriptor_set(), [SERVICE])


def _request(table: RouteTable, method: str, target: str, body: bytes = b"", ctype: str = ""):
    raw_path, _, raw_query = target.partition("?")
    match = table.match(method, raw_path)
    assert match is not None, f"{method} {target} did not match"
    return build_request(match, parse_query(raw_query), body, ctype, table.pool)


# --- path templates and matching ---


def test_parse_template_segments_variables_and_verb() -> None:
    t = parse_template("/v1/{name=shelves/*/books/*}/x:cancel")
    assert t.verb == "cancel"
    assert [v.field_path for v in t.variables] == ["name"]
    assert (t.variables[0].start, t.variables[0].end) == (1, 5)
    assert parse_template("/v1/{a.b}").variables[0].field_path == "a.b"
    assert parse_template("/v1/{rest=**}").variables[0].end is None
    assert parse_template("/").segments == ()


@pytest.mark.parametrize(
    "bad", ["v1/x", "/v1/**/x", "/v1/{name", "/v1/{1bad}", "/v1//x", "/v1/x:", "/v1/a*b"]
)
def test_parse_template_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_template(bad)


@pytest.mark.parametrize(
    ("method", "path", "grpc_method", "bindings"),
    [
        ("GET", "/v1/shelves/1/books/2", "GetBook", {"name": ("shelves", "1", "books", "2")}),
        ("GET", "/v1/books/b1", "GetBook", {"name": ("b1",)}),  # additional binding
        ("GET", "/v1/books/special", "SpecialBook", {}),  # a literal beats `*`
        ("GET", "/v1/books/special/", "SpecialBook", {}),  # trailing slash ignored
        ("GET", "/v1/authors/ann/books", "ListBooks", {"author.name": ("ann",)}),
        ("GET", "/v1/browse", "Browse", {"name": ()}),  # `**` matches zero segments
        ("GET", "/v1/browse/a/b", "Browse", {"name": ("a", "b")}),
        ("POST", "/v1/books/b1:archive", "ArchiveBook", {"name": ("b1",)}),
        ("PATCH", "/v1/books/a%2Fb", "RenameBook", {"name": ("a%2Fb",)}),  # not a separator
        ("PURGE", "/v1/cache", "Purge", {}),
    ],
)
def test_route_matching(table: RouteTable, method, path, grpc_method, bindings) -> None:
    match = table.match(method, path)
    assert match is not None
    assert match.route.grpc_method == f"/{SERVICE}/{grpc_method}"
    assert dict(match.bindings) == bindings


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/books/b1"),  # known path, wrong method
        ("POST", "/v1/books/b1:unknownverb"),  # unregistered verbs stay in the segment
        ("GET", "/v1/shelves/1/books"),
        ("GET", "/v2/books/b1"),
        ("POST", "/v1/watch"),  # streaming method without a rule is not routed
    ],
)
def test_route_not_matched(table: RouteTable, method: str, path: str) -> None:
    assert table.match(method, path) is None


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/books/b1", ("GET", "PATCH")),  # GetBook's additional binding, RenameBook
        ("/v1/books/special", ("GET", "PATCH")),  # the literal and `*` both take it
        ("/v1/books/special/", ("GET", "PATCH")),  # trailing slash ignored
        ("/v1/books/b1:archive", ("POST",)),  # a declared verb splits off
        ("/v1/books/b1:unknownverb", ("GET", "PATCH")),  # an unknown one stays in the segment
        ("/v1/browse", ("GET",)),  # `**` takes zero segments
        ("/v1/browse/a/b/c", ("GET",)),
        ("/v1/cache", ("PURGE",)),  # a custom method
        ("/v1/books/a%2Fb", ("GET", "PATCH")),  # an escaped slash is no separator
        ("/v1/shelves/1/books", ()),
        ("/v1/books", ()),
        ("/v2/books/b1", ()),
        ("//v1/books/b1", ()),  # an empty first segment is a segment
        ("/v1/watch", ()),  # a streaming method without a rule is not routed
        ("", ()),
        ("/", ()),
    ],
)
def test_allowed_methods(table: RouteTable, path: str, allowed: tuple[str, ...]) -> None:
    # What a 405's Allow lists: every method some rule binds to the path; none for a path no
    # rule knows (404). A method in the list always finds its route.
    assert table.allowed_methods(path) == allowed
    for method in allowed:
        assert table.match(method, path) is not None
    for method in {"GET", "POST", "PATCH", "PURGE", "DELETE", "PUT"} - set(allowed):
        assert table.match(method, path) is None


def test_route_flags(table: RouteTable) -> None:
    upload = table.match("POST", "/v1/uploads/x")
    assert upload is not None and upload.route.body_is_http_body
    download = table.match("GET", "/v1/downloads/x")
    assert download is not None and download.route.response_is_http_body
    cover = table.match("GET", "/v1/covers/x")
    assert cover is not None and cover.route.response_is_http_body
    assert table.http_methods == {"GET", "POST", "PATCH", "PURGE"}


def test_load_routes_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="not in the descriptor set"):
        load_routes(library_descriptor_set(), ["test.v1.Nope"])
    # A client stream is transcoded only as a body streamed into a google.api.HttpBody.
    with pytest.raises(ValueError, match="its body must be a google.api.HttpBody"):
        load_routes(library_descriptor_set(streaming_rule=True), [SERVICE])


def test_pipit_descriptor_set_routes() -> None:
    table = load_routes(
        default_descriptor_set(), ["pipit.query.v1.QueryService", "pipit.ingest.v1.IngestService"]
    )
    events = table.match("POST", "/v0/events")
    assert events is not None and events.route.body_is_http_body
    assert not events.route.client_streaming
    imports = load_routes(default_descriptor_set(), ["pipit.ingest.v1.DatasourcesService"])
    upload = imports.match("POST", "/v0/datasources")
    assert upload is not None and upload.route.client_streaming
    pipe = table.match("GET", "/v0/pipes/get_popular_pages.json")
    assert pipe is not None and pipe.route.grpc_method.endswith("/GetPopularPages")
    assert table.match("GET", "/v0/events") is None


def test_unknown_parameters_travel_in_an_http_bodys_extensions() -> None:
    # As Envoy's capture_unknown_query_parameters: names as sent, values decoded (bytes that
    # are not UTF-8 included), parameters that name a field bound and not captured.
    from pipit.query.v1 import pipe_service_pb2

    table = load_routes(
        default_descriptor_set(), ["pipit.query.v1.QueryService", "pipit.query.v1.PipeService"]
    )
    match = table.match("GET", "/v0/pipes/test_summary.csv")
    assert match is not None and match.route.grpc_method.endswith("/ReadPipe")
    query = "a=1&b=two+words&a=3&c%5Fd=%C3%A9&x=%FF&novalue&body.data=x&file=other.csv"
    request = build_request(match, parse_query(query, raw_names=True), b"", "", table.pool)
    assert request.file == "other.csv"  # the query wins over the path, as in Envoy
    (extension,) = request.body.extensions
    assert extension.type_url == (
        "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3."
        "UnknownQueryParams"
    )
    with pytest.raises(Exception, match="UTF-8"):
        pipe_service_pb2.QueryParameters.FromString(extension.value)
    valid = build_request(match, parse_query(query.replace("&x=%FF", ""), raw_names=True),
                          b"", "", table.pool)  # fmt: skip
    captured = pipe_service_pb2.QueryParameters.FromString(valid.body.extensions[0].value)
    assert {k: list(v.values) for k, v in captured.key.items()} == {
        "a": ["1", "3"],
        "b": ["two words"],
        "c%5Fd": ["é"],
    }
    # Nothing unknown: no extension at all, as in Envoy.
    assert not build_request(match, [], b"", "", table.pool).body.extensions


# --- query parameters and path variables → request fields ---


def test_query_parameters_by_proto_and_json_name(table: RouteTable) -> None:
    msg = _request(
        table,
        "GET",
        "/v1/books/b1?page_size=5&pageSize=7&verbose=true&ratio=0.5&big=18446744073709551615"
        "&ids=1&ids=2&genre=FICTION&author.name=Ann+Lee&author.id=-3&page=0&unknown=x&novalue",
    )
    assert msg.name == "b1"
    assert msg.page_size == 7  # the last value of a singular field wins
    assert msg.verbose is True and msg.ratio == 0.5 and msg.big == 2**64 - 1
    assert list(msg.ids) == [1, 2]
    assert msg.genre == 1
    assert msg.author.name == "Ann Lee" and msg.author.id == -3
    assert msg.HasField("page") and msg.page == 0  # proto3 optional gets presence


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("verbose=1", lambda m: m.verbose is True),
        ("verbose=False", lambda m: m.verbose is False),
        ("genre=1", lambda m: m.genre == 1),
        ("ratio=NaN", lambda m: m.ratio != m.ratio),
        ("ratio=-1e3", lambda m: m.ratio == -1000.0),
        ("blob=" + base64.urlsafe_b64encode(b"\xff\x00").decode().rstrip("="), None),
        ("min_rating=4.5", lambda m: m.min_rating.value == 4.5),
        ("since=2023-06-01T00:00:00Z", lambda m: m.since.seconds == 1685577600),
        ("name=a%20b%2Fc", lambda m: m.name == "a b/c"),
    ],
)
def test_query_scalar_forms(table: RouteTable, query: str, check) -> None:
    msg = _request(table, "GET", f"/v1/books/special?{query}")
    if check is None:
        assert msg.blob == b"\xff\x00"
    else:
        assert check(msg)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page_size=abc", "page_size"),
        ("page_size=1.5", "page_size"),
        ("page_size=2147483648", "page_size"),
        ("big=-1", "big"),
        ("verbose=maybe", "verbose"),
        ("ratio=1,5", "ratio"),
        ("genre=POETRY", "genre"),
        ("author=x", "author"),  # a message field cannot take a string
        ("labels=x", "labels"),
        ("blob=***", "blob"),
        ("since=yesterday", "since"),
        ("name=%FF", "name"),  # not UTF-8
    ],
)
def test_query_bad_values_name_the_parameter(table: RouteTable, query: str, parameter: str):
    with pytest.raises(GatewayError) as caught:
        _request(table, "GET", f"/v1/books/special?{query}")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.status == 400
    assert parameter in caught.value.message


def test_path_variables_are_unescaped_like_envoy(table: RouteTable) -> None:
    # A single-segment capture is fully unescaped; a multi-segment one keeps reserved characters.
    assert _request(table, "PATCH", "/v1/books/a%2Fb%20c").name == "a/b c"
    assert _request(table, "GET", "/v1/browse/a%2Fb/c%20d").name == "a%2Fb/c d"
    assert _request(table, "GET", "/v1/shelves/s/books/b%3A1").name == "shelves/s/books/b%3A1"
    # A query parameter naming a path variable's field wins over it, as in Envoy (which binds
    # the path, then the query; PipeService's `?file=` case in the conformance suite).
    assert _request(table, "GET", "/v1/books/b1?name=other").name == "other"


def test_unescape_and_parse_query() -> None:
    assert unescape("a+b%2B%zz") == "a+b+%zz"
    assert unescape("a+b", plus_is_space=True) == "a b"
    assert parse_query("a=1&&=2&b&c=&d=%C3%A9") == [("a", "1"), ("c", ""), ("d", "é")]


# --- bodies ---


def test_body_star_parses_json_into_the_message(table: RouteTable) -> None:
    body = orjson.dumps({"pageSize": 3, "author": {"name": "Ann"}, "ignored": True})
    msg = _request(table, "POST", "/v1/books/b1:archive?verbose=yes", body)
    assert (msg.name, msg.page_size, msg.author.name, msg.verbose) == ("b1", 3, "Ann", True)


def test_body_field_parses_json_into_that_field(table: RouteTable) -> None:
    msg = _request(table, "PATCH", "/v1/books/b1", orjson.dumps({"name": "Ann", "id": "7"}))
    assert (msg.name, msg.author.name, msg.author.id) == ("b1", "Ann", 7)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"page_size": "many"}'])
def test_bad_json_body_is_invalid_argument(table: RouteTable, body: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        _request(table, "POST", "/v1/books/b1:archive", body)
    assert caught.value.status == 400


def test_http_body_field_takes_raw_bytes_and_content_type(table: RouteTable) -> None:
    raw = b'{"a": 1}\n{"a": 2}\nnot json at all'
    msg = _request(table, "POST", "/v1/uploads/u1?file.data=x", raw, "application/x-ndjson")
    assert msg.name == "u1"
    assert msg.file.data == raw  # parameters inside the HttpBody are ignored, as in Envoy
    assert msg.file.content_type == "application/x-ndjson"


# --- responses ---


def _render(table: RouteTable, method: str, path: str, message) -> tuple[bytes, str]:
    match = table.match(method, path)
    assert match is not None
    return render_response(match.route, message, table.pool)


def test_response_json_prints_defaults_in_declaration_order(table: RouteTable) -> None:
    match = table.match("GET", "/v1/books/b1")
    assert match is not None
    book = match.route.response_class(tags=["x"], scores=[1.0, 0.25], rating=4.0)
    body, content_type = _render(table, "GET", "/v1/books/b1", book)
    assert content_type == "application/json"
    assert body == (
        b'{"name":"","page_count":0,"rating":4,"tags":["x"],"views":"0","scores":[1,0.25]}'
    )


def test_http_body_responses_are_raw(table: RouteTable) -> None:
    csv = httpbody_pb2.HttpBody(content_type="text/csv", data=b"a,b")
    assert _render(table, "GET", "/v1/downloads/a/b", csv) == (b"a,b", "text/csv")
    cover = table.match("GET", "/v1/covers/c")
    assert cover is not None
    reply = cover.route.response_class()
    reply.image.content_type = "image/png"
    reply.image.data = b"\x89PNG"
    assert _render(table, "GET", "/v1/covers/c", reply) == (b"\x89PNG", "image/png")


# --- errors ---


def test_grpc_to_http_status_is_envoys_with_tinybirds_statuses() -> None:
    # Tinybird's UNAUTHENTICATED is 403 (gateway/errors.py TINYBIRD_STATUSES); Envoy's own is 401.
    assert {code.name: http_status(code) for code in grpc.StatusCode} == README_STATUSES


def test_status_body_shape() -> None:
    body = orjson.loads(status_body(grpc.StatusCode.NOT_FOUND, "no such pipe"))
    assert body == {"error": "no such pipe", "code": 5, "message": "no such pipe", "details": []}
    assert list(body) == ["error", "code", "message", "details"]
