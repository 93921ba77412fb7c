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
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from network_policy import Endpoint, PolicySet, Port

from common import config
from common.config import Settings
from services.ingest.service import SERVICE as INGEST_SERVICE
from services.query.service import SERVICE as QUERY_SERVICE

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "production")
NAMESPACE = "pipit"
# The oldest Kubernetes minor still supported upstream when this was written that
# kubernetes-validate ships schemas for: manifests valid there are valid on newer ones.
KUBERNETES_VERSION = "1.35.0"
DEFAULTS = Settings()
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

Doc = dict[str, Any]


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        message = "kubectl is needed to render k8s/ (apt-get install kubectl)"
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
    return out


def _of(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in _of(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _workloads(docs: list[Doc], kinds: tuple[str, ...] = WORKLOAD_KINDS) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in kinds)


def _pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def _pod_labels(workload: Doc) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


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


@parametrize_overlays
def test_services_reach_clickhouse_with_the_secret_password(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    settings = _configmap(docs, "pipit-config")["data"]
    users = ET.fromstring(_configmap(docs, "clickhouse-users")["data"]["users.xml"])
    user = users.find(f"users/{settings['CLICKHOUSE_USER']}")
    assert user is not None and user.find("password").get("from_env") == "CLICKHOUSE_PASSWORD"
    clickhouse = _container(docs, "StatefulSet", "clickhouse")
    assert "secretKeyRef" in _env(clickhouse)["CLICKHOUSE_PASSWORD"]["valueFrom"]
    for kind, name in (("StatefulSet", "ingest"), ("Deployment", "query")):
        env = _env(_container(docs, kind, name))
        assert env["PIPIT_CLICKHOUSE_URL"]["value"] == (
            "http://$(CLICKHOUSE_USER):$(CLICKHOUSE_PASSWORD)"
            "@$(CLICKHOUSE_HOST):$(CLICKHOUSE_HTTP_PORT)"
        )
        assert env["CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
            "clickhouse-password"
        )
    service = _one(docs, "Service", settings["CLICKHOUSE_HOST"])
    assert int(settings["CLICKHOUSE_HTTP_PORT"]) in [p["port"] for p in service["spec"]["ports"]]


def test_secret_examples_are_committed_and_the_real_files_ignored() -> None:
    examples = sorted(K8S.rglob("secrets/*.example"))
    assert {e.name for e in examples} == {
        "admin-token.example",
        "clickhouse-password.example",
        "clickhouse-cluster-secret.example",
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
    ]


def _expected_connections(
    overlay: str, endpoints: list[Endpoint]
) -> set[tuple[str, str, int, str]]:
    ingest, query, gateway = DEFAULTS.ingest_port, DEFAULTS.query_port, DEFAULTS.gateway_port
    expected = {
        ("gateway", "ingest", ingest, "TCP"),
        ("gateway", "query", query, "TCP"),
        ("ingest", "clickhouse", 8123, "TCP"),
        ("query", "clickhouse", 8123, "TCP"),
    }
    if overlay == "production":
        expected |= {
            ("pipit-migrate", "clickhouse", 8123, "TCP"),
            ("clickhouse", "clickhouse", 9000, "TCP"),
            ("clickhouse", "clickhouse", 9009, "TCP"),
            ("clickhouse", "clickhouse-keeper", 9181, "TCP"),
            ("clickhouse-keeper", "clickhouse-keeper", 9234, "TCP"),
        }
    for endpoint in endpoints:
        if endpoint.namespace == NAMESPACE:
            expected |= {(endpoint.name, "dns", 53, "UDP"), (endpoint.name, "dns", 53, "TCP")}
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
    job = _container(docs, "Job", "pipit-migrate")
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


def test_production_services_leave_the_schema_to_the_migrate_job(
    rendered: dict[str, list[Doc]],
) -> None:
    assert config.load(environ=_configmap(rendered["dev"], "pipit-config")["data"]).manage_schema
    production = rendered["production"]
    settings = config.load(environ=_configmap(production, "pipit-config")["data"])
    assert settings.manage_schema is False
    job = _one(production, "Job", "pipit-migrate")
    assert _pod_spec(job)["containers"][0]["args"][:2] == ["migrate", "--cluster"]
    assert not _of(rendered["dev"], "Job")


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
