"""Alerts, proven with Prometheus' own tool: the rules each stack deploys pass `promtool check rules`, and for every
alert `promtool test rules` shows it firing on a synthetic series of the failure and silent on a healthy one, at the
expiry thresholds computed from that stack's settings.

The unit tests run on a copy of the rules without annotations: promtool compares annotations verbatim (rendered
$value included), while what matters here is expressions, `for` and labels. `promtool check rules` checks the
annotation templates of the deployed rules.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from plan.alerts import anchor_rule_group, certificate_not_after, intermediate_rule_group, signed_workload_rule_group
from read.durations import Duration
from read.errors import SettingsError
from conformance import validate_object
from conftest import mesh_run
from harness import MOCK_NOT_BEFORE, STACKS, RecordingMocks, mock_certificate_pem, run_program

PROMTOOL = shutil.which("promtool")
EVAL = 20 * 60  # seconds into the test at which alerts are evaluated; `for` durations are at most 15m


@pytest.fixture
def promtool():
    if PROMTOOL is None:
        if os.environ.get("MTLS_MESH_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here (MTLS_MESH_REQUIRE_PROMTOOL is set) but not on PATH")
        pytest.skip("promtool not found: apt-get install -y --no-install-recommends prometheus")
    return PROMTOOL


def rule_spec(run):
    return run.object("PrometheusRule", "mtls-mesh", "linkerd")["spec"]


def rules_by_alert(spec):
    found = {}
    for group in spec["groups"]:
        for rule in group["rules"]:
            found.setdefault(rule["alert"], []).append(rule)
    return found


def promtool_run(promtool, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True)


def without_annotations(spec):
    stripped = copy.deepcopy(spec)
    for group in stripped["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return stripped


def series(name, labels, values, scraped=None):
    if scraped is not None:
        labels = scraped(labels)
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def fixed(value):
    return f"{value}x30"


def case(alert, firing_series, healthy_series, expected_labels):
    """One alert's two tests: firing (with these labels) on the failure, silent on health."""
    return [
        {"interval": "1m", "input_series": firing_series,
         "alert_rule_test": [{"eval_time": f"{EVAL // 60}m", "alertname": alert,
                              "exp_alerts": [{"exp_labels": labels} for labels in expected_labels]}]},
        {"interval": "1m", "input_series": healthy_series,
         "alert_rule_test": [{"eval_time": f"{EVAL // 60}m", "alertname": alert, "exp_alerts": []}]},
    ]


def restart_threshold_cases(alert, proxy, expected_labels):
    """Three restarts in 15 minutes fire and two do not, for the native-sidecar init container and the classic
    container alike. Steps, not a steady climb: each restart is one sample. Twice each: a counter from zero with every
    sample present (increase() reads exactly 2 and 3), and a pod that restarted before, whose sample at the window's
    start is missed (a failed scrape; or Prometheus 3's left-open range): increase() then extrapolates the 14 minutes
    it saw to 15, 2 restarts read 2.14 and 3 read 3.21, so a `> 2` would fire on two."""
    tests = []
    for metric in ("kube_pod_init_container_status_restarts_total", "kube_pod_container_status_restarts_total"):
        for three, two in (("0x10 1 2 3x18", "0x10 1 2x19"), ("5x4 _ 5x4 6 7 8x18", "5x4 _ 5x4 6 7x19")):
            tests += case(alert, [series(metric, proxy, three)], [series(metric, proxy, two)], expected_labels)
    return tests


def threshold_seconds(rule):
    return int(rule["expr"].rsplit("<", 1)[1])


def expiry_cases(alert, rules, metric_labels, metric="certmanager_certificate_expiration_timestamp_seconds",
                 carried=("namespace", "name", "issuer_kind", "issuer_name"), scraped=None):
    """For each tier: remaining just under its threshold fires it and every larger tier; under it a
    minute short of its `for`, only the larger tiers; far from expiry: silence."""
    tests = []
    thresholds = sorted({(threshold_seconds(r), r["labels"]["severity"], r["labels"]["threshold"]) for r in rules})
    carried_labels = {k: v for k, v in metric_labels.items() if k in carried}
    waits = {threshold_seconds(r): Duration.parse(r.get("for", "0s")).seconds for r in rules}

    def fired(tiers):
        return [{**carried_labels, "severity": sev, "threshold": label} for _, sev, label in tiers]
    for threshold, _, _ in thresholds:
        # Under this tier's threshold from the start (so `for` has elapsed), and still above the next lower tier.
        expiry = threshold - 1800
        healthy_expiry = EVAL + max(t for t, _, _ in thresholds) + 3600
        tests += case(alert, [series(metric, metric_labels, fixed(expiry), scraped)],
                      [series(metric, metric_labels, fixed(healthy_expiry), scraped)],
                      fired(tier for tier in thresholds if tier[0] >= threshold))
        # Under this tier's threshold for a minute less than its `for` at evaluation: this tier is silent, every
        # larger one fires. Pins the tier (with its `for`) from above within two minutes, where the case before
        # only bounds it by the next larger tier.
        silent_expiry = EVAL + threshold - waits[threshold] + 60
        tests += case(alert, [series(metric, metric_labels, fixed(silent_expiry), scraped)], [],
                      fired(tier for tier in thresholds if tier[0] > threshold))[:1]
    return tests


