"""Linkerd multicluster for one cluster of an environment, as plain data: the linkerd-multicluster chart's values, its
namespace, one `Link` and two credentials Secrets per peer this cluster mirrors from, the gateway's policy narrowed to
the linked clusters' allowed callers, the authorizations the program's Prometheus and the peers' probes need, and the
link-health alerts. plan/linkerd/cluster.py builds the `Cluster` from the settings and the graph, and
components/linkerd_multicluster.py registers what these builders return (docs/multicluster.md).

Names and shapes are read from linkerd2 edge-26.8.3 (19a0d90d5a4a65e0b976f079ba8a5f1dab12c005), cited as [L] below,
and from the pinned chart `linkerd2-edge-26.8.3/multicluster/charts/linkerd-multicluster`, cited as [LC].

Secrets: a peer's kubeconfig embeds the token of the peer's remote-access account. The plan never holds that token:
the credentials Secrets carry a `Kubeconfig` marker whose `render`/`data` the registration layer calls inside
`Output.apply`, so the token stays a Pulumi secret from the peer's stack to the Secret.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.linkerd.alerts import MONITORING_API, rule
from plan.linkerd.authorization import POLICY_GROUP, authorization_policy, mesh_tls_authentication, network_authentication
from plan.linkerd.namespaces import LINKERD_NAMESPACE
from plan.objects import metadata
from read.errors import Problem, SettingsError
from read.graph_format import DNS_LABEL, DNS_LABEL_MAX

NAMESPACE = "linkerd-multicluster"
_DNS_LABEL = DNS_LABEL.python
CHART = "linkerd-multicluster"
LINK_API = "multicluster.linkerd.io/v1alpha3"

# link-gen's names ([L] multicluster/cmd/root.go, pkg/k8s/labels.go).
CLUSTER_NAME_LABEL = "multicluster.linkerd.io/cluster-name"
TRUST_DOMAIN_ANNOTATION = "multicluster.linkerd.io/trust-domain"
CLUSTER_DOMAIN_ANNOTATION = "multicluster.linkerd.io/cluster-domain"
CREDENTIALS_SECRET_TYPE = "mirror.linkerd.io/remote-kubeconfig"  # k8s.MirrorSecretType
KUBECONFIG_KEY = "kubeconfig"  # k8s.ConfigKeyName
# The chart's remote-access account (values.yaml remoteMirrorServiceAccountName). The program makes one per peer that
# links here instead of the shared `-default`, so removing a cluster revokes exactly its token.
REMOTE_ACCESS_PREFIX = "linkerd-service-mirror-remote-access-"

# Export labels per mode ([L] pkg/k8s/labels.go DefaultExportedServiceSelector, DefaultFederatedServiceSelector; the
# defaults of link-gen's newLinkGenOptionsWithDefault).
EXPORTED = "mirror.linkerd.io/exported"
FEDERATED = "mirror.linkerd.io/federated"
GATEWAY, REMOTE_DISCOVERY, FEDERATED_MODE = "gateway", "remote-discovery", "federated"
MODES = (GATEWAY, REMOTE_DISCOVERY, FEDERATED_MODE)
EXPORT_LABELS = {GATEWAY: {EXPORTED: "true"}, REMOTE_DISCOVERY: {EXPORTED: "remote-discovery"},
                 FEDERATED_MODE: {FEDERATED: "member"}}

# The chart's gateway ([LC] values.yaml gateway.*, templates/gateway.yaml and gateway-policy.yaml).
GATEWAY_NAME = "linkerd-gateway"
GATEWAY_PORT = 4143
PROBE_PORT = 4191
PROBE_PATH = "/ready"
# link-gen turns the Service's `mirror.linkerd.io/probe-period: "3"` into a Go duration ([L] link-gen.go
# extractProbeSpec); failureThreshold and timeout are the CRD's defaults, written out because alerts depend on them.
PROBE_PERIOD = "3s"
PROBE_FAILURE_THRESHOLD = "3"
PROBE_TIMEOUT = "30s"
# The chart's gateway policy objects: no value turns them off ([LC] templates/gateway-policy.yaml).
GATEWAY_SERVER = "linkerd-gateway"
GATEWAY_AUTHORIZATION = "linkerd-gateway"
GATEWAY_IDENTITIES = "any-meshed"
GATEWAY_NETWORKS = "source-cluster"
# The chart's admin Servers ([LC] templates/service-mirror-policy.yaml): `linkerd-admin` (every extension pod's proxy
# admin port, the gateway's probe port among them) and `controller` (the mirror controllers' ctrl-admin).
ADMIN_SERVER = "linkerd-admin"
CONTROLLER_SERVER = "controller"
CONTROLLER_ADMIN_PORT = "ctrl-admin"  # containerPort 9999 ([LC] templates/controller/deployment.yaml)

PEER_PROBES = "mtls-mesh-peer-probes"
PROMETHEUS = "mtls-mesh-prometheus"
POD_MONITOR_NAME = "linkerd-multicluster-controllers"
RULE_GROUP = "mtls-mesh.multicluster"
LATENCY_WARNING_MS = 1000
# The controller refreshes each link's endpoints once a minute ([L] multicluster/cmd/service-mirror/main.go
# `endpoint-refresh-period` default 1m; service-mirror/cluster_watcher.go watchGatewayLiveness) and once more on each
# liveness change: in 15 minutes about 15 repairs are health, none is a stopped watcher, many more a flapping gateway.
REPAIR_WINDOW = "15m"
REPAIRS_EXPECTED = 15
REPAIRS_FLAPPING = 25


def identity(service_account: str, namespace: str, trust_domain: str, linkerd_namespace: str = LINKERD_NAMESPACE) -> str:
    """A proxy's identity in a cluster whose control plane lives in `linkerd_namespace` ([L]
    controller/api/destination/endpoint_translator.go: `<sa>.<ns>.serviceaccount.identity.<controlNS>.<td>`)."""
    return f"{service_account}.{namespace}.serviceaccount.identity.{linkerd_namespace}.{trust_domain}"


def gateway_identity(trust_domain: str, linkerd_namespace: str = LINKERD_NAMESPACE) -> str:
    """The identity the chart announces for its gateway (templates/gateway.yaml `mirror.linkerd.io/gateway-identity`),
    which link-gen copies into every Link made from this cluster, and the one a callee sees in gateway mode."""
    return identity(GATEWAY_NAME, NAMESPACE, trust_domain, linkerd_namespace)


def remote_access_account(linked_from: str) -> str:
    """The account of this cluster whose token the cluster `linked_from` uses to mirror from here."""
    return f"{REMOTE_ACCESS_PREFIX}{linked_from}"


def credentials_secret_name(peer: str) -> str:
    return f"cluster-credentials-{peer}"  # link-gen.go getCreds / getLink


@dataclass(frozen=True)
class Peer:
    """Another cluster of the environment, as this cluster's stack sees it.

    `mirrors_from`: this cluster links to the peer (a Link, its controller, the credentials). `mirrored_by`: the peer
    links to this cluster (its remote-access account here, its callers at our gateway, its probes). `networks`: the
    addresses the peer's traffic reaches this cluster from (its pods' or NAT egress), for the gateway's network check.
    `api_server`, `gateway_addresses` and `gateway_identity` come from the peer's stack outputs."""

    name: str
    trust_domain: str
    cluster_domain: str = "cluster.local"
    linkerd_namespace: str = LINKERD_NAMESPACE
    api_server: str = ""
    gateway_addresses: tuple[str, ...] = ()
    gateway_port: int = GATEWAY_PORT
    probe_port: int = PROBE_PORT
    networks: tuple[str, ...] = ()
    mirrors_from: bool = True
    mirrored_by: bool = True

    @property
    def has_gateway(self) -> bool:
        return bool(self.gateway_addresses)

    @property
    def gateway_identity(self) -> str:
        return gateway_identity(self.trust_domain, self.linkerd_namespace)


