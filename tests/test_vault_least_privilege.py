"""Least privilege per namespace, decided by a real Vault API (OpenBao) and real TLS handshakes, not by our own code.

The program's Vault declarations for staging and prod are applied to OpenBao through the program itself
(tests/openbao.py). Then, with the login cert-manager gets for each namespaced Issuer: each login signs through its own
issuer's path and nothing else; a namespace's login cannot name another namespace, glob past its own names, or get a
CA; an account of one namespace cannot use another's login. Finally the certificates Vault signed go through mutual
TLS as Linkerd's proxies verify it (against the trust bundle, the exported anchors): Vault-signed identities are
accepted, a workload certificate from Vault is refused by a proxy, and during a rotation both anchors work while both
are in the bundle.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import tools
from read.durations import Duration
from read.graph import mesh_identity
from harness import PROJECT, PROJECT_DIR, run_program, stack_config, stack_plan
from openbao import OpenBaoMocks, OpenBaoServer, TokenReviewServer, cert_manager_login, cert_manager_sign, \
    cert_manager_sign_parameters, cert_manager_token_audiences
from test_x509 import handshake

ROTATION = {"trustAnchor": "2026-11", "nextTrustAnchor": "2027-11", "anchorRotationPhase": "add-next"}
# A namespace of the graph with no certificate services, and a service in it: names no login may sign.
OTHER_NAMESPACE, OTHER_SERVICE, OTHER_ACCOUNT = "payments", "ledger", "ledger-writer"


class Deployed:
    """One stack applied to its own OpenBao, with what cert-manager would use: the Vault Issuers and their logins."""

    def __init__(self, run, server, reviews, vault_namespace):
        self.run, self.server, self.reviews = run, server, reviews
        self.vault_namespace = vault_namespace or None
        self.issuers = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                        for o in run.objects("Issuer") if "vault" in o["spec"]}
        self.trust_domain = run.config.get(f"{PROJECT}:trustDomain", "cluster.local")

    def issuer(self, namespace: str, prefix: str) -> dict:
        (found,) = [o for (ns, name), o in self.issuers.items() if ns == namespace and name.startswith(prefix)]
        return found

    def token_for(self, issuer: dict, namespace: str | None = None) -> str:
        """The JWT cert-manager requests for the issuer's account (in the issuer's namespace unless told otherwise)."""
        account = issuer["spec"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["name"]
        return self.reviews.issue(namespace or issuer["metadata"]["namespace"], account,
                                  cert_manager_token_audiences(issuer))

    def login(self, issuer: dict, jwt: str | None = None) -> tuple[int, dict]:
        auth = issuer["spec"]["vault"]["auth"]["kubernetes"]
        return cert_manager_login(self.server, auth["mountPath"], auth["role"], jwt or self.token_for(issuer),
                                  namespace=self.vault_namespace)

    def vault_token(self, issuer: dict) -> str:
        status, body = self.login(issuer)
        assert status == 200, body
        return body["auth"]["client_token"]

    def identity_request(self) -> dict:
        """The spec of the program's Linkerd identity issuer Certificate: what cert-manager asks the identity login for."""
        return self.run.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]

    def duration(self, issuer: dict) -> datetime.timedelta:
        """The ttl cert-manager sends: the Certificate's duration (the identity issuer's), 24h for workload tests."""
        if issuer["metadata"]["name"].startswith("mtls-mesh-identity-"):
            return datetime.timedelta(seconds=Duration.parse(self.identity_request()["duration"]).seconds)
        return datetime.timedelta(hours=24)

    def sign(self, issuer: dict, csr: str, *, path: str | None = None, token: str | None = None) -> tuple[int, dict]:
        return cert_manager_sign(self.server, token or self.vault_token(issuer), path or issuer["spec"]["vault"]["path"],
                                 csr, self.duration(issuer), namespace=self.vault_namespace)

    def post(self, issuer: dict, body: dict, token: str) -> tuple[int, dict]:
        """Any request body on the issuer's own path, with its login's token."""
        return self.server.request("POST", issuer["spec"]["vault"]["path"].strip("/"), body, token=token,
                                   namespace=self.vault_namespace)


