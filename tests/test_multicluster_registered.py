"""The exact cross-cluster access check (tests/multicluster_access.py) on what the program registers, not on its
compiled plans (#33 item 3): the example's cluster stacks (examples/multicluster, dev-east and dev-west) run with
`run_program`, one reading the other's outputs as a StackReference would (test_multicluster_wiring.as_referenced);
every object read back from the registrations (ConfigGroup children, the gateway's CustomResourcePatches, the
NetworkPolicies with the peers' gateway addresses, the Links and their credentials) goes to the checker, whose calls
must be the graph's cross-cluster edges between the clusters linked at that point:

- at each step of docs/multicluster.md "Bringing stacks up", for `up` and for `preview=True` (what a reviewer sees):
  a preview before a peer applied shows no cross-cluster access, and no Link; after linking exactly the edges, the
  same as the `up` that follows; every registered Link works (the peer issued its token, its gateway is the one
  dialled), so a Link made before its peer applied is seen;
- at the mesh layer alone and with the NetworkPolicies (the example runs `deny` with networkPolicies and
  networkPolicyEgress), and with a sharded east (the platform's and the shard's registrations together);
- each stack's `accessMatrix` output (and what deploy/review_matrices.py shows in the pull request comment) names
  exactly the cross-cluster callers the checker finds that stack's own registrations admitting, `via gateway` where
  the gateway stands for them;
- the verification canary every cluster stack exports for its peers' link checks: reached across each Link by exactly
  verify-allowed, and its matrix rows name each linked peer's verify-allowed.

The mutation tests run the program changed three ways and show the checks above fail:

| mutation | fails |
|---|---|
| the gateway's `any-meshed` widened | the bring-up steps (mesh layer), the matrix check, in `up` and in a preview |
| a callee's remote identity dropped (ledger's gateway identity) | the bring-up steps, the sharded check |
| a Link registered before its peer applied | the bring-up steps (a Link the peer issued no token for), the canary check |

The review's check fails without the peers' stack files among a cluster stack's inputs (deploy/changed_stacks.py)."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness import PROJECT_DIR, run_program
from multicluster_access import (DIRECT, THROUGH_GATEWAY, Applied, calls, graph_cross_edges, registered_calls,
                                 registered_views)
from plan.linkerd import multicluster as mc
from plan.linkerd import multicluster_contract as contract
from read import stack_files
from test_multicluster_wiring import as_referenced, in_example

EXAMPLE = PROJECT_DIR / "examples" / "multicluster"
STACKS = {"east": "dev-east", "west": "dev-west"}


def settings_of(stack: str, directory: Path = EXAMPLE):
    raw, secrets = stack_files.read_stack_file(directory / f"Pulumi.{stack}.yaml", project_dir=PROJECT_DIR)
    return stack_files.load_stack_settings(raw, stack, secret_keys=secrets, stacks_dir=directory)


class Environment:
    """The example's clusters as plain facts: the whole graph, each cluster's stack file (networks, API server), and
    the export labels the teams put on their Services (MulticlusterPlan.exports: the one input not registered)."""

    def __init__(self, directory: Path = EXAMPLE):
        from plan.mesh import compile_mesh

        self.settings = {cluster: settings_of(stack, directory) for cluster, stack in STACKS.items()}
        self.graph = self.settings["east"].graph
        self.exports = {cluster: compile_mesh(s).multicluster.exports for cluster, s in self.settings.items()}

    def applied(self, contracts: dict[str, dict | None]) -> dict[str, Applied]:
        """Each cluster as it exists: its stack file's networks and API server, and its last `up`'s `multicluster`
        output (None: never applied)."""
        return {cluster: Applied(s.policy.cluster_networks, s.multicluster.api_server, contracts.get(cluster))
                for cluster, s in self.settings.items()}


@pytest.fixture(scope="module")
def environment():
    return Environment()


def bring_up() -> dict:
    """docs/multicluster.md "Bringing stacks up" for the example, each `up` preceded by its preview: the root stack
    (east), the other (west), the root again. A preview runs against the stack's state (its last `up`)."""
    with in_example():
        runs = {"east first preview": run_program("dev-east", preview=True)}
        east = runs["east"] = run_program("dev-east")
        # Before east applied, `up` of west refuses (test_a_secondary_cluster_before_its_root_stack_refuses).
        runs["west preview, east not applied"] = run_program("dev-west", preview=True, references={"dev-east": {}})
        runs["west first preview"] = run_program("dev-west", preview=True, references={"dev-east": as_referenced(east)})
        west = runs["west"] = run_program("dev-west", references={"dev-east": as_referenced(east)})
        runs["east again, preview"] = run_program("dev-east", preview=True, state=east, previous_outputs=east.exports,
                                                  references={"dev-west": as_referenced(west)})
        runs["east again"] = run_program("dev-east", previous_outputs=east.exports,
                                         references={"dev-west": as_referenced(west)})
    return runs


