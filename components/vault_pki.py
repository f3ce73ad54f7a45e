"""VaultPki: per trust anchor a Vault root mount and an intermediate mount (EC P-256 keys generated inside Vault),
the Kubernetes auth role cert-manager logs in with, its least-privilege policy, and the workload PKI role.

The intermediate signs the Linkerd identity issuer, itself a CA, so it is issued with max path length 1 and
set-signed with the full chain (so that `ca.crt` in cert-manager's Secret is the root, not the intermediate).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_vault as vault

from .k8s import metadata, register
from .settings import AnchorRotation, Settings, VaultSettings

# cert-manager always puts its own audience (vault://<clusterissuer>) in the token; this extra one is what the single
# Vault role checks, so one role serves every ClusterIssuer of the mesh.
VAULT_TOKEN_AUDIENCE = "vault://mtls-mesh"
VAULT_ISSUER_SERVICE_ACCOUNT = "mtls-mesh-vault-issuer"
# Vault outside the cluster reviews login tokens (TokenReview) with this account's token; kube-system exists before
# anything of ours, and the account can do nothing but review tokens.
TOKEN_REVIEWER = "mtls-mesh-vault-token-reviewer"
TOKEN_REVIEWER_NAMESPACE = "kube-system"
# The intermediate signs the identity issuer (a CA) that signs proxy leaves: exactly one CA below it.
INTERMEDIATE_MAX_PATH_LENGTH = 1
CRL_EXPIRY = "72h"


def vault_api_url(settings: VaultSettings, path: str) -> str:
    """A URL under Vault's API, with the Enterprise namespace where it has one."""
    namespace = f"{settings.namespace}/" if settings.namespace else ""
    return f"{settings.address.rstrip('/')}/v1/{namespace}{path}"


def issuing_urls(settings: VaultSettings, mount: str) -> dict[str, list[str]]:
    """AIA and CRL distribution points written into every certificate the mount issues."""
    return {"issuing_certificates": [vault_api_url(settings, f"{mount}/ca")],
            "crl_distribution_points": [vault_api_url(settings, f"{mount}/crl")]}


def issuer_signing_path(settings: VaultSettings, anchor: str) -> str:
    """What cert-manager calls to sign the Linkerd identity issuer. Never `sign/<role>`: that returns a leaf
    (Linkerd then fails with "issuer cert is not a CA", linkerd2#10391)."""
    return f"{settings.intermediate_mount(anchor)}/root/sign-intermediate"


def workload_signing_path(settings: VaultSettings, anchor: str) -> str:
    return f"{settings.intermediate_mount(anchor)}/sign/{settings.workload_role}"


def cert_manager_policy(settings: VaultSettings, rotation: AnchorRotation) -> str:
    """The only paths cert-manager may call: issuer signing and workload signing, on anchors still in use."""
    stanzas = []
    for anchor in rotation.anchors:
        for path in (issuer_signing_path(settings, anchor), workload_signing_path(settings, anchor)):
            stanzas.append(f'path "{path}" {{\n  capabilities = ["create", "update"]\n}}\n')
    return "\n".join(stanzas)


def workload_role_args(settings: Settings) -> dict:
    """The PKI role for certificates of traffic the mesh does not carry: EC P-256, server and client use,
    names only under the graph's namespaces and SPIFFE IDs of this trust domain."""
    vault_settings = settings.vault
    domains = sorted({f"{ns}.svc" for ns in settings.graph.namespaces}
                     | {f"{ns}.svc.cluster.local" for ns in settings.graph.namespaces})
    return {
        "name": vault_settings.workload_role,
        "key_type": "ec",
        "key_bits": 256,
        "allowed_domains": domains,
        "allow_subdomains": True,
        "allow_bare_domains": False,
        "allow_ip_sans": False,
        "allow_localhost": False,
        "enforce_hostnames": True,
        "allowed_uri_sans": [f"spiffe://{settings.trust_domain}/ns/*/sa/*"],
        "require_cn": False,
        "server_flag": True,
        "client_flag": True,
        "key_usages": ["DigitalSignature", "KeyAgreement"],
        "ttl": str(settings.pki.workload_duration.seconds),
        # Certificates are stored (no_store stays false) so a leaked one can be revoked by serial before its long life ends.
        "max_ttl": str(settings.pki.workload_duration.seconds),
    }


