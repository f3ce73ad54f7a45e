"""One mesh root, an issuer per cluster, in a real Vault API (OpenBao's dev server): two cluster stacks of one
environment (east owns the root and keeps a single-cluster stack's Vault names; west names it as meshRootStack, has
cluster-qualified names, and signs its intermediate under east's root mount),
each run as the program (`__main__.py`, stack files written beside each other as tests/test_multicluster_graph.py
does) and applied to one OpenBao, each with its own Kubernetes API server (TokenReview stand-in); then used as
cert-manager uses them. Each cluster's identity login gets its issuer signed exactly as cert-manager asks, and the
server answers 403 for the other cluster's paths, the other cluster's login role, the root mount, and any other name.

Only the Kubernetes API servers' TokenReview is a stand-in (tests/openbao.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import tools
from harness import Run
from openbao import OpenBaoMocks, OpenBaoServer, TokenReviewServer, cert_manager_login, cert_manager_sign, \
    cert_manager_token_audiences
from read import stack_files
from read.durations import Duration
from test_cluster_trust import VAULT, run_cluster
from test_multicluster_graph import two_clusters
from test_openbao import MOUNT, _csr, _pem

EAST, WEST = "east", "west"
STACKS = {EAST: "dev-east", WEST: "dev-west"}
VAULT_NAMESPACE = "platform"  # a Vault Enterprise namespace: every mount and login of both clusters lives in it


@dataclass
class ClusterApplied:
    cluster: str
    run: Run
    api: TokenReviewServer
    # The Vault issuers in `linkerd` (one per anchor in use) and the identity issuer Certificate.
    identity_issuers: dict[str, dict]
    identity_certificate: dict

    @property
    def identity_issuer(self) -> dict:
        return self.identity_issuers[self.identity_certificate["spec"]["issuerRef"]["name"]]

    @property
    def path(self) -> str:
        return self.identity_issuer["spec"]["vault"]["path"]

    @property
    def auth(self) -> dict:
        return self.identity_issuer["spec"]["vault"]["auth"]["kubernetes"]

    def jwt(self, issuer: dict | None = None) -> str:
        """What cert-manager in this cluster gets from TokenRequest for the identity issuer's account."""
        issuer = issuer or self.identity_issuer
        return self.api.issue(issuer["metadata"]["namespace"],
                              issuer["spec"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["name"],
                              cert_manager_token_audiences(issuer))


def apply_cluster(directory: Path, server: OpenBaoServer, api: TokenReviewServer, cluster: str,
                  applied: dict[str, dict[str, Any]]) -> ClusterApplied:
    """One cluster's stack, run as the program with its own API server, applied to `server`."""
    run = run_cluster(directory, STACKS[cluster], applied,
                      mocks_factory=lambda previous: OpenBaoMocks(server, previous, tokens=api),
                      vaultKubernetesHost=api.host, vaultKubernetesCaFile=str(api.ca_file),
                      allowFilesOutsideProject=True)
    issuers = {o["metadata"]["name"]: o for o in run.objects("Issuer")
               if o["metadata"]["namespace"] == "linkerd" and "vault" in o["spec"]}
    return ClusterApplied(cluster, run, api, issuers, run.object("Certificate", "linkerd-identity-issuer", "linkerd"))


@pytest.fixture(scope="module")
def environment_stacks(tmp_path_factory):
    """Both clusters' stack files (Vault, in namespace `platform`) where the program reads the peers' from."""
    directory = tmp_path_factory.mktemp("stacks")
    settings = {**VAULT, "vaultNamespace": VAULT_NAMESPACE}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_files, "STACKS_DIR", directory)
        yield directory, settings


def apply_environment(directory: Path, settings: dict, **rotation: Any):
    """Both clusters, east (the root's) first, on one OpenBao; yields (server, namespace, east, west)."""
    two_clusters(directory, east={**settings, **rotation}, west={**settings, **rotation})
    with TokenReviewServer() as east_api, TokenReviewServer() as west_api, OpenBaoServer(tools.bao()) as server:
        server.write(f"sys/namespaces/{VAULT_NAMESPACE}")
        east = apply_cluster(directory, server, east_api, EAST, {})
        west = apply_cluster(directory, server, west_api, WEST, {STACKS[EAST]: east.run.exports})
        yield server, VAULT_NAMESPACE, east, west


@pytest.fixture(scope="module")
def clusters(environment_stacks):
    yield from apply_environment(*environment_stacks)


def mounts(applied: ClusterApplied) -> set[str]:
    return {r.object()["path"] for r in applied.run.of_type(MOUNT)}


def login(server, namespace, applied: ClusterApplied, jwt: str, role: str | None = None, mount: str | None = None):
    return cert_manager_login(server, mount or applied.auth["mountPath"], role or applied.auth["role"], jwt,
                              namespace=namespace)


def token(server, namespace, applied: ClusterApplied) -> str:
    status, body = login(server, namespace, applied, applied.jwt())
    assert status == 200, body
    return body["auth"]["client_token"]


def sign_identity(server, namespace, applied: ClusterApplied, client_token: str, path: str | None = None,
                  common_name: str | None = None, dns: list[str] | None = None):
    spec = applied.identity_certificate["spec"]
    return cert_manager_sign(server, client_token, path or applied.path,
                             _csr(spec["commonName"] if common_name is None else common_name or None,
                                  dns if dns is not None else spec["dnsNames"]),
                             datetime.timedelta(seconds=Duration.parse(spec["duration"]).seconds), namespace=namespace)