def contract_of(run) -> dict | None:
    return run.exports.get(contract.OUTPUT) if run is not None and not run.preview else None


BOTH_WAYS = {("west", "east"), ("east", "west")}
STEPS = ("east first preview", "east", "west preview, east not applied", "west first preview", "west",
         "east again, preview", "east again")


def step(runs: dict, name: str) -> tuple[dict, dict, set]:
    """At one step of the bring-up: (cluster -> the run whose registrations are in it, cluster -> its last applied
    `up`, which cluster mirrors which). A preview's registrations stand for its stack, beside what the other applied."""
    east, west, again = runs["east"], runs["west"], runs["east again"]
    return {
        "east first preview": ({"east": runs[name]}, {}, set()),
        "east": ({"east": east}, {"east": east}, set()),
        "west preview, east not applied": ({"west": runs[name]}, {}, set()),
        "west first preview": ({"east": east, "west": runs[name]}, {"east": east}, {("west", "east")}),
        "west": ({"east": east, "west": west}, {"east": east, "west": west}, {("west", "east")}),
        "east again, preview": ({"east": runs[name], "west": west}, {"east": east, "west": west}, BOTH_WAYS),
        "east again": ({"east": again, "west": west}, {"east": again, "west": west}, BOTH_WAYS),
    }[name]


def expected_calls(environment: Environment, linked: set, graph=None) -> set[tuple[str, ...]]:
    """The graph's cross-cluster edges between the clusters linked (caller's cluster mirrors the callee's), each by
    the path its export mode gives."""
    peers: dict[str, list[str]] = {}
    for caller_cluster, callee_cluster in linked:
        peers.setdefault(caller_cluster, []).append(callee_cluster)
    graph = graph if graph is not None else environment.graph
    return {(*edge, THROUGH_GATEWAY if graph.services[edge[2]].export == mc.GATEWAY else DIRECT)
            for edge in graph_cross_edges(graph, peers)}


def check_step(environment: Environment, registered: dict, applied: dict, linked: set) -> set[tuple[str, ...]]:
    """At one step: every registered Link works and they are exactly the `linked` ones, and the calls the
    registrations admit are exactly the edges between linked clusters, at the mesh layer and with the network."""
    facts = environment.applied({c: contract_of(r) for c, r in applied.items()})
    registrations = {cluster: run.registrations for cluster, run in registered.items()}
    views, problems = registered_views(registrations, facts, environment.exports)
    assert problems == [], problems
    assert {(c, peer) for c, view in views.items() for peer in view.links} == linked
    expected = expected_calls(environment, linked)
    for network in (False, True):
        found, _ = registered_calls(registrations, facts, environment.exports, environment.graph, network=network)
        assert found == expected, {"network": network, "extra": found - expected, "missing": expected - found}
    return expected


@pytest.fixture(scope="module")
def runs():
    return bring_up()


