from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ListPipesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDatasourceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetOpenApiRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
