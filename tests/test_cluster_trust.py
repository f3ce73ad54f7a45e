"""One mesh root per environment, an issuer per cluster, as the program registers it for two cluster stacks (east owns
the root, west names it as meshRootStack; stack files in a temporary stacks directory, as tests/test_multicluster_graph.py
writes them): in dev the root-owning stack exports its root's key as a secret and west reads it through a
StackReference; in Vault west makes no root and signs its own intermediate under east's root mount; and the rotation
guard reads the peers' applied `trustRotation` (readStackOutputs) before anything is registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT_DIR, RecordingMocks, Run, is_secret_envelope, run_program
from read import stack_files
from read.errors import SettingsError
from test_multicluster_graph import EXAMPLE_DIR, load, problems, two_clusters, write_stack

SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
MOUNT = "vault:index/mount:Mount"
SIGN_INTERMEDIATE = "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate"
ROOT_CERT = "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert"
VAULT = {"pkiMode": "vault", "vaultAddress": "https://vault.example.internal:8200", "vaultIntermediateTtl": "4380h",
         "vaultKubernetesHost": "https://api.example.internal:6443",
         "vaultCaBundleFile": "stacks/ca/example-internal-ca.pem",
         "vaultKubernetesCaFile": "stacks/ca/kubernetes-staging-eu1.pem"}


@pytest.fixture
def stacks_dir(tmp_path, monkeypatch):
    """Stack files beside each other, where the program (read.stack_files.STACKS_DIR) reads the peers' from."""
    monkeypatch.setattr(stack_files, "STACKS_DIR", tmp_path)
    return tmp_path


def run_cluster(directory: Path, stack: str, applied: dict[str, dict[str, Any]], *, previous: dict | None = None,
                preview: bool = False, mocks_factory: Any = None, **set_config: Any) -> Run:
    """The program for one cluster stack; `applied`: the other stacks' outputs as they last applied them (what a
    StackReference and readStackOutputs return)."""
    raw, secrets = stack_files.read_stack_file(directory / f"Pulumi.{stack}.yaml", project_dir=PROJECT_DIR)

    def mocks(previous_outputs):
        made = (mocks_factory or RecordingMocks)(previous_outputs)
        made.references = dict(applied)
        return made

    return run_program(stack, config=raw, _secret_keys=secrets, previous_outputs=previous or {}, preview=preview,
                       mocks_factory=mocks, set_config=set_config or None)


def anchor_secret(run: Run, anchor: str) -> dict:
    (secret,) = [r for r in run.kubernetes() if r.object().get("kind") == "Secret"
                 and r.object()["metadata"]["name"] == f"mtls-mesh-anchor-{anchor}"]
    return secret


# ---- dev: one self-signed root, shared through a StackReference ------------------------------------------------

def test_dev_clusters_share_the_root_owning_stacks_root_the_key_secret_end_to_end(stacks_dir):
    two_clusters(stacks_dir)
    east = run_cluster(stacks_dir, "dev-east", {})
    assert "meshRootKeys" in east.secret_exports
    assert "PRIVATE KEY" not in repr({k: v for k, v in east.exports.items() if k not in east.secret_exports})
    west = run_cluster(stacks_dir, "dev-west", {"dev-east": east.exports})
    # west makes no mesh root of its own, only its workload root; its anchor is east's.
    assert [r.name for r in west.of_type(SELF_SIGNED)] == ["workload-root-dev-1"]
    assert west.exports["trustAnchors"] == east.exports["trustAnchors"]
    assert "meshRootKeys" not in west.exports
    assert "PRIVATE KEY" not in repr({k: v for k, v in west.exports.items() if k not in west.secret_exports})
    # The CA issuer that signs west's own identity issuer reads east's root and key, the key as a secret.
    secret = anchor_secret(west, "dev-1")
    data = secret.inputs["stringData"]
    assert is_secret_envelope(data), "the root's key reached west's Secret unencrypted"
    assert data["value"]["tls.key"] == east.exports["meshRootKeys"]["dev-1"]
    assert data["value"]["tls.crt"] == east.exports["trustAnchors"]["dev-1"]
    # Each cluster has its own identity issuer Certificate (its own key, made in its own cluster).
    for run in (east, west):
        (issuer,) = [o for o in run.objects("Certificate") if o["metadata"]["name"] == "linkerd-identity-issuer"]
        assert issuer["spec"]["issuerRef"]["name"] == "mtls-mesh-identity-dev-1" and issuer["spec"]["isCA"]


