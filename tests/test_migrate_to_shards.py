"""The migration from one stack to a platform and policy shards (deploy/migrate_to_shards.py) moves exactly the
shards' ConfigGroups and every child of theirs, under the URNs the engine gave them, to the URNs the shard stacks
register.

The single stack is the real program under the mocks (tests/harness.py), `prod` with a graph whose namespaces carry
`shard:` (a temporary copy of services.yaml: web -> storefront, payments -> payments, data -> storage, so a Vault
`certs-workload-<ns>` group moves as well; ingress and batch stay on the platform). A single stack ignores `shard`.

The mocks' URNs differ from the engine's in one way that matters here: the SDK's MockMonitor `make_urn` (pulumi
`sdk/python/lib/pulumi/runtime/mocks.py`) keeps the root stack's type, `pulumi:pulumi:Stack$...`, in the URN of every
resource at the root, which the engine leaves out (`pkg/resource/deploy/deployment.go` `generateURN`; urn.go `New`),
and it joins only the parent's last type, which the engine does not (it joins the parent's whole qualified type). For
the groups and their children, two levels under a component at the root, the second makes no difference; `engine_urn`
undoes the first. The engine's URNs are what `pulumi state move` is given and rewrites.

No Pulumi CLI runs here: `simulate_state_move` stands for `pulumi state move`, read from its source (the line
numbers are in deploy/migrate_to_shards.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from harness import PROJECT_DIR, Registration, Run, run_program
from deploy import migrate_to_shards as migrate

FIXTURE_SHARDS = {"web": "storefront", "payments": "payments", "data": "storage"}
ROOT_PREFIX = "pulumi:pulumi:Stack$"
STACKREFERENCE = "pulumi:pulumi:StackReference"


def engine_urn(urn: str) -> str:
    """A URN of the mocks as the engine builds it: without the root stack's type (see the module docstring)."""
    if not urn:
        return urn
    stack, project, qualified, name = urn[len("urn:pulumi:"):].split("::", 3)
    return f"urn:pulumi:{stack}::{project}::{qualified.removeprefix(ROOT_PREFIX)}::{name}"


def state_of(run: Run) -> list[tuple[str, str]]:
    """The run's resources as the state lists them: (URN, parent URN), in registration order, providers left out."""
    return [(engine_urn(r.urn), engine_urn(r.parent)) for r in run.registrations
            if not r.type.startswith("pulumi:providers:")]


def groups_of(run: Run, namespaces) -> set[str]:
    """The engine URNs of the namespaces' groups and their children, chosen from the run by name alone."""
    names = {f"authz-{ns}" for ns in namespaces} | {f"certs-workload-{ns}" for ns in namespaces}
    return {engine_urn(r.urn) for r in run.registrations
            if (r.type == migrate.CONFIG_GROUP and r.name in names) or (r.group is not None and r.group.name in names)}


def expected_shard_urns(single: Run, stack: str, shard: str, namespaces) -> set[str]:
    """What the shard stack `<stack>-<shard>` must register, in engine URNs, for the migration to change nothing:
    what `pulumi state move` of the namespaces' groups leaves in it (each group at the root, its children under it;
    state_move.go `rewriteURNs`), and the copy of the Kubernetes provider those resources use (lines 355-393)."""
    dest = migrate.shard_stack(stack, shard)
    moved = groups_of(single, namespaces)
    found = set(migrate.simulate_state_move(state_of(single), moved, dest).values())
    providers = {engine_urn(r.provider.rpartition("::")[0]) for r in single.registrations
                 if engine_urn(r.urn) in moved and r.provider}
    found |= {migrate.new_urn(dest, migrate.PROJECT, "", migrate.urn_type(p), migrate.urn_name(p)) for p in providers}
    return found


