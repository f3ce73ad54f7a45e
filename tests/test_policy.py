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


def edit(kind, namespace, name, change):
    """A mutate for `violations`: `change(props)` on the one object of that kind, namespace and name."""
    def mutate(registration, props):
        meta = props.get("metadata") or {}
        if registration.type.rsplit(":", 1)[-1] == kind and meta.get("namespace") == namespace and meta.get("name") == name:
            change(props)
        return props
    return mutate


def crafted(*objects):
    """Violations of every policy on a stack of hand-written Kubernetes objects (as the engine hands them over)."""
    resources = []
    for index, obj in enumerate(objects):
        group, _, version = obj["apiVersion"].rpartition("/")
        type_ = f"kubernetes:{group or 'core'}/{version}:{obj['kind']}"
        urn = f"urn:pulumi:test::mtls-mesh::{type_}::crafted-{index}"
        opts = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                     custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])
        resources.append((type_, unknown_checking_proxy(copy.deepcopy(obj)), urn, f"crafted-{index}", opts))
    found: dict[str, list[str]] = {}
    for policy in POLICIES:
        report = lambda message, urn=None, name=policy.name: found.setdefault(name, []).append(message)  # noqa: E731
        if isinstance(policy, ResourceValidationPolicy):
            for type_, props, urn, name, opts in resources:
                policy.validate(ResourceValidationArgs(type_, props, urn, name, opts, None), report)
        else:
            policy.validate(StackValidationArgs([PolicyResource(t, p, u, n, o, None, None, [], {})
                                                 for t, p, u, n, o in resources]), report)
    return found


def deny_namespace(name="shop"):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"app.kubernetes.io/part-of": "mtls-mesh"},
        "annotations": {"linkerd.io/inject": "enabled", "config.linkerd.io/default-inbound-policy": "deny"}}}


def network_authentication(networks, namespace="shop"):
    return {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "NetworkAuthentication",
            "metadata": {"name": "kubelet", "namespace": namespace}, "spec": {"networks": networks}}


# --- deny namespaces keep scraping authorized (issue 31, finding 6) --------------------------------------------------

def test_a_deny_namespace_whose_metrics_no_one_may_scrape_is_caught(prod_single):
    policy = BY_NAME["deny-namespaces-authorized"]
    assert violations(prod_single, policy) == []

    def drop(props):
        props["metadata"]["name"] = "renamed"
        props["spec"]["targetRef"]["name"] = "elsewhere"
    found = violations(prod_single, policy, edit("AuthorizationPolicy", "web", "prometheus-scrape", drop))
    assert any("web: Prometheus cannot scrape the proxies, no AuthorizationPolicy" in f for f in found), found

    def unauthenticated(props):
        props["spec"]["requiredAuthenticationRefs"] = []
    found = violations(prod_single, policy, edit("AuthorizationPolicy", "web", "prometheus-scrape", unauthenticated))
    assert any("web: Prometheus cannot scrape" in f for f in found), "an empty authorization authorizes no scraper"


def test_a_deny_namespace_without_a_route_for_metrics_is_caught(prod_single):
    def elsewhere(props):
        props["spec"]["rules"][0]["matches"] = [{"path": {"type": "Exact", "value": "/stats"}, "method": "GET"}]
    found = violations(prod_single, BY_NAME["deny-namespaces-authorized"],
                       edit("HTTPRoute", "data", "linkerd-admin-metrics", elsewhere))
    # The catch-all localhost route then takes /metrics, and nothing but localhost is authorized on it.
    assert any("data: Prometheus cannot scrape the proxies, no AuthorizationPolicy" in f and "linkerd-admin-local" in f
               for f in found), found


