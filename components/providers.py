"""Explicit providers, configured from settings only: no resource ever falls back to an ambient default provider.
And settings stored as secrets, as inputs of any resource: a `read.settings.Secret` the plan carries becomes a Pulumi
secret (`pulumi.Output.secret`), so the engine encrypts it in the state and every input that carries it is secret."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from components.runtime import settings_errors_reported
from read.errors import Problem, SettingsError
from read.inputs import current_context
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


def kubernetes_provider(name: str, settings: KubernetesSettings, stack: str = "") -> k8s.Provider:
    """`kubeContext: in-cluster` (the Pulumi Kubernetes Operator) uses the pod's service account instead of a context.

    A stack the Operator delivers is configured the Operator's way wherever it runs: no context and no kubeconfig in
    the provider's inputs. Its state holds the inputs of the Operator's updates, and pulumi-kubernetes diffs a changed
    `context` as a provider update (provider.go `DiffConfig`: every changed key is a diff), so a preview from a
    laptop or CI that named the context would never be `--expect-no-changes`. Outside the cluster the provider then
    uses the kubeconfig's current context (client-go's loading rules), which must be the stack's kubeContext: checked
    here, before anything registers, so such a preview still never reaches whatever cluster happens to be current."""
    in_cluster = settings.in_cluster
    operator = settings.delivered_by == "operator"
    context = revealed(settings.context)
    if operator and not in_cluster:
        ambient = current_context()
        if ambient != context:
            # A context or kubeconfig stored as a secret is never quoted (read/errors.hiding's promise).
            wanted = "<the stack's kubeContext>" if isinstance(settings.context, Secret) else context
            export = ("" if not revealed(settings.kubeconfig) else "export KUBECONFIG=<the stack's kubeconfig>; "
                      if isinstance(settings.kubeconfig, Secret) else f"export KUBECONFIG={settings.kubeconfig}; ")
            with settings_errors_reported():
                raise SettingsError([Problem(
                    "mtls-mesh:kubeContext",
                    f"this stack is delivered by the Operator, whose updates reach the cluster with no context, so "
                    f"this run uses the current context of the kubeconfig (KUBECONFIG, else ~/.kube/config), which "
                    f"is {ambient or 'not set'}, not {wanted}",
                    export + f"kubectl config use-context {wanted}, then run this again")], stack)
    with _without_kubeconfig_env(operator):
        return k8s.Provider(
            name,
            # Either may be stored as a secret: then a Pulumi secret here (secret_input).
            context=None if in_cluster or operator else secret_input(settings.context),
            kubeconfig=(None if in_cluster or operator or not revealed(settings.kubeconfig)
                        else secret_input(settings.kubeconfig)),
            # Server-side apply lets adopted namespaces be patched field by field instead of replaced.
            enable_server_side_apply=True,
        )


@contextlib.contextmanager
def _without_kubeconfig_env(hide: bool) -> Iterator[None]:
    """The SDK copies KUBECONFIG into the provider's `kubeconfig` input when none is given (pulumi_kubernetes
    provider.py: `if kubeconfig is None: kubeconfig = _utilities.get_env('KUBECONFIG')`), so the state would record
    this machine's path. For an Operator stack it is hidden while the provider registers: its inputs stay the
    Operator's, and the provider process, which inherits the CLI's environment, still loads KUBECONFIG itself
    (client-go's loading rules, provider.go `Configure`). Not for a workflows stack: its state already records the
    deploy job's path, and pulumi-kubernetes replaces the provider, and with it every object, when the kubeconfig's
    active cluster appears to change (provider.go `DiffConfig`)."""
    saved = os.environ.pop("KUBECONFIG", None) if hide else None
    try:
        yield
    finally:
        if saved is not None:
            os.environ["KUBECONFIG"] = saved


def vault_provider(name: str, settings: VaultSettings) -> vault.Provider:
    """Without vaultToken in config, the provider reads VAULT_TOKEN (or ~/.vault-token), as the Vault CLI does.

    The CA bundle goes as a file: pulumi-vault 7.14.0's provider takes `ca_cert_file` or `ca_cert_dir` and no inline
    certificate (pulumi_vault/provider.py `ProviderArgs`). Its path is the project-relative one
    (read/settings.py `provider_path`), so the state records the same input from every checkout."""
    return vault.Provider(
        name,
        address=settings.address,
        namespace=settings.namespace or None,
        token=pulumi.Output.secret(settings.token.reveal()) if settings.token is not None else None,
        ca_cert_file=secret_input(settings.ca_bundle_path) if revealed(settings.ca_bundle_path) else None,
    )