def shard_stack_mismatches(single: Run, shard_run: Run, shard: str, namespaces) -> list[str]:
    """For the lead, once the shard stack runs under the harness: what the shard stack `shard_run` registers that the
    migration of `single` would not leave in its state, and the reverse (empty: `pulumi preview --expect-no-changes`
    of the shard after the move creates and deletes nothing). StackReferences are reads, which the engine counts as no
    change (pulumi `pkg/engine/update.go` `HasChanges` leaves out OpRead), so they are not compared. Use:

        single = run_program("prod", set_config={"policyShards": False})   # the graph with its shard: fields
        shard_run = run_program("prod-payments", ...)                       # the shard program, as the lead runs it
        assert not shard_stack_mismatches(single, shard_run, "payments", ["payments"])
    """
    expected = expected_shard_urns(single, single.stack, shard, namespaces)
    registered = {engine_urn(r.urn) for r in shard_run.registrations if r.type != STACKREFERENCE}
    return ([f"registered by the shard, not moved to it (a create): {urn}" for urn in sorted(registered - expected)]
            + [f"moved to the shard, not registered by it (a delete): {urn}" for urn in sorted(expected - registered)])


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    for namespace, shard in FIXTURE_SHARDS.items():
        graph["namespaces"][namespace] = {**(graph["namespaces"][namespace] or {}), "shard": shard}
    # prod as the single stack it was before the migration (its stack file now says policyShards: true).
    run = run_program("prod", graph=graph, tmp_path=tmp_path_factory.mktemp("shards"),
                      set_config={"policyShards": False})
    plan, graph_read, _ = migrate.load("prod", config=run.config)
    return run, plan, graph_read, migrate.shard_moves(plan, graph_read)


def test_every_urn_moved_is_one_the_single_stack_registers_and_nothing_else_moves(sharded):
    run, _, _, moves = sharded
    assert set(moves) == set(FIXTURE_SHARDS.values())
    registered = {engine_urn(r.urn) for r in run.registrations}
    everything = set()
    for shard, groups in moves.items():
        urns = [urn for group in groups for urn in group.urns]
        assert len(urns) == len(set(urns))
        namespaces = [ns for ns, s in FIXTURE_SHARDS.items() if s == shard]
        assert set(urns) <= registered, f"{shard}: not in the single stack: {sorted(set(urns) - registered)[:5]}"
        assert set(urns) == groups_of(run, namespaces), shard
        # What the CLI moves given these URNs: exactly them (nothing pulled in as a child of something named).
        assert set(migrate.simulate_state_move(state_of(run), urns, f"prod-{shard}")) == set(urns)
        everything |= set(urns)
    # A certs-workload group (Vault) and its Certificate move too; the platform keeps ingress's policy.
    assert any("::certs-workload-data:data/" in urn for urn in everything)
    assert not any("authz-ingress" in urn for urn in everything)
    children = [r for r in run.registrations if r.group is not None and engine_urn(r.urn) in everything]
    assert len(children) == len(everything) - sum(len(groups) for groups in moves.values()) > 40


def test_the_moved_urns_are_those_the_shard_stacks_register(sharded):
    """DESIGN-24: a shard registers its groups at the stack root, so the children are
    `...::kubernetes:yaml/v2:ConfigGroup$<type>::<group>:<ns>/<name>`."""
    run, _, _, moves = sharded
    state = state_of(run)
    parent_of = dict(state)
    for shard, groups in moves.items():
        dest = f"prod-{shard}"
        urns = {urn for group in groups for urn in group.urns}
        rewritten = migrate.simulate_state_move(state, urns, dest)
        for registration in run.registrations:
            urn = engine_urn(registration.urn)
            if urn not in urns:
                continue
            if registration.group is None:
                want = f"urn:pulumi:{dest}::mtls-mesh::kubernetes:yaml/v2:ConfigGroup::{registration.name}"
            else:
                want = (f"urn:pulumi:{dest}::mtls-mesh::kubernetes:yaml/v2:ConfigGroup${registration.type}::"
                        f"{registration.name}")
                assert registration.name.startswith(f"{registration.group.name}:")
            assert rewritten[urn] == want
            assert migrate.moved_urn(urn, dest, urns, parent_of) == want
            assert migrate.moved_urn(urn, dest, urns) == want  # the parent found by the ConfigGroup naming


def test_a_child_moved_without_its_group_would_land_at_the_root(sharded):
    """Why every command carries each group with all its children (state_move.go lines 405-414)."""
    run, _, _, moves = sharded
    group = moves["payments"][0]
    child = group.children[0]
    alone = migrate.moved_urn(child, "prod-payments", {child})
    assert alone == f"urn:pulumi:prod-payments::mtls-mesh::{migrate.urn_type(child)}::{migrate.urn_name(child)}"
    assert alone != migrate.moved_urn(child, "prod-payments", set(group.urns))


