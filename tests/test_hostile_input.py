"""Hostile and careless input: every case gives one SettingsError naming the key or graph path, quickly, with a short
message, and registers nothing. Never a crash, a hang, a traceback or a silently different mesh.

Each case here was found by fuzzing the program (issue 13); the fuzz tests at the end keep looking for new ones.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from read.errors import Problems, SettingsError
from read.graph import MAX_SERVICES
from read.inputs import MAX_GRAPH_BYTES
from harness import PROJECT_DIR, run_program, stack_config

SERVICES_YAML = (PROJECT_DIR / "services.yaml").read_text()
EXAMPLE = yaml.safe_load(SERVICES_YAML)
# The longest message a single problem may print: a bad value is quoted only by a short prefix.
MESSAGE_LIMIT = 600


def rejected(stack: str = "dev", *, graph_text: str | bytes | None = None, tmp_path: Path | None = None,
             **settings) -> SettingsError:
    """Run the program; it must refuse with a SettingsError and register nothing."""
    if graph_text is not None:
        graph_file = tmp_path / "graph.yaml"
        graph_file.write_bytes(graph_text if isinstance(graph_text, bytes) else graph_text.encode())
        settings["serviceGraph"] = str(graph_file)
    with pytest.raises(SettingsError) as caught:
        run_program(stack, set_config=settings)
    assert caught.value.registrations == [], "a rejected stack must register nothing"
    for problem in caught.value.problems:
        assert len(str(problem)) < MESSAGE_LIMIT, f"problem message too long ({len(str(problem))} characters)"
    return caught.value


def problem_at(error: SettingsError, where: str, words: str) -> None:
    matching = [str(p) for p in error.problems if p.where == where]
    assert matching, f"no problem under {where!r}; got: {[str(p) for p in error.problems]}"
    assert any(words in text for text in matching), f"expected {words!r} under {where}; got {matching}"


def graph_with(**edits) -> dict:
    document = copy.deepcopy(EXAMPLE)
    for dotted, value in edits.items():
        node = document
        *parents, last = dotted.split("/")
        for part in parents:
            node = node[part]
        node[last] = value
    return document


def graph_text(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False)


# ---- the YAML itself -------------------------------------------------------------------------------------------

def test_deeply_nested_yaml_is_refused_without_crashing_the_process(tmp_path):
    """30,000 nested flow sequences segfaulted libyaml's recursive composer; run in a child so a crash is a failure,
    not a dead test session."""
    bad = tmp_path / "deep.yaml"
    bad.write_text(SERVICES_YAML.replace("allow: [ingress-nginx]", "allow: " + "[" * 30_000 + "]" * 30_000, 1))
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(PROJECT_DIR)!r})
        from pathlib import Path
        from read.errors import Problems
        from read.graph import load_graph
        problems = Problems()
        assert load_graph(Path({str(bad)!r}), "services.yaml", problems) is None
        print(problems.items[0])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-500:]}"
    assert "nests deeper than" in result.stdout


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    levels = ["a0: &l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = SERVICES_YAML.replace("namespaces:\n", "\n".join(levels) + "\nnamespaces:\n", 1)
    text = text.replace("    ports:\n      - {name: http, port: 8080, protocol: HTTP/1}\n    allow: [ingress-nginx]",
                        "    meshed: *l8\n    ports:\n      - {name: http, port: 8080, protocol: HTTP/1}", 1)
    error = rejected(graph_text=text, tmp_path=tmp_path)
    problem_at(error, str(tmp_path / "graph.yaml"), "anchor or alias")


@pytest.mark.parametrize("text,words", [
    (SERVICES_YAML.replace("  ledger:\n", "  billing:\n    namespace: web\n    ports: [{name: a, port: 1, protocol: HTTP/1}]\n  ledger:\n", 1),
     "key 'billing' is written twice"),
    (SERVICES_YAML.replace("    allow: [frontend]\n", "    allow: [frontend]\n    allow: [checkout]\n", 1),
     "key 'allow' is written twice"),
])
def test_a_key_written_twice_is_an_error_not_last_one_wins(tmp_path, text, words):
    problem_at(rejected(graph_text=text, tmp_path=tmp_path), str(tmp_path / "graph.yaml"), words)


def test_a_graph_that_is_not_utf8_says_so(tmp_path):
    error = rejected(graph_text=SERVICES_YAML.encode().replace(b"frontend", b"fr\xffntend", 1), tmp_path=tmp_path)
    problem_at(error, str(tmp_path / "graph.yaml"), "is not UTF-8 text")


@pytest.mark.parametrize("key", ["serviceGraph", "vaultCaBundleFile"])
def test_a_fifo_is_refused_without_blocking(tmp_path, key):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    error = rejected("staging", **{key: str(fifo)})
    where = str(fifo) if key == "serviceGraph" else f"mtls-mesh:{key}"
    problem_at(error, where, "is a named pipe")


@pytest.mark.parametrize("key", ["serviceGraph", "vaultCaBundleFile"])
def test_a_device_is_refused_without_reading_it(key):
    error = rejected("staging", **{key: "/dev/zero"})
    problem_at(error, "/dev/zero" if key == "serviceGraph" else f"mtls-mesh:{key}", "is a device")


def test_a_graph_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(MAX_GRAPH_BYTES + 1)  # sparse: costs no disk, and is never read
    problem_at(rejected(serviceGraph=str(big)), str(big), "more than the limit")


def test_a_graph_over_the_service_limit_is_refused_before_any_service_is_checked():
    problems = Problems()
    document = {"namespaces": {"a": {}}, "services": {f"s{i}": None for i in range(MAX_SERVICES + 1)}}
    from read.graph import parse_graph
    assert parse_graph(document, "services.yaml", problems) is None
    assert [str(p) for p in problems.items] == [
        f"services.yaml: services: lists {MAX_SERVICES + 1:,} services, more than the limit of {MAX_SERVICES:,}. "
        "Split the platform into several stacks (see docs/service-graph.md, 'Limits')"]


def test_a_graph_at_the_service_limit_is_read_service_by_service():
    """At the limit the services are read (each placeholder is refused on its own), not refused by the limit."""
    problems = Problems()
    document = {"namespaces": {"a": {}}, "services": {f"s{i}": None for i in range(MAX_SERVICES)}}
    from read.graph import parse_graph
    assert parse_graph(document, "services.yaml", problems) is None
    assert len(problems.items) == MAX_SERVICES
    assert not any("more than the limit" in p.what for p in problems.items)


# ---- settings values -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack,changes,key,words", [
    ("dev", {"trustAnchorValidity": "9" * 400 + "h"}, "trustAnchorValidity", "too long to be a duration"),
    ("dev", {"trustAnchorValidity": "3000000h"}, "trustAnchorValidity", "longest duration Go can hold"),
    ("dev", {"identityIssuerDuration": "４８h"}, "identityIssuerDuration", "is not a duration"),
    ("staging", {"vaultAddress": "https://[vault:8200"}, "vaultAddress", "is not a URL"),
    ("staging", {"vaultAddress": "https://[vault]:8200"}, "vaultAddress", "is not a URL"),
    ("staging", {"vaultAddress": "https://vault:65536"}, "vaultAddress", "is not a URL"),
    ("staging", {"vaultKubernetesHost": "https://[::1"}, "vaultKubernetesHost", "is not a URL"),
    ("dev", {"linkerdHelmRepository": "https://[::1"}, "linkerdHelmRepository", "is not an https:// or oci://"),
    ("dev", {"trustDomain": "a" * 254}, "trustDomain", "is not a DNS name"),
    ("dev", {"trustDomain": "a" * 64 + ".local"}, "trustDomain", "is not a DNS name"),
    ("dev", {"trustDomain": "cluster.local\n"}, "trustDomain", "is not a DNS name"),
    ("dev", {"trustAnchor": "dev-1\n"}, "trustAnchor", "is not a valid anchor id"),
    ("dev", {"clusterNetworks": []}, "clusterNetworks", "is empty"),
    # Settings the dev stack's mode does not use are still checked.
    ("dev", {"vaultAddress": "48h"}, "vaultAddress", "is not an http(s) URL"),
    ("dev", {"vaultMountPrefix": "/x/"}, "vaultMountPrefix", "is not a Vault path"),
    ("dev", {"vaultAuthTokenTtl": "soon"}, "vaultAuthTokenTtl", "is not a duration"),
])
def test_bad_values_are_settings_errors(stack, changes, key, words):
    problem_at(rejected(stack, **changes), f"mtls-mesh:{key}", words)


def test_a_huge_value_is_quoted_by_a_short_prefix_only():
    error = rejected("dev", defaultInboundPolicy="x" * 1_000_000)
    problem_at(error, "mtls-mesh:defaultInboundPolicy", "'xxxx")
    # The cut is said in words a reader can check (issue 30: it read "(60 of more characters shown)").
    problem_at(error, "mtls-mesh:defaultInboundPolicy", "(the first 60 of 1,000,000 characters)")


# ---- the graph's content ---------------------------------------------------------------------------------------

def _graph_problem(tmp_path, document, where, words, stack="staging"):
    """staging: its workload namespaces are in deny, so every kind of derived object (NetworkPolicies, egress) exists."""
    error = rejected(stack, graph_text=graph_text(document), tmp_path=tmp_path)
    problem_at(error, f"{tmp_path / 'graph.yaml'}: {where}", words)


def test_a_null_egress_entry_is_an_error_not_a_vanished_service(tmp_path):
    _graph_problem(tmp_path, graph_with(**{"services/billing/egress": [None]}), "services.billing.egress[0]",
                   "must be a mapping")


@pytest.mark.parametrize("where,edit", [
    ("namespaces.web\n", lambda d: d["namespaces"].update({"web\n": {}})),
    ("services.frontend\n", lambda d: d["services"].update({"frontend\n": copy.deepcopy(d["services"]["frontend"])})),
])
def test_a_trailing_newline_is_not_part_of_a_valid_name(tmp_path, where, edit):
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    _graph_problem(tmp_path, document, where, "is not a valid Kubernetes name")


def _service(namespace, ports=(("http", 8080),), allow=(), **extra):
    return {"namespace": namespace, "ports": [{"name": n, "port": p, "protocol": "HTTP/1"} for n, p in ports],
            "allow": list(allow), **extra}


@pytest.mark.parametrize("services,where,words", [
    # The admin port's MeshTLSAuthentication for Prometheus is named 'prometheus'.
    ({"prometheus": _service("web", allow=["frontend"])}, "services.prometheus", "MeshTLSAuthentication 'prometheus'"),
    # NetworkPolicies are mtls-mesh-<workload>, beside the program's own mtls-mesh-default-deny / -allow-dns.
    ({"default-deny": _service("web", allow=["frontend"])}, "services.default-deny", "NetworkPolicy 'mtls-mesh-default-deny'"),
    ({"allow-dns": _service("web", allow=["frontend"])}, "services.allow-dns", "NetworkPolicy 'mtls-mesh-allow-dns'"),
    # The admin Server is linkerd-admin: a workload 'linkerd' with a port 'admin' gets a Server of that name.
    ({"linkerd": _service("web", ports=(("admin", 8080),), allow=["frontend"])}, "services.linkerd", "Server 'linkerd-admin'"),
    # <service>-<egress>: a/b-c and a-b/c are both 'a-b-c'.
    ({"a": _service("payments", ports=(("http", 8081),), egress=[{"name": "b-c", "cidrs": ["203.0.113.0/24"], "ports": [443]}]),
      "a-b": _service("payments", ports=(("http", 8082),), egress=[{"name": "c", "cidrs": ["198.51.100.0/24"], "ports": [443]}])},
     "services.a and services.a-b", "EgressNetwork 'a-b-c'"),
])
def test_names_that_collide_with_other_objects_are_refused(tmp_path, services, where, words):
    document = copy.deepcopy(EXAMPLE)
    document["services"].update(services)
    _graph_problem(tmp_path, document, where, words)


def test_two_services_on_the_same_pods_and_port_are_refused(tmp_path):
    document = copy.deepcopy(EXAMPLE)
    document["services"]["checkout-admin"] = _service("web", selector={"app": "checkout", "tier": "web"})
    _graph_problem(tmp_path, document, "services.checkout-admin.selector", "selects pods that services.checkout selects")


@pytest.mark.parametrize("port", [4140, 4143, 4190, 4191])
def test_the_proxys_own_ports_are_not_application_ports(tmp_path, port):
    document = graph_with(**{"services/frontend/ports": [{"name": "http", "port": port, "protocol": "HTTP/1"}]})
    _graph_problem(tmp_path, document, "services.frontend.ports[0].port", "is the Linkerd proxy's own")


@pytest.mark.parametrize("cidr", ["10.1.0.0/16", "0.0.0.0/0"])
def test_egress_cidrs_inside_the_cluster_are_refused(tmp_path, cidr):
    document = graph_with(**{"services/billing/egress": [{"name": "db", "cidrs": [cidr], "ports": [5432]}]})
    _graph_problem(tmp_path, document, "services.billing.egress[0].cidrs[0]", "overlaps the cluster network 10.0.0.0/8")


# ---- fuzzing ---------------------------------------------------------------------------------------------------

STACK_FILE_VALUES = {stack: stack_config(stack)[0] for stack in ("dev", "staging", "prod")}
LINES = SERVICES_YAML.splitlines(keepends=True)
# Edits a careless hand or a bad merge makes: characters YAML treats specially, and pieces of the file itself.
NOISE = st.sampled_from(["[", "]", "{", "}", "&a ", "*a", "- ", ": ", "\n", "  ", "#", "'", '"', "!!python/tuple ",
                         "null", "4143", "0.0.0.0/0", "\t", "\ufeff", "web", "frontend", "\x00", "%YAML 1.1\n"])


@st.composite
def mutated_graph_text(draw) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["insert", "delete", "duplicate", "swap"]))
        if action == "insert":
            line = lines[index]
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(NOISE) + line[at:]
        elif action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[draw(st.integers(0, len(lines) - 1))])
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        if not lines:
            lines = [""]
    return "".join(lines)


def _check_emitted(run) -> None:
    seen: dict[tuple, int] = {}
    for obj in run.objects():
        meta = obj["metadata"]
        identity = (obj["apiVersion"].rpartition("/")[0], obj["kind"], meta.get("namespace"), meta["name"])
        seen[identity] = seen.get(identity, 0) + 1
    assert not [k for k, n in seen.items() if n > 1], "two emitted objects share a kind, namespace and name"
    pod_ports: dict[tuple, str] = {}
    for server in run.objects("Server"):
        selector = server["spec"]["podSelector"]
        key = (server["metadata"]["namespace"], repr(sorted((selector.get("matchLabels") or {}).items())),
               repr(selector.get("matchExpressions")), server["spec"]["port"])
        assert key not in pod_ports, f"two Servers on one pod port: {pod_ports.get(key)} and {server['metadata']['name']}"
        pod_ports[key] = server["metadata"]["name"]
    _check_no_grant_wider_than_the_graph(run)


def _family_covered(cidrs) -> bool:
    """Whether networks of one family, merged, are all of it (written out here, not taken from the program)."""
    merged = list(ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in cidrs))
    return len(merged) == 1 and merged[0].prefixlen == 0


def _check_no_grant_wider_than_the_graph(run) -> None:
    """Issue 30's invariants on what was built: no except swallows its block; under deny no network admits a whole
    address family to the probe routes or /metrics; no service's pods are selected by another service's policy."""
    for obj in run.objects():
        if obj["kind"] == "EgressNetwork":
            blocks = obj["spec"].get("networks", [])
        elif obj["kind"] == "NetworkPolicy":
            blocks = [peer["ipBlock"] for rule in obj["spec"].get("ingress", []) + obj["spec"].get("egress", [])
                      for peer in rule.get("from", rule.get("to", [])) if "ipBlock" in peer]
        else:
            continue
        for block in blocks:
            cidr = ipaddress.ip_network(block["cidr"])
            for excepted in block.get("except", []):
                network = ipaddress.ip_network(excepted)
                assert network.version == cidr.version and network.subnet_of(cidr) and network != cidr, \
                    f"{obj['kind']} {obj['metadata']['name']}: except {excepted} is no strict part of {cidr}"
            assert not block.get("except") or not (
                cidr.prefixlen == 0 and _family_covered(block["except"])), \
                f"{obj['kind']} {obj['metadata']['name']}: {cidr} except {block['except']} is no address at all"
    for policy in run.objects("NetworkPolicy"):  # only in deny namespaces
        if policy["metadata"]["name"] == "mtls-mesh-allow-prometheus":
            cidrs = [p["ipBlock"]["cidr"] for rule in policy["spec"]["ingress"] for p in rule["from"] if "ipBlock" in p]
            for version in (4, 6):
                assert not _family_covered([c for c in cidrs if ipaddress.ip_network(c).version == version]), \
                    f"{policy['metadata']['namespace']}: /metrics is open to every IPv{version} address"
    enforcing = {s["metadata"]["namespace"] for s in run.objects("Server")
                 if s["metadata"]["name"] == "linkerd-admin" and s["spec"].get("accessPolicy") == "deny"}
    for authn in run.objects("NetworkAuthentication"):
        if authn["metadata"]["namespace"] in enforcing:
            cidrs = [n["cidr"] for n in authn["spec"]["networks"]]
            for version in (4, 6):
                assert not _family_covered([c for c in cidrs if ipaddress.ip_network(c).version == version]), \
                    f"under deny, NetworkAuthentication {authn['metadata']['name']} admits every IPv{version} address"
    selectors: dict[str, dict[frozenset, str]] = {}
    for obj in run.objects("NetworkPolicy"):
        labels = obj["spec"]["podSelector"].get("matchLabels")
        if labels:  # one per service (mtls-mesh-<workload>): the namespace-wide ones select {}
            namespace = obj["metadata"]["namespace"]
            here = selectors.setdefault(namespace, {})
            selector = frozenset(labels.items())
            assert selector not in here, \
                f"{namespace}: {here.get(selector)} and {obj['metadata']['name']} select the same pods"
            for other, name in here.items():
                assert not (other <= selector or selector <= other), \
                    f"{namespace}: {name} and {obj['metadata']['name']} select the same pods"
            here[selector] = obj["metadata"]["name"]


@hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated_graph_text(), stack=st.sampled_from(["dev", "staging", "prod"]))
def test_mutated_service_graph_files_build_or_give_the_one_settings_error(tmp_path_factory, text, stack):
    graph_file = tmp_path_factory.mktemp("fuzz") / "services.yaml"
    graph_file.write_text(text)
    try:
        run = run_program(stack, set_config={"serviceGraph": str(graph_file)})
    except SettingsError as err:
        assert err.registrations == [] and err.problems
        assert all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
    else:
        _check_emitted(run)


STACK_KEYS = sorted({k.split(":", 1)[1] for values in STACK_FILE_VALUES.values() for k in values if k.startswith("mtls-mesh:")})


@hypothesis_settings(max_examples=40, deadline=None)
@given(stack=st.sampled_from(["dev", "staging", "prod"]),
       edits=st.dictionaries(st.sampled_from(STACK_KEYS), st.one_of(
           st.text(max_size=40), NOISE, st.sampled_from(['["10.0.0.0/8"]', "[]", "[null]", '["a=b"]', "99999999h",
                                                         "https://[x", "https://v:0", "true", "-1"])), max_size=3))
def test_mutated_stack_files_build_or_give_the_one_settings_error(stack, edits):
    try:
        run = run_program(stack, set_config=edits)
    except SettingsError as err:
        assert err.registrations == [] and err.problems
        assert all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
    else:
        _check_emitted(run)


def test_the_fuzz_checks_can_fail():
    """The emitted-object check must catch a duplicate, or a green fuzz run would mean nothing."""
    run = run_program("staging")
    run.registrations.append(next(r for r in run.registrations if r.is_kubernetes and r.object().get("kind") == "Server"))
    with pytest.raises(AssertionError, match="share a kind"):
        _check_emitted(run)



from plan.linkerd.authorization import EGRESS_DENY  # noqa: E402


class _Objects:
    """Objects of a real run, edited: what the grant checks must catch."""

    def __init__(self, objects: list[dict]):
        self._objects = objects

    def objects(self, kind: str | None = None) -> list[dict]:
        return [o for o in self._objects if kind is None or o["kind"] == kind]


@functools.lru_cache(maxsize=1)
def _staging_run():
    # staging as one stack: the checks below need every namespace's objects in one run (staging is sharded).
    return run_program("staging", set_config={"policyShards": False})


def _edited(run, kind: str, name: str, namespace: str, edit) -> _Objects:
    objects = copy.deepcopy(run.objects())
    edit(next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
              and o["metadata"]["namespace"] == namespace))
    return _Objects(objects)


@pytest.mark.parametrize("kind,name,edit,message", [
    ("EgressNetwork", EGRESS_DENY,
     lambda o: o["spec"]["networks"][0].update(**{"except": ["0.0.0.0/1", "128.0.0.0/1"]}), "is no address at all"),
    ("EgressNetwork", EGRESS_DENY,
     lambda o: o["spec"]["networks"][0].update(**{"except": ["0.0.0.0/0"]}), "is no strict part"),
    ("NetworkAuthentication", "kubelet",
     lambda o: o["spec"].update(networks=[{"cidr": "::/1"}, {"cidr": "8000::/1"}]), "admits every IPv6 address"),
    ("NetworkPolicy", "mtls-mesh-checkout",
     lambda o: o["spec"]["podSelector"]["matchLabels"].update(app="frontend"), "select the same pods"),
    ("NetworkPolicy", "mtls-mesh-checkout",
     lambda o: o["spec"]["podSelector"]["matchLabels"].update(app="frontend", tier="web"), "select the same pods"),
])
def test_the_grant_checks_can_fail(kind, name, edit, message):
    """The fuzz tests' no-wider-grant check must catch each thing it looks for, or a green run would mean nothing."""
    run = _staging_run()
    _check_no_grant_wider_than_the_graph(_Objects(run.objects()))
    with pytest.raises(AssertionError, match=message):
        _check_no_grant_wider_than_the_graph(_edited(run, kind, name, "web", edit))


