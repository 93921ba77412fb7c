"""`--gateway envoy` serves whatever deployment is in service: a project deployed to a running
`pipit up --gateway envoy` is answered by its Envoy, and by an Envoy run beside it with `pipit
gateway --gateway envoy`, within the 5 s the issue promises; a second deploy under load fails no
request and closes no connection; and after a deploy the same requests through our gateway and
both Envoys get the same answers (gateway/envoy_deployment.py says how Envoy follows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from gateway_pair import Answer, assert_same, require_envoy
from harness import free_port
from processes import PipitProcess, start_pipit, start_up

from gateway.app import default_descriptor_set
from gateway.envoy import (
    LISTENER_NAME,
    EnvoyConfig,
    descriptor_inline,
    http_services,
    render_route_config,
    served_targets,
    start_envoy,
)
from gateway.envoy_deployment import ROUTES_FILE_NAME, EnvoyRoutes, RoutesRejected

pytestmark = [pytest.mark.envoy, pytest.mark.e2e]

TOKEN = "envoy-deploy-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The promise: a deploy is served by every gateway within 5 s.
SERVED_WITHIN = 5.0

PAGE_VIEWS = """DESCRIPTION >
    Page views sent by the website, one event per view.

SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `session_id` String `json:$.session_id`,
    `path` String `json:$.path`,
    `country` String `json:$.country`

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp, path"
"""
TOP_PAGES = """DESCRIPTION >
    The most viewed pages, optionally for one country.

NODE top_pages_node
SQL >
    %
    SELECT path, count() AS views, uniqExact(session_id) AS sessions
    FROM page_views
    WHERE 1 = 1
      {% if defined(country) %}
      AND country = {{String(country, description="Two-letter country code")}}
      {% end %}
    GROUP BY path
    ORDER BY views DESC, path
    LIMIT {{Int32(limit, 10, description="How many pages")}}

TYPE endpoint
"""
# The second deploy changes the pipe (a column more) and adds one.
TOP_PAGES_V2 = TOP_PAGES.replace(
    "uniqExact(session_id) AS sessions", "uniqExact(session_id) AS sessions, max(timestamp) AS last"
)
BY_COUNTRY = """DESCRIPTION >
    Views per country.

NODE by_country
SQL >
    SELECT country, count() AS views FROM page_views GROUP BY country ORDER BY country

