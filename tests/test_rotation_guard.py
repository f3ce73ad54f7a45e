"""The rotation guard: a trust-anchor rotation phase must follow the stack's last applied state (its own
`trustRotation` output, read through a StackReference to itself), or the update fails before anything is registered."""

from __future__ import annotations

import itertools

import pytest

from read.errors import SettingsError
from plan.rotation import rotation_status, rotation_step_problem
from read.settings import AnchorRotation
from harness import run_program

A, B = "2026-11", "2027-05"
STATES = {
    "none(A)": AnchorRotation("none", A, ""),
    "add-next": AnchorRotation("add-next", A, B),
    "issue-from-next": AnchorRotation("issue-from-next", A, B),
    "drop-previous": AnchorRotation("drop-previous", A, B),
    "none(B)": AnchorRotation("none", B, ""),
}
ORDER = list(STATES)
# Refused: skipping the bundle step, dropping an anchor that still signs, or going back to an anchor proxies dropped.
REFUSED = {
    ("none(A)", "issue-from-next"), ("none(A)", "drop-previous"), ("none(A)", "none(B)"),
    ("add-next", "drop-previous"), ("add-next", "none(B)"),
    ("issue-from-next", "none(A)"),
    ("drop-previous", "none(A)"), ("drop-previous", "add-next"),
    ("none(B)", "none(A)"), ("none(B)", "add-next"),
}


@pytest.mark.parametrize("before,after", list(itertools.product(ORDER, ORDER)))
def test_every_step_between_rotation_states(before, after):
    problem = rotation_step_problem(rotation_status(STATES[before], "restart"), STATES[after])
    assert (problem is not None) == ((before, after) in REFUSED), problem


def test_the_runbooks_steps_and_an_early_abort_are_allowed():
    runbook = list(zip(ORDER, ORDER[1:]))
    assert not set(runbook) & REFUSED
    assert ("add-next", "none(A)") not in REFUSED and ("issue-from-next", "add-next") not in REFUSED


def applied(stack: str, **changes):
    """A stack's outputs the program reads back (`trustRotation`, and a platform's ledger `policyHolders`) after an
    update with these settings, as that update exported them."""
    exports = run_program(stack, set_config=changes).exports
    return {name: exports[name] for name in ("trustRotation", "policyHolders") if name in exports}


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_skipped_phase_fails_before_anything_is_registered(stack):
    next_anchor = "dev-2" if stack == "dev" else B
    with pytest.raises(SettingsError) as caught:
        run_program(stack, set_config={"nextTrustAnchor": next_anchor, "anchorRotationPhase": "issue-from-next"},
                    previous_outputs=applied(stack))
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:anchorRotationPhase" and "allowRotationJump" in problem.fix
    # Only the stack's own outputs were read (a read, not a registration): no provider, no PKI, no bundle, no issuer.
    assert caught.value.registrations == []


def test_the_next_phase_an_abort_and_a_first_deployment_pass():
    none = applied("staging")
    run_program("staging", set_config={"nextTrustAnchor": B, "anchorRotationPhase": "add-next"}, previous_outputs=none)
    added = applied("staging", nextTrustAnchor=B, anchorRotationPhase="add-next")
    run_program("staging", set_config={"nextTrustAnchor": B, "anchorRotationPhase": "issue-from-next"},
                previous_outputs=added)
    run_program("staging", previous_outputs=added)  # abort: back to none before the issuer moved
    first = run_program("staging", set_config={"nextTrustAnchor": B, "anchorRotationPhase": "issue-from-next"})
    assert first.exports["trustRotation"]["issuingAnchor"] == B


def test_the_escape_hatch_lets_one_update_through():
    run = run_program("staging", set_config={"nextTrustAnchor": B, "anchorRotationPhase": "drop-previous",
                                             "allowRotationJump": True}, previous_outputs=applied("staging"))
    assert run.exports["trustRotation"]["trustedAnchors"] == [B]
