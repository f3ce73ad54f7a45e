"""Istio's trust chain (plan/istio/trust.py) as objects and as real certificates.

Objects: under the same anchors the Linkerd path uses, the Istio CA chains to the issuing anchor through a signer in
istio-system (Vault root/sign-intermediate, or dev's `ca:` Issuer on the anchor), istio-csr's Issuer signs from it,
and the roots Bundle carries the rotation phase's anchors; every object validates against the pinned CRDs.

Certificates: built with `cryptography` from those objects (root -> Istio CA -> workload leaves shaped as istio-csr
has them issued: no subject, URI SAN spiffe://<td>/ns/<ns>/sa/<sa> only, client and server auth, 1h), then real
mutual TLS with Python's ssl over 127.0.0.1, each side trusting only the roots Bundle and checking the peer's SPIFFE
ID as an Istio sidecar does. During a rotation, a workload on the old root and one on the new one meet while the
Bundle carries both, and stop meeting once the old root is dropped.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conformance import validate_object
from istio_settings import ROTATION, TRUST_DOMAIN, settings_of
from read.durations import Duration
from read.errors import SettingsError
from read.names import workload_root_common_name
from read.graph import spiffe_id
from plan.cert_manager import anchor_object_name, workload_anchor_object_name
from plan.istio.names import ISTIO_NAMESPACE, ROOT_CERT_CONFIG_MAP, WORKLOAD_CERTIFICATE_LIFETIME
from plan.istio.trust import (ISTIO_CA, istio_anchor_secret, istio_ca_auth_role, istio_ca_certificate,
                              istio_ca_common_name, istio_ca_issuer, istio_ca_policy, istio_roots_bundle, signer_name,
                              signer_rbac, signers, trust_objects)
from plan.trust import anchor_certificate_args
from plan.vault_pki import issuer_signing_path
from test_x509 import Issued, issue

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
PHASES = ("none", "add-next", "issue-from-next", "drop-previous")


def rotation(phase: str) -> dict[str, str]:
    return {**ROTATION, "anchorRotationPhase": phase} if phase != "none" else {"trustAnchor": ROTATION["trustAnchor"]}


# --- the objects --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_object_validates_against_the_pinned_schemas(stack, needs_shared):
    for phase in PHASES:
        objects = trust_objects(settings_of(stack, **rotation(phase)))
        objects.append(istio_anchor_secret("2026-11", "cert", "key"))
        problems = {f"{o['kind']}/{o['metadata']['name']}": validate_object(o) for o in objects}
        assert not any(problems.values()), problems


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
@pytest.mark.parametrize("phase", PHASES)
def test_the_istio_ca_chains_to_the_issuing_anchor_and_the_roots_follow_the_phase(stack, phase):
    settings = settings_of(stack, **rotation(phase))
    pki = settings.pki.rotation
    certificate = istio_ca_certificate(settings)["spec"]
    assert certificate["issuerRef"] == {"name": signer_name(pki.issuing_anchor), "kind": "Issuer", "group": "cert-manager.io"}
    assert set(signers(settings)) == {signer_name(a) for a in pki.anchors}, "a signer for every anchor still in use"
    sources = istio_roots_bundle(settings)["spec"]["sources"]
    # The same anchor ConfigMaps the Linkerd bundle reads: the same mesh roots, never the workload roots.
    assert sources == [{"configMap": {"name": anchor_object_name(a), "key": "ca.crt"}} for a in pki.bundle_anchors]
    assert not {s["configMap"]["name"] for s in sources} & {workload_anchor_object_name(a) for a in pki.anchors}
    assert len(sources) == (2 if phase in ("add-next", "issue-from-next") else 1)


def test_everything_that_can_mint_an_identity_is_namespaced_in_istio_system():
    for stack in ("dev", "staging"):
        objects = trust_objects(settings_of(stack, **ROTATION))
        assert not [o for o in objects if o["kind"] == "ClusterIssuer"]
        for obj in objects:
            if obj["kind"] in ("Issuer", "Certificate", "ServiceAccount", "Role", "RoleBinding"):
                assert obj["metadata"]["namespace"] == ISTIO_NAMESPACE, obj["metadata"]
    issuer = istio_ca_issuer()
    assert issuer["spec"] == {"ca": {"secretName": ISTIO_CA}} and istio_ca_certificate(settings_of("dev"))["spec"]["secretName"] == ISTIO_CA


def test_dev_signs_the_istio_ca_with_the_anchor_held_in_istio_system():
    settings = settings_of("dev", **ROTATION)
    for name, issuer in signers(settings).items():
        anchor = name.removeprefix(signer_name(""))
        assert issuer["spec"] == {"ca": {"secretName": anchor_object_name(anchor)}}
        secret = istio_anchor_secret(anchor, "cert", "key")
        assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == (ISTIO_NAMESPACE, anchor_object_name(anchor))
    assert signer_rbac(settings) == []


def test_with_vault_the_istio_ca_is_signed_by_sign_intermediate_with_its_own_login():
    settings = settings_of("staging", **ROTATION)
    vault = settings.vault
    for anchor in settings.pki.rotation.anchors:
        spec = signers(settings)[signer_name(anchor)]["spec"]["vault"]
        assert spec["path"] == issuer_signing_path(vault, anchor) == f"{vault.intermediate_mount(anchor)}/root/sign-intermediate"
        assert spec["auth"]["kubernetes"]["role"] == istio_ca_auth_role(vault) != vault.identity_auth_role
    assert {(o["kind"], o["metadata"]["namespace"]) for o in signer_rbac(settings)} == {
        ("ServiceAccount", ISTIO_NAMESPACE), ("Role", ISTIO_NAMESPACE), ("RoleBinding", ISTIO_NAMESPACE)}
    # One path per anchor still in use, each pinned (tests/test_istio_openbao.py proves what the pinning refuses).
    policy = istio_ca_policy(settings)
    assert policy.count("path ") == 2 and policy.count("required_parameters") == 2


def test_no_object_writes_istio_ca_root_cert():
    for stack in ("dev", "staging"):
        for obj in trust_objects(settings_of(stack, **ROTATION)):
            assert obj["metadata"]["name"] != ROOT_CERT_CONFIG_MAP, obj


def test_a_workload_certificate_issued_last_expires_before_its_ca():
    """cert-manager renews the Istio CA when renewBefore remains; a 1h leaf signed just before still expires first."""
    spec = istio_ca_certificate(settings_of("prod"))["spec"]
    duration, renew_before = Duration.parse(spec["duration"]).seconds, Duration.parse(spec["renewBefore"]).seconds
    assert duration - renew_before + Duration.parse(WORKLOAD_CERTIFICATE_LIFETIME).seconds <= duration


# --- real certificates and real mutual TLS ---------------------------------------------------------------------------

def _hours(text: str) -> dt.timedelta:
    return dt.timedelta(seconds=Duration.parse(text).seconds)


def istio_leaf(ca: Issued, identity: str, *, not_before: dt.datetime = NOW) -> Issued:
    """A workload certificate as istio-csr has it issued (pkg/server/auth.go: the CSR carries only the caller's URI SAN;
    pkg/certmanager/certmanager.go: client + server auth, at most maxCertificateDuration). Istio's agent makes RSA 2048
    keys by default."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_before + _hours(WORKLOAD_CERTIFICATE_LIFETIME))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   # A subject-less certificate must mark its SAN critical (RFC 5280 4.2.1.6).
                   .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
                   .sign(ca.key, hashes.SHA256()))
    return Issued(certificate, key)


