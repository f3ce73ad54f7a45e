"""Changes of which stack owns a namespace's policy objects (issue 29, plan/ownership.py, deploy/transitions.py),
played on a small model of the engine and a cluster, with the real program (tests/harness.py) run for each stack at
the base or the head commit, in every order the workflows and the Operator can run them.

The model's semantics, as read from source (docs/changing-shards.md cites the lines):
- an `up` diffs what the program registers with the stack's state; a resource not in the state is created: on the
  cluster, unless an object of that name exists, then the create fails AlreadyExists (pulumi-kubernetes
  provider/pkg/await/await.go `Creation`, not retried) and the `up` stops before any delete (the engine deletes what
  is no longer registered only after every registration: pkg/resource/deploy/step_generator.go `GenerateDeletes`);
- a resource in the state and not registered is deleted from the cluster whoever else wants it (await.go `Deletion`;
  step.go `DeleteStep.Apply`: only the old state's RetainOnDelete or Protect stop it; the program sets neither on
  policy objects);
- a refused program (SettingsError) changes nothing; a failed `up` keeps the stack's previous outputs;
- a preview changes nothing, and does not report AlreadyExists (provider.go `Create`, preview branch);
- `pulumi state move` moves resources between states, nothing on the cluster (state_move.go).
Identity in a state is (type, name): the engine finds a platform's group under its component by its alias to the
root where a move puts it (components/k8s.py `moved_in`), and a shard's at the root where it registers it.

The invariants checked after every step: each object of a namespace that exists at both commits is on the cluster
(no window), and no object is in two stacks' states (no two stacks managing it).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import unittest.mock
import yaml

import components.platform

from harness import PROJECT_DIR, Run, run_program
from deploy import transitions as tool
from plan.ownership import HOLDERS_OUTPUT, group_names, holds, owners, transition
from read.errors import SettingsError

PLATFORM = "prod"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
BASE_GRAPH = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())


# ---- commits -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Commit:
    name: str
    graph: str  # JSON of the service graph
    policy_shards: bool = True
    platform: str = PLATFORM  # the environment's single or platform stack
    # Whether the program at this commit exports the ledger (False: a commit before it existed, plan/ownership.py).
    ledger: bool = True
    settings: str = "{}"  # JSON of other platform settings this commit changes (run_program's set_config)

    @property
    def document(self) -> dict:
        return json.loads(self.graph)

    def shards(self) -> list[str]:
        if not self.policy_shards:
            return []
        found = []
        for ns in self.document["namespaces"].values():
            if (ns or {}).get("shard") and ns["shard"] not in found:
                found.append(ns["shard"])
        return found

    def stacks(self) -> list[str]:
        return [self.platform, *(f"{self.platform}-{s}" for s in self.shards())]

    def owners(self) -> dict[str, str]:
        owner = {}
        for name, ns in self.document["namespaces"].items():
            shard = (ns or {}).get("shard") if self.policy_shards else None
            owner[name] = f"{self.platform}-{shard}" if shard else self.platform
        return owner


def commit(name: str, edit=None, policy_shards: bool = True, platform: str = PLATFORM, ledger: bool = True,
           **settings: Any) -> Commit:
    document = copy.deepcopy(BASE_GRAPH)
    if edit:
        edit(document)
    return Commit(name, json.dumps(document, sort_keys=True), policy_shards, platform, ledger,
                  json.dumps(settings, sort_keys=True))


def set_shard(namespace: str, shard: str | None):
    def edit(document):
        entry = document["namespaces"][namespace] = dict(document["namespaces"][namespace] or {})
        entry.pop("shard", None)
        if shard:
            entry["shard"] = shard
    return edit


def rename_shard(old: str, new: str):
    def edit(document):
        for ns in document["namespaces"].values():
            if ns and ns.get("shard") == old:
                ns["shard"] = new
    return edit


def add_namespace(document):
    document["namespaces"]["ops"] = {"shard": "payments"}
    document["services"]["runbook"] = {"namespace": "ops", "ports": [{"name": "http", "port": 8080,
                                                                      "protocol": "HTTP/1"}], "allow": ["billing"]}


def remove_storefront_and_web(document):
    """The storefront shard removed with its only namespace, web, and web's services."""
    del document["namespaces"]["web"]
    for name in ("frontend", "checkout", "catalog"):
        del document["services"][name]
    for service in document["services"].values():
        if service.get("allow"):
            service["allow"] = [a for a in service["allow"] if a not in ("frontend", "checkout", "catalog")] or \
                ["ingress-nginx"]


def remove_data(document):
    del document["namespaces"]["data"]
    del document["services"]["postgres"]


BASE = commit("base")
TRANSITIONS = {
    "namespace shard -> shard": commit("data to storefront", set_shard("data", "storefront")),
    "platform -> shard": commit("ingress to storefront", set_shard("ingress", "storefront")),
    "shard -> platform": commit("data to the platform", set_shard("data", None)),
    "namespace added to a shard": commit("ops added", add_namespace),
    "namespace removed from a shard (and the mesh)": commit("data removed", remove_data),
    "shard renamed": commit("payments renamed pay", rename_shard("payments", "pay")),
    "shard removed": commit("storefront removed", set_shard("web", None)),
    "shard removed with its namespaces": commit("storefront and web removed", remove_storefront_and_web,
                                                adoptNamespaces=["payments"]),
    "policyShards off (sharded -> single)": commit("single", policy_shards=False),
}


# ---- the program, run by the harness ------------------------------------------------------------------------------

_RUNS: dict[Any, Run | SettingsError] = {}


