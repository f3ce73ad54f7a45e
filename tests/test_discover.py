"""`python -m discover` against a real Prometheus: TSDB blocks built by promtool from an OpenMetrics fixture written
here, with the proxies' real metric and label names as Prometheus stores them after the program's PodMonitor
(../shared/upstream/linkerd/METRICS.md; `namespace`/`pod` from the PodMonitor). The command's proposals must equal
the fixture's undeclared edges exactly, plaintext and unknown callers must never become allows, unseen allowed edges
are listed, and the proposed graph, run through the program, gives an access matrix with the observed edges."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness import PROJECT_DIR, STACKS, run_program
from tools import prometheus, promtool

sys.path.insert(0, str(PROJECT_DIR))
from read.stack_files import read_stack_file, stack_file  # noqa: E402
from discover import parse_window, propose  # noqa: E402
from read.settings import load_settings  # noqa: E402

TRUST_DOMAIN = "cluster.local"  # stacks/Pulumi.staging.yaml and dev's default
SCRAPE_SECONDS = 60
START_AGO = 3 * 3600   # the fixture's data spans the last three hours...
END_AGO = 10 * 60      # ...up to ten minutes ago


def identity(service_account: str, namespace: str) -> str:
    return f"{service_account}.{namespace}.serviceaccount.identity.linkerd.{TRUST_DOMAIN}"


@dataclass(frozen=True)
class Series:
    """One proxy counter: where it was counted (the callee pod's namespace and Server), by whom, and how many
    increments between `ramp_from` and `ramp_to` seconds ago (flat before and after)."""

    metric: str
    namespace: str
    srv_name: str
    srv_port: int
    tls: str
    client_id: str = ""
    authz_kind: str = ""
    authz_name: str = ""
    srv_kind: str = "server"
    route: tuple[str, str, str] = ("", "default", "default")  # route_group, route_kind, route_name (HTTP only)
    count: int = 600
    ramp_from: int = START_AGO
    ramp_to: int = END_AGO
    until: int = END_AGO  # the last sample, seconds ago

    def labels(self) -> dict[str, str]:
        """The proxy's labels (linkerd2-proxy release/v2.366.0, pinned by edge-26.8.3: authz counters carry
        TargetAddr, TlsAccept and Server/Route/Authz labels, linkerd/app/inbound/src/metrics/authz.rs;
        linkerd/app/core/src/transport/labels.rs `TlsAccept`, `TargetAddr`; linkerd/app/core/src/metrics.rs; a
        Server's srv_kind is "server", a default policy's "default", linkerd2 policy-controller/grpc/src/inbound.rs)
        plus what Prometheus adds from the PodMonitor's target (namespace, pod, container, endpoint, job, instance)."""
        pod_ip = "10.42.1.7"
        labels = {"namespace": self.namespace, "pod": f"{self.srv_name}-7d9f-x2", "container": "linkerd-proxy",
                  "endpoint": "linkerd-admin", "job": "linkerd/linkerd-proxies", "instance": f"{pod_ip}:4191",
                  "target_addr": f"{pod_ip}:{self.srv_port}", "target_ip": pod_ip, "target_port": str(self.srv_port),
                  "srv_group": "policy.linkerd.io" if self.srv_kind == "server" else "", "srv_kind": self.srv_kind,
                  "srv_name": self.srv_name, "srv_port": str(self.srv_port), "tls": self.tls}
        if self.tls == "true":
            labels["client_id"] = self.client_id
        else:
            labels["no_tls_reason"] = "no_tls_from_remote"
        if self.metric.startswith("inbound_http_"):
            labels.update(dict(zip(("route_group", "route_kind", "route_name"), self.route)))
        if "_allow_" in self.metric:
            labels.update({"authz_group": "policy.linkerd.io" if self.authz_kind != "default" else "",
                           "authz_kind": self.authz_kind, "authz_name": self.authz_name})
        return labels


ALLOW_HTTP, DENY_HTTP = "inbound_http_authz_allow_total", "inbound_http_authz_deny_total"
ALLOW_TCP = "inbound_tcp_authz_allow_total"
POLICY = "authorizationpolicy"

