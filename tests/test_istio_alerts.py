"""Istio's alerts (plan/istio/alerts.py), proven with Prometheus' own tool: the rules pass `promtool check rules`, and
`promtool test rules` shows every alert firing on the failure and silent on health, on series labelled exactly as
Istio's sidecar, its agent, istio-csr and cert-manager export them and as the program's monitors scrape them (each
label set cites its source). The monitors validate against the pinned prometheus-operator CRDs and point at ports and
Services the pinned charts really render."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from conformance import validate_object
from istio_settings import CLUSTER, TRUST_DOMAIN, settings_of
from test_alerts import (EVAL, alert_of, case, fixed, promtool_per_alert, promtool_run, restart_threshold_cases,
                         run_promtool_tests, rules_by_alert, series)
from tools import CHART_PATHS, CHARTS, render_chart
from plan.istio.alerts import (CSR_METHOD, CSR_SERVICE, ENVOY_PROMETHEUS_PORT_NAME, ISTIO_CSR_METRICS_LABELS,
                               ISTIO_CSR_METRICS_PORT_NAME, ISTIO_CSR_METRICS_SERVICE, ISTIOD_MONITORING_PORT_NAME,
                               ISTIOD_SERVICE_LABELS, MERGED_METRICS_PATH, POD_MONITOR_NAME, PROXY_CONTAINER,
                               SKIPPED_PORTS_LABEL,
                               istio_rule_groups, pod_monitor, prometheus_rule, root_rule_groups, service_monitors,
                               strict_namespaces)
from plan.istio.control_plane import istio_csr_values, istio_settings, istiod_values
from plan.istio.names import (ISTIO_CSR, ISTIO_CSR_CHART, ISTIO_CSR_METRICS_PORT, ISTIO_CSR_NAMESPACE,
                              ISTIO_CSR_RELEASE, ISTIO_NAMESPACE, ISTIOD_CHART, ISTIOD_MONITORING_PORT,
                              ISTIOD_RELEASE, PROXY_STATUS_PORT, TLS_MODE_LABEL)

LABELS = {"release": "kube-prometheus-stack"}


@pytest.fixture(scope="module")
def staging():
    return settings_of("staging", trustDomain=TRUST_DOMAIN)


@pytest.fixture(scope="module")
def dev():
    return settings_of("dev", trustDomain=TRUST_DOMAIN)


def spec(settings):
    return prometheus_rule(istio_rule_groups(settings), LABELS)["spec"]


# --- series as scraped ------------------------------------------------------------------------------------------------

def scraped_proxy(namespace: str, pod: str):
    """What Prometheus adds to a sidecar's series through the PodMonitor istio-system/istio-proxies: the target's
    namespace, pod, container, the selected port's name as `endpoint`, job `<namespace>/<PodMonitor>`, and the
    instance rewritten to the agent's status port."""
    return {"namespace": namespace, "pod": pod, "container": PROXY_CONTAINER, "endpoint": ENVOY_PROMETHEUS_PORT_NAME,
            "job": f"{ISTIO_NAMESPACE}/{POD_MONITOR_NAME}", "instance": f"10.42.1.23:{PROXY_STATUS_PORT}"}