def token_reviewer_objects() -> list[dict[str, Any]]:
    """A service account allowed to review tokens (ClusterRole system:auth-delegator) and a long-lived token for it,
    which Vault outside the cluster presents to the TokenReview API (Vault's Kubernetes auth `token_reviewer_jwt`)."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(TOKEN_REVIEWER, TOKEN_REVIEWER_NAMESPACE)},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": metadata(TOKEN_REVIEWER, TOKEN_REVIEWER_NAMESPACE,
                              annotations={"kubernetes.io/service-account.name": TOKEN_REVIEWER}),
         "type": "kubernetes.io/service-account-token"},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": metadata(TOKEN_REVIEWER),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": TOKEN_REVIEWER, "namespace": TOKEN_REVIEWER_NAMESPACE}]},
    ]


class VaultTokenReviewer(pulumi.ComponentResource):
    """The Kubernetes side of Vault's token reviews in external mode; `token` is the reviewer's JWT, a Pulumi secret."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:vault_pki:VaultTokenReviewer", name, None, opts)
        account, secret, binding = token_reviewer_objects()
        account_resource = register(f"{name}-account", account, pulumi.ResourceOptions(parent=self))
        after = pulumi.ResourceOptions(parent=self, depends_on=[account_resource])
        secret_resource = register(f"{name}-token", secret, after)
        self.binding = register(f"{name}-auth-delegator", binding, after)
        # The token controller fills data.token (base64); pulumi-kubernetes waits for it on this Secret type.
        self.token: pulumi.Output[str] = pulumi.Output.secret(
            secret_resource.data.apply(lambda data: base64.b64decode((data or {}).get("token", "")).decode()))
        self.register_outputs({})


def auth_backend_config_args(settings: VaultSettings, reviewer_token: pulumi.Input[str] | None) -> dict[str, Any]:
    """How Vault reviews cert-manager's login tokens. In-cluster, Vault uses its own pod's service account token and
    CA (its account needs system:auth-delegator). Outside the cluster there are no such files (writing the config
    fails with "open /var/run/secrets/kubernetes.io/serviceaccount/ca.crt"), and without a reviewer JWT Vault would
    review with the login JWT itself, whose audience the API server refuses: so the reviewer's token and the API
    server's CA are given, and the local files are never read."""
    args: dict[str, Any] = {"kubernetes_host": settings.kubernetes_host}
    if settings.kubernetes_auth_mode == "external":
        args.update(kubernetes_ca_cert=settings.kubernetes_ca_pem, token_reviewer_jwt=reviewer_token,
                    disable_local_ca_jwt=True)
    return args


@dataclass
class VaultAnchor:
    """What the rest of the program needs of one Vault-backed anchor."""

    anchor: str
    root_certificate_pem: pulumi.Output[str]
    ready: list[pulumi.Resource]


@dataclass(frozen=True)
class VaultPkiArgs:
    settings: Settings
    # External mode: the token reviewer's JWT and what must exist before Vault uses it.
    reviewer_token: pulumi.Input[str] | None = None
    reviewer_ready: tuple[pulumi.Resource, ...] = ()


