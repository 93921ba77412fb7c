"""Injection-proofing: parameters are bound by the server, never spliced into SQL.

Every string parameter of every endpoint gets hostile payloads; the answer must equal the
answer for a harmless value that matches nothing (or be a 400 for parameters with a
fixed list of values), and every table keeps its rows. A static check keeps SQL text
from ever being built out of request data in the query code."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from endpoint_cases import DATA
from harness import TOKEN, start_suite

from common.datasources import registry
from services.query.analysis import analysis_of
from services.query.service import builtin_endpoints

pytestmark = pytest.mark.e2e

PAYLOADS = [
    "' OR '1'='1",
    "x' OR 1=1 --",
    "x'; DROP TABLE ab_test_events; --",
    "x' UNION SELECT name, name, 1, 1, 1, 1, 1 FROM system.tables --",
    "x\\' OR 1=1 #",
    "x\\",
    "x/* comment */",
    "x\u2019 OR \u20191\u2019=\u20191",  # Unicode quotes
    "x\u02bc OR 1=1",
    '" OR ""="',
    "{user_id:String}",
]
HARMLESS = "harmless_value_that_matches_nothing"
ENDPOINTS = builtin_endpoints(1024)


def _string_parameters() -> list[tuple[str, str, bool]]:
    """(endpoint, parameter, refused unless valid: a fixed list of values, or a parameter
    only the pipe's analysis reads, which checks it whole)."""
    found = []
    for endpoint in ENDPOINTS.values():
        analysed = analysis_of(endpoint.method) is not None
        for p in endpoint.parameters:
            if p.option.type in ("String", "Array(String)"):
                checked = analysed and f"{{{p.name}:" not in endpoint.sql
                found.append((endpoint.name, p.name, bool(p.option.allowed_values) or checked))
    return found


PARAMETERS = _string_parameters()


@pytest.fixture(scope="module")
async def seeded(chdb_dir):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("inject"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    for name, rows in DATA.items():
        body = b"\n".join(orjson.dumps(r) for r in rows)
        await warehouse.insert_json_rows(name, registry()[name].column_names, body)
    suite = await start_suite(warehouse)
    yield suite
    await suite.stop()


async def _get(suite, endpoint: str, params: dict[str, Any]) -> tuple[int, dict]:
    # A list goes once per item (`steps=a&steps=b`), each item whole.
    pairs = [("token", TOKEN)]
    for key, value in params.items():
        pairs.extend((key, item) for item in (value if isinstance(value, list) else [value]))
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{suite.gateway_url}/v0/pipes/{endpoint}.json", params=pairs) as r,
    ):
        return r.status, await r.json()


def _real_value(parameter: str) -> Any:
    """A value of `parameter` that matches rows, so filters on other parameters matter."""
    if parameter == "steps":  # a list of event types, no column of its own
        return ["page_view", "click"]
    for rows in DATA.values():
        for row in rows:
            if parameter in row:
                return row[parameter]
    raise KeyError(parameter)


def test_every_string_parameter_is_attacked():
    assert len(PARAMETERS) >= 10
    assert {name for name, _, _ in PARAMETERS} == {e.name for e in ENDPOINTS.values()} - {
        "user_activity_metrics",
        "get_popular_pages",
    }


@pytest.mark.parametrize(
    ("endpoint", "parameter", "fixed"), PARAMETERS, ids=[f"{e}.{p}" for e, p, _ in PARAMETERS]
)
async def test_payloads_change_nothing_but_the_filter(seeded, endpoint, parameter, fixed):
    rpc = next(e for e in ENDPOINTS.values() if e.name == endpoint)
    # Required parameters take a real value, so the payload's parameter is the only change.
    base = {p.name: _real_value(p.name) for p in rpc.parameters if p.option.required}
    # A list's payload is its last item, beside a real one.
    listed = next(p for p in rpc.parameters if p.name == parameter).field.is_repeated

    def given(value: str) -> str | list[str]:
        return ["page_view", value] if listed else value

    baseline_status, baseline = await _get(seeded, endpoint, {**base, parameter: given(HARMLESS)})
    for payload in PAYLOADS:
        status, answer = await _get(seeded, endpoint, {**base, parameter: given(payload)})
        if fixed:
            assert (status, answer["code"]) == (400, 3), payload
            assert f"parameter '{parameter}'" in answer["message"]
            continue
        assert status == baseline_status == 200, (payload, answer)
        if listed:  # the funnel names its steps: the payload comes back whole, as a name
            assert [r.pop("step_name") for r in answer["data"]][1::2] == [payload] * (
                len(answer["data"]) // 2
            )
            for row in baseline["data"]:
                row.pop("step_name", None)
        assert answer["data"] == baseline["data"], payload
    for name, rows in DATA.items():
        result = await seeded.warehouse.query(f"SELECT count() AS n FROM {name}", {})  # noqa: S608
        assert result.data[0]["n"] == len(rows), f"{name} lost rows"


def _sql_built_from_data(path: Path) -> list[str]:
    """f-strings, %-formatting and .format() calls in a module that look like SQL."""
    keywords = ("select ", "insert ", "where ", " from ", "drop ", "alter ")
    problems = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                text = node.left.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)
        ):
            text = str(node.func.value.value)
        if text and any(k in text.lower() for k in keywords):
            problems.append(f"{path.name}:{node.lineno}: {text[:60]!r}")
    return problems


def test_query_code_never_formats_sql():
    root = Path(__file__).resolve().parent.parent
    # sql_api.py is the Query API: running a request's SQL is its job. It wraps the
    # engine-normalised statement whole and is tested separately (tests/test_sql_api.py).
    # analysis/__init__.py writes the SELECT that reads an analysed answer back from the
    # response row message's declared names and types alone; the rows are bound
    # (tests/test_test_results.py reads them back through it, hostile text included).
    exempt = {root / "services" / "query" / name for name in ("sql_api.py", "analysis/__init__.py")}
    modules = [
        path
        for path in [*(root / "services" / "query").rglob("*.py"), *(root / "gateway").glob("*.py")]
        if path not in exempt
    ]
    assert modules
    problems = [p for module in modules for p in _sql_built_from_data(module)]
    assert problems == []
    # And the SQL files only take values through {name:Type} placeholders.
    for sql in (root / "services" / "query" / "sql").glob("*.sql"):
        text = sql.read_text()
        assert "{{" not in text and "%s" not in text, sql.name
