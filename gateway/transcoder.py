"""HTTP request → request message, response message → HTTP body, by grpc_json_transcoder's rules.

Request: path variables, then query parameters (which win), each naming a field by proto or
JSON name with dotted paths into sub-messages; then the body, where the rule's `body` says
("*", or no `body` at all as in Envoy: JSON into the whole message; a field: JSON into that field; a
`google.api.HttpBody` field: the raw bytes and Content-Type, never parsed), its values winning
over the parameters' as Envoy's request weaver has it. Unknown parameters are ignored
(`ignore_unknown_query_parameters`), unknown JSON fields too (Envoy drops them); when the body
is an HttpBody they travel in its `extensions` as Envoy's UnknownQueryParams
(`capture_unknown_query_parameters`), which is how a pipe's parameters reach PipeService.
Path captures are unescaped as Envoy's default `url_unescape_spec` does; query values are
form-decoded, `+` included (Envoy needs `query_param_unescape_plus: true` to match: browsers
and HTTP clients send spaces in `start_date=2023-06-01 00:00:00` as `+`).

Response: printed with proto field names and every no-presence field (Envoy's
`preserve_proto_field_names` and `always_print_primitive_fields`), keys in declaration order and
integral doubles without a fraction, as protobuf's C++ printer inside Envoy writes them. An
HttpBody response is sent raw with its own content type.
"""

from __future__ import annotations

import base64
import binascii
import keyword
import re
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

from common.query_string import UNKNOWN_QUERY_PARAMS, is_utf8, unescape
from gateway.errors import GatewayError
from gateway.routes import Route, RouteMatch, resolve_field_path

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
}
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
# The spellings protobuf's converter (safe_strtob) accepts for a bool given as a string.
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
# Well-known types whose JSON form is a string; a query parameter may fill them.
_STRING_WELL_KNOWN = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
# Doubles at or above this print in exponent form in C++, which the JSON number keeps.
_PLAIN_INTEGRAL_LIMIT = 1e15


def _check_utf8(value: str, what: str) -> None:
    if not is_utf8(value):
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is not valid UTF-8")


def build_request(
    match: RouteMatch,
    query: Iterable[tuple[str, ...]],
    body: bytes,
    content_type: str,
    pool: DescriptorPool,
) -> Message:
    """The request message for a matched route, from the query's (name, value) pairs, each
    optionally followed by the name as sent (`parse_query(raw_names=True)`). Raises GatewayError
    (INVALID_ARGUMENT) naming the parameter or body at fault."""
    route = match.route
    message = route.request_class()
    for (field_path, raw_parts), multi in zip(match.bindings, match.multi_segment, strict=True):
        try:
            value = "/".join(unescape(p, keep_reserved=multi) for p in raw_parts)
        except ValueError:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"path variable {field_path!r} is not valid UTF-8"
            ) from None
        fields = resolve_field_path(message.DESCRIPTOR, field_path)
        assert fields is not None  # checked when the route was built
        _assign(message, fields, value, f"path variable {field_path!r}")
    # Query parameters after the path, so that one naming a path variable's field wins over it:
    # Envoy's path matcher binds the path first, then the query, and the last value counts.
    unknown: dict[str, list[str]] = {}
    for name, value, *as_sent in query:
        # A name that is not UTF-8 (see parse_query) names no field.
        fields = resolve_field_path(message.DESCRIPTOR, name) if is_utf8(name) else None
        if fields is None:
            # Unknown parameters are ignored, or handed on in an HttpBody (below) under the
            # name as sent: Envoy decodes a name to find its field, not to capture it.
            unknown.setdefault(as_sent[0] if as_sent else name, []).append(value)
        elif not (route.body_is_http_body and _within(fields, route.body_fields)):
            # Ones inside an HttpBody are dropped, as in Envoy.
            _assign(message, fields, value, f"query parameter {name!r}")
    # The body last, so that its fields win over query and path bindings of the same field:
    # Envoy's request weaver drops a binding the body sets. A rule without `body` still takes
    # a JSON body into the whole message there, so here too.
    if route.body or body:
        _fill_body(route, message, body, content_type, pool)
    if route.body_is_http_body and unknown:
        parent = _descend(message, route.body_fields)
        parent.extensions.add(type_url=UNKNOWN_QUERY_PARAMS, value=unknown_query_params(unknown))
    return message