def cert_manager_scrape(run):
    """certmanager_* labels as Prometheus stores them after scraping through the chart's ServiceMonitor with the
    values the program passes: the target's labels are added, and on a clash (`namespace`) the metric's own value
    survives only with honorLabels; otherwise it moves to `exported_namespace` (Prometheus' scrape config
    `honor_labels`, which prometheus-operator sets from the ServiceMonitor endpoint's honorLabels)."""
    releases = [r.object() for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.object()["chart"] == "cert-manager"]
    if not releases:
        return lambda labels: labels
    monitor = releases[0]["values"]["prometheus"]["servicemonitor"]
    honor = monitor.get("honorLabels", False)
    target = {"namespace": releases[0]["namespace"], "job": "cert-manager", "service": "cert-manager",
              "endpoint": "tcp-prometheus-servicemonitor", "instance": "10.42.0.7:9402", "pod": "cert-manager-5f7c9",
              "container": "cert-manager"}

    def stored(labels):
        out = dict(target)
        for key, value in labels.items():
            out[key if honor or key not in target else f"exported_{key}"] = value
        return out
    return stored


# Labels of one proxy's series after the program's PodMonitor scraped it: prometheus-operator adds the target's
# namespace, pod, container, endpoint (the port name), job and instance.
def scraped_proxy(labels):
    namespace, pod = labels["namespace"], labels["pod"]
    return {"container": "linkerd-proxy", "endpoint": "linkerd-admin", "instance": "10.42.1.23:4191",
            "job": f"linkerd/{POD_MONITOR}", **labels, "namespace": namespace, "pod": pod}


POD_MONITOR = "linkerd-proxies"


def inbound_authz(namespace, pod, srv_name, port, authz_kind, authz_name, tls, route=None):
    """inbound_{http,tcp}_authz_allow_total's exact labels (linkerd2-proxy v2.366.0): TargetAddr
    (target_addr, target_ip, target_port; app/core/src/transport/labels.rs), ServerLabel (srv_group, srv_kind,
    srv_name, srv_port; app/core/src/metrics.rs), for HTTP the route (route_group, route_kind, route_name), the
    authorization (authz_group, authz_kind, authz_name; kind "default" for Linkerd's own, "authorizationpolicy" with
    the policy's name: policy-controller grpc/src/inbound.rs `to_authz`), and TlsAccept (tls="true" + client_id,
    tls="no_identity" + no_tls_reason; linkerd/tls/src/server.rs NoServerTls: loopback, no_tls_from_remote)."""
    labels = {"target_addr": f"10.42.1.23:{port}", "target_ip": "10.42.1.23", "target_port": str(port),
              "srv_group": "policy.linkerd.io", "srv_kind": "server", "srv_name": srv_name, "srv_port": str(port)}
    if route is not None:
        group, kind, name = route
        labels.update({"route_group": group, "route_kind": kind, "route_name": name})
    labels.update({"authz_group": "" if authz_kind == "default" else "policy.linkerd.io", "authz_kind": authz_kind,
                   "authz_name": authz_name, **tls})
    return scraped_proxy({"namespace": namespace, "pod": pod, **labels})


MTLS = {"tls": "true", "client_id": "billing.payments.serviceaccount.identity.linkerd.cluster.local"}
PLAINTEXT = {"tls": "no_identity", "no_tls_reason": "no_tls_from_remote"}
LOOPBACK = {"tls": "no_identity", "no_tls_reason": "loopback"}


