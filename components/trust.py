"""SelfSignedAnchors and SelfSignedWorkloadCertificates: the trust chains of stacks without Vault (dev), registered
with pulumi-tls from the plan (plan.SelfSignedPlan; what each certificate says is built in trust.py).

Resource names and type tokens are those the stacks' state already holds: changing one would replace a root.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from plan.mesh import SelfSignedPlan
from plan.trust import SignedWorkload


@dataclass
class SelfSignedAnchor:
    anchor: str
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    workload_root_pem: pulumi.Output[str]
    workload_root_key_pem: pulumi.Output[str]


class SelfSignedAnchors(pulumi.ComponentResource):
    def __init__(self, name: str, plan: SelfSignedPlan, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedAnchors", name, None, opts)
        kept = pulumi.ResourceOptions(parent=self, protect=plan.protect)
        self.anchors: dict[str, SelfSignedAnchor] = {}
        for anchor in plan.anchors:
            key = tls.PrivateKey(f"{name}-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            certificate = tls.SelfSignedCert(f"{name}-{anchor}", private_key_pem=key.private_key_pem,
                                             **plan.anchor_args, opts=kept)
            # Not "<name>-workload-<anchor>": an anchor id may itself start with "workload-".
            workload_key = tls.PrivateKey(f"workload-root-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            workload_root = tls.SelfSignedCert(
                f"workload-root-{anchor}", private_key_pem=workload_key.private_key_pem,
                **plan.workload_root_args, opts=kept)
            self.anchors[anchor] = SelfSignedAnchor(
                anchor, certificate.cert_pem, pulumi.Output.secret(key.private_key_pem),
                workload_root.cert_pem, pulumi.Output.secret(workload_key.private_key_pem))
        self.register_outputs({"anchors": {a: v.certificate_pem for a, v in self.anchors.items()},
                               "workloadRoots": {a: v.workload_root_pem for a, v in self.anchors.items()}})


class SelfSignedWorkloadCertificates(pulumi.ComponentResource):
    """`certificates[service key]`: a certificate from the issuing anchor's workload root, for each certificate service."""

    def __init__(self, name: str, plan: SelfSignedPlan, root: SelfSignedAnchor,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedWorkloadCertificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.certificates: dict[str, SignedWorkload] = {}
        for service_key, request_args in plan.workload_requests.items():
            resource_name = f"{name}-{service_key}"
            key = tls.PrivateKey(resource_name, algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(resource_name, private_key_pem=key.private_key_pem, **request_args, opts=child)
            certificate = tls.LocallySignedCert(
                resource_name, cert_request_pem=request.cert_request_pem, ca_cert_pem=root.workload_root_pem,
                ca_private_key_pem=root.workload_root_key_pem, **plan.workload_certificate_args, opts=child)
            self.certificates[service_key] = SignedWorkload(
                certificate.cert_pem, pulumi.Output.secret(key.private_key_pem), root.workload_root_pem)
        self.register_outputs({"certificates": sorted(self.certificates)})
