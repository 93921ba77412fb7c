"""The `.proto` sources of a project written as Tinybird datafiles: a message per datasource
(its columns as fields, with their ClickHouse types and JSON paths as options), an ingest
service (the Events API, a typed append per datasource and a stream), and a query service
with an RPC per endpoint pipe (a request field per template parameter, a row field per
answer column). Package `pipit.project.v1`, so stubs generated from them keep working
across deploys of the same project."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.column_types import answer_field, event_field, parameter_field
from pipit.project.model import DatasourceSpec

PACKAGE = "pipit.project.v1"
DATASOURCES_FILE = "pipit/project/v1/datasources.proto"
INGEST_FILE = "pipit/project/v1/ingest_service.proto"
QUERY_FILE = "pipit/project/v1/query_service.proto"
_HEADER = 'syntax = "proto3";\n\npackage {package};\n\n{imports}'


def camel(name: str) -> str:
    """`ab_test_events` -> `AbTestEvents`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part)


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _comment(text: str, indent: str = "") -> str:
    lines = [line.rstrip() for line in (text or "").strip().splitlines()] or [""]
    return "".join(f"{indent}// {line}".rstrip() + "\n" for line in lines)


def _header(imports: Iterable[str]) -> str:
    lines = "".join(f'import "{name}";\n' for name in sorted(set(imports)))
    return _HEADER.format(package=PACKAGE, imports=lines + ("\n" if lines else ""))


def datasources_proto(datasources: Sequence[DatasourceSpec]) -> str:
    """One message per datasource."""
    imports = ["pipit/clickhouse/v1/options.proto"]
    body = []
    for ds in datasources:
        engine = ds.engine + (f"({ds.engine_arguments})" if ds.engine_arguments else "")
        table = [
            f"name: {_string(ds.name)}",
            f"description: {_string(ds.description)}",
            f"engine: {_string(engine)}",
            f"partition_key: {_string(ds.partition_key)}",
            f"sorting_key: {_string(ds.sorting_key)}",
            f"primary_key: {_string(ds.primary_key)}",
            f"ttl: {_string(ds.ttl)}",
            f"settings: {_string(ds.settings)}",
            f"sharding_key: {_string(ds.sharding_key)}",
        ]
        if ds.materialized_by:
            table.append(f"materialized_by: {_string(ds.materialized_by)}")
        for index in ds.indexes:
            match = re.match(
                r"^\s*(\w+)\s+(.+?)\s+TYPE\s+(.+?)(?:\s+GRANULARITY\s+(\d+))?\s*$",
                index,
                re.IGNORECASE | re.DOTALL,
            )
            if match is None:
                raise ValueError(
                    f"index {index!r} is not `name expression TYPE type [GRANULARITY n]`"
                )
            name, expression, kind, granularity = match.groups()
            table.append(
                "skip_indexes: {"
                f" name: {_string(name)} expression: {_string(expression)}"
                f" type: {_string(kind)} granularity: {int(granularity or 1)} }}"
            )
        for projection in ds.projections:
            name, _, query = projection.partition(" ")
            table.append(
                f"projections: {{ name: {_string(name.strip('`'))} "
                f"query: {_string(query.strip()[1:-1])} }}"
            )
        fields = []
        for number, column in enumerate(ds.columns, start=1):
            label, kind = event_field(column.type)
            if kind.startswith("google.protobuf."):
                imports.append("google/protobuf/timestamp.proto")
            options = [f"type: {_string(column.type)}"]
            if column.json_path and column.json_path != f"$.{column.name}":
                options.append(f"json_path: {_string(column.json_path)}")
            if column.default:
                options.append(f"default_expression: {_string(column.default)}")
            if kind == "string" and not label and column.type.strip() == "String":
                # As Tinybird does, a JSON object or array for a String column is kept as its
                # JSON text.
                options.append("json_text: true")
            fields.append(
                f"  // Column `{column.name}` {column.type}.\n"
                f"  {(label + ' ') if label else ''}{kind} {column.name} = {number} "
                f"[(pipit.clickhouse.v1.column) = {{{' '.join(options)}}}];\n"
            )
        body.append(
            _comment(ds.description or f"One event of the `{ds.name}` datasource.")
            + f"message {camel(ds.name)} {{\n"
            + "  option (pipit.clickhouse.v1.table) = {\n"
            + "".join(f"    {line}\n" for line in table)
            + "  };\n\n"
            + "".join(fields)
            + "}\n"
        )
    return _header(imports) + "\n".join(body)