def root_mount(applied: ClusterApplied) -> str:
    """The root mount this cluster's intermediate of the issuing anchor is signed under, as the program declared it."""
    anchor = applied.run.exports["trustRotation"]["issuingAnchor"]
    (signed,) = [r.object() for r in applied.run.of_type(
        "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate")
        if r.name.endswith(f"-int-{anchor}-signed")]
    return signed["backend"]


def test_only_the_root_owning_stack_creates_the_root_and_every_other_name_is_the_clusters(clusters):
    _, _, east, west = clusters
    root = root_mount(east)
    assert root in mounts(east) and root not in mounts(west) and root_mount(west) == root
    assert not (mounts(east) & mounts(west))
    assert east.auth["mountPath"] != west.auth["mountPath"] and east.auth["role"] != west.auth["role"]
    assert east.path != west.path
    policies = lambda a: {r.object()["name"] for r in a.run.of_type("vault:index/policy:Policy")}  # noqa: E731
    assert not (policies(east) & policies(west))


@pytest.mark.parametrize("who", [EAST, WEST])
def test_each_clusters_identity_login_gets_its_issuer_signed_under_the_one_root(clusters, who):
    server, namespace, east, west = clusters
    me = east if who == EAST else west
    status, body = sign_identity(server, namespace, me, token(server, namespace, me))
    assert status == 200, body
    issuer, intermediate = _pem(body["data"]["certificate"]), _pem(body["data"]["issuing_ca"])
    root = _pem(body["data"]["ca_chain"][-1])
    issuer.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert root.subject == root.issuer  # the environment's root, east's
    (east_root,) = [r.object() for r in east.run.of_type(
        "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert") if "workload" not in r.name]
    assert root.subject.rfc4514_string() == f"CN={east_root['commonName']},O=mtls-mesh"
    constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    # The root-owning stack keeps a single-cluster stack's intermediate subject; a secondary's names its cluster.
    assert intermediate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == (
        f"mtls-mesh intermediate {me.run.exports['trustRotation']['issuingAnchor']}" + ("" if who == EAST else f" {who}"))


def test_the_two_clusters_issuers_chain_through_their_own_intermediates(clusters):
    server, namespace, east, west = clusters
    answers = [sign_identity(server, namespace, c, token(server, namespace, c))[1]["data"] for c in (east, west)]
    (east_int, west_int) = [_pem(a["issuing_ca"]) for a in answers]
    assert east_int.public_key() != west_int.public_key() and east_int.subject != west_int.subject
    assert _pem(answers[0]["ca_chain"][-1]) == _pem(answers[1]["ca_chain"][-1])


@pytest.mark.parametrize("who", [EAST, WEST])
def test_a_clusters_login_reaches_nothing_of_the_other_cluster_nor_the_root(clusters, who):
    server, namespace, east, west = clusters
    me, other = (east, west) if who == EAST else (west, east)
    mine = token(server, namespace, me)
    root = root_mount(me)
    other_roles = [r.object()["name"] for r in other.run.of_type("vault:pkiSecret/secretBackendRole:SecretBackendRole")]
    forbidden = [other.path, f"{root}/root/sign-intermediate", f"{root}/sign-verbatim",
                 f"{root}/issuers/generate/intermediate/internal", f"{root}/intermediate/generate/internal",
                 *[f"{m}/root/sign-intermediate" for m in mounts(other)],
                 *[f"{m}/sign/{role}" for m in mounts(other) for role in other_roles],
                 *[f"{m}/issue/{role}" for m in mounts(other) for role in other_roles]]
    answers = {path: sign_identity(server, namespace, me, mine, path=path)[0] for path in forbidden}
    assert answers and {p: s for p, s in answers.items() if s != 403} == {}
    # Its own path, with any other name than its identity issuer's.
    name = me.identity_certificate["spec"]["commonName"]
    other_domain = name.rsplit("linkerd.", 1)[0] + "linkerd.other.example"
    for common_name, dns in ((f"x.{name}", [f"x.{name}"]), (name, [name, "other.example"]), ("", [name]),
                             (other_domain, [other_domain])):
        status, body = sign_identity(server, namespace, me, mine, common_name=common_name, dns=dns)
        assert status == 403, (common_name, dns, body)


@pytest.mark.parametrize("who", [EAST, WEST])
def test_a_clusters_service_account_token_cannot_log_in_as_the_other_cluster(clusters, who):
    """The other cluster's login role on its own mount: reviewed by the other cluster's API server, which never
    issued this cluster's token; and this cluster's role name on the other's mount does not exist there."""
    server, namespace, east, west = clusters
    me, other = (east, west) if who == EAST else (west, east)
    jwt = me.jwt()
    assert login(server, namespace, me, jwt)[0] == 200
    outcomes = {
        "other role on the other mount": login(server, namespace, other, jwt),
        "own role on the other mount": login(server, namespace, other, jwt, role=me.auth["role"]),
        "other role on own mount": login(server, namespace, me, jwt, role=other.auth["role"]),
    }
    assert {case: status for case, (status, _) in outcomes.items()} == {
        "other role on the other mount": 403, "own role on the other mount": 400, "other role on own mount": 400,
    }, outcomes
    assert not any((body or {}).get("auth") for _, body in outcomes.values())
    # The other cluster's API server was asked about this token, and said it does not know it.
    (review,) = [r for r in other.api.reviews if r.body.get("spec", {}).get("token") == jwt]
    assert review.response["status"]["authenticated"] is False
