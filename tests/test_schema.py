"""The published JSON Schemas: current, valid, accepting the examples as an editor reads them, and refusing every
error case the validator's tests know, unless the case belongs to a rule a schema cannot state
(graph_format.CANNOT_CHECK, settings_format.CANNOT_CHECK, listed in the README).

Patterns are evaluated as editors evaluate them (ECMA-262, through check-jsonschema's regress binding), not with
Python's `re`, whose `$` would also accept a trailing newline.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import pytest
import yaml
from check_jsonschema.regex_variants import RegexImplementation, RegexVariantName

import test_graph
import test_hostile_input as hostile
import test_settings
from components import graph_format, schema, settings_format
from components.errors import Problems, SettingsError
from components.graph import parse_graph
from components.settings import load_declarations, load_settings
from components.stack_files import SECRET_PLACEHOLDER, read_stack_file, wire_value
from harness import PROJECT_DIR, STACKS, stack_file

SCHEMA_DIR = PROJECT_DIR / "schema"
GRAPH_SCHEMA = json.loads((SCHEMA_DIR / "services.schema.json").read_text())
STACK_SCHEMA = json.loads((SCHEMA_DIR / "stack-settings.schema.json").read_text())
EXAMPLE = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())

_ECMA = RegexImplementation(RegexVariantName.default)
EditorValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"pattern": _ECMA.pattern_keyword, "patternProperties": _ECMA.patternProperties_keyword})
GRAPH = EditorValidator(GRAPH_SCHEMA)
STACK = EditorValidator(STACK_SCHEMA)


# ---- the files --------------------------------------------------------------------------------------------------

def test_the_committed_schemas_are_the_generated_ones():
    for name, text in schema.generated().items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == text, \
            f"schema/{name} is stale: run python -m components.schema --write"


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


@pytest.mark.parametrize("document", [GRAPH_SCHEMA, STACK_SCHEMA], ids=["services", "stack-settings"])
def test_each_schema_is_valid_draft_2020_12_with_ecma_patterns(document):
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    patterns = list(_patterns(document))
    assert patterns
    for pattern in patterns:
        assert _ECMA.check_format(pattern), f"not an ECMA-262 regular expression: {pattern}"


EDITED_FILES = [PROJECT_DIR / "services.yaml", *(stack_file(stack) for stack in STACKS)]
_MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.MULTILINE)


@pytest.mark.parametrize("path", EDITED_FILES, ids=lambda p: p.name)
def test_each_file_names_its_schema_for_vs_code_and_jetbrains(path):
    lines = path.read_text().splitlines()
    match = _MODELINE.match(lines[0])
    assert match, f"{path.name}: the first line must be '# yaml-language-server: $schema=<path>'"
    assert lines[1] == f"# $schema: {match.group(1)}", f"{path.name}: the second line is JetBrains' form of the first"
    target = (path.parent / match.group(1)).resolve()
    expected = "services.schema.json" if path.name == "services.yaml" else "stack-settings.schema.json"
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

def test_every_constrained_setting_is_declared():
    declared = set(load_declarations())
    assert set(settings_format.VALUES) <= declared, set(settings_format.VALUES) - declared
    assert set(settings_format.MIN_ITEMS) <= declared


def test_the_readme_lists_what_the_schema_cannot_check():
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme.split("### What the schema cannot check", 1)[1].split("\n#", 1)[0]
    for rule in (*graph_format.CANNOT_CHECK, *settings_format.CANNOT_CHECK):
        assert f"**{rule.name}**" in section, f"README, 'What the schema cannot check', does not list {rule.name!r}"


# ---- error cases ------------------------------------------------------------------------------------------------

def _where(error: jsonschema.ValidationError) -> str:
    """A schema error's location written as the reader writes paths: services.billing.egress[0].name."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _locates(error: jsonschema.ValidationError, where: str, *, strip: str = "") -> bool:
    """Whether the schema error is about the place the validator names (the same key, or one that contains it)."""
    path = _where(error)
    if strip and path.startswith(strip):
        path = path[len(strip):].lstrip(".")
    if not path:  # a missing required key, or a whole-document problem: the message names the key
        return not where or where.split(".")[0].split("[")[0] in error.message
    return where == path or where.startswith((f"{path}.", f"{path}["))


