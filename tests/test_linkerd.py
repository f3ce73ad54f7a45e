"""The Linkerd control plane: releases, ordering, external CA, webhook certificates, HA profile, and every value we set
checked against the chart's own values.yaml."""

from __future__ import annotations

import pytest
import yaml

from read.errors import SettingsError
from plan.linkerd.control_plane import CONTROL_PLANE_WEBHOOKS, VIZ_WEBHOOKS, WEBHOOK_CA
from conformance import (chart_values, chart_values_file, commented_chart_values, describe, unknown_chart_values,
                         validate_object)
from harness import run_program

RELEASE = "kubernetes:helm.sh/v3:Release"
CONTROL_PLANE_VALUES = ("linkerd-control-plane_values.yaml", "linkerd-control-plane_values-ha.yaml")
# The keys of linkerd/linkerd2 viz/charts/linkerd-viz/values.yaml (edge-26.x) that the program sets; the viz chart's
# values are not among ../shared/upstream, so the facts are recorded here with their source.
VIZ_CHART_KEYS = {
    "linkerdNamespace": "linkerd", "identityTrustDomain": "", "enablePodAntiAffinity": False,
    "tap": {"externalSecret": False, "injectCaFrom": ""},
    "tapInjector": {"externalSecret": False, "injectCaFrom": ""},
}


def releases(run):
    return {r.inputs["chart"]: r for r in run.of_type(RELEASE)}


def depends_on(run, resource, name):
    return run.named(name).urn in resource.dependencies


@pytest.fixture(scope="module")
def full():
    """Every optional part switched on: CNI, viz, proxy resources, HA outside prod."""
    return run_program("staging", set_config={"linkerdCni": True, "linkerdViz": True, "linkerdHighAvailability": "true",
                                              "proxyCpuLimit": "1", "proxyMemoryRequest": "64Mi"})


def test_crds_then_control_plane_from_the_pinned_linkerd_charts(each_stack):
    found = releases(each_stack)
    for chart in ("linkerd-crds", "linkerd-control-plane"):
        release = found[chart].inputs
        assert release["name"] == chart, "a fixed release name, so `helm list -n linkerd` shows what the docs say"
        assert (release["version"], release["repositoryOpts"]["repo"]) == ("2026.8.3", "https://helm.linkerd.io/edge")
        assert release["namespace"] == "linkerd"
    crds, control_plane = found["linkerd-crds"], found["linkerd-control-plane"]
    assert depends_on(each_stack, crds, "mesh-linkerd")
    for prerequisite in ("mesh-linkerd", "linkerd-crds", "certs-identity-issuer", "certs-trust-roots",
                         *[f"linkerd-{w.certificate}" for w in CONTROL_PLANE_WEBHOOKS]):
        assert depends_on(each_stack, control_plane, prerequisite), f"the control plane must wait for {prerequisite}"


def test_identity_comes_from_our_trust_chain(each_stack):
    values = releases(each_stack)["linkerd-control-plane"].object()["values"]
    assert values["identity"]["externalCA"] is True
    assert values["identity"]["issuer"]["scheme"] == "kubernetes.io/tls"
    assert values["identity"]["issuer"]["issuanceLifetime"] == "24h0m0s"
    assert values["identityTrustDomain"] == each_stack.config.get("mtls-mesh:trustDomain", "cluster.local")
    assert "identityTrustAnchorsPEM" not in values, "with externalCA the trust roots come from the Bundle"


