"""The rotation guards at registration time: the phase this stack applies must follow the state it last applied
(check_rotation_step), and stay within one phase of the states its peer clusters last applied
(check_cluster_rotation). What is safe is decided in plan/rotation.py; here a problem becomes the error (`up`) or a
warning (preview), before any resource is registered."""

from __future__ import annotations

from typing import Any, Mapping

import pulumi

from components.platform import current_outputs
from plan.rotation import (ORDER, cluster_rotation_problem, mesh_root_missing_problem, rotation_status,
                           rotation_step_problem)
from plan.linkerd.multicluster_contract import OUTPUT as CLUSTER_CONTRACT_OUTPUT
from read.errors import Problem, SettingsError
from read.settings import AnchorRotation

__all__ = ["check_cluster_rotation", "check_rotation_step", "root_applied_as_cluster", "rotation_status", "rotation_step_problem"]

PEER_ROTATION_OUTPUT = "trustRotation"


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


def peer_rotations(peers: tuple[str, ...]) -> dict[str, Mapping[str, Any] | None]:
    """Each peer stack's `trustRotation` output as the backend holds it now (None: it has not applied one), through
    the builtin invoke `pulumi:pulumi:readStackOutputs` (components/platform.current_outputs): a plain value read at
    compile time, in previews too, registering nothing."""
    found: dict[str, Mapping[str, Any] | None] = {}
    for peer in peers:
        try:
            value = current_outputs(peer).get(PEER_ROTATION_OUTPUT)
        except Exception as err:  # noqa: BLE001 - the engine's error, whatever the backend
            if "unknown stack" not in str(err):
                # Read as "not applied", a peer this stack may not read would let it run phases ahead of that peer.
                raise SettingsError([Problem(
                    "mtls-mesh:clusterPeers", f"the outputs of the cluster stack {peer} cannot be read ({err}), so "
                    "this cluster cannot tell which rotation phase it applied",
                    f"Let this stack's backend login read {peer}, then run again")]) from None
            # A peer stack not created yet (pulumi pkg/backend/backend.go GetStackOutputs: `unknown stack %q`, the
            # bring-up order): nothing applied.
            pulumi.log.info(f"peer stack {peer}: no outputs to read ({err}); taken as not applied yet")
            value = None
        found[peer] = dict(value) if isinstance(value, Mapping) else None
    return found


def root_applied_as_cluster(root_stack: str) -> bool:
    """Whether the stack owning the mesh root has applied as a cluster stack: its outputs hold the multicluster
    contract every cluster stack exports (an environment's existing stack that is becoming its first cluster has
    applied, but only as a single-cluster stack, until its first `up` with cluster set)."""
    if not root_stack:
        return True
    try:
        return current_outputs(root_stack).get(CLUSTER_CONTRACT_OUTPUT) is not None
    except Exception as err:  # noqa: BLE001 - a stack not created yet: peer_rotations says it has not applied
        pulumi.log.info(f"mesh root stack {root_stack}: no outputs to read ({err})")
        return False


def check_cluster_rotation(rotation: AnchorRotation, peers: Mapping[str, Mapping[str, Any] | None], stack: str, *,
                           root_stack: str, preview: bool, allow_jump: bool, root_is_cluster: bool = True) -> None:
    """Refuse a phase a phase ahead of or behind the environment's other clusters (plan/rotation.py
    cluster_rotation_problem); in a preview only warn, as the other guards do (a pull request changes every cluster's
    file at once; the deploy then applies them in order). allowRotationJump lets one update through, as it does the
    stack's own step guard."""
    missing_root = mesh_root_missing_problem(root_stack, peers, root_is_cluster)
    if missing_root is not None:
        # Not skippable with allowRotationJump: there is nothing to sign under.
        if preview:
            pulumi.log.warn(f"mtls-mesh:meshRootStack: {missing_root}. `pulumi up` of this stack will refuse until "
                            f"{root_stack} has applied with cluster set.")
            return
        raise SettingsError([Problem("mtls-mesh:meshRootStack", missing_root,
                                     f"Run `pulumi up` on {root_stack} first, then on this stack (docs/multicluster.md, "
                                     "'Bringing stacks up')")], stack)
    problem = cluster_rotation_problem(rotation, peers, root_stack)
    if problem is None or allow_jump:
        return
    if preview:
        pulumi.log.warn(f"mtls-mesh:anchorRotationPhase: {problem}. `pulumi up` of this stack will refuse until then.")
        return
    raise SettingsError([Problem(
        "mtls-mesh:anchorRotationPhase", problem,
        f"Move the clusters one phase at a time ({ORDER}): each phase on the stack owning the mesh root first, then "
        "on every other cluster, restarting after each as trustRotation.nextStep says; only then the next phase. To "
        "recover a broken rotation, set allowRotationJump true for one update")], stack)