def test_include_parents_would_move_other_namespaces_and_the_cert_manager_release(sharded):
    """Why the commands never use --include-parents (state_move.go lines 263-287)."""
    run, _, _, moves = sharded
    urns = [urn for group in moves["storage"] for urn in group.urns]
    with_parents = set(migrate.simulate_state_move(state_of(run), urns, "prod-storage", include_parents=True))
    assert "urn:pulumi:prod::mtls-mesh::mtls-mesh:authorization:MeshAuthorization::authz" in with_parents
    assert any(urn.endswith("::authz-ingress") for urn in with_parents)
    assert any(urn.endswith("::certs-cert-manager") for urn in with_parents)


def test_the_shard_comparison_helper_can_fail(sharded):
    """`shard_stack_mismatches`, on a stand-in for the shard stack's run (its registrations as the mocks would name
    them at the root): none when it registers exactly what moved, one per URN otherwise."""
    run, _, _, _ = sharded
    expected = expected_shard_urns(run, "prod", "payments", ["payments"])
    assert "urn:pulumi:prod-payments::mtls-mesh::pulumi:providers:kubernetes::kubernetes" in expected

    def as_mocks(urn: str) -> Registration:
        stack, project, qualified, name = urn[len("urn:pulumi:"):].split("::", 3)
        return Registration(type=migrate.urn_type(urn), name=name, inputs={}, provider="", parent="", protect=False,
                            dependencies=(), custom=True, urn=f"urn:pulumi:{stack}::{project}::{ROOT_PREFIX}{qualified}::{name}")

    stand_in = Run("prod-payments", {}, [as_mocks(urn) for urn in sorted(expected)])
    assert not shard_stack_mismatches(run, stand_in, "payments", ["payments"])
    stand_in.registrations.pop(1)
    foreign = sorted(u for u in expected_shard_urns(run, "prod", "payments", ["web"]) if "authz-web" in u)[0]
    stand_in.registrations.append(as_mocks(foreign))
    assert len(shard_stack_mismatches(run, stand_in, "payments", ["payments"])) == 2


@pytest.mark.parametrize("stack", ["prod-payments", "prod-storefront", "staging-payments", "staging-storefront"])
def test_the_repositorys_shard_stacks_register_what_the_move_leaves_them(stack):
    """The real shard stacks (stacks/Pulumi.<platform>-<shard>.yaml), run as the program runs them, against the state
    the migration of their platform-as-one-stack leaves them: nothing to create or delete. staging is one of them:
    an existing staging, a single stack until now, becomes sharded with this same migration."""
    from plan.shards import shards_of

    platform_stack, _, shard = stack.partition("-")
    single = run_program(platform_stack, set_config={"policyShards": False})
    platform = run_program(platform_stack)
    shard_run = run_program(stack, platform_outputs=platform.exports)
    namespaces = shards_of(migrate.load(platform_stack, config=single.config)[1])[shard]
    assert not shard_stack_mismatches(single, shard_run, shard, namespaces)


# --- the migration, both ways, against states kept as JSON files ---------------------------------------------------
#
# The backend below keeps each stack's resources as `pulumi stack export` lists them (urn, type, parent, provider,
# dependencies) and does what the CLI does: `move` follows state_move.go through simulate_state_move (providers
# copied, dependencies across the cut dropped), and, to model the failure its lines 497-529 handle, can save the
# destination and then fail before the source. `deploy` is the delivery at the repository's state of the moment:
# each stack with a stack file runs its program, which registers what the repository says it does; what its state
# holds and its program no longer registers is deleted, what it registers and its state does not hold is created,
# and an object held by another stack makes that create fail with AlreadyExists after the group's ConfigGroup
# component (no object of its own) is recorded.

GROUP_TYPES = ("kubernetes:yaml/v2:ConfigGroup",)


class Failure(Exception):
    """An injected failure of the backend (the network, a lock, a crash)."""