def test_a_single_cluster_stack_exports_no_root_key():
    dev = run_program("dev")
    assert "meshRootKeys" not in dev.exports


# ---- Vault: a secondary signs its intermediate under the root-owning stack's root mount ------------------------

def test_vault_clusters_one_root_mount_an_intermediate_login_and_auth_mount_each(stacks_dir):
    two_clusters(stacks_dir, east=VAULT, west=VAULT)
    east = run_cluster(stacks_dir, "dev-east", {})
    west = run_cluster(stacks_dir, "dev-west", {"dev-east": east.exports})
    mounts = {run.stack: {r.object()["path"] for r in run.of_type(MOUNT)} for run in (east, west)}
    (root,) = [m for m in mounts["dev-east"] if "-root-" in m]
    # Its only root is its workload chain's (which the proxies never trust); the mesh root is east's.
    assert [r.name for r in west.of_type(ROOT_CERT)] == ["pki-workload-dev-1"] and root not in mounts["dev-west"]
    assert not (mounts["dev-east"] & mounts["dev-west"])
    (signed,) = west.of_type(SIGN_INTERMEDIATE)
    assert signed.object()["backend"] == root and signed.object()["commonName"].endswith(" west")
    backends = {run.stack: [r.object()["path"] for r in run.of_type("vault:index/authBackend:AuthBackend")]
                for run in (east, west)}
    # The root-owning stack keeps a single-cluster stack's names (it may have been one); the secondary's are its cluster's.
    assert backends == {"dev-east": ["kubernetes-mesh"], "dev-west": ["kubernetes-mesh-west"]}
    assert mounts["dev-east"] == {"pki-mesh-root-dev-1", "pki-mesh-int-dev-1", "pki-mesh-workload-dev-1"}
    assert mounts["dev-west"] == {"pki-mesh-west-int-dev-1", "pki-mesh-west-workload-dev-1"}
    issuers = {run.stack: [o for o in run.objects("Issuer") if o["metadata"]["namespace"] == "linkerd"
                           and "vault" in o["spec"]]
               for run in (east, west)}
    (east_issuer,), (west_issuer,) = issuers["dev-east"], issuers["dev-west"]
    assert east_issuer["spec"]["vault"]["path"] != west_issuer["spec"]["vault"]["path"]
    assert west_issuer["spec"]["vault"]["auth"]["kubernetes"]["mountPath"] == "/v1/auth/kubernetes-mesh-west"


def test_a_single_cluster_stack_keeps_its_vault_names():
    staging = run_program("staging")
    assert {r.object()["path"] for r in staging.of_type(MOUNT)} == {
        "pki-mesh-root-2026-11", "pki-mesh-int-2026-11", "pki-mesh-workload-2026-11"}
    assert [r.object()["path"] for r in staging.of_type("vault:index/authBackend:AuthBackend")] == ["kubernetes-mesh"]


@pytest.mark.parametrize("east, west, ours, theirs", [
    ({"vaultMountPrefix": "pki-west"}, {"vaultMountPrefix": "pki"}, "pki-west-int-<...>", "pki-west-int-<...>"),
    ({"vaultAuthRole": "mesh-west"}, {"vaultAuthRole": "mesh"}, "mesh-west-identity", "mesh-west-identity"),
    ({"vaultKubernetesAuthPath": "k8s-west"}, {"vaultKubernetesAuthPath": "k8s"}, "k8s-west", "k8s-west"),
])
def test_a_secondary_whose_vault_names_may_be_the_root_stacks_is_refused(stacks_dir, east, west, ours, theirs):
    """The root stack keeps single-cluster names, a secondary inserts its cluster: settings where the two meet (here
    west's prefix plus its cluster is east's prefix) would have west declare east's mount or login as its own."""
    two_clusters(stacks_dir, east={**VAULT, **east}, west={**VAULT, **west})
    with pytest.raises(SettingsError) as caught:
        run_cluster(stacks_dir, "dev-west", {})
    (problem,) = [p for p in caught.value.problems if p.where == "mtls-mesh:cluster"]
    assert f"Vault name {ours} possibly the same as {theirs} of dev-east" in problem.what
    run_cluster(stacks_dir, "dev-east", {})  # the root stack itself is not refused: its names are its own


