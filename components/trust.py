"""SelfSignedAnchors: trust anchors made by pulumi-tls for stacks without Vault (dev), one per anchor id in use.

Always ECDSA P-256: pulumi-tls defaults to P224, which Linkerd rejects. The private key exists only as a Pulumi
secret and in the cert-manager Secret the CA issuer signs from.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from .settings import Settings

# CA certificates sign certificates and CRLs, nothing else.
ANCHOR_USES = ["cert_signing", "crl_signing"]


def anchor_common_name(trust_domain: str) -> str:
    """The subject Linkerd's own docs give a trust anchor."""
    return f"root.linkerd.{trust_domain}"


def anchor_certificate_args(settings: Settings) -> dict:
    """What a self-signed anchor says, apart from its key."""
    return {
        "is_ca_certificate": True,
        # No early_renewal_hours: pulumi-tls would then replace the anchor on some later `up`, skipping the
        # add-next / issue-from-next / drop-previous runbook and breaking every proxy's trust. Anchors change only by rotation.
        "validity_period_hours": int(settings.pki.anchor_validity.hours),
        "allowed_uses": ANCHOR_USES,
        "subject": {"common_name": anchor_common_name(settings.trust_domain), "organization": "mtls-mesh"},
        "set_subject_key_id": True,
    }


@dataclass
class SelfSignedAnchor:
    anchor: str
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]


class SelfSignedAnchors(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedAnchors", name, None, opts)
        kept = pulumi.ResourceOptions(parent=self, protect=settings.pki.protect)
        self.anchors: dict[str, SelfSignedAnchor] = {}
        for anchor in settings.pki.rotation.anchors:
            key = tls.PrivateKey(f"{name}-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            certificate = tls.SelfSignedCert(f"{name}-{anchor}", private_key_pem=key.private_key_pem,
                                             **anchor_certificate_args(settings), opts=kept)
            self.anchors[anchor] = SelfSignedAnchor(anchor, certificate.cert_pem, pulumi.Output.secret(key.private_key_pem))
        self.register_outputs({"anchors": {a: v.certificate_pem for a, v in self.anchors.items()}})
