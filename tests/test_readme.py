"""The README tells the truth: every declared setting is documented with its real default, and CI runs its test command."""

from __future__ import annotations

import json
import re

from harness import PROJECT_DIR
from read.settings import SECRET_SETTINGS, load_declarations

README = (PROJECT_DIR / "README.md").read_text()


def settings_table() -> dict[str, str]:
    section = README.split("## Stack settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Za-z]+)` \| ([^|]+) \|", section, re.MULTILINE)
    return {key: default.strip() for key, default in rows}


def test_every_setting_is_documented_with_its_default():
    table = settings_table()
    for key, declaration in load_declarations().items():
        assert key in table, f"README's settings table lacks {key}"
        if declaration.required:
            assert table[key] == "(required)", key
        else:
            shown = declaration.default if isinstance(declaration.default, str) else json.dumps(declaration.default)
            assert table[key] == f"`{shown}`" or table[key] == f'`"{shown}"`', f"{key}: README says {table[key]}, Pulumi.yaml {shown!r}"
    for key in SECRET_SETTINGS:
        assert key in table


def test_the_readme_documents_no_setting_that_does_not_exist():
    extra = set(settings_table()) - set(load_declarations()) - set(SECRET_SETTINGS)
    assert not extra, f"README documents unknown settings {extra}"


def test_ci_runs_the_readme_test_commands():
    block = re.search(r"## Run the tests\n\n```bash\n(.*?)```", README, re.DOTALL).group(1)
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    test_command = re.search(r"^(?:venv/bin/)?(python -m pytest[^\n]*)$", block, re.MULTILINE).group(1)
    assert test_command in ci
    tools_command = re.search(r"^(bash \.ci/install-tools)", block, re.MULTILINE).group(1)
    assert tools_command in ci


def test_every_alert_has_a_table_row_and_a_runbook_section(each_stack):
    spec = each_stack.object("PrometheusRule", "mtls-mesh", "linkerd")["spec"]
    section = README.split("### Alerts", 1)[1].split("\n### ", 1)[0]
    for group in spec["groups"]:
        for rule in group["rules"]:
            assert f"| `{rule['alert']}` |" in section, f"no table row for {rule['alert']}"
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            headings = {h.strip().lower() for h in re.findall(r"^#### (.+)$", section, re.MULTILINE)}
            assert anchor in headings, f"{rule['alert']} points at #{anchor}, which the README lacks"


def test_the_migration_command_selects_exactly_the_old_per_object_resources(staging):
    """The README's step 1 must forget every resource of the old layout and none of the new one."""
    pattern = re.search(r"grep -oE '([^']+)'", README.split("A stack deployed before this layout", 1)[1]).group(1)
    current = [r.urn for r in staging.registrations]
    assert not [urn for urn in current if re.search(pattern, urn)], "step 1 would forget resources of the new layout"
    children = [r for r in staging.registrations if r.group is not None]
    assert children
    for child in children:
        obj = child.object()
        if obj["kind"] == "Certificate":
            service = obj["metadata"]["name"].removesuffix("-mesh-tls")
            old = (f"urn:pulumi:staging::mtls-mesh::mtls-mesh:cert_manager:CertManager$"
                   f"kubernetes:cert-manager.io/v1:Certificate::certs-workload-{service}")
        else:
            old = (f"urn:pulumi:staging::mtls-mesh::mtls-mesh:authorization:MeshAuthorization${child.type}::"
                   f"authz-{obj['metadata']['namespace']}-{obj['kind'].lower()}-{obj['metadata']['name']}")
        assert re.search(pattern, old).group(0) == old, f"step 1 would miss {old}"


def layout_block() -> str:
    text = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Layout"):]
    return section[section.index("```"):section.index("```", section.index("```") + 3)]


def layout_entries(block: str) -> dict[str, set[str]]:
    """Each folder of the layout block -> the module file names its lines mention."""
    entries: dict[str, set[str]] = {}
    folder = None
    for line in block.splitlines()[1:]:
        head = line[:23].strip()
        if head:
            folder = head
        entries.setdefault(folder, set()).update(re.findall(r"\b(\w+\.py)\b", line[23:]))
    return entries


def test_the_layout_section_names_every_module_of_the_read_compile_and_register_folders():
    entries = layout_entries(layout_block())
    for folder in ("read/", "plan/", "plan/linkerd/", "components/"):
        on_disk = {p.name for p in (PROJECT_DIR / folder).glob("*.py") if p.name != "__init__.py"}
        assert folder in entries, f"README layout has no line for {folder}"
        assert entries[folder] == on_disk, f"README layout of {folder}: missing {sorted(on_disk - entries[folder])}, " \
                                           f"gone {sorted(entries[folder] - on_disk)}"
    top = {p.name + "/" for p in PROJECT_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top <= set(entries), f"packages missing from the README layout: {sorted(top - set(entries))}"


def test_the_layout_check_can_fail():
    block = "```\nread/                  a.py and b.py\n                       c.py\nplan/                  d.py\n"
    assert layout_entries(block) == {"read/": {"a.py", "b.py", "c.py"}, "plan/": {"d.py"}}
