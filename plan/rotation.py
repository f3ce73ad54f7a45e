"""Where a trust-anchor rotation stands, and which moves keep every mTLS connection verifiable: within one stack (its
next state against the state it last applied) and across the clusters of an environment (this cluster's next state
against the states its peers last applied). Plain data in, a problem (a sentence) or None out; components/rotation.py
turns a problem into the error or warning.

The mTLS argument both checks rest on: a connection between two proxies verifies when each proxy's bundle holds the
anchor the other's leaf chains to. A proxy's leaf chains to its cluster's issuing anchor of the last state it was
restarted under; its bundle is that state's. So for any two proxies, wherever they run, each state's issuing anchor
must be in the other's bundle.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from read.settings import AnchorRotation

ORDER = "none -> add-next -> issue-from-next -> drop-previous -> none (with the new trustAnchor)"


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


def rotation_status(rotation: AnchorRotation, restart: str = "the control plane, then every meshed workload") -> dict:
    """The `trustRotation` output: what the stack applied, read back by itself and by its peer clusters."""
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
    if not _applied(previous):
        return None  # first deployment, or a stack from before the rotation output existed
    assert previous is not None
    before_trusted, before_issuing = set(previous["trustedAnchors"]), previous["issuingAnchor"]
    if rotation.issuing_anchor not in before_trusted:
        return (f"the identity issuer would chain to anchor {rotation.issuing_anchor}, which proxies restarted under the "
                f"previous state (phase {previous.get('phase')}, trusting {sorted(before_trusted)}) do not trust")
    if before_issuing not in rotation.bundle_anchors:
        return (f"the trust bundle would drop anchor {before_issuing}, which still signs the certificates proxies "
                f"hold (previous phase {previous.get('phase')})")
    return None


def _applied(state: Mapping[str, Any] | None) -> bool:
    return bool(state) and all(key in state for key in ("phase", "trustedAnchors", "issuingAnchor"))


# drop-previous and none with the new trustAnchor are the same trust (one anchor, issuing from it; the step between
# them applies no change): one position. The line repeats every three positions, one period per anchor.
_STEP = {"none": 0, "add-next": 1, "issue-from-next": 2, "drop-previous": 3}
PERIOD = 3


def position(rotation: AnchorRotation) -> int:
    """This rotation's step on its own line: none(trustAnchor)=0, add-next=1, issue-from-next=2, drop-previous=3
    (= none with the new trustAnchor, 0 of the next line)."""
    return _STEP[rotation.phase]


def applied_position(state: Mapping[str, Any], rotation: AnchorRotation) -> int | None:
    """Where a peer's applied `trustRotation` stands on `rotation`'s line (position()): negative while the peer is
    still in the rotation that led to this trustAnchor, 3 or more once it has finished this one (or started the one
    after); None when its anchors are not this line's (another trustAnchor, another next anchor)."""
    phase, trusted, issuing = state["phase"], list(state["trustedAnchors"]), state["issuingAnchor"]
    current, upcoming = rotation.current, rotation.next
    if phase in ("none", "drop-previous") and len(trusted) == 1 and trusted[0] == issuing:
        if trusted[0] == current:
            return 0
        if upcoming and trusted[0] == upcoming:
            return PERIOD
        return None
    if phase in ("add-next", "issue-from-next") and len(trusted) == 2:
        old, new = trusted
        step = _STEP[phase]
        if issuing != (old if phase == "add-next" else new):
            return None
        if old == current and (new == upcoming or not upcoming):
            return step
        if new == current:
            return step - PERIOD
        if upcoming and old == upcoming:
            return step + PERIOD
    return None


def _describe(state: Mapping[str, Any]) -> str:
    return f"{state['phase']} (trusting {', '.join(state['trustedAnchors'])}; issuing from {state['issuingAnchor']})"


def mesh_root_missing_problem(root_stack: str, peers: Mapping[str, Mapping[str, Any] | None],
                              root_is_cluster: bool = True) -> str | None:
    """Why a secondary cluster (meshRootStack set) cannot apply yet, or None. The stack owning the mesh root has not
    applied, so neither the Vault root mount its intermediate is signed under nor (dev) the root's key exist; or it
    has applied only as a single-cluster stack (`root_is_cluster` False: an existing environment turning into its
    first cluster, docs/multicluster.md), so what a secondary reads from it (in dev the root's key, the peers' link
    contract) is not among its outputs yet."""
    if not root_stack:
        return None
    if not _applied(peers.get(root_stack)):
        return (f"the stack owning the mesh root, {root_stack}, has not applied yet, so the root this cluster's "
                f"intermediate or identity issuer is signed under does not exist")
    if not root_is_cluster:
        return (f"the stack owning the mesh root, {root_stack}, has applied only as a single-cluster stack so far: "
                f"what this cluster reads from it (in dev its root's key) is there only once it has applied with "
                f"cluster set")
    return None


