"""What a Data Sources API request body holds, read as it arrives: a multipart form (Tinybird's
`-F csv=@file`) with the file as one part and perhaps parameters as others, a urlencoded form
(`url=…`, `delete_condition=…`), or the raw file.

`UploadReader` is fed the body a chunk at a time and hands back the file's bytes as it finds
them, so a file is never held whole; the form's fields are kept (they are small, and capped).
A multipart body is split by python-multipart's streaming parser. A field that comes after the
file part arrives too late to say how the file is read: it is ignored for an import."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

# The form field names Tinybird's clients give the file part, which also name its format.
FILE_FIELDS = {"csv": "csv", "ndjson": "ndjson", "parquet": "parquet", "file": ""}
# A form's parameters are small; a part without a filename past this is no parameter, and a
# urlencoded body past it is no form of parameters.
MAX_FIELD_BYTES = 64 * 1024
_MULTIPART = b"multipart/form-data"
_URLENCODED = b"application/x-www-form-urlencoded"


class UploadError(ValueError):
    """The body is not the form its Content-Type says."""


@dataclass
class Upload:
    """The parameters a whole body carries and its file (empty when none): `read_body`'s
    answer, for bodies known to be small."""

    fields: dict[str, str] = field(default_factory=dict)
    file: bytes = b""
    file_name: str = ""
    file_field: str = ""


class UploadReader:
    """A body read a chunk at a time: `feed` each chunk (it answers the file's bytes found in
    it), then `finish`. `fields` holds the form's parameters seen so far; `in_file` turns true
    when the file's bytes start (at once for a raw body)."""

    def __init__(self, content_type: str) -> None:
        kind, params = parse_options_header(content_type)
        self.fields: dict[str, str] = {}
        self.file_name = ""
        self.file_field = ""
        self.in_file = False
        self._kind = kind
        self._form = bytearray()
        self._out: list[bytes] = []
        self._multipart: MultipartParser | None = None
        if kind == _MULTIPART:
            boundary = params.get(b"boundary")
            if not boundary:
                raise UploadError("multipart/form-data without a boundary")
            self._multipart = self._parser(boundary)
            self._done = False
        elif kind != _URLENCODED:
            self.in_file = True

    @property
    def is_form(self) -> bool:
        """Whether the body is a form (multipart or urlencoded), not the raw file."""
        return self._kind in (_MULTIPART, _URLENCODED)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The file's bytes in `chunk` (none while the body is in a form's other parts)."""
        if self._multipart is not None:
            try:
                self._multipart.write(chunk)
            except MultipartParseError as exc:
                raise UploadError(f"not a valid multipart body: {exc}") from None
            out, self._out = self._out, []
            return out
        if self._kind == _URLENCODED:
            self._form += chunk
            if len(self._form) > MAX_FIELD_BYTES:
                raise UploadError(f"a form body is at most {MAX_FIELD_BYTES} bytes")
            return []
        return [chunk] if chunk else []

    def finish(self) -> None:
        """At the end of the body: raises UploadError when it ended inside its form."""
        if self._multipart is not None:
            self._multipart.finalize()
            if not self._done:
                raise UploadError("multipart body without its closing boundary")
        elif self._kind == _URLENCODED:
            try:
                text = bytes(self._form).decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError("form body is not UTF-8") from None
            self.fields.update(parse_qsl(text, keep_blank_values=True))

    def _parser(self, boundary: bytes) -> MultipartParser:
        part: dict[str, object] = {}
        header_name = bytearray()
        header_value = bytearray()
        value = bytearray()

        def on_part_begin() -> None:
            part.clear()
            part["headers"] = {}
            value.clear()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            header_name.extend(data[start:end])

        def on_header_value(data: bytes, start: int, end: int) -> None:
            header_value.extend(data[start:end])

        def on_header_end() -> None:
            headers = part["headers"]
            assert isinstance(headers, dict)
            headers[bytes(header_name).strip().lower()] = bytes(header_value).strip()
            header_name.clear()
            header_value.clear()

        def on_headers_finished() -> None:
            headers = part["headers"]
            assert isinstance(headers, dict)
            _, params = parse_options_header(headers.get(b"content-disposition", b""))
            name = params.get(b"name", b"").decode("utf-8", "replace")
            filename = params.get(b"filename")
            part["name"] = name
            if filename is not None or name in FILE_FIELDS:
                if self.file_field or self.in_file:
                    raise UploadError("send one file per request")
                self.in_file = True
                self.file_field = name
                self.file_name = "" if filename is None else filename.decode("utf-8", "replace")
                part["file"] = True

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if part.get("file"):
                self._out.append(bytes(data[start:end]))
                return
            value.extend(data[start:end])
            if len(value) > MAX_FIELD_BYTES:
                raise UploadError(
                    f"form field {part.get('name')!r} is larger than {MAX_FIELD_BYTES} bytes"
                )

        def on_part_end() -> None:
            if part.get("file"):
                part["file"] = False
            elif part.get("name"):
                self.fields[str(part["name"])] = bytes(value).decode("utf-8", "replace")

        def on_end() -> None:
            self._done = True

        return MultipartParser(
            boundary,
            callbacks={  # type: ignore[arg-type]
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": on_end,
            },
        )


def read_body(body: bytes, content_type: str) -> Upload:
    """The parameters and file of a whole request body with the given Content-Type (a
    delete's or truncate's form: small, and sent in one message)."""
    reader = UploadReader(content_type)
    file = b"".join(reader.feed(body))
    reader.finish()
    return Upload(reader.fields, file, reader.file_name, reader.file_field)
