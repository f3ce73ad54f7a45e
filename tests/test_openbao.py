"""The program's Vault declarations applied to a real Vault API (OpenBao's dev server), then used as cert-manager
uses them: Kubernetes login, the identity issuer's signing path, the workload issuer's, and everything the login
token must not reach. Names and paths come from what the program registered, so these follow the program.

Only the Kubernetes API server's TokenReview is a stand-in (tests/openbao.py says what it answers and why).
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import tools
from read.durations import Duration
from harness import PROJECT, run_program, stack_config, stack_plan
from openbao import (APPLY, PROVIDER_NAMES, IgnoredParameters, OpenBaoMocks, OpenBaoServer, TokenReviewServer,
                     UnappliedVaultResource, VaultError, api_fields, cert_manager_login, cert_manager_sign,
                     cert_manager_token_audiences)

AUTH_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
MOUNT = "vault:index/mount:Mount"
AUTH_BACKEND = "vault:index/authBackend:AuthBackend"
AUTH_CONFIG = "vault:kubernetes/authBackendConfig:AuthBackendConfig"
PKI_ROLE = "vault:pkiSecret/secretBackendRole:SecretBackendRole"
POLICY = "vault:index/policy:Policy"
STACKS = ("staging", "prod")
MODES = ("external", "in-cluster")
VAULT_POD_ACCOUNT = ("vault", "vault")


class Applied:
    """One stack applied to its own OpenBao: the run, the servers, and the objects cert-manager would read."""

    def __init__(self, stack, run, server, reviews, mocks, namespace):
        self.stack, self.run, self.server, self.reviews, self.mocks = stack, run, server, reviews, mocks
        self.namespace = namespace or None
        self.auth_roles = {r.object()["roleName"]: r.object() for r in run.of_type(AUTH_ROLE)}
        # Every Vault issuer is a namespaced Issuer: (namespace, name) -> object.
        self.issuers = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                        for o in run.objects("Issuer") if "vault" in o["spec"]}
        # A platform stack's sharded namespaces have their Certificates in the shards' stacks: the plan holds them all
        # (tests/test_shards.py: platform and shards register exactly the plan's objects).
        registered = run.objects("Certificate")
        planned = [c for ns in stack_plan(stack).namespaces.values() for c in ns.certificates]
        self.certificates = registered + [c for c in planned if c not in registered]

    def vault_certificates(self) -> list[dict]:
        return [c for c in self.certificates if self._key(c) in self.issuers]

    @staticmethod
    def _key(certificate) -> tuple[str, str]:
        return certificate["metadata"]["namespace"], certificate["spec"]["issuerRef"]["name"]

    def issuer_of(self, certificate) -> dict:
        return self.issuers[self._key(certificate)]

    def auth_role(self, issuer) -> dict:
        """The Vault login role the issuer logs in with."""
        return self.auth_roles[issuer["spec"]["vault"]["auth"]["kubernetes"]["role"]]

    def login(self, jwt, issuer=None):
        auth = (issuer or next(iter(self.issuers.values())))["spec"]["vault"]["auth"]["kubernetes"]
        return cert_manager_login(self.server, auth["mountPath"], auth["role"], jwt, namespace=self.namespace)

    def cert_manager_token(self, issuer, namespace=None, name=None, audiences=None):
        """What cert-manager gets from TokenRequest for the issuer's serviceAccountRef (in the Issuer's namespace)."""
        return self.reviews.issue(namespace or issuer["metadata"]["namespace"],
                                  name or issuer["spec"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["name"],
                                  audiences if audiences is not None else cert_manager_token_audiences(issuer))


def _pod_namespace_available() -> str:
    """Why in-cluster mode cannot be run here, or "" when it can (a private mount namespace needs root)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "in-cluster Vault needs /var/run/secrets/kubernetes.io/serviceaccount, given here by unshare -m as root"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"unshare -m fails here: {probe.stderr.strip()}"


@pytest.fixture(scope="module", params=[(stack, mode) for stack in STACKS for mode in MODES],
                ids=lambda p: "-".join(p))
