"""Authorization for an Istio mesh (sidecar mode): PeerAuthentications, AuthorizationPolicies, Sidecars,
ServiceEntries and Kubernetes NetworkPolicies, all generated from the service graph; and the access and egress
matrices read back from those objects. docs/istio-authorization.md maps each decision to its upstream source.

Per meshed namespace, by its rollout phase (the same `inboundPolicy` values as the Linkerd path):
- a namespace-scope PeerAuthentication `default` (STRICT where the phase needs an identity, else PERMISSIVE);
- a namespace-wide AuthorizationPolicy `mtls-mesh-default`: `spec: {}` under deny (an ALLOW policy without rules
  matches nothing, so every workload of the namespace is default-deny), the phase's admission otherwise, and under
  audit every policy of the namespace is a dry run (evaluated and counted, never enforced);
- per port of every meshed service with callers, an ALLOW AuthorizationPolicy selecting the service's pods, whose
  principals are exactly its callers' SPIFFE identities and whose port is the target (container) port;
- proxy-free services (`meshed: false`) and `skipInboundPorts` keep working as the Linkerd path's skipped ports: one
  workload-scope PeerAuthentication per namespace selecting every injected pod turns mTLS off on those ports (and so
  makes meshed clients send them plaintext), and an ALLOW policy admits anyone there; the NetworkPolicy guards them.
Egress, under deny: a ServiceEntry per external destination, a Sidecar per workload listing exactly its destinations
and REGISTRY_ONLY of its own, a selector-less REGISTRY_ONLY Sidecar for the namespace's other pods, NetworkPolicy egress
as the enforcement. The mesh stays ALLOW_ANY (`MESH_CONFIG`, for the control plane's values), so injected pods in
namespaces outside the graph keep every destination; outside deny a namespace Sidecar says ALLOW_ANY too.

Every builder is a pure function over the graph; callers and callees are read from indexes built once per graph.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from plan.edges import callers_by_port, inbound_ports_to_skip, port_object_name
from plan.istio.names import ISTIO_CSR_NAMESPACE, ISTIO_NAMESPACE
from plan.network_policy import MeshWire, admits, network_policies
from plan.objects import metadata
from read.errors import Problems
from read.graph import DEFAULT_SERVICE_ACCOUNT, Egress, Service, ServiceGraph, spiffe_id
from read.settings import PolicySettings, RolloutSettings, Settings

SECURITY_API = "security.istio.io/v1"
NETWORKING_API = "networking.istio.io/v1"
# api security/v1beta1/authorization_policy.proto; istio pilot/pkg/security/authz/builder/builder.go `isDryRun`
# (strconv.ParseBool of the annotation): the policy goes to the RBAC filter's shadow rules, never its enforced ones.
DRY_RUN = "istio.io/dry-run"
# The label the injector puts on every pod it gives a sidecar (istio-discovery files/injection-template.yaml), which
# clients read to decide on mTLS (pilot/pkg/xds/endpoints/mtls_checker.go `checkMtlsEnabled`).
SIDECAR_LABEL = {"security.istio.io/tlsMode": "istio"}
# The agent's ports (injection template: `-d "15090,15021,<statusPort>"`, statusPort 15020 in values.yaml), excluded
# from inbound capture: kubelet probes (every httpGet, tcpSocket and grpc probe is rewritten to 15020) and Prometheus
# scrapes (metrics merge on 15020) never reach Envoy, so neither STRICT nor an AuthorizationPolicy sees them.
AGENT_STATUS_PORT = 15020
SIDECAR_READINESS_PORT = 15021
ENVOY_STATS_PORT = 15090
# What every sidecar calls: istiod's xDS over TLS (container port `tls-xds` 15012, istio-discovery
# templates/deployment.yaml; Service port `https-dns` 15012) and istio-csr's CSR gRPC (its Service's 443 targets
# app.server.serving.port 6443, istio-csr templates/service.yaml and values.yaml; a NetworkPolicy sees the pod's port
# after the Service's translation, so 6443 is the port to open).
ISTIOD_XDS_PORT = 15012
ISTIO_CSR_POD_PORT = 6443
# The mesh keeps Istio's default, ALLOW_ANY (pkg/config/mesh/mesh.go `DefaultMeshConfig` [I]): REGISTRY_ONLY goes on
# the deny namespaces' own Sidecars, whose `outboundTrafficPolicy` replaces the mesh's (pilot/pkg/model/sidecar.go
# `initSidecarScopeInternalIndexes` [I]; api networking/v1alpha3/sidecar.proto `outbound_traffic_policy` = 4 [API]).
# A mesh-wide REGISTRY_ONLY would also drop whatever injected pods outside the graph call outside the registry.
MESH_CONFIG = {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}
REGISTRY_ONLY = {"mode": "REGISTRY_ONLY"}

NAMESPACE_POLICY = "mtls-mesh-default"
NAMESPACE_PEER_AUTHENTICATION = "default"
NAMESPACE_SIDECAR = "default"
SKIPPED_PORTS = "mtls-mesh-skipped-ports"
# Hosts of ServiceEntries for CIDR destinations: a ServiceEntry needs a host, and .invalid (RFC 2606) is never a
# real one, so the name can only ever match by address.
CIDR_HOST_SUFFIX = "cidr.mtls-mesh.invalid"
CLUSTER_DOMAIN = "cluster.local"

# Phase -> the namespace's mTLS mode. Phases naming "authenticated" need an identity on every connection.
PEER_MODES = {"deny": "STRICT", "audit": "PERMISSIVE", "all-unauthenticated": "PERMISSIVE",
              "cluster-unauthenticated": "PERMISSIVE", "all-authenticated": "STRICT", "cluster-authenticated": "STRICT"}
ANY_PRINCIPAL = "*"


@dataclass(frozen=True)
class IstioPlacement:
    """Where Istio's own parts run: the charts' defaults until the control-plane settings say otherwise."""

    istiod_namespace: str = "istio-system"
    istio_csr_namespace: str = "cert-manager"


# Where this program runs them (plan/istio/control_plane.py): istio-csr beside istiod, not in the chart's default
# cert-manager namespace.
PLACEMENT = IstioPlacement(istiod_namespace=ISTIO_NAMESPACE, istio_csr_namespace=ISTIO_CSR_NAMESPACE)


def principal(service: Service, trust_domain: str) -> str:
    """An AuthorizationPolicy principal: the workload's SPIFFE ID without `spiffe://`, which Istio adds itself
    (pilot/pkg/security/authz/model/generator.go `srcPrincipalGenerator`)."""
    return spiffe_id(service.service_account, service.namespace, trust_domain).removeprefix("spiffe://")


def _policy_metadata(name: str, namespace: str, phase: str) -> dict[str, Any]:
    return metadata(name, namespace, annotations={DRY_RUN: "true"} if phase == "audit" else None)


def authorization_policy(name: str, namespace: str, phase: str, rules: list[dict[str, Any]] | None,
                         selector: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An ALLOW policy. `rules` None is allow-nothing (`spec` without rules, never `rules: [{}]`, which allows all)."""
    spec: dict[str, Any] = {}
    if selector:
        spec["selector"] = {"matchLabels": dict(selector)}
    if rules is not None:
        spec["action"] = "ALLOW"
        spec["rules"] = rules
    return {"apiVersion": SECURITY_API, "kind": "AuthorizationPolicy",
            "metadata": _policy_metadata(name, namespace, phase), "spec": spec}


