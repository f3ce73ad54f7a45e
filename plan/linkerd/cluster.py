"""One cluster of a multi-cluster Linkerd environment, compiled from the settings and the graph (docs/multicluster.md):
the graph as this cluster runs it (`cluster_view`), this stack's `multicluster.Cluster` (its peers from their stack
files, its exports and their cross-cluster callers from the graph: a caller in any other cluster may reach every copy of an
exported callee), the identities each exported service's Servers
admit beyond the local callers (`remote_identities`), the access matrix's names for cross-cluster callers, and the
`MulticlusterPlan` registration needs. Plain data: no Pulumi.

With equal trust domains (the settings require them) `sa.ns` is one identity in every cluster, so a pod-to-pod or
federated caller from a peer is admitted by the very identity a local caller would be; a gateway-mode caller is seen
as the callee cluster's gateway (plan/linkerd/multicluster.py `callee_identities`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from plan.linkerd import multicluster as mc
from plan.linkerd import multicluster_network
from read.errors import Problem
from read.graph import ServiceGraph, mesh_identity
from read.settings import Settings

Object = dict[str, Any]


@dataclass(frozen=True)
class PeerOutput:
    """A value only the peer stack's outputs hold once it applied (its `multicluster` output's `key`), in the place of
    an object's field: registration reads the peer's outputs and puts the value there (as plan/linkerd/multicluster.py
    `Kubeconfig` stands for the credentials, which also need the peer's CA and secret token)."""

    stack: str
    key: str


def cluster_view(graph: ServiceGraph, cluster: str) -> ServiceGraph:
    """The graph as `cluster` runs it: its services (each with the callers that run here too: the others are
    authorized by `remote_identities`), the edges among them, and the namespaces that hold one of them, hold no
    service at all, or hold a service of another cluster that a local service calls across a link: the mirror
    controller creates the mirror Service in the exported Service's namespace and does not create namespaces
    (linkerd-multicluster values.yaml `enableNamespaceCreation: false`)."""
    local = {key: s for key, s in graph.services.items() if s.runs_in(cluster)}
    services = {key: replace(s, callers=tuple(c for c in s.callers if c.service in local)) for key, s in local.items()}
    wanted = {s.namespace for s in local.values()}
    for service in graph.services.values():
        if service.key not in local and any(c.service in local for c in service.callers):
            wanted.add(service.namespace)
    holding = {s.namespace for s in graph.services.values()}
    namespaces = {name: ns for name, ns in graph.namespaces.items() if name in wanted or name not in holding}
    edges = frozenset(edge for edge in graph.edges() if edge[0] in local and edge[1] in local)
    return ServiceGraph(graph.source, namespaces, services, edges, fragments=graph.fragments, origins=graph.origins,
                        clusters=graph.clusters)


def build_cluster(settings: Settings) -> mc.Cluster:
    """This stack's cluster: its peers (from their stack files; gateway addresses come at registration, see
    `PeerOutput`) and its exported services with their cross-cluster callers: each allowed caller, from every other
    cluster it runs in."""
    multicluster = settings.multicluster
    assert multicluster is not None
    graph = settings.graph
    gateway_clusters = {c for s in graph.services.values() if s.export == mc.GATEWAY for c in s.clusters}
    peers = tuple(mc.Peer(
        name=p.cluster, trust_domain=p.trust_domain, api_server=p.api_server, networks=p.networks,
        # A stand-in: link() writes a gateway's fields only for a peer that has one; `links` puts the marker there.
        gateway_addresses=(f"<gateway of {p.stack}>",) if p.cluster in gateway_clusters else ())
        for p in multicluster.peers)
    exports = []
    for service in graph.services.values():
        if service.export is None or not service.runs_in(multicluster.cluster):
            continue
        callers = []
        for caller in service.callers:
            source = graph.services[caller.service]
            # Allow edges are cluster-agnostic: the caller may reach every copy of an exported callee, from every
            # other cluster it runs in (where the callee also runs, it reaches the local copy too).
            for away in source.clusters:
                if away != multicluster.cluster:
                    callers.append(mc.Caller(away, source.namespace, source.service_account, caller.ports))
        exports.append(mc.Export(service.namespace, service.name, service.export, tuple(p.name for p in service.ports),
                                 tuple(callers), where=f"services.{service.key}"))
    return mc.Cluster(multicluster.cluster, settings.trust_domain, peers, tuple(exports), cni=settings.linkerd.cni,
                      high_availability=settings.linkerd.high_availability)


def cluster_problems(settings: Settings, cluster: mc.Cluster) -> list[Problem]:
    """The builders' refusals (multicluster.cluster_problems, export_problems), each under the graph file."""
    where = settings.graph.where
    return [Problem(where(p.where) if p.where.startswith("services.") else f"mtls-mesh:{p.where}", p.what, p.fix)
            for p in (*mc.cluster_problems(cluster), *mc.export_problems(cluster))]


def remote_identities(settings: Settings, cluster: mc.Cluster) -> dict[tuple[str, str], frozenset[str]]:
    """(service key, port name) -> what its Server admits for cross-cluster callers beyond the local ones: each
    caller's own identity pod to pod or federated, this cluster's gateway in gateway mode."""
    by_name = {(s.namespace, s.name): s.key for s in settings.graph.services.values()}
    found: dict[tuple[str, str], frozenset[str]] = {}
    for export in cluster.exports:
        for port in export.ports:
            identities = mc.callee_identities(cluster, export, port) if all(
                cluster.peer(c.cluster) for c in export.callers) else []
            if identities:
                found[(by_name[(export.namespace, export.name)], port)] = frozenset(identities)
    return found


def remote_names(settings: Settings, cluster: mc.Cluster) -> dict[str, list[str]]:
    """Identity -> how the access matrix names the cross-cluster callers it stands for: `<namespace>/<service>@<cluster>`
    for a caller that keeps its identity, and `<namespace>/<service>@<cluster> via gateway` for each one this cluster's
    gateway admits (the gateway's identity stands for them all)."""
    names: dict[str, list[str]] = {}
    gateway = mc.gateway_identity(cluster.trust_domain, cluster.linkerd_namespace)
    for export in cluster.exports:
        for caller in export.callers:
            label = f"{caller.namespace}/{_caller_key(settings, caller)}@{caller.cluster}"
            if export.mode == mc.GATEWAY:
                names.setdefault(gateway, []).append(f"{label} via gateway")
            else:
                names.setdefault(mesh_identity(caller.service_account, caller.namespace, cluster.trust_domain),
                                 []).append(label)
    return {identity: sorted(set(labels)) for identity, labels in names.items()}


def _caller_key(settings: Settings, caller: mc.Caller) -> str:
    return next((s.key for s in settings.graph.services.values()
                 if s.namespace == caller.namespace and s.service_account == caller.service_account), caller.service_account)


@dataclass(frozen=True)
class MulticlusterPlan:
    """What registration (components/linkerd_multicluster.py) needs for this stack's cluster; None on the MeshPlan of a
    single-cluster stack.

    - `cluster`: the `multicluster.Cluster` every object below is built from (peers, exports, their callers);
    - `peer_stacks`: peer cluster name -> its stack, for the StackReferences that read its `multicluster` output;
      `mesh_root_stack`: the stack owning the root ("" for this one);
    - `namespace` and `chart_values`: the linkerd-multicluster release (chart `multicluster.CHART`);
    - `links`: per peer, its two credentials Secrets, whose `data.kubeconfig` is a `multicluster.Kubeconfig` marker
      (call `.data(ca_pem, token)` inside Output.apply with the peer's API server CA and remote-access token), then its
      Link, whose `spec.gatewayAddress` is a `PeerOutput(stack, "gatewayAddresses")` marker for a peer with a gateway
      (join the addresses with ',');
    - `gateway_policy`: the forced server-side-apply patches of the chart's `any-meshed` and `source-cluster`, applied
      after the release (empty without gateway exports);
    - `peer_probes`, `prometheus`: the authorizations of the peers' probes and the program's Prometheus;
    - `pod_monitor`, `prometheus_rule` (None without alerts): the link-health metrics and alerts;
    - `exports`: the Services to label for export, `(namespace, name) -> labels` (multicluster.EXPORT_LABELS);
    - `network_policies`: the gateway pods' NetworkPolicy in linkerd-multicluster (plan/linkerd/multicluster_network.py
      `gateway_policies`), whole;
    - `gateway_egress`: the callers' NetworkPolicies toward the peers' gateways, in their graph namespaces, each rule's
      `to` a `multicluster_network.GatewayAddresses` marker: register `multicluster_network.fill_gateway_egress(policy,
      {peer stack: its gatewayAddresses output})` inside Output.apply, nothing when it returns None, and only those of
      the namespaces this stack registers (a policy shard registers its own: plan/shards.py `scoped_namespaces`).
      The callers' other cross-cluster NetworkPolicies are plain, in their namespaces' `policy` (MeshPlan.namespaces).
    """

    cluster: mc.Cluster
    peer_stacks: Mapping[str, str]
    mesh_root_stack: str
    namespace: Object
    chart_values: Object
    links: tuple[Object, ...]
    gateway_policy: tuple[Object, ...]
    peer_probes: tuple[Object, ...]
    prometheus: tuple[Object, ...]
    pod_monitor: Object
    prometheus_rule: Object | None
    exports: Mapping[tuple[str, str], Mapping[str, str]]
    network_policies: tuple[Object, ...] = ()
    gateway_egress: tuple[Object, ...] = ()

    def objects(self) -> list[Object]:
        """The objects whose whole content the plan holds (not the markers' Secrets, Links and gateway egress, nor the
        patches)."""
        return [self.namespace, *self.peer_probes, *self.prometheus, self.pod_monitor,
                *([self.prometheus_rule] if self.prometheus_rule is not None else []), *self.network_policies]


def multicluster_plan(settings: Settings, cluster: mc.Cluster) -> MulticlusterPlan:
    multicluster = settings.multicluster
    assert multicluster is not None
    stacks = {p.cluster: p.stack for p in multicluster.peers}
    links = []
    for obj in mc.link_objects(cluster):
        if obj["kind"] == "Link" and "gatewayAddress" in obj["spec"]:
            obj["spec"]["gatewayAddress"] = PeerOutput(stacks[obj["spec"]["targetClusterName"]], "gatewayAddresses")
        links.append(obj)
    monitoring = settings.monitoring
    return MulticlusterPlan(
        cluster=cluster, peer_stacks=stacks, mesh_root_stack=multicluster.mesh_root_stack,
        namespace=mc.namespace_object(cluster.cni), chart_values=mc.chart_values(cluster), links=tuple(links),
        gateway_policy=tuple(mc.gateway_policy_objects(cluster, settings.linkerd.chart_version)),
        peer_probes=tuple(mc.peer_probe_objects(cluster)),
        prometheus=tuple(mc.prometheus_objects(settings.policy.prometheus_service_accounts,
                                               settings.policy.prometheus_networks, cluster.trust_domain)),
        pod_monitor=mc.pod_monitor(monitoring.labels),
        prometheus_rule=mc.prometheus_rule(cluster, monitoring.labels) if monitoring.enabled else None,
        exports={(e.namespace, e.name): dict(mc.EXPORT_LABELS[e.mode]) for e in cluster.exports},
        network_policies=tuple(multicluster_network.gateway_policies(settings, cluster)),
        gateway_egress=tuple(multicluster_network.gateway_egress(settings, cluster)))
