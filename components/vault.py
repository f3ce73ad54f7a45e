"""VaultPki and VaultTokenReviewer: register the Vault side of both certificate chains, the logins that may use them
(plan.VaultPlan, built in vault_pki.py), and the Kubernetes side of Vault's token reviews.

Resource names and type tokens are those the stacks' state already holds: a changed name would replace a protected
root or intermediate.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_vault as vault

from components.k8s import register
from components.providers import secret_input
from plan.mesh import VaultPlan
from read.settings import VaultSettings
from plan.vault_pki import (CRL_EXPIRY, INTERMEDIATE_MAX_PATH_LENGTH, VAULT_ISSUER_SERVICE_ACCOUNT, VAULT_TOKEN_AUDIENCE,
                        auth_backend_config_args, intermediate_common_name, issuing_urls)


class VaultTokenReviewer(pulumi.ComponentResource):
    """The Kubernetes side of Vault's token reviews in external mode; `token` is the reviewer's JWT, a Pulumi secret."""

    def __init__(self, name: str, objects: Sequence[dict[str, Any]], opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:vault_pki:VaultTokenReviewer", name, None, opts)
        account, secret, binding = objects
        account_resource = register(f"{name}-account", account, pulumi.ResourceOptions(parent=self))
        after = pulumi.ResourceOptions(parent=self, depends_on=[account_resource])
        secret_resource = register(f"{name}-token", secret, after)
        self.binding = register(f"{name}-auth-delegator", binding, after)
        # The token controller fills data.token (base64); pulumi-kubernetes waits for it on this Secret type.
        self.token: pulumi.Output[str] = pulumi.Output.secret(
            secret_resource.data.apply(lambda data: base64.b64decode((data or {}).get("token", "")).decode()))
        self.register_outputs({})




@dataclass
class VaultAnchor:
    """What the rest of the program needs of one Vault-backed anchor: the mesh root (what proxies trust) and the
    workload root (what clients of TLS-terminating workloads trust), and what must exist before either is used."""

    anchor: str
    root_certificate_pem: pulumi.Output[str]
    workload_root_pem: pulumi.Output[str]
    ready: list[pulumi.Resource]
    workload_ready: list[pulumi.Resource]
    # The intermediate certificate root/sign-intermediate signs with (the latest of vaultIntermediateRenewals, if any):
    # its notAfter is written into the MeshVaultIntermediateExpiring alert.
    intermediate_pem: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class VaultPkiArgs:
    # The Vault settings (address, mounts, TTLs, Kubernetes auth) and what the stack declares in Vault (plan.VaultPlan).
    settings: VaultSettings
    plan: VaultPlan
    # External mode: the token reviewer's JWT and what must exist before Vault uses it.
    reviewer_token: pulumi.Input[str] | None = None
    reviewer_ready: tuple[pulumi.Resource, ...] = ()


class VaultPki(pulumi.ComponentResource):
    """Vault side of the trust chains. `anchors[id]` gives each anchor's roots and readiness; `identity_login_ready` and
    `namespace_login_ready[ns]` are what an issuer waits for before it can log in and sign."""

    def __init__(self, name: str, args: VaultPkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:vault_pki:VaultPki", name, None, opts)
        vault_settings, plan = args.settings, args.plan
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=plan.protect)
        self.anchors: dict[str, VaultAnchor] = {}
        namespaces = list(plan.workload_roles)
        workload_roles: dict[str, list[pulumi.Resource]] = {ns: [] for ns in namespaces}

        for anchor in plan.anchors:
            int_path = vault_settings.intermediate_mount(anchor)
            int_name = intermediate_common_name(vault_settings, anchor)
            if vault_settings.owns_root:
                root_path = vault_settings.root_mount(anchor)
                root_mount, root = self._root(f"{name}-root-{anchor}", root_path, f"mtls-mesh root {anchor}",
                                              f"mtls-mesh trust anchor {anchor}", f"root-{anchor}", vault_settings, kept)
                root_urls = self._publish(f"{name}-root-{anchor}", root_mount, root_path, vault_settings, child,
                                          after=root)
                root_backend: pulumi.Input[str] = root_mount.path
                root_after: list[pulumi.Resource] = [root, root_urls]
            else:
                # A secondary cluster: the root mount is the root-owning stack's (its name read from that stack's
                # file), which that stack applied first for this anchor (plan/rotation.cluster_rotation_problem).
                root_backend, root_after = vault_settings.root_mount(anchor), []

            # It signs only the identity issuer: its max TTL is the issuer's duration, so no ttl (nor the mount's
            # default) gets a longer-lived CA from it, whoever asks. sign-intermediate caps ttl at the mount's max
            # (openbao internal/builtin/logical/pki/cert_util.go getCertificateNotAfter); an update, not a replacement.
            int_mount = vault.Mount(f"{name}-int-{anchor}", path=int_path, type="pki",
                                    description=f"mtls-mesh intermediate under anchor {anchor}",
                                    max_lease_ttl_seconds=plan.intermediate_max_ttl_seconds, opts=kept)
            csr = vault.pkisecret.SecretBackendIntermediateCertRequest(
                f"{name}-int-{anchor}-csr", backend=int_mount.path, type="internal",
                common_name=int_name, organization="mtls-mesh", key_type="ec", key_bits=256,
                opts=kept)
            signed = vault.pkisecret.SecretBackendRootSignIntermediate(
                f"{name}-int-{anchor}-signed", backend=root_backend, csr=csr.csr,
                common_name=int_name, organization="mtls-mesh",
                ttl=str(vault_settings.intermediate_ttl.seconds), max_path_length=INTERMEDIATE_MAX_PATH_LENGTH,
                # The bundle already carries the root, so set-signed below receives it twice; Vault imports each
                # certificate once, and the chains it hands out carry the root once (tests/test_vault_least_privilege.py).
                # Left so: `format` and set-signed's `certificate` force replacement (ForceNew in the provider), which
                # would re-sign every existing stack's intermediate, and a protected stack's `up` would be refused.
                # A secondary cluster's stack is new: it takes the plain certificate and the root from issuing_ca.
                format="pem_bundle" if vault_settings.owns_root else "pem",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=root_after)))
            # The root certificate: the root-owning stack's own resource, or (a secondary) the CA that signed this
            # intermediate, as Vault answered the signing (issuing_ca), so the secondary reads no other stack for it.
            root_pem: pulumi.Output[str] = root.certificate if vault_settings.owns_root else signed.issuing_ca
            set_signed = vault.pkisecret.SecretBackendIntermediateSetSigned(
                f"{name}-int-{anchor}-set-signed", backend=int_mount.path,
                # The full chain, so cert-manager's ca.crt is the root and proxies can verify to the anchor.
                certificate=pulumi.Output.concat(signed.certificate, "\n", root_pem), opts=kept)
            int_urls = self._publish(f"{name}-int-{anchor}", int_mount, int_path, vault_settings, child, after=set_signed)
            intermediate_pem: pulumi.Output[str] = signed.certificate
            int_ready: list[pulumi.Resource] = [set_signed, int_urls]
            if vault_settings.intermediate_renewals:
                intermediate_pem, default_issuer = self._renew_intermediate(
                    f"{name}-int-{anchor}", vault_settings, root_backend, root_pem, csr, int_mount, anchor,
                    kept, child, after=[set_signed, int_urls, *root_after[1:]])
                int_ready.append(default_issuer)

            # The workload chain: a root the proxies never trust, signing leaves through one role per namespace.
            workload_path = vault_settings.workload_mount(anchor)
            workload_mount, workload_root = self._root(
                f"{name}-workload-{anchor}", workload_path, f"mtls-mesh workload root {anchor}",
                f"mtls-mesh workload certificates under anchor {anchor}", f"workload-{anchor}", vault_settings, kept)
            workload_urls = self._publish(f"{name}-workload-{anchor}", workload_mount, workload_path, vault_settings, child,
                                          after=workload_root)
            for namespace in namespaces:
                workload_roles[namespace].append(vault.pkisecret.SecretBackendRole(
                    f"{name}-workload-{anchor}/{namespace}", backend=workload_mount.path,
                    **plan.workload_roles[namespace],
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[workload_root]))))
            self.anchors[anchor] = VaultAnchor(anchor, root_pem, workload_root.certificate,
                                               ready=int_ready, workload_ready=[workload_root, workload_urls],
                                               intermediate_pem=intermediate_pem)

        backend_path, auth_ready = self._kubernetes_auth(name, vault_settings, args, child)

        def login(resource_name: str, role_name: str, namespace: str, policy_text: str,
                  extra: list[pulumi.Resource]) -> list[pulumi.Resource]:
            """A policy and the Kubernetes auth role whose tokens carry it (and only it)."""
            policy = vault.Policy(f"{resource_name}-policy", name=role_name, policy=policy_text, opts=child)
            role = vault.kubernetes.AuthBackendRole(
                f"{resource_name}-login", backend=backend_path, role_name=role_name,
                bound_service_account_names=[VAULT_ISSUER_SERVICE_ACCOUNT], bound_service_account_namespaces=[namespace],
                audience=VAULT_TOKEN_AUDIENCE, token_ttl=vault_settings.auth_token_ttl.seconds,
                token_max_ttl=vault_settings.auth_token_ttl.seconds, token_policies=[policy.name],
                # Exactly the policy above: Vault would otherwise add its `default` policy to every login token.
                token_no_default_policy=True,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=auth_ready)))
            return [policy, role, *extra]

        # The mesh CA's login: Linkerd's identity issuer (`<name>-identity`), or another mesh's CA signer.
        identity = plan.identity_login
        self.identity_login_ready: list[pulumi.Resource] = login(
            f"{name}-{identity.name}", identity.role, identity.namespace, identity.policy, [])
        self.namespace_login_ready: dict[str, list[pulumi.Resource]] = {
            namespace: login(f"{name}-ns-{namespace}", plan.namespace_logins[namespace].role, namespace,
                             plan.namespace_logins[namespace].policy, workload_roles[namespace])
            for namespace in namespaces
        }
        # What the preview token may do (plan/preview_identity.py): read, never write; an operator gives the preview
        # job a token of this policy (docs/delivery-security.md).
        preview_name, preview_text = plan.preview_policy
        if preview_name:
            vault.Policy(f"{name}-preview-policy", name=preview_name, policy=preview_text, opts=child)
        self.register_outputs({"roots": {anchor: a.root_certificate_pem for anchor, a in self.anchors.items()},
                               "workloadRoots": {anchor: a.workload_root_pem for anchor, a in self.anchors.items()}})

    @staticmethod
    def _root(name: str, path: str, common_name: str, description: str, issuer_name: str, settings: VaultSettings,
              kept: pulumi.ResourceOptions) -> tuple[vault.Mount, vault.pkisecret.SecretBackendRootCert]:
        """A PKI mount holding a self-signed EC P-256 root whose key never leaves Vault."""
        mount = vault.Mount(name, path=path, type="pki", description=description,
                            max_lease_ttl_seconds=settings.root_ttl.seconds, opts=kept)
        root = vault.pkisecret.SecretBackendRootCert(
            name, backend=mount.path, type="internal", common_name=common_name, organization="mtls-mesh",
            key_type="ec", key_bits=256, ttl=str(settings.root_ttl.seconds), issuer_name=issuer_name,
            opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=[mount])))
        return mount, root

    @staticmethod
    def _renew_intermediate(name: str, settings: VaultSettings, root_backend: pulumi.Input[str],
                            root_pem: pulumi.Output[str],
                            csr: vault.pkisecret.SecretBackendIntermediateCertRequest, int_mount: vault.Mount, anchor: str,
                            kept: pulumi.ResourceOptions, opts: pulumi.ResourceOptions, after: list[pulumi.Resource],
                            ) -> tuple[pulumi.Output[str], vault.pkisecret.SecretBackendConfigIssuers]:
        """Per id of vaultIntermediateRenewals: the intermediate re-signed by its root for a new vaultIntermediateTtl
        (same key and subject, so whatever an earlier certificate signed also chains through the new one) and imported
        into the intermediate mount. The last one is made the mount's default issuer, which is what
        root/sign-intermediate signs with, so the identity issuer's next renewal chains through it. Importing alone
        does not move the default (openbao internal/builtin/logical/pki/path_manage_issuers.go pathImportIssuers: only
        with default_follows_latest_issuer).

        One pair of resources per id, kept like the first signing (protected with protectPki, as the policy pack
        requires of these types): a renewal appends an id and nothing is ever replaced or deleted."""
        latest: tuple[pulumi.Output[str], vault.pkisecret.SecretBackendIntermediateSetSigned] | None = None
        for renewal in settings.intermediate_renewals:
            signed = vault.pkisecret.SecretBackendRootSignIntermediate(
                f"{name}-renewal-{renewal}", backend=root_backend, csr=csr.csr,
                common_name=intermediate_common_name(settings, anchor), organization="mtls-mesh",
                ttl=str(settings.intermediate_ttl.seconds), max_path_length=INTERMEDIATE_MAX_PATH_LENGTH, format="pem",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=after)))
            # Only the new certificate is new to the mount (the root is already there): it is the one imported issuer.
            imported = vault.pkisecret.SecretBackendIntermediateSetSigned(
                f"{name}-renewal-{renewal}-set-signed", backend=int_mount.path,
                certificate=pulumi.Output.concat(signed.certificate, "\n", root_pem),
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=after)))
            latest = (signed.certificate, imported)
            after = [imported]
        assert latest is not None
        certificate, imported = latest
        renewal = settings.intermediate_renewals[-1]

        def only_issuer(issuers: list[str] | None) -> str:
            if not issuers or len(issuers) != 1:
                raise ValueError(f"renewal {renewal} of the intermediate of anchor {anchor} imported {issuers or 'no'} "
                                 f"issuers into {settings.intermediate_mount(anchor)}, expected exactly the new "
                                 f"certificate: check the mount's issuers (vault list {settings.intermediate_mount(anchor)}"
                                 "/issuers) and append another renewal id")
            return issuers[0]

        # Not a key holder (the provider's Delete is a no-op: terraform-provider-vault
        # resource_pki_secret_backend_config_issuers.go), so not protected.
        default = vault.pkisecret.SecretBackendConfigIssuers(
            f"{name}-default-issuer", backend=int_mount.path,
            default=imported.imported_issuers.apply(only_issuer), opts=opts)
        return certificate, default

    @staticmethod
    def _kubernetes_auth(name: str, settings: VaultSettings, args: VaultPkiArgs,
                         opts: pulumi.ResourceOptions) -> tuple[pulumi.Input[str], list[pulumi.Resource]]:
        """The Kubernetes auth mount the logins live on (created and configured, or an existing one)."""
        if not settings.create_kubernetes_auth:
            return settings.kubernetes_auth_path, []
        backend = vault.AuthBackend(f"{name}-kubernetes", type="kubernetes", path=settings.kubernetes_auth_path,
                                    description="mtls-mesh: cert-manager's issuers log in here", opts=opts)
        config = vault.kubernetes.AuthBackendConfig(
            f"{name}-kubernetes", backend=backend.path,
            **secret_input(auth_backend_config_args(settings, args.reviewer_token)),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(args.reviewer_ready))))
        return backend.path, [config]

    @staticmethod
    def _publish(name: str, mount: vault.Mount, path: str, settings: VaultSettings, opts: pulumi.ResourceOptions,
                 after: pulumi.Resource) -> vault.pkisecret.SecretBackendConfigUrls:
        """Where the mount's CA certificate and CRL are published, and a CRL that rebuilds itself. One write at a time
        per mount, after its issuer exists: generating an issuer rebuilds the CRL, and OpenBao answered a config write
        racing it with 500 "transaction commit failed" (tests/openbao.py)."""
        urls = vault.pkisecret.SecretBackendConfigUrls(
            f"{name}-urls", backend=mount.path, **issuing_urls(settings, path),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[after])))
        vault.pkisecret.SecretBackendCrlConfig(
            f"{name}-crl", backend=mount.path, auto_rebuild=True, expiry=CRL_EXPIRY,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[urls])))
        return urls