def applied(request):
    stack, mode = request.param
    bao = tools.bao()
    if mode == "in-cluster" and _pod_namespace_available():
        # A privilege, not a tool .ci/install-tools could install: skipped with the reason even in CI.
        pytest.skip(_pod_namespace_available())
    config, _ = stack_config(stack)
    namespace = config.get(f"{PROJECT}:vaultNamespace", "")
    overrides = {"vaultKubernetesAuthMode": mode}
    with TokenReviewServer() as reviews:
        overrides["vaultKubernetesHost"] = reviews.host
        pod = None
        if mode == "external":
            overrides["vaultKubernetesCaFile"] = str(reviews.ca_file)
        else:
            # Vault's own pod account, allowed to review tokens (its ClusterRoleBinding is the Vault operator's).
            pod = (reviews.ca_pem, reviews.issue(*VAULT_POD_ACCOUNT, reviewer=True))
        with OpenBaoServer(bao, pod_service_account=pod) as server:
            if namespace:
                # An operator creates the namespace before `pulumi up`; the provider only works inside it.
                server.write(f"sys/namespaces/{namespace}")
            holder = []

            def mocks(previous):
                holder.append(OpenBaoMocks(server, previous, tokens=reviews))
                return holder[-1]

            run = run_program(stack, mocks_factory=mocks, set_config=overrides)
            result = Applied(stack, run, server, reviews, holder[-1], namespace)
            result.mode, result.pod_token = mode, pod[1] if pod else None
            yield result


def test_every_vault_resource_the_program_declares_was_applied(applied):
    declared = [(r.type, r.name) for r in applied.run.registrations if r.type.startswith("vault:") and r.custom]
    assert declared and sorted(declared) == sorted((t, n) for t, n, _ in applied.mocks.applied)


def test_mounts_live_in_the_stacks_vault_namespace(applied):
    mounts = {r.object()["path"] for r in applied.run.of_type(MOUNT)}
    status, listed = applied.server.request("GET", "sys/mounts", namespace=applied.namespace)
    assert status == 200 and mounts <= {m.rstrip("/") for m in listed["data"]}
    if applied.namespace:
        _, root_level = applied.server.request("GET", "sys/mounts")
        assert not mounts & {m.rstrip("/") for m in root_level["data"]}, "prod's mounts leaked out of its namespace"


def test_cert_manager_logs_in_with_exactly_the_declared_policies(applied):
    for issuer in applied.issuers.values():
        jwt = applied.cert_manager_token(issuer)
        status, body = applied.login(jwt, issuer)
        assert status == 200, body
        token = body["auth"]["client_token"]
        # Without `default` the token cannot even look itself up (that right is in `default`): ask as the operator.
        assert applied.server.request("GET", "auth/token/lookup-self", token=token,
                                      namespace=applied.namespace)[0] == 403
        status, me = applied.server.request("POST", "auth/token/lookup", {"token": token}, namespace=applied.namespace)
        assert status == 200, me
        role = applied.auth_role(issuer)
        assert role["boundServiceAccountNamespaces"] == [issuer["metadata"]["namespace"]]
        assert sorted(body["auth"]["policies"]) == sorted(role["tokenPolicies"])
        assert sorted(me["data"]["policies"]) == sorted(role["tokenPolicies"])
        assert "default" not in me["data"]["policies"]
        assert me["data"]["ttl"] <= role["tokenTtl"]


def test_vault_reviewed_the_login_token_with_the_reviewers_jwt(applied):
    issuer = next(iter(applied.issuers.values()))
    jwt = applied.cert_manager_token(issuer)
    assert applied.login(jwt, issuer)[0] == 200
    (review,) = [r for r in applied.reviews.reviews if r.body.get("spec", {}).get("token") == jwt]
    assert review.bearer != jwt, "Vault reviewed the login token with itself; the API server refuses that audience"
    if applied.mode == "external":
        reviewer = applied.reviews.tokens[review.bearer]
        secret = applied.run.object("Secret", reviewer.name, reviewer.namespace)
        assert secret["type"] == "kubernetes.io/service-account-token"
    else:
        assert review.bearer == applied.pod_token, "in a pod Vault reviews with its own account's token"
    assert review.body["spec"]["audiences"] == [applied.auth_role(issuer)["audience"]]