def classify(validator, document: Any, where: str, message: str, rules, *, strip: str = "") -> str:
    """'refused' if the schema refuses the document at (or above) `where`; otherwise the name of the rule the
    validator's message belongs to. Fails if neither: a new rule must be stated in the schema or classified."""
    errors = list(validator.iter_errors(document))
    if any(_locates(e, where, strip=strip) for e in errors):
        return "refused"
    assert not errors, (f"the schema refuses this input elsewhere than at {where!r}: "
                        f"{[(_where(e), e.message[:100]) for e in errors]}")
    names = [rule.name for rule in rules if any(fragment in message for fragment in rule.messages)]
    assert names, (f"the schema accepts the input the validator refuses with {message!r} at {where!r}: state the rule "
                   "in the format (components/graph_format.py or settings_format.py), or add it to CANNOT_CHECK "
                   "there and to the README's 'What the schema cannot check'")
    return names[0]


def _graph_case(document: Any, where: str, message: str) -> str:
    return classify(GRAPH, document, where, message, graph_format.CANNOT_CHECK)


def _stack_document(stack: str, changes: dict[str, Any], unset: Iterable[str] = ()) -> dict[str, Any]:
    document = yaml.safe_load(stack_file(stack).read_text())
    config = document["config"]
    for key in unset:
        config.pop(f"mtls-mesh:{key}", None)
    for key, value in changes.items():
        config[key if ":" in key else f"mtls-mesh:{key}"] = value
    return document


def _problems(stack: str, document: dict[str, Any], where: str) -> str:
    """What the validator says at `where` about a stack file (as read_stack_file hands it to the program)."""
    config, secret_keys = {}, set()
    for key, value in document["config"].items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key], secret_keys = SECRET_PLACEHOLDER, secret_keys | {key}
        else:
            config[key] = wire_value(value)
    try:
        load_settings(config, stack, secret_keys=frozenset(secret_keys))
    except SettingsError as err:
        return " | ".join(str(p) for p in err.problems if p.where == where)
    return ""


def _settings_case(stack: str, changes: dict[str, Any], where: str, unset: Iterable[str] = ()) -> str:
    where = where if ":" in where or where.endswith(".yaml") else f"mtls-mesh:{where}"
    document = _stack_document(stack, changes, unset)
    message = _problems(stack, document, where)
    assert message, f"the validator reports nothing at {where}"
    return classify(STACK, document, where, message, settings_format.CANNOT_CHECK, strip="config")


# The graph cases of tests/test_graph.py: (edit, "services.yaml: <path>: <message>").
@pytest.mark.parametrize("edit,expected", test_graph.BAD_GRAPHS, ids=[c[1][15:60] for c in test_graph.BAD_GRAPHS])
def test_each_bad_graph_is_refused_by_the_schema_or_classified(edit, expected):
    _, where, message = expected.split(": ", 2)
    _graph_case(test_graph.edited(edit), where, message)


def _with(edit) -> dict:
    document = copy.deepcopy(EXAMPLE)
    edit(document)
    return document


def _services(**services) -> dict:
    return _with(lambda d: d["services"].update(services))


# The graph cases of tests/test_hostile_input.py, written out (their documents are built inside the tests).
HOSTILE_GRAPHS = [
    (hostile.graph_with(**{"services/billing/egress": [None]}), "services.billing.egress[0]", "must be a mapping"),
    (_with(lambda d: d["namespaces"].update({"web\n": {}})), "namespaces.web\n", "is not a valid Kubernetes name"),
    (_services(**{"frontend\n": EXAMPLE["services"]["frontend"]}), "services.frontend\n", "is not a valid Kubernetes name"),
    (_services(prometheus=hostile._service("web", allow=["frontend"])), "services.prometheus", "MeshTLSAuthentication 'prometheus'"),
    (_services(**{"default-deny": hostile._service("web", allow=["frontend"])}), "services.default-deny", "NetworkPolicy 'mtls-mesh-default-deny'"),
    (_services(linkerd=hostile._service("web", ports=(("admin", 8080),), allow=["frontend"])), "services.linkerd", "Server 'linkerd-admin'"),
    (_services(**{"checkout-admin": hostile._service("web", selector={"app": "checkout", "tier": "web"})}),
     "services.checkout-admin.selector", "selects pods that services.checkout selects"),
    (hostile.graph_with(**{"services/frontend/ports": [{"name": "http", "port": 4143, "protocol": "HTTP/1"}]}),
     "services.frontend.ports[0].port", "is the Linkerd proxy's own"),
    (hostile.graph_with(**{"services/billing/egress": [{"name": "db", "cidrs": ["10.1.0.0/16"], "ports": [5432]}]}),
     "services.billing.egress[0].cidrs[0]", "overlaps the cluster network 10.0.0.0/8"),
    ({"namespaces": {"a": {}}, "services": {f"s{i}": None for i in range(graph_format.MAX_SERVICES + 1)}},
     "services", "more than the limit"),
]


