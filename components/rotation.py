"""What an operator must do after each trust-anchor rotation phase: exported, so `pulumi up` prints the next step."""

from __future__ import annotations

from .settings import AnchorRotation

RESTART_ALL = ("kubectl -n linkerd rollout restart deploy && kubectl -n linkerd rollout status deploy; "
               "then restart every meshed workload (kubectl rollout restart deploy -n <namespace>)")

_NEXT_STEP = {
    "none": "Nothing to do. To rotate: set nextTrustAnchor and anchorRotationPhase add-next.",
    "add-next": f"Both anchors are now trusted. Restart so every proxy loads the new bundle: {RESTART_ALL}. "
                "Then set anchorRotationPhase issue-from-next.",
    "issue-from-next": f"The identity issuer now chains to the next anchor. Restart so proxies get leaves from it: "
                       f"{RESTART_ALL}. Then set anchorRotationPhase drop-previous.",
    "drop-previous": f"The previous anchor is no longer trusted. Restart: {RESTART_ALL}. Then finish: set trustAnchor "
                     "to the new id, clear nextTrustAnchor and set anchorRotationPhase none (no change is applied).",
}


def rotation_status(rotation: AnchorRotation) -> dict:
    return {
        "phase": rotation.phase,
        "trustedAnchors": list(rotation.bundle_anchors),
        "issuingAnchor": rotation.issuing_anchor,
        "nextStep": _NEXT_STEP[rotation.phase],
    }
