"""The service graph: who runs where, on which ports, and who may call whom. Loaded from YAML and validated.

One graph serves every environment; the stack decides how strictly it is enforced. Every problem is reported with
the file and the path of the offending key (`services.yaml: services.billing.allow[1]`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from . import graph_format
from read.errors import Problems, did_you_mean, short
# The format's values (allowed keys, protocols, name patterns, ranges and limits) are declared once, in graph_format,
# which also renders them into schema/services.schema.json; the reader below checks with those same constants.
from read.graph_format import (  # noqa: F401 (re-exported: tests and benchmarks import the limits from here)
    DNS_LABEL_MAX, IN_CLUSTER_SUFFIXES, INJECTOR_LABEL_PREFIX, LABEL_VALUE_MAX, MAX_ALLOW_ENTRIES,
    MAX_CALLERS_PER_SERVICE, MAX_DESTINATIONS_PER_EGRESS, MAX_EGRESS_PER_SERVICE, MAX_NAMESPACES, MAX_PORT_LIST,
    MAX_PORTS, MAX_PORTS_PER_SERVICE, MAX_SELECTOR_LABELS, MAX_SERVICES, PORT_MAX, PORT_MIN, PORT_NAME_MAX,
    PLATFORM_NAMESPACES, PROXY_PROTOCOLS, RESERVED_NAMESPACES, EGRESS_PROTOCOLS, DEFAULT_EGRESS_PROTOCOL,
)
from read.inputs import MAX_GRAPH_BYTES, InputError, load_yaml, read_text_file
from read.meshes import DEFAULT_MESH, MeshFacts, facts_of


_DNS_LABEL = graph_format.DNS_LABEL.python
# Kubernetes container port names (IANA_SVC_NAME), at least one letter: what a Server's named port and a
# NetworkPolicy port refer to.
_PORT_NAME = graph_format.PORT_NAME.python
_DNS_SUBDOMAIN = graph_format.DNS_SUBDOMAIN.python
LABEL_VALUE = graph_format.LABEL_VALUE.python
# An egress host, lengths included (at most 253 characters after '*.', labels of at most 63).
_HOSTNAME = graph_format.HOSTNAME.python


def is_qualified_name(key: Any) -> bool:
    """A label key as apimachinery's IsQualifiedName (pkg/util/validation/validation.go) accepts it: an optional
    DNS-1123 subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters (graph_format's
    LABEL_KEY, whose pattern states the lengths too)."""
    return graph_format.LABEL_KEY.matches(key)


def is_dns_subdomain(name: str) -> bool:
    """A DNS-1123 subdomain (IsDNS1123Subdomain): at most 253 characters, labels of at most 63."""
    return (len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))
            and all(len(label) <= 63 for label in name.split(".")))


# The account every pod of a namespace runs as unless it names its own: a caller on it is anyone in the namespace.
DEFAULT_SERVICE_ACCOUNT = "default"


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    protocol: str


@dataclass(frozen=True)
class Caller:
    """An allowed caller of a service: `ports` empty means every port of the service."""

    service: str
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Egress:
    """A destination outside the cluster a service may reach."""

    name: str
    cidrs: tuple[str, ...]
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    # What the hosts speak on the ports (graph_format.EGRESS_PROTOCOLS): only Istio's ServiceEntry reads it.
    protocol: str = DEFAULT_EGRESS_PROTOCOL


@dataclass(frozen=True)
class Namespace:
    name: str
    meshed: bool = True
    skip_inbound_ports: tuple[int, ...] = ()
    skip_outbound_ports: tuple[int, ...] = ()
    # The policy shard that registers the namespace's policy and certificates (only with policyShards).
    shard: str | None = None


@dataclass(frozen=True)
class Service:
    key: str
    name: str
    namespace: str
    service_account: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[Port, ...]
    callers: tuple[Caller, ...]
    meshed: bool
    certificate: bool
    egress: tuple[Egress, ...] = ()
    # The graph's explicit consent that other workloads carry this service's identity (another service of the graph,
    # or, on the namespace's `default` account, every pod without its own account): a grant to it admits them too.
    shared_service_account: bool = False
    # Multi-cluster (docs/multicluster.md): the clusters it runs in (every one of the graph's `clusters:` unless it
    # names some; () in a graph without clusters), and how it is offered to the others (None: not exported).
    clusters: tuple[str, ...] = ()
    export: str | None = None

    def runs_in(self, cluster: str) -> bool:
        """Whether a cluster stack runs this service; a single-cluster stack (cluster "") runs every service."""
        return not cluster or cluster in self.clusters

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)

    @property
    def selector_labels(self) -> dict[str, str]:
        return dict(self.selector)


@dataclass(frozen=True)
class ServiceGraph:
    source: str
    namespaces: Mapping[str, Namespace]
    services: Mapping[str, Service]
    _edges: frozenset = field(default=frozenset(), repr=False)
    # A graph split per team (read/fragments.py): its files in order, and which file declares each namespace and
    # service (`namespaces.<name>` / `services.<key>` -> the file as the user names it), so problems name the file.
    fragments: tuple["Fragment", ...] = field(default=(), compare=False)
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The environment's clusters (`clusters:`), in graph order; () for a single-cluster graph.
    clusters: tuple[str, ...] = ()

    def where(self, path: str) -> str:
        """A problem's location: `<file>: <path>`, the file being the one that declares the path's namespace or
        service when the graph is split, else the graph's own (services.yaml)."""
        return f"{origin_of(self.origins, path) or self.source}: {path}" if path else self.source

    def locate(self, paths: list[str]) -> str:
        """Several paths in one location: `services.yaml: services.a and services.b`, or, across the files of a split
        graph, `services.d/a.yaml: services.a and services.d/b.yaml: services.b`."""
        if not paths:
            return self.where("services")
        files = [origin_of(self.origins, path) or self.source for path in paths]
        if len(set(files)) == 1:
            return f"{files[0]}: {' and '.join(paths)}"
        return " and ".join(f"{file}: {path}" for file, path in zip(files, paths))

    @functools.cached_property
    def shards(self) -> dict[str, tuple[str, ...]]:
        """Each policy shard the graph names -> its namespaces, in graph order (shards in order of first appearance)."""
        found: dict[str, list[str]] = {}
        for namespace in self.namespaces.values():
            if namespace.shard is not None:
                found.setdefault(namespace.shard, []).append(namespace.name)
        return {shard: tuple(names) for shard, names in found.items()}

    @property
    def meshed_namespaces(self) -> list[Namespace]:
        return [ns for ns in self.namespaces.values() if ns.meshed]

    @functools.cached_property
    def _services_by_namespace(self) -> dict[str, list[Service]]:
        by_namespace: dict[str, list[Service]] = {}
        for service in self.services.values():
            by_namespace.setdefault(service.namespace, []).append(service)
        return by_namespace

    def services_in(self, namespace: str) -> list[Service]:
        # Indexed once: scanning every service for each namespace is quadratic (10,000 namespaces of one service each).
        return list(self._services_by_namespace.get(namespace, ()))

    def is_meshed(self, service: Service) -> bool:
        """A service has a proxy (and so a mesh identity) only if it and its namespace are both meshed."""
        return service.meshed and self.namespaces[service.namespace].meshed

    @functools.cached_property
    def callees(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """caller key -> callee key -> port names, from the edges (indexed once: scanning every edge per caller is
        quadratic in the size of the graph)."""
        index: dict[str, dict[str, list[str]]] = {}
        for caller, service, port in sorted(self.edges()):
            index.setdefault(caller, {}).setdefault(service, []).append(port)
        return {caller: {service: tuple(ports) for service, ports in by_service.items()}
                for caller, by_service in index.items()}

    @functools.cached_property
    def certificate_services(self) -> dict[str, tuple[Service, ...]]:
        """namespace -> its services that terminate TLS themselves with a workload certificate (namespaces sorted)."""
        by_namespace: dict[str, list[Service]] = {}
        for service in self.services.values():
            if service.certificate:
                by_namespace.setdefault(service.namespace, []).append(service)
        return {ns: tuple(sorted(by_namespace[ns], key=lambda s: s.name)) for ns in sorted(by_namespace)}

    def edges(self) -> frozenset[tuple[str, str, str]]:
        """Every allowed (caller key, service key, port name): the graph's intent, the access matrix's truth."""
        return self._edges


@dataclass(frozen=True)
class Fragment:
    """One file of a graph split per team: its path as the user names it (`services.d/payments.yaml`), its path from
    the project directory (what CODEOWNERS writes), its owners, and what it declares."""

    file: str
    project_path: str
    owners: tuple[str, ...]
    namespaces: tuple[str, ...]
    services: tuple[str, ...]


def origin_of(origins: Mapping[str, str], path: str) -> str | None:
    """The file that declares the namespace or service a path starts with (`services.billing.allow[0]` ->
    `origins['services.billing']`), or None. Keys are user text that may hold '.' or '[': every prefix ending before
    one is tried, the longest first."""
    if not origins:
        return None
    head, dot, rest = path.partition(".")
    if not dot:
        return None
    for end in sorted((i for i, char in enumerate(rest) if char in ".["), reverse=True):
        found = origins.get(f"{head}.{rest[:end]}")
        if found:
            return found
    return origins.get(path)


def mesh_identity(service_account: str, namespace: str, trust_domain: str) -> str:
    """The identity Linkerd gives a workload's proxy (and that MeshTLSAuthentication matches)."""
    return f"{service_account}.{namespace}.serviceaccount.identity.linkerd.{trust_domain}"


def identity_issuer_name(trust_domain: str) -> str:
    """The Linkerd identity issuer's name (its CN and only DNS SAN): identity.linkerd.<trust domain>."""
    return f"identity.linkerd.{trust_domain}"


def spiffe_id(service_account: str, namespace: str, trust_domain: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def workload_dns_names(service: Service) -> list[str]:
    """The names a workload certificate carries: its Service's in-cluster names, never anything outside its namespace."""
    ns = service.namespace
    return [f"{service.name}.{ns}.svc", f"{service.name}.{ns}.svc.cluster.local"]


# The keys each mapping may hold, from the one declaration of the format (which the JSON Schema is rendered from).
_TOP_KEYS = graph_format.GRAPH.keys
_NAMESPACE_KEYS = graph_format.NAMESPACE.keys
_SERVICE_KEYS = graph_format.SERVICE.keys
_PORT_KEYS = graph_format.PORT.keys
_CALLER_KEYS = graph_format.CALLER.keys
_EGRESS_KEYS = graph_format.EGRESS.keys


class _Reader:
    """Walks the parsed YAML, recording problems with `file: dotted.path[index]` locations."""

    def __init__(self, source: str, problems: Problems, origins: Mapping[str, str] | None = None,
                 mesh: MeshFacts | None = None):
        self.source = source
        self.problems = problems
        self.origins = origins or {}
        # The mesh the graph is checked for: its proxy's ports, its namespaces, its injector's labels.
        self.mesh = mesh or facts_of(DEFAULT_MESH)

    def where(self, path: str) -> str:
        return f"{origin_of(self.origins, path) or self.source}: {path}" if path else self.source

    def add(self, path: str, what: str, fix: str = "") -> None:
        self.problems.add(self.where(path), what, fix)

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, not {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{_name(key)}" if path else _name(key), "is not a known field", did_you_mean(str(key), allowed))
        return value

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, not {short(value)}")
            return default
        return value

    def port_number(self, value: Any, path: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not PORT_MIN <= value <= PORT_MAX:
            self.add(path, f"must be a port number from {PORT_MIN} to {PORT_MAX}, not {short(value)}")
            return None
        return value

    def port_numbers(self, value: Any, path: str) -> tuple[int, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.add(path, f"must be a list of port numbers, not {_kind(value)}")
            return ()
        if not self.within(value, MAX_PORT_LIST, path, "ports"):
            return ()
        numbers = [self.port_number(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(sorted({n for n in numbers if n is not None}))

    def within(self, items: Any, limit: int, path: str, what: str) -> bool:
        """Whether a list or mapping holds at most `limit` entries (else a problem: see docs/service-graph.md, 'Limits')."""
        if len(items) <= limit:
            return True
        self.add(path, f"lists {len(items):,} {what}, more than the limit of {limit:,}",
                 "Split or trim it; see docs/service-graph.md, 'Limits'")
        return False

    def dns_label(self, value: Any, path: str, what: str) -> bool:
        if not isinstance(value, str) or len(value) > DNS_LABEL_MAX or not _DNS_LABEL.match(value):
            self.add(path, f"{what} {short(value)} is not a valid Kubernetes name",
                     "Use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
            return False
        return True


    def shard_name(self, value: Any, path: str) -> str | None:
        if value is None:
            return None
        if not self.dns_label(value, path, "shard"):
            return None
        if len(value) > graph_format.SHARD_NAME_MAX:
            self.add(path, f"shard '{value}' is longer than {graph_format.SHARD_NAME_MAX} characters",
                     "Shorten it: the shard's Operator Stack, mtls-mesh-<platform>-<shard>, must fit in 42")
            return None
        return value


def _name(key: Any) -> str:
    """A key as it appears in a path: user text, so never more than a short prefix of it."""
    text = str(key)
    return text if len(text) <= 60 else f"{text[:60]}..."


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


@contextlib.contextmanager
def collector_paused():
    """Pause CPython's cyclic garbage collector while a graph is read or compiled (a decorator or a `with`), and restore
    it after. Reading and compiling allocate millions of small containers (YAML nodes, the objects' dicts), none in a
    reference cycle: reference counting frees them, and the collector finds nothing, yet its passes over the surviving
    objects grew faster than the graph (CPU time of read + compile at 50,000 services: 43 s with it, 18.5 s without;
    benchmarks/scale.py). Anything cyclic made meanwhile is collected once it runs again. Nested uses restore only the
    outermost state."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@collector_paused()
def load_graph(path: Path, display: str, problems: Problems, mesh: str = DEFAULT_MESH) -> ServiceGraph | None:
    """Read and validate the graph file for `mesh` (read/meshes.py); problems go to `problems`, and None is returned
    if it cannot be used."""
    reader = _Reader(display, problems)
    try:
        document = load_yaml(read_text_file(path, MAX_GRAPH_BYTES))
    except InputError as err:
        # The file is named by the serviceGraph setting: say so, since the path alone may not tell the user why it is read.
        fix = f"{err.fix} (in the file mtls-mesh:serviceGraph names)" if err.fix else \
            "Point mtls-mesh:serviceGraph at the graph file, e.g. services.yaml"
        reader.add("", err.what, fix)
        return None
    return parse_graph(document, display, problems, mesh=mesh)


def parse_graph(document: Any, display: str, problems: Problems,
                origins: Mapping[str, str] | None = None, mesh: str = DEFAULT_MESH) -> ServiceGraph | None:
    """Validate an already-parsed graph document. Pure: no files, no Pulumi. `origins`: for a graph merged from the
    files of a directory (read/fragments.py), which file declares each namespace and service (ServiceGraph.origins).
    `mesh`: the stack's mesh, whose proxy ports, namespaces and injector labels the graph must leave alone."""
    reader = _Reader(display, problems, origins, facts_of(mesh))
    origins = origins or {}
    before = len(problems.items)
    if not isinstance(document, dict):
        reader.add("", f"must be a mapping with 'namespaces' and 'services', not {_kind(document)}")
        return None
    if not any(key in document for key in _TOP_KEYS):
        # A file that is not a graph at all (a mis-pointed serviceGraph): quoting its keys or values could print
        # someone's secrets, so say only what is missing.
        reader.add("", "is not a service graph: it has neither 'namespaces' nor 'services' at the top level",
                   "Point mtls-mesh:serviceGraph at the graph file, e.g. services.yaml")
        return None
    top = reader.mapping(document, "", _TOP_KEYS)
    clusters = _read_clusters(reader, top.get("clusters"))
    namespaces = _read_namespaces(reader, top.get("namespaces"))
    raw_services = top.get("services")
    if raw_services is None:
        reader.add("services", "is missing", "List the services of the mesh under 'services:'")
        raw_services = {}
    elif not isinstance(raw_services, dict):
        reader.add("services", f"must be a mapping of service name to service, not {_kind(raw_services)}")
        raw_services = {}
    if len(raw_services) > MAX_SERVICES:
        reader.add("services", f"lists {len(raw_services):,} services, more than the limit of {MAX_SERVICES:,}",
                   "Split the platform into several stacks (see docs/service-graph.md, 'Limits')")
        return None
    if not _within_totals(reader, raw_services):
        return None
    services: dict[str, Service] = {}
    raw_allow: dict[str, Any] = {}
    for key, raw in raw_services.items():
        problems_before = len(problems.items)
        service = _read_service(reader, str(key), raw, namespaces, clusters)
        if service is not None:
            services[service.key] = service
            raw_allow[service.key] = (raw or {}).get("allow") if isinstance(raw, dict) else None
        elif len(problems.items) == problems_before:  # never drop a service without saying why
            reader.add(f"services.{_name(key)}", "cannot be read")
    _check_unique_workloads(reader, services)
    _check_skipped_ports(reader, services, namespaces)
    _check_opaque_ports(reader, services, namespaces)
    _check_egress_protocols(reader, services)
    graph = ServiceGraph(display, namespaces, services, origins=origins, clusters=clusters)
    resolved: dict[str, tuple[Caller, ...]] = {}
    for key, service in services.items():
        resolved[key] = _read_callers(reader, graph, service, raw_allow[key])
    if len(problems.items) != before:
        return None
    services = {key: replace(service, callers=resolved[key]) for key, service in services.items()}
    graph = ServiceGraph(display, namespaces, services, origins=origins, clusters=clusters)
    _check_cluster_reach(reader, graph)
    _check_mirror_names(reader, graph)
    _check_shared_accounts(reader, graph)
    _check_skipped_outbound_ports(reader, graph)
    if len(problems.items) != before:
        return None
    edges = frozenset(
        (caller.service, service.key, port)
        for service in services.values()
        for caller in service.callers
        for port in (caller.ports or tuple(p.name for p in service.ports))
    )
    return ServiceGraph(display, namespaces, services, edges, origins=origins, clusters=clusters)


def _read_clusters(reader: _Reader, raw: Any) -> tuple[str, ...]:
    """The environment's clusters (`clusters:`): names only, each `{}` for now."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        reader.add("clusters", f"must be a mapping of cluster name to {{}}, not {_kind(raw)}",
                   "e.g. clusters: {east: {}, west: {}}")
        return ()
    names = []
    for name, body in raw.items():
        path = f"clusters.{_name(name)}"
        if not isinstance(name, str) or len(name) > graph_format.CLUSTER_NAME_MAX or not _DNS_LABEL.match(name):
            reader.add(path, f"cluster {short(name)} is not a cluster name",
                       f"At most {graph_format.CLUSTER_NAME_MAX} lowercase letters, digits and '-' (a peer names a "
                       "Service probe-<cluster> after it)")
            continue
        reader.mapping(body, path, graph_format.CLUSTER.keys)
        names.append(name)
    return tuple(names)


def _read_placement(reader: _Reader, path: str, fields: Mapping[str, Any], clusters: tuple[str, ...],
                    meshed: bool) -> tuple[tuple[str, ...], str | None] | None:
    """A service's `clusters:` (resolved: every cluster when it names none) and `export:`, or None."""
    raw, export = fields.get("clusters"), fields.get("export")
    ok = True
    named: list[str] = []
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            reader.add(f"{path}.clusters", "must be a non-empty list of cluster names",
                       "e.g. clusters: [east]; leave it out to run the service in every cluster")
            return None
        for index, name in enumerate(raw):
            if not isinstance(name, str) or name not in clusters:
                reader.add(f"{path}.clusters[{index}]", f"cluster {short(name)} is not declared under 'clusters'",
                           did_you_mean(str(name), clusters) or "Declare it: clusters: {<name>: {}}")
                ok = False
            elif name in named:
                reader.add(f"{path}.clusters[{index}]", f"cluster '{name}' is listed twice")
                ok = False
            else:
                named.append(name)
    if export is not None:
        if export not in graph_format.EXPORT_MODES:
            reader.add(f"{path}.export", f"{short(export)} is not an export mode",
                       f"{did_you_mean(str(export), graph_format.EXPORT_MODES)} Valid: "
                       f"{', '.join(graph_format.EXPORT_MODES)}")
            ok = False
        elif not clusters:
            reader.add(f"{path}.export", "needs the graph's clusters: with one cluster there is nobody to export to",
                       "Declare the environment's clusters under 'clusters:', or remove export")
            ok = False
        elif not meshed:
            reader.add(f"{path}.export", "is set, but the service runs without a proxy, so it cannot be exported: "
                       "a peer reaches exported services through the mesh", "Mesh the service, or remove export")
            ok = False
    if not ok:
        return None
    return (tuple(named) if named else clusters), export


def _check_cluster_reach(reader: _Reader, graph: ServiceGraph) -> None:
    """An allow edge is cluster-agnostic: the caller reaches the callee locally where both run, and across a link from
    every other cluster the caller runs in, which only an exported callee offers."""
    if not graph.clusters:
        return
    for service in graph.services.values():
        if service.export is not None:
            continue
        for index, caller in enumerate(service.callers):
            source = graph.services.get(caller.service)
            if source is None:
                continue
            away = [c for c in source.clusters if c not in service.clusters]
            if away:
                reader.add(f"services.{service.key}.allow[{index}]",
                           f"{caller.service} runs in cluster {away[0]}, where {service.key} does not run, and "
                           f"{service.key} is not exported, so the call cannot reach it",
                           f"Export {service.key} (export: remote-discovery, or gateway), run it in {away[0]} too, or "
                           f"run {caller.service} only in {', '.join(service.clusters)}")


# Linkerd names the mirror of an exported Service `<name>-<target cluster>` and a federated one's `<name>-federated`, in
# the exported Service's namespace of every cluster that links to it (linkerd2 edge-26.8.3
# multicluster/service-mirror/cluster_watcher.go mirrorServiceName, federatedServiceName): Service names, so DNS-1035
# labels of at most 63 characters, which must not be another Service's.
FEDERATED_SUFFIX = "federated"
SERVICE_NAME_MAX = 63


def _check_mirror_names(reader: _Reader, graph: ServiceGraph) -> None:
    """Every name an exported service's mirrors take is a valid Service name no other service of the graph has in a
    cluster where the mirror appears; no cluster is named like the federated Services' suffix."""
    if FEDERATED_SUFFIX in graph.clusters:
        reader.add(f"clusters.{FEDERATED_SUFFIX}", f"a cluster named '{FEDERATED_SUFFIX}' gives its services' mirrors the "
                   f"names of Linkerd's federated Services (<name>-{FEDERATED_SUFFIX})", "Give the cluster another name")
    by_name = {(s.namespace, s.name): s for s in graph.services.values()}
    for service in graph.services.values():
        if service.export is None:
            continue
        mirrors = [(f"{service.name}-{FEDERATED_SUFFIX}", set(graph.clusters))] if service.export == "federated" else [
            (f"{service.name}-{cluster}", set(graph.clusters) - {cluster}) for cluster in service.clusters]
        for mirror, where in mirrors:
            if len(mirror) > SERVICE_NAME_MAX:
                reader.add(f"services.{service.key}.export", f"its mirror in the linked clusters, {mirror}, is longer "
                           f"than a Service name's {SERVICE_NAME_MAX} characters, so Linkerd cannot make it",
                           "Shorten the service's or the cluster's name")
                continue
            other = by_name.get((service.namespace, mirror))
            if other is not None and other.key != service.key and where & set(other.clusters):
                reader.add(f"services.{service.key}.export", f"its mirror {service.namespace}/{mirror} would be the "
                           f"Service of {other.key}, which runs in {sorted(where & set(other.clusters))[0]}",
                           f"Rename one of them: Linkerd names the mirror <name>-<cluster>")


def _within_totals(reader: _Reader, raw_services: dict) -> bool:
    """The graph-wide limits, counted on the raw document (one pass, nothing validated yet)."""
    ports = allow = 0
    for raw in raw_services.values():
        if isinstance(raw, dict):
            ports += len(raw["ports"]) if isinstance(raw.get("ports"), list) else 0
            allow += len(raw["allow"]) if isinstance(raw.get("allow"), list) else 0
    ok = True
    for count, limit, what in ((ports, MAX_PORTS, "ports"), (allow, MAX_ALLOW_ENTRIES, "allow entries")):
        if count > limit:
            reader.add("services", f"declare {count:,} {what} in all, more than the limit of {limit:,}",
                       "Split the platform into several stacks (see docs/service-graph.md, 'Limits')")
            ok = False
    return ok


def reserved_namespaces(mesh: MeshFacts) -> tuple[str, ...]:
    """The namespaces a graph for `mesh` may not declare: the mesh's own, and the platform's."""
    return (*mesh.namespaces, *PLATFORM_NAMESPACES)


def _read_namespaces(reader: _Reader, raw: Any) -> dict[str, Namespace]:
    if raw is None:
        reader.add("namespaces", "is missing", "Declare every workload namespace under 'namespaces:'")
        return {}
    if not isinstance(raw, dict):
        reader.add("namespaces", f"must be a mapping of namespace name to its settings, not {_kind(raw)}")
        return {}
    if not reader.within(raw, MAX_NAMESPACES, "namespaces", "namespaces"):
        return {}
    namespaces: dict[str, Namespace] = {}
    for name, body in raw.items():
        path = f"namespaces.{_name(name)}"
        if not reader.dns_label(name, path, "namespace"):
            continue
        if name in reserved_namespaces(reader.mesh):
            reader.add(path, f"'{name}' is managed by the platform itself and cannot be a workload namespace",
                       "Remove it from the graph")
            continue
        fields = reader.mapping(body, path, _NAMESPACE_KEYS)
        namespaces[name] = Namespace(
            name=name,
            meshed=reader.boolean(fields.get("meshed"), f"{path}.meshed", True),
            skip_inbound_ports=reader.port_numbers(fields.get("skipInboundPorts"), f"{path}.skipInboundPorts"),
            skip_outbound_ports=reader.port_numbers(fields.get("skipOutboundPorts"), f"{path}.skipOutboundPorts"),
            shard=reader.shard_name(fields.get("shard"), f"{path}.shard"),
        )
    return namespaces


def _read_service(reader: _Reader, key: str, raw: Any, namespaces: dict[str, Namespace],
                  clusters: tuple[str, ...] = ()) -> Service | None:
    path = f"services.{_name(key)}"
    ok = reader.dns_label(key, path, "service")
    if not isinstance(raw, dict):
        reader.add(path, f"must be a mapping with at least 'namespace' and 'ports', not {_kind(raw)}")
        return None
    fields = reader.mapping(raw, path, _SERVICE_KEYS)

    namespace = fields.get("namespace")
    if namespace is None:
        reader.add(f"{path}.namespace", "is missing", "Name the namespace the service runs in")
        ok = False
    elif not isinstance(namespace, str) or namespace not in namespaces:
        reader.add(f"{path}.namespace", f"namespace {short(namespace)} is not declared under 'namespaces'",
                   did_you_mean(str(namespace), namespaces))
        ok = False

    name = fields.get("name", key)
    ok &= reader.dns_label(name, f"{path}.name", "workload name")
    service_account = fields.get("serviceAccount", name)
    ok &= reader.dns_label(service_account, f"{path}.serviceAccount", "service account")

    selector = fields.get("selector", {"app": name})
    if not isinstance(selector, dict) or not selector:
        reader.add(f"{path}.selector", "must be a non-empty mapping of pod labels", "e.g. selector: {app: billing}")
        ok = False
        selector = {}
    if not reader.within(selector, MAX_SELECTOR_LABELS, f"{path}.selector", "labels"):
        ok = False
        selector = {}
    for label, value in selector.items():
        if not is_qualified_name(label):
            reader.add(f"{path}.selector.{_name(label)}", "is not a valid label key",
                       "An optional DNS prefix of at most 253 characters and '/', then a name of at most 63 letters, "
                       "digits, '-', '_' and '.' (Kubernetes' qualified name)")
            ok = False
        elif reader.mesh.injector_label_prefix and label.startswith(reader.mesh.injector_label_prefix):
            reader.add(f"{path}.selector.{_name(label)}", reader.mesh.injector_label_problem,
                       "Select the workload by its own labels, e.g. selector: {app: billing}")
            ok = False
        if not isinstance(value, str) or len(value) > LABEL_VALUE_MAX or not LABEL_VALUE.match(value):
            reader.add(f"{path}.selector.{_name(label)}", f"value {short(value)} is not a valid label value (quote numbers and booleans)")
            ok = False

    ports = _read_ports(reader, path, fields.get("ports"))
    ok &= ports is not None

    meshed = reader.boolean(fields.get("meshed"), f"{path}.meshed", True)
    namespace_meshed = namespaces[namespace].meshed if isinstance(namespace, str) and namespace in namespaces else True
    reserved = reader.mesh.reserved_workload_names.get(name) if isinstance(name, str) else None
    if reserved and namespace_meshed:
        reader.add(f"{path}.name" if "name" in fields else path, f"workload name '{name}' {reserved}",
                   "Give the workload another name (`name:`)")
        ok = False
    if "meshed" in fields and meshed and not namespace_meshed:
        reader.add(f"{path}.meshed", f"is true, but namespace '{namespace}' is not meshed",
                   "Mesh the namespace, or drop 'meshed: true'")
        ok = False
    if meshed and namespace_meshed:
        for index, port in enumerate(ports or ()):
            taken = reader.mesh.proxy_ports.get(port.number)
            if taken:
                reader.add(f"{path}.ports[{index}].port", f"{port.number} is {reader.mesh.proxy}'s own {taken} port",
                           "Run the workload on another port")
                ok = False
    has_tls_port = any(p.protocol == "TLS" for p in ports or ())
    # Deliberately proxy-free services (and TLS ports) terminate TLS themselves; services of a namespace that is
    # simply not onboarded yet get a certificate only when asked.
    certificate = reader.boolean(fields.get("certificate"), f"{path}.certificate", not meshed or has_tls_port)
    shared_account = reader.boolean(fields.get("sharedServiceAccount"), f"{path}.sharedServiceAccount", False)
    egress = _read_egress(reader, path, fields.get("egress"))
    placement = _read_placement(reader, path, fields, clusters, meshed and namespace_meshed)

    if not ok or ports is None or egress is None or placement is None:
        return None
    return Service(
        key=key, name=name, namespace=namespace, service_account=service_account,
        selector=tuple(sorted(selector.items())), ports=ports, callers=(), meshed=meshed,
        certificate=certificate, egress=egress, shared_service_account=shared_account,
        clusters=placement[0], export=placement[1],
    )


def _read_ports(reader: _Reader, path: str, raw: Any) -> tuple[Port, ...] | None:
    if not isinstance(raw, list) or not raw:
        reader.add(f"{path}.ports", "must be a non-empty list of ports",
                   "e.g. ports: [{name: http, port: 8080, protocol: HTTP/1}]")
        return None
    if not reader.within(raw, MAX_PORTS_PER_SERVICE, f"{path}.ports", "ports"):
        return None
    ports: list[Port] = []
    # name / number -> index of the first port with it: comparing each port with every earlier one is quadratic.
    names: dict[Any, int] = {}
    numbers: dict[Any, int] = {}
    ok = True
    for index, item in enumerate(raw):
        port_path = f"{path}.ports[{index}]"
        if not isinstance(item, dict):
            reader.add(port_path, f"must be a mapping with name, port and protocol, not {_kind(item)}")
            ok = False
            continue
        fields = reader.mapping(item, port_path, _PORT_KEYS)
        name = fields.get("name")
        if not isinstance(name, str) or len(name) > PORT_NAME_MAX or not _PORT_NAME.match(name):
            reader.add(f"{port_path}.name", f"{short(name)} is not a valid port name",
                       "Use at most 15 lowercase letters, digits and '-', with at least one letter (IANA_SVC_NAME)")
            ok = False
        number = reader.port_number(fields.get("port"), f"{port_path}.port")
        protocol = fields.get("protocol")
        if protocol not in PROXY_PROTOCOLS:
            reader.add(f"{port_path}.protocol", f"{short(protocol)} is not a protocol Linkerd accepts",
                       f"{did_you_mean(str(protocol), PROXY_PROTOCOLS)} Valid: {', '.join(PROXY_PROTOCOLS)}")
            ok = False
        if number is None:
            ok = False
        if ok and isinstance(name, str):
            if name in names:
                reader.add(f"{port_path}.name", f"duplicate port name '{name}' (also ports[{names[name]}])")
                ok = False
            if number in numbers:
                reader.add(f"{port_path}.port", f"duplicate port {number} (also ports[{numbers[number]}])")
                ok = False
            names.setdefault(name, index)
            numbers.setdefault(number, index)
        if ok:
            ports.append(Port(name, number, protocol))
    return tuple(ports) if ok else None


def _read_egress(reader: _Reader, path: str, raw: Any) -> tuple[Egress, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.add(f"{path}.egress", f"must be a list of destinations, not {_kind(raw)}")
        return None
    if not reader.within(raw, MAX_EGRESS_PER_SERVICE, f"{path}.egress", "destinations"):
        return None
    destinations: list[Egress] = []
    ok = True
    for index, item in enumerate(raw):
        item_path = f"{path}.egress[{index}]"
        if not isinstance(item, dict):
            reader.add(item_path, f"must be a mapping with name, cidrs or hosts, and ports, not {_kind(item)}",
                       "e.g. - {name: stripe, hosts: [api.stripe.com], ports: [443]}")
            ok = False
            continue
        fields = reader.mapping(item, item_path, _EGRESS_KEYS)
        name = fields.get("name")
        ok &= reader.dns_label(name, f"{item_path}.name", "egress name")
        # Only a missing or empty (null) list means none: `cidrs: false` or `hosts: ''` is a mistake, not "no hosts".
        cidrs = [] if fields.get("cidrs") is None else fields["cidrs"]
        hosts = [] if fields.get("hosts") is None else fields["hosts"]
        if not isinstance(cidrs, list) or not isinstance(hosts, list):
            reader.add(item_path, "cidrs and hosts must be lists")
            ok = False
            continue
        if not reader.within([*cidrs, *hosts], MAX_DESTINATIONS_PER_EGRESS, item_path, "cidrs and hosts"):
            ok = False
            continue
        if not cidrs and not hosts:
            reader.add(item_path, "names no destination", "Give 'cidrs' (e.g. [203.0.113.0/24]) or 'hosts' (e.g. [api.stripe.com])")
            ok = False
        for i, cidr in enumerate(cidrs):
            problem = cidr_problem(cidr)
            if problem:
                reader.add(f"{item_path}.cidrs[{i}]", problem[0], problem[1])
                ok = False
        for i, host in enumerate(hosts):
            if not isinstance(host, str) or not _HOSTNAME.match(host):  # lengths too: graph_format.HOSTNAME
                reader.add(f"{item_path}.hosts[{i}]", f"{short(host)} is not a DNS name",
                           "e.g. api.stripe.com or *.googleapis.com: at most 253 characters, labels of at most 63")
                ok = False
            elif host == "cluster.local" or host.endswith(IN_CLUSTER_SUFFIXES):
                reader.add(f"{item_path}.hosts[{i}]",
                           f"{short(host)} is an in-cluster service name, which egress never matches (the proxy "
                           "sees the Service's cluster address, not an outside destination)",
                           "Call in-cluster services through the graph: add this service to the callee's 'allow' list")
                ok = False
        ports = reader.port_numbers(fields.get("ports"), f"{item_path}.ports")
        if not ports:
            reader.add(f"{item_path}.ports", "must list at least one port", "e.g. ports: [443]")
            ok = False
        if any(d.name == name for d in destinations):
            reader.add(f"{item_path}.name", f"duplicate egress name '{name}'")
            ok = False
        protocol = DEFAULT_EGRESS_PROTOCOL if fields.get("protocol") is None else fields["protocol"]
        if protocol not in EGRESS_PROTOCOLS:
            same = [p for p in EGRESS_PROTOCOLS if p.lower() == str(protocol).lower()]
            reader.add(f"{item_path}.protocol", f"{short(protocol)} is not an egress protocol",
                       (f"Did you mean '{same[0]}'? " if same else "") + f"Valid: {', '.join(EGRESS_PROTOCOLS)} "
                       f"(leave it out for {DEFAULT_EGRESS_PROTOCOL})")
            ok = False
        if ok:
            destinations.append(Egress(name, tuple(str(c) for c in cidrs), tuple(hosts), ports, protocol))
    return tuple(destinations) if ok else None


def cidr_problem(cidr: Any, *, verbatim: bool = True) -> tuple[str, str] | None:
    """Why an egress CIDR cannot go into a NetworkPolicy ipBlock.cidr as written, or None. The apiserver's IP/CIDR
    validation (KEP-4858, apimachinery validation IsValidCIDR) refuses IPv4 octets with leading zeros, IPv4-mapped IPv6,
    zone identifiers and host bits ("ifaddr" form); a bare address is not a CIDR. A `verbatim` string goes out as
    written, so it must already be the canonical form; otherwise the caller writes out the parsed network instead."""
    text = str(cidr) if isinstance(cidr, str) else None
    example = "e.g. 203.0.113.0/24 or 2001:db8::/32, with no host bits set"
    if text is None:
        return f"{short(cidr)} is not a CIDR", example
    if "%" in text:
        return f"{short(text)} has a zone identifier, which a NetworkPolicy does not accept", "Drop the '%<zone>' part"
    if "/" not in text and verbatim:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return f"{short(text)} is not a CIDR", example
        return f"{short(text)} is an address, not a CIDR", f"Give the prefix length: {address}/{address.max_prefixlen}"
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        return f"{short(text)} is not a CIDR ({str(err)[:120]})", example
    if network.version == 6 and network.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")):
        mapped = ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
        return f"{short(text)} is an IPv4-mapped IPv6 range, which Kubernetes refuses", f"Write it as IPv4: {mapped}"
    if verbatim and str(network) != text:
        return f"{short(text)} is not in canonical form", f"Write it as {network}"
    return None


def _check_unique_workloads(reader: _Reader, services: dict[str, Service]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for key, service in services.items():
        place = (service.namespace, service.name)
        if place in seen:
            reader.add(f"services.{key}.name", f"'{service.name}' in namespace '{service.namespace}' is also services.{seen[place]}",
                       "Each workload appears once; give one of them another name")
        else:
            seen[place] = key
    _check_distinct_pods(reader, services)
    # Policy objects are named <workload> and <workload>-<port>: two services must not produce the same name.
    names: dict[tuple[str, str], str] = {}
    for key, service in services.items():
        for object_name in (service.name, *(f"{service.name}-{p.name}" for p in service.ports)):
            other = names.setdefault((service.namespace, object_name), key)
            if other != key:
                reader.add(f"services.{key}", f"its policy object name '{object_name}' in namespace "
                           f"'{service.namespace}' is also one of services.{other}",
                           "Rename a workload or a port so that <name>-<port> stays unique in the namespace")


def _check_egress_protocols(reader: _Reader, services: dict[str, Service]) -> None:
    """A host's port speaks one protocol: egress entries of one namespace that name the same host and port must agree
    on `protocol`, since Istio writes one ServiceEntry per host and namespace, with one protocol per port. A mesh
    whose egress routes of a namespace share a parent per port (Linkerd, read/meshes.py) needs one protocol per port,
    whatever the host."""
    seen: dict[tuple[str, str, int], tuple[str, str]] = {}
    by_port: dict[tuple[str, int], tuple[str, str, str]] = {}
    for key, service in services.items():
        for index, egress in enumerate(service.egress):
            for host in egress.hosts:
                for port in egress.ports:
                    where = f"services.{key}.egress[{index}]"
                    other = seen.setdefault((service.namespace, host, port), (egress.protocol, where))
                    if other[0] != egress.protocol:
                        reader.add(f"{where}.protocol", f"declares {host} port {port} {egress.protocol}, but "
                                   f"{other[1]} declares it {other[0]} in the same namespace",
                                   "A host's port speaks one protocol: give both entries the same `protocol`")
                        continue
                    shared = by_port.setdefault((service.namespace, port), (egress.protocol, where, host))
                    if reader.mesh.egress_port_protocol_problem and shared[0] != egress.protocol:
                        reader.add(f"{where}.protocol", f"declares {host} port {port} {egress.protocol}, but "
                                   f"{shared[1]} declares {shared[2]} port {port} {shared[0]} in the same namespace: "
                                   f"{reader.mesh.egress_port_protocol_problem}",
                                   "Give both entries the same `protocol`, or move one host to another port or "
                                   "namespace")


def _check_skipped_ports(reader: _Reader, services: dict[str, Service], namespaces: Mapping[str, Namespace]) -> None:
    """In an injected namespace the ports of proxy-free services (and skipInboundPorts) are skipped by every proxy of
    the namespace (plan/edges.py inbound_ports_to_skip): a meshed service on one of them would lose its policy."""
    skipped: dict[tuple[str, int], str] = {}
    for service in services.values():
        if not service.meshed:
            for port in service.ports:
                skipped.setdefault((service.namespace, port.number), f"services.{service.key} (meshed: false)")
    for namespace in namespaces.values():
        for number in namespace.skip_inbound_ports:
            skipped.setdefault((namespace.name, number), f"namespaces.{namespace.name}.skipInboundPorts")
    for service in services.values():
        if not service.meshed or not namespaces[service.namespace].meshed:
            continue
        for index, port in enumerate(service.ports):
            cause = skipped.get((service.namespace, port.number))
            if cause:
                reader.add(f"services.{service.key}.ports[{index}].port",
                           f"{port.number} bypasses the proxy in namespace '{service.namespace}' because of {cause}",
                           "Proxies skip a port for the whole namespace: use another port, or move one of the services")


def _check_shared_accounts(reader: _Reader, graph: ServiceGraph) -> None:
    """A mesh identity is a service account: an edge to one service admits every workload on its account. The graph
    promises exactly the callers it lists, so sharing is refused unless each service says so (sharedServiceAccount),
    and then accessMatrix lists every service the identity covers."""
    by_account: dict[tuple[str, str], list[Service]] = {}
    for service in graph.services.values():
        if graph.is_meshed(service):
            by_account.setdefault((service.namespace, service.service_account), []).append(service)
    for (namespace, account), sharing in by_account.items():
        if len(sharing) < 2:
            continue
        for service in sharing:
            if not service.shared_service_account:
                others = ", ".join(f"services.{o.key}" for o in sharing if o is not service)
                reader.add(f"services.{service.key}.serviceAccount",
                           f"'{account}' in namespace '{namespace}' is also the account of {_name(others)}: they share "
                           "one mesh identity, so an edge allowing one of them admits all of them",
                           "Give each service its own serviceAccount, or set 'sharedServiceAccount: true' on each of "
                           "them to accept it (accessMatrix then lists every service the identity covers)")
    calling = {caller.service for service in graph.services.values() for caller in service.callers}
    for key in sorted(calling):
        service = graph.services[key]
        if (service.service_account == DEFAULT_SERVICE_ACCOUNT and graph.is_meshed(service)
                and not service.shared_service_account):
            reader.add(f"services.{key}.serviceAccount",
                       f"is the namespace's 'default' account, which every pod of '{service.namespace}' without its "
                       "own account runs as: an edge allowing this caller admits all of them",
                       "Give the workload its own serviceAccount, or set 'sharedServiceAccount: true' to accept it "
                       "(accessMatrix then shows the grant as '<namespace>/* (service account default)')")


def _check_skipped_outbound_ports(reader: _Reader, graph: ServiceGraph) -> None:
    """skipOutboundPorts sends a port past every proxy of the namespace: an egress port would escape the egress
    allow-list (hosts are enforced only by the proxy), and a meshed callee's port would leave without mTLS, which the
    callee's default deny refuses. One pass over services and edges, whatever the number of namespaces."""
    skipped = {ns.name: set(ns.skip_outbound_ports) for ns in graph.namespaces.values()
               if ns.meshed and ns.skip_outbound_ports}
    if not skipped:
        return

    def refuse(namespace: str, what: str) -> None:
        reader.add(f"namespaces.{namespace}.skipOutboundPorts", what,
                   f"Remove the port from skipOutboundPorts of namespace '{namespace}'")

    for service in graph.services.values():
        if service.namespace not in skipped or not graph.is_meshed(service):
            continue
        for index, egress in enumerate(service.egress):
            for number in sorted(skipped[service.namespace] & set(egress.ports)):
                refuse(service.namespace, f"skips port {number}, which services.{service.key}.egress[{index}] "
                       f"('{egress.name}') uses: that traffic would bypass the proxy and so the egress allow-list "
                       "(the egress entry already allows the destination)")
    for callee in graph.services.values():
        if not graph.is_meshed(callee):
            continue  # proxy-free callees' ports are skipped on purpose (plan/edges.py outbound_ports_to_skip)
        for caller in callee.callers:
            source = graph.services[caller.service]
            if source.namespace not in skipped or not graph.is_meshed(source):
                continue
            for name in caller.ports or tuple(p.name for p in callee.ports):
                number = callee.port(name).number
                if number in skipped[source.namespace]:
                    refuse(source.namespace, f"skips port {number}, on which services.{source.key} calls "
                           f"services.{callee.key} ({name}): the call would leave without mTLS and the callee's "
                           "policy would refuse it under deny")


def _check_opaque_ports(reader: _Reader, services: dict[str, Service], namespaces: Mapping[str, Namespace]) -> None:
    """With a mesh whose callers learn a port is opaque from a namespace-wide annotation (Linkerd's
    `config.linkerd.io/opaque-ports`, which the program can only set on the namespace: plan/linkerd/namespaces.py
    opaque_ports), it covers every workload of the namespace on that port number. Another meshed service there
    declaring the number as HTTP or gRPC would lose protocol detection, routes and route-level authorization (its gRPC
    probe route) to callers that treat it as opaque."""
    annotation = reader.mesh.opaque_ports_annotation
    if annotation is None:
        return
    opaque: dict[tuple[str, int], str] = {}
    meshed = [s for s in services.values() if s.meshed and namespaces[s.namespace].meshed]
    for service in meshed:
        for index, port in enumerate(service.ports):
            if port.protocol == "opaque":
                opaque.setdefault((service.namespace, port.number), f"services.{service.key}.ports[{index}]")
    for service in meshed:
        for index, port in enumerate(service.ports):
            cause = opaque.get((service.namespace, port.number))
            if cause and port.protocol != "opaque":
                reader.add(f"services.{service.key}.ports[{index}].protocol",
                           f"is {port.protocol}, but {cause} makes port {port.number} opaque for every caller in "
                           f"namespace '{service.namespace}' ({annotation} is namespace-wide)",
                           "Use another port number for one of them, declare both opaque, or move one to another namespace")


# The most (selector, candidate) pairs the overlap check below may compare in one graph: about 1.5 s of CPU (6,435
# selectors of 7 of 15 shared labels: 22 million). A graph whose services are told apart by their own labels (the
# default selector, app: <name>) compares about one per service (50,000 services: 0.3 s); only selectors built from a
# few labels shared by thousands of services come near the limit, and those are refused, not compared for minutes
# (12,870 selectors of 8 of 16 labels: 83 million comparisons, 14 s).
MAX_SELECTOR_COMPARISONS = 20_000_000


def _check_distinct_pods(reader: _Reader, services: dict[str, Service]) -> None:
    """No two services of a namespace may select the same pods, whatever their ports. A selector that holds all of
    another's labels (or the same ones) picks pods the other picks too: the other's NetworkPolicy and Servers then
    cover them, so its callers reach them though the graph never lets them, and neither matrix shows it (on one port,
    the pod port also gets two Servers, of which Linkerd honours one). Selectors with different labels (app: a and
    tier: web) overlap only on a pod carrying both, which the graph cannot see: they are allowed.

    Equal selectors are found by hashing; a selector's strict supersets among the candidates that carry its rarest
    label, narrowed by each of its other labels (set intersections), so the work is about one comparison per service
    unless many services share every label, which MAX_SELECTOR_COMPARISONS bounds."""
    by_selector: dict[tuple[str, frozenset[tuple[str, str]]], list[Service]] = {}
    for service in services.values():
        by_selector.setdefault((service.namespace, frozenset(service.selector)), []).append(service)
    for same in by_selector.values():
        first = same[0]
        for other in same[1:]:
            reader.add(f"services.{other.key}.selector",
                       f"selects pods that services.{first.key} selects too (the same selector, "
                       f"{_selector_text(other)}), so each one's NetworkPolicy and Servers also cover the other's pods",
                       f"Give one of them a label that only its own pods carry (e.g. app: {other.name}), or merge "
                       "the two services")
    # Each distinct selector once (equal ones are reported above), indexed by label pair within its namespace.
    by_item: dict[tuple[str, tuple[str, str]], set[tuple[str, frozenset]]] = {}
    for selector_key in by_selector:
        namespace, labels = selector_key
        for item in labels:
            by_item.setdefault((namespace, item), set()).add(selector_key)
    rarest = {key: min(key[1], key=lambda item: (len(by_item[(key[0], item)]), item)) for key in by_selector}
    comparisons = sum(len(by_item[(key[0], rarest[key])]) for key in by_selector)
    if comparisons > MAX_SELECTOR_COMPARISONS:
        crowded = max(by_item, key=lambda item: len(by_item[item]))
        label = short(f"{crowded[1][0]}={crowded[1][1]}")
        reader.add(f"namespaces.{crowded[0]}", f"its services' selectors share labels so widely (label {label} is in "
                   f"{len(by_item[crowded]):,} of them) that checking that no two select the same pods would take "
                   f"{comparisons:,} comparisons, more than the limit of {MAX_SELECTOR_COMPARISONS:,}",
                   "Give each service a label of its own in its selector, e.g. "
                   "app: <service name> (the default selector)")
        return
    reported: set[str] = set()
    for key, same in by_selector.items():
        namespace, labels = key
        bucket = by_item[(namespace, rarest[key])]
        if len(bucket) == 1:  # a label of its own (app: <name>): nothing else holds all of its labels
            continue
        candidates = set(bucket)
        for item in labels:
            candidates &= by_item[(namespace, item)]  # iterates over the smaller of the two sets
            if len(candidates) == 1:  # the selector itself
                break
        candidates.discard(key)
        subset = same[0]
        for superset_key in sorted(candidates, key=lambda k: by_selector[k][0].key):
            wider = by_selector[superset_key][0]
            if wider.key in reported:  # once per service, however many selectors it holds all labels of
                continue
            reported.add(wider.key)
            reader.add(f"services.{wider.key}.selector",
                       f"selects pods that services.{subset.key} selects too (it holds all of its selector, "
                       f"{_selector_text(subset)}), so services.{subset.key}'s NetworkPolicy and Servers also cover "
                       "these pods and admit its callers to them",
                       f"Give services.{subset.key} a label that only its own pods carry (e.g. app: {subset.name}), "
                       "or merge the two services")


def _selector_text(service: Service) -> str:
    text = "{" + ", ".join(f"{k}: {v}" for k, v in service.selector) + "}"
    return text if len(text) <= 80 else text[:77] + "...}"


def _read_callers(reader: _Reader, graph: ServiceGraph, service: Service, raw: Any) -> tuple[Caller, ...]:
    path = f"services.{service.key}.allow"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.add(path, f"must be a list of callers, not {_kind(raw)}", "e.g. allow: [frontend, {service: jobs, ports: [grpc]}]")
        return ()
    if not reader.within(raw, MAX_CALLERS_PER_SERVICE, path, "callers"):
        return ()
    callers: list[Caller] = []
    listed: set[str] = set()
    port_names = {p.name: None for p in service.ports}
    for index, item in enumerate(raw):
        item_path = f"{path}[{index}]"
        if isinstance(item, str):
            caller_key, ports = item, ()
        elif isinstance(item, dict):
            fields = reader.mapping(item, item_path, _CALLER_KEYS)
            caller_key = fields.get("service")
            raw_ports = fields.get("ports") or []
            if "ports" in fields and not raw_ports:
                # An empty list reads as "no ports" but would have meant every port: refuse the ambiguity.
                reader.add(f"{item_path}.ports", "is empty, which would allow every port of the service",
                           f"List the ports this caller may use (e.g. ports: [{next(iter(port_names), 'http')}]), or drop 'ports' "
                           "to allow all of them")
                continue
            if not isinstance(raw_ports, list):
                reader.add(f"{item_path}.ports", "must be a list of port names of this service")
                continue
            if not reader.within(raw_ports, MAX_PORT_LIST, f"{item_path}.ports", "ports"):
                continue
            ports = tuple(raw_ports)
            unknown = [(i, port) for i, port in enumerate(ports) if not isinstance(port, str) or port not in port_names]
            for i, port in unknown:
                reader.add(f"{item_path}.ports[{i}]", f"{short(port)} is not a port of {service.key}",
                           did_you_mean(str(port), port_names))
            if unknown:
                continue
        else:
            reader.add(item_path, f"must be a service name or a mapping with 'service' and 'ports', not {_kind(item)}")
            continue
        if not isinstance(caller_key, str) or caller_key not in graph.services:
            reader.add(item_path, f"unknown caller {short(caller_key)}", did_you_mean(str(caller_key), graph.services))
            continue
        caller = graph.services[caller_key]
        if graph.is_meshed(service) and not graph.is_meshed(caller):
            why = (f"namespace '{caller.namespace}' is not meshed" if not graph.namespaces[caller.namespace].meshed
                   else f"{caller_key} runs without a proxy (meshed: false)")
            reader.add(item_path, f"caller '{caller_key}' has no mesh identity: {why}",
                       "Mesh the caller, or remove it: a default-deny mesh cannot tell it from any other client")
            continue
        if caller_key in listed:
            reader.add(item_path, f"caller '{caller_key}' is listed twice", "Merge the entries and list the ports together")
            continue
        listed.add(caller_key)
        callers.append(Caller(caller_key, tuple(sorted(set(ports)))))
    if callers and not graph.is_meshed(service) and not service.certificate:
        reader.add(f"services.{service.key}", f"is called by {callers[0].service}, but runs outside the mesh without a certificate",
                   "Traffic to it would cross the network in plaintext: mesh it, or set 'certificate: true' so it terminates TLS itself")
    return tuple(callers)
