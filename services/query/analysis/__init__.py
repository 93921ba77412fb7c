"""A pipe's analysis: Python that finishes a pipe's answer from its SQL's rows, for math the
engine has no function for (a Beta integral, a chi-square tail with k - 1 degrees of
freedom). A query RPC declares one with its `pipit.clickhouse.v1.analysis` option, and the
query service applies it wherever the pipe is read — its typed RPC, every pipe format and
`q=`, the Query API reading the pipe as a table — so a pipe is one answer whichever way it
is asked for.

An analysis is a module of this package named for it (and listed in NAMES: a declaration
only picks one of these, never loads code by a name it was given), with:

- `check(params)`: refuses the analysis's own parameters before any SQL runs, raising
  InvalidParameter naming the field;
- `apply(rows, params)`: the response's rows from the SQL's, each holding every field of
  the response's row message, every number finite (JSON has no NaN).

`params` are the request's values as the binder binds them (text, defaults applied)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from common.warehouse.base import QueryResult
from pipit.clickhouse.v1 import options_pb2

NAMES = frozenset({"test_results"})

Rows = Sequence[Mapping[str, Any]]
Params = Mapping[str, str]


@dataclass(frozen=True)
class Analysis:
    """A declared analysis, bound to the row message of the pipe that declares it."""

    name: str
    row: Descriptor
    check: Callable[[Params], None]
    apply: Callable[[Rows, Params], list[dict[str, Any]]]

    @cached_property
    def meta(self) -> list[dict[str, str]]:
        """The answer's columns: the row message's fields and their declared types."""
        return [
            {"name": f.name, "type": f.GetOptions().Extensions[options_pb2.column].type}
            for f in self.row.fields
        ]

    async def run(self, result: QueryResult, params: Params) -> QueryResult:
        """The pipe's answer from its SQL's: the analysis's rows, the SQL's statistics.
        The math runs on a worker thread: scipy's integrals would hold the event loop."""
        rows = await asyncio.to_thread(self.apply, result.data, params)
        return QueryResult(meta=self.meta, data=rows, rows=len(rows), statistics=result.statistics)

    @cached_property
    def _source_sql(self) -> str:
        # Every name and type here comes from the row message, none from a request; the
        # rows themselves are bound. JSONExtract, not the format() table function: the
        # Query API's read-only lane allows no table functions.
        structure = ", ".join(f"`{c['name']}` {c['type']}" for c in self.meta)
        columns = ",\n    ".join(
            f"tupleElement(row, '{c['name']}') AS `{c['name']}`" for c in self.meta
        )
        return (
            f"SELECT\n    {columns}\n"
            f"FROM (SELECT arrayJoin(JSONExtract({{{self.rows_parameter}:String}}, "
            f"'Array(Tuple({structure}))')) AS row)"
        )

    @property
    def rows_parameter(self) -> str:
        """The placeholder that carries the analysed rows in `source`'s SQL."""
        return f"analysed_{self.name}"

    def source(self, result: QueryResult) -> tuple[str, dict[str, str]]:
        """SQL that reads an analysed answer's rows back (in their order), with its
        parameters: what the engine formats (`.csv`, `.parquet`, …) and what `q=` or the
        Query API read as the pipe's table."""
        return self._source_sql, {self.rows_parameter: orjson.dumps(result.data).decode()}


@cache
def analysis_of(method: MethodDescriptor) -> Analysis | None:
    """The analysis a query RPC declares, or None. Raises ValueError for a name that is no
    analysis (a project that declares one does not deploy)."""
    name = method.GetOptions().Extensions[options_pb2.analysis]
    if not name:
        return None
    if name not in NAMES:
        known = ", ".join(sorted(NAMES))
        raise ValueError(f"{method.full_name} declares analysis '{name}'; there are: {known}")
    module = importlib.import_module(f"{__name__}.{name}")
    row = method.output_type.fields_by_name["data"].message_type
    return Analysis(name=name, row=row, check=module.check, apply=module.apply)
