"""The published JSON Schemas (schema/*.schema.json): current, valid, named by the files they describe, accepting the
examples as an editor reads them, never flagging what the program accepts, and refusing every error case the
validator's tests know unless the case belongs to a rule a schema cannot state (graph_format.CANNOT_CHECK,
settings_format.CANNOT_CHECK, listed in docs/schemas.md).

Patterns are evaluated as editors evaluate them (ECMA-262, through check-jsonschema's regress binding), not with
Python's `re`, whose `$` would also accept a trailing newline.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import pytest
import yaml
from hypothesis import given, settings as hypothesis_settings, strategies as st
from check_jsonschema.regex_variants import RegexImplementation, RegexVariantName

import test_fragments
import test_graph
import test_hostile_input as hostile
import test_input_rules as input_rules
import test_multicluster_graph as multicluster
import test_settings
from read import graph_format, inputs, schema, settings_format
from read.errors import Problems, SettingsError
from read.graph import load_graph, parse_graph
from plan.mesh import compile_mesh
from read.settings import load_declarations, load_settings
from read.stack_files import SECRET_PLACEHOLDER, read_stack_file, wire_value
from harness import PROJECT_DIR, STACKS, stack_file

SCHEMA_DIR = PROJECT_DIR / "schema"
GRAPH_SCHEMA = json.loads((SCHEMA_DIR / "services.schema.json").read_text())
FRAGMENT_SCHEMA = json.loads((SCHEMA_DIR / "services-fragment.schema.json").read_text())
STACK_SCHEMA = json.loads((SCHEMA_DIR / "stack-settings.schema.json").read_text())
EXAMPLE = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())

_ECMA = RegexImplementation(RegexVariantName.default)
DECLARATIONS = load_declarations()

EditorValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"pattern": _ECMA.pattern_keyword, "patternProperties": _ECMA.patternProperties_keyword})
GRAPH = EditorValidator(GRAPH_SCHEMA)
FRAGMENT = EditorValidator(FRAGMENT_SCHEMA)
STACK = EditorValidator(STACK_SCHEMA)


# ---- the files --------------------------------------------------------------------------------------------------

def test_the_committed_schemas_are_the_generated_ones():
    for name, text in schema.generated().items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == text, \
            f"schema/{name} is stale: run python -m read.schema --write"


def test_the_check_command_finds_a_stale_schema(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "SCHEMA_DIR", tmp_path)
    assert schema.main(["--write"]) == 0 and schema.main(["--check"]) == 0
    (tmp_path / "services.schema.json").write_text("{}\n")
    assert schema.main(["--check"]) == 1


def _patterns(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern":
                yield value
            elif key == "patternProperties":
                yield from value
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


@pytest.mark.parametrize("document", [GRAPH_SCHEMA, FRAGMENT_SCHEMA, STACK_SCHEMA],
                         ids=["services", "services-fragment", "stack-settings"])
def test_each_schema_is_valid_draft_2020_12_with_ecma_patterns(document):
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    patterns = list(_patterns(document))
    assert patterns
    for pattern in patterns:
        assert _ECMA.check_format(pattern), f"not an ECMA-262 regular expression: {pattern}"


FRAGMENT_FILES = sorted((PROJECT_DIR / "examples" / "services.d").glob("*.yaml"))
EDITED_FILES = [PROJECT_DIR / "services.yaml", *FRAGMENT_FILES, *(stack_file(stack) for stack in STACKS)]
_MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.MULTILINE)


@pytest.mark.parametrize("path", EDITED_FILES, ids=lambda p: p.name)
def test_each_file_names_its_schema_for_vs_code_and_jetbrains(path):
    lines = path.read_text().splitlines()
    match = _MODELINE.match(lines[0])
    assert match, f"{path.name}: the first line must be '# yaml-language-server: $schema=<path>'"
    assert lines[1] == f"# $schema: {match.group(1)}", f"{path.name}: the second line is JetBrains' form of the first"
    target = (path.parent / match.group(1)).resolve()
    expected = ("services.schema.json" if path.name == "services.yaml" else
                "services-fragment.schema.json" if path in FRAGMENT_FILES else "stack-settings.schema.json")
    assert target == SCHEMA_DIR / expected


def test_the_examples_validate_as_an_editor_reads_them():
    """check-jsonschema reads the YAML files themselves (YAML, not the program's parse) with the schema each names."""
    by_schema: dict[Path, list[str]] = {}
    for path in EDITED_FILES:
        target = (path.parent / _MODELINE.match(path.read_text()).group(1)).resolve()
        by_schema.setdefault(target, []).append(str(path))
    for target, files in by_schema.items():
        result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(target), *files],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_an_editor_flags_a_bad_file(tmp_path):
    """The same command fails on a wrong value, so the test above can fail."""
    bad = tmp_path / "services.yaml"
    bad.write_text((PROJECT_DIR / "services.yaml").read_text().replace("protocol: gRPC", "protocol: grpc", 1))
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile",
                             str(SCHEMA_DIR / "services.schema.json"), str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "grpc" in result.stdout


# ---- the declarations -------------------------------------------------------------------------------------------

def _declared_patterns() -> dict[str, graph_format.Pattern]:
    return {f"{module.__name__}.{name}": value for module in (graph_format, settings_format)
            for name, value in vars(module).items() if isinstance(value, graph_format.Pattern)}


