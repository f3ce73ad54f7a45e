"""Authorization from the service graph, checked from the emitted objects: who may reach what, at the mesh layer and
at the network layer, equals the graph's allowed edges exactly; probes and scraping survive default deny."""

from __future__ import annotations

import ipaddress
import json
import re
import sys

import pytest

from read.errors import SettingsError
from read.graph import mesh_identity
from conformance import describe, validate_object
from harness import PROJECT_DIR, run_program

sys.path.insert(0, str(PROJECT_DIR))
from benchmarks.synthetic import synthetic_graph  # noqa: E402


def graph_of(run):
    from read.graph import load_graph
    from read.errors import Problems
    path = run.config.get("mtls-mesh:serviceGraph", "services.yaml")
    return load_graph(PROJECT_DIR / path, path, Problems())


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def mesh_authorized_edges(run, graph):
    """(caller, service, port) triples admitted by the AuthorizationPolicies on Servers, from the objects alone."""
    objects = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in run.objects()}
    services_by_identity = {mesh_identity(s.service_account, s.namespace, run_trust_domain(run)): s
                            for s in graph.services.values()}
    edges = set()
    for (kind, namespace, _), policy in objects.items():
        if kind != "AuthorizationPolicy" or policy["spec"]["targetRef"]["kind"] != "Server":
            continue
        if namespace not in graph.namespaces:  # the verification canary's namespace: test_verification.py checks it
            continue
        srv = objects[("Server", namespace, policy["spec"]["targetRef"]["name"])]["spec"]
        targets = [(s, p) for s in graph.services.values() if s.namespace == namespace
                   and selects(srv["podSelector"], s.selector_labels) for p in s.ports if p.number == srv["port"]]
        identity_sets = [set(objects[(ref["kind"], namespace, ref["name"])]["spec"]["identities"])
                         for ref in policy["spec"]["requiredAuthenticationRefs"]]
        admitted = set.intersection(*identity_sets)
        for identity in admitted:
            caller = services_by_identity[identity]
            edges |= {(caller.key, s.key, p.name) for s, p in targets}
    return edges


def run_trust_domain(run):
    return run.config.get("mtls-mesh:trustDomain", "cluster.local")


def network_allowed_edges(run, graph, namespace):
    """(caller, service, port) pairs a NetworkPolicy in `namespace` lets in, from the objects alone."""
    edges = set()
    for policy in run.objects("NetworkPolicy"):
        if policy["metadata"]["namespace"] != namespace:
            continue
        spec = policy["spec"]
        targets = [s for s in graph.services_in(namespace) if selects(spec["podSelector"], s.selector_labels)]
        for rule in spec.get("ingress", []):
            numbers = {p["port"] for p in rule.get("ports", [])}
            for peer in rule.get("from", []):
                ns_sel = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                if "podSelector" not in peer:
                    continue
                callers = [c for c in graph.services.values() if c.namespace == ns_sel
                           and selects(peer["podSelector"], c.selector_labels)]
                edges |= {(c.key, s.key, p.name) for c in callers for s in targets for p in s.ports if p.number in numbers}
    return edges


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    return run_program("staging", graph=synthetic_graph(100), tmp_path=tmp_path_factory.mktemp("scaled"),
                       set_config={"inboundPolicyOverrides": ["team-01=audit"]})


def test_mesh_layer_admits_exactly_the_graphs_edges(each_mesh):
    each_stack = each_mesh
    check_mesh_layer(each_stack)


def test_mesh_layer_admits_exactly_the_graphs_edges_at_scale(scaled):
    check_mesh_layer(scaled)


def check_mesh_layer(run):
    graph = graph_of(run)
    expected = {e for e in graph.edges() if graph.is_meshed(graph.services[e[1]])}
    assert expected, "the graph has meshed edges to check"
    assert mesh_authorized_edges(run, graph) == expected


def test_network_layer_agrees_with_the_mesh_in_deny_namespaces(each_mesh):
    each_stack = each_mesh
    check_network_layer(each_stack)


def test_network_layer_agrees_with_the_mesh_at_scale(scaled):
    check_network_layer(scaled)