class VaultPki(pulumi.ComponentResource):
    """Vault side of the trust chain; `anchors[id]` gives each anchor's root certificate and readiness."""

    def __init__(self, name: str, args: VaultPkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:vault_pki:VaultPki", name, None, opts)
        settings, vault_settings = args.settings, args.settings.vault
        protect = settings.pki.protect
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=protect)
        self.anchors: dict[str, VaultAnchor] = {}

        for anchor in settings.pki.rotation.anchors:
            root_path, int_path = vault_settings.root_mount(anchor), vault_settings.intermediate_mount(anchor)
            root_mount = vault.Mount(f"{name}-root-{anchor}", path=root_path, type="pki",
                                     description=f"mtls-mesh trust anchor {anchor}",
                                     max_lease_ttl_seconds=vault_settings.root_ttl.seconds, opts=kept)
            root = vault.pkisecret.SecretBackendRootCert(
                f"{name}-root-{anchor}", backend=root_mount.path, type="internal",
                common_name=f"mtls-mesh root {anchor}", organization="mtls-mesh", key_type="ec", key_bits=256,
                ttl=str(vault_settings.root_ttl.seconds), issuer_name=f"root-{anchor}",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=[root_mount])))
            root_urls = self._publish(f"{name}-root-{anchor}", root_mount, root_path, vault_settings, child)

            int_mount = vault.Mount(f"{name}-int-{anchor}", path=int_path, type="pki",
                                    description=f"mtls-mesh intermediate under anchor {anchor}",
                                    max_lease_ttl_seconds=vault_settings.intermediate_ttl.seconds, opts=kept)
            csr = vault.pkisecret.SecretBackendIntermediateCertRequest(
                f"{name}-int-{anchor}-csr", backend=int_mount.path, type="internal",
                common_name=f"mtls-mesh intermediate {anchor}", organization="mtls-mesh", key_type="ec", key_bits=256,
                opts=kept)
            signed = vault.pkisecret.SecretBackendRootSignIntermediate(
                f"{name}-int-{anchor}-signed", backend=root_mount.path, csr=csr.csr,
                common_name=f"mtls-mesh intermediate {anchor}", organization="mtls-mesh",
                ttl=str(vault_settings.intermediate_ttl.seconds), max_path_length=INTERMEDIATE_MAX_PATH_LENGTH,
                format="pem_bundle",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=[root, root_urls])))
            set_signed = vault.pkisecret.SecretBackendIntermediateSetSigned(
                f"{name}-int-{anchor}-set-signed", backend=int_mount.path,
                # The full chain, so cert-manager's ca.crt is the root and proxies can verify to the anchor.
                certificate=pulumi.Output.concat(signed.certificate, "\n", root.certificate), opts=kept)
            int_urls = self._publish(f"{name}-int-{anchor}", int_mount, int_path, vault_settings, child)
            role = vault.pkisecret.SecretBackendRole(
                f"{name}-int-{anchor}-workload", backend=int_mount.path, **workload_role_args(settings),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[set_signed])))
            self.anchors[anchor] = VaultAnchor(anchor, root.certificate, [set_signed, int_urls, role])

        policy = vault.Policy(f"{name}-cert-manager-policy", name=f"{vault_settings.auth_role}",
                              policy=cert_manager_policy(vault_settings, settings.pki.rotation), opts=child)
        if vault_settings.create_kubernetes_auth:
            backend = vault.AuthBackend(f"{name}-kubernetes", type="kubernetes", path=vault_settings.kubernetes_auth_path,
                                        description="mtls-mesh: cert-manager logs in here", opts=child)
            auth_config = vault.kubernetes.AuthBackendConfig(
                f"{name}-kubernetes", backend=backend.path, **auth_backend_config_args(vault_settings, args.reviewer_token),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(args.reviewer_ready))))
            backend_path: pulumi.Input[str] = backend.path
            auth_ready: list[pulumi.Resource] = [auth_config]
        else:
            backend_path, auth_ready = vault_settings.kubernetes_auth_path, []
        auth_role = vault.kubernetes.AuthBackendRole(
            f"{name}-cert-manager-login", backend=backend_path, role_name=vault_settings.auth_role,
            bound_service_account_names=[VAULT_ISSUER_SERVICE_ACCOUNT],
            bound_service_account_namespaces=[settings.cert_manager.namespace],
            audience=VAULT_TOKEN_AUDIENCE, token_ttl=vault_settings.auth_token_ttl.seconds,
            token_max_ttl=vault_settings.auth_token_ttl.seconds, token_policies=[policy.name],
            # Exactly the policy above: Vault would otherwise add its `default` policy to every login token.
            token_no_default_policy=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=auth_ready)))
        self.login_ready: list[pulumi.Resource] = [policy, auth_role]
        self.register_outputs({"roots": {anchor: a.root_certificate_pem for anchor, a in self.anchors.items()}})

    @staticmethod
    def _publish(name: str, mount: vault.Mount, path: str, settings: VaultSettings,
                 opts: pulumi.ResourceOptions) -> vault.pkisecret.SecretBackendConfigUrls:
        """Where the mount's CA certificate and CRL are published, and a CRL that rebuilds itself."""
        urls = vault.pkisecret.SecretBackendConfigUrls(f"{name}-urls", backend=mount.path,
                                                       **issuing_urls(settings, path), opts=opts)
        vault.pkisecret.SecretBackendCrlConfig(f"{name}-crl", backend=mount.path, auto_rebuild=True,
                                               expiry=CRL_EXPIRY, opts=opts)
        return urls