def phase_rules(phase: str, access: PolicySettings) -> list[dict[str, Any]] | None:
    """What the namespace admits beyond the graph's callers. Under deny nothing (None: allow-nothing); the others
    follow the Linkerd default-inbound-policy of the same name."""
    cluster = list(access.cluster_networks)
    return {
        "deny": None,
        "audit": None,  # a dry run of deny
        "all-unauthenticated": [{}],
        "cluster-unauthenticated": [{"from": [{"source": {"ipBlocks": cluster}}]}],
        "all-authenticated": [{"from": [{"source": {"principals": [ANY_PRINCIPAL]}}]}],
        "cluster-authenticated": [{"from": [{"source": {"principals": [ANY_PRINCIPAL], "ipBlocks": cluster}}]}],
    }[phase]


def peer_authentication(namespace: str, phase: str) -> dict[str, Any]:
    return {"apiVersion": SECURITY_API, "kind": "PeerAuthentication",
            "metadata": metadata(NAMESPACE_PEER_AUTHENTICATION, namespace),
            "spec": {"mtls": {"mode": PEER_MODES[phase]}}}


def skipped_ports(graph: ServiceGraph, namespace: str) -> tuple[int, ...]:
    """Ports no sidecar of the namespace may guard: the same ports Linkerd's proxies skip (plan/edges.py)."""
    return inbound_ports_to_skip(graph, namespace)