TYPE endpoint
"""
TYPED_TIME = "2026-11-29T12:00:00Z"
V1 = {"datasources/page_views.datasource": PAGE_VIEWS, "pipes/top_pages.pipe": TOP_PAGES}
V2 = {**V1, "pipes/top_pages.pipe": TOP_PAGES_V2, "pipes/views_by_country.pipe": BY_COUNTRY}


def _view(country: str, path: str, session: str) -> dict[str, str]:
    return {
        "timestamp": "2026-11-29 12:00:00",
        "session_id": session,
        "path": path,
        "country": country,
    }


@dataclass
class Gateways:
    """`pipit up --gateway envoy`, and in front of its services our gateway and a second Envoy
    (`pipit gateway`, `pipit gateway --gateway envoy`)."""

    up: str
    ours: str
    envoy: str

    @property
    def envoys(self) -> tuple[str, str]:
        return self.up, self.envoy


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    require_envoy()
    tmp = tmp_path_factory.mktemp("envoy-deployments")
    logs = (tmp / "up.log").open("ab")
    up = start_up(tmp, TOKEN, "--gateway", "envoy", stderr=logs)
    ingest_port, query_port = up.ports["ingest"], up.ports["query"]
    beside = {
        "PIPIT_INGEST_TARGET": f"127.0.0.1:{ingest_port}",
        "PIPIT_QUERY_TARGET": f"127.0.0.1:{query_port}",
    }
    started: list[PipitProcess] = [up]
    try:
        for kind in ([], ["--gateway", "envoy"]):
            started.append(
                start_pipit(
                    ["gateway", *kind],
                    {**beside, "PIPIT_GATEWAY_PORT": str(free_port())},
                    {"gateway"},
                    stderr=logs,
                )
            )
        yield Gateways(*(p.listening["gateway"] for p in started))
    finally:
        codes = [p.stop() for p in reversed(started)]
        logs.close()
    assert codes == [0] * len(codes)


async def _deploy(http: aiohttp.ClientSession, base: str, files: dict[str, str]) -> float:
    """Deploys `files` as `pipit deploy` does; returns when the deploy was answered."""
    body = {"files": [{"path": path, "content": text} for path, text in files.items()]}
    async with http.post(f"{base}/v0/deploy", data=orjson.dumps(body), headers=AUTH) as response:
        assert response.status == 200, await response.text()
    return time.monotonic()


async def _get(http: aiohttp.ClientSession, url: str, **kwargs) -> Answer:
    async with http.get(url, **kwargs) as response:
        return Answer(response.status, response.headers, await response.read())


# What tells the two deployments apart: a pipe only the second has.
V1_SERVED = {"/v0/pipes/top_pages.json": 200, "/v0/pipes/views_by_country.json": 404}
# (A 200 counts when the pipe's typed route answers it: see _served_by.)
V2_SERVED = {"/v0/pipes/top_pages.json": 200, "/v0/pipes/views_by_country.json": 200}


async def _served_by(
    http: aiohttp.ClientSession, bases: tuple[str, ...], statuses: dict[str, int], since: float
) -> None:
    """Waits until every gateway answers each path with its status; fails past
    SERVED_WITHIN after `since`."""
    for base in bases:
        for path, status in statuses.items():
            while True:
                answer = await _get(http, f"{base}{path}", headers=AUTH)
                # A pipe the query service serves answers from PipeService too (in the
                # engine's JSON) before the gateway routes the deployment; only its typed
                # route, which comes with the deployment's routes, prints compact JSON.
                typed = status != 200 or answer.body.startswith(b'{"meta":')
                if answer.status == status and typed:
                    break
                assert time.monotonic() - since < SERVED_WITHIN, (base, path, answer)
                await asyncio.sleep(0.05)


async def _post_events(
    http: aiohttp.ClientSession, base: str, rows: list[dict[str, str]]
) -> Answer:
    body = b"\n".join(orjson.dumps(row) for row in rows)
    async with http.post(
        f"{base}/v0/events?name=page_views&wait=true", data=body, headers=AUTH
    ) as response:
        return Answer(response.status, response.headers, await response.read())


async def test_a_deployed_project_is_served_by_envoy(gateways: Gateways) -> None:
    async with aiohttp.ClientSession() as http:
        deployed = await _deploy(http, gateways.up, V1)
        await _served_by(http, gateways.envoys, V1_SERVED, deployed)
        for base in gateways.envoys:
            # The deployment replaced the built-in tutorials: their pipes are gone.
            gone = await _get(http, f"{base}/v0/pipes/test_summary.json", headers=AUTH)
            assert gone.status == 404, gone
            # The project's Events API, through each Envoy.
            country = "NL" if base == gateways.up else "BE"
            rows = [
                _view(country, "/", "s1"),
                _view(country, "/", "s2"),
                _view(country, "/a", "s1"),
            ]
            posted = await _post_events(http, base, rows)
            assert (posted.status, posted.json) == (
                200,
                {"successful_rows": 3, "quarantined_rows": 0},
            )
            query = urlencode({"country": country, "token": TOKEN})
            answer = await _get(http, f"{base}/v0/pipes/top_pages.json?{query}")
            assert answer.status == 200, answer
            assert answer.json["data"] == [
                {"path": "/", "views": 2, "sessions": 2},
                {"path": "/a", "views": 1, "sessions": 1},
            ]


@dataclass
class Load:
    """Requests kept flowing through one gateway, each worker on a connection of its own."""

    base: str
    workers: int = 4
    connections: int = 0
    requests: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    acknowledged: int = 0
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        self.requests = [0] * self.workers

    async def run(self, stop: asyncio.Event) -> None:
        trace = aiohttp.TraceConfig()

        async def opened(*_args) -> None:
            self.connections += 1

        trace.on_connection_create_end.append(opened)
        connector = aiohttp.TCPConnector(limit=self.workers)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as http:
            await asyncio.gather(*(self._worker(http, n, stop) for n in range(self.workers)))

    async def _worker(self, http: aiohttp.ClientSession, n: int, stop: asyncio.Event) -> None:
        # Half the workers read the pipe, half write batches that are answered once written,
        # so requests of both kinds are in flight when the deployment changes.
        rows = [_view("DE", f"/load/{n}", f"w{n}-{i}") for i in range(200)]
        while not stop.is_set():
            try:
                if n % 2:
                    answer = await _post_events(http, self.base, rows)
                    if answer.status == 200:
                        self.acknowledged += answer.json["successful_rows"]
                else:
                    answer = await _get(
                        http, f"{self.base}/v0/pipes/top_pages.json?country=DE", headers=AUTH
                    )
            except aiohttp.ClientError as exc:  # a reset or a closed connection
                self.failures.append(f"worker {n}: {exc!r}")
            else:
                if answer.status != 200:
                    self.failures.append(f"worker {n}: {answer.status} {answer.body[:200]!r}")
            async with self.progress:
                self.requests[n] += 1
                self.progress.notify_all()

    async def until_each_did(self, more: int) -> None:
        """Waits until every worker has sent `more` requests more than now."""
        targets = [count + more for count in self.requests]
        async with self.progress:
            await self.progress.wait_for(
                lambda: all(c >= t for c, t in zip(self.requests, targets, strict=True))
            )


async def _views(http: aiohttp.ClientSession, base: str, country: str) -> int:
    """The views stored for `country`, as the pipe both deployments have counts them."""
    query = urlencode({"country": country, "limit": 1000})
    answer = await _get(http, f"{base}/v0/pipes/top_pages.json?{query}", headers=AUTH)
    assert answer.status == 200, answer
    return sum(row["views"] for row in answer.json["data"])


async def test_a_deploy_under_load_fails_no_request_and_drops_no_connection(
    gateways: Gateways,
) -> None:
    async with aiohttp.ClientSession() as http:
        deployed = await _deploy(http, gateways.up, V1)
        await _served_by(http, (gateways.up,), V1_SERVED, deployed)
        before = await _views(http, gateways.up, "DE")
        load, stop = Load(gateways.up), asyncio.Event()
        running = asyncio.create_task(load.run(stop))
        try:
            await load.until_each_did(3)
            deployed = await _deploy(http, gateways.up, V2)
            await _served_by(http, (gateways.up,), V2_SERVED, deployed)
            await load.until_each_did(3)
        finally:
            stop.set()
            await running
        after = await _views(http, gateways.up, "DE")
    assert load.failures == [], load.failures
    # Each worker kept the connection it opened: Envoy closed none across the deploy.
    assert load.connections == load.workers, (load.connections, load.requests)
    # And every row acknowledged through Envoy is there.
    assert after - before == load.acknowledged


async def test_after_a_deploy_our_gateway_and_envoy_answer_alike(gateways: Gateways) -> None:
    bases = (gateways.ours, *gateways.envoys)
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        deployed = await _deploy(http, gateways.up, V2)
        await _served_by(http, bases, V2_SERVED, deployed)
        for base in bases:
            posted = await _post_events(http, base, [_view("FR", "/fr", "s1")])
            assert posted.status == 200, posted
        cases: list[tuple[str, str, dict[str, str], bytes | None]] = [
            ("GET", "/v0/pipes/top_pages.json?country=FR&limit=2", AUTH, None),
            ("GET", f"/v0/pipes/top_pages.json?country=FR&token={TOKEN}", {}, None),
            ("GET", "/v0/pipes/top_pages.json", {}, None),
            ("GET", "/v0/pipes/views_by_country.json", AUTH, None),
            ("GET", "/v0/pipes/test_summary.json", AUTH, None),
            ("GET", "/v0/pipes", AUTH, None),
            # A path of the new deployment with a method it has no route for: the 405 filter
            # Envoy runs comes with the deployment's route configuration.
            ("DELETE", "/v0/pipes/views_by_country.json", AUTH, None),
            (
                "OPTIONS",
                "/v0/pipes/views_by_country.json",
                {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
                None,
            ),
            # A row that fails validation is quarantined, the same through each.
            ("POST", "/v0/events?name=page_views", AUTH, b'{"timestamp": "yesterday"}'),
            ("POST", "/v0/events?name=ab_test_events", AUTH, b"{}"),
            (
                "POST",
                "/v1/datasources/page_views/events",
                AUTH,
                orjson.dumps(
                    # A typed message: the timestamp is a google.protobuf.Timestamp.
                    {
                        "events": [{**_view("FR", "/typed", "s2"), "timestamp": TYPED_TIME}],
                        "wait": True,
                    }
                ),
            ),
        ]
        for method, path, headers, body in cases:
            answers = []
            for base in bases:
                async with http.request(
                    method, f"{base}{path}", headers=headers, data=body
                ) as response:
                    answers.append(Answer(response.status, response.headers, await response.read()))
            for envoy in answers[1:]:
                assert_same(answers[0], envoy)
            if method == "DELETE":
                assert answers[0].status == 405
                assert "GET" in answers[0].headers["allow"].split(", ")


async def test_a_route_configuration_envoy_refuses_leaves_the_previous_one(
    tmp_path: Path,
) -> None:
    """Envoy keeps serving the routes it has when it refuses new ones, and the refusal is
    reported rather than waited out; a good configuration after it is loaded as usual."""
    require_envoy()
    descriptor_set = default_descriptor_set()
    # Nothing listens there: a routed request is 503, an unrouted one 404.
    upstreams = {name: f"127.0.0.1:{free_port()}" for name in http_services(descriptor_set)}
    config = EnvoyConfig(upstreams, health_check_interval=0.2, access_log=False)
    with (tmp_path / "envoy.log").open("ab") as log:
        envoy = await start_envoy(config, stderr=log, follow=False)
    try:
        assert envoy.admin_url is not None
        targets = served_targets(config.upstreams, descriptor_set)

        def routes(carried: Callable[[bytes], dict[str, str]]) -> EnvoyRoutes:
            return EnvoyRoutes(
                envoy.workdir / ROUTES_FILE_NAME,
                lambda ds, where: render_route_config(config, ds, where, carried(ds)),
                LISTENER_NAME,
            )

        # Bytes Envoy cannot parse as a descriptor set (ours would not render them).
        broken = routes(lambda _ds: descriptor_inline(b"not a descriptor set"))
        with pytest.raises(RoutesRejected):
            await broken.apply("broken", descriptor_set, targets, envoy.admin_url)
        async with aiohttp.ClientSession() as http:
            summary = await _get(http, f"{envoy.url}/v0/pipes/test_summary.json")
            assert summary.status == 503, summary  # still transcoded: the routes it had
            good = routes(descriptor_inline)
            await good.apply("good", descriptor_set, targets, envoy.admin_url)
            assert (await good.served(envoy.admin_url, http))[0] == "good"
    finally:
        await envoy.stop()