def plaintext_cases(run):
    """MeshPlaintextInbound: silent on every plaintext authorization the program writes (read from its objects, so a
    new one cannot be forgotten) and on Linkerd's probe and localhost; firing on any other policy admitting plaintext,
    and on a probe authorization's name used in a namespace where the program did not write it."""
    phases = run.exports["inboundPolicies"]
    strict = sorted(ns for ns, phase in phases.items() if phase in ("deny", "all-authenticated", "cluster-authenticated"))
    objects = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o
               for kind in ("AuthorizationPolicy", "NetworkAuthentication", "HTTPRoute", "GRPCRoute")
               for o in run.objects(kind)}
    healthy = []
    written = set()
    for (kind, namespace, name), obj in objects.items():
        if kind != "AuthorizationPolicy" or namespace not in strict:
            continue
        refs = obj["spec"]["requiredAuthenticationRefs"]
        if not all(r["kind"] == "NetworkAuthentication" for r in refs):
            continue
        target = obj["spec"]["targetRef"]
        route = objects[(target["kind"], namespace, target["name"])]
        server = route["spec"]["parentRefs"][0]["name"]
        port = 4191 if server == "linkerd-admin" else 9090
        healthy.append(series("inbound_http_authz_allow_total", inbound_authz(
            namespace, "probe-target-1", server, port, "authorizationpolicy", name, PLAINTEXT,
            route=(target["group"], target["kind"].lower(), target["name"])), "0+6x30"))
        written.add((namespace, name))
    ns = strict[0]
    assert (ns, "linkerd-admin-probes") in written
    if any(phase == "deny" for phase in phases.values()):
        assert any(name.endswith("-grpc-probes") for _, name in written), "gRPC probe authorizations are covered"
    healthy += [
        # Linkerd's own probe route on an HTTP/1 Server (policy-controller index.rs default_inbound_http_routes).
        series("inbound_http_authz_allow_total", inbound_authz(ns, "web-1", "frontend-http", 8080, "default", "probe",
                                                               PLAINTEXT, route=("", "default", "probe")), "0+6x30"),
        # kubectl port-forward: the proxy's own localhost authorization, HTTP and opaque.
        series("inbound_http_authz_allow_total", inbound_authz(ns, "web-1", "linkerd-admin", 4191, "default", "localhost",
                                                               LOOPBACK, route=("policy.linkerd.io", "httproute", "linkerd-admin-local")), "0+1x30"),
        series("inbound_tcp_authz_allow_total", inbound_authz(ns, "web-1", "ledger-http", 8080, "default", "localhost",
                                                              LOOPBACK), "0+1x30"),
        # Authenticated callers.
        series("inbound_http_authz_allow_total", inbound_authz(ns, "web-1", "ledger-http", 8080, "authorizationpolicy",
                                                               "ledger-http", MTLS, route=("", "default", "default")), "0+60x30"),
    ]
    firing_labels = inbound_authz(ns, "ledger-5c", "ledger-http", 8080, "authorizationpolicy", "ledger-http-open",
                                  PLAINTEXT, route=("", "default", "default"))
    expected = [{k: firing_labels[k] for k in ("namespace", "pod", "srv_name", "authz_name")} | {"severity": "critical"}]
    tests = case("MeshPlaintextInbound", [series("inbound_http_authz_allow_total", firing_labels, "0+60x30")],
                 healthy, expected)
    tcp = inbound_authz(ns, "pg-0", "postgres-postgres", 5432, "authorizationpolicy", "anyone", PLAINTEXT)
    tests += case("MeshPlaintextInbound", [series("inbound_tcp_authz_allow_total", tcp, "0+1x30")], [],
                  [{k: tcp[k] for k in ("namespace", "pod", "srv_name", "authz_name")} | {"severity": "critical"}])[:1]
    # A gRPC probe is recognised by its shape: the name `<Server>-probes` on the route `<Server>-health` of that Server.
    # The same name reported on another route of the Server (its catch-all), or for another Server, still pages.
    probe = next(((n, name) for (n, name) in sorted(written) if name.endswith("-grpc-probes")), None)
    if probe:
        namespace, name = probe
        server = name.removesuffix("-probes")
        for other_route, other_server in ((server, server), (f"{server}-health", f"{server}-other")):
            wrong = inbound_authz(namespace, "x-2", other_server, 9090, "authorizationpolicy", name, PLAINTEXT,
                                  route=("gateway.networking.k8s.io", "grpcroute", other_route))
            # Beside every healthy series, so the relabelled probe shapes of many series stay distinct and exact.
            tests += case("MeshPlaintextInbound", [series("inbound_http_authz_allow_total", wrong, "0+6x30"), *healthy], [],
                          [{k: wrong[k] for k in ("namespace", "pod", "srv_name", "authz_name")}
                           | {"severity": "critical"}])[:1]
    # A probe authorization's name excuses plaintext only in the namespace the program wrote it in.
    elsewhere = [(n, name) for (n, name) in written for other in strict if other != n and (other, name) not in written]
    if elsewhere:
        source, name = sorted(elsewhere)[0]
        other = next(o for o in strict if o != source and (o, name) not in written)
        borrowed = inbound_authz(other, "x-1", "x-grpc", 9090, "authorizationpolicy", name, PLAINTEXT,
                                 route=("gateway.networking.k8s.io", "grpcroute", "x-grpc-health"))
        tests += case("MeshPlaintextInbound", [series("inbound_http_authz_allow_total", borrowed, "0+6x30")], [],
                      [{k: borrowed[k] for k in ("namespace", "pod", "srv_name", "authz_name")}
                       | {"severity": "critical"}])[:1]
    return tests


def refresh_cases(rules, pod):
    """MeshProxyCertificateRefreshFailing, over a day: a proxy that refreshes at 70% of its 24h certificate stays
    silent; one whose refreshes stop (linkerd-identity refusing or unreachable: no counter moves, only the refresh
    gauge stops, and result="error" stays 0) fires, and so does one that never got a certificate (gauge at 0)."""
    (rule,) = rules
    overdue = int(rule["expr"].rsplit(">", 1)[1])
    assert 16 * 3600 < overdue < 20 * 3600, overdue
    labels = scraped_proxy(dict(pod))
    gauge = "control_identity_cert_refresh_timestamp_seconds"
    refreshed = 60480 + 600  # the first certificate at 10m, the next at 70% of 24h later
    # One sample a minute (the lookback is 5m: sparser samples would reset `for`), over 27 hours.
    healthy = [series(gauge, labels, f"600x1018 {refreshed}x600"),
               series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "ok"}), "1x1018 2x600"),
               series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "error"}), "0x1620")]
    stuck = [series(gauge, labels, "600x1620"),
             series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "ok"}), "1x1620"),
             series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "error"}), "0x1620")]
    never = [series(gauge, labels, "0x1620")]
    expected = [{**pod, "severity": "critical"}]

    def at(inputs, alerts, when="26h"):
        return {"interval": "1m", "input_series": inputs,
                "alert_rule_test": [{"eval_time": when, "alertname": "MeshProxyCertificateRefreshFailing",
                                     "exp_alerts": [{"exp_labels": a} for a in alerts]}]}
    return [at(healthy, []), at(stuck, expected), at(never, expected),
            # Before the refresh is due, a stalled proxy is not yet overdue.
            at(stuck, [], when="17h")]


