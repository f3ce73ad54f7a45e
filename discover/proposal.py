"""The proposal: the service graph's YAML with the seen-but-not-allowed edges added, comments and layout kept
(ruamel.yaml round trip, a tool dependency only), and refused unless the program accepts it for the stack."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from read.graph import ServiceGraph

from .errors import DiscoverError
from .stack import load_stack


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


def check_proposal(text: str, stack: str, project_dir: Path) -> None:
    """The proposal must be a graph the program accepts for this stack, or it is no proposal."""
    with tempfile.TemporaryDirectory(prefix="mtls-mesh-discover-") as tmp:
        candidate = Path(tmp) / "services.proposed.yaml"
        candidate.write_text(text, encoding="utf-8")
        try:
            load_stack(stack, project_dir, graph_file=str(candidate))
        except DiscoverError as err:
            raise DiscoverError(f"the proposed graph would be rejected by the program ({err}); nothing was written") from None