def _apply(stack: str, server, reviews, vault_namespace: str, state: OpenBaoMocks | None, settings) -> Deployed:
    holder = []

    def mocks(previous):
        holder.append(OpenBaoMocks(server, previous, tokens=reviews, state=state))
        return holder[-1]

    run = run_program(stack, mocks_factory=mocks,
                      set_config={"vaultKubernetesHost": reviews.host, "vaultKubernetesCaFile": str(reviews.ca_file),
                                  **settings})
    deployed = Deployed(run, server, reviews, vault_namespace)
    deployed.stack, deployed.settings, deployed.mocks = stack, settings, holder[-1]
    return deployed


def deploy(stack: str, **settings):
    """Context manager body shared by the fixtures: OpenBao + the TokenReview stand-in, the program applied."""
    config, _ = stack_config(stack)
    vault_namespace = config.get(f"{PROJECT}:vaultNamespace", "")
    reviews = TokenReviewServer().__enter__()
    server = OpenBaoServer(tools.bao()).__enter__()
    try:
        if vault_namespace:
            server.write(f"sys/namespaces/{vault_namespace}")
        return _apply(stack, server, reviews, vault_namespace, None, settings), (server, reviews)
    except BaseException:
        server.__exit__(None, None, None)
        reviews.__exit__(None, None, None)
        raise


def update(deployed: Deployed, **settings) -> Deployed:
    """The next `pulumi up` of the same stack on the same OpenBao, with these settings changed: what the earlier run
    created and still declares unchanged is left alone (as the engine would), what is new is applied."""
    return _apply(deployed.stack, deployed.server, deployed.reviews, deployed.vault_namespace or "", deployed.mocks,
                  {**deployed.settings, **settings})


@pytest.fixture(scope="module", params=["staging", "prod"])
def deployed(request):
    result, (server, reviews) = deploy(request.param)
    yield result
    server.__exit__(None, None, None)
    reviews.__exit__(None, None, None)


