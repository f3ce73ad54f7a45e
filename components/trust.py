"""SelfSignedAnchors and SelfSignedWorkloadCertificates: the trust chains of stacks without Vault (dev), registered
with pulumi-tls from the plan (plan.SelfSignedPlan; what each certificate says is built in trust.py); and, for the
clusters of a multi-cluster environment, the one shared self-signed root: the root-owning stack exports it
(MESH_ROOT_KEYS_OUTPUT, a secret), the others read it through a StackReference (shared_mesh_roots).

Resource names and type tokens are those the stacks' state already holds: changing one would replace a root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_tls as tls

from components.runtime import unknown_output
from plan.mesh import SelfSignedPlan
from plan.trust import SignedWorkload


@dataclass
class SelfSignedAnchor:
    anchor: str
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    workload_root_pem: pulumi.Output[str]
    workload_root_key_pem: pulumi.Output[str]


# The root-owning stack's output holding each mesh root's private key (a Pulumi secret), for the environment's other
# cluster stacks; their certificates are its `trustAnchors` output.
MESH_ROOT_KEYS_OUTPUT = "meshRootKeys"
TRUST_ANCHORS_OUTPUT = "trustAnchors"



def _pick(values: Any, anchor: str, stack: str, output: str) -> Any:
    if not isinstance(values, Mapping) or not values.get(anchor):
        if pulumi.runtime.is_dry_run():
            # The rotation guard has warned that `up` will refuse (root stack first): the preview shows the plan.
            return unknown_output()
        # Only reachable when the guard was skipped (allowRotationJump): plan/rotation.cluster_rotation_problem refuses
        # a phase needing an anchor the root-owning stack does not hold.
        raise ValueError(f"the mesh root stack {stack} exports no anchor {anchor} in its {output} output: apply the "
                         f"rotation phase that adds {anchor} to {stack} first")
    return str(values[anchor])


def shared_mesh_roots(root_stack: str, anchors: tuple[str, ...]) -> dict[str, tuple[pulumi.Output[str], pulumi.Output[str]]]:
    """Each anchor's root certificate and private key, as the root-owning stack last exported them: read through a
    StackReference (the engine reads it in previews too), the key kept secret end to end."""
    reference = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{root_stack}")
    certificates = reference.get_output(TRUST_ANCHORS_OUTPUT)
    keys = reference.get_output(MESH_ROOT_KEYS_OUTPUT)
    return {anchor: (certificates.apply(lambda v, a=anchor: _pick(v, a, root_stack, TRUST_ANCHORS_OUTPUT)),
                     pulumi.Output.secret(keys.apply(lambda v, a=anchor: _pick(v, a, root_stack, MESH_ROOT_KEYS_OUTPUT))))
            for anchor in anchors}


class SelfSignedAnchors(pulumi.ComponentResource):
    """`shared_roots` (a secondary cluster of a multi-cluster environment): the mesh roots the root-owning stack made
    (shared_mesh_roots), so this stack makes none, only its own workload roots."""

    def __init__(self, name: str, plan: SelfSignedPlan, opts: pulumi.ResourceOptions | None = None, *,
                 shared_roots: Mapping[str, tuple[pulumi.Output[str], pulumi.Output[str]]] | None = None):
        super().__init__("mtls-mesh:trust:SelfSignedAnchors", name, None, opts)
        kept = pulumi.ResourceOptions(parent=self, protect=plan.protect)
        self.anchors: dict[str, SelfSignedAnchor] = {}
        for anchor in plan.anchors:
            if shared_roots is not None:
                certificate_pem, private_key_pem = shared_roots[anchor]
            else:
                key = tls.PrivateKey(f"{name}-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
                certificate = tls.SelfSignedCert(f"{name}-{anchor}", private_key_pem=key.private_key_pem,
                                                 **plan.anchor_args, opts=kept)
                certificate_pem, private_key_pem = certificate.cert_pem, pulumi.Output.secret(key.private_key_pem)
            # Not "<name>-workload-<anchor>": an anchor id may itself start with "workload-".
            workload_key = tls.PrivateKey(f"workload-root-{anchor}", algorithm="ECDSA", ecdsa_curve="P256", opts=kept)
            workload_root = tls.SelfSignedCert(
                f"workload-root-{anchor}", private_key_pem=workload_key.private_key_pem,
                **plan.workload_root_args, opts=kept)
            self.anchors[anchor] = SelfSignedAnchor(
                anchor, certificate_pem, private_key_pem,
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