def check_network_layer(run):
    graph = graph_of(run)
    phases = run.exports["inboundPolicies"]
    deny = [ns for ns, phase in phases.items() if phase == "deny"]
    for namespace in phases:
        expected = {e for e in graph.edges() if graph.services[e[1]].namespace == namespace}
        found = network_allowed_edges(run, graph, namespace)
        assert found == (expected if namespace in deny else set()), namespace
    names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in run.objects("NetworkPolicy")}
    assert {ns for ns, _ in names} == set(deny), "NetworkPolicies exactly where the phase is deny"
    for namespace in deny:
        assert (namespace, "mtls-mesh-default-deny") in names


def test_exported_access_matrix_is_what_the_objects_say(each_mesh):
    each_stack = each_mesh
    graph = graph_of(each_stack)
    matrix = each_stack.exports["accessMatrix"]
    from_objects = {}
    for caller, service, port in mesh_authorized_edges(each_stack, graph):
        target = graph.services[service]
        from_objects.setdefault(f"{target.namespace}/{service}:{port}", set()).add(
            f"{graph.services[caller].namespace}/{caller}")
    in_graph = {k: v for k, v in matrix.items() if k.split("/")[0] in graph.namespaces}  # canary: test_verification
    assert {k: set(v["allowed"]) for k, v in in_graph.items() if v["allowed"]} == from_objects
    phases = each_stack.exports["inboundPolicies"]
    for key, entry in in_graph.items():
        phase = phases[key.split("/")[0]]
        assert entry["others"] == ("denied" if phase == "deny" else phase)


def test_staging_matrix_reads_as_intended(staging):
    matrix = staging.exports["accessMatrix"]
    nodes = json.loads(staging.config["mtls-mesh:kubeletNetworks"])
    probes = {"GET <the pod's httpGet probe paths>": {"allowed": [], "networks": nodes}}
    # HTTP/2: the proxy takes plaintext as HTTP/2 there, so the kubelet's HTTP/1.1 probes have no way in.
    assert matrix["payments/ledger:http"] == {"allowed": ["payments/billing"], "others": "denied"}
    assert matrix["payments/ledger:admin"] == {"allowed": [], "others": "denied", "routes": probes}
    assert matrix["web/catalog:grpc"] == {"allowed": ["web/checkout", "web/frontend"], "others": "denied",
                                          "routes": {"grpc.health.v1.Health": {"allowed": [], "networks": nodes}}}
    assert matrix["ingress/ingress-nginx:https"] == {"allowed": [], "others": "all-unauthenticated"}
    assert "data/postgres:postgres" not in matrix, "a proxy-free service has no Server; the network layer guards it"
    # Every meshed pod's admin port: Prometheus by identity on /metrics (no network: staging's Prometheus is meshed),
    # the kubelet on /live and /ready, and every other path from localhost only.
    assert matrix["payments/*:linkerd-admin"] == {"allowed": [], "others": "denied", "routes": {
        "GET /metrics": {"allowed": [
            "kube-prometheus-stack-prometheus.monitoring.serviceaccount.identity.linkerd.cluster.local",
            "prometheus.linkerd-viz.serviceaccount.identity.linkerd.cluster.local"], "networks": []},
        "GET /live, GET /ready": {"allowed": [], "networks": nodes},
        "/*": {"allowed": [], "networks": [], "only": "localhost"}}}


def test_matrix_names_every_network_that_reaches_a_port(staging):
    """Whatever NetworkAuthentication an AuthorizationPolicy in a namespace uses, its networks appear in that
    namespace's matrix: nobody reaches a port unlisted."""
    matrix = staging.exports["accessMatrix"]
    for policy in staging.objects("AuthorizationPolicy"):
        namespace = policy["metadata"]["namespace"]
        for ref in policy["spec"]["requiredAuthenticationRefs"]:
            if ref["kind"] != "NetworkAuthentication":
                continue
            networks = {n["cidr"] for n in staging.object("NetworkAuthentication", ref["name"], namespace)["spec"]["networks"]}
            listed = {cidr for key, entry in matrix.items() if key.startswith(f"{namespace}/")
                      for route in entry.get("routes", {}).values() for cidr in route["networks"]}
            assert networks <= listed, (namespace, policy["metadata"]["name"])