@pytest.mark.parametrize("document,where,message", HOSTILE_GRAPHS, ids=[c[1] + ":" + c[2][:30] for c in HOSTILE_GRAPHS])
def test_each_hostile_graph_is_refused_by_the_schema_or_classified(document, where, message):
    _graph_case(document, where, message)


# Settings cases: tests/test_settings.py's table, and every parametrized test of the validator's test modules whose
# parameters are (stack, changes, key, words).
SETTINGS_CASES = [(stack, changes, removed, key, words) for stack, changes, removed, key, words in test_settings.BAD_SETTINGS]
_SETTINGS_SHAPE = ["stack", "changes", "key", "words"]
for _module in (hostile,):
    for _name, _function in sorted(vars(_module).items()):
        for _mark in getattr(_function, "pytestmark", ()):
            if _mark.name == "parametrize" and [a.strip() for a in _mark.args[0].split(",")] == _SETTINGS_SHAPE:
                SETTINGS_CASES += [(stack, changes, [], key, words) for stack, changes, key, words in _mark.args[1]]


@pytest.mark.parametrize("stack,changes,removed,key,words", SETTINGS_CASES,
                         ids=[f"{c[0]}:{c[3]}:{str(c[4])[:30]}" for c in SETTINGS_CASES])
def test_each_bad_setting_is_refused_by_the_schema_or_classified(stack, changes, removed, key, words):
    _settings_case(stack, changes, key, removed)


def test_an_unclassified_rule_fails_the_classification():
    """A case the schema accepts and no CANNOT_CHECK rule claims is an error, so a new rule must be classified."""
    with pytest.raises(AssertionError, match="state the rule"):
        _graph_case(copy.deepcopy(EXAMPLE), "services.frontend", "a brand-new rule nobody classified")
    with pytest.raises(AssertionError, match="state the rule"):
        classify(STACK, _stack_document("dev", {}), "mtls-mesh:kubeContext", "a brand-new rule nobody classified",
                 settings_format.CANNOT_CHECK, strip="config")


# ---- the schema accepts what the reader accepts -----------------------------------------------------------------

ACCEPTED_GRAPHS = {
    "a namespace with no body": lambda d: d["namespaces"].update(web=None),
    "empty optional fields": lambda d: d["services"]["frontend"].update(allow=None, egress=None, meshed=None, certificate=None),
    "empty skip lists": lambda d: d["namespaces"].update(data={"skipInboundPorts": None, "skipOutboundPorts": []}),
    "every protocol": lambda d: d["services"]["catalog"].update(ports=[
        {"name": f"p{i}", "port": 9000 + i, "protocol": p} for i, p in enumerate(graph_format.PROXY_PROTOCOLS)]),
    "a caller limited to ports": lambda d: d["services"]["ledger"].update(allow=[{"service": "billing", "ports": ["http"]}]),
    "hosts without cidrs": lambda d: d["services"]["billing"].update(
        egress=[{"name": "bank", "cidrs": None, "hosts": ["*.bank.example"], "ports": [443, 8443]}]),
    "an IPv6 egress network": lambda d: d["services"]["billing"].update(
        egress=[{"name": "v6", "cidrs": ["2001:db8::/32"], "ports": [443]}]),
    "a prefixed label key": lambda d: d["services"]["frontend"].update(selector={"app.kubernetes.io/name": "frontend", "tier": ""}),
    "explicit names": lambda d: d["services"]["frontend"].update(name="web-frontend", serviceAccount="web-frontend"),
}


@pytest.mark.parametrize("edit", ACCEPTED_GRAPHS.values(), ids=ACCEPTED_GRAPHS.keys())
def test_the_schema_accepts_what_the_reader_accepts(edit):
    document = _with(edit)
    problems = Problems()
    assert parse_graph(document, "services.yaml", problems) is not None, [str(p) for p in problems.items]
    assert not list(GRAPH.iter_errors(document)), [e.message for e in GRAPH.iter_errors(document)]


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
