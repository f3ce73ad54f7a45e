"""VaultPki: the Vault side of both certificate chains, and the logins that may use them.

Per trust anchor in use:
- the mesh chain: a root mount and an intermediate mount (EC P-256 keys generated inside Vault). The intermediate
  only signs the Linkerd identity issuer, itself a CA, so it is issued with max path length 1 and set-signed with
  the full chain (so that `ca.crt` in cert-manager's Secret is the root, not the intermediate). Its mount signs
  nothing longer than the identity issuer's duration. Each id in vaultIntermediateRenewals re-signs it (same key)
  and the latest becomes the mount's default issuer, the one root/sign-intermediate signs with;
- the workload chain: a root mount of its own that signs certificates of workloads terminating TLS themselves. The
  proxies never trust it: they take a client's identity from the first SAN of any certificate chaining to their
  anchors (linkerd2-proxy `linkerd/meshtls/verifier/src/lib.rs`), so a workload certificate under the mesh anchor
  would pass every `*-authenticated` policy as a meshed client.

Logins (Kubernetes auth), each with a policy that names exactly its paths:
- `<vaultAuthRole>-identity`: the account `mtls-mesh-vault-issuer` in `linkerd` only; only `root/sign-intermediate`,
  and only with the exact parameters cert-manager sends for the identity issuer Certificate (the path has no PKI role:
  without pinned parameters the login could have any CA signed, any name, any lifetime, any path length);
- `<vaultAuthRole>-ns-<namespace>`: that namespace's `mtls-mesh-vault-issuer` only; only `sign/<vaultWorkloadRole>-
  <namespace>`, a PKI role that allows exactly the namespace's certificate services' DNS names and SPIFFE IDs.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_vault as vault

from .k8s import metadata, register
from .namespaces import LINKERD_NAMESPACE
from .graph import identity_issuer_name, spiffe_id, workload_dns_names
from .settings import AnchorRotation, Settings, VaultSettings

# cert-manager always puts its own audience (vault://<namespace>/<issuer>) in the token; this extra one is what every
# Vault login role checks, so an issuer's name (which carries the anchor id) can change without touching Vault.
VAULT_TOKEN_AUDIENCE = "vault://mtls-mesh"
# In each namespace with a Vault issuer: the account whose short-lived tokens log that issuer in.
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


def workload_signing_path(settings: VaultSettings, anchor: str, namespace: str) -> str:
    return f"{settings.workload_mount(anchor)}/sign/{settings.namespace_workload_role(namespace)}"


def _policy(paths: list[str], parameters: str = "") -> str:
    return "\n".join(f'path "{path}" {{\n  capabilities = ["create", "update"]\n{parameters}}}\n' for path in paths)


def _hcl_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def identity_sign_parameters(settings: Settings) -> dict[str, list[str]]:
    """Each parameter cert-manager sends to root/sign-intermediate for the identity issuer Certificate
    (components/cert_manager.identity_issuer_certificate), with the one value it sends. cert-manager v1.21.1
    internal/vault/vault.go `Sign` always sends these seven keys, every value a string: the CSR's CN and DNS, IP and
    URI SANs joined by ",", the request's duration as Go's time.Duration.String() (the Certificate's spec.duration,
    copied to the CertificateRequest by pkg/controller/certificates/requestmanager/requestmanager_controller.go and
    passed on by pkg/controller/certificaterequests/vault/vault.go `Sign`; `48h0m0s`: Duration.go(), the same form
    for the validated >= 24h issuer durations), the CSR, and exclude_cn_from_sans "true". `[]` admits any
    value (the CSR: sign-intermediate takes no name or constraint from it without use_csr_values, which is not allowed)."""
    name = identity_issuer_name(settings.trust_domain)
    return {"common_name": [name], "alt_names": [name], "ip_sans": [""], "uri_sans": [""],
            "ttl": [settings.pki.issuer_duration.go()], "exclude_cn_from_sans": ["true"], "csr": []}


def identity_issuer_policy(settings: Settings) -> str:
    """The identity issuer's login may have exactly the identity issuer signed under each anchor still in use, and
    nothing else. OpenBao/Vault's ACL (openbao internal/vault/policy/acl.go AllowOperation) refuses a request missing a
    required parameter, carrying a parameter absent from allowed_parameters (max_path_length, use_csr_values, not_after,
    other_sans, permitted_dns_domains, ...), or a value not in its list (compared as strings, `*` globs only at either
    end: none of these values has one; a number or boolean never equals a string)."""
    pinned = identity_sign_parameters(settings)
    parameters = (f"  required_parameters = {_hcl_list(sorted(pinned))}\n  allowed_parameters = {{\n"
                  + "".join(f"    {json.dumps(key)} = {_hcl_list(values)}\n" for key, values in pinned.items())
                  + "  }\n")
    vault_settings = settings.vault
    assert vault_settings is not None
    return _policy([issuer_signing_path(vault_settings, anchor) for anchor in settings.pki.rotation.anchors], parameters)


def namespace_policy(settings: VaultSettings, rotation: AnchorRotation, namespace: str) -> str:
    """A namespace's login may sign through its own workload role, under each anchor still in use, and nothing else."""
    return _policy([workload_signing_path(settings, anchor, namespace) for anchor in rotation.anchors])


