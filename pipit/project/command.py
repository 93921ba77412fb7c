"""The project commands: `pipit init`, `pipit build`, `pipit protos`, `pipit deploy` and
`pipit dev` (deploy on every save, as `tb dev` does)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
import orjson

from common import config
from common.tokens import ADMIN_TOKEN_FILE
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.project.artifact import Artifact
from pipit.project.compiler import BuildFailed, build, read_files
from pipit.project.runtime import Project
from pipit.protogen import PROTO_DIR

DEFAULT_URL = "http://127.0.0.1:7181"
BUILD_DIR = ".pipit-build"
WATCH_SECONDS = 0.5
# The Pipit protos a generated project imports; clients compile them beside its own.
SUPPORT_PROTOS = ("pipit/clickhouse/v1/options.proto", "pipit/query/v1/pipe.proto")
# And googleapis' (shipped with googleapis-common-protos), so `-I<out>` resolves every import.
GOOGLE_API_PROTOS = ("annotations.proto", "http.proto", "httpbody.proto")

INIT_FILES = {
    "datasources/page_views.datasource": """DESCRIPTION >
    Page views sent by the website, one event per view.

SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `session_id` String `json:$.session_id`,
    `path` String `json:$.path`,
    `country` LowCardinality(String) `json:$.country`

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp, path"
""",
    "pipes/top_pages.pipe": """DESCRIPTION >
    The most viewed pages in a time range, optionally for one country.

NODE top_pages_node
SQL >
    %
    SELECT path, count() AS views, uniqExact(session_id) AS sessions
    FROM page_views
    WHERE timestamp >= {{DateTime(start_date, '1970-01-01 00:00:00', description="From, UTC")}}
      AND timestamp <= {{DateTime(end_date, '2106-02-07 06:28:15', description="To, UTC")}}
      {% if defined(country) %}
      AND country = {{String(country, description="Two-letter country code")}}
      {% end %}
    GROUP BY path
    ORDER BY views DESC, path
    LIMIT {{Int32(limit, 10, description="How many pages")}}

TYPE endpoint
""",
    "README.md": """# A Pipit project

`datasources/` holds the tables (Tinybird `.datasource` files), `pipes/` the endpoints
(`.pipe` files). With `pipit up` running:

```bash
pipit deploy .            # or `pipit dev .` to redeploy on every save
export TOKEN=$(cat ../.pipit/admin_token)   # wherever pipit up keeps its data
curl -X POST "http://localhost:7181/v0/events?name=page_views&token=$TOKEN" \\
  -d '{"timestamp": "2026-11-29 12:00:00", "session_id": "s1", "path": "/", "country": "NL"}'
curl "http://localhost:7181/v0/pipes/top_pages.json?token=$TOKEN&country=NL"
pipit protos . --out protos/   # the typed gRPC API, to generate client stubs from
```
""",
}


def admin_token_of(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("PIPIT_ADMIN_TOKEN", "")
    if not token:
        path = Path(args.data_dir) / ADMIN_TOKEN_FILE
        if path.exists():
            token = path.read_text().strip()
    if not token:
        raise SystemExit(
            "pipit: no admin token: pass --token, set PIPIT_ADMIN_TOKEN, or run where "
            f"{Path(args.data_dir) / ADMIN_TOKEN_FILE} is"
        )
    return token


async def build_locally(folder: Path) -> Artifact:
    """Builds a project folder against a scratch chDB of its own (in a temporary folder):
    the same checks a deploy makes, without a running suite."""
    name = await asyncio.to_thread(lambda: folder.resolve().name)
    with tempfile.TemporaryDirectory(prefix="pipit-build-") as tmp:
        scratch = EmbeddedWarehouse(Path(tmp), "pipit_build")
        await scratch.open()
        try:
            files = await asyncio.to_thread(read_files, folder)
            return await build(files, scratch, name)
        finally:
            await scratch.close()


def _problems(exc: BuildFailed) -> int:
    print(f"pipit: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def write_protos(artifact: Artifact, folder: Path, out: Path) -> list[Path]:
    """The project's `.proto` sources (generated, or its own) and the Pipit protos they
    import, under `out`."""
    sources = dict(artifact.protos) or {
        path: text for path, text in read_files(folder).items() if path.endswith(".proto")
    }
    for path in SUPPORT_PROTOS:
        sources.setdefault(path, (PROTO_DIR / path).read_text())
    from google.api import annotations_pb2

    google_api = Path(annotations_pb2.__file__).parent
    for name in GOOGLE_API_PROTOS:
        sources.setdefault(f"google/api/{name}", (google_api / name).read_text())
    written = []
    for path, text in sorted(sources.items()):
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


def run_init(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    existing = [path for path in INIT_FILES if (folder / path).exists()]
    if existing:
        raise SystemExit(f"pipit: {folder / existing[0]} exists; init writes only new files")
    for path, text in INIT_FILES.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"pipit: a project with one datasource and one pipe in {folder}")
    print(f"       next: pipit build {folder}, then pipit deploy {folder}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    try:
        artifact = asyncio.run(build_locally(folder))
    except BuildFailed as exc:
        return _problems(exc)
    out = Path(args.out) if args.out else folder / BUILD_DIR
    if out.exists():
        shutil.rmtree(out)
    (out / "protos").mkdir(parents=True)
    (out / "descriptor_set.binpb").write_bytes(artifact.descriptor_set)
    (out / "project.json").write_bytes(artifact.to_bytes())
    write_protos(artifact, folder, out / "protos")
    project = Project(artifact)
    print(f"pipit: built {artifact.name} version {artifact.version} into {out}")
    print(f"       datasources: {', '.join(project.datasources) or '-'}")
    print(f"       pipes: {', '.join(sorted(project.pipes)) or '-'}")
    for m in sorted(project.artifact.materializations.values(), key=lambda m: m.name):
        print(f"       materialized: {m.name} ({m.source} -> {m.target})")
    return 0


def run_protos(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    try:
        artifact = asyncio.run(build_locally(folder))
    except BuildFailed as exc:
        return _problems(exc)
    written = write_protos(artifact, folder, Path(args.out))
    print(f"pipit: {len(written)} .proto files in {args.out}")
    return 0


async def deploy(
    folder: Path, url: str, token: str, *, allow_destructive: bool = False, dry_run: bool = False
) -> tuple[int, dict]:
    """POSTs the folder's files to a running suite's `/v0/deploy`; (HTTP status, answer)."""
    files = await asyncio.to_thread(read_files, folder)
    body = {
        "files": [{"path": path, "content": text} for path, text in files.items()],
        "allow_destructive": allow_destructive,
        "dry_run": dry_run,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url.rstrip("/") + "/v0/deploy",
            data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


def _report(status: int, answer: dict) -> int:
    if status != 200:
        print(f"pipit: deploy refused ({status}): {answer.get('message', answer)}", file=sys.stderr)
        return 1
    changes = answer.get("changes") or ["nothing changed"]
    print(f"pipit: version {answer.get('version', '')}")
    for change in changes:
        print(f"  {change}")
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    status, answer = asyncio.run(
        deploy(
            Path(args.dir),
            args.url,
            admin_token_of(args),
            allow_destructive=args.allow_destructive,
            dry_run=args.dry_run,
        )
    )
    return _report(status, answer)


def _snapshot(folder: Path) -> dict[str, float]:
    return {path: (folder / path).stat().st_mtime_ns for path in read_files(folder)}


async def _watch(folder: Path, url: str, token: str) -> None:
    seen: dict[str, float] | None = None
    while True:
        snapshot = await asyncio.to_thread(_snapshot, folder)
        if snapshot != seen:
            seen = snapshot
            try:
                _report(*await deploy(folder, url, token))
            except aiohttp.ClientError as exc:
                print(f"pipit: cannot reach {url}: {exc}", file=sys.stderr)
        await asyncio.sleep(WATCH_SECONDS)


def run_dev(args: argparse.Namespace) -> int:
    print(f"pipit: deploying {args.dir} to {args.url} on every save (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(Path(args.dir), args.url, admin_token_of(args)))
    return 0


def add_project_commands(commands: argparse._SubParsersAction) -> None:
    def folder(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("dir", help="the project folder")

    def target(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
        sub.add_argument("--token", default="", help="admin token (default PIPIT_ADMIN_TOKEN)")
        config.add_arguments(sub, ["data_dir"])

    sub = commands.add_parser("init", help="scaffold a project: a datasource, a pipe, a README")
    folder(sub)
    sub.set_defaults(run=run_init)

    sub = commands.add_parser("build", help="build and check a project without deploying it")
    folder(sub)
    sub.add_argument("--out", default="", help=f"where the build goes (default DIR/{BUILD_DIR})")
    sub.set_defaults(run=run_build)

    sub = commands.add_parser("protos", help="write a project's .proto files, for client stubs")
    folder(sub)
    sub.add_argument("--out", required=True, help="the folder to write them into")
    sub.set_defaults(run=run_protos)

    sub = commands.add_parser("deploy", help="deploy a project to a running suite")
    folder(sub)
    target(sub)
    sub.add_argument(
        "--allow-destructive", action="store_true", help="allow changes that lose data"
    )
    sub.add_argument("--dry-run", action="store_true", help="check and report, apply nothing")
    sub.set_defaults(run=run_deploy)

    sub = commands.add_parser("dev", help="deploy a project on every save")
    folder(sub)
    target(sub)
    sub.set_defaults(run=run_dev)