@pytest.mark.parametrize("name", STEPS)
def test_each_step_of_the_bring_up_admits_exactly_the_linked_edges(environment, runs, name):
    assert runs[name].preview == ("preview" in name)
    found = check_step(environment, *step(runs, name))
    if step(runs, name)[2] == BOTH_WAYS:
        # Linked both ways: every cross-cluster edge of the graph, through the gateway and pod to pod.
        assert ("reporter", "west", "ledger", "east", "http", THROUGH_GATEWAY) in found
        assert ("checkout", "west", "billing", "east", "grpc", DIRECT) in found
    elif not step(runs, name)[2]:
        assert found == set()


def test_what_a_preview_shows_is_what_the_up_after_it_does(environment, runs):
    """Each preview against the same peers' state as its `up`: the same Links and the same calls; a preview before
    its peer applied shows none, which is no more than any later `up` gives."""
    def found(name):
        registered, applied, _ = step(runs, name)
        facts = environment.applied({c: contract_of(r) for c, r in applied.items()})
        registrations = {c: r.registrations for c, r in registered.items()}
        views, problems = registered_views(registrations, facts, environment.exports)
        assert problems == [], problems
        calls_found, _ = registered_calls(registrations, facts, environment.exports, environment.graph)
        return {c: sorted(v.links) for c, v in views.items()}, calls_found

    for preview, up in (("east first preview", "east"), ("west first preview", "west"),
                        ("east again, preview", "east again")):
        assert found(preview) == found(up), preview
    before = found("west preview, east not applied")
    assert before == ({"west": []}, set()) and found("west")[1] != set()


def test_the_example_runs_deny_with_network_policies_and_egress_control(runs):
    """So the network layer above is the NetworkPolicies of a `deny` cluster, egress included, as registered."""
    for run in (runs["east"], runs["west"]):
        assert run.config["mtls-mesh:defaultInboundPolicy"] == "deny"
        assert run.config["mtls-mesh:networkPolicies"] == "true" and run.config["mtls-mesh:networkPolicyEgress"] == "true"
    egress = [o for o in runs["west"].objects("NetworkPolicy") if o["metadata"]["name"].endswith("-gateways")]
    assert egress and {rule["to"][0]["ipBlock"]["cidr"] for o in egress for rule in o["spec"]["egress"]} == {
        f"{a}/32" for a in runs["east"].exports[contract.OUTPUT]["gatewayAddresses"]}


def test_without_network_policies_the_mesh_alone_admits_exactly_the_edges(environment):
    with in_example():
        east = run_program("dev-east", set_config={"networkPolicies": False})
        west = run_program("dev-west", set_config={"networkPolicies": False}, references={"dev-east": as_referenced(east)})
        again = run_program("dev-east", set_config={"networkPolicies": False}, previous_outputs=east.exports,
                            references={"dev-west": as_referenced(west)})
    assert not again.objects("NetworkPolicy") and not west.objects("NetworkPolicy")
    check_step(environment, {"east": again, "west": west}, {"east": again, "west": west},
               BOTH_WAYS)