FIXTURE = [
    # Allowed by the graph and seen: frontend -> checkout:http, billing -> ledger:http (ledger's service account is
    # ledger-writer; the caller's is billing), and checkout -> catalog:grpc counted under authz_name=audit, which an
    # allowed caller can be in an audit namespace: still allowed, never proposed.
    Series(ALLOW_HTTP, "web", "checkout-http", 8080, "true", identity("frontend", "web"), POLICY, "checkout-http"),
    Series(ALLOW_HTTP, "payments", "ledger-http", 8080, "true", identity("billing", "payments"), POLICY, "ledger-http"),
    Series(ALLOW_HTTP, "web", "catalog-grpc", 9090, "true", identity("checkout", "web"), "default", "audit"),
    # Not allowed by the graph: the proposals.
    Series(DENY_HTTP, "payments", "ledger-admin", 8081, "true", identity("frontend", "web"), count=240,
           ramp_from=2 * 3600, ramp_to=3600),
    Series(ALLOW_HTTP, "payments", "billing-grpc", 9090, "true", identity("catalog", "web"), "default", "audit"),
    Series(ALLOW_HTTP, "ingress", "ingress-nginx-http", 80, "true", identity("frontend", "web"), "default",
           "all-unauthenticated"),
    Series(ALLOW_TCP, "ingress", "ingress-nginx-https", 443, "true", identity("checkout", "web"), "default",
           "all-unauthenticated"),
    # Never proposed: plaintext (no identity), kubelet probes, an identity the graph does not know, the admin port.
    Series(ALLOW_HTTP, "ingress", "ingress-nginx-http", 80, "no_identity", "", "default", "all-unauthenticated"),
    Series(DENY_HTTP, "web", "checkout-http", 8080, "no_identity"),
    Series(DENY_HTTP, "payments", "ledger-http", 8080, "true", identity("debug", "tools")),
    # Scrapes and probes go on until the last minute: a window with only those still has no traffic to report.
    Series(ALLOW_HTTP, "web", "linkerd-admin", 4191, "true", identity("kube-prometheus-stack-prometheus", "monitoring"),
           POLICY, "linkerd-admin-metrics", ramp_to=60, until=60),
    Series(ALLOW_HTTP, "web", "frontend-http", 8080, "no_identity", "", "default", "probe", ramp_to=60, until=60,
           route=("", "default", "probe")),
    # A kubelet `grpc:` probe, admitted by the program's route authorization: the proxy names it after the
    # AuthorizationPolicy (policy-controller grpc/src/inbound.rs `to_authz`), on the GRPCRoute for the health service.
    Series(ALLOW_HTTP, "web", "catalog-grpc", 9090, "no_identity", "", POLICY, "catalog-grpc-probes", ramp_to=60,
           until=60, route=("gateway.networking.k8s.io", "grpcroute", "catalog-grpc-health")),
    Series(ALLOW_HTTP, "payments", "linkerd-admin", 4191, "no_identity", "", POLICY, "linkerd-admin-probes",
           ramp_to=60, until=60, route=("policy.linkerd.io", "httproute", "linkerd-admin-probes")),
    # An unmeshed Prometheus scraping by network (prometheus-network-scrape, when prometheusNetworks is set).
    Series(ALLOW_HTTP, "payments", "linkerd-admin", 4191, "no_identity", "", POLICY, "prometheus-network-scrape",
           ramp_to=60, until=60, route=("policy.linkerd.io", "httproute", "linkerd-admin-metrics")),
    # A port the graph does not declare (no Server: the namespace's default policy answers): listed apart.
    Series(ALLOW_TCP, "ingress", "all-unauthenticated", 9113, "true", identity("frontend", "web"), "default",
           "all-unauthenticated", srv_kind="default"),
]
PROPOSED = {("payments/ledger", "admin", "web/frontend"), ("payments/billing", "grpc", "web/catalog"),
            ("ingress/ingress-nginx", "http", "web/frontend"), ("ingress/ingress-nginx", "https", "web/checkout")}
UNSEEN_ALLOWED = {("web/frontend", "http", "ingress/ingress-nginx"), ("web/catalog", "grpc", "web/frontend"),
                  ("payments/billing", "grpc", "web/checkout")}