def _refusals(applied):
    issuer = next(iter(applied.issuers.values()))
    role = applied.auth_role(issuer)
    namespace, name = role["boundServiceAccountNamespaces"][0], role["boundServiceAccountNames"][0]
    audiences = [a for a in cert_manager_token_audiences(issuer) if a != role["audience"]]
    stranger = TokenReviewServer()  # same claims, but a token the API server never issued
    return issuer, {
        "wrong account": applied.cert_manager_token(issuer, name=name + "-other"),
        "wrong namespace": applied.cert_manager_token(issuer, namespace=namespace + "-other"),
        "wrong audience": applied.cert_manager_token(issuer, audiences=audiences),
        "unknown token": stranger.issue(namespace, name, cert_manager_token_audiences(issuer)),
    }


def test_logins_the_role_does_not_bind_are_refused(applied):
    issuer, tokens = _refusals(applied)
    outcomes = {case: applied.login(jwt, issuer) for case, jwt in tokens.items()}
    accepted = {case: body for case, (status, body) in outcomes.items() if status < 400 or (body or {}).get("auth")}
    assert not accepted
    assert {case: status for case, (status, _) in outcomes.items()} == dict.fromkeys(tokens, 403), outcomes
    # The unknown token's claims are all right: only the API server's review can refuse it, so Vault must have asked.
    (review,) = [r for r in applied.reviews.reviews if r.body["spec"]["token"] == tokens["unknown token"]]
    assert review.response["status"]["authenticated"] is False


def _login_token(applied, issuer):
    status, body = applied.login(applied.cert_manager_token(issuer), issuer)
    assert status == 200, body
    return body["auth"]["client_token"]


def _csr(common_name=None, dns=(), uris=()):
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)] if common_name else []))
    sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _duration(text):
    return datetime.timedelta(seconds=Duration.parse(text).seconds)


def _pem(text):
    return x509.load_pem_x509_certificate(text.encode())


def test_the_identity_issuers_path_signs_a_ca_chaining_to_the_exported_anchor(applied):
    (identity,) = [c for c in applied.vault_certificates() if c["spec"].get("isCA")]
    issuer = applied.issuer_of(identity)
    spec = identity["spec"]
    status, body = cert_manager_sign(applied.server, _login_token(applied, issuer), issuer["spec"]["vault"]["path"],
                                     _csr(spec.get("commonName"), spec.get("dnsNames", ())),
                                     _duration(spec["duration"]), namespace=applied.namespace)
    assert status == 200, body
    certificate, intermediate = _pem(body["data"]["certificate"]), _pem(body["data"]["issuing_ca"])
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    anchors = [_pem(pem) for pem in applied.run.exports["trustAnchors"].values()]
    (root,) = [a for a in anchors if a.subject == intermediate.issuer]
    certificate.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    # ca_chain is what cert-manager writes to ca.crt's source: it must end at the anchor (set-signed full chain).
    assert _pem(body["data"]["ca_chain"][-1]) == root


def test_the_workload_issuers_path_signs_a_graph_workloads_certificate(applied):
    workloads = [c for c in applied.vault_certificates() if c["spec"].get("uris")]
    if not workloads:
        pytest.skip(f"{applied.stack}'s graph asks for no workload certificates")
    for workload in workloads:
        spec, issuer = workload["spec"], applied.issuer_of(workload)
        status, body = cert_manager_sign(applied.server, _login_token(applied, issuer), issuer["spec"]["vault"]["path"],
                                         _csr(spec.get("commonName"), spec["dnsNames"], spec["uris"]),
                                         _duration(spec["duration"]), namespace=applied.namespace)
        assert status == 200, (workload["metadata"], body)
        certificate = _pem(body["data"]["certificate"])
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(spec["dnsNames"])
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == spec["uris"]
        constraints = [e.value for e in certificate.extensions if isinstance(e.value, x509.BasicConstraints)]
        assert not any(c.ca for c in constraints), "a workload certificate must not be a CA"


