"""Who can reach what across clusters, computed from the emitted objects of every cluster stack alone (a sibling of
the single-cluster check in tests/test_authorization.py): per callee cluster, the Servers and the identities their
AuthorizationPolicies' MeshTLSAuthentications admit, which Services are exported and how (the plan's export labels),
and the gateway's narrowed policy (the patched `any-meshed` identities and `source-cluster` networks).

- Pod to pod or federated: a workload of a peer cluster reaches a port of an exported service whose Server admits its
  own identity.
- Through the gateway: the gateway forwards to any Server that admits the gateway's identity (counted whether or not
  the service is gateway-exported: what the gateway may forward, not only what is mirrored), for the identities its
  `any-meshed` admits, arriving from networks its `source-cluster` admits.

The placement (which workloads run in which cluster) is the graph's; the access is the objects'."""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

from plan.linkerd import multicluster as mc
from plan.linkerd.authorization import port_object_name
from read.graph import ServiceGraph, mesh_identity

EXPORTED_DIRECT = ({mc.EXPORTED: "remote-discovery"}, {mc.FEDERATED: "member"})
EXPORTED_GATEWAY = {mc.EXPORTED: "true"}


def _admitted(policy: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(namespace, Server) -> identities its AuthorizationPolicies admit by MeshTLSAuthentication."""
    objects = list(policy)
    authn = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"].get("identities", [])
             for o in objects if o["kind"] == "MeshTLSAuthentication"}
    admitted: dict[tuple[str, str], set[str]] = {}
    for o in objects:
        if o["kind"] == "AuthorizationPolicy" and o["spec"]["targetRef"]["kind"] == "Server":
            ns = o["metadata"]["namespace"]
            for ref in o["spec"]["requiredAuthenticationRefs"]:
                if ref["kind"] == "MeshTLSAuthentication":
                    admitted.setdefault((ns, o["spec"]["targetRef"]["name"]), set()).update(authn.get((ns, ref["name"]), ()))
    return admitted


def cross_cluster_access(plans: Mapping[str, Any], graph: ServiceGraph, trust_domain: str) -> set[tuple[str, ...]]:
    """(caller key, caller cluster, callee key, callee cluster, port) for every cross-cluster call the objects of the
    cluster plans (cluster -> MeshPlan) admit."""
    identity_of = {s.key: mesh_identity(s.service_account, s.namespace, trust_domain) for s in graph.services.values()}
    server_of = {(s.namespace, port_object_name(s, p.name)): (s.key, p.name)
                 for s in graph.services.values() for p in s.ports}
    found: set[tuple[str, ...]] = set()
    for callee_cluster, plan in plans.items():
        multicluster = plan.multicluster
        admitted = _admitted(plan.policy_objects())
        gateway_id = mc.gateway_identity(multicluster.cluster.trust_domain)
        patches = {o["kind"]: o for o in multicluster.gateway_policy}
        gateway_ids = set(patches.get("MeshTLSAuthentication", {}).get("spec", {}).get("identities", []))
        gateway_nets = [ipaddress.ip_network(n["cidr"]) for n in
                        patches.get("NetworkAuthentication", {}).get("spec", {}).get("networks", [])]
        exports = {ns_name: labels for ns_name, labels in multicluster.exports.items()}
        peers = {p.name: p for p in multicluster.cluster.peers}
        for (namespace, server), identities in admitted.items():
            callee, port = server_of[(namespace, server)]
            service = graph.services[callee]
            labels = exports.get((service.namespace, service.name))
            for caller_cluster, caller_plan in plans.items():
                if caller_cluster == callee_cluster or caller_cluster not in peers or \
                        callee_cluster not in {p.name for p in caller_plan.multicluster.cluster.peers}:
                    continue
                networks = [ipaddress.ip_network(n) for n in peers[caller_cluster].networks]
                through_gateway = gateway_id in identities and networks and all(
                    any(n.subnet_of(g) for g in gateway_nets if g.version == n.version) for n in networks)
                for caller in graph.services.values():
                    if not caller.runs_in(caller_cluster):
                        continue
                    ident = identity_of[caller.key]
                    direct = labels in EXPORTED_DIRECT and ident in identities
                    gateway = through_gateway and ident in gateway_ids
                    if direct or gateway:
                        found.add((caller.key, caller_cluster, callee, callee_cluster, port))
    return found


def graph_cross_edges(graph: ServiceGraph, peers: Mapping[str, Iterable[str]]) -> set[tuple[str, ...]]:
    """The graph's cross-cluster edges: an allowed (caller, callee, port), from every cluster the caller runs in to
    every other cluster, linked with it, where the callee runs exported."""
    found = set()
    for caller, callee, port in graph.edges():
        source, target = graph.services[caller], graph.services[callee]
        if target.export is None:
            continue
        for c in source.clusters:
            for d in target.clusters:
                if c != d and d in peers.get(c, ()):
                    found.add((caller, c, callee, d, port))
    return found