def test_servers_follow_their_namespaces_phase(each_mesh):
    each_stack = each_mesh
    phases = each_stack.exports["inboundPolicies"]
    servers = each_stack.objects("Server")
    assert servers
    for srv in servers:
        # The verification canary's namespace follows the stack's default phase: test_verification.py checks it.
        phase = phases.get(srv["metadata"]["namespace"], each_stack.config.get("mtls-mesh:defaultInboundPolicy", "deny"))
        assert srv["spec"]["accessPolicy"] == phase, describe(srv)


def test_kubelet_probes_survive_default_deny(staging):
    app_servers = {s["metadata"]["name"] for s in staging.objects("Server")} - {"linkerd-admin"}
    route_parents = {ref["name"] for r in staging.objects("HTTPRoute") for ref in r["spec"]["parentRefs"]}
    assert app_servers and not (app_servers & route_parents), \
        "application Servers carry no routes, so Linkerd admits kubelet probes on them by itself"
    for namespace in ("web", "payments"):
        probes = staging.object("HTTPRoute", "linkerd-admin-probes", namespace)
        paths = {m["path"]["value"] for rule in probes["spec"]["rules"] for m in rule["matches"]}
        assert paths == {"/live", "/ready"}
        policy = staging.object("AuthorizationPolicy", "linkerd-admin-probes", namespace)["spec"]
        assert policy["targetRef"] == {"group": "policy.linkerd.io", "kind": "HTTPRoute", "name": "linkerd-admin-probes"}
        ref = policy["requiredAuthenticationRefs"][0]
        networks = staging.object(ref["kind"], ref["name"], namespace)["spec"]["networks"]
        assert networks == [{"cidr": c} for c in json.loads(staging.config["mtls-mesh:kubeletNetworks"])]
    # Linkerd's own probe routes on HTTP/1 ports admit the same networks (the chart's policyController.probeNetworks).
    values = next(r.object()["values"] for r in staging.of_type("kubernetes:helm.sh/v3:Release")
                  if r.object()["chart"] == "linkerd-control-plane")
    assert values["policyController"]["probeNetworks"] == json.loads(staging.config["mtls-mesh:kubeletNetworks"])


def test_other_admin_paths_answer_localhost_only(staging):
    """/proxy-log-level, /env.json, /shutdown...: once the admin Server has routes, a path no route matches is a 404
    even from localhost. The catch-all route has no AuthorizationPolicy, so only the proxy's own localhost
    authorization admits it; the exact routes keep theirs."""
    for namespace in ("web", "payments"):
        local = staging.object("HTTPRoute", "linkerd-admin-local", namespace)["spec"]
        assert local["parentRefs"] == [{"group": "policy.linkerd.io", "kind": "Server", "name": "linkerd-admin"}]
        assert local["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]
        targeting = [p for p in staging.objects("AuthorizationPolicy") if p["metadata"]["namespace"] == namespace
                     and p["spec"]["targetRef"]["name"] in ("linkerd-admin-local", "linkerd-admin")]
        assert targeting == [], "nothing but localhost may reach the other admin paths"


def test_prometheus_scrapes_metrics_and_nothing_else(staging):
    for namespace in ("web", "payments", "data"):
        admin = staging.object("Server", "linkerd-admin", namespace)["spec"]
        assert admin["port"] == "linkerd-admin" and admin["proxyProtocol"] == "HTTP/1"
        route = staging.object("HTTPRoute", "linkerd-admin-metrics", namespace)
        assert [m["path"]["value"] for m in route["spec"]["rules"][0]["matches"]] == ["/metrics"]
        policy = staging.object("AuthorizationPolicy", "prometheus-scrape", namespace)["spec"]
        assert policy["targetRef"]["name"] == "linkerd-admin-metrics"
        identities = staging.object("MeshTLSAuthentication", "prometheus", namespace)["spec"]["identities"]
        assert "kube-prometheus-stack-prometheus.monitoring.serviceaccount.identity.linkerd.cluster.local" in identities
        assert "prometheus.linkerd-viz.serviceaccount.identity.linkerd.cluster.local" in identities, "viz is on in staging"
        np = staging.object("NetworkPolicy", "mtls-mesh-allow-prometheus", namespace)["spec"]
        assert {"protocol": "TCP", "port": 4191} in np["ingress"][0]["ports"]


def test_prometheus_outside_the_mesh_is_admitted_by_network():
    run = run_program("prod", set_config={"policyShards": False, "prometheusServiceAccounts": [], "prometheusNetworks": ["10.42.0.0/16"]})
    assert not [o for o in run.objects("MeshTLSAuthentication") if o["metadata"]["name"] == "prometheus"]
    networks = run.object("NetworkAuthentication", "prometheus-network", "web")["spec"]["networks"]
    assert networks == [{"cidr": "10.42.0.0/16"}]
    policy = run.object("AuthorizationPolicy", "prometheus-network-scrape", "web")["spec"]
    assert policy["targetRef"]["name"] == "linkerd-admin-metrics"
    np = run.object("NetworkPolicy", "mtls-mesh-allow-prometheus", "web")["spec"]
    assert np["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.42.0.0/16"}}]