# Strings on which a regex engine's dialect shows: a trailing newline (Python's `$`), other scripts' digits and
# letters (Python's \d and \w), invisible characters, lengths around the limits, and ordinary good values.
_PROBES = ["", "a", "web", "web\n", "\nweb", "a-b", "-a", "a-", "٣", "４８h", "48h", "48h0m0s", " 48h ", "1.5h",
           "ａpp", "app.kubernetes.io/name", "linkerd.io/x", "a" * 63, "a" * 64, "a" * 253 + "/" + "b" * 63,
           "a" * 254 + "/b", "10.0.0.0/8", "2001:db8::/32", "2001:DB8::/32", "api.stripe.com", "*.googleapis.com",
           "x.svc.cluster.local", "https://vault.example.com:8200", "HTTPS://V", "oci://r/x", "http://a b",
           "monitoring/kube-prometheus-stack-prometheus", "release=kube-prometheus-stack", "legacy=audit",
           "v1.21.1", "2026.8.3", "100m", "64Mi", "docker.io/traefik/whoami:v1.10.3", "warn,linkerd=info",
           "a\u200bb", "a\u202eb", "a\ufeffb", "a\x85b", "a\u00a0b", "http", "grpc", "9090", "-1", "123"]


@pytest.mark.parametrize("name,pattern", sorted(_declared_patterns().items()))
def test_each_pattern_means_the_same_to_python_and_to_editors(name, pattern):
    """The validator matches with Python's re, editors with ECMA-262: a pattern must decide every probe alike."""
    editor = EditorValidator({"type": "string", "pattern": pattern.ecma})
    for probe in _PROBES:
        assert pattern.matches(probe) == editor.is_valid(probe), f"{name} disagrees on {probe!r}"