def skipped_port_objects(graph: ServiceGraph, namespace: str, phase: str) -> list[dict[str, Any]]:
    """mTLS off on the skipped ports, for every injected pod of the namespace, in ONE workload-scope
    PeerAuthentication: only the oldest one selecting a pod applies (pilot/pkg/security/authn/policy_applier.go
    `ComposePeerAuthentication`), portLevelMtls needs a selector (CRD rule), and a per-service selector could not
    promise that two never select the same pod. DISABLE (not PERMISSIVE) because clients read it: a meshed caller
    then sends the proxy-free server's own TLS untouched, as Linkerd's skipped outbound ports do (mtls_checker.go)."""
    ports = skipped_ports(graph, namespace)
    if not ports:
        return []
    objects: list[dict[str, Any]] = [{
        "apiVersion": SECURITY_API, "kind": "PeerAuthentication", "metadata": metadata(SKIPPED_PORTS, namespace),
        "spec": {"selector": {"matchLabels": dict(SIDECAR_LABEL)},
                 "portLevelMtls": {str(port): {"mode": "DISABLE"} for port in ports}}}]
    for service in graph.services_in(namespace):
        if not service.meshed:
            objects.append(authorization_policy(service.name, namespace, phase, [
                {"to": [{"operation": {"ports": [str(p.number) for p in service.ports]}}]}], service.selector_labels))
    extra = graph.namespaces[namespace].skip_inbound_ports
    if extra:
        objects.append(authorization_policy(SKIPPED_PORTS, namespace, phase, [
            {"to": [{"operation": {"ports": [str(p) for p in extra]}}]}]))
    return objects


def service_port_policies(graph: ServiceGraph, service: Service, phase: str, trust_domain: str) -> list[dict[str, Any]]:
    """Per port with callers, an ALLOW policy naming exactly their identities. Ports without callers get none: the
    namespace policy denies them."""
    objects = []
    for port_name, callers in callers_by_port(graph, service).items():
        if not callers:
            continue
        principals = sorted({principal(caller, trust_domain) for caller in callers})
        objects.append(authorization_policy(port_object_name(service, port_name), service.namespace, phase, [{
            "from": [{"source": {"principals": principals}}],
            "to": [{"operation": {"ports": [str(service.port(port_name).number)]}}]}], service.selector_labels))
    return objects


# ------------------------------------------------------------------------------------------------------- egress

def service_host(service: Service) -> str:
    return f"{service.name}.{service.namespace}.svc.{CLUSTER_DOMAIN}"


def _cidr_name(cidr: str) -> str:
    return cidr.replace(".", "-").replace(":", "-").replace("/", "-")


