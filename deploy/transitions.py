"""Hands namespaces' policy objects from the stack that holds them to the one this commit gives them, in state.

    python -m deploy.transitions plan  --stack prod     # what is held where, what moves, the exact commands
    python -m deploy.transitions apply --stack prod     # run them (the deploy workflow, before any `up`)

`--stack` is an environment's single or platform stack; its shard stacks are the stack files naming it as their
platformStack, and the backend's stacks `<stack>-*` whose outputs do (a shard whose file was removed). What each
stack holds is read from its state (`pulumi stack export`: the groups `authz-<ns>`, `certs-workload-<ns>` and their
objects), never assumed; what it should hold from this checkout (plan/ownership.py `owners`). For each namespace
held by another stack than its owner here (plan/ownership.py `transition`):

1. `pulumi stack init <dest>` when the new owner's stack does not exist yet (a new shard);
2. `pulumi state move --source <holder> --dest <owner> --yes <every URN of the namespace's groups and objects>`:
   the objects stay on the cluster, untouched, and change stack in one state edit (pulumi
   pkg/cmd/pulumi/state/state_move.go at 1b5949891b3c: the destination is saved first, the source after, lines
   497-529; a resource whose parent stays behind is re-parented to the destination's root, lines 405-414, where
   shards register the groups and where the platform's groups carry an alias: components/k8s.py `moved_in`);
3. the platform's ledger (its `policyHolders` output, which every stack checks itself against before it registers
   anything) rewritten from what the states now hold: `pulumi stack export`, the root stack's outputs edited,
   `pulumi stack import`;
4. a stack no stack file names any more and that holds nothing now: `pulumi stack rm --force --yes` (it keeps only
   its Kubernetes provider and StackReference, no cluster object; never `pulumi destroy`, which would delete what
   another stack owns had a move failed: the holdings are checked first).

Run it when no `up` of the environment is running (the deploy workflow's concurrency group; under the Operator, the
promote job runs it before it moves the branch). It is idempotent: after a failure, run it again; it reads the
states anew and does only what is left.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from plan.ownership import HOLDERS_OUTPUT, Transition, describe, holds, owners, transition  # noqa: E402
from read.stack_files import load_stack_settings, read_stack_file  # noqa: E402

PROJECT = "mtls-mesh"
PLATFORM_STACK_KEY = f"{PROJECT}:platformStack"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


class TransitionError(SystemExit):
    """A refusal for the person or workflow running the handover, with what to do."""


def urn_name(urn: str) -> str:
    """A URN's name: everything after its third `::` (pulumi sdk/go/common/resource/urn/urn.go `Name`)."""
    return urn.split("::", 3)[3]


def urn_type(urn: str) -> str:
    return urn.split("::", 3)[2].rsplit("$", 1)[-1]


class Backend:
    """The Pulumi CLI, as the handover uses it. Tests replace it with a model of the same operations."""

    def __init__(self, cwd: Path = PROJECT_DIR, run=subprocess.run):
        self.cwd, self._run = cwd, run

    def _pulumi(self, *args: str, capture: bool = True) -> str:
        done = self._run(["pulumi", *args, "--non-interactive"], cwd=self.cwd, text=True,
                         capture_output=capture, check=False)
        if done.returncode != 0:
            raise TransitionError(f"`pulumi {shlex.join(args)}` failed ({done.returncode}): "
                                  f"{(done.stderr or '').strip()[-2000:]}")
        return done.stdout or ""

    def stacks(self) -> list[str]:
        return [entry["name"].rsplit("/", 1)[-1] for entry in json.loads(self._pulumi("stack", "ls", "--json"))]

    def export(self, stack: str) -> dict[str, Any]:
        return json.loads(self._pulumi("stack", "export", "--stack", stack))

    def import_(self, stack: str, deployment: Mapping[str, Any]) -> None:
        # A whole state (everything but secrets in plain text): gone once the CLI has read it, whatever it said.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump(deployment, file)
        try:
            self._pulumi("stack", "import", "--stack", stack, "--file", file.name)
        finally:
            Path(file.name).unlink(missing_ok=True)

    def init(self, stack: str) -> None:
        self._pulumi("stack", "init", stack, "--no-select")

    def move(self, source: str, dest: str, urns: list[str]) -> None:
        self._pulumi("state", "move", "--source", source, "--dest", dest, "--yes", *urns, capture=False)

    def remove(self, stack: str) -> None:
        self._pulumi("stack", "rm", stack, "--force", "--yes")


