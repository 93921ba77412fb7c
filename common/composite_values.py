"""The converters of composite ClickHouse values (Array, Map, Tuple, JSON), built around
their elements' converters; a fault inside names its place (`[2]`, `['key']`, `.name`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from common.value_messages import ValueAt, json_type, shown

# A function from a present JSON value to what is stored; ValueError says why it cannot be.
Converter = Callable[[Any], Any]


def array_of(element: Converter) -> Converter:
    def convert(value: Any) -> list[Any]:
        if type(value) is not list:
            raise ValueError(f"expected an array, got {json_type(value)}")
        try:
            return [element(item) for item in value]
        except ValueError:
            pass
        for index, item in enumerate(value):  # again, to say which element
            try:
                element(item)
            except ValueError as exc:
                raise ValueAt(f"[{index}]", exc) from None
        raise AssertionError("an element failed once but not twice")

    return convert


def map_of(key: Converter, value_of: Converter) -> Converter:
    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise ValueError(f"expected an object, got {json_type(value)}")
        out: dict[str, Any] = {}
        for name, item in value.items():
            try:
                stored = key(name)
            except ValueError as exc:
                raise ValueAt(f"[{shown(name)}]", exc) from None
            if stored in out:
                raise ValueAt(f"[{shown(name)}]", ValueError(f"the same key as {shown(stored)}"))
            try:
                out[stored] = value_of(item)
            except ValueError as exc:
                raise ValueAt(f"[{shown(name)}]", exc) from None
        return out

    return convert


def tuple_of(elements: list[tuple[str | None, Converter, bool]]) -> Converter:
    named = all(name is not None for name, _, _ in elements)
    size = len(elements)
    expected = f"an array of {size} elements" + (" or an object" if named else "")

    def convert(value: Any) -> list[Any] | dict[str, Any]:
        if type(value) is list:
            if len(value) != size:
                raise ValueError(f"expected {expected}, got an array of {len(value)}")
            items = []
            for index, ((_, element, _), item) in enumerate(zip(elements, value, strict=True)):
                try:
                    items.append(element(item))
                except ValueError as exc:
                    raise ValueAt(f"[{index}]", exc) from None
            if named:
                return {name: item for (name, _, _), item in zip(elements, items, strict=True)}
            return items
        if named and type(value) is dict:
            out: dict[str, Any] = {}
            for name, element, nullable in elements:
                assert name is not None
                if name not in value and not nullable:
                    raise ValueError(f"missing tuple element '{name}'")
                try:
                    out[name] = element(value.get(name))
                except ValueError as exc:
                    raise ValueAt(f".{name}", exc) from None
            return out
        raise ValueError(f"expected {expected}, got {json_type(value)}")

    return convert


def _json_leaf_paths(
    obj: dict[str, Any], prefix: tuple[str, ...], seen: set[tuple[str, ...]]
) -> None:
    for key, value in obj.items():
        path = prefix + tuple(key.split("."))
        if type(value) is dict:
            _json_leaf_paths(value, path, seen)
            continue
        if path in seen:
            raise ValueError(f"the path {'.'.join(path)!r} appears twice (keys are split at dots)")
        seen.add(path)
        _json_objects_in(value)


def _json_objects_in(value: Any) -> None:
    """Objects inside arrays are JSON values of their own: each is checked alone."""
    if type(value) is list:
        for item in value:
            if type(item) is dict:
                _json_leaf_paths(item, (), set())
            else:
                _json_objects_in(item)


def json_object(max_bytes: int) -> Converter:
    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise ValueError(f"expected a JSON object, got {json_type(value)}")
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # nesting deeper than orjson prints
            raise ValueError(f"cannot store this JSON value: {exc}") from None
        if size > max_bytes:
            raise ValueError(f"longer than the {max_bytes}-byte limit for a field")
        # ClickHouse reads `{"a.b": 1, "a": {"b": 2}}` as one path twice and refuses the
        # whole insert; refused here, it is this event's reason instead.
        _json_leaf_paths(value, (), set())
        return value

    return convert
