"""One mesh root, an issuer per cluster, in a real Vault API (OpenBao's dev server): two clusters of one environment
(east owns the root, west signs its intermediate under east's root mount) applied to one OpenBao as the program
declares them (components/vault.VaultPki), each with its own Kubernetes API server (TokenReview stand-in), then used
as cert-manager uses them. Each cluster's identity login gets its issuer signed exactly as cert-manager asks, and the
server answers 403 for the other cluster's paths, the other cluster's login role, the root mount, and any other name.

Only the Kubernetes API servers' TokenReview is a stand-in (tests/openbao.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

import pulumi
import pytest
from cryptography import x509
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await
from pulumi.runtime import settings as runtime_settings

import tools
from components.providers import vault_provider
from components.vault import VaultPki, VaultPkiArgs, VaultTokenReviewer
from harness import PROJECT, RecordingMonitor, Run, stack_config
from openbao import OpenBaoMocks, OpenBaoServer, TokenReviewServer, cert_manager_login, cert_manager_sign, \
    cert_manager_token_audiences
from plan.mesh import compile_mesh
from read import stack_files
from read.durations import Duration
from read.settings import Settings, vault_for_cluster
from test_openbao import MOUNT, _csr, _pem

STACK = "prod"  # a Vault Enterprise namespace too: every mount and login of both clusters lives in it
EAST, WEST = "east", "west"


@dataclass
class ClusterApplied:
    cluster: str
    settings: Settings
    run: Run
    api: TokenReviewServer
    identity_issuer: dict
    identity_certificate: dict

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


def base_settings() -> Settings:
    config, secret_keys = stack_config(STACK)
    return stack_files.load_stack_settings(config, STACK, secret_keys=frozenset(secret_keys))


def cluster_settings(base: Settings, cluster: str, api: TokenReviewServer, root_prefix: str | None) -> Settings:
    vault = replace(base.vault, kubernetes_host=api.host, kubernetes_ca_pem=api.ca_pem, kubernetes_auth_mode="external",
                    create_kubernetes_auth=True)
    return replace(base, vault=vault_for_cluster(vault, cluster, root_prefix))


def apply(server: OpenBaoServer, api: TokenReviewServer, settings: Settings, stack: str) -> ClusterApplied:
    """The Vault part of the program (as __main__.py wires it) for one cluster's stack, applied to `server`."""
    plan = compile_mesh(settings)
    mocks = OpenBaoMocks(server, {}, tokens=api)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_all_config({}, [])
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)

    def program():
        reviewer = VaultTokenReviewer("vault-token-reviewer", plan.vault.token_reviewer)
        VaultPki("pki", VaultPkiArgs(settings.vault, plan.vault, reviewer_token=reviewer.token,
                                     reviewer_ready=(reviewer.binding,)),
                 pulumi.ResourceOptions(providers={"vault": vault_provider("vault", settings.vault)}))

    _sync_await(run_pulumi_func(program))
    (issuer,) = plan.certificates.identity_issuers.values()
    return ClusterApplied(settings.vault.cluster, settings, Run(stack, {}, monitor.registrations), api, issuer,
                          plan.certificates.identity_issuer_certificate)


@pytest.fixture(scope="module")
def clusters():
    base = base_settings()
    with TokenReviewServer() as east_api, TokenReviewServer() as west_api, OpenBaoServer(tools.bao()) as server:
        server.write(f"sys/namespaces/{base.vault.namespace}")
        east = apply(server, east_api, cluster_settings(base, EAST, east_api, None), f"{STACK}-{EAST}")
        # west's stack names east's as meshRootStack: east's vaultMountPrefix, read from east's stack file.
        west = apply(server, west_api, cluster_settings(base, WEST, west_api, base.vault.mount_prefix),
                     f"{STACK}-{WEST}")
        yield server, base.vault.namespace, east, west


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


def test_only_the_root_owning_stack_creates_the_root_and_every_other_name_is_the_clusters(clusters):
    _, _, east, west = clusters
    root = east.settings.vault.root_mount(east.settings.pki.rotation.issuing_anchor)
    assert root in mounts(east) and root not in mounts(west)
    assert west.settings.vault.root_mount(west.settings.pki.rotation.issuing_anchor) == root
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
    assert intermediate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value.endswith(f" {who}")


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
    anchor = me.settings.pki.rotation.issuing_anchor
    root = me.settings.vault.root_mount(anchor)
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
    for common_name, dns in ((f"x.{name}", [f"x.{name}"]), (name, [name, "other.example"]), ("", [name]),
                             (name.replace(me.settings.trust_domain, "other.example"),
                              [name.replace(me.settings.trust_domain, "other.example")])):
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