def scenarios(run):
    """Generated promtool tests for every alert the stack deploys."""
    by_alert = rules_by_alert(rule_spec(run))
    scraped = cert_manager_scrape(run)
    phases = run.exports["inboundPolicies"]
    namespace = next(ns for ns, phase in phases.items())
    pod = {"namespace": namespace, "pod": "checkout-7d9f"}
    # {inbound,outbound}_tcp_errors_total carry error + TargetAddr (linkerd/app/{inbound,outbound}/src/metrics/error/
    # tcp.rs), outbound_http_errors_total only error (error/http.rs); values from error.rs (`ErrorKind`).
    tcp = lambda labels: scraped_proxy({**labels, "target_addr": "10.42.1.9:5432", "target_ip": "10.42.1.9",  # noqa: E731
                                        "target_port": "5432"})
    tests = []
    tests += case("MeshInboundTLSDetectionTimeout",
                  [series("inbound_tcp_errors_total", {**pod, "error": "tls detection timeout"}, "0+60x30", tcp)],
                  [series("inbound_tcp_errors_total", {**pod, "error": "tls detection timeout"}, fixed(3), tcp),
                   series("inbound_tcp_errors_total", {**pod, "error": "unexpected"}, "0+60x30", tcp)],
                  [{**pod, "severity": "warning"}])
    tests += case("MeshOutboundConnectionErrors",
                  [series("outbound_tcp_errors_total", {**pod, "error": "i/o"}, "0+60x30", tcp)],
                  [series("outbound_tcp_errors_total", {**pod, "error": "i/o"}, fixed(3), tcp),
                   series("outbound_http_errors_total", {**pod, "error": "i/o"}, "0+1x30", scraped_proxy),
                   series("outbound_tcp_errors_total", {**pod, "error": "identity required"}, "0+60x30", tcp)],
                  [{**pod, "severity": "warning"}])
    tests += case("MeshOutboundConnectionErrors",
                  [series("outbound_http_errors_total", {**pod, "error": "i/o"}, "0+60x30", scraped_proxy)],
                  [series("outbound_http_errors_total", {**pod, "error": "response timeout"}, "0+60x30", scraped_proxy)],
                  [{**pod, "severity": "warning"}])
    # The `> 0.1` per second: 6 errors a minute (exactly 0.1) stays silent and 7 fire, over TCP and HTTP alike; and
    # 4 TCP + 3 HTTP a minute fire though each alone is under the threshold.
    for metric, labelled in (("outbound_tcp_errors_total", tcp), ("outbound_http_errors_total", scraped_proxy)):
        tests += case("MeshOutboundConnectionErrors", [series(metric, {**pod, "error": "i/o"}, "0+7x30", labelled)],
                      [series(metric, {**pod, "error": "i/o"}, "0+6x30", labelled)], [{**pod, "severity": "warning"}])
    tests += case("MeshOutboundConnectionErrors",
                  [series("outbound_tcp_errors_total", {**pod, "error": "i/o"}, "0+4x30", tcp),
                   series("outbound_http_errors_total", {**pod, "error": "i/o"}, "0+3x30", scraped_proxy)],
                  [series("outbound_tcp_errors_total", {**pod, "error": "i/o"}, "0+3x30", tcp),
                   series("outbound_http_errors_total", {**pod, "error": "i/o"}, "0+3x30", scraped_proxy)],
                  [{**pod, "severity": "warning"}])
    # Denials carry the Server (and for HTTP the route) and TLS labels, no authorization (metrics/authz.rs).
    caller = {"tls": "true", "client_id": "frontend.web.serviceaccount.identity.linkerd.cluster.local"}
    tcp_deny = inbound_authz(namespace, "ledger-5c", "ledger-http", 8080, "default", "x", caller)
    tcp_deny = {k: v for k, v in tcp_deny.items() if not k.startswith("authz_")}
    http_deny = {**tcp_deny, "route_group": "", "route_kind": "default", "route_name": "default"}
    server = {k: tcp_deny[k] for k in ("namespace", "srv_kind", "srv_name", "client_id")}
    tests += case("MeshAuthorizationDenied",
                  [series("inbound_tcp_authz_deny_total", tcp_deny, "0+60x30")],
                  [series("inbound_http_authz_deny_total", http_deny, fixed(7)),
                   series("inbound_http_authz_allow_total", inbound_authz(namespace, "ledger-5c", "ledger-http", 8080,
                                                                          "authorizationpolicy", "ledger-http", caller,
                                                                          route=("", "default", "default")), "0+60x30")],
                  [{**server, "severity": "warning"}])
    if "MeshPlaintextInbound" in by_alert:
        tests += plaintext_cases(run)
    # kube-state-metrics' pod container metrics: namespace, pod, uid, container (docs/metrics/workload/pod-metrics.md).
    proxy = {**pod, "uid": "5b1e6a3c-0f0e-4e5e-9d7e-2f1c3a4b5c6d", "container": "linkerd-proxy"}
    tests += case("MeshProxyRestarting",
                  [series("kube_pod_init_container_status_restarts_total", proxy, "0+1x30")],
                  [series("kube_pod_init_container_status_restarts_total", proxy, fixed(4)),
                   series("kube_pod_container_status_restarts_total", {**proxy, "container": "app"}, "0+1x30")],
                  [{**pod, "severity": "warning"}])
    tests += case("MeshProxyRestarting",
                  [series("kube_pod_container_status_restarts_total", proxy, "0+1x30")],
                  [series("kube_pod_container_status_restarts_total", proxy, fixed(1))],
                  [{**pod, "severity": "warning"}])
    tests += restart_threshold_cases("MeshProxyRestarting", proxy, [{**pod, "severity": "warning"}])
    tests += refresh_cases(by_alert["MeshProxyCertificateRefreshFailing"], pod)
    # linkerd-identity's gRPC server (go-grpc-prometheus v1.2.0 server_metrics.go), scraped on ident-admin.
    identity = {"namespace": "linkerd", "pod": "linkerd-identity-6c9f-x", "container": "identity",
                "endpoint": "ident-admin", "job": "linkerd/linkerd-proxies", "instance": "10.42.0.12:9990",
                "grpc_type": "unary", "grpc_service": "io.linkerd.proxy.identity.Identity", "grpc_method": "Certify"}
    tests += case("MeshIdentityRefusing",
                  [series("grpc_server_handled_total", {**identity, "grpc_code": "FailedPrecondition"}, "0+1x30"),
                   series("grpc_server_handled_total", {**identity, "grpc_code": "OK"}, fixed(40))],
                  [series("grpc_server_handled_total", {**identity, "grpc_code": "OK"}, "0+5x30"),
                   # Some refusals while others succeed (a deleted pod's token): no outage.
                   series("grpc_server_handled_total", {**identity, "grpc_code": "Unauthenticated"}, "0+1x30"),
                   series("grpc_server_handled_total", {**identity, "grpc_code": "Unavailable"}, fixed(3)),
                   # Another gRPC server's failures (the destination controller) are not identity's.
                   series("grpc_server_handled_total", {**identity, "grpc_service": "io.linkerd.proxy.destination.Destination",
                                                        "grpc_method": "Get", "grpc_code": "Unknown"}, "0+1x30")],
                  [{"namespace": "linkerd", "grpc_code": "FailedPrecondition", "severity": "critical"}])
    tests += case("MeshProxyCertificateRejected",
                  [series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "error"}), "0+1x30")],
                  [series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "ok"}), "0+1x30"),
                   series("control_identity_cert_refreshes_total", scraped_proxy({**pod, "result": "error"}), fixed(2))],
                  [{**pod, "severity": "critical"}])
    # control_identity_cert_* carry no labels of their own (linkerd/identity/src/metrics.rs), only the target's.
    tests += expiry_cases("MeshProxyCertificateExpiring", by_alert["MeshProxyCertificateExpiring"], pod,
                          metric="control_identity_cert_expiration_timestamp_seconds", carried=("namespace", "pod"),
                          scraped=scraped_proxy)
    # cert-manager v1.21.1 internal/collectors/certificate_collector.go: expiration and ready status carry name,
    # namespace, issuer_name, issuer_kind, issuer_group (+ condition); issuer_collector.go: name, namespace, condition.
    issuer = {"namespace": "linkerd", "name": "linkerd-identity-issuer", "issuer_kind": "Issuer",
              "issuer_name": "mtls-mesh-identity-x", "issuer_group": "cert-manager.io"}
    tests += expiry_cases("MeshIdentityIssuerExpiring", by_alert["MeshIdentityIssuerExpiring"], issuer, scraped=scraped)
    webhook = {**issuer, "name": "linkerd-policy-validator", "issuer_name": "mtls-mesh-webhook-ca"}
    tests += expiry_cases("MeshWebhookCertificateExpiring", by_alert["MeshWebhookCertificateExpiring"], webhook, scraped=scraped)
    workload = {"namespace": "data", "name": "postgres-mesh-tls", "issuer_kind": "Issuer",
                "issuer_name": "mtls-mesh-workload-x", "issuer_group": "cert-manager.io"}
    if "MeshWorkloadCertificateExpiring" in by_alert and run.config.get("mtls-mesh:pkiMode", "vault") == "vault":
        tests += expiry_cases("MeshWorkloadCertificateExpiring", by_alert["MeshWorkloadCertificateExpiring"], workload,
                              scraped=scraped)
    not_ready = {"namespace": "linkerd", "name": "linkerd-identity-issuer", "issuer_name": "mtls-mesh-identity-x"}
    not_ready_labels = {**not_ready, "issuer_kind": "Issuer", "issuer_group": "cert-manager.io"}
    foreign = {**not_ready_labels, "namespace": "someone-else", "name": "their-cert"}
    tests += case("MeshCertificateNotReady",
                  [series("certmanager_certificate_ready_status", {**not_ready_labels, "condition": "False"}, fixed(1), scraped)],
                  [series("certmanager_certificate_ready_status", {**not_ready_labels, "condition": "True"}, fixed(1), scraped),
                   series("certmanager_certificate_ready_status", {**not_ready_labels, "condition": "False"}, fixed(0), scraped),
                   # A certificate outside the mesh's namespaces is not ours to alert on.
                   series("certmanager_certificate_ready_status", {**foreign, "condition": "False"}, fixed(1), scraped)],
                  [{**not_ready, "severity": "critical"}])
    ours_issuer = {"namespace": "linkerd", "name": "mtls-mesh-identity-x"}
    tests += case("MeshIssuerNotReady",
                  [series("certmanager_issuer_ready_status", {**ours_issuer, "condition": "False"}, fixed(1), scraped)],
                  [series("certmanager_issuer_ready_status", {**ours_issuer, "condition": "True"}, fixed(1), scraped),
                   series("certmanager_issuer_ready_status", {"namespace": "linkerd", "name": "someone-elses", "condition": "False"}, fixed(1), scraped),
                   # An issuer of the same name in a namespace the mesh does not manage is not ours.
                   series("certmanager_issuer_ready_status", {"namespace": "someone-else", "name": "mtls-mesh-identity-x", "condition": "False"}, fixed(1), scraped)],
                  [{**ours_issuer, "severity": "critical"}])
    return tests


