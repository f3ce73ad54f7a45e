"""Alerts: a PodMonitor for the Linkerd proxies and a PrometheusRule on the metrics the mesh really exports (registered
by register_alerts.MeshAlerts).

Metric names come from the linkerd2-proxy source (control_identity_cert_*, inbound_*_authz_*, *_tcp_errors_total),
cert-manager (certmanager_certificate_*) and kube-state-metrics; docs/alerts.md holds each alert's row and runbook
section. Expiry thresholds are derived from the stack's certificate lifetimes. Rule groups are pure builders, so tests
feed them to `promtool check rules` and `promtool test rules` exactly as they are deployed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from plan.linkerd.authorization import GRPC_HEALTH_ROUTE_SUFFIX, GRPC_PROBE_AUTHZ_SUFFIX, authorization_objects, plaintext_authorizations
from read.durations import Duration
from plan.linkerd.control_plane import CONTROL_PLANE_WEBHOOKS, WEBHOOK_CERT_RENEW_BEFORE
from plan.alerts import (MONITORING_API, certificate_expiry_rules, human, rule)
from plan.linkerd.namespaces import LINKERD_NAMESPACE, VIZ_NAMESPACE
from plan.objects import metadata
from read.settings import PROXY_LEAF_LIFETIME, Settings

RULE_NAME = "mtls-mesh"
POD_MONITOR_NAME = "linkerd-proxies"
# Phases in which every inbound request must carry a mesh identity: plaintext there is a finding.
AUTHENTICATED_PHASES = ("deny", "all-authenticated", "cluster-authenticated")
# The proxy refreshes its certificate at 70% of the time left on it (linkerd2-proxy
# linkerd/proxy/identity-client/src/certify.rs `refresh_in`): a refresh older than this, plus a margin, is overdue.
REFRESH_AT = 0.7
REFRESH_MARGIN = 3600
# linkerd-identity's admin port (charts/linkerd-control-plane/templates/identity.yaml: container `identity`, port
# `ident-admin` 9990), where its gRPC server counts each Certify call with its status (pkg/prometheus/prometheus.go
# NewGrpcServer: go-grpc-prometheus v1.2.0, grpc_server_handled_total{grpc_type, grpc_service, grpc_method,
# grpc_code}); the service is linkerd2-proxy-api proto/identity.proto `io.linkerd.proxy.identity.Identity`.
IDENTITY_CONTAINER = "identity"
IDENTITY_ADMIN_PORT = "ident-admin"
IDENTITY_SERVICE = "io.linkerd.proxy.identity.Identity"
def _certificate_expiry_rules(alert: str, selector: str, what: str, renew_before: Duration,
                              runbook: str = "meshidentityissuerexpiring") -> list[dict[str, Any]]:
    return certificate_expiry_rules(alert, selector, what, renew_before, runbook=runbook)


def _namespace_regex(namespaces: Iterable[str]) -> str:
    # Namespace names are validated DNS labels: no regex metacharacters to escape (and PromQL strings reject `\-`).
    return "|".join(sorted(set(namespaces)))


def mesh_rule_groups(settings: Settings, policy: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every alert except anchor expiry (which needs the anchors' certificates): the `groups` of a rules file.
    `policy`: the graph namespaces' authorization objects, as compiled (plan.py); built here when not given."""
    graph = settings.graph
    meshed = [ns.name for ns in graph.meshed_namespaces]
    authenticated = [ns for ns in meshed if settings.rollout.policy_for(ns) in AUTHENTICATED_PHASES]
    ours = _namespace_regex([*meshed, LINKERD_NAMESPACE])
    issuer_namespaces = _namespace_regex([LINKERD_NAMESPACE, VIZ_NAMESPACE, *graph.certificate_services])
    # Where the program's Certificates live: the mesh's namespaces, cert-manager's, and viz's webhook CA and certificates.
    certificate_namespaces = _namespace_regex([*meshed, *graph.certificate_services, LINKERD_NAMESPACE,
                                               settings.cert_manager.namespace,
                                               *([VIZ_NAMESPACE] if settings.linkerd.viz else [])])
    by_pod = "namespace, pod"
    refresh_overdue = int(PROXY_LEAF_LIFETIME.seconds * REFRESH_AT) + REFRESH_MARGIN
    certify = (f'grpc_server_handled_total{{namespace="{LINKERD_NAMESPACE}", grpc_service="{IDENTITY_SERVICE}", '
               'grpc_method="Certify"')

    traffic = [
        rule("MeshInboundTLSDetectionTimeout",
             f'sum by ({by_pod}) (rate(inbound_tcp_errors_total{{error="tls detection timeout", namespace=~"{ours}"}}[5m])) > 0',
             "warning", "Inbound connections to {{ $labels.namespace }}/{{ $labels.pod }} time out in TLS detection",
             "Clients open connections and send nothing the proxy can classify; often a server-speaks-first protocol "
             "(databases, SMTP) on a port that is not opaque or skipped. {{ $value }} per second.", for_="10m"),
        # A failed mTLS handshake to a meshed peer (an anchor the peer does not trust, an expired certificate, the wrong
        # identity) surfaces as an i/o error of the connection: the proxy's TLS connector fails with io::Error
        # (linkerd2-proxy linkerd/meshtls/src/client.rs `type Error = io::Error`), counted as error="i/o" by
        # outbound_{tcp,http}_errors_total (linkerd/app/outbound/src/metrics/error.rs). ("identity required" counts
        # only requests that carry l5d-require-id, which nothing here sends.)
        rule("MeshOutboundConnectionErrors",
             f'sum by ({by_pod}) (rate(outbound_tcp_errors_total{{error="i/o", namespace=~"{ours}"}}[5m]))'
             f' + sum by ({by_pod}) (rate(outbound_http_errors_total{{error="i/o", namespace=~"{ours}"}}[5m])) > 0.1'
             f' or sum by ({by_pod}) (rate(outbound_tcp_errors_total{{error="i/o", namespace=~"{ours}"}}[5m])) > 0.1'
             f' or sum by ({by_pod}) (rate(outbound_http_errors_total{{error="i/o", namespace=~"{ours}"}}[5m])) > 0.1',
             "warning", "Outbound connections from {{ $labels.namespace }}/{{ $labels.pod }} keep failing",
             "{{ $value }} connection errors per second. Failed mTLS handshakes to meshed peers count here (during an "
             "anchor rotation: a peer that does not trust the issuing anchor yet), as do peers resetting connections.",
             for_="10m"),
        rule("MeshAuthorizationDenied",
             f'sum by (namespace, srv_kind, srv_name, client_id) (rate(inbound_http_authz_deny_total{{namespace=~"{ours}"}}[5m])) > 0'
             f' or sum by (namespace, srv_kind, srv_name, client_id) (rate(inbound_tcp_authz_deny_total{{namespace=~"{ours}"}}[5m])) > 0',
             "warning", "Requests to {{ $labels.namespace }}/{{ $labels.srv_name }} are denied by policy",
             "Client identity '{{ $labels.client_id }}' (empty: no mesh identity) is denied by the Server "
             "{{ $labels.srv_kind }}/{{ $labels.srv_name }}, {{ $value }} per second. Either the service graph lacks "
             "this caller or the caller should not be calling.", for_="5m"),
    ]
    if authenticated:
        # Plaintext the program admits on purpose, by the names the proxy reports it under (authz_name): kubelet
        # probes (Linkerd's `probe`, the admin port's and each gRPC port's probe authorization), Prometheus'
        # network on /metrics, and the proxy's own `localhost`. Derived from the objects the program registers.
        objects = list(authorization_objects(settings) if policy is None else policy)
        expected = plaintext_authorizations(objects)
        # A gRPC port's probe authorization is recognised by its shape instead of by name: the proxy reports it with
        # authz_name `<Server>-probes` on route `<Server>-health` of that very Server, which is how the program names
        # them (authorization.grpc_probe_objects). Listing each one by name made the rule grow with every gRPC port
        # (about 120 kB at 10,000 services), towards the object-size limit of the PrometheusRule.
        grpc_probes = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects
                       if o["kind"] == "AuthorizationPolicy" and o["spec"]["targetRef"]["kind"] == "GRPCRoute"
                       and o["metadata"]["name"].endswith(GRPC_PROBE_AUTHZ_SUFFIX)}
        grpc_namespaces = sorted({namespace for namespace, _ in grpc_probes} & set(authenticated))
        # One selector per set of other expected names (namespaces with the same names share one): a name admitted in
        # one namespace is not excused in another.
        # The probe names by namespace, indexed once: filtering every namespace's out of all of them was quadratic
        # (500 namespaces and 12,500 gRPC ports at 50,000 services: 7 s).
        probes_in: dict[str, set[str]] = {}
        for ns, name in grpc_probes:
            probes_in.setdefault(ns, set()).add(name)
        by_names: dict[tuple[str, ...], list[str]] = {}
        for namespace in authenticated:
            names = expected.get(namespace, set()) - probes_in.get(namespace, set())
            by_names.setdefault(tuple(sorted(names)), []).append(namespace)
        selectors = [f'tls!="true", namespace=~"{_namespace_regex(namespaces)}", authz_name!~"{_namespace_regex(names)}"'
                     for names, namespaces in sorted(by_names.items(), key=lambda item: sorted(item[1]))]

        def admitted(metric: str, selector: str) -> str:
            plaintext = f"rate({metric}{{{selector}}}[5m])"
            if metric != "inbound_http_authz_allow_total" or not grpc_namespaces:
                return plaintext
            # Per pod and Server, the one authorization name and route a gRPC probe is reported under; `group by`
            # first, so the relabelled series stay distinct.
            probe_shape = f'group by (namespace, pod, srv_name) ({metric}{{namespace=~"{_namespace_regex(grpc_namespaces)}"}})'
            for label, suffix in (("authz_name", GRPC_PROBE_AUTHZ_SUFFIX), ("route_name", GRPC_HEALTH_ROUTE_SUFFIX)):
                probe_shape = f'label_replace({probe_shape}, "{label}", "$1{suffix}", "srv_name", "(.+)")'
            return f"({plaintext} unless on (namespace, pod, srv_name, authz_name, route_name) {probe_shape})"

        traffic.append(rule(
            "MeshPlaintextInbound",
            " or ".join(f'sum by (namespace, pod, srv_name, authz_name) ({admitted(metric, selector)}) > 0'
                        for selector in selectors
                        for metric in ("inbound_http_authz_allow_total", "inbound_tcp_authz_allow_total")),
            "critical", "Plaintext traffic is admitted into {{ $labels.namespace }}/{{ $labels.pod }}",
            "The namespace's rollout phase requires mesh identity, yet the authorization {{ $labels.authz_name }} on "
            "Server {{ $labels.srv_name }} admits traffic without mTLS ({{ $value }} per second): a policy the program "
            "did not write admits unauthenticated clients.", for_="5m"))

    proxies = [
        # ">= 3", not "> 2": increase() extrapolates the samples it sees to the whole window when they reach within
        # 1.1 scrape intervals of its edges (Prometheus promql/functions.go extrapolatedRate, commit c77c3a8 "Limit
        # extrapolation"), so two restarts of a pod that restarted before read about 2.1 (2.14 measured with promtool
        # 2.42, one sample missed at the window's start) and "> 2" would fire on two.
        rule("MeshProxyRestarting",
             f'sum by ({by_pod}) (increase(kube_pod_init_container_status_restarts_total{{container="linkerd-proxy", namespace=~"{ours}"}}[15m])) >= 3'
             f' or sum by ({by_pod}) (increase(kube_pod_container_status_restarts_total{{container="linkerd-proxy", namespace=~"{ours}"}}[15m])) >= 3',
             "warning", "The linkerd-proxy of {{ $labels.namespace }}/{{ $labels.pod }} keeps restarting",
             "{{ $value }} restarts in 15 minutes (native sidecar init container or classic sidecar). "
             "Check `kubectl logs -c linkerd-proxy --previous` for identity or memory-limit errors."),
        # The proxy calls linkerd-identity only to refresh, at 70% of the time its certificate has left; a refused
        # or unanswered call is only logged (identity-client/src/certify.rs `run`: "Failed to obtain identity") and
        # no counter moves. What shows it is a gauge that stops moving: control_identity_cert_refresh_timestamp_seconds,
        # set on each certificate the proxy accepts (linkerd/identity/src/metrics.rs, registered under
        # `control_identity` + `cert` in linkerd/app/src/lib.rs and identity.rs). Its age past the refresh point is the
        # signal. A proxy that never got a certificate exports 0 (the gauge's default), which is overdue too. (min over
        # duplicate series: the freshest refresh any scrape of the pod saw.)
        rule("MeshProxyCertificateRefreshFailing",
             f'min by ({by_pod}) (time() - control_identity_cert_refresh_timestamp_seconds{{namespace=~"{ours}"}})'
             f' > {refresh_overdue}',
             "critical", "The proxy of {{ $labels.namespace }}/{{ $labels.pod }} fails to refresh its certificate",
             f"Its last certificate came {{{{ $value | humanizeDuration }}}} ago; proxies refresh theirs after "
             f"{human(Duration(int(PROXY_LEAF_LIFETIME.seconds * REFRESH_AT)))}: linkerd-identity refused or could not "
             "be reached. The proxy's certificate will expire unless a refresh succeeds. Check the identity issuer and "
             "`kubectl -n linkerd logs deploy/linkerd-identity`, and the proxy's log (`Failed to obtain identity`).",
             for_="5m"),
        # The other side of the same failure, seen at once: linkerd-identity answering a certificate request with an
        # error (an issuer it cannot use, a token it cannot review). Silent when linkerd-identity is down or
        # unreachable; MeshProxyCertificateRefreshFailing covers that.
        # One refused request (a deleted pod's token) is no outage: it pages when nothing succeeds in the window.
        rule("MeshIdentityRefusing",
             f'sum by (namespace, grpc_code) (increase({certify}, grpc_code!="OK"}}[15m])) > 0'
             f' unless on (namespace) sum by (namespace) (increase({certify}, grpc_code="OK"}}[15m])) > 0',
             "critical", "linkerd-identity refuses every certificate request ({{ $labels.grpc_code }})",
             "{{ $value }} Certify calls failed in 15 minutes and none succeeded: proxies cannot obtain or renew their "
             "certificates, and new pods do not start. `kubectl -n linkerd logs deploy/linkerd-identity`; then the "
             "identity issuer.", for_="5m", runbook="meshproxycertificaterefreshfailing"),
        # control_identity_cert_refreshes_total{result="error"} counts certificates linkerd-identity handed out that
        # the proxy then refused (linkerd/identity/src/metrics.rs `set_certificate`): one that does not chain to the
        # proxy's trust anchors or names another identity (linkerd/meshtls/src/creds/store.rs `validate`).
        rule("MeshProxyCertificateRejected",
             f'sum by ({by_pod}) (increase(control_identity_cert_refreshes_total{{result="error", namespace=~"{ours}"}}[15m])) > 0',
             "critical", "The proxy of {{ $labels.namespace }}/{{ $labels.pod }} refuses the certificate linkerd-identity issues",
             "The certificate does not chain to the proxy's trust anchors or names another identity: typically an "
             "anchor rotation step out of order (the issuer signed by an anchor the proxy's bundle lacks). The proxy "
             "keeps its old certificate until it expires.", runbook="meshproxycertificaterefreshfailing"),
    ]
    leaf = PROXY_LEAF_LIFETIME.seconds
    for severity, remaining in (("warning", leaf // 4), ("critical", leaf // 24)):
        proxies.append(rule(
            "MeshProxyCertificateExpiring",
            f'min by ({by_pod}) (control_identity_cert_expiration_timestamp_seconds{{namespace=~"{ours}"}} - time()) < {remaining}',
            severity, f"The proxy certificate of {{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}} expires in less than {human(Duration(remaining))}",
            f"Proxies renew their {human(PROXY_LEAF_LIFETIME)} certificate at about 70% of its life; "
            "{{ $value | humanizeDuration }} left means refreshes are failing. Once it expires, mTLS to and from the pod fails.",
            for_="5m", labels={"threshold": human(Duration(remaining))}, runbook="meshproxycertificaterefreshfailing"))

    webhook_names = "|".join(w.certificate for w in CONTROL_PLANE_WEBHOOKS)
    certificates = [
        *_certificate_expiry_rules("MeshIdentityIssuerExpiring", f'namespace="{LINKERD_NAMESPACE}", name="linkerd-identity-issuer"',
                                   "The Linkerd identity issuer", settings.pki.issuer_renew_before),
        *_certificate_expiry_rules("MeshWebhookCertificateExpiring",
                                   f'namespace="{LINKERD_NAMESPACE}", name=~"{webhook_names}"',
                                   "The Linkerd webhook certificate", Duration.parse(WEBHOOK_CERT_RENEW_BEFORE)),
        rule("MeshCertificateNotReady",
             f'max by (namespace, name, issuer_name) (certmanager_certificate_ready_status{{condition!="True", namespace=~"{certificate_namespaces}"}}) == 1',
             "critical", "Certificate {{ $labels.namespace }}/{{ $labels.name }} is not Ready",
             "cert-manager cannot issue or renew it through {{ $labels.issuer_name }}: "
             "`kubectl -n {{ $labels.namespace }} describe certificate {{ $labels.name }}`.", for_="15m"),
        # Every issuer of the mesh is a namespaced Issuer (plan/cert_manager.py): certmanager_issuer_ready_status.
        rule("MeshIssuerNotReady",
             f'max by (namespace, name) (certmanager_issuer_ready_status{{condition!="True", name=~"mtls-mesh-.*", '
             f'namespace=~"{issuer_namespaces}"}}) == 1',
             "critical", "Issuer {{ $labels.namespace }}/{{ $labels.name }} is not Ready",
             "Nothing it signs can be issued or renewed. With Vault: the namespace's Kubernetes auth login, the role's "
             "audience or the policy (`kubectl -n {{ $labels.namespace }} describe issuer {{ $labels.name }}`).",
             for_="10m"),
    ]
    # Without Vault the program signs workload certificates itself (no cert-manager metric exists for them).
    if settings.vault is not None and graph.certificate_services:
        certificates += _certificate_expiry_rules(
            "MeshWorkloadCertificateExpiring", f'name=~".*-mesh-tls", namespace=~"{_namespace_regex(graph.namespaces)}"',
            "The workload certificate", settings.pki.workload_renew_before)

    return [{"name": "mtls-mesh.traffic", "rules": traffic},
            {"name": "mtls-mesh.proxies", "rules": proxies},
            {"name": "mtls-mesh.certificates", "rules": certificates}]


def prometheus_rule(groups: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    """`groups` is a list of rule groups, some of them Outputs (the certificates' expiry is known once they exist)."""
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": metadata(RULE_NAME, LINKERD_NAMESPACE, labels=dict(labels)), "spec": {"groups": groups}}


def pod_monitor(settings: Settings, labels: Mapping[str, str]) -> dict[str, Any]:
    """Scrape every proxy's admin port (what Linkerd's own PodMonitor keeps): container linkerd-proxy, linkerd-admin;
    and linkerd-identity's admin port (its pods carry linkerd.io/control-plane-ns too)."""
    namespaces = sorted({ns.name for ns in settings.graph.meshed_namespaces} | {LINKERD_NAMESPACE}
                        | ({"linkerd-viz"} if settings.linkerd.viz else set()))
    return {
        "apiVersion": MONITORING_API, "kind": "PodMonitor",
        "metadata": metadata(POD_MONITOR_NAME, LINKERD_NAMESPACE, labels=dict(labels)),
        "spec": {
            "namespaceSelector": {"matchNames": namespaces},
            "selector": {"matchExpressions": [{"key": "linkerd.io/control-plane-ns", "operator": "Exists"}]},
            "podMetricsEndpoints": [{
                "port": "linkerd-admin", "path": "/metrics", "interval": "30s",
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_container_name"], "action": "keep",
                                 "regex": "linkerd-proxy"}],
            }, {
                # linkerd-identity's own metrics: its Certify calls and their status (MeshIdentityRefusing).
                "port": IDENTITY_ADMIN_PORT, "path": "/metrics", "interval": "30s",
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_container_name"], "action": "keep",
                                 "regex": IDENTITY_CONTAINER}],
            }],
        },
    }