@dataclass(frozen=True)
class Caller:
    """A workload of another cluster the graph allows to call an exported service (on `ports`; empty: every port)."""

    cluster: str
    namespace: str
    service_account: str
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Export:
    """A service of this cluster offered to its peers in one mode, with its ports and allowed cross-cluster callers.
    `where` is the service's path in the graph, for error messages."""

    namespace: str
    name: str
    mode: str
    ports: tuple[str, ...]
    callers: tuple[Caller, ...] = ()
    where: str = ""

    @property
    def path(self) -> str:
        return self.where or f"services.{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Cluster:
    """This cluster: its name (as every peer calls it), trust domain, control-plane namespace, peers and exports."""

    name: str
    trust_domain: str
    peers: tuple[Peer, ...] = ()
    exports: tuple[Export, ...] = ()
    linkerd_namespace: str = LINKERD_NAMESPACE
    cni: bool = False
    high_availability: bool = False

    def peer(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)

    @property
    def mirrored_from(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.mirrors_from)

    @property
    def linked_by(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.mirrored_by)

    @property
    def gateway_exports(self) -> tuple[Export, ...]:
        return tuple(e for e in self.exports if e.mode == GATEWAY)

    @property
    def peer_networks(self) -> list[str] | None:
        """The networks the peers that link here arrive from, or None when one of them has declared none: narrowing
        to the others' would cut that peer off."""
        peers = self.linked_by
        if not peers or any(not p.networks for p in peers):
            return None
        return sorted({cidr for p in peers for cidr in p.networks})


