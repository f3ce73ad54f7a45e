"""The README and the docs/ pages it links tell the truth: every declared setting is documented with its real default,
CI runs the README's test command, every alert's runbook is a section of docs/alerts.md, the layout names every module;
and the README stays a short front door whose every relative link (and each page's) reaches a file and a heading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from harness import PROJECT_DIR
from read.settings import SECRET_SETTINGS, load_declarations

README = (PROJECT_DIR / "README.md").read_text()
DOCS = PROJECT_DIR / "docs"
# A newcomer reads the README in ten minutes; the depth lives in docs/.
README_MAX_LINES = 450


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


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


def readme_test_blocks() -> list[str]:
    section = README.split("\n## Run the tests\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.DOTALL)


def test_ci_runs_the_readme_test_commands():
    """The README's one command is what the workflows run, and the by-hand steps are what that command runs."""
    one, by_hand = readme_test_blocks()[:2]
    assert re.match(r"bash \.ci/run\s*$", one), one
    for name in ("pull-request.yml", "deploy.yml"):
        steps = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / name).read_text())["jobs"]["test"]["steps"]
        runs = [s["run"].strip() for s in steps if "run" in s]
        assert {".ci/run", "bash .ci/run"} & set(runs), f"{name}'s test job does not run .ci/run: {runs}"
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    test_command = re.search(r"^(?:venv/bin/)?(python -m pytest[^\n]*)$", by_hand, re.MULTILINE).group(1)
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.MULTILINE)
    tools_command = re.search(r"^(bash \.ci/install-tools)", by_hand, re.MULTILINE).group(1)
    assert re.search(rf"^{re.escape(tools_command)}$", ci, re.MULTILINE)
    assert "requirements-dev.txt" in by_hand and "-r requirements-dev.txt" in ci


def test_every_alert_has_a_table_row_and_a_runbook_section(each_stack):
    """Each rule's `runbook` annotation is a path from the repository's root to a section of docs/alerts.md."""
    spec = each_stack.object("PrometheusRule", "mtls-mesh", "linkerd")["spec"]
    page = doc("alerts.md")
    headings = {h.strip().lower() for h in re.findall(r"^## (.+)$", page, re.MULTILINE)}
    for group in spec["groups"]:
        for rule in group["rules"]:
            assert f"| `{rule['alert']}` |" in page, f"no table row for {rule['alert']}"
            path, anchor = rule["annotations"]["runbook"].split("#", 1)
            assert path == "docs/alerts.md" and (PROJECT_DIR / path).is_file(), rule["annotations"]["runbook"]
            assert anchor in headings, f"{rule['alert']} points at #{anchor}, which docs/alerts.md lacks"


def test_the_migration_command_selects_exactly_the_old_per_object_resources(staging):
    """The migration's step 1 (docs/authorization.md) must forget every resource of the old layout and none of the new
    one."""
    moved = doc("authorization.md").split("A stack deployed before this layout", 1)[1]
    pattern = re.search(r"grep -oE '([^']+)'", moved).group(1)
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
    text = doc("layout.md")
    section = text[text.index("# Layout\n"):]
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
        assert folder in entries, f"docs/layout.md has no line for {folder}"
        assert entries[folder] == on_disk, f"docs/layout.md, {folder}: missing {sorted(on_disk - entries[folder])}, " \
                                           f"gone {sorted(entries[folder] - on_disk)}"
    top = {p.name + "/" for p in PROJECT_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top <= set(entries), f"packages missing from docs/layout.md: {sorted(top - set(entries))}"


def test_the_layout_check_can_fail():
    block = "```\nread/                  a.py and b.py\n                       c.py\nplan/                  d.py\n"
    assert layout_entries(block) == {"read/": {"a.py", "b.py", "c.py"}, "plan/": {"d.py"}}


# ---- the front door: short, and every relative link reaches a file and a heading ------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown page with fenced code blanked out (a `# comment` in a bash block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return lines


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the rendered text (code spans and links reduced to their text) in lower
    case, every character but letters, digits, `_`, `-` and spaces dropped, spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"(\*\*|__)(.*?)\1", r"\2", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor on a page; a repeated heading gets -1, -2, ... as on GitHub."""
    found, seen = set(), {}
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code that is not a URL with a scheme (https:, mailto:)."""
    links = []
    for number, line in enumerate(prose_lines(text), 1):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):
                links.append((number, target))
    return links


def broken_links(page: Path) -> list[str]:
    broken = []
    for number, target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(PROJECT_DIR)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            broken.append(f"{where}: no heading with that anchor in {destination.name}")
    return broken


def test_the_readme_is_a_short_front_door():
    lines = README.count("\n") + 1
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move the depth to a docs/ page and link it"


def test_every_relative_link_reaches_a_file_and_a_heading():
    pages = [PROJECT_DIR / "README.md", *sorted(DOCS.glob("*.md"))]
    assert len(pages) > 5
    broken = [problem for page in pages for problem in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_the_readme_links_every_docs_page():
    linked = {(PROJECT_DIR / path).resolve() for _, target in relative_links(README) for path in [target.split("#")[0]]}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link (add them to 'Further reading'): {unlinked}"


def test_the_link_check_can_fail(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "PROJECT_DIR", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Upgrading from `ClusterIssuers` (no downtime)\n## Step\n## Step\n")
    page = tmp_path / "README.md"
    page.write_text("```bash\n# Not a heading\n```\n## Set up: *dev*\n"
                    "[ok](docs/b.md#upgrading-from-clusterissuers-no-downtime) [ok](docs/b.md#step-1) "
                    "[ok](#set-up-dev)\n"
                    "[gone](docs/c.md) [no anchor](docs/b.md#not-a-heading) [no anchor](#not-a-heading) "
                    "[url](https://example.com/x#y) `[code](nowhere.md)`\n")
    assert broken_links(page) == ["README.md:6: docs/c.md: no such file",
                                  "README.md:6: docs/b.md#not-a-heading: no heading with that anchor in b.md",
                                  "README.md:6: #not-a-heading: no heading with that anchor in README.md"]
