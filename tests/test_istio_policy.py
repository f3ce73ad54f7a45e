"""The policy pack's Istio rules (policy/mesh_policies.py, `istio-*` and `istiod-*`), run as the analyzer runs them
(tests/test_policy.py `violations`): silent on what the program registers for every stack with `mesh: istio` (dev,
staging, prod, each shard stack, and staging and prod as single stacks), each catching every case it is written for
on a hand edit of those objects, and mandatory in every environment."""

from __future__ import annotations

import copy

import pytest

from harness import SHARD_STACKS, plain, run_program
from test_policy import BY_NAME, crafted, edit, enforcement, violations

from mesh_policies import _IstioStack  # noqa: E402 (policy/ is on the path once test_policy is imported)

ISTIO = {"mesh": "istio", "linkerdViz": False}
ISTIO_RULES = ("istio-deny-namespaces-closed", "istio-no-wildcard-principals", "istio-deny-egress-closed",
               "istiod-uses-istio-csr-and-registry-only")
# Stacks as their files are, and staging and prod as single stacks: a sharded platform holds no namespace's policy.
STACKS = ("dev", "staging", "prod", *SHARD_STACKS, "staging-single", "prod-single")
# staging runs the verification canary in its default phase, deny: the canary's namespace is judged too.
DENY = {"staging-single": {"web", "payments", "data", "mtls-mesh-verify"}, "prod-single": {"web", "payments", "data"},
        "prod-payments": {"payments", "data"}}

_runs: dict[str, object] = {}


def istio_run(stack: str):
    if stack not in _runs:
        name = stack.removesuffix("-single")
        extra = {"policyShards": False} if stack.endswith("-single") else {}
        _runs[stack] = run_program(name, set_config={**ISTIO, **extra})
    return _runs[stack]


def policy_failures(run, stack: str) -> dict[str, list[str]]:
    levels = enforcement(stack.removesuffix("-single"))
    return {name: found for name, level in levels.items() if level == "mandatory"
            and (found := violations(run, BY_NAME[name]))}


@pytest.mark.parametrize("stack", STACKS)
def test_every_istio_stack_passes_every_mandatory_policy(stack):
    run = istio_run(stack)
    assert policy_failures(run, stack) == {}
    # Something to judge: the deny namespaces' policy, and istiod's values where the stack deploys it.
    if stack in DENY:
        class Resource:
            def __init__(self, registration):
                self.resource_type, self.props = registration.type, plain(registration.inputs)
        assert _IstioStack(Resource(r) for r in run.registrations if r.custom).deny == DENY[stack]
    if stack in ("dev", "staging", "prod"):
        assert [r for r in run.registrations if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "istiod"]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", *SHARD_STACKS])
def test_the_istio_rules_are_mandatory_in_every_environment(stack):
    levels = enforcement(stack)
    assert {name: levels[name] for name in ISTIO_RULES} == dict.fromkeys(ISTIO_RULES, "mandatory")


# --- istio-deny-namespaces-closed -------------------------------------------------------------------------------------

def closed(change_kind, namespace, name, change):
    return violations(istio_run("prod-single"), BY_NAME["istio-deny-namespaces-closed"],
                      edit(change_kind, namespace, name, change))


@pytest.mark.parametrize("rules, words", [
    ([{}], "rules[0] has no `from`, so it admits callers the service graph does not name on every port"),
    ([{"to": [{"operation": {"ports": ["8080"]}}]}], "rules[0] has no `from`"),
    ([{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}], "a source that does not name principals"),
    ([{"from": [{"source": {"principals": ["*"]}}]}], "a source that does not name principals"),
    ([{"from": [{"source": {"notPrincipals": ["cluster.local/ns/web/sa/intruder"]}}]}], "does not name principals"),
])
def test_a_namespace_policy_that_admits_everyone_in_a_deny_namespace_is_caught(rules, words):
    """The hand edit a reviewer fears most: the allow-nothing `spec: {}` turned into `rules: [{}]` (allow-all)."""
    found = closed("AuthorizationPolicy", "web", "mtls-mesh-default", lambda props: props["spec"].update(
        action="ALLOW", rules=copy.deepcopy(rules)))
    assert any(f.startswith("Istio deny namespace web: AuthorizationPolicy mtls-mesh-default") and words in f
               for f in found), found