def test_network_policies_let_the_mesh_work(prod_mesh):
    prod = prod_mesh
    web = {o["metadata"]["name"]: o["spec"] for o in prod.objects("NetworkPolicy") if o["metadata"]["namespace"] == "web"}
    assert web["mtls-mesh-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert {"protocol": "UDP", "port": 53} in web["mtls-mesh-allow-dns"]["egress"][0]["ports"]
    linkerd = web["mtls-mesh-allow-linkerd"]["egress"][0]
    assert linkerd["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "linkerd"}
    assert {p["port"] for p in linkerd["ports"]} == {8080, 8086, 8090}
    frontend_in = web["mtls-mesh-frontend"]["ingress"]
    assert {p["port"] for p in frontend_in[0]["ports"]} == {8080, 4143}, "the proxy's inbound port beside the app's"
    data = {o["metadata"]["name"]: o["spec"] for o in prod.objects("NetworkPolicy") if o["metadata"]["namespace"] == "data"}
    postgres_ports = {p["port"] for rule in data["mtls-mesh-postgres"]["ingress"] for p in rule["ports"]}
    assert postgres_ports == {5432}, "a proxy-free server is reached on its own port only"


def test_egress_is_denied_but_for_the_graphs_destinations(prod_mesh):
    prod = prod_mesh
    deny = prod.object("EgressNetwork", "mtls-mesh-egress-deny", "payments")["spec"]
    assert deny["trafficPolicy"] == "Deny"
    assert deny["networks"][0]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in deny["networks"][0]["except"]
    route = prod.object("TLSRoute", "billing-stripe-443", "payments")["spec"]
    assert route["hostnames"] == ["api.stripe.com"]
    assert route["parentRefs"][0]["kind"] == "EgressNetwork" and route["parentRefs"][0]["port"] == 443
    egress = prod.object("NetworkPolicy", "mtls-mesh-billing", "payments")["spec"]["egress"]
    external = [rule for rule in egress if any("ipBlock" in peer for peer in rule["to"])]
    assert [p["port"] for p in external[0]["ports"]] == [443]
    callee_ports = {p["port"] for rule in egress if rule not in external for p in rule["ports"]}
    assert callee_ports == {8080, 4143, 5432}, "billing calls ledger:http (meshed) and postgres"
    assert not [o for o in prod.objects("EgressNetwork") if o["metadata"]["namespace"] == "ingress"], "not a deny namespace"


def test_egress_cidrs_get_their_own_allow_network(tmp_path):
    graph = {"namespaces": {"apps": {}}, "services": {"sync": {"namespace": "apps",
             "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
             "egress": [{"name": "partner", "cidrs": ["203.0.113.0/24"], "ports": [8443]}]}}}
    run = run_program("prod", graph=graph, tmp_path=tmp_path, set_config={"adoptNamespaces": [], "inboundPolicyOverrides": []})
    allow = run.object("EgressNetwork", "sync-partner", "apps")["spec"]
    assert allow == {"trafficPolicy": "Allow", "networks": [{"cidr": "203.0.113.0/24"}]}
    deny = run.object("EgressNetwork", "mtls-mesh-egress-deny", "apps")["spec"]
    carved = deny["networks"][0]["except"]
    assert "203.0.113.0/24" in carved, "the Deny network must not overlap the Allow network"
    for block in deny["networks"]:
        covered = ipaddress.ip_network(block["cidr"])
        assert all(ipaddress.ip_network(e).subnet_of(covered) for e in block.get("except", []))
    egress = run.object("NetworkPolicy", "mtls-mesh-sync", "apps")["spec"]["egress"]
    assert egress == [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 8443}]}]


