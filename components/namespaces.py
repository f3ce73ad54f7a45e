"""MeshNamespaces: registers (or adopts) the mesh control plane's namespace, Linkerd viz's when the plan has one, and
every namespace of the service graph, from the plan (plan.MeshPlan; objects built in plan/linkerd/namespaces.py or
plan/istio/namespaces.py). Each is named after its namespace. `namespaces[name]` is what namespaced objects depend on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi

from components.k8s import register
from plan.mesh import NamespacePlan


@dataclass(frozen=True)
class MeshNamespacesArgs:
    # The mesh control plane's Namespace (MeshPlan.control_plane_namespace).
    control_plane: dict[str, Any]
    viz: dict[str, Any] | None
    namespaces: Mapping[str, NamespacePlan]


class MeshNamespaces(pulumi.ComponentResource):
    """Creates (or adopts) the namespaces; `namespaces[name]` is what namespaced objects depend on."""

    def __init__(self, name: str, args: MeshNamespacesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:namespaces:MeshNamespaces", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Named after the namespace: `mesh-linkerd` for Linkerd, as always. `linkerd`: what Linkerd's components
        # wait for (the same resource).
        self.control_plane = register(f"{name}-{args.control_plane['metadata']['name']}", args.control_plane, child)
        self.linkerd = self.control_plane
        self.viz = register(f"{name}-{args.viz['metadata']['name']}", args.viz, child) if args.viz is not None else None
        self.namespaces: dict[str, pulumi.CustomResource] = {}
        for namespace in args.namespaces.values():
            # Adopted: server-side apply takes over just the plan's labels and annotations from whoever set them.
            self.namespaces[namespace.name] = register(f"{name}-{namespace.name}", namespace.namespace, child,
                                                       kind_override="NamespacePatch" if namespace.adopted else None)
        self.register_outputs({"namespaces": sorted(self.namespaces)})
