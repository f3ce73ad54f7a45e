"""Istio's alerts: the scrape objects (a PodMonitor for the sidecars' merged metrics, ServiceMonitors for istiod and
istio-csr) and the rule groups on the metrics Istio, its agent, istio-csr and cert-manager really export, as plain
data (registered by components/istio.py `IstioAlerts` with `mesh: istio`).

Every metric and label is read from the pinned sources (keys as in ../shared/reference/ISTIO-MULTICLUSTER.md):
- [PX] istio/proxy 1.29.6 (8f4f69324c5c) source/extensions/filters/http/istio_stats/istio_stats.cc: istio_requests_total
  and istio_tcp_connections_*_total with `reporter`, `connection_security_policy` (`mutual_tls`/`none` only for
  reporter="destination"), `source_principal`, `destination_*`, `response_code`, `grpc_response_status`,
  `response_flags` (Envoy's short flags, `-` for none: ResponseFlagUtils::toShortString).
- [I] istio/istio 1.29.6 (7019d6d3608e) security/pkg/nodeagent/cache/monitoring.go and secretcache.go: the agent's
  `num_failed_outgoing_requests{request_type="csr"}` and `cert_expiry_seconds{resource_name="default"}`, served on
  15020 with the prefix `istio_agent_` (pilot/cmd/pilot-agent/status/server.go `WrapRegistererWithPrefix`) and without
  counter suffixes (pkg/monitoring/monitoring.go `WithoutCounterSuffixes`).
- [CSR] cert-manager/istio-csr v0.17.0 (d8fadec3b039) pkg/server/server.go: go-grpc-middleware
  providers/prometheus v1.1.0 (go.mod) with namespace `cert_manager_istio_csr`, whose server_metrics.go names the
  counter `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}` (go-grpc-middleware tag
  providers/prometheus/v1.1.0, 53040665d19b); the service is istio/api security/v1alpha1/ca.proto
  `istio.v1.auth.IstioCertificateService`, method `CreateCertificate`, answered with Unauthenticated or Internal on
  failure. pkg/tls/tls.go: `cert_manager_istio_csr_tls_provider_certificate_requests{success="0|1"}` (no `_total`:
  controller-runtime's metrics server serves the classic text format, pkg/metrics/server/server.go HandlerOpts).
- cert-manager's certmanager_certificate_* for the Certificates the program creates (plan/istio/trust.py's Istio CA,
  istiod's Certificate `istiod`, plan/istio/control_plane.py), labels as in plan/linkerd/alerts.py.
No `citadel_*` metric: with istiod's CA off there is no CA server to export them (reference A6).

There is no "denied by RBAC" response flag: Envoy's flags (source/common/stream_info/utility.h) have none, and the
HTTP RBAC filter answers a local 403 "RBAC: access denied" (a gRPC caller gets grpc-status 7, PERMISSION_DENIED) with
response_flags `-`. A TCP connection refused by the network RBAC filter is closed with no flag or code at all, so
istio_tcp_* cannot tell a denial from an ordinary close; docs/istio-alerts.md says so.

Mesh-neutral helpers (the expiry tiers, the `human` durations, the anchors' and Vault intermediates' deploy-time
groups) are plan/alerts.py's, shared with the Linkerd path; docs/istio-alerts.md has one section per alert.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from plan.istio.names import (ISTIO_CSR, ISTIO_CSR_NAMESPACE, ISTIO_NAMESPACE, ISTIOD, ISTIOD_CERTIFICATE,
                              PROXY_STATUS_PORT, TLS_MODE_LABEL, WORKLOAD_CERTIFICATE_LIFETIME)
from plan.istio.trust import ISTIO_CA
from plan.alerts import (MONITORING_API, anchor_rule_group, certificate_expiry_rules, human, intermediate_rule_group,
                         rule as shared_rule)
from plan.objects import metadata
from read.durations import Duration
from read.settings import Settings

RULE_NAME = "mtls-mesh-istio"
POD_MONITOR_NAME = "istio-proxies"
ISTIOD_MONITOR_NAME = "istiod"
ISTIO_CSR_MONITOR_NAME = "cert-manager-istio-csr"
RUNBOOK_PAGE = "docs/istio-alerts.md"

# Rollout phases whose namespaces get PeerAuthentication STRICT (issue 32: audit = PERMISSIVE, deny = STRICT; the
# phases that require a mesh identity). plan/istio/authorization.py (branch istio-policy) must map phases the same way.
STRICT_PHASES = ("deny", "all-authenticated", "cluster-authenticated")

# The sidecar container (injection template [IC]) and its one declared port, 15090 `http-envoy-prom`: the PodMonitor
# selects that container port and scrapes the agent's merged endpoint on the status port of the same pod instead.
PROXY_CONTAINER = "istio-proxy"
ENVOY_PROMETHEUS_PORT_NAME = "http-envoy-prom"
MERGED_METRICS_PATH = "/stats/prometheus"
# istiod's Service port (templates/service.yaml [IC]); its Service carries app=istiod, istio=pilot.
ISTIOD_MONITORING_PORT_NAME = "http-monitoring"
ISTIOD_SERVICE_LABELS = {"app": ISTIOD, "istio": "pilot"}
# istio-csr's metrics Service (templates/metrics-service.yaml [CSR]): `<chart>-metrics`, port `metrics` (9402),
# labelled app=<chart>-metrics.
ISTIO_CSR_METRICS_SERVICE = f"{ISTIO_CSR}-metrics"
ISTIO_CSR_METRICS_PORT_NAME = "metrics"
ISTIO_CSR_METRICS_LABELS = {"app": ISTIO_CSR_METRICS_SERVICE}

# The agent's workload certificate (security.WorkloadKeyCertResourceName, pkg/security/security.go [I]).
WORKLOAD_RESOURCE = "default"
# The agent rotates at half the certificate's life (SECRET_GRACE_PERIOD_RATIO 0.5, jitter 0.01:
# pilot/cmd/pilot-agent/options/options.go [I]).
ROTATE_AT_REMAINING = 0.5
CSR_SERVICE = "istio.v1.auth.IstioCertificateService"
CSR_METHOD = "CreateCertificate"
# istio-csr's own Certificate for istiod: 1h, renewed 30m before expiry (values.yaml
# app.tls.istiodCertificateDuration/RenewBefore [CSR]; control_plane.py keeps the defaults).
ISTIOD_CERTIFICATE_RENEW_BEFORE = Duration.parse("30m")
# The target label the PodMonitor puts on every series of a pod whose sidecar takes plaintext on some inbound port by the
# program's own design: the pods of proxy-free services (`meshed: false` in a meshed namespace) and every pod of a
# namespace with skipInboundPorts, whose ports plan/istio/authorization.py `skipped_port_objects` sets to DISABLE. Their
# meshed callers then send plaintext (the server's own TLS), which the server's sidecar counts with
# connection_security_policy="none". istio_stats carries no port label (istio_stats.cc [PX]), so that expected plaintext
# cannot be told from other plaintext on the same pod: IstioPlaintextToStrictWorkload leaves these pods out.
SKIPPED_PORTS_LABEL = "mtls_mesh_skipped_ports"
# Prometheus' pod discovery names a pod label `__meta_kubernetes_pod_label_<key>`, every character of the key other
# than [a-zA-Z0-9_] replaced by `_` (prometheus discovery/kubernetes/pod.go `podLabelPrefix` +
# util/strutil SanitizeLabelName); a label the pod lacks reads as "".
POD_LABEL_META = "__meta_kubernetes_pod_label_"
POD_NAMESPACE_META = "__meta_kubernetes_namespace"
# Envoy: no response flag set ("-"); gRPC's PERMISSION_DENIED, which a local 403 becomes for a gRPC caller.
NO_FLAGS = "-"
GRPC_PERMISSION_DENIED = "7"


def rule(alert: str, expr: str, severity: str, summary: str, description: str, for_: str = "",
         labels: Mapping[str, str] | None = None, runbook: str = "") -> dict[str, Any]:
    """plan/alerts.py's rule shape, with the runbook on this mesh's page."""
    return shared_rule(alert, expr, severity, summary, description, for_, labels, runbook, page=RUNBOOK_PAGE)


def _regex(names: Iterable[str]) -> str:
    # Namespace and Service names are validated DNS labels: nothing to escape (and PromQL strings reject `\-`).
    return "|".join(sorted(set(names)))


def strict_namespaces(settings: Settings) -> list[str]:
    return sorted(ns.name for ns in settings.graph.meshed_namespaces
                  if settings.rollout.policy_for(ns.name) in STRICT_PHASES)


def _certificate_expiry(alert: str, selector: str, what: str, renew_before: Duration) -> list[dict[str, Any]]:
    """cert-manager's expiry gauge at plan/alerts.py's tiers. A short-lived certificate (istiod's, 1h renewed 30m
    before) waits less before firing: 15 minutes pending would use up the whole time between its warning and critical
    tiers."""
    waits = {"warning": "15m", "critical": "5m"} if renew_before.seconds >= 4 * 3600 else {"warning": "5m", "critical": "2m"}
    return certificate_expiry_rules(alert, selector, what, renew_before, page=RUNBOOK_PAGE, waits=waits)


def istio_rule_groups(settings: Settings) -> list[dict[str, Any]]:
    """Every Istio alert whose thresholds the settings fix: the `groups` of a rules file. The anchors' and the Vault
    intermediates' expiry are mesh-neutral deploy-time groups (plan/alerts.py anchor_rule_group,
    intermediate_rule_group): the Istio roots are the same anchors."""
    graph = settings.graph
    meshed = _regex(ns.name for ns in graph.meshed_namespaces)
    destination = f'reporter="destination", destination_workload_namespace=~"{meshed}"'
    by_call = "destination_workload_namespace, destination_workload, source_principal"

    traffic = [
        # An ALLOW policy that lacks the caller answers 403 with no response flag (HTTP) or grpc-status 7 (gRPC):
        # the server side (reporter="destination") counts it with the caller's principal.
        rule("IstioRequestsDenied",
             f'sum by ({by_call}) (rate(istio_requests_total{{{destination}, response_code="403", '
             f'response_flags="{NO_FLAGS}"}}[5m])) > 0'
             f' or sum by ({by_call}) (rate(istio_requests_total{{{destination}, request_protocol="grpc", '
             f'grpc_response_status="{GRPC_PERMISSION_DENIED}"}}[5m])) > 0',
             "warning",
             "Requests to {{ $labels.destination_workload_namespace }}/{{ $labels.destination_workload }} are refused",
             "{{ $value }} requests per second from '{{ $labels.source_principal }}' ('unknown': no mesh identity) end "
             "in 403 / PERMISSION_DENIED at the server's sidecar: an AuthorizationPolicy refusing a caller the service "
             "graph lacks (or the application itself refusing; the metric cannot tell them apart, the sidecar's access "
             "log can: `rbac_access_denied_matched_policy`).", for_="5m"),
    ]
    strict = strict_namespaces(settings)
    if strict:
        # Every caller of a meshed service has a mesh identity (read/graph.py refuses a proxy-free caller of one), so
        # any plaintext reaching a sidecar in a STRICT namespace is a finding; kubelet probes and scrapes use 15020
        # and 15021, which bypass Envoy and are never counted (reference A3).
        selector = (f'reporter="destination", connection_security_policy="none", '
                    f'destination_workload_namespace=~"{_regex(strict)}", {SKIPPED_PORTS_LABEL}=""')
        by_pair = "destination_workload_namespace, destination_workload, source_workload_namespace, source_workload"
        traffic.append(rule(
            "IstioPlaintextToStrictWorkload",
            " or ".join(f"sum by ({by_pair}) (rate({metric}{{{selector}}}[5m])) > 0"
                        for metric in ("istio_requests_total", "istio_tcp_connections_opened_total")),
            "critical",
            "Plaintext reaches {{ $labels.destination_workload_namespace }}/{{ $labels.destination_workload }}",
            "The namespace's phase makes it STRICT, yet its sidecar accepted traffic without mTLS from "
            "{{ $labels.source_workload_namespace }}/{{ $labels.source_workload }} ({{ $value }} per second): a "
            "PeerAuthentication the program did not write (PERMISSIVE or DISABLE on a workload or port) admits "
            "unauthenticated clients. (Pods of proxy-free services and of namespaces with skipInboundPorts take "
            "plaintext on those ports by design and are not watched.)", for_="5m"))

    lifetime = Duration.parse(WORKLOAD_CERTIFICATE_LIFETIME).seconds
    rotate_at = int(lifetime * ROTATE_AT_REMAINING)
    workload = f'resource_name="{WORKLOAD_RESOURCE}", namespace=~"{meshed}"'
    csr_calls = (f'cert_manager_istio_csr_grpc_server_handled_total{{namespace="{ISTIO_CSR_NAMESPACE}", '
                 f'grpc_service="{CSR_SERVICE}", grpc_method="{CSR_METHOD}"')
    proxies = [
        # ">= 3", not "> 2": increase() extrapolates the samples it sees to the whole window when they reach within
        # 1.1 scrape intervals of its edges (Prometheus promql/functions.go extrapolatedRate, commit c77c3a8 "Limit
        # extrapolation"), so two restarts of a pod that restarted before read about 2.1 (2.14 measured with promtool
        # 2.42, one sample missed at the window's start) and "> 2" would fire on two.
        rule("IstioProxyRestarting",
             f'sum by (namespace, pod) (increase(kube_pod_init_container_status_restarts_total{{container="{PROXY_CONTAINER}", namespace=~"{meshed}"}}[15m])) >= 3'
             f' or sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total{{container="{PROXY_CONTAINER}", namespace=~"{meshed}"}}[15m])) >= 3',
             "warning", "The istio-proxy of {{ $labels.namespace }}/{{ $labels.pod }} keeps restarting",
             "{{ $value }} restarts in 15 minutes (native sidecar init container or classic sidecar). "
             "`kubectl logs -c istio-proxy --previous`: certificate (CA_ADDR, istio-csr) or memory-limit errors."),
        # The agent counts each CSR it sends and each that fails (secretcache.go `generateNewSecret` [I]); it retries,
        # so a failure is no outage until the certificate runs short (IstioWorkloadCertificateExpiring).
        rule("IstioCertificateRequestsFailing",
             f'sum by (namespace, pod) (increase(istio_agent_num_failed_outgoing_requests{{request_type="csr", namespace=~"{meshed}"}}[15m])) > 0',
             "warning", "The agent of {{ $labels.namespace }}/{{ $labels.pod }} fails to get its certificate signed",
             "{{ $value }} certificate requests to istio-csr failed in 15 minutes. "
             "`kubectl -n istio-system logs deploy/cert-manager-istio-csr` and the Istio CA Issuer.", for_="10m"),
        rule("IstioCSRRefusing",
             f'sum by (namespace, grpc_code) (increase({csr_calls}, grpc_code!="OK"}}[15m])) > 0'
             f' unless on (namespace) sum by (namespace) (increase({csr_calls}, grpc_code="OK"}}[15m])) > 0',
             "critical", "istio-csr refuses every certificate request ({{ $labels.grpc_code }})",
             "{{ $value }} CreateCertificate calls failed in 15 minutes and none succeeded: no sidecar can renew its "
             f"{WORKLOAD_CERTIFICATE_LIFETIME} certificate and new pods do not start. Unauthenticated: the caller's "
             "token or cluster id; Internal: cert-manager could not sign, or the chain does not verify against the "
             "roots istio-csr pins.", for_="5m"),
        rule("IstioCSRServingCertificateFailing",
             f'sum by (namespace, pod) (increase(cert_manager_istio_csr_tls_provider_certificate_requests{{success="0", namespace="{ISTIO_CSR_NAMESPACE}"}}[15m])) > 0'
             f' unless on (namespace, pod) sum by (namespace, pod) (increase(cert_manager_istio_csr_tls_provider_certificate_requests{{success="1", namespace="{ISTIO_CSR_NAMESPACE}"}}[15m])) > 0',
             "critical", "istio-csr {{ $labels.pod }} cannot renew its own serving certificate",
             "istio-csr signs its gRPC serving certificate itself through cert-manager (pkg/tls/tls.go "
             "`fetchCertificate`); it failed {{ $value }} times in 15 minutes with no success. Once the current one "
             "expires, no sidecar can reach the CA.", for_="10m"),
    ]
    for severity, remaining, wait in (("warning", rotate_at * 2 // 3, "5m"), ("critical", rotate_at // 3, "2m")):
        proxies.append(rule(
            "IstioWorkloadCertificateExpiring",
            f"min by (namespace, pod) (istio_agent_cert_expiry_seconds{{{workload}}}) < {remaining}",
            severity, f"The workload certificate of {{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} expires in less "
                      f"than {human(Duration(remaining))}",
            f"The agent renews its {WORKLOAD_CERTIFICATE_LIFETIME} certificate with {human(Duration(rotate_at))} left; "
            "{{ $value | humanizeDuration }} left means renewals are failing. Once it expires, mTLS to and from the "
            "pod fails.", for_=wait, labels={"threshold": human(Duration(remaining))}))

    certificates = [
        *_certificate_expiry(
            "IstioCACertificateExpiring", f'namespace="{ISTIO_NAMESPACE}", name="{ISTIO_CA}"',
            "The Istio CA", settings.pki.issuer_renew_before),
        *_certificate_expiry(
            "IstiodCertificateExpiring", f'namespace="{ISTIO_NAMESPACE}", name="{ISTIOD_CERTIFICATE}"',
            "istiod's serving certificate", ISTIOD_CERTIFICATE_RENEW_BEFORE),
        rule("IstioCertificateNotReady",
             f'max by (namespace, name, issuer_name) (certmanager_certificate_ready_status{{condition!="True", '
             f'namespace="{ISTIO_NAMESPACE}"}}) == 1',
             "critical", "Certificate {{ $labels.namespace }}/{{ $labels.name }} is not Ready",
             "cert-manager cannot issue or renew it through {{ $labels.issuer_name }}: "
             "`kubectl -n {{ $labels.namespace }} describe certificate {{ $labels.name }}`.", for_="15m"),
        # The Istio CA's `ca:` Issuer and its signers are namespaced Issuers named mtls-mesh-istio-* (trust.py).
        rule("IstioIssuerNotReady",
             f'max by (namespace, name) (certmanager_issuer_ready_status{{condition!="True", '
             f'namespace="{ISTIO_NAMESPACE}", name=~"mtls-mesh-istio-.*"}}) == 1',
             "critical", "Issuer {{ $labels.namespace }}/{{ $labels.name }} is not Ready",
             "Nothing it signs can be issued or renewed: the Istio CA (signers) or every workload certificate (the "
             "CA's Issuer). `kubectl -n {{ $labels.namespace }} describe issuer {{ $labels.name }}`.", for_="10m"),
    ]
    return [{"name": "mtls-mesh-istio.traffic", "rules": traffic},
            {"name": "mtls-mesh-istio.proxies", "rules": proxies},
            {"name": "mtls-mesh-istio.certificates", "rules": certificates}]


def root_rule_groups(anchor_not_after: Mapping[str, int], anchor_validity: Duration,
                     intermediate_not_after: Mapping[str, int] | None = None,
                     intermediate_validity: Duration | None = None) -> list[dict[str, Any]]:
    """The roots istio-csr pins are the mesh anchors (trust.py istio_roots_bundle), signed or not through the Vault
    intermediates the Istio CA is renewed under: the Linkerd path's deploy-time groups, unchanged (their notAfter is
    read from the certificates when registering; runbooks in docs/alerts.md)."""
    groups = [anchor_rule_group(anchor_not_after, anchor_validity)]
    if intermediate_not_after and intermediate_validity is not None:
        groups.append(intermediate_rule_group(intermediate_not_after, intermediate_validity))
    return groups


def prometheus_rule(groups: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": metadata(RULE_NAME, ISTIO_NAMESPACE, labels=dict(labels)), "spec": {"groups": groups}}


def _address_on(port: int) -> list[dict[str, Any]]:
    """Point the target at `port` of the pod's IP, bracketing an IPv6 address (the approach of Istio's
    samples/addons/extras/prometheus-operator.yaml, with the port fixed instead of read from an annotation the app's
    own `prometheus.io/port` could have set)."""
    return [{"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "(.*:.*)", "targetLabel": "__address__",
             "replacement": f"[$1]:{port}", "action": "replace"},
            {"sourceLabels": ["__meta_kubernetes_pod_ip"], "regex": "([^:]+)", "targetLabel": "__address__",
             "replacement": f"$1:{port}", "action": "replace"}]


def _literal(value: str) -> str:
    # Namespace names and label values hold only [A-Za-z0-9._-]: `.` is the one regex metacharacter among them.
    return value.replace(".", "\\.")


def skipped_port_relabelings(settings: Settings) -> list[dict[str, Any]]:
    """SKIPPED_PORTS_LABEL="true" on the pods a proxy-free service of a meshed namespace selects (its namespace and every
    label of its selector; relabel regexes are anchored) and on every pod of a meshed namespace with skipInboundPorts.
    A selector label whose value is "" also matches pods lacking the label: such a pod is left out too, never the
    other way round."""
    rules: list[dict[str, Any]] = []
    graph = settings.graph

    def mark(sources: list[str], values: list[str]) -> None:
        rules.append({"sourceLabels": sources, "separator": ";", "regex": ";".join(_literal(v) for v in values),
                      "targetLabel": SKIPPED_PORTS_LABEL, "replacement": "true", "action": "replace"})

    for namespace in graph.meshed_namespaces:
        if namespace.skip_inbound_ports:
            mark([POD_NAMESPACE_META], [namespace.name])
            continue
        for service in graph.services_in(namespace.name):
            if not service.meshed:
                keys = sorted(service.selector_labels)
                mark([POD_NAMESPACE_META, *(POD_LABEL_META + re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in keys)],
                     [namespace.name, *(service.selector_labels[k] for k in keys)])
    return rules


def pod_monitor(settings: Settings, labels: Mapping[str, str]) -> dict[str, Any]:
    """Every injected pod (the injector labels them security.istio.io/tlsMode) in the mesh's namespaces: the agent's
    merged endpoint, `/stats/prometheus` on 15020 (Envoy's istio_* stats, the agent's istio_agent_*, the app's own),
    reached through the sidecar container's declared port. 15020 bypasses Envoy's capture (reference A3). A native
    sidecar is an init container: Prometheus' pod discovery lists init containers' ports too
    (discovery/kubernetes/pod.go, `__meta_kubernetes_pod_container_init`)."""
    namespaces = sorted(ns.name for ns in settings.graph.meshed_namespaces)
    return {
        "apiVersion": MONITORING_API, "kind": "PodMonitor",
        "metadata": metadata(POD_MONITOR_NAME, ISTIO_NAMESPACE, labels=dict(labels)),
        "spec": {
            "namespaceSelector": {"matchNames": namespaces},
            "selector": {"matchExpressions": [{"key": TLS_MODE_LABEL, "operator": "Exists"}]},
            "podMetricsEndpoints": [{
                "port": ENVOY_PROMETHEUS_PORT_NAME, "path": MERGED_METRICS_PATH, "interval": "30s",
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_container_name"], "action": "keep",
                                 "regex": PROXY_CONTAINER},
                                *_address_on(PROXY_STATUS_PORT), *skipped_port_relabelings(settings)],
            }],
        },
    }


def service_monitors(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """istiod's monitoring port (15014, pilot_* metrics) and istio-csr's metrics port (9402: its gRPC and serving
    certificate counters), through their charts' Services."""
    def monitor(name: str, selector: Mapping[str, str], port: str) -> dict[str, Any]:
        return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor",
                "metadata": metadata(name, ISTIO_NAMESPACE, labels=dict(labels)),
                "spec": {"namespaceSelector": {"matchNames": [ISTIO_NAMESPACE]},
                         "selector": {"matchLabels": dict(selector)},
                         "endpoints": [{"port": port, "path": "/metrics", "interval": "30s"}]}}
    return [monitor(ISTIOD_MONITOR_NAME, ISTIOD_SERVICE_LABELS, ISTIOD_MONITORING_PORT_NAME),
            monitor(ISTIO_CSR_MONITOR_NAME, ISTIO_CSR_METRICS_LABELS, ISTIO_CSR_METRICS_PORT_NAME)]