# --- the chart ------------------------------------------------------------------------------------------------------

def namespace_object(cni: bool) -> dict[str, Any]:
    """The chart creates its namespace only under the CLI ([LC] templates/namespace.yaml `eq .Release.Service "CLI"`).
    The labels are what its namespace-metadata Job would patch in (linkerd/linkerd-extension-init src/main.rs): the
    extension label the CLI looks for, and pod security `privileged` unless the CNI plugin replaces linkerd-init."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(NAMESPACE, labels={"linkerd.io/extension": "multicluster",
                                                    "pod-security.kubernetes.io/enforce":
                                                        "restricted" if cni else "privileged"})}


def chart_values(cluster: Cluster) -> dict[str, Any]:
    """The linkerd-multicluster values of one cluster."""
    linked_by = cluster.linked_by
    gateway_enabled = bool(cluster.gateway_exports)
    gateway: dict[str, Any] = {"enabled": gateway_enabled}
    sources = cluster.peer_networks
    if gateway_enabled and sources:
        # The first narrowing, at the load balancer; the gateway's policy repeats it (gateway_policy_objects), and so
        # does its NetworkPolicy (multicluster_network.gateway_policies). Both see the client's address only if the
        # nodes do not masquerade it: the Service API's externalTrafficPolicy "Local" delivers "without masquerading
        # the client source IP", the default "Cluster" replaces it with a node's (k8s.io/api core/v1 types.go
        # ServiceExternalTrafficPolicy; kubernetes.io/docs/tasks/access-application-cluster/create-external-load-balancer
        # "Preserving the client source IP"): every peer would then be refused as a node address.
        gateway["loadBalancerSourceRanges"] = sources
        gateway["serviceExternalTrafficPolicy"] = "Local"
    if cluster.high_availability:
        gateway["replicas"] = 3  # values-ha.yaml
    values: dict[str, Any] = {
        # Both build the gateway-identity annotation link-gen copies into the peers' Links: they must be this
        # cluster's own control plane's, or every peer expects another identity from our gateway.
        "identityTrustDomain": cluster.trust_domain,
        "linkerdNamespace": cluster.linkerd_namespace,
        "gateway": gateway,
        "controllers": [_controller(peer) for peer in sorted(cluster.mirrored_from, key=lambda p: p.name)],
        "remoteMirrorServiceAccount": bool(linked_by),
        # The program creates and labels the namespace itself; the hook Job would patch a namespace Pulumi owns.
        "createNamespaceMetadataJob": False,
    }
    if linked_by:
        # A comma list is what the template splits ([LC] templates/remote-access-service-mirror-rbac.yaml).
        values["remoteMirrorServiceAccountName"] = ",".join(remote_access_account(p.name)
                                                            for p in sorted(linked_by, key=lambda p: p.name))
    if cluster.high_availability:
        values["enablePodAntiAffinity"] = True
    return values


def _controller(peer: Peer) -> dict[str, Any]:
    entry: dict[str, Any] = {"link": {"ref": {"name": peer.name}}}
    if not peer.has_gateway:
        # Pod-to-pod only: no gateway to probe, so no probe-<name> Service ([LC] templates/controller/probe-svc.yaml).
        entry["gateway"] = {"enabled": False}
    return entry


# --- Links and credentials ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kubeconfig:
    """The kubeconfig link-gen writes ([L] link-gen.go getKubeconfig): one cluster (the peer's API server and CA), one
    user (the remote-access account, by token), one context. The CA and token are not part of the plan: `render` takes
    them, so the registration layer calls it inside `Output.apply` and the token stays secret."""

    cluster: str
    server: str
    user: str

    def render(self, ca_pem: str, token: str) -> str:
        # JSON is YAML; clientcmd.Load reads it as any kubeconfig.
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": self.cluster, "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
            "users": [{"name": self.user, "user": {"token": token}}],
            "contexts": [{"name": self.cluster, "context": {"cluster": self.cluster, "user": self.user}}],
            "current-context": self.cluster,
        }, sort_keys=True)

    def data(self, ca_pem: str, token: str) -> str:
        """The Secret's `data.kubeconfig` (base64), as link-gen emits it."""
        return base64.b64encode(self.render(ca_pem, token).encode()).decode()


def kubeconfig(cluster: Cluster, peer: Peer) -> Kubeconfig:
    return Kubeconfig(peer.name, peer.api_server, remote_access_account(cluster.name))


def credentials_secrets(cluster: Cluster, peer: Peer) -> list[dict[str, Any]]:
    """link-gen's two Secrets: one the peer's controller reads, one the destination controller reads for remote
    discovery ([L] controller/api/destination/watcher/cluster_store.go: it skips a Secret of another type or without
    the cluster-name label, and refuses one without both annotations). `data.kubeconfig` holds a `Kubeconfig`
    marker the registration layer replaces with `marker.data(ca, token)` inside Output.apply."""
    source = kubeconfig(cluster, peer)
    name = credentials_secret_name(peer.name)
    mirror = {"apiVersion": "v1", "kind": "Secret", "type": CREDENTIALS_SECRET_TYPE,
              "metadata": metadata(name, NAMESPACE), "data": {KUBECONFIG_KEY: source}}
    destination = {"apiVersion": "v1", "kind": "Secret", "type": CREDENTIALS_SECRET_TYPE,
                   "metadata": metadata(name, cluster.linkerd_namespace, labels={CLUSTER_NAME_LABEL: peer.name},
                                        annotations={TRUST_DOMAIN_ANNOTATION: peer.trust_domain,
                                                     CLUSTER_DOMAIN_ANNOTATION: peer.cluster_domain}),
                   "data": {KUBECONFIG_KEY: source}}
    return [mirror, destination]


def link(peer: Peer) -> dict[str, Any]:
    """The Link link-gen would emit against `peer` ([L] link-gen.go getLink), applied in this cluster."""
    spec: dict[str, Any] = {
        "targetClusterName": peer.name,
        "targetClusterDomain": peer.cluster_domain,
        "targetClusterLinkerdNamespace": peer.linkerd_namespace,
        "clusterCredentialsSecret": credentials_secret_name(peer.name),
        "remoteDiscoverySelector": {"matchLabels": dict(EXPORT_LABELS[REMOTE_DISCOVERY])},
        "federatedServiceSelector": {"matchLabels": dict(EXPORT_LABELS[FEDERATED_MODE])},
    }
    if peer.has_gateway:
        spec.update({
            "gatewayAddress": ",".join(peer.gateway_addresses),
            "gatewayPort": str(peer.gateway_port),  # a string in the CRD
            "gatewayIdentity": peer.gateway_identity,
            "probeSpec": {"path": PROBE_PATH, "port": str(peer.probe_port), "period": PROBE_PERIOD,
                          "failureThreshold": PROBE_FAILURE_THRESHOLD, "timeout": PROBE_TIMEOUT},
            "selector": {"matchLabels": dict(EXPORT_LABELS[GATEWAY])},
        })
    return {"apiVersion": LINK_API, "kind": "Link", "metadata": metadata(peer.name, NAMESPACE), "spec": spec}


def link_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """Per peer this cluster mirrors from: its two credentials Secrets, then its Link."""
    objects: list[dict[str, Any]] = []
    for peer in sorted(cluster.mirrored_from, key=lambda p: p.name):
        objects += credentials_secrets(cluster, peer)
        objects.append(link(peer))
    return objects


# --- who may cross, and through what -----------------------------------------------------------------------------------

def caller_identity(cluster: Cluster, caller: Caller) -> str:
    """The identity a caller of cluster `caller.cluster` presents: its own cluster's trust domain and control plane."""
    peer = cluster.peer(caller.cluster)
    if peer is None:
        raise KeyError(caller.cluster)
    return identity(caller.service_account, caller.namespace, peer.trust_domain, peer.linkerd_namespace)


def callee_identities(cluster: Cluster, export: Export, port: str) -> list[str]:
    """What the exported service's MeshTLSAuthentication must name on `port` for its cross-cluster callers: in gateway
    mode only this cluster's gateway (the gateway terminates mTLS and calls with its own identity; linkerd website
    tasks/pod-to-pod-multicluster.md "client identity is lost"), otherwise each caller's own identity."""
    callers = [c for c in export.callers if not c.ports or port in c.ports]
    if not callers:
        return []
    if export.mode == GATEWAY:
        return [gateway_identity(cluster.trust_domain, cluster.linkerd_namespace)]
    return sorted({caller_identity(cluster, c) for c in callers})


def gateway_callers(cluster: Cluster) -> dict[str, list[tuple[Export, Caller]]]:
    """Identity -> the (export, caller) edges that make the gateway admit it."""
    admitted: dict[str, list[tuple[Export, Caller]]] = {}
    for export in cluster.gateway_exports:
        for caller in export.callers:
            if cluster.peer(caller.cluster) is not None:
                admitted.setdefault(caller_identity(cluster, caller), []).append((export, caller))
    return admitted


def export_problems(cluster: Cluster) -> list[Problem]:
    """Every exported service whose cross-cluster edges its mode cannot carry as declared.

    Through the gateway a caller reaches every port of every gateway-exported service that admits the gateway's
    identity: the gateway authorizes callers for all of them at once (one Server, port 4143), and the callee sees only
    the gateway. A gateway-mode port is therefore safe only if every caller the gateway admits may call it; otherwise
    the edge needs per-caller policy, which only pod-to-pod (remote-discovery) or federated mode keeps. Those modes
    need the callers' control plane in the same namespace as ours: the destination controller gives a remote endpoint
    an identity only then ([L] endpoint_translator.go, `controllerNSLabel == controllerNS`)."""
    problems: list[Problem] = []
    admitted = gateway_callers(cluster)
    for export in cluster.exports:
        if export.mode not in MODES:
            problems.append(Problem(f"{export.path}.export", f"unknown mode {export.mode!r}",
                                    f"Use one of {', '.join(MODES)}"))
            continue
        for index, caller in enumerate(export.callers):
            peer = cluster.peer(caller.cluster)
            where = f"{export.path}.callers[{index}]"
            if peer is None:
                problems.append(Problem(where, f"cluster {caller.cluster!r} is not linked with {cluster.name!r}",
                                        "Add it to this cluster's peers, or remove the caller"))
            elif not peer.mirrored_by:
                problems.append(Problem(where, f"cluster {caller.cluster!r} does not link to {cluster.name!r}, so it "
                                               f"cannot see {export.namespace}/{export.name}",
                                        f"Let {caller.cluster!r} link to {cluster.name!r}"))
            elif export.mode != GATEWAY and peer.linkerd_namespace != cluster.linkerd_namespace:
                problems.append(Problem(where, f"{export.mode} mode needs the same control-plane namespace in both "
                                               f"clusters ({peer.linkerd_namespace!r} in {caller.cluster!r}, "
                                               f"{cluster.linkerd_namespace!r} here): calls would carry no identity",
                                        "Install Linkerd in the same namespace in every cluster, or export in gateway "
                                        "mode"))
        if export.mode != GATEWAY:
            continue
        for port in export.ports:
            if not callee_identities(cluster, export, port):
                continue
            allowed = {caller_identity(cluster, c) for c in export.callers
                       if (not c.ports or port in c.ports) and cluster.peer(c.cluster) is not None}
            for extra in sorted(set(admitted) - allowed):
                other, caller = admitted[extra][0]
                problems.append(Problem(
                    f"{export.path}.export",
                    f"in gateway mode {caller.cluster}/{caller.namespace}/{caller.service_account} (allowed to call "
                    f"{other.namespace}/{other.name} through the gateway) could also call port {port!r}, because "
                    f"behind the gateway every caller has the gateway's identity",
                    f"Export {export.namespace}/{export.name} in remote-discovery mode so its policy sees each "
                    f"caller, or allow that caller here too"))
    return problems


# The longest name built from a cluster's name: the Service `probe-<peer>` (a DNS-1035 label, 63 characters).
CLUSTER_NAME_MAX = DNS_LABEL_MAX - len("probe-")


def cluster_problems(cluster: Cluster, where: str = "multicluster") -> list[Problem]:
    """What the builders cannot turn into valid objects: cluster names that are not DNS labels short enough for
    `probe-<name>`, a peer named like this cluster or twice, a peer to link to without an API server, a gateway port
    out of range, a caller's port the export does not have."""
    problems: list[Problem] = []
    names = [cluster.name, *(p.name for p in cluster.peers)]
    for index, name in enumerate(names):
        path = f"{where}.cluster" if index == 0 else f"{where}.peers[{index - 1}].name"
        if not _DNS_LABEL.fullmatch(name) or len(name) > CLUSTER_NAME_MAX:
            problems.append(Problem(path, f"{name!r} is not a DNS label of at most {CLUSTER_NAME_MAX} characters",
                                    "Name clusters with lowercase letters, digits and '-' (it becomes part of the "
                                    "Link, Secret, Deployment and Service names)"))
        elif name in names[:index]:
            problems.append(Problem(path, f"{name!r} is named twice", "Give every cluster its own name"))
    for index, peer in enumerate(cluster.peers):
        path = f"{where}.peers[{index}]"
        if peer.mirrors_from and not peer.api_server.startswith("https://"):
            problems.append(Problem(f"{path}.apiServer", f"linking to {peer.name!r} needs its API server as an https:// "
                                                         "URL", "Take it from the peer's stack output"))
        for key, port in (("gatewayPort", peer.gateway_port), ("probePort", peer.probe_port)):
            if not 0 < port < 65536:
                problems.append(Problem(f"{path}.{key}", f"{port} is not a port", "Use 1-65535"))
    for export in cluster.exports:
        for index, caller in enumerate(export.callers):
            for port in caller.ports:
                if port not in export.ports:
                    problems.append(Problem(f"{export.path}.callers[{index}].ports", f"{port!r} is not a port of "
                                            f"{export.namespace}/{export.name}", f"Use one of {', '.join(export.ports)}"))
    return problems


def refuse_unsafe_exports(cluster: Cluster) -> None:
    """Every problem at once, before anything is built: the cluster's own, then its exports'."""
    problems = cluster_problems(cluster) + export_problems(cluster)
    if problems:
        raise SettingsError(problems)


# --- the gateway's policy --------------------------------------------------------------------------------------------

# Server-side apply over fields another manager (the release) owns needs force: pulumi-kubernetes Patch resources read
# this annotation.
PATCH_FORCE = "pulumi.com/patchForce"
# The chart version the patch was written against: a release upgrade changes it, so the patch is applied again after
# the release. Helm upgrades a custom resource with the difference between the old and new chart's manifests only
# (helm v3.21.4 pkg/action/upgrade.go KubeClient.Update -> pkg/kube/client.go createPatch, two-way JSON merge patch):
# an unchanged template leaves our contents alone, a changed one overwrites them.
CHART_VERSION_ANNOTATION = "mtls-mesh.io/linkerd-multicluster-chart"
OPEN_NETWORKS = ["0.0.0.0/0", "::/0"]


def gateway_policy_objects(cluster: Cluster, chart_version: str) -> list[dict[str, Any]]:
    """The chart's gateway authentications with the program's contents: `any-meshed` names only the callers the graph
    lets through the gateway, `source-cluster` only the networks of the peers that link here.

    The chart has no value for them ([LC] templates/gateway-policy.yaml: Server `linkerd-gateway`, AuthorizationPolicy
    `linkerd-gateway` requiring MeshTLSAuthentication `any-meshed` (`*`) and NetworkAuthentication `source-cluster`
    (0.0.0.0/0, ::/0)), and a second AuthorizationPolicy could only widen what the chart's admits (the proxy admits
    what any authorization of a Server admits). So these keep the chart's names, namespace and kinds and are applied as
    server-side-apply patches, forced, over the release's objects (pulumi-kubernetes CustomResourcePatch, after the
    release): one object per name, the chart's Server and AuthorizationPolicy unchanged and still requiring both.

    With no caller yet, `any-meshed` names only an identity no cluster issues (the CRD refuses an empty list), so the
    gateway admits nobody. When a peer that links here has not declared its networks, the network check stays open
    and the identity check alone narrows."""
    if not cluster.gateway_exports:
        return []
    identities = sorted(gateway_callers(cluster)) or [identity(GATEWAY_NAME, NAMESPACE, "invalid", cluster.linkerd_namespace)]
    networks = cluster.peer_networks or OPEN_NETWORKS
    return [_patch(mesh_tls_authentication(GATEWAY_IDENTITIES, NAMESPACE, identities), chart_version),
            _patch(network_authentication(GATEWAY_NETWORKS, NAMESPACE, networks), chart_version)]


def _patch(obj: dict[str, Any], chart_version: str) -> dict[str, Any]:
    # No labels of ours: the object stays the release's; only its spec and these annotations are the patch's.
    obj["metadata"] = {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
                       "annotations": {PATCH_FORCE: "true", CHART_VERSION_ANNOTATION: chart_version}}
    return obj


def peer_probe_objects(cluster: Cluster) -> list[dict[str, Any]]:
    """Each peer's mirror controller probes our gateway's `/ready` on the proxy admin port (4191) with mTLS, as
    `controller-<this cluster>` of its own cluster ([L] service-mirror/cluster_watcher.go: the probe endpoints carry
    the gateway identity). The chart's `linkerd-admin` Server admits probes only from the control plane's
    `policyController.probeNetworks` ([L] policy-controller/k8s/index/src/inbound/index.rs default_inbound_http_routes),
    which the program narrows to the kubelet's networks: without this the peers see our gateway dead."""
    peers = cluster.linked_by
    if not cluster.gateway_exports or not peers:
        return []
    identities = [identity(f"controller-{cluster.name}", NAMESPACE, p.trust_domain, p.linkerd_namespace) for p in peers]
    objects = [mesh_tls_authentication(PEER_PROBES, NAMESPACE, identities),
               authorization_policy(PEER_PROBES, NAMESPACE, "Server", ADMIN_SERVER, "MeshTLSAuthentication",
                                    PEER_PROBES)]
    networks = cluster.peer_networks
    if networks:
        objects.append(network_authentication(f"{PEER_PROBES}-networks", NAMESPACE, networks))
        objects[1]["spec"]["requiredAuthenticationRefs"].append(
            {"group": POLICY_GROUP, "kind": "NetworkAuthentication", "name": f"{PEER_PROBES}-networks"})
    return objects


def prometheus_objects(service_accounts: Iterable[tuple[str, str]], networks: Iterable[str], trust_domain: str,
                       linkerd_namespace: str = LINKERD_NAMESPACE) -> list[dict[str, Any]]:
    """The chart authorizes the controllers' admin port only for viz's Prometheus ([LC] service-mirror-policy.yaml,
    Server `controller` on ctrl-admin): the program's Prometheus identities and networks get their own, one policy per
    way in (an AuthorizationPolicy requires all of its authentications), as plan/linkerd/authorization.admin_objects."""
    objects: list[dict[str, Any]] = []
    accounts = list(service_accounts)
    if accounts:
        objects.append(mesh_tls_authentication(PROMETHEUS, NAMESPACE, [
            identity(sa, ns, trust_domain, linkerd_namespace) for sa, ns in accounts]))
        objects.append(authorization_policy(f"{PROMETHEUS}-scrape", NAMESPACE, "Server", CONTROLLER_SERVER,
                                            "MeshTLSAuthentication", PROMETHEUS))
    networks = list(networks)
    if networks:
        objects.append(network_authentication(f"{PROMETHEUS}-network", NAMESPACE, networks))
        objects.append(authorization_policy(f"{PROMETHEUS}-network-scrape", NAMESPACE, "Server", CONTROLLER_SERVER,
                                            "NetworkAuthentication", f"{PROMETHEUS}-network"))
    return objects


# --- alerts ----------------------------------------------------------------------------------------------------------

def pod_monitor(labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The mirror controllers' metrics, served by promhttp on ctrl-admin ([L] pkg/admin/admin.go): classic text
    format, names exactly as registered (no `_total`)."""
    return {"apiVersion": MONITORING_API, "kind": "PodMonitor",
            "metadata": metadata(POD_MONITOR_NAME, NAMESPACE, labels=dict(labels or {})),
            "spec": {"namespaceSelector": {"matchNames": [NAMESPACE]},
                     "selector": {"matchLabels": {"linkerd.io/extension": "multicluster", "component": "controller"}},
                     "podMetricsEndpoints": [{"port": CONTROLLER_ADMIN_PORT, "path": "/metrics", "interval": "30s"}]}}


RUNBOOK_PAGE = "docs/multicluster.md"


def _rule(*args: Any, **kwargs: Any) -> dict[str, Any]:
    body = rule(*args, **kwargs)
    body["annotations"]["runbook"] = f"{RUNBOOK_PAGE}#{body['annotations']['runbook'].rpartition('#')[2]}"
    return body


def rule_group(cluster: Cluster, latency_ms: int = LATENCY_WARNING_MS) -> dict[str, Any]:
    """Link health from the controllers' own metrics ([L] multicluster/service-mirror/metrics.go, probe_worker.go), all
    labelled `target_cluster_name`: gateway_alive (gauge, 0 after failureThreshold failed probes in a row),
    gateway_latency (gauge, ms of the last good probe), gateway_probes{probe_successful} (counter; a failure counts
    only once the threshold is reached), service_mirror_endpoint_repairs (counter, once a minute and per liveness
    change)."""
    ns = f'namespace="{NAMESPACE}"'
    rules = [
        _rule("MulticlusterGatewayDown", f"max by (target_cluster_name) (gateway_alive{{{ns}}}) == 0", "critical",
             "The gateway of cluster {{ $labels.target_cluster_name }} does not answer its probes",
             f"{PROBE_FAILURE_THRESHOLD} probes in a row of {cluster.name}'s link to {{{{ $labels.target_cluster_name }}}} "
             "failed: services mirrored in gateway mode from it have no endpoints. Check the peer's gateway, the "
             "network between the clusters, and its gateway policy (our controller's identity must be admitted).",
             for_="2m", runbook="multiclustergatewaydown"),
        _rule("MulticlusterGatewaySlow",
             f"max by (target_cluster_name) (gateway_latency{{{ns}}}) > {latency_ms}"
             f" and on (target_cluster_name) max by (target_cluster_name) (gateway_alive{{{ns}}}) == 1",
             "warning", "Probes to the gateway of {{ $labels.target_cluster_name }} take {{ $value }} ms",
             f"The last successful probe took more than {latency_ms} ms; calls through the gateway pay the same.",
             for_="10m", runbook="multiclustergatewaydown"),
        _rule("MulticlusterGatewayProbesFailing",
             f'sum by (target_cluster_name) (increase(gateway_probes{{{ns}, probe_successful="false"}}[15m])) > 0',
             "warning", "Probes to the gateway of {{ $labels.target_cluster_name }} keep failing",
             f"Each count is {PROBE_FAILURE_THRESHOLD} failed probes in a row ({{{{ $value }}}} in 15 minutes): the "
             "gateway flaps even when it is up now.", runbook="multiclustergatewaydown"),
        _rule("MulticlusterGatewayFlapping",
             f"sum by (target_cluster_name) (increase(service_mirror_endpoint_repairs{{{ns}}}[{REPAIR_WINDOW}]))"
             f" > {REPAIRS_FLAPPING}",
             "warning", "The link to {{ $labels.target_cluster_name }} keeps changing liveness",
             f"{{{{ $value }}}} endpoint repairs in {REPAIR_WINDOW}; about {REPAIRS_EXPECTED} are the periodic refresh, "
             "the rest follow gateway liveness changes.", runbook="multiclustergatewaydown"),
    ]
    # Only Links with a gateway are repaired: the controller returns before its repair loop when the Link has no
    # gatewayAddress ([L] multicluster/service-mirror/cluster_watcher.go Start: "If no gateway address is present, do
    # not repair endpoints"), so a pod-to-pod-only link never has this series and would page forever.
    for peer in sorted((p for p in cluster.mirrored_from if p.has_gateway), key=lambda p: p.name):
        selector = f'{ns}, target_cluster_name="{peer.name}"'
        rules.append(_rule(
            "MulticlusterLinkStalled",
            # Both sides carry the same labels (absent() keeps the equality matchers').
            f"sum by (namespace, target_cluster_name) (increase(service_mirror_endpoint_repairs{{{selector}}}"
            f"[{REPAIR_WINDOW}])) < 1"
            f" or absent(service_mirror_endpoint_repairs{{{selector}}})",
            "critical", f"The link from {cluster.name} to {peer.name} is not running",
            f"The controller-{peer.name} watcher refreshes endpoints every minute; none in {REPAIR_WINDOW} means it "
            f"cannot reach {peer.name}'s API server (credentials cluster-credentials-{peer.name}) or is not running.",
            for_="5m", labels={"target_cluster_name": peer.name}, runbook="multiclusterlinkstalled"))
    # Every alert names the cluster that raised it, as the stack's other alerts do (plan/mesh.py `with_rule_labels`):
    # each cluster's Prometheus sees only its own controllers, and alerts of several clusters meet downstream.
    for body in rules:
        body["labels"] = {"cluster": cluster.name, **body["labels"]}
    return {"name": RULE_GROUP, "rules": rules}


RULE_NAME = "mtls-mesh-multicluster"


def prometheus_rule(cluster: Cluster, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The link alerts beside the controllers they watch, with the stack's monitoring labels (what the Prometheus'
    ruleSelector picks)."""
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": metadata(RULE_NAME, NAMESPACE, labels=dict(labels or {})),
            "spec": {"groups": [rule_group(cluster)]}}


def objects(cluster: Cluster, prometheus_service_accounts: Iterable[tuple[str, str]] = (),
            prometheus_networks: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every object the program registers for this cluster's multicluster part, except the chart's values and the
    gateway policy patches: namespace, Links and credentials, probe and Prometheus authorizations, PodMonitor."""
    return [namespace_object(cluster.cni), *link_objects(cluster), *peer_probe_objects(cluster),
            *prometheus_objects(prometheus_service_accounts, prometheus_networks, cluster.trust_domain,
                                cluster.linkerd_namespace),
            pod_monitor()]

