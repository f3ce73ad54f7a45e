"""Service-graph validation: each bad graph is rejected with the file and key path of the problem."""

from __future__ import annotations

import copy

import pytest
import yaml

from harness import PROJECT_DIR, run_program
from read.errors import Problems, SettingsError
from read.graph import load_graph, mesh_identity, parse_graph

EXAMPLE = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())


def edited(edit) -> dict:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def problems_of(document) -> list[str]:
    problems = Problems()
    graph = parse_graph(document, "services.yaml", problems)
    assert (graph is None) == bool(problems), "a graph is returned exactly when there are no problems"
    return [str(p) for p in problems.items]


def _set(path: str, value):
    def edit(doc):
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


BAD_GRAPHS = [
    (_set("services.checkout-http", {"namespace": "web", "ports": [{"name": "grpc", "port": 9000, "protocol": "gRPC"}]}),
     "services.yaml: services.checkout-http: its policy object name 'checkout-http' in namespace 'web' is also one of services.checkout"),
    (_set("services.checkout.allow", ["frontnd"]), "services.yaml: services.checkout.allow[0]: unknown caller 'frontnd'. Did you mean 'frontend'?"),
    (_set("services.ledger.ports.1.port", 8080), "services.yaml: services.ledger.ports[1].port: duplicate port 8080 (also ports[0])"),
    (_set("services.ledger.ports.1.name", "http"), "services.yaml: services.ledger.ports[1].name: duplicate port name 'http'"),
    (_set("services.billing.namespace", "payment"), "services.yaml: services.billing.namespace: namespace 'payment' is not declared under 'namespaces'. Did you mean 'payments'?"),
    (_set("services.frontend.ports.0.protocol", "HTTP1"), "services.yaml: services.frontend.ports[0].protocol: 'HTTP1' is not a protocol Linkerd accepts. Did you mean 'HTTP/1'?"),
    (_set("services.billing.allow", ["nightly-report"]), "services.yaml: services.billing.allow[0]: caller 'nightly-report' has no mesh identity: namespace 'batch' is not meshed"),
    (_set("services.catalog.allow", ["postgres"]), "services.yaml: services.catalog.allow[0]: caller 'postgres' has no mesh identity: postgres runs without a proxy"),
    (_set("services.ledger.allow", [{"service": "billing", "ports": ["https"]}]), "services.yaml: services.ledger.allow[0].ports[0]: 'https' is not a port of ledger. Did you mean 'http'?"),
    (_set("services.frontend.alow", ["checkout"]), "services.yaml: services.frontend.alow: is not a known field. Did you mean 'allow'?"),
    (_set("services.billing.egress", [{"name": "bank", "cidrs": ["203.0.113.7/24"], "ports": [443]}]), "services.yaml: services.billing.egress[0].cidrs[0]: '203.0.113.7/24' is not a CIDR"),
    (_set("services.billing.egress", [{"name": "bank", "ports": [443]}]), "services.yaml: services.billing.egress[0]: names no destination"),
    (_set("services.billing.egress", [{"name": "bank", "hosts": ["https://bank.example"], "ports": [443]}]), "services.yaml: services.billing.egress[0].hosts[0]: 'https://bank.example' is not a DNS name"),
    (_set("services.billing.egress", [{"name": "bank", "hosts": ["bank.example"], "ports": [80], "protocol": "http"}]), "services.yaml: services.billing.egress[0].protocol: 'http' is not an egress protocol. Did you mean 'HTTP'?"),
    (_set("services.ledger.egress", [{"name": "stripe-http", "hosts": ["api.stripe.com"], "ports": [443], "protocol": "HTTP"}]), "services.yaml: services.ledger.egress[0].protocol: declares api.stripe.com port 443 HTTP, but services.billing.egress[0] declares it TLS in the same namespace"),
    (_set("services.ledger.egress", [{"name": "mock", "hosts": ["mock.example.org"], "ports": [443], "protocol": "HTTP"}]), "services.yaml: services.ledger.egress[0].protocol: declares mock.example.org port 443 HTTP, but services.billing.egress[0] declares api.stripe.com port 443 TLS in the same namespace: with Linkerd a namespace's egress hosts on one port share one protocol: its HTTPRoute (HTTP) and TLSRoutes (TLS) would attach to the same EgressNetwork port, and the policy controller rejects the TLSRoutes as conflicting (Gateway API GEP-1426), denying those hosts"),
    (_set("namespaces.linkerd", {}), "services.yaml: namespaces.linkerd: 'linkerd' is managed by the platform itself"),
    (_set("services.frontend.ports.0.port", 70000), "services.yaml: services.frontend.ports[0].port: must be a port number from 1 to 65535, not 70000"),
    (_set("services.postgres.certificate", False), "services.yaml: services.postgres: is called by billing, but runs outside the mesh without a certificate"),
    (_set("services.nightly-report.meshed", True), "services.yaml: services.nightly-report.meshed: is true, but namespace 'batch' is not meshed"),
    (_set("services.checkout.allow", ["frontend", "frontend"]), "services.yaml: services.checkout.allow[1]: caller 'frontend' is listed twice"),
    (_set("services.Checkout", {"namespace": "web", "ports": [{"name": "http", "port": 1, "protocol": "HTTP/1"}]}), "services.yaml: services.Checkout: service 'Checkout' is not a valid Kubernetes name"),
    (_set("services.checkout-v2", {"namespace": "web", "name": "checkout", "ports": [{"name": "http", "port": 1, "protocol": "HTTP/1"}]}), "services.yaml: services.checkout-v2.name: 'checkout' in namespace 'web' is also services.checkout"),
    (_set("services.frontend.ports", []), "services.yaml: services.frontend.ports: must be a non-empty list of ports"),
    (_set("services.frontend.ports.0.name", "http-frontend-port"), "services.yaml: services.frontend.ports[0].name: 'http-frontend-port' is not a valid port name"),
    (_set("services.frontend.selector", {"app": 7}), "services.yaml: services.frontend.selector.app: value 7 is not a valid label value"),
    (_set("namespaces.data.skipInboundPorts", ["5432"]), "services.yaml: namespaces.data.skipInboundPorts[0]: must be a port number from 1 to 65535, not '5432'"),
    (lambda doc: doc.pop("services"), "services.yaml: services: is missing"),
    (_set("services", ["frontend"]), "services.yaml: services: must be a mapping of service name to service, not a list"),
]