def run(stack: str, at: Commit, outputs: dict[str, dict], tmp: Path, preview: bool = False) -> Run | SettingsError:
    """The program of `stack` at a commit, reading the outputs the model's backend holds (its own, its platform's)."""
    shard = stack.removeprefix(f"{at.platform}-") if stack != at.platform else None
    reads = outputs.get(at.platform if shard else stack, {})
    key = (stack, at, json.dumps(reads, sort_keys=True, default=str), preview)
    if key not in _RUNS:
        graph = at.document
        settings = {"policyShards": at.policy_shards, **json.loads(at.settings)}
        # A commit before the ledger: its program exported none and checked none (World.up drops the export).
        guard = contextlib.nullcontext() if at.ledger else unittest.mock.patch.multiple(
            components.platform, ownership_problems=lambda *args: [], missing_ledger_problem=lambda *args: None)
        try:
            with guard:
                if shard:
                    _RUNS[key] = run_program(stack, config={"mtls-mesh:platformStack": at.platform,
                                                            "mtls-mesh:shard": shard},
                                             graph=graph, set_config=settings, tmp_path=tmp,
                                             platform_outputs=reads, preview=preview)
                else:
                    _RUNS[key] = run_program(stack, graph=graph, set_config=settings,
                                             tmp_path=tmp, previous_outputs=reads, preview=preview)
        except SettingsError as refused:
            _RUNS[key] = refused
    return _RUNS[key]


def policy_registrations(result: Run) -> dict[tuple[str, str], dict | None]:
    """(type, name) -> the Kubernetes object (None for a group) of every namespace group and object it registers."""
    found = {}
    for r in result.registrations:
        group = r.name if r.type == CONFIG_GROUP else (r.group.name if r.group is not None else None)
        if group is None or not (group.startswith("authz-") or group.startswith("certs-workload-")):
            continue
        found[(r.type, r.name)] = None if r.type == CONFIG_GROUP else r.object()
    return found


