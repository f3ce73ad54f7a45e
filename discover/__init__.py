"""Discover the allow-list from traffic: compare what the proxies report to Prometheus with a stack's service graph.

The proxies count every inbound request and connection they authorize or refuse (`inbound_{http,tcp}_authz_
{allow,deny}_total`, linkerd2-proxy linkerd/app/inbound/src/metrics/authz.rs; ../shared/upstream/linkerd/METRICS.md)
with the Server (`srv_kind`, `srv_name`), the caller's TLS state (`tls`) and mesh identity (`client_id`); the
program's PodMonitor adds the pod's `namespace`. This module maps those labels back to the graph with the program's
own naming (`authorization.port_object_name` for Servers, `graph.mesh_identity` for callers) and reports:

- edges seen but not allowed by the graph, with counts and first/last seen, as a proposed `services.yaml` that keeps
  its comments and layout (ruamel.yaml round trip, a tool dependency only);
- allowed edges never seen in the window (candidates to remove: never removed automatically);
- plaintext callers and identities the graph does not know, listed apart and never turned into allows.

"Allowed or not" is decided by comparing `client_id` with the graph's edges, never by `authz_name`: in an `audit`
namespace Linkerd may count an allowed caller under `authz_name=audit` (README, "Reading the access matrix").
Settings and graph are loaded exactly as the program loads them (`settings.load_settings` on the stack file).
"""

from __future__ import annotations

import datetime
import difflib
import io
import json
import math
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from components.authorization import ADMIN_SERVER, authorization_objects, plaintext_authorizations, port_object_name
from components.errors import SettingsError
from components.graph import ServiceGraph, mesh_identity
from components.settings import PROJECT_DIR, Settings, load_settings
from components.stack_files import read_stack_file, stack_file, stack_names

HTTP_ALLOW = "inbound_http_authz_allow_total"
HTTP_DENY = "inbound_http_authz_deny_total"
TCP_ALLOW = "inbound_tcp_authz_allow_total"
TCP_DENY = "inbound_tcp_authz_deny_total"
METRICS = (HTTP_ALLOW, HTTP_DENY, TCP_ALLOW, TCP_DENY)
# One row per Server, caller and TLS state. srv_kind keeps a default policy (srv_kind="default", no Server) apart
# from a Server that happens to share its name; authz_name only tells kubelet probes and scrapes apart (never
# "allowed or not").
GROUP_BY = "namespace, srv_kind, srv_name, client_id, tls, authz_name"
# Prometheus durations (promql/parser: a number and a unit, units may be combined largest first).
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1)
# How many points a first/last-seen range query asks for at most (Prometheus refuses more than 11,000).
_RANGE_POINTS = 500
_MIN_STEP = 60
# increase() needs two samples in its range: at least this long, whatever the step (PodMonitor interval is 30s).
_MIN_INCREASE_RANGE = 300
TIMEOUT_SECONDS = 30


class DiscoverError(Exception):
    """A problem a user can fix, reported as one line without a traceback."""


def parse_window(text: str) -> int:
    """A Prometheus duration (`7d`, `12h`, `1h30m`) in seconds."""
    match = _DURATION.match(text or "")
    if not text or not match or not any(match.groups()):
        raise DiscoverError(f"--since {text!r} is not a Prometheus duration: use a number and a unit (s, m, h, d, w, y), "
                            "e.g. 7d, 12h or 1h30m")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS) if n)
    if seconds < 60:
        raise DiscoverError(f"--since {text!r} is shorter than a minute: the proxies are scraped every 30s, give at least 1m")
    return seconds


def promql_duration(seconds: int) -> str:
    return f"{seconds}s"


