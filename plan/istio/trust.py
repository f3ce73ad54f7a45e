"""Istio's trust chain, as cert-manager and Vault objects, under the same mesh root (Vault or dev self-signed) the
Linkerd path uses.

    mesh root (per anchor) ─> [Vault intermediate, max path length 1] ─> Istio CA (Certificate `mtls-mesh-istio-ca`,
    istio-system, a CA renewed like the Linkerd identity issuer) ─> `ca:` Issuer `mtls-mesh-istio-ca` ─> istio-csr's
    CertificateRequests: workload leaves (URI SAN only, 1h), istiod's certificate, istio-csr's serving certificate.

This is the design ISTIO-MULTICLUSTER.md A1 suggests: the hourly workload renewals stay off Vault (only the Istio CA,
once per issuer lifetime, is signed there), and Vault's `sign/<role>` (which needs require_cn=false and allowed URI
SANs for istio-csr's CN-less CSRs, reference [T]) is not used at all.

- Signers, one per anchor still in use (rotation.anchors), namespaced in istio-system: with Vault an Issuer on
  `<intermediate mount>/root/sign-intermediate` logging in as `<vaultAuthRole>-istio`, whose policy pins every
  parameter cert-manager sends for the Istio CA (istio_ca_sign_parameters); without Vault a `ca:` Issuer on the
  anchor's key, held in istio-system (istio_anchor_secret) as the Linkerd path holds it in `linkerd`.
- The roots istio-csr pins (`app.tls.rootCAFile`): a trust-manager Bundle of the anchors in the bundle (both during a
  rotation) into istio-system only. Never the ConfigMap `istio-ca-root-cert`: istio-csr writes that one itself.

Builders from plan/cert_manager.py and plan/vault_pki.py are called, not copied.
"""

from __future__ import annotations

import json
from typing import Any

from plan.cert_manager import (anchor_issuers, anchor_secret, ca_issuer, mesh_ca_certificate, roots_bundle,
                               token_request_rbac)
from plan.istio.names import ISTIO_CSR_NAMESPACE, ISTIO_NAMESPACE
from plan.vault_pki import (VAULT_ISSUER_SERVICE_ACCOUNT, VAULT_TOKEN_AUDIENCE, _hcl_list, _policy,
                            issuer_signing_path)
from read.settings import Settings, VaultSettings

# The Istio CA: its Certificate, its Secret and the `ca:` Issuer istio-csr names (app.certmanager.issuer).
ISTIO_CA = "mtls-mesh-istio-ca"
ISTIO_CA_USAGES = ["cert sign", "crl sign"]
# The trust-manager Bundle istio-csr reads its roots from, mounted as a directory (not subPath, so the kubelet
# swaps the file and istio-csr's fsnotify watch reloads it: pkg/tls/rootca/rootca.go `Watch` [CSR]).
ISTIO_ROOTS = "mtls-mesh-istio-roots"
ISTIO_ROOTS_KEY = "roots.pem"
ISTIO_ROOTS_DIR = "/var/run/secrets/mtls-mesh/istio-roots"
ISTIO_ROOTS_FILE = f"{ISTIO_ROOTS_DIR}/{ISTIO_ROOTS_KEY}"


def istio_ca_common_name(trust_domain: str) -> str:
    """The Istio CA's subject. Nothing verifies it (proxies match the leaf's URI SAN under the roots); it names the
    CA for people and pins what the Vault login may have signed."""
    return f"istio-ca.mtls-mesh.{trust_domain}"


def signer_name(anchor: str) -> str:
    """The Issuer in istio-system that signs the Istio CA under one anchor."""
    return f"mtls-mesh-istio-signer-{anchor}"


def istio_ca_auth_role(vault: VaultSettings) -> str:
    """The Vault login (and its policy) of istio-system's signer: beside `-identity` and `-ns-<namespace>`."""
    return f"{vault.auth_role}-istio"


def istio_anchor_secret(anchor: str, certificate_pem: Any, private_key_pem: Any) -> dict[str, Any]:
    """Without Vault: an anchor's root and key where istio-system's signer reads them (plan/cert_manager.anchor_secret,
    in istio-system: whoever reads Secrets there holds the Istio CA's key already)."""
    return anchor_secret(anchor, certificate_pem, private_key_pem, ISTIO_NAMESPACE)


def signers(settings: Settings) -> dict[str, dict[str, Any]]:
    """The Istio CA's signers, one per anchor still in use, by Issuer name."""
    return anchor_issuers(settings, ISTIO_NAMESPACE, signer_name,
                          istio_ca_auth_role(settings.vault) if settings.vault is not None else None)


