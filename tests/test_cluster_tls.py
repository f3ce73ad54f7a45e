"""A proxy certificate issued in one cluster is accepted by a proxy of another, in a real mutual-TLS handshake (Python
ssl, TLS 1.3, over TCP on 127.0.0.1), through every phase of an anchor rotation.

The chains are the real ones: both cluster stacks (east owns the root, west signs under it) run as the program at
add-next, so both anchors exist, and are applied to OpenBao (tests/test_openbao_clusters.py); each cluster's identity
login then has its identity issuer signed under each anchor exactly as cert-manager asks. Proxy leaves are issued from
those issuers as linkerd-identity issues them (a 24h P-256 leaf naming the workload's identity). A proxy in a rotation
state trusts that state's bundle and holds a leaf from its cluster's issuer under that state's issuing anchor.

Checked: under either anchor, east's and west's proxies accept each other; for every pair of states the cross-cluster
guard (plan/rotation.py) lets coexist, the handshake succeeds both ways; a pair it keeps apart because a bundle lacks
the other's issuing anchor fails with "certificate verify failed"; a leaf under another environment's root is refused.
"""

from __future__ import annotations

import datetime as dt
import itertools
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from openbao import cert_manager_sign
from plan.linkerd.multicluster import identity
from plan.rotation import cluster_rotation_problem, rotation_status
from read.settings import AnchorRotation
from test_multicluster_x509 import cluster_chain, proxy_leaf, tcp_handshake
from test_openbao_clusters import EAST, WEST, apply_environment, environment_stacks, token  # noqa: F401 (fixture)
from test_x509 import Issued, issue

A, B = "dev-1", "dev-2"
STATES = {
    "none(A)": AnchorRotation("none", A, ""),
    "add-next": AnchorRotation("add-next", A, B),
    "issue-from-next": AnchorRotation("issue-from-next", A, B),
    "drop-previous": AnchorRotation("drop-previous", A, B),
    "none(B)": AnchorRotation("none", B, ""),
}
TRUST_DOMAIN = "cluster.local"  # every cluster's (settings: peers agree on trustDomain)
CALLER, CALLEE = identity("frontend", "web", TRUST_DOMAIN), identity("ledger", "payments", TRUST_DOMAIN)


def signed_issuer(server, namespace, applied, anchor: str) -> tuple[Issued, Issued, Issued]:
    """(root, intermediate, identity issuer with its key) of one cluster under one anchor, as Vault signs the identity
    issuer Certificate's request through that anchor's Issuer."""
    issuer = applied.identity_issuers[f"mtls-mesh-identity-{anchor}"]
    spec = applied.identity_certificate["spec"]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, spec["commonName"])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in spec["dnsNames"]]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    status, body = cert_manager_sign(server, token(server, namespace, applied), issuer["spec"]["vault"]["path"], csr,
                                     dt.timedelta(hours=48), namespace=namespace)
    assert status == 200, body
    pem = lambda text: x509.load_pem_x509_certificate(text.encode())  # noqa: E731
    data = body["data"]
    return (Issued(pem(data["ca_chain"][-1]), None), Issued(pem(data["issuing_ca"]), None),
            Issued(pem(data["certificate"]), key))


@pytest.fixture(scope="module")
def chains(environment_stacks):  # noqa: F811
    """cluster -> anchor -> (root, intermediate, issuer)."""
    for server, namespace, east, west in apply_environment(*environment_stacks, nextTrustAnchor=B,
                                                           anchorRotationPhase="add-next"):
        yield {cluster.cluster: {anchor: signed_issuer(server, namespace, cluster, anchor) for anchor in (A, B)}
               for cluster in (east, west)}