@pytest.fixture(scope="module")
def rotating():
    result, (server, reviews) = deploy("staging", **ROTATION)
    yield result
    server.__exit__(None, None, None)
    reviews.__exit__(None, None, None)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr(key, common_name: str | None = None, dns=(), uris=(), ips=(), ca: bool = False) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []))
    sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris] \
        + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def pem(text: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(text.encode())


def workload_request(deployed: Deployed, namespace: str) -> dict:
    """What the program's Certificate in `namespace` asks for (its first workload certificate). A platform stack's
    sharded namespace has its Certificates in the shard's stack: the plan has them (tests/test_shards.py: the
    shards register exactly the plan's objects)."""
    certificates = deployed.run.objects("Certificate") or []
    found = [c for c in certificates if c["metadata"]["namespace"] == namespace and c["spec"].get("uris")]
    if not found:
        found = [c for c in stack_plan(deployed.stack).namespaces[namespace].certificates if c["spec"].get("uris")]
    return found[0]["spec"]


def workload_namespaces(deployed: Deployed) -> list[str]:
    return sorted({ns for (ns, name) in deployed.issuers if name.startswith("mtls-mesh-workload-")})


# --- each login: its own path, nothing else ------------------------------------------------------------------------

def test_each_login_signs_through_its_own_issuer_and_no_other(deployed):
    assert len(deployed.issuers) >= 2, "an identity issuer and at least one workload issuer"
    for own in deployed.issuers.values():
        token = deployed.vault_token(own)
        for other in deployed.issuers.values():
            if other is own:
                continue
            status, body = deployed.sign(own, csr(new_key(), "x.example", ["x.example"]), path=other["spec"]["vault"]["path"],
                                         token=token)
            assert status == 403, (own["metadata"], other["spec"]["vault"]["path"], status, body)


def test_an_account_of_another_namespace_cannot_use_a_login(deployed):
    identity = deployed.issuer("linkerd", "mtls-mesh-identity-")
    for namespace in workload_namespaces(deployed):
        workload = deployed.issuer(namespace, "mtls-mesh-workload-")
        # The workload namespace's account presenting itself to the identity issuer's login, and the reverse.
        for issuer, impostor_namespace in ((identity, namespace), (workload, "linkerd"), (workload, OTHER_NAMESPACE)):
            status, body = deployed.login(issuer, deployed.token_for(issuer, namespace=impostor_namespace))
            assert status == 403 and not (body or {}).get("auth"), (issuer["metadata"], impostor_namespace, body)


def test_a_workload_login_signs_exactly_its_namespaces_names(deployed):
    for namespace in workload_namespaces(deployed):
        issuer = deployed.issuer(namespace, "mtls-mesh-workload-")
        spec = workload_request(deployed, namespace)
        token = deployed.vault_token(issuer)
        status, body = deployed.sign(issuer, csr(new_key(), dns=spec["dnsNames"], uris=spec["uris"]), token=token)
        assert status == 200, body
        own_spiffe = spec["uris"][0]
        td = deployed.trust_domain
        refused = {
            "another namespace's SPIFFE ID": dict(uris=[f"spiffe://{td}/ns/{OTHER_NAMESPACE}/sa/{OTHER_ACCOUNT}"]),
            "another account in its own namespace": dict(uris=[f"spiffe://{td}/ns/{namespace}/sa/default"]),
            "a SPIFFE ID with a path past its own": dict(uris=[f"{own_spiffe}/ns/{OTHER_NAMESPACE}/sa/x"]),
            "a DNS name in another namespace": dict(dns=[f"{OTHER_SERVICE}.{OTHER_NAMESPACE}.svc"]),
            "another Service's name in its own namespace": dict(dns=[f"not-in-the-graph.{namespace}.svc"]),
            "a wildcard": dict(dns=[f"*.{namespace}.svc"]),
            "a mesh identity": dict(dns=[mesh_identity("default", namespace, td)]),
            "an IP address": dict(dns=spec["dnsNames"][:1], ips=["10.0.0.1"]),
            "localhost": dict(dns=["localhost"]),
        }
        answers = {case: deployed.sign(issuer, csr(new_key(), **names), token=token) for case, names in refused.items()}
        accepted = {case: body for case, (status, body) in answers.items() if status == 200}
        assert not accepted, f"{namespace}: the server signed {sorted(accepted)}"
        # Refused by the role's rules (400 with the server's reason), not by a missing permission.
        assert {case: status for case, (status, _) in answers.items()} == dict.fromkeys(refused, 400), answers


def test_a_workload_certificate_carries_exactly_the_key_usages_its_role_declares(deployed):
    """The role's key_usages reach Vault as `key_usage` (tests/openbao.py PROVIDER_NAMES): sent under the Pulumi name
    the server ignored them and signed with its default, which adds keyEncipherment (an RSA key-transport usage that
    an EC key never has), so this test saw certificates the program never asked for."""
    for namespace in workload_namespaces(deployed):
        issuer = deployed.issuer(namespace, "mtls-mesh-workload-")
        spec = workload_request(deployed, namespace)
        status, body = deployed.sign(issuer, csr(new_key(), dns=spec["dnsNames"], uris=spec["uris"]),
                                     token=deployed.vault_token(issuer))
        assert status == 200, body
        usage = pem(body["data"]["certificate"]).extensions.get_extension_for_class(x509.KeyUsage).value
        asked = stack_plan(deployed.run.stack).vault.workload_roles[namespace]["key_usages"]
        assert asked == ["DigitalSignature", "KeyAgreement"]
        assert (usage.digital_signature, usage.key_agreement, usage.key_encipherment) == (True, True, False), namespace


def test_a_workload_login_never_gets_a_ca(deployed):
    for namespace in workload_namespaces(deployed):
        issuer = deployed.issuer(namespace, "mtls-mesh-workload-")
        spec = workload_request(deployed, namespace)
        token = deployed.vault_token(issuer)
        # Asking for CA in the CSR: Vault's sign/<role> takes names from the CSR, never its basic constraints.
        status, body = deployed.sign(issuer, csr(new_key(), dns=spec["dnsNames"], uris=spec["uris"], ca=True), token=token)
        assert status == 200, body
        issued = pem(body["data"]["certificate"])
        constraints = [e.value for e in issued.extensions if isinstance(e.value, x509.BasicConstraints)]
        assert not any(c.ca for c in constraints), "sign/<role> issued a CA"
        # And the paths that do give CAs are not this login's.
        mount = issuer["spec"]["vault"]["path"].split("/sign/")[0]
        for path in (f"{mount}/root/sign-intermediate", f"{mount}/sign-verbatim",
                     deployed.issuer("linkerd", "mtls-mesh-identity-")["spec"]["vault"]["path"]):
            assert deployed.sign(issuer, csr(new_key(), "attacker", ca=True), path=path, token=token)[0] == 403, path


def test_the_chain_vault_hands_out_carries_each_certificate_once(deployed):
    """The program sends set-signed the intermediate bundle plus the root (so the root twice); Vault imports each
    certificate once, and what cert-manager receives is identity issuer -> intermediate -> root, no repeats."""
    issuer, spec = deployed.issuer("linkerd", "mtls-mesh-identity-"), deployed.identity_request()
    status, body = deployed.sign(issuer, csr(new_key(), spec["commonName"], spec["dnsNames"]))
    assert status == 200, body
    chain = [pem(c) for c in body["data"]["ca_chain"]]
    assert len({c.fingerprint(hashes.SHA256()) for c in chain}) == len(chain) == 3, [c.subject for c in chain]
    assert chain[-1] in bundle(deployed)


def test_the_identity_issuer_is_a_ca_that_can_sign_leaves_only(deployed):
    issuer = deployed.issuer("linkerd", "mtls-mesh-identity-")
    spec = deployed.run.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]
    status, body = deployed.sign(issuer, csr(new_key(), spec["commonName"], spec["dnsNames"]))
    assert status == 200, body
    constraints = pem(body["data"]["certificate"]).extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0, "a CA below it would be refused by every verifier"