def egress_destinations(services: Iterable[Service]) -> dict[str, tuple[str | None, tuple[int, ...], frozenset[int]]]:
    """The namespace's external destinations, each once: host -> (None, ports, its HTTP ports) and, for CIDRs, a host
    of its own under CIDR_HOST_SUFFIX -> (cidr, ports, none). One ServiceEntry per host: ServiceEntries of one
    namespace repeating a host would leave Istio to pick one of them. The graph lets a host's port have one protocol
    per namespace (read/graph.py `_check_egress_protocols`)."""
    found: dict[str, tuple[str | None, set[int], set[int]]] = {}
    for service in services:
        for egress in service.egress:
            for host in egress.hosts:
                _, ports, http = found.setdefault(host, (None, set(), set()))
                ports.update(egress.ports)
                if egress.protocol == "HTTP":
                    http.update(egress.ports)
            for cidr in egress.cidrs:
                found.setdefault(cidr_host(cidr), (cidr, set(), set()))[1].update(egress.ports)
    return {host: (cidr, tuple(sorted(ports)), frozenset(http)) for host, (cidr, ports, http) in found.items()}


def cidr_host(cidr: str) -> str:
    return f"{_cidr_name(cidr)}.{CIDR_HOST_SUFFIX}"


def egress_hosts(egress: Egress) -> list[str]:
    return [*egress.hosts, *(cidr_host(c) for c in egress.cidrs)]


def service_entry(namespace: str, host: str, cidr: str | None, ports: tuple[int, ...],
                  http_ports: Iterable[int] = ()) -> dict[str, Any]:
    """MESH_EXTERNAL, resolution NONE: the connection goes where the application's own DNS answer says (a wildcard
    host cannot be resolved by Envoy), matched by address for CIDRs (TCP) and for hosts by SNI (TLS) or, on the
    graph's `protocol: HTTP` ports, by the Host header (HTTP). Exported to its own namespace only: a Sidecar elsewhere
    cannot name it.

    Istio 1.29.6 [I], pilot/pkg/networking/core: a TLS port of an entry without addresses gets a filter chain matching
    `sniHosts` = the host (tls.go `buildSidecarOutboundTLSFilterChainOpts`), so plain HTTP there matches nothing and
    REGISTRY_ONLY drops it; an HTTP port goes into the port's HTTP route configuration as a virtual host for the host
    (httproute.go `BuildSidecarOutboundVirtualHosts`, `generateVirtualHostDomains`), every other Host meeting the
    catch-all virtual host, a 502 under REGISTRY_ONLY (`buildCatchAllVirtualHost`)."""
    http = set(http_ports)

    def protocol(port: int) -> str:
        return "TCP" if cidr else "HTTP" if port in http else "TLS"
    spec: dict[str, Any] = {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "NONE",
                            "exportTo": ["."],
                            "ports": [{"number": p, "name": f"{protocol(p).lower()}-{p}", "protocol": protocol(p)}
                                      for p in ports]}
    if cidr:
        spec["addresses"] = [cidr]
    return {"apiVersion": NETWORKING_API, "kind": "ServiceEntry",
            "metadata": metadata(service_entry_name(host, cidr), namespace), "spec": spec}


def service_entry_name(host: str, cidr: str | None) -> str:
    """`egress-<host>`, `wildcard-egress.<domain>` for `*.<domain>`, `egress-<cidr with dashes>`: only wildcards'
    names start with `wildcard-`, and a graph host always holds a dot where a CIDR's name has none, so no two
    destinations share a name. A host too long for an object name (253) is named by its digest (no dash, unlike a
    CIDR's)."""
    if cidr:
        return f"egress-{_cidr_name(cidr)}"
    name = f"wildcard-egress.{host[2:]}" if host.startswith("*.") else f"egress-{host}"
    if len(name) > 253:
        name = f"egress-{hashlib.sha256(host.encode()).hexdigest()[:32]}"
    return name


def sidecar(graph: ServiceGraph, service: Service) -> dict[str, Any]:
    """The workload's outbound configuration: exactly its callees and external destinations (`~/*`: none)."""
    hosts = [f"{graph.services[callee].namespace}/{service_host(graph.services[callee])}"
             for callee in graph.callees.get(service.key, {})]
    hosts += [f"{service.namespace}/{host}" for egress in service.egress for host in egress_hosts(egress)]
    return {"apiVersion": NETWORKING_API, "kind": "Sidecar", "metadata": metadata(service.name, service.namespace),
            "spec": {"workloadSelector": {"labels": service.selector_labels},
                     "egress": [{"hosts": sorted(set(hosts)) or ["~/*"]}],
                     "outboundTrafficPolicy": dict(REGISTRY_ONLY)}}


