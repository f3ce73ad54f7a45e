"""Property-based: random and malformed settings and service graphs give a valid program or the one clear
SettingsError, never a traceback."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from read.errors import Problems, SettingsError
from read.graph import parse_graph
from plan.mesh import MeshPlan, compile_mesh
from read.settings import Settings, load_declarations, load_settings
from harness import run_program, stack_config
from test_graph import EXAMPLE

DECLARED = sorted(load_declarations())
PLAUSIBLE = ["", "true", "false", "yes", "0", "48h", "25h0m0s", "8760h", "1m", "2 days", "deny", "audit", "vault",
             "self-signed", "prod", "dev", "none", "add-next", "issue-from-next", "drop-previous", "[]", '["web=audit"]',
             '["nope"]', "{}", "null", "https://vault.example.com:8200", "http://x", "services.yaml", "dev-2", "../x"]
config_values = st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=30))
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=False),
                         st.text(max_size=12), st.sampled_from(["HTTP/1", "gRPC", "web", "frontend", "10.0.0.0/8", "http"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=20)


@hypothesis_settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(DECLARED + ["vaultAdress", "bogus"]), config_values, max_size=6),
       base=st.sampled_from(["dev", "staging", "prod"]))
def test_random_settings_give_settings_or_one_settings_error(changes, base):
    """Read and compiled (plan/mesh.py): a plan, or one SettingsError."""
    config, secret_keys = stack_config(base)
    config.update({f"mtls-mesh:{k}": v for k, v in changes.items()})
    try:
        result = load_settings(config, base, secret_keys=frozenset(secret_keys))
        plan = compile_mesh(result)
    except SettingsError as err:
        assert err.problems and all(p.where for p in err.problems)
        assert "Traceback" not in str(err)
    else:
        assert isinstance(result, Settings) and isinstance(plan, MeshPlan)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


EXAMPLE_PATHS = [p for p in _paths(EXAMPLE) if p]


def _mutate(document, path, value):
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


def _check_graph_result(document):
    problems = Problems()
    graph = parse_graph(document, "services.yaml", problems)
    if graph is None:
        assert problems.items and all(str(p).startswith("services.yaml") for p in problems.items)
        return
    assert not problems
    for caller, service, port in graph.edges():
        assert caller in graph.services and service in graph.services
        assert port in {p.name for p in graph.services[service].ports}


@hypothesis_settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(EXAMPLE_PATHS), value=yaml_values)
def test_mutated_graphs_are_valid_or_clearly_rejected(path, value):
    _check_graph_result(_mutate(copy.deepcopy(EXAMPLE), path, value))


@hypothesis_settings(max_examples=200, deadline=None)
@given(document=yaml_values)
def test_arbitrary_documents_as_graphs_never_crash(document):
    _check_graph_result(document)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(DECLARED), config_values, max_size=3),
       graph_edit=st.one_of(st.none(), st.tuples(st.sampled_from(EXAMPLE_PATHS), yaml_values)))
def test_the_whole_program_runs_or_refuses_cleanly(tmp_path_factory, changes, graph_edit):
    graph = None if graph_edit is None else _mutate(copy.deepcopy(EXAMPLE), *graph_edit)
    try:
        run = run_program("staging", set_config=changes, graph=graph, tmp_path=tmp_path_factory.mktemp("graph"))
    except SettingsError as err:
        assert err.registrations == [], "a rejected stack must register nothing"
    else:
        assert run.kubernetes()


OPTIONAL_PARTS = {
    "linkerdViz": st.booleans(), "linkerdCni": st.booleans(), "networkPolicies": st.booleans(),
    "networkPolicyEgress": st.booleans(), "alerts": st.booleans(),
    "linkerdHighAvailability": st.sampled_from(["auto", "true", "false"]),
    "defaultInboundPolicy": st.sampled_from(["audit", "deny", "all-authenticated", "cluster-unauthenticated"]),
    "prometheusServiceAccounts": st.sampled_from([[], ["monitoring/prom"], ["a/b", "c/d"]]),
    "prometheusNetworks": st.sampled_from([[], ["10.42.0.0/16"], ["10.42.0.0/16", "fd00:42::/64"]]),
    "clusterNetworks": st.sampled_from([["10.0.0.0/8"], ["10.0.0.0/8", "fd00::/8"]]),
    "proxyMemoryLimit": st.sampled_from(["", "128Mi"]),
}


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.fixed_dictionaries({}, optional=OPTIONAL_PARTS), base=st.sampled_from(["dev", "staging", "prod"]))
def test_every_combination_of_optional_parts_builds(changes, base):
    """Settings that validate must build: the whole program runs for any mix of the optional parts."""
    if changes.get("defaultInboundPolicy") == "deny" or base != "dev":
        # Deny needs its probe and scrape networks named (staging and prod name theirs in their stack files).
        changes.setdefault("kubeletNetworks", ["10.20.0.0/20"])
        changes.setdefault("prometheusNetworks", [])
    run = run_program(base, set_config={**changes, "policyShards": False})  # one stack: every object in one run
    assert run.of_type("kubernetes:helm.sh/v3:Release")
    assert bool(run.objects("NetworkPolicy")) == (changes.get("networkPolicies", True) and any(
        phase == "deny" for phase in run.exports["inboundPolicies"].values()))