def test_the_invisible_characters_are_the_validators():
    """settings._invisible_character refuses Unicode categories Cc, Cf, Zl and Zp; the schema's class must hold
    exactly those of the Basic Multilingual Plane."""
    import unicodedata

    text = settings_format.TEXT.python
    for code in range(0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates: no character of their own
        invisible = unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
        assert (text.match(char) is None) == invisible, f"U+{code:04X} {unicodedata.name(char, '')}"


def test_every_constrained_setting_is_declared():
    declared = set(load_declarations())
    assert set(settings_format.VALUES) <= declared, set(settings_format.VALUES) - declared
    assert set(settings_format.MIN_ITEMS) | set(settings_format.UNIQUE_ITEMS) <= declared


def test_the_docs_list_what_the_schema_cannot_check():
    page = (PROJECT_DIR / "docs" / "schemas.md").read_text()
    section = page.split("\n## What the schema cannot check\n", 1)[1].split("\n#", 1)[0]
    for rule in (*graph_format.CANNOT_CHECK, *settings_format.CANNOT_CHECK):
        assert f"**{rule.name}**" in section, \
            f"docs/schemas.md, 'What the schema cannot check', does not list {rule.name!r}"


# ---- error cases ------------------------------------------------------------------------------------------------
#
# Every error case of the validator's tests, as (stack, settings changes, graph document or None, where): `where` is a
# config key (mtls-mesh:<key>) or a graph path (services.billing.egress[0]). The validator is run on each case (pure:
# load_settings) to get its real message there; the schema must refuse the case at that place, or the message must
# belong to a CANNOT_CHECK rule. Cases that are not documents at all (a FIFO, bytes that are not UTF-8) are classified
# by their words alone.

def _where(error: jsonschema.ValidationError) -> str:
    """A schema error's location written as the reader writes paths: services.billing.egress[0].name."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _locates(error: jsonschema.ValidationError, where: str, *, strip: str = "") -> bool:
    """Whether the schema error is about the place the validator names: the same key, one that contains it, or one
    inside it (the schema may be more precise: the egress entry's `hosts` where the reader names the entry)."""
    path = _where(error)
    if strip and path.startswith(strip):
        path = path[len(strip):].lstrip(".")
    if not path:  # a missing required key, or a whole-document problem: the message names the key
        return not where or where.split(".")[0].split("[")[0] in error.message
    return where == path or where.startswith((f"{path}.", f"{path}[")) or path.startswith((f"{where}.", f"{where}["))


def classify(validator, document: Any, where: str, message: str, rules, *, strip: str = "") -> str:
    """'refused' if the schema refuses the document at (or above) `where`; otherwise the name of the rule the
    validator's message belongs to. Fails if neither: a new rule must be stated in the schema or classified."""
    errors = list(validator.iter_errors(document))
    if any(_locates(e, where, strip=strip) for e in errors):
        return "refused"
    assert not errors, (f"the schema refuses this input elsewhere than at {where!r}: "
                        f"{[(_where(e), e.message[:100]) for e in errors]}")
    return _rule(message, rules, where)


def _rule(message: str, rules, where: str = "") -> str:
    names = [rule.name for rule in rules if any(fragment in message for fragment in rule.messages)]
    assert names, (f"the schema accepts the input the validator refuses with {message!r} at {where!r}: state the rule "
                   "in the format (read/graph_format.py or settings_format.py), or add it to CANNOT_CHECK "
                   "there and to docs/schemas.md, 'What the schema cannot check'")
    return names[0]


def _stack_document(stack: str, changes: dict[str, Any], unset: Iterable[str] = ()) -> dict[str, Any]:
    document = yaml.safe_load(stack_file(stack).read_text())
    config = document["config"]
    for key in unset:
        config.pop(f"mtls-mesh:{key}", None)
    for key, value in changes.items():
        config[key if ":" in key else f"mtls-mesh:{key}"] = value
    return document


_CONFIG_KEY = re.compile(r"[a-z][-a-z0-9]*:[A-Za-z]")


def _messages(stack: str, document: dict[str, Any], where: str, graph: Any, tmp_path: Path) -> str:
    """What the validator says at `where` about a stack file (as read_stack_file hands it over) and graph."""
    config, secret_keys = {}, set()
    for key, value in document["config"].items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key], secret_keys = SECRET_PLACEHOLDER, secret_keys | {key}
        else:
            config[key] = wire_value(value)
    if graph is not None:
        graph_file = tmp_path / "graph.yaml"
        graph_file.write_text(yaml.safe_dump(graph))
        config["mtls-mesh:serviceGraph"] = str(graph_file)
        config["mtls-mesh:allowFilesOutsideProject"] = "true"
    try:
        # The checks that need the compiled objects (name collisions, object sizes) run on the plan, after the settings.
        compile_mesh(load_settings(config, stack, secret_keys=frozenset(secret_keys), declarations=DECLARATIONS))
    except SettingsError as err:
        here = [p for p in err.problems if p.where in (where, f"{where}[0]") or p.where.endswith(f": {where}")
                or (not where and graph is not None and p.where == str(tmp_path / "graph.yaml"))]
        return " | ".join(str(p) for p in here)
    return ""


def check_case(tmp_path: Path, stack: str, changes: dict[str, Any], graph: Any, where: str,
               unset: Iterable[str] = ()) -> str:
    if graph is None and where.split("[")[0] in (*DECLARATIONS, *settings_format.SECRET_SETTINGS):
        where = f"mtls-mesh:{where}"
    document = _stack_document(stack, changes, unset)
    message = _messages(stack, document, where, graph, tmp_path)
    assert message, f"the validator reports nothing at {where!r}: the case is not converted right"
    if graph is not None and not _CONFIG_KEY.match(where):
        return classify(GRAPH, graph, where, message, graph_format.CANNOT_CHECK)
    # A problem reported under the graph file's own name is about the value of the setting that names the file.
    located = where if _CONFIG_KEY.match(where) else "mtls-mesh:serviceGraph"
    return classify(STACK, document, located, message, settings_format.CANNOT_CHECK, strip="config")


class Words:
    """A case that is no document (a FIFO, bytes that are not UTF-8, YAML that does not parse): its words must belong
    to a CANNOT_CHECK rule."""

    def __init__(self, words: Any, rules=graph_format.CANNOT_CHECK):
        self.words = " ".join(words) if isinstance(words, tuple) else str(words)
        self.rules = rules


class GraphText:
    """Graph text the program refuses while reading it (before there is a document an editor would validate): the
    reader's message must belong to a CANNOT_CHECK rule."""

    def __init__(self, text: str):
        self.text = text

    def message(self, tmp_path: Path) -> str:
        path = tmp_path / "graph.yaml"
        path.write_text(self.text)
        problems = Problems()
        assert load_graph(path, "services.yaml", problems) is None, "the case must be one the reader refuses"
        return " | ".join(str(p) for p in problems.items)


class FragmentCase:
    """A graph split per team (test_fragments): the problem at `where` (`services.d/<file>: <path>`) must be refused by
    the fragment schema in that file at that path, or belong to a CANNOT_CHECK rule (team boundaries, references)."""

    def __init__(self, files: dict, where: str):
        self.files = files
        self.file, _, self.path = where.partition(": ")

    def check(self, tmp_path: Path) -> str:
        _, problems = test_fragments.load(tmp_path, self.files)
        message = " | ".join(p for p in problems if p.startswith(f"{self.file}: {self.path}".rstrip(": ")))
        assert message, f"the reader reports nothing at {self.file}: {self.path}"
        document = self.files[self.file.rpartition("/")[2]]
        if isinstance(document, str):  # text the reader refuses before there is a document
            return _rule(message, graph_format.CANNOT_CHECK)
        return classify(FRAGMENT, document, self.path, message, graph_format.CANNOT_CHECK)


class ClusterCase:
    """A cluster stack of a multi-cluster environment (test_multicluster_graph): the example's two cluster stacks
    (`two_clusters`, or one stack alone with `solo`) written beside each other, with `graph` as their service graph
    when given. The problem at `where` of `stack` (its settings read with its peers' files, then compiled) must be
    refused there by the stack schema (a config key) or the graph schema (a graph path), or belong to a CANNOT_CHECK
    rule: a schema sees one file, never the peers' files nor, from a stack file, the graph's clusters."""

    def __init__(self, where: str, stack: str = "dev-east", east: dict | None = None, west: dict | None = None,
                 solo: dict | None = None, graph: dict | None = None):
        self.where, self.stack, self.east, self.west, self.solo, self.graph = where, stack, east, west, solo, graph

    def check(self, tmp_path: Path) -> str:
        east, west = dict(self.east or {}), dict(self.west or {})
        if self.graph is not None:
            (tmp_path / "services.yaml").write_text(yaml.safe_dump(self.graph))
            own = {"serviceGraph": str(tmp_path / "services.yaml"), "allowFilesOutsideProject": True}
            east, west = {**own, **east}, {**own, **west}
        if self.solo is not None:
            multicluster.write_stack(tmp_path, self.stack, **self.solo)
        else:
            multicluster.two_clusters(tmp_path, east=east, west=west)
        try:
            compile_mesh(multicluster.load(tmp_path, self.stack))
            problems = []
        except SettingsError as err:
            problems = err.problems
        graph_path = not _CONFIG_KEY.match(self.where)
        here = [str(p) for p in problems if (p.where.endswith(f": {self.where}") if graph_path else p.where == self.where)]
        message = " | ".join(here)
        assert message, f"the validator reports nothing at {self.where!r}: {[str(p) for p in problems]}"
        if graph_path:
            return classify(GRAPH, self.graph if self.graph is not None else multicluster.example_graph(), self.where,
                            message, graph_format.CANNOT_CHECK)
        document = yaml.safe_load((tmp_path / f"Pulumi.{self.stack}.yaml").read_text())
        return classify(STACK, document, self.where, message, settings_format.CANNOT_CHECK, strip="config")


def _placement(edit, where: str) -> dict:
    """test_multicluster_graph.test_bad_placement_is_refused_with_its_graph_path's graph, as that test edits it."""
    document = multicluster.example_graph()
    edit(document)
    if where == "services.checkout.export":
        for service in document["services"].values():
            service.pop("clusters", None)
            service.pop("export", None) if service is not document["services"]["checkout"] else None
    return document


def _gateway_needing_per_caller_policy() -> dict:
    """test_multicluster_graph.test_a_gateway_export_that_would_need_per_caller_policy_is_refused's graph."""
    document = multicluster.example_graph()
    document["services"]["ledger"]["ports"].append({"name": "admin", "port": 9000, "protocol": "HTTP/1"})
    document["services"]["ledger"]["allow"] = ["billing", {"service": "reporter", "ports": ["admin"]},
                                               {"service": "frontend", "ports": ["http"]}]
    return document


def _edited_example(edit) -> dict:
    document = multicluster.example_graph()
    edit(document)
    return document


def _unexported_callee() -> dict:
    document = multicluster.example_graph()
    del document["services"]["billing"]["export"]
    return document


def _with(edit) -> dict:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def _services(**services) -> dict:
    return _with(lambda d: d["services"].update(services))


def _egress(cidrs=(), hosts=()) -> dict:
    entry = {"name": "ext", "ports": [443], **({"cidrs": list(cidrs)} if cidrs else {}),
             **({"hosts": list(hosts)} if hosts else {})}
    return _with(lambda d: d["services"]["billing"].update(egress=[entry]))


# Where the reader reports each limit of test_hostile_input's one-service graphs.
_LIMIT_PLACES = {"ports per service": "services.s.ports", "selector labels": "services.s.selector",
                 "callers": "services.s.allow", "egress entries": "services.s.egress",
                 "egress destinations": "services.s.egress[0]", "port lists": "namespaces.a.skipInboundPorts",
                 "namespaces": "namespaces"}


def _from_bad_graph(edit, expected):
    _, where, _ = expected.split(": ", 2)
    return ("dev", {}, test_graph.edited(edit), where)


# Each parametrized test of the validator's test modules -> (stack, changes, graph, where), or Words, per parameter
# set; None for tests that are not error cases. test_every_parametrized_test_is_considered fails for a new one.
CONVERTERS: dict[str, Any] = {
    "test_graph.test_bad_graph_is_rejected_naming_the_path": _from_bad_graph,
    "test_settings.test_bad_setting_is_rejected_naming_its_key":
        lambda stack, changes, removed, key, words: (stack, changes, None, key, removed),
    "test_settings.test_durations_parse_as_go_writes_them": None,
    "test_settings.test_malformed_durations_are_refused":  # Duration.parse itself, as trustAnchorValidity reads it
        lambda text: ("dev", {"trustAnchorValidity": text}, None, "trustAnchorValidity"),
    "test_settings.test_rotation_phase_decides_bundle_and_issuing_anchor": None,
    "test_hostile_input.test_a_key_written_twice_is_an_error_not_last_one_wins": lambda text, words: Words(words),
    "test_hostile_input.test_a_fifo_is_refused_without_blocking": lambda key: Words("is a named pipe"),
    "test_hostile_input.test_a_device_is_refused_without_reading_it": lambda key: Words("is a device"),
    "test_hostile_input.test_bad_values_are_settings_errors":
        lambda stack, changes, key, words: (stack, changes, None, key),
    "test_hostile_input.test_a_trailing_newline_is_not_part_of_a_valid_name":
        lambda where, edit: ("dev", {}, _with(edit), where.rstrip("\n") + "\n"),
    "test_hostile_input.test_names_that_collide_with_other_objects_are_refused":
        lambda services, where, words: ("staging", {}, _services(**services), where),
    "test_hostile_input.test_the_proxys_own_ports_are_not_application_ports":
        lambda port: ("dev", {}, hostile.graph_with(**{"services/frontend/ports": [
            {"name": "http", "port": port, "protocol": "HTTP/1"}]}), "services.frontend.ports[0].port"),
    "test_hostile_input.test_egress_cidrs_inside_the_cluster_are_refused":
        lambda cidr: ("staging", {}, hostile.graph_with(**{"services/billing/egress": [
            {"name": "db", "cidrs": [cidr], "ports": [5432]}]}), "services.billing.egress[0].cidrs[0]"),
    "test_hostile_input.test_a_huge_number_in_the_graph_is_one_settings_error":
        lambda replacement: GraphText(hostile.SERVICES_YAML.replace("port: 8080", replacement, 1)),
    "test_hostile_input.test_a_huge_hex_number_anywhere_is_refused_when_read":
        lambda field, text: GraphText(hostile.SERVICES_YAML.replace(hostile.ONE_PORT, hostile.ONE_PORT + text, 1)),
    "test_hostile_input.test_yaml_forms_other_readers_read_differently_are_refused": lambda value, words: Words(words),
    "test_hostile_input.test_yaml_is_read_as_yaml_1_2": None,
    "test_hostile_input.test_quoted_input_names_characters_that_are_not_what_they_seem": None,
    "test_hostile_input.test_a_hostile_json_list_setting_is_one_settings_error":
        lambda key, value: ("dev", {key: value}, None, key),
    "test_hostile_input.test_list_settings_are_limited_in_entries":
        lambda key: ("dev", {key: ["x"] * (settings_format.LIST_SETTING_LIMITS.get(key, settings_format.MAX_LIST_ENTRIES)
                                           + 1)}, None, key),
    "test_hostile_input.test_graph_limits_hold_at_the_limit_and_refuse_past_it":
        lambda name, limit, document: ("dev", {}, document(limit + 1), _LIMIT_PLACES[name]),
    "test_hostile_input.test_graph_wide_totals_are_counted_before_anything_is_read":
        lambda field, limit: Words("in all, more than the limit"),
    "test_hostile_input.test_networks_that_together_admit_every_address_are_refused_under_deny":
        lambda key, networks: ("staging", {key: networks}, None, key),
    "test_hostile_input.test_networks_wider_than_a_slash_7_are_refused_under_deny":
        lambda key, networks: ("staging", {key: networks}, None, key),
    "test_hostile_input.test_cluster_networks_that_cover_every_address_are_refused_in_every_phase":
        lambda stack, networks, family: (stack, {"clusterNetworks": networks}, None, "clusterNetworks"),
    "test_hostile_input.test_two_services_that_select_the_same_pods_are_refused_whatever_their_ports":
        lambda services, where, words: ("staging", {}, _services(**services), where),
    "test_hostile_input.test_a_url_with_a_token_is_refused_without_printing_the_token":
        lambda stack, key, url: (stack, {key: url}, None, key),
    "test_hostile_input.test_the_grant_checks_can_fail": None,
    "test_hostile_input.test_a_quoted_url_shows_where_its_query_and_fragment_were":
        lambda key, url, shown: ("staging", {key: url}, None, key),
    "test_input_rules.test_a_grant_wider_than_the_graph_is_refused":
        lambda edit, where, words: ("staging", {}, input_rules.graph_with(edit), where),
    "test_input_rules.test_an_egress_cidr_must_be_what_a_network_policy_accepts":
        lambda cidr, words: ("staging", {}, _egress(cidrs=[cidr]), "services.billing.egress[0].cidrs[0]"),
    "test_input_rules.test_ipv6_egress_that_reaches_the_cluster_is_refused":
        lambda cidr, cluster: ("staging", {"clusterNetworks": cluster}, _egress(cidrs=[cidr]),
                               "services.billing.egress[0].cidrs[0]"),
    "test_input_rules.test_an_egress_host_must_be_a_dns_name_outside_the_cluster":
        lambda host, words: ("staging", {}, _egress(hosts=[host]), "services.billing.egress[0].hosts[0]"),
    "test_input_rules.test_a_label_key_is_a_qualified_name":
        lambda key, words: ("staging", {}, _with(lambda d: d["services"]["frontend"].update(selector={key: "x"})),
                            f"services.frontend.selector.{key[:60]}..."),
    "test_input_rules.test_monitoring_label_keys_are_qualified_names":
        lambda entry: ("dev", {"monitoringLabels": [entry]}, None, "monitoringLabels[0]"),
    "test_input_rules.test_a_setting_refused_later_upstream_is_refused_now":
        lambda stack, changes, key, words: (stack, changes, None, key),
    "test_input_rules.test_a_url_setting_is_refused_before_it_is_copied_anywhere":
        lambda key, url, words: ("staging", {key: url, "vaultCaBundleFile": ""}, None, key),
    "test_input_rules.test_a_file_outside_the_project_is_refused_and_not_read":
        lambda key: ("staging", {key: "/etc/hostname", "allowFilesOutsideProject": False}, None, key),
    "test_input_rules.test_a_file_that_is_not_a_graph_is_never_quoted":
        lambda content: ("staging", {}, yaml.safe_load(content), ""),
    "test_input_rules.test_every_declared_setting_is_validated_in_every_mode":
        lambda key: ("dev", {key: input_rules.WRONG[DECLARATIONS[key].type]}, None, key),
    "test_input_rules.test_every_boolean_says_what_it_accepts": lambda key: ("dev", {key: "x"}, None, key),
    "test_fragments.test_the_example_directory_compiles_to_the_plan_of_services_yaml": None,
    "test_fragments.test_a_bad_fragment_is_refused_naming_the_file_and_path":
        lambda files, where, words: FragmentCase(files, where),
    "test_multicluster_graph.test_a_peer_that_disagrees_is_refused_naming_the_key_and_its_file":
        lambda west, where, words: ClusterCase(f"mtls-mesh:{where}", west=west),
    "test_multicluster_graph.test_a_peer_whose_cluster_peers_are_no_list_is_refused_as_such":
        lambda listed, shown: ClusterCase("mtls-mesh:clusterPeers[0]", west={"clusterPeers": listed}),
    "test_multicluster_graph.test_bad_cluster_settings_are_refused_one_problem_each":
        lambda east, where, words: ClusterCase(f"mtls-mesh:{where}", east=east),
    "test_multicluster_graph.test_cluster_settings_without_a_cluster_are_refused":
        lambda key, value: ClusterCase(f"mtls-mesh:{key}", stack="dev-solo", solo={key: value}),
    "test_multicluster_graph.test_bad_placement_is_refused_with_its_graph_path":
        lambda edit, where, words: ("dev", {}, _placement(edit, where), where),
    "test_multicluster_graph.test_a_mirror_linkerd_cannot_make_or_would_clash_is_refused_at_the_export":
        lambda edit, where, words: ("dev", {}, _edited_example(edit), where),
    # Generated graphs: refusals there are only assumed away, no case to classify.
    "test_multicluster_graph.test_generated_graphs_admit_exactly_their_cross_cluster_edges": None,
}
MODULES = {"test_graph": test_graph, "test_settings": test_settings, "test_hostile_input": hostile,
           "test_input_rules": input_rules, "test_fragments": test_fragments, "test_multicluster_graph": multicluster}


def _parameter_sets(function) -> list[tuple] | None:
    """The parameters of each case of a parametrized test, in the order of the function's arguments (stacked
    parametrize marks multiply)."""
    marks = [m for m in getattr(function, "pytestmark", ()) if m.name == "parametrize"]
    if not marks:
        return None
    sets: list[dict[str, Any]] = [{}]
    for mark in marks:
        names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else list(mark.args[0])
        values = [tuple(v) if len(names) > 1 else (v,) for v in mark.args[1]]
        sets = [{**done, **dict(zip(names, value))} for done in sets for value in values]
    order = [a for a in inspect.signature(function).parameters if a in sets[0]]
    return [tuple(one[a] for a in order) for one in sets]


def _parametrized() -> dict[str, list[tuple]]:
    found = {}
    for module_name, module in MODULES.items():
        for name, function in vars(module).items():
            sets = _parameter_sets(function) if name.startswith("test_") else None
            if sets is not None:
                found[f"{module_name}.{name}"] = sets
    return found


PARAMETRIZED = _parametrized()
CASES = [(f"{test}[{index}]", CONVERTERS[test](*params)) for test, sets in PARAMETRIZED.items()
         if CONVERTERS.get(test) for index, params in enumerate(sets)]

_CLUSTER_VAULT = {"pkiMode": "vault", "vaultAddress": "https://vault.example.internal:8200",
                  "vaultIntermediateTtl": "4380h",
                  "vaultKubernetesHost": "https://api.example.internal:6443",
                  "vaultCaBundleFile": "stacks/ca/example-internal-ca.pem",
                  "vaultKubernetesCaFile": "stacks/ca/kubernetes-staging-eu1.pem"}

# Single cases of tests/test_hostile_input.py that are not parametrized (their documents are built in the tests).
CASES += [
    ("hostile.null egress entry", ("staging", {}, hostile.graph_with(**{"services/billing/egress": [None]}),
                                   "services.billing.egress[0]")),
    ("hostile.same pods", ("staging", {}, _services(**{"checkout-admin": hostile._service(
        "web", selector={"app": "checkout", "tier": "web"})}), "services.checkout-admin.selector")),
    ("hostile.service limit", ("dev", {}, {"namespaces": {"a": {}}, "services": {
        f"s{i}": None for i in range(graph_format.MAX_SERVICES + 1)}}, "services")),
    ("hostile.alias bomb", Words("anchor or alias")),
    ("hostile.deep nesting", Words("nests deeper than")),
    ("hostile.not utf-8", Words("is not UTF-8")),
    ("hostile.size limit", Words(f"is {inputs.MAX_GRAPH_BYTES + 1:,} bytes, more than the limit of {inputs.MAX_GRAPH_BYTES:,}")),
    ("graph.invalid yaml", Words("is not valid YAML")),
    # Single cases of tests/test_multicluster_graph.py.
    ("multicluster.root owner", ClusterCase("mtls-mesh:meshRootStack", stack="dev-west",
                                            east={"meshRootStack": "dev-west"})),
    ("multicluster.unexported callee", ("dev", {}, _unexported_callee(), "services.billing.allow[0]")),
    ("multicluster.gateway needing per-caller policy", ClusterCase("services.ledger.export",
                                                                   graph=_gateway_needing_per_caller_policy())),
    ("multicluster.cluster not in the graph", ClusterCase("mtls-mesh:cluster", east={"cluster": "north"})),
    # tests/test_cluster_trust.py: west's prefix and cluster name east's intermediate mount.
    ("multicluster.vault names meet the root's", ClusterCase(
        "mtls-mesh:cluster", stack="dev-west", east={**_CLUSTER_VAULT, "vaultMountPrefix": "pki-west"},
        west={**_CLUSTER_VAULT, "vaultMountPrefix": "pki"})),
]


def test_every_parametrized_test_is_considered():
    """A new parametrized test of the validator is a new set of error cases: give it a converter (or None)."""
    missing = sorted(set(PARAMETRIZED) - set(CONVERTERS))
    assert not missing, f"add these to tests/test_schema.py CONVERTERS: {missing}"


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[name for name, _ in CASES])
def test_each_error_case_is_refused_by_the_schema_or_classified(tmp_path, case):
    if isinstance(case, Words):
        _rule(case.words, case.rules)
        return
    if isinstance(case, GraphText):
        _rule(case.message(tmp_path), graph_format.CANNOT_CHECK)
        return
    if isinstance(case, (FragmentCase, ClusterCase)):
        case.check(tmp_path)
        return
    stack, changes, graph, where, *unset = case
    check_case(tmp_path, stack, changes, graph, where, *unset)


