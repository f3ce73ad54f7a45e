"""Delivery: the GitHub workflows validate against GitHub's workflow schema and lint clean, they preview every stack
and promote dev -> staging -> prod; the operator manifests match the stack files, carry no secret, and fit the
operator's Stack schema."""

from __future__ import annotations

import shutil
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import PROJECT_DIR, STACKS, run_program, stack_config

sys.path.insert(0, str(PROJECT_DIR))
from deploy.operator_stacks import render, operator_stack, DEFAULT_REPO  # noqa: E402
from components.errors import SettingsError  # noqa: E402
from components.settings import SECRET_SETTINGS  # noqa: E402

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"

# The spec fields of the operator's Stack (pulumi.com/v1) that the manifests use, with their types, as declared by
# pulumi/pulumi-kubernetes-operator deploy/helm/pulumi-operator/crds/pulumi.com_stacks.yaml (commit 0d34c847). The
# CRD is not among ../shared/upstream, so these recorded facts stand in for it.
RESOURCE_REF = {"type": "object", "required": ["type"], "additionalProperties": False, "properties": {
    "type": {"enum": ["Env", "FS", "Secret", "Literal"]},
    "secret": {"type": "object", "required": ["key", "name"], "additionalProperties": False,
               "properties": {"key": {"type": "string"}, "name": {"type": "string"}}}}}
OPERATOR_STACK_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "pulumi.com/v1"}, "kind": {"const": "Stack"},
        "spec": {"type": "object", "required": ["stack"], "additionalProperties": False, "properties": {
            "serviceAccountName": {"type": "string"}, "stack": {"type": "string"}, "projectRepo": {"type": "string"},
            "branch": {"type": "string"}, "refresh": {"type": "boolean"}, "resyncFrequencySeconds": {"type": "integer"},
            "destroyOnFinalize": {"type": "boolean"}, "retryOnUpdateConflict": {"type": "boolean"},
            "envRefs": {"type": "object", "additionalProperties": RESOURCE_REF},
            "config": {"type": "object"},
        }},
    },
}


def tool(name):
    """A command installed with the test requirements: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def workflow(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_workflows_validate_against_githubs_schema():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    step: []\n")
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_yaml_lints_clean():
    result = subprocess.run([tool("yamllint"), "-c", str(PROJECT_DIR / ".yamllint.yaml"), str(WORKFLOWS),
                             str(PROJECT_DIR / "stacks"), str(PROJECT_DIR / "deploy" / "operator")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_pull_requests_preview_every_stack_with_the_policy_pack():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert preview["needs"] == "test"
    assert sorted(preview["strategy"]["matrix"]["stack"]) == sorted(STACKS)
    action = next(s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions@"))["with"]
    assert action["command"] == "preview" and action["comment-on-pr"] is True
    assert action["policyPacks"] == "policy" and action["policyPackConfigs"] == "policy/${{ matrix.stack }}.json"
    assert any("cp \"stacks/Pulumi." in s.get("run", "") for s in preview["steps"]), \
        "the Automation API ignores stackConfigDir: the stack file must also be where it looks"
    for stack in STACKS:
        assert (PROJECT_DIR / "policy" / f"{stack}.json").exists()


def test_merges_promote_dev_then_staging_then_prod_behind_environments():
    jobs = workflow("deploy.yml")["jobs"]
    assert [jobs[s]["needs"] for s in ("dev", "staging", "prod")] == ["test", "dev", "staging"]
    assert all(jobs[s]["with"]["stack"] == s and jobs[s]["uses"] == "./.github/workflows/up.yml" for s in ("dev", "staging", "prod"))
    up = workflow("up.yml")["jobs"]["up"]
    assert up["environment"] == "${{ inputs.stack }}", "each stack deploys behind its GitHub environment (approvals for prod)"
    action = next(s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions@"))["with"]
    assert action["command"] == "up" and action["policyPackConfigs"] == "policy/${{ inputs.stack }}.json"
    assert workflow("deploy.yml")["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_operator_manifest_is_generated_from_the_stack_file(stack):
    committed = (PROJECT_DIR / "deploy" / "operator" / f"{stack}.yaml").read_text()
    assert committed == render(stack, DEFAULT_REPO), "regenerate: venv/bin/python deploy/operator_stacks.py"
    manifest = yaml.safe_load(committed)
    jsonschema.validate(manifest, OPERATOR_STACK_SCHEMA)
    config, _ = stack_config(stack)
    expected = {k: yaml.safe_load(v) if v.startswith(("[", "{")) else v for k, v in config.items()}
    shipped = {k: (v if isinstance(v, (list, dict)) else str(v).lower() if isinstance(v, bool) else str(v))
               for k, v in manifest["spec"]["config"].items()}
    assert shipped == {**expected, "mtls-mesh:kubeContext": "in-cluster"}


def test_operator_schema_check_can_fail():
    bad = operator_stack("dev", DEFAULT_REPO)
    bad["spec"]["envRefs"]["VAULT_TOKEN"] = {"type": "Literal", "literal": {"value": "s.hunter2"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, OPERATOR_STACK_SCHEMA)


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_is_written_to_git(stack):
    text = (PROJECT_DIR / "deploy" / "operator" / f"{stack}.yaml").read_text()
    manifest = yaml.safe_load(text)
    assert not set(manifest["spec"]["config"]) & {f"mtls-mesh:{k}" for k in SECRET_SETTINGS}
    assert all(ref["type"] == "Secret" for ref in manifest["spec"]["envRefs"].values())
    for pattern in ("PRIVATE KEY", "hvs.", "passphrase:"):
        assert pattern not in text


def test_the_program_runs_with_the_operators_settings():
    manifest = operator_stack("prod", DEFAULT_REPO)
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in manifest["spec"]["config"].items()}
    run = run_program("prod", config=config)
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert "context" not in provider.inputs and "kubeconfig" not in provider.inputs


def test_in_cluster_with_a_kubeconfig_is_rejected():
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"kubeContext": "in-cluster", "kubeconfig": "/tmp/kubeconfig"})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:kubeconfig"]
