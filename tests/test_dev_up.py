"""The README's two commands from a fresh machine say what they need before doing anything: scripts/dev-up (dev end to
end on kind) and .ci/run with .ci/install-tools (the tests as CI runs them). They cannot run here (no Docker daemon, no
Pulumi CLI), so each runs with a PATH that holds exactly the tools a case gives it, stand-ins that log every call;
and dev-up's pinned versions are the dev workflow's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import PROJECT_DIR

DEV_UP = PROJECT_DIR / "scripts" / "dev-up"
BASH = shutil.which("bash")
# What the scripts use besides the tools they check: these come from the machine in every case.
BASE_COMMANDS = ("dirname", "sed", "head", "grep", "cat", "id", "mkdir", "tar")
DEV_KIND = yaml.safe_load((PROJECT_DIR / ".github" / "workflows" / "dev-kind.yml").read_text())["jobs"]["up"]


def pinned_pulumi() -> str:
    """The Pulumi CLI version dev-up must require: the workflows' pin when they set one, else the SDK's."""
    for step in DEV_KIND["steps"]:
        if step.get("uses", "").startswith("pulumi/actions@") and "pulumi-version" in step.get("with", {}):
            return str(step["with"]["pulumi-version"]).lstrip("v")
    return re.search(r"^pulumi==([0-9.]+)$", (PROJECT_DIR / "requirements.txt").read_text(), re.M).group(1)


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    """A command that logs its arguments to calls.log, then runs `body` (sh)."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{bin_dir.parent / "calls.log"}"\n{body}\n')
    path.chmod(0o755)


