"""Which stacks a pull request changes: the pull-request workflow previews exactly these.

    python -m deploy.changed_stacks --base <checkout of the base> --head <checkout of the head> [--skip dev]
        [--reasons reasons.json]

prints a JSON list, one `{"stack", "platform", "role", "new"}` per stack to preview (`platform`: the stack whose
settings and GitHub environment it uses; for a single or platform stack itself; `new`: its stack file is not at the
base, so it is not in the backend yet and its preview job does not ask for a `pulumi preview` of it). Why each
stack was or was not chosen goes to stderr, and with --reasons to a file.

Decided by compiling, not by paths: each single and platform stack's settings are loaded and compiled at the base
and at the head (read.settings.load_settings, plan.mesh.compile_mesh), once per distinct input, and each stack's
part of the plan compared (plan.changes.part_digest): a shard is chosen when its namespaces' objects, its contract
or its matrix entries differ, its platform when anything else does, a single stack when its plan does. The stack
files, the graph and any file a setting names are inputs; the program and the pack are not compared by compiling
(the base's would have to run): a change to them (PROGRAM_PATHS) chooses every stack. A stack that cannot be read
at the base (new in the pull request, or the base does not compile) is chosen, and so is one that does not compile
at the head (its preview shows why).

A change of which stack holds a namespace's policy objects (a `shard:` moved, a shard renamed or removed, policyShards
on or off) is a transition (plan/ownership.py): `transitions` names each, per environment, with what the deploy
workflow does before its `up`s (deploy/transitions.py: the handover) and the commands a person would run; they go to
stderr and, with --reasons, into the same file, where the review comment shows them. A stack file the pull request
deletes is listed too (never previewed: there is no head to preview), with what retires it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from plan.changes import changed_components, owners, part_digests, part_matrices  # noqa: E402
from plan.mesh import compile_mesh  # noqa: E402
from plan.ownership import Transition, describe, handover_command, owners as stack_owners, transition  # noqa: E402,E501
from plan.shards import PLATFORM, SHARD, SINGLE, stack_scope  # noqa: E402
from read.errors import SettingsError  # noqa: E402
from read.settings import load_settings  # noqa: E402
from read.settings_format import PROJECT, load_declarations  # noqa: E402
from read.stack_files import (peer_reader, read_stack_file, stack_file, stack_file_entries,  # noqa: E402
                              stack_names)

# What runs, rather than what is compiled: a change here may change every stack's preview. The CI modules that
# choose and render the previews are in it too, so a change to the choosing is itself previewed everywhere.
PROGRAM_PATHS = ("__main__.py", "Pulumi.yaml", "read", "plan", "components", "policy", ".github", "requirements*.txt",
                 "deploy/changed_stacks.py", "deploy/review_matrices.py")
# Made by the workflows or by Python next to the code, never committed.
NOT_SOURCE = {"__pycache__", "venv", ".pytest_cache", ".mypy_cache"}
# "A matrix will generate a maximum of 256 jobs per workflow run" (GitHub docs, jobs.<job_id>.strategy.matrix).
MATRIX_LIMIT = 256
POLICY_SHARDS, PLATFORM_STACK, SHARD_KEY = "mtls-mesh:policyShards", "mtls-mesh:platformStack", "mtls-mesh:shard"
# Keys this module interprets itself: stripped before load_settings when the checkout's Pulumi.yaml does not declare
# them (a checkout from before shards).
SHARD_KEYS = {POLICY_SHARDS: "policyShards", PLATFORM_STACK: "platformStack", SHARD_KEY: "shard"}


# Pulumi's stack names (alphanumerics, '-', '_', '.'; at most 100): a file name or platformStack outside it is no
# stack, and the workflow must not receive it (names reach job names, artifact names and, through env, scripts).
STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class Unreadable(Exception):
    """A stack that cannot be compiled in a checkout; the message says why, in one line."""


@dataclass(frozen=True)
class StackFile:
    stack: str
    role: str  # single, platform or shard
    platform: str  # the stack whose settings (and GitHub environment) it uses: itself unless a shard
    shard: str | None
    config: dict[str, str]
    secret_keys: frozenset[str]
    ciphertexts: dict[str, str]  # secret settings as the stack file holds them (a changed secret changes them)


def _files(root: Path, pattern: str) -> dict[str, str]:
    """Relative path -> sha256 of every source file a PROGRAM_PATHS entry covers in one checkout."""
    found = {}
    for path in sorted(root.glob(pattern)):
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in candidates:
            relative = file.relative_to(root)
            if NOT_SOURCE & set(relative.parts) or file.suffix == ".pyc":
                continue
            found[relative.as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def program_changes(base: Path, head: Path) -> list[str]:
    """The program and pack files added, removed or changed between the checkouts."""
    changed = []
    for pattern in PROGRAM_PATHS:
        before, after = _files(base, pattern), _files(head, pattern)
        changed += sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    return changed


def _truth(value: str | None) -> bool:
    return str(value).strip().lower() == "true"


def read_stack(root: Path, stack: str) -> StackFile | None:
    path = stack_file(stack, root / "stacks")
    if not path.is_file():
        return None
    try:
        # As the CLI hands it to the program at this checkout (its own Pulumi.yaml's defaults). Not validated: a
        # checkout the CLI would refuse is still compared, and its compile says what is wrong.
        config, secret_keys = read_stack_file(path, validate=False)
        entries = stack_file_entries(path)
    except (OSError, SettingsError) as err:
        raise Unreadable(f"stacks/{path.name} cannot be read: {_one_line(err)}") from None
    ciphertexts = {key: json.dumps(value, sort_keys=True) for key, value in entries.items() if key in secret_keys}
    # Every stack holds both keys (the CLI fills in their default, ""): a shard's stack file is one that sets them.
    if config.get(PLATFORM_STACK) or config.get(SHARD_KEY):
        platform, shard = config.get(PLATFORM_STACK, ""), config.get(SHARD_KEY, "")
        if not platform or not shard:
            raise Unreadable(f"stacks/{path.name} is a shard's stack file but lacks {PLATFORM_STACK} or {SHARD_KEY}")
        return StackFile(stack, SHARD, platform, shard, config, secret_keys, ciphertexts)
    role = PLATFORM if _truth(config.get(POLICY_SHARDS)) else SINGLE
    return StackFile(stack, role, stack, None, config, secret_keys, ciphertexts)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:400]}{'...' if len(text) > 400 else ''}"


def _named_stacks(config: dict[str, str]) -> list[str]:
    """The other stacks whose files a stack's settings read: its clusterPeers and its meshRootStack."""
    try:
        peers = json.loads(config.get(f"{PROJECT}:clusterPeers", "[]") or "[]")
    except ValueError:
        peers = []
    names = [*(peers if isinstance(peers, list) else []), config.get(f"{PROJECT}:meshRootStack", "")]
    return sorted({n for n in names if isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", n)})


class Checkout:
    """One checkout of the repository, its stacks compiled on demand. `cache` (shared between checkouts) holds one
    compile per distinct input: the stack name, its config, and the content of every file or folder a setting names
    (the graph, CA files), so a stack whose inputs a pull request leaves alone compiles once, not twice."""

    def __init__(self, root: Path, cache: dict[str, Any] | None = None):
        self.root = Path(root).resolve()
        self.cache = cache if cache is not None else {}

    def declarations(self):
        """The checkout's Pulumi.yaml declarations, read once (parsing it costs more than compiling a small graph)."""
        if not hasattr(self, "_declarations"):
            self._declarations = load_declarations(self.root / "Pulumi.yaml")
        return self._declarations

    def stacks(self) -> tuple[str, ...]:
        return stack_names(self.root / "stacks", shards=True) if (self.root / "stacks").is_dir() else ()

    def stack_file(self, stack: str) -> StackFile | None:
        return read_stack(self.root, stack)

    def _input_key(self, file: StackFile) -> str:
        hashed = hashlib.sha256(json.dumps([file.stack, file.config], sort_keys=True).encode())
        project = self.root / "Pulumi.yaml"
        hashed.update(project.read_bytes() if project.is_file() else b"")
        try:
            # A setting left to its default names a file too (serviceGraph: services.yaml).
            defaults = {f"{PROJECT}:{k}": d.default for k, d in self.declarations().items()
                        if isinstance(d.default, str)}
        except Exception:  # noqa: BLE001 - then the compile says what is wrong with Pulumi.yaml
            defaults = {}
        for key, value in sorted({**defaults, **file.config}.items()):
            if key in file.secret_keys or not value or len(value) > 4096 or "\0" in value:
                continue
            try:
                path = (self.root / value).resolve()
                named = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) \
                    if path.is_dir() and path != self.root and path.is_relative_to(self.root) else []
            except (OSError, ValueError, RuntimeError):
                continue
            for item in named:
                hashed.update(f"\0{key}\0{item.relative_to(path.parent) if item != path else ''}\0".encode())
                hashed.update(item.read_bytes())
        # A cluster stack compiles its peers' stack files too (their clusters, networks, API servers): a change there
        # is a change of its inputs.
        for name in _named_stacks(file.config):
            peer = self.root / "stacks" / f"Pulumi.{name}.yaml"
            hashed.update(f"\0stack\0{name}\0".encode())
            hashed.update(peer.read_bytes() if peer.is_file() else b"")
        return hashed.hexdigest()

    def compiled(self, file: StackFile):
        """(settings, plan, the checkout it was compiled in) of a single or platform stack, or Unreadable."""
        key = self._input_key(file)
        if key not in self.cache:
            self.cache[key] = self._compile(file)
        result = self.cache[key]
        if isinstance(result, Unreadable):
            raise result
        return result

    def _compile(self, file: StackFile):
        try:
            declarations = self.declarations()
            config = {k: v for k, v in file.config.items() if k not in SHARD_KEYS or SHARD_KEYS[k] in declarations}
            # A cluster stack reads its peers' stack files (clusterPeers, meshRootStack) beside its own, in this
            # checkout: without them it does not compile, and the review would show no matrix of it.
            settings = load_settings(config, file.stack, secret_keys=file.secret_keys, project_dir=self.root,
                                     declarations=declarations, peers=peer_reader(self.root / "stacks", self.root))
            return settings, compile_mesh(settings), self.root
        except Exception as err:  # noqa: BLE001 - any checkout may hold anything; the reason names the error
            return Unreadable(f"stacks/Pulumi.{file.stack}.yaml does not compile: {_one_line(err)}")

    def platform_of(self, file: StackFile) -> StackFile:
        if file.role != SHARD:
            return file
        platform = self.stack_file(file.platform)
        if platform is None:
            raise Unreadable(f"its platform stack file stacks/Pulumi.{file.platform}.yaml does not exist")
        if platform.role != PLATFORM:
            raise Unreadable(f"its platform stack '{file.platform}' does not set policyShards: true")
        return platform

    def scope(self, file: StackFile):
        settings, plan, compiled_in = self.compiled(self.platform_of(file))
        return settings, plan, stack_scope(settings.graph, file.role != SINGLE, file.shard), compiled_in

    def digests(self, stack: str) -> dict[str, str]:
        file = self.stack_file(stack)
        if file is None:
            raise Unreadable(f"stacks/Pulumi.{stack}.yaml does not exist")
        settings, plan, scope, compiled_in = self.scope(file)
        platform = self.platform_of(file)
        extra = {"file": file.config} if file.role == SHARD else {"secrets": platform.ciphertexts}
        return part_digests(settings, plan, scope, extra, str(compiled_in))

    def matrices(self, stack: str) -> dict[str, Any]:
        """What the stack exports as accessMatrix and egressMatrix, and which stack owns each graph namespace."""
        file = self.stack_file(stack)
        if file is None:
            raise Unreadable(f"stacks/Pulumi.{stack}.yaml does not exist")
        settings, plan, scope, _ = self.scope(file)
        by_shard = owners(settings.graph, file.role != SINGLE)
        return {**part_matrices(plan, settings.graph, scope),
                "owners": {ns: f"{file.platform}-{shard}" if shard else file.platform for ns, shard in by_shard.items()},
                "namespaces": list(scope.namespaces)}


@dataclass(frozen=True)
class Choice:
    stack: str
    platform: str
    role: str
    selected: bool
    reason: str
    # No stack file at the base: the stack cannot be in the backend yet (its first deploy creates it), so its preview
    # job skips `pulumi preview` without asking the backend (.github/workflows/pull-request.yml).
    new: bool = False

    def entry(self) -> dict[str, Any]:
        return {"stack": self.stack, "platform": self.platform, "role": self.role, "new": self.new}


WHAT_CHANGED = {SINGLE: "its plan changed", PLATFORM: "its part of the plan (outside the shards') changed",
                SHARD: "its part of the plan changed"}


def choose(base: Path, head: Path, skip: tuple[str, ...] = ()) -> list[Choice]:
    """Every stack of the head checkout, chosen or not, with the reason."""
    cache: dict[str, Any] = {}
    before, after = Checkout(base, cache), Checkout(head, cache)
    program = program_changes(before.root, after.root)
    choices = []
    for stack in after.stacks():
        try:
            file = after.stack_file(stack)
        except Unreadable as err:
            choices.append(Choice(stack, stack, SINGLE, True, f"does not read at the head: {err}"))
            continue
        if stack in skip or file.platform in skip:
            continue
        try:
            new = before.stack_file(stack) is None
        except Unreadable:
            new = False  # a file at the base that does not read: maybe deployed, so the backend is asked
        if program:
            shown = ", ".join(program[:5]) + (f" and {len(program) - 5} more" if len(program) > 5 else "")
            choices.append(Choice(stack, file.platform, file.role, True, f"the program or the pack changed ({shown})",
                                  new))
            continue
        try:
            wanted = after.digests(stack)
        except Unreadable as err:
            choices.append(Choice(stack, file.platform, file.role, True, f"does not compile at the head: {err}", new))
            continue
        try:
            if new:
                choices.append(Choice(stack, file.platform, file.role, True, "new in this pull request", new))
                continue
            had = before.digests(stack)
        except Unreadable as err:
            choices.append(Choice(stack, file.platform, file.role, True,
                                  f"the base cannot be compared ({err}), so it is previewed"))
            continue
        changed = changed_components(had, wanted)
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        choices.append(Choice(stack, file.platform, file.role, bool(changed),
                              f"{WHAT_CHANGED[file.role]}: {shown}" if changed else "unchanged"))
    for stack in sorted(set(before.stacks()) - set(after.stacks())):
        try:
            file = before.stack_file(stack)
        except Unreadable:
            continue
        if stack in skip or file.platform in skip:
            continue
        choices.append(Choice(stack, file.platform, file.role, False, (
            f"its stack file is removed: nothing to preview. The deploy's transition step hands what it holds to the "
            f"stacks this commit gives it and removes the stack (`{handover_command(file.platform)}`); "
            "it is never destroyed")))
    return choices


def _owners(checkout: Checkout, stack: str) -> dict[str, str] | None:
    """Namespace -> the stack that registers its policy, in an environment (its single or platform stack) of one
    checkout; None when the checkout has no such stack or it does not compile."""
    try:
        file = checkout.stack_file(stack)
        if file is None or file.role == SHARD:
            return None
        settings, _, _ = checkout.compiled(file)
    except Unreadable:
        return None
    return stack_owners(settings.graph, file.role == PLATFORM, stack)


def transitions(base: Path, head: Path, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Per environment whose namespaces change stack between the checkouts: the transition (plan/ownership.py), the
    steps the deploy workflow takes and the command that takes them."""
    cache: dict[str, Any] = {}
    before, after = Checkout(base, cache), Checkout(head, cache)
    found = []
    for stack in after.stacks():
        if stack in skip:
            continue
        had, wanted = _owners(before, stack), _owners(after, stack)
        if had is None or wanted is None:
            continue
        base_stacks = [s for s in before.stacks() if s == stack or _platform_of(before, s) == stack]
        head_stacks = {s for s in after.stacks() if s == stack or _platform_of(after, s) == stack}
        result = transition(had, wanted, stack, base_stacks)
        result.retired = [r for r in result.retired if r.stack not in head_stacks]
        if not result.needs_handover:
            continue
        steps = describe(Transition(moves=result.moves, retired=result.retired))
        found.append({"transition": stack, "steps": steps, "command": handover_command(stack),
                      "pipeline": (f"the deploy workflow runs `{handover_command(stack)}` before any `up` of "
                                   f"{stack}'s stacks (Operator: the promote job, before it moves deploy/{stack}); "
                                   "until then each stack's `up` refuses, and its preview warns")})
    return found


def _platform_of(checkout: Checkout, stack: str) -> str | None:
    try:
        file = checkout.stack_file(stack)
    except Unreadable:
        return None
    return file.platform if file is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.changed_stacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="checkout of the base (the merge commit's parent)")
    parser.add_argument("--head", type=Path, default=PROJECT_DIR, help="checkout of the head (default: this one)")
    parser.add_argument("--skip", action="append", default=[], help="a stack (and its shards) never previewed here")
    parser.add_argument("--reasons", type=Path, help="write every stack's choice and reason to this JSON file")
    args = parser.parse_args(argv)
    choices = choose(args.base, args.head, tuple(args.skip))
    bad = [c for c in choices if not (STACK_NAME.fullmatch(c.stack) and STACK_NAME.fullmatch(c.platform))]
    if bad:
        print(f"error: {', '.join(repr(c.stack) for c in bad)}: not a stack name, or a shard whose platformStack is "
              "not one (letters, digits, '-', '_' and '.', at most 100). Rename the stack file", file=sys.stderr)
        return 2
    for choice in choices:
        print(f"{choice.stack}: {'preview' if choice.selected else 'no preview'} ({choice.reason})", file=sys.stderr)
    moves = transitions(args.base, args.head, tuple(args.skip))
    for entry in moves:
        print(f"{entry['transition']}: a change of ownership; {entry['pipeline']}:", file=sys.stderr)
        for step in entry["steps"]:
            print(f"  - {step}", file=sys.stderr)
    if args.reasons:
        args.reasons.write_text(json.dumps([{**c.entry(), "selected": c.selected, "reason": c.reason}
                                            for c in choices] + moves, indent=1) + "\n", encoding="utf-8")
    selected = [c.entry() for c in choices if c.selected]
    if len(selected) > MATRIX_LIMIT:
        print(f"error: {len(selected)} stacks to preview, more than the {MATRIX_LIMIT} jobs one GitHub matrix runs. "
              "Preview in several workflow runs (split the pull request), or group shards so fewer stacks exist",
              file=sys.stderr)
        return 2
    print(json.dumps(selected, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
