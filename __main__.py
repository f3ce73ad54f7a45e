"""mtls-mesh: wiring only. Settings are read and validated once, then each component gets what it needs."""

import pulumi

from components.namespaces import MeshNamespaces, MeshNamespacesArgs
from components.providers import kubernetes_provider
from components.settings import load_settings, read_stack_config

config, secret_keys = read_stack_config()
settings = load_settings(config, pulumi.get_stack(), secret_keys=secret_keys)

kubernetes = kubernetes_provider("kubernetes", settings.kubernetes)
on_cluster = pulumi.ResourceOptions(providers={"kubernetes": kubernetes})

namespaces = MeshNamespaces(
    "mesh",
    MeshNamespacesArgs(graph=settings.graph, rollout=settings.rollout, adopt=settings.adopt_namespaces),
    on_cluster,
)

pulumi.export("environment", settings.environment)
pulumi.export("inboundPolicies", {
    ns.name: settings.rollout.policy_for(ns.name) for ns in settings.graph.meshed_namespaces
})
