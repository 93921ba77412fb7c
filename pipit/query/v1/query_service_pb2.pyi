from google.api import annotations_pb2 as _annotations_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from pipit.query.v1 import pipe_pb2 as _pipe_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TestSummaryRequest(_message.Message):
    __slots__ = ("test_id", "start_date", "end_date")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    start_date: str
    end_date: str
    def __init__(self, test_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class TestSummaryResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[TestSummaryRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[TestSummaryRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class TestSummaryRow(_message.Message):
    __slots__ = ("test_id", "variant", "users", "conversions", "conversion_rate", "total_revenue", "revenue_per_user")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REVENUE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PER_USER_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    variant: str
    users: int
    conversions: int
    conversion_rate: float
    total_revenue: float
    revenue_per_user: float
    def __init__(self, test_id: _Optional[str] = ..., variant: _Optional[str] = ..., users: _Optional[int] = ..., conversions: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., total_revenue: _Optional[float] = ..., revenue_per_user: _Optional[float] = ...) -> None: ...

class TestResultsRequest(_message.Message):
    __slots__ = ("test_id", "start_date", "end_date", "control", "weights", "sequential")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SEQUENTIAL_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    start_date: str
    end_date: str
    control: str
    weights: str
    sequential: bool
    def __init__(self, test_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., control: _Optional[str] = ..., weights: _Optional[str] = ..., sequential: _Optional[bool] = ...) -> None: ...

class TestResultsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[TestResultsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[TestResultsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class TestResultsRow(_message.Message):
    __slots__ = ("test_id", "variant", "control", "users", "conversions", "conversion_rate", "conversion_rate_low", "conversion_rate_high", "lift", "lift_low", "lift_high", "relative_lift", "relative_lift_low", "relative_lift_high", "p_value", "significant", "chance_to_beat_control", "revenue_per_user", "revenue_variance", "revenue_lift", "revenue_lift_low", "revenue_lift_high", "revenue_p_value", "srm_chi_square", "srm_p_value", "srm", "sequential")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_LOW_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_HIGH_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    LIFT_LOW_FIELD_NUMBER: _ClassVar[int]
    LIFT_HIGH_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_LIFT_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_LIFT_LOW_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_LIFT_HIGH_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    CHANCE_TO_BEAT_CONTROL_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PER_USER_FIELD_NUMBER: _ClassVar[int]
    REVENUE_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_LIFT_FIELD_NUMBER: _ClassVar[int]
    REVENUE_LIFT_LOW_FIELD_NUMBER: _ClassVar[int]
    REVENUE_LIFT_HIGH_FIELD_NUMBER: _ClassVar[int]
    REVENUE_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SRM_CHI_SQUARE_FIELD_NUMBER: _ClassVar[int]
    SRM_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SRM_FIELD_NUMBER: _ClassVar[int]
    SEQUENTIAL_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    variant: str
    control: str
    users: int
    conversions: int
    conversion_rate: float
    conversion_rate_low: float
    conversion_rate_high: float
    lift: float
    lift_low: float
    lift_high: float
    relative_lift: float
    relative_lift_low: float
    relative_lift_high: float
    p_value: float
    significant: bool
    chance_to_beat_control: float
    revenue_per_user: float
    revenue_variance: float
    revenue_lift: float
    revenue_lift_low: float
    revenue_lift_high: float
    revenue_p_value: float
    srm_chi_square: float
    srm_p_value: float
    srm: bool
    sequential: bool
    def __init__(self, test_id: _Optional[str] = ..., variant: _Optional[str] = ..., control: _Optional[str] = ..., users: _Optional[int] = ..., conversions: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., conversion_rate_low: _Optional[float] = ..., conversion_rate_high: _Optional[float] = ..., lift: _Optional[float] = ..., lift_low: _Optional[float] = ..., lift_high: _Optional[float] = ..., relative_lift: _Optional[float] = ..., relative_lift_low: _Optional[float] = ..., relative_lift_high: _Optional[float] = ..., p_value: _Optional[float] = ..., significant: _Optional[bool] = ..., chance_to_beat_control: _Optional[float] = ..., revenue_per_user: _Optional[float] = ..., revenue_variance: _Optional[float] = ..., revenue_lift: _Optional[float] = ..., revenue_lift_low: _Optional[float] = ..., revenue_lift_high: _Optional[float] = ..., revenue_p_value: _Optional[float] = ..., srm_chi_square: _Optional[float] = ..., srm_p_value: _Optional[float] = ..., srm: _Optional[bool] = ..., sequential: _Optional[bool] = ...) -> None: ...

class TestSegmentsRequest(_message.Message):
    __slots__ = ("test_id", "segment", "start_date", "end_date")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    segment: str
    start_date: str
    end_date: str
    def __init__(self, test_id: _Optional[str] = ..., segment: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class TestSegmentsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[TestSegmentsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[TestSegmentsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class TestSegmentsRow(_message.Message):
    __slots__ = ("test_id", "variant", "segment", "users", "conversions", "conversion_rate", "total_revenue", "revenue_per_user")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REVENUE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PER_USER_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    variant: str
    segment: str
    users: int
    conversions: int
    conversion_rate: float
    total_revenue: float
    revenue_per_user: float
    def __init__(self, test_id: _Optional[str] = ..., variant: _Optional[str] = ..., segment: _Optional[str] = ..., users: _Optional[int] = ..., conversions: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., total_revenue: _Optional[float] = ..., revenue_per_user: _Optional[float] = ...) -> None: ...

class TestTimeseriesRequest(_message.Message):
    __slots__ = ("test_id", "interval", "start_date", "end_date")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    interval: str
    start_date: str
    end_date: str
    def __init__(self, test_id: _Optional[str] = ..., interval: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class TestTimeseriesResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[TestTimeseriesRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[TestTimeseriesRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class TestTimeseriesRow(_message.Message):
    __slots__ = ("test_id", "variant", "period", "users", "conversions", "conversion_rate", "total_revenue")
    TEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REVENUE_FIELD_NUMBER: _ClassVar[int]
    test_id: str
    variant: str
    period: str
    users: int
    conversions: int
    conversion_rate: float
    total_revenue: float
    def __init__(self, test_id: _Optional[str] = ..., variant: _Optional[str] = ..., period: _Optional[str] = ..., users: _Optional[int] = ..., conversions: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., total_revenue: _Optional[float] = ...) -> None: ...

class UserSessionStatsRequest(_message.Message):
    __slots__ = ("user_id", "start_date", "end_date", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    start_date: str
    end_date: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class UserSessionStatsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[UserSessionStatsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[UserSessionStatsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class UserSessionStatsRow(_message.Message):
    __slots__ = ("session_id", "user_id", "session_start", "session_end", "duration_seconds", "event_count", "page_views", "unique_pages", "device_type", "browser", "country")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_PAGES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BROWSER_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    session_start: str
    session_end: str
    duration_seconds: int
    event_count: int
    page_views: int
    unique_pages: int
    device_type: str
    browser: str
    country: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_start: _Optional[str] = ..., session_end: _Optional[str] = ..., duration_seconds: _Optional[int] = ..., event_count: _Optional[int] = ..., page_views: _Optional[int] = ..., unique_pages: _Optional[int] = ..., device_type: _Optional[str] = ..., browser: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class UserEventTimelineRequest(_message.Message):
    __slots__ = ("user_id", "start_date", "end_date", "event_type", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    start_date: str
    end_date: str
    event_type: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., event_type: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class UserEventTimelineResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[UserEventTimelineRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[UserEventTimelineRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class UserEventTimelineRow(_message.Message):
    __slots__ = ("event_id", "user_id", "session_id", "event_type", "page_url", "referrer", "device_type", "browser", "country", "city", "properties", "timestamp")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BROWSER_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    session_id: str
    event_type: str
    page_url: str
    referrer: str
    device_type: str
    browser: str
    country: str
    city: str
    properties: str
    timestamp: str
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., event_type: _Optional[str] = ..., page_url: _Optional[str] = ..., referrer: _Optional[str] = ..., device_type: _Optional[str] = ..., browser: _Optional[str] = ..., country: _Optional[str] = ..., city: _Optional[str] = ..., properties: _Optional[str] = ..., timestamp: _Optional[str] = ...) -> None: ...

class UserActivityMetricsRequest(_message.Message):
    __slots__ = ("start_date", "end_date")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class UserActivityMetricsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[UserActivityMetricsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[UserActivityMetricsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class UserActivityMetricsRow(_message.Message):
    __slots__ = ("date", "unique_users", "sessions", "total_events", "page_views", "clicks", "click_through_rate")
    DATE_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_USERS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    date: str
    unique_users: int
    sessions: int
    total_events: int
    page_views: int
    clicks: int
    click_through_rate: float
    def __init__(self, date: _Optional[str] = ..., unique_users: _Optional[int] = ..., sessions: _Optional[int] = ..., total_events: _Optional[int] = ..., page_views: _Optional[int] = ..., clicks: _Optional[int] = ..., click_through_rate: _Optional[float] = ...) -> None: ...

class SessionInsightsRequest(_message.Message):
    __slots__ = ("start_date", "end_date", "user_id", "limit")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    user_id: str
    limit: int
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., user_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SessionInsightsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[SessionInsightsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[SessionInsightsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class SessionInsightsRow(_message.Message):
    __slots__ = ("session_id", "user_id", "session_start", "session_end", "session_duration_seconds", "event_count", "device_type", "browser", "os", "location")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_START_FIELD_NUMBER: _ClassVar[int]
    SESSION_END_FIELD_NUMBER: _ClassVar[int]
    SESSION_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BROWSER_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    session_start: str
    session_end: str
    session_duration_seconds: int
    event_count: int
    device_type: str
    browser: str
    os: str
    location: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_start: _Optional[str] = ..., session_end: _Optional[str] = ..., session_duration_seconds: _Optional[int] = ..., event_count: _Optional[int] = ..., device_type: _Optional[str] = ..., browser: _Optional[str] = ..., os: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class FeatureUsageRequest(_message.Message):
    __slots__ = ("start_date", "end_date", "feature")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    feature: str
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., feature: _Optional[str] = ...) -> None: ...

class FeatureUsageResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[FeatureUsageRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[FeatureUsageRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class FeatureUsageRow(_message.Message):
    __slots__ = ("feature", "total_events", "unique_users", "unique_sessions")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_USERS_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    feature: str
    total_events: int
    unique_users: int
    unique_sessions: int
    def __init__(self, feature: _Optional[str] = ..., total_events: _Optional[int] = ..., unique_users: _Optional[int] = ..., unique_sessions: _Optional[int] = ...) -> None: ...

class ActiveUsersRequest(_message.Message):
    __slots__ = ("start_date", "end_date", "interval")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    interval: str
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., interval: _Optional[str] = ...) -> None: ...

class ActiveUsersResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[ActiveUsersRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[ActiveUsersRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class ActiveUsersRow(_message.Message):
    __slots__ = ("period", "active_users", "sessions", "total_events")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EVENTS_FIELD_NUMBER: _ClassVar[int]
    period: str
    active_users: int
    sessions: int
    total_events: int
    def __init__(self, period: _Optional[str] = ..., active_users: _Optional[int] = ..., sessions: _Optional[int] = ..., total_events: _Optional[int] = ...) -> None: ...

class GetUserJourneyRequest(_message.Message):
    __slots__ = ("user_id", "start_date", "end_date")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    start_date: str
    end_date: str
    def __init__(self, user_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class GetUserJourneyResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[GetUserJourneyRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[GetUserJourneyRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class GetUserJourneyRow(_message.Message):
    __slots__ = ("user_id", "session_id", "timestamp", "event_type", "page_url", "page_title", "referrer", "device_type", "browser")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    PAGE_TITLE_FIELD_NUMBER: _ClassVar[int]
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BROWSER_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    session_id: str
    timestamp: str
    event_type: str
    page_url: str
    page_title: str
    referrer: str
    device_type: str
    browser: str
    def __init__(self, user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., timestamp: _Optional[str] = ..., event_type: _Optional[str] = ..., page_url: _Optional[str] = ..., page_title: _Optional[str] = ..., referrer: _Optional[str] = ..., device_type: _Optional[str] = ..., browser: _Optional[str] = ...) -> None: ...

class GetSessionEventsRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionEventsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[GetSessionEventsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[GetSessionEventsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class GetSessionEventsRow(_message.Message):
    __slots__ = ("event_id", "user_id", "timestamp", "event_type", "page_url", "page_title", "referrer", "device_type", "browser", "properties")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    PAGE_TITLE_FIELD_NUMBER: _ClassVar[int]
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BROWSER_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: str
    timestamp: str
    event_type: str
    page_url: str
    page_title: str
    referrer: str
    device_type: str
    browser: str
    properties: str
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[str] = ..., timestamp: _Optional[str] = ..., event_type: _Optional[str] = ..., page_url: _Optional[str] = ..., page_title: _Optional[str] = ..., referrer: _Optional[str] = ..., device_type: _Optional[str] = ..., browser: _Optional[str] = ..., properties: _Optional[str] = ...) -> None: ...

class GetPopularPagesRequest(_message.Message):
    __slots__ = ("start_date", "end_date", "limit")
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_date: str
    end_date: str
    limit: int
    def __init__(self, start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetPopularPagesResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[GetPopularPagesRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[GetPopularPagesRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class GetPopularPagesRow(_message.Message):
    __slots__ = ("page_url", "page_title", "view_count")
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    PAGE_TITLE_FIELD_NUMBER: _ClassVar[int]
    VIEW_COUNT_FIELD_NUMBER: _ClassVar[int]
    page_url: str
    page_title: str
    view_count: int
    def __init__(self, page_url: _Optional[str] = ..., page_title: _Optional[str] = ..., view_count: _Optional[int] = ...) -> None: ...

class FunnelRequest(_message.Message):
    __slots__ = ("steps", "step_by", "source", "window_seconds", "mode", "breakdown", "start_date", "end_date")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_BY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedScalarFieldContainer[str]
    step_by: str
    source: str
    window_seconds: int
    mode: str
    breakdown: str
    start_date: str
    end_date: str
    def __init__(self, steps: _Optional[_Iterable[str]] = ..., step_by: _Optional[str] = ..., source: _Optional[str] = ..., window_seconds: _Optional[int] = ..., mode: _Optional[str] = ..., breakdown: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class FunnelResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[FunnelRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[FunnelRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class FunnelRow(_message.Message):
    __slots__ = ("breakdown", "step", "step_name", "users", "conversion_from_previous", "conversion_overall", "median_seconds_from_previous")
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FROM_PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_OVERALL_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_SECONDS_FROM_PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    breakdown: str
    step: int
    step_name: str
    users: int
    conversion_from_previous: float
    conversion_overall: float
    median_seconds_from_previous: float
    def __init__(self, breakdown: _Optional[str] = ..., step: _Optional[int] = ..., step_name: _Optional[str] = ..., users: _Optional[int] = ..., conversion_from_previous: _Optional[float] = ..., conversion_overall: _Optional[float] = ..., median_seconds_from_previous: _Optional[float] = ...) -> None: ...

class RetentionRequest(_message.Message):
    __slots__ = ("source", "period", "start_date", "end_date")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    source: str
    period: str
    start_date: str
    end_date: str
    def __init__(self, source: _Optional[str] = ..., period: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class RetentionResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[RetentionRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[RetentionRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class RetentionRow(_message.Message):
    __slots__ = ("cohort", "period_number", "cohort_users", "active_users", "retention")
    COHORT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    COHORT_USERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_USERS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    cohort: str
    period_number: int
    cohort_users: int
    active_users: int
    retention: float
    def __init__(self, cohort: _Optional[str] = ..., period_number: _Optional[int] = ..., cohort_users: _Optional[int] = ..., active_users: _Optional[int] = ..., retention: _Optional[float] = ...) -> None: ...

class PagePathsRequest(_message.Message):
    __slots__ = ("page_url", "start_date", "end_date", "limit")
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    page_url: str
    start_date: str
    end_date: str
    limit: int
    def __init__(self, page_url: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class PagePathsResponse(_message.Message):
    __slots__ = ("meta", "data", "rows", "rows_before_limit_at_least", "statistics")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_BEFORE_LIMIT_AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    meta: _containers.RepeatedCompositeFieldContainer[_pipe_pb2.ColumnMeta]
    data: _containers.RepeatedCompositeFieldContainer[PagePathsRow]
    rows: int
    rows_before_limit_at_least: float
    statistics: _pipe_pb2.Statistics
    def __init__(self, meta: _Optional[_Iterable[_Union[_pipe_pb2.ColumnMeta, _Mapping]]] = ..., data: _Optional[_Iterable[_Union[PagePathsRow, _Mapping]]] = ..., rows: _Optional[int] = ..., rows_before_limit_at_least: _Optional[float] = ..., statistics: _Optional[_Union[_pipe_pb2.Statistics, _Mapping]] = ...) -> None: ...

class PagePathsRow(_message.Message):
    __slots__ = ("direction", "page_url", "transitions", "share")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    direction: str
    page_url: str
    transitions: int
    share: float
    def __init__(self, direction: _Optional[str] = ..., page_url: _Optional[str] = ..., transitions: _Optional[int] = ..., share: _Optional[float] = ...) -> None: ...