def test_an_unclassified_rule_fails_the_classification():
    """A case the schema accepts and no CANNOT_CHECK rule claims is an error, so a new rule must be classified."""
    with pytest.raises(AssertionError, match="state the rule"):
        classify(GRAPH, copy.deepcopy(EXAMPLE), "services.frontend", "a brand-new rule", graph_format.CANNOT_CHECK)
    with pytest.raises(AssertionError, match="state the rule"):
        classify(STACK, _stack_document("dev", {}), "mtls-mesh:kubeContext", "a brand-new rule",
                 settings_format.CANNOT_CHECK, strip="config")
    with pytest.raises(AssertionError, match="state the rule"):
        _rule("a brand-new rule", graph_format.CANNOT_CHECK)


# ---- the schema accepts what the reader accepts -----------------------------------------------------------------

ACCEPTED_GRAPHS = {
    "a namespace with no body": lambda d: d["namespaces"].update(web=None),
    "empty optional fields": lambda d: d["services"]["frontend"].update(
        allow=None, egress=None, meshed=None, certificate=None, sharedServiceAccount=None),
    "empty skip lists": lambda d: d["namespaces"].update(data={"skipInboundPorts": None, "skipOutboundPorts": []}),
    "every protocol": lambda d: d["services"]["catalog"].update(ports=[
        {"name": f"p{i}", "port": 9000 + i, "protocol": p} for i, p in enumerate(graph_format.PROXY_PROTOCOLS)]),
    "a caller limited to ports": lambda d: d["services"]["ledger"].update(
        allow=[{"service": "billing", "ports": ["http"]}]),
    "hosts without cidrs": lambda d: d["services"]["billing"].update(
        egress=[{"name": "bank", "cidrs": None, "hosts": ["*.bank.example"], "ports": [443, 8443]}]),
    "an IPv6 egress network": lambda d: d["services"]["billing"].update(
        egress=[{"name": "v6", "cidrs": ["2001:db8::/32"], "ports": [443]}]),
    "a prefixed label key": lambda d: d["services"]["frontend"].update(
        selector={"app.kubernetes.io/name": "frontend", "tier": ""}),
    "explicit names": lambda d: d["services"]["frontend"].update(name="web-frontend", serviceAccount="web-frontend"),
}


