"""The trust chains of stacks without Vault (dev): what each pulumi-tls root and workload certificate says
(register_trust.py registers them). Per anchor id in use, a mesh anchor (what the proxies trust) and a workload root
(what clients of TLS-terminating workloads trust; the proxies never trust it, see vault_pki). Workload certificates
are signed by the program, so no issuer a workload namespace could use ever holds a key that signs.

Always ECDSA P-256: pulumi-tls defaults to P224, which Linkerd rejects. Private keys exist only as Pulumi secrets and,
for the mesh anchor, in the Secret the identity issuer signs from (in `linkerd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from read.graph import Service, spiffe_id, workload_dns_names
from read.names import anchor_common_name
from read.settings import Settings

# CA certificates sign certificates and CRLs, nothing else.
ANCHOR_USES = ["cert_signing", "crl_signing"]
WORKLOAD_USES = ["digital_signature", "key_agreement", "server_auth", "client_auth"]


def anchor_certificate_args(settings: Settings, common_name: str | None = None) -> dict:
    """What a self-signed root says, apart from its key."""
    return {
        "is_ca_certificate": True,
        # No early_renewal_hours: pulumi-tls would then replace the root on some later `up`, skipping the
        # add-next / issue-from-next / drop-previous runbook and breaking every proxy's trust. Roots change only by rotation.
        "validity_period_hours": int(settings.pki.anchor_validity.hours),
        "allowed_uses": ANCHOR_USES,
        "subject": {"common_name": common_name or anchor_common_name(settings.trust_domain), "organization": "mtls-mesh"},
        "set_subject_key_id": True,
    }


def workload_request_args(settings: Settings, service: Service) -> dict:
    """What a workload certificate names: its Service's in-cluster DNS names and its account's SPIFFE ID, nothing else."""
    return {"dns_names": workload_dns_names(service),
            "uris": [spiffe_id(service.service_account, service.namespace, settings.trust_domain)]}


def workload_certificate_args(settings: Settings) -> dict:
    """A leaf (never a CA), renewed by the first `pulumi up` inside its renew-before window (pulumi-tls replaces it)."""
    return {
        "is_ca_certificate": False,
        "validity_period_hours": int(settings.pki.workload_duration.hours),
        "early_renewal_hours": int(settings.pki.workload_renew_before.hours),
        "allowed_uses": WORKLOAD_USES,
        "set_subject_key_id": True,
    }


@dataclass
class SignedWorkload:
    """A certificate the program signed for a workload, as the cert-manager component hands it over."""

    certificate_pem: Any  # a pulumi Output[str]
    private_key_pem: Any  # a pulumi Output[str]
    ca_pem: Any  # a pulumi Output[str]
