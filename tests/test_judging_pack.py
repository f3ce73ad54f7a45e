"""Which policy pack judges a change: a pull request's previews are judged by the base branch's pack at the base's
enforcement levels, so a pull request cannot lower them or weaken a rule for itself; a deployment is judged by the
pack of the commit it deploys, which is main's (reviewed, merged). See docs/policy-pack.md."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import pytest
import yaml

from harness import PROJECT_DIR, STACKS

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
BASE_SHA = "${{ github.event.pull_request.base.sha }}"


def workflow(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def pulumi_step(job):
    return next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@") and "command" in s.get("with", {}))


def judging_pack_problems(job) -> list[str]:
    """Why the pack a preview job runs is not the base branch's, at the base's levels ([] when it is)."""
    steps = job["steps"]
    action = pulumi_step(job)["with"]
    pack = action.get("policyPacks", "")
    problems = []
    checkouts = [(i, s) for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/checkout@")]
    head = next((i for i, s in checkouts if "path" not in s.get("with", {})), None)
    base = next(((i, s["with"]) for i, s in checkouts
                 if s.get("with", {}).get("path") and pack == f"{s['with']['path']}/policy"), None)
    if base is None:
        return [f"policyPacks {pack!r} is not the policy/ of a checkout of its own: it is the pull request's pack"]
    index, checkout = base
    if checkout.get("ref") != BASE_SHA:
        problems.append(f"the pack's checkout is of {checkout.get('ref')!r}, not the base branch's commit")
    if checkout.get("persist-credentials") is not False:
        problems.append("the pack's checkout keeps the job's token in its git config")
    if head is not None and index < head:
        problems.append("the head's checkout after the pack's cleans the workspace the pack is in")
    levels = action.get("policyPackConfigs", "")
    step_id = levels.removeprefix("${{ steps.").removesuffix(".outputs.levels }}")
    levels_step = next((s for s in steps if s.get("id") == step_id), None) if step_id != levels else None
    if levels_step is None or f'levels="{pack}/$PLATFORM.json"' not in levels_step.get("run", ""):
        problems.append(f"policyPackConfigs {levels!r} is not the base's policy/<platform>.json")
    elif f"{pack}/venv" not in levels_step["run"] or f"-r {pack}/requirements.txt" not in levels_step["run"]:
        problems.append("the pack's dependencies are not the base's")
    return problems


def test_a_pull_request_is_judged_by_the_base_branchs_pack_at_the_base_branchs_levels():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert judging_pack_problems(preview) == []
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"


def test_the_judging_pack_check_fails_on_the_pull_requests_own_pack():
    """The workflow as it was: `policyPacks: policy`, `policy/<platform>.json`, both the pull request's own."""
    preview = copy.deepcopy(workflow("pull-request.yml")["jobs"]["preview"])
    pulumi_step(preview)["with"].update(policyPacks="policy", policyPackConfigs="policy/${{ matrix.platform }}.json")
    assert judging_pack_problems(preview) == [
        "policyPacks 'policy' is not the policy/ of a checkout of its own: it is the pull request's pack"]
    # The base's pack with the pull request's levels, or from the head's commit, or keeping the token, fails too.
    levels = copy.deepcopy(workflow("pull-request.yml")["jobs"]["preview"])
    pulumi_step(levels)["with"]["policyPackConfigs"] = "policy/${{ matrix.platform }}.json"
    assert any("policyPackConfigs" in p for p in judging_pack_problems(levels))
    head = copy.deepcopy(workflow("pull-request.yml")["jobs"]["preview"])
    checkout = next(s for s in head["steps"] if s.get("with", {}).get("path") == ".judging-pack")
    checkout["with"]["ref"] = "${{ github.sha }}"
    del checkout["with"]["persist-credentials"]
    assert len(judging_pack_problems(head)) == 2


def levels_script():
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    return next(s for s in preview["steps"] if s.get("id") == "judging-pack")["run"]


@pytest.mark.parametrize("platform, expected", [("prod", "base's prod"), ("newenv", "all mandatory")])
def test_the_levels_are_the_base_platforms_or_every_rule_mandatory(tmp_path, platform, expected):
    """The step's own script, run with pip stubbed: a platform the base knows gets the base's file; one it does not (a
    new environment the pull request adds) gets every rule mandatory, never the pull request's file."""
    workspace, temp, bin_dir = tmp_path / "ws", tmp_path / "tmp", tmp_path / "bin"
    for d in (workspace / ".judging-pack" / "policy", workspace / "policy", temp, bin_dir):
        d.mkdir(parents=True)
    (workspace / ".judging-pack" / "policy" / "prod.json").write_text('{"all": "mandatory"}')
    (workspace / "policy" / "newenv.json").write_text('{"all": "advisory"}')
    (bin_dir / "python").write_text('#!/bin/sh\nmkdir -p "$3/bin" && printf "#!/bin/sh\\n" > "$3/bin/pip" && chmod +x "$3/bin/pip"\n')
    (bin_dir / "python").chmod(0o755)
    output = tmp_path / "output"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PLATFORM": platform, "RUNNER_TEMP": str(temp),
           "GITHUB_OUTPUT": str(output)}
    subprocess.run(["bash", "-e", "-c", levels_script()], cwd=workspace, env=env, check=True)
    levels = output.read_text().strip().removeprefix("levels=")
    chosen = json.loads((workspace / levels).read_text())
    assert levels == (".judging-pack/policy/prod.json" if expected == "base's prod" else f"{temp}/all-mandatory.json")
    assert chosen == {"all": "mandatory"}


def test_every_environment_has_levels_in_the_pack():
    for stack in STACKS:
        assert (PROJECT_DIR / "policy" / f"{stack}.json").exists()


def test_a_deployment_is_judged_by_the_pack_of_the_commit_it_deploys_on_main():
    """deploy.yml runs on main (a push, or a dispatch, whose environments admit main only: README); up.yml checks out
    that very commit and runs its policy/ at its levels: the pack reviewed and merged with it."""
    deploy = workflow("deploy.yml")
    assert deploy[True] == {"push": {"branches": ["main"]}, "workflow_dispatch": None}  # yaml 1.1 reads `on` as True
    callers = {name for name in WORKFLOWS.glob("*.yml") if "./.github/workflows/up.yml" in name.read_text()}
    assert callers == {WORKFLOWS / "deploy.yml"}, "only main's deployment calls up.yml"
    up = workflow("up.yml")["jobs"]["up"]
    checkout = next(s for s in up["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert "ref" not in checkout.get("with", {}) and "repository" not in checkout.get("with", {}), \
        "the commit the workflow runs for, nothing else"
    action = pulumi_step(up)["with"]
    assert action["policyPacks"] == "policy"
    assert action["policyPackConfigs"] == "policy/${{ inputs.environment || inputs.stack }}.json"
