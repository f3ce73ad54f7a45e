"""A trust-anchor rotation across the clusters of one environment (plan/rotation.py cluster_rotation_problem), played
in every order two and three clusters can take their phases, as tests/test_transitions.py plays stack orders.

The model: each cluster walks the runbook none(A) -> add-next -> issue-from-next -> drop-previous -> none(B); an `up`
of a cluster hands the guard its next state and every other cluster's last applied `trustRotation` output (what the
readStackOutputs invoke returns). After an accepted `up` the moving cluster restarts; until it has, its proxies are
a mix of its previous and its new state, the others' all of their current one (trustRotation.nextStep: restart
after each phase). The oracle is X.509 trust as a proxy applies it, written from the bundles and issuing anchors
alone: two proxies talk iff each one's bundle holds the anchor the other's leaf chains to.

Checked for every order: every accepted step keeps every pair of proxies talking (within and across clusters); a
refused step is one that would break that, or leave two clusters more than one phase apart, or need an anchor the
root-owning stack does not hold; and the environment never deadlocks: from every state the model reaches, some
cluster can take its next step, so every order the guard refuses can be continued by another.
"""

from __future__ import annotations

import functools
import itertools

import pytest

from plan.rotation import cluster_rotation_problem, rotation_status
from read.settings import AnchorRotation

A, B = "2026-11", "2027-05"
RUNBOOK = (AnchorRotation("none", A, ""), AnchorRotation("add-next", A, B), AnchorRotation("issue-from-next", A, B),
           AnchorRotation("drop-previous", A, B), AnchorRotation("none", B, ""))
LAST = len(RUNBOOK) - 1
ROOT = "env-a"  # the stack owning the mesh root; the others name it as meshRootStack


def stacks(count: int) -> tuple[str, ...]:
    return tuple(f"env-{chr(ord('a') + i)}" for i in range(count))


def talk(one: AnchorRotation, other: AnchorRotation) -> bool:
    """Proxies of these two states complete mutual TLS: each bundle holds the other's issuing anchor."""
    return one.issuing_anchor in other.bundle_anchors and other.issuing_anchor in one.bundle_anchors


def safe(states: dict[str, int], mover: str, before: int) -> bool:
    """Every pair of proxies talks while the mover restarts (it runs proxies of both `before` and its new state)."""
    proxies = [(stack, RUNBOOK[at]) for stack, at in states.items()] + [(mover, RUNBOOK[before])]
    return all(talk(p, q) for (_, p), (_, q) in itertools.combinations(proxies, 2))


def phases_apart(i: int, j: int) -> int:
    """Runbook steps between two states, drop-previous and none(B) counting as one (the step between them applies
    no change: docs/operations.md)."""
    collapse = lambda at: min(at, 3)  # noqa: E731
    return abs(collapse(i) - collapse(j))


def root_holds(states: dict[str, int], mover: str, target: int) -> bool:
    if mover == ROOT:
        return True
    root = RUNBOOK[states[ROOT]]
    return set(RUNBOOK[target].anchors) <= {*root.bundle_anchors, root.issuing_anchor}


@functools.lru_cache(maxsize=None)
def guard(config: tuple[tuple[str, int], ...], mover: str, target: int) -> str | None:
    states = dict(config)
    peers = {stack: rotation_status(RUNBOOK[at]) for stack, at in states.items() if stack != mover}
    return cluster_rotation_problem(RUNBOOK[target], peers, "" if mover == ROOT else ROOT)


def step(states: dict[str, int], mover: str, target: int) -> str | None:
    """One `up` of `mover` to RUNBOOK[target]; checked against the oracle either way. Returns the refusal or None."""
    problem = guard(tuple(sorted(states.items())), mover, target)
    after = {**states, mover: target}
    if problem is None:
        assert safe(after, mover, states[mover]), (states, mover, target)
        assert root_holds(states, mover, target), (states, mover, target)
    else:
        apart = max(phases_apart(i, j) for i, j in itertools.combinations(after.values(), 2))
        assert (not safe(after, mover, states[mover]) or apart > 1 or not root_holds(states, mover, target)), \
            (states, mover, target, problem)
        assert "mtls-mesh" not in problem  # the key is the error's `where`; the text says what and why
    return problem


