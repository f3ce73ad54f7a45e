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