def three_clusters(directory: Path, third: str, west: dict | None = None, third_settings: dict | None = None) -> None:
    """east owns the root; west and `third` are secondaries; each lists the other two (a graph declaring all three)."""
    graph = yaml.safe_load((EXAMPLE_DIR / "services.yaml").read_text())
    graph["clusters"][third] = {}
    (directory / "services.yaml").write_text(yaml.safe_dump(graph))
    shared = {**VAULT, "serviceGraph": str(directory / "services.yaml"), "allowFilesOutsideProject": True}
    stacks = {"dev-east": ("east", "", {}), "dev-west": ("west", "dev-east", west or {}),
              f"dev-{third}": (third, "dev-east", third_settings or {})}
    for index, (stack, (cluster, root, settings)) in enumerate(stacks.items()):
        write_stack(directory, stack, **{**shared, "cluster": cluster, "meshRootStack": root,
                                         "clusterPeers": [peer for peer in stacks if peer != stack],
                                         "clusterApiServer": f"https://api.{cluster}.example:6443",
                                         "clusterNetworks": [f"10.{index + 1}.0.0/16"], **settings})


def test_three_clusters_with_distinct_vault_names_load(stacks_dir):
    three_clusters(stacks_dir, "north")
    west = load(stacks_dir, "dev-west")
    assert sorted(p.cluster for p in west.multicluster.peers) == ["east", "north"]
    assert west.vault.identity_auth_role == "cert-manager-mesh-west-identity"
    assert load(stacks_dir, "dev-north").vault.identity_auth_role == "cert-manager-mesh-north-identity"


@pytest.mark.parametrize("third, west, third_settings, ours, theirs", [
    # One cluster's name continues the other's with a name segment: west-int-x's intermediate is under west's name.
    ("west-int-x", {}, {}, "pki-mesh-west-int-<...>", "pki-mesh-west-int-x-int-<...>"),
    # Logins whose prefixes line up: west's role plus its cluster is north's namespace login.
    ("north", {"vaultAuthRole": "mesh-north-ns"}, {"vaultAuthRole": "mesh"}, "mesh-north-ns-west-identity",
     "mesh-north-ns-<...>"),
    ("north", {"vaultKubernetesAuthPath": "k8s-north"}, {"vaultKubernetesAuthPath": "k8s-north-west",
                                                         "vaultKubernetesAuthCreate": False},
     "k8s-north-west", "k8s-north-west"),
])
def test_two_secondaries_whose_vault_names_may_meet_are_refused(stacks_dir, third, west, third_settings, ours,
                                                                theirs):
    """Both register in the root's Vault namespace: the check against the root stack's names alone lets these by."""
    three_clusters(stacks_dir, third, west, third_settings)
    problem = problems(stacks_dir, "dev-west").get("mtls-mesh:cluster", "")
    assert (f"'west' makes this secondary's Vault name {ours} possibly the same as {theirs} of dev-{third}, the "
            f"secondary of cluster '{third}' (as set in its stack file Pulumi.dev-{third}.yaml)") in problem, problem
    # The other side refuses too, naming west; the root stack's names are its own.
    assert "of dev-west, the secondary of cluster 'west'" in problems(stacks_dir, f"dev-{third}")["mtls-mesh:cluster"]
    load(stacks_dir, "dev-east")


def test_a_secondary_on_another_vault_than_the_roots_is_refused(stacks_dir):
    two_clusters(stacks_dir, east=VAULT, west={**VAULT, "vaultAddress": "https://other-vault.example.internal:8200"})
    with pytest.raises(SettingsError) as caught:
        run_cluster(stacks_dir, "dev-west", {})
    (problem,) = [p for p in caught.value.problems if p.where == "mtls-mesh:meshRootStack"]
    assert "vaultAddress" in problem.what and "Pulumi.dev-east.yaml" in problem.what


# ---- the rotation guard across clusters -------------------------------------------------------------------------

