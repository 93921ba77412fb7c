"""Compiles `protos/` into the `pipit` package: Python messages, gRPC stubs and the
descriptor set that drives the gateway (and Envoy's transcoder).

Run by the build (see `setup.py`) and by `python -m pipit.protogen`; the generated
files are committed so an editable install needs no step, and a test fails when
regeneration would change them.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
DESCRIPTOR_SET_NAME = "descriptor_set.binpb"


def proto_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    """The project's .proto files, relative to `proto_dir`, in a stable order."""
    return sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))


def include_paths() -> list[str]:
    """Where imports resolve: our protos, googleapis' protos (google/api/*), and the
    well-known types shipped with grpcio-tools."""
    # googleapis-common-protos ships google/api/*.proto beside its generated code.
    from google.api import annotations_pb2

    googleapis_root = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    well_known = resources.files("grpc_tools") / "_proto"
    return [str(PROTO_DIR), str(googleapis_root), str(well_known)]


def generate(out_dir: Path) -> None:
    """Writes *_pb2.py, *_pb2.pyi, *_pb2_grpc.py and the descriptor set under out_dir."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    files = proto_files()
    args = ["grpc_tools.protoc"]
    args += [f"-I{p}" for p in include_paths()]
    args += [
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--descriptor_set_out={out_dir / 'pipit' / DESCRIPTOR_SET_NAME}",
        "--include_imports",
        "--include_source_info",
    ]
    (out_dir / "pipit").mkdir(parents=True, exist_ok=True)
    if protoc.main(args + files) != 0:
        raise RuntimeError("protoc failed")
    # Generated code imports `pipit.<area>.v1`; make each level a regular package.
    for rel in files:
        pkg = (out_dir / rel).parent
        while pkg != out_dir:
            init = pkg / "__init__.py"
            if not init.exists():
                init.write_text("")
            pkg = pkg.parent


def main() -> int:
    generate(ROOT)
    print(f"generated {len(proto_files())} protos into {ROOT / 'pipit'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