def run_promtool_tests(promtool, tmp_path, spec, tests):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(without_annotations(spec)))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return promtool_run(promtool, tmp_path, "test", "rules", "tests.yaml")


def alert_of(test_group) -> str:
    (alert,) = {t["alertname"] for t in test_group["alert_rule_test"]}
    return alert


def only_alert(spec, alert):
    """The rules one alert's tests need: its own rules, in their groups (name and interval kept). promtool evaluates
    every rule of a test file at every step up to the last eval_time (a day for the refresh tests), so one alert's
    file holding the other rules only costs time: no rule reads another's result, unless a recording rule or ALERTS
    does, and then every rule stays."""
    rules = [r for g in spec["groups"] for r in g["rules"]]
    if any("record" in r or "ALERTS" in r["expr"] for r in rules):
        return spec
    groups = [{**g, "rules": [r for r in g["rules"] if r.get("alert") == alert]} for g in spec["groups"]]
    return {"groups": [g for g in groups if g["rules"]]}


def promtool_per_alert(promtool, directory: Path, spec, tests) -> dict[str, str]:
    """Every alert's tests in one `promtool test rules` run, one test file per alert (its rules alone: only_alert):
    each alert's part of promtool's report, which is "SUCCESS" when all its tests passed. promtool reports the files
    in the order given, each under "Unit Testing:  <file>", its failures on stderr (hence one stream)."""
    by_alert: dict[str, list] = {}
    for test_group in tests:
        by_alert.setdefault(alert_of(test_group), []).append(test_group)
    files = []
    for alert, groups in by_alert.items():
        (directory / f"{alert}.rules.yaml").write_text(yaml.safe_dump(without_annotations(only_alert(spec, alert))))
        (directory / f"{alert}.yaml").write_text(yaml.safe_dump(
            {"rule_files": [f"{alert}.rules.yaml"], "evaluation_interval": "1m", "tests": groups}, sort_keys=False))
        files.append(f"{alert}.yaml")
    result = subprocess.run([promtool, "test", "rules", *files], cwd=directory, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    reports = {}
    for part in result.stdout.split("Unit Testing:  ")[1:]:
        name, _, report = part.partition("\n")
        reports[name.strip().removesuffix(".yaml")] = report.strip()
    assert list(reports) == list(by_alert), f"promtool did not report every file:\n{result.stdout[-6000:]}"
    passed = [alert for alert, report in reports.items() if report == "SUCCESS"]
    assert (result.returncode == 0) == (len(passed) == len(reports)), result.stdout[-6000:]
    return reports


def test_deployed_rules_pass_promtool_check(each_stack, promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec(each_stack)))
    result = promtool_run(promtool, tmp_path, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


# Deployed rules written from a certificate read at deploy time (no metric) have their own tests below.
def alerts_from_deploy_time(run):
    from_deploy_time = {"MeshTrustAnchorExpiring", "MeshVaultIntermediateExpiring"}
    if run.config.get("mtls-mesh:pkiMode") == "self-signed":
        from_deploy_time.add("MeshWorkloadCertificateExpiring")
    return from_deploy_time


def test_every_alert_has_a_firing_and_a_silent_test(each_mesh):
    tested = {alert_of(t) for t in scenarios(each_mesh)}
    deployed = set(rules_by_alert(rule_spec(each_mesh))) - alerts_from_deploy_time(each_mesh)
    assert deployed == tested, f"alerts without a test: {deployed - tested}"


_outcomes: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="session")
def alert_outcomes(tmp_path_factory):
    """Each mesh's promtool reports by alert (promtool_per_alert), from one promtool run per mesh and session."""
    def outcomes(stack):
        if stack not in _outcomes:
            run = mesh_run(stack)
            _outcomes[stack] = promtool_per_alert(PROMTOOL, tmp_path_factory.mktemp(f"alerts-{stack}"), rule_spec(run),
                                                  scenarios(run))
        return _outcomes[stack]
    return outcomes