def test_http_egress_hosts_are_matched_by_host_name_not_sni(tmp_path):
    """Plain HTTP has no SNI, so a TLSRoute under the Deny EgressNetwork would drop it: an entry with `protocol: HTTP`
    gets an HTTPRoute on the same network and port, matching its hosts by name (valid against the pinned CRD), the
    egress matrix reads it back, and a TLS entry beside it keeps its TLSRoute."""
    graph = {"namespaces": {"apps": {}}, "services": {"sync": {"namespace": "apps",
             "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
             "egress": [{"name": "mirror", "hosts": ["mirror.example.com"], "ports": [80], "protocol": "HTTP"},
                        {"name": "bank", "hosts": ["api.bank.example"], "ports": [443]}]}}}
    run = run_program("prod", graph=graph, tmp_path=tmp_path, set_config={"adoptNamespaces": [], "inboundPolicyOverrides": []})
    route = run.object("HTTPRoute", "sync-mirror-80", "apps")
    assert route["apiVersion"] == "policy.linkerd.io/v1beta3"
    parent = {"group": "policy.linkerd.io", "kind": "EgressNetwork", "name": "mtls-mesh-egress-deny"}
    assert route["spec"] == {"hostnames": ["mirror.example.com"], "parentRefs": [{**parent, "namespace": "apps", "port": 80}],
                             "rules": [{"backendRefs": [{**parent, "port": 80}]}]}
    assert validate_object(route) == [], describe(route)
    assert not [o for o in run.objects("TLSRoute") if o["metadata"]["name"] == "sync-mirror-80"]
    assert run.object("TLSRoute", "sync-bank-443", "apps")["spec"]["hostnames"] == ["api.bank.example"]
    egress = run.exports["egressMatrix"]
    assert egress["apps/mirror.example.com:80"]["declaredFor"] == ["sync"]
    assert egress["apps/mirror.example.com:80"]["reachableBy"] == ["sync"]
    assert "apps/api.bank.example:443" in egress


def test_audit_and_open_phases_get_no_network_lockdown(dev):
    assert not dev.objects("NetworkPolicy") and not dev.objects("EgressNetwork")
    assert {s["spec"]["accessPolicy"] for s in dev.objects("Server")} == {"audit"}


def test_network_policies_can_be_switched_off_or_kept_ingress_only():
    assert not run_program("prod", set_config={"policyShards": False, "networkPolicies": False}).objects("NetworkPolicy")
    ingress_only = run_program("prod", set_config={"policyShards": False, "networkPolicyEgress": False})
    specs = [o["spec"] for o in ingress_only.objects("NetworkPolicy")]
    assert specs and all(s["policyTypes"] == ["Ingress"] for s in specs)


def test_object_count_grows_with_ports_not_edges(tmp_path):
    def graph(callers):
        services = {f"s{i}": {"namespace": "apps", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
                              "allow": [f"s{(i + k) % 20}" for k in range(1, callers + 1)]} for i in range(20)}
        return {"namespaces": {"apps": {}}, "services": services}
    few = run_program("prod", graph=graph(1), tmp_path=tmp_path, set_config={"adoptNamespaces": [], "inboundPolicyOverrides": []})
    many = run_program("prod", graph=graph(19), tmp_path=tmp_path, set_config={"adoptNamespaces": [], "inboundPolicyOverrides": []})
    assert len(many.registrations) == len(few.registrations)
    assert len(mesh_authorized_edges(many, graph_of(many))) == 20 * 19


def test_policy_objects_wait_for_the_linkerd_crds_and_their_namespace(prod_single):
    prod = prod_single
    """Each object lives in its namespace's ConfigGroup, which depends on the CRD release and the namespace: the
    provider creates no object before both exist (tests/test_preview.py: why the group's dependencies suffice)."""
    crds = prod.named("linkerd-crds").urn
    checked = 0
    for registration in prod.kubernetes():
        obj = registration.object()
        if obj.get("apiVersion", "").startswith(("policy.linkerd.io", "gateway.networking.k8s.io", "networking.k8s.io")):
            group = registration.group
            assert group is not None, f"{describe(obj)} is not in a ConfigGroup"
            namespace = prod.named(f"mesh-{obj['metadata']['namespace']}").urn
            for prerequisite in (crds, namespace):
                assert prerequisite in group.dependencies, describe(obj)
            checked += 1
    assert checked > 20


