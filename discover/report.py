"""The report's two forms: JSON, and Markdown for a pull request's description."""

from __future__ import annotations

from typing import Any

from read.graph import ServiceGraph

from .traffic import Report, Traffic, _iso


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