@pytest.mark.parametrize("edit,expected", BAD_GRAPHS, ids=[case[1].split(": ")[1] + ":" + case[1].split(": ")[2][:25] for case in BAD_GRAPHS])
def test_bad_graph_is_rejected_naming_the_path(edit, expected):
    problems = problems_of(edited(edit))
    assert any(p.startswith(expected) for p in problems), f"expected {expected!r}; got {problems}"


def test_invalid_yaml_is_reported_with_its_position(tmp_path):
    path = tmp_path / "services.yaml"
    path.write_text("namespaces:\n  web: {}\nservices:\n  a: [unclosed\n")
    problems = Problems()
    assert load_graph(path, "services.yaml", problems) is None
    assert str(problems.items[0]).startswith("services.yaml: is not valid YAML at line")


def test_a_bad_graph_stops_the_program_before_any_resource(tmp_path):
    with pytest.raises(SettingsError) as caught:
        run_program("dev", graph=edited(_set("services.checkout.allow", ["ghost"])), tmp_path=tmp_path)
    assert "services.checkout.allow[0]: unknown caller 'ghost'" in str(caught.value)
    assert caught.value.registrations == []


def test_the_example_graph_is_valid_and_its_edges_are_the_declared_ones():
    problems = Problems()
    graph = parse_graph(EXAMPLE, "services.yaml", problems)
    assert not problems, problems.items
    assert ("billing", "ledger", "http") in graph.edges()
    assert ("billing", "ledger", "admin") not in graph.edges(), "a caller limited to ports gets only those ports"
    assert ("frontend", "catalog", "grpc") in graph.edges()
    assert ("checkout", "frontend", "http") not in graph.edges(), "edges are directed"
    expected = sum(len(c.ports) or len(s.ports) for s in graph.services.values() for c in s.callers)
    assert len(graph.edges()) == expected


def test_defaults_fill_service_account_selector_and_certificate():
    graph = parse_graph(EXAMPLE, "services.yaml", Problems())
    frontend, ledger, postgres = graph.services["frontend"], graph.services["ledger"], graph.services["postgres"]
    assert frontend.service_account == "frontend" and frontend.selector_labels == {"app": "frontend"}
    assert ledger.service_account == "ledger-writer"
    assert postgres.certificate and not frontend.certificate, "proxy-free services terminate TLS themselves"
    assert mesh_identity("ledger-writer", "payments", "cluster.local") == \
        "ledger-writer.payments.serviceaccount.identity.linkerd.cluster.local"


def test_an_opaque_port_number_is_opaque_for_the_whole_namespace():
    """The opaque-ports annotation is set on the namespace, so another meshed service of it on the same number with a
    detected protocol would be opaque to its callers: rejected, naming both."""
    import copy

    from read.errors import Problems
    from read.graph import parse_graph

    document = copy.deepcopy(EXAMPLE)
    document["services"]["frontend"]["ports"].append({"name": "tls", "port": 9443, "protocol": "opaque"})
    document["services"]["checkout"]["ports"].append({"name": "h2", "port": 9443, "protocol": "HTTP/2"})
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems) is None
    [problem] = problems.items
    assert problem.where == "services.yaml: services.checkout.ports[1].protocol"
    assert "services.frontend.ports[1] makes port 9443 opaque" in problem.what
    document["services"]["checkout"]["ports"][1]["protocol"] = "opaque"
    assert parse_graph(document, "services.yaml", Problems()) is not None


def test_an_egress_protocol_defaults_to_tls_and_may_be_http():
    graph = parse_graph(EXAMPLE, "services.yaml", Problems())
    assert graph.services["billing"].egress[0].protocol == "TLS"
    document = edited(_set("services.billing.egress", [
        {"name": "stripe", "hosts": ["api.stripe.com"], "ports": [443]},
        {"name": "status", "hosts": ["status.example.org", "api.stripe.com"], "ports": [80], "protocol": "HTTP"}]))
    assert problems_of(document) == [], "one host may speak TLS on one port and HTTP on another"
    egress = parse_graph(document, "services.yaml", Problems()).services["billing"].egress
    assert [(e.name, e.protocol) for e in egress] == [("stripe", "TLS"), ("status", "HTTP")]


def test_egress_hosts_of_one_namespace_may_mix_protocols_on_a_port_only_under_istio():
    """Linkerd attaches every egress route of a namespace to its Deny EgressNetwork's port, where an HTTPRoute makes
    the policy controller reject the TLSRoutes (read/meshes.py); Istio writes a ServiceEntry per host, each with its
    own port protocol, so there the same graph stays accepted."""
    document = edited(_set("services.ledger.egress", [{"name": "mock", "hosts": ["mock.example.org"], "ports": [443],
                                                      "protocol": "HTTP"}]))
    assert parse_graph(copy.deepcopy(document), "services.yaml", Problems(), mesh="istio") is not None
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems, mesh="linkerd") is None
    assert [p.where for p in problems.items] == ["services.yaml: services.ledger.egress[0].protocol"]
