"""Real certificates, not just inputs: build with `cryptography` the chain each stack's registrations describe
(root -> [Vault intermediate] -> Linkerd identity issuer -> proxy leaf, and a workload leaf), check what Linkerd and
TLS peers check, then complete real mutual-TLS handshakes with Python's ssl, and watch the bad ones fail."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from read.graph import mesh_identity
from harness import plain
from read.settings import PROXY_LEAF_LIFETIME

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
CURVES = {("ECDSA", 256): ec.SECP256R1(), ("ec", 256): ec.SECP256R1(), ("P256", None): ec.SECP256R1()}
USAGE_EKU = {"server auth": ExtendedKeyUsageOID.SERVER_AUTH, "client auth": ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def issue(subject: str, lifetime: dt.timedelta, *, curve: ec.EllipticCurve, parent: Issued | None = None,
          ca: bool = False, path_length: int | None = None, usages: list[str] = (), dns: list[str] = (),
          uris: list[str] = (), not_before: dt.datetime = NOW) -> Issued:
    """One certificate with the profile a registration describes, signed by `parent` (or itself)."""
    key = ec.generate_private_key(curve)
    # X.509 caps a common name at 64 characters; peers match identities on the SAN, which has no such cap.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject if len(subject) <= 64 else subject.split(".")[0])])
    issuer_cert, issuer_key = (parent.cert, parent.key) if parent else (None, key)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + lifetime)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=not ca, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
    ekus = [USAGE_EKU[u] for u in usages if u in USAGE_EKU]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(issuer_key, hashes.SHA256()), key)


def _hours(go_duration: str) -> dt.timedelta:
    from read.durations import Duration
    return dt.timedelta(seconds=Duration.parse(go_duration).seconds)


@dataclass
class Chain:
    root: Issued
    cas: list[Issued]          # below the root, top down: [intermediate,] identity issuer
    proxy_leaf: Issued
    workload_leaf: Issued
    identity: str
    workload_root: Issued      # a chain of its own: the proxies never trust it


def _mock_source(pem: str) -> str:
    """The harness's stand-in certificates are named after the resource that made them (CN=MOCK-<name>)."""
    common_name = x509.load_pem_x509_certificate(pem.encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return common_name[0].value.removeprefix("MOCK-")


def _issuer_of(run, certificate_name: str, namespace: str) -> tuple[dict, dict]:
    """A Certificate's spec and the Issuer its issuerRef names (in its own namespace)."""
    spec = run.object("Certificate", certificate_name, namespace)["spec"]
    assert spec["issuerRef"]["kind"] == "Issuer"
    return spec, run.object("Issuer", spec["issuerRef"]["name"], namespace)["spec"]


def chain_from_run(run, *, intermediate_path_length: int | None = None) -> Chain:
    """Build the chain the stack's recorded registrations describe, each certificate signed by the CA the program
    wires it to (issuerRef -> Issuer -> Vault mount or CA Secret; in dev, the signing certificate it names)."""
    anchors = {r.name: r for r in run.of_type("tls:index/selfSignedCert:SelfSignedCert")}
    if anchors:
        keys = {r.name: plain(r.inputs) for r in run.of_type("tls:index/privateKey:PrivateKey")}

        def self_signed(name: str) -> Issued:
            inputs = plain(anchors[name].inputs)
            assert inputs["isCaCertificate"]
            return issue(inputs["subject"]["commonName"], dt.timedelta(hours=inputs["validityPeriodHours"]),
                         curve=CURVES[(keys[name]["ecdsaCurve"], None)], ca=True)
        cas = {name: self_signed(name) for name in anchors}
        # The identity issuer's CA Issuer signs from a Secret; its tls.crt names the self-signed root it holds.
        _, identity_issuer_spec = _issuer_of(run, "linkerd-identity-issuer", "linkerd")
        anchor_secret = run.object("Secret", identity_issuer_spec["ca"]["secretName"], "linkerd")
        root = cas[_mock_source(anchor_secret["stringData"]["tls.crt"])]
        above_issuer = [root]
        # The program signs workload certificates itself (pulumi-tls), as its CertRequest and LocallySignedCert say.
        (request,) = [plain(r.inputs) for r in run.of_type("tls:index/certRequest:CertRequest")]
        (signed,) = [plain(r.inputs) for r in run.of_type("tls:index/locallySignedCert:LocallySignedCert")]
        workload_root = cas[_mock_source(signed["caCertPem"])]
        uses = {"server_auth": "server auth", "client_auth": "client auth"}
        workload_leaf = issue(request["dnsNames"][0], dt.timedelta(hours=signed["validityPeriodHours"]),
                              parent=workload_root, curve=ec.SECP256R1(),
                              usages=[uses[u] for u in signed["allowedUses"] if u in uses],
                              dns=request["dnsNames"], uris=request["uris"])
    else:
        def vault_root(inputs: dict) -> Issued:
            return issue(inputs["commonName"], dt.timedelta(seconds=int(inputs["ttl"])),
                         curve=CURVES[(inputs["keyType"], inputs["keyBits"])], ca=True)
        # Vault root mount path -> the root it holds.
        roots = {plain(r.inputs)["backend"]: vault_root(plain(r.inputs))
                 for r in run.of_type("vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert")}
        # The identity issuer signs through <intermediate mount>/root/sign-intermediate; that mount's CSR was signed on
        # a root mount.
        _, identity_issuer_spec = _issuer_of(run, "linkerd-identity-issuer", "linkerd")
        int_mount = identity_issuer_spec["vault"]["path"].removesuffix("/root/sign-intermediate")
        (csr_registration,) = [r for r in run.of_type(
            "vault:pkiSecret/secretBackendIntermediateCertRequest:SecretBackendIntermediateCertRequest")
            if plain(r.inputs)["backend"] == int_mount]
        (signed_registration,) = [r for r in run.of_type(
            "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate")
            if csr_registration.urn in r.property_dependencies.get("csr", ())]
        signed, csr = plain(signed_registration.inputs), plain(csr_registration.inputs)
        root = roots[signed["backend"]]
        path_length = signed["maxPathLength"] if intermediate_path_length is None else intermediate_path_length
        intermediate = issue(signed["commonName"], dt.timedelta(seconds=int(signed["ttl"])),
                             curve=CURVES[(csr["keyType"], csr["keyBits"])], parent=root, ca=True, path_length=path_length)
        above_issuer = [root, intermediate]
        # The workload issuer signs through <mount>/sign/<role>: the leaf's parent is whatever CA that mount holds.
        wspec, workload_issuer_spec = _issuer_of(run, "postgres-mesh-tls", "data")
        workload_mount = workload_issuer_spec["vault"]["path"].split("/sign/")[0]
        assert workload_mount in roots, f"the workload issuer signs on {workload_mount}, which holds no root of its own"
        workload_root = roots[workload_mount]
        workload_leaf = issue(wspec["dnsNames"][0], _hours(wspec["duration"]), parent=workload_root,
                              curve=CURVES[(wspec["privateKey"]["algorithm"], wspec["privateKey"]["size"])],
                              usages=wspec["usages"], dns=wspec["dnsNames"], uris=wspec["uris"])
    spec = run.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]
    identity_issuer = issue(spec["commonName"], _hours(spec["duration"]), parent=above_issuer[-1], ca=spec["isCA"],
                            curve=CURVES[(spec["privateKey"]["algorithm"], spec["privateKey"]["size"])],
                            usages=spec["usages"], dns=spec["dnsNames"])
    identity = mesh_identity("billing", "payments", "cluster.local")
    # What Linkerd's identity controller issues each proxy: a 24h P-256 leaf naming the workload's identity.
    proxy_leaf = issue(identity, dt.timedelta(seconds=PROXY_LEAF_LIFETIME.seconds), parent=identity_issuer,
                       curve=ec.SECP256R1(), usages=["server auth", "client auth"], dns=[identity])
    return Chain(root, above_issuer[1:] + [identity_issuer], proxy_leaf, workload_leaf, identity, workload_root)


