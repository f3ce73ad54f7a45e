"""Synthetic service graphs for the benchmarks: N services over 50 namespaces (or as many as asked), about 3 callers
each, the namespaces optionally spread over policy shards (`shard:`, round robin).

Deterministic for a given size, so two runs measure the same program work. Every service has one HTTP port and every
fourth a gRPC port too; a tenth of the services reach an external host, a twentieth an external CIDR. Callers are drawn
from the whole graph, so most edges cross namespaces (and shards), as a platform's shared services are called.
"""

from __future__ import annotations

import random
from typing import Any

NAMESPACES = 50
CALLERS = 3


def synthetic_graph(services: int, *, seed: int = 7, namespaces: int = NAMESPACES, shards: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    namespace_count = min(namespaces, max(1, services))
    names = [f"svc-{i:05d}" for i in range(services)]
    graph: dict[str, Any] = {"namespaces": {f"team-{n:02d}": ({"shard": f"shard-{n % shards:02d}"} if shards else {})
                                            for n in range(namespace_count)}, "services": {}}
    for index, name in enumerate(names):
        ports = [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]
        if index % 4 == 0:
            ports.append({"name": "grpc", "port": 9090, "protocol": "gRPC"})
        others = [n for n in rng.sample(names, min(len(names), CALLERS + 1)) if n != name][:CALLERS]
        service: dict[str, Any] = {"namespace": f"team-{index % namespace_count:02d}", "ports": ports, "allow": others}
        if index % 10 == 0:
            service["egress"] = [{"name": "api", "hosts": [f"api{index}.example.com"], "ports": [443]}]
        elif index % 20 == 5:
            service["egress"] = [{"name": "partner", "cidrs": [f"203.0.{index % 256}.0/24"], "ports": [8443]}]
        graph["services"][name] = service
    return graph
