"""What the proxies reported over a window, compared with the stack's graph and plan: edges seen but not allowed,
allowed edges not seen, plaintext callers and identities the graph does not know."""

from __future__ import annotations

import datetime
import difflib
import math
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from plan.edges import port_object_name
from plan.linkerd.authorization import ADMIN_SERVER, plaintext_authorizations
from read.graph import mesh_identity
from read.settings import PROJECT_DIR

from .errors import DiscoverError
from .prometheus import Prometheus, parse_window, promql_duration
from .proposal import check_proposal, propose
from .stack import Stack

HTTP_ALLOW = "inbound_http_authz_allow_total"
HTTP_DENY = "inbound_http_authz_deny_total"
TCP_ALLOW = "inbound_tcp_authz_allow_total"
TCP_DENY = "inbound_tcp_authz_deny_total"
METRICS = (HTTP_ALLOW, HTTP_DENY, TCP_ALLOW, TCP_DENY)
# One row per Server, caller and TLS state. srv_kind keeps a default policy (srv_kind="default", no Server) apart
# from a Server that happens to share its name; authz_name only tells kubelet probes and scrapes apart (never
# "allowed or not").
GROUP_BY = "namespace, srv_kind, srv_name, client_id, tls, authz_name"
# How many points a first/last-seen range query asks for at most (Prometheus refuses more than 11,000).
_RANGE_POINTS = 500
_MIN_STEP = 60
# increase() needs two samples in its range: at least this long, whatever the step (PodMonitor interval is 30s).
_MIN_INCREASE_RANGE = 300


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

    def write(self, path: str) -> None:
        """The proposed graph (or the graph unchanged when nothing is proposed) to `path`, for --write."""
        text = self.proposal_text if self.proposal_text is not None else self.original_text
        if text is None:
            raise DiscoverError(f"--write needs a one-file graph: {self.graph_source} is split per team, so add "
                                "each proposed caller to the allow-list in its service's file")
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as err:
            raise DiscoverError(f"cannot write --write {path}: {err.strerror}") from None


@dataclass(frozen=True)
class QueryWindow:
    """How a window is queried: its length, the evaluation time, the range queries' step and the increase() range
    each point covers (never shorter than _MIN_INCREASE_RANGE). Both meshes' discovery query alike."""

    seconds: int
    now: float
    step: int
    increase_range: int


def query_window(window: str, now: float | None = None) -> QueryWindow:
    seconds = parse_window(window)
    now = now if now is not None else datetime.datetime.now(datetime.timezone.utc).timestamp()
    step = max(_MIN_STEP, math.ceil(seconds / _RANGE_POINTS))
    return QueryWindow(seconds, now, step, max(step, _MIN_INCREASE_RANGE))


def discover(stack: Stack, prometheus: Prometheus, window: str, *, now: float | None = None,
             project_dir: Path = PROJECT_DIR) -> Report:
    """Query the window's traffic and compare it with the stack's graph."""
    seconds, now, step, increase_range = astuple(query_window(window, now))
    settings, graph = stack.settings, stack.graph
    report = Report(stack=settings.stack, window=window, prometheus=prometheus.url, evaluated_at=now,
                    resolution_seconds=increase_range, graph_source=graph.source)

    names = prometheus.metric_names()
    if not names & set(METRICS):
        raise DiscoverError(
            f"no proxy metrics found in Prometheus at {prometheus.url} (none of {', '.join(METRICS)}): the proxies "
            "are not scraped. Check the PodMonitor linkerd/linkerd-proxies (alerts: true, monitoringLabels matching "
            "your Prometheus' podMonitorSelector) and that prometheusNetworks or prometheusServiceAccounts admit "
            "your Prometheus on the proxies' admin port")

    # The Servers the stack's plan has, each mapped back to the service port it was made for.
    planned = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in stack.plan.policy_objects()
               if o["kind"] == "Server"}
    servers = {(s.namespace, port_object_name(s, p.name)): (s.key, p.name)
               for s in graph.services.values() for p in s.ports
               if (s.namespace, port_object_name(s, p.name)) in planned}
    identities: dict[str, list[str]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            identities.setdefault(mesh_identity(service.service_account, service.namespace, settings.trust_domain),
                                  []).append(service.key)
    meshed_namespaces = {ns.name for ns in graph.meshed_namespaces}
    edges = graph.edges()
    # Kubelet probes, Prometheus' scrapes by network and localhost, by the names the proxy counts them under: the
    # program's own objects, from the plan (authorization.plaintext_authorizations), plus Linkerd's `probe` and
    # `localhost`.
    expected_plaintext = plaintext_authorizations(stack.plan.policy_objects())

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

    if graph.fragments:
        # A graph split per team (read/fragments.py): each grant belongs in its callee's file, approved by that file's
        # owners, so the report lists them and no one file is proposed.
        return report
    graph_path = project_dir / graph.source
    report.original_text = graph_path.read_text(encoding="utf-8")
    if report.proposed:
        report.proposal_text = propose(report.original_text, graph, report.proposed)
        check_proposal(report.proposal_text, stack.name, project_dir)
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