class JsonBackend:
    def __init__(self, directory, fail_at: int | None = None, half_moves: bool = False):
        self.directory, self.fail_at, self.half_moves, self.calls = directory, fail_at, half_moves, 0
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, stack):
        return self.directory / f"{stack}.json"

    def _mutate(self):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise Failure(f"injected failure at call {self.calls}")

    def exists(self, stack):
        return self._path(stack).exists()

    def resources(self, stack):
        return json.loads(self._path(stack).read_text())

    def save(self, stack, resources):
        self._path(stack).write_text(json.dumps(resources, indent=0))

    def init(self, stack, secrets_provider):
        self._mutate()
        self.save(stack, [{"urn": f"urn:pulumi:{stack}::mtls-mesh::pulumi:pulumi:Stack::mtls-mesh-{stack}",
                           "type": "pulumi:pulumi:Stack", "parent": ""}])

    def move(self, source, dest, urns):
        failing = self.fail_at is not None and self.calls + 1 == self.fail_at and self.half_moves
        if not failing:
            self._mutate()
        src = self.resources(source)
        renamed = migrate.simulate_state_move([(r["urn"], r.get("parent", "")) for r in src
                                               if not r["type"].startswith("pulumi:providers:")
                                               and r["type"] != "pulumi:pulumi:Stack"], urns, dest)
        dst = self.resources(dest)
        for provider in {r["provider"].rpartition("::")[0] for r in src if r["urn"] in renamed and r.get("provider")}:
            copied = migrate.new_urn(dest, "mtls-mesh", "", migrate.urn_type(provider), migrate.urn_name(provider))
            if copied not in {r["urn"] for r in dst}:
                dst.append({"urn": copied, "type": migrate.urn_type(provider), "parent": "", "id": "provider-id"})
        for r in src:
            if r["urn"] in renamed:
                moved = dict(r, urn=renamed[r["urn"]], parent=renamed.get(r.get("parent", "")) or "")
                if r.get("provider"):
                    p = r["provider"].rpartition("::")[0]
                    moved["provider"] = migrate.new_urn(dest, "mtls-mesh", "", migrate.urn_type(p),
                                                        migrate.urn_name(p)) + "::provider-id"
                moved["dependencies"] = [renamed[d] for d in r.get("dependencies", []) if d in renamed]
                dst.append(moved)
        self.save(dest, dst)
        if failing:
            self.calls += 1
            raise Failure("the destination was saved, saving the source failed")
        self.save(source, [r for r in src if r["urn"] not in renamed])

    def delete(self, stack, urns):
        self._mutate()
        self.save(stack, [r for r in self.resources(stack) if r["urn"] not in set(urns)])

    def replace_resources(self, stack, resources):
        self._mutate()
        self.save(stack, resources)

    def remove(self, stack):
        self._mutate()
        self._path(stack).unlink()

    def preview(self, stack):
        registered = program_registers(self.project_dir, self.plan, self.graph, stack)
        held = group_urns_in(self.resources(stack), self.all_group_urns) if self.exists(stack) else set()
        registered = registered or set()
        return {"create": len(registered - held), "delete": len(held - registered), "same": len(registered & held)}


def group_urns_in(resources, all_group_urns):
    return {r["urn"] for r in resources} & all_group_urns


def program_registers(project_dir, plan, graph, stack):
    """The migration's groups the program registers for `stack` at the repository's state (None: the stack does not
    run: no stack file, or a shard whose platform does not say policyShards, which the shard program refuses)."""
    env = plan.stack
    moves = migrate.shard_moves(plan, graph)
    sharded = migrate.repository_is_sharded(env, project_dir)
    if stack == env:
        return set() if sharded else {u for groups in moves.values() for g in groups for u in g.urns}
    shard = stack.removeprefix(f"{env}-")
    if not (project_dir / "stacks" / f"Pulumi.{stack}.yaml").exists() or not sharded:
        return None
    return {migrate.shard_urn(g, u, stack) for g in moves[shard] for u in g.urns}


def deploy(backend, project_dir, plan, graph, stacks):
    """One delivery at the repository's state: returns what it would delete, and records its failed creates."""
    deleted = []
    for stack in stacks:
        if not backend.exists(stack):
            continue
        registered = program_registers(project_dir, plan, graph, stack)
        if registered is None:
            continue
        resources = backend.resources(stack)
        held = group_urns_in(resources, backend.all_group_urns)
        # A ConfigGroup component holds no object: deleting one whose objects are not in this state deletes nothing.
        parents = {r.get("parent") for r in resources}
        deleted += sorted(u for u in held - registered if migrate.urn_type(u) not in GROUP_TYPES or u in parents)
        creates = registered - held
        # The ConfigGroup component is recorded, then its first object's Create fails with AlreadyExists.
        components = sorted(u for u in creates if migrate.urn_type(u) in GROUP_TYPES)
        if components:
            parents = {migrate.qualified_type(u): u for u in (r["urn"] for r in resources)}
            for urn in components:
                resources.append({"urn": urn, "type": migrate.urn_type(urn),
                                  "parent": parents.get(migrate.parent_type(urn), "")})
            backend.save(stack, resources)
    return deleted


