"""A change of `mesh` on a live environment (issue 32; plan/ownership.py `mesh_switch_problem`, docs/changing-mesh.md),
played on a model of the engine, the cluster and its pods, with the real program (tests/harness.py) run for prod and
its shards at each commit, in every order of their `up`s.

The engine's semantics are tests/test_transitions.py's (a create whose object exists fails AlreadyExists, what an `up`
no longer registers is deleted, a refused program or a preview changes nothing), plus what a switch adds, from source
(docs/changing-mesh.md cites it):
- the platform's `up` installs the new mesh's releases and deletes the old mesh's; uninstalling a CRD release deletes
  the CRDs Helm does not keep (Linkerd's policy CRDs), and Kubernetes deletes every object of them (the shards'
  Servers...); the kept ones (Istio's, the Gateway API's) and their objects stay until their holder's `up` deletes them;
- a pod keeps the proxy it started with until it restarts; a restart gives it the proxy its Namespace's injection
  label or annotation names;
- a proxy keeps the last policy its control plane served (linkerd2-proxy: the watch keeps its last value once it has
  one, linkerd/tonic-watch); a Linkerd proxy whose control plane is gone cannot look up a destination
  (linkerd/app/outbound/src/discover.rs: a policy error other than NotFound fails the lookup, and
  policy/api.rs retries Unavailable with backoff);
- pods of two meshes share no identity and talk plaintext: Istio sends plaintext to an endpoint without
  `security.istio.io/tlsMode: istio` (injection template), Linkerd to one its destination service gives no identity.
  Plaintext is refused by a STRICT PeerAuthentication, and by a Linkerd proxy whose policy is not one of
  audit/all-unauthenticated (a Server's accessPolicy; the namespace default for a port without Server).

The model's invariants: no call of the graph is refused for plaintext at any step of the guarded path; the only calls
that fail are a Linkerd caller's after its control plane is gone and before it restarts (the runbook restarts at
once); at the end every pod runs the new mesh and no object of the old mesh is left or held by two stacks.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import Run, run_program
from plan.ownership import MESH_OUTPUT, PLAINTEXT_PHASES, applied_mesh, mesh_switch_problem
from read.errors import SettingsError
from istio_settings import settings_of

PLATFORM = "prod"
SHARDS = ("prod-payments", "prod-storefront")
STACKS = (PLATFORM, *SHARDS)
HELM = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
# Which release is a mesh's control plane, and which one carries its CRDs (plan/linkerd/, plan/istio/names.py).
CONTROL_PLANE_RELEASES = {"linkerd-control-plane": "linkerd", "istiod": "istio"}
# Which API groups' CRDs a release's uninstall deletes: Helm keeps a CRD annotated `helm.sh/resource-policy: keep`,
# which every Istio CRD of the pinned base chart is (files/crd-all.gen.yaml; templates/crds.yaml keeps annotations) and
# so are linkerd-crds' Gateway API ones (templates/gateway.networking.k8s.io_*.yaml); Linkerd's policy CRDs are not.
CRD_RELEASES = {"linkerd-crds": ("policy.linkerd.io",), "istio-base": ()}


@dataclass(frozen=True)
class Commit:
    name: str
    settings: str = "{}"  # JSON of the platform's settings at this commit (run_program's set_config)

    @property
    def mesh(self) -> str:
        return json.loads(self.settings).get("mesh", "linkerd")


def commit(name: str, **settings: Any) -> Commit:
    return Commit(name, json.dumps(settings, sort_keys=True))


BASE = commit("linkerd, deny")  # prod as it is
AUDIT = commit("linkerd, audit", defaultInboundPolicy="audit")
ISTIO_AUDIT = commit("istio, audit", mesh="istio", defaultInboundPolicy="audit")
ISTIO_DENY = commit("istio, deny", mesh="istio")
ISTIO_DENY_ACKNOWLEDGED = commit("istio, deny, allowMeshSwitch", mesh="istio", allowMeshSwitch=True)
LINKERD_AUDIT_ACKNOWLEDGED = commit("linkerd, audit, allowMeshSwitch", defaultInboundPolicy="audit",
                                    allowMeshSwitch=True)

_RUNS: dict[Any, Run | SettingsError] = {}


def run(stack: str, at: Commit, outputs: dict[str, dict], preview: bool = False) -> Run | SettingsError:
    """The program of `stack` at a commit, reading the outputs the model's backend holds."""
    key = (stack, at, json.dumps(outputs.get(PLATFORM, {}), sort_keys=True, default=str), preview)
    if key not in _RUNS:
        settings = json.loads(at.settings)
        try:
            if stack == PLATFORM:
                _RUNS[key] = run_program(stack, set_config=settings, previous_outputs=outputs.get(PLATFORM, {}),
                                         preview=preview)
            else:
                _RUNS[key] = run_program(stack, set_config=settings, platform_outputs=outputs.get(PLATFORM, {}),
                                         preview=preview)
        except SettingsError as refused:
            _RUNS[key] = refused
    return _RUNS[key]