def test_a_deny_namespace_whose_network_policies_keep_prometheus_out_is_caught(prod_single):
    def other_port(props):
        props["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 8080}]
    found = violations(prod_single, BY_NAME["deny-namespaces-authorized"],
                       edit("NetworkPolicy", "payments", "mtls-mesh-allow-prometheus", other_port))
    assert any("payments: Prometheus cannot scrape the proxies, its NetworkPolicies deny ingress" in f for f in found), found


# --- namespace-wide identities, authorizations that name no client ---------------------------------------------------

@pytest.mark.parametrize("refs, words", [
    ([{"kind": "ServiceAccount"}], "no name: all of them"),
    ([{"kind": "Namespace", "name": "web"}], "Namespace/web (every ServiceAccount in it)"),
    ([{"kind": "ServiceAccount", "name": "checkout"}, {"kind": "Namespace", "name": "payments"}], "Namespace/payments"),
])
def test_namespace_wide_identity_refs_are_caught(prod_single, refs, words):
    def namespace_wide(props):
        props["spec"] = {"identityRefs": refs}
    found = violations(prod_single, BY_NAME["no-wildcard-mesh-identities"],
                       edit("MeshTLSAuthentication", "payments", "ledger", namespace_wide))
    assert any(words in f and "ledger" in f for f in found), found


def test_an_identity_ref_naming_one_service_account_passes(prod_single):
    def one_account(props):
        props["spec"] = {"identityRefs": [{"kind": "ServiceAccount", "name": "checkout", "namespace": "web"}]}
    assert violations(prod_single, BY_NAME["no-wildcard-mesh-identities"],
                      edit("MeshTLSAuthentication", "payments", "ledger", one_account)) == []


@pytest.mark.parametrize("spec_change", [lambda spec: spec.update(requiredAuthenticationRefs=[]),
                                         lambda spec: spec.pop("requiredAuthenticationRefs")])
def test_an_authorization_that_requires_nothing_is_caught(prod_single, spec_change):
    policy = BY_NAME["authorizations-name-their-clients"]
    assert violations(prod_single, policy) == []
    found = violations(prod_single, policy, edit("AuthorizationPolicy", "payments", "ledger-http",
                                                 lambda props: spec_change(props["spec"])))
    assert found == ["AuthorizationPolicy payments/ledger-http on Server ledger-http has no requiredAuthenticationRefs: "
                     "it admits every client from every address"]


# --- networks that are everything, however they are split ------------------------------------------------------------

@pytest.mark.parametrize("networks", [
    [{"cidr": "0.0.0.0/0"}],
    [{"cidr": "0.0.0.0/1"}, {"cidr": "128.0.0.0/1"}],
    [{"cidr": "::/1"}, {"cidr": "8000::/1"}],
    [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}],
    [{"cidr": "0.0.0.0/1"}, {"cidr": "128.0.0.0/2"}],
    [{"cidr": "10.20.0.0/20"}, {"cidr": "128.0.0.0/1"}],
])
def test_a_network_authentication_that_covers_everything_is_caught(prod_single, networks):
    policy = BY_NAME["deny-networks-not-everything"]
    assert violations(prod_single, policy) == []

    def widen(props):
        props["spec"]["networks"] = networks
    found = violations(prod_single, policy, edit("NetworkAuthentication", "web", "kubelet", widen))
    assert len(found) == 1 and found[0].startswith("deny namespace web: NetworkAuthentication kubelet covers"), found


@pytest.mark.parametrize("networks", [
    [{"cidr": "0.0.0.0/2"}, {"cidr": "10.0.0.0/8"}],  # a quarter (10/8 lies inside it)
    [{"cidr": "0.0.0.0/0", "except": ["0.0.0.0/1", "128.0.0.0/2"]}],  # a quarter left
    [{"cidr": "0.0.0.0/1", "except": ["64.0.0.0/2"]}, {"cidr": "fd00::/8"}],
])
def test_networks_under_half_a_family_pass(networks):
    assert "deny-networks-not-everything" not in crafted(deny_namespace(), network_authentication(networks))


def test_a_network_that_is_no_network_is_caught():
    found = crafted(deny_namespace(), network_authentication([{"cidr": "everywhere"}]))
    assert found["deny-networks-not-everything"] == [
        "deny namespace shop: NetworkAuthentication kubelet everywhere is not a network; set kubeletNetworks / "
        "prometheusNetworks to the node and Prometheus networks"]


def test_a_network_policy_ipblock_split_in_halves_is_caught(prod_single):
    def halves(props):
        props["spec"]["ingress"][0]["from"] = [{"ipBlock": {"cidr": "0.0.0.0/1"}}, {"ipBlock": {"cidr": "128.0.0.0/1"}}]
    found = violations(prod_single, BY_NAME["deny-networks-not-everything"],
                       edit("NetworkPolicy", "web", "mtls-mesh-allow-prometheus", halves))
    assert any("web: NetworkPolicy mtls-mesh-allow-prometheus admits ingress from an ipBlock that covers 100% of IPv4"
               in f for f in found), found


def test_a_network_everything_outside_deny_namespaces_is_left_to_the_rollout(dev):
    """dev's audit namespaces admit probes from anywhere (the settings' audit default): nothing is denied there yet."""
    assert any(n["cidr"] == "0.0.0.0/0" for r in dev.registrations if r.type.endswith("NetworkAuthentication")
               for n in plain(r.inputs)["spec"]["networks"])
    assert violations(dev, BY_NAME["deny-networks-not-everything"]) == []


# --- nothing reopens a deny namespace ---------------------------------------------------------------------------------

@pytest.mark.parametrize("access", ["all-unauthenticated", "all-authenticated", "cluster-authenticated", "audit"])
def test_an_open_server_in_a_deny_namespace_is_caught(prod_single, access):
    policy = BY_NAME["deny-namespaces-closed"]
    assert violations(prod_single, policy) == []
    found = violations(prod_single, policy, edit("Server", "payments", "ledger-http",
                                                 lambda props: props["spec"].update(accessPolicy=access)))
    assert found == [f"deny namespace payments: Server ledger-http has accessPolicy {access}, which admits clients no "
                     "AuthorizationPolicy names"]


