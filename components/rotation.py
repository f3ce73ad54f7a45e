"""What an operator must do after each trust-anchor rotation phase: exported, so `pulumi up` prints the next step."""

from __future__ import annotations

from typing import Any, Mapping

from read.errors import Problem, SettingsError
from read.settings import AnchorRotation

def next_step(phase: str, restart: str) -> str:
    """What to do after `phase`; `restart`: the mesh's restart sequence (MeshPlan.rotation_restart)."""
    return {
        "none": "Nothing to do. To rotate: set nextTrustAnchor and anchorRotationPhase add-next.",
        "add-next": f"Both anchors are now trusted. Restart so every proxy loads the new bundle: {restart}. "
                    "Then set anchorRotationPhase issue-from-next.",
        "issue-from-next": f"The identity issuer now chains to the next anchor. Restart so proxies get leaves from it: "
                           f"{restart}. Then set anchorRotationPhase drop-previous.",
        "drop-previous": f"The previous anchor is no longer trusted. Restart: {restart}. Then finish: set trustAnchor "
                         "to the new id, clear nextTrustAnchor and set anchorRotationPhase none (no change is applied).",
    }[phase]


def rotation_status(rotation: AnchorRotation, restart: str) -> dict:
    return {
        "phase": rotation.phase,
        "trustedAnchors": list(rotation.bundle_anchors),
        "issuingAnchor": rotation.issuing_anchor,
        "nextStep": next_step(rotation.phase, restart),
    }


def rotation_step_problem(previous: Mapping[str, Any] | None, rotation: AnchorRotation) -> str | None:
    """Why going from the stack's last applied rotation state (its `trustRotation` output) to this one would break
    mTLS, or None when it is safe.

    Safe means: proxies restarted under the previous state trust the new identity issuer's anchor (so leaves issued
    after this update verify), and the new bundle still trusts the previous issuing anchor (so the up to 24h-old
    leaves proxies hold keep verifying). The runbook's steps all pass, and so do aborting a rotation before the issuer
    moves (add-next -> none) and stepping back one phase while both anchors are trusted (issue-from-next -> add-next);
    skipping a phase (none -> issue-from-next, add-next -> drop-previous), going back after the old anchor was dropped,
    or changing trustAnchor without the phases fail.
    """
    if not previous or "issuingAnchor" not in previous or "trustedAnchors" not in previous:
        return None  # first deployment, or a stack from before the rotation output existed
    before_trusted, before_issuing = set(previous["trustedAnchors"]), previous["issuingAnchor"]
    if rotation.issuing_anchor not in before_trusted:
        return (f"the identity issuer would chain to anchor {rotation.issuing_anchor}, which proxies restarted under the "
                f"previous state (phase {previous.get('phase')}, trusting {sorted(before_trusted)}) do not trust")
    if before_issuing not in rotation.bundle_anchors:
        return (f"the trust bundle would drop anchor {before_issuing}, which still signs the certificates proxies "
                f"hold (previous phase {previous.get('phase')})")
    return None


def check_rotation_step(previous: Mapping[str, Any] | None, rotation: AnchorRotation, stack: str,
                        allow_jump: bool) -> str:
    """The phase, once the step from the previous state is known to be safe (or explicitly allowed)."""
    problem = rotation_step_problem(previous, rotation)
    if problem and not allow_jump:
        raise SettingsError([Problem(
            "mtls-mesh:anchorRotationPhase",
            f"{rotation.phase} cannot follow the stack's last applied state: {problem}",
            "Apply the phases one at a time (none -> add-next -> issue-from-next -> drop-previous -> none with the new "
            "trustAnchor), restarting after each. To recover a broken rotation or adopt an existing mesh, set "
            "allowRotationJump true for one update")], stack)
    return rotation.phase
