"""Istio objects checked against reality, independently of plan/istio: the pinned CRDs (openAPIV3Schema with
jsonschema, and every x-kubernetes-validations CEL rule evaluated with cel-python), and an evaluator that decides,
from the emitted objects alone, whether a connection from one pod to another pod's port gets through.

The evaluator follows Istio 1.29.6 (istio/istio 7019d6d3608e4995e9a36d2977cfec3a341431cd, istio/api 1092f7f8):
- client side: the caller's Sidecar (the one selecting it, else its namespace's, else the root namespace's) decides
  which hosts it knows; an unknown host is dropped under REGISTRY_ONLY and passed through as plaintext under
  ALLOW_ANY. A known host gets mTLS if the server pod has a sidecar and its mode for that port is not DISABLE
  (pilot/pkg/xds/endpoints/mtls_checker.go `checkMtlsEnabled`);
- server side: mesh, then namespace, then workload PeerAuthentication, each the OLDEST of its scope (objects count
  as created in list order, or by metadata.creationTimestamp), UNSET inheriting, portLevelMtls only from the
  workload one, keyed by the target port (pilot/pkg/security/authn/policy_applier.go `ComposePeerAuthentication`);
  STRICT drops plaintext;
- AuthorizationPolicy (security/v1beta1/authorization_policy.proto header): a matching CUSTOM denies (the provider's
  answer cannot be known here), then any matching DENY denies, then no ALLOW policy allows, any matching ALLOW
  allows, otherwise deny. An ALLOW without rules matches nothing (builder.go `rbacPolicyMatchNever`), `rules: [{}]`
  matches everything; dry-run policies are never enforced; principals take prefix and suffix `*`
  (pilot/pkg/security/authz/matcher/string.go `StringMatcherWithPrefix`); serviceAccounts match any trust domain
  (generator.go `serviceAccountRegex`); HTTP-only fields drop an ALLOW rule and are ignored in a DENY rule on TCP
  (model.go `checkError`);
- NetworkPolicy (networking.k8s.io/v1): a pod selected by a policy of a direction is isolated in it and admits what
  one of the rules admits; both the callee's ingress and the caller's egress must admit.
Anything the evaluator does not model (`when` conditions, matchExpressions, targetRefs) raises, so it never passes by
ignoring a field.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from harness import YAML_LOADER
from conformance import UPSTREAM, _to_jsonschema, unknown_fields, validate_core, _metadata_probe

ISTIO_CRDS = UPSTREAM / "charts" / "istio-1.29.6" / "manifests" / "charts" / "base" / "files" / "crd-all.gen.yaml"
ROOT_NAMESPACE = "istio-system"


# ------------------------------------------------------------------------------------------- schema and CEL rules

@lru_cache(maxsize=1)
def istio_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for document in yaml.load_all(ISTIO_CRDS.read_text(encoding="utf-8"), Loader=YAML_LOADER):
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
            spec = document["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                        version["schema"]["openAPIV3Schema"]
    return schemas


@lru_cache(maxsize=None)
def _cel_program(rule: str):
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def cel_violations(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Every x-kubernetes-validations rule of the schema, evaluated where it applies (self = that node)."""
    import celpy

    found = []
    for validation in schema.get("x-kubernetes-validations", []):
        try:
            ok = _cel_program(validation["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as err:  # noqa: BLE001 (a rule the library cannot evaluate is reported, not skipped)
            found.append(f"{path or '<root>'}: CEL rule could not be evaluated ({err}): {validation['rule']}")
            continue
        if not bool(ok):
            found.append(f"{path or '<root>'}: {validation.get('message', validation['rule'])}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += cel_violations(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += cel_violations(item, extra, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += cel_violations(item, schema["items"], f"{path}[{index}]")
    return found


@lru_cache(maxsize=None)
def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_to_jsonschema(istio_schemas()[(api_version, kind)]))


def validate_istio_object(obj: dict[str, Any]) -> list[str]:
    """Every problem with one Istio object as the API server of the pinned CRDs would see it; core kinds go to
    kubernetes-validate."""
    if "istio.io" not in obj.get("apiVersion", ""):
        return validate_core(obj)
    schema = istio_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"no served Istio CRD for {obj.get('apiVersion')} {obj.get('kind')}"]
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in _validator(obj["apiVersion"], obj["kind"]).iter_errors(obj)]
    errors += [f"{p}: field not in the {obj['kind']} schema" for p in unknown_fields(obj, schema)]
    errors += cel_violations(obj.get("spec", {}), schema["properties"]["spec"], "spec")
    errors += validate_core(_metadata_probe(obj))
    return errors


