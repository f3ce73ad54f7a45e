"""Who can reach what across clusters, computed from the emitted objects of every cluster stack alone (a sibling of
the single-cluster checks in tests/test_authorization.py and of the NetworkPolicy evaluator in
tests/istio_conformance.py). Every workload of the graph is a pod in each cluster it runs in, with an address in that
cluster's `clusterNetworks` (read from the peers' view of it); each cluster has a gateway pod and a gateway address
(a TEST-NET-1 address that fills the callers' `GatewayAddresses` markers, as registration fills them from the peer's
outputs).

Mesh layer, on the callee cluster's objects:
- a Server admits an identity its AuthorizationPolicies' MeshTLSAuthentications name, or, failing those, what its
  `accessPolicy` admits by default (CRD policy_server.yaml: "Default access policy to apply when the traffic doesn't
  match any of the policy rules"; linkerd/website linkerd.io/content/2.12/reference/authorization-policy.md):
  `audit` and `all-unauthenticated` anyone, `all-authenticated` any meshed client of any cluster,
  `cluster-authenticated` a meshed one from the callee cluster's networks, `cluster-unauthenticated` anyone from them,
  `deny` nobody;
- pod to pod or federated: a workload of a linked peer reaches a port of a Service exported that way (the mirror) whose
  Server admits it, arriving from its own pod's address;
- through the gateway: the gateway forwards to any Server that admits the gateway (its identity, arriving from the
  gateway pod, inside the cluster), whether or not the service is gateway-exported (what the gateway may forward, not
  only what is mirrored), for the identities its patched `any-meshed` admits, arriving from networks its patched
  `source-cluster` admits.

Network layer (with `network`), NetworkPolicy networking.k8s.io/v1: a pod selected by a policy of a direction is
isolated in it and admits what one of those policies' rules admits (ports absent: every port; peers absent: everyone).
A namespace or pod selector selects pods of the policy's own cluster only; an ipBlock matches an address, wherever it
is. A call needs the caller's egress and the callee's ingress on the callee's port; through the gateway: the caller's
egress to the peer's gateway address on 4143, the gateway's ingress from the caller on 4143 (the caller's own address
only when the gateway Service has externalTrafficPolicy Local; otherwise a node's, which the gateway's `source-cluster`
and NetworkPolicy refuse), the gateway's egress to the callee and the callee's ingress from the gateway. Selectors other than matchLabels (and namespace selectors other
than by name) raise: the check never passes by ignoring a field.

The placement (which workloads run in which cluster) is the graph's; the access is the objects'."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.linkerd import multicluster as mc
from plan.linkerd.authorization import port_object_name
from plan.linkerd.multicluster_network import fill_gateway_egress
from read.graph import ServiceGraph, mesh_identity

EXPORTED_DIRECT = ({mc.EXPORTED: "remote-discovery"}, {mc.FEDERATED: "member"})
EXPORTED_GATEWAY = {mc.EXPORTED: "true"}
# [LC] templates/gateway.yaml: the gateway pod template's labels.
GATEWAY_POD_LABELS = {"app": mc.GATEWAY_NAME, "linkerd.io/extension": "multicluster"}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# What a gateway pod sees as the source when the nodes masquerade (externalTrafficPolicy Cluster): a node's address,
# in no cluster's pod network (TEST-NET-2).
NODE_ADDRESS = "198.51.100.1"
Object = Mapping[str, Any]


class Unmodelled(AssertionError):
    """An object uses something the evaluator does not model."""


@dataclass(frozen=True)
class Pod:
    cluster: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    ip: str


@dataclass(frozen=True)
class Address:
    """An address that is no pod: a peer's gateway load balancer."""

    ip: str


def _in(ip: str, cidr: str) -> bool:
    address, network = ipaddress.ip_address(ip), ipaddress.ip_network(cidr)
    return address.version == network.version and address in network