@dataclass
class IstioChain:
    """One anchor's chain: root -> [intermediate] -> Istio CA; what a sidecar presents is leaf + CAs below the root."""

    root: x509.Certificate
    below_root: list[Issued]

    @property
    def ca(self) -> Issued:
        return self.below_root[-1]

    def presented(self, leaf: Issued) -> list[x509.Certificate]:
        return [leaf.cert, *(c.cert for c in reversed(self.below_root))]


def dev_chain(settings, anchor_root: Issued) -> IstioChain:
    """The Istio CA as trust.py describes it (CN, CA, lifetime, key), signed by the anchor its issuerRef names."""
    spec = istio_ca_certificate(settings)["spec"]
    assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"]["size"] == 256
    ca = issue(spec["commonName"], _hours(spec["duration"]), curve=ec.SECP256R1(), parent=anchor_root, ca=spec["isCA"])
    return IstioChain(anchor_root.cert, [ca])


def anchor_root(settings) -> Issued:
    """A dev anchor as plan/trust.py describes it (pulumi-tls self-signed, P-256)."""
    spec = anchor_certificate_args(settings)
    return issue(spec["subject"]["common_name"], dt.timedelta(hours=spec["validity_period_hours"]), curve=ec.SECP256R1(),
                 ca=spec["is_ca_certificate"])


def sidecar(side: int, trusted: list[x509.Certificate], presented: list[x509.Certificate], key, tmp_path, tag: str):
    """A sidecar's TLS side: it trusts exactly the roots it was given (istio-ca-root-cert, which istio-csr writes from
    its pinned roots) and presents its chain. Peers are matched by SPIFFE URI, not host name (checked by the caller)."""
    context = ssl.SSLContext(side)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in trusted))
    (tmp_path / f"{tag}.crt").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in presented))
    (tmp_path / f"{tag}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    context.load_cert_chain(tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key")
    return context


def _uris(peer: dict | None) -> list[str]:
    return [value for kind, value in (peer or {}).get("subjectAltName", ()) if kind == "URI"]


