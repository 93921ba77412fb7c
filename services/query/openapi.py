"""The OpenAPI 3 document of the pipes a token may read (`GET /v0/pipes/openapi.json`),
generated from the project's descriptors: each pipe's path with its parameters (types,
bounds, defaults, allowed values, required, descriptions from the `parameter` option or
the field's comment) and the schema of its answer (from its row message, as the gateways
print it: proto3 JSON with proto field names and every non-optional field present).
Tokens go as Tinybird documents them: `Authorization: Bearer` or `?token=`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from common.column_types import parse
from pipit.project.runtime import Project
from services.query.catalog import (
    column_type,
    parameter_description,
    parameter_fields,
    pipe_comments,
    pipe_description,
    readable_pipes,
    row_fields,
)

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
# What a pipe answers in when nothing else serves its other formats.
JSON_ONLY: Mapping[str, str] = {"json": JSON}

_F = FieldDescriptor
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1}
_UINT64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
# proto3 JSON prints 64-bit integers as decimal strings.
_INT64_TEXT = {"type": "string", "pattern": "^-?[0-9]+$"}
_NUMBER = {"type": "number"}
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: _NUMBER,
    _F.TYPE_FLOAT: _NUMBER,
    _F.TYPE_INT32: _INT32,
    _F.TYPE_SINT32: _INT32,
    _F.TYPE_SFIXED32: _INT32,
    _F.TYPE_UINT32: _UINT32,
    _F.TYPE_FIXED32: _UINT32,
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
    _F.TYPE_ENUM: {"type": "string"},
}
_REQUEST_64 = {
    _F.TYPE_INT64: _INT64,
    _F.TYPE_SINT64: _INT64,
    _F.TYPE_SFIXED64: _INT64,
    _F.TYPE_UINT64: _UINT64,
    _F.TYPE_FIXED64: _UINT64,
}
_DAY = "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
# Years each type holds: DateTime 1970-2106 and Date 1970-2149 (their last year only in part).
_DATETIME_YEARS = "(19[7-9][0-9]|20[0-9][0-9]|210[0-6])"
_DATE_YEARS = "(19[7-9][0-9]|20[0-9][0-9]|21[0-4][0-9])"
_ANY_YEAR = "[0-9]{4}"
# How a date or time parameter is spelled (the binders also take RFC 3339 and epoch seconds,
# which the document leaves out to keep to one spelling).
_PATTERNS = {
    "Date": f"^{_DATE_YEARS}{_DAY}$",
    "Date32": f"^{_ANY_YEAR}{_DAY}$",
    "DateTime": f"^{_DATETIME_YEARS}{_DAY}( {_TIME})?$",
    "DateTime64": f"^{_ANY_YEAR}{_DAY}( {_TIME}(\\.[0-9]{{1,9}})?)?$",
}
_ERROR_STATUSES = {
    "400": "A parameter is malformed, out of range or missing.",
    "403": "No token, an unknown one (`code` 16), or one without the pipe's PIPES:READ scope "
    "(`code` 7), as Tinybird answers them.",
    "404": "No such pipe.",
    "429": "The token's rate limit is reached; retry after `Retry-After` seconds.",
    "503": "The warehouse is unreachable.",
}


def _error_response(status: str, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == "429":
        # Both gateways always send it (one second when the service named none).
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


_COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token with the pipe's PIPES:READ scope (or ADMIN).",
        },
        "tokenParameter": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The same token as a query parameter, as Tinybird accepts it.",
        },
    },
    "schemas": {
        "Error": {
            "type": "object",
            "description": "Why the request failed: `error` as Tinybird's clients read it, "
            "beside the gRPC status (`code`, `message`, `details`).",
            "required": ["error", "code", "message"],
            "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {}},
            },
        },
        "ColumnMeta": {
            "type": "object",
            "required": ["name", "type"],
            "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
        },
        "Statistics": {
            "type": "object",
            "required": ["elapsed", "rows_read", "bytes_read"],
            "properties": {
                "elapsed": _NUMBER,
                "rows_read": _NUMBER,
                "bytes_read": _NUMBER,
            },
        },
        # The answer of `q` over a pipe: whatever columns the query makes.
        "QueryAnswer": {
            "type": "object",
            "required": ["meta", "data", "rows", "statistics"],
            "properties": {
                "meta": {"type": "array", "items": {"$ref": "#/components/schemas/ColumnMeta"}},
                "data": {"type": "array", "items": {"type": "object"}},
                "rows": {"type": "integer", "minimum": 0},
                "rows_before_limit_at_least": {"type": "integer", "minimum": 0},
                "statistics": {"$ref": "#/components/schemas/Statistics"},
            },
        },
    },
    "responses": {
        f"Error{status}": _error_response(status, description)
        for status, description in _ERROR_STATUSES.items()
    },
}


def _value_schema(field: FieldDescriptor, *, answer: bool) -> dict[str, Any]:
    """The JSON schema of one value of `field` as proto3 JSON prints it (`answer`) or as a
    query parameter spells it."""
    if field.type in _REQUEST_64:
        return dict(_INT64_TEXT if answer else _REQUEST_64[field.type])
    if field.type == _F.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        return {"type": "object"}
    return dict(_SCALARS[field.type])


def _has_presence(field: FieldDescriptor) -> bool:
    return not field.is_repeated and field.has_presence


def _row_schema(comments: Callable[[str], str], method: MethodDescriptor) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = []
    for field in row_fields(method):
        value = _value_schema(field, answer=True)
        schema = {"type": "array", "items": value} if field.is_repeated else value
        if not _has_presence(field):
            # Always printed; an optional field (a Nullable column) is left out when NULL.
            required.append(field.name)
        description = comments(field.full_name)
        kind = column_type(field)
        if kind:
            description = f"{description} ({kind})".strip() if description else kind
        if description:
            schema["description"] = description
        properties[field.name] = schema
    row: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        row["required"] = required
    return row


def _parameters(comments: Callable[[str], str], method: MethodDescriptor) -> list[dict[str, Any]]:
    parameters = []
    for field, option in parameter_fields(method):
        value = _value_schema(field, answer=False)
        if option.HasField("min"):
            value["minimum"] = option.min
        if option.HasField("max"):
            value["maximum"] = option.max
        if option.max_length:
            value["maxLength"] = option.max_length
        pattern = _PATTERNS.get(parse(option.type).name) if option.type else None
        if value.get("type") == "string" and pattern:
            # Unless the default is spelled otherwise (a template's own default is free text).
            if not option.default_value or re.search(pattern, option.default_value):
                value["pattern"] = pattern
        if option.required and value.get("type") == "string" and not _has_presence(field):
            # Without presence an empty value is no value: a required one must have text.
            value["minLength"] = 1
        # A value the schema's type cannot hold (a template's free-text default, an Array's
        # literal) is left out rather than making the document invalid.
        allowed = [_typed(value, text) for text in option.allowed_values]
        if allowed and _UNTYPED not in allowed:
            value["enum"] = allowed
        default = _typed(value, option.default_value) if option.default_value else _UNTYPED
        if default is not _UNTYPED and not field.is_repeated:
            value["default"] = default
        schema = {"type": "array", "items": value} if field.is_repeated else value
        description = parameter_description(comments, field, option)
        if option.type:
            description = f"{description} (ClickHouse {option.type})".strip()
        parameter: dict[str, Any] = {
            "name": field.name,
            "in": "query",
            "required": option.required,
            "schema": schema,
        }
        if field.is_repeated:
            parameter.update(style="form", explode=True)
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


_UNTYPED = object()


def _typed(schema: dict[str, Any], text: str) -> Any:
    """`text` as a value of the schema's type, or _UNTYPED when it is not one."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return _UNTYPED
    if kind == "boolean":
        return {"1": True, "true": True, "0": False, "false": False}.get(text.lower(), _UNTYPED)
    return text


