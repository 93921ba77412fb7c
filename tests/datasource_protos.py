"""Datasources declared at test time as a project's build declares them: a proto message
with the `pipit.clickhouse.v1.table` option, one field per column with the `column`
option, each field of the label and type `common.column_types.event_field` gives its
ClickHouse type; read back through `common.datasources.from_descriptor`."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2

from common.column_types import event_field
from common.datasources import Datasource, from_descriptor
from pipit.clickhouse.v1 import options_pb2

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
}
_packages = itertools.count(1)


@dataclass(frozen=True)
class Spec:
    """One column as a datafile declares it."""

    name: str
    type: str
    json_path: str = ""
    """Tinybird's `json:$.a.b`, empty for the column's own name."""
    default: str = ""
    json_text: bool = False
    proto: tuple[str, str] | None = None
    """(label, proto type) instead of event_field's, to try another field shape."""


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, timestamp_pb2, options_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    return pool


def build(
    name: str,
    columns: list[Spec],
    sorting_key: str = "",
    table_options: Callable[[options_pb2.Table], None] | None = None,
) -> Datasource:
    """A datasource named `name` whose message is declared in a pool of its own
    (`table_options` sets the table option's other fields)."""
    package = f"pipit.test{next(_packages)}.v1"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/{name}.proto",
        package=package,
        syntax="proto3",
        dependency=["pipit/clickhouse/v1/options.proto", "google/protobuf/timestamp.proto"],
    )
    message = file.message_type.add(name="Event")
    table = message.options.Extensions[options_pb2.table]
    table.name = name
    table.engine = "MergeTree"
    table.sorting_key = sorting_key
    if table_options is not None:
        table_options(table)
    for number, spec in enumerate(columns, start=1):
        label, proto_type = spec.proto or event_field(spec.type)
        field = message.field.add(name=spec.name, number=number)
        if proto_type == "google.protobuf.Timestamp":
            field.type = _F.TYPE_MESSAGE
            field.type_name = ".google.protobuf.Timestamp"
        else:
            field.type = _SCALARS[proto_type]
        field.label = _F.LABEL_REPEATED if label == "repeated" else _F.LABEL_OPTIONAL
        if label == "optional" and field.type != _F.TYPE_MESSAGE:
            field.proto3_optional = True
            field.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{spec.name}")
        column = field.options.Extensions[options_pb2.column]
        column.type = spec.type
        column.json_path = spec.json_path
        column.default_expression = spec.default
        column.json_text = spec.json_text
    pool = _pool()
    pool.Add(file)
    ds = from_descriptor(pool.FindMessageTypeByName(f"{package}.Event"))
    assert ds is not None
    return ds