def ingest_proto(datasources: Sequence[DatasourceSpec]) -> str:
    """The Events API, a typed append per datasource and a stream of either. A
    materialized pipe's target takes no appends, so it has none."""
    datasources = [ds for ds in datasources if not ds.materialized_by]
    imports = [
        "google/api/annotations.proto",
        "google/api/httpbody.proto",
        "pipit/clickhouse/v1/options.proto",
        DATASOURCES_FILE,
    ]
    rpcs, messages, arms = [], [], []
    for number, ds in enumerate(datasources, start=1):
        name = camel(ds.name)
        rpcs.append(
            f"  // Appends a batch of typed `{ds.name}` events.\n"
            f"  rpc Append{name}(Append{name}Request) returns (AppendEventsResponse) {{\n"
            "    option (google.api.http) = {\n"
            f'      post: "/v1/datasources/{ds.name}/events"\n'
            '      body: "*"\n'
            "    };\n"
            "  }\n"
        )
        messages.append(
            f"// Request of Append{name}.\n"
            f"message Append{name}Request {{\n"
            "  // The events to append, in order.\n"
            f"  repeated {name} events = 1;\n"
            "  // When true, answer only after the rows are written to the warehouse.\n"
            "  bool wait = 2;\n"
            "}\n"
        )
        arms.append(
            f"    // A batch of `{ds.name}` events.\n"
            f"    Append{name}Request {ds.name} = {number};\n"
        )
    service = (
        "// IngestService accepts events for the project's datasources: validated, rows that\n"
        "// fail sent to the datasource's quarantine table with the reason, the rest batched\n"
        "// into the warehouse. An acknowledged row is never lost.\n"
        "service IngestService {\n"
        "  option (pipit.clickhouse.v1.role) = SERVICE_ROLE_INGEST;\n\n"
        + "\n".join(rpcs)
        + ("\n" if rpcs else "")
        + "  // Streams batches of typed events for any datasource; answers once, with totals.\n"
        + (
            "  rpc StreamEvents(stream StreamEventsRequest) returns (StreamEventsResponse);\n\n"
            if arms
            else ""
        )
        + "  // The Tinybird Events API: one JSON object or NDJSON lines in the raw body, for the\n"
        "  // datasource named by `name`.\n"
        "  rpc PostEvents(PostEventsRequest) returns (AppendEventsResponse) {\n"
        "    option (google.api.http) = {\n"
        '      post: "/v0/events"\n'
        '      body: "body"\n'
        "    };\n"
        "  }\n"
        "}\n"
    )
    common = (
        "// Response of an append: Tinybird's Events API answer.\n"
        "message AppendEventsResponse {\n"
        "  // Rows accepted into the datasource.\n"
        "  uint32 successful_rows = 1;\n"
        "  // Rows sent to the quarantine table because they failed validation.\n"
        "  uint32 quarantined_rows = 2;\n"
        "}\n\n"
        "// Request of PostEvents (`POST /v0/events?name=<datasource>&wait=<bool>`).\n"
        "message PostEventsRequest {\n"
        "  // The datasource to append to.\n"
        "  string name = 1;\n"
        "  // When true, answer (HTTP 200) only after the rows are written; otherwise (HTTP 202)\n"
        "  // once they are queued.\n"
        "  bool wait = 2;\n"
        "  // The raw request body: one JSON object, or NDJSON (one object per line).\n"
        "  google.api.HttpBody body = 3;\n"
        "}\n"
    )
    stream = ""
    if arms:
        stream = (
            "\n// One message of the StreamEvents client stream: a batch for one datasource.\n"
            "message StreamEventsRequest {\n"
            "  // The batch; its type names the datasource.\n"
            "  oneof batch {\n" + "".join(arms) + "  }\n}\n\n"
            "// Response of StreamEvents: totals over the whole stream.\n"
            "message StreamEventsResponse {\n"
            "  // Rows accepted into their datasources.\n"
            "  uint64 successful_rows = 1;\n"
            "  // Rows sent to quarantine tables because they failed validation.\n"
            "  uint64 quarantined_rows = 2;\n"
            "  // Batches received.\n"
            "  uint64 batches = 3;\n"
            "}\n"
        )
    return _header(imports) + service + "\n" + "\n".join(messages) + "\n" + common + stream