@pytest.mark.parametrize("change", [
    lambda props: props["metadata"].update(annotations={"istio.io/dry-run": "true"}),
    lambda props: props["spec"].update(selector={"matchLabels": {"app": "nothing"}}),
    lambda props: props["spec"].update(action="DENY"),
])
def test_a_deny_namespace_without_its_enforced_allow_nothing_default_is_caught(change):
    """Without it, a workload that no per-port policy selects (a service without callers) admits every caller."""
    found = closed("AuthorizationPolicy", "payments", "mtls-mesh-default", change)
    assert any(f.startswith("Istio deny namespace payments has no enforced namespace-wide ALLOW") for f in found), found


@pytest.mark.parametrize("principals", [["*"], ["cluster.local/ns/web/sa/*"], ["*/ns/web/sa/storefront"]])
def test_a_port_policy_with_wildcard_principals_in_a_deny_namespace_is_caught(principals):
    def widen(props):
        props["spec"]["rules"][0]["from"][0]["source"]["principals"] = principals
    found = closed("AuthorizationPolicy", "payments", "ledger-http", widen)
    assert len(found) == 1 and "AuthorizationPolicy ledger-http rules[0] has a source that does not name" in found[0]


def test_a_source_that_also_admits_a_namespace_is_caught():
    def widen(props):
        props["spec"]["rules"][0]["from"].append({"source": {"namespaces": ["web"]}})
    assert closed("AuthorizationPolicy", "payments", "ledger-http", widen)


@pytest.mark.parametrize("mode", ["PERMISSIVE", "DISABLE", "UNSET"])
def test_a_deny_namespace_without_strict_mtls_is_caught(mode):
    found = closed("PeerAuthentication", "payments", "default", lambda props: props["spec"]["mtls"].update(mode=mode))
    assert found == [f"Istio deny namespace payments: PeerAuthentication default is {mode}, not STRICT: plaintext "
                     "callers, who carry no identity, get in"]


def test_a_deny_namespace_whose_peer_authentication_is_gone_is_caught():
    def workload_scoped(props):
        props["spec"]["selector"] = {"matchLabels": {"app": "nothing"}}
    found = closed("PeerAuthentication", "web", "default", workload_scoped)
    assert any("web has no namespace-wide PeerAuthentication" in f for f in found), found


@pytest.mark.parametrize("mode", ["PERMISSIVE", "DISABLE"])
def test_a_workload_peer_authentication_that_turns_mtls_off_is_caught(mode):
    found = closed("PeerAuthentication", "data", "mtls-mesh-skipped-ports",
                   lambda props: props["spec"].update(mtls={"mode": mode}))
    assert found == [f"Istio deny namespace data: PeerAuthentication mtls-mesh-skipped-ports sets mtls.mode {mode} for "
                     "the workloads it selects: plaintext callers get in"]


def test_proxy_free_ports_go_without_mtls_only_behind_the_namespaces_network_policies():
    """The program's exception (postgres, `meshed: false`, port 5432 in `data`) holds while a NetworkPolicy isolates
    every pod of the namespace; without it both the DISABLE and the ALLOW without `from` are caught."""
    run = istio_run("prod-single")
    policy = BY_NAME["istio-deny-namespaces-closed"]
    assert violations(run, policy) == []

    def no_default_deny(props):
        props["spec"]["podSelector"] = {"matchLabels": {"app": "nothing"}}
    found = violations(run, policy, edit("NetworkPolicy", "data", "mtls-mesh-default-deny", no_default_deny))
    assert any("PeerAuthentication mtls-mesh-skipped-ports accepts plaintext on ports 5432 and no NetworkPolicy" in f
               for f in found), found
    assert any("AuthorizationPolicy postgres rules[0] has no `from`" in f and "on ports 5432" in f for f in found), found


def test_an_allow_without_from_beyond_the_proxy_free_ports_is_caught():
    def more_ports(props):
        props["spec"]["rules"][0]["to"][0]["operation"]["ports"].append("8080")
    found = closed("AuthorizationPolicy", "data", "postgres", more_ports)
    assert found == ["Istio deny namespace data: AuthorizationPolicy postgres rules[0] has no `from`, so it admits "
                     "callers the service graph does not name on ports 5432, 8080"]


def test_an_allow_without_from_on_a_port_that_keeps_mtls_is_caught():
    """Only the ports the workload PeerAuthentication leaves without mTLS are the exception (5432 in `data`)."""
    run = istio_run("prod-single")

    def open_port(registration, props):
        meta = props.get("metadata") or {}
        if registration.type.endswith(":AuthorizationPolicy") and meta.get("namespace") == "data" \
                and meta.get("name") == "postgres":
            props["spec"]["rules"][0]["to"][0]["operation"]["ports"] = ["9999"]
        return props
    assert any("postgres rules[0] has no `from`" in f and "on ports 9999" in f
               for f in violations(run, BY_NAME["istio-deny-namespaces-closed"], open_port))