def _schema_name(method: MethodDescriptor, suffix: str) -> str:
    # Component names allow dots: the full name keeps two packages' pipes apart.
    return f"{method.output_type.full_name.removesuffix('Response')}{suffix}"


# Tinybird's `q` on a pipe: SQL over the pipe's answer, read as the table `_`.
_QUERY_PARAMETER = {
    "name": "q",
    "in": "query",
    "required": False,
    "description": "SQL over the pipe's answer, read as the table `_` (read-only, as the Query "
    "API runs it); the answer then has the query's columns.",
    "schema": {"type": "string"},
}


def openapi_document(
    project: Project,
    scopes: tuple[str, ...],
    formats: Mapping[str, str] = JSON_ONLY,
) -> dict[str, Any]:
    """The document for a token with `scopes`. `formats` maps each file extension a pipe is
    served in to its content type; `json` is the typed answer and has a schema, the others
    are described as they are (bytes of the engine's own output)."""
    schemas = dict(_COMPONENTS["schemas"])
    paths: dict[str, Any] = {}
    errors = {
        status: {"$ref": f"#/components/responses/Error{status}"} for status in _ERROR_STATUSES
    }
    for name, method in sorted(readable_pipes(project, scopes).items()):
        row, answer = _schema_name(method, "Row"), _schema_name(method, "Response")
        comments = pipe_comments(project, name)
        schemas[row] = _row_schema(comments, method)
        schemas[answer] = {
            "type": "object",
            "required": ["meta", "data", "rows", "statistics"],
            "properties": {
                "meta": {"type": "array", "items": {"$ref": "#/components/schemas/ColumnMeta"}},
                "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{row}"}},
                "rows": {"type": "integer", "minimum": 0},
                "statistics": {"$ref": "#/components/schemas/Statistics"},
            },
        }
        description = pipe_description(project, name, method)
        parameters = [*_parameters(comments, method), _QUERY_PARAMETER]
        for extension, content_type in formats.items():
            if extension == "json":
                typed = {"$ref": f"#/components/schemas/{answer}"}
                generic = {"$ref": "#/components/schemas/QueryAnswer"}
                content = {content_type: {"schema": {"anyOf": [typed, generic]}}}
            else:
                content = {content_type: {"schema": {"type": "string", "format": "binary"}}}
            operation: dict[str, Any] = {
                "operationId": name if extension == "json" else f"{name}_{extension}",
                "summary": description or f"The {name} pipe",
                "tags": ["pipes"],
                "parameters": parameters,
                "responses": {
                    "200": {"description": f"The pipe's answer ({extension}).", "content": content},
                    **errors,
                },
            }
            paths[f"/v0/pipes/{name}.{extension}"] = {"get": operation}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"Pipit pipes ({project.name})",
            "version": project.version,
            "description": "The pipes of the project in service that this token may read.",
        },
        # Relative: the host that served this document serves the pipes too.
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"tokenParameter": []}],
        "tags": [{"name": "pipes", "description": "Analytics endpoints."}],
        "paths": paths,
        "components": {**_COMPONENTS, "schemas": schemas},
    }
