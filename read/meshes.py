"""What the service graph's checks must know of each mesh, one small table per mesh: the ports its proxy takes in every
injected pod, the namespaces it runs in (never a workload namespace), and the pod labels its injector sets.

Here, in read/, because the graph is validated once, before anything is compiled, and read/ cannot import plan/ (the
layers, tests/test_architecture.py); each mesh's plan package names the same facts for its objects, and
tests/test_graph.py keeps the two equal. tests/test_architecture.py allows mesh names in this one read/ module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class MeshFacts:
    name: str
    # How a problem names the proxy: "<port> is <proxy>'s own <what> port".
    proxy: str
    # The proxy's own ports in every injected pod: a meshed workload listening on one collides with its own proxy.
    proxy_ports: Mapping[int, str]
    # Namespaces the mesh's control plane (and its add-ons) run in.
    namespaces: tuple[str, ...]
    # A label-key prefix the injector sets on every injected pod (a selector on it would select them all), or None;
    # `injector_label_problem` says why in the graph's problem.
    injector_label_prefix: str | None = None
    injector_label_problem: str = ""
    # The namespace annotation that makes a port opaque for every caller in the namespace, or None (read/graph.py
    # _check_opaque_ports).
    opaque_ports_annotation: str | None = None
    # Why egress hosts of one namespace must share a port's protocol whatever the host, or None when only one host's
    # port must agree with itself (read/graph.py _check_egress_protocols).
    egress_port_protocol_problem: str | None = None
    # Workload names in a meshed namespace that would give one of the mesh's per-workload objects the name of a
    # per-namespace object of the same kind, and why (read/graph.py; the plan's collision check would refuse it only
    # in the phase that makes both).
    reserved_workload_names: Mapping[str, str] = field(default_factory=dict)


# linkerd2 edge-26.8.3: the proxy's ports are the linkerd-control-plane chart's proxy.ports (admin 4191, control 4190,
# inbound 4143, outbound 4140); linkerd, linkerd-viz and linkerd-cni are the charts' namespaces; the injector's labels
# are pkg/k8s/labels.go (ControllerNSLabel linkerd.io/control-plane-ns, WorkloadNamespaceLabel linkerd.io/workload-ns,
# linkerd.io/proxy-<kind> for deployment, replicationcontroller, replicaset, job, daemonset, statefulset, cronjob):
# the whole linkerd.io/ prefix is Linkerd's, so none of it is accepted.
LINKERD = MeshFacts(
    name="linkerd", proxy="the Linkerd proxy",
    proxy_ports={4140: "outbound", 4143: "inbound", 4190: "control (tap)", 4191: "admin"},
    namespaces=("linkerd", "linkerd-viz", "linkerd-cni"),
    injector_label_prefix="linkerd.io/",
    injector_label_problem="is a Linkerd label: the proxy injector sets linkerd.io/ labels (such as "
                           "linkerd.io/control-plane-ns) on every meshed pod, so this selector would match them all",
    opaque_ports_annotation="config.linkerd.io/opaque-ports",
    # Every egress route of a namespace has the same parent, its Deny EgressNetwork on the port. The policy
    # controller's status index (linkerd/linkerd2@edge-26.8.3 policy-controller/k8s/status/src/index.rs
    # `parent_has_conflicting_routes`, Gateway API GEP-1426) marks a TLSRoute whose parent an HTTPRoute also names
    # RouteReasonConflicted, and the outbound index skips a route its parent has not accepted (k8s/index/src/outbound/
    # index.rs `apply_tls_route`, index/tls.rs `route_accepted_by_resource_port`): the TLS hosts on that port would be
    # denied. A host and port's own protocol is checked for every mesh.
    egress_port_protocol_problem="with Linkerd a namespace's egress hosts on one port share one protocol: its "
                                 "HTTPRoute (HTTP) and TLSRoutes (TLS) would attach to the same EgressNetwork port, "
                                 "and the policy controller rejects the TLSRoutes as conflicting (Gateway API "
                                 "GEP-1426), denying those hosts")

# istio/istio 1.29.6 (7019d6d3608e4995e9a36d2977cfec3a341431cd), the sidecar's ports, each where the source sets it:
# 15000 Envoy admin (pkg/config/mesh/mesh.go ProxyAdminPort); 15001 outbound and 15006 inbound capture, 15008 the HBONE
# tunnel (tools/common/config/config.go ProxyPort, InboundCapturePort, InboundTunnelPort); 15004 the agent's debug
# port (pilot/cmd/pilot-agent/app/request.go allowedPorts; Istio's "Ports used by Istio" table); 15020 the agent's
# status, merged metrics and rewritten probes (mesh.go StatusPort, istio-discovery values.yaml statusPort); 15021
# Envoy's health and 15090 Envoy's Prometheus stats (pilot/cmd/pilot-agent/options/options.go ENVOY_STATUS_PORT,
# ENVOY_PROMETHEUS_PORT); 15053 the agent's DNS proxy (options.go DNS_PROXY_ADDR localhost:15053). The injection
# template excludes 15090, 15021 and 15020 from inbound capture (../shared/reference/ISTIO-MULTICLUSTER.md A3), so a
# workload port there would bypass mTLS and policy too. istiod and istio-csr both run in istio-system (the root
# namespace, global.istioNamespace; plan/istio/names.py ISTIO_NAMESPACE, ISTIO_CSR_NAMESPACE).
ISTIO = MeshFacts(
    name="istio", proxy="the Istio sidecar",
    proxy_ports={15000: "Envoy admin", 15001: "outbound capture", 15004: "debug", 15006: "inbound capture",
                 15008: "HBONE tunnel", 15020: "agent status, merged metrics and probe", 15021: "health",
                 15053: "DNS proxy", 15090: "Envoy Prometheus"},
    namespaces=("istio-system",),
    # The injector labels every pod it injects `security.istio.io/tlsMode: istio` (istio-discovery
    # files/injection-template.yaml, same tag; plan/istio/names.py TLS_MODE_LABEL), the only security.istio.io/ pod
    # label: a service selecting on it would select every injected pod of its namespace, so its AuthorizationPolicies
    # would admit its callers to all of them and its Sidecar would select the other services' pods too.
    injector_label_prefix="security.istio.io/",
    injector_label_problem="is an Istio label: the sidecar injector sets security.istio.io/tlsMode: istio on every "
                           "injected pod, so this selector would match them all",
    # Under deny each workload gets a Sidecar named after it, beside the namespace's selector-less Sidecar `default`
    # (plan/istio/authorization.py NAMESPACE_SIDECAR, sidecar, closed_namespace_sidecar): a workload `default` would be
    # accepted in audit and refused only when its namespace goes to deny.
    reserved_workload_names={"default": "is the name of the namespace's own selector-less Sidecar, and under deny "
                                        "each workload's Sidecar takes the workload's name"})

MESHES: Mapping[str, MeshFacts] = {facts.name: facts for facts in (LINKERD, ISTIO)}
# The mesh a graph is checked for when no stack names one (python -m discover, CODEOWNERS, the JSON Schema).
DEFAULT_MESH = "linkerd"


def facts_of(mesh: str | None) -> MeshFacts:
    """A mesh's facts; an unknown name (which the mesh setting refuses on its own) gets the default mesh's."""
    return MESHES.get(mesh or DEFAULT_MESH, MESHES[DEFAULT_MESH])