def load_stack(stack: str, project_dir: Path = PROJECT_DIR, graph_file: str | None = None) -> Settings:
    """The stack's validated settings (and service graph), read from its stack file as `pulumi up` would."""
    stacks_dir = project_dir / "stacks"
    known = stack_names(stacks_dir)
    path = stack_file(stack, stacks_dir)
    if stack not in known or not path.is_file():
        raise DiscoverError(f"unknown stack {stack!r}: no stacks/Pulumi.{stack}.yaml; the stacks are {', '.join(known)}")
    config, secret_keys = read_stack_file(path)
    if graph_file is not None:
        config["mtls-mesh:serviceGraph"] = graph_file
        # The graph named on the command line is the operator's explicit choice, wherever it lives.
        config.setdefault("mtls-mesh:allowFilesOutsideProject", "true")
    try:
        return load_settings(config, stack, secret_keys=secret_keys, project_dir=project_dir)
    except SettingsError as err:
        raise DiscoverError(" ".join(str(err).split("\n"))) from None


# --- Prometheus --------------------------------------------------------------------------------------------------

class Prometheus:
    """The few calls of Prometheus' HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/) we need."""

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS):
        parsed = urllib.parse.urlparse(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DiscoverError(f"--prometheus {url!r} is not an http(s) URL, e.g. http://prometheus.monitoring:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            detail = _api_error(err.read())
            raise DiscoverError(f"Prometheus at {self.url} answered {err.code} to {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DiscoverError(f"cannot reach Prometheus at {self.url}: {reason}. Check --prometheus "
                                "(e.g. kubectl -n monitoring port-forward svc/prometheus-operated 9090)") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise DiscoverError(f"{self.url}{path} did not answer with Prometheus' JSON API: is --prometheus the "
                                "Prometheus server (not Grafana or Alertmanager)?") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise DiscoverError(f"Prometheus at {self.url} refused {path}: {_api_error(body)}")
        return answer.get("data")

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"]

    def query_range(self, promql: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range",
                         {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})["result"]

    def metric_names(self) -> set[str]:
        return set(self._get("/api/v1/label/__name__/values", {}) or [])


def _api_error(body: bytes) -> str:
    try:
        answer = json.loads(body)
        return f"{answer.get('errorType', 'error')}: {answer.get('error', '')}".strip()
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no details"


# --- Observations ------------------------------------------------------------------------------------------------

@dataclass
class Traffic:
    """What was counted for one row of the report over the window, and when it was first and last seen."""

    requests: float = 0.0       # HTTP requests, allowed or denied
    connections: float = 0.0    # TCP connections, allowed or denied
    denied: float = 0.0         # of those, refused by the proxy
    first_seen: float | None = None
    last_seen: float | None = None

    def add(self, metric: str, value: float) -> None:
        if metric.startswith("inbound_http_"):
            self.requests += value
        else:
            self.connections += value
        if metric.endswith("_deny_total"):
            self.denied += value

    def seen(self, first: float, last: float) -> None:
        self.first_seen = first if self.first_seen is None else min(self.first_seen, first)
        self.last_seen = last if self.last_seen is None else max(self.last_seen, last)

    @property
    def total(self) -> float:
        return self.requests + self.connections

    def as_json(self) -> dict[str, Any]:
        return {"requests": round(self.requests), "connections": round(self.connections), "denied": round(self.denied),
                "firstSeen": _iso(self.first_seen), "lastSeen": _iso(self.last_seen)}


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    stack: str
    window: str
    prometheus: str
    evaluated_at: float
    resolution_seconds: int
    graph_source: str
    # (service key, port name, caller key) -> traffic, for edges the graph does not allow.
    proposed: dict[tuple[str, str, str], Traffic] = field(default_factory=dict)
    # Allowed edges (service key, port name, caller key) of meshed services with no traffic in the window.
    unseen: list[tuple[str, str, str]] = field(default_factory=list)
    # Allowed edges that were seen, for the record.
    seen_allowed: dict[tuple[str, str, str], Traffic] = field(default_factory=dict)
    # (service key, port name, tls) -> traffic without a mesh identity.
    plaintext: dict[tuple[str, str, str], Traffic] = field(default_factory=dict)
    # (client_id, service key, port name) -> traffic from identities no meshed service of the graph has.
    unknown_identities: dict[tuple[str, str, str], Traffic] = field(default_factory=dict)
    # (client_id, service key, port name) -> traffic from an identity several services of the graph share.
    ambiguous_identities: dict[tuple[str, str, str], tuple[tuple[str, ...], Traffic]] = field(default_factory=dict)
    # (namespace, srv_kind, srv_name) -> traffic to a port the graph does not declare (a default policy, another Server).
    other_servers: dict[tuple[str, str, str], Traffic] = field(default_factory=dict)
    # Services without a proxy, whose traffic no proxy reports (their allowed edges cannot be checked here).
    unobservable: list[str] = field(default_factory=list)
    proposal_text: str | None = None
    original_text: str | None = None

    def diff(self) -> str:
        if self.proposal_text is None or self.original_text is None:
            return ""
        return "".join(difflib.unified_diff(self.original_text.splitlines(True), self.proposal_text.splitlines(True),
                                            f"a/{self.graph_source}", f"b/{self.graph_source}"))


def discover(settings: Settings, prometheus: Prometheus, window: str, *, now: float | None = None,
             project_dir: Path = PROJECT_DIR) -> Report:
    """Query the window's traffic and compare it with the stack's graph."""
    seconds = parse_window(window)
    now = now if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    graph = settings.graph
    step = max(_MIN_STEP, math.ceil(seconds / _RANGE_POINTS))
    increase_range = max(step, _MIN_INCREASE_RANGE)
    report = Report(stack=settings.stack, window=window, prometheus=prometheus.url, evaluated_at=now,
                    resolution_seconds=increase_range, graph_source=graph.source)

    names = prometheus.metric_names()
    if not names & set(METRICS):
        raise DiscoverError(
            f"no proxy metrics found in Prometheus at {prometheus.url} (none of {', '.join(METRICS)}): the proxies "
            "are not scraped. Check the PodMonitor linkerd/linkerd-proxies (alerts: true, monitoringLabels matching "
            "your Prometheus' podMonitorSelector) and that prometheusNetworks or prometheusServiceAccounts admit "
            "your Prometheus on the proxies' admin port")

    servers = {(s.namespace, port_object_name(s, p.name)): (s.key, p.name)
               for s in graph.services.values() if graph.is_meshed(s) for p in s.ports}
    identities: dict[str, list[str]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            identities.setdefault(mesh_identity(service.service_account, service.namespace, settings.trust_domain),
                                  []).append(service.key)
    meshed_namespaces = {ns.name for ns in graph.meshed_namespaces}
    edges = graph.edges()
    # Kubelet probes, Prometheus' scrapes by network and localhost, by the names the proxy counts them under: the
    # program's own objects (authorization.plaintext_authorizations), plus Linkerd's `probe` and `localhost`.
    expected_plaintext = plaintext_authorizations(authorization_objects(settings))

    def probe_or_scrape(key: tuple[str, ...]) -> bool:
        namespace, _, srv_name, _, _, authz_name = key
        return srv_name == ADMIN_SERVER or authz_name in expected_plaintext.get(namespace, ())

    rows: dict[tuple[str, ...], Traffic] = {}
    for metric in METRICS:
        for sample in prometheus.query(f"sum by ({GROUP_BY}) (increase({metric}[{promql_duration(seconds)}]))", now):
            value = float(sample["value"][1])
            if not math.isfinite(value) or value <= 0:
                continue
            rows.setdefault(_row_key(sample["metric"]), Traffic()).add(metric, value)
        series = prometheus.query_range(
            f"sum by ({GROUP_BY}) (increase({metric}[{promql_duration(increase_range)}])) > 0",
            now - seconds + increase_range, now, step)
        for sample in series:
            times = [float(t) for t, v in sample["values"] if float(v) > 0]
            key = _row_key(sample["metric"])
            if times and key in rows:
                rows[key].seen(times[0], times[-1])
    # Prometheus' own scrapes of the admin port and kubelet probes are counted too, but are no application traffic.
    if not any(traffic.total > 0 for key, traffic in rows.items() if not probe_or_scrape(key)):
        raise DiscoverError(f"no traffic in the last {window}: the proxies' metrics are in Prometheus, but no request or "
                            "connection to a workload (beyond kubelet probes and scrapes) was counted in that window. "
                            "Give a longer --since, or check that the workloads are meshed and running")

    for key, traffic in rows.items():
        namespace, srv_kind, srv_name, client_id, tls, authz_name = key
        target = servers.get((namespace, srv_name)) if srv_kind == "server" else None
        if target is None:
            if namespace in meshed_namespaces and srv_name != ADMIN_SERVER:
                _merge(report.other_servers, (namespace, srv_kind, srv_name), traffic)
            continue
        service_key, port = target
        if tls != "true" or not client_id:
            if not probe_or_scrape(key):
                _merge(report.plaintext, (service_key, port, tls or "unknown"), traffic)
            continue
        callers = identities.get(client_id)
        if not callers:
            _merge(report.unknown_identities, (client_id, service_key, port), traffic)
            continue
        allowed = [c for c in callers if (c, service_key, port) in edges]
        if allowed:
            for caller in allowed:
                _merge(report.seen_allowed, (service_key, port, caller), traffic)
        elif len(callers) == 1:
            _merge(report.proposed, (service_key, port, callers[0]), traffic)
        else:
            entry = report.ambiguous_identities.get((client_id, service_key, port))
            merged = entry[1] if entry else Traffic()
            _merge_into(merged, traffic)
            report.ambiguous_identities[(client_id, service_key, port)] = (tuple(sorted(callers)), merged)

    for caller, service_key, port in sorted(edges):
        service = graph.services[service_key]
        if not graph.is_meshed(service):
            continue
        if (service_key, port, caller) not in report.seen_allowed:
            report.unseen.append((service_key, port, caller))
    report.unobservable = sorted(s.key for s in graph.services.values() if not graph.is_meshed(s) and s.callers)

    graph_path = project_dir / graph.source
    report.original_text = graph_path.read_text(encoding="utf-8")
    if report.proposed:
        report.proposal_text = propose(report.original_text, graph, report.proposed)
        _check_proposal(report.proposal_text, settings, project_dir)
    return report


def _row_key(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(k, "") for k in ("namespace", "srv_kind", "srv_name", "client_id", "tls", "authz_name"))


def _merge_into(into: Traffic, other: Traffic) -> None:
    into.requests += other.requests
    into.connections += other.connections
    into.denied += other.denied
    if other.first_seen is not None:
        into.seen(other.first_seen, other.last_seen)


def _merge(table: dict, key: tuple, traffic: Traffic) -> None:
    _merge_into(table.setdefault(key, Traffic()), traffic)


# --- The proposal ------------------------------------------------------------------------------------------------

def _round_trip():
    try:
        from ruamel.yaml import YAML
    except ImportError:
        raise DiscoverError("the proposal needs ruamel.yaml (it keeps services.yaml's comments): "
                            "pip install -r requirements-dev.txt") from None

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    # The graph's own layout: block sequences indented under their key (`ports:\n  - {...}`).
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def propose(text: str, graph: ServiceGraph, proposed: Iterable[tuple[str, str, str]]) -> str:
    """The graph's YAML with each (service, port, caller) added to the service's `allow`, comments and layout kept:
    a caller already listed with some ports gets the port added; a new caller is listed by name when it was seen
    on every port of the service, else as `{service: <caller>, ports: [...]}`."""
    yaml = _round_trip()
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    document = yaml.load(text)
    services = document["services"]
    wanted: dict[str, dict[str, list[str]]] = {}
    for service_key, port, caller in sorted(proposed):
        wanted.setdefault(service_key, {}).setdefault(caller, []).append(port)
    order = list(services)
    for service_key, callers in wanted.items():
        node = services[service_key]
        all_ports = [p.name for p in graph.services[service_key].ports]
        allow = node.get("allow")
        if allow is None:
            allow = CommentedSeq()
            allow.fa.set_flow_style()
            _add_last_key(services, order, service_key, "allow", allow)
        for caller, ports in callers.items():
            existing = next((e for e in allow if isinstance(e, Mapping) and e.get("service") == caller), None)
            if existing is not None:
                existing["ports"].extend(p for p in all_ports if p in ports and p not in existing["ports"])
            elif sorted(ports) == sorted(all_ports):
                allow.append(caller)
            else:
                entry = CommentedMap(service=caller, ports=CommentedSeq(p for p in all_ports if p in ports))
                entry.fa.set_flow_style()
                entry["ports"].fa.set_flow_style()
                allow.append(entry)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _add_last_key(services, order: list[str], service_key: str, key: str, value) -> None:
    """Add a key at the end of a service, keeping the blank line that ended it before the next service (ruamel keeps
    it as the trailing comment of the service's last block sequence, which would otherwise end up above the key)."""
    node = services[service_key]
    last = node[list(node)[-1]] if len(node) else None
    comments = getattr(last, "ca", None)
    moved = list(comments.end) if comments is not None and comments.end else []
    if moved:
        comments.end = []
    node[key] = value
    if moved:
        index = order.index(service_key)
        if index + 1 < len(order):
            entry = services.ca.items.setdefault(order[index + 1], [None, None, None, None])
            entry[1] = moved + (entry[1] or [])


def _check_proposal(text: str, settings: Settings, project_dir: Path) -> None:
    """The proposal must be a graph the program accepts for this stack, or it is no proposal."""
    with tempfile.TemporaryDirectory(prefix="mtls-mesh-discover-") as tmp:
        candidate = Path(tmp) / "services.proposed.yaml"
        candidate.write_text(text, encoding="utf-8")
        try:
            load_stack(settings.stack, project_dir, graph_file=str(candidate))
        except DiscoverError as err:
            raise DiscoverError(f"the proposed graph would be rejected by the program ({err}); nothing was written") from None


# --- Output ------------------------------------------------------------------------------------------------------

def _where(graph: ServiceGraph, service_key: str, port: str | None = None) -> str:
    service = graph.services[service_key]
    return f"{service.namespace}/{service_key}" + (f":{port}" if port else "")


def as_json(report: Report, graph: ServiceGraph) -> dict[str, Any]:
    def edge(service_key: str, port: str, caller: str) -> dict[str, Any]:
        return {"service": _where(graph, service_key), "port": port, "caller": _where(graph, caller)}

    return {
        "stack": report.stack, "window": report.window, "prometheus": report.prometheus,
        "evaluatedAt": _iso(report.evaluated_at), "seenResolutionSeconds": report.resolution_seconds,
        "serviceGraph": report.graph_source,
        "proposed": [{**edge(*k), **t.as_json()} for k, t in sorted(report.proposed.items())],
        "unseenAllowed": [edge(*k) for k in report.unseen],
        "seenAllowed": [{**edge(*k), **t.as_json()} for k, t in sorted(report.seen_allowed.items())],
        "plaintext": [{"service": _where(graph, s), "port": p, "tls": tls, **t.as_json()}
                      for (s, p, tls), t in sorted(report.plaintext.items())],
        "unknownIdentities": [{"clientId": c, "service": _where(graph, s), "port": p, **t.as_json()}
                              for (c, s, p), t in sorted(report.unknown_identities.items())],
        "ambiguousIdentities": [{"clientId": c, "services": [_where(graph, x) for x in callers],
                                 "service": _where(graph, s), "port": p, **t.as_json()}
                                for (c, s, p), (callers, t) in sorted(report.ambiguous_identities.items())],
        "otherServers": [{"namespace": ns, "srvKind": kind, "srvName": name, **t.as_json()}
                         for (ns, kind, name), t in sorted(report.other_servers.items())],
        "unobservable": [_where(graph, s) for s in report.unobservable],
        "proposalDiff": report.diff(),
    }


def _count(traffic: Traffic) -> str:
    parts = []
    if traffic.requests:
        parts.append(f"{round(traffic.requests)} req")
    if traffic.connections:
        parts.append(f"{round(traffic.connections)} conn")
    return ", ".join(parts) or "0"


def _md(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def as_markdown(report: Report, graph: ServiceGraph) -> str:
    lines = [f"## Traffic discovery: stack `{report.stack}`, last {report.window}", "",
             f"From Prometheus `{report.prometheus}` at {_iso(report.evaluated_at)}, against `{report.graph_source}`. "
             f"Counts are Prometheus `increase()` estimates; first/last seen to within {report.resolution_seconds // 60} min. "
             "Callers are matched by mesh identity "
             "(`client_id`), never by `authz_name`.", ""]
    lines += [f"### Seen but not allowed: proposed additions ({len(report.proposed)})", ""]
    if report.proposed:
        lines += ["| service:port | caller | traffic | denied | first seen | last seen |", "|---|---|---|---|---|---|"]
        for (s, p, c), t in sorted(report.proposed.items()):
            lines.append(f"| {_md(_where(graph, s, p))} | {_md(_where(graph, c))} | {_count(t)} | {round(t.denied)} | "
                         f"{_iso(t.first_seen) or '-'} | {_iso(t.last_seen) or '-'} |")
    else:
        lines.append("Every identified caller seen is already allowed.")
    lines += ["", f"### Allowed but not seen in {report.window}: candidates to remove, never removed automatically "
              f"({len(report.unseen)})", ""]
    if report.unseen:
        lines += ["| service:port | caller |", "|---|---|"]
        lines += [f"| {_md(_where(graph, s, p))} | {_md(_where(graph, c))} |" for s, p, c in report.unseen]
    else:
        lines.append("Every allowed edge of a meshed service was used.")
    lines += ["", f"### Plaintext callers: no mesh identity, never turned into allows ({len(report.plaintext)})", ""]
    if report.plaintext:
        lines += ["| service:port | tls | traffic | denied |", "|---|---|---|---|"]
        lines += [f"| {_md(_where(graph, s, p))} | {_md(tls)} | {_count(t)} | {round(t.denied)} |"
                  for (s, p, tls), t in sorted(report.plaintext.items())]
    else:
        lines.append("None (kubelet probes, Prometheus scrapes and localhost are not counted).")
    unknown = len(report.unknown_identities) + len(report.ambiguous_identities)
    lines += ["", f"### Identities not in the graph, never turned into allows ({unknown})", ""]
    if unknown:
        lines += ["| client_id | service:port | traffic | denied |", "|---|---|---|---|"]
        lines += [f"| {_md(c)} | {_md(_where(graph, s, p))} | {_count(t)} | {round(t.denied)} |"
                  for (c, s, p), t in sorted(report.unknown_identities.items())]
        lines += [f"| {_md(c)} (shared by {', '.join(callers)}) | {_md(_where(graph, s, p))} | {_count(t)} | "
                  f"{round(t.denied)} |" for (c, s, p), (callers, t) in sorted(report.ambiguous_identities.items())]
    else:
        lines.append("None.")
    if report.other_servers:
        lines += ["", f"### Traffic to ports the graph does not declare ({len(report.other_servers)})", "",
                  "| namespace | srv_kind | srv_name | traffic | denied |", "|---|---|---|---|---|"]
        lines += [f"| {_md(ns)} | {_md(kind)} | {_md(name)} | {_count(t)} | {round(t.denied)} |"
                  for (ns, kind, name), t in sorted(report.other_servers.items())]
    if report.unobservable:
        lines += ["", "Proxy-free services (no proxy reports their traffic; their callers are not checked here): "
                  + ", ".join(_md(_where(graph, s)) for s in report.unobservable) + "."]
    diff = report.diff()
    if diff:
        lines += ["", f"### Proposed change to `{report.graph_source}`", "", "```diff", diff.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"