def test_what_the_control_plane_waits_for_reports_ready(each_stack):
    """pulumi-kubernetes' waitFor makes a certificate that cannot be issued fail `pulumi up` at the certificate."""
    issuer = each_stack.object("Certificate", "linkerd-identity-issuer", "linkerd")
    assert issuer["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    bundle = each_stack.object("Bundle", "linkerd-identity-trust-roots")
    assert bundle["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Synced"
    for webhook in CONTROL_PLANE_WEBHOOKS:
        cert = each_stack.object("Certificate", webhook.certificate, webhook.namespace)
        assert cert["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"


def test_webhook_certificates_replace_the_charts_self_signed_ones(each_stack):
    values = releases(each_stack)["linkerd-control-plane"].object()["values"]
    expected = {"proxyInjector": "linkerd-proxy-injector-k8s-tls", "profileValidator": "linkerd-sp-validator-k8s-tls",
                "policyValidator": "linkerd-policy-validator-k8s-tls"}
    for key, secret in expected.items():
        assert values[key]["externalSecret"] is True
        namespace, _, certificate = values[key]["injectCaFrom"].partition("/")
        cert = each_stack.object("Certificate", certificate, namespace)
        assert cert["spec"]["secretName"] == secret, "the chart mounts exactly this Secret"
        service = secret.removesuffix("-k8s-tls")
        assert cert["spec"]["dnsNames"] == [f"{service}.linkerd.svc"], "the API server calls the webhook Service by this name"
        assert cert["spec"]["usages"] == ["server auth"]
        assert cert["spec"]["issuerRef"]["name"] == WEBHOOK_CA
    policy = each_stack.object("Certificate", "linkerd-policy-validator", "linkerd")["spec"]["privateKey"]
    assert policy["encoding"] == "PKCS8", "the policy controller reads PKCS#8 keys only"


def test_webhook_certificates_are_renewed_before_linkerd_check_warns(each_stack):
    def hours(text):
        return int(text.split("h")[0])
    for webhook in CONTROL_PLANE_WEBHOOKS:
        spec = each_stack.object("Certificate", webhook.certificate, webhook.namespace)["spec"]
        assert hours(spec["renewBefore"]) > 60 * 24, "`linkerd check` warns when a webhook cert has under 60 days"
        assert hours(spec["renewBefore"]) < hours(spec["duration"])
    ca = each_stack.object("Certificate", WEBHOOK_CA, "linkerd")["spec"]
    assert ca["isCA"] is True and hours(ca["duration"]) > hours(spec["duration"])
    assert each_stack.object("Issuer", WEBHOOK_CA, "linkerd")["spec"]["ca"]["secretName"] == ca["secretName"]


def test_each_webhook_namespace_has_its_own_ca_behind_namespaced_issuers():
    prod = run_program("prod", set_config={"linkerdViz": True})
    namespaces = {w.namespace for w in CONTROL_PLANE_WEBHOOKS + VIZ_WEBHOOKS}
    assert namespaces == {"linkerd", "linkerd-viz"}
    for webhook in CONTROL_PLANE_WEBHOOKS + VIZ_WEBHOOKS:
        cert = prod.object("Certificate", webhook.certificate, webhook.namespace)
        assert cert["spec"]["issuerRef"] == {"name": WEBHOOK_CA, "kind": "Issuer", "group": "cert-manager.io"}
        # The CA issuer reads its Secret from its own namespace: the CA Certificate must be there.
        assert prod.object("Certificate", WEBHOOK_CA, webhook.namespace)["spec"]["secretName"] == \
            prod.object("Issuer", WEBHOOK_CA, webhook.namespace)["spec"]["ca"]["secretName"]


def test_webhook_chain_waits_for_cert_manager(dev):
    self_signer = dev.named("linkerd-webhook-selfsigned")
    assert depends_on(dev, self_signer, "certs-cert-manager")
    assert depends_on(dev, dev.named("linkerd-webhook-ca"), "linkerd-webhook-ca-certificate")
    assert depends_on(dev, dev.named("linkerd-linkerd-proxy-injector"), "linkerd-webhook-ca")


def test_prod_runs_the_charts_high_availability_profile(prod, needs_shared):
    values = releases(prod)["linkerd-control-plane"].object()["values"]
    upstream_ha = yaml.safe_load(chart_values_file("linkerd-control-plane_values-ha.yaml").read_text())

    def missing(expected, actual, path=""):
        for key, value in expected.items():
            if isinstance(value, dict):
                yield from missing(value, actual.get(key) or {}, f"{path}.{key}")
            elif actual.get(key) != value:
                yield f"{path}.{key}: upstream HA {value!r}, ours {actual.get(key)!r}"
    assert list(missing(upstream_ha, values)) == []


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_other_environments_are_lean(stack):
    values = releases(run_program(stack))["linkerd-control-plane"].object()["values"]
    assert "controllerReplicas" not in values and "highAvailability" not in values
    assert "webhookFailurePolicy" not in values, "fail-open injection in lean environments, as the chart defaults"


def test_high_availability_can_be_forced_either_way():
    assert releases(run_program("dev", set_config={"linkerdHighAvailability": "true"}))[
        "linkerd-control-plane"].object()["values"]["controllerReplicas"] == 3
    prod_lean = releases(run_program("prod", set_config={"linkerdHighAvailability": "false"}))
    assert "controllerReplicas" not in prod_lean["linkerd-control-plane"].object()["values"]


def test_proxy_settings_reach_the_values(full):
    values = releases(full)["linkerd-control-plane"].object()["values"]
    proxy = values["proxy"]
    assert proxy["resources"]["cpu"] == {"request": "100m", "limit": "1"}, "HA request kept, limit from settings"
    assert proxy["resources"]["memory"] == {"limit": "250Mi", "request": "64Mi"}
    assert proxy["logLevel"] == "warn,linkerd=info,hickory=error"
    assert proxy["defaultInboundPolicy"] == "all-unauthenticated"
    assert values["controllerLogLevel"] == "info"


@pytest.mark.parametrize("variant", ["stacks", "full"])
def test_no_value_is_unknown_to_the_chart(variant, full, each_stack, needs_shared):
    run = full if variant == "full" else each_stack
    chart = chart_values(*CONTROL_PLANE_VALUES)
    found = releases(run)
    assert list(unknown_chart_values(found["linkerd-control-plane"].object()["values"], chart)) == []
    crds_chart = {**commented_chart_values("linkerd-crds_values.yaml"), **chart_values("linkerd-crds_values.yaml")}
    assert list(unknown_chart_values(found["linkerd-crds"].object()["values"], crds_chart)) == []


def test_the_values_walker_catches_typos_and_wrong_kinds(needs_shared):
    chart = chart_values(*CONTROL_PLANE_VALUES)
    assert list(unknown_chart_values({"identity": {"externalCa": True}}, chart)) == [".identity.externalCa: not a value of the chart"]
    assert unknown_chart_values({"cniEnabled": "true"}, chart).__next__().startswith(".cniEnabled: 'true' is a str")
    assert list(unknown_chart_values({"proxy": "warn"}, chart)) == [".proxy: the chart expects a map here, not 'warn'"]
    assert list(unknown_chart_values({"podAnnotations": {"anything": "goes"}}, chart)) == []


def test_cni_is_installed_before_the_control_plane(full):
    found = releases(full)
    assert found["linkerd2-cni"].inputs["namespace"] == "linkerd-cni"
    assert found["linkerd2-cni"].inputs["version"] == "2026.8.3"
    assert depends_on(full, found["linkerd-control-plane"], "linkerd-cni")
    assert found["linkerd-control-plane"].object()["values"]["cniEnabled"] is True


def test_viz_gets_its_namespace_certificates_and_values(full):
    viz = releases(full)["linkerd-viz"]
    assert viz.inputs["namespace"] == "linkerd-viz"
    for prerequisite in ("mesh-linkerd-viz", "linkerd-control-plane", *[f"linkerd-{w.certificate}" for w in VIZ_WEBHOOKS]):
        assert depends_on(full, viz, prerequisite), prerequisite
    values = viz.object()["values"]
    assert list(unknown_chart_values(values, VIZ_CHART_KEYS)) == []
    for webhook in VIZ_WEBHOOKS:
        namespace, _, certificate = values[webhook.values_key]["injectCaFrom"].partition("/")
        assert full.object("Certificate", certificate, namespace)["spec"]["secretName"] == webhook.secret
    assert full.object("Namespace", "linkerd-viz")["metadata"]["labels"]["linkerd.io/extension"] == "viz"


def test_optional_parts_are_absent_unless_asked_for(prod):
    assert {"linkerd2-cni", "linkerd-viz"}.isdisjoint(releases(prod))
    assert not [o for o in prod.objects("Namespace") if o["metadata"]["name"] == "linkerd-viz"]
    assert not [o for o in prod.objects("Certificate") if o["metadata"].get("namespace") == "linkerd-viz"]


def test_every_optional_object_conforms(full, needs_shared):
    failures = {describe(o): errors for o in full.objects() if (errors := validate_object(o))}
    assert not failures, failures


@pytest.mark.parametrize("key, value, message", [
    ("linkerdChartVersion", "edge-26.8.3", "'edge-26.8.3' is not a chart version"),
    ("linkerdHelmRepository", "helm.linkerd.io/edge", "is not an https:// or oci:// repository"),
    ("linkerdHighAvailability", "yes", "'yes' is not one of auto, true, false"),
    ("proxyCpuRequest", "100 m", "'100 m' is not a Kubernetes quantity"),
    ("proxyMemoryLimit", "250MB", "'250MB' is not a Kubernetes quantity"),
    ("proxyLogLevel", "warn, linkerd=info", "is not a log filter"),
    ("controllerLogLevel", "verbose", "'verbose' is not one of error, warn, info, debug, trace"),
    ("clusterDefaultInboundPolicy", "allow", "'allow' is not one of"),
    ("linkerdViz", "maybe", "must be true or false"),
])
def test_bad_linkerd_settings_are_reported_before_anything_registers(key, value, message):
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={key: value})
    assert any(p.where == f"mtls-mesh:{key}" and message in p.what for p in caught.value.problems), caught.value.problems
    assert caught.value.registrations == []
