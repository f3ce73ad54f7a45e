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


def _commands(script: str) -> list[list[str]]:
    return [shlex.split(line, comments=True) for line in script.replace("\\\n", " ").splitlines()
            if line.strip() and not line.startswith("#") and not line.startswith("set ")]


def test_the_script_moves_each_group_whole_then_previews_then_switches_the_platform(sharded):
    run, plan, graph, moves = sharded
    script = migrate.migration_script(plan, graph)
    assert "--include-parents" not in script
    commands = _commands(script)
    # The platform's file says policyShards before any shard runs (a shard refuses a platform without it), after the
    # backup; no `up` of the platform until every move is done and previewed; the platform's `up` before the shards'.
    switch = commands.index(["pulumi", "config", "set", "--stack", "prod", "policyShards", "true"])
    first_move = min(i for i, c in enumerate(commands) if c[:3] == ["pulumi", "state", "move"])
    last_move = max(i for i, c in enumerate(commands) if c[:3] == ["pulumi", "state", "move"])
    assert commands.index(["pulumi", "stack", "export", "--stack", "prod", "--file", "prod-before-shards.json"]) \
        < switch < first_move
    ups = [i for i, c in enumerate(commands) if c[:2] == ["pulumi", "up"]]
    assert min(ups) > last_move and commands[min(ups)] == ["pulumi", "up", "--stack", "prod", "--yes"]
    moved = []
    for shard, groups in moves.items():
        dest = f"prod-{shard}"
        init = commands.index(next(c for c in commands if c[:3] == ["pulumi", "stack", "init"] and c[3] == dest))
        preview = commands.index(["pulumi", "preview", "--stack", dest, "--expect-no-changes"])
        move_commands = [c for c in commands[init:preview] if c[:3] == ["pulumi", "state", "move"]]
        assert move_commands
        for command in move_commands:
            assert command[3:8] == ["--source", "prod", "--dest", dest, "--yes"]
            urns = command[8:]
            # Each command is closed: a child's group moves in the same command, or the child lands at the root.
            assert all(migrate.config_group_parent(u, urns) for u in urns if "$kubernetes:yaml/v2:ConfigGroup$" in u)
            moved += urns
        assert set(u for c in move_commands for u in c[8:]) == {u for g in groups for u in g.urns}
    assert len(moved) == len(set(moved))
    assert commands[min(ups) - 1] == ["pulumi", "preview", "--stack", "prod", "--diff"]


def test_the_stacks_are_named_for_the_organization_and_the_secrets_provider(sharded):
    _, plan, graph, _ = sharded
    cloud = migrate.migration_script(plan, graph, org="acme")
    assert "pulumi state move --source acme/mtls-mesh/prod --dest acme/mtls-mesh/prod-storefront --yes" in cloud
    assert re.search(r"^pulumi stack init acme/mtls-mesh/prod-payments$", cloud, re.MULTILINE)
    kms = migrate.migration_script(plan, graph, secrets_provider="awskms://alias/mesh?region=eu-west-1")
    assert "pulumi stack init prod-payments --secrets-provider 'awskms://alias/mesh?region=eu-west-1'" in kms
    diy = migrate.migration_script(plan, graph)
    assert "pulumi stack init prod-payments --secrets-provider passphrase" in diy


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


def test_the_command_imports_no_pulumi_and_explains_a_graph_without_shards():
    probe = ("import sys, deploy.migrate_to_shards as m; "
             "assert not [n for n in sys.modules if n.split('.')[0] == 'pulumi'], 'imports pulumi'; "
             "sys.exit(m.main(['--stack', 'prod']))")
    completed = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True,
                               timeout=120)
    assert "Traceback" not in completed.stderr
    assert "imports pulumi" not in completed.stderr
    if completed.returncode == 0:  # the repository's graph names shards (DESIGN-24's example)
        assert "pulumi state move --source prod --dest prod-" in completed.stdout
    else:
        assert "no namespace of its graph has a `shard:`" in completed.stderr


def test_the_command_on_a_project_whose_graph_has_shards(tmp_path, capsys):
    """`python -m deploy.migrate_to_shards --stack prod` end to end, on a copy of the project whose graph carries the
    shards and whose prod stack file records a KMS secrets provider (as `pulumi stack init` writes it)."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(PROJECT_DIR / "stacks", tmp_path / "stacks")
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    for namespace, shard in FIXTURE_SHARDS.items():
        graph["namespaces"][namespace] = {**(graph["namespaces"][namespace] or {}), "shard": shard}
    (tmp_path / "services.yaml").write_text(yaml.safe_dump(graph))
    stack_file = tmp_path / "stacks" / "Pulumi.prod.yaml"
    stack_file.write_text("secretsprovider: awskms://alias/mesh?region=eu-west-1\nencryptedkey: AAAA\n"
                          + stack_file.read_text())
    assert migrate.main(["--stack", "prod", "--org", "acme"], project_dir=tmp_path) == 0
    script = capsys.readouterr().out
    assert "pulumi stack init acme/mtls-mesh/prod-storage --secrets-provider 'awskms://alias/mesh?region=eu-west-1'" \
        in script
    assert len(re.findall(r"^pulumi state move ", script, re.MULTILINE)) == 3  # one per sharded namespace
    assert "'urn:pulumi:prod::mtls-mesh::mtls-mesh:cert_manager:CertManager$kubernetes:yaml/v2:ConfigGroup$" \
        "kubernetes:cert-manager.io/v1:Certificate::certs-workload-data:data/postgres-mesh-tls'" in script

    stack_file.write_text("encryptionsalt: v1:abc\n" + stack_file.read_text().split("\n", 2)[2])
    shard_file = tmp_path / "stacks" / "Pulumi.prod-storage.yaml"
    shard_file.write_text("config:\n  mtls-mesh:platformStack: prod\n  mtls-mesh:shard: storage\n")
    assert migrate.main(["--stack", "prod", "--org", "acme"], project_dir=tmp_path) == 0
    assert "pulumi stack init acme/mtls-mesh/prod-storage --secrets-provider passphrase" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="prod-storage is a shard stack"):
        migrate.main(["--stack", "prod-storage"], project_dir=tmp_path)


@pytest.mark.parametrize("shard", ["payments", "storefront"])
def test_the_repositorys_shard_stacks_register_what_the_move_leaves_them(shard):
    """The real shard stacks of prod (stacks/Pulumi.prod-<shard>.yaml), run as the program runs them, against the
    state the migration of prod-as-one-stack leaves them: nothing to create or delete."""
    from plan.shards import shards_of
    from harness import stack_plan  # noqa: F401 (the plan the runs compile)

    single = run_program("prod", set_config={"policyShards": False})
    platform = run_program("prod")
    shard_run = run_program(f"prod-{shard}", platform_outputs=platform.exports)
    namespaces = shards_of(migrate.load("prod", config=single.config)[1])[shard]
    assert not shard_stack_mismatches(single, shard_run, shard, namespaces)