@pytest.fixture()
def environment(sharded, tmp_path):
    """prod as one stack in the backend (its groups under `authz` and `certs`), and a project whose stack file does
    not say policyShards yet."""
    run, plan, graph, moves = sharded
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    text = (PROJECT_DIR / "stacks" / "Pulumi.prod.yaml").read_text()
    (project / "stacks" / "Pulumi.prod.yaml").write_text(
        "".join(l for l in text.splitlines(keepends=True) if "policyShards" not in l))
    backend = JsonBackend(tmp_path / "state")
    provider = "urn:pulumi:prod::mtls-mesh::pulumi:providers:kubernetes::kubernetes"
    resources = [{"urn": "urn:pulumi:prod::mtls-mesh::pulumi:pulumi:Stack::mtls-mesh-prod",
                  "type": "pulumi:pulumi:Stack", "parent": ""},
                 {"urn": provider, "type": "pulumi:providers:kubernetes", "parent": "", "id": "provider-id"}]
    for urn, parent in state_of(run):
        resources.append({"urn": urn, "type": migrate.urn_type(urn), "parent": parent,
                          "provider": f"{provider}::provider-id", "dependencies": [parent] if parent else []})
    backend.save("prod", resources)
    everything = {u for groups in moves.values() for g in groups for u in g.urns}
    everything |= {migrate.shard_urn(g, u, f"prod-{shard}") for shard, groups in moves.items() for g in groups
                   for u in g.urns}
    for b in (backend,):
        b.project_dir, b.plan, b.graph, b.all_group_urns = project, plan, graph, everything
    return backend, project, plan, graph, moves


def _attach(backend, like):
    backend.project_dir, backend.plan, backend.graph, backend.all_group_urns = \
        like.project_dir, like.plan, like.graph, like.all_group_urns
    return backend


class DeployingBackend:
    """The backend, with a delivery at the repository's state before and after every change: a deploy may run
    between any two steps. Records everything a deploy would have deleted."""

    def __init__(self, inner, stacks):
        self.inner, self.stacks, self.deleted = inner, stacks, []

    def _deploy(self):
        self.deleted += deploy(self.inner, self.inner.project_dir, self.inner.plan, self.inner.graph, self.stacks)

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)
        if name not in ("init", "move", "delete", "replace_resources", "remove"):
            return attribute

        def wrapped(*args):
            self._deploy()
            try:
                return attribute(*args)
            finally:
                self._deploy()
        return wrapped


def _migration(backend, project, plan, graph, log):
    return migrate.Migration("prod", plan, graph, backend, project, "passphrase", log=log)


def final_state_to_shards(backend, moves):
    assert not group_urns_in(backend.resources("prod"), backend.all_group_urns), "the platform holds no group"
    for shard, groups in moves.items():
        held = {r["urn"] for r in backend.resources(f"prod-{shard}")}
        assert {migrate.shard_urn(g, u, f"prod-{shard}") for g in groups for u in g.urns} <= held, shard
        parents = {r["urn"]: r["parent"] for r in backend.resources(f"prod-{shard}")}
        for g in groups:
            assert parents[migrate.shard_urn(g, g.urn, f"prod-{shard}")] == "", "each group at the shard's root"


def test_to_shards_then_back_with_a_deploy_between_any_two_steps(environment):
    backend, project, plan, graph, moves = environment
    stacks = ["prod", *(f"prod-{s}" for s in moves)]
    deploying = DeployingBackend(backend, stacks)
    said = []

    def log(line):
        said.append(line)
        deploying._deploy()  # the repository may be committed, and deployed, after every step

    _migration(deploying, project, plan, graph, log).to_shards()
    assert deploying.deleted == [], "a deploy between two steps deleted objects"
    final_state_to_shards(backend, moves)
    assert migrate.repository_is_sharded("prod", project)
    assert all((project / "stacks" / f"Pulumi.prod-{s}.yaml").exists() for s in moves)
    # The last line: the previews found nothing to create, delete or replace.
    assert said[-1].startswith("previews: nothing created")

    _migration(deploying, project, plan, graph, log).to_single()
    assert deploying.deleted == [], "a deploy between two steps of the way back deleted objects"
    held = {r["urn"]: r for r in backend.resources("prod")}
    for groups in moves.values():
        for g in groups:
            assert set(g.urns) <= set(held)
            assert held[g.urn]["parent"].endswith(("::authz", "::certs")), "back under the component"
            assert all(held[c]["parent"] == g.urn for c in g.children)
            assert all(held[c]["provider"].startswith("urn:pulumi:prod::") for c in g.children)
    assert not any(backend.exists(f"prod-{s}") for s in moves), "the emptied shard stacks are removed"
    assert not migrate.repository_is_sharded("prod", project)
    assert not any((project / "stacks" / f"Pulumi.prod-{s}.yaml").exists() for s in moves)