@dataclass(frozen=True)
class PipeParameterSpec:
    """A pipe parameter as its request field declares it."""

    name: str
    type: str
    default: str
    required: bool
    description: str


@dataclass(frozen=True)
class PipeInterface:
    """What a pipe's RPC looks like: its parameters and the columns of its answer."""

    name: str
    description: str
    parameters: tuple[PipeParameterSpec, ...]
    columns: tuple[tuple[str, str], ...]


def query_proto(pipes: Sequence[PipeInterface]) -> str:
    """An RPC per endpoint pipe, with its request, row and response messages."""
    imports = [
        "google/api/annotations.proto",
        "pipit/clickhouse/v1/options.proto",
        "pipit/query/v1/pipe.proto",
    ]
    rpcs, messages = [], []
    for pipe in pipes:
        name = camel(pipe.name)
        rpcs.append(
            _comment(pipe.description or f"The `{pipe.name}` pipe.", "  ")
            + f"  rpc {name}({name}Request) returns ({name}Response) {{\n"
            f'    option (google.api.http) = {{get: "/v0/pipes/{pipe.name}.json"}};\n'
            f"    option (pipit.clickhouse.v1.endpoint) = {_string(pipe.name)};\n"
            "  }\n"
        )
        fields = []
        for number, parameter in enumerate(pipe.parameters, start=1):
            label, kind = parameter_field(parameter.type)
            option = [f"type: {_string(parameter.type)}"]
            if parameter.default:
                option.append(f"default_value: {_string(parameter.default)}")
            if parameter.required:
                option.append("required: true")
            if parameter.description:
                option.append(f"description: {_string(parameter.description)}")
            fields.append(
                _comment(
                    parameter.description or f"Parameter `{parameter.name}` ({parameter.type}).",
                    "  ",
                )
                + f"  {label} {kind} {parameter.name} = {number} "
                f"[(pipit.clickhouse.v1.parameter) = {{{' '.join(option)}}}];\n"
            )
        columns = []
        for number, (column, kind_text) in enumerate(pipe.columns, start=1):
            label, kind = answer_field(kind_text)
            columns.append(
                f"  // `{column}` {kind_text}.\n"
                f"  {(label + ' ') if label else ''}{kind} {column} = {number} "
                f"[(pipit.clickhouse.v1.column).type = {_string(kind_text)}];\n"
            )
        messages.append(
            f"// Request of {name} (`GET /v0/pipes/{pipe.name}.json`).\n"
            f"message {name}Request {{\n" + "".join(fields) + "}\n\n"
            f"// One row of {name}Response.\n"
            f"message {name}Row {{\n" + "".join(columns) + "}\n\n"
            f"// Response of {name}, in the shape of Tinybird's pipe JSON.\n"
            f"message {name}Response {{\n"
            "  // Columns of the answer, with their ClickHouse types.\n"
            "  repeated pipit.query.v1.ColumnMeta meta = 1;\n"
            "  // The rows.\n"
            f"  repeated {name}Row data = 2;\n"
            "  // Number of rows in `data`.\n"
            "  uint32 rows = 3;\n"
            "  // Rows the answer had before the pipe's LIMIT, at least, as the engine counts\n"
            "  // them; set only when the pipe's SQL has a LIMIT. A double so that JSON prints a\n"
            "  // number.\n"
            "  optional double rows_before_limit_at_least = 5;\n"
            "  // What the query cost the warehouse.\n"
            "  pipit.query.v1.Statistics statistics = 4;\n"
            "}\n"
        )
    service = (
        "// QueryService answers the project's endpoint pipes, one RPC each.\n"
        "service QueryService {\n"
        "  option (pipit.clickhouse.v1.role) = SERVICE_ROLE_QUERY;\n\n" + "\n".join(rpcs) + "}\n"
    )
    return _header(imports) + service + "\n" + "\n".join(messages)
