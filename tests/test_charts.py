"""The pinned charts rendered by Helm with the program's exact release names, namespaces and values: every kind the
program emits is served by a CRD its own releases install (or by Kubernetes, or by the documented prometheus-operator
prerequisite), and the names the program refers to in chart-created objects exist in the rendered output."""

from __future__ import annotations


import pytest
import yaml

from conformance import CORE_GROUPS
from harness import PROJECT_DIR, run_program
from tools import render_chart

RELEASE = "kubernetes:helm.sh/v3:Release"
# Installed by the cluster's monitoring stack, a documented prerequisite of `alerts: true` (README, Prerequisites).
PREREQUISITE_GROUPS = {"monitoring.coreos.com"}


def rendered_releases(run) -> dict[str, list[dict]]:
    """chart -> the objects its release renders to, with the program's release name, namespace and values."""
    out = {}
    for registration in run.of_type(RELEASE):
        release = registration.object()
        assert release.get("name"), f"release {registration.name} has no fixed name: pulumi-kubernetes would add a suffix"
        out[release["chart"]] = render_chart(release["chart"], release["name"], release["namespace"],
                                             release.get("values") or {})
    return out


def served_kinds(rendered: dict[str, list[dict]]) -> set[tuple[str, str]]:
    served = set()
    for objects in rendered.values():
        for crd in objects:
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    served.add((f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]))
    return served


def everything_run(tmp_path):
    """A stack using every feature that emits a kind: egress hosts and CIDRs, gRPC, viz, CNI, alerts, deny."""
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    graph["services"]["ledger"]["egress"] = [{"name": "bank", "cidrs": ["198.51.100.0/24"], "ports": [443]}]
    return run_program("staging", set_config={"linkerdViz": True, "linkerdCni": True, "alerts": True},
                       graph=graph, tmp_path=tmp_path)


@pytest.mark.parametrize("which", ["dev", "staging", "prod", "everything"])
def test_every_emitted_kind_is_served_by_a_crd_the_program_installs(which, needs_shared, tmp_path):
    run = everything_run(tmp_path) if which == "everything" else run_program(which)
    served = served_kinds(rendered_releases(run))
    missing = set()
    for obj in run.objects():
        group = obj["apiVersion"].rpartition("/")[0]
        if group in CORE_GROUPS or group in PREREQUISITE_GROUPS:
            continue
        if (obj["apiVersion"], obj["kind"]) not in served:
            missing.add((obj["apiVersion"], obj["kind"]))
    assert not missing, f"kinds no release of the program installs a CRD for: {sorted(missing)}"


def test_the_tls_route_crd_comes_from_linkerd_crds_and_would_be_missing_without_its_value(needs_shared):
    """The check above can fail: with the chart's default values the TLSRoute CRD is not rendered."""
    run = run_program("staging")
    crds = next(r.object() for r in run.of_type(RELEASE) if r.object()["chart"] == "linkerd-crds")
    with_ours = served_kinds({"linkerd-crds": render_chart("linkerd-crds", crds["name"], crds["namespace"], crds["values"])})
    defaults = {k: v for k, v in crds["values"].items() if k != "enableTlsRoutes"}
    without = served_kinds({"linkerd-crds": render_chart("linkerd-crds", crds["name"], crds["namespace"], defaults)})
    tls_route = ("gateway.networking.k8s.io/v1alpha2", "TLSRoute")
    assert tls_route in with_ours and tls_route not in without


def test_cert_manager_references_resolve_in_the_rendered_chart(needs_shared):
    """The token-request binding names cert-manager's service account, and the ServiceMonitor keeps the metrics'
    namespace (honorLabels), in the chart rendered with the program's release name and values."""
    run = run_program("staging")
    rendered = rendered_releases(run)
    accounts = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered["cert-manager"]
                if o["kind"] == "ServiceAccount"}
    # The preview identity's Secret bindings (plan/preview_identity.py) bind no cert-manager account.
    bindings = [b for b in run.objects("RoleBinding") if b["metadata"]["name"] != "mtls-mesh-preview"]
    assert {b["metadata"]["namespace"] for b in bindings} == {"linkerd", "data"}, "one per issuing namespace"
    for binding in bindings:
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts, f"{subject} is not an account the chart creates"
    monitors = [o for o in rendered["cert-manager"] if o["kind"] == "ServiceMonitor"]
    assert monitors and all(e.get("honorLabels") is True for m in monitors for e in m["spec"]["endpoints"])


def test_a_release_without_a_fixed_name_would_break_the_login(needs_shared):
    """What the fixed name prevents: rendered as pulumi-kubernetes would name it without one, the chart's service
    account no longer matches the binding's subject."""
    run = run_program("staging")
    release = next(r.object() for r in run.of_type(RELEASE) if r.object()["chart"] == "cert-manager")
    objects = render_chart("cert-manager", "certs-cert-manager-1a2b3c4d", release["namespace"], release["values"])
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    subject = run.object("RoleBinding", "mtls-mesh-vault-issuer-token", "linkerd")["subjects"][0]["name"]
    assert subject not in accounts


