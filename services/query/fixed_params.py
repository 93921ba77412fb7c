"""A JWT's `fixed_params`: the parameters a pipe runs with whatever its caller sends (how a
multi-tenant app scopes each customer's rows, Tinybird's row-level security for JWTs).

Applied to the typed request message before the endpoint binds it, so every way of calling a
pipe (its typed RPC, the gateways' JSON, any generic pipe RPC that builds the same message)
gets the same override, and the value is then checked and bound like any other parameter:
never spliced. A fixed parameter the pipe does not take is refused rather than ignored: its
issuer meant rows to be filtered, and a pipe that cannot filter them must answer nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.tokens import Principal


class FixedParamRefused(Exception):  # noqa: N818 - a refusal, not a failure
    """The pipe cannot run with the JWT's fixed parameters; the message says why."""


def _json_value(field: FieldDescriptor, value: Any) -> Any:
    """`value` (a string, number or boolean from the JWT) as proto3 JSON for `field`, the
    way the gateways read a query parameter: text for text fields, the value for others."""
    if field.type == FieldDescriptor.TYPE_STRING:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return [text] if field.is_repeated else text
    return [value] if field.is_repeated else value


def apply_fixed_params(request: Message, principal: Principal | None, pipe: str) -> None:
    """Overwrites `request`'s fields with the fixed parameters `principal` holds for `pipe`
    (none for static tokens). Raises FixedParamRefused."""
    fixed: Mapping[str, Any] = principal.fixed_params.get(pipe, {}) if principal else {}
    fields = request.DESCRIPTOR.fields_by_name
    for name, value in fixed.items():
        field = fields.get(name)
        if field is None or field.message_type is not None:
            raise FixedParamRefused(
                f"the token fixes parameter '{name}', which pipe '{pipe}' does not take"
            )
        request.ClearField(name)
        try:
            json_format.ParseDict({name: _json_value(field, value)}, request)
        except json_format.ParseError:
            raise FixedParamRefused(
                f"the token fixes parameter '{name}' to a value pipe '{pipe}' cannot take"
            ) from None
