"""The journeys' definitions pinned down: the funnel reference's answers for the
hand-written users, worked out by hand; and the funnel pipe's users per step against
ClickHouse's own windowFunnel() over the same rows (the semantics the pipe promises)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import expected
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import DATA
from journey_cases import FUNNEL_STEPS, RANGE

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse
from services.query.service import builtin_endpoints

FUNNEL = next(e for e in builtin_endpoints(1024).values() if e.name == "funnel")


def _level(user: str, mode: str, window: int) -> tuple[int, list[int]]:
    rows = [e for e in DATA["user_events"] if e["user_id"] == user]
    rows.sort(key=lambda e: e["timestamp"])
    start = expected._epoch(expected._parse_time(rows[0]["timestamp"]))
    matches = []
    for e in rows:
        at = expected._epoch(expected._parse_time(e["timestamp"])) - start
        positions = [i + 1 for i, s in enumerate(FUNNEL_STEPS) if s == e["event_type"]]
        if positions:
            matches.extend((at, p) for p in positions)
        elif mode == "strict_order":
            matches.append((at, 0))
    path = expected._funnel_path(sorted(matches), len(FUNNEL_STEPS), window, mode)
    return len(path), path


# (user, mode, window) -> (level, the path's seconds after the user's first event), by hand
# from the scripts in journey_cases._EDGE_USERS and the rules in expected._funnel_path.
HAND = {
    ("jr_skip", "default", 3600): (1, [0]),  # purchase without signup
    # the later page_view restarts; the later signup replaces the chain held for step 2
    ("jr_repeat", "default", 3600): (3, [100, 300, 400]),
    ("jr_repeat", "strict_deduplication", 3600): (2, [100, 200]),  # signup twice ends it
    ("jr_late", "default", 3600): (2, [0, 3000]),  # purchase 4000 s after the start
    ("jr_late", "default", 5000): (3, [0, 3000, 4000]),
    ("jr_restart", "default", 3600): (3, [5000, 5100, 5250]),  # the second chain completes
    ("jr_between", "default", 3600): (3, [50, 90, 130]),  # the first signup precedes step 1
    ("jr_between", "strict_order", 3600): (1, [50]),  # the click between ends it
}


@pytest.mark.parametrize("case", sorted(HAND), ids=["-".join(map(str, c)) for c in sorted(HAND)])
def test_funnel_reference_on_hand_written_users(case: tuple[str, str, int]) -> None:
    assert _level(*case) == HAND[case]


@pytest.fixture(scope="module")
async def warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    wh = EmbeddedWarehouse(chdb_dir, unique_database("journeys"))
    await wh.open()
    await wh.ensure_schema(list(registry().values()))
    for name in ("user_events", "clickstream_events"):
        body = b"\n".join(orjson.dumps(row) for row in DATA[name])
        await wh.insert_json_rows(name, registry()[name].column_names, body)
    yield wh
    await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
    await wh.close()


WINDOW_FUNNEL_CASES = [
    (FUNNEL_STEPS, "default", 3600, RANGE),
    (FUNNEL_STEPS, "strict_order", 3600, RANGE),
    (FUNNEL_STEPS, "strict_deduplication", 3600, RANGE),
    (["page_view", "click", "page_view", "purchase"], "default", 86400, RANGE),
    (["page_view", "click", "scroll", "click"], "strict_deduplication", 600, {}),
    (["page_view", "click", "scroll"], "strict_order", 600, {}),
]


@pytest.mark.parametrize("case", WINDOW_FUNNEL_CASES, ids=lambda c: f"{c[1]}-{len(c[0])}")
async def test_funnel_users_per_step_are_window_funnels(warehouse: EmbeddedWarehouse, case) -> None:
    steps, mode, window, dates = case
    request = FUNNEL.request_class(steps=steps, mode=mode, window_seconds=window, **dates)
    sql, params = FUNNEL.prepare(request)
    answer = (await warehouse.query(sql, params)).data
    # windowFunnel's options are literals; the test's own fixed values, never a request's.
    options = "" if mode == "default" else f", '{mode}'"
    conditions = ", ".join(f"event_type = {{s{i}:String}}" for i in range(len(steps)))
    funnel = f"windowFunnel({window}{options})(timestamp, {conditions})"
    levels = await warehouse.query(
        f"SELECT {funnel} AS level FROM user_events "  # noqa: S608 - the test's own text
        "WHERE timestamp >= {start:DateTime} AND timestamp <= {end:DateTime} GROUP BY user_id",
        {
            **{f"s{i}": step for i, step in enumerate(steps)},
            "start": dates.get("start_date", expected.DEFAULT_START_DATE),
            "end": dates.get("end_date", expected.DEFAULT_END_DATE),
        },
    )
    reached = Counter(row["level"] for row in levels.data)
    want = [sum(n for level, n in reached.items() if level >= k) for k in range(1, len(steps) + 1)]
    assert [row["users"] for row in answer] == want
    assert want[0] > want[-1] > 0 or mode == "strict_order"  # a funnel, not all or nothing
