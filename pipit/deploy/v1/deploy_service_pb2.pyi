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
