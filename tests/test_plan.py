"""The compile step (plan/mesh.py) is what the program registers: every object of a stack's plan reaches the
provider exactly as compiled, and the only other objects are the few that carry a provider's value (the roots'
ConfigMaps, the dev anchor's Secret, the Secrets of the certificates the program signs, the PrometheusRule with the
certificates' expiry). The exported matrices and charts' values are the plan's."""

from __future__ import annotations

from harness import stack_plan


def _key(obj):
    return obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def provider_filled(plan) -> set[tuple[str, str, str, str]]:
    """The objects registration builds from a provider's values, as the plan names them."""
    namespace = plan.certificates.namespace
    found = set()
    for anchor in plan.certificates.anchors:
        found |= {("v1", "ConfigMap", namespace, f"mtls-mesh-anchor-{anchor}"),
                  ("v1", "ConfigMap", namespace, f"mtls-mesh-workload-anchor-{anchor}")}
        if plan.self_signed is not None:
            found.add(("v1", "Secret", "linkerd", f"mtls-mesh-anchor-{anchor}"))
    for ns in plan.namespaces.values():
        found |= {("v1", "Secret", ns.name, f"{s.name}-mesh-tls") for s in ns.signed_services}
    if plan.alerts is not None:
        found.add(("monitoring.coreos.com/v1", "PrometheusRule", "linkerd", "mtls-mesh"))
    return found


def test_the_program_registers_the_plan_and_only_the_plan(each_mesh):
    each_stack = each_mesh
    plan = stack_plan(each_stack.stack)
    registered: dict[tuple, list] = {}
    for obj in each_stack.objects():
        registered.setdefault(_key(obj), []).append(obj)
    planned = {_key(o): o for o in plan.objects()}
    assert len(planned) == len(plan.objects()), "two objects of the plan share kind, namespace and name"
    for key, obj in planned.items():
        assert registered.get(key) == [obj], f"{key}: registered {registered.get(key)}, planned {obj}"
    assert set(registered) - set(planned) == provider_filled(plan)


def test_the_exports_and_chart_values_are_the_plans(each_mesh):
    each_stack = each_mesh
    plan = stack_plan(each_stack.stack)
    assert each_stack.exports["accessMatrix"] == plan.access_matrix
    assert each_stack.exports["egressMatrix"] == plan.egress_matrix
    assert each_stack.exports["inboundPolicies"] == plan.inbound_policies
    values = {r.object()["chart"]: r.object().get("values", {}) for r in each_stack.of_type("kubernetes:helm.sh/v3:Release")}
    assert values["linkerd-control-plane"] == plan.linkerd.control_plane_values
    assert values["linkerd-crds"] == plan.linkerd.crds_values
    if plan.certificates.cert_manager_values is not None:
        assert values["cert-manager"] == plan.certificates.cert_manager_values


def test_the_plan_groups_objects_by_owner():
    plan = stack_plan("staging")
    for name, ns in plan.namespaces.items():
        assert ns.namespace["metadata"]["name"] == name
        assert all(o["metadata"]["namespace"] == name for o in ns.objects() if o is not ns.namespace)
    assert {o["kind"] for o in plan.policy_objects()} >= {"Server", "AuthorizationPolicy", "MeshTLSAuthentication",
                                                         "NetworkPolicy", "EgressNetwork"}
    assert plan.vault is not None and plan.self_signed is None
    assert set(plan.vault.workload_roles) == set(plan.certificate_namespaces())
