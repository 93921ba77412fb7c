from google.api import annotations_pb2 as _annotations_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from pipit.datasources.v1 import ab_test_events_pb2 as _ab_test_events_pb2
from pipit.datasources.v1 import app_events_pb2 as _app_events_pb2
from pipit.datasources.v1 import clickstream_events_pb2 as _clickstream_events_pb2
from pipit.datasources.v1 import user_events_pb2 as _user_events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendAbTestEventsRequest(_message.Message):
    __slots__ = ("events", "wait")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_ab_test_events_pb2.AbTestEvent]
    wait: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_ab_test_events_pb2.AbTestEvent, _Mapping]]] = ..., wait: _Optional[bool] = ...) -> None: ...

class AppendAbTestEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ...) -> None: ...

class AppendUserEventsRequest(_message.Message):
    __slots__ = ("events", "wait")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_user_events_pb2.UserEvent]
    wait: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_user_events_pb2.UserEvent, _Mapping]]] = ..., wait: _Optional[bool] = ...) -> None: ...

class AppendUserEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ...) -> None: ...

class AppendAppEventsRequest(_message.Message):
    __slots__ = ("events", "wait")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_app_events_pb2.AppEvent]
    wait: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_app_events_pb2.AppEvent, _Mapping]]] = ..., wait: _Optional[bool] = ...) -> None: ...

class AppendAppEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ...) -> None: ...

class AppendClickstreamEventsRequest(_message.Message):
    __slots__ = ("events", "wait")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_clickstream_events_pb2.ClickstreamEvent]
    wait: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_clickstream_events_pb2.ClickstreamEvent, _Mapping]]] = ..., wait: _Optional[bool] = ...) -> None: ...

class AppendClickstreamEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("ab_test_events", "user_events", "app_events", "clickstream_events")
    AB_TEST_EVENTS_FIELD_NUMBER: _ClassVar[int]
    USER_EVENTS_FIELD_NUMBER: _ClassVar[int]
    APP_EVENTS_FIELD_NUMBER: _ClassVar[int]
    CLICKSTREAM_EVENTS_FIELD_NUMBER: _ClassVar[int]
    ab_test_events: AppendAbTestEventsRequest
    user_events: AppendUserEventsRequest
    app_events: AppendAppEventsRequest
    clickstream_events: AppendClickstreamEventsRequest
    def __init__(self, ab_test_events: _Optional[_Union[AppendAbTestEventsRequest, _Mapping]] = ..., user_events: _Optional[_Union[AppendUserEventsRequest, _Mapping]] = ..., app_events: _Optional[_Union[AppendAppEventsRequest, _Mapping]] = ..., clickstream_events: _Optional[_Union[AppendClickstreamEventsRequest, _Mapping]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows", "batches")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    batches: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ..., batches: _Optional[int] = ...) -> None: ...

class PostEventsRequest(_message.Message):
    __slots__ = ("name", "wait", "body")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    name: str
    wait: bool
    body: _httpbody_pb2.HttpBody
    def __init__(self, name: _Optional[str] = ..., wait: _Optional[bool] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class PostEventsResponse(_message.Message):
    __slots__ = ("successful_rows", "quarantined_rows")
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    successful_rows: int
    quarantined_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ...) -> None: ...
