"""Tinybird's datafiles (`*.datasource`, `*.pipe`) read into the project model: the
tutorials' own files exactly as the tutorials print them, every syntax variant Tinybird
writes, and every problem reported at its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipit.project.datafiles import MAX_DATAFILE_BYTES, read_datasource, read_folder, read_pipe
from pipit.project.model import ColumnSpec, ProjectError

TUTORIALS = Path(__file__).parent / "projects" / "tutorials"


def _columns(*specs: tuple[str, str]) -> list[tuple[str, str, str]]:
    return [(name, type_, f"$.{name}") for name, type_ in specs]


# The tutorials' schemas as the seeds print them: (name, type, json path).
TUTORIAL_SCHEMAS = {
    "ab_test_events": _columns(
        ("timestamp", "DateTime"),
        ("user_id", "String"),
        ("test_id", "String"),
        ("variant", "String"),
        ("event_type", "String"),
        ("conversion", "UInt8"),
        ("revenue", "Float64"),
        ("session_id", "String"),
        ("device", "String"),
        ("country", "String"),
    ),
    "user_events": _columns(
        ("event_id", "String"),
        ("user_id", "String"),
        ("session_id", "String"),
        ("event_type", "String"),
        ("page_url", "String"),
        ("referrer", "String"),
        ("device_type", "String"),
        ("browser", "String"),
        ("country", "String"),
        ("city", "String"),
        ("properties", "String"),
        ("timestamp", "DateTime"),
    ),
    "app_events": _columns(
        ("event_id", "String"),
        ("user_id", "String"),
        ("session_id", "String"),
        ("event_type", "String"),
        ("feature", "String"),
        ("timestamp", "DateTime"),
        ("device_type", "String"),
        ("browser", "String"),
        ("os", "String"),
        ("location", "String"),
        ("metadata", "String"),
    ),
    "clickstream_events": _columns(
        ("event_id", "String"),
        ("user_id", "String"),
        ("session_id", "String"),
        ("event_type", "String"),
        ("page_url", "String"),
        ("page_title", "String"),
        ("referrer", "String"),
        ("timestamp", "DateTime"),
        ("device_type", "String"),
        ("browser", "String"),
        ("properties", "String"),
    ),
}
TUTORIAL_KEYS = {
    "ab_test_events": (
        "Collects A/B test events from users, including test ID, variant, conversions, and "
        "related metrics",
        "timestamp, test_id, variant, user_id",
    ),
    "user_events": (
        "Tracks user events such as page views, clicks, and other interactions",
        "timestamp, user_id, event_type",
    ),
    "app_events": (
        "Captures all user events from SaaS applications",
        "timestamp, user_id, event_type",
    ),
    "clickstream_events": (
        "Raw clickstream events from the website/application",
        "timestamp, user_id, session_id",
    ),
}

TEST_SUMMARY_SQL = """\
SELECT 
    test_id,
    variant,
    count(DISTINCT user_id) AS users,
    countIf(conversion = 1) AS conversions,
    round(countIf(conversion = 1) / count(DISTINCT user_id), 4) AS conversion_rate,
    sum(revenue) AS total_revenue,
    round(sum(revenue) / count(DISTINCT user_id), 4) AS revenue_per_user
FROM ab_test_events
WHERE 1=1
    AND test_id = {{String(test_id, '')}}
    AND timestamp >= {{DateTime(start_date, '2023-01-01 00:00:00')}}
    AND timestamp <= {{DateTime(end_date, '2023-12-31 23:59:59')}}
