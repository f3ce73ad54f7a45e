"""One graph, two meshes (docs/layout.md): what both meshes share is one step with a per-mesh parameter.

- The graph is checked once, for the stack's mesh (read/meshes.py): a meshed service on one of that mesh's proxy
  ports, or a workload namespace the mesh runs in, is one problem naming the graph path and the fix; the other mesh's
  ports and namespaces are the workload's to use. The per-mesh table agrees with each mesh's plan package and the
  pinned charts.
- The NetworkPolicies are one function of the graph and a mesh's MeshWire (plan/network_policy.py).
- The trust anchors' subject is one fixed name for both meshes; the rotation runbook restarts the stack's own mesh.
"""

from __future__ import annotations

import re

import pytest

from harness import PROJECT, PROJECT_DIR
from istio_settings import settings_of
from read.errors import Problems, SettingsError
from read.graph import parse_graph
from read.meshes import ISTIO, LINKERD, MESHES

ISTIO_SIDECAR_PORTS = (15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090)
LINKERD_PROXY_PORTS = (4140, 4143, 4190, 4191)


def graph(port: int = 8080, namespace: str = "shop") -> dict:
    return {"namespaces": {namespace: {}},
            "services": {"api": {"namespace": namespace,
                                 "ports": [{"name": "http", "port": port, "protocol": "HTTP/1"}]}}}


def problems_of(document: dict, mesh: str) -> list[tuple[str, str, str]]:
    problems = Problems()
    parsed = parse_graph(document, "services.yaml", problems, mesh=mesh)
    assert (parsed is None) == bool(problems.items)
    return [(p.where, p.what, p.fix) for p in problems.items]


@pytest.mark.parametrize("port", ISTIO_SIDECAR_PORTS)
def test_an_istio_sidecar_port_is_refused_with_istio_and_free_with_linkerd(port):
    assert problems_of(graph(port), "istio") == [
        ("services.yaml: services.api.ports[0].port", f"{port} is the Istio sidecar's own {ISTIO.proxy_ports[port]} port",
         "Run the workload on another port")]
    assert problems_of(graph(port), "linkerd") == []


@pytest.mark.parametrize("port", LINKERD_PROXY_PORTS)
def test_a_linkerd_proxy_port_is_refused_with_linkerd_and_free_with_istio(port):
    (where, what, _), = problems_of(graph(port), "linkerd")
    assert where == "services.yaml: services.api.ports[0].port" and what.startswith(f"{port} is the Linkerd proxy's own")
    assert problems_of(graph(port), "istio") == []


def test_a_proxy_free_service_may_use_a_sidecar_port():
    document = graph(15020)
    document["services"]["api"]["meshed"] = False
    assert problems_of(document, "istio") == []


@pytest.mark.parametrize("mesh, taken, free", [("istio", "istio-system", "linkerd"),
                                               ("linkerd", "linkerd", "istio-system")])
def test_each_mesh_reserves_its_own_namespaces(mesh, taken, free):
    assert problems_of(graph(namespace=taken), mesh)[0] == (
        f"services.yaml: namespaces.{taken}", f"'{taken}' is managed by the platform itself and cannot be a workload "
        "namespace", "Remove it from the graph")
    assert problems_of(graph(namespace=free), mesh) == []
    assert problems_of(graph(namespace="kube-system"), mesh)  # Kubernetes' own, whatever the mesh


def test_the_injector_label_check_is_linkerds():
    document = graph()
    document["services"]["api"]["selector"] = {"linkerd.io/control-plane-ns": "linkerd"}
    (where, what, _), = problems_of(document, "linkerd")
    assert where.endswith("services.api.selector.linkerd.io/control-plane-ns") and "Linkerd label" in what
    assert problems_of(document, "istio") == []


