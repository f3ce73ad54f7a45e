"""The policy pack, run the way the engine runs it: each policy's validate on the resources the mocks record for
every stack, at that stack's enforcement levels; and each policy shown to catch a violation."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from pulumi_policy import (PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs)

from harness import PROJECT_DIR, plain, run_program

sys.path.insert(0, str(PROJECT_DIR / "policy"))
from mesh_policies import POLICIES  # noqa: E402

BY_NAME = {p.name: p for p in POLICIES}


def options(registration, protect=None, secret_outputs=None):
    return PolicyResourceOptions(
        protect=registration.protect if protect is None else protect, ignore_changes=[],
        delete_before_replace=None, aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(registration.additional_secret_outputs if secret_outputs is None else secret_outputs))


def violations(run, policy, mutate=None):
    """Messages the policy reports for a run; `mutate(type, props)` may edit each resource's props first."""
    found: list[str] = []
    resources = []
    for registration in run.registrations:
        if not registration.custom:
            continue
        props = copy.deepcopy(plain(registration.inputs))
        if mutate:
            props = mutate(registration, props)
        resources.append((registration, props))
    if isinstance(policy, ResourceValidationPolicy):
        for registration, props in resources:
            args = ResourceValidationArgs(registration.type, props, registration.urn, registration.name,
                                          options(registration), None)
            policy.validate(args, lambda message, urn=None: found.append(message))
    else:
        stack = [PolicyResource(r.type, props, r.urn, r.name, options(r), None, None, [], {}) for r, props in resources]
        policy.validate(StackValidationArgs(stack), lambda message, urn=None: found.append(message))
    return found


def enforcement(stack):
    levels = json.loads((PROJECT_DIR / "policy" / f"{stack}.json").read_text())
    return {name: levels.get(name, levels.get("all", "mandatory")) for name in BY_NAME}


def test_every_stack_passes_its_mandatory_policies(each_stack):
    levels = enforcement(each_stack.stack)
    failures = {name: violations(each_stack, BY_NAME[name]) for name, level in levels.items() if level == "mandatory"}
    assert {k: v for k, v in failures.items() if v} == {}


def test_prod_enforces_everything_and_dev_only_advises():
    assert set(enforcement("prod").values()) == {"mandatory"}
    assert set(enforcement("dev").values()) == {"advisory"}


def test_advisory_findings_are_real_findings(dev):
    """Dev's PKI is deliberately unprotected: the pack says so, as advice."""
    assert violations(dev, BY_NAME["pki-protected"])


def annotate(kind, name, key, value):
    def mutate(registration, props):
        meta = props.get("metadata") or {}
        if registration.type.endswith(kind) and meta.get("name") == name:
            meta.setdefault("annotations", {})
            if value is None:
                meta["annotations"].pop(key, None)
            else:
                meta["annotations"][key] = value
        return props
    return mutate


def test_uninjected_namespace_is_caught(prod):
    found = violations(prod, BY_NAME["workload-namespaces-injected"], annotate("NamespacePatch", "payments", "linkerd.io/inject", None))
    assert found and "payments" in found[0]
    found = violations(prod, BY_NAME["workload-namespaces-injected"], annotate("Namespace", "batch", "mtls-mesh.io/out-of-mesh", None))
    assert found and "batch" in found[0]


def test_deny_namespace_without_probe_authorization_is_caught(prod):
    def drop_probes(registration, props):
        if registration.type.endswith("AuthorizationPolicy") and props["metadata"]["name"] == "linkerd-admin-probes" \
                and props["metadata"]["namespace"] == "web":
            props["metadata"]["name"] = "renamed"
        return props
    found = violations(prod, BY_NAME["deny-namespaces-authorized"], drop_probes)
    assert any("web does not authorize kubelet probes" in f for f in found), found


def test_dangling_authorization_is_caught(prod):
    def dangle(registration, props):
        if registration.type.endswith("AuthorizationPolicy") and props["metadata"]["name"] == "ledger-http":
            props["spec"]["requiredAuthenticationRefs"][0]["name"] = "nobody"
        return props
    found = violations(prod, BY_NAME["deny-namespaces-authorized"], dangle)
    assert any("requires MeshTLSAuthentication nobody" in f for f in found), found


def test_wildcard_identity_is_caught(prod):
    def wildcard(registration, props):
        if registration.type.endswith("MeshTLSAuthentication"):
            props["spec"]["identities"] = ["*.payments.serviceaccount.identity.linkerd.cluster.local"]
        return props
    assert violations(prod, BY_NAME["no-wildcard-mesh-identities"], wildcard)


@pytest.mark.parametrize("field, value, words", [
    ("privateKey", {"algorithm": "RSA", "size": 2048}, "ECDSA P-256"),
    ("duration", "100000h", "outside"),
    ("renewBefore", "9000h", "shorter than the duration"),
])
def test_certificate_outside_the_profile_is_caught(prod, field, value, words):
    def weaken(registration, props):
        if registration.type.endswith("cert-manager.io/v1:Certificate") and props["metadata"]["name"] == "postgres-mesh-tls":
            props["spec"][field] = value
        return props
    found = violations(prod, BY_NAME["certificate-profiles"], weaken)
    assert any(words in f and "postgres-mesh-tls" in f for f in found), found


def test_weak_anchor_key_is_caught(dev):
    def p224(registration, props):
        if registration.type == "tls:index/privateKey:PrivateKey":
            props["ecdsaCurve"] = "P224"
        return props
    assert violations(dev, BY_NAME["certificate-profiles"], p224)


def test_unprotected_pki_is_caught_in_prod():
    run = run_program("prod", set_config={"protectPki": False})
    found = violations(run, BY_NAME["pki-protected"])
    assert any("SecretBackendRootCert" in f for f in found)


def test_a_protected_self_signed_stack_passes_with_its_workload_leaf_keys_unprotected():
    run = run_program("dev", set_config={"protectPki": True})
    leaf_keys = [r for r in run.of_type("tls:index/privateKey:PrivateKey") if r.name.startswith("workload-tls-")]
    assert leaf_keys and not any(r.protect for r in leaf_keys), "a removed service's key must be deletable"
    assert all(r.protect for r in run.of_type("tls:index/privateKey:PrivateKey") if r not in leaf_keys)
    assert not violations(run, BY_NAME["pki-protected"])


def test_key_material_outside_a_secret_is_caught(dev):
    def leak(registration, props):
        if registration.type == "kubernetes:core/v1:Secret":
            return props
        if registration.type.endswith("ConfigMap") or registration.type.endswith("Bundle"):
            props.setdefault("metadata", {})["annotations"] = {"leak": "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----"}
        return props
    found = violations(dev, BY_NAME["key-material-only-in-secrets"], leak)
    assert found
    anchor_secrets = [r for r in dev.registrations if r.type == "kubernetes:core/v1:Secret"]
    assert anchor_secrets and all({"data", "stringData"} <= set(r.additional_secret_outputs) for r in anchor_secrets)


def test_deny_namespace_open_to_every_address_is_caught(prod):
    def open_kubelet(registration, props):
        if registration.type.endswith("NetworkAuthentication") and props["metadata"]["name"] == "kubelet" \
                and props["metadata"]["namespace"] == "web":
            props["spec"]["networks"] = [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]
        return props
    assert not violations(prod, BY_NAME["deny-namespaces-authorized"])
    found = violations(prod, BY_NAME["deny-namespaces-authorized"], open_kubelet)
    assert any("web: NetworkAuthentication kubelet admits every address (0.0.0.0/0, ::/0)" in f for f in found), found
