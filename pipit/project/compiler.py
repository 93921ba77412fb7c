"""`pipit build`: a project's files into an Artifact, validated whole against the engine.

Two forms, one result: Tinybird datafiles (`*.datasource`, `*.pipe`: build_tinybird.py)
and Pipit's native form (`*.proto` with datasource messages and query RPCs,
`sql/<pipe>.sql`: build_native.py). Either way the protos are compiled by protoc (protoc.py)
with the platform's services beside them, the project is checked against the engine in a
scratch database (engine_checks.py), and every problem is reported as `file:line:
message`; a project with any problem builds nothing. What either form builds is loaded as
the services will load it before it is returned."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from common.warehouse.base import Warehouse
from pipit.project.artifact import NATIVE, TINYBIRD, Artifact
from pipit.project.build_native import build_native
from pipit.project.build_tinybird import build_tinybird
from pipit.project.model import BuildFailed, ProjectError
from pipit.project.runtime import Project

__all__ = ["BuildFailed", "build", "project_form", "read_files"]


def project_form(files: Mapping[str, str]) -> str:
    """TINYBIRD when the files hold datafiles, NATIVE when they hold protos."""
    if any(path.endswith((".datasource", ".pipe")) for path in files):
        return TINYBIRD
    if any(path.endswith(".proto") for path in files):
        return NATIVE
    raise BuildFailed(
        [ProjectError(".", 0, "no *.datasource, *.pipe or *.proto files: nothing to build")]
    )


def read_files(folder: Path) -> dict[str, str]:
    """A project folder's files by relative path (hidden folders and build output aside)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in (".datasource", ".pipe", ".proto", ".sql"):
            found[relative.as_posix()] = path.read_text(encoding="utf-8")
    return found


async def build(files: Mapping[str, str], scratch: Warehouse, name: str = "project") -> Artifact:
    """Builds and validates a project; raises BuildFailed with every problem found.
    `scratch` is an open warehouse in an empty database the build may fill."""
    if project_form(files) == TINYBIRD:
        return _checked(await build_tinybird(files, scratch, name))
    return _checked(await build_native(files, scratch, name))


def _checked(artifact: Artifact) -> Artifact:
    """The artifact, once it loads as the services will load it."""
    project = Project(artifact)
    from services.query.service import endpoints

    endpoints(project, 1024)
    return artifact
