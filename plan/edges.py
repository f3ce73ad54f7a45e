"""Who calls whom on which port, read from the service graph once for every mesh: the callers of each port, the
callees of each workload with their port numbers, and the ports that must stay out of a proxy (proxy-free services'
ports, which a mesh's inbound side leaves alone and its outbound side sends untouched).

Both meshes' policy builders (plan/linkerd/, plan/istio/) and the NetworkPolicies (plan/network_policy.py) read the
graph through these functions only, so the two meshes cannot disagree about an edge.
"""

from __future__ import annotations

from read.graph import Service, ServiceGraph


def port_object_name(service: Service, port_name: str) -> str:
    """The name of the objects a mesh writes for one port of a service (Server, AuthorizationPolicy)."""
    return f"{service.name}-{port_name}"


def callers_by_port(graph: ServiceGraph, service: Service) -> dict[str, list[Service]]:
    """port name -> the services allowed to call it (a caller without ports may call every port)."""
    by_port: dict[str, list[Service]] = {p.name: [] for p in service.ports}
    for caller in service.callers:
        for port in caller.ports or tuple(by_port):
            by_port[port].append(graph.services[caller.service])
    return by_port


def callee_ports(graph: ServiceGraph, caller: Service) -> dict[str, list[int]]:
    """callee key -> the port numbers `caller` may call it on."""
    return {callee: [graph.services[callee].port(p).number for p in ports]
            for callee, ports in graph.callees.get(caller.key, {}).items()}


def inbound_ports_to_skip(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports no proxy of the namespace may guard: its proxy-free services' ports (`meshed: false` in an injected
    namespace) and its skipInboundPorts. The injector gives every pod of the namespace a proxy, so unless the proxy
    leaves these ports alone, default deny would refuse their callers, which arrive without mesh identity. The graph
    rejects a meshed service on such a port."""
    ports = set(graph.namespaces[namespace].skip_inbound_ports)
    for service in graph.services_in(namespace):
        if not service.meshed:
            ports.update(p.number for p in service.ports)
    return tuple(sorted(ports))


def outbound_ports_to_skip(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports of proxy-free services that workloads of `namespace` call (and its skipOutboundPorts): their own TLS must
    reach the peer untouched."""
    ports = set(graph.namespaces[namespace].skip_outbound_ports)
    ports.update(_unmeshed_ports_called_from(graph).get(namespace, ()))
    return tuple(sorted(ports))


# The last graph and its index: computed once for all namespaces (scanning every service for each namespace is
# quadratic: 10,000 namespaces of one service each). Holding the graph keeps its identity from being reused.
_last_index: tuple[ServiceGraph, dict[str, set[int]]] | None = None


def _unmeshed_ports_called_from(graph: ServiceGraph) -> dict[str, set[int]]:
    """namespace -> port numbers of proxy-free services its workloads call."""
    global _last_index
    if _last_index is not None and _last_index[0] is graph:
        return _last_index[1]
    index: dict[str, set[int]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            continue
        for caller in service.callers:
            wanted = caller.ports or tuple(p.name for p in service.ports)
            index.setdefault(graph.services[caller.service].namespace, set()).update(
                service.port(name).number for name in wanted)
    _last_index = (graph, index)
    return index