# --- the identity login: exactly cert-manager's request for the identity issuer ------------------------------------

def identity_attempts(deployed: Deployed) -> dict[str, dict]:
    """Bodies an attacker holding the identity login could POST to root/sign-intermediate, each one change away from
    cert-manager's own request (issue 21: OpenBao signed every one of these before the policy pinned parameters)."""
    spec, td = deployed.identity_request(), deployed.trust_domain
    other = mesh_identity(OTHER_ACCOUNT, OTHER_NAMESPACE, td)
    spiffe = f"spiffe://{td}/ns/{OTHER_NAMESPACE}/sa/{OTHER_ACCOUNT}"
    base = cert_manager_sign_parameters(csr(new_key(), spec["commonName"], spec["dnsNames"]),
                                        deployed.duration(deployed.issuer("linkerd", "mtls-mesh-identity-")))
    return {
        "another CN": {**base, "common_name": f"{OTHER_SERVICE}.{OTHER_NAMESPACE}.svc"},
        "another identity's SAN": {**base, "alt_names": f"{spec['dnsNames'][0]},{other}"},
        "another CN and SAN, 10 years": {**base, "common_name": "web.payments.svc", "alt_names": other, "ttl": "87600h"},
        "a URI SAN": {**base, "uri_sans": spiffe},
        "an IP SAN": {**base, "ip_sans": "10.0.0.1"},
        "a longer TTL": {**base, "ttl": "87600h"},
        "a TTL in seconds": {**base, "ttl": 315360000},
        "no TTL (the mount's default)": {k: v for k, v in base.items() if k != "ttl"},
        "not_after": {**{k: v for k, v in base.items() if k != "ttl"}, "not_after": "2099-01-01T00:00:00Z"},
        "max_path_length": {**base, "max_path_length": 5},
        "use_csr_values with a URI SAN": {**base, "use_csr_values": True,
                                          "csr": csr(new_key(), spec["commonName"], spec["dnsNames"], uris=[spiffe])},
        "other_sans": {**base, "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:admin@example.com"},
        "permitted_dns_domains": {**base, "permitted_dns_domains": "example.com"},
        "signature and subject fields": {**base, "organization": "mtls-mesh", "ou": "x"},
    }


def comma_attempts(deployed: Deployed) -> dict[str, dict]:
    """cert-manager's request with a pinned value repeated through commas: pieces that each match the pinned value,
    which Vault 1.21+ admits through allowed_parameters (it splits a string that does not match whole on commas,
    hashicorp/vault vault/acl.go valueInAllowedParameterList) and OpenBao does not. Past the ACL, OpenBao's PKI
    signed the name twice, and two empty URI SANs into a CA (docs/vault-policy-matching.md)."""
    spec = deployed.identity_request()
    name = spec["commonName"]
    base = cert_manager_sign_parameters(csr(new_key(), name, spec["dnsNames"]),
                                        deployed.duration(deployed.issuer("linkerd", "mtls-mesh-identity-")))
    return {
        "the name twice as CN": {**base, "common_name": f"{name},{name}"},
        "the name twice as SANs": {**base, "alt_names": f"{name} , {name}"},
        "two empty URI SANs": {**base, "uri_sans": ","},
        "two empty IP SANs": {**base, "ip_sans": " , "},
        "the ttl twice": {**base, "ttl": f"{base['ttl']},{base['ttl']}"},
        "exclude_cn_from_sans twice": {**base, "exclude_cn_from_sans": "true,true"},
    }