# ---- issue 22: numbers, YAML 1.2, list settings, limits, suspicious characters --------------------------------

from read import graph as graph_module, inputs as inputs_module  # noqa: E402
from plan.collisions import MAX_OBJECT_BYTES, oversized_objects  # noqa: E402
from read.errors import did_you_mean, short  # noqa: E402
from read.graph import load_graph, parse_graph  # noqa: E402
from read.inputs import InputError, load_yaml  # noqa: E402
from read.settings import LIST_SETTING_LIMITS, MAX_LIST_ENTRIES, MAX_LIST_SETTING_BYTES, _Config, load_declarations  # noqa: E402

LIST_SETTINGS = sorted(k for k, d in load_declarations().items() if d.type == "array")
BOOLEAN_SETTINGS = sorted(k for k, d in load_declarations().items() if d.type == "boolean")


def _graph_file_problem(tmp_path, text: str) -> str:
    """Read a graph file the way the program does; the one problem it gives."""
    path = tmp_path / "graph.yaml"
    path.write_text(text)
    problems = Problems()
    assert load_graph(path, "services.yaml", problems) is None
    assert len(problems.items) == 1, [str(p) for p in problems.items]
    return str(problems.items[0])


ONE_PORT = "    ports:\n      - {name: http, port: 8080, protocol: HTTP/1}\n"


