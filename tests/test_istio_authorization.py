"""Istio authorization from the service graph (plan/istio/authorization.py), checked from the emitted objects alone
by tests/istio_conformance.py: who reaches which service port equals the graph's edges under deny, for every stack's
settings and for generated graphs; every object passes the pinned CRDs' schemas and CEL rules; and the evaluator
itself is shown to follow Istio's rules, so that these checks can fail."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, strategies as st

from harness import STACKS, stack_config
from istio_conformance import Cluster, Pod, Unmodelled, validate_istio_object, with_timestamps
from plan.istio import authorization as istio
from read.errors import Problems, SettingsError
from read.graph import parse_graph
from read.settings import PolicySettings, RolloutSettings
from read.settings_format import INBOUND_POLICIES
from read.stack_files import load_stack_settings

TD = "cluster.local"


def stack_settings(stack: str):
    config, secret_keys = stack_config(stack)
    return load_stack_settings(config, stack, secret_keys=frozenset(secret_keys))


def pods_of(graph, access: PolicySettings, unmeshed_have_sidecars: bool) -> dict[str, Pod]:
    """One pod per service, labelled with its selector (and the injector's label), at an address inside the cluster networks. A
    `meshed: false` service of a meshed namespace may or may not have been given a sidecar (the injector decides,
    by labels the program does not own): both must work."""
    network = ipaddress.ip_network(next(c for c in access.cluster_networks if ":" not in c))
    pods = {}
    for index, service in enumerate(graph.services.values()):
        namespace_meshed = graph.namespaces[service.namespace].meshed
        sidecar = graph.is_meshed(service) or (namespace_meshed and unmeshed_have_sidecars)
        # The injector labels every pod it gives a sidecar (injection-template.yaml: security.istio.io/tlsMode).
        labels = {**service.selector_labels, **(istio.SIDECAR_LABEL if sidecar else {})}
        pods[service.key] = Pod(service.key, service.namespace, labels, service.service_account,
                                str(network.network_address + 10 + index), sidecar, istio.service_host(service))
    return pods


def expected(graph, rollout, access, pods, caller, callee, port) -> tuple[bool, bool]:
    """(mesh layer, network layer) as the design says, from the graph and the phases (not from the objects)."""
    c, s = graph.services[caller], graph.services[callee]
    edge = (caller, callee, port.name) in graph.edges()
    phase_of = {ns.name: rollout.policy_for(ns.name) for ns in graph.meshed_namespaces}
    calls = callee in graph.callees.get(caller, {})
    caller_ok = not pods[caller].sidecar or phase_of.get(c.namespace) != "deny" or calls
    callee_phase = phase_of.get(s.namespace)
    if not pods[callee].sidecar or not s.meshed:
        callee_ok = True
    else:
        callee_ok = {"deny": edge, "audit": True, "all-unauthenticated": True, "cluster-unauthenticated": True,
                     "all-authenticated": pods[caller].sidecar, "cluster-authenticated": pods[caller].sidecar,
                     }[callee_phase] or edge
    fenced = access.network_policies
    ingress = edge if fenced and callee_phase == "deny" else True
    egress = edge if fenced and access.network_policy_egress and phase_of.get(c.namespace) == "deny" else True
    return caller_ok and callee_ok, ingress and egress


def check_graph(graph, rollout, access, trust_domain=TD):
    objects = istio.build_objects(graph, rollout, access, trust_domain)
    for unmeshed_have_sidecars in (True, False):
        pods = pods_of(graph, access, unmeshed_have_sidecars)
        cluster = Cluster(objects, trust_domain)
        mismatches = []
        for caller, callee in itertools.product(graph.services, repeat=2):
            for port in graph.services[callee].ports:
                found = (cluster.mesh_allows(pods[caller], pods[callee], port.number),
                         cluster.network_allows(pods[caller], pods[callee], port.number))
                want = expected(graph, rollout, access, pods, caller, callee, port)
                if found != want:
                    mismatches.append((caller, callee, port.name, found, want))
        assert not mismatches, (unmeshed_have_sidecars, mismatches[:10])
    return objects


# ------------------------------------------------------------------------------------------ the repo's stacks

@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    settings = stack_settings(request.param)
    return settings, istio.authorization_objects(settings)


def test_access_from_the_objects_is_the_designs_for_every_stack(stack):
    settings, _ = stack
    check_graph(settings.graph, settings.rollout, settings.policy, settings.trust_domain)


def test_deny_admits_exactly_the_graphs_edges(stack):
    """The headline, stated directly: under deny, the meshed callees' policies admit exactly the graph's callers
    (mesh layer alone), and with NetworkPolicies every callee, proxy-free ones included, admits exactly them."""
    settings, objects = stack
    graph, access = settings.graph, settings.policy
    deny = {ns.name for ns in graph.meshed_namespaces if settings.rollout.policy_for(ns.name) == "deny"}
    if not deny:
        pytest.skip(f"{settings.stack} enforces deny nowhere")
    pods = pods_of(graph, access, unmeshed_have_sidecars=True)
    cluster = Cluster(objects, settings.trust_domain)
    mesh, both = set(), set()
    for caller, callee in itertools.product(graph.services, repeat=2):
        s = graph.services[callee]
        if s.namespace not in deny:
            continue
        for port in s.ports:
            if graph.is_meshed(s) and cluster.mesh_allows(pods[caller], pods[callee], port.number):
                mesh.add((caller, callee, port.name))
            if cluster.allows(pods[caller], pods[callee], port.number):
                both.add((caller, callee, port.name))
    edges = {e for e in graph.edges() if graph.services[e[1]].namespace in deny}
    assert mesh == {e for e in edges if graph.is_meshed(graph.services[e[1]])}
    assert edges and both == edges


def test_every_object_passes_the_pinned_crds_and_cel_rules(stack, needs_shared):
    _, objects = stack
    failures = {f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}": errors
                for o in objects if (errors := validate_istio_object(o))}
    assert not failures, failures


def test_access_matrix_is_what_the_evaluator_finds(stack):
    settings, objects = stack
    check_access_matrix(objects, settings.graph, settings.policy, settings.trust_domain)


def check_access_matrix(objects, graph, access, trust_domain=TD):
    """Each entry against the evaluator: `allowed` is who the policies admit by identity, `others` what they do to
    everyone else (a plaintext client inside the cluster)."""
    matrix = istio.access_matrix(objects, graph, trust_domain)
    pods = pods_of(graph, access, unmeshed_have_sidecars=True)
    cluster = Cluster(objects, trust_domain)
    assert set(matrix) == {f"{s.namespace}/{s.key}:{p.name}" for ns in graph.meshed_namespaces
                           for s in graph.services_in(ns.name) for p in s.ports}
    for key, entry in matrix.items():
        namespace, _, rest = key.partition("/")
        callee, _, port_name = rest.partition(":")
        port = graph.services[callee].port(port_name).number
        admitted = {f"{graph.services[c].namespace}/{c}" for c in graph.services
                    if graph.is_meshed(graph.services[c]) and cluster.authorized(
                        pods[callee], port, istio.principal(graph.services[c], trust_domain), "192.0.2.1")}
        listed = {name for name in entry["allowed"] if not name.endswith("(service account default)")}
        plaintext = cluster.authorized(pods[callee], port, None, pods[callee].ip)
        stranger = cluster.authorized(pods[callee], port, f"{trust_domain}/ns/elsewhere/sa/stranger", pods[callee].ip)
        others = entry["others"]
        assert plaintext == (others in ("audit", "all-unauthenticated", "cluster-unauthenticated")), key
        assert stranger == (others != "denied"), key
        if others == "denied":
            assert listed == admitted, key
        else:
            assert listed <= admitted, key


def test_staging_matrices_read_as_intended():
    settings = stack_settings("staging")
    objects = istio.authorization_objects(settings)
    matrix = istio.access_matrix(objects, settings.graph, settings.trust_domain)
    assert matrix["payments/ledger:http"] == {"allowed": ["payments/billing"], "others": "denied"}
    assert matrix["payments/ledger:admin"] == {"allowed": [], "others": "denied"}
    assert matrix["web/catalog:grpc"] == {"allowed": ["web/checkout", "web/frontend"], "others": "denied"}
    assert matrix["ingress/ingress-nginx:https"] == {"allowed": [], "others": "all-unauthenticated"}
    assert matrix["data/postgres:postgres"] == {"allowed": [], "others": "all-unauthenticated"}, \
        "a proxy-free port: no sidecar guards it, the NetworkPolicy does"
    egress = istio.egress_matrix(objects, settings.graph)
    assert egress == {"payments/api.stripe.com:443": {"declaredFor": ["billing"], "reachableBy": ["billing"],
                                                      "meshLayer": "per-workload"}}


def test_dev_audits_everything_as_a_dry_run():
    settings = stack_settings("dev")
    objects = istio.authorization_objects(settings)
    policies = [o for o in objects if o["kind"] == "AuthorizationPolicy"]
    assert policies and all(o["metadata"]["annotations"] == {"istio.io/dry-run": "true"} for o in policies)
    assert {o["spec"]["mtls"]["mode"] for o in objects if o["kind"] == "PeerAuthentication"
            and "selector" not in o["spec"]} == {"PERMISSIVE"}
    assert not [o for o in objects if o["kind"] in ("NetworkPolicy", "ServiceEntry")]
    matrix = istio.access_matrix(objects, settings.graph, settings.trust_domain)
    assert {e["others"] for e in matrix.values()} == {"audit"}
    # Who the dry runs name (who deny would admit), as the Linkerd path's audit rows list the graph's callers.
    assert matrix["payments/ledger:http"] == {"allowed": ["payments/billing"], "others": "audit"}
    assert matrix["web/catalog:grpc"] == {"allowed": ["web/checkout", "web/frontend"], "others": "audit"}
    assert matrix["payments/ledger:admin"] == {"allowed": [], "others": "audit"}


# --------------------------------------------------------------------------------------- the objects themselves

def test_deny_is_strict_with_an_allow_nothing_default(stack):
    settings, objects = stack
    for namespace in settings.graph.meshed_namespaces:
        phase = settings.rollout.policy_for(namespace.name)
        default = next(o for o in objects if o["kind"] == "AuthorizationPolicy"
                       and o["metadata"]["namespace"] == namespace.name and o["metadata"]["name"] == "mtls-mesh-default")
        peer = next(o for o in objects if o["kind"] == "PeerAuthentication"
                    and o["metadata"]["namespace"] == namespace.name and o["metadata"]["name"] == "default")
        if phase == "deny":
            assert default["spec"] == {}, "allow-nothing is a policy without rules, never rules: [{}]"
            assert peer["spec"] == {"mtls": {"mode": "STRICT"}}


def test_principals_name_exactly_the_callers_and_ports_are_target_ports(stack):
    settings, objects = stack
    graph = settings.graph
    for service in graph.services.values():
        if not graph.is_meshed(service):
            continue
        for port in service.ports:
            name = f"{service.name}-{port.name}"
            found = [o for o in objects if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"] == name
                     and o["metadata"]["namespace"] == service.namespace]
            callers = {c for c, s, p in graph.edges() if s == service.key and p == port.name}
            if not callers:
                assert not found
                continue
            (policy,) = found
            (rule,) = policy["spec"]["rules"]
            (source,) = rule["from"]
            assert source == {"source": {"principals": sorted(
                {f"{TD}/ns/{graph.services[c].namespace}/sa/{graph.services[c].service_account}" for c in callers})}}
            assert rule["to"] == [{"operation": {"ports": [str(port.number)]}}]
            assert policy["spec"]["selector"] == {"matchLabels": service.selector_labels}


def test_no_two_peer_authentications_or_sidecars_select_the_same_pods(stack):
    settings, objects = stack
    for kind, selector_key in (("PeerAuthentication", "selector"), ("Sidecar", "workloadSelector")):
        per_namespace = {}
        for o in objects:
            if o["kind"] == kind:
                scope = "workload" if selector_key in o["spec"] else "namespace"
                per_namespace.setdefault((o["metadata"]["namespace"], scope), []).append(o)
        for (namespace, scope), found in per_namespace.items():
            if scope == "namespace" or kind == "PeerAuthentication":
                assert len(found) == 1, (kind, namespace, scope)
        pods = pods_of(settings.graph, settings.policy, True)
        cluster = Cluster(objects)
        for pod in pods.values():
            cluster.sidecar_for(pod)  # raises on two


def test_sidecars_list_exactly_each_workloads_destinations():
    settings = stack_settings("prod")
    objects = istio.authorization_objects(settings)
    billing = next(o for o in objects if o["kind"] == "Sidecar" and o["metadata"]["name"] == "billing")
    assert billing["spec"] == {"workloadSelector": {"labels": {"app": "billing"}}, "egress": [{"hosts": [
        "data/postgres.data.svc.cluster.local", "payments/api.stripe.com",
        "payments/ledger.payments.svc.cluster.local"]}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    entry = next(o for o in objects if o["kind"] == "ServiceEntry")
    assert entry["metadata"]["namespace"] == "payments" and entry["spec"]["hosts"] == ["api.stripe.com"]
    assert entry["spec"]["exportTo"] == ["."] and entry["spec"]["location"] == "MESH_EXTERNAL"
    ledger = next(o for o in objects if o["kind"] == "Sidecar" and o["metadata"]["name"] == "ledger")
    assert ledger["spec"]["egress"] == [{"hosts": ["data/postgres.data.svc.cluster.local"]}]


def test_registry_only_confines_the_graphs_deny_workloads_and_no_one_else():
    """The mesh stays ALLOW_ANY (MESH_CONFIG, the control plane's values), so an injected pod in a namespace outside
    the graph (a meshed Prometheus scraping pod IPs, a team not yet in services.yaml) keeps every destination, while
    every pod of a deny namespace, in the graph or not, drops what its Sidecar does not list."""
    settings = stack_settings("prod")
    objects = istio.authorization_objects(settings)
    cluster = Cluster(objects, settings.trust_domain, outbound_mode=istio.MESH_CONFIG["outboundTrafficPolicy"]["mode"])
    unregistered = Pod("unregistered", "elsewhere", {}, "default", "198.51.100.7", sidecar=False,
                       host="unregistered.example.org")
    outside = Pod("prometheus", "monitoring", {"app": "prometheus"}, "prometheus", "10.0.0.9", sidecar=True)
    assert cluster.mesh_allows(outside, unregistered, 443), "a namespace outside the graph keeps ALLOW_ANY"
    for namespace in ("payments", "data", "web"):
        stray = Pod("stray", namespace, {"app": "not-in-the-graph"}, "default", "10.0.0.8", sidecar=True)
        assert not cluster.mesh_allows(stray, unregistered, 443), namespace
        for service in settings.graph.services_in(namespace):
            pod = Pod(service.key, namespace, service.selector_labels, service.service_account, "10.0.0.7", True)
            assert not cluster.mesh_allows(pod, unregistered, 443), service.key
    assert cluster.mesh_allows(Pod("stray", "ingress", {"app": "x"}, "default", "10.0.0.8", True), unregistered, 443), \
        "ingress does not enforce yet"
    # An external host sits in the registry under its ServiceEntry's namespace, which a Sidecar host names.
    stripe = Pod("stripe", "payments", {}, "default", "198.51.100.8", sidecar=False, host="api.stripe.com")
    billing, ledger = (settings.graph.services[key] for key in ("billing", "ledger"))
    assert cluster.mesh_allows(Pod("billing", "payments", billing.selector_labels, billing.service_account,
                                   "10.0.0.7", True), stripe, 443), "its declared host"
    assert not cluster.mesh_allows(Pod("ledger", "payments", ledger.selector_labels, ledger.service_account,
                                       "10.0.0.7", True), stripe, 443), "another workload's declared host"


def test_network_policies_open_the_ports_istio_puts_on_the_wire():
    settings = stack_settings("prod")
    objects = istio.authorization_objects(settings)
    web = {o["metadata"]["name"]: o["spec"] for o in objects
           if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "web"}
    assert {p["port"] for p in web["mtls-mesh-frontend"]["ingress"][0]["ports"]} == {8080}, \
        "the application's port only: 15006 is inside the pod, and 4143 is Linkerd's"
    assert {p["port"] for p in web["mtls-mesh-allow-kubelet"]["ingress"][0]["ports"]} == {15020, 15021}
    assert web["mtls-mesh-allow-kubelet"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.30.0.0/19"}}]
    assert {p["port"] for p in web["mtls-mesh-allow-prometheus"]["ingress"][0]["ports"]} == {15020}
    istio_out = web["mtls-mesh-allow-istio"]["egress"]
    assert [(r["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
             [p["port"] for p in r["ports"]]) for r in istio_out] == [("istio-system", [15012]), ("cert-manager", [6443])]


def test_proxy_free_ports_are_excluded_as_istio_does_it():
    settings = stack_settings("staging")
    objects = istio.authorization_objects(settings)
    data = [o for o in objects if o["metadata"]["namespace"] == "data"]
    skipped = next(o for o in data if o["kind"] == "PeerAuthentication" and "selector" in o["spec"])
    assert skipped["spec"] == {"selector": {"matchLabels": {"security.istio.io/tlsMode": "istio"}},
                               "portLevelMtls": {"5432": {"mode": "DISABLE"}}}
    open_port = next(o for o in data if o["kind"] == "AuthorizationPolicy" and o["metadata"]["name"] == "postgres")
    assert open_port["spec"]["rules"] == [{"to": [{"operation": {"ports": ["5432"]}}]}]


def test_service_entry_names_never_collide():
    hosts = ["*.example.org", "wildcard.example.org", "wildcard-egress.example.org", "egress.example.org",
             "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".org"]
    cidrs = ["203.0.113.0/24", "2001:db8::/32"]
    names = [istio.service_entry_name(h, None) for h in hosts] + [istio.service_entry_name(istio.cidr_host(c), c)
                                                                  for c in cidrs]
    assert len(set(names)) == len(names), names
    assert all(len(n) <= 253 for n in names)
    for name in names:
        entry = istio.service_entry("apps", "x.example.org", None, (443,))
        entry["metadata"]["name"] = name
        assert validate_istio_object(entry) == [], name


def test_nested_selectors_are_refused_before_istio_sees_them():
    """Two Sidecars selecting one pod are undefined behaviour in Istio; the graph reader already refuses any two
    services of a namespace whose selectors nest (read/graph.py, whatever the mesh), and the Istio builder's own
    check agrees on what the reader accepts."""
    document = {"namespaces": {"apps": {}}, "services": {
        "api": {"namespace": "apps", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]},
        "api-admin": {"namespace": "apps", "selector": {"app": "api", "role": "admin"},
                      "ports": [{"name": "admin", "port": 9000, "protocol": "HTTP/1"}]}}}
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems) is None
    assert [p.where for p in problems.items] == ["services.yaml: services.api-admin.selector"], problems.items
    document["services"]["api-admin"]["selector"] = {"app": "api-admin"}
    graph = parse_graph(document, "services.yaml", Problems())
    assert graph is not None and not istio.graph_problems(graph).items
    istio.build_objects(graph, RolloutSettings("deny", {}), stack_settings("prod").policy, TD)


# ------------------------------------------------------------------------------------------- generated graphs

PHASES = st.sampled_from(INBOUND_POLICIES)


@st.composite
def graphs(draw):
    namespaces = {f"n{i}": {"meshed": draw(st.booleans()) if i else True} for i in range(draw(st.integers(1, 3)))}
    names = [f"s{i}" for i in range(draw(st.integers(1, 5)))]
    services = {}
    for index, name in enumerate(names):
        namespace = draw(st.sampled_from(sorted(namespaces)))
        meshed = namespaces[namespace]["meshed"] and draw(st.booleans().map(lambda b: b or index % 3 != 1))
        body = {"namespace": namespace,
                "ports": [{"name": f"p{j}", "port": 7000 + index * 10 + j, "protocol": "HTTP/1"}
                          for j in range(draw(st.integers(1, 2)))]}
        if not meshed and namespaces[namespace]["meshed"]:
            body["meshed"] = False
        if draw(st.booleans()):
            body["egress"] = [draw(st.sampled_from([
                {"name": "api", "hosts": ["api.example.com"], "ports": [443]},
                {"name": "bank", "cidrs": ["203.0.113.0/24"], "ports": [8443]},
                {"name": "both", "hosts": ["*.example.org"], "cidrs": ["198.51.100.0/24"], "ports": [443, 8443]}]))]
        services[name] = body
    effectively_meshed = {n: namespaces[b["namespace"]]["meshed"] and b.get("meshed", True) for n, b in services.items()}
    for name, body in services.items():
        allowed = [c for c in names if c != name and (effectively_meshed[c] or not effectively_meshed[name])
                   and (effectively_meshed[name] or body.get("meshed") is False)]
        callers = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=3)) if allowed else []
        body["allow"] = [c if draw(st.booleans()) else {"service": c, "ports": ["p0"]} for c in callers]
    return {"namespaces": namespaces, "services": services}


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=graphs(), default=PHASES, overrides=st.lists(PHASES, min_size=3, max_size=3),
       fenced=st.booleans(), egress=st.booleans())
def test_generated_graphs_admit_what_the_design_says(document, default, overrides, fenced, egress):
    problems = Problems()
    graph = parse_graph(document, "services.yaml", problems)
    assume(graph is not None)
    rollout = RolloutSettings(default, {f"n{i}": phase for i, phase in enumerate(overrides)})
    access = PolicySettings(prometheus_service_accounts=(("prometheus", "monitoring"),), prometheus_networks=(),
                            kubelet_networks=("10.20.0.0/20",), cluster_networks=("10.0.0.0/8", "fd00::/8"),
                            network_policies=fenced, network_policy_egress=egress)
    objects = check_graph(graph, rollout, access)
    check_access_matrix(objects, graph, access)
    # Egress: under deny each workload reaches what it declared, and a destination only if it declared its host or
    # CIDR (on some port): the Sidecar is per workload. Elsewhere every workload of the namespace gets out.
    declarers: dict[tuple[str, str], set[str]] = {}
    for service in graph.services.values():
        for egress in service.egress:
            for target in (*egress.hosts, *egress.cidrs):
                declarers.setdefault((service.namespace, target), set()).add(service.key)
    for key, entry in istio.egress_matrix(objects, graph).items():
        namespace, _, destination = key.partition("/")
        target = destination.rpartition(":")[0]
        assert set(entry["declaredFor"]) <= set(entry["reachableBy"]), key
        if rollout.policy_for(namespace) == "deny":
            assert entry["meshLayer"] == "per-workload"
            assert set(entry["reachableBy"]) <= declarers.get((namespace, target), set()), key
        else:
            assert entry["meshLayer"] == "namespace-wide"
            assert set(entry["reachableBy"]) == {s.key for s in graph.services_in(namespace)}, key


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=graphs(), default=PHASES)
def test_generated_graphs_objects_pass_the_crds(document, default, needs_shared_dir):
    graph = parse_graph(document, "services.yaml", Problems())
    assume(graph is not None)
    access = PolicySettings((("prometheus", "monitoring"),), ("10.42.0.0/16",), ("10.20.0.0/20",),
                            ("10.0.0.0/8",), True, True)
    objects = istio.build_objects(graph, RolloutSettings(default, {}), access, TD)
    failures = {o["metadata"]["name"]: e for o in objects if (e := validate_istio_object(o))}
    assert not failures, failures


@pytest.fixture(scope="module")
def needs_shared_dir():
    from conformance import shared_missing_reason
    if shared_missing_reason():
        pytest.skip(shared_missing_reason())


# --------------------------------------------------------------------------------- the evaluator is Istio's

POD_A = Pod("a", "apps", {"app": "a"}, "a", "10.0.0.1", True, "a.apps.svc.cluster.local")
POD_B = Pod("b", "apps", {"app": "b"}, "b", "10.0.0.2", True, "b.apps.svc.cluster.local")
PLAIN = Pod("p", "legacy", {"app": "p"}, "p", "10.0.0.3", False, "p.legacy.svc.cluster.local")


def policy(spec, name="x", namespace="apps", annotations=None):
    meta = {"name": name, "namespace": namespace, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": meta, "spec": spec}


def peer(spec, name="default", namespace="apps"):
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_evaluator_allow_without_rules_denies_all_and_an_empty_rule_allows_all():
    assert Cluster([]).mesh_allows(POD_A, POD_B, 80), "no ALLOW policy: allowed"
    assert not Cluster([policy({})]).mesh_allows(POD_A, POD_B, 80)
    assert not Cluster([policy({"action": "ALLOW"})]).mesh_allows(POD_A, POD_B, 80)
    assert Cluster([policy({"rules": [{}]})]).mesh_allows(POD_A, POD_B, 80)
    assert Cluster([policy({"rules": [{}]}), policy({}, "y")]).mesh_allows(POD_A, POD_B, 80), "ALLOWs add up"


def test_evaluator_order_custom_then_deny_then_allow():
    everyone = {"rules": [{}]}
    assert not Cluster([policy(everyone), policy({**everyone, "action": "DENY"}, "d")]).mesh_allows(POD_A, POD_B, 80)
    assert not Cluster([policy(everyone), policy({**everyone, "action": "CUSTOM", "provider": {"name": "ext"}}, "c")]
                       ).mesh_allows(POD_A, POD_B, 80)
    audit = policy({**everyone, "action": "AUDIT"}, "au")
    assert Cluster([audit]).mesh_allows(POD_A, POD_B, 80), "AUDIT never decides"
    deny_other_port = policy({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["81"]}}]}]}, "d")
    assert Cluster([deny_other_port]).mesh_allows(POD_A, POD_B, 80)
    assert not Cluster([deny_other_port]).mesh_allows(POD_A, POD_B, 81)


def test_evaluator_principals_wildcards_ports_and_plaintext():
    def allowing(*principals, ports=("80",)):
        return Cluster([policy({"rules": [{"from": [{"source": {"principals": list(principals)}}],
                                           "to": [{"operation": {"ports": list(ports)}}]}]})])
    assert allowing("cluster.local/ns/apps/sa/a").mesh_allows(POD_A, POD_B, 80)
    assert not allowing("cluster.local/ns/apps/sa/a").mesh_allows(POD_A, POD_B, 81), "another port"
    assert not allowing("cluster.local/ns/apps/sa/b").mesh_allows(POD_A, POD_B, 80), "another identity"
    assert not allowing("spiffe://cluster.local/ns/apps/sa/a").mesh_allows(POD_A, POD_B, 80), \
        "Istio adds spiffe:// itself: a principal written with it never matches"
    assert allowing("*/sa/a").mesh_allows(POD_A, POD_B, 80) and allowing("cluster.local/ns/apps/*").mesh_allows(
        POD_A, POD_B, 80)
    assert allowing("*").mesh_allows(POD_A, POD_B, 80)
    assert not allowing("*").mesh_allows(PLAIN, POD_B, 80), "plaintext has no principal, not even '*'"
    any_domain = Cluster([policy({"rules": [{"from": [{"source": {"serviceAccounts": ["apps/a"]}}]}]})], "other.td")
    assert any_domain.mesh_allows(POD_A, POD_B, 80), "serviceAccounts match any trust domain"


def test_evaluator_peer_authentication_strict_oldest_wins_and_port_level():
    strict, permissive = peer({"mtls": {"mode": "STRICT"}}), peer({"mtls": {"mode": "PERMISSIVE"}}, "other")
    assert Cluster([]).mesh_allows(PLAIN, POD_B, 80), "PERMISSIVE by default"
    assert not Cluster([strict]).mesh_allows(PLAIN, POD_B, 80), "STRICT drops plaintext"
    assert Cluster([strict]).mesh_allows(POD_A, POD_B, 80)
    assert not Cluster([strict, permissive]).mesh_allows(PLAIN, POD_B, 80), "the first created wins"
    assert Cluster(with_timestamps([strict, permissive], [1, 0])).mesh_allows(PLAIN, POD_B, 80), \
        "the oldest by creationTimestamp wins"
    port_level = peer({"selector": {"matchLabels": {"app": "b"}}, "portLevelMtls": {"80": {"mode": "DISABLE"}}}, "w")
    cluster = Cluster([strict, port_level])
    assert cluster.mesh_allows(PLAIN, POD_B, 80) and not cluster.mesh_allows(PLAIN, POD_B, 81)
    newer = peer({"selector": {"matchLabels": {"app": "b"}}, "mtls": {"mode": "PERMISSIVE"}}, "w2")
    assert not Cluster([strict, port_level, newer]).mesh_allows(PLAIN, POD_B, 81), \
        "a second workload policy for the same pod is ignored: only the oldest applies"
    who = Cluster([strict, port_level, policy({"rules": [{"from": [{"source": {"principals": ["*"]}}]}]})])
    assert not who.mesh_allows(POD_A, POD_B, 80), "a meshed client sends plaintext to a DISABLE port: no principal"


def test_evaluator_dry_run_and_unmodelled_fields():
    assert Cluster([policy({}, annotations={"istio.io/dry-run": "true"})]).mesh_allows(POD_A, POD_B, 80)
    with pytest.raises(Unmodelled):
        Cluster([policy({"rules": [{"when": [{"key": "source.ip", "values": ["1.2.3.4"]}]}]})]).mesh_allows(
            POD_A, POD_B, 80)
    http_only = {"rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]}
    assert not Cluster([policy(http_only)]).mesh_allows(POD_A, POD_B, 80), "dropped from ALLOW on TCP"
    assert not Cluster([policy({**http_only, "action": "DENY"})]).mesh_allows(POD_A, POD_B, 80), \
        "the HTTP field is ignored in a DENY on TCP: broader"


def test_evaluator_sidecar_registry_only_and_network_policy():
    only_a = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "b", "namespace": "apps"},
              "spec": {"workloadSelector": {"labels": {"app": "b"}}, "egress": [{"hosts": ["~/*"]}]}}
    assert not Cluster([only_a], outbound_mode="REGISTRY_ONLY").mesh_allows(POD_B, POD_A, 80), \
        "REGISTRY_ONLY drops a host the Sidecar lacks"
    assert Cluster([only_a]).mesh_allows(POD_B, POD_A, 80), "the mesh's default is ALLOW_ANY"
    own = {**only_a, "spec": {**only_a["spec"], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
    assert not Cluster([own]).mesh_allows(POD_B, POD_A, 80), "the Sidecar's own mode replaces the mesh's"
    assert not Cluster([{**own, "spec": {**only_a["spec"], "outboundTrafficPolicy": {}}}]).mesh_allows(
        POD_B, POD_A, 80), "a policy without a mode is the proto3 zero, REGISTRY_ONLY"
    assert Cluster([{**own, "spec": {**only_a["spec"], "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}}],
                   outbound_mode="REGISTRY_ONLY").mesh_allows(POD_B, POD_A, 80)
    no_egress = {**own, "spec": {"workloadSelector": {"labels": {"app": "b"}},
                                 "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
    assert Cluster([no_egress]).mesh_allows(POD_B, POD_A, 80), "no egress listener is one for every host"
    assert not Cluster([only_a, peer({"mtls": {"mode": "STRICT"}})], outbound_mode="ALLOW_ANY").mesh_allows(
        POD_B, POD_A, 80), "passthrough is plaintext, which STRICT drops"
    with pytest.raises(AssertionError):
        Cluster([only_a, {**only_a, "metadata": {"name": "b2", "namespace": "apps"}}]).sidecar_for(POD_B)
    deny_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "d", "namespace": "apps"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert not Cluster([deny_all]).network_allows(POD_A, POD_B, 80)
    allow_a = {**deny_all, "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"protocol": "TCP", "port": 80}]}]}}
    assert Cluster([deny_all, allow_a]).network_allows(POD_A, POD_B, 80)
    assert not Cluster([deny_all, allow_a]).network_allows(POD_A, POD_B, 81)
    assert not Cluster([deny_all, allow_a]).network_allows(PLAIN, POD_B, 80), "another namespace"


def test_crd_checker_catches_cel_rules_and_unknown_fields(needs_shared):
    good = peer({"selector": {"matchLabels": {"app": "b"}}, "portLevelMtls": {"80": {"mode": "DISABLE"}}})
    assert validate_istio_object(good) == []
    assert any("portLevelMtls requires selector" in e for e in validate_istio_object(
        peer({"portLevelMtls": {"80": {"mode": "DISABLE"}}})))
    assert any("Cannot set serviceAccounts with namespaces or principals" in e for e in validate_istio_object(
        policy({"rules": [{"from": [{"source": {"serviceAccounts": ["a/b"], "principals": ["x"]}}]}]})))
    assert any("spec.rules[0].form" in e for e in validate_istio_object(policy({"rules": [{"form": []}]})))
    assert any(e.startswith("spec.mtls.mode") for e in validate_istio_object(peer({"mtls": {"mode": "STRIKT"}})))
    assert validate_istio_object({**good, "apiVersion": "security.istio.io/v9"})


def test_an_http_egress_host_gets_an_http_port_and_a_linkerd_http_route():
    """`protocol: HTTP` makes the host's ServiceEntry port HTTP (`http-<port>`, matched by the Host header), so plain
    HTTP to a declared host is not dropped for want of an SNI; the TLS ports and every other object stay as they were,
    and the Linkerd path changes only that entry's TLSRoute into an HTTPRoute (its EgressNetwork is per namespace)."""
    import copy
    from pathlib import Path
    import yaml
    from plan.linkerd import authorization as linkerd
    document = yaml.safe_load((Path(__file__).resolve().parents[1] / "services.yaml").read_text())
    http = copy.deepcopy(document)
    http["services"]["billing"]["egress"].append(
        {"name": "stripe-http", "hosts": ["api.stripe.com", "status.example.org"], "ports": [80], "protocol": "HTTP"})
    plain = copy.deepcopy(document)
    plain["services"]["billing"]["egress"].append(
        {"name": "stripe-http", "hosts": ["api.stripe.com", "status.example.org"], "ports": [80]})
    settings = stack_settings("prod")
    graphs = {name: parse_graph(doc, "services.yaml", Problems()) for name, doc in (("http", http), ("plain", plain))}
    objects = {name: istio.build_objects(graph, settings.rollout, settings.policy, settings.trust_domain)
               for name, graph in graphs.items()}
    entries = {o["spec"]["hosts"][0]: o["spec"]["ports"] for o in objects["http"] if o["kind"] == "ServiceEntry"}
    assert entries["api.stripe.com"] == [{"number": 80, "name": "http-80", "protocol": "HTTP"},
                                         {"number": 443, "name": "tls-443", "protocol": "TLS"}]
    assert entries["status.example.org"] == [{"number": 80, "name": "http-80", "protocol": "HTTP"}]
    without = {o["spec"]["hosts"][0]: o["spec"]["ports"] for o in objects["plain"] if o["kind"] == "ServiceEntry"}
    assert without["api.stripe.com"] == [{"number": 80, "name": "tls-80", "protocol": "TLS"},
                                         {"number": 443, "name": "tls-443", "protocol": "TLS"}]
    assert [o for o in objects["http"] if o["kind"] != "ServiceEntry"] == \
        [o for o in objects["plain"] if o["kind"] != "ServiceEntry"]
    for entry in objects["http"]:
        assert validate_istio_object(entry) == [], entry["metadata"]["name"]
    # Linkerd: the HTTP entry's route is an HTTPRoute instead of a TLSRoute, with the same spec; nothing else moves.
    def linkerd_objects(name: str, namespace: str) -> list[dict]:
        return linkerd.namespace_objects(graphs[name], namespace, "deny", settings.policy, settings.trust_domain, False)

    http_routes = [o for o in linkerd_objects("http", "payments") if o["metadata"]["name"] == "billing-stripe-http-80"]
    assert [(o["apiVersion"], o["kind"]) for o in http_routes] == [("policy.linkerd.io/v1beta3", "HTTPRoute")]
    as_tls = {**http_routes[0], "apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TLSRoute"}
    for namespace in ("payments", "data", "web"):
        assert [as_tls if o == http_routes[0] else o
                for o in linkerd_objects("http", namespace)] == linkerd_objects("plain", namespace)