def test_the_checkers_gateway_is_the_one_the_registered_release_renders(runs, needs_shared):
    """What registered_views takes from the release's values (the gateway's identity, whether it keeps the callers'
    addresses, its pods' labels, and the chart's own `any-meshed`/`source-cluster` under the program's patches) is what
    the pinned chart renders from those values."""
    from harness import plain
    from multicluster_access import CHART_GATEWAY_IDENTITIES, CHART_GATEWAY_NETWORKS, GATEWAY_POD_LABELS
    from tools import render_chart

    run = runs["east again"]
    values = plain(run.named("multicluster-release").inputs["values"])
    rendered = {(o["kind"], o["metadata"]["name"]): o for o in render_chart(mc.CHART, mc.CHART, mc.NAMESPACE, values)}
    authorization = rendered[("AuthorizationPolicy", mc.GATEWAY_AUTHORIZATION)]["spec"]
    assert authorization["targetRef"]["name"] == mc.GATEWAY_SERVER
    assert {(r["kind"], r["name"]) for r in authorization["requiredAuthenticationRefs"]} == {
        ("MeshTLSAuthentication", mc.GATEWAY_IDENTITIES), ("NetworkAuthentication", mc.GATEWAY_NETWORKS)}
    assert tuple(rendered[("MeshTLSAuthentication", mc.GATEWAY_IDENTITIES)]["spec"]["identities"]) == \
        CHART_GATEWAY_IDENTITIES
    assert tuple(n["cidr"] for n in rendered[("NetworkAuthentication", mc.GATEWAY_NETWORKS)]["spec"]["networks"]) == \
        CHART_GATEWAY_NETWORKS
    assert rendered[("Deployment", mc.GATEWAY_NAME)]["spec"]["template"]["metadata"]["labels"] == GATEWAY_POD_LABELS
    assert rendered[("Deployment", mc.GATEWAY_NAME)]["spec"]["template"]["spec"]["serviceAccountName"] == mc.GATEWAY_NAME
    views, _ = registered_views({"east": run.registrations}, Environment().applied({}), {})
    gateway = views["east"].gateway
    assert gateway.identity == mc.identity(mc.GATEWAY_NAME, mc.NAMESPACE, values["identityTrustDomain"])
    assert gateway.keeps_source == (rendered[("Service", mc.GATEWAY_NAME)]["spec"].get("externalTrafficPolicy") ==
                                    "Local") is True
    assert ("ServiceAccount", mc.remote_access_account("west")) in rendered


# ---- a sharded east ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def sharded_example(tmp_path: Path):
    """The example with east a platform (policyShards) whose `payments` namespace (billing, ledger: every callee
    across the clusters) is the shard dev-east-payments's."""
    graph = yaml.safe_load((EXAMPLE / "services.yaml").read_text())
    graph["namespaces"]["payments"] = {"shard": "payments"}
    (tmp_path / "services.yaml").write_text(yaml.safe_dump(graph))
    for stack in STACKS.values():
        document = yaml.safe_load((EXAMPLE / f"Pulumi.{stack}.yaml").read_text())
        document["config"]["mtls-mesh:serviceGraph"] = str(tmp_path / "services.yaml")
        document["config"]["mtls-mesh:allowFilesOutsideProject"] = True
        if stack == "dev-east":
            document["config"]["mtls-mesh:policyShards"] = True
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
    (tmp_path / "Pulumi.dev-east-payments.yaml").write_text(yaml.safe_dump({"config": {
        "mtls-mesh:platformStack": "dev-east", "mtls-mesh:shard": "payments"}}))
    saved = stack_files.STACKS_DIR
    stack_files.STACKS_DIR = tmp_path
    try:
        yield Environment(tmp_path)
    finally:
        stack_files.STACKS_DIR = saved


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sharded")
    with sharded_example(directory) as environment:
        east = run_program("dev-east")
        shard = run_program("dev-east-payments", platform_outputs=east.exports)
        west = run_program("dev-west", references={"dev-east": as_referenced(east)})
        again = run_program("dev-east", previous_outputs=east.exports, references={"dev-west": as_referenced(west)})
        shard_again = run_program("dev-east-payments", platform_outputs=again.exports)
    return environment, {"east": again, "shard": shard_again, "west": west}


