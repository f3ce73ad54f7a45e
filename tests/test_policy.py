"""The policy pack, run the way the engine runs it: each policy's validate on the resources the mocks record for
every stack, at that stack's enforcement levels; and each policy shown to catch a violation."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from pulumi_policy import (PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs)

from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from harness import PROJECT_DIR, SHARD_STACKS, plain, run_program, stack_config

sys.path.insert(0, str(PROJECT_DIR / "policy"))
from mesh_policies import POLICIES  # noqa: E402

BY_NAME = {p.name: p for p in POLICIES}


def options(registration, protect=None, secret_outputs=None):
    return PolicyResourceOptions(
        protect=registration.protect if protect is None else protect, ignore_changes=[],
        delete_before_replace=None, aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(registration.additional_secret_outputs if secret_outputs is None else secret_outputs))


def violations(run, policy, mutate=None):
    """Messages the policy reports for a run; `mutate(type, props)` may edit each resource's props first.

    As pulumi-policy's analyzer runs it (policy.py `Analyze`, `AnalyzeStack`): props behind its unknown-checking proxy,
    and a policy that reads a value unknown in a preview is not run on that resource (the analyzer reports "can't run
    policy ... during preview" as advisory), so it is no violation."""
    found: list[str] = []
    resources = []
    for registration in run.registrations:
        if not registration.custom:
            continue
        props = copy.deepcopy(plain(registration.inputs))
        if mutate:
            props = mutate(registration, props)
        resources.append((registration, unknown_checking_proxy(props)))
    if isinstance(policy, ResourceValidationPolicy):
        for registration, props in resources:
            args = ResourceValidationArgs(registration.type, props, registration.urn, registration.name,
                                          options(registration), None)
            try:
                policy.validate(args, lambda message, urn=None: found.append(message))
            except UnknownValueError:
                assert run.preview, f"{policy.name} met an unknown value outside a preview"
    else:
        stack = [PolicyResource(r.type, props, r.urn, r.name, options(r), None, None, [], {}) for r, props in resources]
        try:
            policy.validate(StackValidationArgs(stack), lambda message, urn=None: found.append(message))
        except UnknownValueError as err:
            raise AssertionError(f"{policy.name} cannot run in this preview at all: {err.message}") from None
    return found


def enforcement(stack):
    """The stack's levels; a shard's are its platform's (the workflows run the pack with policy/<platform>.json)."""
    platform = stack_config(stack)[0].get("mtls-mesh:platformStack") or stack
    levels = json.loads((PROJECT_DIR / "policy" / f"{platform}.json").read_text())
    return {name: levels.get(name, levels.get("all", "mandatory")) for name in BY_NAME}


def test_every_stack_passes_its_mandatory_policies(each_stack):
    levels = enforcement(each_stack.stack)
    failures = {name: violations(each_stack, BY_NAME[name]) for name, level in levels.items() if level == "mandatory"}
    assert {k: v for k, v in failures.items() if v} == {}


@pytest.mark.parametrize("stack", SHARD_STACKS)
def test_every_shard_stack_passes_its_platforms_mandatory_policies(stack):
    """A shard is held to its platform's levels (the workflow runs the pack with policy/<platform>.json)."""
    run = run_program(stack)
    levels = enforcement(stack)
    failures = {name: violations(run, BY_NAME[name]) for name, level in levels.items() if level == "mandatory"}
    assert {k: v for k, v in failures.items() if v} == {}


def test_a_shard_without_its_admin_server_fails_and_the_platform_leaves_the_check_to_it():
    """The platform's sharded deny namespaces are the shards' to check (their Namespace names the shard); a shard,
    which holds no Namespace, knows its deny namespaces by their Servers."""
    policy = BY_NAME["deny-namespaces-authorized"]
    shard = run_program("prod-payments")

    def drop_admin_server(registration, props):
        if registration.type.endswith(":Server") and props["metadata"]["name"] == "linkerd-admin":
            props["metadata"]["name"] = "renamed"
        return props
    assert any("deny namespace payments has no linkerd-admin Server" in v
               for v in violations(shard, policy, drop_admin_server))
    platform = run_program("prod")
    assert violations(platform, policy) == []

    def unowned(registration, props):
        if registration.type.endswith(":NamespacePatch") or registration.type.endswith(":Namespace"):
            props["metadata"].get("annotations", {}).pop("mtls-mesh.io/policy-shard", None)
        return props
    assert any("deny namespace payments" in v for v in violations(platform, policy, unowned))


def test_prod_enforces_everything_and_dev_only_advises_on_its_unprotected_pki():
    """Dev's own key material no longer trips the pack, so dev is held to every policy but PKI protection
    (its `protectPki: false` is deliberate: a dev anchor is thrown away, not rotated)."""
    assert set(enforcement("prod").values()) == {"mandatory"}
    dev = enforcement("dev")
    assert dev.pop("pki-protected") == "advisory"
    assert set(dev.values()) == {"mandatory"}


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


def test_deny_namespace_without_probe_authorization_is_caught(prod_single):
    prod = prod_single
    def drop_probes(registration, props):
        if registration.type.endswith("AuthorizationPolicy") and props["metadata"]["name"] == "linkerd-admin-probes" \
                and props["metadata"]["namespace"] == "web":
            props["metadata"]["name"] = "renamed"
        return props
    found = violations(prod, BY_NAME["deny-namespaces-authorized"], drop_probes)
    assert any("web does not authorize kubelet probes" in f for f in found), found


def test_dangling_authorization_is_caught(prod_single):
    prod = prod_single
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
def test_certificate_outside_the_profile_is_caught(prod_single, field, value, words):
    prod = prod_single
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


def test_a_renewed_vault_intermediate_passes_the_protection_policy():
    run = run_program("prod", set_config={"vaultIntermediateRenewals": ["2031-05", "2036-04"]})
    renewals = [r for r in run.registrations if "-renewal-" in r.name]
    assert len(renewals) == 4 and all(r.protect for r in renewals)
    assert not violations(run, BY_NAME["pki-protected"])


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


def test_dev_passes_every_policy_but_its_deliberately_unprotected_pki(dev):
    """Dev's own pulumi-tls keys are not key material out of place, so dev can run the pack as mandatory: with
    `protectPki: true` it passes everything; as it is, only pki-protected speaks (its deliberate protectPki: false)."""
    assert {name: found for name in BY_NAME if (found := violations(dev, BY_NAME[name]))}.keys() == {"pki-protected"}
    protected = run_program("dev", set_config={"protectPki": True})
    assert {name: found for name in BY_NAME if (found := violations(protected, BY_NAME[name]))} == {}


def _key_args(registration, urn=None, props=None, secret_outputs=None):
    return ResourceValidationArgs(registration.type, copy.deepcopy(plain(registration.inputs)) if props is None else props,
                                  urn or registration.urn, registration.name, options(registration, secret_outputs=secret_outputs),
                                  None)


def _flagged(args):
    found = []
    BY_NAME["key-material-only-in-secrets"].validate(args, lambda message, urn=None: found.append(message))
    return found


def test_foreign_key_material_is_still_caught_in_a_tls_resource(dev):
    """Only the program's own hand-over is exempt: the key input of a pulumi-tls resource under its trust components,
    kept secret, holding one PEM key. Moved elsewhere, widened, made plain or carried in another input, it is caught."""
    own = next(r for r in dev.registrations if r.type == "tls:index/selfSignedCert:SelfSignedCert")
    signed = next(r for r in dev.registrations if r.type == "tls:index/locallySignedCert:LocallySignedCert")
    assert not _flagged(_key_args(own)) and not _flagged(_key_args(signed))
    key = plain(own.inputs)["privateKeyPem"]
    # A tls resource of some other component (not where the program makes its keys).
    assert _flagged(_key_args(own, urn=own.urn.replace("mtls-mesh:trust:SelfSignedAnchors$", "other:index:Thing$")))
    # The key input not kept secret.
    assert _flagged(_key_args(own, secret_outputs=[]))
    # More than one key in it.
    assert _flagged(_key_args(own, props={**plain(own.inputs), "privateKeyPem": key + key}))
    # Key material in another input of the program's own resource.
    leaked = copy.deepcopy(plain(own.inputs))
    leaked["subject"]["organization"] = key
    assert any("subject" in f for f in _flagged(_key_args(own, props=leaked)))
    # The CA's key where a CertRequest would take its own (the input that takes a key differs by type).
    assert _flagged(_key_args(signed, props={**plain(signed.inputs), "privateKeyPem": key}))


def test_deny_namespace_open_to_every_address_is_caught(prod_single):
    prod = prod_single
    def open_kubelet(registration, props):
        if registration.type.endswith("NetworkAuthentication") and props["metadata"]["name"] == "kubelet" \
                and props["metadata"]["namespace"] == "web":
            props["spec"]["networks"] = [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]
        return props
    assert not violations(prod, BY_NAME["deny-namespaces-authorized"])
    found = violations(prod, BY_NAME["deny-namespaces-authorized"], open_kubelet)
    assert any("web: NetworkAuthentication kubelet admits every address (0.0.0.0/0, ::/0)" in f for f in found), found