def test_a_pinned_value_repeated_through_commas_is_refused_by_the_denied_list_alone(deployed):
    """On OpenBao the allowed lists already refuse these; on Vault 1.21+ they would admit them, and only the policy's
    denied_parameters (any value holding a comma) refuses them. So the denied part is tested on its own: a token whose
    policy is the identity login's without allowed_parameters gets cert-manager's request signed and every comma
    variant refused (403) by the same ACL code both servers share for a whole value with `*` at either end."""
    issuer = deployed.issuer("linkerd", "mtls-mesh-identity-")
    policy = stack_plan(deployed.stack).vault.identity_login.policy
    start = policy.index("  allowed_parameters = {")
    denied_only = policy[:start] + policy[policy.index("  denied_parameters = {"):]
    assert "denied_parameters" in denied_only and "allowed_parameters" not in denied_only
    deployed.server.write("sys/policies/acl/denied-only", {"policy": denied_only}, method="PUT",
                          namespace=deployed.vault_namespace)
    token = deployed.server.write("auth/token/create", {"policies": ["denied-only"], "no_default_policy": True},
                                  namespace=deployed.vault_namespace)["auth"]["client_token"]
    spec = deployed.identity_request()
    assert deployed.sign(issuer, csr(new_key(), spec["commonName"], spec["dnsNames"]), token=token)[0] == 200
    answers = {case: deployed.post(issuer, body, token)[0] for case, body in comma_attempts(deployed).items()}
    assert answers == dict.fromkeys(answers, 403), answers
    # And the identity login itself refuses them too (OpenBao: the allowed lists, and the denied list).
    login = deployed.vault_token(issuer)
    answers = {case: deployed.post(issuer, body, login)[0] for case, body in comma_attempts(deployed).items()}
    assert answers == dict.fromkeys(answers, 403), answers


def test_the_identity_login_signs_cert_managers_request(deployed):
    """Exactly what cert-manager v1.21.1 sends for the program's identity issuer Certificate is signed, as before."""
    issuer, spec = deployed.issuer("linkerd", "mtls-mesh-identity-"), deployed.identity_request()
    status, body = deployed.sign(issuer, csr(new_key(), spec["commonName"], spec["dnsNames"]))
    assert status == 200, body
    issued = pem(body["data"]["certificate"])
    assert issued.not_valid_after_utc - issued.not_valid_before_utc <= deployed.duration(issuer) + datetime.timedelta(seconds=30)


def test_the_identity_login_signs_nothing_else(deployed):
    """Every variation of cert-manager's request is refused by the server (403: the login's policy pins each
    parameter cert-manager sends to the value it sends, and allows no other parameter)."""
    issuer = deployed.issuer("linkerd", "mtls-mesh-identity-")
    token = deployed.vault_token(issuer)
    answers = {case: deployed.post(issuer, body, token) for case, body in identity_attempts(deployed).items()}
    signed = {case: pem(body["data"]["certificate"]).subject.rfc4514_string()
              for case, (status, body) in answers.items() if status == 200}
    assert not signed, f"the identity login got a CA signed for: {signed}"
    assert {case: status for case, (status, _) in answers.items()} == dict.fromkeys(answers, 403), answers


def test_names_in_the_identity_csr_never_reach_the_certificate(deployed):
    """sign-intermediate takes the subject and SANs from the request's parameters unless use_csr_values (refused
    above): a CSR carrying another identity, a URI and an IP, sent with cert-manager's parameters, yields a CA that
    names only the identity issuer."""
    issuer, spec, td = deployed.issuer("linkerd", "mtls-mesh-identity-"), deployed.identity_request(), deployed.trust_domain
    request = csr(new_key(), spec["commonName"], [*spec["dnsNames"], mesh_identity(OTHER_ACCOUNT, OTHER_NAMESPACE, td)],
                  uris=[f"spiffe://{td}/ns/{OTHER_NAMESPACE}/sa/{OTHER_ACCOUNT}"], ips=["10.0.0.1"], ca=True)
    body = {**cert_manager_sign_parameters(request, deployed.duration(issuer)), "alt_names": ",".join(spec["dnsNames"]),
            "uri_sans": "", "ip_sans": ""}
    status, answer = deployed.post(issuer, body, deployed.vault_token(issuer))
    assert status == 200, answer
    issued = pem(answer["data"]["certificate"])
    sans = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in sans] == spec["dnsNames"]
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == spec["commonName"]
    assert issued.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