def machine(tmp_path: Path, tools: dict[str, str], real: tuple[str, ...] = ()) -> Path:
    """A bin directory with the base commands, the real commands named in `real`, and stand-ins for `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*BASE_COMMANDS, *real):
        found = shutil.which(name)
        assert found, f"{name} is needed to run this test"
        (bin_dir / name).symlink_to(found)
    for name, body in tools.items():
        stand_in(bin_dir, name, body)
    return bin_dir


def run(script: Path, bin_dir: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "MTLS_MESH_DEV_STATE": str(tmp_path / "state"),
           "MTLS_MESH_TOOLS": str(tmp_path / "tools")}
    return subprocess.run([BASH, str(script), *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=120)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def every_tool(pulumi_version: str, docker_info: str = "exit 0") -> dict[str, str]:
    return {
        "docker": f'[ "$1" = info ] && {{ {docker_info}; }}; exit 0',
        "kind": 'echo "kind v0.29.0 go1.24.2 linux/amd64"',
        "kubectl": "exit 0",
        "pulumi": f'[ "$1" = version ] && echo "v{pulumi_version}"; exit 0',
    }


def test_a_machine_without_the_tools_is_told_each_one_and_where_to_get_it_before_anything_happens(tmp_path):
    result = run(DEV_UP, machine(tmp_path, {}), tmp_path)
    assert result.returncode == 1, result
    message = result.stderr
    for tool, where in (("docker", "https://docs.docker.com/engine/install/"),
                        ("kind", "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"),
                        ("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
                        ("pulumi", f"https://get.pulumi.com | sh -s -- --version {pinned_pulumi()}"),
                        ("python3", "apt-get install python3 python3-venv")):
        line = next((entry for entry in message.split("\n  - ")[1:] if entry.startswith(f"{tool}: not found")), None)
        assert line, f"{tool} is not named as missing:\n{message}"
        assert where in line, f"{tool}: no way to get it in {line!r}"
    assert "Nothing was changed" in message
    assert not (tmp_path / "state").exists() and not (tmp_path / "home").exists()


def test_a_wrong_pulumi_a_stopped_docker_and_an_old_python_stop_it_before_any_step(tmp_path):
    tools = every_tool("3.100.0", docker_info="exit 1")
    tools["python3"] = '[ "$1" = --version ] && echo "Python 3.9.2"; exit 1'
    result = run(DEV_UP, machine(tmp_path, tools), tmp_path)
    assert result.returncode == 1, result
    assert "docker: installed, but its daemon does not answer" in result.stderr
    assert f"pulumi: version 'v3.100.0' found, {pinned_pulumi()} needed" in result.stderr
    assert "python3: Python 3.9.2 found, 3.11 or newer needed" in result.stderr
    assert "kind" not in result.stderr.split("cannot bring dev up", 1)[1], "kind v0.29.0 is what CI uses"
    made = [c for c in calls(tmp_path) if c.split()[:2] not in (["docker", "info"], ["kind", "version"],
                                                                 ["pulumi", "version"], ["python3", "-c"],
                                                                 ["python3", "--version"])]
    assert made == [], f"dev-up ran more than its checks: {made}"
    assert not (tmp_path / "state").exists()


def test_with_every_tool_the_check_passes_and_changes_nothing(tmp_path):
    result = run(DEV_UP, machine(tmp_path, every_tool(pinned_pulumi()), real=("python3",)), tmp_path, "--check")
    assert result.returncode == 0, result.stderr
    assert f"prerequisites found: docker, kind, kubectl, pulumi {pinned_pulumi()}" in result.stdout
    assert {c.split()[0] for c in calls(tmp_path)} <= {"docker", "kind", "pulumi"}
    assert not any(c.startswith(("kind create", "pulumi up", "kubectl")) for c in calls(tmp_path))
    assert not (tmp_path / "state").exists()


def test_dev_up_uses_the_dev_workflows_kind_node_and_crds():
    script = DEV_UP.read_text()
    value = {k: v for k, v in re.findall(r"^([A-Z_]+)=(\S+)$", script, re.M)}
    kind_action = next(s for s in DEV_KIND["steps"] if s.get("uses", "").startswith("helm/kind-action@"))["with"]
    assert value["KIND_VERSION"] == kind_action["version"]
    assert value["KIND_NODE_IMAGE"] == kind_action["node_image"]
    assert value["CLUSTER"] == kind_action["cluster_name"]
    crds = next(s["run"] for s in DEV_KIND["steps"] if "prometheus-operator" in s.get("run", ""))
    assert value["PROMETHEUS_OPERATOR_CRDS"] in crds
    assert "--policy-pack policy --policy-pack-config policy/dev.json" in script
    dev_stack = yaml.safe_load((PROJECT_DIR / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    assert dev_stack["mtls-mesh:kubeContext"] == f"kind-{value['CLUSTER']}"


def test_the_readme_names_the_pinned_pulumi_and_both_commands():
    readme = (PROJECT_DIR / "README.md").read_text()
    prerequisites = readme.split("\n## Prerequisites\n", 1)[1].split("\n## ", 1)[0]
    assert f"({pinned_pulumi()}:" in prerequisites
    setup = readme.split("\n## Set up and deploy a stack\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"```bash\nscripts/dev-up\b", setup)
    assert os.access(DEV_UP, os.X_OK), "scripts/dev-up must be executable"


def test_install_tools_names_what_it_cannot_install_before_installing_anything(tmp_path):
    result = run(PROJECT_DIR / ".ci" / "install-tools", machine(tmp_path, {}), tmp_path)
    assert result.returncode == 1, result
    assert "the Debian packages prometheus (promtool, prometheus), curl (curl), shellcheck (shellcheck): no apt-get" \
        in result.stderr
    assert "helm v4.1.4: fetched with npm, unpacked with tar and python3; missing: npm python3." in result.stderr
    assert "Nothing was installed." in result.stderr
    assert not (tmp_path / "tools").exists()


def test_install_tools_without_root_or_sudo_says_so(tmp_path):
    bin_dir = machine(tmp_path, {"apt-get": "exit 0", "npm": "exit 0"}, real=("python3",))
    (bin_dir / "id").unlink()
    stand_in(bin_dir, "id", 'echo 1000')
    result = run(PROJECT_DIR / ".ci" / "install-tools", bin_dir, tmp_path)
    assert result.returncode == 1, result
    assert "apt-get needs root, and there is no sudo; run as root: apt-get install prometheus curl shellcheck" \
        in result.stderr
    assert not [c for c in calls(tmp_path) if c.startswith(("apt-get", "npm"))], "it installed something"


def test_ci_run_without_python_says_what_it_needs(tmp_path):
    result = run(PROJECT_DIR / ".ci" / "run", machine(tmp_path, {}), tmp_path)
    assert result.returncode == 1, result
    assert "needs python3 >= 3.11 with its venv module (found: none)" in result.stderr
    assert "apt-get install python3 python3-venv" in result.stderr


def test_the_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        message = "shellcheck not found: run .ci/install-tools (Debian shellcheck)"
        if os.environ.get("MTLS_MESH_REQUIRE_TOOLS"):
            pytest.fail(f"{message} (MTLS_MESH_REQUIRE_TOOLS is set, so this is a failure, not a skip)")
        pytest.skip(message)
    scripts = [DEV_UP, PROJECT_DIR / ".ci" / "run", PROJECT_DIR / ".ci" / "install-tools"]
    result = subprocess.run([shellcheck, "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
