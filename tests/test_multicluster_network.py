"""Cross-cluster traffic at the network layer (#33, plan/linkerd/multicluster_network.py): exported services admit
exactly their cross-cluster callers' ports from exactly where those callers arrive (a peer's pod network, or this
cluster's gateway pods), callers reach exactly their callees' peers, the gateway's own NetworkPolicy; and the rollout
phases (a Server's accessPolicy) counted by the exact-access check (tests/multicluster_access.py), the gateway in an
audit namespace among them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, strategies as st

from conformance import validate_object
from multicluster_access import (cross_cluster_access, graph_cross_edges, graph_network_sources, network_objects,
                                 network_sources)
from plan.linkerd.multicluster_network import GatewayAddresses, fill_gateway_egress
from read.errors import SettingsError
from test_multicluster_graph import (check_exact_access, example_graph, example_plans, load, placed_graphs,
                                     write_stack)

DENY = {"defaultInboundPolicy": "deny", "kubeletNetworks": ["10.250.0.0/24"], "prometheusNetworks": []}


def stacks(directory: Path, east: dict | None = None, west: dict | None = None, graph: dict | None = None):
    """The example's two clusters, in deny, with settings changed per cluster (and another graph)."""
    directory.mkdir(parents=True, exist_ok=True)
    if graph is not None:
        (directory / "services.yaml").write_text(yaml.safe_dump(graph))
        own = {"serviceGraph": str(directory / "services.yaml"), "allowFilesOutsideProject": True}
        east, west = {**own, **(east or {})}, {**own, **(west or {})}
    write_stack(directory, "dev-east", **{**DENY, "cluster": "east", "clusterPeers": ["dev-west"],
                                          "clusterApiServer": "https://api.east.example:6443",
                                          "clusterNetworks": ["10.1.0.0/16"], **(east or {})})
    write_stack(directory, "dev-west", **{**DENY, "cluster": "west", "clusterPeers": ["dev-east"],
                                          "meshRootStack": "dev-east", "clusterApiServer": "https://api.west.example:6443",
                                          "clusterNetworks": ["10.2.0.0/16"], **(west or {})})
    from plan.mesh import compile_mesh

    plans = {cluster: compile_mesh(load(directory, f"dev-{cluster}")) for cluster in ("east", "west")}
    return plans, load(directory, "dev-east").graph


def policy(plan, name, namespace):
    return next(o for o in plan.policy_objects() if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
                and o["metadata"]["namespace"] == namespace)


def ports(rule):
    return sorted(p["port"] for p in rule["ports"])


def test_exported_services_admit_their_cross_cluster_callers_from_where_they_arrive():
    plans, _ = example_plans()
    east, west = plans["east"], plans["west"]
    # billing, pod to pod: checkout@west only, on grpc (not admin), from west's pod network.
    billing = policy(east, "mtls-mesh-billing-multicluster", "payments")["spec"]
    assert billing["policyTypes"] == ["Ingress"]
    [rule] = billing["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.2.0.0/16"}}] and ports(rule) == [4143, 9090]
    # ledger, gateway mode: from this cluster's gateway pods (the chart's `app: linkerd-gateway`), nowhere else.
    [rule] = policy(east, "mtls-mesh-ledger-multicluster", "payments")["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "linkerd-multicluster"}},
                             "podSelector": {"matchLabels": {"app": "linkerd-gateway"}}}] and ports(rule) == [4143, 8080]
    # checkout@west: out to east's pod network on billing's grpc port.
    checkout = policy(west, "mtls-mesh-checkout-multicluster", "shop")["spec"]
    assert checkout["policyTypes"] == ["Egress"]
    [rule] = checkout["egress"]
    assert rule["to"] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}] and ports(rule) == [4143, 9090]
    # reporter@west: out to east's gateway on 4143, its addresses filled at registration.
    [reporter] = west.multicluster.gateway_egress
    [rule] = reporter["spec"]["egress"]
    assert reporter["metadata"]["namespace"] == "analytics" and ports(rule) == [4143]
    assert isinstance(rule["to"], GatewayAddresses) and rule["to"].stack == "dev-east"
    # Nothing for services without cross-cluster traffic, nor in the other direction.
    names = {o["metadata"]["name"] for p in plans.values() for o in p.policy_objects() if o["kind"] == "NetworkPolicy"}
    assert {n for n in names if n.endswith("-multicluster")} == {
        "mtls-mesh-billing-multicluster", "mtls-mesh-ledger-multicluster", "mtls-mesh-checkout-multicluster"}
    assert not east.multicluster.gateway_egress


