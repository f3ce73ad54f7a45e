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
promote job runs it before it moves the branch). It refuses to move anything while a stack of the environment has an
update in progress, as far as that can be seen: Pulumi Cloud reports it (`pulumi stack ls --json`), the Operator too
(`--operator-namespace`: a Stack's `.status.currentUpdate`); a DIY backend does not, and there a running `up` holds
its stack's lock, which fails the handover's own writes: when the ledger cannot be written after the moves, they are
undone (`apply`). Limit: an `up` that starts after that check and ends before the ledger is written is not seen by
the CLI; the deploy workflow's concurrency group and the branch the Operator tracks (moved after the handover) keep
the environment's `up`s away meanwhile. It is idempotent: after a failure, run it again; it reads the states anew and
does only what is left.
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

    def updating(self) -> set[str]:
        """The stacks whose update is in progress, where the backend says so: `pulumi stack ls --json` sets
        `updateInProgress` only on a backend that `SupportsProgress` (pulumi pkg/cmd/pulumi/stack/stack_list.go
        lines 234-258 and `isUpdateInProgress` 338-341 at 1b5949891b3c: Pulumi Cloud, httpstate/backend.go 1051;
        never a DIY backend, diy/backend.go 810). On a DIY backend the stack's lock stands in: an `up` holds it
        (diy/backend.go `Update` 1203), and `stack import` and `state move` (stack/io.go `SaveSnapshot`) take it
        (`ImportDeployment` 1595) and fail on it (diy/lock.go `checkForLock`: "the stack is currently locked")."""
        return {entry["name"].rsplit("/", 1)[-1] for entry in json.loads(self._pulumi("stack", "ls", "--json"))
                if entry.get("updateInProgress")}

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


def operator_updates(namespace: str, stacks: Iterable[str], run=subprocess.run) -> dict[str, str]:
    """The Operator Stacks of `namespace` that run `stacks` and have an update outstanding: stack -> Update name.
    The Operator sets `.status.currentUpdate` before it creates the Update and clears it only once the Update is
    complete (pulumi-kubernetes-operator v2.9.0 b713fae5a350, operator/internal/controller/pulumi/stack_controller.go
    lines 1044-1050 and 616-652; api/pulumi/v1/stack_types.go line 47), so while it is set an `up` may be running."""
    done = run(["kubectl", "get", "stacks.pulumi.com", "--namespace", namespace, "--output", "json"], text=True,
               capture_output=True, check=False)
    if done.returncode != 0:
        raise TransitionError(f"`kubectl get stacks.pulumi.com --namespace {namespace}` failed: "
                              f"{(done.stderr or '').strip()[-2000:]}")
    wanted, found = set(stacks), {}
    for item in json.loads(done.stdout or "{}").get("items") or []:
        stack = ((item.get("spec") or {}).get("stack") or "").rsplit("/", 1)[-1]
        current = (item.get("status") or {}).get("currentUpdate")
        if stack in wanted and current:
            found[stack] = current.get("name") or "?"
    return found


def undo(backend: Backend, done: list, log) -> None:
    """The moves made so far, back where they were, last first: the states again what the unchanged ledger says."""
    for move in reversed(done):
        urns = namespace_urns(backend.export(move.dest), move.namespace)
        if urns:
            backend.move(move.dest, move.source, urns)
        log(f"namespace '{move.namespace}': moved back from '{move.dest}' to '{move.source}'")


def apply(backend: Backend, env: Environment, log=print, busy: Mapping[str, str] | None = None) -> Transition:
    """The handover. `busy`: stacks with an update outstanding that the backend cannot report (the Operator's,
    `operator_updates`), stack -> what runs it.

    An `up` that spans the handover read the old ledger when it started, and a platform's writes the ledger it
    computed then (`next_holders` of the old one) when it ends: were the states moved meanwhile, a ledger that gives a
    namespace to another stack than the one whose state holds it would let that stack delete it (the guard trusts
    the ledger). So nothing moves while any stack of the environment has an update in progress, and when the ledger
    cannot be written after the moves (a DIY backend's lock, held by an `up` the backend could not report), the
    moves are undone: the states then match the ledger the running `up` writes."""
    holders, exports = holdings(backend, env)
    result = planned(env, holders, exports)
    for line in describe(result):
        log(line)
    if result.needs_handover:
        involved = set(exports) | {move.dest for move in result.moves}
        running = {stack: "an update in progress (pulumi stack ls)" for stack in backend.updating() & involved}
        running.update({stack: why for stack, why in (busy or {}).items() if stack in involved})
        if running:
            raise TransitionError(
                "nothing moved: " + "; ".join(f"stack '{s}' has {why}" for s, why in sorted(running.items())) +
                ". An `up` running across the handover would write the ledger it read before it; wait until it is "
                "done and run this again")
    existing = set(backend.stacks())
    for stack in result.new_stacks:
        if stack not in existing:
            backend.init(stack)
    done = []
    try:
        for move in result.moves:
            urns = namespace_urns(backend.export(move.source), move.namespace)
            if urns:
                backend.move(move.source, move.dest, urns)
                done.append(move)
            holders[move.namespace] = move.dest
        if env.platform in set(backend.stacks()):
            write_ledger(backend, env, {ns: stack for ns, stack in holders.items()})
    except TransitionError as failed:
        if not done:
            raise
        try:
            undo(backend, done, log)
        except TransitionError as undoing:
            raise TransitionError(
                f"{failed}\nUndoing the moves failed too: {undoing}\nThe ledger does not say what the states hold: "
                "stop every `up` of the environment and run this again (it writes the ledger from the states)") from None
        raise TransitionError(f"{failed}\nThe moves are undone, so the states match the ledger as it was: nothing "
                              "changed. Run this again once no `up` of the environment is running") from None
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
    parser.add_argument("--operator-namespace", action="append", default=[],
                        help="a namespace of the environment's Operator Stacks (kubectl's current context): nothing "
                             "moves while one of them has an update outstanding")
    args = parser.parse_args(argv)
    backend, env = Backend(args.cwd), environment(args.stack, args.cwd)
    if args.action == "apply":
        stacks = set(env.files) | set(backend.stacks())
        busy = {stack: f"an Operator update outstanding ({namespace}/Update {name})"
                for namespace in args.operator_namespace
                for stack, name in operator_updates(namespace, stacks).items()}
        result = apply(backend, env, busy=busy)
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
