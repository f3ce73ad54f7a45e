"""Shared fixtures: each stack file run once per test session under mocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import STACKS, Run, run_program  # noqa: E402
from conformance import shared_missing_reason  # noqa: E402

_runs: dict[str, Run] = {}


def stack_run(stack: str) -> Run:
    if stack not in _runs:
        _runs[stack] = run_program(stack)
    return _runs[stack]


@pytest.fixture(params=STACKS)
def each_stack(request) -> Run:
    """The recorded run of every stack file, exactly as it is in the repository."""
    return stack_run(request.param)


@pytest.fixture
def dev() -> Run:
    return stack_run("dev")


@pytest.fixture
def staging() -> Run:
    return stack_run("staging")


@pytest.fixture
def prod() -> Run:
    return stack_run("prod")


@pytest.fixture
def needs_shared():
    reason = shared_missing_reason()
    if reason:
        pytest.skip(reason)