def test_the_gateway_admits_peers_and_reaches_only_its_gateway_exports():
    plans, _ = example_plans()
    [gateway] = plans["east"].multicluster.network_policies
    spec = gateway["spec"]
    assert gateway["metadata"]["namespace"] == "linkerd-multicluster" and spec["podSelector"] == {
        "matchLabels": {"app": "linkerd-gateway"}}
    peers, scrapers = spec["ingress"]
    assert peers["from"] == [{"ipBlock": {"cidr": "10.2.0.0/16"}}] and ports(peers) == [4143, 4191]
    assert ports(scrapers) == [4191]
    exported = [r for r in spec["egress"] if r["to"][0].get("podSelector", {}).get("matchLabels") == {"app": "ledger"}]
    assert [ports(r) for r in exported] == [[4143, 8080]] and len(spec["egress"]) == 3  # + DNS, control plane
    assert gateway in plans["east"].multicluster.objects()
    assert not plans["west"].multicluster.network_policies  # west exports nothing through a gateway


def test_the_gateway_reaches_no_gateway_export_without_callers(tmp_path):
    """ledger stays exported in gateway mode but loses its only cross-cluster caller: the gateway keeps running (and
    admitting peers), ledger admits no gateway, and the gateway may not reach it."""
    document = example_graph()
    document["services"]["ledger"]["allow"] = ["billing"]
    del document["services"]["reporter"]
    plans, graph = stacks(tmp_path, graph=document)
    [gateway] = plans["east"].multicluster.network_policies
    assert [r["to"][0].get("namespaceSelector", {}).get("matchLabels") for r in gateway["spec"]["egress"]] == [
        {"kubernetes.io/metadata.name": "kube-system"}, {"kubernetes.io/metadata.name": "linkerd"}]
    assert not [o for o in plans["east"].policy_objects() if o["metadata"]["name"] == "mtls-mesh-ledger-multicluster"]
    assert not plans["west"].multicluster.gateway_egress
    check_exact_access(plans, graph)


def test_the_gateway_sees_its_callers_only_if_the_nodes_keep_their_addresses():
    """The gateway's source-network checks (its `source-cluster`, its NetworkPolicy) need the callers' own addresses:
    with the Service's default externalTrafficPolicy the nodes masquerade them, and no call gets through."""
    plans, settings = example_plans()
    assert plans["east"].multicluster.chart_values["gateway"]["serviceExternalTrafficPolicy"] == "Local"
    del plans["east"].multicluster.chart_values["gateway"]["serviceExternalTrafficPolicy"]
    found = cross_cluster_access(plans, settings.graph, "cluster.local", network=False)
    assert not [edge for edge in found if edge[2] == "ledger"]
    assert ("checkout", "west", "billing", "east", "grpc") in found  # pod to pod needs no gateway


def test_gateway_addresses_are_filled_as_blocks_and_a_host_name_opens_outside_the_cluster():
    plans, _ = example_plans()
    [reporter] = plans["west"].multicluster.gateway_egress
    filled = fill_gateway_egress(reporter, {"dev-east": ["203.0.113.7", "2001:db8::7"]})
    assert filled["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "203.0.113.7/32"}},
                                                 {"ipBlock": {"cidr": "2001:db8::7/128"}}]
    by_host = fill_gateway_egress(reporter, {"dev-east": ["gw.east.example.com"]})["spec"]["egress"][0]["to"]
    assert by_host == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.2.0.0/16"]}}, {"ipBlock": {"cidr": "::/0"}}]
    # A peer that has not applied yet has no address: nothing is registered (an empty `to` would admit everything).
    assert fill_gateway_egress(reporter, {}) is None and fill_gateway_egress(reporter, {"dev-east": [""]}) is None
    assert reporter["spec"]["egress"][0]["to"].stack == "dev-east", "filling leaves the plan's object alone"


def test_every_cross_cluster_network_policy_conforms():
    plans, _ = example_plans()
    objects = [o for cluster in network_objects(plans).values() for o in cluster
               if o["kind"] == "NetworkPolicy" and ("multicluster" in o["metadata"]["name"] or
                                                    o["metadata"]["name"].endswith(("-gateways", "mtls-mesh-gateway")))]
    assert len(objects) == 5
    for obj in objects:
        assert validate_object(obj) == [], obj["metadata"]


