"""Multi-cluster Linkerd from settings and the graph (#33): the cluster settings checked against the peers' stack files,
the graph's `clusters:`/`export:` placement, the per-cluster compile (plan/linkerd/multicluster.py `Cluster`, the
namespaces a cluster runs, the callee-side authorization of cross-cluster callers), and the exact cross-cluster access
computed from every cluster's emitted objects (tests/conformance.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT_DIR
from read import stack_files
from read.errors import SettingsError

EXAMPLE_DIR = PROJECT_DIR / "examples" / "multicluster"
GRAPH = "examples/multicluster/services.yaml"

BASE = {
    "environment": "dev", "kubeContext": "kind-mesh", "pkiMode": "self-signed", "protectPki": False,
    "trustAnchor": "dev-1", "trustAnchorValidity": "8760h", "defaultInboundPolicy": "audit",
    "serviceGraph": GRAPH,
}


def write_stack(directory: Path, stack: str, **settings: Any) -> None:
    config = {f"mtls-mesh:{key}": value for key, value in {**BASE, **settings}.items()}
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))


def two_clusters(directory: Path, east: dict | None = None, west: dict | None = None) -> None:
    write_stack(directory, "dev-east", **{"cluster": "east", "clusterPeers": ["dev-west"],
                                          "clusterApiServer": "https://api.east.example:6443",
                                          "clusterNetworks": ["10.1.0.0/16"], **(east or {})})
    write_stack(directory, "dev-west", **{"cluster": "west", "clusterPeers": ["dev-east"], "meshRootStack": "dev-east",
                                          "clusterApiServer": "https://api.west.example:6443",
                                          "clusterNetworks": ["10.2.0.0/16"], **(west or {})})


def load(directory: Path, stack: str):
    raw, secrets = stack_files.read_stack_file(directory / f"Pulumi.{stack}.yaml", project_dir=PROJECT_DIR)
    return stack_files.load_stack_settings(raw, stack, secret_keys=secrets, stacks_dir=directory)


def problems(directory: Path, stack: str) -> dict[str, str]:
    with pytest.raises(SettingsError) as raised:
        load(directory, stack)
    return {p.where: f"{p.what} | {p.fix}" for p in raised.value.problems}


# ---- settings --------------------------------------------------------------------------------------------------

def test_a_cluster_stack_reads_its_peers_from_their_stack_files(tmp_path):
    two_clusters(tmp_path)
    west = load(tmp_path, "dev-west").multicluster
    assert west.cluster == "west" and west.mesh_root_stack == "dev-east" and not west.owns_mesh_root
    [peer] = west.peers
    assert (peer.stack, peer.cluster, peer.api_server, peer.networks) == (
        "dev-east", "east", "https://api.east.example:6443", ("10.1.0.0/16",))
    assert load(tmp_path, "dev-east").multicluster.owns_mesh_root


def test_a_single_cluster_stack_has_no_multicluster_settings():
    raw, _ = stack_files.read_stack_file(stack_files.stack_file("dev"))
    assert stack_files.load_stack_settings(raw, "dev").multicluster is None


@pytest.mark.parametrize("west,where,words", [
    ({"environment": "staging"}, "clusterPeers[0]", "sets environment"),
    ({"trustDomain": "west.example"}, "clusterPeers[0]", "sets trustDomain"),
    ({"trustAnchor": "dev-2"}, "clusterPeers[0]", "sets trustAnchor"),
    ({"cluster": "east"}, "clusterPeers[0]", "is the cluster of this stack too"),
    ({"clusterPeers": []}, "clusterPeers[0]", "does not list this stack"),
    ({"meshRootStack": ""}, "clusterPeers[0]", "owner of its mesh root"),
    ({"clusterApiServer": ""}, "clusterPeers[0]", "sets no https:// clusterApiServer"),
])
def test_a_peer_that_disagrees_is_refused_naming_the_key_and_its_file(tmp_path, west, where, words):
    two_clusters(tmp_path, west=west)
    found = problems(tmp_path, "dev-east")
    assert words in found[f"mtls-mesh:{where}"], found
    assert "Pulumi.dev-west.yaml" in found[f"mtls-mesh:{where}"]


def test_a_peer_whose_cluster_the_graph_does_not_declare_is_refused_on_its_key(tmp_path):
    """The peer's file is what is wrong: one problem on clusterPeers[0] naming its file and the graph's clusters, not
    the graph's cross-cluster edges blamed as callers of a cluster that is "not linked"."""
    two_clusters(tmp_path, west={"cluster": "north"})
    found = problems(tmp_path, "dev-east")
    assert list(found) == ["mtls-mesh:clusterPeers[0]"], found
    assert "sets cluster 'north', which is not a cluster of" in found["mtls-mesh:clusterPeers[0]"], found
    assert "Pulumi.dev-west.yaml" in found["mtls-mesh:clusterPeers[0]"]


