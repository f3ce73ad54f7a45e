"""A platform stack and its shard stacks register, between them, exactly what one stack would (issue 24), from the
one plan: no object twice, none missing, the same content; a `pulumi state move` of the shards' groups gives each
shard the URNs it registers (no re-create); a shard applies only what its platform applied; and a call between
shards is allowed only by the callee's own objects, so a shard applied before or after another denies, never allows.

The repository's prod is the example: `web` is shard storefront's, `payments` and `data` (whose postgres has a
workload Certificate) shard payments'.
"""

from __future__ import annotations

import functools
import itertools

import pytest

from harness import SHARD_STACKS, Run, plain, run_program, stack_plan
from plan.linkerd.authorization import access_matrix
from plan.namespaces import POLICY_SHARD
from plan.shards import (PLATFORM, SHARD, SINGLE, contract_digests, contract_problem, scoped_matrix, shard_contracts,
                         stack_scope)
from read.errors import SettingsError

PLATFORM_STACK = "prod"


@pytest.fixture(scope="module")
def single() -> Run:
    """prod as one stack: what it was before it was sharded."""
    return run_program(PLATFORM_STACK, set_config={"policyShards": False})


@pytest.fixture(scope="module")
def platform() -> Run:
    return run_program(PLATFORM_STACK)


@pytest.fixture(scope="module")
def shards(platform) -> dict[str, Run]:
    return {stack: run_program(stack, platform_outputs=platform.exports) for stack in SHARD_STACKS
            if stack.startswith(f"{PLATFORM_STACK}-")}


def object_key(obj: dict) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def kubernetes_objects(run: Run) -> dict[tuple, dict]:
    found: dict[tuple, dict] = {}
    for registration in run.registrations:
        if registration.is_kubernetes and registration.type != "kubernetes:yaml/v2:ConfigGroup" \
                and "helm.sh" not in registration.type:
            obj = registration.object()
            key = object_key(obj)
            assert key not in found, f"{run.stack} registers {key} twice"
            found[key] = obj
    return found


def test_the_example_shards_are_the_graphs():
    """staging is sharded like prod (a change of shards is carried out there first): the same shards of one graph."""
    assert SHARD_STACKS == ("prod-payments", "prod-storefront", "staging-payments", "staging-storefront")


def test_platform_and_shards_register_exactly_the_single_stacks_objects(single, platform, shards):
    whole = kubernetes_objects(single)
    parts = [kubernetes_objects(platform), *(kubernetes_objects(run) for run in shards.values())]
    seen: dict[tuple, dict] = {}
    for part in parts:
        for key, obj in part.items():
            assert key not in seen, f"{key} registered by two stacks"
            seen[key] = obj
    assert set(seen) == set(whole)
    for key, obj in whole.items():
        other = seen[key]
        if obj["kind"] == "Namespace":  # the platform names the shard that owns a namespace's policy
            other = {**other, "metadata": {**other["metadata"], "annotations": {
                k: v for k, v in other["metadata"].get("annotations", {}).items() if k != POLICY_SHARD}}}
        assert other == obj, f"{key} differs between the single stack and its shards"
    for run in shards.values():
        assert kubernetes_objects(run), f"{run.stack} registers nothing"


def test_the_platform_names_each_sharded_namespaces_owner(platform):
    annotations = {obj["metadata"]["name"]: obj["metadata"].get("annotations", {})
                   for obj in kubernetes_objects(platform).values() if obj["kind"] == "Namespace"}
    assert annotations["web"][POLICY_SHARD] == "storefront"
    assert annotations["payments"][POLICY_SHARD] == "payments"
    assert annotations["data"][POLICY_SHARD] == "payments"
    assert POLICY_SHARD not in annotations["ingress"]


def test_the_matrices_of_platform_and_shards_merge_to_the_single_stacks(single, platform, shards):
    for output in ("accessMatrix", "egressMatrix"):
        merged: dict = {}
        for run in (platform, *shards.values()):
            overlap = set(merged) & set(run.exports[output])
            assert not overlap, f"{output}: {sorted(overlap)[:3]} in two stacks"
            merged.update(run.exports[output])
        assert merged == single.exports[output]