@pytest.mark.parametrize("replacement", [
    "port: 1" + "0" * 4_999,  # more digits than Python's int() converts
    "port: 0x" + "f" * 4_000,  # converts, but cannot be printed in a message
    "port: 0o" + "7" * 5_000,
    "port: " + ":".join(["1"] * 3_000),  # base 60: YAML 1.1's conversion is quadratic
])
def test_a_huge_number_in_the_graph_is_one_settings_error(tmp_path, replacement):
    text = SERVICES_YAML.replace("port: 8080", replacement, 1)
    error = rejected(graph_text=text, tmp_path=tmp_path)
    assert len(error.problems) == 1
    assert error.problems[0].where == str(tmp_path / "graph.yaml")
    assert "mtls-mesh:serviceGraph" in error.problems[0].fix


@pytest.mark.parametrize("field,text", [
    ("meshed", "    meshed: 0x" + "f" * 4_000 + "\n"),
    ("egress ports", "    egress: [{name: db, cidrs: [203.0.113.0/24], ports: [0x" + "f" * 4_000 + "]}]\n"),
    ("egress cidrs", "    egress: [{name: db, cidrs: [0x" + "f" * 4_000 + "], ports: [443]}]\n"),
])
def test_a_huge_hex_number_anywhere_is_refused_when_read(tmp_path, field, text):
    problem = _graph_file_problem(tmp_path, SERVICES_YAML.replace(ONE_PORT, ONE_PORT + text, 1))
    assert "has a number of 4,002 characters" in problem and "line " in problem, problem


