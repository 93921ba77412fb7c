"""The Lua filters Envoy runs where no built-in filter does what our gateway does. Their code
is in the `.lua` files beside this module; the values both gateways share (parameter names,
statuses, messages, the route table) are filled into their `@NAME@` places at render time, from
the same constants gateway/app.py, gateway/upstream_metadata.py, gateway/errors.py and
gateway/body.py use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from gateway.app import (
    NO_ROUTE,
    PIPE_QUERY_PARAMETER,
    PIPE_QUERY_VERB,
    TOKEN_PARAMETER,
    UNPRINTABLE_TOKEN,
)
from gateway.body import ACCEPTED_ENCODINGS, too_large, unsupported_encoding
from gateway.envoy.config import IMPORT_PATH, typed
from gateway.errors import (
    DEFAULT_RETRY_AFTER,
    METHOD_NOT_ALLOWED,
    TINYBIRD_STATUSES,
    method_not_allowed_message,
)
from gateway.routes import RouteTable
from gateway.upstream_metadata import ERROR_STATUSES, STATUS_METADATA_KEY, SUCCESS_STATUSES


@functools.cache
def _source(name: str) -> str:
    """A filter's code with its `@NAME@` places still open (`<name>.lua` beside this module)."""
    return (resources.files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


def _lua_set(values: Sequence[object]) -> str:
    return "{ " + ", ".join(f'["{value}"] = true' for value in values) + " }"


def first_lua() -> str:
    errors = ", ".join(f'["{s}"] = {_lua_set(narrower)}' for s, narrower in ERROR_STATUSES.items())
    tinybird = ", ".join(f'["{envoy}"] = "{ours}"' for envoy, ours in TINYBIRD_STATUSES.items())
    return (
        _source("first")
        .replace("@TOKEN@", TOKEN_PARAMETER)
        .replace("@STATUS_KEY@", STATUS_METADATA_KEY)
        .replace("@STATUSES@", _lua_set(SUCCESS_STATUSES))
        .replace("@ERRORS@", "{ " + errors + " }")
        .replace("@TINYBIRD@", "{ " + tinybird + " }")
        .replace("@RETRY_AFTER@", DEFAULT_RETRY_AFTER)
        .replace("@PIPE_Q@", PIPE_QUERY_PARAMETER)
        .replace("@PIPE_JSON@", _PIPE_JSON_LUA)
        .replace("@PIPE_VERB@", PIPE_QUERY_VERB)
    )


# gateway/app.py's PIPE_JSON_PATH as a Lua pattern.
_PIPE_JSON_LUA = "^/v0/pipes/[^/:]+%.json$"


def lua_string(text: str) -> str:
    """A Lua string literal for any text: bytes outside printable ASCII, quotes and backslashes
    as decimal escapes, so nothing in a route's path can end the literal early."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def methods_lua(table: RouteTable) -> str:
    """The 405 filter's code for one route table: the table's paths as data, matched as
    gateway/routes.py matches them (see _METHODS_LUA)."""
    rows = []
    for route in table.routes:
        template = route.template
        literals = ", ".join(f"[{i + 1}] = {lua_string(text)}" for i, text in template.literals)
        rows.append(
            f"  {{ {lua_string(route.http_method)}, {lua_string(template.verb)}, "
            f"{len(template.segments)}, {str(template.open_ended).lower()}, {{ {literals} }} }},"
        )
    verbs = ", ".join(f"[{lua_string(verb)}] = true" for verb in sorted(table.verbs))
    before, middle, listed_before, listed_after = _method_message_parts()
    message = " .. ".join(
        (
            lua_string(before),
            "method",
            lua_string(middle),
            "path",
            lua_string(listed_before),
            "listed",
            lua_string(listed_after),
        )
    )
    return (
        _source("methods")
        .replace("@VERBS@", "{ " + verbs + " }")
        .replace("@ROUTES@", "\n".join(rows))
        .replace("@STATUS@", str(METHOD_NOT_ALLOWED))
        .replace("@MESSAGE@", message)
    )


def _method_message_parts() -> tuple[str, str, str, str]:
    # gateway/errors.py's wording, cut where the method, the path and the methods go.
    text = method_not_allowed_message("\0", "\1", "\2")
    before, _, rest = text.partition("\0")
    middle, _, rest = rest.partition("\1")
    listed_before, _, listed_after = rest.partition("\2")
    return before, middle, listed_before, listed_after


def refusals_lua(max_body_bytes: int, import_max_body_bytes: int) -> str:
    accepted = ", ".join(f'["{e}"] = true' for e in sorted(ACCEPTED_ENCODINGS))
    before, _, after = unsupported_encoding("\0").message.partition("\0")
    no_route_before, _, no_route_after = NO_ROUTE.partition("{}")
    return (
        _source("refusals")
        .replace("@ACCEPTED@", accepted)
        .replace("@NO_ROUTE_BEFORE@", no_route_before)
        .replace("@NO_ROUTE_AFTER@", no_route_after)
        .replace("@UNPRINTABLE@", UNPRINTABLE_TOKEN)
        .replace("@ENCODING_BEFORE@", before)
        .replace("@ENCODING_AFTER@", after)
        .replace("@MAX_BODY@", str(max_body_bytes))
        .replace("@TOO_LARGE@", too_large(max_body_bytes).message)
        .replace("@IMPORT_PATH@", IMPORT_PATH)
        .replace("@IMPORT_MAX_BODY@", str(import_max_body_bytes))
        .replace("@IMPORT_TOO_LARGE@", too_large(import_max_body_bytes).message)
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
