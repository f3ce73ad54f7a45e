"""The namespaces: the linkerd control-plane namespace and every workload namespace of the service graph, as objects
(register_namespaces.MeshNamespaces registers them).

Meshed namespaces carry `linkerd.io/inject: enabled` and the rollout's default inbound policy; ports that must stay
out of the proxy are skipped here, at the namespace, because the program does not own the workloads.
"""

from __future__ import annotations

from typing import Any

from .graph import Namespace, ServiceGraph
from .objects import metadata
from .settings import RolloutSettings

LINKERD_NAMESPACE = "linkerd"
VIZ_NAMESPACE = "linkerd-viz"
INJECT = "linkerd.io/inject"
DEFAULT_INBOUND_POLICY = "config.linkerd.io/default-inbound-policy"
SKIP_INBOUND_PORTS = "config.linkerd.io/skip-inbound-ports"
SKIP_OUTBOUND_PORTS = "config.linkerd.io/skip-outbound-ports"
# Marks a workload namespace the service graph keeps out of the mesh on purpose (the policy pack checks for it).
OUT_OF_MESH = "mtls-mesh.io/out-of-mesh"


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
    for service in graph.services.values():
        if graph.is_meshed(service):
            continue
        for caller in service.callers:
            if graph.services[caller.service].namespace == namespace:
                wanted = caller.ports or tuple(p.name for p in service.ports)
                ports.update(service.port(name).number for name in wanted)
    return tuple(sorted(ports))


def inbound_ports_to_skip(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports of the namespace's proxy-free services (`meshed: false` in an injected namespace): the injector gives every
    pod of the namespace a proxy, so unless the proxy leaves these ports alone, default deny (with no Server for them)
    would refuse their callers, which arrive without mesh identity. The graph rejects a meshed service on such a port."""
    ports = set(graph.namespaces[namespace].skip_inbound_ports)
    for service in graph.services_in(namespace):
        if not service.meshed:
            ports.update(p.number for p in service.ports)
    return tuple(sorted(ports))


def workload_namespace_object(namespace: Namespace, graph: ServiceGraph, rollout: RolloutSettings) -> dict[str, Any]:
    """A workload namespace: injected with its rollout phase, or explicitly kept out of the mesh."""
    if not namespace.meshed:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": metadata(namespace.name, annotations={INJECT: "disabled", OUT_OF_MESH: "declared in the service graph"})}
    annotations = {INJECT: "enabled", DEFAULT_INBOUND_POLICY: rollout.policy_for(namespace.name)}
    skip_inbound = inbound_ports_to_skip(graph, namespace.name)
    if skip_inbound:
        annotations[SKIP_INBOUND_PORTS] = ",".join(map(str, skip_inbound))
    skip_outbound = outbound_ports_to_skip(graph, namespace.name)
    if skip_outbound:
        annotations[SKIP_OUTBOUND_PORTS] = ",".join(map(str, skip_outbound))
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace.name, annotations=annotations)}
