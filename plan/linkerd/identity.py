"""Linkerd's identity under the mesh anchors, as objects: the identity issuers (one per anchor in use, in `linkerd`),
the identity issuer Certificate Linkerd reads with identity.externalCA, and the trust bundle Linkerd trusts. The
issuer shapes, the anchors' ConfigMaps and key Secrets are every mesh's (plan/cert_manager.py); the Istio CA under the
same anchors is plan/istio/trust.py.
"""

from __future__ import annotations

from typing import Any

from plan.cert_manager import (TRUST_ROOTS_KEY, anchor_issuers, identity_issuer_name, mesh_ca_certificate,
                               roots_bundle)
from plan.linkerd.namespaces import LINKERD_NAMESPACE
from read.graph import identity_issuer_name as identity_name
from read.settings import Settings

# Names Linkerd reads with identity.externalCA and identity.issuer.scheme kubernetes.io/tls.
IDENTITY_ISSUER_SECRET = "linkerd-identity-issuer"
TRUST_ROOTS = "linkerd-identity-trust-roots"
IDENTITY_ISSUER_USAGES = ["cert sign", "crl sign", "server auth", "client auth"]


def trust_bundle(settings: Settings) -> dict[str, Any]:
    """The ConfigMap Linkerd trusts (linkerd-identity-trust-roots/ca-bundle.crt), in the control-plane namespace only.
    During a rotation it carries the previous and the next anchor."""
    return roots_bundle(settings, TRUST_ROOTS, TRUST_ROOTS_KEY, {"matchLabels": {"linkerd.io/is-control-plane": "true"}})


def identity_issuer_certificate(settings: Settings) -> dict[str, Any]:
    """The Linkerd identity issuer exactly as Linkerd requires it: an ECDSA P-256 CA named identity.linkerd.<domain>,
    rotated with a new key each renewal; issuer-only rotation needs no restarts. With Vault, its login may ask for
    exactly this (name and duration) and nothing else (vault_pki.identity_sign_parameters)."""
    name = identity_name(settings.trust_domain)
    return mesh_ca_certificate(settings, IDENTITY_ISSUER_SECRET, LINKERD_NAMESPACE,
                               identity_issuer_name(settings.pki.rotation.issuing_anchor), name, IDENTITY_ISSUER_USAGES,
                               dns_names=[name])


def identity_issuers(settings: Settings) -> dict[str, dict[str, Any]]:
    """The identity issuers, one per anchor still in use, all namespaced in `linkerd`: no other namespace can have a
    CA signed under the mesh anchor."""
    return anchor_issuers(settings, LINKERD_NAMESPACE, identity_issuer_name,
                          settings.vault.identity_auth_role if settings.vault is not None else None)