def ledger_of(backend, stack):
    root = next(r for r in backend.resources(stack) if r["type"] == migrate.ROOT_STACK_TYPE)
    return (root.get("outputs") or {}).get("policyHolders")


def test_the_migration_ends_with_the_ledger_every_stack_checks_itself_against(environment):
    """Both ways, the migration writes the platform's (single stack's) `policyHolders` from the states it leaves:
    without it every stack of the environment refuses its `up` until the handover runs (the guard sees the old ledger,
    or none)."""
    from plan.ownership import missing_ledger_problem, ownership_problems, owners
    backend, project, plan, graph, moves = environment
    assert ledger_of(backend, "prod") is None
    _migration(backend, project, plan, graph, lambda _: None).to_shards()
    sharded = owners(graph, True, "prod")
    ledger = ledger_of(backend, "prod")
    assert ledger == {ns: stack for ns, stack in sharded.items() if ns != "batch"}, ledger  # batch: no group anywhere
    assert {ledger[ns] for ns in FIXTURE_SHARDS} == {f"prod-{s}" for s in moves}
    for stack in {"prod", *ledger.values()}:
        registers = [ns for ns, owner in sharded.items() if owner == stack]
        assert ownership_problems(stack, registers, sharded, ledger, "HANDOVER") == [], stack

    _migration(backend, project, plan, graph, lambda _: None).to_single()
    single = owners(graph, False, "prod")
    ledger = ledger_of(backend, "prod")
    assert set(ledger.values()) == {"prod"} and set(ledger) == set(single) - {"batch"}, ledger
    assert ownership_problems("prod", list(single), single, ledger, "HANDOVER") == []
    assert missing_ledger_problem("single", ledger, "prod", True, True, "HANDOVER") is None


def test_the_old_order_deletes_in_a_deploy_between_two_steps(environment):
    """The model can fail: committing policyShards before the moves (what the earlier script printed first), a
    deploy in between deletes every moved group's objects."""
    backend, project, plan, graph, moves = environment
    migrate.set_policy_shards(project / "stacks" / "Pulumi.prod.yaml", True)
    deleted = deploy(backend, project, plan, graph, ["prod"])
    assert len(deleted) == sum(len(g.urns) for groups in moves.values() for g in groups)


@pytest.mark.parametrize("direction", ["shards", "single"])
def test_a_failure_at_any_step_is_resumed_by_running_it_again(environment, tmp_path, direction):
    backend, project, plan, graph, moves = environment
    if direction == "single":
        _migration(backend, project, plan, graph, lambda _: None).to_shards()
    start_states = {p.name: p.read_text() for p in backend.directory.glob("*.json")}
    start_files = {p.name: p.read_text() for p in (project / "stacks").glob("*.yaml")}

    def reset():
        for p in backend.directory.glob("*.json"):
            p.unlink()
        for name, text in start_states.items():
            (backend.directory / name).write_text(text)
        for p in (project / "stacks").glob("*.yaml"):
            p.unlink()
        for name, text in start_files.items():
            (project / "stacks" / name).write_text(text)

    def run(b):
        m = _migration(b, project, plan, graph, lambda _: None)
        m.to_shards() if direction == "shards" else m.to_single()

    clean = _attach(JsonBackend(backend.directory), backend)
    run(clean)
    expected = {p.name: json.loads(p.read_text()) for p in backend.directory.glob("*.json")}
    steps = clean.calls
    assert steps >= len(moves) + 2
    for half_moves in (False, True):
        for fail_at in range(1, steps + 1):
            reset()
            with pytest.raises(Failure):
                run(_attach(JsonBackend(backend.directory, fail_at=fail_at, half_moves=half_moves), backend))
            run(_attach(JsonBackend(backend.directory), backend))  # the same command, again
            got = {p.name: json.loads(p.read_text()) for p in backend.directory.glob("*.json")}
            assert {k: sorted(r["urn"] for r in v) for k, v in got.items()} == \
                {k: sorted(r["urn"] for r in v) for k, v in expected.items()}, (half_moves, fail_at)


