from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ColumnMeta(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("elapsed", "rows_read", "bytes_read")
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    ROWS_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    elapsed: float
    rows_read: float
    bytes_read: float
    def __init__(self, elapsed: _Optional[float] = ..., rows_read: _Optional[float] = ..., bytes_read: _Optional[float] = ...) -> None: ...