@pytest.mark.parametrize("edit", ACCEPTED_GRAPHS.values(), ids=ACCEPTED_GRAPHS.keys())
def test_the_schema_accepts_what_the_reader_accepts(edit):
    document = _with(edit)
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems) is not None, [str(p) for p in problems.items]
    assert not list(GRAPH.iter_errors(document)), [e.message for e in GRAPH.iter_errors(document)]


def test_the_fragment_schema_accepts_the_fragments_the_reader_accepts(tmp_path):
    graph, problems = test_fragments.load(tmp_path, {"a.yaml": test_fragments.A, "b.yaml": test_fragments.B})
    assert graph is not None, problems
    for document in (test_fragments.A, test_fragments.B):
        assert not list(FRAGMENT.iter_errors(document)), [e.message for e in FRAGMENT.iter_errors(document)]
    lean = {"owners": ["a@example.com"], "shard": None, "namespaces": {"web": None}, "services": None}
    (tmp_path / "lean").mkdir()
    graph, problems = test_fragments.load(tmp_path / "lean", {"a.yaml": lean})
    assert graph is not None and FRAGMENT.is_valid(lean), problems


ACCEPTED_SETTINGS = {
    "booleans as the CLI writes them": {"protectPki": "false", "linkerdViz": True},
    "auto/true/false from YAML booleans": {"linkerdHighAvailability": True, "meshVerification": "auto"},
    "a secret": {"vaultToken": {"secure": "v1:abc"}},
    "any setting encrypted": {"kubeContext": {"secure": "v1:abc"}},
    "another package's config": {"pulumi:tags": {"team": "platform"}, "kubernetes:enableServerSideApply": "true"},
    "durations": {"trustAnchorValidity": "87600h0m0s", "vaultAuthTokenTtl": "1h"},
    "empty optional values": {"nextTrustAnchor": "", "proxyCpuLimit": "", "inboundPolicyOverrides": []},
    "a number where text is declared": {"trustAnchor": 2026},
}


