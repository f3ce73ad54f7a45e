"""The Kubernetes NetworkPolicies of a `deny` namespace, for whichever mesh runs it: default deny, and exactly the
allowances the graph's edges and the mesh's own traffic need, with the ports that mesh puts on the wire.

The graph decides who calls whom on which port (plan/edges.py); what differs per mesh is only where its proxies
listen and whom they call, which each mesh states once as a `MeshWire` (plan/linkerd/authorization.py `wire`,
plan/istio/authorization.py `wire`). Both meshes' NetworkPolicies are this one function with their own `MeshWire`,
so the network layer agrees with each mesh's policy by construction, not by two copies kept alike.

Also here: the "everything outside the cluster" blocks both meshes' egress uses, and the reading back of an egress
rule (`admits`) that both meshes' egress matrices share.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.edges import callee_ports
from plan.objects import metadata
from read.graph import Egress, Service, ServiceGraph
from read.settings import PolicySettings

NETWORK_POLICY_API = "networking.k8s.io/v1"
DEFAULT_DENY = "mtls-mesh-default-deny"


@dataclass(frozen=True)
class MeshWire:
    """What one mesh's proxies put on the wire, as a NetworkPolicy sees it (ports after a Service's translation)."""

    # Names the policy that lets proxies reach the control plane: mtls-mesh-allow-<name>.
    name: str
    # The pods carrying the mesh's proxy ({}: every pod of a meshed namespace); the mesh's own allowances select them.
    proxied_pods: Mapping[str, Any]
    # What every proxy calls: (namespace, pod ports), one egress rule each.
    control_plane: tuple[tuple[str, tuple[int, ...]], ...]
    # Where Prometheus scrapes a proxied pod.
    scrape_ports: tuple[int, ...]
    # Ports the kubelet reaches on a proxied pod beyond the application's (probes the mesh rewrites): () for none.
    kubelet_ports: tuple[int, ...] = ()
    # Ports a meshed server receives from meshed clients beside the application port (a proxy's inbound port that
    # clients dial directly): () when clients dial only the application port.
    proxy_inbound_ports: tuple[int, ...] = ()


def namespace_peer(namespace: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def peer(service: Service) -> dict[str, Any]:
    return {**namespace_peer(service.namespace), "podSelector": {"matchLabels": service.selector_labels}}


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]


def network_policy(name: str, namespace: str, pod_selector: Mapping[str, Any], *, ingress: list | None = None,
                   egress: list | None = None, types: Iterable[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": dict(pod_selector)}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    spec["policyTypes"] = list(types) if types is not None else (
        (["Ingress"] if ingress is not None else []) + (["Egress"] if egress is not None else []))
    return {"apiVersion": NETWORK_POLICY_API, "kind": "NetworkPolicy", "metadata": metadata(name, namespace), "spec": spec}


def network_policies(graph: ServiceGraph, namespace: str, access: PolicySettings, wire: MeshWire) -> list[dict[str, Any]]:
    """Default deny for one `deny` namespace, and the allowances that let the mesh (and only the graph's edges) work:
    the kubelet's and Prometheus' ports on proxied pods, DNS and the control plane out, and per workload one policy
    holding both directions (its callers in, its callees and external destinations out), on the application ports
    plus whatever the mesh's proxies add on the wire."""
    restrict_egress = access.network_policy_egress
    types = ["Ingress", "Egress"] if restrict_egress else ["Ingress"]
    proxied = {"matchLabels": dict(wire.proxied_pods)} if wire.proxied_pods else {}
    policies = [network_policy(DEFAULT_DENY, namespace, {}, types=types)]
    if wire.kubelet_ports:
        policies.append(network_policy("mtls-mesh-allow-kubelet", namespace, proxied, ingress=[{
            "from": [{"ipBlock": {"cidr": cidr}} for cidr in access.kubelet_networks],
            "ports": tcp(*wire.kubelet_ports)}]))
    scrapers = [namespace_peer(ns) for ns in sorted({ns for _, ns in access.prometheus_service_accounts})]
    scrapers += [{"ipBlock": {"cidr": cidr}} for cidr in access.prometheus_networks]
    if scrapers:
        policies.append(network_policy("mtls-mesh-allow-prometheus", namespace, proxied,
                                       ingress=[{"from": scrapers, "ports": tcp(*wire.scrape_ports)}]))
    if restrict_egress:
        policies.append(network_policy("mtls-mesh-allow-dns", namespace, {}, egress=[{
            "to": [{**namespace_peer("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]))
        policies.append(network_policy(f"mtls-mesh-allow-{wire.name}", namespace, proxied, egress=[
            {"to": [namespace_peer(ns)], "ports": tcp(*ports)} for ns, ports in wire.control_plane]))

    for service in graph.services_in(namespace):
        meshed = graph.is_meshed(service)
        rules = []
        for caller in service.callers:
            numbers = [service.port(p).number for p in (caller.ports or [p.name for p in service.ports])]
            rules.append({"from": [peer(graph.services[caller.service])],
                          "ports": tcp(*numbers, *(wire.proxy_inbound_ports if meshed else ()))})
        out = []
        if restrict_egress:
            for callee, port_numbers in callee_ports(graph, service).items():
                target = graph.services[callee]
                extra = wire.proxy_inbound_ports if graph.is_meshed(target) and meshed else ()
                out.append({"to": [peer(target)], "ports": tcp(*port_numbers, *extra)})
            for egress in service.egress:
                blocks = egress_blocks(egress, access)
                if blocks:  # an empty `to` would admit every destination (NetworkPolicyEgressRule)
                    out.append({"to": blocks, "ports": tcp(*egress.ports)})
        if rules or out:
            policies.append(network_policy(f"mtls-mesh-{service.name}", namespace,
                                           {"matchLabels": service.selector_labels},
                                           ingress=rules or None, egress=out or None))
    return policies


def egress_blocks(egress: Egress, access: PolicySettings) -> list[dict[str, Any]]:
    blocks = [{"ipBlock": {"cidr": cidr}} for cidr in egress.cidrs]
    if egress.hosts:
        # A NetworkPolicy cannot name hosts: it opens the ports to outside the cluster, and the mesh narrows to the hosts.
        blocks += [{"ipBlock": block} for block in outside_cluster(access)]
    return blocks


def _split_networks(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    v4, v6 = [], []
    for cidr in cidrs:
        (v4 if _ip_version(cidr) == 4 else v6).append(cidr)
    return v4, v6


@functools.lru_cache(maxsize=4096)
def _ip_version(cidr: str) -> int:
    """Every namespace's NetworkPolicies carve the same cluster networks out of 0.0.0.0/0 and ::/0: parsed once each
    (55,000 parses, 3.7 s, at 10,000 namespaces before)."""
    return ipaddress.ip_network(cidr).version


def outside_cluster(access: PolicySettings, also_except: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every address outside the cluster networks (and outside `also_except`), as CIDR-with-exceptions blocks.

    A family whose exceptions together cover all of it has no block: nothing of it is outside. Written anyway, an
    except equal to its cidr is refused by the API server in a NetworkPolicy (kubernetes/kubernetes@019c5dc5
    pkg/apis/networking/validation/validation.go, ValidateIPBlock: "must be a strict subset of `cidr`"), and
    `0.0.0.0/0 except 0.0.0.0/1, 128.0.0.0/1` is a block of no address that reads like one of all. The settings
    refuse clusterNetworks that cover a family (read/settings.py, coverage_problem), so only the graph's own egress
    CIDRs can complete the cover; the result may then be empty, which callers handle."""
    blocks = []
    for cidr, excepts in zip(("0.0.0.0/0", "::/0"), _split_networks([*access.cluster_networks, *also_except])):
        if excepts and _covers_everything(tuple(sorted(set(excepts)))):
            continue
        blocks.append({"cidr": cidr, **({"except": excepts} if excepts else {})})
    return blocks


@functools.lru_cache(maxsize=4096)
def _covers_everything(cidrs: tuple[str, ...]) -> bool:
    """Whether networks of one family merge into all of it (every namespace carves out the same ones: merged once)."""
    merged = list(ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in cidrs))
    return len(merged) == 1 and merged[0].prefixlen == 0


# A matrix of 10,000 services checks a few hundred thousand (rule, destination) pairs over a few thousand networks:
# parse each network once.
_network = functools.lru_cache(maxsize=65_536)(ipaddress.ip_network)


def admits(rule: Mapping[str, Any], destination: str | None, port: int) -> bool:
    """Whether a NetworkPolicy egress rule lets traffic out to `destination` (a CIDR; None: some address outside the
    cluster, for a host name) on `port`."""
    if not any(p.get("port") == port for p in rule.get("ports", [])):
        return False
    for to in rule.get("to", []):
        block = to.get("ipBlock")
        if not block:
            continue
        network = _network(block["cidr"])
        if destination is None:
            if network.prefixlen == 0:
                return True
            continue
        target = _network(destination)
        if target.version == network.version and target.subnet_of(network) and not any(
                target.overlaps(_network(e)) for e in block.get("except", [])):
            return True
    return False