def pytest_generate_tests(metafunc):
    """One test per alert each mesh deploys: the stacks run under mocks here, once (conftest keeps the runs)."""
    if "mesh_alert" not in metafunc.fixturenames:
        return
    params = []
    for stack in STACKS:
        try:
            alerts = sorted({alert_of(t) for t in scenarios(mesh_run(stack))})
        except Exception as error:  # the program or the scenarios fail: a test says so, instead of a collection error
            params.append(pytest.param((stack, error), id=f"{stack}-cannot-generate"))
            continue
        params += [pytest.param((stack, alert), id=f"{stack}-{alert}") for alert in alerts]
    metafunc.parametrize("mesh_alert", params)


def test_every_alert_fires_on_failure_and_stays_silent_on_health(mesh_alert, promtool, alert_outcomes):
    stack, alert = mesh_alert
    if isinstance(alert, Exception):
        raise alert
    report = alert_outcomes(stack)[alert]
    assert report == "SUCCESS", f"{stack}: {alert}'s promtool tests:\n{report[-6000:]}"


def test_the_generated_tests_can_fail(dev, promtool, tmp_path):
    """Break one alert's threshold: promtool must report it, so a green run means something."""
    spec = copy.deepcopy(rule_spec(dev))
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "MeshIdentityIssuerExpiring" and rule["labels"]["severity"] == "warning":
                rule["expr"] = rule["expr"].rsplit("<", 1)[0] + "< 60"
    reports = promtool_per_alert(promtool, tmp_path, spec, scenarios(dev))
    assert "alertname: MeshIdentityIssuerExpiring" in reports["MeshIdentityIssuerExpiring"].partition("FAILED:")[2]
    assert {alert for alert, report in reports.items() if report != "SUCCESS"} == {"MeshIdentityIssuerExpiring"}


