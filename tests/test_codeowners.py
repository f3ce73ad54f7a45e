"""The generated .github/CODEOWNERS (deploy/codeowners.py): the committed file is the one the graph generates (so
CI fails when they drift), its order lets each team's line win over the default and the platform's lines win over
every team's, each fragment file has exactly one line with its owners, and what CODEOWNERS cannot express is refused."""

from __future__ import annotations

import shutil

import pytest
import yaml

from deploy import codeowners
from harness import PROJECT_DIR

PLATFORM = "@example-org/platform-team"


def project(tmp_path, graph: str = "services.d/", fragments_from=PROJECT_DIR / "examples" / "services.d"):
    """A project with Pulumi.yaml, one stack naming `graph`, and the example fragments in services.d/."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {"mtls-mesh:serviceGraph": graph}}))
    if fragments_from is not None:
        shutil.copytree(fragments_from, tmp_path / graph.rstrip("/"))
    return tmp_path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_committed_codeowners_is_the_generated_one():
    """The drift check CI runs (the README's test command): the repository's graph is one file, so platform lines."""
    assert codeowners.main(["--check"]) == 0, "run: python -m deploy.codeowners --write"
    text = (PROJECT_DIR / ".github" / "CODEOWNERS").read_text()
    assert lines(text)[0] == f"* {PLATFORM}"
    assert f"/services.yaml {PLATFORM}" in lines(text) and f"/.github/ {PLATFORM}" in lines(text)


def test_the_check_fails_when_a_team_changes_its_owners_or_adds_a_file(tmp_path, capsys):
    root = project(tmp_path)
    assert codeowners.main(["--write", "--platform-owners", PLATFORM], root) == 0
    assert codeowners.main(["--check"], root) == 0
    payments = root / "services.d" / "payments.yaml"
    payments.write_text(payments.read_text().replace("@example-org/payments-team", "@example-org/fintech"))
    assert codeowners.main(["--check"], root) == 1
    assert "+/services.d/payments.yaml @example-org/fintech" in capsys.readouterr().err
    assert codeowners.main(["--write"], root) == 0 and codeowners.main(["--check"], root) == 0
    shutil.copy(payments, root / "services.d" / "risk.yaml")
    (root / "services.d" / "risk.yaml").write_text(
        payments.read_text().replace("payments:", "risk:").replace("billing:", "fraud:").replace("ledger:", "audit:")
        .replace("namespace: payments", "namespace: risk").replace("{service: billing", "{service: fraud"))
    assert codeowners.main(["--check"], root) == 1


def test_the_order_is_default_then_teams_then_platform(tmp_path):
    root = project(tmp_path)
    (root / "stacks" / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": {}}))  # the default: services.yaml
    (root / "services.yaml").write_text((PROJECT_DIR / "services.yaml").read_text())
    (root / "read").mkdir()
    text = codeowners.generate(root, [PLATFORM])
    assert lines(text) == [
        f"* {PLATFORM}",
        "/services.d/data.yaml @example-org/data-team",
        "/services.d/payments.yaml @example-org/payments-team payments-oncall@example.com",
        "/services.d/storefront.yaml @example-org/storefront-team",
        f"/services.yaml {PLATFORM}",
        f"/Pulumi.yaml {PLATFORM}",
        f"/stacks/ {PLATFORM}",
        f"/read/ {PLATFORM}",
        f"/.github/ {PLATFORM}",
    ]


def test_each_fragment_file_has_exactly_one_line_with_its_owners(tmp_path):
    root = project(tmp_path)
    rules = lines(codeowners.generate(root, [PLATFORM]))
    for path in sorted((root / "services.d").glob("*.yaml")):
        owners = yaml.safe_load(path.read_text())["owners"]
        matching = [rule for rule in rules if rule.split()[0] == f"/services.d/{path.name}"]
        assert matching == [f"/services.d/{path.name} {' '.join(owners)}"]
    # No negation, no escapes, nothing but anchored paths and owners.
    assert all(rule.split()[0] == "*" or rule.startswith("/") for rule in rules)
    assert not any("!" in rule or "\\" in rule for rule in rules)


def test_the_platform_owners_are_kept_from_the_committed_file_unless_given(tmp_path, capsys):
    root = project(tmp_path)
    assert codeowners.main(["--write"], root) == 1
    assert "no platform owners" in capsys.readouterr().err
    assert codeowners.main(["--write", "--platform-owners", "@org/platform", "ops@example.com"], root) == 0
    assert codeowners.main(["--write"], root) == 0
    assert lines((root / ".github" / "CODEOWNERS").read_text())[0] == "* @org/platform ops@example.com"
    assert codeowners.main(["--write", "--platform-owners", "org/platform"], root) == 1
    assert "is not a code owner" in capsys.readouterr().err


def test_a_graph_directory_the_platform_lines_would_take_is_refused(tmp_path, capsys):
    root = project(tmp_path, graph="stacks/services.d/")
    assert codeowners.main(["--platform-owners", PLATFORM], root) == 1
    assert "/stacks/ comes after the teams'" in capsys.readouterr().err


def test_an_invalid_graph_writes_nothing(tmp_path, capsys):
    root = project(tmp_path)
    data = root / "services.d" / "data.yaml"
    text = data.read_text()
    assert "  data: {shard: payments}\n" in text
    data.write_text(text.replace("  data: {shard: payments}\n", "  payments: {}\n"))
    assert codeowners.main(["--write", "--platform-owners", PLATFORM], root) == 1
    assert "is also declared in services.d/data.yaml" in capsys.readouterr().err
    assert not (root / ".github" / "CODEOWNERS").exists()


@pytest.mark.parametrize("name", ["Payments.yaml", "payments.yaml"])
def test_paths_keep_their_case(tmp_path, name):
    """GitHub matches CODEOWNERS paths case-sensitively: the line names the file exactly as it is spelled."""
    root = project(tmp_path)
    (root / "services.d" / "payments.yaml").rename(root / "services.d" / name)
    assert f"/services.d/{name} " in codeowners.generate(root, [PLATFORM])