def _forbidden_paths(applied, issuer):
    """Every signing and admin path on the program's mounts and roles but the one this issuer uses (the other issuers'
    paths included: each login signs through its own issuer only)."""
    allowed = {issuer["spec"]["vault"]["path"].strip("/")}
    mounts = [r.object()["path"] for r in applied.run.of_type(MOUNT)]
    roles = [r.object()["name"] for r in applied.run.of_type(PKI_ROLE)]
    candidates = [("GET", "sys/mounts"), ("POST", "sys/mounts/stolen"), ("GET", "sys/policies/acl"), ("GET", "sys/auth")]
    candidates += [("PUT", f"sys/policies/acl/{p.object()['name']}") for p in applied.run.of_type(POLICY)]
    candidates += [("POST", other["spec"]["vault"]["path"]) for other in applied.issuers.values()]
    for mount in mounts:
        candidates += [("POST", f"{mount}/root/sign-intermediate"), ("POST", f"{mount}/sign-verbatim"),
                       ("POST", f"{mount}/issuers/generate/root/internal"), ("POST", f"{mount}/config/urls"),
                       ("POST", f"{mount}/sign/{roles[0]}-other"), ("POST", f"{mount}/roles/{roles[0]}-other")]
        for role in roles:
            candidates += [("POST", f"{mount}/issue/{role}"), ("POST", f"{mount}/sign/{role}"),
                           ("POST", f"{mount}/roles/{role}")]
    return [(method, path) for method, path in candidates if path not in allowed]


def test_each_login_token_reaches_nothing_but_its_issuers_path(applied):
    csr = _csr("probe.example", ["probe.example"])
    for issuer in applied.issuers.values():
        token = _login_token(applied, issuer)
        answers = {f"{method} {path}": applied.server.request(method, path, {"csr": csr, "common_name": "probe.example"}
                                                               if method != "GET" else None,
                                                               token=token, namespace=applied.namespace)[0]
                   for method, path in _forbidden_paths(applied, issuer)}
        assert answers and {k: v for k, v in answers.items() if v != 403} == {}, issuer["metadata"]


def test_in_cluster_config_outside_a_pod_fails_as_upstream_says():
    """Vault not in a pod has no service-account files; writing the in-cluster config names the missing file."""
    run = run_program("staging", set_config={"vaultKubernetesAuthMode": "in-cluster",
                                             "vaultKubernetesHost": "https://127.0.0.1:6443"})
    # Applied request by request rather than as a failing run: one failing run per test session is enough to show
    # that failures stop the run (the next test), and each one leaves the SDK's failed futures behind.
    with OpenBaoServer(tools.bao()) as server:
        for registration in run.of_type(AUTH_BACKEND) + run.of_type(AUTH_CONFIG):
            path, body = APPLY[registration.type][0](api_fields(registration.inputs))
            status, answer = server.request("POST", path, body)
    assert registration.type == AUTH_CONFIG and status == 400
    assert answer["errors"] == ["open /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: no such file or directory"]


def test_a_parameter_the_server_ignores_fails_the_request(staging):
    """A request field the endpoint does not know is ignored by OpenBao with only a warning: the harness fails instead,
    so a misspelt field (as `key_usages` was, the Pulumi name of the provider's `key_usage`) cannot pass unseen. The
    program's own PKI roles, as the provider sends them, carry none."""
    (role, *_) = staging.of_type(PKI_ROLE)
    path, body = APPLY[PKI_ROLE][0](api_fields(role.inputs))
    assert "key_usage" in body and not set(PROVIDER_NAMES) & set(body)
    with OpenBaoServer(tools.bao()) as server:
        server.write(f"sys/mounts/{path.split('/roles/')[0]}", {"type": "pki"})
        server.write(path, body)
        with pytest.raises(IgnoredParameters, match=r"unrecognized parameters: \[key_usages\]"):
            server.write(path, {**body, "key_usages": body["key_usage"]})


