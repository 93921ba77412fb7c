"""Tinybird's datafiles: `*.datasource` and `*.pipe` read into the project model.

A datafile is a sequence of keyword lines (`ENGINE "MergeTree"`, `NODE name`, `TYPE
endpoint`) and blocks (`SCHEMA >`, `SQL >`, `DESCRIPTION >`, `INDEXES >`). A block's text
is either indented under its keyword, as Tinybird writes it, and then runs while lines are
indented or blank; or unindented, as the tutorials print it, and then runs until the next
line that starts with a datafile keyword. A block may also start on the keyword's own line
(`DESCRIPTION > text`).

Every problem is a ProjectError naming the file and line. `read_datasource` and
`read_pipe` raise the first one; `read_folder` collects all of them, from every file, in
`ProjectSpec.problems`. Only `read_folder` touches the file system."""

from __future__ import annotations

from pathlib import Path

from pipit.project.datafile_syntax import MAX_DATAFILE_BYTES
from pipit.project.datasource_files import parse_datasource, read_datasource
from pipit.project.model import (
    DatasourceSpec,
    PipeSpec,
    ProjectError,
    ProjectSpec,
)
from pipit.project.pipe_files import parse_pipe, read_pipe


def read_folder(path: Path) -> ProjectSpec:
    """Every `*.datasource` and `*.pipe` below `path`, in path order. Files are named
    as `path / relative` (so as the caller spelled the folder); a resource's name is its
    file's stem. Problems from every file are collected, not raised."""
    problems: list[ProjectError] = []
    if not path.is_dir():
        return ProjectSpec(problems=(ProjectError(str(path), 0, "not a folder"),))
    files = sorted(
        (p for p in path.rglob("*") if p.suffix in (".datasource", ".pipe") and p.is_file()),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    datasources: list[DatasourceSpec] = []
    pipes: list[PipeSpec] = []
    names: dict[str, str] = {}
    for file_path in files:
        file = (path / file_path.relative_to(path)).as_posix()
        name = file_path.stem
        try:
            if file_path.stat().st_size > MAX_DATAFILE_BYTES:
                problems.append(ProjectError(file, 0, f"larger than {MAX_DATAFILE_BYTES} bytes"))
                continue
            text = file_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            line = file_path.read_bytes()[: exc.start].count(b"\n") + 1
            problems.append(ProjectError(file, line, "not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(ProjectError(file, 0, f"cannot be read: {exc.strerror}"))
            continue
        if name in names:
            problems.append(ProjectError(file, 1, f"{name!r} is already declared by {names[name]}"))
            continue
        names[name] = file
        if file_path.suffix == ".datasource":
            datasource, found = parse_datasource(text, file=file, name=name)
            datasources.append(datasource)
        else:
            pipe, found = parse_pipe(text, file=file, name=name)
            pipes.append(pipe)
        problems.extend(found)
    return ProjectSpec(datasources=tuple(datasources), pipes=tuple(pipes), problems=tuple(problems))


__all__ = ["MAX_DATAFILE_BYTES", "read_datasource", "read_folder", "read_pipe"]
