import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AbTestEvent(_message.Message):
    __slots__ = ("timestamp", "user_id", "test_id", "variant", "event_type", "conversion", "revenue", "session_id", "device", "country")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    user_id: str
    test_id: str
    variant: str
    event_type: str
    conversion: int
    revenue: float
    session_id: str
    device: str
    country: str
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., test_id: _Optional[str] = ..., variant: _Optional[str] = ..., event_type: _Optional[str] = ..., conversion: _Optional[int] = ..., revenue: _Optional[float] = ..., session_id: _Optional[str] = ..., device: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...