def test_short_never_fails_on_a_value_python_cannot_print():
    assert short(int("f" * 4_000, 16)) == "<a number of 16,000 bits>"
    assert short(2 ** 63) == repr(2 ** 63)


@pytest.mark.parametrize("value,words", [
    ("0443", "leading zero"),  # 291 to YAML 1.1 and Go's yaml, 443 to YAML 1.2
    ("134:40", "base-60"),  # 8080 to YAML 1.1
    ("yes", "the boolean true"), ("off", "the boolean false"), ("Y", "the boolean true"), ("ON", "the boolean true"),
    ("1_000", "is a number to YAML 1.1"), ("0b1010", "is a number to YAML 1.1"), ("-0x1f", "is a number to YAML 1.1"),
    ("!!int 0443", "leading zero"), ("!!bool yes", "the boolean true"), ("!!float 1:30", "base-60"),
])
def test_yaml_forms_other_readers_read_differently_are_refused(value, words):
    with pytest.raises(InputError) as caught:
        load_yaml(f"a:\n  b: {value}\n")
    assert words in caught.value.what and "line 2" in caught.value.what, caught.value.what
    assert caught.value.fix


@pytest.mark.parametrize("value,expected", [
    ("443", 443), ("0", 0), ("-5", -5), ("0x1F", 31), ("0o17", 15), ("1e3", 1000.0), ("true", True), ("FALSE", False),
    ("'yes'", "yes"), ("'0443'", "0443"), ("2024-01-01", "2024-01-01"), ("1.2.3", "1.2.3"), ("~", None),
    ("10.0.0.0/8", "10.0.0.0/8"), ("'134:40'", "134:40"),
])
def test_yaml_is_read_as_yaml_1_2(value, expected):
    assert load_yaml(f"a: {value}\n") == {"a": expected}


def test_a_leading_zero_port_is_refused_end_to_end(tmp_path):
    error = rejected(graph_text=SERVICES_YAML.replace("port: 8080", "port: 08080", 1), tmp_path=tmp_path)
    problem_at(error, str(tmp_path / "graph.yaml"), "leading zero")


@pytest.mark.parametrize("key", LIST_SETTINGS)
@pytest.mark.parametrize("value", ["[" * 100_000, "[" + "1" * 5_000 + "]", '["a", 1e999999]', '["a", NaN]'])
def test_a_hostile_json_list_setting_is_one_settings_error(key, value):
    problems = Problems()
    config = _Config({f"mtls-mesh:{key}": value}, frozenset(), load_declarations(), problems)
    assert config.strings(key) == ()
    assert [p.where for p in problems.items] == [f"mtls-mesh:{key}"]
    assert "must be a list of strings" in problems.items[0].what and problems.items[0].fix


def test_a_hostile_list_setting_ends_the_program_in_the_settings_error():
    problem_at(rejected("dev", adoptNamespaces="[" * 100_000), "mtls-mesh:adoptNamespaces", "must be a list of strings")