def test_outside_deny_the_phase_admissions_and_dry_runs_are_the_rollouts():
    """prod's `ingress` (all-unauthenticated: `rules: [{}]`, PERMISSIVE) and dev (audit: dry runs) are open by
    design; the rule judges deny namespaces only, as the Linkerd rules do."""
    for stack in ("prod-single", "dev"):
        run = istio_run(stack)
        assert any(r.type.endswith(":PeerAuthentication") and r.inputs["spec"].get("mtls", {}).get("mode") == "PERMISSIVE"
                   for r in run.registrations)
        assert violations(run, BY_NAME["istio-deny-namespaces-closed"]) == []


@pytest.mark.parametrize("stack", ["prod-single", "prod-payments"])
def test_an_allow_all_in_the_root_namespace_is_caught(stack):
    """A policy in istio-system applies to every workload of the mesh: it would open every deny namespace, the
    shards' too, which the platform that would hold it cannot see."""
    root = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "allow-all", "namespace": "istio-system"}, "spec": {"action": "ALLOW", "rules": [{}]}}
    assert crafted(root)["istio-deny-namespaces-closed"] == [
        "Istio root namespace istio-system (every workload of the mesh): AuthorizationPolicy allow-all rules[0] has no "
        "`from`, so it admits callers the service graph does not name on every port"]

    def into_root(registration, props):
        meta = props.get("metadata") or {}
        if registration.type.endswith(":AuthorizationPolicy") and meta.get("name") == "ledger-http":
            meta["namespace"] = "istio-system"
            props["spec"]["rules"][0].pop("from")
        return props
    assert any(f.startswith("Istio root namespace istio-system") for f in
               violations(istio_run(stack), BY_NAME["istio-deny-namespaces-closed"], into_root))


def test_a_shards_deny_namespace_is_judged_by_the_shard():
    shard = istio_run("prod-payments")
    found = violations(shard, BY_NAME["istio-deny-namespaces-closed"], edit(
        "AuthorizationPolicy", "payments", "mtls-mesh-default", lambda props: props["spec"].update(rules=[{}])))
    assert any("payments: AuthorizationPolicy mtls-mesh-default rules[0] has no `from`" in f for f in found), found


# --- istio-no-wildcard-principals -------------------------------------------------------------------------------------

def istio_policy(namespace="shop", selector=True, **source):
    spec = {"action": "ALLOW", "rules": [{"from": [{"source": source}], "to": [{"operation": {"ports": ["8080"]}}]}]}
    if selector:
        spec["selector"] = {"matchLabels": {"app": "api"}}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "api-http", "namespace": namespace}, "spec": spec}


@pytest.mark.parametrize("source, words", [
    ({"principals": ["cluster.local/ns/web/sa/*"]}, "principal 'cluster.local/ns/web/sa/*'"),
    ({"principals": ["*"]}, "principal '*'"),
    ({"principals": ["*/ns/web/sa/storefront"]}, "principal '*/ns/web/sa/storefront'"),
    ({"namespaces": ["web"]}, "namespaces ['web']"),
    ({"serviceAccounts": ["web/storefront"]}, "serviceAccounts ['web/storefront']"),
    ({"notPrincipals": ["cluster.local/ns/web/sa/intruder"]}, "notPrincipals"),
])
def test_identities_by_pattern_are_caught(source, words):
    found = crafted(istio_policy(**source)).get("istio-no-wildcard-principals", [])
    assert len(found) == 1 and words in found[0] and found[0].startswith("AuthorizationPolicy shop/api-http"), found


def test_the_phase_admission_of_any_authenticated_caller_passes_and_deny_still_catches_it():
    """`principals: ["*"]` alone in a policy without selector is all-authenticated's admission (plan/istio
    authorization.py phase_rules): not a pattern for one service. In a deny namespace it is still an opening."""
    admission = istio_policy(selector=False, principals=["*"])
    assert "istio-no-wildcard-principals" not in crafted(admission)
    run = run_program("staging", set_config={**ISTIO, "policyShards": False, "inboundPolicyOverrides": [],
                                             "defaultInboundPolicy": "all-authenticated"})
    assert any(r.type.endswith(":AuthorizationPolicy") and r.inputs["metadata"]["name"] == "mtls-mesh-default"
               and r.inputs["spec"].get("rules") == [{"from": [{"source": {"principals": ["*"]}}]}]
               for r in run.registrations)
    assert violations(run, BY_NAME["istio-no-wildcard-principals"]) == []


