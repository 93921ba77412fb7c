"""protoc for a project's build: grpcio-tools in a subprocess (so its messages can be read
back as `file:line: message` problems), with the platform's services and protos beside the
project's."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipit.project.model import BuildFailed, ProjectError
from pipit.protogen import include_paths

PLATFORM_PROTOS = (
    "pipit/query/v1/pipe_service.proto",
    "pipit/query/v1/sql_service.proto",
    "pipit/deploy/v1/deploy_service.proto",
    "pipit/ingest/v1/datasources_service.proto",
    "pipit/tokens/v1/token_service.proto",
    "pipit/catalog/v1/catalog_service.proto",
)


_PROTOC_PROBLEM = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:\d+:)?\s*(?P<message>.*)$")


async def protoc(sources: Mapping[str, str], compile_files: Iterable[str]) -> bytes:
    """The descriptor set of `compile_files` (paths in `sources`, written to a temporary
    folder beside the platform's protos), imports and source info included."""
    with tempfile.TemporaryDirectory(prefix="pipit-protoc-") as tmp:
        root = Path(tmp)
        for path, text in sources.items():
            target = root / "src" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        out = root / "descriptor_set.binpb"
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root / 'src'}",
            *(f"-I{path}" for path in include_paths()),
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *compile_files,
        ]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise BuildFailed(_protoc_problems(stderr.decode("utf-8", "replace"), root))
        return out.read_bytes()


def _protoc_problems(text: str, root: Path) -> list[ProjectError]:
    problems = []
    for line in text.splitlines():
        match = _PROTOC_PROBLEM.match(line.strip())
        if match:
            file = match["file"].replace(str(root / "src") + "/", "")
            problems.append(ProjectError(file, int(match["line"]), match["message"]))
        elif line.strip():
            problems.append(ProjectError("protoc", 0, line.strip()))
    return problems or [ProjectError("protoc", 0, "protoc failed")]