def test_a_sharded_platform_and_its_shard_together_admit_exactly_the_edges(sharded):
    environment, runs = sharded
    east, shard, west = runs["east"], runs["shard"], runs["west"]
    # The shard registers the callees' policy (their Servers, the remote identities, the cross-cluster
    # NetworkPolicies); the platform none of it, but the gateway's.
    assert {o["metadata"]["namespace"] for o in shard.objects("Server")} == {"payments"}
    assert "payments" not in {o["metadata"]["namespace"] for o in east.objects("Server")}
    assert any(o["metadata"]["name"] == "mtls-mesh-billing-multicluster" for o in shard.objects("NetworkPolicy"))
    registered = {"east": [*east.registrations, *shard.registrations], "west": west.registrations}
    facts = environment.applied({"east": contract_of(east), "west": contract_of(west)})
    views, problems = registered_views(registered, facts, environment.exports)
    assert problems == []
    expected = expected_calls(environment, BOTH_WAYS)
    for network in (False, True):
        found, _ = registered_calls(registered, facts, environment.exports, environment.graph, network=network)
        assert found == expected, {"extra": found - expected, "missing": expected - found}
    # The platform alone admits none of the callees' calls: their policy is the shard's.
    alone, _ = registered_calls({"east": east.registrations, "west": west.registrations}, facts, environment.exports,
                                environment.graph)
    assert not [c for c in alone if c[3] == "east"]


# ---- the access matrix a reviewer reads ------------------------------------------------------------------------------

def matrix_cross_cluster(matrix: dict) -> set[tuple[str, str]]:
    """(row, caller) for each cross-cluster caller a matrix names: `<ns>/<svc>@<cluster>[ via gateway]`."""
    return {(row, name) for row, entry in matrix.items() for name in entry.get("allowed", []) if "@" in name}


def checker_cross_cluster(environment: Environment, cluster: str, registrations, graph=None,
                          exports=None) -> set[tuple[str, str]]:
    """What the checker finds one cluster's registrations admitting from every other cluster's callers, named as the
    matrix names them: the callee side alone (the matrix says who may call, whether or not the caller linked yet), at
    the mesh layer (the matrix is the policy's)."""
    applied = environment.applied({})
    views, _ = registered_views({cluster: registrations}, applied, exports if exports is not None else
                                environment.exports)
    networks = {c: a.networks for c, a in applied.items()}
    graph = graph if graph is not None else environment.graph
    found = set()
    for caller, caller_cluster, callee, callee_cluster, port, path in calls(views, networks, graph, network=False,
                                                                            links=False):
        name = f"{graph.services[caller].namespace}/{caller}@{caller_cluster}"
        found.add((f"{graph.services[callee].namespace}/{callee}:{port}",
                   f"{name} via gateway" if path == THROUGH_GATEWAY else name))
    return found


def check_matrix(environment: Environment, cluster: str, registrations, matrix: dict) -> None:
    # The canary's rows are checked against the canary's own graph (test_the_canary_rows_of_the_matrix_name_...).
    in_matrix = {(row, name) for row, name in matrix_cross_cluster(matrix) if not row.startswith("mtls-mesh-verify/")}
    admitted = checker_cross_cluster(environment, cluster, registrations)
    assert in_matrix == admitted, {"only in the matrix": in_matrix - admitted, "not in the matrix": admitted - in_matrix}


@pytest.mark.parametrize("name", ["east first preview", "east", "west first preview", "west", "east again, preview",
                                  "east again"])
def test_each_stacks_access_matrix_names_exactly_the_cross_cluster_callers_it_admits(environment, runs, name):
    run = runs[name]
    cluster = "east" if run.stack == "dev-east" else "west"
    check_matrix(environment, cluster, run.registrations, run.exports["accessMatrix"])
    if cluster == "east":
        rows = matrix_cross_cluster(run.exports["accessMatrix"])
        assert rows == {("payments/billing:grpc", "shop/checkout@west"),
                        ("payments/ledger:http", "analytics/reporter@west via gateway"),
                        ("mtls-mesh-verify/canary:http", "mtls-mesh-verify/verify-allowed@west")}


