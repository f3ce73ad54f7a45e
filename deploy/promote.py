"""What the delivery workflows ask of a stack: who delivers it, and whether the Operator has applied a commit.

    python -m deploy.promote delivered-by --stack staging          # prints workflows or operator
    python -m deploy.promote wait --stack staging --commit <sha>   # until the stack's update of <sha> ends

`up.yml` runs `pulumi up` itself for a `workflows` stack; for an `operator` stack it moves the branch the Operator
tracks (`deploy/<stack>`) to the commit and waits here until the backend records the Operator's update of that commit.
The update fails when the mesh checks fail (plan/linkerd/verification.py), so "succeeded" means verified, exactly as
for a `pulumi up` the workflow runs itself; the next environment's job waits for this one.

The commit of an update is read from the backend's update history: the CLI records the working tree's HEAD in each
update's environment as `git.head` (pulumi `pkg/backend/updates.go`, `GitHead`), and the Operator's workspace runs
the CLI in a git checkout of that commit (pulumi-kubernetes-operator `operator/internal/controller/auto/
workspace_controller.go`, the `fetch` init container).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

PROJECT_DIR = Path(__file__).resolve().parents[1]
KEY = "mtls-mesh:deliveredBy"
PLATFORM_STACK = "mtls-mesh:platformStack"
DELIVERERS = ("workflows", "operator")
DEFAULT = "workflows"


class DeliveryError(SystemExit):
    """A refusal with a message meant for the person reading the workflow log."""


def _stack_config(stack: str, project_dir: Path) -> dict[str, Any]:
    """The stack's config as the Pulumi CLI hands it to the program (read/stack_files.py: defaults filled in)."""
    from read.errors import SettingsError
    from read.stack_files import read_stack_file

    path = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise DeliveryError(f"{stack}: no stack file {path.relative_to(project_dir)}")
    try:
        return read_stack_file(path, project_dir=project_dir, validate=False)[0]
    except SettingsError as err:
        raise DeliveryError(f"{stack}: {err}") from None


def delivered_by(stack: str, project_dir: Path = PROJECT_DIR) -> str:
    """The stack file's deliveredBy (the Pulumi.yaml default when unset); the program validates the same key. A shard
    stack's is its platform's: it holds no deliveredBy (the program reads every setting but its scope from the
    platform's file), and the Operator runs a shard's Stack only beside an operator platform's
    (deploy/operator_shards.py)."""
    config = _stack_config(stack, project_dir)
    platform = config.get(PLATFORM_STACK)
    if platform:
        shard, stack, config = stack, str(platform), _stack_config(str(platform), project_dir)
        if config.get(PLATFORM_STACK):
            raise DeliveryError(f"{shard}: its platformStack {stack} is itself a shard stack "
                                f"(stacks/Pulumi.{stack}.yaml names platformStack {config[PLATFORM_STACK]})")
    value = config.get(KEY, DEFAULT)
    if value not in DELIVERERS:
        raise DeliveryError(f"{stack}: {KEY} is {value!r}, not one of {', '.join(DELIVERERS)} "
                            f"(stacks/Pulumi.{stack}.yaml)")
    return value


def verdict(history: Iterable[dict[str, Any]], commit: str) -> str | None:
    """"succeeded" or "failed" for the newest finished update of `commit`, None while there is none yet.

    `history` is `pulumi stack history --json`, newest first. Refreshes and previews are not updates of the commit;
    an update of another commit says nothing about this one.
    """
    for update in history:
        if update.get("kind") != "update":
            continue
        if (update.get("environment") or {}).get("git.head") != commit:
            continue
        result = update.get("result")
        if result in ("succeeded", "failed"):
            return result
    return None


def qualified(stack: str, org: str, backend: str) -> str:
    """Pulumi Cloud names a stack <org>/<project>/<stack>; a DIY backend's stacks need no organization."""
    cloud = not backend or backend.startswith("https://")
    return f"{org}/mtls-mesh/{stack}" if cloud and org else stack


def stack_history(stack: str) -> list[dict[str, Any]]:
    """The newest updates of `stack` (org/project/stack on Pulumi Cloud; the backend comes from PULUMI_BACKEND_URL)."""
    out = subprocess.run(["pulumi", "stack", "history", "--stack", stack, "--json", "--page-size", "20"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def wait(stack: str, commit: str, timeout: int, interval: int = 30, history=stack_history, sleep=time.sleep) -> None:
    waited = 0
    while True:
        result = verdict(history(stack), commit)
        if result == "succeeded":
            print(f"{stack}: the Operator applied {commit} and its checks passed")
            return
        if result == "failed":
            raise DeliveryError(f"{stack}: the Operator's update of {commit} failed; read the Stack's status "
                                f"(kubectl -n pulumi-operator describe stack mtls-mesh-{stack}) and its Update objects")
        if waited >= timeout:
            raise DeliveryError(f"{stack}: no finished update of {commit} after {timeout}s: is the Operator running, "
                                f"and does Stack mtls-mesh-{stack} track refs/heads/deploy/{stack}?")
        sleep(interval)
        waited += interval


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    by = sub.add_parser("delivered-by")
    by.add_argument("--stack", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--stack", required=True)
    w.add_argument("--commit", required=True)
    w.add_argument("--timeout", type=int, default=3600)
    w.add_argument("--org", default="", help="Pulumi Cloud organization (empty: a DIY backend)")
    args = parser.parse_args(argv)
    if args.command == "delivered-by":
        print(delivered_by(args.stack))
    else:
        wait(qualified(args.stack, args.org, os.environ.get("PULUMI_BACKEND_URL", "")), args.commit, args.timeout)


if __name__ == "__main__":
    main(sys.argv[1:])
