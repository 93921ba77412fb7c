from google.api import annotations_pb2 as _annotations_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectFile(_message.Message):
    __slots__ = ("path", "content")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: str
    def __init__(self, path: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("files", "allow_destructive", "dry_run")
    FILES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DESTRUCTIVE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[ProjectFile]
    allow_destructive: bool
    dry_run: bool
    def __init__(self, files: _Optional[_Iterable[_Union[ProjectFile, _Mapping]]] = ..., allow_destructive: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeployResponse(_message.Message):
    __slots__ = ("version", "changes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    version: str
    changes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., changes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: str
    def __init__(self, known_version: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("version", "descriptor_set")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_SET_FIELD_NUMBER: _ClassVar[int]
    version: str
    descriptor_set: bytes
    def __init__(self, version: _Optional[str] = ..., descriptor_set: _Optional[bytes] = ...) -> None: ...

class ListPipesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PipeParameter(_message.Message):
    __slots__ = ("name", "type", "default_value", "required", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default_value: str
    required: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[str] = ..., required: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class PipeColumn(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Pipe(_message.Message):
    __slots__ = ("name", "description", "endpoint", "parameters", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    endpoint: str
    parameters: _containers.RepeatedCompositeFieldContainer[PipeParameter]
    columns: _containers.RepeatedCompositeFieldContainer[PipeColumn]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., endpoint: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[PipeParameter, _Mapping]]] = ..., columns: _Optional[_Iterable[_Union[PipeColumn, _Mapping]]] = ...) -> None: ...

class ListPipesResponse(_message.Message):
    __slots__ = ("pipes",)
    PIPES_FIELD_NUMBER: _ClassVar[int]
    pipes: _containers.RepeatedCompositeFieldContainer[Pipe]
    def __init__(self, pipes: _Optional[_Iterable[_Union[Pipe, _Mapping]]] = ...) -> None: ...