# ----------------------------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Pod:
    key: str
    namespace: str
    labels: Mapping[str, str]
    service_account: str
    ip: str
    sidecar: bool
    host: str = ""  # the Kubernetes Service name clients call it by (<svc>.<ns>.svc.cluster.local)


class Unmodelled(Exception):
    """An object uses something the evaluator does not model: a test must not pass by ignoring it."""


def _match_labels(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    if selector.get("matchExpressions"):
        raise Unmodelled("matchExpressions")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _created_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    listed = list(objects)
    return sorted(listed, key=lambda o: (o["metadata"].get("creationTimestamp", ""), listed.index(o)))


def _kind(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@dataclass
class Cluster:
    """The emitted objects, as a cluster holding them would apply them."""

    objects: list[Mapping[str, Any]]
    trust_domain: str = "cluster.local"
    outbound_mode: str = "ALLOW_ANY"  # the mesh's: Istio's default (pkg/config/mesh/mesh.go `DefaultMeshConfig`)
    peer_authentications: list = field(init=False)

    def __post_init__(self) -> None:
        self.peer_authentications = _created_order(_kind(self.objects, "PeerAuthentication"))
        self.authorization_policies = _kind(self.objects, "AuthorizationPolicy")
        self.sidecars = _kind(self.objects, "Sidecar")
        self.network_policies = _kind(self.objects, "NetworkPolicy")

    # -- PeerAuthentication
    def mtls_mode(self, pod: Pod, port: int) -> str:
        mesh = namespace = workload = None
        for pa in self.peer_authentications:
            ns, spec = pa["metadata"]["namespace"], pa.get("spec", {})
            labels = (spec.get("selector") or {}).get("matchLabels") or {}
            if not labels:
                if ns == ROOT_NAMESPACE:
                    mesh = mesh or pa
                elif ns == pod.namespace:
                    namespace = namespace or pa
            elif ns == pod.namespace and ns != ROOT_NAMESPACE and _match_labels({"matchLabels": labels}, pod.labels):
                workload = workload or pa
        mode = "PERMISSIVE"
        for chosen in (mesh, namespace, workload):
            chosen_mode = ((chosen or {}).get("spec", {}).get("mtls") or {}).get("mode", "UNSET")
            if chosen_mode != "UNSET":
                mode = chosen_mode
        per_port = (workload or {}).get("spec", {}).get("portLevelMtls", {})
        if str(port) in per_port:
            port_mode = per_port[str(port)].get("mode", "UNSET")
            mode = mode if port_mode == "UNSET" else port_mode
        return mode

    # -- Sidecar (client side)
    def sidecar_for(self, pod: Pod) -> Mapping[str, Any] | None:
        selecting = [s for s in self.sidecars if s["metadata"]["namespace"] == pod.namespace
                     and "workloadSelector" in s["spec"] and _match_labels(
                         {"matchLabels": s["spec"]["workloadSelector"].get("labels", {})}, pod.labels)]
        if len(selecting) > 1:
            raise AssertionError(f"two Sidecars select {pod.key}: Istio leaves that undefined")
        if selecting:
            return selecting[0]
        for namespace in (pod.namespace, ROOT_NAMESPACE):
            default = [s for s in self.sidecars if s["metadata"]["namespace"] == namespace
                       and "workloadSelector" not in s["spec"]]
            if len(default) > 1:
                raise AssertionError(f"two selector-less Sidecars in {namespace}")
            if default:
                return default[0]
        return None

    def registered(self, caller: Pod, callee: Pod) -> bool:
        """Whether the callee's host is in the caller's registry: a Kubernetes Service (a pod without a host, or a
        `.svc.cluster.local` one), or a ServiceEntry host exported to the caller's namespace. No Sidecar host, `*/*`
        included, imports a host the registry does not hold."""
        if not callee.host or callee.host.endswith(".svc.cluster.local"):
            return True
        for entry in _kind(self.objects, "ServiceEntry"):
            exported = entry["spec"].get("exportTo") or ["*"]
            namespace = entry["metadata"]["namespace"]
            if not ("*" in exported or caller.namespace in exported or ("." in exported and namespace == caller.namespace)):
                continue
            for host in entry["spec"].get("hosts", []):
                if host == callee.host or (host.startswith("*.") and callee.host.endswith(host[1:])):
                    return True
        return False

    def knows(self, caller: Pod, callee: Pod) -> tuple[bool, str]:
        """Whether the caller's sidecar has the callee's host, and the outbound mode that applies otherwise."""
        chosen = self.sidecar_for(caller)
        if not self.registered(caller, callee):
            own = None if chosen is None else chosen["spec"].get("outboundTrafficPolicy")
            return False, self.outbound_mode if own is None else own.get("mode", "REGISTRY_ONLY")
        if chosen is None:
            return True, self.outbound_mode
        # A Sidecar's own policy replaces the mesh's; present without `mode`, it is the proto3 zero, REGISTRY_ONLY
        # (pilot/pkg/model/sidecar.go `initSidecarScopeInternalIndexes`; networking/v1alpha3/sidecar.proto).
        own = chosen["spec"].get("outboundTrafficPolicy")
        mode = self.outbound_mode if own is None else own.get("mode", "REGISTRY_ONLY")
        # No egress listener is one for every host (`*/*`, same function).
        for listener in chosen["spec"].get("egress") or [{"hosts": ["*/*"]}]:
            if "port" in listener or "bind" in listener:
                raise Unmodelled("Sidecar egress listener with a port or bind")
            for entry in listener["hosts"]:
                namespace, _, host = entry.partition("/")
                if namespace == "~":
                    continue
                if namespace not in ("*", callee.namespace) and not (namespace == "." and
                                                                       caller.namespace == callee.namespace):
                    continue
                if host == "*" or host == callee.host or (host.startswith("*.") and callee.host.endswith(host[1:])):
                    return True, mode
        return False, mode

    # -- AuthorizationPolicy
    def _applying(self, pod: Pod) -> list[Mapping[str, Any]]:
        found = []
        for policy in self.authorization_policies:
            ns, spec = policy["metadata"]["namespace"], policy.get("spec", {})
            if ns not in (pod.namespace, ROOT_NAMESPACE):
                continue
            if "targetRef" in spec or "targetRefs" in spec:
                raise Unmodelled("targetRef policies (gateways and waypoints)")
            if policy["metadata"].get("annotations", {}).get("istio.io/dry-run", "false").lower() in ("true", "1", "t"):
                continue
            if _match_labels(spec.get("selector"), pod.labels):
                found.append(policy)
        return found

    def authorized(self, pod: Pod, port: int, principal: str | None, source_ip: str) -> bool:
        policies = self._applying(pod)
        by_action: dict[str, list] = {}
        for policy in policies:
            by_action.setdefault(policy["spec"].get("action", "ALLOW"), []).append(policy)

        def matches(policy: Mapping[str, Any], action: str) -> bool:
            return any(rule_matches(rule, action, principal, source_ip, port)
                       for rule in policy["spec"].get("rules", []) or [])

        if any(matches(p, "CUSTOM") for p in by_action.get("CUSTOM", [])):
            return False
        if any(matches(p, "DENY") for p in by_action.get("DENY", [])):
            return False
        allow = by_action.get("ALLOW", [])
        if not allow:
            return True
        return any(matches(p, "ALLOW") for p in allow)

    # -- the connection through the mesh
    def mesh_allows(self, caller: Pod, callee: Pod, port: int) -> bool:
        mtls = False
        if caller.sidecar:
            known, mode = self.knows(caller, callee)
            if not known and mode == "REGISTRY_ONLY":
                return False
            mtls = known and callee.sidecar and self.mtls_mode(callee, port) != "DISABLE"
        if not callee.sidecar:
            return True
        mode = self.mtls_mode(callee, port)
        if mode == "STRICT" and not mtls:
            return False
        principal = f"{self.trust_domain}/ns/{caller.namespace}/sa/{caller.service_account}" if mtls else None
        return self.authorized(callee, port, principal, caller.ip)

    # -- NetworkPolicy
    def _isolating(self, pod: Pod, direction: str) -> list[Mapping[str, Any]]:
        chosen = []
        for policy in self.network_policies:
            spec = policy["spec"]
            types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))
            if policy["metadata"]["namespace"] == pod.namespace and direction in types and \
                    _match_labels(spec.get("podSelector", {}), pod.labels):
                chosen.append(spec)
        return chosen

    def network_allows(self, caller: Pod, callee: Pod, port: int) -> bool:
        def admitted(policies, rules_key, peers_key, own: Pod, peer: Pod) -> bool:
            if not policies:
                return True
            for spec in policies:
                for rule in spec.get(rules_key, []) or []:
                    ports = rule.get("ports")
                    if ports and not any(p.get("protocol", "TCP") == "TCP" and p.get("port") == port
                                         and "endPort" not in p for p in ports):
                        continue
                    peers = rule.get(peers_key)
                    if not peers or any(_peer_matches(entry, own, peer) for entry in peers):
                        return True
            return False

        return (admitted(self._isolating(callee, "Ingress"), "ingress", "from", callee, caller)
                and admitted(self._isolating(caller, "Egress"), "egress", "to", caller, callee))

    def allows(self, caller: Pod, callee: Pod, port: int) -> bool:
        return self.mesh_allows(caller, callee, port) and self.network_allows(caller, callee, port)


