"""Explicit providers, configured from settings only: no resource ever falls back to an ambient default provider."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from read.settings import IN_CLUSTER, KubernetesSettings, VaultSettings


def kubernetes_provider(name: str, settings: KubernetesSettings) -> k8s.Provider:
    """`kubeContext: in-cluster` (the Pulumi Kubernetes Operator) uses the pod's service account instead of a context."""
    in_cluster = settings.context == IN_CLUSTER
    return k8s.Provider(
        name,
        context=None if in_cluster else settings.context,
        kubeconfig=None if in_cluster else settings.kubeconfig or None,
        # Server-side apply lets adopted namespaces be patched field by field instead of replaced.
        enable_server_side_apply=True,
    )


def vault_provider(name: str, settings: VaultSettings) -> vault.Provider:
    """Without vaultToken in config, the provider reads VAULT_TOKEN (or ~/.vault-token), as the Vault CLI does."""
    return vault.Provider(
        name,
        address=settings.address,
        namespace=settings.namespace or None,
        token=pulumi.Output.secret(settings.token.reveal()) if settings.token is not None else None,
        ca_cert_file=settings.ca_bundle_path or None,
    )
