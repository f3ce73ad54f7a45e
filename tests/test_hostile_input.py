"""Hostile and careless input: every case gives one SettingsError naming the key or graph path, quickly, with a short
message, and registers nothing. Never a crash, a hang, a traceback or a silently different mesh.

Each case here was found by fuzzing the program (issue 13); the fuzz tests at the end keep looking for new ones.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from components.errors import Problems, SettingsError
from components.graph import MAX_SERVICES
from components.inputs import MAX_GRAPH_BYTES
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
        from components.errors import Problems
        from components.graph import load_graph
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
    from components.graph import parse_graph
    assert parse_graph(document, "services.yaml", problems) is None
    assert [str(p) for p in problems.items] == [
        f"services.yaml: services: lists {MAX_SERVICES + 1:,} services, more than the limit of {MAX_SERVICES:,}. "
        "Split the platform into several stacks (see README, 'Limits')"]


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