@pytest.mark.parametrize("key", LIST_SETTINGS)
def test_list_settings_are_limited_in_entries(key):
    limit = LIST_SETTING_LIMITS.get(key, MAX_LIST_ENTRIES)
    declarations = load_declarations()
    for count, refused in ((limit, False), (limit + 1, True)):
        problems = Problems()
        config = _Config({f"mtls-mesh:{key}": json.dumps(["x"] * count)}, frozenset(), declarations, problems)
        assert (config.strings(key) == ()) is refused
        assert any("more than the limit" in p.what for p in problems.items) is refused


def test_a_list_setting_is_limited_in_bytes():
    declarations = load_declarations()
    for extra, refused in ((0, False), (1, True)):
        problems = Problems()
        text = json.dumps(["x" * (MAX_LIST_SETTING_BYTES - 4 + extra)])  # '["' and '"]' make up the limit
        config = _Config({"mtls-mesh:clusterNetworks": text}, frozenset(), declarations, problems)
        assert (config.strings("clusterNetworks") == ()) is refused
        assert any("more than the limit of 1,048,576" in p.what for p in problems.items) is refused


def _one_service_graph(**service) -> dict:
    return {"namespaces": {"a": {}}, "services": {"s": {"namespace": "a", "ports": [
        {"name": "http", "port": 8080, "protocol": "HTTP/1"}], **service}}}


def _limit_problems(document) -> list[str]:
    problems = Problems()
    parse_graph(document, "services.yaml", problems)
    return [str(p) for p in problems.items if "more than the limit" in str(p)]


def _ports(count):
    return [{"name": f"p{i}", "port": 10_000 + i, "protocol": "HTTP/1"} for i in range(count)]


@pytest.mark.parametrize("name,limit,document", [
    ("ports per service", graph_module.MAX_PORTS_PER_SERVICE, lambda n: _one_service_graph(ports=_ports(n))),
    ("selector labels", graph_module.MAX_SELECTOR_LABELS,
     lambda n: _one_service_graph(selector={f"l{i}": "v" for i in range(n)})),
    ("callers", graph_module.MAX_CALLERS_PER_SERVICE, lambda n: _one_service_graph(allow=["s"] * n)),
    ("egress entries", graph_module.MAX_EGRESS_PER_SERVICE, lambda n: _one_service_graph(egress=[
        {"name": f"e{i}", "cidrs": ["203.0.113.0/24"], "ports": [443]} for i in range(n)])),
    ("egress destinations", graph_module.MAX_DESTINATIONS_PER_EGRESS, lambda n: _one_service_graph(egress=[
        {"name": "e", "hosts": [f"h{i}.example.com" for i in range(n)], "ports": [443]}])),
    ("port lists", graph_module.MAX_PORT_LIST, lambda n: {"namespaces": {"a": {"skipInboundPorts": list(range(1, n + 1))}},
                                                          "services": {}}),
    ("namespaces", graph_module.MAX_NAMESPACES, lambda n: {"namespaces": {f"n{i}": {} for i in range(n)}, "services": {}}),
])
def test_graph_limits_hold_at_the_limit_and_refuse_past_it(name, limit, document):
    assert _limit_problems(document(limit)) == []
    past = _limit_problems(document(limit + 1))
    assert len(past) == 1 and f"{limit + 1:,}" in past[0] and "docs/service-graph.md, 'Limits'" in past[0], past


@pytest.mark.parametrize("field,limit", [("ports", graph_module.MAX_PORTS), ("allow", graph_module.MAX_ALLOW_ENTRIES)])
def test_graph_wide_totals_are_counted_before_anything_is_read(field, limit):
    """Counted on the raw document: entries are placeholders nothing reads."""
    per_service = 100
    raw = {f"s{i}": {field: [None] * per_service} for i in range(limit // per_service)}
    problems = Problems()
    assert graph_module._within_totals(graph_module._Reader("services.yaml", problems), raw)
    raw["extra"] = {field: [None]}
    assert not graph_module._within_totals(graph_module._Reader("services.yaml", problems), raw)
    assert [p.what for p in problems.items] == [
        f"declare {limit + 1:,} {'ports' if field == 'ports' else 'allow entries'} in all, more than the limit of {limit:,}"]


def test_yaml_values_are_limited_before_the_document_is_built(monkeypatch):
    monkeypatch.setattr(inputs_module, "MAX_NODES", 10)
    load_yaml("a: [1, 2, 3, 4, 5, 6, 7]")  # the mapping, the key, the list and 7 items: 10 values
    with pytest.raises(InputError, match="more than 10 values"):
        load_yaml("a: [1, 2, 3, 4, 5, 6, 7, 8]")


def test_an_object_over_etcds_limit_is_refused():
    big = {"apiVersion": "policy.linkerd.io/v1alpha1", "kind": "MeshTLSAuthentication",
           "metadata": {"name": "checkout", "namespace": "web"}, "spec": {"identities": []}}
    frame = len(json.dumps(big, separators=(",", ":")))
    big["spec"]["identities"] = ["x" * (MAX_OBJECT_BYTES - frame - 2)]  # exactly the limit

    graph = parse_graph(EXAMPLE, "services.yaml", Problems())
    assert oversized_objects(graph, [big]) == []
    big["spec"]["identities"][0] += "x"
    [problem] = oversized_objects(graph, [big])
    assert problem.where == "services.yaml: services.checkout" and f"{MAX_OBJECT_BYTES + 1:,} bytes" in problem.what


def test_hints_stop_when_their_budget_is_spent(monkeypatch):
    """A graph of 10,000 services each calling a misspelled one would compare names for minutes."""
    from read import errors
    Problems()  # resets the budget
    monkeypatch.setattr(errors, "_hint_budget", 5)
    assert did_you_mean("fronted", ["frontend", "checkout"]) == "Did you mean 'frontend'?"
    assert did_you_mean("fronted", ["frontend", "checkout", "ledger", "billing"]) == ""


@pytest.mark.parametrize("text,named", [
    ("frontеnd", "Cyrillic 'е' U+0435 CYRILLIC SMALL LETTER IE"),
    ("front\u200bend", "U+200B ZERO WIDTH SPACE"),
    ("４８h", "Fullwidth '４' U+FF14 FULLWIDTH DIGIT FOUR"),
    ("ab\u202ec", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("ѕervice", "Cyrillic 'ѕ' U+0455 CYRILLIC SMALL LETTER DZE"),
])
def test_quoted_input_names_characters_that_are_not_what_they_seem(text, named):
    assert named in short(text)


def test_a_homoglyph_name_is_shown_for_what_it_is_end_to_end(tmp_path):
    document = copy.deepcopy(EXAMPLE)
    document["services"]["checkout"]["allow"] = ["frontеnd"]  # Cyrillic 'е'
    _graph_problem(tmp_path, document, "services.checkout.allow[0]", "Cyrillic 'е' U+0435")


# ---- fuzzing the classes issue 22 found -------------------------------------------------------------------------

BIG_NUMBERS = st.one_of(
    st.integers(4_301, 6_000).map(lambda n: "1" + "0" * n),
    st.integers(10, 3_000).map(lambda n: "0x" + "f" * n),
    st.integers(10, 3_000).map(lambda n: "0o" + "7" * n),
    st.integers(2, 2_000).map(lambda n: ":".join(["1"] * n)),
    st.integers(21, 400).map(lambda n: "-" + "9" * n),
)
YAML11_FORMS = st.sampled_from(["0443", "08080", "134:40", "1:30:00", "yes", "No", "on", "OFF", "y", "N", "1_000",
                                "0b1010", "-0x1f", "+0o17", "1_0.5", ".5", "1e3", "0x1F", "0o17", "2024-01-01", "~"])
MAPPED_V6 = st.sampled_from(["::ffff:10.0.0.0/104", "::ffff:0:0/96", "::/0", "64:ff9b::/96", "::ffff:a00:1/128",
                             "fe80::%eth0/64", "1.2.3.4", "::ffff:203.0.113.0/120", "2001:db8::/32"])
SCALAR_SLOTS = ["port: 8080", "allow: [frontend]", "namespace: web", "protocol: HTTP/1"]


@st.composite
def graph_with_hostile_scalar(draw) -> str:
    slot = draw(st.sampled_from(SCALAR_SLOTS))
    key = slot.split(":")[0]
    value = draw(st.one_of(BIG_NUMBERS, YAML11_FORMS))
    return SERVICES_YAML.replace(slot, f"{key}: {value}" if key != "allow" else f"allow: [{value}]", 1)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=graph_with_hostile_scalar(), stack=st.sampled_from(["dev", "staging"]))
def test_fuzz_numbers_and_yaml_1_1_forms_build_or_give_the_one_settings_error(tmp_path_factory, text, stack):
    graph_file = tmp_path_factory.mktemp("fuzz") / "services.yaml"
    graph_file.write_text(text)
    try:
        run = run_program(stack, set_config={"serviceGraph": str(graph_file)})
    except SettingsError as err:
        assert err.registrations == [] and err.problems
        assert all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
    else:
        _check_emitted(run)


@hypothesis_settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["ports", "allow", "namespaces", "labels", "egress"]), count=st.integers(0, 3_000))
def test_fuzz_many_small_nodes_are_bounded_or_accepted(kind, count):
    """Many tiny entries: each is either read or refused by a limit; parse_graph never takes the quadratic path."""
    if kind == "ports":
        document = _one_service_graph(ports=_ports(count) or _ports(1))
    elif kind == "allow":
        document = _one_service_graph(allow=["s"] * count)
    elif kind == "namespaces":
        document = {"namespaces": {f"n{i}": {} for i in range(count)}, "services": {}}
    elif kind == "labels":
        document = _one_service_graph(selector={f"l{i}": "v" for i in range(max(count, 1))})
    else:
        document = _one_service_graph(egress=[{"name": f"e{i}", "cidrs": ["203.0.113.0/24"], "ports": [443]}
                                              for i in range(count)])
    problems = Problems()
    parse_graph(document, "services.yaml", problems)
    assert all(len(str(p)) < MESSAGE_LIMIT for p in problems.items)