def verify_server(chain: Chain, leaf: Issued, name: str, intermediates: list[Issued], at: dt.datetime = NOW,
                  trust: Issued | None = None):
    verifier = PolicyBuilder().store(Store([(trust or chain.root).cert])).time(at).build_server_verifier(x509.DNSName(name))
    return verifier.verify(leaf.cert, [c.cert for c in intermediates])


@pytest.mark.parametrize("stack", ["dev", "staging", "prod_mesh"])
def test_profile_keys_ca_flags_and_nesting(request, stack):
    chain = chain_from_run(request.getfixturevalue(stack))
    every = [chain.root, *chain.cas, chain.proxy_leaf, chain.workload_root, chain.workload_leaf]
    for issued in every:
        assert isinstance(issued.key.curve, ec.SECP256R1), "Linkerd requires ECDSA P-256 for the issuer and proxies"
        assert isinstance(issued.cert.signature_hash_algorithm, hashes.SHA256)
    identity_issuer = chain.cas[-1]
    assert identity_issuer.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert identity_issuer.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "identity.linkerd.cluster.local"
    # No child outlives its parent.
    for parent, child in zip([chain.root, *chain.cas], [*chain.cas, chain.proxy_leaf]):
        assert child.cert.not_valid_after_utc <= parent.cert.not_valid_after_utc, child.cert.subject


