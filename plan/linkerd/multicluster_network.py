"""The network layer of cross-cluster traffic for one cluster stack (#33, docs/multicluster.md "NetworkPolicies
across clusters"): the NetworkPolicies that admit, beside a `deny` namespace's own (plan/linkerd/authorization.py
`network_policies`, left untouched), exactly the cross-cluster calls the mesh layer authorizes. Plain data.

NetworkPolicies add up: a pod selected by several admits what any of them admits, so each workload with cross-cluster
traffic gets one more policy, `mtls-mesh-<service>-multicluster`, beside its `mtls-mesh-<service>`:
- ingress of an exported service, on exactly the exported ports its cross-cluster callers may use (and the proxy's
  inbound port): pod to pod or federated from each caller cluster's pod network (the peer's `clusterNetworks`, read
  from its stack file: a namespace selector selects this cluster's namespaces only); in gateway mode from this
  cluster's gateway pods (namespace linkerd-multicluster, label `app: linkerd-gateway`, [LC] templates/gateway.yaml
  Deployment `spec.selector`), since the gateway makes the call;
- egress of a caller (with `networkPolicyEgress`) to the pod network of each peer running one of its callees pod to
  pod or federated, on the callee's ports and the inbound port.

A caller's way to a peer's gateway (`mtls-mesh-<service>-gateways`, port 4143 only: the callers' proxies connect to
the gateway's `mc-gateway` port; its probe port 4191 is probed by our mirror controller, whose pods no policy of ours
selects) needs the gateway's addresses, which exist only once the peer has applied (its `multicluster` output
`gatewayAddresses`, the Link's `gatewayAddress`). The peer's declared networks are not them: `clusterNetworks` are its
pod and service networks, while the gateway is reached at its LoadBalancer's address, outside them as a rule. So those
policies carry a `GatewayAddresses` marker in place of their `to`, which registration fills (`fill_gateway_egress`)
from the same stack output the Link's `PeerOutput` is filled from: an IP address becomes a /32 or /128 block; a host
name (a cloud load balancer's) cannot be named by a NetworkPolicy, so, as for the graph's egress hosts
(authorization.py `_egress_blocks`), port 4143 opens to everything outside this cluster's networks and the mesh narrows
(the proxy reaches the gateway only through the mirror's endpoints, as the Link's gateway identity).

The gateway's own pods (`mtls-mesh-gateway` in linkerd-multicluster, with `networkPolicies` and a gateway) admit the
linked peers' networks on 4143 and 4191 (as the chart's `loadBalancerSourceRanges` and the patched `source-cluster`
do) and the program's Prometheus on 4191; with `networkPolicyEgress` they reach DNS, the control plane and exactly the
ports of the local services exported in gateway mode that have callers, so the gateway cannot forward to anything else
even where a namespace's phase would admit its identity (audit, all-authenticated, ...). The mirror controllers in
that namespace are not selected: they reach their peers' API servers, named by host.

[LC]: the pinned chart ../shared/upstream/charts/linkerd2-edge-26.8.3/multicluster/charts/linkerd-multicluster.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from plan.linkerd import multicluster as mc
from plan.linkerd.authorization import (CONTROL_PLANE_PORTS, PROXY_ADMIN_PORT, PROXY_INBOUND_PORT, PROXY_TAP_PORT,
                                        effective_policy)
from plan.linkerd.namespaces import LINKERD_NAMESPACE
from plan.network_policy import NETWORK_POLICY_API, outside_cluster
from plan.objects import metadata
from read.graph import Service, ServiceGraph
from read.settings import PolicySettings, Settings

Object = dict[str, Any]

NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# [LC] templates/gateway.yaml: the gateway Deployment selects its pods by `app: {{.Values.gateway.name}}`.
GATEWAY_POD_LABELS = {"app": mc.GATEWAY_NAME}
GATEWAY_POLICY = "mtls-mesh-gateway"
WORKLOAD_SUFFIX = "-multicluster"
GATEWAYS_SUFFIX = "-gateways"


def workload_policy_name(service: Service) -> str:
    return f"mtls-mesh-{service.name}{WORKLOAD_SUFFIX}"


def gateways_policy_name(service: Service) -> str:
    return f"mtls-mesh-{service.name}{GATEWAYS_SUFFIX}"


@dataclass(frozen=True)
class GatewayAddresses:
    """Stands for the `to` of an egress rule toward the gateway of the peer `cluster` (stack `stack`): its addresses are
    the peer's `multicluster` output `gatewayAddresses`. `outside` is what a host name among them opens instead
    (everything outside this cluster's networks)."""

    stack: str
    cluster: str
    # (cidr, except) per block of authorization.outside_cluster, as tuples: the marker is hashable plain data.
    outside: tuple[tuple[str, tuple[str, ...]], ...]

    def blocks(self, addresses: Iterable[str]) -> list[Object]:
        found: list[Object] = []
        for address in addresses:
            address = address.strip()
            if not address:
                continue
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                blocks = [{"ipBlock": {"cidr": cidr, **({"except": list(excepts)} if excepts else {})}}
                          for cidr, excepts in self.outside]
            else:
                blocks = [{"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}]
            found += [b for b in blocks if b not in found]
        return found


def fill_gateway_egress(policy: Object, addresses: Mapping[str, Sequence[str]]) -> Object | None:
    """A `gateway_egress` policy with each rule's `GatewayAddresses` marker replaced by the blocks of that peer's
    gateway addresses (`addresses`: peer stack -> its `gatewayAddresses` output). A rule whose peer has no address yet
    is left out (an empty `to` would admit every destination); None when no rule is left: register nothing until the
    peer has applied."""
    rules = []
    for rule in policy["spec"]["egress"]:
        marker = rule["to"]
        blocks = marker.blocks(addresses.get(marker.stack, ())) if isinstance(marker, GatewayAddresses) else marker
        if blocks:
            rules.append({**rule, "to": blocks})
    if not rules:
        return None
    return {**policy, "spec": {**policy["spec"], "egress": rules}}


def _tcp(*ports: int) -> list[Object]:
    return [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]


def _policy(name: str, namespace: str, labels: Mapping[str, str], *, ingress: list | None = None,
            egress: list | None = None) -> Object:
    spec: Object = {"podSelector": {"matchLabels": dict(labels)}}
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    spec["policyTypes"] = (["Ingress"] if ingress else []) + (["Egress"] if egress else [])
    return {"apiVersion": NETWORK_POLICY_API, "kind": "NetworkPolicy", "metadata": metadata(name, namespace),
            "spec": spec}


def _gateway_pods() -> Object:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: mc.NAMESPACE}},
            "podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)}}


def _numbers(service: Service, ports: Iterable[str], meshed: bool) -> list[int]:
    return [*(service.port(p).number for p in ports), *([PROXY_INBOUND_PORT] if meshed else [])]


@dataclass(frozen=True)
class _Scope:
    """What decides where the policies go: the full graph, this cluster, its peers' networks and stacks, the phases."""

    graph: ServiceGraph
    cluster: mc.Cluster
    access: PolicySettings
    phase: Mapping[str, str]
    stacks: Mapping[str, str]

    def locks_ingress(self, namespace: str) -> bool:
        return self.access.network_policies and self.phase.get(namespace) == "deny"

    def locks_egress(self, namespace: str) -> bool:
        return self.locks_ingress(namespace) and self.access.network_policy_egress

    def local(self) -> list[Service]:
        return [s for s in self.graph.services.values() if s.runs_in(self.cluster.name)
                and self.graph.namespaces[s.namespace].meshed]


def _scope(settings: Settings, cluster: mc.Cluster) -> _Scope:
    graph = settings.graph
    multicluster = settings.multicluster
    stacks = {p.cluster: p.stack for p in multicluster.peers} if multicluster is not None else {}
    return _Scope(graph, cluster, effective_policy(settings),
                  {ns.name: settings.rollout.policy_for(ns.name) for ns in graph.meshed_namespaces}, stacks)


def _ingress(scope: _Scope, service: Service) -> list[Object]:
    """The exported service's cross-cluster callers, by where their connections come from."""
    export = next((e for e in scope.cluster.exports if (e.namespace, e.name) == (service.namespace, service.name)),
                  None)
    if export is None or not export.callers:
        return []
    meshed = scope.graph.is_meshed(service)
    rules = []
    if export.mode == mc.GATEWAY:
        ports = {p for c in export.callers for p in (c.ports or export.ports)}
        rules.append({"from": [_gateway_pods()], "ports": _tcp(*_numbers(service, sorted(ports), meshed))})
        return rules
    for source in sorted({c.cluster for c in export.callers}):
        peer = scope.cluster.peer(source)
        if peer is None or not peer.networks:
            continue  # export_problems refuses a caller of no peer; a peer always declares networks (a default)
        ports = {p for c in export.callers if c.cluster == source for p in (c.ports or export.ports)}
        rules.append({"from": [{"ipBlock": {"cidr": cidr}} for cidr in peer.networks],
                      "ports": _tcp(*_numbers(service, sorted(ports), meshed))})
    return rules


def _remote_callees(scope: _Scope, caller: Service) -> list[tuple[Service, str, tuple[str, ...]]]:
    """(callee, peer cluster, port names) for every copy of an exported callee in a linked peer."""
    found = []
    for callee_key, ports in sorted(scope.graph.callees.get(caller.key, {}).items()):
        callee = scope.graph.services[callee_key]
        if callee.export is None:
            continue
        for away in callee.clusters:
            if away != scope.cluster.name and scope.cluster.peer(away) is not None:
                found.append((callee, away, ports))
    return found


def workload_policies(settings: Settings, cluster: mc.Cluster) -> list[Object]:
    """`mtls-mesh-<service>-multicluster` per local workload of a `deny` namespace with cross-cluster traffic the
    policies can name now: its cross-cluster callers in (exported services), its pod-to-pod or federated callees in a
    peer out (with `networkPolicyEgress`). Registered with the namespace's other policy objects."""
    scope = _scope(settings, cluster)
    policies = []
    for service in scope.local():
        ingress = _ingress(scope, service) if scope.locks_ingress(service.namespace) else []
        egress = []
        if scope.locks_egress(service.namespace):
            by_peer: dict[str, set[int]] = {}
            for callee, away, ports in _remote_callees(scope, service):
                if callee.export != mc.GATEWAY:
                    meshed = scope.graph.is_meshed(callee) and scope.graph.is_meshed(service)
                    by_peer.setdefault(away, set()).update(_numbers(callee, ports, meshed))
            for away, numbers in sorted(by_peer.items()):
                networks = scope.cluster.peer(away).networks
                if networks:
                    egress.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in networks], "ports": _tcp(*numbers)})
        if ingress or egress:
            policies.append(_policy(workload_policy_name(service), service.namespace, service.selector_labels,
                                    ingress=ingress, egress=egress))
    return policies