def signer_rbac(settings: Settings) -> list[dict[str, Any]]:
    """With Vault: the account cert-manager requests the signer's login tokens for, in istio-system."""
    return token_request_rbac(ISTIO_NAMESPACE, settings.cert_manager) if settings.vault is not None else []


def istio_ca_certificate(settings: Settings) -> dict[str, Any]:
    """The Istio CA, chained to the issuing anchor, renewed with a new key like the Linkerd identity issuer and with its
    lifetime: within the Vault intermediate mount's max TTL, and 1h workload leaves never outlive it."""
    return mesh_ca_certificate(settings, ISTIO_CA, ISTIO_NAMESPACE, signer_name(settings.pki.rotation.issuing_anchor),
                               istio_ca_common_name(settings.trust_domain), ISTIO_CA_USAGES)


def istio_ca_issuer() -> dict[str, Any]:
    """The Issuer istio-csr names: it signs from the Istio CA's Secret, in istio-system only."""
    return ca_issuer(ISTIO_CA, ISTIO_NAMESPACE, ISTIO_CA)


def istio_roots_bundle(settings: Settings) -> dict[str, Any]:
    """The mesh roots istio-csr pins, in istio-csr's namespace only: the anchors the bundle carries in this rotation
    phase (both during a rotation), from the same anchor ConfigMaps the Linkerd bundle reads."""
    return roots_bundle(settings, ISTIO_ROOTS, ISTIO_ROOTS_KEY, {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ISTIO_CSR_NAMESPACE]}]})


def trust_objects(settings: Settings) -> list[dict[str, Any]]:
    """Every object of Istio's chain whose whole content the settings fix, in the order they can be applied (the dev
    anchors' Secrets carry a provider's PEMs: registration adds them with istio_anchor_secret)."""
    return [*signer_rbac(settings), *signers(settings).values(), istio_ca_certificate(settings), istio_ca_issuer(),
            istio_roots_bundle(settings)]


# --- Vault: the signer's login may have exactly the Istio CA signed, nothing else ------------------------------------

def istio_ca_sign_parameters(settings: Settings) -> dict[str, list[str]]:
    """Each parameter cert-manager v1.21.1 sends to root/sign-intermediate for the Istio CA Certificate, with the one
    value it sends (internal/vault/vault.go `Sign`, as plan/vault_pki.identity_sign_parameters explains): its CN, no
    DNS, IP or URI SAN (empty strings), its duration as Go's Duration.String(), exclude_cn_from_sans "true", any CSR."""
    return {"common_name": [istio_ca_common_name(settings.trust_domain)], "alt_names": [""], "ip_sans": [""],
            "uri_sans": [""], "ttl": [settings.pki.issuer_duration.go()], "exclude_cn_from_sans": ["true"], "csr": []}


def istio_ca_policy(settings: Settings) -> str:
    """Only root/sign-intermediate of each anchor in use, only with cert-manager's exact request: every parameter
    required, no other parameter allowed (the ACL semantics are plan/vault_pki.identity_issuer_policy's)."""
    vault = settings.vault
    assert vault is not None
    pinned = istio_ca_sign_parameters(settings)
    parameters = (f"  required_parameters = {_hcl_list(sorted(pinned))}\n  allowed_parameters = {{\n"
                  + "".join(f"    {json.dumps(key)} = {_hcl_list(values)}\n" for key, values in pinned.items())
                  + "  }\n")
    return _policy([issuer_signing_path(vault, anchor) for anchor in settings.pki.rotation.anchors], parameters)


def istio_ca_login_args(settings: Settings) -> dict[str, Any]:
    """The Kubernetes auth role (vault.kubernetes.AuthBackendRole arguments, as components/vault.py `login` sends them
    for the other logins): istio-system's issuer account only, short tokens, exactly the policy above."""
    vault = settings.vault
    assert vault is not None
    role = istio_ca_auth_role(vault)
    return {"role_name": role, "bound_service_account_names": [VAULT_ISSUER_SERVICE_ACCOUNT],
            "bound_service_account_namespaces": [ISTIO_NAMESPACE], "audience": VAULT_TOKEN_AUDIENCE,
            "token_ttl": vault.auth_token_ttl.seconds, "token_max_ttl": vault.auth_token_ttl.seconds,
            "token_policies": [role], "token_no_default_policy": True}
