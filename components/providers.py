"""Explicit providers, configured from settings only: no resource ever falls back to an ambient default provider.
And settings stored as secrets, as inputs of any resource: a `read.settings.Secret` the plan carries becomes a Pulumi
secret (`pulumi.Output.secret`), so the engine encrypts it in the state and every input that carries it is secret."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from read.settings import KubernetesSettings, Secret, VaultSettings, revealed


def secret_input(value: Any) -> Any:
    """`value` as an input: a Secret, or a dict or list holding one, turned into Pulumi secrets; anything else as is."""
    if isinstance(value, Secret):
        return pulumi.Output.secret(value.reveal())
    if isinstance(value, dict):
        return {key: secret_input(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [secret_input(item) for item in value]
    return value


def kubernetes_provider(name: str, settings: KubernetesSettings) -> k8s.Provider:
    """`kubeContext: in-cluster` (the Pulumi Kubernetes Operator) uses the pod's service account instead of a context."""
    in_cluster = settings.in_cluster
    return k8s.Provider(
        name,
        # Either may be stored as a secret: then a Pulumi secret here (secret_input).
        context=None if in_cluster else secret_input(settings.context),
        kubeconfig=None if in_cluster or not revealed(settings.kubeconfig) else secret_input(settings.kubeconfig),
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
        ca_cert_file=secret_input(settings.ca_bundle_path) if revealed(settings.ca_bundle_path) else None,
    )