def principal(service_account: str, namespace: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def istio_metric(metric: str, destination: tuple[str, str], source: tuple[str, str] | None, *, reporter="destination",
                 mtls=True, code="200", grpc="", flags="-", protocol="http"):
    """istio_requests_total / istio_tcp_* exactly as the server sidecar's istio_stats filter tags them (istio/proxy
    1.29.6 source/extensions/filters/http/istio_stats/istio_stats.cc: `reporter` first; the peer's source_* from its
    metadata or `unknown` (`latest` for the canonical revision), source_principal from the peer's URI SAN or `unknown`;
    the local destination_*; request_protocol; for HTTP response_code and grpc_response_status (empty unless gRPC);
    response_flags (Envoy's short flags, `-` for none); connection_security_policy `mutual_tls`/`none` at the destination
    and `unknown` at the source reporter). `destination`/`source` are (namespace, workload); source None: no proxy."""
    dst_ns, dst = destination
    src_ns, src = source if source is not None else ("unknown", "unknown")
    peer = source is not None
    labels = {
        "reporter": reporter,
        "source_workload": src, "source_canonical_service": src,
        "source_canonical_revision": "latest", "source_workload_namespace": src_ns,
        "source_principal": principal(src, src_ns) if peer and mtls else "unknown",
        "source_app": src if peer else "unknown", "source_version": "unknown", "source_cluster": CLUSTER if peer else "unknown",
        "destination_workload": dst, "destination_workload_namespace": dst_ns,
        "destination_principal": principal(dst, dst_ns) if mtls else "unknown", "destination_app": dst,
        "destination_version": "unknown", "destination_service": f"{dst}.{dst_ns}.svc.cluster.local",
        "destination_canonical_service": dst, "destination_canonical_revision": "latest",
        "destination_service_name": dst, "destination_service_namespace": dst_ns, "destination_cluster": CLUSTER,
        "request_protocol": "tcp" if metric.startswith("istio_tcp_") else protocol,
    }
    if metric == "istio_requests_total":
        labels.update({"response_code": code, "grpc_response_status": grpc})
    labels.update({"response_flags": flags,
                   "connection_security_policy": ("mutual_tls" if mtls else "none") if reporter == "destination" else "unknown"})
    pod_ns, pod = (dst_ns, f"{dst}-7d9f-x2") if reporter == "destination" else (src_ns, f"{src}-5c4b-k1")
    return {**scraped_proxy(pod_ns, pod), **labels}


def agent(metric_labels: dict, namespace="web", pod="checkout-7d9f-x2"):
    """istio_agent_* on the same merged endpoint (security/pkg/nodeagent/cache/monitoring.go, istio/istio 1.29.6)."""
    return {**scraped_proxy(namespace, pod), **metric_labels}


def scraped_istio_csr(labels: dict):
    """istio-csr's series through the ServiceMonitor istio-system/cert-manager-istio-csr on its metrics Service."""
    return {"namespace": ISTIO_CSR_NAMESPACE, "service": ISTIO_CSR_METRICS_SERVICE, "endpoint": ISTIO_CSR_METRICS_PORT_NAME,
            "pod": f"{ISTIO_CSR}-6b8d-q2", "container": ISTIO_CSR, "job": ISTIO_CSR_METRICS_SERVICE,
            "instance": f"10.42.0.31:{ISTIO_CSR_METRICS_PORT}", **labels}


def csr_call(code: str):
    """go-grpc-middleware providers/prometheus v1.1.0 server_metrics.go grpc_server_handled_total{grpc_type,
    grpc_service, grpc_method, grpc_code}, namespaced cert_manager_istio_csr (istio-csr v0.17.0 pkg/server/server.go);
    the service and method of istio/api security/v1alpha1/ca.proto."""
    return scraped_istio_csr({"grpc_type": "unary", "grpc_service": CSR_SERVICE, "grpc_method": CSR_METHOD,
                              "grpc_code": code})


def cert_manager_scraped(labels: dict):
    """certmanager_* through cert-manager's chart ServiceMonitor with honorLabels (plan/cert_manager.py
    cert_manager_values): the metric's own `namespace` (the Certificate's) wins over the target's."""
    return {"job": "cert-manager", "service": "cert-manager", "endpoint": "tcp-prometheus-servicemonitor",
            "instance": "10.42.0.7:9402", "pod": "cert-manager-5f7c9", "container": "cert-manager",
            "namespace": "cert-manager", **labels}


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def expiry_cases(alert, rules, labels):
    """certmanager_certificate_expiration_timestamp_seconds at each tier: an expiry that has been under the tier's
    threshold for the tier's whole `for` at evaluation, and is still above the next lower tier, fires that tier and
    every larger one; under it a minute short of its `for`, only the larger ones; far from expiry, silence."""
    tiers = sorted((int(r["expr"].rsplit("<", 1)[1]), seconds(r["for"]), r["labels"]["severity"], r["labels"]["threshold"])
                   for r in rules)
    carried = {k: labels[k] for k in ("namespace", "name", "issuer_kind", "issuer_name")}
    metric = "certmanager_certificate_expiration_timestamp_seconds"
    tests = []
    for index, (threshold, wait, _, _) in enumerate(tiers):
        lower = tiers[index - 1][0] if index else 0
        earliest, latest = lower + EVAL, threshold + EVAL - wait  # expiry (seconds after the test's start) bounds
        assert earliest < latest, f"{alert}: the tier at {threshold}s can never fire before the next one"
        fired = [{**carried, "severity": sev, "threshold": label} for t, _, sev, label in tiers if t >= threshold]
        tests += case(alert, [series(metric, labels, fixed((earliest + latest) // 2), cert_manager_scraped)],
                      [series(metric, labels, fixed(EVAL + tiers[-1][0] + 3600), cert_manager_scraped)], fired)
        # Under this tier's threshold for a minute less than its `for` at evaluation: this tier silent, every larger
        # one fires. Pins the tier (with its `for`) from above within two minutes, where the case before only bounds
        # it by the next larger tier.
        silent_expiry = EVAL + threshold - wait + 60
        assert all(t - (silent_expiry - EVAL) > w for t, w, _, _ in tiers if t > threshold), f"{alert}: tiers too close"
        larger = [{**carried, "severity": sev, "threshold": label} for t, _, sev, label in tiers if t > threshold]
        tests += case(alert, [series(metric, labels, fixed(silent_expiry), cert_manager_scraped)], [], larger)[:1]
    return tests


# --- the scenarios ------------------------------------------------------------------------------------------------

def scenarios(settings):
    by_alert = rules_by_alert(spec(settings))
    tests = []
    frontend, checkout = ("web", "frontend"), ("web", "checkout")
    caller = {"destination_workload_namespace": "web", "destination_workload": "checkout",
              "source_principal": principal("frontend", "web")}
    requests = "istio_requests_total"

    # An ALLOW policy lacking the caller: HTTP 403 with no flag, gRPC 200 with grpc-status 7.
    denied = istio_metric(requests, checkout, frontend, code="403")
    tests += case("IstioRequestsDenied", [series(requests, denied, "0+30x30")],
                  [series(requests, istio_metric(requests, checkout, frontend), "0+600x30"),
                   # The same denial seen by the client's sidecar only: the server side is where policy refuses.
                   series(requests, istio_metric(requests, checkout, frontend, reporter="source", code="403"), "0+30x30"),
                   # An upstream failure is no denial; and a 403 that stopped.
                   series(requests, istio_metric(requests, checkout, frontend, code="503", flags="UF"), "0+30x30"),
                   series(requests, denied, fixed(40))],
                  [{**caller, "severity": "warning"}])
    grpc_denied = istio_metric(requests, ("payments", "billing"), frontend, protocol="grpc", grpc="7")
    tests += case("IstioRequestsDenied", [series(requests, grpc_denied, "0+30x30")],
                  [series(requests, istio_metric(requests, ("payments", "billing"), frontend, protocol="grpc", grpc="0"),
                          "0+300x30")],
                  [{"destination_workload_namespace": "payments", "destination_workload": "billing",
                    "source_principal": principal("frontend", "web"), "severity": "warning"}])

    if "IstioPlaintextToStrictWorkload" in by_alert:
        strict = strict_namespaces(settings)
        open_namespaces = sorted({ns.name for ns in settings.graph.meshed_namespaces} - set(strict))
        assert strict and open_namespaces, "the stack under test has STRICT and open namespaces"
        target = (strict[0], "ledger")
        pair = {"destination_workload_namespace": target[0], "destination_workload": "ledger",
                "source_workload_namespace": "unknown", "source_workload": "unknown", "severity": "critical"}
        tcp = "istio_tcp_connections_opened_total"
        healthy = [series(requests, istio_metric(requests, target, frontend), "0+60x30"),
                   series(tcp, istio_metric(tcp, target, frontend), "0+6x30"),
                   # The client side reports `unknown`, never `none`; plaintext into an open phase's namespace is
                   # allowed there (e.g. an ingress taking traffic from outside the mesh).
                   series(requests, istio_metric(requests, target, frontend, reporter="source"), "0+60x30"),
                   series(requests, istio_metric(requests, (open_namespaces[0], "ingress-nginx"), None, mtls=False), "0+60x30"),
                   # A proxy-free service's port is DISABLE by design (postgres in data): its meshed callers' plaintext,
                   # counted by the sidecar the injector gave the pod, marked by the PodMonitor (skipped_port_relabelings).
                   series(tcp, {**istio_metric(tcp, ("data", "postgres"), ("payments", "billing"), mtls=False),
                                SKIPPED_PORTS_LABEL: "true"}, "0+6x30")]
        tests += case("IstioPlaintextToStrictWorkload",
                      [series(requests, istio_metric(requests, target, None, mtls=False), "0+6x30")], healthy, [pair])
        tests += case("IstioPlaintextToStrictWorkload",
                      [series(tcp, istio_metric(tcp, target, None, mtls=False), "0+1x30")], [], [pair])[:1]

    # kube-state-metrics' pod container metrics: namespace, pod, uid, container (docs/metrics/workload/pod-metrics.md).
    pod = {"namespace": "web", "pod": "checkout-7d9f-x2"}
    proxy = {**pod, "uid": "5b1e6a3c-0f0e-4e5e-9d7e-2f1c3a4b5c6d", "container": PROXY_CONTAINER}
    tests += case("IstioProxyRestarting",
                  [series("kube_pod_init_container_status_restarts_total", proxy, "0+1x30")],
                  [series("kube_pod_init_container_status_restarts_total", proxy, fixed(4)),
                   series("kube_pod_container_status_restarts_total", {**proxy, "container": "app"}, "0+1x30")],
                  [{**pod, "severity": "warning"}])
    tests += restart_threshold_cases("IstioProxyRestarting", proxy, [{**pod, "severity": "warning"}])

    # The agent: request_type="csr" (security/pkg/monitoring/monitoring.go CSR), no `_total` (WithoutCounterSuffixes).
    csr = {"request_type": "csr"}
    tests += case("IstioCertificateRequestsFailing",
                  [series("istio_agent_num_failed_outgoing_requests", agent(csr), "0+1x30"),
                   series("istio_agent_num_outgoing_requests", agent(csr), "0+1x30")],
                  [series("istio_agent_num_failed_outgoing_requests", agent(csr), fixed(2)),
                   series("istio_agent_num_outgoing_requests", agent(csr), "0+1x30")],
                  [{**pod, "severity": "warning"}])

    tests += case("IstioCSRRefusing",
                  [series("cert_manager_istio_csr_grpc_server_handled_total", csr_call("Internal"), "0+2x30"),
                   series("cert_manager_istio_csr_grpc_server_handled_total", csr_call("OK"), fixed(300))],
                  [series("cert_manager_istio_csr_grpc_server_handled_total", csr_call("OK"), "0+20x30"),
                   # A refused caller (a deleted pod's token) while others are served: no outage.
                   series("cert_manager_istio_csr_grpc_server_handled_total", csr_call("Unauthenticated"), "0+1x30")],
                  [{"namespace": ISTIO_CSR_NAMESPACE, "grpc_code": "Internal", "severity": "critical"}])

    # pkg/tls/tls.go metricCertRequest{success}: classic text exposition, no `_total`.
    serving = "cert_manager_istio_csr_tls_provider_certificate_requests"
    csr_pod = {"namespace": ISTIO_CSR_NAMESPACE, "pod": f"{ISTIO_CSR}-6b8d-q2"}
    tests += case("IstioCSRServingCertificateFailing",
                  [series(serving, scraped_istio_csr({"success": "0"}), "0+1x30"),
                   series(serving, scraped_istio_csr({"success": "1"}), fixed(5))],
                  [series(serving, scraped_istio_csr({"success": "1"}), "0+1x30"),
                   series(serving, scraped_istio_csr({"success": "0"}), "0+1x30")],
                  [{**csr_pod, "severity": "critical"}])

    # cert_expiry_seconds{resource_name="default"}: seconds left on the workload certificate (secretcache.go).
    expiry = {"resource_name": "default"}
    tiers = sorted((int(r["expr"].rsplit("<", 1)[1]), r["labels"]["severity"], r["labels"]["threshold"])
                   for r in by_alert["IstioWorkloadCertificateExpiring"])
    for threshold, _, _ in tiers:
        fired = [{**pod, "severity": sev, "threshold": label} for t, sev, label in tiers if t >= threshold]
        tests += case("IstioWorkloadCertificateExpiring",
                      [series("istio_agent_cert_expiry_seconds", agent(expiry), fixed(threshold - 60))],
                      # Renewed on time: never below the rotation point (half of the 1h certificate), and the
                      # root's resource (ROOTCA) is not the workload certificate.
                      [series("istio_agent_cert_expiry_seconds", agent(expiry), fixed(1800)),
                       series("istio_agent_cert_expiry_seconds", agent({"resource_name": "ROOTCA"}), fixed(60))],
                      fired)
        # Exactly at this tier's threshold (the rule is `<`): this tier silent, larger ones fire.
        tests += case("IstioWorkloadCertificateExpiring",
                      [series("istio_agent_cert_expiry_seconds", agent(expiry), fixed(threshold))], [],
                      [{**pod, "severity": sev, "threshold": label} for t, sev, label in tiers if t > threshold])[:1]

    # certmanager_certificate_* (cert-manager pkg/metrics): name, namespace, issuer_name, issuer_kind, issuer_group.
    def certificate(name, issuer):
        return {"name": name, "namespace": ISTIO_NAMESPACE, "issuer_name": issuer, "issuer_kind": "Issuer",
                "issuer_group": "cert-manager.io"}
    tests += expiry_cases("IstioCACertificateExpiring", by_alert["IstioCACertificateExpiring"],
                          certificate("mtls-mesh-istio-ca", "mtls-mesh-istio-signer-2026-11"))
    tests += expiry_cases("IstiodCertificateExpiring", by_alert["IstiodCertificateExpiring"],
                          certificate("istiod", "mtls-mesh-istio-ca"))
    not_ready = certificate("istiod", "mtls-mesh-istio-ca")
    tests += case("IstioCertificateNotReady",
                  [series("certmanager_certificate_ready_status", {**not_ready, "condition": "False"}, fixed(1), cert_manager_scraped)],
                  [series("certmanager_certificate_ready_status", {**not_ready, "condition": "True"}, fixed(1), cert_manager_scraped),
                   series("certmanager_certificate_ready_status", {**not_ready, "condition": "False"}, fixed(0), cert_manager_scraped),
                   series("certmanager_certificate_ready_status",
                          {**not_ready, "namespace": "someone-else", "condition": "False"}, fixed(1), cert_manager_scraped)],
                  [{k: not_ready[k] for k in ("namespace", "name", "issuer_name")} | {"severity": "critical"}])
    issuer = {"namespace": ISTIO_NAMESPACE, "name": "mtls-mesh-istio-ca"}
    tests += case("IstioIssuerNotReady",
                  [series("certmanager_issuer_ready_status", {**issuer, "condition": "False"}, fixed(1), cert_manager_scraped)],
                  [series("certmanager_issuer_ready_status", {**issuer, "condition": "True"}, fixed(1), cert_manager_scraped),
                   series("certmanager_issuer_ready_status", {**issuer, "name": "someone-elses", "condition": "False"},
                          fixed(1), cert_manager_scraped)],
                  [{**issuer, "severity": "critical"}])
    return tests


# --- the tests ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_rules_pass_promtool_check(stack, tmp_path):
    from tools import promtool
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec(settings_of(stack, trustDomain=TRUST_DOMAIN))))
    result = promtool_run(promtool(), tmp_path, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


SCENARIO_STACKS = ("dev", "staging")


@pytest.mark.parametrize("stack", SCENARIO_STACKS)
def test_every_alert_has_a_firing_and_a_silent_test(stack, request):
    settings = request.getfixturevalue(stack)
    assert set(rules_by_alert(spec(settings))) == {alert_of(t) for t in scenarios(settings)}, "an alert without a test"


_outcomes: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
def alert_outcomes(tmp_path_factory):
    """Each stack's promtool reports by alert (test_alerts.promtool_per_alert), from one promtool run per stack."""
    from tools import promtool

    def outcomes(stack):
        if stack not in _outcomes:
            settings = settings_of(stack, trustDomain=TRUST_DOMAIN)
            _outcomes[stack] = promtool_per_alert(promtool(), tmp_path_factory.mktemp(f"istio-alerts-{stack}"),
                                                  spec(settings), scenarios(settings))
        return _outcomes[stack]
    return outcomes


def pytest_generate_tests(metafunc):
    """One test per alert of each stack's rules (computed from its settings here, as the fixtures compute them)."""
    if "stack_alert" not in metafunc.fixturenames:
        return
    params = []
    for stack in SCENARIO_STACKS:
        try:
            alerts = sorted({alert_of(t) for t in scenarios(settings_of(stack, trustDomain=TRUST_DOMAIN))})
        except Exception as error:  # settings or scenarios fail: a test says so, instead of a collection error
            params.append(pytest.param((stack, error), id=f"{stack}-cannot-generate"))
            continue
        params += [pytest.param((stack, alert), id=f"{stack}-{alert}") for alert in alerts]
    metafunc.parametrize("stack_alert", params)


def test_every_alert_fires_on_failure_and_stays_silent_on_health(stack_alert, alert_outcomes):
    stack, alert = stack_alert
    if isinstance(alert, Exception):
        raise alert
    report = alert_outcomes(stack)[alert]
    assert report == "SUCCESS", f"{stack}: {alert}'s promtool tests:\n{report[-6000:]}"


def test_the_roots_are_watched_beside_the_istio_groups(staging, tmp_path):
    """The anchors istio-csr pins (and the Vault intermediates) expire on a date read at deploy time: their groups sit
    beside Istio's in one rules file, and the anchor's fires at its 60-day tier."""
    from tools import promtool
    from read.durations import Duration
    roots = root_rule_groups({"2026-11": 60 * 86400 - 1800}, Duration.parse("87600h"),
                             {"2026-11": 400 * 86400}, Duration.parse("43800h"))
    groups = [*istio_rule_groups(staging), *roots]
    assert len({g["name"] for g in groups}) == len(groups)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    assert promtool_run(promtool(), tmp_path, "check", "rules", "rules.yaml").returncode == 0
    expected = [{"anchor": "2026-11", "severity": "warning", "threshold": "60d"}]
    result = run_promtool_tests(promtool(), tmp_path, {"groups": groups},
                                case("MeshTrustAnchorExpiring", [], [], expected)[:1]
                                + case("MeshVaultIntermediateExpiring", [], [], [])[:1])
    assert result.returncode == 0, result.stdout


def test_plaintext_is_watched_exactly_in_the_strict_namespaces(dev, staging):
    assert "IstioPlaintextToStrictWorkload" not in rules_by_alert(spec(dev)), "audit is PERMISSIVE: plaintext is allowed"
    assert strict_namespaces(staging) == ["data", "payments", "web"]  # ingress is all-unauthenticated in staging


@pytest.mark.parametrize("alert,breakage", [
    ("IstioRequestsDenied", ('response_code="403"', 'response_code="404"')),
    ("IstioPlaintextToStrictWorkload", ('connection_security_policy="none"', 'connection_security_policy="unknown"')),
    ("IstioPlaintextToStrictWorkload", (f'{SKIPPED_PORTS_LABEL}=""', f'{SKIPPED_PORTS_LABEL}=~".*"')),
    ("IstioWorkloadCertificateExpiring", ('resource_name="default"', 'resource_name="ROOTCA"')),
    ("IstioCSRRefusing", ("istio.v1.auth.IstioCertificateService", "istio.v1.auth.Other")),
])
def test_the_generated_tests_can_fail(staging, tmp_path, alert, breakage):
    """Break one alert's selector: promtool must report that alert, so a green run means something."""
    from tools import promtool
    broken = copy.deepcopy(spec(staging))
    for group in broken["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = rule["expr"].replace(*breakage)
    reports = promtool_per_alert(promtool(), tmp_path, broken, scenarios(staging))
    assert f"alertname: {alert}" in reports[alert].partition("FAILED:")[2]
    assert {name for name, report in reports.items() if report != "SUCCESS"} == {alert}


def test_no_rule_uses_a_metric_that_does_not_exist_with_the_ca_off(staging):
    text = json.dumps(spec(staging))
    assert "citadel_" not in text
    # Envoy has no RBAC response flag: a rule waiting for one would never fire.
    assert 'response_flags="RBAC"' not in text and "UAEX" not in text


def test_runbooks_point_to_a_section_of_the_alerts_page(staging):
    from harness import PROJECT_DIR
    headings = {line.lstrip("#").strip().lower() for line in
                (PROJECT_DIR / "docs" / "istio-alerts.md").read_text().splitlines() if line.startswith("## ")}
    for group in spec(staging)["groups"]:
        for rule in group["rules"]:
            page, anchor = rule["annotations"]["runbook"].split("#")
            assert page == "docs/istio-alerts.md" and anchor in headings, rule["alert"]


# --- the monitors against the CRDs and the rendered charts -------------------------------------------------------

def test_monitoring_objects_validate_against_the_pinned_crds(staging, needs_shared):
    objects = [prometheus_rule(istio_rule_groups(staging), LABELS), pod_monitor(staging, LABELS), *service_monitors(LABELS)]
    for obj in objects:
        assert validate_object(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    broken = pod_monitor(staging, LABELS)
    broken["spec"]["podMetricsEndpoints"][0]["portName"] = "x"
    assert validate_object(broken), "the validation finds an unknown field"


def test_the_pod_monitor_scrapes_the_agent_through_the_sidecars_declared_port(staging):
    """The injection template declares one port on istio-proxy, 15090 `http-envoy-prom`, and sets the merge annotations
    to the status port and /stats/prometheus (webhook.go applyPrometheusMerge [I]); the pods carry the tlsMode label."""
    template = (CHARTS / CHART_PATHS["istiod"] / "files" / "injection-template.yaml").read_text()
    proxy = template[template.index(f"  - name: {PROXY_CONTAINER}\n"):]
    ports = proxy[proxy.index("    ports:\n"):proxy.index("    args:\n")]
    assert "containerPort: 15090" in ports and f"name: {ENVOY_PROMETHEUS_PORT_NAME}" in ports
    assert f"{TLS_MODE_LABEL}:" in template
    rendered = render_chart(ISTIOD_CHART, ISTIOD_RELEASE, ISTIO_NAMESPACE,
                            istiod_values(staging, istio_settings(staging, cluster_name=CLUSTER)))
    injector = next(o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "istio-sidecar-injector")
    assert json.loads(injector["data"]["values"])["global"]["proxy"]["statusPort"] == PROXY_STATUS_PORT
    endpoint = pod_monitor(staging, LABELS)["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == ENVOY_PROMETHEUS_PORT_NAME and endpoint["path"] == MERGED_METRICS_PATH
    assert {r.get("replacement") for r in endpoint["relabelings"]} >= {f"$1:{PROXY_STATUS_PORT}", f"[$1]:{PROXY_STATUS_PORT}"}
    assert set(pod_monitor(staging, LABELS)["spec"]["namespaceSelector"]["matchNames"]) == {
        ns.name for ns in staging.graph.meshed_namespaces}


def relabel(rules, meta: dict) -> dict:
    """Prometheus' relabeling (model/relabel/relabel.go), the two actions used: the source labels joined by the
    separator (default `;`) are matched by the anchored regex; `keep` drops the target (None) unless it matches,
    `replace` writes the replacement (with $1 groups) to the target label when it does."""
    labels = dict(meta)
    for rule in rules:
        assert rule["action"] in ("keep", "replace")
        value = rule.get("separator", ";").join(labels.get(k, "") for k in rule["sourceLabels"])
        found = re.fullmatch(rule["regex"], value)
        if rule["action"] == "keep":
            if not found:
                return None
        elif found:
            labels[rule["targetLabel"]] = found.expand(rule["replacement"].replace("$", "\\"))
    return labels


def pod_meta(namespace: str, labels: dict) -> dict:
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_ip": "10.42.1.23",
            "__meta_kubernetes_pod_container_name": PROXY_CONTAINER}
    meta.update({"__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in labels.items()})
    return meta


def test_the_pod_monitor_marks_exactly_the_pods_that_take_plaintext_by_design(staging, tmp_path):
    """IstioPlaintextToStrictWorkload leaves out the pods whose ports the program sets to DISABLE: staging's postgres
    (proxy-free in data) is marked, its neighbours and the meshed services are not; with skipInboundPorts, every pod of
    that namespace is."""
    rules = pod_monitor(staging, LABELS)["spec"]["podMetricsEndpoints"][0]["relabelings"]
    postgres = relabel(rules, pod_meta("data", {"app.kubernetes.io/name": "postgres", "pod-template-hash": "7d9f"}))
    assert postgres[SKIPPED_PORTS_LABEL] == "true" and postgres["__address__"] == f"10.42.1.23:{PROXY_STATUS_PORT}"
    for namespace, labels in (("data", {"app.kubernetes.io/name": "postgres-exporter"}), ("data", {"app": "postgres"}),
                              ("payments", {"app.kubernetes.io/name": "postgres"}), ("payments", {"app": "billing"}),
                              ("web", {"app": "frontend"})):
        assert SKIPPED_PORTS_LABEL not in relabel(rules, pod_meta(namespace, labels)), (namespace, labels)
    from harness import PROJECT_DIR
    document = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    document["namespaces"]["web"] = {**(document["namespaces"]["web"] or {}), "skipInboundPorts": [9999]}
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump(document))
    skipping = settings_of("staging", trustDomain=TRUST_DOMAIN, serviceGraph=str(path), allowFilesOutsideProject=True)
    rules = pod_monitor(skipping, LABELS)["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert relabel(rules, pod_meta("web", {"app": "frontend"}))[SKIPPED_PORTS_LABEL] == "true"
    assert SKIPPED_PORTS_LABEL not in relabel(rules, pod_meta("payments", {"app": "billing"}))


def test_the_service_monitors_select_the_charts_services_and_ports(staging):
    istio = istio_settings(staging, cluster_name=CLUSTER)
    rendered = {
        "istiod": render_chart(ISTIOD_CHART, ISTIOD_RELEASE, ISTIO_NAMESPACE, istiod_values(staging, istio)),
        ISTIO_CSR: render_chart(ISTIO_CSR_CHART, ISTIO_CSR_RELEASE, ISTIO_CSR_NAMESPACE, istio_csr_values(staging, istio)),
    }
    expected = {"istiod": (ISTIOD_SERVICE_LABELS, ISTIOD_MONITORING_PORT_NAME, ISTIOD_MONITORING_PORT),
                ISTIO_CSR: (ISTIO_CSR_METRICS_LABELS, ISTIO_CSR_METRICS_PORT_NAME, ISTIO_CSR_METRICS_PORT)}
    for monitor in service_monitors(LABELS):
        name = monitor["metadata"]["name"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert (selector, monitor["spec"]["endpoints"][0]["port"]) == expected[name][:2]
        services = [o for o in rendered[name] if o["kind"] == "Service" and o["metadata"].get("namespace") == ISTIO_NAMESPACE
                    and selector.items() <= o["metadata"].get("labels", {}).items()]
        assert len(services) == 1, f"{name}: {[s['metadata']['name'] for s in services]}"
        ports = {p.get("name"): p for p in services[0]["spec"]["ports"]}
        assert ports[expected[name][1]]["port"] == expected[name][2]
        # The Service reaches the pods that listen there: the Deployment's container declares that port.
        deployment = next(o for o in rendered[name] if o["kind"] == "Deployment")
        declared = {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert expected[name][2] in declared
        assert services[0]["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