def test_no_lockdown_without_network_policies_and_no_egress_without_egress_control(tmp_path):
    plans, _ = stacks(tmp_path / "off", east={"networkPolicies": False}, west={"networkPolicies": False})
    for plan in plans.values():
        assert not [o for o in plan.policy_objects() if o["kind"] == "NetworkPolicy"]
        assert not plan.multicluster.network_policies and not plan.multicluster.gateway_egress
    plans, graph = stacks(tmp_path / "ingress", east={"networkPolicyEgress": False},
                          west={"networkPolicyEgress": False})
    cross = [o for p in plans.values() for o in p.policy_objects() if o["metadata"]["name"].endswith("-multicluster")]
    assert cross and all(o["spec"]["policyTypes"] == ["Ingress"] for o in cross)
    assert not plans["west"].multicluster.gateway_egress
    assert "egress" not in plans["east"].multicluster.network_policies[0]["spec"]
    check_exact_access(plans, graph)


def test_the_network_layer_keeps_every_allowed_call_and_the_check_sees_a_missing_one():
    plans, settings = example_plans()
    graph = settings.graph
    peers = {c: [p.name for p in plan.multicluster.cluster.peers] for c, plan in plans.items()}
    expected = graph_cross_edges(graph, peers)
    assert cross_cluster_access(plans, graph, "cluster.local", network=False) == expected
    assert cross_cluster_access(plans, graph, "cluster.local") == expected
    # Without the callee's cross-cluster NetworkPolicy, east's default deny drops checkout@west's calls to billing.
    payments = plans["east"].namespaces["payments"]
    kept = tuple(o for o in payments.policy if o["metadata"]["name"] != "mtls-mesh-billing-multicluster")
    object.__setattr__(payments, "policy", kept)
    assert expected - cross_cluster_access(plans, graph, "cluster.local") == {
        ("checkout", "west", "billing", "east", "grpc")}
    assert graph_network_sources(graph, plans)[("billing", "east", "grpc")] == {"west"}
    assert network_sources(plans, graph)[("billing", "east", "grpc")] == set()