def test_synthetic_graph_objects_conform(scaled, needs_shared):
    failures = {}
    seen = set()
    for obj in scaled.objects():
        shape = (obj["kind"], re.sub(r"svc-\d+|team-\d+|\d+$", "", obj["metadata"]["name"]))
        if shape in seen:
            continue  # objects of one builder differ only in names and numbers: one of each shape is checked
        seen.add(shape)
        if errors := validate_object(obj):
            failures[describe(obj)] = errors
    assert not failures, failures


@pytest.mark.parametrize("key, value, where, message", [
    ("prometheusServiceAccounts", ["prometheus"], "prometheusServiceAccounts[0]", "is not namespace/serviceaccount"),
    ("prometheusNetworks", ["10.42.0.1/16"], "prometheusNetworks[0]", "is not a CIDR"),
    ("kubeletNetworks", [], "kubeletNetworks", "no kubelet probe of a proxy would be admitted"),
    ("clusterNetworks", ["10.0.0.0/33"], "clusterNetworks[0]", "is not a CIDR"),
    ("networkPolicyEgress", "sometimes", "networkPolicyEgress", "must be true or false"),
])
def test_bad_policy_settings_are_reported_before_anything_registers(key, value, where, message):
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={key: value})
    assert any(p.where == f"mtls-mesh:{where}" and message in p.what for p in caught.value.problems), caught.value.problems
    assert caught.value.registrations == []


def test_deny_stacks_admit_exactly_the_networks_they_name():
    """Under deny, /metrics admits by network exactly the stack's prometheusNetworks (none when Prometheus is meshed),
    at the mesh layer (an AuthorizationPolicy on the metrics route) and at the network layer (port 4191)."""
    import ipaddress

    prometheus_pod = ipaddress.ip_address("10.42.3.17")
    for networks in ([], ["10.42.0.0/16"]):
        run = run_program("prod", set_config={"policyShards": False, "prometheusNetworks": networks})
        deny = [ns for ns, phase in run.exports["inboundPolicies"].items() if phase == "deny"]
        assert deny
        for namespace in deny:
            authn = [o for o in run.objects("NetworkAuthentication")
                     if o["metadata"]["namespace"] == namespace and o["metadata"]["name"] == "prometheus-network"]
            allow = run.object("NetworkPolicy", "mtls-mesh-allow-prometheus", namespace)["spec"]["ingress"][0]
            by_network = [p for p in allow["from"] if "ipBlock" in p]
            if not networks:
                assert not authn and not by_network
                continue
            assert [n["cidr"] for n in authn[0]["spec"]["networks"]] == networks
            policy = run.object("AuthorizationPolicy", "prometheus-network-scrape", namespace)["spec"]
            assert policy["targetRef"]["name"] == "linkerd-admin-metrics"
            assert any(prometheus_pod in ipaddress.ip_network(p["ipBlock"]["cidr"]) for p in by_network)
            assert {"protocol": "TCP", "port": 4191} in allow["ports"]


@pytest.mark.parametrize("change, where, message", [
    ({"defaultInboundPolicy": "deny"}, "kubeletNetworks", "not set, and namespaces"),
    ({"defaultInboundPolicy": "deny"}, "prometheusNetworks", "is for audit rollouts"),
    ({"defaultInboundPolicy": "deny", "kubeletNetworks": ["10.20.0.0/20", "::/0"], "prometheusNetworks": []},
     "kubeletNetworks[1]", "::/0 admits every address"),
    # Every graph namespace overridden, but the verification canary's namespace follows the default phase.
    ({"defaultInboundPolicy": "deny", "inboundPolicyOverrides": [f"{ns}=audit" for ns in ("ingress", "web", "payments", "data")]},
     "kubeletNetworks", "defaultInboundPolicy is deny"),
    ({"inboundPolicyOverrides": ["web=deny"], "kubeletNetworks": ["10.20.0.0/20"],
      "prometheusNetworks": ["0.0.0.0/0"]}, "prometheusNetworks[0]", "namespace web enforces deny"),
])
def test_deny_needs_narrow_probe_and_scrape_networks(change, where, message):
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config=change)
    problem = next(p for p in caught.value.problems if p.where == f"mtls-mesh:{where}")
    assert message in problem.what and "kubectl" in problem.fix, problem
    # The same settings without deny are fine: an audit rollout keeps the defaults.
    run_program("dev", set_config={k: v for k, v in change.items() if k not in ("defaultInboundPolicy", "inboundPolicyOverrides")})