def test_every_field_the_roles_are_written_with_is_read_back(applied):
    """OpenBao warns about an ignored field only when the endpoint answers with a body (sdk/framework/backend.go), and
    the Kubernetes auth role write answers 204: so each role the program declares is read back, and every field the
    provider sent must be there with the value sent (a field the server did not know would be missing)."""
    for typ, name, sent in applied.mocks.applied:
        if typ not in (AUTH_ROLE, PKI_ROLE):
            continue
        stored = applied.server.write(sent.path, method="GET", namespace=applied.namespace or None)["data"]
        missing = sorted(set(sent.body) - set(stored))
        assert not missing, f"{name}: {sent.path} does not hold {missing}"
        for field, value in sent.body.items():
            if isinstance(value, bool) or field.endswith("ttl"):
                continue  # echoed as the server's own types (durations as seconds)
            read = stored[field]
            assert (sorted(read) if isinstance(read, list) else read) == (sorted(value) if isinstance(value, list)
                                                                           else value), (name, field, read, value)


def test_an_unmapped_vault_resource_type_fails_the_run():
    class Args:
        typ, name, inputs, provider = "vault:index/newThing:NewThing", "x", {}, None
    with pytest.raises(UnappliedVaultResource):
        OpenBaoMocks(server=None).new_resource(Args())


def test_a_refused_api_call_fails_the_registration_with_the_servers_words(staging):
    """The auth mount the program declares already exists (someone enabled it by hand): Vault refuses, and the
    registration raises with the server's words, which fails the run (the SDK fails `up` on any mock exception).
    Shown on the registration itself, not with a whole failing run: a run that fails while other registrations are in
    flight leaves SDK threads behind, and CPython 3.11 then fails later AST compiles in the test session
    ("AST constructor recursion depth mismatch", python/cpython#106905)."""
    (backend,) = staging.of_type(AUTH_BACKEND)
    taken = backend.object()["path"]

    class Registration:
        typ, name, inputs, provider = AUTH_BACKEND, backend.name, backend.inputs, None

    with OpenBaoServer(tools.bao()) as server:
        server.write(f"sys/auth/{taken}", {"type": "userpass"})
        with pytest.raises(VaultError) as caught:
            OpenBaoMocks(server).new_resource(Registration())
    assert caught.value.status == 400 and f"sys/auth/{taken}" in str(caught.value)
    assert "path is already in use" in str(caught.value)


def test_the_workload_path_refuses_names_outside_the_role(applied):
    """What the role declares is what Vault enforces: DNS names outside its domains and URIs outside its SPIFFE
    pattern are refused (400), even with a token that may call the path."""
    workloads = [c for c in applied.vault_certificates() if c["spec"].get("uris")]
    if not workloads:
        pytest.skip(f"{applied.stack}'s graph asks for no workload certificates")
    spec, issuer = workloads[0]["spec"], applied.issuer_of(workloads[0])
    (role,) = [r.object() for r in applied.run.of_type(PKI_ROLE)
               if issuer["spec"]["vault"]["path"].endswith(f"/sign/{r.object()['name']}")]
    outside_dns = "outside." + ".".join(sorted(role["allowedDomains"])[0].split(".")[1:]) + ".invalid"
    outside_uri = role["allowedUriSans"][0].replace("spiffe://", "spiffe://not-").replace("*", "x")
    token = _login_token(applied, issuer)
    for dns, uris in (([outside_dns], spec["uris"]), (spec["dnsNames"], [outside_uri])):
        status, body = cert_manager_sign(applied.server, token, issuer["spec"]["vault"]["path"], _csr(None, dns, uris),
                                         _duration(spec["duration"]), namespace=applied.namespace)
        assert status == 400, (dns, uris, body)