@pytest.mark.parametrize("stack", ["dev", "staging", "prod_mesh"])
def test_proxy_leaves_verify_to_the_anchor_and_workload_leaves_only_to_the_workload_root(request, stack):
    chain = chain_from_run(request.getfixturevalue(stack))
    verified = verify_server(chain, chain.proxy_leaf, chain.identity, chain.cas)
    assert verified[-1] == chain.root.cert
    assert verify_server(chain, chain.workload_leaf, "postgres.data.svc.cluster.local", [], trust=chain.workload_root)
    # What a proxy checks a peer against is the mesh anchor (the trust bundle): a workload certificate fails there,
    # so it can never be presented as a mesh identity (linkerd2-proxy takes the first SAN of any chain to its roots).
    with pytest.raises(VerificationError):
        verify_server(chain, chain.workload_leaf, "postgres.data.svc.cluster.local", [])
    san = chain.workload_leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/data/sa/postgres"]


def test_an_intermediate_without_path_length_for_the_issuer_breaks_the_chain(staging):
    # Why the intermediate is signed with max path length >= 1: at 0 the identity issuer (a CA) is invalid below it.
    chain = chain_from_run(staging, intermediate_path_length=0)
    with pytest.raises(VerificationError):
        verify_server(chain, chain.proxy_leaf, chain.identity, chain.cas)


def test_a_leaf_signed_late_never_outlives_its_issuer(staging):
    # The issuer is renewed when renewBefore (25h) remains; a 24h leaf signed just before that still expires first.
    spec = staging.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]
    latest_signing = _hours(spec["duration"]) - _hours(spec["renewBefore"])
    assert latest_signing + dt.timedelta(seconds=PROXY_LEAF_LIFETIME.seconds) <= _hours(spec["duration"])


# --- real mutual TLS with Python's ssl -----------------------------------------------------------------------------

