"""discover for Istio (discover/istio_traffic.py) against a real Prometheus: TSDB blocks built by promtool from an
OpenMetrics fixture of the server sidecars' istio_requests_total and istio_tcp_connections_opened_total, labelled as
istio_stats tags them and as the program's PodMonitor scrapes them. The proposals must equal the fixture's undeclared
edges exactly; plaintext, unknown identities, the client-side reporter and callers whose port cannot be told are never
proposed; and the proposed graph, run through the program, gives an access matrix with exactly the observed edges."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from harness import PROJECT_DIR, run_program
from test_discover import START_AGO, END_AGO, SCRAPE_SECONDS, start_prometheus, stop
from tools import promtool

TRUST_DOMAIN = "cluster.local"  # stacks/Pulumi.staging.yaml


def principal(service_account: str, namespace: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True)
class Call:
    """One server-side counter: who called (namespace, workload, service account; None: no proxy) which workload (its
    Service), how, and how many between `ramp_from` and `ramp_to` seconds ago."""

    metric: str
    destination: tuple[str, str]
    source: tuple[str, str, str] | None
    protocol: str = "http"
    code: str = "200"
    grpc: str = ""
    reporter: str = "destination"
    port: str | None = None   # a `destination_port` tag a Telemetry tagOverride can add
    count: int = 600
    ramp_from: int = START_AGO
    ramp_to: int = END_AGO

    def labels(self) -> dict[str, str]:
        """istio_stats.cc (istio/proxy 1.29.6) tags: reporter, the peer's source_* (`unknown` without a peer,
        `latest` for its canonical revision), source_principal from the peer's URI SAN, the local destination_*,
        request_protocol, response_code / grpc_response_status (HTTP only), response_flags, and
        connection_security_policy (mutual_tls/none at the destination, unknown at the source); plus what the
        PodMonitor istio-system/istio-proxies adds (namespace, pod, container, endpoint, job, instance)."""
        dst_ns, dst = self.destination
        src_ns, src, account = self.source or ("unknown", "unknown", "")
        mtls = self.source is not None
        pod_ns, pod = (dst_ns, f"{dst}-7d9f-x2") if self.reporter == "destination" else (src_ns, f"{src}-5c4b-k1")
        labels = {"namespace": pod_ns, "pod": pod, "container": "istio-proxy", "endpoint": "http-envoy-prom",
                  "job": "istio-system/istio-proxies", "instance": "10.42.1.7:15020",
                  "reporter": self.reporter, "source_workload": src, "source_canonical_service": src,
                  "source_canonical_revision": "latest", "source_workload_namespace": src_ns,
                  "source_principal": principal(account, src_ns) if mtls else "unknown",
                  "source_app": src, "source_version": "unknown", "source_cluster": "Kubernetes" if mtls else "unknown",
                  "destination_workload": dst, "destination_workload_namespace": dst_ns,
                  "destination_principal": principal(dst, dst_ns), "destination_app": dst, "destination_version": "unknown",
                  "destination_service": f"{dst}.{dst_ns}.svc.cluster.local", "destination_canonical_service": dst,
                  "destination_canonical_revision": "latest", "destination_service_name": dst,
                  "destination_service_namespace": dst_ns, "destination_cluster": "Kubernetes",
                  "request_protocol": "tcp" if self.metric == TCP else self.protocol, "response_flags": "-",
                  "connection_security_policy": ("mutual_tls" if mtls else "none") if self.reporter == "destination"
                  else "unknown"}
        if self.metric == HTTP:
            labels.update({"response_code": self.code, "grpc_response_status": self.grpc})
        if self.port is not None:
            labels["destination_port"] = self.port
        return labels


HTTP, TCP = "istio_requests_total", "istio_tcp_connections_opened_total"
FRONTEND, CHECKOUT, CATALOG, BILLING = (("web", "frontend", "frontend"), ("web", "checkout", "checkout"),
                                        ("web", "catalog", "catalog"), ("payments", "billing", "billing"))

FIXTURE = [
    # Allowed and seen. billing -> ledger over HTTP fits both ledger ports (http is HTTP/2, admin HTTP/1); billing is
    # allowed on http, so it counts as seen there.
    Call(HTTP, ("web", "checkout"), FRONTEND),
    Call(HTTP, ("payments", "ledger"), BILLING),
    Call(HTTP, ("web", "catalog"), CHECKOUT, protocol="grpc", grpc="0"),
    # Not allowed: the proposals. One port fits each (ingress-nginx: http is HTTP/1, https opaque, so TCP lands on
    # https); frontend -> ledger carries the port a Telemetry tagOverride adds, so admin is named; it was refused.
    Call(HTTP, ("payments", "billing"), CATALOG, protocol="grpc", grpc="7"),
    Call(HTTP, ("ingress", "ingress-nginx"), FRONTEND),
    Call(TCP, ("ingress", "ingress-nginx"), CHECKOUT, count=60),
    Call(HTTP, ("payments", "ledger"), FRONTEND, port="8081", code="403", count=240, ramp_from=2 * 3600, ramp_to=3600),
    # Never proposed: HTTP to ledger that fits two ports and is allowed on neither; plaintext; an identity the graph
    # lacks; the client side's count of a call; a workload the graph does not know.
    Call(HTTP, ("payments", "ledger"), CATALOG),
    Call(HTTP, ("ingress", "ingress-nginx"), None),
    Call(HTTP, ("payments", "ledger"), ("tools", "debug", "debug"), code="403"),
    Call(HTTP, ("data", "postgres"), CATALOG, reporter="source"),
    Call(TCP, ("web", "redis-cache"), FRONTEND),
]
PROPOSED = {("payments/billing", "grpc", "web/catalog"), ("ingress/ingress-nginx", "http", "web/frontend"),
            ("ingress/ingress-nginx", "https", "web/checkout"), ("payments/ledger", "admin", "web/frontend")}
UNSEEN_ALLOWED = {("web/frontend", "http", "ingress/ingress-nginx"), ("web/catalog", "grpc", "web/frontend"),
                  ("payments/billing", "grpc", "web/checkout")}


def openmetrics(calls: list[Call], now: float) -> str:
    lines = []
    for family in sorted({c.metric for c in calls}):
        lines.append(f"# TYPE {family.removesuffix('_total')} counter")
        for call in (c for c in calls if c.metric == family):
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(call.labels().items()))
            for ago in range(START_AGO, END_AGO - 1, -SCRAPE_SECONDS):
                done = min(max((call.ramp_from - ago) / (call.ramp_from - call.ramp_to), 0.0), 1.0)
                lines.append(f"{family}{{{labels}}} {round(done * call.count)} {now - ago:.0f}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import time
    tmp = tmp_path_factory.mktemp("prometheus-istio")
    source = tmp / "sidecars.om"
    source.write_text(openmetrics(FIXTURE, time.time()))
    data = tmp / "data"
    result = subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    url, process = start_prometheus(tmp, data)
    yield url
    stop(process)


def run_discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "discover.istio_traffic", *args], capture_output=True, text=True,
                          cwd=PROJECT_DIR)


@pytest.fixture(scope="module")
def report(server) -> dict:
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def edges(rows):
    return {(r["service"], r["port"], r["caller"]) for r in rows}


def test_proposals_are_exactly_the_fixtures_undeclared_edges(report):
    assert edges(report["proposed"]) == PROPOSED


def test_allowed_calls_are_seen_on_the_port_they_are_allowed_on(report):
    assert edges(report["seenAllowed"]) == {("web/checkout", "http", "web/frontend"),
                                             ("payments/ledger", "http", "payments/billing"),
                                             ("web/catalog", "grpc", "web/checkout")}
    assert edges(report["unseenAllowed"]) == UNSEEN_ALLOWED


def test_what_cannot_be_placed_or_trusted_is_listed_apart_and_never_proposed(report):
    assert [(r["service"], r["ports"], r["caller"]) for r in report["ambiguousPorts"]] == [
        ("payments/ledger", ["http", "admin"], "web/catalog")]
    assert {(r["service"], r["port"], r["tls"]) for r in report["plaintext"]} == {("ingress/ingress-nginx", "http", "none")}
    assert {(r["clientId"], r["service"]) for r in report["unknownIdentities"]} == {
        (principal("debug", "tools"), "payments/ledger")}
    assert {(r["namespace"], r["srvName"]) for r in report["otherServers"]} == {("web", "redis-cache")}
    assert not any(r["service"] == "data/postgres" for r in report["proposed"] + report["seenAllowed"]), \
        "the client side's count (reporter=source) is never read"


def test_counts_and_denials(report):
    ledger = next(r for r in report["proposed"] if r["service"] == "payments/ledger")
    assert 0.9 * 240 <= ledger["requests"] <= 1.1 * 240 and ledger["denied"] == ledger["requests"]
    billing = next(r for r in report["proposed"] if r["service"] == "payments/billing")
    assert billing["denied"] == billing["requests"] > 0, "gRPC PERMISSION_DENIED counts as denied"
    tcp = next(r for r in report["proposed"] if r["port"] == "https")
    assert tcp["connections"] > 0 and tcp["requests"] == 0 and tcp["denied"] == 0


def test_applying_the_proposal_puts_exactly_the_observed_edges_in_the_access_matrix(server, tmp_path):
    proposed_file = tmp_path / "services.proposed.yaml"
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h", "--write", str(proposed_file))
    assert result.returncode == 0, result.stderr
    assert "Seen but not allowed: proposed additions (4)" in result.stdout
    assert "Seen on a port Istio's metrics do not name: not proposed (1)" in result.stdout
    # The whole mesh's matrix: staging is sharded, and its platform's own matrix covers only its own namespaces.
    before = run_program("staging", set_config={"policyShards": False}).exports["accessMatrix"]
    after = run_program("staging", set_config={"serviceGraph": str(proposed_file),
                                               "policyShards": False}).exports["accessMatrix"]
    for service, port, caller in PROPOSED:
        assert caller not in before[f"{service}:{port}"]["allowed"]
        assert caller in after[f"{service}:{port}"]["allowed"], (service, port, caller)
    assert {k for k in after if after[k] != before[k]} == {f"{s}:{p}" for s, p, _ in PROPOSED}


def test_a_prometheus_without_istio_metrics_is_a_clear_error(tmp_path):
    tmp = tmp_path / "empty"
    tmp.mkdir()
    url, process = start_prometheus(tmp, tmp / "data")
    try:
        result = run_discover("--prometheus", url, "--stack", "staging", "--since", "1h")
    finally:
        stop(process)
    assert result.returncode == 2 and "istio-system/istio-proxies" in result.stderr and not result.stdout


def test_an_unwritable_write_path_is_one_error_line_not_a_traceback(server, tmp_path):
    """--write shares discover's writer (discover.traffic.Report.write): a path that cannot be written is a usage
    error naming it, as for Linkerd, never a Python traceback."""
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h",
                          "--write", str(tmp_path / "missing-dir" / "services.yaml"))
    assert result.returncode == 2, result
    assert "error: cannot write --write" in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_python_m_discover_reads_istios_metrics_for_a_stack_with_mesh_istio(server, monkeypatch, capsys):
    """`python -m discover --stack <a stack with mesh: istio>` is the Istio command, not Linkerd's (which would find no
    Linkerd metrics and point at linkerd/linkerd-proxies): the same report as `python -m discover.istio_traffic`."""
    import discover.__main__ as command
    from istio_settings import settings_of
    from discover.stack import Stack
    from plan.mesh import compile_mesh

    settings = settings_of("staging", mesh="istio", linkerdViz=False)
    monkeypatch.setattr(command, "load_stack", lambda name: Stack(settings, compile_mesh(settings)))
    code = command.main(["--prometheus", server, "--stack", "staging", "--since", "6h", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["mesh"] == "istio" and edges(report["proposed"]) == PROPOSED
