"""An environment that runs today as one stack becomes the first cluster of a multi-cluster environment (issue 33,
docs/multicluster.md 'Turning an existing environment into its first cluster'): the program run for the stack as it
is, then for the same stack file with `cluster`, `clusterPeers` and `clusterApiServer` set (and the graph declaring
its `clusters:`, which a single-cluster stack ignores), shows what its first `up` as a cluster changes. Every URN of
the single-cluster run stays registered, with the same inputs but for a listed, justified set; nothing protected is
touched; what is added is the multicluster part. A preview against the single-cluster state shows the same. Its
shards follow the platform's cluster without a change. The new cluster's first `up` waits for that `up`.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from harness import PROJECT_DIR, Run, run_program
from read import stack_files
from read.errors import SettingsError

MULTICLUSTER_COMPONENT = "mtls-mesh:linkerd:Multicluster"
# What the first `up` with cluster set updates in place, each with why (and the test below says exactly how).
EXPECTED_UPDATES = {
    # Every alert of a cluster stack carries its cluster (plan/mesh.py with_rule_labels, docs/multicluster.md
    # 'Alerts per cluster'): a label more on each rule, the expressions and thresholds unchanged.
    "alerts-rules": "each rule gains the label cluster: <cluster>",
    # A stack running the verification exports its canary to the peers' link checks (docs/multicluster.md
    # 'Verification across links'): the Service gains the export label, its ports and selector unchanged.
    "verify-service-canary": "the canary Service gains mirror.linkerd.io/exported",
    # The preview identity may read and dry-run every kind the stack manages (plan/preview_identity.py): its role gains
    # the multicluster part's kinds (Links, the extension's policy kinds), nothing else.
    "preview-clusterrole": "the preview identity's role gains the Link and the multicluster part's kinds",
}
# The outputs the stack gains: the link contract for its peers, and in dev the root's key (a secret) which the other
# clusters' issuers are signed with.
ADDED_OUTPUTS = {"vault": {"multicluster"}, "self-signed": {"multicluster", "meshRootKeys"}}

ORIGINAL_STACKS = stack_files.STACKS_DIR


def write_environment(directory: Path, stack: str) -> None:
    """stacks/ as it is, but `stack` as cluster east of a two-cluster environment, and `<stack>-west` its new peer
    (a copy of its settings in another cluster, unsharded, naming `stack` as the mesh root's)."""
    for source in ORIGINAL_STACKS.glob("Pulumi.*.yaml"):
        shutil.copy(source, directory / source.name)
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    graph["clusters"] = {"east": {}, "west": {}}  # no service names one: each runs in both
    (directory / "services.yaml").write_text(yaml.safe_dump(graph, sort_keys=False))
    text = (directory / f"Pulumi.{stack}.yaml").read_text().rstrip("\n")
    shared = (f"\n  mtls-mesh:serviceGraph: {directory / 'services.yaml'}\n"
              "  mtls-mesh:allowFilesOutsideProject: true\n")
    (directory / f"Pulumi.{stack}.yaml").write_text(
        text + shared + f"  mtls-mesh:cluster: east\n  mtls-mesh:clusterPeers: [{stack}-west]\n"
        "  mtls-mesh:clusterApiServer: https://api.east.example.internal:6443\n")
    west = (text.replace("policyShards: true", "policyShards: false")
            .replace("kubeContext: ", "kubeContext: west-").replace("https://api.", "https://api-west."))
    (directory / f"Pulumi.{stack}-west.yaml").write_text(
        west + shared + f"  mtls-mesh:cluster: west\n  mtls-mesh:clusterPeers: [{stack}]\n"
        f"  mtls-mesh:meshRootStack: {stack}\n"
        "  mtls-mesh:clusterApiServer: https://api.west.example.internal:6443\n")


@contextlib.contextmanager
def in_stacks(directory: Path) -> Iterator[None]:
    """`directory` as the stacks directory, where the program reads the peers' and the platform's files."""
    stack_files.STACKS_DIR = directory
    try:
        yield
    finally:
        stack_files.STACKS_DIR = ORIGINAL_STACKS


def converted(directory: Path, stack: str) -> dict[str, Run]:
    single = run_program(stack)
    write_environment(directory, stack)
    with in_stacks(directory):
        east = run_program(stack, previous_outputs=single.exports)
        preview = run_program(stack, previous_outputs=single.exports, preview=True, state=single)
    return {"single": single, "east": east, "preview": preview}


@pytest.fixture(scope="module", params=["prod", "dev"])
def conversion(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    return request.param, directory, converted(directory, request.param)


def by_urn(run: Run) -> dict[str, object]:
    return {r.urn: r for r in run.registrations}


def inputs_by_urn(run: Run) -> dict[str, dict]:
    found = {r.urn: r.inputs for r in run.registrations}
    assert len(found) == len(run.registrations)
    return found


def without_cluster_label(rules: dict) -> dict:
    stripped = copy.deepcopy(rules)
    for group in stripped["spec"]["groups"]:
        for rule in group["rules"]:
            assert rule["labels"].pop("cluster") == "east", rule.get("alert")
    return stripped


def test_every_single_cluster_urn_stays_with_its_inputs_but_the_listed_updates(conversion):
    _, _, runs = conversion
    before, after = by_urn(runs["single"]), by_urn(runs["east"])
    assert [u for u in before if u not in after] == [], "the first up as a cluster would delete these"
    changed = {r.name for u, r in before.items() if r.inputs != after[u].inputs}
    verifies = any(r.name == "verify-service-canary" for r in runs["single"].registrations)
    assert changed == set(EXPECTED_UPDATES) - (set() if verifies else {"verify-service-canary"})
    # The alert rules: the cluster label on every rule, nothing else.
    (old,) = [r for r in runs["single"].registrations if r.name == "alerts-rules"]
    new = runs["east"].by_urn(old.urn)
    assert without_cluster_label(new.object()) == old.object()
    if verifies:
        (old,) = [r for r in runs["single"].registrations if r.name == "verify-service-canary"]
        new = copy.deepcopy(runs["east"].by_urn(old.urn).object())
        assert new["metadata"]["labels"].pop("mirror.linkerd.io/exported") == "remote-discovery"
        assert new == old.object()
    # The preview role: only grants added, the Link among them.
    (old,) = [r for r in runs["single"].registrations if r.name == "preview-clusterrole"]
    grants = [{(g, res, tuple(rule["verbs"])) for rule in obj["rules"] for g in rule["apiGroups"]
               for res in rule["resources"]} for obj in (old.object(), runs["east"].by_urn(old.urn).object())]
    assert grants[0] < grants[1] and any(res == "links" for _, res, _ in grants[1] - grants[0])


def test_nothing_protected_is_touched_and_the_vault_and_anchor_names_stay(conversion):
    stack, _, runs = conversion
    before, after = by_urn(runs["single"]), by_urn(runs["east"])
    protected = [u for u, r in before.items() if r.protect]
    if stack == "prod":
        assert len(protected) >= 5  # protectPki: the roots, intermediates and their mounts
    for urn in protected:
        assert after[urn].protect and after[urn].inputs == before[urn].inputs, urn
    # The trust material and every Vault name (mounts, auth mount, roles, policies) as they were.
    for run_type in {r.type for r in runs["single"].registrations if r.type.startswith(("vault:", "tls:"))}:
        assert ({r.urn: r.inputs for r in runs["single"].of_type(run_type)}
                == {r.urn: r.inputs for r in runs["east"].of_type(run_type)}), run_type


def test_what_is_added_is_the_multicluster_part_and_its_outputs(conversion):
    stack, _, runs = conversion
    before, after = by_urn(runs["single"]), runs["east"]
    added = [r for r in after.registrations if r.urn not in before]
    assert added and all(r.type == MULTICLUSTER_COMPONENT or f"{MULTICLUSTER_COMPONENT}$" in r.urn for r in added), \
        [r.urn for r in added if MULTICLUSTER_COMPONENT not in r.urn]
    mode = runs["single"].config["mtls-mesh:pkiMode"]
    assert set(after.exports) - set(runs["single"].exports) == ADDED_OUTPUTS[mode]
    # With the verification on, the canary (exported to the peers' link checks) admits each peer's verify-allowed,
    # and its access-matrix row says so; nothing else of the outputs changes.
    verifies = any(r.name == "verify-service-canary" for r in runs["single"].registrations)
    changed = {k for k, v in runs["single"].exports.items() if after.exports[k] != v}
    assert changed == ({"accessMatrix"} if verifies else set()), changed
    if verifies:
        expected = copy.deepcopy(runs["single"].exports["accessMatrix"])
        row = expected["mtls-mesh-verify/canary:http"]
        row["allowed"] = sorted([*row["allowed"], "mtls-mesh-verify/verify-allowed@west"])
        assert after.exports["accessMatrix"] == expected
    if mode == "self-signed":
        assert "meshRootKeys" in after.secret_exports


def test_the_conversions_preview_shows_only_the_listed_updates_and_the_multicluster_creates(conversion):
    _, _, runs = conversion
    preview, before = runs["preview"], by_urn(runs["single"])
    steps = {}
    for r in preview.registrations:
        steps.setdefault(r.step, []).append(r)
    verifies = any(r.name == "verify-service-canary" for r in runs["single"].registrations)
    assert {r.name for r in steps.get("update", [])} == set(EXPECTED_UPDATES) - (
        set() if verifies else {"verify-service-canary"})
    assert all(MULTICLUSTER_COMPONENT in r.urn for r in steps["create"])
    assert set(before) <= {r.urn for r in preview.registrations}, "the preview would show deletes"


def test_the_shards_follow_the_platforms_cluster_unchanged(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    platform = converted(directory, "prod")
    for shard in ("prod-payments", "prod-storefront"):
        before = run_program(shard, platform_outputs=platform["single"].exports)
        with in_stacks(directory):
            after = run_program(shard, platform_outputs=platform["east"].exports)
            raw, secrets = stack_files.read_stack_file(directory / f"Pulumi.{shard}.yaml", project_dir=PROJECT_DIR)
            settings = stack_files.load_stack_settings(raw, shard, secret_keys=frozenset(secrets))
        assert settings.multicluster is not None and settings.multicluster.cluster == "east"
        assert inputs_by_urn(before) == inputs_by_urn(after)
        assert after.exports == before.exports


def test_declaring_the_graphs_clusters_alone_changes_nothing_for_the_single_cluster_stack(conversion):
    """The first pull request of the conversion: the graph gains `clusters:`, which a `cluster: ""` stack ignores."""
    stack, directory, runs = conversion
    text = (ORIGINAL_STACKS / f"Pulumi.{stack}.yaml").read_text().rstrip("\n")
    (directory / f"Pulumi.{stack}.yaml").write_text(
        text + f"\n  mtls-mesh:serviceGraph: {directory / 'services.yaml'}\n  mtls-mesh:allowFilesOutsideProject: true\n")
    try:
        with in_stacks(directory):
            graph_only = run_program(stack, previous_outputs=runs["single"].exports)
    finally:
        write_environment(directory, stack)
    assert "clusters" in yaml.safe_load((directory / "services.yaml").read_text())
    assert inputs_by_urn(graph_only) == inputs_by_urn(runs["single"])
    assert graph_only.exports == runs["single"].exports


def test_the_new_cluster_waits_for_the_roots_first_up_as_a_cluster(conversion, caplog):
    stack, directory, runs = conversion
    west = f"{stack}-west"
    with in_stacks(directory):
        with pytest.raises(SettingsError) as caught:
            run_program(west, references={stack: runs["single"].exports})
        (problem,) = caught.value.problems
        assert problem.where == "mtls-mesh:meshRootStack" and "single-cluster" in problem.what
        assert stack in problem.what and f"pulumi up` on {stack} first" in problem.fix
        assert caught.value.registrations == []
        with caplog.at_level("WARNING"):
            run_program(west, references={stack: runs["single"].exports}, preview=True)
        assert any("single-cluster" in r.getMessage() and "will refuse" in r.getMessage() for r in caplog.records)
        applied = run_program(west, references={stack: runs["east"].exports})
    if runs["single"].config["mtls-mesh:pkiMode"] == "self-signed":
        assert applied.exports["trustAnchors"] == runs["east"].exports["trustAnchors"]  # the root's, shared
    else:
        # West's own, cluster-qualified names, signed under the root mount the single-cluster stack made.
        mounts = {r.object()["path"] for r in applied.of_type("vault:index/mount:Mount")}
        assert mounts and all("-west-" in m for m in mounts)
        roots = {r.object()["path"] for r in runs["single"].of_type("vault:index/mount:Mount")
                 if "-root-" in r.object()["path"]}
        signed = {r.object()["backend"] for r in applied.of_type(
            "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate")}
        assert signed and signed <= roots
