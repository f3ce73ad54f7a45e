"""The published JSON Schemas (Draft 2020-12) of `services.yaml`, of a per-team fragment of it (`services.d/*.yaml`)
and of the stack files, generated from the one declaration of each format: read/graph_format.py for the graph,
Pulumi.yaml's `config:` declarations plus read/settings_format.py for the settings.

    python -m read.schema --write    # regenerate schema/*.schema.json after changing a format
    python -m read.schema --check    # exit 1, naming the file, if a committed schema is stale

The YAML files name their schema in a first-line comment (`# yaml-language-server: $schema=...` for VS Code's YAML
extension and other yaml-language-server clients, `# $schema: ...` for JetBrains IDEs), so editors complete keys, show
each field's description and flag a wrong value as it is typed. tests/test_schema.py keeps the files current and
checks them against the examples and against every error case the validator's tests know.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import graph_format as gf
from . import settings_format as sf

PROJECT_DIR = Path(__file__).resolve().parents[1]
SCHEMA_DIR = PROJECT_DIR / "schema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Records published under $defs (referenced by name rather than repeated inline).
_DEFS = {"namespace": gf.NAMESPACE, "service": gf.SERVICE, "port": gf.PORT, "caller": gf.CALLER, "egress": gf.EGRESS}


def _text(node: gf.Text) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if node.description:
        schema["description"] = node.description
    if node.choices:
        schema["enum"] = list(node.choices)
    if node.pattern:
        schema["pattern"] = node.pattern.ecma
    if node.min_length is not None:
        schema["minLength"] = node.min_length
    if node.max_length is not None:
        schema["maxLength"] = node.max_length
    refused = []
    if node.forbidden:
        refused.append({"enum": list(node.forbidden)})
    if node.forbidden_pattern:
        refused.append({"pattern": node.forbidden_pattern.ecma})
    if refused:
        schema["not"] = refused[0] if len(refused) == 1 else {"anyOf": refused}
    if node.examples:
        schema["examples"] = list(node.examples)
    return schema


def _node(node: gf.Node, *, top: bool = False) -> dict[str, Any]:
    if not top:
        for name, record in _DEFS.items():
            if node is record:
                return {"$ref": f"#/$defs/{name}"}
    if isinstance(node, gf.Text):
        return _text(node)
    if isinstance(node, gf.Integer):
        schema: dict[str, Any] = {"type": "integer"}
        if node.description:
            schema["description"] = node.description
        if node.minimum is not None:
            schema["minimum"] = node.minimum
        if node.maximum is not None:
            schema["maximum"] = node.maximum
        return schema
    if isinstance(node, gf.Boolean):
        return {"type": "boolean", **({"description": node.description} if node.description else {})}
    if isinstance(node, gf.Items):
        schema = {"type": "array"}
        if node.description:
            schema["description"] = node.description
        if node.min_items:
            schema["minItems"] = node.min_items
        if node.max_items is not None:
            schema["maxItems"] = node.max_items
        if node.unique:
            schema["uniqueItems"] = True
        schema["items"] = _node(node.item)
        return schema
    if isinstance(node, gf.Named):
        schema = {"type": "object"}
        if node.description:
            schema["description"] = node.description
        # Counts first: a document over a limit is refused before each of its entries is looked at.
        if node.min_entries:
            schema["minProperties"] = node.min_entries
        if node.max_entries is not None:
            schema["maxProperties"] = node.max_entries
        schema["propertyNames"] = _text(node.key)
        value = _node(node.value)
        schema["additionalProperties"] = _nullable(value) if node.value_nullable else value
        return schema
    if isinstance(node, gf.Either):
        schema = {"description": node.description} if node.description else {}
        schema["anyOf"] = [_node(option) for option in node.options]
        return schema
    if isinstance(node, gf.Record):
        return _record(node)
    raise TypeError(f"no JSON Schema for {node!r}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`key:` left empty (null) reads as if the key were absent."""
    if "type" in schema and "enum" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _record(record: gf.Record) -> dict[str, Any]:
    properties = {}
    for f in record.fields:
        value = _node(f.node)
        if f.nullable:
            value = _nullable(value)
        if f.default is not None:
            value = {**value, "default": f.default}
        properties[f.name] = value
    schema: dict[str, Any] = {"type": "object"}
    if record.description:
        schema["description"] = record.description
    schema["properties"] = properties
    required = [f.name for f in record.fields if f.required]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if record.one_of_nonempty:
        schema["anyOf"] = [{"required": [name], "properties": {name: {"type": "array", "minItems": 1}}}
                           for name in record.one_of_nonempty]
    return schema


