"""Authorization: Linkerd policy, Kubernetes NetworkPolicies and egress control, all generated from the service graph.

Mesh layer, per port of every meshed service: a `Server` whose `accessPolicy` is the namespace's rollout phase (so a
Server never enforces before its namespace does) and an `AuthorizationPolicy` binding it to a `MeshTLSAuthentication`
that names exactly the allowed callers' mesh identities (one per service, or per distinct set of callers). Objects
grow with services and ports; the callers are a list inside one object, not objects of their own.

What default deny would break is allowed on purpose, per meshed namespace: the proxies' admin port (`linkerd-admin`)
gets a Server with two routes, `/metrics` for Prometheus' identity (or its network) and `/live` + `/ready` for the
kubelet's network. App-port Servers carry no routes, so Linkerd keeps authorizing kubelet probes on them itself.

Network layer, in namespaces whose phase is `deny`: default-deny NetworkPolicies with exactly the allowances the mesh
needs (DNS, the control plane, allowed callers on their ports and the proxy's inbound port, Prometheus, egress).

Every object is built by a pure function; register_authorization.MeshAuthorization registers them after the Linkerd
CRDs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Mapping

from read.graph import DEFAULT_SERVICE_ACCOUNT, Service, ServiceGraph, mesh_identity
from plan.edges import callers_by_port, port_object_name
from plan.linkerd.namespaces import LINKERD_NAMESPACE, VIZ_NAMESPACE
from plan.network_policy import MeshWire, admits, network_policies, outside_cluster
from plan.objects import metadata
from read.settings import PolicySettings, Settings

POLICY_API = "policy.linkerd.io/v1alpha1"
SERVER_API = "policy.linkerd.io/v1beta3"
HTTP_ROUTE_API = "policy.linkerd.io/v1beta3"
TLS_ROUTE_API = "gateway.networking.k8s.io/v1alpha2"
GRPC_ROUTE_API = "gateway.networking.k8s.io/v1"
# The standard gRPC health service, what a pod's `grpc:` probe calls (Kubernetes GRPCAction).
GRPC_HEALTH_SERVICE = "grpc.health.v1.Health"
POLICY_GROUP = "policy.linkerd.io"
# Gateway API kinds (TLSRoute, GRPCRoute) are referred to by their own group; Linkerd's policy controller matches a
# targetRef by group and kind (policy-controller/k8s/index/src/inbound/authorization_policy.rs `target`).
GATEWAY_GROUP = "gateway.networking.k8s.io"
# The proxy's ports (chart values proxy.ports): meshed clients reach a meshed server's inbound port directly for
# opaque traffic (transport header), so the network layer must allow it beside the application port.
PROXY_INBOUND_PORT = 4143
PROXY_ADMIN_PORT = 4191
PROXY_TAP_PORT = 4190
# linkerd-identity, linkerd-destination and linkerd-policy: what every proxy calls in the control plane.
CONTROL_PLANE_PORTS = (8080, 8086, 8090)
ADMIN_SERVER = "linkerd-admin"
METRICS_ROUTE = "linkerd-admin-metrics"
PROBES_ROUTE = "linkerd-admin-probes"
# Every other admin path (/proxy-log-level, /env.json, /shutdown, /logs.json, pprof): a route with no
# AuthorizationPolicy, so only the proxy's own localhost authorization admits it (see admin_objects).
LOCAL_ROUTE = "linkerd-admin-local"
KUBELET = "kubelet"
PROMETHEUS = "prometheus"
EGRESS_DENY = "mtls-mesh-egress-deny"
VIZ_PROMETHEUS = ("prometheus", VIZ_NAMESPACE)


def wire(viz: bool) -> MeshWire:
    """What Linkerd's proxies put on the wire, for the shared NetworkPolicies (plan/network_policy.py): every pod of a
    meshed namespace has a proxy; meshed clients dial a meshed server's inbound port directly for opaque traffic;
    Prometheus scrapes the admin port (and viz's tap the tap port); every proxy calls the three control-plane
    services. Probes reach the application's own ports, so the kubelet needs no port of Linkerd's."""
    return MeshWire(name="linkerd", proxied_pods={},
                    control_plane=((LINKERD_NAMESPACE, CONTROL_PLANE_PORTS),),
                    scrape_ports=(PROXY_ADMIN_PORT, PROXY_TAP_PORT) if viz else (PROXY_ADMIN_PORT,),
                    proxy_inbound_ports=(PROXY_INBOUND_PORT,))


def effective_policy(settings: Settings) -> PolicySettings:
    """The stack's policy settings, with viz's Prometheus among the scrapers when viz is installed."""
    accounts = settings.policy.prometheus_service_accounts + ((VIZ_PROMETHEUS,) if settings.linkerd.viz else ())
    return replace(settings.policy, prometheus_service_accounts=tuple(dict.fromkeys(accounts)))


def server(service: Service, port_name: str, phase: str) -> dict[str, Any]:
    port = service.port(port_name)
    return {"apiVersion": SERVER_API, "kind": "Server",
            "metadata": metadata(port_object_name(service, port_name), service.namespace),
            "spec": {"podSelector": {"matchLabels": service.selector_labels}, "port": port.number,
                     "proxyProtocol": port.protocol, "accessPolicy": phase}}


def mesh_tls_authentication(name: str, namespace: str, identities: Iterable[str]) -> dict[str, Any]:
    return {"apiVersion": POLICY_API, "kind": "MeshTLSAuthentication", "metadata": metadata(name, namespace),
            "spec": {"identities": sorted(identities)}}


def network_authentication(name: str, namespace: str, networks: Iterable[str]) -> dict[str, Any]:
    return {"apiVersion": POLICY_API, "kind": "NetworkAuthentication", "metadata": metadata(name, namespace),
            "spec": {"networks": [{"cidr": cidr} for cidr in networks]}}


def authorization_policy(name: str, namespace: str, target_kind: str, target: str,
                         authentication_kind: str, authentication: str, target_group: str = POLICY_GROUP) -> dict[str, Any]:
    return {"apiVersion": POLICY_API, "kind": "AuthorizationPolicy", "metadata": metadata(name, namespace),
            "spec": {"targetRef": {"group": target_group, "kind": target_kind, "name": target},
                     "requiredAuthenticationRefs": [{"group": POLICY_GROUP, "kind": authentication_kind,
                                                     "name": authentication}]}}


def grpc_probe_authorization_name(service: Service, port_name: str) -> str:
    """The AuthorizationPolicy admitting kubelet `grpc:` probes on a gRPC port. The proxy reports requests it admits
    under this very name (`authz_name`: policy-controller grpc/src/inbound.rs `to_authz` sends an AuthorizationPolicy's
    own name), so alerts and `python -m discover` recognise probes by it."""
    return f"{port_object_name(service, port_name)}{GRPC_PROBE_AUTHZ_SUFFIX}"


# A gRPC port's probe objects are named after its Server, so that an alert can recognise them from the labels the
# proxy reports alone (srv_name, route_name, authz_name), without listing every one (see alerts.py).
GRPC_HEALTH_ROUTE_SUFFIX = "-health"
GRPC_PROBE_AUTHZ_SUFFIX = "-probes"


def grpc_health_route_name(server_name: str) -> str:
    return f"{server_name}{GRPC_HEALTH_ROUTE_SUFFIX}"


def grpc_probe_objects(service: Service, port_name: str) -> list[dict[str, Any]]:
    """Kubelet `grpc:` probes on a gRPC port. Linkerd derives probe routes only from `httpGet` probes on HTTP/1
    Servers, so a gRPC health check reaches the Server's policy like any client and is refused under deny. A GRPCRoute
    for the health service gets its own authorization for the kubelet's networks; a catch-all GRPCRoute carries every
    other call, because once a Server has routes, calls no route matches are refused. The callers' authorization stays
    on the Server: the proxy appends a Server's authorizations to each of its routes' (linkerd2-proxy
    linkerd/proxy/server-policy/src/authz.rs `mk_authorizations`)."""
    name = port_object_name(service, port_name)
    parent = [{"group": POLICY_GROUP, "kind": "Server", "name": name}]
    health, probes = grpc_health_route_name(name), grpc_probe_authorization_name(service, port_name)
    return [
        {"apiVersion": GRPC_ROUTE_API, "kind": "GRPCRoute", "metadata": metadata(health, service.namespace),
         "spec": {"parentRefs": parent,
                  "rules": [{"matches": [{"method": {"type": "Exact", "service": GRPC_HEALTH_SERVICE}}]}]}},
        {"apiVersion": GRPC_ROUTE_API, "kind": "GRPCRoute", "metadata": metadata(name, service.namespace),
         "spec": {"parentRefs": parent, "rules": [{}]}},
        authorization_policy(probes, service.namespace, "GRPCRoute", health, "NetworkAuthentication", KUBELET,
                             target_group=GATEWAY_GROUP),
    ]


def service_port_objects(graph: ServiceGraph, service: Service, phase: str, trust_domain: str,
                         remote: Mapping[tuple[str, str], frozenset[str]] | None = None) -> list[dict[str, Any]]:
    """A Server per port; per distinct set of callers one MeshTLSAuthentication, bound to each of its ports' Servers.

    Most services admit the same callers on every port, so they need one authentication, not one per port.
    `remote`: (service key, port name) -> identities a multi-cluster stack admits for callers in its peer clusters
    (plan/linkerd/cluster.py `remote_identities`), beside the local callers'.
    """
    objects = []
    authentications: dict[frozenset[str], str] = {}
    for port_name, callers in callers_by_port(graph, service).items():
        name = port_object_name(service, port_name)
        objects.append(server(service, port_name, phase))
        if service.port(port_name).protocol == "gRPC":
            objects += grpc_probe_objects(service, port_name)
        extra = remote.get((service.key, port_name), frozenset()) if remote else frozenset()
        if not callers and not extra:
            continue
        identities = frozenset(mesh_identity(c.service_account, c.namespace, trust_domain) for c in callers) | extra
        if identities not in authentications:
            authentications[identities] = service.name if not authentications else name
            objects.append(mesh_tls_authentication(authentications[identities], service.namespace, identities))
        objects.append(authorization_policy(name, service.namespace, "Server", name, "MeshTLSAuthentication",
                                            authentications[identities]))
    return objects


def http_route(name: str, namespace: str, parent: str, paths: Iterable[str]) -> dict[str, Any]:
    return {"apiVersion": HTTP_ROUTE_API, "kind": "HTTPRoute", "metadata": metadata(name, namespace),
            "spec": {"parentRefs": [{"group": POLICY_GROUP, "kind": "Server", "name": parent}],
                     "rules": [{"matches": [{"path": {"type": "Exact", "value": path}, "method": "GET"}
                                            for path in paths]}]}}


def admin_objects(namespace: str, phase: str, access: PolicySettings, trust_domain: str) -> list[dict[str, Any]]:
    """The proxies' admin port under default deny: metrics for Prometheus, probes for the kubelet, every other path for
    localhost (`kubectl port-forward`) only.

    Once a Server has routes the proxy looks a request's route up before authorizing it and answers 404 to a path no
    route matches (linkerd2-proxy linkerd/app/inbound/src/policy/http.rs, `HttpRouteNotFound`), even from localhost.
    The catch-all `linkerd-admin-local` route has no AuthorizationPolicy: the only authorization it carries is the
    one the proxy appends to every Server and route, for 127.0.0.1 and ::1 (linkerd/proxy/server-policy/src/lib.rs,
    "Always permit traffic from localhost"; authz.rs `mk_authorizations`). The longest path match wins
    (linkerd/http/route/src/http/match/path.rs, `PathMatch` ordered by length), so /metrics, /live and /ready keep
    their own routes and authorizations."""
    objects: list[dict[str, Any]] = [
        {"apiVersion": SERVER_API, "kind": "Server", "metadata": metadata(ADMIN_SERVER, namespace),
         "spec": {"podSelector": {"matchExpressions": [{"key": "linkerd.io/control-plane-ns", "operator": "Exists"}]},
                  "port": ADMIN_SERVER, "proxyProtocol": "HTTP/1", "accessPolicy": phase}},
        http_route(METRICS_ROUTE, namespace, ADMIN_SERVER, ["/metrics"]),
        # With routes on the Server Linkerd no longer admits probes by itself: the probe paths get a route of their own.
        http_route(PROBES_ROUTE, namespace, ADMIN_SERVER, ["/live", "/ready"]),
        {"apiVersion": HTTP_ROUTE_API, "kind": "HTTPRoute", "metadata": metadata(LOCAL_ROUTE, namespace),
         "spec": {"parentRefs": [{"group": POLICY_GROUP, "kind": "Server", "name": ADMIN_SERVER}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]}},
        network_authentication(KUBELET, namespace, access.kubelet_networks),
        authorization_policy(PROBES_ROUTE, namespace, "HTTPRoute", PROBES_ROUTE, "NetworkAuthentication", KUBELET),
    ]
    # An AuthorizationPolicy requires all of its authentications, so each way Prometheus can arrive gets its own.
    if access.prometheus_service_accounts:
        identities = [mesh_identity(sa, ns, trust_domain) for sa, ns in access.prometheus_service_accounts]
        objects.append(mesh_tls_authentication(PROMETHEUS, namespace, identities))
        objects.append(authorization_policy(f"{PROMETHEUS}-scrape", namespace, "HTTPRoute", METRICS_ROUTE,
                                            "MeshTLSAuthentication", PROMETHEUS))
    if access.prometheus_networks:
        objects.append(network_authentication(f"{PROMETHEUS}-network", namespace, access.prometheus_networks))
        objects.append(authorization_policy(f"{PROMETHEUS}-network-scrape", namespace, "HTTPRoute", METRICS_ROUTE,
                                            "NetworkAuthentication", f"{PROMETHEUS}-network"))
    return objects


def egress_objects(namespace: str, services: list[Service], access: PolicySettings) -> list[dict[str, Any]]:
    """Linkerd egress control for one namespace: everything leaving the cluster is denied but what the graph allows.

    EgressNetworks apply to every client of their namespace; the per-workload restriction is the NetworkPolicy's.
    Allowed CIDRs get an Allow network of their own, carved out of the Deny network so that no two overlap; hosts are
    allowed by TLS server name (SNI) on their ports, or for an entry with `protocol: HTTP` by HTTP host name.
    """
    destinations = [(service, egress) for service in services for egress in service.egress]
    allowed_cidrs = sorted({cidr for _, egress in destinations for cidr in egress.cidrs})
    # `networks` is always written: an absent list means "everything outside clusterNetworks" to Linkerd's policy
    # controller, an empty one (every outside address allowed by the graph's own CIDRs) no network at all
    # (linkerd/linkerd2@945030f7 policy-controller/k8s/status/src/index.rs, IndexNamespacedResource<EgressNetwork>::
    # apply: spec.networks.unwrap_or_else).
    objects: list[dict[str, Any]] = [
        {"apiVersion": POLICY_API, "kind": "EgressNetwork", "metadata": metadata(EGRESS_DENY, namespace),
         "spec": {"trafficPolicy": "Deny", "networks": outside_cluster(access, allowed_cidrs)}},
    ]
    for service, egress in destinations:
        name = f"{service.name}-{egress.name}"
        if egress.cidrs:
            objects.append({"apiVersion": POLICY_API, "kind": "EgressNetwork", "metadata": metadata(name, namespace),
                            "spec": {"trafficPolicy": "Allow", "networks": [{"cidr": c} for c in egress.cidrs]}})
        for port in egress.ports if egress.hosts else ():
            parent = {"group": POLICY_GROUP, "kind": "EgressNetwork", "name": EGRESS_DENY}
            # Plain HTTP carries no SNI for a TLSRoute to match: an HTTP entry's hosts are matched by the Host header
            # instead. The outbound index takes a policy.linkerd.io HTTPRoute whose parentRef is an EgressNetwork
            # with a port (linkerd/linkerd2@19a0d90d, edge-26.8.3, policy-controller/k8s/index/src/outbound/index.rs
            # `apply_http_route`, `is_parent_egress_network`; index/http.rs `convert_route` maps `hostnames` to
            # host matches and an EgressNetwork backendRef to Backend::EgressNetwork).
            api, kind = (HTTP_ROUTE_API, "HTTPRoute") if egress.protocol == "HTTP" else (TLS_ROUTE_API, "TLSRoute")
            objects.append({
                "apiVersion": api, "kind": kind, "metadata": metadata(f"{name}-{port}", namespace),
                "spec": {"hostnames": list(egress.hosts),
                         "parentRefs": [{**parent, "namespace": namespace, "port": port}],
                         "rules": [{"backendRefs": [{**parent, "port": port}]}]},
            })
    return objects


def namespace_objects(graph: ServiceGraph, namespace: str, phase: str, access: PolicySettings, trust_domain: str,
                      viz: bool, remote: Mapping[tuple[str, str], frozenset[str]] | None = None) -> list[dict[str, Any]]:
    """Every authorization object of one meshed namespace."""
    services = graph.services_in(namespace)
    objects = admin_objects(namespace, phase, access, trust_domain)
    for service in services:
        if graph.is_meshed(service):
            objects += service_port_objects(graph, service, phase, trust_domain, remote)
    if phase == "deny":
        objects += egress_objects(namespace, [s for s in services if graph.is_meshed(s)], access)
        if access.network_policies:
            objects += network_policies(graph, namespace, access, wire(viz))
    return objects


def authorization_objects(settings: Settings,
                          remote: Mapping[tuple[str, str], frozenset[str]] | None = None) -> list[dict[str, Any]]:
    """Every authorization object of the graph's meshed namespaces, namespace by namespace (plan.py groups them).
    `remote`: a multi-cluster stack's cross-cluster callers (service_port_objects)."""
    graph = settings.graph
    access = effective_policy(settings)
    objects: list[dict[str, Any]] = []
    for namespace in graph.meshed_namespaces:
        objects += namespace_objects(graph, namespace.name, settings.rollout.policy_for(namespace.name), access,
                                     settings.trust_domain, settings.linkerd.viz, remote)
    return objects


# Authorizations the proxy applies without an object of ours: Linkerd's default probe route on HTTP Servers without
# routes (policy-controller k8s/index/src/inbound/index.rs `default_inbound_http_routes`, AuthorizationRef::Default
# "probe", for the chart's policyController.probeNetworks, which the program sets to kubeletNetworks) and the proxy's
# localhost authorization on every Server (linkerd2-proxy linkerd/proxy/server-policy/src/lib.rs).
LINKERD_PROBE_AUTHZ = "probe"
LOCALHOST_AUTHZ = "localhost"
# Servers whose HTTP routes Linkerd fills with its probe route when no HTTPRoute selects them; gRPC Servers use GRPC
# routes only and HTTP/2 Servers cannot take the kubelet's HTTP/1.1 (the proxy assumes HTTP/2 there).
PROBED_BY_LINKERD = ("HTTP/1", "unknown")


def plaintext_authorizations(objects: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Per namespace, the names under which the proxies report plaintext the program admits on purpose: every
    AuthorizationPolicy of ours that requires only NetworkAuthentications (kubelet probes on the admin port and on gRPC
    ports, Prometheus' network on /metrics), plus Linkerd's own `probe` and `localhost`. The proxy labels a request
    with the AuthorizationPolicy's name (`authz_name`; policy-controller grpc/src/inbound.rs `to_authz`)."""
    found: dict[str, set[str]] = {}
    for obj in objects:
        if obj["kind"] != "AuthorizationPolicy":
            continue
        refs = obj["spec"]["requiredAuthenticationRefs"]
        if refs and all(r["kind"] == "NetworkAuthentication" for r in refs):
            found.setdefault(obj["metadata"]["namespace"], set()).add(obj["metadata"]["name"])
    for names in found.values():
        names.update((LINKERD_PROBE_AUTHZ, LOCALHOST_AUTHZ))
    return found


def _route_description(route: Mapping[str, Any]) -> str:
    """What a route matches, as a reader of the matrix would say it: `GET /metrics`, `grpc.health.v1.Health`, `/*`."""
    parts = []
    for rule in route["spec"].get("rules", []):
        for match in rule.get("matches", []) or [{}]:
            if "method" in match and isinstance(match["method"], Mapping):
                method = match["method"]
                parts.append(method.get("service", "*") + (f"/{method['method']}" if method.get("method") else ""))
            elif "path" in match:
                path = match["path"]["value"] + ("*" if match["path"]["type"] == "PathPrefix" else "")
                parts.append(f"{match['method']} {path}" if match.get("method") else path)
            else:
                parts.append("*")
        if not rule.get("matches"):
            parts.append("*")
    return ", ".join(dict.fromkeys(parts))


def access_matrix(objects: Iterable[Mapping[str, Any]], graph: ServiceGraph, trust_domain: str,
                  probe_networks: Iterable[str] = (), remote_names: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """Who may reach which port, read back from the policy objects themselves (not from the graph).

    Keys are `<namespace>/<service>:<port>`, and `<namespace>/*:linkerd-admin` for the proxies' admin port of every
    meshed pod of the namespace. `allowed` lists the callers whose identity is authorized on the whole port (as
    `<namespace>/<service>`); `routes` (when there are any) says who else may send what, per route: identities and
    networks (kubelet probes, Prometheus scrapes) admitted on that route only; `others` says what happens to everyone
    else, from the Server's accessPolicy: `denied` under deny, and otherwise the phase (`audit` allows and records).
    HTTP/1 and `unknown` Servers without routes also admit the kubelet's `httpGet` probes from `probe_networks`
    (Linkerd's own probe route). Localhost (`kubectl port-forward`) is admitted on every port by the proxy itself.
    """
    objects = list(objects)
    # One identity can cover several workloads (services that share an account, which the graph must declare with
    # sharedServiceAccount, and on the `default` account every pod without its own): the matrix names them all.
    by_identity: dict[str, list[str]] = {}
    for s in graph.services.values():
        if graph.is_meshed(s):
            names = by_identity.setdefault(mesh_identity(s.service_account, s.namespace, trust_domain), [])
            names.append(f"{s.namespace}/{s.key}")
            if s.service_account == DEFAULT_SERVICE_ACCOUNT:
                names.append(f"{s.namespace}/* (service account default)")
    for identity, names in (remote_names or {}).items():
        by_identity.setdefault(identity, []).extend(names)
    index = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
    service_of = {(s.namespace, port_object_name(s, p.name)): (s, p.name) for s in graph.services.values() for p in s.ports}
    policies_on: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    routes_of: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for (kind, namespace, _), obj in index.items():
        if kind == "AuthorizationPolicy":
            target = obj["spec"]["targetRef"]
            policies_on.setdefault((target["kind"], namespace, target["name"]), []).append(obj)
        elif kind in ("HTTPRoute", "GRPCRoute"):
            for parent in obj["spec"]["parentRefs"]:
                if parent.get("kind") == "Server":
                    routes_of.setdefault((namespace, parent["name"]), []).append(obj)

    def admitted(namespace: str, policies: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
        identities: set[str] = set()
        networks: set[str] = set()
        for authz in policies:
            for ref in authz["spec"]["requiredAuthenticationRefs"]:
                spec = (index.get((ref["kind"], namespace, ref["name"])) or {}).get("spec", {})
                for identity in spec.get("identities", []):
                    identities.update(by_identity.get(identity, (identity,)))
                networks.update(n["cidr"] for n in spec.get("networks", []))
        return identities, networks

    matrix: dict[str, Any] = {}
    # Only the Servers, in the order of their keys: sorting every object's key first cost more than the rest of the
    # matrix at 50,000 services.
    for kind, namespace, name in sorted(key for key in index if key[0] == "Server"):
        obj = index[(kind, namespace, name)]
        if (namespace, name) in service_of:
            service, port = service_of[(namespace, name)]
            key = f"{namespace}/{service.key}:{port}"
        elif name == ADMIN_SERVER:
            key = f"{namespace}/*:{ADMIN_SERVER}"
        else:
            continue
        policy = obj["spec"].get("accessPolicy", "deny")
        allowed, _ = admitted(namespace, policies_on.get(("Server", namespace, name), []))
        entry: dict[str, Any] = {"allowed": sorted(allowed), "others": "denied" if policy == "deny" else policy}
        routes: dict[str, Any] = {}
        for route in sorted(routes_of.get((namespace, name), []), key=lambda r: r["metadata"]["name"]):
            ids, nets = admitted(namespace, policies_on.get((route["kind"], namespace, route["metadata"]["name"]), []))
            if ids or nets:
                routes[_route_description(route)] = {"allowed": sorted(ids), "networks": sorted(nets)}
            elif not allowed:
                routes[_route_description(route)] = {"allowed": [], "networks": [], "only": "localhost"}
        if not routes_of.get((namespace, name)) and obj["spec"].get("proxyProtocol") in PROBED_BY_LINKERD \
                and list(probe_networks):
            routes["GET <the pod's httpGet probe paths>"] = {"allowed": [], "networks": sorted(probe_networks)}
        if routes:
            entry["routes"] = routes
        matrix[key] = entry
    return matrix


def is_egress_route(route: Mapping[str, Any]) -> bool:
    """Whether a route object allows a host out through an EgressNetwork (rather than routing to a Server)."""
    return any(p.get("kind") == "EgressNetwork" for p in route.get("spec", {}).get("parentRefs", []))


def egress_matrix(objects: Iterable[Mapping[str, Any]], graph: ServiceGraph) -> dict[str, Any]:
    """Who can reach each destination outside the cluster, read back from the objects.

    The mesh layer's EgressNetworks and their TLSRoutes and HTTPRoutes apply to a whole namespace (Linkerd has no per-workload egress
    object), so every meshed workload of the namespace passes them; where the namespace has NetworkPolicies they narrow
    it to the workloads whose policy opens the destination's port (for a host name: the port to anywhere outside the
    cluster, since NetworkPolicy cannot name hosts). `declaredFor` is the graph's intent; `reachableBy` what holds.
    """
    objects = list(objects)
    destinations: dict[tuple[str, str], tuple[str | None, tuple[int, ...]]] = {}
    policies: dict[str, dict[str, list]] = {}
    for obj in objects:
        namespace, spec = obj["metadata"]["namespace"], obj.get("spec", {})
        if obj["kind"] == "TLSRoute" or (obj["kind"] == "HTTPRoute" and is_egress_route(obj)):
            for parent in spec["parentRefs"]:
                for host in spec["hostnames"]:
                    destinations[(namespace, f"{host}:{parent['port']}")] = (None, (parent["port"],))
        elif obj["kind"] == "NetworkPolicy" and "Egress" in spec.get("policyTypes", []):
            policies.setdefault(namespace, {})[obj["metadata"]["name"]] = spec.get("egress", [])
    declared: dict[tuple[str, str], list[str]] = {}
    for service in graph.services.values():
        for egress in service.egress:
            for port in egress.ports:
                for host in egress.hosts:
                    declared.setdefault((service.namespace, f"{host}:{port}"), []).append(service.key)
                for cidr in egress.cidrs:
                    key = (service.namespace, f"{cidr}:{port}")
                    declared.setdefault(key, []).append(service.key)
                    destinations.setdefault(key, (cidr, (port,)))
    # namespace -> port -> policy name -> its egress rules naming that port: a rule admits only the ports it names
    # (admits), so each destination checks the few policies that open its port, not every workload of the namespace
    # (destinations x workloads grew quadratically with the graph: 7.7 s of CPU at 10,000 services).
    by_port: dict[str, dict[Any, dict[str, list]]] = {}
    for namespace, named in policies.items():
        index = by_port.setdefault(namespace, {})
        for policy_name, rules in named.items():
            for rule in rules:
                for rule_port in {p.get("port") for p in rule.get("ports", [])}:
                    index.setdefault(rule_port, {}).setdefault(policy_name, []).append(rule)
    matrix: dict[str, Any] = {}
    meshed_in: dict[str, dict[str, str]] = {}  # namespace -> policy name -> meshed service key
    # (namespace, cidr, ports) -> the services whose policy admits it: every host name on one port of a namespace is
    # the same question (cidr None: "anywhere outside the cluster"), asked once instead of once per host (which made
    # the matrix quadratic in the namespace's egress entries).
    reachable_for: dict[tuple[str, str | None, tuple[int, ...]], list[str]] = {}
    for (namespace, destination), (cidr, ports) in sorted(destinations.items()):
        if namespace not in meshed_in:
            meshed_in[namespace] = {f"mtls-mesh-{s.name}": s.key for s in graph.services_in(namespace)
                                    if graph.is_meshed(s)}
        meshed = meshed_in[namespace]
        if namespace not in policies:  # no egress NetworkPolicies here: the namespace-wide mesh layer is all there is
            reachable = list(meshed.values())
        elif (namespace, cidr, ports) in reachable_for:
            reachable = reachable_for[(namespace, cidr, ports)]
        else:
            opened = by_port.get(namespace, {})
            admitting = {policy_name for port in ports for policy_name, rules in opened.get(port, {}).items()
                         if policy_name in meshed and any(admits(rule, cidr, port) for rule in rules)}
            reachable = reachable_for[(namespace, cidr, ports)] = sorted(meshed[name] for name in admitting)
        matrix[f"{namespace}/{destination}"] = {"declaredFor": sorted(declared.get((namespace, destination), [])),
                                                "reachableBy": sorted(reachable),
                                                "meshLayer": "namespace-wide"}
    return matrix