def test_a_sharded_stacks_matrices_together_name_exactly_what_they_admit(sharded):
    environment, runs = sharded
    east, shard = runs["east"], runs["shard"]
    assert {row for row, _ in matrix_cross_cluster(east.exports["accessMatrix"])} <= {"mtls-mesh-verify/canary:http"}, \
        "the platform's matrix leaves the shard's rows out (it keeps its own canary's)"
    merged = {**east.exports["accessMatrix"], **shard.exports["accessMatrix"]}
    check_matrix(environment, "east", [*east.registrations, *shard.registrations], merged)
    assert matrix_cross_cluster(merged)


def canary_graph(clusters=tuple(STACKS)):
    """The verification graph (plan/linkerd/verification.py) as every cluster stack runs it: the canary and its
    clients in every cluster, the canary exported (remote-discovery, multicluster_verification.exported_canary)."""
    from read.errors import Problems
    from read.graph import parse_graph
    from plan.linkerd import verification

    document = {"clusters": {c: {} for c in clusters}, "namespaces": {verification.NAMESPACE: {}}, "services": {}}
    for service in verification.verification_graph().services.values():
        entry = {"namespace": service.namespace, "ports": [{"name": p.name, "port": p.number, "protocol": p.protocol}
                                                           for p in service.ports]}
        allowed = [e[0] for e in verification.verification_graph().edges() if e[1] == service.key]
        if allowed:
            entry.update(allow=sorted(set(allowed)), export=mc.REMOTE_DISCOVERY)
        document["services"][service.key] = entry
    problems = Problems()
    graph = parse_graph(document, "verification", problems)
    assert graph is not None, problems.items
    return graph


def registered_export_labels(registrations) -> dict[tuple[str, str], dict[str, str]]:
    """The export labels of the Services a stack registers itself (the canary's)."""
    found = {}
    for registration in registrations:
        # The verification component registers the canary's Service by its apiVersion and kind (components/k8s.py).
        if registration.is_kubernetes and registration.object().get("kind") == "Service":
            meta = registration.object()["metadata"]
            labels = {k: v for k, v in meta.get("labels", {}).items() if k in (mc.EXPORTED, mc.FEDERATED)}
            if labels:
                found[(meta["namespace"], meta["name"])] = labels
    return found


@pytest.mark.parametrize("name", STEPS)
def test_the_verification_canary_admits_exactly_verify_allowed_across_each_link(environment, runs, name):
    """The canary every cluster stack exports for its peers' link checks: reached across a Link by exactly
    verify-allowed (never verify-other), at both layers, from the registrations and the labels registered on it."""
    check_canary(environment, *step(runs, name))


def check_canary(environment: Environment, registered: dict, applied: dict, linked: set) -> None:
    graph = canary_graph()
    facts = environment.applied({c: contract_of(r) for c, r in applied.items()})
    registrations = {c: r.registrations for c, r in registered.items()}
    exports = {c: registered_export_labels(r) for c, r in registrations.items()}
    assert all(exports.values())
    expected = expected_calls(environment, linked, graph)
    assert {call[0] for call in expected} <= {"verify-allowed"}
    for network in (False, True):
        found, problems = registered_calls(registrations, facts, exports, graph, network=network)
        assert problems == [] and found == expected, {"extra": found - expected, "missing": expected - found}


@pytest.mark.parametrize("name", ["east again", "west"])
def test_the_canary_rows_of_the_matrix_name_the_peers_clients(environment, runs, name):
    run = runs[name]
    cluster = "east" if run.stack == "dev-east" else "west"
    graph = canary_graph()
    admitted = checker_cross_cluster(environment, cluster, run.registrations, graph,
                                     {cluster: registered_export_labels(run.registrations)})
    assert admitted, "the checker finds the peer's verify-allowed admitted"
    canary_rows = {(row, n) for row, n in matrix_cross_cluster(run.exports["accessMatrix"])
                   if row.startswith("mtls-mesh-verify/")}
    assert canary_rows == admitted