def _labels_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    if selector.get("matchExpressions"):
        raise Unmodelled("matchExpressions")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(entry: Mapping[str, Any], cluster: str, namespace: str, endpoint: Pod | Address) -> bool:
    if "ipBlock" in entry:
        block = entry["ipBlock"]
        return _in(endpoint.ip, block["cidr"]) and not any(_in(endpoint.ip, e) for e in block.get("except", []))
    if not isinstance(endpoint, Pod) or endpoint.cluster != cluster:
        return False
    selector = entry.get("namespaceSelector")
    if selector is None:
        in_namespace = endpoint.namespace == namespace
    else:
        if selector.get("matchExpressions") or set(selector.get("matchLabels", {})) - {NAMESPACE_LABEL}:
            raise Unmodelled("namespace selectors other than by name")
        wanted = selector.get("matchLabels", {}).get(NAMESPACE_LABEL)
        in_namespace = wanted is None or wanted == endpoint.namespace
    return in_namespace and _labels_match(entry.get("podSelector"), dict(endpoint.labels))


class Network:
    """Every cluster's NetworkPolicies, as the clusters holding them would apply them."""

    def __init__(self, policies: Mapping[str, Iterable[Object]]):
        self.policies = {cluster: [p for p in objects if p["kind"] == "NetworkPolicy"]
                         for cluster, objects in policies.items()}

    def _isolating(self, pod: Pod, direction: str) -> list[Object]:
        chosen = []
        for policy in self.policies.get(pod.cluster, []):
            spec = policy["spec"]
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
            if policy["metadata"]["namespace"] == pod.namespace and direction in types and \
                    _labels_match(spec.get("podSelector", {}), dict(pod.labels)):
                chosen.append(policy)
        return chosen

    def _admits(self, own: Pod, direction: str, other: Pod | Address, port: int) -> bool:
        policies = self._isolating(own, direction)
        if not policies:
            return True
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(rules_key, []) or []:
                ports = rule.get("ports")
                if ports and any(not isinstance(p.get("port"), int) or "endPort" in p for p in ports):
                    raise Unmodelled("named ports and port ranges")
                if ports and not any(p.get("protocol", "TCP") == "TCP" and p["port"] == port for p in ports):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(_peer_matches(e, own.cluster, own.namespace, other) for e in peers):
                    return True
        return False

    def allows(self, source: Pod, destination: Pod | Address, port: int) -> bool:
        inbound = self._admits(destination, "Ingress", source, port) if isinstance(destination, Pod) else True
        return inbound and self._admits(source, "Egress", destination, port)

    def lets_in(self, source: Pod | Address, destination: Pod, port: int) -> bool:
        """The destination's ingress only: the source sent to another address (a load balancer's) that forwards."""
        return self._admits(destination, "Ingress", source, port)


def _admitted(policy: Iterable[Object]) -> dict[tuple[str, str], set[str]]:
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


def default_admits(access_policy: str, meshed: bool, source_ip: str, cluster_networks: Iterable[str]) -> bool:
    """What a Server's accessPolicy admits beyond its authorizations (see the module docstring)."""
    in_cluster = any(_in(source_ip, cidr) for cidr in cluster_networks)
    return {"deny": False, "audit": True, "all-unauthenticated": True, "all-authenticated": meshed,
            "cluster-authenticated": meshed and in_cluster, "cluster-unauthenticated": in_cluster}[access_policy]