GROUP BY test_id, variant
ORDER BY test_id, variant"""  # noqa: W291 - the tutorial's `SELECT ` as printed

SESSION_INSIGHTS_SQL = """\
SELECT
session_id,
user_id,
min(timestamp) AS session_start,
max(timestamp) AS session_end,
dateDiff('second', min(timestamp), max(timestamp)) AS session_duration_seconds,
count() AS event_count,
device_type,
browser,
os,
location
FROM app_events
WHERE timestamp BETWEEN {{DateTime(start_date, '2023-01-01 00:00:00')}} AND \
{{DateTime(end_date, '2024-12-31 23:59:59')}}
AND user_id = {{String(user_id)}}
GROUP BY session_id, user_id, device_type, browser, os, location
HAVING session_duration_seconds > 0
ORDER BY session_start DESC
LIMIT {{Int(limit, 100)}}"""

# (description, node, SQL, line of the SQL's first line)
TUTORIAL_PIPES = {
    "test_summary": (
        "Provides summary metrics for each A/B test, including users, conversions, "
        "conversion rate, and revenue",
        "test_summary_node",
        TEST_SUMMARY_SQL,
        6,
    ),
    "session_insights": (
        "Provides insights on user sessions including duration and engagement metrics",
        "session_insights_node",
        SESSION_INSIGHTS_SQL,
        5,
    ),
    "get_user_journey": (
        "Retrieve the journey of a specific user across sessions",
        "get_user_journey_node",
        "SELECT user_id, session_id, timestamp, event_type, page_url, page_title, referrer, "
        "device_type, browser\n"
        "FROM clickstream_events\n"
        "WHERE user_id = {{String(user_id, '')}}\n"
        "AND timestamp >= {{DateTime(start_date, '2023-01-01 00:00:00')}}\n"
        "AND timestamp <= {{DateTime(end_date, '2023-12-31 23:59:59')}}\n"
        "ORDER BY timestamp ASC",
        6,
    ),
    "get_session_events": (
        "Retrieve all events for a specific session",
        "get_session_events_node",
        "SELECT event_id, user_id, timestamp, event_type, page_url, page_title, referrer, "
        "device_type, browser, properties\n"
        "FROM clickstream_events\n"
        "WHERE session_id = {{String(session_id, '')}}\n"
        "ORDER BY timestamp ASC",
        6,
    ),
    "get_popular_pages": (
        "Get the most popular pages based on pageview count",
        "get_popular_pages_node",
        "SELECT page_url, page_title, count() AS view_count\n"
        "FROM clickstream_events\n"
        "WHERE event_type = 'pageview'\n"
        "AND timestamp >= {{DateTime(start_date, '2023-01-01 00:00:00')}}\n"
        "AND timestamp <= {{DateTime(end_date, '2023-12-31 23:59:59')}}\n"
        "GROUP BY page_url, page_title\n"
        "ORDER BY view_count DESC\n"
        "LIMIT {{Int32(limit, 10)}}",
        6,
    ),
}


def _problems(text: str, kind: str = "datasource") -> list[tuple[int, str]]:
    """(line, message) of every problem in one file, as read_folder reports them."""
    reader = read_datasource if kind == "datasource" else read_pipe
    try:
        reader(text, file=f"x.{kind}", name="x")
    except ProjectError:
        pass
    else:
        return []
    return [(p.line, p.message) for p in _folder_problems(text, kind)]


def _folder_problems(text: str, kind: str) -> list[ProjectError]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, f"x.{kind}").write_text(text)
        return list(read_folder(Path(folder)).problems)


def _error(text: str, kind: str = "datasource") -> ProjectError:
    reader = read_datasource if kind == "datasource" else read_pipe
    with pytest.raises(ProjectError) as caught:
        reader(textwrap.dedent(text), file=f"dir/x.{kind}", name="x")
    return caught.value


# ------------------------------------------------------------------------- the tutorials


def test_the_tutorials_folder_reads_without_a_problem() -> None:
    spec = read_folder(TUTORIALS)
    assert spec.problems == ()
    assert [d.name for d in spec.datasources] == [
        "ab_test_events",
        "app_events",
        "clickstream_events",
        "user_events",
    ]
    assert [p.name for p in spec.pipes] == [
        "get_popular_pages",
        "get_session_events",
        "get_user_journey",
        "session_insights",
        "test_summary",
    ]


@pytest.mark.parametrize("name", sorted(TUTORIAL_SCHEMAS))
def test_each_tutorial_datasource_has_exactly_the_seeds_schema_and_keys(name: str) -> None:
    spec = {d.name: d for d in read_folder(TUTORIALS).datasources}[name]
    assert [(c.name, c.type, c.json_path) for c in spec.columns] == TUTORIAL_SCHEMAS[name]
    assert all(c.default == "" and c.codec == "" for c in spec.columns)
    description, sorting_key = TUTORIAL_KEYS[name]
    assert spec.description == description
    assert spec.engine == "MergeTree"
    assert spec.engine_arguments == ""
    assert spec.partition_key == "toYYYYMM(timestamp)"
    assert spec.sorting_key == sorting_key
    assert (spec.primary_key, spec.ttl, spec.settings, spec.indexes) == ("", "", "", ())
    assert spec.file == (TUTORIALS / "datasources" / f"{name}.datasource").as_posix()
    # Each column's line is the line it is written on.
    lines = Path(spec.file).read_text().splitlines()
    for column in spec.columns:
        assert f"`{column.name}`" in lines[column.line - 1]


@pytest.mark.parametrize("name", sorted(TUTORIAL_PIPES))
def test_each_tutorial_pipe_has_exactly_the_seeds_node_and_sql(name: str) -> None:
    pipe = {p.name: p for p in read_folder(TUTORIALS).pipes}[name]
    description, node_name, sql, first_line = TUTORIAL_PIPES[name]
    assert pipe.description == description
    assert [n.name for n in pipe.nodes] == [node_name]
    node = pipe.nodes[0]
    assert pipe.endpoint is node
    assert node.type == "endpoint"
    assert node.sql == sql
    assert "%" not in node.sql.splitlines()[0]  # Tinybird's template marker is gone
    assert node.line == first_line
    # SQL line k is file line node.line + k - 1.
    file_lines = Path(node.file).read_text().splitlines()
    for k, sql_line in enumerate(node.sql.splitlines(), start=1):
        assert file_lines[node.line + k - 2].strip() == sql_line.strip()


# ------------------------------------------------------------------------- .datasource


def test_indented_unindented_and_one_line_descriptions() -> None:
    schema = "SCHEMA >\n    `a` String\n"
    indented = read_datasource(
        "DESCRIPTION >\n    First line\n      kept indented\n\n" + schema, file="f", name="x"
    )
    assert indented.description == "First line\n  kept indented"
    unindented = read_datasource(
        "DESCRIPTION >\nFirst line\nsecond line\n" + schema, file="f", name="x"
    )
    assert unindented.description == "First line\nsecond line"
    assert read_datasource("DESCRIPTION One line\n" + schema, file="f", name="x").description == (
        "One line"
    )
    quoted = read_datasource('DESCRIPTION "Quoted one"\n' + schema, file="f", name="x")
    assert quoted.description == "Quoted one"
    same_line = read_datasource("DESCRIPTION > On the same line\n" + schema, file="f", name="x")
    assert same_line.description == "On the same line"


COMPLEX_SCHEMA = """\
SCHEMA >
    `timestamp` DateTime64(3, 'UTC') `json:$.ts`,
    bare_name String,
    `nullable` Nullable(Int32) `json:$.n`,
    `low` LowCardinality(Nullable(String)) `json:$.low`,
    `tags` Array(String) `json:$.tags[:]`,
    `price` Decimal(10, 2) `json:$.money.price` DEFAULT 0,
    `attrs` Map(String, Array(Int32)),
    `status` Enum8('a,b' = 1, 'c)' = 2),
    `pair` Tuple(a String, b Int32),
    `label` String `json:$.label` DEFAULT concat('x', toString(1)),
    `compressed` String CODEC(ZSTD(1)),
    `both` String DEFAULT 'n/a' CODEC(Delta, ZSTD) `json:$.both`,
    `weird name` UInt64 `json:$.['weird name']`,