def test_a_copy_left_by_a_failed_deploy_is_cleaned_and_a_foreign_edit_stops_the_migration(environment):
    backend, project, plan, graph, moves = environment
    m = _migration(backend, project, plan, graph, lambda _: None)
    m.to_shards()
    group = moves["payments"][0]
    # A stray deploy at the old commit recorded the group's component in the platform (its objects' creates failed).
    resources = backend.resources("prod")
    resources.append({"urn": group.urn, "type": migrate.CONFIG_GROUP, "parent": ""})
    backend.save("prod", resources)
    m.to_shards()
    assert group.urn not in {r["urn"] for r in backend.resources("prod")}
    # A group the state never held (its namespace added since the last deploy) moves nowhere: the shard creates it.
    said = []
    m.log = said.append
    shard = backend.resources("prod-payments")
    gone = migrate.shard_urn(group, group.urn, "prod-payments")
    backend.save("prod-payments", [r for r in shard if gone not in (r["urn"], r.get("parent"))])
    with pytest.raises(migrate.StepFailed, match="prod-payments --expect-no-changes"):
        m.to_shards()
    assert any("in no state yet" in line for line in said)


def test_a_preview_that_would_create_stops_the_migration(environment):
    backend, project, plan, graph, moves = environment
    m = _migration(backend, project, plan, graph, lambda _: None)
    backend.preview = lambda stack: {"create": 3, "same": 1} if stack == "prod-payments" else {"same": 1}
    with pytest.raises(migrate.StepFailed, match="prod-payments --expect-no-changes"):
        m.to_shards()


def test_the_cli_commands(tmp_path):
    assert migrate.init_command("prod-payments", None, "passphrase") == \
        ["pulumi", "stack", "init", "prod-payments", "--no-select", "--secrets-provider", "passphrase"]
    assert migrate.init_command("prod-payments", "acme", None) == \
        ["pulumi", "stack", "init", "acme/mtls-mesh/prod-payments", "--no-select"]
    assert migrate.move_command("prod", "prod-payments", ["urn:a", "urn:b"], "acme")[:8] == \
        ["pulumi", "state", "move", "--source", "acme/mtls-mesh/prod", "--dest", "acme/mtls-mesh/prod-payments",
         "--yes"]
    assert "--include-parents" not in migrate.move_command("prod", "prod-payments", ["urn:a"], None)


def test_the_stack_file_edits_keep_every_other_line(tmp_path):
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text("# comment\nconfig:\n  mtls-mesh:environment: prod\n")
    assert migrate.set_policy_shards(path, True) and not migrate.set_policy_shards(path, True)
    assert path.read_text() == "# comment\nconfig:\n  mtls-mesh:environment: prod\n  mtls-mesh:policyShards: true\n"
    assert yaml.safe_load(path.read_text())["config"]["mtls-mesh:policyShards"] is True
    assert migrate.set_policy_shards(path, False)
    assert path.read_text() == "# comment\nconfig:\n  mtls-mesh:environment: prod\n"


def test_a_shard_file_written_by_stack_init_is_completed(environment):
    backend, project, plan, graph, moves = environment
    path = project / "stacks" / "Pulumi.prod-payments.yaml"
    path.write_text("encryptionsalt: v1:abc\n")
    _migration(backend, project, plan, graph, lambda _: None)._ensure_shard_file("payments")
    document = yaml.safe_load(path.read_text())
    assert document["encryptionsalt"] == "v1:abc"
    assert document["config"] == {"mtls-mesh:platformStack": "prod", "mtls-mesh:shard": "payments"}


def test_the_command_imports_no_pulumi_and_explains_a_graph_without_shards():
    probe = ("import sys, deploy.migrate_to_shards as m; "
             "assert not [n for n in sys.modules if n.split('.')[0] == 'pulumi'], 'imports pulumi'; "
             "sys.exit(m.main(['--stack', 'prod', '--urns']))")
    completed = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True,
                               timeout=120)
    assert "Traceback" not in completed.stderr
    assert "imports pulumi" not in completed.stderr
    if completed.returncode == 0:  # the repository's graph names shards
        first = completed.stdout.splitlines()[0].split("\t")
        assert first[0].startswith("urn:pulumi:prod::") and first[1].startswith("urn:pulumi:prod-")
    else:
        assert "no namespace of its graph has a `shard:`" in completed.stderr


# --- previews that do not depend on the checkout or on who delivers --------------------------------------------------

