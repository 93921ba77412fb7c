"""The Lua filters Envoy runs where no built-in filter does what our gateway does. Their code
is in the `.lua` files beside this module; what they share with our gateway (token locations,
refusals with their statuses and words, status rewrites, the `:query` rewrite, the route
table) is filled into their `@NAME@` places at render time, from gateway/edge.py and the route
table. A place left open, or a value given for no place, is an error here rather than a Lua
syntax error in Envoy."""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from gateway.edge import (
    ACCEPTED_ENCODINGS,
    BODY_TOO_LARGE,
    CORS_VARY,
    ERROR_STATUSES,
    GRPC_CONTENT_TYPE,
    IMPORT_PATH,
    METHOD_NOT_ALLOWED,
    NATIVE_GRPC,
    PIPE_JSON_PREFIX,
    PIPE_JSON_SUFFIX,
    PIPE_NAME_CLASS,
    PIPE_QUERY_PARAMETER,
    PIPE_QUERY_VERB,
    STATUS_METADATA_KEY,
    SUCCESS_STATUSES,
    TOKEN_HEADER,
    TOKEN_PARAMETER,
    TOKEN_SCHEME,
    UNPRINTABLE_TOKEN,
    UNSUPPORTED_ENCODING,
    Refusal,
)
from gateway.envoy.config import typed
from gateway.errors import DEFAULT_RETRY_AFTER, TINYBIRD_STATUSES, TOO_MANY_REQUESTS
from gateway.routes import RouteTable

_PLACE = re.compile(r"@([A-Z_]+)@")


