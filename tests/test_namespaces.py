"""Mesh namespaces: injection, the rollout phase per namespace, opt-outs, adoption and the linkerd namespace."""

from __future__ import annotations

import pytest

from read.errors import Problems
from read.graph import parse_graph
from plan.linkerd.namespaces import linkerd_namespace_object, workload_namespace_object
from read.settings import INBOUND_POLICIES, RolloutSettings
from harness import run_program
from test_graph import EXAMPLE

INJECT = "linkerd.io/inject"
POLICY = "config.linkerd.io/default-inbound-policy"


def annotations(run, name):
    return run.object("Namespace", name)["metadata"].get("annotations", {})


def test_every_graph_namespace_is_registered_in_every_stack(each_stack):
    names = {o["metadata"]["name"] for o in each_stack.objects("Namespace")}
    viz = {"linkerd-viz"} if each_stack.config.get("mtls-mesh:linkerdViz") == "true" else set()
    verify = {"mtls-mesh-verify"} if each_stack.objects("Job") else set()
    assert names == set(EXAMPLE["namespaces"]) | {"linkerd"} | viz | verify


@pytest.mark.parametrize("stack,namespace,policy", [
    ("dev", "web", "audit"), ("dev", "ingress", "audit"),
    ("staging", "web", "deny"), ("staging", "payments", "deny"), ("staging", "ingress", "all-unauthenticated"),
    ("prod", "data", "deny"), ("prod", "ingress", "all-unauthenticated"),
])
def test_meshed_namespaces_carry_their_rollout_phase(request, stack, namespace, policy):
    run = request.getfixturevalue(stack)
    assert annotations(run, namespace)[INJECT] == "enabled"
    assert annotations(run, namespace)[POLICY] == policy
    assert run.exports["inboundPolicies"][namespace] == policy


def test_unmeshed_namespace_is_explicitly_not_injected(each_stack):
    batch = annotations(each_stack, "batch")
    assert batch[INJECT] == "disabled" and POLICY not in batch


def test_callers_of_a_proxy_free_database_skip_its_port(dev):
    # billing, ledger (payments) and catalog (web) call postgres:5432, which has no proxy and terminates TLS itself.
    assert annotations(dev, "payments")["config.linkerd.io/skip-outbound-ports"] == "5432"
    assert annotations(dev, "web")["config.linkerd.io/skip-outbound-ports"] == "5432"
    assert "config.linkerd.io/skip-outbound-ports" not in annotations(dev, "ingress")


def test_linkerd_namespace_has_the_labels_the_control_plane_requires(each_stack):
    linkerd = each_stack.object("Namespace", "linkerd")["metadata"]
    assert linkerd["labels"]["linkerd.io/is-control-plane"] == "true"
    assert linkerd["labels"]["config.linkerd.io/admission-webhooks"] == "disabled"
    assert linkerd["labels"]["linkerd.io/control-plane-ns"] == "linkerd"
    assert linkerd["annotations"][INJECT] == "disabled"


def test_prod_adopts_existing_namespaces_by_server_side_patch(prod):
    kinds = {r.name: r.type for r in prod.registrations if r.type.startswith("kubernetes:core/v1:Namespace")}
    assert kinds["mesh-web"] == kinds["mesh-payments"] == "kubernetes:core/v1:NamespacePatch"
    assert kinds["mesh-data"] == "kubernetes:core/v1:Namespace"
    assert annotations(prod, "web")["pulumi.com/patchForce"] == "true"


@pytest.mark.parametrize("policy", INBOUND_POLICIES)
def test_namespace_builder_applies_overrides_over_the_default(policy):
    graph = parse_graph(EXAMPLE, "services.yaml", Problems())
    rollout = RolloutSettings("deny", {"web": policy})
    assert workload_namespace_object(graph.namespaces["web"], graph, rollout)["metadata"]["annotations"][POLICY] == policy
    assert workload_namespace_object(graph.namespaces["data"], graph, rollout)["metadata"]["annotations"][POLICY] == "deny"


def test_skip_inbound_ports_from_the_graph_reach_the_namespace():
    document = {**EXAMPLE, "namespaces": {**EXAMPLE["namespaces"], "data": {"skipInboundPorts": [9187, 5432]}}}
    graph = parse_graph(document, "services.yaml", Problems())
    meta = workload_namespace_object(graph.namespaces["data"], graph, RolloutSettings("deny", {}))["metadata"]
    assert meta["annotations"]["config.linkerd.io/skip-inbound-ports"] == "5432,9187"


def test_linkerd_namespace_builder_is_never_injected():
    assert linkerd_namespace_object()["metadata"]["annotations"] == {INJECT: "disabled"}


def test_proxy_free_services_in_an_injected_namespace_keep_their_ports_out_of_the_proxy(staging):
    """data is injected and postgres is `meshed: false`: every pod of data gets a proxy, so the namespace tells the
    proxies to leave 5432 alone, or default deny (no Server for postgres) would refuse its callers."""
    annotations = staging.object("Namespace", "data")["metadata"]["annotations"]
    assert annotations["linkerd.io/inject"] == "enabled"
    assert "5432" in annotations["config.linkerd.io/skip-inbound-ports"].split(",")
    assert "config.linkerd.io/skip-inbound-ports" not in staging.object("Namespace", "web")["metadata"]["annotations"]


def test_a_meshed_service_on_a_port_its_namespace_skips_is_refused(tmp_path):
    import copy

    import yaml
    from read.errors import SettingsError
    from harness import PROJECT_DIR

    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    graph["services"]["cache"] = {"namespace": "data", "ports": [{"name": "tcp", "port": 5432, "protocol": "opaque"}]}
    with pytest.raises(SettingsError, match=r"services.cache.ports\[0\].port: 5432 bypasses the proxy in namespace 'data' "
                                            r"because of services.postgres \(meshed: false\)"):
        run_program("staging", graph=copy.deepcopy(graph), tmp_path=tmp_path)


def test_opaque_ports_reach_callers_through_the_namespace_annotation(staging):
    """Callers learn a port is opaque from the Service's or pod's config.linkerd.io/opaque-ports, which the injector
    copies from the namespace at creation: the namespace of every meshed opaque port carries it, with Linkerd's
    default list kept (the namespace's value replaces it), and no other namespace does."""
    from plan.linkerd.namespaces import LINKERD_DEFAULT_OPAQUE_PORTS, OPAQUE_PORTS

    assert annotations(staging, "ingress")[OPAQUE_PORTS] == ",".join(
        map(str, sorted({443, *LINKERD_DEFAULT_OPAQUE_PORTS})))
    for namespace in ("web", "payments", "data"):
        assert OPAQUE_PORTS not in annotations(staging, namespace), \
            "no meshed opaque port there (data's postgres is proxy-free and skipped)"


def test_default_opaque_ports_are_the_pinned_charts(needs_shared):
    import yaml as pyyaml
    from plan.linkerd.namespaces import LINKERD_DEFAULT_OPAQUE_PORTS
    from harness import PROJECT_DIR

    from conformance import UPSTREAM
    values = UPSTREAM / "charts/linkerd2-edge-26.8.3/charts/linkerd-control-plane/values.yaml"
    chart = pyyaml.safe_load(values.read_text())
    assert tuple(int(p) for p in chart["proxy"]["opaquePorts"].split(",")) == LINKERD_DEFAULT_OPAQUE_PORTS