def test_the_istio_injector_label_is_refused_with_istio_and_free_with_linkerd():
    """Every injected pod carries security.istio.io/tlsMode: istio: a service selecting on it would be every pod."""
    from plan.istio.names import TLS_MODE_LABEL

    document = graph()
    document["services"]["api"]["selector"] = {TLS_MODE_LABEL: "istio"}
    (where, what, fix), = problems_of(document, "istio")
    assert where == f"services.yaml: services.api.selector.{TLS_MODE_LABEL}" and "Istio label" in what, what
    assert "selector: {app: billing}" in fix
    assert problems_of(document, "linkerd") == []


def test_a_workload_named_like_istios_namespace_sidecar_is_refused_with_istio_in_any_phase():
    """Under deny Istio's per-workload Sidecar takes the workload's name beside the namespace's selector-less Sidecar
    `default`: the graph refuses the name up front, not only once the namespace reaches deny (plan/collisions.py)."""
    from plan.istio import authorization as istio

    document = graph()
    document["services"]["default"] = document["services"].pop("api")
    assert problems_of(document, "linkerd") == []
    assert problems_of(document, "istio") == [
        ("services.yaml: services.default", f"workload name '{istio.NAMESPACE_SIDECAR}' "
         f"{ISTIO.reserved_workload_names[istio.NAMESPACE_SIDECAR]}", "Give the workload another name (`name:`)")]
    document["services"]["default"]["name"] = "api"
    assert problems_of(document, "istio") == []
    document["namespaces"]["shop"] = {"meshed": False}
    document["services"]["default"].pop("name")
    assert problems_of(document, "istio") == []


def test_a_stack_with_mesh_istio_refuses_a_sidecar_port_once_before_compiling(tmp_path):
    path = tmp_path / "services.yaml"
    text = (PROJECT_DIR / "services.yaml").read_text(encoding="utf-8")
    text, replaced = re.subn(r"\{name: http, port: 8080, protocol: HTTP/1\}\n    allow: \[ingress-nginx\]",
                             "{name: http, port: 15021, protocol: HTTP/1}\n    allow: [ingress-nginx]", text)
    assert replaced == 1
    path.write_text(text, encoding="utf-8")
    changes = {"serviceGraph": str(path), "allowFilesOutsideProject": True}
    with pytest.raises(SettingsError) as raised:
        settings_of("prod", mesh="istio", **changes)
    message = str(raised.value)
    assert message.count("15021 is the Istio sidecar's own health port") == 1
    assert "services.frontend.ports[0].port" in message and "Run the workload on another port" in message
    # The same graph is a Linkerd stack's to use: the check follows the mesh setting.
    assert settings_of("prod", **changes).graph.services["frontend"].ports[0].number == 15021


def test_the_table_agrees_with_each_mesh_plan():
    from plan.istio import names as istio
    from plan.linkerd import authorization as linkerd
    from plan.linkerd.namespaces import LINKERD_NAMESPACE, VIZ_NAMESPACE

    assert set(MESHES) == {"linkerd", "istio"}
    assert {linkerd.PROXY_INBOUND_PORT, linkerd.PROXY_ADMIN_PORT, linkerd.PROXY_TAP_PORT} < set(LINKERD.proxy_ports)
    assert {LINKERD_NAMESPACE, VIZ_NAMESPACE} <= set(LINKERD.namespaces)
    assert set(ISTIO.proxy_ports) == set(ISTIO_SIDECAR_PORTS)
    assert {istio.PROXY_OUTBOUND_PORT, istio.PROXY_INBOUND_PORT, istio.HBONE_PORT, istio.PROXY_STATUS_PORT,
            istio.PROXY_READINESS_PORT, istio.ENVOY_PROMETHEUS_PORT, *istio.UNCAPTURED_INBOUND_PORTS} <= set(ISTIO.proxy_ports)
    assert {istio.ISTIO_NAMESPACE, istio.ISTIO_CSR_NAMESPACE} <= set(ISTIO.namespaces)