def _peer_matches(entry: Mapping[str, Any], own: Pod, peer: Pod) -> bool:
    if "ipBlock" in entry:
        block = entry["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        network = ipaddress.ip_network(block["cidr"])
        return address.version == network.version and address in network and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []) if
            ipaddress.ip_network(e).version == address.version)
    namespace_selector = entry.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = peer.namespace == own.namespace
    else:
        if namespace_selector.get("matchExpressions") or set(namespace_selector.get("matchLabels", {})) - {
                "kubernetes.io/metadata.name"}:
            raise Unmodelled("namespace selectors other than kubernetes.io/metadata.name")
        wanted = namespace_selector.get("matchLabels", {}).get("kubernetes.io/metadata.name")
        in_namespace = wanted is None or wanted == peer.namespace
    return in_namespace and _match_labels(entry.get("podSelector", {}), peer.labels)


# ------------------------------------------------------------------------------------------------ rule matching

_HTTP_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
_HTTP_SOURCE = ("requestPrincipals", "notRequestPrincipals", "remoteIpBlocks", "notRemoteIpBlocks")


def wildcard(pattern: str, value: str | None) -> bool:
    """StringMatcherWithPrefix: `*` any non-empty value, `*x` suffix, `x*` prefix, else exact."""
    if value is None:
        return False
    if pattern == "*":
        return value != ""
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _service_account_matches(entry: str, policy_namespace: str | None, principal: str | None) -> bool:
    if principal is None:
        return False
    namespace, _, account = entry.rpartition("/")
    if not namespace:
        raise Unmodelled("a serviceAccounts entry without its namespace (the policy's own)")
    regex = rf"spiffe://.+/ns/{re.escape(namespace)}/(.+/|)sa/{re.escape(account)}(/.+)?"
    return re.fullmatch(regex, f"spiffe://{principal}") is not None