def test_grpc_ports_admit_kubelet_health_probes_and_nothing_else_unauthenticated(staging):
    """billing:grpc is a gRPC Server under deny: a `grpc:` probe (grpc.health.v1.Health) is admitted for the kubelet's
    networks on its own route; every other call goes through the catch-all route, where only the Server's own
    authorization (the graph's callers) applies."""
    server = staging.object("Server", "billing-grpc", "payments")
    assert server["spec"]["proxyProtocol"] == "gRPC" and server["spec"]["accessPolicy"] == "deny"
    routes = {r["metadata"]["name"]: r["spec"] for r in staging.objects("GRPCRoute")
              if r["metadata"]["namespace"] == "payments" and r["spec"]["parentRefs"][0]["name"] == "billing-grpc"}
    assert routes["billing-grpc-health"]["rules"] == [
        {"matches": [{"method": {"type": "Exact", "service": "grpc.health.v1.Health"}}]}]
    assert routes["billing-grpc"]["rules"] == [{}], "a catch-all route, or every other call would find no route"
    probes = staging.object("AuthorizationPolicy", "billing-grpc-probes", "payments")["spec"]
    assert probes["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute", "name": "billing-grpc-health"}
    assert probes["requiredAuthenticationRefs"] == [
        {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "kubelet"}]
    callers = staging.object("AuthorizationPolicy", "billing-grpc", "payments")["spec"]
    assert callers["targetRef"]["kind"] == "Server" and callers["requiredAuthenticationRefs"][0]["kind"] == "MeshTLSAuthentication"
    # HTTP ports keep Linkerd's own probe routes: no GRPCRoute on them.
    assert not [r for r in staging.objects("GRPCRoute") if r["spec"]["parentRefs"][0]["name"] == "frontend-http"]


def test_the_egress_matrix_says_which_egress_is_namespace_wide(tmp_path):
    """Linkerd's egress objects apply to a whole namespace and NetworkPolicy cannot name hosts: in a namespace where
    vector-db may reach one host on 443, it can reach llm-proxy's allowed host too. The exported matrix says so, read
    back from the objects; a workload with no egress on that port is not listed."""
    import copy

    import yaml
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    graph["namespaces"]["ai"] = {}
    graph["services"]["llm-proxy"] = {"namespace": "ai", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
                                      "egress": [{"name": "openai", "hosts": ["api.openai.com"], "ports": [443]}]}
    graph["services"]["vector-db"] = {"namespace": "ai", "ports": [{"name": "http", "port": 8081, "protocol": "HTTP/1"}],
                                      "egress": [{"name": "backup", "hosts": ["backup.example.com"], "ports": [443]},
                                                 {"name": "bank", "cidrs": ["198.51.100.0/24"], "ports": [8443]}]}
    graph["services"]["indexer"] = {"namespace": "ai", "ports": [{"name": "http", "port": 8082, "protocol": "HTTP/1"}]}
    run = run_program("staging", graph=copy.deepcopy(graph), tmp_path=tmp_path)
    egress = run.exports["egressMatrix"]
    assert egress["ai/api.openai.com:443"] == {"declaredFor": ["llm-proxy"], "reachableBy": ["llm-proxy", "vector-db"],
                                               "meshLayer": "namespace-wide"}
    assert egress["ai/198.51.100.0/24:8443"]["reachableBy"] == ["vector-db"]
    without_policies = run_program("staging", set_config={"networkPolicies": False}, graph=copy.deepcopy(graph),
                                   tmp_path=tmp_path)
    assert without_policies.exports["egressMatrix"]["ai/api.openai.com:443"]["reachableBy"] == [
        "indexer", "llm-proxy", "vector-db"]