def review_checkout(root: Path) -> Path:
    """A checkout whose stacks/ holds the example's cluster stacks, as a repository deploying them would."""
    root.mkdir()
    for name in ("Pulumi.yaml", "schema"):
        source = PROJECT_DIR / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, root / name)
    (root / "examples").mkdir()
    shutil.copytree(EXAMPLE, root / "examples" / "multicluster")
    (root / "stacks").mkdir()
    for stack in STACKS.values():
        shutil.copy2(EXAMPLE / f"Pulumi.{stack}.yaml", root / "stacks" / f"Pulumi.{stack}.yaml")
    return root


def test_the_review_comment_shows_each_cluster_stacks_matrix_as_the_stack_exports_it(runs, tmp_path):
    """deploy/review_matrices.py compiles the cluster stacks of a checkout (their peers' stack files beside them) to
    the matrices `up` exports, and deploy/review_comment.py shows the cross-cluster rows as they are."""
    from deploy import review_comment, review_matrices

    head = review_checkout(tmp_path / "head")
    out = tmp_path / "review"
    for stack in STACKS.values():
        assert review_matrices.main(["--stack", stack, "--head", str(head), "--base", str(head), "--outcome", "success",
                                     "--out", str(out / f"{stack}.json")]) == 0
    reviews = {stack: json.loads((out / f"{stack}.json").read_text()) for stack in STACKS.values()}
    for stack, run in (("dev-east", runs["east again"]), ("dev-west", runs["west"])):
        assert reviews[stack]["problem"] is None, reviews[stack]["problem"]
        assert reviews[stack]["accessMatrix"] == run.exports["accessMatrix"]
    comment = review_comment.render(*review_comment.read_dir(out))
    merged = comment.split("#### dev-east\n", 1)[1]
    for row, caller in matrix_cross_cluster(reviews["dev-east"]["accessMatrix"]):
        line = next(line for line in merged.splitlines() if line.startswith(f"| {review_comment._cell(row)} |"))
        assert caller in line
    assert "analytics/reporter@west via gateway" in comment


def test_a_change_to_a_peers_stack_file_is_a_change_of_the_stacks_inputs(tmp_path):
    """The cluster stack compiles its peers' stack files (their networks become its gateway's source networks): a
    pull request changing only the peer's file changes this stack's plan, and is previewed."""
    from deploy.changed_stacks import choose

    base = review_checkout(tmp_path / "base")
    head = tmp_path / "head"
    shutil.copytree(base, head)
    west_file = head / "stacks" / "Pulumi.dev-west.yaml"
    document = yaml.safe_load(west_file.read_text())
    document["config"]["mtls-mesh:clusterNetworks"] = ["10.3.0.0/16"]
    west_file.write_text(yaml.safe_dump(document))
    selected = {c.stack: c for c in choose(base, head) if c.selected}
    assert "dev-east" in selected, "east's gateway admits west's networks: its plan changed"
    assert "compile" not in selected["dev-east"].reason


# ---- the checks fail when the program is wrong ------------------------------------------------------------------------

def widen_gateway(monkeypatch):
    """The gateway's `any-meshed` admits frontend too, which no gateway export allows."""
    original = mc.gateway_policy_objects

    def widened(cluster, chart_version):
        objects = original(cluster, chart_version)
        for obj in objects:
            if obj["kind"] == "MeshTLSAuthentication":
                obj["spec"]["identities"] = [*obj["spec"]["identities"],
                                             mc.identity("frontend", "web", cluster.trust_domain)]
        return objects
    monkeypatch.setattr(mc, "gateway_policy_objects", widened)


def drop_remote_identity(monkeypatch):
    """The callee's Server no longer admits what its cross-cluster callers arrive as (ledger: the gateway's identity)."""
    import plan.mesh

    original = plan.mesh.remote_identities

    def dropped(settings, cluster):
        return {key: ids for key, ids in original(settings, cluster).items() if key[0] != "ledger"}
    monkeypatch.setattr(plan.mesh, "remote_identities", dropped)