def orders(count: int):
    """Every interleaving of the clusters' runbook steps (each cluster's own steps in order)."""
    moves = [stack for stack in stacks(count) for _ in range(LAST)]
    return sorted(set(itertools.permutations(moves))) if count == 2 else _interleavings(stacks(count), LAST)


def _interleavings(names: tuple[str, ...], each: int):
    def walk(left: dict[str, int]):
        if not any(left.values()):
            yield ()
            return
        for name in names:
            if left[name]:
                for rest in walk({**left, name: left[name] - 1}):
                    yield (name, *rest)
    return list(walk(dict.fromkeys(names, each)))


@pytest.mark.parametrize("count", [2, 3])
def test_every_order_of_the_clusters_phases(count):
    accepted = refused = 0
    for order in orders(count):
        states = dict.fromkeys(stacks(count), 0)
        for mover in order:
            if step(states, mover, states[mover] + 1) is not None:
                refused += 1
                break
            states[mover] += 1
        else:
            accepted += 1
            assert set(states.values()) == {LAST}
    # Both kinds exist: the guard lets some orders through whole and stops others.
    assert accepted and refused and accepted + refused == len(orders(count))


@pytest.mark.parametrize("count", [2, 3])
def test_from_every_reachable_state_a_cluster_can_move_on(count):
    """No deadlock: in every state the accepted steps reach (forward, or one back as an abort), some cluster's next
    runbook step is accepted, until all have finished."""
    start = tuple(sorted(dict.fromkeys(stacks(count), 0).items()))
    seen, todo = {start}, [start]
    while todo:
        config = todo.pop()
        states = dict(config)
        if set(states.values()) == {LAST}:
            continue
        movable = [s for s in states if states[s] < LAST and step(states, s, states[s] + 1) is None]
        assert movable, f"deadlock at {states}"
        for mover in states:
            for target in (states[mover] - 1, states[mover] + 1):
                if 0 <= target <= LAST and step(states, mover, target) is None:
                    nxt = tuple(sorted({**states, mover: target}.items()))
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
    assert len(seen) > count * LAST


@pytest.mark.parametrize("count", [2, 3])
def test_the_runbook_in_lockstep_root_first_is_accepted_whole(count):
    states = dict.fromkeys(stacks(count), 0)
    for target in range(1, LAST + 1):
        for mover in stacks(count):  # env-a, the root-owning stack, first
            assert step(states, mover, target) is None, (states, mover, target)
            states[mover] = target


def test_a_cluster_two_phases_ahead_is_refused_naming_the_peers_and_the_order():
    problem = step({"env-a": 2, "env-b": 1, "env-c": 1}, "env-a", 3)
    assert problem and "env-b: add-next" in problem and "env-c: add-next" in problem
    assert "none -> add-next -> issue-from-next -> drop-previous -> none" in problem


def test_an_abort_is_refused_once_a_peer_issues_from_the_next_anchor():
    assert step({"env-a": 1, "env-b": 1}, "env-a", 0) is None  # both still issue from A
    assert step({"env-a": 2, "env-b": 1}, "env-b", 0) is not None


def test_a_secondary_cannot_take_an_anchor_the_root_stack_has_not_made():
    problem = step({"env-a": 0, "env-b": 0}, "env-b", 1)
    assert problem and "env-a" in problem and "apply add-next to env-a first" in problem
    assert step({"env-a": 1, "env-b": 0}, "env-b", 1) is None


def test_a_peer_on_another_anchor_is_refused():
    other = rotation_status(AnchorRotation("none", "1999-01", ""))
    problem = cluster_rotation_problem(RUNBOOK[1], {"env-a": other}, "env-a")
    assert problem and "env-a" in problem and "1999-01" in problem


def test_peers_that_have_not_applied_do_not_hold_a_cluster_back():
    assert cluster_rotation_problem(RUNBOOK[2], {"env-b": None, "env-c": {}}, "") is None


def test_the_next_rotation_waits_for_every_cluster_to_finish_this_one():
    c = "2027-11"
    peer = rotation_status(AnchorRotation("issue-from-next", A, B))
    assert cluster_rotation_problem(AnchorRotation("add-next", B, c), {"env-b": peer}, "") is not None
    done = rotation_status(AnchorRotation("drop-previous", A, B))
    assert cluster_rotation_problem(AnchorRotation("add-next", B, c), {"env-b": done}, "") is None