@hypothesis_settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cidr=MAPPED_V6, ports=st.lists(st.sampled_from([443, 0, 65536, "443", None]), min_size=0, max_size=3))
def test_fuzz_egress_addresses_build_or_give_the_one_settings_error(tmp_path_factory, cidr, ports):
    document = graph_with(**{"services/billing/egress": [{"name": "db", "cidrs": [cidr], "ports": ports}]})
    graph_file = tmp_path_factory.mktemp("fuzz") / "services.yaml"
    graph_file.write_text(graph_text(document))
    try:
        run = run_program("staging", set_config={"serviceGraph": str(graph_file)})
    except SettingsError as err:
        assert err.registrations == [] and all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
    else:
        _check_emitted(run)


URL_FORMS = st.sampled_from([
    "https://user:pass@vault.example.com:8200", "https://vault.example.com:0", "https://vault example.com",
    "https://vault.example.com/\u202e", "https://[::ffff:10.0.0.1]:8200", "http://vault:8200", "https://vault:8200/\n",
    "https://ѵault.example.com", "oci://ghcr.io/x", "https://" + "a" * 300 + ".com", "https://vault:99999999999999999999",
])
LIST_VALUES = st.one_of(
    st.sampled_from(["[" * 2_000, "[" + "1" * 5_000 + "]", '["a", 1e999999]', "[]", '[""]', '["a", "a"]', "{}",
                     '["::ffff:10.0.0.0/104"]', '["10.0.0.0/8", "::/0"]', '["web=deny"]', '["monitoring/prom"]',
                     json.dumps(["x"] * 101), '["frontеnd"]']),
    st.lists(st.text(max_size=12), max_size=4).map(json.dumps),
)
BOOLEAN_VALUES = st.sampled_from(["true", "false", "True", "yes", "1", "", "x", "TRUE\n", "0x1", "null"])


@hypothesis_settings(max_examples=25, deadline=None)
@given(stack=st.sampled_from(["dev", "staging", "prod"]), edits=st.one_of(
    st.dictionaries(st.sampled_from(LIST_SETTINGS), LIST_VALUES, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(BOOLEAN_SETTINGS), BOOLEAN_VALUES, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(["vaultAddress", "vaultKubernetesHost", "linkerdHelmRepository"]), URL_FORMS,
                    min_size=1, max_size=2),
))
def test_fuzz_every_list_boolean_and_url_setting_builds_or_gives_the_one_settings_error(stack, edits):
    try:
        run = run_program(stack, set_config=edits)
    except SettingsError as err:
        assert err.registrations == [] and err.problems
        assert all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
    else:
        _check_emitted(run)


# ---- issue 30: what a list of networks covers, selectors that overlap, URLs that carry a token ------------------

# 0.0.0.0/0 less 10.0.0.0/8, in the fewest CIDRs.
ALL_BUT_10 = ["0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2",
              "128.0.0.0/1"]
COVERING_EVERY_ADDRESS = [
    ["0.0.0.0/1", "128.0.0.0/1"],
    [f"{64 * i}.0.0.0/2" for i in range(4)],
    [f"{16 * i}.0.0.0/4" for i in range(16)],
    ["::/1", "8000::/1"],
    ["10.0.0.0/8", *ALL_BUT_10],
]


@pytest.mark.parametrize("key", ["kubeletNetworks", "prometheusNetworks"])
@pytest.mark.parametrize("networks", COVERING_EVERY_ADDRESS)
def test_networks_that_together_admit_every_address_are_refused_under_deny(key, networks):
    """staging enforces deny: the probe routes and /metrics would be open to every address without mTLS."""
    problem_at(rejected("staging", **{key: networks}), f"mtls-mesh:{key}", "admits every IPv")


@pytest.mark.parametrize("key,networks", [
    ("kubeletNetworks", ALL_BUT_10),
    ("prometheusNetworks", ["0.0.0.0/1"]),
    ("prometheusNetworks", ["10.0.0.0/8", "11.0.0.0/8", "12.0.0.0/8"]),
    ("kubeletNetworks", ["2400::/6"]),  # 2000::/3 would hold 6to4, so every IPv4 address
])
def test_networks_wider_than_a_slash_7_are_refused_under_deny(key, networks):
    problem_at(rejected("staging", **{key: networks}), f"mtls-mesh:{key}", "admits more IPv")


