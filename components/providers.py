"""Explicit providers, configured from settings only: no resource ever falls back to an ambient default provider."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from .settings import KubernetesSettings, VaultSettings


def kubernetes_provider(name: str, settings: KubernetesSettings) -> k8s.Provider:
    return k8s.Provider(
        name,
        context=settings.context,
        kubeconfig=settings.kubeconfig or None,
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
