"""The format of the service graph (`services.yaml`), declared once: every field, its type, description, pattern,
choices, range and limits.

Two things are derived from this declaration and nothing else, so they cannot drift apart:
- the reader's structural checks (read/graph.py takes its allowed keys, name patterns, protocols, port range
  and limits from here, and keeps its messages);
- the published JSON Schemas (`python -m read.schema --write` -> schema/services.schema.json, and
  schema/services-fragment.schema.json for one team's file of a graph split per team: `FRAGMENT`), which editors
  use to complete and flag `services.yaml` and `services.d/*.yaml` as they are typed.

Rules that a JSON Schema cannot state (a caller must name another service, two services may not select the same
pods, ...) are listed in `CANNOT_CHECK`, which docs/schemas.md and tests/test_schema.py read: every error the reader knows
is either refused by the schema too or belongs to one of them.

Patterns are written once in the common subset of ECMA-262 (what editors evaluate) and Python's `re`: ASCII classes
only (no `\\d`, whose Python meaning includes other scripts' digits), anchored by `Pattern` itself (`\\Z` in Python,
where `$` would also match before a trailing newline).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Union

from read.meshes import DEFAULT_MESH, MESHES


@dataclass(frozen=True)
class Pattern:
    """A regular expression body valid both in ECMA-262 and in Python, matched against the whole value."""

    body: str

    @functools.cached_property
    def python(self) -> re.Pattern:
        return re.compile(f"^(?:{self.body})\\Z")

    @property
    def ecma(self) -> str:
        return f"^(?:{self.body})$"

    def matches(self, value: Any) -> bool:
        return isinstance(value, str) and self.python.match(value) is not None


@dataclass(frozen=True)
class Text:
    description: str = ""
    pattern: Pattern | None = None
    max_length: int | None = None
    min_length: int | None = None
    choices: tuple[str, ...] = ()
    # Values the pattern admits but the reader refuses (reserved names, prefixes that belong to someone else).
    forbidden: tuple[str, ...] = ()
    forbidden_pattern: Pattern | None = None
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Integer:
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Boolean:
    description: str = ""


@dataclass(frozen=True)
class Items:
    """A YAML list."""

    item: "Node"
    description: str = ""
    min_items: int = 0
    max_items: int | None = None
    # No two entries alike (the reader refuses more: two entries with one name; a schema can only compare whole ones).
    unique: bool = False


@dataclass(frozen=True)
class Field:
    name: str
    node: "Node"
    required: bool = False
    # `key:` with no value (null) reads as if the key were absent.
    nullable: bool = False
    # The documented default (shown by editors); None when the default is computed (e.g. from the service's key).
    default: Any = None


@dataclass(frozen=True)
class Record:
    """A mapping with a fixed set of keys."""

    fields: tuple[Field, ...]
    description: str = ""
    # At least one of these list fields must be present and non-empty.
    one_of_nonempty: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


@dataclass(frozen=True)
class Named:
    """A mapping from names the user chooses (namespaces, services, labels) to values of one kind."""

    key: Text
    value: "Node"
    description: str = ""
    min_entries: int = 0
    max_entries: int | None = None
    value_nullable: bool = False


@dataclass(frozen=True)
class Either:
    """One of several shapes (an allow entry is a service name or a mapping)."""

    options: tuple["Node", ...]
    description: str = ""


Node = Union[Text, Integer, Boolean, Items, Record, Named, Either]


@dataclass(frozen=True)
class Rule:
    """A rule the reader enforces that a JSON Schema cannot state. `messages`: fragments of the reader's problem
    text that belong to this rule (tests/test_schema.py classifies every error case the schema accepts by them)."""

    name: str
    why: str
    messages: tuple[str, ...] = field(default=())


# ---- the values -------------------------------------------------------------------------------------------------

# proxyProtocol values Linkerd's admission webhook accepts on a Server (the CRD schema itself takes any string).
PROXY_PROTOCOLS = ("unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS")
# What an egress entry's hosts speak on its ports, for Istio's ServiceEntry (plan/istio/authorization.py): TLS is
# matched by SNI, HTTP by the Host header. Linkerd's EgressNetwork and the NetworkPolicies are per port and ignore it.
EGRESS_PROTOCOLS = ("TLS", "HTTP")
DEFAULT_EGRESS_PROTOCOL = "TLS"

# The most services one graph may hold: a mesh of 50,000 services across policy shards is read and compiled by every
# stack (each registers only its part), and benchmarks/scale.py measures it (docs/service-graph.md, 'Limits', and docs/benchmarks.md).
# The file itself is limited by inputs.MAX_GRAPH_BYTES and inputs.MAX_NODES.
MAX_SERVICES = 50_000
# Limits that bound the program's time and memory, not just the file's bytes (docs/service-graph.md, 'Limits'): each is far above a
# real graph, and each is checked on the raw document before the entries it counts are read one by one.
# Namespaces do not grow with MAX_SERVICES: each is a Namespace and a ConfigGroup registration, the SDK's cost that no
# compile step removes (benchmarks/hostile.py `namespaces`), and 100 services per namespace is 500 for 50,000.
MAX_NAMESPACES = 10_000
MAX_PORTS_PER_SERVICE = 100
# In the whole graph, 2.5 per service: each port makes a Server, an AuthorizationPolicy and NetworkPolicy rules.
MAX_PORTS = 125_000
MAX_CALLERS_PER_SERVICE = 1_000  # one MeshTLSAuthentication and one NetworkPolicy list them all (etcd: 1.5 MiB each)
MAX_ALLOW_ENTRIES = 500_000  # in the whole graph: 10 per service
MAX_SELECTOR_LABELS = 32
MAX_EGRESS_PER_SERVICE = 32
MAX_DESTINATIONS_PER_EGRESS = 64  # cidrs and hosts of one egress entry
# A shard's stack is <platform stack>-<shard> and its Operator Stack object mtls-mesh-<platform>-<shard>, which the
# Operator caps at 42 characters (pulumi-kubernetes-operator operator/api/pulumi/v1/stack_types.go, XValidation).
SHARD_NAME_MAX = 20
MAX_PORT_LIST = 100  # skipInboundPorts, skipOutboundPorts, an egress entry's ports, an allow entry's ports
# A graph split per team (serviceGraph naming a directory, docs/service-graph.md, 'Splitting the graph per team'): the fragment files
# it may hold (each opened, parsed and listed in CODEOWNERS; a team per file is far below this), and the owners one
# fragment may name. The directory's files share the one-file limits (inputs.MAX_GRAPH_BYTES, inputs.MAX_NODES).
MAX_GRAPH_FILES = 1_000
MAX_OWNERS = 20

DEFAULT_FACTS = MESHES[DEFAULT_MESH]

PORT_MIN, PORT_MAX = 1, 65535

# Namespaces the program manages itself, or that no mesh may inject (Kubernetes' own).
PLATFORM_NAMESPACES = ("cert-manager", "kube-system", "kube-public", "kube-node-lease")
# With the default mesh's namespaces (read/meshes.py): what the JSON Schema refuses. A stack with another mesh refuses
# that mesh's instead (read/graph.py reserved_namespaces).
RESERVED_NAMESPACES = (*DEFAULT_FACTS.namespaces, *PLATFORM_NAMESPACES)

# A Kubernetes name (DNS-1123 label): namespaces, services, workloads, service accounts, egress entries.
DNS_LABEL = Pattern(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63
# A cluster's name (graph `clusters:`, the `cluster` setting): its peers' mirror controller makes the Service
# `probe-<name>` from it, a DNS-1035 label of at most 63 characters (plan/linkerd/multicluster.py).
CLUSTER_NAME_MAX = DNS_LABEL_MAX - len("probe-")
# A DNS-1123 subdomain, without the length limits (is_dns_subdomain in graph.py adds them).
DNS_SUBDOMAIN = Pattern(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Kubernetes container port names (IANA_SVC_NAME): what a Server's named port and a NetworkPolicy port refer to. The
# lookahead asks for at least one letter (an all-digit name would read as a port number).
PORT_NAME = Pattern(r"(?=[-0-9]*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?")
PORT_NAME_MAX = 15
# A label key as apimachinery's IsQualifiedName (pkg/util/validation/validation.go) accepts it: an optional DNS-1123
# subdomain prefix of at most 253 characters and '/', then a name of at most 63 characters (the lookahead and the
# bounded repetition state the lengths, so the pattern alone is the whole rule).
LABEL_KEY = Pattern(rf"((?=[^/]{{1,253}}/){DNS_SUBDOMAIN.body}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?")
LABEL_VALUE = Pattern(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
LABEL_VALUE_MAX = 63
# The label prefix the default mesh's injector sets on every pod it injects (read/meshes.py says which labels): a
# selector on one of them matches every meshed pod of the namespace.
INJECTOR_LABEL_PREFIX = DEFAULT_FACTS.injector_label_prefix or ""
# An egress host: a DNS name (at most 253 characters after an optional '*.', labels of at most 63) whose last label
# starts with a letter.
HOSTNAME = Pattern(r"(\*\.)?(?!.{254})([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Names that resolve only inside the cluster: the proxy and the NetworkPolicies see a Service's ClusterIP or pod IPs
# for them, never an egress destination, so an egress entry for one would never match anything.
IN_CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local")
IN_CLUSTER_HOST = Pattern("cluster\\.local|.*(" + "|".join(re.escape(s) for s in IN_CLUSTER_SUFFIXES) + ")")
# A CODEOWNERS owner, as GitHub's docs write them: `@user` (a GitHub login: letters, digits and single '-', at most
# 39, not starting or ending with '-'), `@org/team` (the organization's login and the team's slug), or an email
# address. No whitespace and no '#', which would end the owner list or start a comment on the CODEOWNERS line.
_LOGIN = r"[A-Za-z0-9](-?[A-Za-z0-9]){0,38}"
OWNER = Pattern(rf"@{_LOGIN}(/[A-Za-z0-9][-A-Za-z0-9_.]{{0,99}})?"
                r"|[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)+")
OWNER_MAX = 254
# A fragment file's name, which CODEOWNERS must be able to write as a path: CODEOWNERS has no escapes (`\#`, `!`
# negation and `[ ]` ranges do not work: docs/research/issue-24-shards.md section 6), gitignore would read `*`, `?`
# or `[` as wildcards and a space as the end of the pattern, and paths are case sensitive, so only these characters.
FRAGMENT_FILE = Pattern(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,99}\.yaml")
# Only the shape of a CIDR in the canonical form a NetworkPolicy takes (lowercase hex, a prefix length): whether it
# parses, has no host bits set and is not IPv4-mapped is checked by the reader (graph.cidr_problem).
CIDR_SHAPE = Pattern(r"[0-9a-f:.]+/[0-9]{1,3}")


def _name(what: str) -> Text:
    return Text(f"{what}: a Kubernetes name (at most 63 lowercase letters, digits and '-', starting and ending with a "
                "letter or digit)", DNS_LABEL, DNS_LABEL_MAX)


def _ports(description: str, min_items: int = 0) -> Items:
    return Items(Integer("A port number", PORT_MIN, PORT_MAX), description, min_items=min_items, max_items=MAX_PORT_LIST)


# ---- the format -------------------------------------------------------------------------------------------------

NAMESPACE = Record((
    Field("meshed", Boolean("false keeps the namespace out of the mesh (the mesh's injection is disabled there): no "
                            "proxy, no identity, and its workloads may call nothing meshed"), nullable=True, default=True),
    Field("skipInboundPorts", _ports("Inbound ports every proxy in the namespace leaves alone (no mTLS, no mesh "
                                     "policy: the NetworkPolicy guards them)"), nullable=True),
    Field("skipOutboundPorts", _ports("Outbound ports every proxy in the namespace leaves alone (the workload's own "
                                      "TLS reaches the peer untouched)"), nullable=True),
    Field("shard", Text("The policy shard whose stack registers this namespace's authorization objects and workload "
                        "Certificates when the platform stack sets policyShards (docs/shards.md); without it, or "
                        "in a single stack, the stack itself does: at most 20 lowercase letters, digits and '-'",
                        DNS_LABEL, SHARD_NAME_MAX), nullable=True),
), "A workload namespace of the mesh")

PORT = Record((
    Field("name", Text("Port name (IANA service name): at most 15 lowercase letters, digits and '-', with at least "
                       "one letter; callers' `ports` lists refer to it", PORT_NAME, PORT_NAME_MAX), required=True),
    Field("port", Integer("The container port number the workload listens on", PORT_MIN, PORT_MAX), required=True),
    Field("protocol", Text("How the proxy treats the port (the Server's proxyProtocol)", choices=PROXY_PROTOCOLS),
          required=True),
), "A port the workload listens on")

CALLER = Record((
    Field("service", Text("Key of the calling service (under `services:`)", DNS_LABEL, DNS_LABEL_MAX), required=True),
    # Not nullable, and never empty: an empty list reads as "no ports" but would mean every port.
    Field("ports", Items(Text("Name of a port of this service", PORT_NAME, PORT_NAME_MAX),
                         "The ports this caller may use (leave `ports` out to allow every port)", min_items=1,
                         max_items=MAX_PORT_LIST)),
), "A caller limited to some ports")

EGRESS = Record((
    Field("name", _name("Name of the destination (it names the EgressNetwork)"), required=True),
    Field("cidrs", Items(Text("An IPv4 or IPv6 network outside the cluster, with no host bits set, e.g. 203.0.113.0/24",
                              CIDR_SHAPE), max_items=MAX_DESTINATIONS_PER_EGRESS), nullable=True),
    Field("hosts", Items(Text("A DNS name outside the cluster, or *.<domain> for its subdomains, e.g. api.stripe.com",
                              HOSTNAME, forbidden_pattern=IN_CLUSTER_HOST), max_items=MAX_DESTINATIONS_PER_EGRESS),
          nullable=True),
    Field("ports", _ports("The destination ports", min_items=1), required=True),
    Field("protocol", Text("What the hosts speak on these ports: TLS (matched by SNI) or HTTP (plain, matched by "
                           "the Host header; Istio's ServiceEntry port, Linkerd's TLSRoute or HTTPRoute). CIDRs go by "
                           "address whatever it says",
                           choices=EGRESS_PROTOCOLS), nullable=True, default=DEFAULT_EGRESS_PROTOCOL),
), "A destination outside the cluster: `cidrs` and/or `hosts`, and `ports`", one_of_nonempty=("cidrs", "hosts"))

# How a service is offered to the other clusters of the environment (plan/linkerd/multicluster.py MODES; the labels
# are linkerd2 pkg/k8s/labels.go's): through the target cluster's gateway, pod to pod, or as a federated service.
EXPORT_MODES = ("gateway", "remote-discovery", "federated")
CLUSTER_NAME = Text("A cluster of the environment, declared under `clusters:` (a stack's `cluster` setting): at most "
                    f"{CLUSTER_NAME_MAX} lowercase letters, digits and '-'", DNS_LABEL, CLUSTER_NAME_MAX)
CLUSTER = Record((), "A cluster of the environment (no settings of its own yet: write {})")

SERVICE = Record((
    Field("namespace", Text("The namespace the service runs in: one declared under `namespaces:`"), required=True),
    Field("name", _name("Workload name (default: the service's key)")),
    Field("serviceAccount", _name("Service account of the workload (default: its name); with the namespace it makes "
                                  "the mesh identity <sa>.<ns>.serviceaccount.identity.linkerd.<trustDomain>")),
    Field("sharedServiceAccount", Boolean("true accepts that other workloads run under this service's account (another "
                                          "service of the graph, or every pod of the namespace on 'default'): a grant "
                                          "to it admits them too, and accessMatrix lists them"),
          nullable=True, default=False),
    Field("selector", Named(Text(f"A label key (not {INJECTOR_LABEL_PREFIX}, which the proxy injector sets on every "
                                 "meshed pod)",
                                 LABEL_KEY, forbidden_pattern=Pattern(re.escape(INJECTOR_LABEL_PREFIX) + ".*")),
                            Text("A label value (quote numbers and booleans)", LABEL_VALUE, LABEL_VALUE_MAX),
                            "Pod labels that select the workload (default: {app: <name>})", min_entries=1,
                            max_entries=MAX_SELECTOR_LABELS)),
    Field("ports", Items(PORT, "The ports the workload listens on", min_items=1, max_items=MAX_PORTS_PER_SERVICE,
                         unique=True), required=True),
    Field("allow", Items(Either((Text("Key of a calling service (all ports)", DNS_LABEL, DNS_LABEL_MAX), CALLER)),
                         "Callers: a service key (every port), or {service, ports: [names]}",
                         max_items=MAX_CALLERS_PER_SERVICE, unique=True), nullable=True),
    Field("meshed", Boolean("false runs the workload without a proxy; its callers' namespaces skip its ports"),
          nullable=True, default=True),
    Field("certificate", Boolean("The workload terminates TLS itself with a certificate from the mesh PKI (default: "
                                 "true for services with meshed: false or a TLS port)"), nullable=True),
    Field("egress", Items(EGRESS, "Destinations outside the cluster the service may reach",
                          max_items=MAX_EGRESS_PER_SERVICE, unique=True), nullable=True),
    Field("clusters", Items(CLUSTER_NAME, "The clusters the service runs in (default: every cluster under "
                            "`clusters:`); a stack with cluster \"\" runs every service", min_items=1, unique=True),
          nullable=True),
    Field("export", Text("How the service is offered to callers in clusters where it does not run (default: not "
                         "exported): gateway (through this cluster's gateway: callers are seen as the gateway), "
                         "remote-discovery (pod to pod, each caller's own identity) or federated",
                         choices=EXPORT_MODES), nullable=True),
), "A service of the mesh")

GRAPH = Record((
    Field("clusters", Named(CLUSTER_NAME, CLUSTER, "The clusters of the environment, for multi-cluster Linkerd "
                            "(docs/multicluster.md): each service runs in some of them", value_nullable=True),
          nullable=True),
    Field("namespaces", Named(Text("Namespace name (not one the platform manages itself)", DNS_LABEL, DNS_LABEL_MAX,
                                   forbidden=RESERVED_NAMESPACES),
                              NAMESPACE, "Every workload namespace", max_entries=MAX_NAMESPACES, value_nullable=True),
          required=True),
    Field("services", Named(Text("Service key", DNS_LABEL, DNS_LABEL_MAX), SERVICE,
                            "The services of the mesh, by key", max_entries=MAX_SERVICES), required=True),
), "The service graph: who runs where, on which ports, and who may call whom (README, 'The service graph')")

# One file of a graph split per team: the directory serviceGraph names holds several, merged into one graph and
# validated as one (read/fragments.py). A fragment's namespaces and services are the graph's; it adds who owns them.
FRAGMENT = Record((
    Field("clusters", Named(CLUSTER_NAME, CLUSTER, "Clusters of the environment this file's services run in (merged "
                            "with the other files')", value_nullable=True), nullable=True),
    Field("owners", Items(Text("A code owner, as CODEOWNERS writes it: @user, @org/team or an email address (it needs "
                               "write access to the repository)", OWNER, OWNER_MAX,
                               examples=("@example-org/payments-team",)),
                          "Who approves changes to this file: its line in the generated .github/CODEOWNERS",
                          min_items=1, max_items=MAX_OWNERS, unique=True), required=True),
    Field("shard", Text("The policy shard of this file's namespaces that do not name one themselves (the namespace "
                        "field `shard`): at most 20 lowercase letters, digits and '-'", DNS_LABEL, SHARD_NAME_MAX),
          nullable=True),
    Field("namespaces", Named(GRAPH.field("namespaces").node.key, NAMESPACE,
                              "The namespaces this file owns: no other file may declare them, and this file's services "
                              "live in them", min_entries=1, max_entries=MAX_NAMESPACES, value_nullable=True),
          required=True),
    Field("services", Named(Text("Service key (unique across the directory's files)", DNS_LABEL, DNS_LABEL_MAX),
                            SERVICE, "The services of this file's namespaces; their `allow` may name services of any "
                            "file", max_entries=MAX_SERVICES), nullable=True),
), "One team's part of the service graph (docs/service-graph.md, 'Splitting the graph per team'): the files of the directory "
   "mtls-mesh:serviceGraph names are merged into one graph")


# ---- what the schema cannot say ---------------------------------------------------------------------------------

CANNOT_CHECK = (
    Rule("references", "a caller, a service's namespace or a caller's port must name one declared elsewhere in the "
         "file", ("unknown caller", "is not declared under 'namespaces'", "is not a port of")),
    Rule("unique within a list", "port names and numbers, callers and egress names repeat nowhere in their list "
         "(JSON Schema's uniqueItems compares whole entries)",
         ("duplicate port", "is listed twice", "duplicate egress name")),
    Rule("unique across services", "a workload, its pods (no selector may hold all of another's labels in its "
         "namespace, whatever the ports), and every object name derived from the graph belong to one service",
         ("is also services.", "its policy object name", "selects pods that", "select the same pods would take",
                                         "is also one of services.", "EgressNetwork", "NetworkPolicy",
                                         "MeshTLSAuthentication", "Server '")),
    Rule("shared identities", "a service account is one mesh identity: two meshed services on one account, or a "
         "caller on its namespace's 'default' account, need sharedServiceAccount: true on each of them",
         ("is also the account of", "'default' account")),
    Rule("mesh membership", "who is meshed depends on the service and its namespace: a caller of a meshed service "
         "needs a mesh identity, a proxy-free service with callers needs a certificate, a service cannot be meshed in "
         "an unmeshed namespace, and a meshed service cannot listen on the proxy's own ports or on a port its "
         "namespace skips, and a namespace's skipOutboundPorts must not hold a port its services call or reach as "
         "egress", ("has no mesh identity", "runs outside the mesh without a certificate", "but namespace",
                    "is the Linkerd proxy's own", "bypasses the proxy", "skips port")),
    Rule("egress protocols", "entries of one namespace that name the same egress host and port must give it the same "
         "`protocol` (one ServiceEntry per host and namespace, one protocol a port, with Istio); with Linkerd, hosts "
         "of one namespace on one port share one protocol (an HTTPRoute there makes the policy controller reject "
         "the port's TLSRoutes)",
         ("in the same namespace",)),
    Rule("network values", "a CIDR must parse with no host bits set, not be IPv4-mapped IPv6, and not overlap the "
         "stack's clusterNetworks (a setting, not part of the file)",
         ("is not a CIDR", "has host bits set", "IPv4-mapped", "overlaps the cluster network")),
    Rule("totals", "limits on the whole graph (ports and allow entries of all services together), on an egress "
         "entry's cidrs and hosts together, and on the size of each object the program makes from the graph (etcd's "
         "1.5 MiB); the schema limits each list on its own",
         ("in all, more than the limit", "cidrs and hosts, more than the limit", "more than etcd's limit")),
    Rule("clusters", "placement across the clusters of an environment: a service's clusters must be declared under "
         "`clusters:`, an exported service needs `clusters:` and a proxy, and a caller running in a cluster where its "
         "callee does not run needs the callee exported (relations between services, their placement and the graph's "
         "clusters); a port exported in gateway mode must admit every caller the cluster's gateway admits for any "
         "gateway-exported service (behind the gateway they all have its identity: a relation across every "
         "gateway-exported service of a cluster, checked when a cluster stack compiles); and the mirror Linkerd "
         "names `<service>-<cluster>` (or `<service>-federated`) must fit a Service name and clash with no other "
         "service where it appears (a name built from two keys, against every other service's placement)",
         ("is not declared under 'clusters'", "needs the graph's clusters", "does not run in cluster",
          "cannot be exported", "is not exported, so the call cannot reach it",
          "behind the gateway every caller has the gateway's identity", "Linkerd names the mirror",
          "names of Linkerd's federated Services", "is longer than a Service name's")),
    Rule("team boundaries", "in a graph split per team, a namespace or a service key is declared in one file only, "
         "a service lives in a namespace its own file declares, and the files together stay within the graph's limits",
         ("is also declared in", "not in this file", "fragment files", "together")),
    Rule("reading the file", "the file must be a regular UTF-8 file within the size limit, valid YAML without anchors, "
         "deep nesting, repeated keys, too many values, or numbers and booleans that YAML 1.1 or Go's YAML would read "
         "differently (0443, 1:30, yes, 1_000): all checked on the text, before there is a document",
         ("is not valid YAML", "anchor or alias", "nests deeper than", "is written twice", "is not UTF-8",
          "bytes, more than the limit", "is more than the limit of", "file not found", "is a named pipe", "is a device",
          "is not a usable file path", "leading zero", "base-60", "the boolean", "is a number to YAML 1.1",
          "has a number of", "values (lists, mappings and scalars)", "holds a value that cannot be read",
          "outside the project directory")),
)