def rotation_stacks(directory: Path, phase: str) -> None:
    rotation = {"nextTrustAnchor": "dev-2", "anchorRotationPhase": phase} if phase != "none" else {}
    two_clusters(directory, east=rotation, west=rotation)


def test_a_secondary_cannot_take_a_phase_the_root_stack_has_not_applied(stacks_dir, caplog):
    rotation_stacks(stacks_dir, "none")
    east_none = run_cluster(stacks_dir, "dev-east", {})
    west_none = run_cluster(stacks_dir, "dev-west", {"dev-east": east_none.exports})
    rotation_stacks(stacks_dir, "add-next")
    with pytest.raises(SettingsError) as caught:
        run_cluster(stacks_dir, "dev-west", {"dev-east": east_none.exports}, previous=west_none.exports)
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:anchorRotationPhase" and "dev-east" in problem.what
    assert "none -> add-next -> issue-from-next -> drop-previous" in problem.fix
    assert caught.value.registrations == []
    # A preview only warns, and shows the plan.
    with caplog.at_level("WARNING"):
        preview = run_cluster(stacks_dir, "dev-west", {"dev-east": east_none.exports}, previous=west_none.exports,
                              preview=True)
    assert preview.registrations
    (warned,) = [r.getMessage() for r in caplog.records if "anchorRotationPhase" in r.getMessage()]
    assert problem.what in warned and "will refuse" in warned
    # Root first: then west may follow.
    east_added = run_cluster(stacks_dir, "dev-east", {"dev-west": west_none.exports}, previous=east_none.exports)
    west_added = run_cluster(stacks_dir, "dev-west", {"dev-east": east_added.exports}, previous=west_none.exports)
    assert west_added.exports["trustRotation"]["trustedAnchors"] == ["dev-1", "dev-2"]
    assert west_added.exports["trustAnchors"] == east_added.exports["trustAnchors"]


def test_the_root_stack_cannot_run_two_phases_ahead_of_a_peer(stacks_dir):
    rotation_stacks(stacks_dir, "add-next")
    east_added = run_cluster(stacks_dir, "dev-east", {})
    west_none_outputs = {"trustRotation": {"phase": "none", "trustedAnchors": ["dev-1"], "issuingAnchor": "dev-1"}}
    rotation_stacks(stacks_dir, "issue-from-next")
    with pytest.raises(SettingsError) as caught:
        run_cluster(stacks_dir, "dev-east", {"dev-west": west_none_outputs}, previous=east_added.exports)
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:anchorRotationPhase"
    assert "dev-west: none" in problem.what and "behind" in problem.what
    # allowRotationJump lets one update through, as for the stack's own guard.
    run_cluster(stacks_dir, "dev-east", {"dev-west": west_none_outputs}, previous=east_added.exports,
                allowRotationJump=True)


def test_a_peer_whose_outputs_cannot_be_read_stops_the_rotation_guard_instead_of_passing_it(stacks_dir):
    """Only a stack that does not exist yet reads as not applied (pulumi pkg/backend/backend.go `GetStackOutputs`:
    `unknown stack %q`). Any other failure to read a peer (a backend login that may not read it) used to read as not
    applied too, and the guard then let this cluster run two phases ahead of that peer."""
    import grpc

    class Denied(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNKNOWN

        def details(self):
            return "invocation of pulumi:pulumi:readStackOutputs returned an error: [403] Forbidden: dev-west"

    def denying(previous_outputs):
        class Mocks(RecordingMocks):
            def call(self, args):
                if args.token == "pulumi:pulumi:readStackOutputs" and str(args.args.get("name")).endswith("/dev-west"):
                    raise Denied()
                return super().call(args)
        return Mocks(previous_outputs)

    rotation_stacks(stacks_dir, "add-next")
    east_added = run_cluster(stacks_dir, "dev-east", {})
    west_none_outputs = {"trustRotation": {"phase": "none", "trustedAnchors": ["dev-1"], "issuingAnchor": "dev-1"}}
    rotation_stacks(stacks_dir, "issue-from-next")
    with pytest.raises(SettingsError) as caught:
        run_cluster(stacks_dir, "dev-east", {"dev-west": west_none_outputs}, previous=east_added.exports,
                    mocks_factory=denying)
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:clusterPeers" and "dev-west" in problem.what and "403" in problem.what
    assert caught.value.registrations == []