@pytest.mark.parametrize("listed, shown", [("dev-east", "'dev-east'"), ({"dev-east": True}, "'{\"dev-east\":true}'")])
def test_a_peer_whose_cluster_peers_are_no_list_is_refused_as_such(tmp_path, listed, shown):
    """`clusterPeers: dev-east` names this stack, just not as a list: "does not list this stack" would be wrong."""
    two_clusters(tmp_path, west={"clusterPeers": listed})
    found = problems(tmp_path, "dev-east")
    assert list(found) == ["mtls-mesh:clusterPeers[0]"], found
    problem = found["mtls-mesh:clusterPeers[0]"]
    assert f"its clusterPeers in its stack file (Pulumi.dev-west.yaml) is {shown}, not a list of stack names" \
        in problem, problem
    assert "does not list this stack" not in problem and "clusterPeers: [dev-east]" in problem


@pytest.mark.parametrize("east,where,words", [
    ({"clusterPeers": ["dev-north"]}, "clusterPeers[0]", "is not there"),
    ({"clusterPeers": ["dev-east"]}, "clusterPeers[0]", "is this stack itself"),
    ({"clusterPeers": ["dev-west", "dev-west"]}, "clusterPeers[1]", "listed twice"),
    ({"clusterApiServer": ""}, "clusterApiServer", "is required with clusterPeers"),
    ({"clusterApiServer": "http://api.east.example"}, "clusterApiServer", "plain http"),
    ({"meshRootStack": "dev-east"}, "meshRootStack", "is this stack itself"),
    ({"mesh": "istio"}, "cluster", "mesh is istio"),
    ({"cluster": "East"}, "cluster", "is not a cluster name"),
])
def test_bad_cluster_settings_are_refused_one_problem_each(tmp_path, east, where, words):
    two_clusters(tmp_path, east=east)
    found = problems(tmp_path, "dev-east")
    assert words in found.get(f"mtls-mesh:{where}", ""), found


def test_the_mesh_root_stack_must_own_the_root(tmp_path):
    two_clusters(tmp_path, east={"meshRootStack": "dev-west"})
    found = problems(tmp_path, "dev-west")
    assert "does not own the mesh root" in found["mtls-mesh:meshRootStack"], found


@pytest.mark.parametrize("key,value", [("clusterPeers", ["dev-west"]), ("meshRootStack", "dev-west"),
                                       ("clusterApiServer", "https://api.example:6443")])
def test_cluster_settings_without_a_cluster_are_refused(tmp_path, key, value):
    write_stack(tmp_path, "dev-solo", **{key: value})
    found = problems(tmp_path, "dev-solo")
    assert "is set, but cluster is not" in found[f"mtls-mesh:{key}"]


# ---- the graph ---------------------------------------------------------------------------------------------------

def example_graph() -> dict:
    return yaml.safe_load((EXAMPLE_DIR / "services.yaml").read_text())


def graph_problems(document: dict) -> dict[str, str]:
    from read.errors import Problems
    from read.graph import parse_graph

    found = Problems()
    graph = parse_graph(document, "services.yaml", found)
    assert (graph is None) == bool(found.items)
    return {p.where.partition(": ")[2]: f"{p.what} | {p.fix}" for p in found.items}


def test_the_example_places_each_service():
    from read.errors import Problems
    from read.graph import parse_graph

    graph = parse_graph(example_graph(), "services.yaml", Problems())
    assert graph.clusters == ("east", "west")
    assert graph.services["checkout"].clusters == ("east", "west")  # no clusters: every cluster
    assert (graph.services["billing"].clusters, graph.services["billing"].export) == (("east",), "remote-discovery")
    assert graph.services["frontend"].runs_in("west") and not graph.services["frontend"].runs_in("east")
    assert graph.services["frontend"].runs_in("")  # a single-cluster stack runs everything


def test_a_caller_away_from_an_unexported_callee_is_refused_at_the_allow_entry():
    document = example_graph()
    del document["services"]["billing"]["export"]
    found = graph_problems(document)
    assert "checkout runs in cluster west, where billing does not run" in found["services.billing.allow[0]"]
    assert "Export billing" in found["services.billing.allow[0]"]