def closed_namespace_sidecar(namespace: str) -> dict[str, Any]:
    """Under deny, for the namespace's pods no service of the graph selects: REGISTRY_ONLY, and no `egress`, which
    Istio reads as every host (`*/*`, sidecar.go `initSidecarScopeInternalIndexes` [I]): what a REGISTRY_ONLY mesh
    gave them, now that the mesh is ALLOW_ANY. A Sidecar with a workloadSelector wins over it (sidecar.proto [API])."""
    return {"apiVersion": NETWORKING_API, "kind": "Sidecar", "metadata": metadata(NAMESPACE_SIDECAR, namespace),
            "spec": {"outboundTrafficPolicy": dict(REGISTRY_ONLY)}}


def open_sidecar(namespace: str) -> dict[str, Any]:
    """Outside deny: every host, and ALLOW_ANY, the mesh's mode said again so that an operator's REGISTRY_ONLY mesh
    cannot break namespaces that do not enforce yet."""
    return {"apiVersion": NETWORKING_API, "kind": "Sidecar", "metadata": metadata(NAMESPACE_SIDECAR, namespace),
            "spec": {"egress": [{"hosts": ["*/*"]}], "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}}


def egress_objects(graph: ServiceGraph, namespace: str) -> list[dict[str, Any]]:
    services = graph.services_in(namespace)
    objects = [service_entry(namespace, host, cidr, ports, http)
               for host, (cidr, ports, http) in sorted(egress_destinations(services).items())]
    return objects + [closed_namespace_sidecar(namespace)] + [sidecar(graph, service) for service in services]


# ---------------------------------------------------------------------------------------------- NetworkPolicies

def wire(placement: IstioPlacement) -> MeshWire:
    """What Istio's sidecars put on the wire, for the shared NetworkPolicies (plan/network_policy.py): application
    target ports between the graph's callers and callees (inbound capture redirects inside the pod, so 15006 never
    crosses the network), the agent's 15020/15021 from the kubelet and 15020 (merged metrics) from Prometheus, and out
    to istiod (15012) and istio-csr (6443). Only pods the injector labelled carry a sidecar."""
    return MeshWire(name="istio", proxied_pods=SIDECAR_LABEL,
                    control_plane=((placement.istiod_namespace, (ISTIOD_XDS_PORT,)),
                                   (placement.istio_csr_namespace, (ISTIO_CSR_POD_PORT,))),
                    scrape_ports=(AGENT_STATUS_PORT,), kubelet_ports=(AGENT_STATUS_PORT, SIDECAR_READINESS_PORT))


# ------------------------------------------------------------------------------------------------------ the plan

def namespace_objects(graph: ServiceGraph, namespace: str, phase: str, access: PolicySettings, trust_domain: str,
                      placement: IstioPlacement = IstioPlacement()) -> list[dict[str, Any]]:
    """Every authorization object of one meshed namespace."""
    objects = [peer_authentication(namespace, phase),
               authorization_policy(NAMESPACE_POLICY, namespace, phase, phase_rules(phase, access))]
    objects += skipped_port_objects(graph, namespace, phase)
    for service in graph.services_in(namespace):
        if service.meshed:
            objects += service_port_policies(graph, service, phase, trust_domain)
    if phase == "deny":
        objects += egress_objects(graph, namespace)
        if access.network_policies:
            objects += network_policies(graph, namespace, access, wire(placement))
    else:
        objects.append(open_sidecar(namespace))
    return objects


def build_objects(graph: ServiceGraph, rollout: RolloutSettings, access: PolicySettings, trust_domain: str,
                  placement: IstioPlacement = IstioPlacement(), stack: str = "") -> list[dict[str, Any]]:
    """Every object, or a SettingsError for a graph Istio cannot express (graph_problems) before any is built."""
    graph_problems(graph).raise_if_any(stack)
    objects: list[dict[str, Any]] = []
    for namespace in graph.meshed_namespaces:
        objects += namespace_objects(graph, namespace.name, rollout.policy_for(namespace.name), access,
                                     trust_domain, placement)
    return objects


def authorization_objects(settings: Settings, placement: IstioPlacement = IstioPlacement()) -> list[dict[str, Any]]:
    """Every Istio authorization object of the graph's meshed namespaces, from the same settings as Linkerd's."""
    return build_objects(settings.graph, settings.rollout, settings.policy, settings.trust_domain, placement,
                         settings.stack)


def graph_problems(graph: ServiceGraph) -> Problems:
    """What the graph may hold that Istio cannot express: two services of a namespace whose selectors nest (one's
    labels include all of the other's) would give the narrower one's pods two Sidecars, which Istio leaves undefined
    (api networking/v1alpha3/sidecar.proto). Selectors that overlap without nesting cannot be seen from the graph."""
    problems = Problems()
    by_namespace: dict[str, list[Service]] = {}
    for service in graph.services.values():
        by_namespace.setdefault(service.namespace, []).append(service)
    # Linear in practice: a nested pair shares its broader member's rarest label, so only services sharing a label
    # are compared.
    by_item: dict[tuple[str, tuple[str, str]], list[Service]] = {}
    for service in graph.services.values():
        for item in service.selector:
            by_item.setdefault((service.namespace, item), []).append(service)
    for service in graph.services.values():
        if not graph.namespaces[service.namespace].meshed:
            continue
        labels = set(service.selector)
        rarest = min(service.selector, key=lambda item: len(by_item[(service.namespace, item)]))
        for other in by_item[(service.namespace, rarest)]:
            if other is not service and labels <= set(other.selector) and (labels != set(other.selector)
                                                                            or service.key < other.key):
                problems.add(graph.where(f"services.{other.key}.selector"),
                             f"selects a subset of the pods services.{service.key} selects, so with Istio both "
                             "services' Sidecars would select them, which Istio leaves undefined",
                             "Make the selectors distinct (e.g. each service its own app label), or merge the services")
    return problems


# ----------------------------------------------------------------------------------------------------- matrices

def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _identities(graph: ServiceGraph, trust_domain: str) -> dict[str, list[str]]:
    """principal -> the workloads carrying it (with the `default` account: every pod without its own)."""
    by_identity: dict[str, list[str]] = {}
    for s in graph.services.values():
        if graph.is_meshed(s):
            names = by_identity.setdefault(principal(s, trust_domain), [])
            names.append(f"{s.namespace}/{s.key}")
            if s.service_account == DEFAULT_SERVICE_ACCOUNT:
                names.append(f"{s.namespace}/* (service account default)")
    return by_identity


def _rule_ports(rule: Mapping[str, Any]) -> set[str] | None:
    """The ports a rule is limited to, or None for every port."""
    tos = rule.get("to")
    if not tos:
        return None
    ports: set[str] = set()
    for to in tos:
        operation = to.get("operation", {})
        if "ports" not in operation:
            return None
        ports.update(operation["ports"])
    return ports


# How broad a namespace-wide admission is, read from a rule's source; ordered from narrowest to broadest.
_BREADTH = ("denied", "cluster-authenticated", "all-authenticated", "cluster-unauthenticated", "all-unauthenticated")


def _source_breadth(source: Mapping[str, Any]) -> str | None:
    """Which phase a source admits, or None when it names identities (listed in `allowed` instead)."""
    principals = source.get("principals")
    if principals is not None and principals != [ANY_PRINCIPAL]:
        return None
    if principals == [ANY_PRINCIPAL]:
        return "cluster-authenticated" if source.get("ipBlocks") else "all-authenticated"
    return "cluster-unauthenticated" if source.get("ipBlocks") else "all-unauthenticated"


def _index_by_selector(objects: Iterable[Mapping[str, Any]], selector_of) -> dict[Any, list[Mapping[str, Any]]]:
    """Objects by one item of their selector (None: no selector): a service finds those selecting it among the
    objects filed under one of its own labels, not among every object of the namespace."""
    index: dict[Any, list[Mapping[str, Any]]] = {}
    for obj in objects:
        selector = selector_of(obj)
        index.setdefault(min(selector.items()) if selector else None, []).append(obj)
    return index


def _selecting(index: Mapping[Any, list[Mapping[str, Any]]], labels: Mapping[str, str], selector_of) -> list:
    candidates = [*index.get(None, ()), *(o for item in sorted(labels.items()) for o in index.get(item, ()))]
    return [o for o in candidates if _selects(selector_of(o), labels)]


def _policy_selector(policy: Mapping[str, Any]) -> Mapping[str, str]:
    return policy["spec"].get("selector", {}).get("matchLabels", {})


def access_matrix(objects: Iterable[Mapping[str, Any]], graph: ServiceGraph, trust_domain: str) -> dict[str, Any]:
    """Who may reach which port, read back from the AuthorizationPolicies (not from the graph), in the shape of the
    Linkerd path's matrix: `<namespace>/<service>:<port>` -> `allowed` (the callers admitted by identity) and `others`
    (`denied`, the phase admitting everyone else, or `audit` where every policy is a dry run: `allowed` then lists
    whom the dry-run policies name, who alone `deny` would admit). A proxy-free service's
    port shows `all-unauthenticated`: no sidecar guards it, the NetworkPolicy does. The agent's ports (15020, 15021,
    15090) are never captured, so no policy applies to them and they have no entry."""
    by_identity = _identities(graph, trust_domain)
    policies: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        if obj["kind"] == "AuthorizationPolicy":
            policies.setdefault(obj["metadata"]["namespace"], []).append(obj)
    matrix: dict[str, Any] = {}
    for namespace in sorted(policies):
        index = _index_by_selector(policies[namespace], _policy_selector)
        for service in sorted(graph.services_in(namespace), key=lambda s: s.key):
            applying = _selecting(index, service.selector_labels, _policy_selector)
            enforced = [p for p in applying if p["metadata"].get("annotations", {}).get(DRY_RUN) != "true"]
            # With every policy a dry run (audit), `allowed` is who they name, as the Linkerd path's audit rows list
            # the callers its AuthorizationPolicies name while its Servers admit everyone else (`others: audit`).
            read = enforced or applying
            for port in service.ports:
                allowed: set[str] = set()
                breadth = "denied"
                for policy in read:
                    for rule in policy["spec"].get("rules", []):
                        ports = _rule_ports(rule)
                        if ports is not None and str(port.number) not in ports:
                            continue
                        for entry in rule.get("from") or [{"source": {}}]:
                            source = entry.get("source", {})
                            found = _source_breadth(source)
                            if found is None:
                                for identity in source["principals"]:
                                    allowed.update(by_identity.get(identity, (identity,)))
                            elif _BREADTH.index(found) > _BREADTH.index(breadth):
                                breadth = found
                if not enforced:  # no ALLOW policy enforced: everyone is admitted, and a dry run only counts
                    breadth = "audit" if applying else "all-unauthenticated"
                matrix[f"{namespace}/{service.key}:{port.name}"] = {"allowed": sorted(allowed), "others": breadth}
    return matrix


def _sidecar_selector(spec: Mapping[str, Any]) -> Mapping[str, str]:
    return spec["workloadSelector"]["labels"]


def egress_matrix(objects: Iterable[Mapping[str, Any]], graph: ServiceGraph) -> dict[str, Any]:
    """Who can reach each destination outside the cluster, read back from the objects, in the Linkerd path's shape.

    Under deny the mesh layer is per workload: a workload reaches a ServiceEntry's host only if its own Sidecar lists
    it (its Sidecar's REGISTRY_ONLY drops the rest), on the ServiceEntry's ports; the namespace's egress NetworkPolicies then narrow
    it to the workloads whose policy opens the port (for a host: to anywhere outside the cluster). A namespace whose
    Sidecar keeps ALLOW_ANY lets every workload out (`meshLayer: namespace-wide`)."""
    entries: dict[str, dict[str, tuple[str | None, tuple[int, ...]]]] = {}
    sidecars: dict[str, list[Mapping[str, Any]]] = {}
    open_namespaces: set[str] = set()
    egress_policies: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        namespace, spec = obj["metadata"]["namespace"], obj.get("spec", {})
        if obj["kind"] == "ServiceEntry":
            cidr = (spec.get("addresses") or [None])[0]
            for host in spec["hosts"]:
                entries.setdefault(namespace, {})[host] = (cidr, tuple(p["number"] for p in spec.get("ports", [])))
        elif obj["kind"] == "Sidecar":
            if "workloadSelector" not in spec and spec.get("outboundTrafficPolicy", {}).get("mode") == "ALLOW_ANY":
                open_namespaces.add(namespace)
            elif "workloadSelector" in spec:
                sidecars.setdefault(namespace, []).append(spec)
        elif obj["kind"] == "NetworkPolicy" and "Egress" in spec.get("policyTypes", []):
            egress_policies.setdefault(namespace, []).append(spec)
    # Destinations: what the graph declares (in every meshed namespace) and what the ServiceEntries hold.
    declared: dict[tuple[str, str], list[str]] = {}
    destinations: dict[tuple[str, str], tuple[str, str | None, int]] = {}
    for service in graph.services.values():
        if not graph.namespaces[service.namespace].meshed:
            continue
        for egress in service.egress:
            for port in egress.ports:
                for host, cidr in [*((h, None) for h in egress.hosts), *((cidr_host(c), c) for c in egress.cidrs)]:
                    key = (service.namespace, f"{cidr or host}:{port}")
                    declared.setdefault(key, []).append(service.key)
                    destinations[key] = (host, cidr, port)
    for namespace, hosts in entries.items():
        for host, (cidr, ports) in hosts.items():
            for port in ports:
                destinations.setdefault((namespace, f"{cidr or host}:{port}"), (host, cidr, port))
    # Per workload once: the destinations its Sidecar opens, kept only where its NetworkPolicies let them out.
    reachable: dict[tuple[str, str], list[str]] = {}
    by_namespace: dict[str, list[tuple[str, str, str | None, int]]] = {}
    for (namespace, destination), (host, cidr, port) in destinations.items():
        by_namespace.setdefault(namespace, []).append((destination, host, cidr, port))
    for namespace, wanted in by_namespace.items():
        sidecar_index = _index_by_selector(sidecars.get(namespace, []), _sidecar_selector)
        policy_index = _index_by_selector(egress_policies.get(namespace, []),
                                          lambda spec: spec["podSelector"].get("matchLabels", {}))
        by_host: dict[str, list[tuple[str, str | None, int]]] = {}
        for destination, host, cidr, port in wanted:
            by_host.setdefault(host, []).append((destination, cidr, port))
        for service in graph.services_in(namespace):
            labels = service.selector_labels
            if namespace in open_namespaces:
                candidates = [d for items in by_host.values() for d in items]
            else:
                listed = {h.partition("/")[2] for spec in _selecting(sidecar_index, labels, _sidecar_selector)
                          for e in spec["egress"] for h in e.get("hosts", [])
                          if h.partition("/")[0] in (namespace, ".")}
                candidates = [d for host in listed for d in by_host.get(host, ())
                              if d[2] in entries.get(namespace, {}).get(host, (None, ()))[1]]
            policies = _selecting(policy_index, labels, lambda spec: spec["podSelector"].get("matchLabels", {}))
            for destination, cidr, port in candidates:
                if not policies or any(admits(rule, cidr, port) for p in policies for rule in p.get("egress", [])):
                    reachable.setdefault((namespace, destination), []).append(service.key)
    return {f"{namespace}/{destination}": {
        "declaredFor": sorted(declared.get((namespace, destination), [])),
        "reachableBy": sorted(reachable.get((namespace, destination), [])),
        "meshLayer": "namespace-wide" if namespace in open_namespaces else "per-workload"}
        for (namespace, destination) in sorted(destinations)}