def object_key(obj: dict) -> tuple[str, str, str, str]:
    return obj["apiVersion"].rpartition("/")[0], obj["kind"], obj["metadata"].get("namespace", ""), \
        obj["metadata"]["name"]


def registered_objects(result: Run) -> dict[tuple, dict]:
    """The Kubernetes objects of the namespace groups (policy, workload Certificates) and the Namespaces."""
    found = {}
    for r in result.registrations:
        group = r.group.name if r.group is not None else None
        if group and (group.startswith("authz-") or group.startswith("certs-workload-")):
            found[object_key(r.object())] = r.object()
        elif r.type in ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:NamespacePatch"):  # adopted: a patch
            obj = {**r.object(), "kind": "Namespace"}
            found[object_key(obj)] = obj
    return found


def releases(result: Run) -> set[str]:
    return {r.inputs["name"] for r in result.registrations if r.type == HELM}


def injected_mesh(namespace: dict) -> str | None:
    meta = namespace["metadata"]
    if (meta.get("labels") or {}).get("istio-injection") == "enabled":
        return "istio"
    if (meta.get("annotations") or {}).get("linkerd.io/inject") == "enabled":
        return "linkerd"
    return None


@dataclass
class World:
    states: dict[str, dict[tuple, dict]] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    cluster: dict[tuple, dict] = field(default_factory=dict)
    releases: set[str] = field(default_factory=set)
    pods: dict[str, str] = field(default_factory=dict)  # meshed namespace -> the mesh of its pods' proxies
    # namespace -> mesh -> whether the policy that mesh's control plane last served there admits plaintext.
    served: dict[str, dict[str, bool]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # The steps after which calls failed, and why.
    cuts: list[tuple[str, list]] = field(default_factory=list)

    @property
    def control_planes(self) -> set[str]:
        return {mesh for release, mesh in CONTROL_PLANE_RELEASES.items() if release in self.releases}

    def up(self, stack: str, at: Commit) -> str:
        result = run(stack, at, self.outputs)
        if isinstance(result, SettingsError):
            self.log.append(f"{stack}@{at.name}: refused: {result}")
            self.observe()
            return "refused"
        state = self.states.setdefault(stack, {})
        wanted = registered_objects(result)
        for key, obj in wanted.items():
            if key not in state and key in self.cluster and key[1] != "Namespace":
                self.log.append(f"{stack}@{at.name}: failed (AlreadyExists {key})")
                self.observe()
                return "failed"
        for key, obj in wanted.items():
            state[key] = obj
            self.cluster[key] = obj
        for key in [k for k in state if k not in wanted]:
            del state[key]
            self.cluster.pop(key, None)  # NotFound counts as gone (pulumi-kubernetes await.go `Deletion`)
        if stack == PLATFORM:
            # Installs first, deletes after: the old mesh's releases go at the end of the `up`; a CRD release takes
            # every object of its CRDs with it.
            self.releases = releases(result)
            gone = {group for release, groups in CRD_RELEASES.items() if release not in self.releases
                    for group in groups}
            self.cluster = {k: o for k, o in self.cluster.items() if k[0] not in gone}
        self.outputs[stack] = dict(result.exports)
        self.log.append(f"{stack}@{at.name}: ok")
        self.observe()
        return "ok"

    def restart(self, namespace: str) -> None:
        """`kubectl rollout restart` of a namespace's workloads: each pod gets the proxy its Namespace asks for."""
        mesh = injected_mesh(self.cluster[("", "Namespace", "", namespace)])
        assert mesh in self.control_planes, f"{namespace}: {mesh}'s injector is not installed"
        self.pods[namespace] = mesh
        self.log.append(f"restart {namespace}: {mesh}")
        self.observe()

    def admits_plaintext_now(self, namespace: str, mesh: str) -> bool:
        """What the mesh's control plane serves the namespace's proxies now (it is installed)."""
        if mesh == "istio":
            modes = [o["spec"].get("mtls", {}).get("mode") for k, o in self.cluster.items()
                     if k[1] == "PeerAuthentication" and k[2] == namespace and not o["spec"].get("selector")]
            return "STRICT" not in modes  # none: Istio's default, PERMISSIVE
        servers = [o["spec"].get("accessPolicy", "deny") for k, o in self.cluster.items()
                   if k[:2] == ("policy.linkerd.io", "Server") and k[2] == namespace]
        if not servers:  # the namespace default the pod was injected with
            annotations = self.cluster[("", "Namespace", "", namespace)]["metadata"].get("annotations") or {}
            servers = [annotations.get("config.linkerd.io/default-inbound-policy", "all-unauthenticated")]
        return all(policy in PLAINTEXT_PHASES for policy in servers)

    def observe(self) -> None:
        """After every step: what each installed control plane now serves, and which calls of the graph fail."""
        for namespace in self.pods:
            for mesh in self.control_planes:
                self.served.setdefault(namespace, {})[mesh] = self.admits_plaintext_now(namespace, mesh)
        failing = []
        for caller, callee in EDGES:
            a, b = self.pods.get(caller), self.pods.get(callee)
            if a is None or b is None:
                continue
            if a not in self.control_planes:
                failing.append((caller, callee, f"{a} caller without its control plane"))
            elif a != b and not self.served.get(callee, {}).get(b, False):
                failing.append((caller, callee, f"plaintext from {a} refused by {b}"))
        if failing:
            self.cuts.append((self.log[-1], failing))

    def plaintext_refusals(self) -> list:
        return [(step, [f for f in failing if "plaintext" in f[2]]) for step, failing in self.cuts
                if any("plaintext" in f[2] for f in failing)]


def _edges() -> tuple[tuple[str, str], ...]:
    graph = settings_of(PLATFORM).graph
    meshed = {ns.name for ns in graph.meshed_namespaces}
    pairs = set()
    for caller, callee, _ in graph.edges():
        if caller in graph.services and callee in graph.services:
            a, b = graph.services[caller].namespace, graph.services[callee].namespace
            if a in meshed and b in meshed:
                pairs.add((a, b))
    return tuple(sorted(pairs))


EDGES = _edges()


def deployed(at: Commit = BASE) -> World:
    """prod at a commit from nothing, the platform then its shards, every meshed namespace's pods started after."""
    world = World()
    for stack in STACKS:
        assert world.up(stack, at) == "ok", world.log
    for namespace, _ in sorted({(a, None) for edge in EDGES for a in edge}):
        world.restart(namespace)
    assert not world.cuts, world.cuts
    return world


def restart_all(world: World) -> None:
    for namespace in sorted(world.pods):
        world.restart(namespace)


def test_the_graph_has_calls_between_namespaces():
    assert len({n for edge in EDGES for n in edge}) >= 3 and any(a != b for a, b in EDGES), EDGES


# ---- the guard -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(itertools.permutations(STACKS)))
def test_a_switch_under_deny_is_refused_in_every_order_and_changes_nothing(order):
    world = deployed()
    cluster, releases_before = dict(world.cluster), set(world.releases)
    outcomes = {stack: world.up(stack, ISTIO_DENY) for stack in order}
    assert set(outcomes.values()) == {"refused"}, world.log
    assert world.cluster == cluster and world.releases == releases_before and not world.cuts
    platform = next(line for line in world.log if line.startswith("prod@") and "refused" in line)
    assert "mtls-mesh:mesh: is istio, and this stack last applied linkerd" in platform, platform
    assert "(1) keep mesh linkerd, set defaultInboundPolicy audit" in platform and "allowMeshSwitch" in platform
    for shard in SHARDS:
        refusal = next(line for line in world.log if line.startswith(f"{shard}@") and "refused" in line)
        assert "mtls-mesh:platformStack" in refusal and "last applied linkerd" in refusal, refusal
        assert "switch mesh together, the platform first" in refusal, refusal


def test_a_preview_of_the_switch_warns_and_shows_the_plan(caplog):
    world = deployed()
    with caplog.at_level("WARNING"):
        preview = run(PLATFORM, ISTIO_DENY, world.outputs, preview=True)
    assert isinstance(preview, Run) and "istiod" in releases(preview)
    assert "`pulumi up` of this stack will refuse. Switch in this order" in caplog.text, caplog.text
    assert isinstance(run(PLATFORM, ISTIO_DENY, world.outputs), SettingsError)


# ---- the runbook ---------------------------------------------------------------------------------------------------

def at_audit() -> World:
    """Step (1): audit applied with Linkerd, its pods restarted under it."""
    world = deployed()
    for stack in STACKS:
        assert world.up(stack, AUDIT) == "ok", world.log
    restart_all(world)
    assert not world.cuts, world.cuts
    assert set(world.outputs[PLATFORM]["inboundPolicies"].values()) <= set(PLAINTEXT_PHASES)
    return world


@pytest.mark.parametrize("order", list(itertools.permutations(STACKS)))
def test_the_runbook_switches_every_namespace_without_a_call_refused(order):
    """Step (2) in every order of the platform and its shards (a shard before its platform refuses and runs again
    after), then every namespace restarted one at a time: no call is refused for plaintext at any step; calls fail
    only from Linkerd pods between the platform's switch and their restart; at the end every pod runs Istio, no
    Linkerd object is left and no object is held by two stacks."""
    world = at_audit()
    outcomes = {stack: world.up(stack, ISTIO_AUDIT) for stack in order}
    assert outcomes[PLATFORM] == "ok", world.log
    for stack in SHARDS:
        if outcomes[stack] != "ok":
            assert order.index(stack) < order.index(PLATFORM), world.log
            assert world.up(stack, ISTIO_AUDIT) == "ok", world.log
    restart_all(world)
    assert world.plaintext_refusals() == [], world.plaintext_refusals()
    assert world.cuts, "the Linkerd callers have no control plane until they restart: the model must show it"
    for step, failing in world.cuts:
        assert all(reason == "linkerd caller without its control plane" for _, _, reason in failing), (step, failing)
    assert world.cuts[-1][0] != world.log[-1], "after the last restart no call fails"
    assert set(world.pods.values()) == {"istio"} and world.control_planes == {"istio"}
    assert not [k for k in world.cluster if k[0] in ("policy.linkerd.io", "gateway.networking.k8s.io")], \
        "every Linkerd object is gone: Gateway API routes, whose CRDs Helm keeps, deleted by their shard's `up`"
    held = [k for state in world.states.values() for k in state if k[1] != "Namespace"]
    assert len(held) == len(set(held)), "an object in two stacks' states"
    assert world.outputs[PLATFORM][MESH_OUTPUT] == "istio"
    assert all(world.outputs[s][MESH_OUTPUT] == "istio" for s in SHARDS)


def test_a_shard_still_at_the_old_commit_refuses_after_its_platform_switched():
    world = at_audit()
    assert world.up(PLATFORM, ISTIO_AUDIT) == "ok"
    assert world.up("prod-payments", AUDIT) == "refused"
    refusal = world.log[-1]
    assert "objects are linkerd's, and its platform stack 'prod' last applied istio" in refusal, refusal
    assert "run this shard at that commit" in refusal, refusal


def test_rolling_back_to_linkerd_is_the_same_path_the_other_way():
    """From Istio under audit, back to Linkerd under audit: the same guard lets it through and no call is refused for
    plaintext (Istio's sidecars keep the PERMISSIVE they were served)."""
    world = at_audit()
    for stack in STACKS:
        assert world.up(stack, ISTIO_AUDIT) == "ok", world.log
    restart_all(world)
    world.cuts.clear()
    for stack in STACKS:
        assert world.up(stack, AUDIT) == "ok", world.log
    restart_all(world)
    assert world.plaintext_refusals() == [], world.plaintext_refusals()
    assert set(world.pods.values()) == {"linkerd"} and world.control_planes == {"linkerd"}


def test_without_the_guard_the_model_shows_the_cut():
    """allowMeshSwitch from deny: accepted, and as the namespaces restart one at a time, a restarted (Istio) pod's
    calls to one still on Linkerd under deny are refused for plaintext: what the guard keeps from happening unasked.
    (The other way, a Linkerd caller has lost its control plane already, which the model counts first.)"""
    world = deployed()
    for stack in STACKS:
        assert world.up(stack, ISTIO_DENY_ACKNOWLEDGED) == "ok", world.log
    restart_all(world)
    refused = world.plaintext_refusals()
    assert refused, world.cuts
    assert any(reason == "plaintext from istio refused by linkerd" for _, failing in refused
               for _, _, reason in failing), refused


# ---- the rule, on its own ------------------------------------------------------------------------------------------

def test_the_rule():
    audit = {"web": "audit", "ingress": "all-unauthenticated"}
    deny = {"web": "deny", "ingress": "all-unauthenticated"}
    assert mesh_switch_problem("prod", None, "istio", None, deny) is None, "a first deployment switches nothing"
    assert mesh_switch_problem("prod", "linkerd", "linkerd", deny, deny) is None
    assert mesh_switch_problem("prod", "linkerd", "istio", audit, audit) is None
    assert "web: deny, as last applied" in mesh_switch_problem("prod", "linkerd", "istio", deny, audit)
    assert "this update puts namespaces in phases" in mesh_switch_problem("prod", "linkerd", "istio", audit, deny)
    assert "without exporting the phases" in mesh_switch_problem("prod", "linkerd", "istio", None, audit)
    assert applied_mesh({"mesh": "istio"}) == "istio"
    assert applied_mesh({"linkerd": {"chartVersion": "x"}}) == "linkerd", "a stack from before the mesh output"
    assert applied_mesh({}) is None


def test_the_refusal_is_one_error_before_anything_registers():
    linkerd = run_program(PLATFORM)
    with pytest.raises(SettingsError) as caught:
        run_program(PLATFORM, set_config={"mesh": "istio"}, previous_outputs=linkerd.exports)
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:mesh" and caught.value.registrations == []
    steps = problem.fix
    assert steps.index("(1)") < steps.index("(2)") < steps.index("(3)") and "rollout restart" in steps, steps


def test_the_acknowledgment_warns_and_a_forgotten_one_is_named(caplog):
    linkerd = run_program(PLATFORM)
    with caplog.at_level("WARNING"):
        switched = run_program(PLATFORM, set_config={"mesh": "istio", "allowMeshSwitch": True},
                               previous_outputs=linkerd.exports)
    assert switched.exports[MESH_OUTPUT] == "istio"
    assert "switching anyway, as allowMeshSwitch is true" in caplog.text, caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_program(PLATFORM, set_config={"mesh": "istio", "allowMeshSwitch": True},
                    previous_outputs=switched.exports)
    assert "allowMeshSwitch is true, and this update switches no mesh" in caplog.text, caplog.text


# ---- an Istio platform and its shards, as the workflows and the Operator run them ---------------------------------

ISTIO = {"mesh": "istio"}


@pytest.mark.parametrize("preview", [False, True])
def test_an_istio_platforms_shards_apply_against_its_exported_outputs(preview):
    """The shards read what the platform exported (the harness's StackReference); in a preview too."""
    platform = run_program(PLATFORM, set_config=ISTIO)
    assert platform.exports[MESH_OUTPUT] == "istio" and platform.exports["shardContracts"]
    for shard in SHARDS:
        result = run_program(shard, set_config=ISTIO, platform_outputs=platform.exports, preview=preview)
        kinds = {r.type.rsplit(":", 1)[-1] for r in result.registrations if r.group is not None}
        assert kinds and kinds <= {"PeerAuthentication", "AuthorizationPolicy", "Sidecar", "ServiceEntry",
                                   "NetworkPolicy", "Certificate"}, (shard, kinds)
        assert {"PeerAuthentication", "AuthorizationPolicy"} <= kinds
        assert result.exports[MESH_OUTPUT] == "istio"
        assert result.exports["shardContract"] == platform.exports["shardContracts"][shard.removeprefix("prod-")]


@pytest.mark.parametrize("shard_mesh,platform_mesh", [("istio", "linkerd"), ("linkerd", "istio")])
def test_a_shard_refuses_a_platform_of_another_mesh_naming_the_order(shard_mesh, platform_mesh):
    platform = run_program(PLATFORM, set_config={"mesh": platform_mesh})
    with pytest.raises(SettingsError) as caught:
        run_program("prod-payments", set_config={"mesh": shard_mesh}, platform_outputs=platform.exports)
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:platformStack" and caught.value.registrations == []
    assert f"objects are {shard_mesh}'s, and its platform stack 'prod' last applied {platform_mesh}" in str(problem)
    # A preview only warns, and shows the plan.
    assert run_program("prod-payments", set_config={"mesh": shard_mesh}, platform_outputs=platform.exports,
                       preview=True).registrations


def test_the_istio_contract_names_the_mesh_and_where_its_control_plane_runs():
    from plan.mesh import compile_mesh
    from plan.shards import shard_contracts

    settings = settings_of(PLATFORM, **ISTIO)
    contract = shard_contracts(compile_mesh(settings), settings.graph)["payments"]
    assert contract["mesh"] == "istio" and contract["controlPlaneNamespaces"] == {"istiod": "istio-system",
                                                                                  "istioCsr": "istio-system"}
    assert "linkerdChartVersion" not in contract


def test_the_rotation_step_names_the_stacks_own_control_plane():
    rotating = {"nextTrustAnchor": "2027-11", "anchorRotationPhase": "add-next"}
    istio = run_program(PLATFORM, set_config={**ISTIO, **rotating}).exports["trustRotation"]["nextStep"]
    assert "istio-system rollout restart deploy/cert-manager-istio-csr deploy/istiod" in istio, istio
    assert "linkerd" not in istio
    linkerd = run_program(PLATFORM, set_config=rotating).exports["trustRotation"]["nextStep"]
    assert "kubectl -n linkerd rollout restart deploy" in linkerd and "istio" not in linkerd


def test_an_operator_shard_at_the_switch_waits_for_its_platform_to_apply_istio(monkeypatch):
    """Under the Operator a shard at the switching commit may start while its platform still exports Linkerd's
    outputs: it waits (counting no failure), and registers its Istio objects once the fresh read returns the
    platform's Istio outputs, as the contract wait does for any promotion."""
    from components import platform as waiting
    from harness import RecordingMocks

    linkerd = run_program(PLATFORM, set_config={"defaultInboundPolicy": "audit"})
    istio = run_program(PLATFORM, set_config={**ISTIO, "defaultInboundPolicy": "audit"},
                        previous_outputs=linkerd.exports)
    said = []

    class PlatformSwitches(RecordingMocks):
        def call(self, args):
            result = super().call(args)
            if args.token == "pulumi:pulumi:readStackOutputs":
                result["outputs"] = istio.exports
            return result

    real_wait = waiting.wait_for_platform

    def wait(*args, **kwargs):
        # wait_for_platform took time.sleep as a default when it was defined: patching time.sleep would not reach it.
        left = real_wait(*args, say=said.append, sleep=lambda seconds: None, **kwargs)
        said.append(f"left: {left}")
        return left

    monkeypatch.setattr(waiting, "wait_for_platform", wait)
    operator = {"deliveredBy": "operator", "kubeContext": "in-cluster", **ISTIO, "defaultInboundPolicy": "audit"}
    run = run_program("prod-payments", platform_outputs=linkerd.exports, mocks_factory=PlatformSwitches,
                      set_config=operator)
    kinds = {r.type.rsplit(":", 1)[-1] for r in run.registrations if r.group is not None}
    assert "PeerAuthentication" in kinds and not any("linkerd" in r.type for r in run.registrations)
    assert any("waiting for the platform stack 'prod'" in line for line in said) and said[-1] == "left: None", said
