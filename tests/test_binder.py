"""The generic binder: request fields → SQL parameters (validated from the proto
options), result columns → response fields."""

from __future__ import annotations

import pytest

from common.warehouse.base import Literal, QueryResult
from pipit.query.v1 import query_service_pb2 as pb
from services.query.binder import InvalidParameter, ResultMismatch
from services.query.service import builtin_endpoints

ENDPOINTS = builtin_endpoints(max_string_length=64)


def test_every_rpc_has_an_endpoint_and_sql() -> None:
    assert len(ENDPOINTS) == 16
    for endpoint in ENDPOINTS.values():
        for parameter in endpoint.parameters:
            assert "{" + parameter.name + ":" + parameter.option.type + "}" in endpoint.sql, (
                f"{endpoint.name}.sql does not use parameter {parameter.name}"
            )


def test_defaults_fill_absent_parameters() -> None:
    params = ENDPOINTS["TestSegments"].bind(pb.TestSegmentsRequest())
    assert params == {
        "test_id": "",
        "segment": "device",
        "start_date": "1970-01-01 00:00:00",
        "end_date": "2106-02-07 06:28:15",
    }
    assert ENDPOINTS["GetPopularPages"].bind(pb.GetPopularPagesRequest())["limit"] == "10"


def test_dates_are_normalised_to_utc() -> None:
    request = pb.TestSummaryRequest(start_date="2023-06-01T02:00:00+02:00", end_date="2023-06-30")
    params = ENDPOINTS["TestSummary"].bind(request)
    assert params["start_date"] == "2023-06-01 00:00:00"
    assert params["end_date"] == "2023-06-30 00:00:00"


@pytest.mark.parametrize(
    ("rpc", "request_", "message"),
    [
        ("TestSegments", pb.TestSegmentsRequest(segment="browser"), "parameter 'segment' must be"),
        ("TestTimeseries", pb.TestTimeseriesRequest(interval="year"), "parameter 'interval'"),
        ("ActiveUsers", pb.ActiveUsersRequest(interval="2 days"), "parameter 'interval'"),
        ("TestSummary", pb.TestSummaryRequest(start_date="2023-13-01"), "'start_date'"),
        ("TestSummary", pb.TestSummaryRequest(end_date="soon"), "'end_date'"),
        (
            "TestSummary",
            pb.TestSummaryRequest(start_date="2023-06-30 00:00:00", end_date="2023-06-01 00:00:00"),
            "parameter 'end_date' (2023-06-01 00:00:00) is before 'start_date'",
        ),
        ("UserEventTimeline", pb.UserEventTimelineRequest(), "parameter 'user_id' is required"),
        ("GetSessionEvents", pb.GetSessionEventsRequest(), "parameter 'session_id' is required"),
        ("UserSessionStats", pb.UserSessionStatsRequest(limit=0), "'limit' must be between 1"),
        ("UserSessionStats", pb.UserSessionStatsRequest(limit=-5), "'limit' must be between 1"),
        ("GetPopularPages", pb.GetPopularPagesRequest(limit=10001), "and 10000, got 10001"),
        ("TestSummary", pb.TestSummaryRequest(test_id="x" * 65), "longer than 64 characters"),
        ("Funnel", pb.FunnelRequest(), "parameter 'steps' is required"),
        ("Funnel", pb.FunnelRequest(steps=["a"]), "'steps' takes 2 to 8 values, got 1"),
        ("Funnel", pb.FunnelRequest(steps=list("abcdefghi")), "takes 2 to 8 values, got 9"),
        ("Funnel", pb.FunnelRequest(steps=["a", "x" * 65]), "'steps' is longer than 64"),
        ("Funnel", pb.FunnelRequest(steps=["a", "b"], window_seconds=0), "'window_seconds'"),
        ("Funnel", pb.FunnelRequest(steps=["a", "b"], mode="strict"), "parameter 'mode'"),
        ("Retention", pb.RetentionRequest(period="year"), "parameter 'period'"),
        ("Retention", pb.RetentionRequest(source="ab_test_events"), "parameter 'source'"),
        ("PagePaths", pb.PagePathsRequest(), "parameter 'page_url' is required"),
    ],
)
def test_bad_parameters_are_named(rpc, request_, message) -> None:
    with pytest.raises(InvalidParameter) as caught:
        ENDPOINTS[rpc].bind(request_)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("steps", "literal"),
    [
        (["page_view", "click"], "['page_view','click']"),
        (["page_view,click,scroll"], "['page_view','click','scroll']"),  # Tinybird's form
        (["a'b", "c\\d", "new\nline"], "['a\\'b','c\\\\d','new\nline']"),
        (["a,b", "c"], "['a,b','c']"),  # one value per item: commas are the item's own
    ],
)
def test_a_list_binds_as_an_array_literal(steps: list[str], literal: str) -> None:
    bound = ENDPOINTS["Funnel"].bind(pb.FunnelRequest(steps=steps))["steps"]
    assert isinstance(bound, Literal)
    assert bound.text == literal


def test_result_columns_fill_fields_by_name() -> None:
    result = QueryResult(
        meta=[{"name": "page_url", "type": "String"}, {"name": "view_count", "type": "UInt64"}],
        data=[{"view_count": 3, "page_title": "Home", "page_url": "/"}],
        rows=1,
        statistics={"elapsed": 0.001, "rows_read": 10, "bytes_read": 100},
    )
    response = ENDPOINTS["GetPopularPages"].response(result)
    assert response.rows == 1
    assert (response.data[0].page_url, response.data[0].view_count) == ("/", 3)
    assert response.meta[1].type == "UInt64"
    assert response.statistics.rows_read == 10


def test_a_missing_column_is_an_endpoint_bug() -> None:
    result = QueryResult(meta=[], data=[{"page_url": "/"}], rows=1, statistics={})
    with pytest.raises(ResultMismatch, match="no column 'page_title'"):
        ENDPOINTS["GetPopularPages"].response(result)


def test_rows_that_do_not_fit_as_they_are_take_the_careful_path() -> None:
    meta = [
        {"name": "page_url", "type": "String"},
        {"name": "page_title", "type": "String"},
        {"name": "view_count", "type": "UInt64"},
    ]
    fits = [{"page_url": "/", "page_title": "Home", "view_count": 3}]
    converted = [{"page_url": "/", "page_title": 5, "view_count": 3.0}]
    endpoint = ENDPOINTS["GetPopularPages"]
    fast = endpoint.response(QueryResult(meta=meta, data=fits, rows=1, statistics={}))
    careful = endpoint.response(QueryResult(meta=meta, data=converted, rows=1, statistics={}))
    assert [(r.page_url, r.page_title, r.view_count) for r in fast.data] == [("/", "Home", 3)]
    assert [(r.page_url, r.page_title, r.view_count) for r in careful.data] == [("/", "5", 3)]
    overflow = [{"page_url": "/", "page_title": "Home", "view_count": 2**40}]
    with pytest.raises(ResultMismatch, match="overflows"):
        endpoint.response(QueryResult(meta=meta, data=overflow, rows=1, statistics={}))
