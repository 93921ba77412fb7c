"""Reading a RunQuery request: the SQL and pipeline from its body (the SQL itself, a form or a
JSON object, gzip'd or not) or from its fields."""

from __future__ import annotations

from urllib.parse import parse_qsl

import grpc
import orjson
from google.protobuf.message import Message

from common.gzip_inflater import BodyTooLarge, GzipError, GzipInflater
from services.query.sql_failure import SqlFailure

_FORM = "application/x-www-form-urlencoded"


def request_text(request: Message, encoding: str, limit: int) -> tuple[str, str]:
    """The SQL and pipeline of a RunQuery request: from its body when it has one (the SQL
    itself, a form, or a JSON object; see RunQueryRequest.body), else from its fields. The
    body's values win, as a body's do over query parameters in the transcoder."""
    q, pipeline = request.q, request.pipeline
    data = request.body.data
    if not data:
        return q, pipeline
    if encoding.strip().lower() == "gzip":
        data = _inflate(data, limit)
    kind = request.body.content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        # Refused in the words the transcoder uses for a JSON body it cannot read
        # (gateway/transcoder.py): this one reaches the service as raw bytes (an HttpBody),
        # so the service reads it itself.
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SqlFailure(
                grpc.StatusCode.INVALID_ARGUMENT, f"request body is not valid JSON: {exc}"
            ) from None
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(key, ""), str) for key in ("q", "pipeline")
        ):
            raise SqlFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                "a JSON body must be an object whose 'q' and 'pipeline' are strings",
            )
        return doc.get("q") or q, doc.get("pipeline") or pipeline
    text = _utf8(data)
    if kind == _FORM:
        fields = dict(parse_qsl(text, keep_blank_values=True))
        if "q" in fields:
            return fields["q"], fields.get("pipeline") or pipeline
        # `curl --data "SELECT …"` sends the SQL itself, unencoded, as a form.
    return text, pipeline


def _inflate(data: bytes, limit: int) -> bytes:
    inflater = GzipInflater(limit)
    try:
        inflated = inflater.feed(data)
        inflater.finish()
    except (BodyTooLarge, GzipError) as exc:
        raise SqlFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
    return inflated


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SqlFailure(
            grpc.StatusCode.INVALID_ARGUMENT, "request body is not valid UTF-8"
        ) from None