COMPONENTS = ("mtls-mesh:authorization:MeshAuthorization", "mtls-mesh:cert_manager:CertManager")


def moved_urn(urn: str, dest: str) -> str:
    """What `pulumi state move` makes of the URN of a group (or its child) whose component parent stays behind:
    re-parented to the destination's root stack, the parent's type replaced in the chain (pulumi
    pkg/cmd/pulumi/state/state_move.go, rewriteURNs). In the harness's form: the SDK's mocks write a resource's parent
    as the last type of its chain, and the root stack as `pulumi:pulumi:Stack` (pulumi/runtime/mocks.py make_urn),
    where the engine writes the whole chain and omits the root; both sides of the comparison are in the same form."""
    prefix, _, rest = urn.partition("::")
    _, _, rest = rest.partition("::")  # the project
    qualified, _, name = rest.partition("::")
    chain = ["pulumi:pulumi:Stack" if t in COMPONENTS else t for t in qualified.split("$")]
    return f"urn:pulumi:{dest}::mtls-mesh::{'$'.join(chain)}::{name}"


def test_a_state_move_gives_each_shard_exactly_the_urns_it_registers(single, platform, shards):
    before = {r.urn for r in single.registrations}
    after = {r.urn for r in platform.registrations}
    assert after <= before, f"the platform registers what the single stack did not: {sorted(after - before)[:3]}"
    moved = before - after
    for stack, run in shards.items():
        own = {r.urn for r in run.registrations if r.type != "pulumi:providers:kubernetes"}
        namespaces = stack_scope(run_settings(stack).graph, True,
                                 run.exports["shard"]).namespaces
        mine = {moved_urn(u, stack) for u in moved if any(f"::authz-{ns}" in u or f"::certs-workload-{ns}" in u
                                                           for ns in namespaces)}
        assert mine == own, f"{stack}: moved but not registered {sorted(mine - own)[:2]}, " \
                            f"registered but not moved {sorted(own - mine)[:2]}"
        moved -= {u for u in moved if moved_urn(u, stack) in own}
    assert not moved, f"moved out of the single stack but registered by no shard: {sorted(moved)[:3]}"


def run_settings(stack: str):
    from harness import stack_config
    from read.stack_files import load_stack_settings
    config, secret_keys = stack_config(stack)
    return load_stack_settings(config, stack, secret_keys=frozenset(secret_keys))


def test_the_scopes_cover_every_namespace_once():
    graph = run_settings(PLATFORM_STACK).graph
    scopes = [stack_scope(graph, True), *(stack_scope(graph, True, shard) for shard in graph.shards)]
    names = [name for scope in scopes for name in scope.namespaces]
    assert sorted(names) == sorted(graph.namespaces)
    assert [s.role for s in scopes] == [PLATFORM, SHARD, SHARD]
    assert stack_scope(graph, False).role == SINGLE and stack_scope(graph, False).namespaces == tuple(graph.namespaces)


# ---- the contract --------------------------------------------------------------------------------------------------

def test_a_shard_refuses_an_update_the_platform_has_not_applied(platform):
    for outputs, expected in (({}, "exports no shardContracts"),
                              ({"shardContracts": {}}, "has not applied shard 'payments'"),
                              ({"shardContracts": {"payments": "sha256:" + "0" * 64}}, "applied shard 'payments' as")):
        with pytest.raises(SettingsError) as refused:
            run_program("prod-payments", platform_outputs=outputs)
        message = str(refused.value)
        assert expected in message and "pulumi up` of 'prod'" in message, message
        assert not [r for r in refused.value.registrations if r.type != "pulumi:pulumi:StackReference"]


def test_a_shards_preview_warns_and_still_shows_its_plan(platform):
    preview = run_program("prod-payments", preview=True, platform_outputs={"shardContracts": {}})
    applied = run_program("prod-payments", platform_outputs=platform.exports)
    assert {r.urn for r in preview.registrations} == {r.urn for r in applied.registrations}


def test_the_platform_exports_the_contract_each_shard_compares(platform, shards):
    for run in shards.values():
        assert platform.exports["shardContracts"][run.exports["shard"]] == run.exports["shardContract"]