"""


def test_schema_takes_any_clickhouse_type_json_paths_defaults_codecs_and_a_trailing_comma() -> None:
    spec = read_datasource(COMPLEX_SCHEMA, file="f", name="x")
    got = [(c.name, c.type, c.json_path, c.default, c.codec, c.line) for c in spec.columns]
    assert got == [
        ("timestamp", "DateTime64(3, 'UTC')", "$.ts", "", "", 2),
        ("bare_name", "String", "$.bare_name", "", "", 3),
        ("nullable", "Nullable(Int32)", "$.n", "", "", 4),
        ("low", "LowCardinality(Nullable(String))", "$.low", "", "", 5),
        ("tags", "Array(String)", "$.tags[:]", "", "", 6),
        ("price", "Decimal(10, 2)", "$.money.price", "0", "", 7),
        ("attrs", "Map(String, Array(Int32))", "$.attrs", "", "", 8),
        ("status", "Enum8('a,b' = 1, 'c)' = 2)", "$.status", "", "", 9),
        ("pair", "Tuple(a String, b Int32)", "$.pair", "", "", 10),
        ("label", "String", "$.label", "concat('x', toString(1))", "", 11),
        ("compressed", "String", "$.compressed", "", "ZSTD(1)", 12),
        ("both", "String", "$.both", "'n/a'", "Delta, ZSTD", 13),
        ("weird name", "UInt64", "$.['weird name']", "", "", 14),
    ]


def test_a_column_may_span_lines_and_unindented_schema_reads_the_same() -> None:
    spec = read_datasource(
        "SCHEMA >\n`a` String,\n`b` Int32\n    DEFAULT 1,\n`c` Date\nENGINE MergeTree\n",
        file="f",
        name="x",
    )
    assert [(c.name, c.type, c.default, c.line) for c in spec.columns] == [
        ("a", "String", "", 2),
        ("b", "Int32", "1", 3),
        ("c", "Date", "", 5),
    ]


def test_engine_keys_with_and_without_quotes() -> None:
    spec = read_datasource(
        textwrap.dedent(
            """\
            SCHEMA >
                `ts` DateTime,
                `id` String
            ENGINE MergeTree
            ENGINE_PARTITION_KEY toYYYYMM(ts)
            ENGINE_SORTING_KEY "id, ts"
            ENGINE_PRIMARY_KEY 'id'
            ENGINE_TTL "ts + toIntervalDay(90)"
            ENGINE_SETTINGS "index_granularity = 8192"
            """
        ),
        file="f",
        name="x",
    )
    assert (spec.engine, spec.partition_key, spec.sorting_key, spec.primary_key) == (
        "MergeTree",
        "toYYYYMM(ts)",
        "id, ts",
        "id",
    )
    assert spec.ttl == "ts + toIntervalDay(90)"
    assert spec.settings == "index_granularity = 8192"


@pytest.mark.parametrize(
    ("engine_lines", "engine", "arguments"),
    [
        (
            ['ENGINE "ReplacingMergeTree"', 'ENGINE_VER "updated_at"'],
            "ReplacingMergeTree",
            "updated_at",
        ),
        (
            ["ENGINE ReplacingMergeTree", "ENGINE_IS_DELETED deleted", "ENGINE_VER updated_at"],
            "ReplacingMergeTree",
            "updated_at, deleted",
        ),
        (["ENGINE CollapsingMergeTree", "ENGINE_SIGN sign"], "CollapsingMergeTree", "sign"),
        (
            ['ENGINE "VersionedCollapsingMergeTree"', "ENGINE_VER v", "ENGINE_SIGN sign"],
            "VersionedCollapsingMergeTree",
            "sign, v",
        ),
        (["ENGINE SummingMergeTree", "ENGINE_SUMMING_COLUMNS n"], "SummingMergeTree", "n"),
        (['ENGINE "ReplacingMergeTree(updated_at)"'], "ReplacingMergeTree", "updated_at"),
        (["ENGINE AggregatingMergeTree"], "AggregatingMergeTree", ""),
    ],
)
def test_engine_arguments_go_in_the_order_each_engine_takes_them(
    engine_lines: list[str], engine: str, arguments: str
) -> None:
    text = "SCHEMA >\n    `n` Int8\n" + "\n".join(engine_lines) + "\n"
    spec = read_datasource(text, file="f", name="x")
    assert (spec.engine, spec.engine_arguments) == (engine, arguments)


def test_indexes_and_token_lines() -> None:
    spec = read_datasource(
        textwrap.dedent(
            """\
            SCHEMA >
                `id` String,
                `n` Int32

            INDEXES >
                id_bloom id TYPE bloom_filter(0.01) GRANULARITY 4
                INDEX n_minmax n * 2 TYPE minmax GRANULARITY 1,

            TOKEN "dashboard" READ
            TOKEN ingest APPEND
            """
        ),
        file="f",
        name="x",
    )
    assert spec.indexes == (
        "id_bloom id TYPE bloom_filter(0.01) GRANULARITY 4",
        "n_minmax n * 2 TYPE minmax GRANULARITY 1",
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("SCHEMA >\n    `a` String\nKAFKA_TOPIC t\n", 3, "KAFKA_TOPIC is not supported"),
        ("SCHEMA >\n    `a` String\nWHATEVER x\n", 3, "WHATEVER is not supported"),
        ("SCHEMA >\n    `a` String\nlowercase line\n", 3, "expected a datafile keyword"),
        ("SCHEMA >\n    `a` String\n    `b` Int32\n", 2, "missing comma"),
        ("SCHEMA >\n    `a` String,\n    `b` Nullable(Int32\n", 3, "unbalanced parentheses"),
        ("SCHEMA >\n    `a` String,\n    `a` Int32\n", 3, "'a' declared twice"),
        ("SCHEMA >\n    `a`\n", 2, "expected `name` Type"),
        ("SCHEMA >\n    `a` String,,\n    `b` Int32\n", 2, "empty column"),
        ("SCHEMA >\n    `a` String `json:a`\n", 2, "must start with $"),
        ("SCHEMA >\n    `a` String DEFAULT\n", 2, "DEFAULT needs an expression"),
        ("DESCRIPTION >\n    d\n", 1, "needs a SCHEMA"),
        ("SCHEMA >\n\nENGINE MergeTree\n", 1, "declares no columns"),
        ("SCHEMA >\n    `a` String\nENGINE Log\n", 3, "ENGINE 'Log' is not supported"),
        (
            "SCHEMA >\n    `a` String\nENGINE_VER a\n",
            3,
            "ENGINE_VER does not apply to ENGINE MergeTree",
        ),
        ("SCHEMA >\n    `a` Int8\nENGINE CollapsingMergeTree\n", 3, "needs ENGINE_SIGN"),
        ("SCHEMA >\n    `a` String\nENGINE_SORTING_KEY\n", 3, "ENGINE_SORTING_KEY needs a value"),
        (
            "SCHEMA >\n    `a` String\nINDEXES >\n    bad index\n",
            4,
            "expected `name expression TYPE",
        ),
        ("SCHEMA >\n    `a` String\nSCHEMA >\n    `b` String\n", 3, "SCHEMA given twice"),
        ("SCHEMA `a` String\n", 1, "SCHEMA is a block"),
        ("SCHEMA >\n    `a` String\nENGINE_TTL >\n    x\n", 3, "not a block keyword"),
    ],
)
def test_datasource_problems_name_the_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        read_datasource(text, file="project/x.datasource", name="x")
    problem = caught.value
    assert (problem.file, problem.line) == ("project/x.datasource", line)
    assert message in problem.message
    assert str(problem).startswith(f"project/x.datasource:{line}: ")


def test_a_datasource_reports_every_problem_not_just_the_first() -> None:
    text = "SCHEMA >\n    `a` String,\n    `a` Int32\nBOGUS 1\nENGINE Log\n"
    assert [(line, message.split(" ")[0]) for line, message in _problems(text)] == [
        (3, "column"),
        (4, "BOGUS"),
        (5, "ENGINE"),
    ]


def test_column_spec_is_what_the_model_declares() -> None:
    spec = read_datasource("SCHEMA >\n    `a` String `json:$.b`\n", file="f", name="x")
    assert spec.columns == (ColumnSpec(name="a", type="String", json_path="$.b", line=2),)
    assert (spec.file, spec.line, spec.name) == ("f", 1, "x")


# -------------------------------------------------------------------------------- .pipe


def test_indented_sql_keeps_its_lines_and_ends_at_an_unindented_keyword() -> None:
    text = textwrap.dedent(
        """\
        DESCRIPTION >
            A pipe

        NODE first
        DESCRIPTION >
            The first node
        SQL >

            %
            SELECT a,
                   b
            FROM t

            WHERE 1

        NODE second
        SQL >
            SELECT * FROM first
        TYPE endpoint
        TOKEN "reader" READ
        """
    )
    pipe = read_pipe(text, file="p.pipe", name="p")
    assert pipe.description == "A pipe"
    first, second = pipe.nodes
    assert (first.name, first.description, first.type, first.line) == (
        "first",
        "The first node",
        "",
        10,
    )
    assert first.sql == "SELECT a,\n       b\nFROM t\n\nWHERE 1"
    assert (second.name, second.sql, second.type, second.line) == (
        "second",
        "SELECT * FROM first",
        "endpoint",
        18,
    )
    assert pipe.endpoint is second


@pytest.mark.parametrize("keyword", ["TYPE endpoint", "NODE next", "DESCRIPTION >", "TOKEN t READ"])
def test_unindented_sql_runs_until_the_next_datafile_keyword(keyword: str) -> None:
    text = f"NODE n\nSQL >\nSELECT 1\n  , 2\nFROM t\n{keyword}\n"
    if keyword == "NODE next":
        text += "SQL >\nSELECT 2\n"
    pipe = read_pipe(text, file="p.pipe", name="p")
    assert pipe.nodes[0].sql == "SELECT 1\n  , 2\nFROM t"
    assert pipe.nodes[0].line == 3


def test_the_template_marker_is_dropped_on_its_own_line_and_on_the_sql_line() -> None:
    own_line = read_pipe("NODE n\nSQL >\n    %\n    SELECT {{Int8(x, 1)}}\n", file="f", name="p")
    assert (own_line.nodes[0].sql, own_line.nodes[0].line) == ("SELECT {{Int8(x, 1)}}", 4)
    same_line = read_pipe("NODE n\nSQL >\n% SELECT 1\n", file="f", name="p")
    assert (same_line.nodes[0].sql, same_line.nodes[0].line) == ("SELECT 1", 3)
    on_keyword_line = read_pipe("NODE n\nSQL > SELECT 1\nTYPE endpoint\n", file="f", name="p")
    assert (on_keyword_line.nodes[0].sql, on_keyword_line.nodes[0].line) == ("SELECT 1", 2)


def test_materialized_copy_and_sink_nodes() -> None:
    pipe = read_pipe(
        textwrap.dedent(
            """\
            NODE agg
            SQL >
                SELECT count() AS n FROM t
            TYPE materialized
            DATASOURCE totals

            NODE snapshot
            SQL >
                SELECT * FROM t
            TYPE COPY
            TARGET_DATASOURCE snapshots

            NODE out
            SQL >
                SELECT 1
            TYPE sink
            """
        ),
        file="f",
        name="p",
    )
    assert [(n.name, n.type, n.datasource) for n in pipe.nodes] == [
        ("agg", "materialized", "totals"),
        ("snapshot", "copy", "snapshots"),
        ("out", "sink", ""),
    ]
    assert pipe.endpoint is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("DESCRIPTION >\n    d\n", 1, "at least one NODE"),
        ("SQL >\n    SELECT 1\n", 1, "SQL must follow a NODE line"),
        ("NODE n\nTYPE endpoint\n", 1, "has no SQL block"),
        ("NODE n\nSQL >\n    SELECT 1\nTYPE api\n", 4, "TYPE 'api' is not one of"),
        ('NODE n\nSQL >\n    SELECT 1\nINCLUDE "x.incl"\n', 4, "INCLUDE is not supported"),
        ("NODE n\nSQL >\n    SELECT 1\nTYPE materialized\n", 4, "needs DATASOURCE"),
        ("NODE n\nSQL >\n    SELECT 1\nTYPE endpoint\nDATASOURCE t\n", 5, "DATASOURCE applies"),
        (
            "NODE a\nSQL >\n    SELECT 1\nTYPE endpoint\n"
            "NODE b\nSQL >\n    SELECT 2\nTYPE endpoint\n",
            8,
            "only one node can be TYPE endpoint",
        ),
        ("NODE a\nSQL >\n    SELECT 1\nNODE a\nSQL >\n    SELECT 2\n", 4, "'a' declared twice"),
        ("NODE 1bad\nSQL >\n    SELECT 1\n", 1, "NODE needs a name"),
        ("NODE n\nSQL >\n    SELECT 1\nSQL >\n    SELECT 2\n", 4, "SQL given twice"),
        ("NODE n\nSQL >\n\nTYPE endpoint\n", 2, "has no SQL"),
        ("NODE n\nSQL SELECT 1\n", 2, "SQL is a block"),
    ],
)
def test_pipe_problems_name_the_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        read_pipe(text, file="project/p.pipe", name="p")
    assert (caught.value.file, caught.value.line) == ("project/p.pipe", line)
    assert message in caught.value.message


def test_resource_names_must_be_identifiers() -> None:
    with pytest.raises(ProjectError, match="not an identifier"):
        read_pipe("NODE n\nSQL >\n    SELECT 1\n", file="f", name="my-pipe")
    with pytest.raises(ProjectError, match="not an identifier"):
        read_datasource("SCHEMA >\n    `a` String\n", file="f", name="2ds")


# ------------------------------------------------------------------------------ folders


def test_a_folder_collects_every_problem_of_every_file(tmp_path: Path) -> None:
    (tmp_path / "datasources").mkdir()
    (tmp_path / "pipes" / "deep").mkdir(parents=True)
    (tmp_path / "datasources" / "good.datasource").write_text("SCHEMA >\n    `a` String\n")
    (tmp_path / "datasources" / "bad.datasource").write_text(
        "SCHEMA >\n    `a` String\nNOPE 1\nALSO 2\n"
    )
    (tmp_path / "pipes" / "deep" / "broken.pipe").write_text("NODE n\nTYPE endpoint\n")
    (tmp_path / "pipes" / "fine.pipe").write_text("NODE n\nSQL >\n    SELECT 1\n")
    (tmp_path / "notes.md").write_text("not a datafile")
    spec = read_folder(tmp_path)
    assert [d.name for d in spec.datasources] == ["bad", "good"]
    assert [p.name for p in spec.pipes] == ["broken", "fine"]
    assert [(p.file, p.line) for p in spec.problems] == [
        ((tmp_path / "datasources" / "bad.datasource").as_posix(), 3),
        ((tmp_path / "datasources" / "bad.datasource").as_posix(), 4),
        ((tmp_path / "pipes" / "deep" / "broken.pipe").as_posix(), 1),
    ]


def test_a_folder_refuses_two_resources_of_one_name_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "events.datasource").write_text("SCHEMA >\n    `a` String\n")
    (tmp_path / "b" / "events.pipe").write_text("NODE n\nSQL >\n    SELECT 1\n")
    (tmp_path / "latin1.pipe").write_bytes(b"NODE n\nSQL >\n    SELECT '\xe9'\n")
    (tmp_path / "huge.pipe").write_text("NODE n\nSQL >\n    SELECT 1\n" + " " * MAX_DATAFILE_BYTES)
    spec = read_folder(tmp_path)
    problems = {(Path(p.file).name, p.line): p.message for p in spec.problems}
    assert "already declared by" in problems[("events.pipe", 1)]
    assert problems[("latin1.pipe", 3)] == "not UTF-8 text"
    assert "larger than" in problems[("huge.pipe", 0)]
    assert [d.name for d in spec.datasources] == ["events"]
    assert spec.pipes == ()


def test_a_missing_folder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    spec = read_folder(tmp_path / "nope")
    assert [p.message for p in spec.problems] == ["not a folder"]


def test_windows_line_endings_read_the_same(tmp_path: Path) -> None:
    text = (TUTORIALS / "endpoints" / "test_summary.pipe").read_text()
    crlf = read_pipe(text.replace("\n", "\r\n"), file="f", name="test_summary")
    assert crlf.nodes[0].sql == TEST_SUMMARY_SQL