def _created_by_program(run) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every Secret and ConfigMap the program's objects make exist: its own Secrets and
    ConfigMaps, the Secrets cert-manager writes for its Certificates, and the ConfigMaps its Bundles sync."""
    made = set()
    for obj in run.objects():
        meta = obj["metadata"]
        if obj["kind"] in ("Secret", "ConfigMap"):
            made.add((obj["kind"], meta.get("namespace"), meta["name"]))
        elif obj["kind"] == "Certificate":
            made.add(("Secret", meta["namespace"], obj["spec"]["secretName"]))
    # trust-manager writes each Bundle's target ConfigMap, named like the Bundle, in the namespaces its selector picks
    # (the API server labels every namespace with kubernetes.io/metadata.name).
    namespaces = {}
    for obj in run.objects():
        if obj["kind"] in ("Namespace", "NamespacePatch"):
            name = obj["metadata"]["name"]
            namespaces[name] = {**(obj["metadata"].get("labels") or {}), "kubernetes.io/metadata.name": name}
    for bundle in run.objects("Bundle"):
        selector = bundle["spec"]["target"].get("namespaceSelector") or {}
        for name, labels in namespaces.items():
            if _selects(selector, labels):
                made.add(("ConfigMap", name, bundle["metadata"]["name"]))
    return made


def _selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not ok:
            return False
    return True


@pytest.mark.parametrize("stack,extra", [("staging", {"linkerdViz": True}), ("prod", {})])
def test_what_the_linkerd_charts_mount_and_inject_exists(stack, extra, needs_shared):
    """With externalCA and externalSecret the charts no longer create the identity issuer, the trust roots or the
    webhook Secrets: every Secret and ConfigMap a rendered workload mounts must come from the chart itself or from the
    program, and every webhook's inject-ca-from must name a Certificate the program registers."""
    run = run_program(stack, set_config=extra)
    made = _created_by_program(run)
    certificates = {f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in run.objects("Certificate")}
    checked_mounts = checked_webhooks = 0
    for chart, objects in rendered_releases(run).items():
        if not chart.startswith("linkerd"):
            continue
        chart_made = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
                      if o.get("kind") in ("Secret", "ConfigMap")}
        for workload in objects:
            if workload.get("kind") not in ("Deployment", "DaemonSet", "StatefulSet", "CronJob", "Job"):
                continue
            namespace = workload["metadata"].get("namespace")
            template = workload["spec"].get("jobTemplate", {}).get("spec", workload["spec"])["template"]["spec"]
            for volume in template.get("volumes", []):
                for kind, key, name_key in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
                    if key not in volume or volume[key].get("optional"):
                        continue
                    ref = (kind, namespace, volume[key][name_key])
                    assert ref in chart_made or ref in made, f"{chart}: {workload['metadata']['name']} mounts {ref}, which nothing creates"
                    checked_mounts += 1
        for hook in objects:
            if hook.get("kind") in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
                inject = (hook["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
                assert inject in certificates, f"{chart}: {hook['metadata']['name']} injects from {inject!r}"
                checked_webhooks += 1
    # The identity issuer, the trust roots and three webhook Secrets at least: the check ran on real mounts.
    assert checked_mounts >= 5 and checked_webhooks >= 3, (checked_mounts, checked_webhooks)


def test_trust_manager_may_write_every_bundle_target(needs_shared):
    """trust-manager writes each Bundle's ConfigMap into the namespaces it selects (linkerd, and every graph namespace
    for the workload roots): the rendered chart, with the program's values, must grant that cluster-wide, not only in
    a list of target namespaces."""
    run = run_program("staging")
    rendered = rendered_releases(run)["trust-manager"]
    (cluster_role,) = [o for o in rendered if o["kind"] == "ClusterRole" and any(
        "configmaps" in rule.get("resources", []) for rule in o.get("rules", []))]
    (rule,) = [r for r in cluster_role["rules"] if "configmaps" in r.get("resources", [])]
    assert {"create", "patch"} <= set(rule["verbs"])
    bindings = [o for o in rendered if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == cluster_role["metadata"]["name"]]
    assert bindings, "the ClusterRole is bound to trust-manager's account"
    targets = {o["metadata"]["name"] for o in run.objects("Bundle")}
    assert targets == {"linkerd-identity-trust-roots", "mtls-mesh-workload-trust"}


def test_the_pod_monitor_finds_the_identity_controllers_metrics_in_the_rendered_chart(needs_shared):
    """MeshIdentityRefusing reads linkerd-identity's own metrics: the PodMonitor's second endpoint must name a
    container and port the pinned chart really renders, on pods its selector picks."""
    run = run_program("prod")
    monitor = run.object("PodMonitor", "linkerd-proxies", "linkerd")["spec"]
    endpoint = monitor["podMetricsEndpoints"][1]
    container_name = endpoint["relabelings"][0]["regex"]
    objects = rendered_releases(run)["linkerd-control-plane"]
    identity = next(o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == "linkerd-identity")
    template = identity["spec"]["template"]
    assert "linkerd.io/control-plane-ns" in template["metadata"]["labels"]
    assert "linkerd" in monitor["namespaceSelector"]["matchNames"]
    (container,) = [c for c in template["spec"]["containers"] if c["name"] == container_name]
    assert endpoint["port"] in {p["name"] for p in container.get("ports", [])}