def _in_blocks(blocks: Iterable[str], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    for block in blocks:
        network = ipaddress.ip_network(block, strict=False)
        if network.version == address.version and address in network:
            return True
    return False


def _source_matches(source: Mapping[str, Any], principal: str | None, ip: str) -> bool:
    checks = []
    namespace_of = (principal.split("/ns/", 1)[1].split("/", 1)[0]) if principal and "/ns/" in principal else None
    if "principals" in source:
        checks.append(any(wildcard(p, principal) for p in source["principals"]))
    if "notPrincipals" in source:
        checks.append(not any(wildcard(p, principal) for p in source["notPrincipals"]))
    if "namespaces" in source:
        checks.append(any(wildcard(n, namespace_of) for n in source["namespaces"]))
    if "notNamespaces" in source:
        checks.append(not any(wildcard(n, namespace_of) for n in source["notNamespaces"]))
    if "serviceAccounts" in source:
        checks.append(any(_service_account_matches(a, None, principal) for a in source["serviceAccounts"]))
    if "notServiceAccounts" in source:
        checks.append(not any(_service_account_matches(a, None, principal) for a in source["notServiceAccounts"]))
    if "ipBlocks" in source:
        checks.append(_in_blocks(source["ipBlocks"], ip))
    if "notIpBlocks" in source:
        checks.append(not _in_blocks(source["notIpBlocks"], ip))
    return all(checks)


def rule_matches(rule: Mapping[str, Any], action: str, principal: str | None, ip: str, port: int) -> bool:
    """One rule on a TCP connection: from (any entry) AND to (any entry); an empty rule matches everything."""
    if rule.get("when"):
        raise Unmodelled("when conditions")
    http_only = [k for entry in rule.get("to") or [] for k in entry.get("operation", {}) if k in _HTTP_OPERATION]
    http_only += [k for entry in rule.get("from") or [] for k in entry.get("source", {}) if k in _HTTP_SOURCE]
    if http_only and action == "ALLOW":
        return False  # the rule is not generated on a TCP filter chain: narrower
    froms = rule.get("from")
    if froms and not any(_source_matches({k: v for k, v in entry.get("source", {}).items() if k not in _HTTP_SOURCE},
                                         principal, ip) for entry in froms):
        return False
    tos = rule.get("to")
    if tos:
        def operation_matches(operation: Mapping[str, Any]) -> bool:
            if "ports" in operation and str(port) not in operation["ports"]:
                return False
            if "notPorts" in operation and str(port) in operation["notPorts"]:
                return False
            return True
        if not any(operation_matches(entry.get("operation", {})) for entry in tos):
            return False
    return True


def with_timestamps(objects: list[dict[str, Any]], order: Iterable[int]) -> list[dict[str, Any]]:
    """Copies of the objects whose creationTimestamp follows `order` (for tests of the oldest-wins rule)."""
    stamped = copy.deepcopy(objects)
    for rank, index in enumerate(order):
        stamped[index]["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{rank:02d}Z"
    return stamped