def unknown_query_params(parameters: dict[str, list[str]]) -> bytes:
    """Envoy's UnknownQueryParams (`map<string, Values> key = 1`, Values `repeated string
    values = 1`) in its wire form, written by hand: Envoy hands names and values on as the
    bytes they decode to, UTF-8 or not, which a Python message's string field cannot hold."""
    out = bytearray()
    for name, values in parameters.items():
        listed = b"".join(_length_delimited(1, _raw(v)) for v in values)
        out += _length_delimited(1, _length_delimited(1, _raw(name)) + _length_delimited(2, listed))
    return bytes(out)


def _raw(text: str) -> bytes:
    return text.encode(errors="surrogateescape")  # parse_query's lone surrogates: the bytes


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _within(fields: Sequence[FieldDescriptor], prefix: Sequence[FieldDescriptor]) -> bool:
    return tuple(fields[: len(prefix)]) == tuple(prefix)


def _fill_body(
    route: Route, message: Message, body: bytes, content_type: str, pool: DescriptorPool
) -> None:
    parent = _descend(message, route.body_fields[:-1])
    if route.body_is_http_body:
        target = getattr(parent, route.body_fields[-1].name) if route.body_fields else message
        target.content_type = content_type
        target.data = body
        return
    if not body:
        # Envoy's transcoder takes a missing body as an empty message, but not a blank one.
        return
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT, f"request body is not valid JSON: {exc}"
        ) from None
    if route.body_fields:
        value = {route.body_fields[-1].name: value}
    elif not isinstance(value, dict):
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "request body must be a JSON object")
    try:
        json_format.ParseDict(value, parent, ignore_unknown_fields=True, descriptor_pool=pool)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid request body: {exc}"
        ) from None


def _descend(message: Message, fields: Sequence[FieldDescriptor]) -> Message:
    for field in fields:
        message = getattr(message, field.name)
    return message


def _assign(message: Message, fields: Sequence[FieldDescriptor], value: str, what: str) -> None:
    _check_utf8(value, what)
    parent = _descend(message, fields[:-1])
    field = fields[-1]
    if field.message_type is not None and not field.message_type.GetOptions().map_entry:
        _assign_message(parent, field, value, what)
    elif field.message_type is not None:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} cannot bind to a map field")
    elif field.is_repeated:
        getattr(parent, field.name).append(parse_scalar(field, value, what))
    else:
        _check_oneof(parent, field, what)
        setattr(parent, field.name, parse_scalar(field, value, what))


def _check_oneof(parent: Message, field: FieldDescriptor, what: str) -> None:
    # Envoy's object writer refuses a second value for a oneof (a proto3 `optional` field is
    # one too), where a plain field just takes the last value given.
    oneof = field.containing_oneof
    if oneof is not None and parent.WhichOneof(oneof.name) is not None:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid value for {what}: oneof field {oneof.name!r} is already set",
        )


def _assign_message(parent: Message, field: FieldDescriptor, value: str, what: str) -> None:
    type_name = field.message_type.full_name
    if field.is_repeated:
        target = getattr(parent, field.name).add()
    else:
        target = getattr(parent, field.name)
    if type_name in _WRAPPERS:
        target.value = parse_scalar(field.message_type.fields_by_name["value"], value, what)
    elif type_name in _STRING_WELL_KNOWN:
        try:
            json_format.Parse(orjson.dumps(value), target)
        except json_format.ParseError as exc:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid value for {what}: {exc}"
            ) from None
    else:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{what} names message field {field.name!r}; name one of its fields instead",
        )