def edited_graph_contracts(edit) -> dict[str, str]:
    import copy
    import yaml
    from dataclasses import replace
    from harness import PROJECT_DIR
    from plan.mesh import compile_mesh
    from read.errors import Problems
    from read.graph import parse_graph

    document = copy.deepcopy(yaml.safe_load((PROJECT_DIR / "services.yaml").read_text()))
    edit(document)
    problems = Problems()
    graph = parse_graph(document, "services.yaml", problems)
    assert not problems, problems.items
    settings = replace(run_settings(PLATFORM_STACK), graph=graph)
    return contract_digests(compile_mesh(settings), graph)


def test_a_teams_allow_list_change_needs_nothing_of_the_platform():
    before = edited_graph_contracts(lambda d: None)
    after = edited_graph_contracts(lambda d: d["services"]["billing"]["allow"].append("frontend"))
    assert before == after


def test_a_new_namespace_in_a_shard_changes_only_that_shards_contract():
    before = edited_graph_contracts(lambda d: None)

    def add(document):
        document["namespaces"]["search"] = {"shard": "storefront"}
        document["services"]["search"] = {"namespace": "search", "ports": [{"name": "http", "port": 8080,
                                                                             "protocol": "HTTP/1"}],
                                          "allow": ["frontend"]}
    after = edited_graph_contracts(add)
    assert after["storefront"] != before["storefront"] and after["payments"] == before["payments"]


def test_the_contract_problem_says_what_to_wait_for():
    assert contract_problem("a", "prod", "sha256:1", {"a": "sha256:1"}) is None
    message = contract_problem("a", "prod", "sha256:1", {"a": "sha256:2"})
    assert "pulumi up` of 'prod' at this commit" in message and "Ready" in message


# ---- edges between shards --------------------------------------------------------------------------------------

def test_a_call_between_shards_is_denied_until_the_callee_is_applied_and_never_wrongly_allowed(single):
    """Every order of applying the shards after the platform: the callers each applied set of objects authorizes
    (read back from the objects, as the exported accessMatrix is) are a subset of the whole mesh's, and a port of a
    namespace whose shard is not applied authorizes no one (its namespace's default, deny, holds)."""
    settings = run_settings(PLATFORM_STACK)
    plan = stack_plan(PLATFORM_STACK)
    graph = settings.graph
    whole = single.exports["accessMatrix"]
    scopes = {shard: stack_scope(graph, True, shard) for shard in graph.shards}
    platform_namespaces = set(stack_scope(graph, True).namespaces)
    cross_shard_edges = 0
    for count in range(len(scopes) + 1):
        for applied in itertools.combinations(scopes, count):
            namespaces = platform_namespaces | {ns for shard in applied for ns in scopes[shard].namespaces}
            objects = [obj for name in namespaces for obj in plan.namespaces[name].policy]
            matrix = access_matrix(objects, graph, settings.trust_domain, settings.policy.kubelet_networks)
            for key, entry in matrix.items():
                assert key in whole and set(entry.get("allowed", [])) <= set(whole[key].get("allowed", [])), key
            for key in whole:
                namespace = key.partition("/")[0]
                if namespace in graph.namespaces and namespace not in namespaces:
                    assert key not in matrix, f"{key} is authorized though its shard is not applied"
                    assert plan.namespaces[namespace].namespace["metadata"]["annotations"][
                        "config.linkerd.io/default-inbound-policy"] == "deny"
            cross_shard_edges += sum(1 for key, entry in matrix.items() for caller in entry.get("allowed", [])
                                     if graph.namespaces.get(caller.partition("/")[0]) is not None
                                     and graph.namespaces[caller.partition("/")[0]].shard
                                     != graph.namespaces.get(key.partition("/")[0]).shard)
    assert cross_shard_edges > 0, "the example has no call between shards to show"


def test_scoped_matrices_split_by_owner():
    graph = run_settings(PLATFORM_STACK).graph
    matrix = {"web/a:http": 1, "payments/b:grpc": 2, "ingress/c:http": 3, "mtls-mesh-verify/canary:http": 4}
    assert scoped_matrix(matrix, stack_scope(graph, True, "storefront"), graph) == {"web/a:http": 1}
    assert scoped_matrix(matrix, stack_scope(graph, True), graph) == {"ingress/c:http": 3,
                                                                       "mtls-mesh-verify/canary:http": 4}
    assert scoped_matrix(matrix, stack_scope(graph, False), graph) == matrix


