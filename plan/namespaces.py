"""The namespaces: the linkerd control-plane namespace and every workload namespace of the service graph, as objects
(register_namespaces.MeshNamespaces registers them).

Meshed namespaces carry `linkerd.io/inject: enabled` and the rollout's default inbound policy; ports that must stay
out of the proxy are skipped here, at the namespace, because the program does not own the workloads.
"""

from __future__ import annotations

from typing import Any

from read.graph import Namespace, ServiceGraph
from plan.objects import metadata
from read.settings import RolloutSettings

LINKERD_NAMESPACE = "linkerd"
VIZ_NAMESPACE = "linkerd-viz"
INJECT = "linkerd.io/inject"
DEFAULT_INBOUND_POLICY = "config.linkerd.io/default-inbound-policy"
SKIP_INBOUND_PORTS = "config.linkerd.io/skip-inbound-ports"
SKIP_OUTBOUND_PORTS = "config.linkerd.io/skip-outbound-ports"
OPAQUE_PORTS = "config.linkerd.io/opaque-ports"
# The chart's proxy.opaquePorts (linkerd2 edge-26.8.3 charts/linkerd-control-plane/values.yaml): what a namespace's
# own opaque-ports annotation replaces for its pods and Services, so the namespace's value keeps them.
LINKERD_DEFAULT_OPAQUE_PORTS = (25, 587, 3306, 4444, 5432, 6379, 9300, 11211)
# Marks a workload namespace the service graph keeps out of the mesh on purpose (the policy pack checks for it).
OUT_OF_MESH = "mtls-mesh.io/out-of-mesh"
# On a platform stack's namespace whose policy a shard stack registers: which shard (`kubectl get ns -L` shows the
# owner, and the policy pack checks that namespace's authorization in the shard's preview, not the platform's).
POLICY_SHARD = "mtls-mesh.io/policy-shard"


def linkerd_namespace_object() -> dict[str, Any]:
    """The namespace the Linkerd charts install into; the charts do not create it, and need these labels."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(
            LINKERD_NAMESPACE,
            labels={
                "linkerd.io/is-control-plane": "true",
                "config.linkerd.io/admission-webhooks": "disabled",
                "linkerd.io/control-plane-ns": LINKERD_NAMESPACE,
            },
            annotations={INJECT: "disabled"},
        ),
    }


def viz_namespace_object() -> dict[str, Any]:
    """The linkerd-viz namespace; its pods are injected by the chart's own pod annotations."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(VIZ_NAMESPACE, labels={"linkerd.io/extension": "viz"})}


def outbound_ports_to_skip(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports of proxy-free services that workloads of `namespace` call: their own TLS must reach the peer untouched."""
    ports = set(graph.namespaces[namespace].skip_outbound_ports)
    ports.update(_unmeshed_ports_called_from(graph).get(namespace, ()))
    return tuple(sorted(ports))


# The last graph and its index: computed once for all namespaces (scanning every service for each namespace is
# quadratic: 10,000 namespaces of one service each). Holding the graph keeps its identity from being reused.
_last_index: tuple[ServiceGraph, dict[str, set[int]]] | None = None


def _unmeshed_ports_called_from(graph: ServiceGraph) -> dict[str, set[int]]:
    """namespace -> port numbers of proxy-free services its workloads call."""
    global _last_index
    if _last_index is not None and _last_index[0] is graph:
        return _last_index[1]
    index: dict[str, set[int]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            continue
        for caller in service.callers:
            wanted = caller.ports or tuple(p.name for p in service.ports)
            index.setdefault(graph.services[caller.service].namespace, set()).update(
                service.port(name).number for name in wanted)
    _last_index = (graph, index)
    return index


def inbound_ports_to_skip(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports of the namespace's proxy-free services (`meshed: false` in an injected namespace): the injector gives every
    pod of the namespace a proxy, so unless the proxy leaves these ports alone, default deny (with no Server for them)
    would refuse their callers, which arrive without mesh identity. The graph rejects a meshed service on such a port."""
    ports = set(graph.namespaces[namespace].skip_inbound_ports)
    for service in graph.services_in(namespace):
        if not service.meshed:
            ports.update(p.number for p in service.ports)
    return tuple(sorted(ports))


def opaque_ports(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """The namespace's `config.linkerd.io/opaque-ports`, or () when no meshed service of it declares an opaque port.

    A Server's `proxyProtocol: opaque` only tells the server's own proxy. Callers learn a port is opaque from the
    annotation on the Service (linkerd2 controller/api/destination/watcher/opaque_ports_watcher.go reads only the
    Service's own annotation, else the default list) or on the pod (for calls to a pod address). The program owns
    neither; Linkerd's proxy injector copies a namespace's annotation onto every pod and Service created in it
    (controller/proxy-injector/webhook.go: `AppendNamespaceAnnotations` for pods, `CreateOpaquePortsPatch` for
    Services; the webhook sees pods and services on CREATE). Existing pods and Services keep what they had until
    they are recreated. The value replaces Linkerd's default list in the namespace, so it carries that list too."""
    ports = {p.number for s in graph.services_in(namespace) if graph.is_meshed(s) for p in s.ports if p.protocol == "opaque"}
    return tuple(sorted(ports | set(LINKERD_DEFAULT_OPAQUE_PORTS))) if ports else ()


def workload_namespace_object(namespace: Namespace, graph: ServiceGraph, rollout: RolloutSettings,
                              policy_shard: str | None = None) -> dict[str, Any]:
    """A workload namespace: injected with its rollout phase, or explicitly kept out of the mesh. `policy_shard`: the
    shard stack that registers its policy (platform stacks only)."""
    owner = {POLICY_SHARD: policy_shard} if policy_shard else {}
    if not namespace.meshed:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": metadata(namespace.name, annotations={INJECT: "disabled", OUT_OF_MESH: "declared in the service graph", **owner})}
    annotations = {INJECT: "enabled", DEFAULT_INBOUND_POLICY: rollout.policy_for(namespace.name), **owner}
    skip_inbound = inbound_ports_to_skip(graph, namespace.name)
    if skip_inbound:
        annotations[SKIP_INBOUND_PORTS] = ",".join(map(str, skip_inbound))
    opaque = opaque_ports(graph, namespace.name)
    if opaque:
        annotations[OPAQUE_PORTS] = ",".join(map(str, opaque))
    skip_outbound = outbound_ports_to_skip(graph, namespace.name)
    if skip_outbound:
        annotations[SKIP_OUTBOUND_PORTS] = ",".join(map(str, skip_outbound))
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace.name, annotations=annotations)}