def test_issuer_thresholds_follow_the_renew_before_window(each_stack):
    rules = rules_by_alert(rule_spec(each_stack))["MeshIdentityIssuerExpiring"]
    assert [(r["labels"]["severity"], r["labels"]["threshold"]) for r in rules] == [("warning", "25h"), ("critical", "12h30m")]
    changed = run_program(each_stack.stack, set_config={"identityIssuerDuration": "72h", "identityIssuerRenewBefore": "36h"})
    rules = rules_by_alert(rule_spec(changed))["MeshIdentityIssuerExpiring"]
    assert [threshold_seconds(r) for r in rules] == [36 * 3600, 18 * 3600]


def test_workload_thresholds_follow_each_stacks_lifetime(dev, prod):
    def tiers(run):
        return [(r["labels"]["severity"], r["labels"]["threshold"])
                for r in rules_by_alert(rule_spec(run))["MeshWorkloadCertificateExpiring"]]
    assert tiers(prod) == [("warning", "30d"), ("critical", "15d"), ("critical", "7d"), ("critical", "1d")]
    assert tiers(dev) == [("warning", "10d"), ("critical", "5d"), ("critical", "1d")]


def test_dev_workload_expiry_is_read_from_the_certificate_the_program_signed(dev):
    rules = rules_by_alert(rule_spec(dev))["MeshWorkloadCertificateExpiring"]
    # The harness's stand-in for the signed certificate is valid for what the LocallySignedCert asked (720h).
    expected = int(MOCK_NOT_BEFORE.timestamp()) + 720 * 3600
    assert {(r["labels"]["namespace"], r["labels"]["name"]) for r in rules} == {("data", "postgres-mesh-tls")}
    for rule in rules:
        assert rule["expr"].startswith(f"vector({expected} - time())"), rule["expr"]


def test_signed_workload_alert_fires_at_each_tier_and_not_before(promtool, tmp_path):
    renew_before = Duration.parse("240h")
    for label, remaining in {"10d": 10, "5d": 5, "1d": 1}.items():
        expiry = remaining * 86400 - 1800
        group = signed_workload_rule_group({("data", "postgres-mesh-tls"): expiry}, renew_before)
        fired = [{"namespace": "data", "name": "postgres-mesh-tls", "severity": r["labels"]["severity"],
                  "threshold": r["labels"]["threshold"]}
                 for r in group["rules"] if threshold_seconds(r) >= remaining * 86400]
        assert label in {f["threshold"] for f in fired}
        tests = case("MeshWorkloadCertificateExpiring", [], [], fired)[:1]
        result = run_promtool_tests(promtool, tmp_path, {"groups": [group]}, tests)
        assert result.returncode == 0, result.stdout
    healthy = signed_workload_rule_group({("data", "postgres-mesh-tls"): 11 * 86400 + 3600}, renew_before)
    result = run_promtool_tests(promtool, tmp_path, {"groups": [healthy]},
                                case("MeshWorkloadCertificateExpiring", [], [], [])[:1])
    assert result.returncode == 0, result.stdout


def test_anchor_expiry_is_read_from_the_deployed_anchor(each_stack):
    anchors = rules_by_alert(rule_spec(each_stack))["MeshTrustAnchorExpiring"]
    validity = Duration.parse(each_stack.config.get("mtls-mesh:trustAnchorValidity", "87600h"))
    expected = int(MOCK_NOT_BEFORE.timestamp()) + validity.seconds
    for rule in anchors:
        assert rule["expr"].startswith(f"vector({expected} - time())"), rule["expr"]
    assert {r["labels"]["threshold"] for r in anchors} == {"60d", "30d", "7d", "1d"}


def test_anchor_alert_fires_at_each_tier(promtool, tmp_path):
    thresholds = {"60d": 60, "30d": 30, "7d": 7, "1d": 1}
    for label, days in thresholds.items():
        expiry = days * 86400 - 1800
        group = anchor_rule_group({"2026-11": expiry}, Duration.parse("87600h"))
        expected = [{"anchor": "2026-11", "severity": "warning" if t == "60d" else "critical", "threshold": t}
                    for t, d in thresholds.items() if d >= days]
        tests = case("MeshTrustAnchorExpiring", [], [], expected)[:1]
        result = run_promtool_tests(promtool, tmp_path, {"groups": [group]}, tests)
        assert result.returncode == 0, result.stdout


def test_anchor_expiry_parser_reads_real_certificates():
    from datetime import timedelta
    pem = mock_certificate_pem("parser-check", 3 * 86400)
    assert certificate_not_after(pem) == int((MOCK_NOT_BEFORE + timedelta(days=3)).timestamp())


def test_monitoring_objects_conform_and_carry_the_selector_labels(each_stack, needs_shared):
    for kind, name in (("PrometheusRule", "mtls-mesh"), ("PodMonitor", "linkerd-proxies")):
        obj = each_stack.object(kind, name, "linkerd")
        assert validate_object(obj) == []
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitor = each_stack.object("PodMonitor", "linkerd-proxies", "linkerd")["spec"]
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == ["linkerd-admin", "ident-admin"]
    assert set(monitor["namespaceSelector"]["matchNames"]) >= set(each_stack.exports["inboundPolicies"])


def test_no_alert_uses_a_metric_that_does_not_exist(each_stack):
    text = yaml.safe_dump(rule_spec(each_stack))
    assert "linkerd_tls_acceptor_events_total" not in text
    assert "identity_cert_expiration_timestamp_seconds" not in text.replace("control_identity_cert_expiration", "")


def test_alerts_can_be_switched_off_and_labels_set():
    off = run_program("dev", set_config={"alerts": False})
    assert not off.objects("PrometheusRule") and not off.objects("PodMonitor")
    custom = run_program("dev", set_config={"monitoringLabels": ["prometheus=platform"]})
    assert custom.object("PodMonitor", "linkerd-proxies", "linkerd")["metadata"]["labels"]["prometheus"] == "platform"