@pytest.mark.parametrize("stack", ["dev", "staging"])
@pytest.mark.parametrize("networks,family", [
    (["0.0.0.0/0"], "IPv4"),
    (["0.0.0.0/1", "128.0.0.0/1"], "IPv4"),
    (["10.0.0.0/8", *ALL_BUT_10], "IPv4"),
    # Every IPv6 range that is all of IPv6 holds the IPv4-mapped addresses, so every IPv4 address too.
    (["::/0"], "IPv4 and IPv6"),
    (["10.0.0.0/8", "::/1", "8000::/1"], "IPv4 and IPv6"),
])
def test_cluster_networks_that_cover_every_address_are_refused_in_every_phase(stack, networks, family):
    """Under deny the egress deny would be 0.0.0.0/0 except 0.0.0.0/0; in audit the setting is as wrong (the control
    plane reads it too), and a stack should not learn it the day it enforces."""
    problem_at(rejected(stack, clusterNetworks=networks), "mtls-mesh:clusterNetworks", f"covers every {family} address")


def _add_services(document: dict, **services) -> dict:
    document = copy.deepcopy(document)
    document["services"].update(services)
    return document


@pytest.mark.parametrize("services,where,words", [
    # The same selector as checkout's, on another port.
    ({"checkout-metrics": _service("web", ports=(("metrics", 9100),), selector={"app": "checkout"})},
     "services.checkout-metrics.selector", "selects pods that services.checkout selects too"),
    # A selector holding all of checkout's labels: every pod it selects carries app: checkout.
    ({"checkout-admin": _service("web", ports=(("admin", 9101),), selector={"app": "checkout", "tier": "admin"})},
     "services.checkout-admin.selector", "selects pods that services.checkout selects too"),
    # The proxy-free database: postgres' NetworkPolicy would admit its callers to the exporter's pods, and the
    # exporter's callers (frontend, not a caller of postgres) to the database's.
    ({"postgres-exporter": _service("data", ports=(("metrics", 9187),), allow=["frontend"], meshed=False,
                                    selector={"app.kubernetes.io/name": "postgres"})},
     "services.postgres-exporter.selector", "selects pods that services.postgres selects too"),
    # The other way round: a new service whose selector is part of an existing one's.
    ({"web-tier": _service("web", ports=(("http", 9102),), selector={"app": "catalog"}),
      "catalog": {"namespace": "web", "selector": {"app": "catalog", "track": "stable"},
                  "ports": [{"name": "grpc", "port": 9090, "protocol": "gRPC"}], "allow": ["frontend", "checkout"]}},
     "services.catalog.selector", "selects pods that services.web-tier selects too"),
])
def test_two_services_that_select_the_same_pods_are_refused_whatever_their_ports(tmp_path, services, where, words):
    _graph_problem(tmp_path, _add_services(EXAMPLE, **services), where, words)


def test_selectors_with_different_labels_may_share_a_namespace(tmp_path):
    """app: x and tier: web overlap only on a pod labelled with both, which the graph cannot see: allowed."""
    document = _add_services(EXAMPLE, **{"web-cache": _service("web", ports=(("http", 9103),), allow=["frontend"],
                                                               selector={"tier": "cache"})})
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text(graph_text(document))
    _check_emitted(run_program("staging", set_config={"serviceGraph": str(graph_file)}))


