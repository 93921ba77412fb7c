"""Kubernetes NetworkPolicy semantics, evaluated in Python over rendered manifests, so a
test can list every connection the policies admit and compare it with what should be.

Covers what the manifests may use: pod and namespace selectors (matchLabels and
matchExpressions), named and numbered ports with endPort, policyTypes (explicit or
implied), and ipBlock, which is over-approximated as matching every peer: an address
range may well cover pod IPs, and a test asserting "nothing else" must not be fooled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class Endpoint:
    """A pod (or a pseudo-pod standing for something outside) that sends or receives."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    namespace_labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    ports: tuple[Port, ...] = ()
    # Policies only select pods of their own namespace; endpoints outside it are never
    # selected (nothing in our manifests governs them).
    governed: bool = True


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: an empty one matches everything."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _policy_types(policy: Mapping[str, Any]) -> set[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return True
    pod_selector = peer.get("podSelector")
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return pod_selector is None or selector_matches(pod_selector, other.labels)


def _port_matches(rule_ports: list[Mapping[str, Any]] | None, port: Port) -> bool:
    if not rule_ports:
        return True
    for rp in rule_ports:
        if rp.get("protocol", "TCP") != port.protocol:
            continue
        wanted = rp.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if wanted == port.name:
                return True
            continue
        if wanted <= port.number <= rp.get("endPort", wanted):
            return True
    return False


class PolicySet:
    """The NetworkPolicies of one namespace."""

    def __init__(self, namespace: str, policies: Iterable[Mapping[str, Any]]) -> None:
        self.namespace = namespace
        self.policies = [p for p in policies if p["metadata"].get("namespace") == namespace]

    def _selecting(self, endpoint: Endpoint, kind: str) -> list[Mapping[str, Any]]:
        if not endpoint.governed or endpoint.namespace != self.namespace:
            return []
        return [
            p
            for p in self.policies
            if kind in _policy_types(p)
            and selector_matches(p["spec"]["podSelector"], endpoint.labels)
        ]

    def allows(self, source: Endpoint, target: Endpoint, port: Port) -> bool:
        """Both ends must agree: the source's egress and the target's ingress."""
        egress = self._selecting(source, "Egress")
        if egress and not any(
            _peer_matches_all(rule.get("to"), self.namespace, target)
            and _port_matches(rule.get("ports"), port)
            for p in egress
            for rule in p["spec"].get("egress") or []
        ):
            return False
        ingress = self._selecting(target, "Ingress")
        return not ingress or any(
            _peer_matches_all(rule.get("from"), self.namespace, source)
            and _port_matches(rule.get("ports"), port)
            for p in ingress
            for rule in p["spec"].get("ingress") or []
        )

    def admitted(self, endpoints: Iterable[Endpoint]) -> set[tuple[str, str, int, str]]:
        """Every (source, target, port, protocol) the policies admit among `endpoints`."""
        endpoints = list(endpoints)
        return {
            (src.name, dst.name, port.number, port.protocol)
            for src in endpoints
            for dst in endpoints
            for port in dst.ports
            if self.allows(src, dst, port)
        }


def _peer_matches_all(peers: list[Mapping[str, Any]] | None, ns: str, other: Endpoint) -> bool:
    # An absent or empty from/to list admits every peer.
    return not peers or any(_peer_matches(peer, ns, other) for peer in peers)
