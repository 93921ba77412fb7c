from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_ROLE_UNSPECIFIED: _ClassVar[ServiceRole]
    SERVICE_ROLE_INGEST: _ClassVar[ServiceRole]
    SERVICE_ROLE_QUERY: _ClassVar[ServiceRole]
SERVICE_ROLE_UNSPECIFIED: ServiceRole
SERVICE_ROLE_INGEST: ServiceRole
SERVICE_ROLE_QUERY: ServiceRole
TABLE_FIELD_NUMBER: _ClassVar[int]
table: _descriptor.FieldDescriptor
COLUMN_FIELD_NUMBER: _ClassVar[int]
column: _descriptor.FieldDescriptor
PARAMETER_FIELD_NUMBER: _ClassVar[int]
parameter: _descriptor.FieldDescriptor
ROLE_FIELD_NUMBER: _ClassVar[int]
role: _descriptor.FieldDescriptor
ENDPOINT_FIELD_NUMBER: _ClassVar[int]
endpoint: _descriptor.FieldDescriptor
ANALYSIS_FIELD_NUMBER: _ClassVar[int]
analysis: _descriptor.FieldDescriptor

class Table(_message.Message):
    __slots__ = ("name", "description", "engine", "partition_key", "sorting_key", "skip_indexes", "projections", "ttl", "settings", "primary_key", "sharding_key", "retired_projections", "materialized_by", "numbered_columns", "page_moves")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORTING_KEY_FIELD_NUMBER: _ClassVar[int]
    SKIP_INDEXES_FIELD_NUMBER: _ClassVar[int]
    PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_KEY_FIELD_NUMBER: _ClassVar[int]
    SHARDING_KEY_FIELD_NUMBER: _ClassVar[int]
    RETIRED_PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    MATERIALIZED_BY_FIELD_NUMBER: _ClassVar[int]
    NUMBERED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PAGE_MOVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    engine: str
    partition_key: str
    sorting_key: str
    skip_indexes: _containers.RepeatedCompositeFieldContainer[SkipIndex]
    projections: _containers.RepeatedCompositeFieldContainer[Projection]
    ttl: str
    settings: str
    primary_key: str
    sharding_key: str
    retired_projections: _containers.RepeatedScalarFieldContainer[str]
    materialized_by: str
    numbered_columns: _containers.RepeatedScalarFieldContainer[str]
    page_moves: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., engine: _Optional[str] = ..., partition_key: _Optional[str] = ..., sorting_key: _Optional[str] = ..., skip_indexes: _Optional[_Iterable[_Union[SkipIndex, _Mapping]]] = ..., projections: _Optional[_Iterable[_Union[Projection, _Mapping]]] = ..., ttl: _Optional[str] = ..., settings: _Optional[str] = ..., primary_key: _Optional[str] = ..., sharding_key: _Optional[str] = ..., retired_projections: _Optional[_Iterable[str]] = ..., materialized_by: _Optional[str] = ..., numbered_columns: _Optional[_Iterable[str]] = ..., page_moves: _Optional[bool] = ...) -> None: ...

class Projection(_message.Message):
    __slots__ = ("name", "query", "range_view", "fold_hours", "folded_view", "day_projection", "month_projection", "one_row_per_key", "index_granularity", "without_page_moves")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    RANGE_VIEW_FIELD_NUMBER: _ClassVar[int]
    FOLD_HOURS_FIELD_NUMBER: _ClassVar[int]
    FOLDED_VIEW_FIELD_NUMBER: _ClassVar[int]
    DAY_PROJECTION_FIELD_NUMBER: _ClassVar[int]
    MONTH_PROJECTION_FIELD_NUMBER: _ClassVar[int]
    ONE_ROW_PER_KEY_FIELD_NUMBER: _ClassVar[int]
    INDEX_GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_PAGE_MOVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    query: str
    range_view: bool
    fold_hours: bool
    folded_view: str
    day_projection: str
    month_projection: str
    one_row_per_key: bool
    index_granularity: int
    without_page_moves: bool
    def __init__(self, name: _Optional[str] = ..., query: _Optional[str] = ..., range_view: _Optional[bool] = ..., fold_hours: _Optional[bool] = ..., folded_view: _Optional[str] = ..., day_projection: _Optional[str] = ..., month_projection: _Optional[str] = ..., one_row_per_key: _Optional[bool] = ..., index_granularity: _Optional[int] = ..., without_page_moves: _Optional[bool] = ...) -> None: ...

class SkipIndex(_message.Message):
    __slots__ = ("name", "expression", "type", "granularity")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    expression: str
    type: str
    granularity: int
    def __init__(self, name: _Optional[str] = ..., expression: _Optional[str] = ..., type: _Optional[str] = ..., granularity: _Optional[int] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("type", "json_text", "json_path", "default_expression")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_TEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_PATH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    type: str
    json_text: bool
    json_path: str
    default_expression: str
    def __init__(self, type: _Optional[str] = ..., json_text: _Optional[bool] = ..., json_path: _Optional[str] = ..., default_expression: _Optional[str] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("type", "default_value", "required", "allowed_values", "min", "max", "max_length", "not_before", "description")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_VALUES_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    type: str
    default_value: str
    required: bool
    allowed_values: _containers.RepeatedScalarFieldContainer[str]
    min: int
    max: int
    max_length: int
    not_before: str
    description: str
    def __init__(self, type: _Optional[str] = ..., default_value: _Optional[str] = ..., required: _Optional[bool] = ..., allowed_values: _Optional[_Iterable[str]] = ..., min: _Optional[int] = ..., max: _Optional[int] = ..., max_length: _Optional[int] = ..., not_before: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