def gateway_egress(settings: Settings, cluster: mc.Cluster) -> list[Object]:
    """`mtls-mesh-<service>-gateways` per local caller of a `deny` namespace (with `networkPolicyEgress`) that calls
    a service exported in gateway mode from a peer: port 4143 to each such peer's gateway, whose addresses a
    `GatewayAddresses` marker stands for (`fill_gateway_egress`)."""
    scope = _scope(settings, cluster)
    outside = tuple((block["cidr"], tuple(block.get("except", ()))) for block in outside_cluster(scope.access))
    policies = []
    for service in scope.local():
        if not scope.locks_egress(service.namespace):
            continue
        peers = sorted({away for callee, away, _ in _remote_callees(scope, service) if callee.export == mc.GATEWAY})
        rules = [{"to": GatewayAddresses(scope.stacks.get(away, away), away, outside),
                  "ports": _tcp(mc.GATEWAY_PORT)} for away in peers]
        if rules:
            policies.append(_policy(gateways_policy_name(service), service.namespace, service.selector_labels,
                                    egress=rules))
    return policies


def gateway_policies(settings: Settings, cluster: mc.Cluster) -> list[Object]:
    """`mtls-mesh-gateway`: the gateway pods' own NetworkPolicy, with `networkPolicies` and a gateway export."""
    access = effective_policy(settings)
    if not access.network_policies or not cluster.gateway_exports:
        return []
    ingress = []
    networks = cluster.peer_networks
    if networks:
        ingress.append({"from": [{"ipBlock": {"cidr": cidr}} for cidr in networks],
                        "ports": _tcp(mc.GATEWAY_PORT, mc.PROBE_PORT)})
    scrapers: list[Object] = [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: ns}}}
                              for ns in sorted({ns for _, ns in access.prometheus_service_accounts})]
    scrapers += [{"ipBlock": {"cidr": cidr}} for cidr in access.prometheus_networks]
    if scrapers and ingress:
        ports = (PROXY_ADMIN_PORT, PROXY_TAP_PORT) if settings.linkerd.viz else (PROXY_ADMIN_PORT,)
        ingress.append({"from": scrapers, "ports": _tcp(*ports)})
    egress = []
    if access.network_policy_egress:
        graph = settings.graph
        egress += [
            {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
                     "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: LINKERD_NAMESPACE}}}],
             "ports": _tcp(*CONTROL_PLANE_PORTS)},
        ]
        by_name = {(s.namespace, s.name): s for s in graph.services.values() if s.runs_in(cluster.name)}
        for export in cluster.gateway_exports:
            service = by_name.get((export.namespace, export.name))
            if service is None or not export.callers:
                continue
            ports = sorted({p for c in export.callers for p in (c.ports or export.ports)})
            egress.append({"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: service.namespace}},
                                   "podSelector": {"matchLabels": service.selector_labels}}],
                           "ports": _tcp(*_numbers(service, ports, graph.is_meshed(service)))})
    if not ingress and not egress:
        return []
    return [_policy(GATEWAY_POLICY, mc.NAMESPACE, GATEWAY_POD_LABELS, ingress=ingress, egress=egress)]