def test_many_services_on_one_selector_give_one_problem_each():
    """5,000 services with the same selector: 4,999 problems (each against the first), not 12.5 million pairs."""
    services = {f"s{i}": {"namespace": "a", "selector": {"app": "same"},
                          "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}]} for i in range(5_000)}
    problems = Problems()
    from read.graph import parse_graph
    parse_graph({"namespaces": {"a": {}}, "services": services}, "services.yaml", problems)
    overlaps = [p for p in problems.items if "selects pods that services.s0 selects too" in p.what]
    assert len(overlaps) == 4_999 and len(problems.items) == 4_999, len(problems.items)


def test_selectors_that_share_every_label_are_refused_past_the_comparison_limit(monkeypatch):
    """Distinct selectors built from a few shared labels defeat the rarest-label index: the comparisons are counted
    before any is made, and past the limit the namespace is refused instead of compared pair by pair."""
    from read import graph as graph_module
    from read.graph import parse_graph
    pool = [(f"l{i}", "x") for i in range(8)]
    import itertools
    services = {f"s{n}": {"namespace": "a", "selector": dict(labels), "ports": [
        {"name": "http", "port": 8080 + n, "protocol": "HTTP/1"}]}
        for n, labels in enumerate(itertools.combinations(pool, 4))}  # 70 selectors, none part of another
    document = {"namespaces": {"a": {}}, "services": services}
    problems = Problems()
    parse_graph(document, "services.yaml", problems)
    assert problems.items == []
    monkeypatch.setattr(graph_module, "MAX_SELECTOR_COMPARISONS", 100)
    problems = Problems()
    parse_graph(document, "services.yaml", problems)
    assert [p.where for p in problems.items] == ["services.yaml: namespaces.a"], [str(p) for p in problems.items]
    assert "more than the limit of 100" in problems.items[0].what and "a label of its own" in problems.items[0].fix


TOKEN = "s3cr3t-t0ken-9f8e7d"


@pytest.mark.parametrize("stack", ["dev", "staging"])
@pytest.mark.parametrize("key,url", [
    ("vaultAddress", f"https://vault.example.com:8200/?token={TOKEN}"),
    ("vaultAddress", f"https://vault.example.com:8200/#{TOKEN}"),
    ("vaultAddress", f"https://vault.example.com:8200/v1?x=1&token={TOKEN}#{TOKEN}"),
    ("vaultAddress", f"https://vault.example.com:8200/#frag?token={TOKEN}"),
    ("vaultKubernetesHost", f"https://k8s.example.com:6443/?token={TOKEN}"),
    ("vaultKubernetesHost", f"https://k8s.example.com:6443#access_token={TOKEN}"),
    ("linkerdHelmRepository", f"https://helm.example.com/edge?token={TOKEN}"),
    ("linkerdHelmRepository", f"oci://ghcr.io/linkerd/charts#{TOKEN}"),
    # Something else wrong as well: every message that quotes the URL hides the query and fragment.
    ("vaultAddress", f"https://vault example.com/?token={TOKEN}"),
    ("vaultAddress", f"https://vault.example.com:0/?token={TOKEN}"),
    ("vaultAddress", f"https://[vault.example.com/?token={TOKEN}"),
    ("vaultAddress", f"https://vаult.example.com/?token={TOKEN}"),
    ("vaultAddress", f"https://vault_1.example.com/?token={TOKEN}"),
    ("vaultAddress", f"ftp://vault.example.com/?token={TOKEN}"),
    ("vaultKubernetesHost", f"https://k8s\x7f.example.com:6443/?token={TOKEN}"),
    ("linkerdHelmRepository", f"ftp://helm.example.com/?token={TOKEN}"),
])
def test_a_url_with_a_token_is_refused_without_printing_the_token(stack, key, url):
    error = rejected(stack, **{key: url})
    assert [p for p in error.problems if p.where == f"mtls-mesh:{key}"], [str(p) for p in error.problems]
    assert TOKEN not in str(error) and "s3cr3t" not in str(error), str(error)


@pytest.mark.parametrize("key,url,shown", [
    ("vaultAddress", f"https://vault.example.com:8200/?token={TOKEN}#{TOKEN}",
     "'https://vault.example.com:8200/?<query hidden>#<fragment hidden>' has a query or fragment"),
    ("vaultKubernetesHost", f"https://k8s.example.com:6443#{TOKEN}",
     "'https://k8s.example.com:6443#<fragment hidden>' has a query or fragment"),
    ("linkerdHelmRepository", f"https://helm.example.com/edge?token={TOKEN}",
     "'https://helm.example.com/edge?<query hidden>' has a query or fragment"),
])
def test_a_quoted_url_shows_where_its_query_and_fragment_were(key, url, shown):
    problem_at(rejected("staging", **{key: url}), f"mtls-mesh:{key}", shown)


def test_a_long_value_says_how_much_of_it_is_shown():
    assert short("x" * 100) == f"'{'x' * 60}'... (the first 60 of 100 characters)"


# ---- fuzzing the classes issue 30 found --------------------------------------------------------------------------

@st.composite
def partition_of_a_family(draw, version: int) -> list[str]:
    """A random partition of all of IPv4 or IPv6 into CIDRs (split a random piece in halves, a few times), shuffled."""
    pieces = [ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")]
    for _ in range(draw(st.integers(1, 10))):
        index = draw(st.integers(0, len(pieces) - 1))
        pieces[index:index + 1] = list(pieces[index].subnets())
    return [str(p) for p in draw(st.permutations(pieces))]


@st.composite
def network_lists(draw) -> tuple[list[str], bool]:
    """(networks, whether they cover a whole family): one or two partitions, perhaps less a piece, plus a narrow
    network or two."""
    networks: list[str] = []
    covering = False
    for version in draw(st.sampled_from([(4,), (6,), (4, 6)])):
        pieces = draw(partition_of_a_family(version))
        if draw(st.booleans()):
            pieces = pieces[1:]  # no longer all, but still far wider than a /7
        else:
            covering = True
        networks += pieces
    networks += draw(st.lists(st.sampled_from(["10.20.0.0/20", "192.168.0.0/16", "fd00:42::/64"]), max_size=2,
                              unique=True))
    return list(dict.fromkeys(networks)), covering


@hypothesis_settings(max_examples=20, deadline=None)
@given(stack=st.sampled_from(["dev", "staging"]),
       key=st.sampled_from(["kubeletNetworks", "prometheusNetworks", "clusterNetworks"]), drawn=network_lists())
def test_fuzz_networks_that_cover_everything_however_written(stack, key, drawn):
    """Whatever the partition: under deny (staging) every list is refused, as is every clusterNetworks; audit (dev)
    builds the others. Never a traceback; what is built grants nothing wider than the graph."""
    networks, covering = drawn
    enforced = stack == "staging" or key == "clusterNetworks"
    try:
        run = run_program(stack, set_config={key: networks})
    except SettingsError as err:
        assert err.registrations == [] and all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
        here = [p.what for p in err.problems if p.where == f"mtls-mesh:{key}"]
        assert enforced and here, [str(p) for p in err.problems]
        assert any(("every IPv" if covering else "IPv") in what for what in here), here
    else:
        assert not enforced, f"{key} {networks} built in {stack}"
        _check_emitted(run)


LABEL_POOL = [("app", "checkout"), ("app", "xa"), ("app", "yb"), ("tier", "web"), ("team", "shop")]


def _overlapping_pair(selectors: dict[str, dict[str, str]]) -> bool:
    items = [frozenset(s.items()) for s in selectors.values()]
    return any(a <= b for i, a in enumerate(items) for j, b in enumerate(items) if i != j)


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(selectors=st.lists(st.lists(st.sampled_from(LABEL_POOL), min_size=1, max_size=3).map(dict),
                          min_size=1, max_size=4),
       meshed=st.lists(st.booleans(), min_size=4, max_size=4))
def test_fuzz_services_whose_selectors_overlap(tmp_path_factory, selectors, meshed):
    """New services in namespace web (beside frontend, checkout and catalog, each app: <name>) on ports of their own:
    refused exactly when one selector holds all of another's labels in the namespace, else built with no service's
    pods under another's policy."""
    new = {f"n{i}": _service("web", ports=((f"p{i}", 7000 + i),), allow=["frontend"], selector=selector,
                             **({} if meshed[i] else {"meshed": False}))
           for i, selector in enumerate(selectors)}
    document = _add_services(EXAMPLE, **new)
    in_web = {key: s.get("selector", {"app": key}) for key, s in document["services"].items()
              if s["namespace"] == "web"}
    graph_file = tmp_path_factory.mktemp("fuzz") / "services.yaml"
    graph_file.write_text(graph_text(document))
    try:
        run = run_program("staging", set_config={"serviceGraph": str(graph_file)})
    except SettingsError as err:
        assert err.registrations == [] and all(len(str(p)) < MESSAGE_LIMIT for p in err.problems)
        assert _overlapping_pair(in_web), [str(p) for p in err.problems]
        assert any(p.where.endswith(".selector") and "selects pods that services." in p.what for p in err.problems)
    else:
        assert not _overlapping_pair(in_web), f"built with overlapping selectors: {in_web}"
        _check_emitted(run)


URL_BASES = ["https://vault.example.com:8200", "https://vault.example.com:8200/v1", "http://vault.internal:8200",
             "https://vault example.com", "https://vault.example.com:0", "https://[vault.example.com",
             "oci://ghcr.io/x",
             "https://vаult.example.com", "https://vault_1.example.com", "https://u:pw@vault.example.com", "vault",
             "https://vault.example.com:99999", "ftp://vault.example.com"]
URL_TAILS = ["?token={}", "#{}", "?a=1&token={}", "?x#{}", "#x?token={}", "/?{}=1", "?token={}#{}", "?{}"]


@hypothesis_settings(max_examples=30, deadline=None)
@given(stack=st.sampled_from(["dev", "staging"]),
       key=st.sampled_from(["vaultAddress", "vaultKubernetesHost", "linkerdHelmRepository"]),
       base=st.sampled_from(URL_BASES), tail=st.sampled_from(URL_TAILS),
       token=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%",
                     min_size=12, max_size=40))
def test_fuzz_urls_with_a_token_never_print_it(stack, key, base, tail, token):
    """A query or fragment is always refused, and no message quotes it, whatever else is wrong with the URL."""
    url = base + tail.format(token, token)
    with pytest.raises(SettingsError) as caught:
        run_program(stack, set_config={key: url})
    error = caught.value
    assert error.registrations == [] and all(len(str(p)) < MESSAGE_LIMIT for p in error.problems)
    assert [p for p in error.problems if p.where == f"mtls-mesh:{key}"], [str(p) for p in error.problems]
    assert token not in str(error), str(error)
