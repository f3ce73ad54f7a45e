"""Shared fixtures: each stack file run once per test session under mocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHARD_STACKS, STACKS, Run, run_program, stack_config  # noqa: E402
from conformance import shared_missing_reason  # noqa: E402

_runs: dict[str, Run] = {}
_meshes: dict[str, Run] = {}


def stack_run(stack: str) -> Run:
    if stack not in _runs:
        _runs[stack] = harness.unchanged_run(stack)
    return _runs[stack]


@pytest.fixture(autouse=True)
def _share_unchanged_runs(request):
    """run_program of an unchanged stack file, and a shard's read of its platform's outputs, reuse one run per session
    (harness.unchanged_run, handed out as copies) unless the test patches something."""
    harness.SHARE_UNCHANGED_RUNS = "monkeypatch" not in request.fixturenames
    yield
    harness.SHARE_UNCHANGED_RUNS = False


def shards_of_stack(stack: str) -> tuple[str, ...]:
    """The shard stacks whose platform is `stack` (none for a single stack)."""
    return tuple(s for s in SHARD_STACKS if stack_config(s)[0].get("mtls-mesh:platformStack") == stack)


def mesh_run(stack: str) -> Run:
    """What a whole mesh registers: a single stack's run, or a platform's with each of its shards' after it (their
    registrations in order, the platform's exports with the shards' matrices merged in). For tests about the mesh's
    objects; tests about one stack's state (URNs, wiring) take the stack's own run."""
    if stack in _meshes:
        return _meshes[stack]
    run = stack_run(stack)
    shards = [run_program(s, platform_outputs=run.exports) for s in shards_of_stack(stack)]
    if not shards:
        _meshes[stack] = run
        return run
    exports = dict(run.exports)
    for output in ("accessMatrix", "egressMatrix"):
        exports[output] = {key: value for part in (run, *shards) for key, value in part.exports[output].items()}
    _meshes[stack] = Run(stack, run.config, [r for part in (run, *shards) for r in part.registrations], exports,
                         run.secret_exports, run.preview)
    return _meshes[stack]


@pytest.fixture(params=STACKS)
def each_stack(request) -> Run:
    """The recorded run of every stack file, exactly as it is in the repository."""
    return stack_run(request.param)


@pytest.fixture(params=STACKS)
def each_mesh(request) -> Run:
    """Every environment's whole mesh (a platform with its shards): see mesh_run."""
    return mesh_run(request.param)


@pytest.fixture
def dev() -> Run:
    return stack_run("dev")


@pytest.fixture
def staging() -> Run:
    """staging's platform stack with its shards: the whole staging mesh (staging is sharded like prod)."""
    return mesh_run("staging")


@pytest.fixture
def staging_platform() -> Run:
    """staging's platform stack alone: its own state and wiring."""
    return stack_run("staging")


@pytest.fixture
def prod() -> Run:
    return stack_run("prod")


@pytest.fixture
def prod_single() -> Run:
    """prod as one stack (policyShards false): every object and its wiring in one run."""
    if "prod-single" not in _runs:
        _runs["prod-single"] = run_program("prod", set_config={"policyShards": False})
    return _runs["prod-single"]


@pytest.fixture
def prod_mesh() -> Run:
    """prod's platform stack with its shards: the whole prod mesh."""
    return mesh_run("prod")


@pytest.fixture
def needs_shared():
    reason = shared_missing_reason()
    if reason:
        pytest.skip(reason)