def test_an_open_server_in_a_shards_deny_namespace_is_caught():
    shard = run_program("prod-payments")
    found = violations(shard, BY_NAME["deny-namespaces-closed"],
                       edit("Server", "payments", "billing-grpc", lambda props: props["spec"].update(accessPolicy="all-unauthenticated")))
    assert any("payments: Server billing-grpc has accessPolicy all-unauthenticated" in f for f in found), found


def test_a_shards_deny_namespace_with_every_server_opened_is_still_caught():
    """A shard holds no Namespace: its namespace stays known for a deny one by its egress control, which the program
    sets up only under deny."""
    shard = run_program("prod-payments")
    def open_all(registration, props):
        if registration.type.endswith(":Server"):
            props["spec"]["accessPolicy"] = "all-unauthenticated"
        return props
    found = violations(shard, BY_NAME["deny-namespaces-closed"], open_all)
    assert any("payments: Server linkerd-admin has accessPolicy all-unauthenticated" in f for f in found), found


def test_an_open_server_outside_deny_namespaces_is_the_rollouts(prod_single):
    """prod's ingress namespace admits everyone on purpose (its phase is all-unauthenticated)."""
    assert any(plain(r.inputs)["spec"].get("accessPolicy") == "all-unauthenticated"
               for r in prod_single.registrations if r.type.endswith(":Server"))
    assert violations(prod_single, BY_NAME["deny-namespaces-closed"]) == []


@pytest.mark.parametrize("rule", [
    {"ports": [{"protocol": "TCP", "port": 8080}]},
    {"from": [], "ports": [{"protocol": "TCP", "port": 8080}]},
    {"from": [{}]},
    {"from": [{"namespaceSelector": {}}]},
    {"from": [{"namespaceSelector": {}, "podSelector": {}}]},
])
def test_an_open_network_policy_in_a_deny_namespace_is_caught(prod_single, rule):
    found = violations(prod_single, BY_NAME["deny-namespaces-closed"],
                       edit("NetworkPolicy", "payments", "mtls-mesh-ledger", lambda props: props["spec"]["ingress"].append(rule)))
    assert len(found) == 1 and found[0].startswith("deny namespace payments: NetworkPolicy mtls-mesh-ledger ingress["), found


# --- every namespace is the program's, and labelled so ----------------------------------------------------------------

def test_a_namespace_without_the_managed_label_is_caught(prod):
    policy = BY_NAME["workload-namespaces-managed"]
    assert violations(prod, policy) == []
    def unlabel(registration, props):
        if registration.type.endswith(("Namespace", "NamespacePatch")) and props["metadata"]["name"] in ("data", "web"):
            props["metadata"]["labels"] = {"team": "payments"}
        return props
    found = violations(prod, policy, unlabel)
    assert sorted(f.split()[1] for f in found) == ["data", "web"], found
    assert all("lacks the label app.kubernetes.io/part-of=mtls-mesh" in f for f in found)


def test_an_unlabelled_namespace_is_still_checked_for_injection(prod):
    def unlabelled_uninjected(registration, props):
        if registration.type.endswith("Namespace") and props["metadata"]["name"] == "data":
            props["metadata"]["labels"] = {}
            props["metadata"]["annotations"].pop("linkerd.io/inject")
        return props
    found = violations(prod, BY_NAME["workload-namespaces-injected"], unlabelled_uninjected)
    assert any("workload namespace data is not injected" in f for f in found), found


# --- enforcement ------------------------------------------------------------------------------------------------------

NEW_RULES = ("workload-namespaces-managed", "deny-namespaces-authorized", "deny-namespaces-closed",
             "deny-networks-not-everything", "no-wildcard-mesh-identities", "authorizations-name-their-clients")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", *SHARD_STACKS])
def test_the_mesh_rules_are_mandatory_in_every_environment(stack):
    """Mandatory in staging and prod (and a shard, at its platform's levels), and in dev too: they hold for dev's own
    objects, and dev is where a developer meets a violation first (see docs/policy-pack.md)."""
    levels = enforcement(stack)
    assert {name: levels[name] for name in NEW_RULES} == dict.fromkeys(NEW_RULES, "mandatory")


def test_the_documented_rules_and_levels_are_the_packs():
    """docs/policy-pack.md's table: every rule of the pack, each at the level each environment's file gives it."""
    import re
    text = (PROJECT_DIR / "docs" / "policy-pack.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| .* \| (\w+) \| (\w+) \| (\w+) \|$", text, re.M)
    assert {name for name, *_ in rows} == set(BY_NAME) and len(rows) == len(BY_NAME)
    for name, *levels in rows:
        assert levels == [enforcement(stack)[name] for stack in ("dev", "staging", "prod")], name