def test_shard_contracts_name_what_the_shard_assumes():
    plan = stack_plan(PLATFORM_STACK)
    graph = run_settings(PLATFORM_STACK).graph
    contract = shard_contracts(plan, graph)["payments"]
    assert set(contract["namespaces"]) == {"payments", "data"}
    assert contract["namespaces"]["data"]["issuer"] == plan.namespaces["data"].issuer["metadata"]["name"]
    assert contract["namespaces"]["payments"]["phase"] == "deny"
    assert contract["linkerdChartVersion"] == plan.linkerd.chart_version and contract["issuers"] == "vault"


# ---- a shard stack's settings -----------------------------------------------------------------------------------

SHARD_CONFIG = {"mtls-mesh:platformStack": "prod", "mtls-mesh:shard": "payments"}


@pytest.mark.parametrize("stack, config, key, words", [
    ("prod-payments", {**SHARD_CONFIG, "mtls-mesh:defaultInboundPolicy": "audit"}, "mtls-mesh:defaultInboundPolicy",
     "a shard stack holds only platformStack, shard, kubeContext and kubeconfig"),
    ("prod-payments", {**SHARD_CONFIG, "mtls-mesh:platformStack": "nowhere"}, "mtls-mesh:platformStack",
     "the platform stack file stacks/Pulumi.nowhere.yaml is not there"),
    ("prod-payments", {**SHARD_CONFIG, "mtls-mesh:platformStack": "Prod!"}, "mtls-mesh:platformStack",
     "is not a stack name"),
    ("dev-payments", {**SHARD_CONFIG, "mtls-mesh:platformStack": "dev"}, "mtls-mesh:platformStack",
     "stack dev does not set policyShards: true"),
    ("prod-billing", {**SHARD_CONFIG, "mtls-mesh:shard": "billing"}, "mtls-mesh:shard",
     "'billing' is not a shard of"),
    ("payments", SHARD_CONFIG, "mtls-mesh:shard", "a shard stack is named <platformStack>-<shard>, prod-payments"),
    ("prod-payments", {"mtls-mesh:platformStack": "prod"}, "mtls-mesh:shard", "is set, but shard is not"),
    ("prod-storefront", {"mtls-mesh:platformStack": "prod-payments", "mtls-mesh:shard": "storefront"},
     "mtls-mesh:platformStack", "is itself a shard stack"),
])
def test_a_bad_shard_stack_is_one_error_before_anything_registers(stack, config, key, words):
    with pytest.raises(SettingsError) as refused:
        run_program(stack, config=config, platform_outputs={})
    message = str(refused.value)
    assert key in message and words in message, message
    assert refused.value.registrations == []


def test_a_stack_that_is_no_shard_sets_neither_shard_setting():
    with pytest.raises(SettingsError) as refused:
        run_program("staging", set_config={"shard": "payments"})
    assert "mtls-mesh:shard" in str(refused.value) and "is set, but platformStack is not" in str(refused.value)


def test_a_shard_reaches_the_cluster_its_own_way():
    """How to reach the cluster is the runner's (the Operator's workspace sets in-cluster), not the mesh's; the
    platform's deliverer still holds (an in-cluster run of a workflows platform's shard is refused, as the
    platform's own would be)."""
    platform = run_program(PLATFORM_STACK)
    run = run_program("prod-payments", config={**SHARD_CONFIG, "mtls-mesh:kubeContext": "prod-eu1-teams"},
                      platform_outputs=platform.exports)
    (provider,) = [r for r in run.registrations if r.type == "pulumi:providers:kubernetes"]
    assert plain(provider.inputs)["context"] == "prod-eu1-teams"
    with pytest.raises(SettingsError, match="mtls-mesh:deliveredBy: is workflows, but kubeContext is in-cluster"):
        run_program("prod-payments", config={**SHARD_CONFIG, "mtls-mesh:kubeContext": "in-cluster"},
                    platform_outputs=platform.exports)


