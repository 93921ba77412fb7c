"""Query strings and path segments as Envoy's transcoder decodes them: percent-decoding (UTF-8,
`+` as a space in query values, reserved characters kept escaped where Envoy keeps them) and
`name=value` pairs in order. Our gateway's transcoder and the query service's PipeService (which
reads a pipe's parameters from the query string Envoy or our gateway captured) decode alike."""

from __future__ import annotations

# Where Envoy's `capture_unknown_query_parameters` puts, in a request's HttpBody `extensions`,
# the query parameters that name no field.
UNKNOWN_QUERY_PARAMS = (
    "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.UnknownQueryParams"
)

# RFC 6570 reserved characters: Envoy leaves them escaped in multi-segment path captures.
_RESERVED = frozenset(b"!#$&'()*+,/:;=?@[]")


def unescape(
    text: str, *, plus_is_space: bool = False, keep_reserved: bool = False, errors: str = "strict"
) -> str:
    """Percent-decodes `text` as UTF-8 (ValueError if it is not valid UTF-8, unless `errors`
    says otherwise)."""
    if plus_is_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25 and _is_hex(raw[i + 1 : i + 3]):
            decoded = int(raw[i + 1 : i + 3], 16)
            if keep_reserved and decoded in _RESERVED:
                out += raw[i : i + 3]
            else:
                out.append(decoded)
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode(errors=errors)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def parse_query(raw_query: str, *, raw_names: bool = False) -> list[tuple[str, ...]]:
    """`name=value` pairs in order, decoded. Like Envoy, a parameter without `=` or with an empty
    name binds nothing. Bytes that are not UTF-8 stay as lone surrogates (`surrogateescape`):
    an unknown parameter is ignored whatever it holds, as in Envoy, and only a value bound to a
    field is refused (see `is_utf8`). With `raw_names`, each pair is followed by the name as
    sent, which is how Envoy captures an unknown parameter (see `build_request`)."""
    pairs: list[tuple[str, ...]] = []
    for param in raw_query.split("&"):
        name, sep, value = param.partition("=")
        if not sep or not name:
            continue
        decoded = (
            unescape(name, errors="surrogateescape"),
            unescape(value, plus_is_space=True, errors="surrogateescape"),
        )
        pairs.append((*decoded, name) if raw_names else decoded)
    return pairs


def is_utf8(text: str) -> bool:
    """False for text `parse_query` decoded from bytes that are not UTF-8 (it holds lone
    surrogates): such a name names no field, and such a value cannot be bound to one."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
