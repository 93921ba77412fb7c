"""The gateway's compiled JSON printer gives exactly what the general path (json_format, then
the C++-order and integral-double fix-ups that the Envoy conformance suite pins) gives, for
every response message of every route, filled with awkward values."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway import transcoder
from gateway.app import default_descriptor_set
from gateway.routes import load_routes
from pipit.ingest.v1 import ingest_service_pb2
from pipit.query.v1 import query_service_pb2, sql_service_pb2

SERVICES = [
    query_service_pb2.DESCRIPTOR.services_by_name["QueryService"],
    sql_service_pb2.DESCRIPTOR.services_by_name["SqlService"],
    ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"],
]
_DOUBLES = [0.0, -0.0, 3.0, -2.5, 0.1, 1e15, 1e16, 123456789.125, math.nan, math.inf, -math.inf]
_STRINGS = ["", "a", "naïve ☃", '"quoted"\\', "\x00\x1f", "x" * 300]
_INTS = {
    FieldDescriptor.TYPE_UINT32: [0, 1, 2**32 - 1],
    FieldDescriptor.TYPE_INT32: [0, -1, 2**31 - 1, -(2**31)],
    FieldDescriptor.TYPE_UINT64: [0, 7, 2**64 - 1],
    FieldDescriptor.TYPE_INT64: [0, -7, 2**63 - 1, -(2**63)],
}


def _value(field: FieldDescriptor, rng: random.Random):
    kind = field.type
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return rng.choice(_DOUBLES)
    if kind == FieldDescriptor.TYPE_STRING:
        return rng.choice(_STRINGS)
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.choice([b"", b"\x00\xff", b"text"])
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = list(field.enum_type.values_by_number) + [999]  # and an unknown one
        return rng.choice(numbers)
    return rng.choice(_INTS.get(kind, [0, 1]))


def _fill(message: Message, rng: random.Random, depth: int = 0) -> None:
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.25:
            continue  # left unset: defaults and absent fields print as they should
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name.startswith("google.protobuf.") or depth > 3:
                continue
            if field.is_repeated:
                for _ in range(rng.randrange(3)):
                    _fill(getattr(message, field.name).add(), rng, depth + 1)
            else:
                _fill(getattr(message, field.name), rng, depth + 1)
                getattr(message, field.name).SetInParent()
        elif field.is_repeated:
            getattr(message, field.name).extend(_value(field, rng) for _ in range(rng.randrange(3)))
        else:
            setattr(message, field.name, _value(field, rng))


def _responses() -> list[Descriptor]:
    return [method.output_type for service in SERVICES for method in service.methods]


def _general(message: Message, pool) -> dict:
    compiled = transcoder._PRINTERS.pop(message.DESCRIPTOR.full_name, None)
    try:
        transcoder._PRINTERS[message.DESCRIPTOR.full_name] = None  # force the general path
        return transcoder._print(message, pool)
    finally:
        transcoder._PRINTERS[message.DESCRIPTOR.full_name] = compiled


@pytest.mark.parametrize("descriptor", _responses(), ids=lambda d: d.full_name)
def test_compiled_printer_equals_the_general_path(descriptor: Descriptor) -> None:
    pool = load_routes(default_descriptor_set(), [s.full_name for s in SERVICES]).pool
    message_class = message_factory.GetMessageClass(descriptor)
    rng = random.Random(descriptor.full_name)
    for _ in range(50):
        message = message_class()
        _fill(message, rng)
        fast = transcoder._print(message, pool)
        assert orjson.dumps(fast) == orjson.dumps(_general(message, pool))


def test_query_rows_take_the_compiled_path() -> None:
    for method in SERVICES[0].methods:
        assert transcoder._compiled_printer(method.output_type) is not None, method.name
    # A message with a Struct (the SQL API's rows) is json_format's.
    assert transcoder._compiled_printer(SERVICES[1].methods[0].output_type) is None


def test_a_row_whose_columns_are_python_keywords_prints_them() -> None:
    # A datafile may name columns `from`, `class` or `type` (a deployed project's row).
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(
        name="keyword_row.proto", package="t", syntax="proto3"
    )
    row = file.message_type.add(name="Row")
    kinds = {
        "from": "TYPE_STRING",
        "class": "TYPE_DOUBLE",
        "type": "TYPE_UINT64",
        "n": "TYPE_INT32",
    }
    for number, (name, kind) in enumerate(kinds.items(), start=1):
        row.field.add(
            name=name,
            number=number,
            type=getattr(descriptor_pb2.FieldDescriptorProto, kind),
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool.Add(file)
    message = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Row"))()
    setattr(message, "from", "/pricing")
    setattr(message, "class", 2.0)
    message.type = 2**64 - 1
    printed = transcoder._print(message, pool)
    assert printed == {"from": "/pricing", "class": 2, "type": str(2**64 - 1), "n": 0}
    assert orjson.dumps(printed) == orjson.dumps(_general(message, pool))