def test_the_shard_benchmark_runs_a_platform_and_a_shard(tmp_path):
    """benchmarks/shards.py's figures are the README's: its small run registers what a platform and a shard should."""
    from benchmarks import shards as bench

    bench.write_project(tmp_path, 200, 4, None)
    contracts = tmp_path / "contracts.json"
    contracts.write_text(__import__("json").dumps(bench.applied_outputs(tmp_path)))
    try:
        platform = bench.child("platform", tmp_path, contracts)
        shard = bench.child("shard", tmp_path, contracts)
    finally:
        from read import stack_files
        stack_files.STACKS_DIR = stack_files.PROJECT_DIR / "stacks"
    assert shard["resources"] > shard["registered"] > 2 and platform["registered"] > shard["registered"]


# ---- when a stack should be split -----------------------------------------------------------------------------------

def namespace_group_children(run: Run, namespaces) -> int:
    """The engine resources inside a run's namespace groups (`authz-<ns>`, `certs-workload-<ns>`), as the provider
    registers them (tests/harness.py config_group_children)."""
    from components.authorization import policy_group_name
    from components.cert_manager import workload_group_name

    names = {policy_group_name("authz", ns) for ns in namespaces} | {workload_group_name("certs", ns) for ns in namespaces}
    return sum(1 for r in run.registrations if r.group is not None and r.group.name in names)


def test_a_stack_over_the_advised_size_is_told_how_to_split_and_one_at_it_is_not(single, platform, shards):
    from plan.shards import grouped_objects, scoped_namespaces, size_advice

    plan = stack_plan(PLATFORM_STACK)
    graph = run_settings(PLATFORM_STACK).graph
    for run, scope, fix in ((single, stack_scope(graph, False), "mtls-mesh:policyShards: true"),
                            (platform, stack_scope(graph, True), "more of the platform's own namespaces"),
                            (shards["prod-payments"], stack_scope(graph, True, "payments"), "split shard 'payments'")):
        namespaces = scoped_namespaces(plan, scope)
        count = grouped_objects(namespaces)
        # The count is what the engine would hold in this stack's namespace groups, not an estimate of it.
        assert count == namespace_group_children(run, graph.namespaces), scope.role
        assert size_advice(namespaces, scope, limit=count) is None, scope.role
        advice = size_advice(namespaces, scope, limit=count - 1)
        assert advice and fix in advice and f"manages {count:,} Kubernetes objects" in advice, advice
    assert namespace_group_children(single, graph.namespaces) > 0


def test_the_program_warns_a_large_stack_in_up_and_preview_and_registers_the_same(monkeypatch, caplog, single):
    import plan.shards

    def advice(**kwargs) -> tuple[list[str], Run]:
        caplog.clear()
        with caplog.at_level("WARNING"):
            run = run_program(PLATFORM_STACK, set_config={"policyShards": False}, **kwargs)
        return [r.getMessage() for r in caplog.records if "Kubernetes objects" in r.getMessage()], run

    monkeypatch.setattr(plan.shards, "ADVISED_OBJECTS_PER_STACK", 10)
    for kwargs in ({}, {"preview": True}):
        warned, run = advice(**kwargs)
        assert len(warned) == 1 and "policyShards: true" in warned[0], (kwargs, warned)
        assert sorted(r.urn for r in run.registrations) == sorted(r.urn for r in single.registrations), kwargs
    monkeypatch.setattr(plan.shards, "ADVISED_OBJECTS_PER_STACK", 10_000)
    assert advice()[0] == []


# --- contracts without stalls: an Operator shard waits for its platform -------------------------------------------

class Clock:
    """Time that passes only when the code under test sleeps (no real waiting, no timing assertion)."""

    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


def test_a_waiting_shard_goes_on_once_the_platform_has_applied_its_contract():
    """Two promotions less than 5 minutes apart: the shard's update starts while the platform still exports the first
    promotion's contract; it waits (counting no failure) and goes on when the platform's update exports the second."""
    from components import platform as waiting

    clock, reads = Clock(), []
    answers = iter([{"payments": "sha256:old"}, {"payments": "sha256:old"}, {"payments": "sha256:new"}])

    def read(stack):
        reads.append(stack)
        return next(answers)

    left = waiting.wait_for_platform("payments", "prod", "sha256:new", {"payments": "sha256:old"}, read=read,
                                     sleep=clock.sleep, clock=clock, say=lambda _: None)
    assert left is None and reads == ["prod"] * 3
    assert clock.now == 3 * waiting.POLL_SECONDS <= waiting.WAIT_FOR_PLATFORM_SECONDS