def openmetrics(series: list[Series], now: float) -> str:
    """OpenMetrics text as promtool's create-blocks-from openmetrics reads it: families declared by the name without
    `_total`, samples grouped per family, timestamps in seconds, `# EOF` last."""
    lines = []
    for family in sorted({s.metric for s in series}):
        lines.append(f"# TYPE {family.removesuffix('_total')} counter")
        for s in (s for s in series if s.metric == family):
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels().items()))
            for ago in range(START_AGO, s.until - 1, -SCRAPE_SECONDS):
                done = min(max((s.ramp_from - ago) / (s.ramp_from - s.ramp_to), 0.0), 1.0)
                lines.append(f"{family}{{{labels}}} {round(done * s.count)} {now - ago:.0f}")
    return "\n".join(lines) + "\n# EOF\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prometheus(tmp: Path, data: Path) -> tuple[str, subprocess.Popen]:
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    process = subprocess.Popen([prometheus(), f"--config.file={config}", f"--storage.tsdb.path={data}",
                                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
                               stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return url, process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("prometheus did not become ready in 60s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def fixture_now() -> float:
    return time.time()


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_now) -> str:
    tmp = tmp_path_factory.mktemp("prometheus")
    source = tmp / "proxies.om"
    source.write_text(openmetrics(FIXTURE, fixture_now))
    data = tmp / "data"
    result = subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    url, process = start_prometheus(tmp, data)
    yield url
    stop(process)


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("prometheus-empty")
    url, process = start_prometheus(tmp, tmp / "data")
    yield url
    stop(process)


def run_discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "discover", *args], capture_output=True, text=True, cwd=PROJECT_DIR)


@pytest.fixture(scope="module")
def staging_report(server) -> dict:
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def edges(rows: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["service"], r["port"], r["caller"]) for r in rows}


def test_proposals_are_exactly_the_fixtures_undeclared_edges(staging_report):
    assert edges(staging_report["proposed"]) == PROPOSED


def test_an_allowed_caller_counted_under_authz_audit_is_not_proposed(staging_report):
    seen = edges(staging_report["seenAllowed"])
    assert ("web/catalog", "grpc", "web/checkout") in seen
    assert ("web/catalog", "grpc", "web/checkout") not in edges(staging_report["proposed"])


def test_plaintext_and_unknown_callers_are_listed_apart_and_never_proposed(staging_report):
    plaintext = {(r["service"], r["port"], r["tls"]) for r in staging_report["plaintext"]}
    assert plaintext == {("ingress/ingress-nginx", "http", "no_identity"), ("web/checkout", "http", "no_identity")}, \
        "kubelet probes (Linkerd's probe, the program's <svc>-<port>-probes) are expected plaintext and not listed"
    unknown = {(r["clientId"], r["service"], r["port"]) for r in staging_report["unknownIdentities"]}
    assert unknown == {(identity("debug", "tools"), "payments/ledger", "http")}
    assert all(r["caller"].count("/") == 1 and "." not in r["caller"] for r in staging_report["proposed"])
    assert not any("linkerd-admin" in json.dumps(r) for r in staging_report["proposed"] + staging_report["otherServers"])


def test_traffic_to_undeclared_ports_is_listed_apart(staging_report):
    other = {(r["namespace"], r["srvKind"], r["srvName"]) for r in staging_report["otherServers"]}
    assert other == {("ingress", "default", "all-unauthenticated")}


def test_a_caller_listed_for_some_ports_gets_the_new_port_added():
    config, secret_keys = read_stack_file(stack_file("staging"))
    graph = load_settings(config, "staging", secret_keys=secret_keys).graph
    text = (PROJECT_DIR / "services.yaml").read_text()
    proposal = propose(text, graph, [("ledger", "admin", "billing"), ("checkout", "http", "catalog")])
    assert "      - {service: billing, ports: [http, admin]}\n" in proposal
    assert "    allow: [frontend, catalog]\n" in proposal
    assert len(proposal.splitlines()) == len(text.splitlines())


def test_allowed_edges_never_seen_are_listed(staging_report):
    assert edges(staging_report["unseenAllowed"]) == UNSEEN_ALLOWED