def proxy_context(side: int, chains, cluster: str, state: AnchorRotation, workload: str, tmp_path,
                  tag: str) -> ssl.SSLContext:
    """A proxy of `cluster` restarted under `state`: its bundle, and a leaf from its issuer under the issuing anchor."""
    root, intermediate, issuer = chains[cluster][state.issuing_anchor]
    leaf = proxy_leaf([intermediate, issuer], workload)
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # what linkerd2-proxy speaks
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata="".join(chains[cluster][a][0].pem().decode() for a in state.bundle_anchors))
    cert_file, key_file = tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key"
    cert_file.write_bytes(leaf.pem() + issuer.pem() + intermediate.pem())
    key_file.write_bytes(leaf.key_pem())
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def handshake(chains, server_cluster, server_state, client_cluster, client_state, tmp_path, tag):
    server = proxy_context(ssl.PROTOCOL_TLS_SERVER, chains, server_cluster, server_state, CALLEE, tmp_path, f"s{tag}")
    client = proxy_context(ssl.PROTOCOL_TLS_CLIENT, chains, client_cluster, client_state, CALLER, tmp_path, f"c{tag}")
    return tcp_handshake(server, client, CALLEE)


def test_both_clusters_chain_to_one_root_per_anchor_through_their_own_issuers(chains):
    for anchor in (A, B):
        (east_root, east_int, east_issuer), (west_root, west_int, west_issuer) = (chains[EAST][anchor],
                                                                                    chains[WEST][anchor])
        assert east_root.cert == west_root.cert
        assert east_int.cert.public_key() != west_int.cert.public_key()
        east_issuer.cert.verify_directly_issued_by(east_int.cert)
        west_issuer.cert.verify_directly_issued_by(west_int.cert)
    assert chains[EAST][A][0].cert != chains[EAST][B][0].cert


@pytest.mark.parametrize("anchor", [A, B])
def test_a_proxy_of_one_cluster_accepts_a_proxy_certificate_from_the_other(chains, tmp_path, anchor):
    state = STATES["none(A)"] if anchor == A else STATES["none(B)"]
    assert handshake(chains, EAST, state, WEST, state, tmp_path, "ew") == ("ok", CALLER)
    assert handshake(chains, WEST, state, EAST, state, tmp_path, "we") == ("ok", CALLER)


def test_every_pair_of_rotation_states_the_guard_lets_coexist_completes_mtls(chains, tmp_path):
    outcomes = {}
    for (east_name, east_state), (west_name, west_state) in itertools.product(STATES.items(), repeat=2):
        allowed = cluster_rotation_problem(west_state, {"east": rotation_status(east_state)}, "") is None
        trusted = (east_state.issuing_anchor in west_state.bundle_anchors
                   and west_state.issuing_anchor in east_state.bundle_anchors)
        both_ways = [handshake(chains, EAST, east_state, WEST, west_state, tmp_path, f"{east_name}-{west_name}-1"),
                     handshake(chains, WEST, west_state, EAST, east_state, tmp_path, f"{east_name}-{west_name}-2")]
        outcomes[(east_name, west_name)] = both_ways
        if allowed or trusted:
            assert both_ways == [("ok", CALLER), ("ok", CALLER)], (east_name, west_name, both_ways)
        else:
            assert all(r != "ok" and "certificate verify failed" in r for r, _ in both_ways), (east_name, west_name)
    # The guard keeps apart some pairs whose handshake indeed fails (none(A) with issue-from-next, and more).
    assert any(r != "ok" for both in outcomes.values() for r, _ in both)


def test_a_proxy_certificate_under_another_environments_root_is_refused(chains, tmp_path):
    foreign_root = issue("another environment's root", dt.timedelta(days=3650), curve=ec.SECP256R1(), ca=True)
    foreign = cluster_chain(foreign_root, list(chains[WEST][A][1:]), TRUST_DOMAIN)
    server = proxy_context(ssl.PROTOCOL_TLS_SERVER, chains, EAST, STATES["add-next"], CALLEE, tmp_path, "east")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(cadata=chains[EAST][A][0].pem().decode())
    leaf = proxy_leaf(foreign, CALLER)
    (tmp_path / "f.crt").write_bytes(leaf.pem() + b"".join(c.pem() for c in reversed(foreign)))
    (tmp_path / "f.key").write_bytes(leaf.key_pem())
    client.load_cert_chain(tmp_path / "f.crt", tmp_path / "f.key")
    result, seen = tcp_handshake(server, client, CALLEE)
    assert result != "ok" and "server error" in result and "certificate verify failed" in result and seen is None