def cluster_rotation_problem(rotation: AnchorRotation, peers: Mapping[str, Mapping[str, Any] | None],
                             root_stack: str = "") -> str | None:
    """Why this cluster may not apply `rotation` given the states its peer clusters last applied (`peers`: stack ->
    its `trustRotation` output, None for one that has not applied), or None when it may.

    Ahead and behind are positions on the rotation's line (position()): this cluster's next state and every peer's
    applied state must lie within one step of each other (max - min <= 1). Any two states one step apart verify each
    other's leaves, also while the cluster that just moved still runs proxies of its previous state (module
    docstring; each cluster restarts after each phase, as trustRotation.nextStep says): none/add-next share the old
    issuing anchor and add-next trusts both; add-next/issue-from-next both trust both; issue-from-next/drop-previous
    share the new issuing anchor and issue-from-next trusts both. Two steps apart fail: none/issue-from-next (the
    none bundle lacks the new issuer's anchor), add-next/drop-previous (the dropped anchor still signs add-next's
    leaves), and issue-from-next/none(new) while the first still runs add-next's proxies. The rule never blocks the
    rotation: the clusters furthest behind can always take their next step, and the others wait for them.

    `root_stack` (a secondary cluster's meshRootStack, one of `peers`): the stack owning the mesh root must still hold
    every anchor this state needs (its applied trustedAnchors and issuingAnchor): a secondary signs its intermediate
    under the root's mount, or (dev) reads the root's key from its outputs. So in each phase that adds an anchor the
    root-owning stack goes first, and none of the others can step back to an anchor it has dropped."""
    applied = {stack: state for stack, state in peers.items() if _applied(state)}
    if not applied:
        return None  # the first cluster of the environment to apply, or peers that have not yet
    target = position(rotation)
    where = {stack: applied_position(state, rotation) for stack, state in applied.items()}
    peers_text = "; ".join(f"{stack}: {_describe(state)}" for stack, state in sorted(applied.items()))
    foreign = sorted(stack for stack, at in where.items() if at is None)
    if foreign:
        return (f"{rotation.phase} of anchors {', '.join(a for a in (rotation.current, rotation.next) if a)} does not "
                f"continue the rotation peer cluster(s) {', '.join(foreign)} last applied ({peers_text}): every cluster "
                f"of an environment trusts one root and rotates it together, in the order {ORDER}")
    steps = [target, *(at for at in where.values() if at is not None)]
    if max(steps) - min(steps) > 1:
        behind = sorted(stack for stack, at in where.items() if at is not None and at < target - 1)
        ahead = sorted(stack for stack, at in where.items() if at is not None and at > target + 1)
        spread = sorted(stack for stack, at in where.items() if at is not None and at in (min(steps), max(steps)))
        if behind:
            why = (f"{', '.join(behind)} {'is' if len(behind) == 1 else 'are'} more than one phase behind it: apply "
                   f"the next phase there first")
        elif ahead:
            why = (f"{', '.join(ahead)} {'is' if len(ahead) == 1 else 'are'} more than one phase ahead of it: bring this "
                   "cluster up one phase at a time")
        else:
            why = (f"the peers {', '.join(spread)} are already a phase apart, and this state would leave some two "
                   "clusters two phases apart: bring the ones behind up first")
        return (f"this cluster would apply {rotation.phase} while its peer clusters last applied {peers_text}; {why}. "
                f"Every cluster of an environment moves one phase at a time, in the order {ORDER}, and no cluster "
                "may be a phase ahead of a peer that is itself behind: proxies of one cluster must trust the anchor "
                "the others' issuers sign with")
    if root_stack and root_stack in applied:
        held = {*applied[root_stack]["trustedAnchors"], applied[root_stack]["issuingAnchor"]}
        missing = [anchor for anchor in rotation.anchors if anchor not in held]
        if missing:
            return (f"this cluster's {rotation.phase} needs anchor(s) {', '.join(missing)}, which the stack owning the "
                    f"mesh root, {root_stack}, does not hold as last applied ({_describe(applied[root_stack])}): "
                    f"apply {rotation.phase} to {root_stack} first (the root-owning stack leads each phase)")
    return None


def peer_stacks(cluster_peers: Iterable[str], mesh_root_stack: str, stack: str) -> tuple[str, ...]:
    """The stacks whose applied rotation this cluster's must stay within one phase of: its linked peers and the stack
    owning its mesh root (sorted, without itself)."""
    return tuple(sorted({*cluster_peers, *([mesh_root_stack] if mesh_root_stack else [])} - {stack}))