def test_the_sidecar_ports_the_pinned_chart_names_are_in_the_table():
    chart = PROJECT_DIR.parent / "shared/upstream/charts/istio-1.29.6/manifests/charts/istio-control/istio-discovery"
    if not chart.is_dir():
        pytest.skip(f"{chart} is not here")
    template = (chart / "files/injection-template.yaml").read_text(encoding="utf-8")
    values = (chart / "values.yaml").read_text(encoding="utf-8")
    named = {int(p) for p in re.findall(r'default "(150\d\d)"', template)}  # 15001, 15006: the capture ports
    named |= {int(p) for p in re.findall(r'"(150\d\d),(150\d\d)', template)[0]}  # 15090, 15021: never captured
    named |= {int(re.search(r"statusPort: (\d+)", values).group(1))}
    assert named == {15001, 15006, 15090, 15021, 15020}
    assert named <= set(ISTIO.proxy_ports)
    assert PROJECT == "mtls-mesh"


def test_the_trust_anchors_common_name_is_the_same_for_both_meshes_and_never_changes():
    """The roots' subject is part of the roots: a new one would replace every existing stack's live root (an unplanned
    rotation), and a stack switching mesh must keep its root. So it is one fixed name for every mesh."""
    subjects = {}
    for mesh in ("linkerd", "istio"):
        plan = _compiled("dev", mesh)  # self-signed roots: the plan holds their subject
        assert plan.mesh == mesh and plan.self_signed is not None
        subjects[mesh] = plan.self_signed.anchor_args["subject"]
        trust_domain = plan.control_plane_contract()["identityTrustDomain"]
        assert subjects[mesh] == {"common_name": f"root.linkerd.{trust_domain}", "organization": "mtls-mesh"}
    assert subjects["linkerd"] == subjects["istio"]


def test_the_rotation_steps_restart_the_stacks_own_mesh():
    from components.rotation import rotation_status
    from plan.mesh import compile_mesh
    from read.settings import AnchorRotation

    rotation = AnchorRotation(phase="add-next", current="2026-11", next="2027-11")
    steps = {}
    for mesh in ("linkerd", "istio"):
        plan = compile_mesh(settings_of("prod", **({"mesh": "istio"} if mesh == "istio" else {})))
        steps[mesh] = rotation_status(rotation, plan.rotation_restart)["nextStep"]
    # Linkerd's, to the letter what every Linkerd stack has always exported.
    assert steps["linkerd"] == (
        "Both anchors are now trusted. Restart so every proxy loads the new bundle: kubectl -n linkerd rollout restart "
        "deploy && kubectl -n linkerd rollout status deploy; then restart every meshed workload (kubectl rollout "
        "restart deploy -n <namespace>). Then set anchorRotationPhase issue-from-next.")
    assert "kubectl -n istio-system rollout restart deploy" in steps["istio"] and "linkerd" not in steps["istio"]