def cluster_networks(plans: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each cluster's networks, as its peers read them from its stack file."""
    found: dict[str, tuple[str, ...]] = {}
    for plan in plans.values():
        for peer in plan.multicluster.cluster.peers:
            found.setdefault(peer.name, peer.networks)
    return found


def gateway_addresses(plans: Mapping[str, Any]) -> dict[str, str]:
    return {cluster: f"192.0.2.{index + 1}" for index, cluster in enumerate(sorted(plans))}


@dataclass(frozen=True)
class Gateway:
    """A cluster's running gateway: its identity and load balancer address, whom its `any-meshed` and `source-cluster`
    admit, and whether its Service keeps the callers' addresses (externalTrafficPolicy Local)."""

    identity: str
    address: str
    identities: tuple[str, ...]
    networks: tuple[str, ...]
    keeps_source: bool


@dataclass(frozen=True)
class LinkView:
    """How a cluster mirrors one peer: the gateway its Link dials (addresses, the identity it expects there; none:
    no gateway-mode mirrors) and whether remote discovery works (the destination controller's credentials)."""

    gateway_addresses: tuple[str, ...] = ()
    gateway_identity: str | None = None
    direct: bool = True


@dataclass(frozen=True)
class ClusterView:
    """What the checker reads of one cluster: every policy object and NetworkPolicy in it (filled, as applied), its
    gateway (None: none runs), the export labels of its Services, and the peers it mirrors (working Links only)."""

    name: str
    trust_domain: str
    objects: tuple[Object, ...]
    gateway: Gateway | None
    exports: Mapping[tuple[str, str], Mapping[str, str]]
    links: Mapping[str, LinkView]


def plan_views(plans: Mapping[str, Any], addresses: Mapping[str, str] | None = None) -> dict[str, ClusterView]:
    """The clusters as their compiled plans (cluster -> MeshPlan) would make them, each linked to every peer that
    lists it back, the gateways at `addresses`."""
    addresses = addresses if addresses is not None else gateway_addresses(plans)
    objects = network_objects(plans, addresses)
    views = {}
    for cluster, plan in plans.items():
        multicluster = plan.multicluster
        patches = {o["kind"]: o for o in multicluster.gateway_policy}
        gateway = None
        if patches:
            gateway = Gateway(
                mc.gateway_identity(multicluster.cluster.trust_domain), addresses[cluster],
                tuple(patches.get("MeshTLSAuthentication", {}).get("spec", {}).get("identities", [])),
                tuple(n["cidr"] for n in patches.get("NetworkAuthentication", {}).get("spec", {}).get("networks", [])),
                multicluster.chart_values["gateway"].get("serviceExternalTrafficPolicy") == "Local")
        links = {}
        for peer in multicluster.cluster.peers:
            if peer.name in plans and cluster in {p.name for p in plans[peer.name].multicluster.cluster.peers}:
                links[peer.name] = LinkView((addresses[peer.name],), mc.gateway_identity(peer.trust_domain))
        views[cluster] = ClusterView(cluster, multicluster.cluster.trust_domain, tuple(objects[cluster]), gateway,
                                     multicluster.exports, links)
    return views


def _pods(clusters: Iterable[str], networks: Mapping[str, Iterable[str]], graph: ServiceGraph
          ) -> tuple[dict[tuple[str, str], Pod], dict[str, Pod]]:
    """(service key, cluster) -> its pod; cluster -> its gateway pod. Addresses from the cluster's first network."""
    pods, gateways = {}, {}
    for cluster in sorted(clusters):
        hosts = ipaddress.ip_network(list(networks[cluster])[0]).hosts()
        gateways[cluster] = Pod(cluster, mc.NAMESPACE, tuple(GATEWAY_POD_LABELS.items()), str(next(hosts)))
        for service in sorted(graph.services.values(), key=lambda s: s.key):
            if service.runs_in(cluster):
                pods[(service.key, cluster)] = Pod(cluster, service.namespace, tuple(service.selector_labels.items()),
                                                   str(next(hosts)))
    return pods, gateways


def network_objects(plans: Mapping[str, Any], addresses: Mapping[str, str] | None = None) -> dict[str, list[Object]]:
    """Each cluster's NetworkPolicies: its namespaces', its gateway's, and its callers' toward the peers' gateways,
    filled with the peers' gateway addresses as registration would."""
    addresses = addresses if addresses is not None else gateway_addresses(plans)
    found = {}
    for cluster, plan in plans.items():
        multicluster = plan.multicluster
        by_stack = {stack: [addresses[peer]] for peer, stack in multicluster.peer_stacks.items() if peer in addresses}
        filled = [fill_gateway_egress(p, by_stack) for p in multicluster.gateway_egress]
        found[cluster] = [*plan.policy_objects(), *multicluster.network_policies, *(p for p in filled if p)]
    return found


def identity_admitted(identity: str, admitted: Iterable[str]) -> bool:
    """Whether a MeshTLSAuthentication's identities admit one: exactly, `*` every identity, `*.<suffix>` every identity
    under it (CRD policy_meshtls-authentication.yaml: "The `*` prefix can be used to match all identities in a
    domain")."""
    for entry in admitted:
        if entry == identity or entry == "*" or (entry.startswith("*.") and identity.endswith(entry[1:])):
            return True
    return False


DIRECT, THROUGH_GATEWAY = "direct", "gateway"


def calls(views: Mapping[str, ClusterView], networks: Mapping[str, Iterable[str]], graph: ServiceGraph, *,
          network: bool = True, links: bool = True) -> set[tuple[str, ...]]:
    """(caller key, caller cluster, callee key, callee cluster, port, `direct` or `gateway`) for every cross-cluster
    call the clusters' objects admit. The callees are the Servers of `views`; a caller runs in each cluster the graph
    places it, with an address in `networks[cluster]`. `links`: the caller's cluster must mirror the callee's through
    a working Link (a view of it in `views`); without, only the callee cluster's objects are read (its access matrix)
    and every caller's cluster counts as linked. `network`: the NetworkPolicies too."""
    clusters = set(networks)
    pods, gateways = _pods(clusters, networks, graph)
    layer = Network({cluster: view.objects for cluster, view in views.items()})
    server_of = {(s.namespace, port_object_name(s, p.name)): (s.key, p.name)
                 for s in graph.services.values() for p in s.ports}

    def reaches(source: Pod, destination: Pod | Address, port: int) -> bool:
        return not network or layer.allows(source, destination, port)

    def through_balancer(source: Pod | Address, destination: Pod, port: int) -> bool:
        return not network or layer.lets_in(source, destination, port)

    found: set[tuple[str, ...]] = set()
    for callee_cluster, view in views.items():
        admitted = _admitted(view.objects)
        gateway, gateway_pod = view.gateway, gateways[callee_cluster]
        for server in (o for o in view.objects if o["kind"] == "Server"):
            namespace, name = server["metadata"]["namespace"], server["metadata"]["name"]
            if (namespace, name) not in server_of:
                continue
            callee, port = server_of[(namespace, name)]
            service = graph.services[callee]
            if (callee, callee_cluster) not in pods:
                raise Unmodelled(f"{callee_cluster} holds a Server of {callee}, which the graph does not place there")
            number = service.port(port).number
            identities = admitted.get((namespace, name), set())
            policy = server["spec"].get("accessPolicy", "deny")
            target = pods[(callee, callee_cluster)]
            labels = view.exports.get((service.namespace, service.name))
            # The gateway calls from inside the cluster, as itself.
            forwards = gateway is not None and (identity_admitted(gateway.identity, identities) or default_admits(
                policy, True, gateway_pod.ip, networks[callee_cluster])) and reaches(gateway_pod, target, number)
            for caller_cluster in sorted(clusters - {callee_cluster}):
                link = None
                if links:
                    link = views[caller_cluster].links.get(callee_cluster) if caller_cluster in views else None
                    if link is None:
                        continue
                for caller in graph.services.values():
                    if not caller.runs_in(caller_cluster) or not graph.is_meshed(caller):
                        continue
                    source = pods[(caller.key, caller_cluster)]
                    ident = mesh_identity(caller.service_account, caller.namespace,
                                          views[caller_cluster].trust_domain if caller_cluster in views
                                          else view.trust_domain)
                    if labels in EXPORTED_DIRECT and (link is None or link.direct) and (
                            identity_admitted(ident, identities) or default_admits(
                                policy, True, source.ip, networks[callee_cluster])) and reaches(source, target, number):
                        found.add((caller.key, caller_cluster, callee, callee_cluster, port, DIRECT))
                    if not forwards or (link is not None and (gateway.address not in link.gateway_addresses or
                                                              link.gateway_identity != gateway.identity)):
                        continue
                    seen = source if gateway.keeps_source else Address(NODE_ADDRESS)
                    if identity_admitted(ident, gateway.identities) and any(_in(seen.ip, n) for n in gateway.networks) \
                            and reaches(source, Address(gateway.address), mc.GATEWAY_PORT) \
                            and through_balancer(seen, gateway_pod, mc.GATEWAY_PORT):
                        found.add((caller.key, caller_cluster, callee, callee_cluster, port, THROUGH_GATEWAY))
    return found


def cross_cluster_access(plans: Mapping[str, Any], graph: ServiceGraph, trust_domain: str, *,
                         network: bool = True) -> set[tuple[str, ...]]:
    """(caller key, caller cluster, callee key, callee cluster, port) for every cross-cluster call the objects of the
    cluster plans (cluster -> MeshPlan) admit: at the mesh layer, and with `network` at the network layer too."""
    views = plan_views(plans)
    assert all(view.trust_domain == trust_domain for view in views.values())
    return {call[:5] for call in calls(views, cluster_networks(plans), graph, network=network)}


def view_network_sources(views: Mapping[str, ClusterView], networks: Mapping[str, Iterable[str]],
                         graph: ServiceGraph) -> dict[tuple[str, str, str], set[str]]:
    """(callee key, callee cluster, port) -> where the network layer of the callee's cluster admits cross-cluster
    connections to it from: a peer cluster's name (any address of its networks) or `gateway` (the local gateway pod).
    Only callees whose pod is isolated for ingress (a `deny` namespace with NetworkPolicies) are listed."""
    pods, gateways = _pods(networks, networks, graph)
    layer = Network({cluster: view.objects for cluster, view in views.items()})
    found: dict[tuple[str, str, str], set[str]] = {}
    for (key, cluster), pod in pods.items():
        if cluster not in views or not layer._isolating(pod, "Ingress"):
            continue
        for port in graph.services[key].ports:
            sources = found.setdefault((key, cluster, port.name), set())
            if layer._admits(pod, "Ingress", gateways[cluster], port.number):
                sources.add("gateway")
            for peer in networks:
                if peer != cluster and any(layer._admits(pod, "Ingress", Address(str(host)), port.number)
                                           for host in _some_hosts(networks[peer])):
                    sources.add(peer)
    return found


def network_sources(plans: Mapping[str, Any], graph: ServiceGraph) -> dict[tuple[str, str, str], set[str]]:
    """view_network_sources of the cluster plans."""
    return view_network_sources(plan_views(plans), cluster_networks(plans), graph)


def _some_hosts(cidrs: Iterable[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The first and last address of each network: an ipBlock admits a whole network or a part of it."""
    found = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        found += [net.network_address, net.broadcast_address]
    return found


def graph_network_sources(graph: ServiceGraph, plans: Mapping[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    """What `network_sources` must be, from the graph: per exported callee copy and port, each other linked cluster
    with an allowed caller on that port (pod to pod, federated), or `gateway` when any has one (gateway mode)."""
    peers = {cluster: {p.name for p in plan.multicluster.cluster.peers} for cluster, plan in plans.items()}
    found: dict[tuple[str, str, str], set[str]] = {}
    for caller, callee, port in graph.edges():
        source, target = graph.services[caller], graph.services[callee]
        if target.export is None:
            continue
        for c in source.clusters:
            for d in target.clusters:
                if c != d and c in peers.get(d, ()) and d in peers.get(c, ()):
                    found.setdefault((callee, d, port), set()).add("gateway" if target.export == mc.GATEWAY else c)
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


# ---- what a stack registered -----------------------------------------------------------------------------------------

RELEASE = "multicluster-release"
# [LC] templates/gateway-policy.yaml: what the chart's gateway admits until the program's patches narrow it.
CHART_GATEWAY_IDENTITIES, CHART_GATEWAY_NETWORKS = ("*",), tuple(mc.OPEN_NETWORKS)
# The gateway of a cluster that never applied has no load balancer address (TEST-NET-3): no Link can name it.
UNPROVISIONED = "203.0.113.254"


@dataclass(frozen=True)
class Applied:
    """What exists of a cluster outside its registrations, once its stack applied: its `clusterNetworks` and
    `clusterApiServer` (its stack file), and, from its last `up`, the `multicluster` output (its gateway's load
    balancer address and the remote-access tokens its token controller wrote); `contract` None: never applied."""

    networks: tuple[str, ...]
    api_server: str
    contract: Mapping[str, Any] | None


def _release_values(registrations: Iterable[Any]) -> dict[str, Any] | None:
    from harness import plain

    found = [plain(r.inputs["values"]) for r in registrations if r.type == "kubernetes:helm.sh/v3:Release"
             and plain(r.inputs).get("chart") == mc.CHART]
    if len(found) > 1:
        raise Unmodelled("two linkerd-multicluster releases in one cluster")
    return found[0] if found else None


def _kubeconfig(secret: Object) -> dict[str, Any]:
    import base64
    import json

    return json.loads(base64.b64decode(secret["data"][mc.KUBECONFIG_KEY]))


def registered_views(registered: Mapping[str, Iterable[Any]], applied: Mapping[str, Applied],
                     exports: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]]
                     ) -> tuple[dict[str, ClusterView], list[str]]:
    """Each cluster as its registrations (cluster -> the Registrations of every stack applied there: a platform's and
    its shards') make it, and the problems of its Links. What the registrations hold is read as applied: ConfigGroup
    children, the NetworkPolicies as filled, the gateway's policy as the chart makes it ([LC] templates/gateway-policy.
    yaml: `any-meshed` every identity, `source-cluster` every network) unless a CustomResourcePatch of the program
    replaces it (forced server-side apply: the lists are atomic in the CRDs), the gateway's identity and
    externalTrafficPolicy from the release's values ([LC] templates/gateway.yaml). `exports` are the Services' export
    labels (the teams set them as MulticlusterPlan.exports lists: the one input not registered).

    A Link works only if everything the controllers need holds: the credentials Secret it names (and for remote
    discovery the destination controller's, in the control plane namespace, labelled with the peer's name: [L]
    controller/api/destination/watcher/cluster_store.go), each a kubeconfig for the peer's API server whose token is
    the one the peer's token controller wrote for this cluster's account, which the peer's release creates; a
    gateway-mode mirror dials the peer's gateway address and expects its identity. A Link that does not is returned
    as a problem, not as a link."""
    from harness import UNKNOWN

    objects, patches, values = {}, {}, {}
    for cluster, registrations in registered.items():
        registrations = [r for r in registrations if r.is_kubernetes]
        values[cluster] = _release_values(registrations)
        kept, patched = [], []
        for registration in registrations:
            if registration.type.startswith("kubernetes:helm.sh"):
                continue
            obj = registration.object()
            if UNKNOWN in str(obj) and (obj.get("kind") in ("Server", "AuthorizationPolicy", "MeshTLSAuthentication",
                                                             "NetworkAuthentication", "NetworkPolicy", "Link") or
                                         obj.get("type") == mc.CREDENTIALS_SECRET_TYPE):
                raise Unmodelled(f"{registration.name}: unknown in this preview: {obj}")
            (patched if registration.type.endswith("Patch") else kept).append(obj)
        objects[cluster], patches[cluster] = kept, patched
    problems: list[str] = []
    views = {}
    for cluster in registered:
        release = values[cluster]
        gateway = None
        if release is not None and release.get("gateway", {}).get("enabled", True):
            if "identityTrustDomain" not in release:
                raise Unmodelled(f"{cluster}: the release leaves identityTrustDomain to the chart's default")
            own = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in patches[cluster]}
            any_meshed = own.get(("MeshTLSAuthentication", mc.NAMESPACE, mc.GATEWAY_IDENTITIES))
            source = own.get(("NetworkAuthentication", mc.NAMESPACE, mc.GATEWAY_NETWORKS))
            contract = applied[cluster].contract
            addresses = list((contract or {}).get("gatewayAddresses") or ())
            gateway = Gateway(
                mc.gateway_identity(release["identityTrustDomain"], release.get("linkerdNamespace", "linkerd")),
                addresses[0] if addresses else UNPROVISIONED,
                tuple(any_meshed["spec"]["identities"]) if any_meshed else CHART_GATEWAY_IDENTITIES,
                tuple(n["cidr"] for n in source["spec"]["networks"]) if source else CHART_GATEWAY_NETWORKS,
                release["gateway"].get("serviceExternalTrafficPolicy") == "Local")
        links = {}
        linkerd_namespace = (release or {}).get("linkerdNamespace", "linkerd")
        secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects[cluster]
                   if o["kind"] == "Secret" and o.get("type") == mc.CREDENTIALS_SECRET_TYPE}
        for link in (o for o in objects[cluster] if o["kind"] == "Link"):
            spec = link["spec"]
            peer = spec["targetClusterName"]

            def refused(secret: Object | None) -> str | None:
                """Why the peer's API server refuses this kubeconfig, or None."""
                if secret is None:
                    return "no such Secret"
                target = applied.get(peer)
                if target is None or target.contract is None:
                    return f"{peer} has not applied: it has no API server account for {cluster}"
                config = _kubeconfig(secret)
                if config["clusters"][0]["cluster"]["server"] != target.api_server:
                    return f"its server is not {peer}'s API server {target.api_server}"
                issued = (target.contract.get("remoteAccessTokens") or {}).get(cluster)
                accounts = str((values.get(peer) or {}).get("remoteMirrorServiceAccountName", "")).split(",")
                if not issued or config["users"][0]["user"]["token"] != issued or \
                        mc.remote_access_account(cluster) not in accounts:
                    return f"its token is not the one {peer} issued for {mc.remote_access_account(cluster)}"
                return None

            mirror = secrets.get((mc.NAMESPACE, spec["clusterCredentialsSecret"]))
            why = refused(mirror)
            if why is not None:
                problems.append(f"{cluster}: Link {peer}: {spec['clusterCredentialsSecret']}: {why}")
                continue
            destination = secrets.get((linkerd_namespace, spec["clusterCredentialsSecret"]))
            direct = destination is not None and refused(destination) is None and \
                destination["metadata"].get("labels", {}).get(mc.CLUSTER_NAME_LABEL) == peer and \
                {mc.TRUST_DOMAIN_ANNOTATION, mc.CLUSTER_DOMAIN_ANNOTATION} <= set(
                    destination["metadata"].get("annotations", {}))
            dials = tuple(a for a in spec.get("gatewayAddress", "").split(",") if a)
            if dials and spec.get("gatewayPort") != str(mc.GATEWAY_PORT):
                problems.append(f"{cluster}: Link {peer}: gatewayPort {spec.get('gatewayPort')!r}")
                dials = ()
            links[peer] = LinkView(dials, spec.get("gatewayIdentity"), direct)
        trust_domain = (release or {}).get("identityTrustDomain", "cluster.local")
        views[cluster] = ClusterView(cluster, trust_domain, tuple(objects[cluster]), gateway,
                                     exports.get(cluster, {}), links)
    return views, problems


def registered_calls(registered: Mapping[str, Iterable[Any]], applied: Mapping[str, Applied],
                     exports: Mapping[str, Mapping[tuple[str, str], Mapping[str, str]]], graph: ServiceGraph, *,
                     network: bool = True) -> tuple[set[tuple[str, ...]], list[str]]:
    """`calls` of the clusters as registered (registered_views), and their Links' problems."""
    views, problems = registered_views(registered, applied, exports)
    networks = {cluster: tuple(a.networks) for cluster, a in applied.items()}
    return calls(views, networks, graph, network=network), problems
