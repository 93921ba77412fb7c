from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from pipit.clickhouse.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportDataRequest(_message.Message):
    __slots__ = ("name", "mode", "format", "url", "dialect_delimiter", "dialect_new_line", "dialect_escapechar", "body")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    DIALECT_DELIMITER_FIELD_NUMBER: _ClassVar[int]
    DIALECT_NEW_LINE_FIELD_NUMBER: _ClassVar[int]
    DIALECT_ESCAPECHAR_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    name: str
    mode: str
    format: str
    url: str
    dialect_delimiter: str
    dialect_new_line: str
    dialect_escapechar: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, name: _Optional[str] = ..., mode: _Optional[str] = ..., format: _Optional[str] = ..., url: _Optional[str] = ..., dialect_delimiter: _Optional[str] = ..., dialect_new_line: _Optional[str] = ..., dialect_escapechar: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class TruncateDatasourceRequest(_message.Message):
    __slots__ = ("name", "body")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    name: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, name: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class DeleteDataRequest(_message.Message):
    __slots__ = ("name", "delete_condition", "dry_run", "body")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DELETE_CONDITION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    name: str
    delete_condition: str
    dry_run: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, name: _Optional[str] = ..., delete_condition: _Optional[str] = ..., dry_run: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("kind", "status")
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    status: str
    def __init__(self, kind: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobDatasource(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class JobStatistics(_message.Message):
    __slots__ = ("bytes", "row_count")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    row_count: int
    def __init__(self, bytes: _Optional[int] = ..., row_count: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("kind", "id", "job_id", "status", "created_at", "updated_at", "job_url", "datasource", "mode", "format", "url", "import_id", "delete_id", "delete_condition", "rows_affected", "statistics", "quarantine_rows", "invalid_lines", "progress_percentage", "errors", "error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_URL_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_CONDITION_FIELD_NUMBER: _ClassVar[int]
    ROWS_AFFECTED_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_ROWS_FIELD_NUMBER: _ClassVar[int]
    INVALID_LINES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    job_id: str
    status: str
    created_at: str
    updated_at: str
    job_url: str
    datasource: JobDatasource
    mode: str
    format: str
    url: str
    import_id: str
    delete_id: str
    delete_condition: str
    rows_affected: int
    statistics: JobStatistics
    quarantine_rows: int
    invalid_lines: int
    progress_percentage: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., job_id: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., job_url: _Optional[str] = ..., datasource: _Optional[_Union[JobDatasource, _Mapping]] = ..., mode: _Optional[str] = ..., format: _Optional[str] = ..., url: _Optional[str] = ..., import_id: _Optional[str] = ..., delete_id: _Optional[str] = ..., delete_condition: _Optional[str] = ..., rows_affected: _Optional[int] = ..., statistics: _Optional[_Union[JobStatistics, _Mapping]] = ..., quarantine_rows: _Optional[int] = ..., invalid_lines: _Optional[int] = ..., progress_percentage: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class JobResponse(_message.Message):
    __slots__ = ("id", "job_id", "job_url", "status", "job", "import_id", "delete_id", "rows_to_be_deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_TO_BE_DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    job_id: str
    job_url: str
    status: str
    job: Job
    import_id: str
    delete_id: str
    rows_to_be_deleted: int
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_url: _Optional[str] = ..., status: _Optional[str] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., import_id: _Optional[str] = ..., delete_id: _Optional[str] = ..., rows_to_be_deleted: _Optional[int] = ...) -> None: ...
