"""SelfSignedAnchors and SelfSignedWorkloadCertificates: the trust chains of stacks without Vault (dev), made by
pulumi-tls. Per anchor id in use, a mesh anchor (what the proxies trust) and a workload root (what clients of
TLS-terminating workloads trust; the proxies never trust it, see vault_pki). Workload certificates are signed here,
by the program, so no issuer a workload namespace could use ever holds a key that signs.

Always ECDSA P-256: pulumi-tls defaults to P224, which Linkerd rejects. Private keys exist only as Pulumi secrets and,
for the mesh anchor, in the Secret the identity issuer signs from (in `linkerd`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from .graph import Service, spiffe_id, workload_dns_names
from .settings import Settings

# CA certificates sign certificates and CRLs, nothing else.
ANCHOR_USES = ["cert_signing", "crl_signing"]
WORKLOAD_USES = ["digital_signature", "key_agreement", "server_auth", "client_auth"]


def anchor_common_name(trust_domain: str) -> str:
    """The subject Linkerd's own docs give a trust anchor."""
    return f"root.linkerd.{trust_domain}"


def workload_root_common_name(trust_domain: str) -> str:
    return f"workload-root.mtls-mesh.{trust_domain}"


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
class SelfSignedAnchor:
    anchor: str
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    workload_root_pem: pulumi.Output[str]
    workload_root_key_pem: pulumi.Output[str]


class SelfSignedAnchors(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedAnchors", name, None, opts)
        kept = pulumi.ResourceOptions(parent=self, protect=settings.pki.protect)
        self.anchors: dict[str, SelfSignedAnchor] = {}
        for anchor in settings.pki.rotation.anchors:
            key = tls.PrivateKey(f"{name}-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            certificate = tls.SelfSignedCert(f"{name}-{anchor}", private_key_pem=key.private_key_pem,
                                             **anchor_certificate_args(settings), opts=kept)
            # Not "<name>-workload-<anchor>": an anchor id may itself start with "workload-".
            workload_key = tls.PrivateKey(f"workload-root-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            workload_root = tls.SelfSignedCert(
                f"workload-root-{anchor}", private_key_pem=workload_key.private_key_pem,
                **anchor_certificate_args(settings, workload_root_common_name(settings.trust_domain)), opts=kept)
            self.anchors[anchor] = SelfSignedAnchor(
                anchor, certificate.cert_pem, pulumi.Output.secret(key.private_key_pem),
                workload_root.cert_pem, pulumi.Output.secret(workload_key.private_key_pem))
        self.register_outputs({"anchors": {a: v.certificate_pem for a, v in self.anchors.items()},
                               "workloadRoots": {a: v.workload_root_pem for a, v in self.anchors.items()}})


@dataclass
class SignedWorkload:
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    ca_pem: pulumi.Output[str]


class SelfSignedWorkloadCertificates(pulumi.ComponentResource):
    """`certificates[service key]`: a certificate from the issuing anchor's workload root, for each certificate service."""

    def __init__(self, name: str, settings: Settings, root: SelfSignedAnchor, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedWorkloadCertificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.certificates: dict[str, SignedWorkload] = {}
        for services in settings.graph.certificate_services.values():
            for service in services:
                resource_name = f"{name}-{service.key}"
                key = tls.PrivateKey(resource_name, algorithm="ECDSA", ecdsa_curve="P256", opts=child)
                request = tls.CertRequest(resource_name, private_key_pem=key.private_key_pem,
                                          **workload_request_args(settings, service), opts=child)
                certificate = tls.LocallySignedCert(
                    resource_name, cert_request_pem=request.cert_request_pem, ca_cert_pem=root.workload_root_pem,
                    ca_private_key_pem=root.workload_root_key_pem, **workload_certificate_args(settings), opts=child)
                self.certificates[service.key] = SignedWorkload(
                    certificate.cert_pem, pulumi.Output.secret(key.private_key_pem), root.workload_root_pem)
        self.register_outputs({"certificates": sorted(self.certificates)})