def graph_schema() -> dict[str, Any]:
    schema = {"$schema": DRAFT, "title": "mtls-mesh service graph (services.yaml)",
              "$comment": "Generated by `python -m read.schema --write` from read/graph_format.py; do not "
                          "edit. The program checks more than this schema can say: docs/schemas.md, 'What the "
                          "schema cannot check'."}
    schema.update(_record(gf.GRAPH))
    schema["$defs"] = {name: _record(record) for name, record in _DEFS.items()}
    return schema


def fragment_schema() -> dict[str, Any]:
    """One file of a graph split per team (`services.d/<team>.yaml`): the same namespaces and services, plus owners."""
    schema = {"$schema": DRAFT, "title": "mtls-mesh service graph fragment (services.d/<team>.yaml)",
              "$comment": "Generated by `python -m read.schema --write` from read/graph_format.py; do not "
                          "edit. The program checks more than this schema can say: docs/schemas.md, 'What the "
                          "schema cannot check' (and the files of a directory are merged and checked as one graph)."}
    schema.update(_record(gf.FRAGMENT))
    schema["$defs"] = {name: _record(record) for name, record in _DEFS.items()}
    return schema


# ---- stack files ------------------------------------------------------------------------------------------------

def _setting(declaration: Any) -> dict[str, Any]:
    """One setting as a stack file may write it. The Pulumi CLI checks stack values against the declared types first
    (pkg/workspace/config.go validateStackConfigValue -> sdk/go/common/workspace/project.go ValidateConfigValue), on
    the text it keeps for a scalar (sdk/go/common/resource/config/object.go MarshalString): a string setting takes
    any scalar (`2026` is the text "2026"), a boolean one true/false or the strings "true"/"false", an integer one a
    whole number or its text, and an array one a list of items of its item type."""
    rule = sf.VALUES.get(declaration.key, gf.Text())
    # Text with no pattern of its own may still hold no invisible character (settings._Config.string and .strings).
    pattern = rule.pattern or (None if rule.choices else sf.TEXT)
    if declaration.type == "boolean":
        schema: dict[str, Any] = {"enum": [True, False, "true", "false"]}
    elif declaration.type == "integer":
        schema = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": sf.INTEGER.ecma}]}
    elif declaration.type == "array":
        item = _text(gf.Text(rule.description, pattern, rule.max_length, rule.min_length, rule.choices,
                             rule.forbidden, rule.forbidden_pattern))
        schema = {"type": "array"}
        if declaration.key in sf.MIN_ITEMS:
            schema["minItems"] = sf.MIN_ITEMS[declaration.key]
        schema["maxItems"] = sf.LIST_SETTING_LIMITS.get(declaration.key, sf.MAX_LIST_ENTRIES)
        if declaration.key in sf.UNIQUE_ITEMS:
            schema["uniqueItems"] = True
        schema["items"] = item
    elif rule.choices:
        # YAML `true` reaches the program as the text "true".
        extra = [value == "true" for value in rule.choices if value in ("true", "false")]
        schema = {"enum": [*rule.choices, *extra]}
    else:
        schema = _text(gf.Text(pattern=pattern, max_length=rule.max_length, min_length=rule.min_length,
                               forbidden=rule.forbidden, forbidden_pattern=rule.forbidden_pattern))
        schema["type"] = ["string", "number", "boolean"]
    return schema


