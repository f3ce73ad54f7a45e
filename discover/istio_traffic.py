"""Discover for an Istio mesh: what the server-side sidecars counted over a window, compared with the stack's graph, with
the same report and proposed `services.yaml` as discover/traffic.py makes for Linkerd (its Report, Traffic and proposal
machinery are reused; only the reading of the metrics differs).

The server sidecar (reporter="destination") counts every request (istio_requests_total) and every TCP connection
(istio_tcp_connections_opened_total) with the caller's URI SAN (`source_principal`, `unknown` without mTLS), whether
mTLS was used (`connection_security_policy` mutual_tls/none, only meaningful at the destination reporter), the local
workload (`destination_workload`, `destination_workload_namespace`), the Kubernetes Service the inbound cluster belongs
to (`destination_service_name`), `request_protocol` (http, grpc, tcp) and, for requests, `response_code` and
`grpc_response_status` (istio/proxy 1.29.6 source/extensions/filters/http/istio_stats/istio_stats.cc; reference A6).
The program's PodMonitor (plan/istio/alerts.py) scrapes them from the agent's merged endpoint. Kubelet probes and
scrapes use 15020/15021, which bypass Envoy, so they never appear.

Istio's standard metrics carry no port. A caller is placed on a port of the callee when it is the only one that fits:
a `destination_port` label if the cluster adds one (a Telemetry `tagOverrides` entry, e.g.
`destination_port: {value: "string(destination.port)"}`), else the one port whose graph protocol matches
`request_protocol` (HTTP/1 and HTTP/2 for http; gRPC and HTTP/2 for grpc; anything else for tcp). A caller already
allowed on some fitting port counts as seen there; one that fits several ports and is allowed on none is listed apart
(`ambiguousPorts`) and never proposed: granting every fitting port would grant more than was seen.

"Denied" counts 403 answers and gRPC PERMISSION_DENIED at the server (Envoy's RBAC filter answers with those and no
response flag); a TCP connection refused by policy is closed with no code, so TCP denials cannot be counted.

Run it as `python -m discover.istio_traffic --prometheus URL --stack NAME [--since 7d] [--format json]`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from read.graph import ServiceGraph, spiffe_id
from read.settings import PROJECT_DIR

from .command import EXIT_USAGE, parser, print_report
from .errors import DiscoverError
from .prometheus import Prometheus, promql_duration
from .proposal import check_proposal, propose
from .report import _md, _where, as_json, as_markdown
from .stack import Stack, load_stack
from .traffic import Report, Traffic, _merge, _merge_into, query_window

REQUESTS = "istio_requests_total"
CONNECTIONS = "istio_tcp_connections_opened_total"
METRICS = (REQUESTS, CONNECTIONS)
ROW_LABELS = ("destination_workload_namespace", "destination_workload", "destination_service_name",
              "source_principal", "connection_security_policy", "request_protocol", "destination_port")
GROUP_BY = ", ".join(ROW_LABELS)
# The server's refusals (a local 403, or gRPC status 7 for a gRPC caller), by the same rows.
DENIED = (f'{REQUESTS}{{reporter="destination", response_code="403"}}',
          f'{REQUESTS}{{reporter="destination", request_protocol="grpc", grpc_response_status="7"}}')
# Which graph port protocols a request_protocol can be (read/graph_format.py protocols).
FITTING_PROTOCOLS = {"http": {"HTTP/1", "HTTP/2"}, "grpc": {"gRPC", "HTTP/2"}}
UNKNOWN = "unknown"


@dataclass
class IstioReport(Report):
    # (caller key, service key, fitting ports) -> traffic of a caller allowed on none of several fitting ports.
    ambiguous_ports: dict[tuple[str, str, tuple[str, ...]], Traffic] = field(default_factory=dict)


def fitting_ports(graph: ServiceGraph, service_key: str, protocol: str, port_number: str) -> list[str]:
    """The callee's ports the row can be on: by number when the metric carries one, else by protocol."""
    ports = graph.services[service_key].ports
    if port_number:
        return [p.name for p in ports if str(p.number) == port_number]
    wanted = FITTING_PROTOCOLS.get(protocol)
    return [p.name for p in ports if (p.protocol in wanted if wanted else
                                      p.protocol not in FITTING_PROTOCOLS["http"] | FITTING_PROTOCOLS["grpc"])]


def _row(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(k, "") for k in ROW_LABELS)