def test_a_shard_stops_waiting_with_the_problem_when_the_platform_never_applies():
    from components import platform as waiting

    clock = Clock()
    left = waiting.wait_for_platform("payments", "prod", "sha256:new", None, read=lambda _: {"payments": "sha256:old"},
                                     sleep=clock.sleep, clock=clock, say=lambda _: None)
    assert "applied shard 'payments' as sha256:old" in left
    assert clock.now >= waiting.WAIT_FOR_PLATFORM_SECONDS


def test_an_operator_shard_waits_in_its_update_and_a_workflows_shard_refuses(platform, monkeypatch, tmp_path):
    """Under the program: the StackReference reads the first promotion's contracts, the fresh read (the builtin
    invoke) the platform's new ones; an Operator shard registers its objects, a workflows shard (whose job runs only
    after its platform's) refuses at once."""
    from components import platform as waiting
    from harness import RecordingMocks

    # The earlier promotion's outputs, as the platform exported them: older contracts, and its ledger.
    stale = {"shardContracts": {"payments": "sha256:" + "0" * 64, "storefront": "sha256:" + "0" * 64},
             "policyHolders": platform.exports["policyHolders"]}

    class PlatformCatchesUp(RecordingMocks):
        def call(self, args):
            result = super().call(args)
            if args.token == "pulumi:pulumi:readStackOutputs":
                result["outputs"] = platform.exports
            return result

    # wait_for_platform took time.sleep as its default when it was defined, so patching time.sleep does not reach it:
    # hand it a sleep that only counts, so the two waiting runs poll without a real 15 s pause each.
    polls = []
    monkeypatch.setattr(waiting, "wait_for_platform",
                        functools.partial(waiting.wait_for_platform, sleep=polls.append))
    run = run_program("prod-payments", platform_outputs=stale, mocks_factory=PlatformCatchesUp,
                      set_config={"deliveredBy": "operator", "kubeContext": "in-cluster"}, tmp_path=tmp_path)
    assert run.of_type("kubernetes:yaml/v2:ConfigGroup"), "it waited and registered its groups"
    assert polls == [waiting.POLL_SECONDS], "it polled the platform once before the fresh read answered"
    # A first promotion from before the ledger: the ledger it checks against is the one the platform exported since.
    before_ledger = {k: v for k, v in stale.items() if k != "policyHolders"}
    run = run_program("prod-payments", platform_outputs=before_ledger, mocks_factory=PlatformCatchesUp,
                      set_config={"deliveredBy": "operator", "kubeContext": "in-cluster"}, tmp_path=tmp_path)
    assert run.of_type("kubernetes:yaml/v2:ConfigGroup"), "it waited, read the ledger anew and registered its groups"
    assert len(polls) == 2
    with pytest.raises(SettingsError, match="applied shard 'payments' as"):
        run_program("prod-payments", platform_outputs=stale, mocks_factory=PlatformCatchesUp)


def test_the_platform_exports_its_contracts_only_once_what_they_promise_exists(monkeypatch):
    """The shardContracts output resolves after the Namespaces, Issuers and the Linkerd CRD release: an update that
    fails creating one of them leaves the platform's previous contracts for the waiting shards."""
    from components import platform as contracts
    seen = []
    real = contracts.applied_once_ready

    def spy(digests, ready):
        seen.extend(ready)
        return real(digests, ready)

    monkeypatch.setattr(contracts, "applied_once_ready", spy)
    run = run_program("prod")
    names = {getattr(r, "_name", None) for r in seen}
    assert "linkerd-crds" in names and "mesh-payments" in names and "mesh-web" in names
    assert any(str(n).startswith("certs-") for n in names), "the namespaces' Issuers"
    assert set(run.exports["shardContracts"]) == {"payments", "storefront"}
    preview = run_program("prod", preview=True)
    assert preview.exports.get("shardContracts") in (None, {}), "unknown until its resources exist"