@pytest.mark.parametrize("changes", ACCEPTED_SETTINGS.values(), ids=ACCEPTED_SETTINGS.keys())
def test_the_schema_accepts_settings_the_cli_and_program_accept(tmp_path, changes):
    document = _stack_document("dev", changes)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    config, secret_keys = read_stack_file(path)
    load_settings(config, "dev", secret_keys=secret_keys)  # the program accepts it
    assert not list(STACK.iter_errors(document)), [e.message for e in STACK.iter_errors(document)]


# ---- the schema never refuses what the program accepts ----------------------------------------------------------
#
# An editor must not flag a file `pulumi preview` accepts. Random edits of the examples: whenever the schema refuses
# one, the program must refuse it too (the Pulumi CLI's own type check first, for stack files).

_VALUES = [None, True, False, 0, 1, -1, 443, 8080, 65535, 65536, 1.5, 8080.0, "", "a", "web", "Web", "web\n", "x" * 64,
           "linkerd", "HTTP/1", "gRPC", "grpc", "10.0.0.0/8", "203.0.113.0/24", "api.example.com", "*.example.com",
           "a.svc", "true", "True", "yes", "48h", "1h", "deny", "audit", "vault", "self-signed", "https://v.example.com",
           "http://v", "v1.2.3", "2026.8.3", "100m", "a=b", "a/b", "ns/sa", "in-cluster", "auto", [], [None], [1],
           ["a"], ["web"], ["10.0.0.0/8"], ["a=b"], [{"service": "frontend"}], {}, {"a": "b"}, {"app": "x"},
           {"secure": "v1:x"}]


