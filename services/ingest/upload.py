"""What a Data Sources API request body holds: a multipart form (Tinybird's `-F csv=@file`)
with the file as one part and perhaps parameters as others, a urlencoded form (`url=…`,
`delete_condition=…`), or the raw file. The file is never copied: it is a view of the body.

multipart/form-data (RFC 7578) is read by finding the boundary delimiters in the body, which
is all the structure it has; python-multipart reads the header parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.multipart import parse_options_header

# The form field names Tinybird's clients give the file part, which also name its format.
FILE_FIELDS = {"csv": "csv", "ndjson": "ndjson", "parquet": "parquet", "file": ""}
_HEADERS_END = b"\r\n\r\n"
# A form's parameters are small; a part without a filename past this is no parameter.
_MAX_FIELD_BYTES = 64 * 1024


class UploadError(ValueError):
    """The body is not the form its Content-Type says."""


@dataclass
class Upload:
    """The parameters a body carries and its file (a view of the body; empty when none)."""

    fields: dict[str, str] = field(default_factory=dict)
    file: memoryview = field(default_factory=lambda: memoryview(b""))
    file_name: str = ""
    file_field: str = ""


def _multipart(body: bytes, boundary: bytes) -> Upload:
    upload = Upload()
    view = memoryview(body)
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise UploadError("multipart body without its boundary")
    at = start + len(delimiter)
    while True:
        if body[at : at + 2] == b"--":
            return upload  # the closing delimiter
        if body[at : at + 2] != b"\r\n":
            raise UploadError("multipart boundary not followed by a line break")
        headers_end = body.find(_HEADERS_END, at + 2)
        if headers_end < 0:
            raise UploadError("multipart part without the end of its headers")
        headers = body[at + 2 : headers_end].decode("utf-8", "replace")
        content_start = headers_end + len(_HEADERS_END)
        end = body.find(b"\r\n" + delimiter, content_start)
        if end < 0:
            raise UploadError("multipart body without its closing boundary")
        name, filename = _disposition(headers)
        content = view[content_start:end]
        if filename is not None or name in FILE_FIELDS:
            if upload.file_field:
                raise UploadError("send one file per request")
            upload.file, upload.file_name, upload.file_field = content, filename or "", name
        elif name:
            if len(content) > _MAX_FIELD_BYTES:
                raise UploadError(f"form field {name!r} is larger than {_MAX_FIELD_BYTES} bytes")
            upload.fields[name] = bytes(content).decode("utf-8", "replace")
        at = end + 2 + len(delimiter)


def _disposition(headers: str) -> tuple[str, str | None]:
    for line in headers.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            _, params = parse_options_header(value.strip())
            name = params.get(b"name", b"").decode("utf-8", "replace")
            filename = params.get(b"filename")
            return name, None if filename is None else filename.decode("utf-8", "replace")
    return "", None


def read_body(body: bytes, content_type: str) -> Upload:
    """The parameters and file of a request body with the given Content-Type."""
    kind, params = parse_options_header(content_type)
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadError("multipart/form-data without a boundary")
        return _multipart(body, boundary)
    if kind == b"application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError("form body is not UTF-8") from None
        return Upload(fields=dict(parse_qsl(text, keep_blank_values=True)))
    return Upload(file=memoryview(body))