def _context(side: int, chain: Chain, leaf: Issued | None, intermediates: list[Issued], tmp_path, tag: str,
             trust: Issued | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=(trust or chain.root).pem().decode())
    context.verify_mode = ssl.CERT_REQUIRED
    if leaf is not None:
        cert_file, key_file = tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key"
        cert_file.write_bytes(leaf.pem() + b"".join(c.pem() for c in reversed(intermediates)))
        key_file.write_bytes(leaf.key_pem())
        context.load_cert_chain(cert_file, key_file)
    return context


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, expected_server_name: str) -> str:
    """Run a real TLS handshake over a socket pair; returns 'ok' or the first side's error."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)
    errors: dict[str, str] = {}

    def serve():
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                tls.sendall(b"ok")
                tls.recv(2)
        except (ssl.SSLError, OSError) as err:
            errors["server"] = str(err)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=expected_server_name) as tls:
            data = tls.recv(2)
            tls.sendall(b"ok")
            if data != b"ok":
                errors.setdefault("client", "connection closed by server")
    except (ssl.SSLError, OSError) as err:
        errors["client"] = str(err)
    thread.join(10)
    return "ok" if not errors else "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))


@pytest.fixture
def mesh(staging, tmp_path):
    chain = chain_from_run(staging)
    other = mesh_identity("ledger-writer", "payments", "cluster.local")
    client_leaf = issue(other, dt.timedelta(hours=24), parent=chain.cas[-1], curve=ec.SECP256R1(),
                        usages=["server auth", "client auth"], dns=[other])
    server = lambda **kw: _context(ssl.PROTOCOL_TLS_SERVER, chain, kw.get("leaf", chain.proxy_leaf), chain.cas, tmp_path, "server")
    client = lambda leaf=client_leaf, trust=None, intermediates=None: _context(
        ssl.PROTOCOL_TLS_CLIENT, chain, leaf, chain.cas if intermediates is None else intermediates, tmp_path, "client", trust)
    return chain, server, client, client_leaf


def test_mutual_tls_between_two_mesh_identities_succeeds(mesh):
    chain, server, client, _ = mesh
    assert handshake(server(), client(), chain.identity) == "ok"


def test_a_client_without_a_certificate_is_refused(mesh):
    chain, server, client, _ = mesh
    result = handshake(server(), client(leaf=None), chain.identity)
    assert result != "ok" and "certificate" in result.lower()


def test_a_client_from_a_foreign_ca_is_refused(mesh):
    chain, server, client, _ = mesh
    foreign_root = issue("foreign root", dt.timedelta(days=365), curve=ec.SECP256R1(), ca=True)
    impostor = issue(chain.identity, dt.timedelta(hours=24), parent=foreign_root, curve=ec.SECP256R1(),
                     usages=["server auth", "client auth"], dns=[chain.identity])
    result = handshake(server(), client(leaf=impostor, intermediates=[]), chain.identity)
    assert result != "ok" and "server:" in result and "certificate verify failed" in result


def test_a_workload_certificate_is_refused_by_a_proxy(mesh, tmp_path):
    """A workload that terminates TLS itself holds a real certificate from the program's PKI: presented to a proxy as a
    client certificate, it must not pass as a mesh identity. The proxy trusts only the mesh anchor; the workload chain
    has its own root, so the handshake fails at the proxy."""
    chain, server, client, _ = mesh
    result = handshake(server(), client(leaf=chain.workload_leaf, intermediates=[]), chain.identity)
    assert result != "ok" and "server:" in result and "certificate verify failed" in result
    # The same certificate is good where it belongs: a client that trusts the workload root reaches postgres.
    postgres = _context(ssl.PROTOCOL_TLS_SERVER, chain, chain.workload_leaf, [], tmp_path, "pg", chain.workload_root)
    postgres_client = _context(ssl.PROTOCOL_TLS_CLIENT, chain, chain.workload_leaf, [], tmp_path, "pgc",
                               chain.workload_root)
    assert handshake(postgres, postgres_client, "postgres.data.svc.cluster.local") == "ok"


def test_an_expired_certificate_is_refused(mesh, tmp_path):
    chain, _, client, _ = mesh
    expired = issue(chain.identity, dt.timedelta(hours=24), parent=chain.cas[-1], curve=ec.SECP256R1(),
                    usages=["server auth", "client auth"], dns=[chain.identity], not_before=NOW - dt.timedelta(days=3))
    server = _context(ssl.PROTOCOL_TLS_SERVER, chain, expired, chain.cas, tmp_path, "expired")
    result = handshake(server, client(), chain.identity)
    assert result != "ok" and "expired" in result


def test_a_peer_with_another_identity_is_refused(mesh):
    chain, server, client, _ = mesh
    # The client expects billing's identity; the server presents a valid certificate for someone else.
    result = handshake(server(), client(), mesh_identity("frontend", "web", "cluster.local"))
    assert result != "ok" and "client:" in result and ("mismatch" in result or "doesn't match" in result)


# --- Linkerd webhooks: the API server calls them with TLS, trusting the caBundle cainjector wrote ------------------

def webhook_chain(run, certificate_name):
    """The webhook CA and one webhook's serving certificate, built from the Certificates the stack registers."""
    ca_spec = run.object("Certificate", "mtls-mesh-webhook-ca", "linkerd")["spec"]
    leaf_spec = run.object("Certificate", certificate_name, "linkerd")["spec"]
    ca = issue(ca_spec["commonName"], _hours(ca_spec["duration"]), curve=CURVES[("ECDSA", ca_spec["privateKey"]["size"])],
               ca=True)
    leaf = issue(leaf_spec["commonName"], _hours(leaf_spec["duration"]), parent=ca,
                 curve=CURVES[("ECDSA", leaf_spec["privateKey"]["size"])], usages=leaf_spec["usages"],
                 dns=leaf_spec["dnsNames"])
    return ca, leaf, leaf_spec


def api_server_calls(ca, leaf, name, tmp_path):
    """The webhook serves `leaf`; the API server (no client certificate) dials `name` trusting only `ca`."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "hook.crt").write_bytes(leaf.pem())
    (tmp_path / "hook.key").write_bytes(leaf.key_pem())
    server.load_cert_chain(tmp_path / "hook.crt", tmp_path / "hook.key")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=ca.pem().decode())
    return handshake(server, client, name)


@pytest.mark.parametrize("certificate", ["linkerd-proxy-injector", "linkerd-sp-validator", "linkerd-policy-validator"])
def test_the_api_server_reaches_each_webhook_over_verified_tls(prod, certificate, tmp_path):
    ca, leaf, spec = webhook_chain(prod, certificate)
    assert api_server_calls(ca, leaf, f"{certificate}.linkerd.svc", tmp_path) == "ok"
    assert leaf.cert.not_valid_after_utc - NOW > dt.timedelta(days=60), "linkerd check wants 60 days of validity"


def test_a_webhook_certificate_for_another_service_is_refused(prod, tmp_path):
    ca, leaf, _ = webhook_chain(prod, "linkerd-proxy-injector")
    assert "certificate verify failed" in api_server_calls(ca, leaf, "linkerd-policy-validator.linkerd.svc", tmp_path)