def test_bad_monitoring_labels_are_reported():
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"monitoringLabels": ["release"]})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:monitoringLabels[0]"]
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"monitoringLabels": ["release=a", "release=b"]})
    assert [(p.where, p.what) for p in caught.value.problems] == [
        ("mtls-mesh:monitoringLabels[1]", "label 'release' is set twice")]


def test_installed_cert_manager_is_scraped_when_alerts_are_on(dev):
    values = dev.named("certs-cert-manager").object()["values"]
    monitor = values["prometheus"]["servicemonitor"]
    assert monitor["enabled"] is True and monitor["labels"] == {"release": "kube-prometheus-stack"}
    off = run_program("dev", set_config={"alerts": False}).named("certs-cert-manager").object()["values"]
    assert "prometheus" not in off, "without prometheus-operator CRDs a ServiceMonitor would fail the install"


def test_an_unreadable_anchor_certificate_is_a_clear_error_not_a_traceback_from_a_der_walk():
    from plan.alerts import CertificateUnreadable

    with pytest.raises(CertificateUnreadable, match="trust anchor 2026-11: cannot read the certificate as PEM X.509"):
        certificate_not_after("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
                              "trust anchor 2026-11")


def test_every_certificate_the_program_registers_is_watched_for_readiness(promtool, tmp_path):
    """Each namespace that holds one of the program's Certificates (viz's webhook CA and certificates included) is in
    MeshCertificateNotReady's reach: a not-Ready Certificate there fires."""
    # staging as one stack: its data namespace's postgres Certificate is a shard's otherwise (the alerts are the
    # platform's, and cover every namespace either registers).
    run = run_program("staging", set_config={"linkerdViz": True, "alerts": True, "policyShards": False})
    spec = rule_spec(run)
    scraped = cert_manager_scrape(run)
    tests = []
    for certificate in run.objects("Certificate"):
        labels = {"namespace": certificate["metadata"]["namespace"], "name": certificate["metadata"]["name"],
                  "issuer_name": certificate["spec"]["issuerRef"]["name"]}
        tests += case("MeshCertificateNotReady",
                      [series("certmanager_certificate_ready_status", {**labels, "condition": "False"}, fixed(1), scraped)],
                      [], [{**labels, "severity": "critical"}])[:1]
    assert {"linkerd", "linkerd-viz", "data"} <= {c["metadata"]["namespace"] for c in run.objects("Certificate")}
    result = run_promtool_tests(promtool, tmp_path, spec, tests)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_intermediate_expiry_is_read_from_the_intermediate_vault_signs_with(each_stack):
    """Vault stacks: the intermediate's notAfter (the harness's stand-in is valid for the ttl the root was asked for)
    at 90, 30 and 7 days; with vaultIntermediateRenewals, the latest renewal's. Dev has no intermediate."""
    rules = rules_by_alert(rule_spec(each_stack)).get("MeshVaultIntermediateExpiring", [])
    if each_stack.config.get("mtls-mesh:pkiMode", "vault") != "vault":
        assert rules == []
        return
    ttl = Duration.parse(each_stack.config.get("mtls-mesh:vaultIntermediateTtl", "43800h"))
    expected = int(MOCK_NOT_BEFORE.timestamp()) + ttl.seconds
    assert [(r["labels"]["severity"], r["labels"]["threshold"]) for r in rules] == [
        ("warning", "90d"), ("critical", "30d"), ("critical", "7d")]
    assert {r["expr"].split(" - ")[0] for r in rules} == {f"vector({expected}"}

    class LatestRenewalDiffers(RecordingMocks):
        """The stand-in certificate of renewal 2036-04 is valid for 1,000 days, every other for what was asked."""

        def new_resource(self, args):
            ident, outputs = super().new_resource(args)
            if args.typ.endswith("SecretBackendRootSignIntermediate") and args.name.endswith("-renewal-2036-04"):
                outputs["certificate"] = mock_certificate_pem(args.name, 1000 * 86400)
            return ident, outputs

    renewed = run_program(each_stack.stack, set_config={"vaultIntermediateRenewals": ["2031-05", "2036-04"]},
                          mocks_factory=LatestRenewalDiffers)
    rules = rules_by_alert(rule_spec(renewed))["MeshVaultIntermediateExpiring"]
    assert {r["expr"].split(" - ")[0] for r in rules} == {f"vector({int(MOCK_NOT_BEFORE.timestamp()) + 1000 * 86400}"}


def test_intermediate_alert_fires_at_each_tier_at_least_30_days_ahead_and_not_before(promtool, tmp_path):
    thresholds = {"90d": 90, "30d": 30, "7d": 7}
    for label, days in thresholds.items():
        expiry = days * 86400 - 1800
        group = intermediate_rule_group({"2026-11": expiry}, Duration.parse("43800h"))
        expected = [{"anchor": "2026-11", "severity": "warning" if t == "90d" else "critical", "threshold": t}
                    for t, d in thresholds.items() if d >= days]
        result = run_promtool_tests(promtool, tmp_path, {"groups": [group]},
                                    case("MeshVaultIntermediateExpiring", [], [], expected)[:1])
        assert result.returncode == 0, result.stdout
    healthy = intermediate_rule_group({"2026-11": 91 * 86400}, Duration.parse("43800h"))
    result = run_promtool_tests(promtool, tmp_path, {"groups": [healthy]},
                                case("MeshVaultIntermediateExpiring", [], [], [])[:1])
    assert result.returncode == 0, result.stdout