def mutual_tls(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, list[str], list[str]]:
    """A real handshake over TCP on 127.0.0.1: ('ok' or the errors, the URIs the server saw, the URIs the client saw)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    errors: dict[str, str] = {}
    seen: dict[str, list[str]] = {"server": [], "client": []}

    def serve():
        try:
            connection, _ = listener.accept()
            with server.wrap_socket(connection, server_side=True) as tls:
                seen["server"] = _uris(tls.getpeercert())
                tls.sendall(b"ok")
                tls.recv(2)
        except (ssl.SSLError, OSError) as err:
            errors["server"] = str(err)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client.wrap_socket(raw) as tls:
                seen["client"] = _uris(tls.getpeercert())
                if tls.recv(2) != b"ok":
                    errors.setdefault("client", "connection closed by server")
                tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as err:
        errors["client"] = str(err)
    thread.join(10)
    listener.close()
    result = "ok" if not errors else "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
    return result, seen["server"], seen["client"]


FRONTEND = ("frontend", "web")
BILLING = ("billing", "payments")


def meet(server_chain: IstioChain, client_chain: IstioChain, trusted: list[x509.Certificate], tmp_path,
         trust_domain: str = TRUST_DOMAIN) -> tuple[str, list[str], list[str]]:
    """billing's sidecar serves, frontend's dials, both trusting `trusted`."""
    server_leaf = istio_leaf(server_chain.ca, spiffe_id(*BILLING, trust_domain))
    client_leaf = istio_leaf(client_chain.ca, spiffe_id(*FRONTEND, trust_domain))
    server = sidecar(ssl.PROTOCOL_TLS_SERVER, trusted, server_chain.presented(server_leaf), server_leaf.key, tmp_path, "s")
    client = sidecar(ssl.PROTOCOL_TLS_CLIENT, trusted, client_chain.presented(client_leaf), client_leaf.key, tmp_path, "c")
    return mutual_tls(server, client)


def test_istio_workloads_complete_mutual_tls_and_see_each_others_spiffe_id(tmp_path):
    settings = settings_of("dev", trustDomain=TRUST_DOMAIN)
    root = anchor_root(settings)
    chain = dev_chain(settings, root)
    result, server_saw, client_saw = meet(chain, chain, [root.cert], tmp_path)
    assert result == "ok", result
    assert server_saw == [spiffe_id(*FRONTEND, TRUST_DOMAIN)] and client_saw == [spiffe_id(*BILLING, TRUST_DOMAIN)]
    leaf = istio_leaf(chain.ca, spiffe_id(*FRONTEND, TRUST_DOMAIN))
    assert not leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME), "istio-csr refuses a CSR with a CN"
    assert leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc == dt.timedelta(hours=1)


def test_a_workload_from_another_ca_or_root_is_refused(tmp_path):
    """A chain under a foreign root, and one under the program's workload root (what TLS-terminating workloads hold,
    never in the Istio roots), both fail at the sidecar that trusts only the mesh roots."""
    settings = settings_of("dev", trustDomain=TRUST_DOMAIN)
    root = anchor_root(settings)
    chain = dev_chain(settings, root)
    for stranger_root in (issue("foreign root", dt.timedelta(days=1), curve=ec.SECP256R1(), ca=True),
                          issue(f"workload-root.mtls-mesh.{TRUST_DOMAIN}", dt.timedelta(days=1), curve=ec.SECP256R1(), ca=True)):
        stranger = dev_chain(settings, stranger_root)
        result, _, _ = meet(chain, stranger, [root.cert], tmp_path)
        assert result != "ok" and "server:" in result and "certificate verify failed" in result, result


@pytest.mark.parametrize("phase", PHASES)
def test_during_a_rotation_old_and_new_chains_meet_while_the_bundle_carries_both(phase, tmp_path):
    """A root per anchor id of the rotation; the Istio CA issued under the phase's issuing anchor (a workload keeps
    the chain it has until its next hourly renewal); each side trusts exactly the roots the phase's Bundle carries.
    Old and new chains meet only while the Bundle carries both (add-next, issue-from-next)."""
    settings = settings_of("dev", trustDomain=TRUST_DOMAIN, **rotation(phase))
    pki = settings.pki.rotation
    roots = {a: anchor_root(settings) for a in (ROTATION["trustAnchor"], ROTATION["nextTrustAnchor"])}
    bundle = [roots[s["configMap"]["name"].removeprefix(anchor_object_name(""))].cert
              for s in istio_roots_bundle(settings)["spec"]["sources"]]
    issuing = dev_chain(settings, roots[pki.issuing_anchor])
    result, _, _ = meet(issuing, issuing, bundle, tmp_path)
    assert result == "ok", (phase, result)
    old, new = (dev_chain(settings, roots[a]) for a in roots)
    result, _, _ = meet(old, new, bundle, tmp_path)
    if phase in ("add-next", "issue-from-next"):
        assert result == "ok", (phase, result)
    else:
        # Before add-next nobody trusts the next root yet; after drop-previous nobody trusts the old one.
        assert result != "ok" and "certificate verify failed" in result, (phase, result)


def test_every_trust_domain_the_settings_accept_gives_an_istio_ca_name_x509_allows():
    """The settings refuse a trust domain that makes a common name longer than 64 characters (read/settings.py
    `_check_common_names`); the Istio CA's name must be within that for the longest domain they accept."""
    longest = 64 - len(workload_root_common_name(""))
    domain = lambda n: "a" * 30 + "." + "b" * (n - 31)
    accepted = settings_of("dev", trustDomain=domain(longest))
    assert len(istio_ca_common_name(accepted.trust_domain)) <= 64
    with pytest.raises(SettingsError):
        settings_of("dev", trustDomain=domain(longest + 1))