def test_the_intermediate_mount_caps_what_it_signs_at_the_issuers_lifetime(deployed):
    """Even for a caller the policy would let choose a TTL (the operator's root token here), the intermediate mount
    signs no longer than the identity issuer's duration: its max lease TTL is that duration."""
    issuer, spec = deployed.issuer("linkerd", "mtls-mesh-identity-"), deployed.identity_request()
    body = {**cert_manager_sign_parameters(csr(new_key(), spec["commonName"], spec["dnsNames"]),
                                           deployed.duration(issuer)), "ttl": "87600h"}
    status, answer = deployed.post(issuer, body, "root")
    assert status == 200, answer
    issued = pem(answer["data"]["certificate"])
    assert issued.not_valid_after_utc - issued.not_valid_before_utc <= deployed.duration(issuer) + datetime.timedelta(seconds=30)


# --- what the proxies verify: real mutual TLS with what Vault signed ------------------------------------------------

class Chain:
    """A Linkerd identity issuer signed by Vault through the program's identity Issuer, and the proxy leaves the identity
    controller would issue from it (24h, P-256, the identity as DNS SAN)."""

    def __init__(self, deployed: Deployed, issuer: dict):
        spec = deployed.run.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]
        self.key = new_key()
        status, body = deployed.sign(issuer, csr(self.key, spec["commonName"], spec["dnsNames"]))
        assert status == 200, body
        self.certificate = pem(body["data"]["certificate"])
        # What cert-manager writes: tls.crt = the certificate and the chain above it except the root.
        self.intermediates = [pem(c) for c in body["data"]["ca_chain"] if pem(c).subject != pem(c).issuer]

    def leaf(self, identity: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        return proxy_leaf(self.certificate, self.key, identity)

    def presented(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        return [leaf, self.certificate, *[c for c in self.intermediates if c != self.certificate]]


def proxy_leaf(issuer: x509.Certificate, issuer_key, identity: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(x509.Name([]))
                   .issuer_name(issuer.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=24))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
                   .sign(issuer_key, hashes.SHA256()))
    return certificate, key


def foreign_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foreign CA")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return certificate, key


def context(side, trusted: list[x509.Certificate], presented: list[x509.Certificate] | None, key, tmp_path, tag):
    """A proxy's TLS side: it trusts exactly `trusted` (the bundle) and presents `presented` (leaf first)."""
    tls = ssl.SSLContext(side)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_verify_locations(cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in trusted))
    if presented is not None:
        (tmp_path / f"{tag}.crt").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in presented))
        (tmp_path / f"{tag}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
        tls.load_cert_chain(tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key")
    return tls


def bundle(deployed: Deployed, export: str = "trustAnchors", anchors=None) -> list[x509.Certificate]:
    roots = deployed.run.exports[export]
    return [pem(roots[a]) for a in (anchors or roots)]


def test_proxies_with_vault_signed_identities_complete_mutual_tls(deployed, tmp_path):
    chain = Chain(deployed, deployed.issuer("linkerd", "mtls-mesh-identity-"))
    server_id = mesh_identity("billing", "payments", deployed.trust_domain)
    server_leaf, server_key = chain.leaf(server_id)
    client_leaf, client_key = chain.leaf(mesh_identity("frontend", "web", deployed.trust_domain))
    trust = bundle(deployed)
    server = context(ssl.PROTOCOL_TLS_SERVER, trust, chain.presented(server_leaf), server_key, tmp_path, "server")
    client = context(ssl.PROTOCOL_TLS_CLIENT, trust, chain.presented(client_leaf), client_key, tmp_path, "client")
    assert handshake(server, client, server_id) == "ok"


def test_a_proxy_refuses_a_vault_signed_workload_certificate_and_a_foreign_ca(deployed, tmp_path):
    chain = Chain(deployed, deployed.issuer("linkerd", "mtls-mesh-identity-"))
    server_id = mesh_identity("billing", "payments", deployed.trust_domain)
    server_leaf, server_key = chain.leaf(server_id)
    trust = bundle(deployed)
    (namespace, *_) = workload_namespaces(deployed)
    spec = workload_request(deployed, namespace)
    workload_key = new_key()
    status, body = deployed.sign(deployed.issuer(namespace, "mtls-mesh-workload-"),
                                 csr(workload_key, dns=spec["dnsNames"], uris=spec["uris"]))
    assert status == 200, body
    workload = pem(body["data"]["certificate"])
    impostor, impostor_key = proxy_leaf(*foreign_ca(), mesh_identity("frontend", "web", deployed.trust_domain))
    for presented, key in (([workload], workload_key), ([impostor], impostor_key)):
        server = context(ssl.PROTOCOL_TLS_SERVER, trust, chain.presented(server_leaf), server_key, tmp_path, "server")
        client = context(ssl.PROTOCOL_TLS_CLIENT, trust, presented, key, tmp_path, "client")
        result = handshake(server, client, server_id)
        assert result != "ok" and "server:" in result and "certificate verify failed" in result, result
    # The workload certificate is good where it belongs: against the workload roots the program exports.
    verify_workload = context(ssl.PROTOCOL_TLS_CLIENT, bundle(deployed, "workloadRoots"), None, None, tmp_path, "wc")
    postgres = context(ssl.PROTOCOL_TLS_SERVER, bundle(deployed, "workloadRoots"), [workload], workload_key, tmp_path, "pg")
    postgres.verify_mode = ssl.CERT_NONE
    assert handshake(postgres, verify_workload, spec["dnsNames"][0]) == "ok"


def test_during_a_rotation_both_anchors_work_while_both_are_in_the_bundle(rotating, tmp_path):
    anchors = sorted(rotating.run.exports["trustAnchors"])
    assert anchors == ["2026-11", "2027-11"]
    chains = {a: Chain(rotating, rotating.issuer("linkerd", f"mtls-mesh-identity-{a}")) for a in anchors}
    server_id = mesh_identity("billing", "payments", rotating.trust_domain)
    old_leaf, old_key = chains["2026-11"].leaf(server_id)
    new_leaf, new_key_ = chains["2027-11"].leaf(mesh_identity("frontend", "web", rotating.trust_domain))

    def meet(trust_anchors):
        trust = bundle(rotating, anchors=trust_anchors)
        server = context(ssl.PROTOCOL_TLS_SERVER, trust, chains["2026-11"].presented(old_leaf), old_key, tmp_path, "s")
        client = context(ssl.PROTOCOL_TLS_CLIENT, trust, chains["2027-11"].presented(new_leaf), new_key_, tmp_path, "c")
        return handshake(server, client, server_id)

    # add-next / issue-from-next: the bundle carries both, so a proxy on the old chain and one on the new meet.
    assert meet(anchors) == "ok"
    # drop-previous before every proxy re-issued from the new anchor: the old chain is no longer trusted.
    assert "certificate verify failed" in meet(["2027-11"])
    # During the rotation each workload login covers both anchors' roles.
    for namespace in workload_namespaces(rotating):
        issuer = rotating.issuer(namespace, "mtls-mesh-workload-")
        spec = workload_request(rotating, namespace)
        token = rotating.vault_token(issuer)
        for anchor in anchors:
            path = issuer["spec"]["vault"]["path"].replace(anchors[0], anchor)
            status, body = rotating.sign(issuer, csr(new_key(), dns=spec["dnsNames"], uris=spec["uris"]), path=path, token=token)
            assert status == 200, (path, body)
            assert pem(body["data"]["issuing_ca"]) == pem(rotating.run.exports["workloadRoots"][anchor])


def test_vault_reviews_tokens_over_tls_verified_with_the_ca_the_program_gave_it():
    """Which CA Vault used (external mode): the program hands Vault `vaultKubernetesCaFile`. With the API server's own
    CA the review happens; with any other CA Vault cannot verify the API server, so no review reaches it and the login
    fails, whatever the token (Vault says only "permission denied"; the stand-in saw no request)."""
    foreign_ca = str(PROJECT_DIR / "stacks" / "ca" / "example-internal-ca.pem")
    for ca_file, works in ((None, True), (foreign_ca, False)):
        settings = {} if ca_file is None else {"vaultKubernetesCaFile": ca_file}
        deployed, (server, reviews) = deploy("staging", **settings)
        try:
            issuer = deployed.issuer("linkerd", "mtls-mesh-identity-")
            jwt = deployed.token_for(issuer)
            status, body = deployed.login(issuer, jwt)
            reviewed = [r for r in reviews.reviews if r.body.get("spec", {}).get("token") == jwt]
            if works:
                assert status == 200 and len(reviewed) == 1, body
            else:
                assert status >= 400 and not (body or {}).get("auth") and not reviewed, body
        finally:
            server.__exit__(None, None, None)
            reviews.__exit__(None, None, None)


# --- renewing the intermediate: a new certificate for the same key, the identity issuer follows ----------------------

def intermediate_of(chain: Chain) -> x509.Certificate:
    (intermediate,) = [c for c in chain.intermediates if c.subject == chain.certificate.issuer]
    return intermediate


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_renewed_intermediate_signs_the_next_identity_issuer_and_proxies_keep_trusting(stack, tmp_path):
    """vaultIntermediateRenewals on an applied stack (the same OpenBao, the next `pulumi up`): the root re-signs the
    intermediate, the mount's default issuer moves to it, cert-manager's next renewal of the identity issuer chains
    through it, and proxies holding leaves from the old issuer and from the new one complete mutual TLS against the
    unchanged bundle. The alert reads the renewed intermediate's notAfter."""
    from test_alerts import rule_spec, rules_by_alert

    before, (server, reviews) = deploy(stack)
    try:
        old = Chain(before, before.issuer("linkerd", "mtls-mesh-identity-"))
        after = update(before, vaultIntermediateRenewals=["2031-05"])
        assert after.mocks.unchanged and {t.split(":")[-1] for t, _, _ in after.mocks.applied} == {
            "SecretBackendRootSignIntermediate", "SecretBackendIntermediateSetSigned", "SecretBackendConfigIssuers"}
        new = Chain(after, after.issuer("linkerd", "mtls-mesh-identity-"))
        old_int, new_int = intermediate_of(old), intermediate_of(new)
        assert new_int != old_int and new_int.subject == old_int.subject
        assert new_int.public_key() == old_int.public_key(), "re-signed, same key"
        # A fresh vaultIntermediateTtl from now (here seconds after the first signing, so possibly the same second).
        assert new_int.not_valid_after_utc >= old_int.not_valid_after_utc and new_int.serial_number != old_int.serial_number
        new.certificate.verify_directly_issued_by(new_int)
        (root,) = bundle(after)
        new_int.verify_directly_issued_by(root)
        # Same key and subject: what the old intermediate signed also verifies under the new one, and the reverse.
        old.certificate.verify_directly_issued_by(new_int)

        server_id = mesh_identity("billing", "payments", after.trust_domain)
        old_leaf, old_key = old.leaf(server_id)
        new_leaf, new_leaf_key = new.leaf(mesh_identity("frontend", "web", after.trust_domain))
        trust = bundle(after)
        server_side = context(ssl.PROTOCOL_TLS_SERVER, trust, old.presented(old_leaf), old_key, tmp_path, "s")
        client_side = context(ssl.PROTOCOL_TLS_CLIENT, trust, new.presented(new_leaf), new_leaf_key, tmp_path, "c")
        assert handshake(server_side, client_side, server_id) == "ok"

        rules = rules_by_alert(rule_spec(after.run))["MeshVaultIntermediateExpiring"]
        assert {r["expr"].split(" - ")[0] for r in rules} == {f"vector({int(new_int.not_valid_after_utc.timestamp())}"}
        rules = rules_by_alert(rule_spec(before.run))["MeshVaultIntermediateExpiring"]
        assert {r["expr"].split(" - ")[0] for r in rules} == {f"vector({int(old_int.not_valid_after_utc.timestamp())}"}

        # The next renewal appends an id: the first renewal's resources are left alone, the default moves again.
        later = update(after, vaultIntermediateRenewals=["2031-05", "2036-04"])
        assert sorted(n for _, n, _ in later.mocks.applied) == sorted(
            [n.replace("2031-05", "2036-04") for _, n, _ in after.mocks.applied if "2031-05" in n]
            + [n for _, n, _ in after.mocks.applied if "default-issuer" in n])
        latest_int = intermediate_of(Chain(later, later.issuer("linkerd", "mtls-mesh-identity-")))
        assert latest_int not in (old_int, new_int) and latest_int.public_key() == old_int.public_key()
    finally:
        server.__exit__(None, None, None)
        reviews.__exit__(None, None, None)