def discover_istio(stack: Stack, prometheus: Prometheus, window: str, *, now: float | None = None,
                   project_dir: Path = PROJECT_DIR) -> IstioReport:
    seconds, now, step, increase_range = astuple(query_window(window, now))
    settings, graph = stack.settings, stack.graph
    report = IstioReport(stack=settings.stack, window=window, prometheus=prometheus.url, evaluated_at=now,
                         resolution_seconds=increase_range, graph_source=graph.source)
    if not prometheus.metric_names() & set(METRICS):
        raise DiscoverError(
            f"no Istio metrics found in Prometheus at {prometheus.url} (none of {', '.join(METRICS)}): the sidecars are "
            "not scraped. Check the PodMonitor istio-system/istio-proxies (the agent's /stats/prometheus on 15020) and "
            "that your Prometheus selects it")

    identities: dict[str, list[str]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            identities.setdefault(spiffe_id(service.service_account, service.namespace, settings.trust_domain),
                                  []).append(service.key)
    by_name = {(s.namespace, s.name): s.key for s in graph.services.values()}
    meshed_namespaces = {ns.name for ns in graph.meshed_namespaces}
    edges = graph.edges()
    span = promql_duration(seconds)

    rows: dict[tuple[str, ...], Traffic] = {}
    for metric in METRICS:
        selector = f'{metric}{{reporter="destination"}}'
        for sample in prometheus.query(f"sum by ({GROUP_BY}) (increase({selector}[{span}]))", now):
            value = float(sample["value"][1])
            if math.isfinite(value) and value > 0:
                traffic = rows.setdefault(_row(sample["metric"]), Traffic())
                if metric == REQUESTS:
                    traffic.requests += value
                else:
                    traffic.connections += value
        series = prometheus.query_range(
            f"sum by ({GROUP_BY}) (increase({selector}[{promql_duration(increase_range)}])) > 0",
            now - seconds + increase_range, now, step)
        for sample in series:
            times = [float(t) for t, v in sample["values"] if float(v) > 0]
            key = _row(sample["metric"])
            if times and key in rows:
                rows[key].seen(times[0], times[-1])
    for denied in DENIED:
        for sample in prometheus.query(f"sum by ({GROUP_BY}) (increase({denied}[{span}]))", now):
            value = float(sample["value"][1])
            if math.isfinite(value) and value > 0 and _row(sample["metric"]) in rows:
                rows[_row(sample["metric"])].denied += value
    if not rows:
        raise DiscoverError(f"no traffic in the last {window}: the sidecars' metrics are in Prometheus, but no request "
                            "or connection reached a meshed workload in that window. Give a longer --since, or check "
                            "that the workloads are injected and running")

    for key, traffic in rows.items():
        namespace, workload, service_name, principal, security, protocol, port_number = key
        service_key = by_name.get((namespace, service_name)) or by_name.get((namespace, workload))
        if service_key is None:
            if namespace in meshed_namespaces:
                _merge(report.other_servers, (namespace, "workload", workload), traffic)
            continue
        ports = fitting_ports(graph, service_key, protocol, port_number)
        if not ports:
            _merge(report.other_servers, (namespace, f"{protocol} port {port_number}".strip(), workload), traffic)
            continue
        place = ports[0] if len(ports) == 1 else "|".join(ports)
        if security != "mutual_tls" or principal in ("", UNKNOWN):
            _merge(report.plaintext, (service_key, place, security or UNKNOWN), traffic)
            continue
        callers = identities.get(principal)
        if not callers:
            _merge(report.unknown_identities, (principal, service_key, place), traffic)
            continue
        allowed = [(c, p) for c in callers for p in ports if (c, service_key, p) in edges]
        if allowed:
            for caller, port in allowed:
                _merge(report.seen_allowed, (service_key, port, caller), traffic)
        elif len(callers) > 1:
            entry = report.ambiguous_identities.get((principal, service_key, place))
            merged = entry[1] if entry else Traffic()
            _merge_into(merged, traffic)
            report.ambiguous_identities[(principal, service_key, place)] = (tuple(sorted(callers)), merged)
        elif len(ports) == 1:
            _merge(report.proposed, (service_key, ports[0], callers[0]), traffic)
        else:
            _merge(report.ambiguous_ports, (callers[0], service_key, tuple(ports)), traffic)

    for caller, service_key, port in sorted(edges):
        if graph.is_meshed(graph.services[service_key]) and (service_key, port, caller) not in report.seen_allowed:
            report.unseen.append((service_key, port, caller))
    report.unobservable = sorted(s.key for s in graph.services.values() if not graph.is_meshed(s) and s.callers)

    if graph.fragments:
        return report
    report.original_text = (project_dir / graph.source).read_text(encoding="utf-8")
    if report.proposed:
        report.proposal_text = propose(report.original_text, graph, report.proposed)
        check_proposal(report.proposal_text, stack.name, project_dir)
    return report


def istio_as_json(report: IstioReport, graph: ServiceGraph) -> dict[str, Any]:
    out = as_json(report, graph)
    out["mesh"] = "istio"
    out["ambiguousPorts"] = [{"service": _where(graph, s), "ports": list(ports), "caller": _where(graph, c),
                              **t.as_json()} for (c, s, ports), t in sorted(report.ambiguous_ports.items())]
    return out


def istio_as_markdown(report: IstioReport, graph: ServiceGraph) -> str:
    text = as_markdown(report, graph).replace("(`client_id`), never by `authz_name`.", "(`source_principal`).")
    if report.ambiguous_ports:
        rows = [f"| {_md(_where(graph, s))} | {_md(', '.join(ports))} | {_md(_where(graph, c))} |"
                for (c, s, ports), _ in sorted(report.ambiguous_ports.items())]
        text += "\n".join(["", f"### Seen on a port Istio's metrics do not name: not proposed ({len(rows)})", "",
                           "Add `destination_port` to the server metrics (Telemetry tagOverrides) to place them.", "",
                           "| service | fitting ports | caller |", "|---|---|---|", *rows]) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m discover.istio_traffic`: the Linkerd command's options and exit codes, for an Istio mesh."""
    args = parser().parse_args(argv)
    try:
        stack = load_stack(args.stack)
    except DiscoverError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return run(args, stack)


def run(args: Any, stack: Stack) -> int:
    """The command on a loaded stack (`python -m discover` comes here for a stack with `mesh: istio`)."""
    return print_report(args, stack, discover_istio, istio_as_json, istio_as_markdown)


if __name__ == "__main__":
    sys.exit(main())