def _mirror_clash(d: dict) -> None:
    # billing (payments, exported from east) is mirrored as billing-east in west, where this service runs.
    d["services"]["billing-east"] = {"namespace": "payments", "clusters": ["west"],
                                     "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]}


@pytest.mark.parametrize("edit,where,words", [
    (_mirror_clash, "services.billing.export", "its mirror payments/billing-east would be the Service of billing-east"),
    (lambda d: d["services"]["ledger"].update(export="federated") or d["services"].update(
        {"ledger-federated": {"namespace": "payments", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]}}),
     "services.ledger.export", "its mirror payments/ledger-federated would be the Service of ledger-federated"),
    (lambda d: d["clusters"].update({"federated": {}}), "clusters.federated", "names of Linkerd's federated Services"),
    (lambda d: d["services"].update({"b" * 60: {"namespace": "payments", "clusters": ["east"], "export": "gateway",
                                                "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]}}),
     f"services.{'b' * 60}.export", "is longer than a Service name's 63 characters"),
])
def test_a_mirror_linkerd_cannot_make_or_would_clash_is_refused_at_the_export(edit, where, words):
    """Linkerd names mirrors <name>-<target cluster> and federated Services <name>-federated, in the exported
    Service's namespace (cluster_watcher.go mirrorServiceName, federatedServiceName)."""
    document = example_graph()
    edit(document)
    found = graph_problems(document)
    assert words in found.get(where, ""), found


@pytest.mark.parametrize("edit,where,words", [
    (lambda d: d["services"]["frontend"].update(clusters=["north"]), "services.frontend.clusters[0]",
     "is not declared under 'clusters'"),
    (lambda d: d.pop("clusters") and d["services"]["checkout"].update(export="gateway"), "services.checkout.export",
     "needs the graph's clusters"),
    (lambda d: d["services"]["ledger"].update(meshed=False), "services.ledger.export", "cannot be exported"),
    (lambda d: d["clusters"].update({"Bad_Name": {}}), "clusters.Bad_Name", "is not a cluster name"),
])
def test_bad_placement_is_refused_with_its_graph_path(edit, where, words):
    document = example_graph()
    edit(document)
    if where == "services.checkout.export":
        for service in document["services"].values():
            service.pop("clusters", None)
            service.pop("export", None) if service is not document["services"]["checkout"] else None
    found = graph_problems(document)
    assert words in found.get(where, ""), found


def test_a_graph_split_per_team_declares_its_clusters_in_the_files(tmp_path):
    from read.errors import Problems
    from read.fragments import load_service_graph

    document = example_graph()
    teams = {"storefront": ("web", "shop", "analytics"), "payments": ("payments",)}
    for team, namespaces in teams.items():
        part = {"owners": [f"@example-org/{team}"], "clusters": {"east": {}, "west": {}} if team == "payments" else
                {"west": {}},
                "namespaces": {ns: {} for ns in namespaces},
                "services": {k: v for k, v in document["services"].items() if v["namespace"] in namespaces}}
        (tmp_path / f"{team}.yaml").write_text(yaml.safe_dump(part))
    problems = Problems()
    graph = load_service_graph(tmp_path, "services.d", problems, tmp_path)
    assert graph is not None, [str(p) for p in problems.items]
    assert set(graph.clusters) == {"east", "west"} and graph.services["ledger"].export == "gateway"


# ---- the compile step and the exact cross-cluster access ---------------------------------------------------------

def example_plans(directory: Path = EXAMPLE_DIR, stacks=("dev-east", "dev-west")):
    from plan.mesh import compile_mesh

    plans = {}
    for stack in stacks:
        settings = load(directory, stack)
        plans[settings.multicluster.cluster] = compile_mesh(settings)
    return plans, settings


def test_a_cluster_runs_its_services_and_the_namespaces_its_mirrors_need():
    plans, _ = example_plans()
    assert set(plans["east"].namespaces) == {"shop", "payments"}
    # payments holds no west service, but frontend... no: checkout@west calls billing: its mirror lands in payments.
    assert set(plans["west"].namespaces) == {"web", "shop", "payments", "analytics"}
    servers = {o["metadata"]["name"] for o in plans["west"].policy_objects() if o["kind"] == "Server"}
    assert not any(name.startswith(("billing", "ledger")) for name in servers)


def test_the_callee_side_admits_cross_cluster_callers_by_the_identity_the_mode_carries():
    plans, _ = example_plans()
    east = plans["east"]
    identities = {o["metadata"]["name"]: set(o["spec"]["identities"]) for o in east.policy_objects()
                  if o["kind"] == "MeshTLSAuthentication" and o["metadata"]["namespace"] == "payments"}
    gateway = "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
    assert identities["ledger"] == {gateway, "billing.payments.serviceaccount.identity.linkerd.cluster.local"}
    assert "checkout.shop.serviceaccount.identity.linkerd.cluster.local" in identities["billing"]
    [any_meshed] = [o for o in east.multicluster.gateway_policy if o["kind"] == "MeshTLSAuthentication"]
    assert any_meshed["spec"]["identities"] == ["reporter.analytics.serviceaccount.identity.linkerd.cluster.local"]
    assert east.access_matrix["payments/ledger:http"]["allowed"] == ["analytics/reporter@west via gateway",
                                                                     "payments/billing"]
    assert "shop/checkout@west" in east.access_matrix["payments/billing:grpc"]["allowed"]
    assert "shop/checkout@west" not in east.access_matrix["payments/billing:admin"].get("allowed", [])


def test_the_plan_gives_registration_what_it_needs():
    plans, _ = example_plans()
    east, west = plans["east"].multicluster, plans["west"].multicluster
    assert east.peer_stacks == {"west": "dev-west"} and west.mesh_root_stack == "dev-east"
    assert east.chart_values["gateway"] == {"enabled": True, "loadBalancerSourceRanges": ["10.2.0.0/16"],
                                            "serviceExternalTrafficPolicy": "Local"}
    [link] = [o for o in west.links if o["kind"] == "Link"]
    assert link["spec"]["gatewayAddress"].stack == "dev-east"  # a marker, filled from east's outputs
    secrets = [o for o in west.links if o["kind"] == "Secret"]
    assert len(secrets) == 2 and all(s["data"]["kubeconfig"].server == "https://api.east.example.internal:6443"
                                     for s in secrets)
    assert east.exports == {("payments", "billing"): {"mirror.linkerd.io/exported": "remote-discovery"},
                            ("payments", "ledger"): {"mirror.linkerd.io/exported": "true"}}


def check_exact_access(plans, graph, trust_domain="cluster.local", network=True):
    """The cross-cluster calls the objects admit (mesh layer, and with `network` the NetworkPolicies too) are the
    graph's cross-cluster edges; with `network`, each exported callee's NetworkPolicies admit exactly the sources its
    cross-cluster callers come from (tests/multicluster_access.py)."""
    from multicluster_access import cross_cluster_access, graph_cross_edges, graph_network_sources, network_sources

    peers = {cluster: [p.name for p in plan.multicluster.cluster.peers] for cluster, plan in plans.items()}
    computed = cross_cluster_access(plans, graph, trust_domain, network=network)
    expected = graph_cross_edges(graph, peers)
    assert computed == expected, {"extra": computed - expected, "missing": expected - computed}
    if network:
        sources = network_sources(plans, graph)
        wanted = graph_network_sources(graph, plans)
        assert sources == {key: wanted.get(key, set()) for key in sources}, sources
    return computed


def test_the_objects_admit_exactly_the_graphs_cross_cluster_edges():
    plans, settings = example_plans()
    computed = check_exact_access(plans, settings.graph)
    assert ("reporter", "west", "ledger", "east", "http") in computed
    assert ("checkout", "west", "billing", "east", "grpc") in computed
    assert not any(edge[2] == "billing" and edge[4] == "admin" for edge in computed)


def test_the_exact_access_check_can_fail():
    """Widen the gateway's policy by hand: the check sees a caller the graph does not allow."""
    plans, settings = example_plans()
    east = plans["east"].multicluster
    [any_meshed] = [o for o in east.gateway_policy if o["kind"] == "MeshTLSAuthentication"]
    any_meshed["spec"]["identities"].append("frontend.web.serviceaccount.identity.linkerd.cluster.local")
    with pytest.raises(AssertionError, match="frontend"):
        check_exact_access(plans, settings.graph, network=False)
    # frontend's NetworkPolicies (west, deny, networkPolicyEgress) still keep it from east's gateway.
    check_exact_access(plans, settings.graph)


def test_a_gateway_export_that_would_need_per_caller_policy_is_refused(tmp_path):
    document = example_graph()
    # frontend@west through the gateway to ledger, which allows only reporter from west on a second port.
    document["services"]["ledger"]["ports"].append({"name": "admin", "port": 9000, "protocol": "HTTP/1"})
    document["services"]["ledger"]["allow"] = ["billing", "reporter", {"service": "frontend", "ports": ["http"]}]
    document["services"]["ledger"]["allow"][1] = {"service": "reporter", "ports": ["admin"]}
    (tmp_path / "services.yaml").write_text(yaml.safe_dump(document))
    two_clusters(tmp_path, east={"serviceGraph": str(tmp_path / "services.yaml"), "allowFilesOutsideProject": True},
                 west={"serviceGraph": str(tmp_path / "services.yaml"), "allowFilesOutsideProject": True})
    from plan.mesh import compile_mesh

    with pytest.raises(SettingsError) as raised:
        compile_mesh(load(tmp_path, "dev-east"))
    found = [p for p in raised.value.problems if p.where.endswith("services.ledger.export")]
    assert found and all("remote-discovery" in p.fix and "gateway" in p.what for p in found)
    assert any("frontend" in p.what and "'admin'" in p.what for p in found)


def test_a_shard_of_a_cluster_platform_follows_its_platforms_cluster(tmp_path):
    document = example_graph()
    document["namespaces"]["payments"] = {"shard": "payments"}
    (tmp_path / "services.yaml").write_text(yaml.safe_dump(document))
    graph = {"serviceGraph": str(tmp_path / "services.yaml"), "allowFilesOutsideProject": True}
    two_clusters(tmp_path, east={**graph, "policyShards": True}, west={**graph, "policyShards": True})
    (tmp_path / "Pulumi.dev-east-payments.yaml").write_text(yaml.safe_dump({"config": {
        "mtls-mesh:platformStack": "dev-east", "mtls-mesh:shard": "payments"}}))
    shard = load(tmp_path, "dev-east-payments")
    assert shard.multicluster.cluster == "east" and shard.shard == "payments"
    from plan.mesh import compile_mesh

    plan = compile_mesh(shard)
    assert plan.multicluster is not None and "ledger" in {
        o["metadata"]["name"] for o in plan.namespaces["payments"].policy if o["kind"] == "MeshTLSAuthentication"}


# ---- generated graphs ------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st  # noqa: E402

CLUSTERS = ("east", "west", "north")
NAMES = ("alpha", "bravo", "charlie", "delta", "echo")


@st.composite
def placed_graphs(draw):
    clusters = CLUSTERS[:draw(st.integers(2, 3))]
    services = {}
    for index, name in enumerate(NAMES):
        placement = draw(st.lists(st.sampled_from(clusters), min_size=1, max_size=len(clusters), unique=True))
        export = draw(st.sampled_from((None, "remote-discovery", "federated", "gateway")))
        services[name] = {"namespace": f"ns{index % 3}", "clusters": placement,
                          "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"},
                                    {"name": "grpc", "port": 9090, "protocol": "gRPC"}]}
        if export:
            services[name]["export"] = export
    for name in NAMES:
        callers = draw(st.lists(st.sampled_from([n for n in NAMES if n != name]), max_size=3, unique=True))
        services[name]["allow"] = [c if draw(st.booleans()) else {"service": c, "ports": [draw(st.sampled_from(
            ("http", "grpc")))]} for c in callers]
    return {"clusters": {c: {} for c in clusters}, "namespaces": {"ns0": {}, "ns1": {}, "ns2": {}},
            "services": services}


@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
@given(document=placed_graphs(), egress=st.booleans())
def test_generated_graphs_admit_exactly_their_cross_cluster_edges(tmp_path_factory, document, egress):
    from hypothesis import assume
    from plan.mesh import compile_mesh

    directory = tmp_path_factory.mktemp("clusters")
    (directory / "services.yaml").write_text(yaml.safe_dump(document))
    clusters = list(document["clusters"])
    for index, cluster in enumerate(clusters):
        write_stack(directory, f"dev-{cluster}", cluster=cluster,
                    clusterPeers=[f"dev-{c}" for c in clusters if c != cluster],
                    clusterApiServer=f"https://api.{cluster}.example:6443", clusterNetworks=[f"10.{index}.0.0/16"],
                    serviceGraph=str(directory / "services.yaml"), allowFilesOutsideProject=True,
                    # deny, with NetworkPolicies: the exact check then holds at the mesh and the network layer.
                    defaultInboundPolicy="deny", kubeletNetworks=["10.250.0.0/24"], prometheusNetworks=[],
                    networkPolicyEgress=egress,
                    **({"meshRootStack": f"dev-{clusters[0]}"} if index else {}))
    plans = {}
    try:
        for cluster in clusters:
            plans[cluster] = compile_mesh(load(directory, f"dev-{cluster}"))
    except SettingsError as err:
        # Refused graphs say where and why (an unexported callee away from its caller, a gateway export needing
        # per-caller policy): each problem names a graph path.
        assert all("services." in p.where for p in err.problems), [str(p) for p in err.problems]
        assume(False)
    graph = load(directory, f"dev-{clusters[0]}").graph
    check_exact_access(plans, graph, network=False)
    check_exact_access(plans, graph)
