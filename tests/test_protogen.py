"""The committed generated code and descriptor set are exactly what the protos produce."""

from __future__ import annotations

import filecmp
from pathlib import Path

from google.protobuf import descriptor_pb2

from pipit import protogen

ROOT = Path(protogen.__file__).resolve().parent.parent


def _generated(base: Path) -> dict[str, Path]:
    pipit = base / "pipit"
    found = {}
    for path in pipit.rglob("*"):
        if path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")) or (
            path.name == protogen.DESCRIPTOR_SET_NAME
        ):
            found[str(path.relative_to(base))] = path
    return found


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    fresh = _generated(tmp_path)
    committed = _generated(ROOT)
    assert sorted(fresh) == sorted(committed), "run python -m pipit.protogen"
    stale = [name for name, path in fresh.items() if not filecmp.cmp(path, committed[name], False)]
    assert not stale, f"stale generated files (run python -m pipit.protogen): {stale}"


def test_descriptor_set_has_imports_and_source_info() -> None:
    data = (ROOT / "pipit" / protogen.DESCRIPTOR_SET_NAME).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    names = {f.name for f in files}
    assert {"google/api/annotations.proto", "google/api/httpbody.proto"} <= names
    assert "pipit/query/v1/query_service.proto" in names
    query = next(f for f in files if f.name == "pipit/query/v1/query_service.proto")
    assert query.source_code_info.location, "source info (comments) missing"
