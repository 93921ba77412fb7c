from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from pipit.query.v1 import pipe_pb2 as _pipe_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunQueryRequest(_message.Message):
    __slots__ = ("q", "pipeline", "body")
    Q_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    q: str
    pipeline: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, q: _Optional[str] = ..., pipeline: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("q", "pipeline")
    Q_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    q: str
    pipeline: str
    def __init__(self, q: _Optional[str] = ..., pipeline: _Optional[str] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    rows: int
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., rows: _Optional[int] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...