def object_key(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


# ---- the engine, the backend and the cluster ----------------------------------------------------------------------

class Broken(AssertionError):
    pass


@dataclass
class World:
    """Per stack: its state ((type, name) -> object or None) and outputs; the cluster: object key -> content."""
    tmp: Path
    states: dict[str, dict[tuple[str, str], dict | None]] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    cluster: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    protected: set = field(default_factory=set)  # object keys that must never be absent
    # Stacks whose `up` is running (begun, not finished): their lock (DIY) or update lease (Cloud) fails the
    # handover's writes to them; `reports_updates`: whether the backend says so in `pulumi stack ls` (Cloud).
    running: set = field(default_factory=set)
    reports_updates: bool = False

    def up(self, stack: str, at: Commit) -> str:
        """One `pulumi up`: 'refused', 'failed' (AlreadyExists) or 'ok'."""
        return self.begin(stack, at)()

    def begin(self, stack: str, at: Commit):
        """An `up` that reads now (the program runs with the outputs the backend holds now) and writes when the
        returned function is called."""
        result = run(stack, at, self.outputs, self.tmp)
        self.running.add(stack)

        def finish() -> str:
            self.running.discard(stack)
            return self._write(stack, at, result)
        return finish

    def _locked(self, *stacks: str) -> None:
        for stack in stacks:
            if stack in self.running:
                raise tool.TransitionError(f"the stack is currently locked by 1 lock(s) ({stack})")

    def _write(self, stack: str, at: Commit, result) -> str:
        if isinstance(result, SettingsError):
            self.log.append(f"{stack}@{at.name}: refused: {result}")
            return "refused"
        state = self.states.setdefault(stack, {})
        wanted = policy_registrations(result)
        failed = False
        for ident, obj in wanted.items():
            if ident in state:
                if obj is not None:
                    self.cluster[object_key(obj)] = obj
                    state[ident] = obj
                continue
            if obj is not None and object_key(obj) in self.cluster:
                failed = True  # AlreadyExists: the object is another stack's, or was left behind
                continue
            state[ident] = obj
            if obj is not None:
                self.cluster[object_key(obj)] = obj
        if failed:
            self.log.append(f"{stack}@{at.name}: failed (AlreadyExists)")
            self.check()
            return "failed"
        for ident in [i for i in state if i not in wanted]:
            obj = state.pop(ident)
            if obj is not None:
                self.cluster.pop(object_key(obj), None)
        self.outputs[stack] = {k: v for k, v in result.exports.items() if at.ledger or k != HOLDERS_OUTPUT}
        self.log.append(f"{stack}@{at.name}: ok")
        self.check()
        return "ok"

    def check(self) -> None:
        missing = sorted(self.protected - set(self.cluster))
        if missing:
            raise Broken(f"objects absent from the cluster after {self.log[-1]}: {missing[:4]} "
                         f"(steps so far: {self.log})")
        seen: dict = {}
        for stack, state in self.states.items():
            for obj in state.values():
                if obj is None:
                    continue
                key = object_key(obj)
                if key in seen:
                    raise Broken(f"{key} managed by both {seen[key]} and {stack} after {self.log[-1]}")
                seen[key] = stack

    # The backend deploy/transitions.py drives (the same operations as its Backend, on this model's states).
    def stacks(self) -> list[str]:
        return sorted(self.states)

    def updating(self) -> set[str]:
        return set(self.running) if self.reports_updates else set()

    def export(self, stack: str) -> dict:
        resources = [{"urn": f"urn:pulumi:{stack}::mtls-mesh::pulumi:pulumi:Stack::mtls-mesh-{stack}",
                      "type": "pulumi:pulumi:Stack", "outputs": copy.deepcopy(self.outputs.get(stack, {}))}]
        for (type_, name) in self.states[stack]:
            qualified = type_ if type_ == CONFIG_GROUP else f"{CONFIG_GROUP}${type_}"
            resources.append({"urn": f"urn:pulumi:{stack}::mtls-mesh::{qualified}::{name}", "type": type_})
        return {"version": 3, "deployment": {"resources": resources}}

    def import_(self, stack: str, deployment: dict) -> None:
        self._locked(stack)
        root = next(r for r in deployment["deployment"]["resources"] if r["type"] == "pulumi:pulumi:Stack")
        self.outputs[stack] = root["outputs"]
        self.log.append(f"ledger of {stack} rewritten")

    def init(self, stack: str) -> None:
        self.states.setdefault(stack, {})

    def move(self, source: str, dest: str, urns: list[str]) -> None:
        self._locked(source, dest)
        names = {tool.urn_name(u) for u in urns}
        moving = {i: o for i, o in self.states[source].items() if i[1] in names}
        clash = set(moving) & set(self.states.setdefault(dest, {}))
        assert not clash, f"state move: {sorted(clash)[:2]} already exist in destination stack"
        for ident, obj in moving.items():
            self.states[dest][ident] = self.states[source].pop(ident)
        self.log.append(f"state move {source} -> {dest}: {len(moving)} resources")
        self.check()

    def remove(self, stack: str) -> None:
        assert not self.states[stack], f"{stack} removed while it holds {sorted(self.states[stack])[:2]}"
        del self.states[stack]
        self.outputs.pop(stack, None)
        self.log.append(f"stack rm {stack}")

    def handover(self, at: Commit) -> None:
        """deploy/transitions.py `apply`, against this model's states, with the stack files of `at`."""
        env = tool.Environment(at.platform, at.owners(), at.stacks())
        tool.apply(self, env, log=self.log.append)


def deployed(tmp: Path, at: Commit = BASE) -> World:
    """An environment deployed at a commit from nothing: the platform, then its shards."""
    world = World(tmp)
    for stack in at.stacks():
        assert world.up(stack, at) == "ok", world.log
    return world


def kept_objects(world: World, base: Commit, head: Commit) -> set:
    """The objects both commits want, of namespaces both have: these must never be absent."""
    def wanted(at):
        keys = set()
        for stack in at.stacks():
            result = run(stack, at, {s: world.outputs.get(s, {}) for s in at.stacks()}, world.tmp, preview=True)
            if isinstance(result, Run):
                keys |= {object_key(o) for o in policy_registrations(result).values() if o is not None}
        return keys
    both = set(base.owners()) & set(head.owners())
    return {key for key in wanted(base) & wanted(head) if key[1] in both}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transitions")


# ---- today's window ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(itertools.permutations(["prod", "prod-payments", "prod-storefront"])))
def test_moving_a_namespace_between_shards_never_leaves_it_open(tmp, order):
    """The deploy workflow without a handover, in every order: the old owner's `up` would delete `data`'s
    default-deny NetworkPolicies and postgres Certificate before the new owner creates them (issue 29). It must
    refuse instead; nothing on the cluster may be absent between two `up`s."""
    head = TRANSITIONS["namespace shard -> shard"]
    world = deployed(tmp)
    world.protected = kept_objects(world, BASE, head)
    assert any(key[0] == "NetworkPolicy" and key[1] == "data" for key in world.protected)
    outcomes = {stack: world.up(stack, head) for stack in order}
    assert outcomes["prod-payments"] == "refused" and outcomes["prod-storefront"] == "refused", world.log
    if order.index("prod") < order.index("prod-payments"):  # before it, the contract refuses first
        refusal = next(line for line in world.log if line.startswith("prod-payments") and "refused" in line)
        assert "namespaces.data: now belongs to stack 'prod-storefront'" in refusal, refusal
        assert "python -m deploy.transitions apply --stack prod" in refusal, refusal


# ---- every transition, every order, base and head mixed ------------------------------------------------------------

def schedules(base: Commit, head: Commit) -> list[list[tuple[str, str]]]:
    """Orders of the handover and of each head stack's `up` (the workflow: handover, platform, shards in parallel;
    the Operator: any order, a stack sometimes still at the base commit after the handover)."""
    ups = [("up", stack) for stack in head.stacks()]
    stale = [("base", stack) for stack in base.stacks()]
    orders = []
    for perm in itertools.permutations(ups):
        for position in range(len(perm) + 1):
            orders.append([*perm[:position], ("handover", ""), *perm[position:]])
    # A stack still at the base commit running right after the handover (the Operator had not polled yet).
    for late in stale:
        orders.append([("handover", ""), late, *ups])
        orders.append([ups[0], late, ("handover", ""), *ups[1:], late])
    return orders


def settle(world: World, head: Commit) -> None:
    """What the pipeline converges to: the handover, then every head stack (the deploy workflow, or the Operator's
    next runs)."""
    world.handover(head)
    for stack in head.stacks():
        assert world.up(stack, head) == "ok", f"{stack} does not converge: {world.log}"


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_every_transition_in_every_order_keeps_every_namespace_closed(tmp, name):
    head = TRANSITIONS[name]
    for schedule in schedules(BASE, head):
        world = deployed(tmp)
        world.protected = kept_objects(world, BASE, head)
        for action, stack in schedule:
            if action == "handover":
                world.handover(head)
            else:
                at = head if action == "up" else BASE
                if stack in world.states or stack in at.stacks():
                    world.up(stack, at)
        settle(world, head)
        expected = {}
        for stack in head.stacks():
            result = run(stack, head, world.outputs, tmp)
            assert isinstance(result, Run), f"{name}: {stack} refuses after settling: {result}"
            for obj in policy_registrations(result).values():
                if obj is not None:
                    expected[object_key(obj)] = stack
        held = {object_key(o): s for s, state in world.states.items() for o in state.values() if o is not None}
        assert held == expected, f"{name} ({schedule}): held {sorted(set(held) ^ set(expected))[:4]} differ"
        assert set(world.cluster) == set(expected), f"{name}: left on the cluster {sorted(set(world.cluster) - set(expected))[:3]}"
        assert {s for s, st in world.states.items() if st} <= set(head.stacks()), f"{name}: stacks {sorted(world.states)}"
        ledger = world.outputs[PLATFORM][HOLDERS_OUTPUT]
        assert ledger == head.owners(), f"{name}: ledger {ledger}"


def test_single_to_sharded_is_a_handover_of_each_sharded_namespace(tmp):
    single = commit("single", policy_shards=False)
    world = deployed(tmp, single)
    world.protected = kept_objects(world, single, BASE)
    assert world.up("prod", BASE) == "refused", world.log  # it would drop web, payments and data
    world.handover(BASE)
    moved = [line for line in world.log if line.startswith("state move")]
    assert sorted(moved) == sorted(["state move prod -> prod-payments: " + moved[0].rsplit(": ", 1)[1],
                                    "state move prod -> prod-payments: " + moved[1].rsplit(": ", 1)[1],
                                    "state move prod -> prod-storefront: " + moved[2].rsplit(": ", 1)[1]]), moved
    for stack in BASE.stacks():
        assert world.up(stack, BASE) == "ok", world.log


# ---- the rules, on their own ---------------------------------------------------------------------------------------

def test_the_handover_refuses_a_namespace_held_by_two_stacks(tmp):
    world = deployed(tmp)
    world.states["prod-storefront"][(CONFIG_GROUP, "authz-data")] = None
    with pytest.raises(tool.TransitionError, match="in the state of both 'prod-(payments|storefront)' and 'prod-(payments|storefront)'"):
        world.handover(TRANSITIONS["namespace shard -> shard"])


def test_a_preview_warns_and_does_not_refuse(tmp):
    """A pull request's preview runs before the deploy's handover: it shows the plan (and the provider would not
    report AlreadyExists in it), so the pull request's comment names the transition (deploy/changed_stacks.py)."""
    world = deployed(tmp)
    head = TRANSITIONS["namespace shard -> shard"]
    preview = run("prod-payments", head, world.outputs, tmp, preview=True)
    assert isinstance(preview, Run)
    assert isinstance(run("prod-payments", head, world.outputs, tmp), SettingsError)


def test_group_names_are_what_every_stack_registers(tmp):
    world = deployed(tmp)
    registered = {name for state in world.states.values() for (type_, name) in state if type_ == CONFIG_GROUP}
    named = {group for ns in BASE.owners() for group in group_names(ns)}
    assert registered and registered <= named, sorted(registered - named)
    assert all(any(holds(name, ns) for ns in BASE.owners()) for state in world.states.values() for _, name in state)


def test_the_graph_owners_match_the_plans_scopes():
    from harness import stack_config
    from read.stack_files import load_stack_settings
    config, secrets = stack_config(PLATFORM)
    settings = load_stack_settings(config, PLATFORM, secret_keys=frozenset(secrets))
    assert owners(settings.graph, True, PLATFORM) == BASE.owners()
    assert transition(BASE.owners(), TRANSITIONS["shard removed"].owners(), PLATFORM).retired[0].stack == \
        "prod-storefront"


def test_the_plan_prints_the_exact_commands_a_person_would_run(tmp):
    world = deployed(tmp)
    head = TRANSITIONS["namespace shard -> shard"]
    env = tool.Environment(PLATFORM, head.owners(), head.stacks())
    holders, exports = tool.holdings(world, env)
    lines = tool.commands(env, tool.planned(env, holders, exports), exports)
    move = next(line for line in lines if line.startswith("pulumi state move"))
    assert move.startswith("pulumi state move --source prod-payments --dest prod-storefront --yes "
                           "urn:pulumi:prod-payments::mtls-mesh::kubernetes:yaml/v2:ConfigGroup::authz-data ")
    urns = move.split(" --yes ", 1)[1].split()
    assert len(urns) == len(world.states["prod-payments"]) - sum(
        1 for (_, name) in world.states["prod-payments"] if not holds(name, "data"))
    assert all(holds(tool.urn_name(urn), "data") for urn in urns)


def test_the_backend_runs_the_cli_as_documented():
    calls = []

    class Done:
        returncode, stdout, stderr = 0, "[]", ""

    def record(argv, **kwargs):
        calls.append(argv)
        return Done()

    backend = tool.Backend(Path("/project"), run=record)
    backend.move("prod-payments", "prod-storefront", ["urn:a", "urn:b"])
    backend.remove("prod-storefront")
    backend.init("prod-pay")
    assert calls == [
        ["pulumi", "state", "move", "--source", "prod-payments", "--dest", "prod-storefront", "--yes", "urn:a", "urn:b",
         "--non-interactive"],
        ["pulumi", "stack", "rm", "prod-storefront", "--force", "--yes", "--non-interactive"],
        ["pulumi", "stack", "init", "prod-pay", "--no-select", "--non-interactive"]]

    class Failed(Done):
        returncode, stderr = 255, "error: resource already exists in destination stack"

    with pytest.raises(tool.TransitionError, match="already exists in destination stack"):
        tool.Backend(Path("/project"), run=lambda argv, **kwargs: Failed()).move("a", "b", ["urn:a"])


def test_the_backend_reads_updates_in_progress_from_the_stack_list():
    """`pulumi stack ls --json` as Pulumi Cloud prints it (stack_list.go `stackSummaryJSON`); a DIY backend leaves
    `updateInProgress` out."""
    listed = [{"name": "acme/mtls-mesh/prod", "current": False, "updateInProgress": True},
              {"name": "acme/mtls-mesh/prod-payments", "current": False, "updateInProgress": False,
               "lastUpdate": "2026-12-07T06:00:00.000Z"},
              {"name": "prod-storefront", "current": False, "lastUpdate": "2026-12-07T06:00:00.000Z"}]

    class Done:
        returncode, stdout, stderr = 0, json.dumps(listed), ""

    assert tool.Backend(Path("/project"), run=lambda argv, **kwargs: Done()).updating() == {"prod"}


def test_without_the_guard_the_model_shows_todays_window(tmp, monkeypatch):
    """The model can fail: with the ownership check taken out (the code before issue 29), the deploy workflow's order
    (platform, then the old shard) deletes `data`'s default-deny NetworkPolicies before the new shard creates them."""
    import sys
    import components.platform
    monkeypatch.setattr(components.platform, "ownership_problems", lambda *args, **kwargs: [])
    monkeypatch.setattr(sys.modules[__name__], "_RUNS", {})
    head = TRANSITIONS["namespace shard -> shard"]
    world = deployed(tmp)
    world.protected = kept_objects(world, BASE, head)
    with pytest.raises(Broken, match=r"objects absent from the cluster after prod-payments@"):
        for stack in ("prod", "prod-payments", "prod-storefront"):
            world.up(stack, head)
    denies = {key for key in world.protected if key[:2] == ("NetworkPolicy", "data")}
    assert denies and not denies & set(world.cluster), "data's NetworkPolicies should be gone in that window"


def test_the_ledger_changes_only_by_a_handover_or_the_graph():
    from plan.ownership import next_holders
    previous = {"web": "prod-storefront", "data": "prod-payments", "gone": "prod-payments"}
    now = {"web": "prod", "data": "prod-payments", "new": "prod-payments"}
    assert next_holders(previous, now) == {"web": "prod-storefront", "data": "prod-payments", "new": "prod-payments"}
    assert next_holders(None, now) == now


def test_the_guard_names_each_namespace_and_lets_a_removal_through():
    from plan.ownership import ownership_problems
    ledger = {"data": "prod-payments", "payments": "prod-payments", "gone": "prod-payments", "web": "prod-storefront"}
    graph_owners = {"data": "prod-storefront", "payments": "prod-payments", "web": "prod-payments"}
    problems = ownership_problems("prod-payments", ["payments", "web"], graph_owners, ledger, "HANDOVER")
    assert [ns for ns, _ in problems] == ["data", "web"]
    assert problems[0][1].startswith("now belongs to stack 'prod-storefront', and this stack still holds")
    assert problems[1][1].startswith("now belongs to this stack, and stack 'prod-storefront' still holds")
    assert all("`HANDOVER`" in text for _, text in problems)
    assert ownership_problems("prod-payments", ["payments"], graph_owners, None, "HANDOVER") == []


# ---- the first deploy after the ledger: no ledger yet --------------------------------------------------------------
# Every environment deployed before the ledger (plan/ownership.py) has none: its platform or single stack last applied
# at a commit whose program did not export `policyHolders` (Commit.ledger False). Staging's first deploy at this commit
# is moreover a single -> sharded transition: its state holds every namespace's groups, and this commit gives web,
# payments and data to staging-storefront and staging-payments.

STAGING_BASE = commit("staging single, before the ledger", policy_shards=False, platform="staging", ledger=False)
STAGING_HEAD = commit("staging sharded", platform="staging")
HANDOVER_STAGING = "python -m deploy.transitions apply --stack staging"


def refusal(world: World, stack: str) -> str:
    return next(line for line in reversed(world.log) if line.startswith(f"{stack}@") and ": refused: " in line)


def test_staging_first_sharded_up_refuses_with_no_ledger_and_names_the_handover(tmp):
    """`pulumi up --stack staging` by hand at this commit, before the handover: with no ledger the guard cannot tell
    which stack holds what, and staging would delete the groups of every namespace it now gives to a shard (the model
    raises Broken then). It must refuse, naming the stack, why, and the command that writes the ledger."""
    world = deployed(tmp, STAGING_BASE)
    assert HOLDERS_OUTPUT not in world.outputs["staging"]
    world.protected = kept_objects(world, STAGING_BASE, STAGING_HEAD)
    assert any(key[:2] == ("NetworkPolicy", "data") for key in world.protected)
    assert world.up("staging", STAGING_HEAD) == "refused", world.log
    text = refusal(world, "staging")
    assert "1 problem in the settings of stack 'staging'" in text, text
    assert "mtls-mesh:policyShards: no ledger yet" in text and "which stack's state holds" in text, text
    assert f"`{HANDOVER_STAGING}`" in text, text
    # Its shards refuse too (here on the contract first: staging has not applied its sharded plan).
    for shard in ("staging-payments", "staging-storefront"):
        assert world.up(shard, STAGING_HEAD) == "refused", world.log
    assert world.states.keys() == {"staging"}


def test_a_shard_whose_platform_applied_before_the_ledger_refuses_and_names_the_handover(tmp):
    """A shard reads the ledger from its platform: a platform with shard contracts and no ledger (it last applied at a
    commit before the ledger) leaves the shard nothing to check itself against."""
    world = deployed(tmp, STAGING_HEAD)
    platform_outputs = {k: v for k, v in world.outputs["staging"].items() if k != HOLDERS_OUTPUT}
    assert "shardContracts" in platform_outputs
    refused = run("staging-payments", STAGING_HEAD, {"staging": platform_outputs}, tmp)
    assert isinstance(refused, SettingsError), refused
    (problem,) = refused.problems
    assert refused.stack == "staging-payments" and problem.where == "mtls-mesh:platformStack"
    assert "its platform stack 'staging' has never exported `policyHolders`" in problem.what
    assert f"`{HANDOVER_STAGING}`" in problem.what
    assert isinstance(run("staging-payments", STAGING_HEAD, world.outputs, tmp), Run)


def test_staging_first_sharded_preview_warns_and_shows_the_plan(tmp, caplog, monkeypatch):
    world = deployed(tmp, STAGING_BASE)
    import sys
    monkeypatch.setattr(sys.modules[__name__], "_RUNS", {})  # a cached run logs nothing
    caplog.clear()
    with caplog.at_level("WARNING"):
        preview = run("staging", STAGING_HEAD, world.outputs, tmp, preview=True)
    assert isinstance(preview, Run), preview
    warnings = [r.getMessage() for r in caplog.records if "no ledger yet" in r.getMessage()]
    assert len(warnings) == 1 and HANDOVER_STAGING in warnings[0], warnings
    assert "`pulumi up` of this stack will refuse until then" in warnings[0]
    # The plan it shows: staging's own namespaces' groups only (web, payments and data go to its shards).
    registered = {name for (type_, name) in policy_registrations(preview) if type_ == CONFIG_GROUP}
    own = {group for ns, stack in STAGING_HEAD.owners().items() if stack == "staging" for group in group_names(ns)}
    assert "authz-ingress" in registered and registered <= own, sorted(registered)


def test_staging_first_sharded_deploy_after_the_handover_in_every_order(tmp):
    """The deploy workflow's handover (or the command by hand) moves web, payments and data from staging's state to
    its shards' and writes the ledger; then staging and its shards apply in any order: every namespace's policy
    objects stay on the cluster, each in exactly one state (World.check after every step). Any `up` before the
    handover refuses and changes nothing."""
    head = STAGING_HEAD
    orders = [s for s in schedules(STAGING_BASE, head) if all(action != "base" for action, _ in s)]
    assert len(orders) == 24
    for schedule in orders:
        world = deployed(tmp, STAGING_BASE)
        world.protected = kept_objects(world, STAGING_BASE, head)
        handed_over = False
        for action, stack in schedule:
            if action == "handover":
                world.handover(head)
                handed_over = True
            else:
                outcome = world.up(stack, head)
                assert handed_over or outcome == "refused", f"{stack} ran before the handover: {world.log}"
        moves = [line for line in world.log if line.startswith("state move")]
        assert sorted(m.split(":")[0] for m in moves) == ["state move staging -> staging-payments"] * 2 + \
            ["state move staging -> staging-storefront"], moves
        settle(world, head)
        held = {object_key(o): s for s, state in world.states.items() for o in state.values() if o is not None}
        assert {key[1] for key, stack in held.items() if stack != "staging"} == {"web", "payments", "data"}
        assert all(head.owners()[key[1]] == stack for key, stack in held.items()), schedule
        assert world.outputs["staging"][HOLDERS_OUTPUT] == head.owners()


def test_a_sharded_environment_before_the_ledger_gets_it_from_a_handover_that_moves_nothing(tmp):
    """prod, sharded before the ledger existed, at a commit that moves nothing: every stack refuses until the
    handover, which only writes the ledger from the states; then every stack applies."""
    base = commit("prod before the ledger", ledger=False)
    world = deployed(tmp, base)
    assert HOLDERS_OUTPUT not in world.outputs[PLATFORM]
    world.protected = kept_objects(world, base, BASE)
    for stack in BASE.stacks():
        assert world.up(stack, BASE) == "refused", world.log
        assert "no ledger yet" in refusal(world, stack)
    world.handover(BASE)
    assert not [line for line in world.log if line.startswith("state move")], world.log
    # What the states hold (batch, with no policy object, is in none: the platform's `up` adds it under its owner).
    held = {ns: stack for stack, state in world.states.items() for (_, name) in state for ns in BASE.owners()
            if holds(name, ns)}
    assert held and world.outputs[PLATFORM][HOLDERS_OUTPUT] == held == {
        ns: stack for ns, stack in BASE.owners().items() if ns in held}
    for stack in BASE.stacks():
        assert world.up(stack, BASE) == "ok", world.log
    assert world.outputs[PLATFORM][HOLDERS_OUTPUT] == BASE.owners()


def test_policy_shards_off_before_the_platform_ever_exported_a_ledger_refuses_until_the_handover(tmp):
    """sharded -> single when the platform last applied before the ledger: the single stack registers every
    namespace, so it deletes none, but the shards still hold theirs and its creates would fail AlreadyExists half-way.
    Its own last outputs (shardContracts, no policyHolders) say so: it refuses; after the handover it converges."""
    base = commit("prod before the ledger", ledger=False)
    head = TRANSITIONS["policyShards off (sharded -> single)"]
    world = deployed(tmp, base)
    world.protected = kept_objects(world, base, head)
    assert world.up(PLATFORM, head) == "refused", world.log
    assert "this stack, a platform with policyShards when it last applied, has never exported" in refusal(
        world, PLATFORM)
    settle(world, head)
    assert set(world.states) == {PLATFORM} and world.outputs[PLATFORM][HOLDERS_OUTPUT] == head.owners()


def test_no_ledger_is_a_problem_only_where_a_stack_may_hold_what_another_owns():
    from plan.ownership import missing_ledger_problem

    def problem(role, ledger=None, applied=True, was_sharded=False):
        return missing_ledger_problem(role, ledger, "p", applied, was_sharded, "HANDOVER")

    assert problem("shard") and "`HANDOVER`" in problem("shard")
    assert problem("platform") and "`HANDOVER`" in problem("platform")
    assert problem("single", was_sharded=True)
    # A single stack registers every namespace: it deletes none another stack owns.
    assert problem("single") is None
    # A platform that never applied: no stack holds anything yet (a shard waits for its contract); its `up` writes it.
    assert problem("platform", applied=False) is None
    assert all(problem(role, ledger={"a": "p"}, was_sharded=True) is None for role in ("single", "platform", "shard"))


def test_the_harness_hands_each_stack_the_outputs_its_platform_exported():
    """run_program with no outputs runs a platform, and the shards reading it, as they run once the ledger exists
    (tests/harness.py `steady_outputs`); given outputs are handed as they are, so a test can say "no ledger yet"."""
    from harness import stack_config, steady_outputs
    platform = run_program("staging")
    config, secrets = stack_config("staging")
    assert steady_outputs("staging", config, secrets) == {HOLDERS_OUTPUT: platform.exports[HOLDERS_OUTPUT]}
    assert platform.exports[HOLDERS_OUTPUT] == STAGING_HEAD.owners()
    assert steady_outputs("dev", *stack_config("dev")) == {}
    run_program("staging", previous_outputs={})  # never applied: its first `up` writes the ledger
    applied_without = {k: v for k, v in platform.exports.items() if k != HOLDERS_OUTPUT}
    with pytest.raises(SettingsError, match="no ledger yet"):
        run_program("staging", previous_outputs=applied_without)
    run_program("staging-payments")
    with pytest.raises(SettingsError, match="no ledger yet: its platform stack 'staging'"):
        run_program("staging-payments", platform_outputs=applied_without)
    # A single stack runs with none, unless its last outputs say it was a sharded platform.
    run_program("dev", previous_outputs={"environment": "dev"})
    with pytest.raises(SettingsError, match="a platform with policyShards when it last applied"):
        run_program("dev", previous_outputs={"environment": "dev", "shardContracts": {"payments": "sha256:0"}})


# ---- the entry points, over the repository's own stack files -------------------------------------------------------

class RecordedBackend:
    """The backend as `main` sees it, with states given per stack (namespace groups only): no Pulumi CLI here."""

    def __init__(self, held: dict[str, list[str]], ledger: dict[str, str] | None = None, platform: str = PLATFORM):
        self.held, self.ledger, self.platform, self.calls = held, ledger, platform, []

    def stacks(self) -> list[str]:
        return sorted(self.held)

    def export(self, stack: str) -> dict:
        outputs = {HOLDERS_OUTPUT: self.ledger} if stack == self.platform and self.ledger else {}
        resources = [{"urn": f"urn:pulumi:{stack}::mtls-mesh::pulumi:pulumi:Stack::mtls-mesh-{stack}",
                      "type": "pulumi:pulumi:Stack", "outputs": outputs}]
        for namespace in self.held[stack]:
            resources += [{"urn": f"urn:pulumi:{stack}::mtls-mesh::{CONFIG_GROUP}::{group}", "type": CONFIG_GROUP}
                          for group in group_names(namespace)]
        return {"version": 3, "deployment": {"resources": resources}}

    def __getattr__(self, name):  # init, move, import_, remove: recorded, never run by `plan`
        return lambda *args: self.calls.append((name, *args))


def test_the_entry_points_run_over_the_repositorys_stack_files(monkeypatch, capsys):
    """`environment` and `main` as the deploy workflow runs them, over stacks/ (a stack file the CLI fills with
    Pulumi.yaml's defaults: an empty platformStack is not a shard's)."""
    assert tool.environment("prod") == tool.Environment(PLATFORM, BASE.owners(), BASE.stacks())
    staging = commit("staging", platform="staging")
    assert tool.environment("staging") == tool.Environment("staging", staging.owners(), staging.stacks())
    dev = tool.environment("dev")
    assert dev.files == ["dev"] and set(dev.wanted.values()) == {"dev"} and set(dev.wanted) == set(BASE.owners())
    with pytest.raises(tool.TransitionError, match="prod-payments is a shard stack: name its platform stack "
                                                   r"\(prod\)"):
        tool.environment("prod-payments")
    # prod's state as an older commit left it: web still in payments' state.
    held = {"prod": ["ingress"], "prod-payments": ["payments", "data", "web"], "prod-storefront": []}
    backend = RecordedBackend(held)
    monkeypatch.setattr(tool, "Backend", lambda cwd: backend)
    assert tool.main(["plan", "--stack", "prod"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "namespace 'web': shard to shard, from stack 'prod-payments' to 'prod-storefront'" in out[0], out
    assert any(line.startswith("pulumi state move --source prod-payments --dest prod-storefront --yes "
                               "urn:pulumi:prod-payments::mtls-mesh::kubernetes:yaml/v2:ConfigGroup::authz-web")
               for line in out), out
    assert backend.calls == []


def test_an_invalid_stack_file_of_another_environment_does_not_stop_a_handover(tmp_path):
    """Which stacks name `prod` as their platform is read without validating other environments' files: dev's
    broken file is dev's problem (its own `up` refuses it), not a reason to refuse prod's handover."""
    import shutil
    project = tmp_path / "project"
    shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns(".git", "tests", "docs", "benchmarks",
                                                                         "__pycache__", "examples"))
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  mtls-mesh:policyShards: not-a-boolean\n")
    with pytest.raises(SettingsError):
        tool.environment("dev", project)
    assert tool.environment("prod", project).files == BASE.stacks()
    # One of prod's own stack files invalid: refused, as its own `up` would be.
    (project / "stacks" / "Pulumi.prod-storefront.yaml").write_text(
        "config:\n  mtls-mesh:platformStack: prod\n  mtls-mesh:shard: storefront\n  mtls-mesh:policyShards: maybe\n")
    with pytest.raises(SettingsError):
        tool.environment("prod", project)


def test_the_state_import_leaves_no_copy_of_the_state_behind(tmp_path, monkeypatch):
    """`import_` writes a whole state (secrets encrypted, everything else plain) to a file for the CLI: removed
    once the CLI has read it, whether or not the import succeeded."""
    monkeypatch.setattr(tool.tempfile, "tempdir", str(tmp_path))
    seen = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    def record(argv, **kwargs):
        path = Path(argv[argv.index("--file") + 1])
        seen.append(json.loads(path.read_text()))
        return Done()

    tool.Backend(Path("/project"), run=record).import_("prod", {"version": 3, "deployment": {"resources": []}})
    assert seen == [{"version": 3, "deployment": {"resources": []}}]
    assert list(tmp_path.iterdir()) == []

    class Failed(Done):
        returncode, stderr = 255, "error: import failed"

    with pytest.raises(tool.TransitionError, match="import failed"):
        tool.Backend(Path("/project"), run=lambda argv, **kwargs: Failed()).import_("prod", {"version": 3})
    assert list(tmp_path.iterdir()) == []


# ---- an `up` that spans the handover -------------------------------------------------------------------------------

def spanning_handover(tmp, reports_updates: bool):
    """prod's `up` at the base commit (an Operator resync before the branch moved) begins before the handover of `data`
    from payments to storefront and ends after it: it read the old ledger and, ending, writes `next_holders` of it.
    Then every stack runs, the stale one first: prod-storefront still at the base commit (its contract matches the
    platform's), which does not register `data` and, had the move stayed with the old ledger, would delete it."""
    head = TRANSITIONS["namespace shard -> shard"]
    world = deployed(tmp)
    world.reports_updates = reports_updates
    world.protected = kept_objects(world, BASE, head)
    finish = world.begin(PLATFORM, BASE)
    with pytest.raises(tool.TransitionError) as refused:
        world.handover(head)
    assert finish() == "ok", world.log
    for stack, at in (("prod-storefront", BASE), ("prod-payments", head), ("prod-storefront", head),
                      ("prod-payments", BASE)):
        world.up(stack, at)  # World.check: no object absent, none in two states
    settle(world, head)
    assert world.outputs[PLATFORM][HOLDERS_OUTPUT] == head.owners()
    return world, str(refused.value)


def test_an_up_spanning_the_handover_on_a_backend_that_reports_it_stops_the_handover_before_any_move(tmp):
    world, refused = spanning_handover(tmp, reports_updates=True)
    assert refused.startswith("nothing moved: stack 'prod' has an update in progress"), refused
    first = world.log.index("prod@base: ok", len(BASE.stacks()))
    assert not [line for line in world.log[:first] if line.startswith("state move")], world.log


def test_an_up_spanning_the_handover_on_a_diy_backend_has_its_moves_undone(tmp):
    """A DIY backend reports no update in progress: the moves happen, the ledger write meets the running `up`'s lock,
    and the moves are undone, so the ledger the `up` then writes says what the states hold."""
    world, refused = spanning_handover(tmp, reports_updates=False)
    assert "currently locked" in refused and "The moves are undone" in refused, refused
    first = world.log.index("prod@base: ok", len(BASE.stacks()))
    moves = [line.split(":")[0] for line in world.log[:first] if line.startswith("state move")]
    assert moves == ["state move prod-payments -> prod-storefront", "state move prod-storefront -> prod-payments"]


def test_operator_stacks_with_an_update_outstanding_are_named():
    items = {"items": [
        {"spec": {"stack": "acme/mtls-mesh/prod-payments"}, "status": {"currentUpdate": {"name": "prod-payments-x1",
                                                                                          "generation": 3}}},
        {"spec": {"stack": "acme/mtls-mesh/prod"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"spec": {"stack": "acme/mtls-mesh/staging"}, "status": {"currentUpdate": {"name": "staging-y"}}}]}
    calls = []

    class Done:
        returncode, stdout, stderr = 0, json.dumps(items), ""

    def kubectl(argv, **kwargs):
        calls.append(argv)
        return Done()

    found = tool.operator_updates("pulumi", ["prod", "prod-payments", "prod-storefront"], run=kubectl)
    assert found == {"prod-payments": "prod-payments-x1"}
    assert calls == [["kubectl", "get", "stacks.pulumi.com", "--namespace", "pulumi", "--output", "json"]]
