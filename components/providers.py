"""Explicit providers, configured from settings only: no resource ever falls back to an ambient default provider."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .settings import KubernetesSettings


def kubernetes_provider(name: str, settings: KubernetesSettings) -> k8s.Provider:
    return k8s.Provider(
        name,
        context=settings.context,
        kubeconfig=settings.kubeconfig or None,
        # Server-side apply lets adopted namespaces be patched field by field instead of replaced.
        enable_server_side_apply=True,
    )