def stack_schema(declarations: dict[str, Any] | None = None) -> dict[str, Any]:
    if declarations is None:
        declarations = sf.load_declarations(PROJECT_DIR / "Pulumi.yaml")
    secure = {"$ref": "#/$defs/secure"}
    properties: dict[str, Any] = {}
    for key, declaration in declarations.items():
        # Only the settings that stay secret end to end may be stored encrypted (settings_format.MAY_BE_SECRET); the
        # schema cannot see inside a ciphertext.
        setting: dict[str, Any] = {"description": declaration.description}
        if not declaration.required:
            setting["default"] = declaration.default
        examples = sf.VALUES[key].examples if key in sf.VALUES else ()
        if examples:
            setting["examples"] = [[e] for e in examples] if declaration.type == "array" else list(examples)
        properties[f"{sf.PROJECT}:{key}"] = ({**setting, "anyOf": [_setting(declaration), secure]}
                                              if key in sf.MAY_BE_SECRET else {**setting, **_setting(declaration)})
    for key in sf.SECRET_SETTINGS:
        properties[f"{sf.PROJECT}:{key}"] = {**secure,
                                              "description": f"Secret: pulumi config set --secret {key} <value>"}
    for key, instead in sf.IGNORED_PROVIDER_KEYS.items():
        properties[key] = {"not": {}, "description": f"Ignored: the program passes explicit providers their settings. "
                                                     f"Set {sf.PROJECT}:{instead} instead"}
    config = {
        "type": "object",
        "description": f"Stack settings: keys of the {sf.PROJECT} namespace (README, 'Stack settings'), and other "
                       "namespaces' keys, which the program does not read",
        "properties": properties,
        # Other packages' config (pulumi:tags, kubernetes:enableServerSideApply, ...) is the CLI's and theirs.
        "patternProperties": {f"^(?!{sf.PROJECT}:)[^:]+:.": {}},
        "required": [f"{sf.PROJECT}:{key}" for key, d in declarations.items() if d.required],
        "additionalProperties": False,
    }
    return {
        "$schema": DRAFT,
        "title": "mtls-mesh stack file (stacks/Pulumi.<stack>.yaml)",
        "$comment": "Generated by `python -m read.schema --write` from Pulumi.yaml's config declarations and "
                    "read/settings_format.py; do not edit. The program checks more than this schema can say: "
                    "docs/schemas.md, 'What the schema cannot check'.",
        "type": "object",
        # The fields of a stack file: sdk/go/common/workspace/project.go, type ProjectStack.
        "properties": {
            "config": config,
            "secretsprovider": {"type": "string", "description": "The stack's secrets provider"},
            "encryptedkey": {"type": "string", "description": "The data key, encrypted by a cloud secrets provider"},
            "encryptionsalt": {"type": "string", "description": "Salt of the passphrase secrets provider"},
            "environment": {"description": "Pulumi ESC environments imported by the stack"},
        },
        "required": ["config"],
        "additionalProperties": False,
        "$defs": {"secure": {
            "type": "object", "description": "A secret, encrypted by `pulumi config set --secret`",
            "properties": {"secure": {"type": "string"}}, "required": ["secure"], "additionalProperties": False,
        }},
    }


SCHEMAS = {"services.schema.json": graph_schema, "services-fragment.schema.json": fragment_schema,
           "stack-settings.schema.json": stack_schema}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[str, str]:
    """File name -> the text it should have."""
    return {name: render(build()) for name, build in SCHEMAS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m read.schema", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write schema/*.schema.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed schema differs from the generated")
    args = parser.parse_args(argv)
    texts = generated()
    if args.write:
        SCHEMA_DIR.mkdir(exist_ok=True)
        for name, text in texts.items():
            (SCHEMA_DIR / name).write_text(text, encoding="utf-8")
            print(f"wrote schema/{name}")
        return 0
    if args.check:
        stale = [name for name, text in texts.items()
                 if not (SCHEMA_DIR / name).is_file() or (SCHEMA_DIR / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"schema/{name} is stale: run python -m read.schema --write", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(texts["services.schema.json"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