def test_a_dry_run_with_a_pattern_is_caught_too():
    """A dry run is what the next phase enforces."""
    policy = istio_policy(namespaces=["web"])
    policy["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    assert crafted(policy).get("istio-no-wildcard-principals")


def test_a_deny_policy_with_a_pattern_passes():
    policy = istio_policy(namespaces=["web"])
    policy["spec"]["action"] = "DENY"
    assert "istio-no-wildcard-principals" not in crafted(policy)


# --- istio-deny-egress-closed -----------------------------------------------------------------------------------------

def egress(kind, namespace, name, change, stack="prod-single"):
    return violations(istio_run(stack), BY_NAME["istio-deny-egress-closed"], edit(kind, namespace, name, change))


def test_a_sidecar_that_allows_any_host_is_caught():
    found = egress("Sidecar", "payments", "billing", lambda props: props["spec"].update(
        outboundTrafficPolicy={"mode": "ALLOW_ANY"}))
    assert found == ["Istio deny namespace payments: Sidecar billing sets outboundTrafficPolicy ALLOW_ANY: its "
                     "workloads reach any host"]


@pytest.mark.parametrize("host", ["*/*", "./*", "payments/*", "*/*.com"])
def test_a_sidecar_naming_every_host_is_caught(host):
    found = egress("Sidecar", "payments", "billing", lambda props: props["spec"]["egress"][0]["hosts"].append(host))
    assert found == [f"Istio deny namespace payments: Sidecar billing names every host ({host}): list the workload's "
                     "callees and egress hosts"]


def test_a_sidecar_with_a_graph_wildcard_subdomain_passes():
    assert egress("Sidecar", "payments", "billing",
                  lambda props: props["spec"]["egress"][0]["hosts"].append("payments/*.stripe.com")) == []


@pytest.mark.parametrize("change, words", [
    (lambda spec: spec.update(hosts=["*.com"]), "is for every host under *.com"),
    (lambda spec: spec.update(addresses=["0.0.0.0/1", "128.0.0.0/1"]), "covers 100% of IPv4"),
    (lambda spec: spec.pop("exportTo"), "is exported to every namespace (the default)"),
    (lambda spec: spec.update(exportTo=["*"]), "is exported to ['*']"),
])
def test_a_service_entry_for_everywhere_is_caught(change, words):
    found = egress("ServiceEntry", "payments", "egress-api.stripe.com", lambda props: change(props["spec"]))
    assert len(found) == 1 and found[0].startswith("Istio deny namespace payments: ServiceEntry egress-api.stripe.com") \
        and words in found[0], found


def test_open_sidecars_outside_deny_are_the_rollouts():
    """prod's `ingress` and every dev namespace keep `*/*` and ALLOW_ANY while they do not enforce."""
    run = istio_run("prod-single")
    assert any(r.type.endswith(":Sidecar") and r.inputs["metadata"]["namespace"] == "ingress"
               and r.inputs["spec"].get("outboundTrafficPolicy") == {"mode": "ALLOW_ANY"} for r in run.registrations)
    assert violations(run, BY_NAME["istio-deny-egress-closed"]) == []


def test_a_deny_namespace_stays_judged_when_its_default_policy_is_opened():
    """The namespace is known for a deny one by its per-workload Sidecars too."""
    def opened_and_open(registration, props):
        meta = props.get("metadata") or {}
        if meta.get("namespace") == "payments" and registration.type.endswith(":AuthorizationPolicy") \
                and meta.get("name") == "mtls-mesh-default":
            props["spec"] = {"action": "ALLOW", "rules": [{}]}
        if meta.get("namespace") == "payments" and registration.type.endswith(":Sidecar") and meta.get("name") == "billing":
            props["spec"]["outboundTrafficPolicy"] = {"mode": "ALLOW_ANY"}
        return props
    run = istio_run("prod-single")
    assert violations(run, BY_NAME["istio-deny-egress-closed"], opened_and_open)
    assert violations(run, BY_NAME["istio-deny-namespaces-closed"], opened_and_open)


# --- istiod-uses-istio-csr-and-registry-only --------------------------------------------------------------------------

def istiod(change, stack="prod"):
    def mutate(registration, props):
        if registration.type == "kubernetes:helm.sh/v3:Release" and props.get("chart") == "istiod":
            change(props["values"])
        return props
    return violations(istio_run(stack), BY_NAME["istiod-uses-istio-csr-and-registry-only"], mutate)


@pytest.mark.parametrize("change", [
    lambda values: values["env"].update(ENABLE_CA_SERVER="true"),
    lambda values: values["env"].pop("ENABLE_CA_SERVER"),
    lambda values: values["env"].update(ENABLE_CA_SERVER="no"),  # strconv.ParseBool refuses it: the default, true
    lambda values: values.update(pilot={"env": {"ENABLE_CA_SERVER": "true"}}),  # .pilot is merged over the top level
])
def test_istiods_own_ca_is_caught(change):
    found = istiod(change)
    assert len(found) == 1 and found[0].startswith("istiod runs its own CA"), found


def test_a_boolean_false_is_off_as_the_chart_renders_it():
    assert istiod(lambda values: values["env"].update(ENABLE_CA_SERVER=False)) == []


@pytest.mark.parametrize("address", ["istiod.istio-system.svc:15012", "cert-manager-istio-csr.cert-manager.svc:443",
                                     None])
def test_a_ca_address_other_than_istio_csrs_service_is_caught(address):
    def point(values):
        values["global"]["caAddress"] = address
    found = istiod(point)
    assert len(found) == 1 and "global.caAddress" in found[0] and \
        "'cert-manager-istio-csr.istio-system.svc:443'" in found[0], found


def test_the_mesh_stays_allow_any_and_the_deny_sidecars_say_registry_only():
    """The mesh's ALLOW_ANY is what keeps injected pods outside the graph working; it passes because every Sidecar
    of a deny namespace carries REGISTRY_ONLY itself."""
    run = istio_run("prod-single")
    (release,) = [r for r in run.registrations if r.type == "kubernetes:helm.sh/v3:Release"
                  and r.inputs["chart"] == "istiod"]
    assert release.inputs["values"]["meshConfig"]["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}
    deny_sidecars = [r.inputs["spec"] for r in run.registrations if r.type.endswith(":Sidecar")
                     and r.inputs["metadata"]["namespace"] in DENY["prod-single"]]
    assert deny_sidecars and all(s["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"} for s in deny_sidecars)
    assert istiod(lambda values: values["meshConfig"].pop("outboundTrafficPolicy"), stack="prod-single") == []


def registry_only(change, stack="prod-single"):
    return violations(istio_run(stack), BY_NAME["istiod-uses-istio-csr-and-registry-only"], change)


@pytest.mark.parametrize("stack", ["prod-single", "prod-payments"])  # a shard sees no istiod: the Sidecar must say it
def test_a_deny_sidecar_inheriting_the_meshs_allow_any_is_caught(stack):
    found = registry_only(edit("Sidecar", "payments", "billing",
                               lambda props: props["spec"].pop("outboundTrafficPolicy")), stack)
    assert found == ["Istio deny namespace payments: Sidecar billing sets no outboundTrafficPolicy, so its workloads "
                     "take the mesh's (ALLOW_ANY by default) and reach any host: set "
                     "`outboundTrafficPolicy: {mode: REGISTRY_ONLY}`"], found


def test_a_deny_namespace_without_its_selector_less_sidecar_is_caught():
    def drop_default(registration, props):
        meta = props.get("metadata") or {}
        if registration.type.endswith(":Sidecar") and meta.get("namespace") == "data" and meta.get("name") == "default":
            props["metadata"] = {**meta, "namespace": "elsewhere"}
        return props
    found = registry_only(drop_default)
    assert len(found) == 1 and found[0].startswith("Istio deny namespace data has no selector-less Sidecar"), found


def test_a_registry_only_mesh_covers_the_sidecars_that_inherit_it():
    def inherit_everywhere(registration, props):
        if registration.type == "kubernetes:helm.sh/v3:Release" and props.get("chart") == "istiod":
            props["values"]["meshConfig"]["outboundTrafficPolicy"] = {"mode": "REGISTRY_ONLY"}
        if registration.type.endswith(":Sidecar"):
            props["spec"].pop("outboundTrafficPolicy", None)
        return props
    assert registry_only(inherit_everywhere) == []


def test_istiod_without_istio_csr_is_caught():
    def without_csr(registration, props):
        if registration.type == "kubernetes:helm.sh/v3:Release" and props.get("chart") == "cert-manager-istio-csr":
            props["chart"] = "renamed"
        return props
    found = violations(istio_run("staging"), BY_NAME["istiod-uses-istio-csr-and-registry-only"], without_csr)
    assert found and "without istio-csr" in found[0]