def test_the_network_check_sees_a_policy_wider_than_the_callers():
    plans, settings = example_plans()
    graph = settings.graph
    billing = policy(plans["east"], "mtls-mesh-billing-multicluster", "payments")
    billing["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 9091})
    with pytest.raises(AssertionError, match="admin"):
        check_exact_access(plans, graph)


# ---- rollout phases ------------------------------------------------------------------------------------------------

def test_a_gateway_in_front_of_an_audit_namespace_is_counted(tmp_path):
    """shop runs in both clusters and is not exported. With east's shop in audit its Servers admit the gateway's
    identity by default, so every caller east's gateway admits (reporter@west) may reach checkout@east through it:
    the check counts that call, and only that one, unless the gateway's egress NetworkPolicy keeps it to ledger."""
    audit = {"inboundPolicyOverrides": ["shop=audit"]}
    plans, graph = stacks(tmp_path / "open", east={**audit, "networkPolicyEgress": False})
    peers = {c: [p.name for p in plan.multicluster.cluster.peers] for c, plan in plans.items()}
    expected = graph_cross_edges(graph, peers)
    assert plans["east"].inbound_policies["shop"] == "audit"
    found = cross_cluster_access(plans, graph, "cluster.local")
    assert found - expected == {("reporter", "west", "checkout", "east", "http")} and expected <= found
    # Mesh layer alone: the same, since shop@east holds no NetworkPolicies in audit.
    assert cross_cluster_access(plans, graph, "cluster.local", network=False) == found
    plans, graph = stacks(tmp_path / "narrowed", east=audit)
    assert cross_cluster_access(plans, graph, "cluster.local", network=False) - expected == {
        ("reporter", "west", "checkout", "east", "http")}
    assert cross_cluster_access(plans, graph, "cluster.local") == expected


def test_an_audit_callee_admits_every_peer_workload_through_its_mirror_but_for_the_callers_egress(tmp_path):
    """payments@east in audit: billing (pod to pod) admits any identity, so every west workload reaches it through its
    mirror at the mesh layer; west's deny namespaces let only checkout out, on billing's grpc port."""
    audit = {"inboundPolicyOverrides": ["payments=audit"]}
    plans, graph = stacks(tmp_path / "audit", east=audit)
    peers = {c: [p.name for p in plan.multicluster.cluster.peers] for c, plan in plans.items()}
    expected = graph_cross_edges(graph, peers)
    mesh = cross_cluster_access(plans, graph, "cluster.local", network=False)
    west = [s.key for s in graph.services.values() if s.runs_in("west")]
    assert {(c, "west", "billing", "east", p) for c in west for p in ("grpc", "admin")} <= mesh
    # Through the gateway too at the mesh layer: payments' Servers admit the gateway, which admits reporter (east's
    # gateway egress NetworkPolicy, to ledger only, is what stops it at the network layer).
    assert ("reporter", "west", "billing", "east", "admin") in mesh
    assert cross_cluster_access(plans, graph, "cluster.local") == expected
    # Without egress control in west, the network no longer narrows: the audit phase is what is counted.
    plans, graph = stacks(tmp_path / "open", east=audit, west={"networkPolicyEgress": False})
    assert cross_cluster_access(plans, graph, "cluster.local") == mesh


@pytest.mark.parametrize("phase,admitted", [("all-authenticated", True), ("cluster-authenticated", False),
                                            ("cluster-unauthenticated", False), ("deny", False)])
def test_each_phase_admits_a_peers_workload_as_linkerd_does(tmp_path, phase, admitted):
    """A peer's workload arrives pod to pod from the peer's network, outside the callee cluster's: `cluster-*`
    phases refuse it, `all-authenticated` admits it (meshed)."""
    plans, graph = stacks(tmp_path, east={"inboundPolicyOverrides": [f"payments={phase}"]},
                          west={"networkPolicyEgress": False})
    found = cross_cluster_access(plans, graph, "cluster.local", network=False)
    assert (("frontend", "west", "billing", "east", "admin") in found) is admitted
    # The gateway arrives from inside the cluster: every phase but deny admits it, so reporter reaches billing.
    assert (("reporter", "west", "billing", "east", "admin") in found) is (phase != "deny")


PHASES = ("deny", "audit", "all-authenticated", "cluster-authenticated", "all-unauthenticated")


@hypothesis_settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
@given(document=placed_graphs(), phases=st.fixed_dictionaries({ns: st.sampled_from(PHASES) for ns in ("ns0", "ns1", "ns2")}),
       egress=st.booleans())
def test_generated_graphs_in_mixed_phases_keep_every_edge_and_are_exact_where_they_deny(tmp_path_factory, document,
                                                                                         phases, egress):
    """Whatever each namespace's phase, no allowed cross-cluster call is blocked (by the mesh or the network), the
    network layer only narrows, and a callee in a `deny` namespace admits exactly its cross-cluster edges, at both
    layers (network sources included); only open phases admit more."""
    from plan.mesh import compile_mesh

    directory = tmp_path_factory.mktemp("phases")
    (directory / "services.yaml").write_text(yaml.safe_dump(document))
    clusters = list(document["clusters"])
    for index, cluster in enumerate(clusters):
        write_stack(directory, f"dev-{cluster}", **{**DENY, "cluster": cluster,
                    "clusterPeers": [f"dev-{c}" for c in clusters if c != cluster],
                    "clusterApiServer": f"https://api.{cluster}.example:6443", "clusterNetworks": [f"10.{index}.0.0/16"],
                    "serviceGraph": str(directory / "services.yaml"), "allowFilesOutsideProject": True,
                    "inboundPolicyOverrides": [f"{ns}={phase}" for ns, phase in phases.items()],
                    "networkPolicyEgress": egress, **({"meshRootStack": f"dev-{clusters[0]}"} if index else {})})
    try:
        plans = {cluster: compile_mesh(load(directory, f"dev-{cluster}")) for cluster in clusters}
    except SettingsError as err:
        assert all("services." in p.where for p in err.problems), [str(p) for p in err.problems]
        assume(False)
    graph = load(directory, f"dev-{clusters[0]}").graph
    peers = {c: [p.name for p in plan.multicluster.cluster.peers] for c, plan in plans.items()}
    expected = graph_cross_edges(graph, peers)
    mesh = cross_cluster_access(plans, graph, "cluster.local", network=False)
    found = cross_cluster_access(plans, graph, "cluster.local")

    def denying(edges):
        return {e for e in edges if phases[graph.services[e[2]].namespace] == "deny"}

    assert expected <= found <= mesh, {"blocked": expected - found}
    assert denying(found) == denying(mesh) == denying(expected)
    sources, wanted = network_sources(plans, graph), graph_network_sources(graph, plans)
    assert sources == {key: wanted.get(key, set()) for key in sources}
