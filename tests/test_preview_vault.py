"""Previews that cannot write, in Vault: the program's preview policy (plan/preview_identity.py), on a real Vault API
(OpenBao), lets a token of it read what the program manages and refuses every write the program makes, every
signing path, and every other write the token (or the child token the Vault provider swaps it for) might try.

The stacks' Vault declarations are applied to OpenBao as root through the program itself (tests/openbao.py), so the
write paths checked are exactly those `pulumi up` sends; then each is sent again with the preview token.
"""

from __future__ import annotations

import pytest

import tools
from harness import PROJECT, run_program, stack_config
from openbao import OpenBaoMocks, OpenBaoServer, TokenReviewServer

POLICY = "vault:index/policy:Policy"
MOUNT = "vault:index/mount:Mount"
PKI_ROLE = "vault:pkiSecret/secretBackendRole:SecretBackendRole"
AUTH_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
STACKS = ("staging", "prod")


class Previewed:
    def __init__(self, run, server, mocks, namespace):
        self.run, self.server, self.mocks, self.namespace = run, server, mocks, namespace or None
        (self.policy,) = [r.object() for r in run.of_type(POLICY) if r.object()["name"].endswith("-preview")]
        status, body = server.request("POST", "auth/token/create",
                                      {"policies": [self.policy["name"]], "no_default_policy": True, "ttl": "1h"},
                                      namespace=self.namespace)
        assert status == 200, body
        self.token = body["auth"]["client_token"]

    def call(self, method: str, path: str, body=None, token: str | None = None):
        return self.server.request(method, path, body, token=token or self.token, namespace=self.namespace)


@pytest.fixture(scope="module", params=STACKS)
def previewed(request):
    stack = request.param
    bao = tools.bao()
    config, _ = stack_config(stack)
    namespace = config.get(f"{PROJECT}:vaultNamespace", "")
    with TokenReviewServer() as reviews, OpenBaoServer(bao) as server:
        if namespace:
            server.write(f"sys/namespaces/{namespace}")
        holder = []

        def mocks(previous):
            holder.append(OpenBaoMocks(server, previous, tokens=reviews))
            return holder[-1]

        run = run_program(stack, mocks_factory=mocks,
                          set_config={"vaultKubernetesHost": reviews.host, "vaultKubernetesCaFile": str(reviews.ca_file)})
        yield Previewed(run, server, holder[-1], namespace)


def test_every_write_the_program_makes_is_refused_to_the_preview_token(previewed):
    writes = [(typ, sent.path, sent.body) for typ, _, sent in previewed.mocks.applied]
    assert len(writes) > 10 and {POLICY, MOUNT, PKI_ROLE, AUTH_ROLE} <= {typ for typ, _, _ in writes}
    for typ, path, body in writes:
        for method in ("POST", "PUT", "DELETE"):
            status, answer = previewed.call(method, path, None if method == "DELETE" else body)
            assert status == 403, f"{method} {path} ({typ}) with the preview token: {status} {answer}"


def test_signing_and_issuing_are_refused_to_the_preview_token(previewed):
    for role in previewed.run.of_type(PKI_ROLE):
        spec = role.object()
        for verb in ("sign", "issue"):
            path = f"{spec['backend']}/{verb}/{spec['name']}"
            status, _ = previewed.call("POST", path, {"common_name": "x.cluster.local", "csr": "x"})
            assert status == 403, path
    for mount in previewed.run.of_type(MOUNT):
        path = mount.object()["path"]
        for write in ("root/sign-intermediate", "issuers/generate/root/internal", "config/ca", "tidy", "root/rotate/internal"):
            status, _ = previewed.call("POST", f"{path}/{write}", {"common_name": "x"})
            assert status == 403, f"{path}/{write}"
        for acting_read in ("crl/rotate", "crl/rotate-delta"):
            status, _ = previewed.call("GET", f"{path}/{acting_read}")
            assert status == 403, f"GET {path}/{acting_read} rebuilds the CRL"


def test_the_preview_token_reads_what_the_program_manages(previewed):
    for policy in previewed.run.of_type(POLICY):
        status, body = previewed.call("GET", f"sys/policies/acl/{policy.object()['name']}")
        assert status == 200 and body["data"]["policy"] == policy.object()["policy"], policy.object()["name"]
    for role in previewed.run.of_type(PKI_ROLE):
        spec = role.object()
        status, _ = previewed.call("GET", f"{spec['backend']}/roles/{spec['name']}")
        assert status == 200, spec["name"]
        status, body = previewed.call("LIST", f"{spec['backend']}/roles")
        assert status == 200 and spec["name"] in body["data"]["keys"]
    for mount in previewed.run.of_type(MOUNT):
        path = mount.object()["path"]
        assert previewed.call("GET", f"sys/mounts/{path}")[0] == 200, path
        assert previewed.call("LIST", f"{path}/issuers")[0] == 200, path
    for role in previewed.run.of_type(AUTH_ROLE):
        spec = role.object()
        status, body = previewed.call("GET", f"auth/{spec['backend']}/role/{spec['roleName']}")
        assert status == 200 and body["data"]["token_policies"] == spec["tokenPolicies"], spec["roleName"]
    status, _ = previewed.call("GET", "sys/mounts")
    assert status == 200


def test_the_child_token_the_vault_provider_makes_is_no_more_than_its_parent(previewed):
    """terraform-provider-vault swaps its token for a child token when it configures; the child of the preview token
    holds the preview policy and no other, cannot ask for another, and writes nothing either."""
    status, body = previewed.call("POST", "auth/token/create", {"ttl": "20m"})
    assert status == 200, body
    child = body["auth"]["client_token"]
    assert body["auth"]["policies"] == [previewed.policy["name"]]
    identity_policy = next(p.object()["name"] for p in previewed.run.of_type(POLICY)
                           if p.object()["name"].endswith("-identity"))
    status, _ = previewed.call("POST", "auth/token/create", {"policies": [identity_policy]})
    assert status in (400, 403), "a child with a policy its parent lacks"
    status, _ = previewed.call("POST", "auth/token/create", {"no_parent": True})
    assert status in (400, 403), "an orphan token needs sudo"
    _, path, body = next((t, s.path, s.body) for t, _, s in previewed.mocks.applied if t == PKI_ROLE)
    assert previewed.call("POST", path, body, token=child)[0] == 403


def test_a_write_capable_token_is_not_refused(previewed):
    """The refusals above come from the policy, not from the test: the same write with a token of the deployer's
    rights (root here) succeeds."""
    _, path, body = next((t, s.path, s.body) for t, _, s in previewed.mocks.applied if t == PKI_ROLE)
    status, _ = previewed.server.request("POST", path, body, namespace=previewed.namespace)
    assert status in (200, 204)