def link_early(monkeypatch):
    """A Link to every peer in clusterPeers, applied or not (with what its stack file says, and no token)."""
    import pulumi

    from components import linkerd_multicluster

    original = linkerd_multicluster.read_peer_exports

    def eager(peer_stacks, parent=None):
        exports = original(peer_stacks, parent)
        me = pulumi.get_stack().removeprefix("dev-")
        for peer, export in exports.items():
            if export.plain is None:
                settings = settings_of(export.stack)
                export.plain = {"cluster": peer, "trustDomain": settings.trust_domain, "linkerdNamespace": "linkerd",
                                "clusterDomain": "cluster.local", "apiServer": settings.multicluster.api_server,
                                "apiServerCa": "", "gatewayAddresses": [],
                                "gatewayIdentity": mc.gateway_identity(settings.trust_domain),
                                "networks": list(settings.policy.cluster_networks), contract.TOKENS: [me]}
                export.output = pulumi.Output.from_input({contract.TOKENS: {me: ""}})
        return exports
    monkeypatch.setattr(linkerd_multicluster, "read_peer_exports", eager)


def test_a_widened_gateway_policy_fails_the_access_and_matrix_checks(environment, runs, monkeypatch):
    widen_gateway(monkeypatch)
    with in_example():
        east = run_program("dev-east", previous_outputs=runs["east"].exports,
                           references={"dev-west": as_referenced(runs["west"])})
        preview = run_program("dev-east", preview=True, state=runs["east"], previous_outputs=runs["east"].exports,
                              references={"dev-west": as_referenced(runs["west"])})
    for run in (east, preview):
        with pytest.raises(AssertionError, match="frontend"):
            check_step(environment, {"east": run, "west": runs["west"]}, {"east": east, "west": runs["west"]}, BOTH_WAYS)
        with pytest.raises(AssertionError, match="frontend"):
            check_matrix(environment, "east", run.registrations, run.exports["accessMatrix"])


def test_a_dropped_remote_identity_fails_the_access_check(environment, runs, monkeypatch, tmp_path):
    drop_remote_identity(monkeypatch)
    with in_example():
        east = run_program("dev-east", previous_outputs=runs["east"].exports,
                           references={"dev-west": as_referenced(runs["west"])})
    with pytest.raises(AssertionError, match=r"'extra': set\(\), 'missing': \{\('reporter', 'west', 'ledger'"):
        check_step(environment, {"east": east, "west": runs["west"]}, {"east": east, "west": runs["west"]},
                   BOTH_WAYS)
    # The matrix follows the objects (it says what they admit), so it is the access check that sees this one.
    check_matrix(environment, "east", east.registrations, east.exports["accessMatrix"])
    with sharded_example(tmp_path) as sharded_environment:
        platform = run_program("dev-east", references={"dev-west": as_referenced(runs["west"])})
        shard = run_program("dev-east-payments", platform_outputs=platform.exports)
    registered = {"east": [*platform.registrations, *shard.registrations], "west": runs["west"].registrations}
    facts = sharded_environment.applied({"east": contract_of(platform), "west": contract_of(runs["west"])})
    found, _ = registered_calls(registered, facts, sharded_environment.exports, sharded_environment.graph)
    assert found != expected_calls(sharded_environment, BOTH_WAYS)


def test_a_link_before_its_peer_applied_fails_the_bring_up_check(environment, monkeypatch):
    link_early(monkeypatch)
    with in_example():
        east = run_program("dev-east")
        preview = run_program("dev-west", preview=True, references={"dev-east": {}})
    assert [o["metadata"]["name"] for o in east.objects("Link")] == ["west"]
    with pytest.raises(AssertionError, match="west has not applied"):
        check_step(environment, {"east": east}, {"east": east}, set())
    with pytest.raises(AssertionError, match="east has not applied"):
        check_step(environment, {"west": preview}, {}, set())
    with pytest.raises(AssertionError, match="west has not applied"):
        check_canary(environment, {"east": east}, {"east": east}, set())