def test_counts_and_first_and_last_seen(staging_report, fixture_now):
    row = next(r for r in staging_report["proposed"] if r["service"] == "payments/ledger")
    assert 0.9 * 240 <= row["requests"] <= 1.1 * 240 and row["denied"] == row["requests"] and row["connections"] == 0
    tcp = next(r for r in staging_report["proposed"] if r["port"] == "https")
    assert tcp["connections"] > 0 and tcp["requests"] == 0
    resolution = staging_report["seenResolutionSeconds"]
    first = _epoch(row["firstSeen"])
    last = _epoch(row["lastSeen"])
    # The fixture's ledger:admin traffic ran from 2h to 1h ago; the report sees it to within its resolution.
    assert fixture_now - 2 * 3600 - 60 <= first <= fixture_now - 2 * 3600 + 2 * resolution, row
    assert fixture_now - 3600 - 60 <= last <= fixture_now - 3600 + 2 * resolution, row


def _epoch(text: str) -> float:
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def test_applying_the_proposal_puts_the_observed_edges_in_the_access_matrix(server, tmp_path):
    proposed_file = tmp_path / "services.proposed.yaml"
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h", "--write", str(proposed_file))
    assert result.returncode == 0, result.stderr
    assert "Seen but not allowed: proposed additions (4)" in result.stdout
    # staging as one stack: its matrix then covers the sharded namespaces too (staging is sharded like prod).
    before = run_program("staging", set_config={"policyShards": False}).exports["accessMatrix"]
    after = run_program("staging", set_config={"serviceGraph": str(proposed_file),
                                               "policyShards": False}).exports["accessMatrix"]
    for service, port, caller in PROPOSED:
        assert caller not in before[f"{service}:{port}"]["allowed"]
        assert caller in after[f"{service}:{port}"]["allowed"], (service, port, caller)
    # Nothing else changed: the proposal only adds the observed edges.
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {f"{s}:{p}" for s, p, _ in PROPOSED}


def test_the_proposal_keeps_comments_and_layout(server, tmp_path):
    proposed_file = tmp_path / "services.proposed.yaml"
    assert run_discover("--prometheus", server, "--stack", "staging", "--since", "6h",
                        "--write", str(proposed_file)).returncode == 0
    original = (PROJECT_DIR / "services.yaml").read_text()
    proposal = proposed_file.read_text()
    comments = [line for line in original.splitlines() if "#" in line]
    assert comments and all(line in proposal.splitlines() for line in comments)
    import difflib
    removed = [l for l in difflib.ndiff(original.splitlines(), proposal.splitlines()) if l.startswith("- ")]
    # Only allow lines change (a caller appended to a flow list); every other line stays as it was, blank lines too.
    assert all(l.lstrip("- ").startswith("allow:") for l in removed), removed
    assert proposal.count("\n\n") == original.count("\n\n")
    diff = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h", "--diff")
    assert diff.returncode == 0 and diff.stdout.startswith("--- a/services.yaml")
    assert "+      - {service: frontend, ports: [admin]}" in diff.stdout
    assert "+    allow: [catalog]" not in diff.stdout and "allow: [checkout, catalog]" in diff.stdout


def test_a_graph_split_per_team_gets_the_same_report_and_no_one_file_proposal(server, staging_report):
    """examples/services.d/ is services.yaml split per team: the same proposals, but no file is rewritten (each grant
    belongs in its callee's team file)."""
    from discover import Prometheus, as_json, discover, load_stack

    stack = load_stack("staging", graph_file="examples/services.d/")
    report = discover(stack, Prometheus(server), "6h")
    assert edges(as_json(report, stack.graph)["proposed"]) == edges(staging_report["proposed"]) != set()
    assert report.proposal_text is None and report.diff() == ""


def test_markdown_report_fits_a_pull_request_comment(server):
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "6h")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("## Traffic discovery: stack `staging`, last 6h")
    assert "| `payments/ledger:admin` | `web/frontend` |" in text
    assert "candidates to remove, never removed automatically (3)" in text
    assert "```diff" in text