def parse_scalar(field: FieldDescriptor, value: str, what: str) -> Any:
    """A query or path string as the field's type. Raises GatewayError naming `what`."""
    kind = field.type

    def invalid(expected: str) -> GatewayError:
        return GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid value for {what}: {value!r} is not {expected}",
        )

    if kind == FieldDescriptor.TYPE_STRING:
        return value
    if kind in _INT_RANGES:
        name, low, high = _INT_RANGES[kind]
        article = "an" if name.startswith("i") else "a"
        if not _INTEGER.fullmatch(value):
            raise invalid(f"{article} {name}")
        number = int(value)
        if not low <= number <= high:
            raise invalid(f"in the {name} range")
        return number
    if kind in _FLOATS:
        if not _DECIMAL.fullmatch(value) and value not in _FLOAT_WORDS:
            raise invalid("a number")
        return float(value)
    if kind == FieldDescriptor.TYPE_BOOL:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise invalid("a boolean (true or false)")
    if kind == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_name.get(value)
        if enum_value is not None:
            return enum_value.number
        if _INTEGER.fullmatch(value) and int(value) in field.enum_type.values_by_number:
            return int(value)
        names = ", ".join(field.enum_type.values_by_name)
        raise invalid(f"one of {names}")
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            padded = value + "=" * (-len(value) % 4)
            return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise invalid("base64") from None
    raise invalid("a supported scalar")


def render_response(route: Route, message: Message, pool: DescriptorPool) -> tuple[bytes, str]:
    """The HTTP body and content type for a response message (or its `response_body` field)."""
    if route.response_fields:
        parent = _descend(message, route.response_fields[:-1])
        field = route.response_fields[-1]
        if route.response_is_http_body:
            message = getattr(parent, field.name)
        else:
            printed = _print(parent, pool).get(field.name)
            return orjson.dumps(printed), "application/json"
    if route.response_is_http_body:
        return message.data, message.content_type or "application/octet-stream"
    return orjson.dumps(_print(message, pool)), "application/json"


def _print(message: Message, pool: DescriptorPool) -> dict[str, Any]:
    printer = _compiled_printer(message.DESCRIPTOR)
    if printer is not None:
        return printer(message)
    printed = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        descriptor_pool=pool,
    )
    return _conform(message.DESCRIPTOR, printed)


def _conform(descriptor: Descriptor, printed: dict[str, Any]) -> dict[str, Any]:
    # Python's printer appends defaulted fields after set ones; C++ prints declaration order.
    out = {
        f.name: _conform_value(f, printed[f.name]) for f in descriptor.fields if f.name in printed
    }
    if len(out) != len(printed):  # extensions ("[pkg.ext]") keep their place at the end
        out.update((k, v) for k, v in printed.items() if k not in out)
    return out


def _conform_value(field: FieldDescriptor, value: Any) -> Any:
    message_type = field.message_type
    if message_type is not None:
        if message_type.full_name.startswith("google.protobuf."):
            return value  # well-known types have JSON forms of their own
        if message_type.GetOptions().map_entry:
            value_field = message_type.fields_by_name["value"]
            return {k: _conform_value(value_field, v) for k, v in value.items()}
        if field.is_repeated:
            return [_conform(message_type, v) for v in value]
        return _conform(message_type, value)
    if field.type in _FLOATS:
        return [_integral(v) for v in value] if field.is_repeated else _integral(value)
    return value


def _integral(value: Any) -> Any:
    # C++ prints 3.0 as 3; Python would print 3.0.
    if isinstance(value, float) and value.is_integer() and abs(value) < _PLAIN_INTEGRAL_LIMIT:
        return int(value)
    return value