def test_the_network_policies_follow_the_mesh_wire():
    """The shared NetworkPolicies take every mesh-specific port and selector from the MeshWire, nothing else."""
    from dataclasses import replace as with_

    from plan.network_policy import MeshWire, network_policies
    from read.settings import PolicySettings

    document = {"namespaces": {"shop": {}},
                "services": {"api": {"namespace": "shop", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
                                     "allow": ["web"]},
                             "web": {"namespace": "shop", "ports": [{"name": "http", "port": 8081, "protocol": "HTTP/1"}]}}}
    problems = Problems()
    parsed = parse_graph(document, "services.yaml", problems)
    assert parsed is not None, problems.items
    access = PolicySettings(cluster_networks=("10.0.0.0/8",), kubelet_networks=("10.1.0.0/16",),
                            prometheus_service_accounts=(("prometheus", "monitoring"),), prometheus_networks=(),
                            network_policies=True, network_policy_egress=True)
    wire = MeshWire(name="mesh", proxied_pods={"proxied": "yes"}, control_plane=(("cp", (1, 2)), ("ca", (3,))),
                    scrape_ports=(9,), kubelet_ports=(7,), proxy_inbound_ports=(5,))
    by_name = {p["metadata"]["name"]: p["spec"] for p in network_policies(parsed, "shop", access, wire)}
    assert list(by_name) == ["mtls-mesh-default-deny", "mtls-mesh-allow-kubelet", "mtls-mesh-allow-prometheus",
                             "mtls-mesh-allow-dns", "mtls-mesh-allow-mesh", "mtls-mesh-api", "mtls-mesh-web"]
    proxied = {"matchLabels": {"proxied": "yes"}}
    assert by_name["mtls-mesh-allow-kubelet"]["podSelector"] == proxied
    assert by_name["mtls-mesh-allow-kubelet"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 7}]
    assert by_name["mtls-mesh-allow-prometheus"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9}]
    assert [(r["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], r["ports"])
            for r in by_name["mtls-mesh-allow-mesh"]["egress"]] == [
        ("cp", [{"protocol": "TCP", "port": 1}, {"protocol": "TCP", "port": 2}]), ("ca", [{"protocol": "TCP", "port": 3}])]
    # The callee's ingress and the caller's egress carry the app port and the proxy's inbound port.
    assert by_name["mtls-mesh-api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5},
                                                               {"protocol": "TCP", "port": 8080}]
    assert by_name["mtls-mesh-web"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 5},
                                                              {"protocol": "TCP", "port": 8080}]
    # A mesh with no kubelet port and every pod proxied: no kubelet policy, `{}` selectors, app ports only.
    bare = {p["metadata"]["name"]: p["spec"] for p in network_policies(
        parsed, "shop", access, with_(wire, proxied_pods={}, kubelet_ports=(), proxy_inbound_ports=()))}
    assert "mtls-mesh-allow-kubelet" not in bare and bare["mtls-mesh-allow-prometheus"]["podSelector"] == {}
    assert bare["mtls-mesh-api"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def _compiled(stack: str, mesh: str):
    from harness import stack_config, wire_value
    from plan.mesh import compile_mesh
    from read.stack_files import load_stack_settings

    config, secret_keys = stack_config(stack)
    if mesh == "istio":  # linkerdViz is Linkerd's alone
        config = {**{k: v for k, v in config.items() if not k.endswith(":linkerdViz")},
                  f"{PROJECT}:mesh": wire_value("istio")}
    return compile_mesh(load_stack_settings(config, stack, secret_keys=frozenset(secret_keys)))


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_one_graph_gives_both_meshes_the_same_access_and_egress(stack):
    """Where a namespace enforces, each meshed port admits the same callers under either mesh, read back from each
    mesh's own objects, and every external destination is reachable by the same workloads: the policy step is one."""
    linkerd, istio = _compiled(stack, "linkerd"), _compiled(stack, "istio")
    enforced = [key for key, entry in linkerd.access_matrix.items() if entry["others"] == "denied" and key in istio.access_matrix]
    assert enforced, "the stack enforces somewhere"
    assert {k: linkerd.access_matrix[k]["allowed"] for k in enforced} == {k: istio.access_matrix[k]["allowed"] for k in enforced}
    assert {k: istio.access_matrix[k]["others"] for k in enforced} == dict.fromkeys(enforced, "denied")
    assert linkerd.egress_matrix and set(linkerd.egress_matrix) == set(istio.egress_matrix)
    assert {k: (e["declaredFor"], e["reachableBy"]) for k, e in linkerd.egress_matrix.items()} == \
        {k: (e["declaredFor"], e["reachableBy"]) for k, e in istio.egress_matrix.items()}


def test_in_audit_both_meshes_list_the_same_callers():
    """dev audits everything: each mesh admits everyone and counts what deny would refuse, and the accessMatrix of
    either names the same callers per port (Istio's read from its dry-run policies), so a review of the audit ->
    deny step reads the same under both."""
    linkerd, istio = _compiled("dev", "linkerd"), _compiled("dev", "istio")
    audited = [key for key, entry in linkerd.access_matrix.items() if entry["others"] == "audit" and key in istio.access_matrix]
    assert len(audited) >= 6, audited
    assert {k: linkerd.access_matrix[k]["allowed"] for k in audited} == {k: istio.access_matrix[k]["allowed"] for k in audited}
    assert {k: istio.access_matrix[k]["others"] for k in audited} == dict.fromkeys(audited, "audit")
