"""The Vault side of both certificate chains, and the logins that may use them, as plain declarations (paths,
PKI roles, policies); register_vault.VaultPki registers them.

Per trust anchor in use:
- the mesh chain: a root mount (only in the stack owning the environment's mesh root: a secondary cluster's stack
  signs its own intermediate under that stack's root mount) and an intermediate mount (EC P-256 keys generated inside Vault). The intermediate
  only signs the Linkerd identity issuer, itself a CA, so it is issued with max path length 1 and set-signed with
  the full chain (so that `ca.crt` in cert-manager's Secret is the root, not the intermediate). Its mount signs
  nothing longer than the identity issuer's duration. Each id in vaultIntermediateRenewals re-signs it (same key)
  and the latest becomes the mount's default issuer, the one root/sign-intermediate signs with;
- the workload chain: a root mount of its own that signs certificates of workloads terminating TLS themselves. The
  proxies never trust it: they take a client's identity from the first SAN of any certificate chaining to their
  anchors (linkerd2-proxy `linkerd/meshtls/verifier/src/lib.rs`), so a workload certificate under the mesh anchor
  would pass every `*-authenticated` policy as a meshed client.

In a multi-cluster environment every intermediate, workload mount, Kubernetes auth mount and login carries its
cluster's name (read/settings.VaultSettings): cluster A's identity login can sign only through A's intermediate, so
one cluster's credentials cannot sign for another's (tests/test_openbao_clusters.py).

Logins (Kubernetes auth), each with a policy that names exactly its paths:
- `<vaultAuthRole>-identity`: the account `mtls-mesh-vault-issuer` in `linkerd` only; only `root/sign-intermediate`,
  and only with the exact parameters cert-manager sends for the identity issuer Certificate (the path has no PKI role:
  without pinned parameters the login could have any CA signed, any name, any lifetime, any path length);
- `<vaultAuthRole>-ns-<namespace>`: that namespace's `mtls-mesh-vault-issuer` only; only `sign/<vaultWorkloadRole>-
  <namespace>`, a PKI role that allows exactly the namespace's certificate services' DNS names and SPIFFE IDs.
"""

from __future__ import annotations

import json
from typing import Any

from plan.objects import metadata
from read.graph import identity_issuer_name, spiffe_id, workload_dns_names
from read.settings import AnchorRotation, Settings, VaultSettings

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


def intermediate_common_name(settings: VaultSettings, anchor: str) -> str:
    """The intermediate's subject: per cluster in a multi-cluster environment, so each cluster's chain says whose it is."""
    return f"mtls-mesh intermediate {anchor}" + (f" {settings.cluster}" if settings.cluster else "")


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


# A value holding a comma: `*` at both ends matches any string containing what is between (strutil.GlobbedStringsMatch).
ANY_COMMA = "*,*"


def identity_issuer_policy(settings: Settings) -> str:
    """The identity issuer's login may have exactly the identity issuer signed under each anchor still in use, and
    nothing else. The ACL (openbao internal/vault/policy/acl.go AllowOperation; hashicorp/vault vault/acl.go) refuses
    a request missing a required parameter, carrying a parameter absent from allowed_parameters (max_path_length,
    use_csr_values, not_after, other_sans, permitted_dns_domains, ...), or a value its lists do not admit. How a value
    is matched differs (docs/vault-policy-matching.md): OpenBao compares the whole value with each listed one (`*`
    globs only at either end: none of these values has one; a number or boolean never equals a string); Vault 1.21+
    also admits a string whose comma-separated pieces each match, so `uri_sans=","` (two empty URI SANs in a CA) or the
    name twice would pass the allowed lists there. denied_parameters refuses any value holding a comma on both
    servers: cert-manager's own values never hold one (one name, empty SANs, a duration, "true")."""
    pinned = identity_sign_parameters(settings)
    parameters = (f"  required_parameters = {_hcl_list(sorted(pinned))}\n  allowed_parameters = {{\n"
                  + "".join(f"    {json.dumps(key)} = {_hcl_list(values)}\n" for key, values in pinned.items())
                  + "  }\n  denied_parameters = {\n"
                  + "".join(f"    {json.dumps(key)} = {_hcl_list([ANY_COMMA])}\n" for key, values in pinned.items()
                            if values)
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


def auth_backend_config_args(settings: VaultSettings, reviewer_token: Any) -> dict[str, Any]:
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