def resources(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((deployment.get("deployment") or {}).get("resources") or [])


def root_outputs(deployment: Mapping[str, Any]) -> dict[str, Any]:
    for resource in resources(deployment):
        if resource.get("type") == ROOT_STACK_TYPE:
            return resource.get("outputs") or {}
    return {}


def namespace_urns(deployment: Mapping[str, Any], namespace: str) -> list[str]:
    """Every URN of a namespace's groups and their objects in a stack's state, groups first (state move takes only
    direct children itself: state_move.go lines 278-287; every one is passed)."""
    found = [r["urn"] for r in resources(deployment) if holds(urn_name(r["urn"]), namespace)
             and not r["urn"].split("::", 3)[2].startswith("pulumi:providers:")]
    return sorted(found, key=lambda urn: (urn_type(urn) != CONFIG_GROUP, urn))


def held_namespaces(deployment: Mapping[str, Any], namespaces: Iterable[str]) -> set[str]:
    """The namespaces (of those given) whose groups this state holds."""
    groups = {urn_name(r["urn"]) for r in resources(deployment) if urn_type(r["urn"]) == CONFIG_GROUP}
    return {ns for ns in namespaces if any(holds(name, ns) for name in groups)}


@dataclass
class Environment:
    platform: str
    wanted: dict[str, str]  # namespace -> its stack at this checkout
    files: list[str]  # the environment's stacks with a stack file here


def environment(platform: str, project_dir: Path = PROJECT_DIR) -> Environment:
    stacks_dir = project_dir / "stacks"
    raw, secret_keys = read_stack_file(stacks_dir / f"Pulumi.{platform}.yaml")
    if raw.get(PLATFORM_STACK_KEY):
        raise TransitionError(f"{platform} is a shard stack: name its platform stack ({raw[PLATFORM_STACK_KEY]})")
    settings = load_stack_settings(raw, platform, secret_keys=secret_keys, project_dir=project_dir,
                                   stacks_dir=stacks_dir)
    files = [platform]
    for path in sorted(stacks_dir.glob("Pulumi.*.yaml")):
        stack = path.name.split(".")[1]
        # Only which platform a stack names is read here: another environment's invalid stack file is its own
        # stack's problem, not a reason to refuse this environment's handover.
        if read_stack_file(path, validate=False)[0].get(PLATFORM_STACK_KEY) == platform:
            read_stack_file(path)  # one of this environment's: what the CLI would refuse, refused here too
            files.append(stack)
    return Environment(platform, owners(settings.graph, settings.policy_shards, platform), files)


def holdings(backend: Backend, env: Environment) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(namespace -> the stack whose state holds its groups, each existing stack's export). Refuses a namespace held
    by two stacks: only a person can say which copy is right."""
    existing = set(backend.stacks())
    candidates = [s for s in env.files if s in existing]
    for stack in sorted(existing - set(env.files)):
        if stack.startswith(f"{env.platform}-"):
            candidates.append(stack)  # a shard stack whose file is gone, if its outputs say so (below)
    exports, holders = {}, {}
    everything = set(env.wanted)
    for stack in candidates:
        deployment = backend.export(stack)
        if stack not in env.files and root_outputs(deployment).get("platformStack") != env.platform:
            continue
        exports[stack] = deployment
        # Namespaces gone from the graph are found through the ledger and the states alike.
        ledger = root_outputs(deployment).get(HOLDERS_OUTPUT) or {}
        everything |= set(ledger)
    for stack, deployment in exports.items():
        everything |= {urn_name(r["urn"]).split(":", 1)[0].removeprefix("authz-").removeprefix("certs-workload-")
                       for r in resources(deployment) if urn_type(r["urn"]) == CONFIG_GROUP}
    for stack, deployment in exports.items():
        for namespace in sorted(held_namespaces(deployment, everything)):
            if namespace in holders:
                raise TransitionError(
                    f"namespace '{namespace}': its policy groups are in the state of both '{holders[namespace]}' and "
                    f"'{stack}'. Keep the stack that manages the live objects and remove them from the other's state "
                    f"(`pulumi state delete --stack <other> <urn>` for each of: "
                    f"{', '.join(namespace_urns(deployment, namespace)[:3])}...), then run this again")
            holders[namespace] = stack
    # A namespace with no policy object (no group in any state) is held where the ledger says: nothing moves, and
    # the ledger follows the graph.
    platform_ledger = root_outputs(exports[env.platform]).get(HOLDERS_OUTPUT) or {} if env.platform in exports else {}
    for namespace, stack in platform_ledger.items():
        if namespace not in holders and stack in exports:
            holders[namespace] = stack
    return holders, exports


def commands(env: Environment, result: Transition, exports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The exact commands `apply` runs, for a person who runs them by hand."""
    lines = [f"pulumi stack init {stack} --no-select" for stack in result.new_stacks]
    for move in result.moves:
        urns = namespace_urns(exports[move.source], move.namespace)
        lines.append(shlex.join(["pulumi", "state", "move", "--source", move.source, "--dest", move.dest, "--yes",
                                 *urns]))
    if result.moves or result.retired:
        lines.append(f"# then write the ledger: `pulumi stack export --stack {env.platform}`, set the root stack's "
                     f"outputs.{HOLDERS_OUTPUT} to what the states hold, `pulumi stack import` (apply does this)")
    lines += [f"pulumi stack rm {r.stack} --force --yes" for r in result.retired]
    return lines


def write_ledger(backend: Backend, env: Environment, holders: Mapping[str, str]) -> None:
    """The platform's `policyHolders` output set to what the states hold (namespaces of the graph here, and any
    other a state still holds, so its holder deletes it as the graph says)."""
    deployment = backend.export(env.platform)
    for resource in resources(deployment):
        if resource.get("type") == ROOT_STACK_TYPE:
            outputs = resource.setdefault("outputs", {})
            if outputs.get(HOLDERS_OUTPUT) == dict(holders):
                return
            outputs[HOLDERS_OUTPUT] = dict(sorted(holders.items()))
            backend.import_(env.platform, deployment)
            return
    raise TransitionError(f"stack '{env.platform}' has no root stack resource: run its first `pulumi up` before a "
                          "handover")


def planned(env: Environment, holders: Mapping[str, str], exports: Iterable[str]) -> Transition:
    """The transition from the states to this checkout; a stack is retired only when no stack file names it."""
    result = transition(holders, env.wanted, env.platform, exports)
    result.retired = [r for r in result.retired if r.stack not in env.files]
    return result


def apply(backend: Backend, env: Environment, log=print) -> Transition:
    holders, exports = holdings(backend, env)
    result = planned(env, holders, exports)
    for line in describe(result):
        log(line)
    existing = set(backend.stacks())
    for stack in result.new_stacks:
        if stack not in existing:
            backend.init(stack)
    for move in result.moves:
        urns = namespace_urns(backend.export(move.source), move.namespace)
        if urns:
            backend.move(move.source, move.dest, urns)
        holders[move.namespace] = move.dest
    if env.platform in set(backend.stacks()):
        write_ledger(backend, env, {ns: stack for ns, stack in holders.items()})
    for retired in result.retired:
        left = held_namespaces(backend.export(retired.stack), set(holders) | set(env.wanted))
        if left:
            raise TransitionError(f"stack '{retired.stack}' still holds {', '.join(sorted(left))} after the moves; "
                                  "it is not removed. Run this again")
        backend.remove(retired.stack)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.transitions", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("plan", "apply"))
    parser.add_argument("--stack", required=True, help="the environment's single or platform stack")
    parser.add_argument("--cwd", type=Path, default=PROJECT_DIR, help="the project directory (Pulumi.yaml)")
    args = parser.parse_args(argv)
    backend, env = Backend(args.cwd), environment(args.stack, args.cwd)
    if args.action == "apply":
        result = apply(backend, env)
        if not (result.moves or result.retired):
            print(f"{args.stack}: every namespace's policy objects are held by the stack this commit gives them")
        return 0
    holders, exports = holdings(backend, env)
    result = planned(env, holders, exports)
    for line in describe(result):
        print(line)
    for line in commands(env, result, exports):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
