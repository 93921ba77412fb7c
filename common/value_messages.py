"""How a rejected value is named in ingest's error messages: what kind of JSON value it is,
a short rendering of it, and where inside a composite value the fault sits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def shown(value: Any) -> str:
    """A value in an error message: short, whatever was sent."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ValueAt(ValueError):
    """A value inside a composite one is wrong; `where` says which (`[2]`, `['key']`,
    `.name`), so the message names it: `field 'tags[2]': …`."""

    def __init__(self, where: str, error: ValueError) -> None:
        if isinstance(error, ValueAt):
            where, reason = where + error.where, error.reason
        else:
            reason = str(error)
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