def _graph_places(node: Any, path: tuple = ()) -> list[tuple]:
    """Every place a value can be written: existing keys and indexes, and each record's other known keys."""
    places = []
    if isinstance(node, dict):
        for key, value in node.items():
            places.append(path + (key,))
            places += _graph_places(value, path + (key,))
        for key in {f.name for r in (graph_format.SERVICE, graph_format.NAMESPACE, graph_format.PORT,
                                     graph_format.EGRESS, graph_format.CALLER) for f in r.fields} | {"extra"}:
            places.append(path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            places.append(path + (index,))
            places += _graph_places(value, path + (index,))
    return places


def _shape(place: tuple) -> tuple:
    """A place with its service, namespace, label and index replaced by a placeholder: places of one shape are alike
    to the schema and to the reader."""
    shape = []
    for depth, part in enumerate(place):
        parent = place[depth - 1] if depth else None
        shape.append("*" if isinstance(part, int) or parent in ("services", "namespaces", "selector") else part)
    return tuple(shape)


# One place of each shape (the first in the example), so every value is tried in every kind of place.
_PLACES = list({_shape(place): place for place in reversed(_graph_places(EXAMPLE))}.values())


def _write(document: Any, place: tuple, value: Any) -> None:
    node = document
    for part in place[:-1]:
        node = node[part]
    node[place[-1]] = value


def test_what_the_schema_refuses_in_a_graph_the_reader_refuses():
    """Every value of the pool in every kind of place of the example graph."""
    wrong = []
    for place in _PLACES:
        for value in _VALUES:
            document = copy.deepcopy(EXAMPLE)
            _write(document, place, copy.deepcopy(value))
            # The reader first: it is ten times faster than the schema, and only what it accepts matters here.
            if parse_graph(document, "services.yaml", Problems()) is not None and not GRAPH.is_valid(document):
                wrong.append((".".join(map(str, place)), value))
    assert not wrong, f"the schema refuses these edits, which the reader accepts: {wrong[:10]}"


@hypothesis_settings(max_examples=100, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(_PLACES), st.sampled_from(_VALUES)), min_size=2, max_size=3))
def test_what_the_schema_refuses_in_a_graph_the_reader_refuses_with_several_edits(edits):
    document = copy.deepcopy(EXAMPLE)
    for place, value in edits:
        try:
            _write(document, place, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            return  # an earlier edit removed the place
    if GRAPH.is_valid(document):
        return
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems) is None, \
        f"the schema refuses {[e.message[:80] for e in GRAPH.iter_errors(document)]} but the reader accepts it"


def _cli_accepts(declaration, value: Any) -> bool:
    """The Pulumi CLI's own check of a stack value against its declared type (sdk/go/common/workspace/project.go
    ValidateConfigValue, on the text config/object.go MarshalString keeps for a scalar)."""
    if isinstance(value, dict):
        return set(value) == {"secure"} or declaration is None
    if declaration is None:
        return True
    if declaration.type == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if declaration.type == "array":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return not isinstance(value, list) and value is not None


@hypothesis_settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(sorted(DECLARATIONS)), value=st.sampled_from(_VALUES))
def test_what_the_schema_refuses_in_a_stack_file_the_cli_or_the_program_refuses(key, value):
    document = _stack_document("dev", {key: copy.deepcopy(value)})
    if STACK.is_valid(document) or not _cli_accepts(DECLARATIONS[key], value):
        return
    if isinstance(value, dict):
        return  # a secret: the CLI decrypts it first
    assert _messages("dev", document, f"mtls-mesh:{key}", None, Path("/nonexistent")), \
        f"the schema refuses {key}: {value!r}, which the program accepts"