@functools.cache
def _source(name: str) -> str:
    """A filter's code with its `@NAME@` places still open (`<name>.lua` beside this module)."""
    return (resources.files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


def _render(name: str, values: Mapping[str, object]) -> str:
    """`<name>.lua` with every `@NAME@` place filled from `values` (Lua source text)."""
    source = _source(name)
    places = set(_PLACE.findall(source))
    if places != set(values):
        raise ValueError(
            f"{name}.lua: places {sorted(places - set(values))} unfilled, "
            f"values {sorted(set(values) - places)} for no place"
        )
    return _PLACE.sub(lambda m: str(values[m.group(1)]), source)


def lua_string(text: str) -> str:
    """A Lua string literal for any text: bytes outside printable ASCII, quotes and backslashes
    as decimal escapes, so nothing in a route's path can end the literal early."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _lua_set(values: Iterable[object]) -> str:
    return "{ " + ", ".join(f"[{lua_string(str(value))}] = true" for value in values) + " }"


def lua_message(
    refusal: Refusal, known: Mapping[str, object] | None = None, **expressions: str
) -> str:
    """A Lua expression for the refusal's message: its words as literals, each `{field}` the
    value `known` holds for it (a setting, known at render time) or else the Lua expression
    given for it (a local variable, say)."""
    parts: list[str] = []
    literal_run = ""
    for literal, field, _spec, _conversion in string.Formatter().parse(refusal.message):
        literal_run += literal
        if field is None:
            continue
        if known is not None and field in known:
            literal_run += str(known[field])
            continue
        if literal_run:
            parts.append(lua_string(literal_run))
            literal_run = ""
        parts.append(expressions[field])
    if literal_run or not parts:
        parts.append(lua_string(literal_run))
    return " .. ".join(parts)


def _lua_pattern(text: str) -> str:
    # Lua's magic characters, escaped with %.
    return re.sub(r"([\^$()%.\[\]*+\-?])", r"%\1", text)


def first_lua() -> str:
    errors = ", ".join(
        f"[{lua_string(str(s))}] = {_lua_set(narrower)}" for s, narrower in ERROR_STATUSES.items()
    )
    tinybird = ", ".join(
        f"[{lua_string(str(envoy))}] = {lua_string(str(ours))}"
        for envoy, ours in TINYBIRD_STATUSES.items()
    )
    pipe_json = "^" + _lua_pattern(PIPE_JSON_PREFIX) + PIPE_NAME_CLASS
    return _render(
        "first",
        {
            "TOKEN": lua_string(TOKEN_PARAMETER),
            "TOKEN_HEADER": lua_string(TOKEN_HEADER),
            "TOKEN_SCHEME": lua_string(TOKEN_SCHEME),
            "GRPC": lua_string("^" + _lua_pattern(GRPC_CONTENT_TYPE)),
            "VARY": lua_string(CORS_VARY),
            "STATUS_KEY": lua_string(STATUS_METADATA_KEY),
            "STATUSES": _lua_set(SUCCESS_STATUSES),
            "ERRORS": "{ " + errors + " }",
            "TINYBIRD": "{ " + tinybird + " }",
            "TOO_MANY": lua_string(str(TOO_MANY_REQUESTS)),
            "RETRY_AFTER": lua_string(DEFAULT_RETRY_AFTER),
            "PIPE_Q": lua_string(PIPE_QUERY_PARAMETER),
            "PIPE_JSON": lua_string(pipe_json + _lua_pattern(PIPE_JSON_SUFFIX) + "$"),
            "PIPE_VERB": lua_string(PIPE_QUERY_VERB),
        },
    )


def methods_lua(table: RouteTable) -> str:
    """The 405 filter's code for one route table: the table's paths as data, matched as
    gateway/routes.py matches them (see methods.lua)."""
    rows = []
    for route in table.routes:
        template = route.template
        literals = ", ".join(f"[{i + 1}] = {lua_string(text)}" for i, text in template.literals)
        rows.append(
            f"  {{ {lua_string(route.http_method)}, {lua_string(template.verb)}, "
            f"{len(template.segments)}, {str(template.open_ended).lower()}, {{ {literals} }} }},"
        )
    return _render(
        "methods",
        {
            "GRPC": lua_string("^" + _lua_pattern(GRPC_CONTENT_TYPE)),
            "VERBS": _lua_set(sorted(table.verbs)),
            "ROUTES": "\n".join(rows),
            "STATUS": lua_string(str(METHOD_NOT_ALLOWED.envoy_status)),
            # methods.lua's locals.
            "MESSAGE": lua_message(
                METHOD_NOT_ALLOWED, method="method", path="path", methods="listed"
            ),
        },
    )


def refusals_lua(max_body_bytes: int, import_max_body_bytes: int) -> str:
    return _render(
        "refusals",
        {
            "GRPC": lua_string("^" + _lua_pattern(GRPC_CONTENT_TYPE)),
            "NATIVE_GRPC_STATUS": lua_string(str(NATIVE_GRPC.envoy_status)),
            "NATIVE_GRPC": lua_message(NATIVE_GRPC, path="path"),
            "TOKEN_HEADER": lua_string(TOKEN_HEADER),
            "UNPRINTABLE_STATUS": lua_string(str(UNPRINTABLE_TOKEN.envoy_status)),
            "UNPRINTABLE": lua_message(UNPRINTABLE_TOKEN),
            "ACCEPTED": _lua_set(sorted(ACCEPTED_ENCODINGS)),
            "ENCODING_STATUS": lua_string(str(UNSUPPORTED_ENCODING.envoy_status)),
            "ENCODING": lua_message(UNSUPPORTED_ENCODING, encoding="encoding"),
            "TOO_LARGE_STATUS": lua_string(str(BODY_TOO_LARGE.envoy_status)),
            "MAX_BODY": max_body_bytes,
            "TOO_LARGE": lua_message(BODY_TOO_LARGE, {"limit": max_body_bytes}),
            "IMPORT_PATH": lua_string(IMPORT_PATH),
            "IMPORT_MAX_BODY": import_max_body_bytes,
            "IMPORT_TOO_LARGE": lua_message(BODY_TOO_LARGE, {"limit": import_max_body_bytes}),
        },
    )


# The methods filter's code in the bootstrap: the route configuration's, on the virtual host,
# takes its place (see `render_route_config`).
NO_METHODS_LUA = "function envoy_on_request(handle) end\n"
METHODS_FILTER = "pipit.lua.methods"


def lua_filter(name: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "typed_config": typed(
            "extensions.filters.http.lua.v3.Lua", default_source_code={"inline_string": source}
        ),
    }