def test_audit_stack_proposes_the_same_edges(server):
    """dev runs every namespace in audit: the same traffic gives the same proposals (decided by client_id)."""
    result = run_discover("--prometheus", server, "--stack", "dev", "--since", "6h", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert edges(json.loads(result.stdout)["proposed"]) == PROPOSED


def test_a_window_without_traffic_is_a_clear_error(server):
    result = run_discover("--prometheus", server, "--stack", "staging", "--since", "5m")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no traffic in the last 5m") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_no_proxy_metrics_is_a_clear_error(empty_server):
    result = run_discover("--prometheus", empty_server, "--stack", "staging")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "no proxy metrics found" in result.stderr
    assert "PodMonitor" in result.stderr and "prometheusNetworks" in result.stderr


def test_unreachable_prometheus_is_a_clear_error():
    result = run_discover("--prometheus", f"http://127.0.0.1:{free_port()}", "--stack", "staging")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: cannot reach Prometheus at http://127.0.0.1:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--stack", "stagin"), "unknown stack 'stagin'"),
    (("--stack", "staging", "--since", "7 days"), "is not a Prometheus duration"),
    (("--stack", "staging", "--since", "30s"), "shorter than a minute"),
    (("--stack", "staging", "--format", "html"), "invalid choice"),
    (("--stack", "staging", "--diff", "--write", "x.yaml"), "not allowed with argument"),
])
def test_bad_arguments_are_one_line_errors(args, message):
    result = run_discover("--prometheus", "http://127.0.0.1:9", *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("window, seconds", [("7d", 7 * 86400), ("1h30m", 5400), ("2w", 14 * 86400), ("90m", 5400)])
def test_windows_parse_as_prometheus_durations(window, seconds):
    assert parse_window(window) == seconds


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_reads_into_valid_settings(stack):
    """discover and the harness read stack files with the one reader, read/stack_files.py; each stack file
    must give the settings and graph `pulumi up` would use."""
    config, secret_keys = read_stack_file(stack_file(stack))
    assert load_settings(config, stack, secret_keys=secret_keys).graph.services


# peter-evans/create-pull-request v8.1.1 action.yml `inputs` (5f6978faf089d4d20b00c7766989d076bb2fc7f1, the commit
# the workflow pins; the same set as v7.0.9's): the workflow may only use these.
CREATE_PULL_REQUEST_V8_INPUTS = {
    "token", "branch-token", "path", "add-paths", "commit-message", "committer", "author", "signoff", "branch",
    "delete-branch", "branch-suffix", "base", "push-to-fork", "sign-commits", "title", "body", "body-path", "labels",
    "assignees", "reviewers", "team-reviewers", "milestone", "draft", "maintainer-can-modify"}
DISCOVER_WORKFLOW = PROJECT_DIR / ".github" / "workflows" / "discover.yml"


def _tool(name: str) -> str:
    import shutil
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def test_discover_workflow_validates_and_lints():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(DISCOVER_WORKFLOW)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([_tool("yamllint"), "-c", str(PROJECT_DIR / ".yamllint.yaml"), str(DISCOVER_WORKFLOW)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_discover_workflow_runs_weekly_per_stack_and_proposes_by_pull_request():
    workflow = yaml.safe_load(DISCOVER_WORKFLOW.read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as a boolean
    assert triggers["schedule"] and "workflow_dispatch" in triggers
    job = workflow["jobs"]["discover"]
    assert sorted(job["strategy"]["matrix"]["stack"]) == sorted(STACKS)
    run = next(s["run"] for s in job["steps"] if "python -m discover" in s.get("run", ""))
    assert '--stack "$STACK"' in run and "--write services.yaml" in run and "$RUNNER_TEMP/discover.md" in run
    installs = next(s["run"] for s in job["steps"] if "pip install" in s.get("run", ""))
    assert "ruamel.yaml==" in (PROJECT_DIR / "requirements-dev.txt").read_text() and "ruamel.yaml==" in installs
    action = next(s for s in job["steps"] if s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert action["uses"] == "peter-evans/create-pull-request@5f6978faf089d4d20b00c7766989d076bb2fc7f1"
    inputs = action["with"]
    assert set(inputs) <= CREATE_PULL_REQUEST_V8_INPUTS, set(inputs) - CREATE_PULL_REQUEST_V8_INPUTS
    assert inputs["branch"] == "discover/${{ matrix.stack }}" and inputs["body-path"].endswith("/discover.md")
    assert inputs["title"] and inputs["commit-message"]
    # The pull request commits the graph file, and only it: the one every stack reads.
    for stack in STACKS:
        config, secret_keys = read_stack_file(stack_file(stack))
        assert load_settings(config, stack, secret_keys=secret_keys).graph.source == inputs["add-paths"]
