"""The namespaces of a Linkerd mesh: the linkerd control-plane namespace, linkerd-viz's, and every workload namespace
of the service graph with Linkerd's annotations, as objects (components/namespaces.py registers them; plan/mesh.py
picks these with `mesh: linkerd`, plan/istio/namespaces.py's with `mesh: istio`).

Meshed namespaces carry `linkerd.io/inject: enabled` and the rollout's default inbound policy; ports that must stay
out of the proxy (plan/edges.py computes them from the graph for both meshes) are skipped here, at the namespace,
because the program does not own the workloads.
"""

from __future__ import annotations

from typing import Any

from read.graph import Namespace, ServiceGraph
from plan.edges import inbound_ports_to_skip, outbound_ports_to_skip
from plan.namespaces import OUT_OF_MESH, POLICY_SHARD
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
