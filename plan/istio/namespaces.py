"""The namespaces of an Istio mesh: istiod's (and istio-csr's) namespace, and every workload namespace of the service
graph with Istio's injection switch, as objects (plan/mesh.py picks these over plan/linkerd/namespaces.py's with
`mesh: istio`).

Injection is the namespace label `istio-injection=enabled` (reference A4; the injector's namespaceSelector in
istio-discovery `templates/mutatingwebhook.yaml` [IC]). Nothing else of Istio's goes on the namespace: the rollout
phase is a PeerAuthentication and AuthorizationPolicy (authorization.py), and proxy-free ports are excluded by a
port-level PeerAuthentication there, not by a pod annotation the program does not own.
"""

from __future__ import annotations

from typing import Any

from plan.istio.names import ISTIO_NAMESPACE, NAMESPACE_INJECTION_LABEL
from plan.namespaces import OUT_OF_MESH, POLICY_SHARD
from plan.objects import metadata
from read.graph import Namespace


def control_plane_namespace_object() -> dict[str, Any]:
    """istio-system: the charts do not create it (pulumi's Release is told not to either). Never injected: istiod and
    istio-csr carry no sidecar, and `disabled` says so whatever the webhook's defaults."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(ISTIO_NAMESPACE, labels={NAMESPACE_INJECTION_LABEL: "disabled"})}


def workload_namespace_object(namespace: Namespace, policy_shard: str | None = None) -> dict[str, Any]:
    """A workload namespace: injected, or explicitly kept out of the mesh (with the label present, every selector of
    the injector's webhooks but the `istio-injection In [enabled]` one fails: `templates/mutatingwebhook.yaml` [IC])."""
    owner = {POLICY_SHARD: policy_shard} if policy_shard else {}
    if not namespace.meshed:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": metadata(namespace.name, labels={NAMESPACE_INJECTION_LABEL: "disabled"},
                                     annotations={OUT_OF_MESH: "declared in the service graph", **owner})}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(namespace.name, labels={NAMESPACE_INJECTION_LABEL: "enabled"},
                                 annotations=owner or None)}