# A compiled printer gives what _print's general path gives (json_format, then _conform), for
# messages made only of the field kinds below: the query rows, which can run to thousands
# per answer, where json_format's per-field Python was most of the gateway's time.
_AS_IS = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
_AS_TEXT = frozenset(  # 64-bit integers are JSON strings in proto3's mapping
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_Printer = Callable[[Message], dict[str, Any]]
_PRINTERS: dict[str, _Printer | None] = {}


def _double(value: float) -> Any:
    # _integral's answer, and proto3 JSON's words for NaN and infinities, with the common
    # case (a finite double) first: this runs for every double of every row.
    if value.is_integer():
        return int(value) if -_PLAIN_INTEGRAL_LIMIT < value < _PLAIN_INTEGRAL_LIMIT else value
    if value - value == 0:  # finite; NaN and infinities give NaN
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _enum_name(field: FieldDescriptor) -> Callable[[int], Any]:
    names = {number: value.name for number, value in field.enum_type.values_by_number.items()}
    return lambda number: names.get(number, number)


def _field_printer(field: FieldDescriptor) -> Callable[[Any], Any]:
    """How one value of `field` prints; raises _Unsupported for kinds left to json_format."""
    kind = field.type
    if kind in _AS_IS:
        return _same
    if kind in _AS_TEXT:
        return str
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _double
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum_name(field)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        nested = _compiled_printer(field.message_type)
        if nested is not None:
            return nested
    raise _Unsupported


def _same(value: Any) -> Any:
    return value


def _reader(names: tuple[str, ...]) -> Callable[[Message], tuple[Any, ...]]:
    """A function giving the values of the fields `names` of a message, as a tuple."""
    if len(names) == 1:  # attrgetter of one name gives the value, not a tuple
        only = names[0]
        return lambda message: (getattr(message, only),)
    if not names:
        return lambda _message: ()
    return attrgetter(*names)


class _Unsupported(Exception):
    """A field kind the compiled printer leaves to json_format."""


def _compiled_printer(descriptor: Descriptor) -> _Printer | None:
    """A printer for messages of `descriptor`, or None when json_format must print them
    (maps, well-known types, bytes, float32, extensions)."""
    name = descriptor.full_name
    if name in _PRINTERS:
        return _PRINTERS[name]
    _PRINTERS[name] = None  # while compiling: a recursive type is left to json_format
    if (
        name.startswith("google.protobuf.")
        or descriptor.GetOptions().map_entry
        or descriptor.extension_ranges
    ):
        return None
    try:
        printers = [(field, _field_printer(field)) for field in descriptor.fields]
    except _Unsupported:
        return None
    if all(
        not field.is_repeated and not field.has_presence and field.name.isidentifier()
        for field, _ in printers
    ):
        _PRINTERS[name] = _flat_printer(printers)
        return _PRINTERS[name]
    # Every field is read in one call, in declaration order (the order C++ prints), then
    # the few that print otherwise are fixed in place: rows run to thousands per answer,
    # and a Python step per field was most of their cost.
    names = tuple(field.name for field in descriptor.fields)
    read = _reader(names)
    converted = []  # singular fields without presence whose value prints otherwise
    repeated = []
    present_only = []  # singular fields with presence (messages, `optional`, oneof members)
    for field, convert in printers:
        if field.is_repeated:
            repeated.append((field.name, convert))
        elif field.has_presence:
            present_only.append((field.name, convert))
        elif convert is not _same:
            converted.append((field.name, convert))

    def print_message(message: Message) -> dict[str, Any]:
        printed = dict(zip(names, read(message), strict=True))
        for field_name, convert in converted:
            printed[field_name] = convert(printed[field_name])
        for field_name, convert in repeated:
            printed[field_name] = list(map(convert, printed[field_name]))
        for field_name, convert in present_only:
            if message.HasField(field_name):
                printed[field_name] = convert(printed[field_name])
            else:
                del printed[field_name]  # the others keep their order
        return printed

    _PRINTERS[name] = print_message
    return print_message


def _flat_printer(printers: Sequence[tuple[FieldDescriptor, Callable[[Any], Any]]]) -> _Printer:
    """The printer of a message whose fields are all singular and without presence (a
    pipe's row, nearly always), written out as one dict display, `{"name": m.name, …}`:
    half the time of reading the fields as a tuple and fixing up the converted ones
    (`test_timeseries` by the hour, 1,440 rows: 4.8 -> 2.4 ms, measured 2026-12-02), and
    rows are most of a large answer's printing. Only descriptors' field names reach the
    source, as string literals and as attribute names (a keyword through getattr)."""
    namespace: dict[str, Any] = {}
    entries = []
    for number, (field, convert) in enumerate(printers):
        name = field.name
        read = f"getattr(m, {name!r})" if keyword.iskeyword(name) else f"m.{name}"
        if convert is not _same:
            namespace[f"_convert{number}"] = convert
            read = f"_convert{number}({read})"
        entries.append(f"{name!r}: {read}")
    source = f"def print_message(m):\n    return {{{', '.join(entries)}}}\n"
    exec(source, namespace)  # noqa: S102 - the source is made of field names only
    return namespace["print_message"]