def test_the_vault_providers_ca_file_is_the_same_from_another_checkout(tmp_path):
    from read.settings import load_settings
    from harness import stack_config

    config, secret_keys = stack_config("prod")
    here = load_settings(config, "prod", secret_keys=frozenset(secret_keys))
    clone = tmp_path / "elsewhere" / "mtls-mesh"
    clone.mkdir(parents=True)
    for name in ("Pulumi.yaml", "services.yaml"):
        shutil.copy(PROJECT_DIR / name, clone / name)
    shutil.copytree(PROJECT_DIR / "stacks", clone / "stacks")
    there = load_settings(config, "prod", secret_keys=frozenset(secret_keys), project_dir=clone)
    assert here.vault.ca_bundle_path == there.vault.ca_bundle_path == "stacks/ca/example-internal-ca.pem"
    run = run_program("prod")
    (provider,) = run.of_type("pulumi:providers:vault")
    assert provider.inputs["caCertFile"] == "stacks/ca/example-internal-ca.pem"


def _kubeconfig(tmp_path, context):
    path = tmp_path / f"kubeconfig-{context}"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": context,
                                    "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


def test_an_operator_stacks_provider_is_the_same_inside_and_outside_the_operator(tmp_path, monkeypatch):
    """The Operator's update records a provider with no context; a preview from a laptop or CI, with the stack's
    context current, registers the same inputs (so --expect-no-changes can hold); another context is refused."""
    inside = run_program("staging", set_config={"deliveredBy": "operator", "kubeContext": "in-cluster"}, preview=True)
    monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path, "staging-eu1"))
    outside = run_program("staging", set_config={"deliveredBy": "operator"}, preview=True)
    (a,), (b,) = inside.of_type("pulumi:providers:kubernetes"), outside.of_type("pulumi:providers:kubernetes")
    assert a.inputs == b.inputs and "context" not in b.inputs
    workflows = run_program("staging", preview=True)
    (c,) = workflows.of_type("pulumi:providers:kubernetes")
    assert c.inputs["context"] == "staging-eu1", "a workflows stack keeps naming its context"
    monkeypatch.setenv("KUBECONFIG", _kubeconfig(tmp_path, "prod-eu1"))
    with pytest.raises(Exception, match="kubectl config use-context staging-eu1") as caught:
        run_program("staging", set_config={"deliveredBy": "operator"}, preview=True)
    assert not [r for r in caught.value.registrations if r.custom], "refused before anything registers"


def test_the_cli_backend_runs_the_commands_it_says(tmp_path, monkeypatch):
    """PulumiCli against a stand-in `pulumi` on PATH that records its arguments and answers as the CLI's JSON does:
    what exists, a state read from `stack export`, a state written back through `stack import` of a file, a preview's
    changeSummary, and a failure that says to run the command again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    fake = bin_dir / "pulumi"
    fake.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    record = {{"args": args}}
    if args[:2] == ["stack", "import"]:
        record["file"] = json.load(open(args[args.index("--file") + 1]))
    f.write(json.dumps(record) + "\\n")
if args[:2] == ["stack", "ls"]:
    print(json.dumps([{{"name": "organization/mtls-mesh/prod"}}, {{"name": "prod-payments"}}]))
elif args[:2] == ["stack", "export"]:
    print(json.dumps({{"version": 3, "deployment": {{"resources": [{{"urn": "urn:a", "type": "t"}}]}}}}))
elif args[0] == "preview":
    print(json.dumps({{"steps": [], "changeSummary": {{"same": 7, "update": 1}}}}))
elif args[:2] == ["state", "move"]:
    print("lock held", file=sys.stderr)
    sys.exit(255)
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cli = migrate.PulumiCli(tmp_path, org="acme")
    assert cli.exists("prod") and cli.exists("prod-payments") and not cli.exists("prod-storefront")
    assert cli.resources("prod") == [{"urn": "urn:a", "type": "t"}]
    cli.replace_resources("prod", [{"urn": "urn:b", "type": "t"}])
    assert cli.preview("prod") == {"same": 7, "update": 1}
    with pytest.raises(migrate.StepFailed, match="(?s)lock held.*run this command again"):
        cli.move("prod", "prod-payments", ["urn:a"])
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    imported = next(c for c in calls if c["args"][:2] == ["stack", "import"])
    assert imported["args"][2:4] == ["--stack", "acme/mtls-mesh/prod"]
    assert imported["file"]["deployment"]["resources"] == [{"urn": "urn:b", "type": "t"}]
    assert ["preview", "--stack", "acme/mtls-mesh/prod", "--json"] in [c["args"] for c in calls]
    from pathlib import Path
    assert not Path(imported["args"][imported["args"].index("--file") + 1]).exists(), "the import file is removed"