def workload_role_args(settings: Settings, namespace: str) -> dict:
    """The PKI role of one namespace: EC P-256, server and client use, and exactly the DNS names and SPIFFE IDs of that
    namespace's certificate services. No globs: Vault's `*` in allowed_uri_sans spans `/`, so `ns/a/sa/*` would also
    allow `ns/a/sa/b/ns/c/sa/d`."""
    services = settings.graph.certificate_services[namespace]
    return {
        "name": settings.vault.namespace_workload_role(namespace),
        "key_type": "ec",
        "key_bits": 256,
        "allowed_domains": sorted({name for service in services for name in workload_dns_names(service)}),
        "allow_bare_domains": True,
        "allow_subdomains": False,
        "allow_glob_domains": False,
        "allow_wildcard_certificates": False,
        "allow_any_name": False,
        "allow_ip_sans": False,
        "allow_localhost": False,
        "enforce_hostnames": True,
        "allowed_uri_sans": sorted({spiffe_id(s.service_account, namespace, settings.trust_domain) for s in services}),
        "allowed_uri_sans_template": False,
        "require_cn": False,
        "server_flag": True,
        "client_flag": True,
        "code_signing_flag": False,
        "email_protection_flag": False,
        "basic_constraints_valid_for_non_ca": False,
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
    settings: Settings
    # External mode: the token reviewer's JWT and what must exist before Vault uses it.
    reviewer_token: pulumi.Input[str] | None = None
    reviewer_ready: tuple[pulumi.Resource, ...] = ()


class VaultPki(pulumi.ComponentResource):
    """Vault side of the trust chains. `anchors[id]` gives each anchor's roots and readiness; `identity_login_ready` and
    `namespace_login_ready[ns]` are what an issuer waits for before it can log in and sign."""

    def __init__(self, name: str, args: VaultPkiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:vault_pki:VaultPki", name, None, opts)
        settings, vault_settings = args.settings, args.settings.vault
        rotation = settings.pki.rotation
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=settings.pki.protect)
        self.anchors: dict[str, VaultAnchor] = {}
        namespaces = list(settings.graph.certificate_services)
        workload_roles: dict[str, list[pulumi.Resource]] = {ns: [] for ns in namespaces}

        for anchor in rotation.anchors:
            root_path, int_path = vault_settings.root_mount(anchor), vault_settings.intermediate_mount(anchor)
            root_mount, root = self._root(f"{name}-root-{anchor}", root_path, f"mtls-mesh root {anchor}",
                                          f"mtls-mesh trust anchor {anchor}", f"root-{anchor}", vault_settings, kept)
            root_urls = self._publish(f"{name}-root-{anchor}", root_mount, root_path, vault_settings, child, after=root)

            # It signs only the identity issuer: its max TTL is the issuer's duration, so no ttl (nor the mount's
            # default) gets a longer-lived CA from it, whoever asks. sign-intermediate caps ttl at the mount's max
            # (openbao internal/builtin/logical/pki/cert_util.go getCertificateNotAfter); an update, not a replacement.
            int_mount = vault.Mount(f"{name}-int-{anchor}", path=int_path, type="pki",
                                    description=f"mtls-mesh intermediate under anchor {anchor}",
                                    max_lease_ttl_seconds=settings.pki.issuer_duration.seconds, opts=kept)
            csr = vault.pkisecret.SecretBackendIntermediateCertRequest(
                f"{name}-int-{anchor}-csr", backend=int_mount.path, type="internal",
                common_name=f"mtls-mesh intermediate {anchor}", organization="mtls-mesh", key_type="ec", key_bits=256,
                opts=kept)
            signed = vault.pkisecret.SecretBackendRootSignIntermediate(
                f"{name}-int-{anchor}-signed", backend=root_mount.path, csr=csr.csr,
                common_name=f"mtls-mesh intermediate {anchor}", organization="mtls-mesh",
                ttl=str(vault_settings.intermediate_ttl.seconds), max_path_length=INTERMEDIATE_MAX_PATH_LENGTH,
                # The bundle already carries the root, so set-signed below receives it twice; Vault imports each
                # certificate once, and the chains it hands out carry the root once (tests/test_vault_least_privilege.py).
                # Left so: `format` and set-signed's `certificate` force replacement (ForceNew in the provider), which
                # would re-sign every existing stack's intermediate, and a protected stack's `up` would be refused.
                format="pem_bundle",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=[root, root_urls])))
            set_signed = vault.pkisecret.SecretBackendIntermediateSetSigned(
                f"{name}-int-{anchor}-set-signed", backend=int_mount.path,
                # The full chain, so cert-manager's ca.crt is the root and proxies can verify to the anchor.
                certificate=pulumi.Output.concat(signed.certificate, "\n", root.certificate), opts=kept)
            int_urls = self._publish(f"{name}-int-{anchor}", int_mount, int_path, vault_settings, child, after=set_signed)
            intermediate_pem: pulumi.Output[str] = signed.certificate
            int_ready: list[pulumi.Resource] = [set_signed, int_urls]
            if vault_settings.intermediate_renewals:
                intermediate_pem, default_issuer = self._renew_intermediate(
                    f"{name}-int-{anchor}", vault_settings, root_mount, root, csr, int_mount, anchor,
                    kept, child, after=[set_signed, int_urls, root_urls])
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
                    **workload_role_args(settings, namespace),
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[workload_root]))))
            self.anchors[anchor] = VaultAnchor(anchor, root.certificate, workload_root.certificate,
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

        self.identity_login_ready: list[pulumi.Resource] = login(
            f"{name}-identity", vault_settings.identity_auth_role, LINKERD_NAMESPACE,
            identity_issuer_policy(settings), [])
        self.namespace_login_ready: dict[str, list[pulumi.Resource]] = {
            namespace: login(f"{name}-ns-{namespace}", vault_settings.namespace_auth_role(namespace), namespace,
                             namespace_policy(vault_settings, rotation, namespace), workload_roles[namespace])
            for namespace in namespaces
        }
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
    def _renew_intermediate(name: str, settings: VaultSettings, root_mount: vault.Mount,
                            root: vault.pkisecret.SecretBackendRootCert,
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
                f"{name}-renewal-{renewal}", backend=root_mount.path, csr=csr.csr,
                common_name=f"mtls-mesh intermediate {anchor}", organization="mtls-mesh",
                ttl=str(settings.intermediate_ttl.seconds), max_path_length=INTERMEDIATE_MAX_PATH_LENGTH, format="pem",
                opts=pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(depends_on=after)))
            # Only the new certificate is new to the mount (the root is already there): it is the one imported issuer.
            imported = vault.pkisecret.SecretBackendIntermediateSetSigned(
                f"{name}-renewal-{renewal}-set-signed", backend=int_mount.path,
                certificate=pulumi.Output.concat(signed.certificate, "\n", root.certificate),
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
            f"{name}-kubernetes", backend=backend.path, **auth_backend_config_args(settings, args.reviewer_token),
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
