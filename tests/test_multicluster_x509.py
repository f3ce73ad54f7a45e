"""One trust root per environment, an issuer per cluster (docs/multicluster.md): a proxy certificate issued in one
cluster is accepted by a proxy of another, in a real mutual-TLS handshake over TCP on 127.0.0.1, because both
clusters' chains end at the one environment root each proxy trusts; a certificate from an issuer under another root
is refused. Cluster one's chain is the one the staging stack registers (root -> Vault intermediate -> Linkerd identity
issuer, tests/test_x509.py); cluster two gets its own intermediate and issuer, with the same profiles, under that root."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plan.linkerd.multicluster import identity
from test_x509 import Issued, chain_from_run, issue

WEST_TD, EAST_TD = "west.example", "east.example"
LEAF = dt.timedelta(hours=24)


def _lifetime(cert: x509.Certificate) -> dt.timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def cluster_chain(root: Issued, template: list[Issued], trust_domain: str) -> list[Issued]:
    """An intermediate and an identity issuer for one cluster under `root`, shaped like `template` (the staging
    stack's Vault intermediate and identity issuer): same lifetimes and path lengths, the cluster's own names."""
    intermediate_template, issuer_template = template
    path_length = intermediate_template.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    intermediate = issue(f"mtls-mesh intermediate {trust_domain}", _lifetime(intermediate_template.cert),
                         curve=ec.SECP256R1(), parent=root, ca=True, path_length=path_length)
    name = f"identity.linkerd.{trust_domain}"
    issuer = issue(name, _lifetime(issuer_template.cert), curve=ec.SECP256R1(), parent=intermediate, ca=True, dns=[name])
    return [intermediate, issuer]


def proxy_leaf(cas: list[Issued], workload_identity: str) -> Issued:
    """What linkerd-identity issues a proxy: a 24h P-256 leaf whose only name is the workload's identity."""
    return issue(workload_identity, LEAF, curve=ec.SECP256R1(), parent=cas[-1], usages=["server auth", "client auth"],
                 dns=[workload_identity])


def context(side: int, leaf: Issued, cas: list[Issued], trust: Issued, tmp_path, tag: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # what linkerd2-proxy speaks
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=trust.pem().decode())
    cert_file, key_file = tmp_path / f"{tag}.crt", tmp_path / f"{tag}.key"
    cert_file.write_bytes(leaf.pem() + b"".join(c.pem() for c in reversed(cas)))
    key_file.write_bytes(leaf.key_pem())
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def tcp_handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_name: str) -> tuple[str, str | None]:
    """A real handshake over TCP on 127.0.0.1 (a free port): ('ok', the client identity the server saw) or the
    errors of each side."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    seen: dict[str, str] = {}

    def serve():
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                names = tls.getpeercert().get("subjectAltName", ())
                seen["client"] = next(value for kind, value in names if kind == "DNS")
                tls.sendall(b"ok")
                tls.recv(2)
        except (ssl.SSLError, OSError) as err:
            seen["server error"] = str(err)
        finally:
            listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                if tls.recv(2) != b"ok":
                    seen["client error"] = "closed by the server"
                tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as err:
        seen["client error"] = str(err)
    thread.join(10)
    errors = "; ".join(f"{k}: {v}" for k, v in sorted(seen.items()) if k.endswith("error"))
    return ("ok", seen.get("client")) if not errors else (errors, seen.get("client"))


@pytest.fixture
def environment(staging):
    """The staging stack's chain as cluster west's, and a second cluster, east, under the same root."""
    chain = chain_from_run(staging)
    assert len(chain.cas) == 2, "root -> Vault intermediate -> identity issuer"
    west = cluster_chain(chain.root, chain.cas, WEST_TD)
    east = cluster_chain(chain.root, chain.cas, EAST_TD)
    return chain.root, west, east


def test_each_cluster_has_its_own_issuer_under_the_one_root(environment):
    root, west, east = environment
    assert west[-1].cert.public_key() != east[-1].cert.public_key()
    for cas in (west, east):
        assert cas[0].cert.issuer == root.cert.subject
        assert cas[-1].cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.startswith("identity.linkerd.")


def test_a_proxy_of_one_cluster_accepts_a_proxy_certificate_from_another(environment, tmp_path):
    root, west, east = environment
    caller = identity("frontend", "web", WEST_TD)
    callee = identity("ledger", "payments", EAST_TD)
    server = context(ssl.PROTOCOL_TLS_SERVER, proxy_leaf(east, callee), east, root, tmp_path, "east")
    client = context(ssl.PROTOCOL_TLS_CLIENT, proxy_leaf(west, caller), west, root, tmp_path, "west")
    # The callee's policy then matches the caller's identity, with the caller's own trust domain.
    assert tcp_handshake(server, client, callee) == ("ok", caller)
    # And the other way round.
    server = context(ssl.PROTOCOL_TLS_SERVER, proxy_leaf(west, caller), west, root, tmp_path, "west2")
    client = context(ssl.PROTOCOL_TLS_CLIENT, proxy_leaf(east, callee), east, root, tmp_path, "east2")
    assert tcp_handshake(server, client, caller) == ("ok", callee)


def test_a_certificate_from_an_issuer_under_another_root_is_refused(environment, tmp_path):
    root, west, east = environment
    foreign_root = issue("another environment's root", dt.timedelta(days=3650), curve=ec.SECP256R1(), ca=True)
    foreign = cluster_chain(foreign_root, west, EAST_TD)
    caller = identity("frontend", "web", EAST_TD)
    callee = identity("ledger", "payments", WEST_TD)
    server = context(ssl.PROTOCOL_TLS_SERVER, proxy_leaf(west, callee), west, root, tmp_path, "west")
    impostor = context(ssl.PROTOCOL_TLS_CLIENT, proxy_leaf(foreign, caller), foreign, root, tmp_path, "foreign")
    result, seen = tcp_handshake(server, impostor, callee)
    assert result != "ok" and "server error" in result and "certificate verify failed" in result and seen is None
    # The same caller certificate is fine where its root is trusted: the refusal is about the root, not the shape.
    trusting = context(ssl.PROTOCOL_TLS_SERVER, proxy_leaf(foreign, callee), foreign, foreign_root, tmp_path, "f2")
    friend = context(ssl.PROTOCOL_TLS_CLIENT, proxy_leaf(foreign, caller), foreign, foreign_root, tmp_path, "f3")
    assert tcp_handshake(trusting, friend, callee) == ("ok", caller)


def test_a_server_from_another_root_is_refused_by_the_caller(environment, tmp_path):
    root, west, east = environment
    foreign_root = issue("another environment's root", dt.timedelta(days=3650), curve=ec.SECP256R1(), ca=True)
    foreign = cluster_chain(foreign_root, east, EAST_TD)
    callee = identity("ledger", "payments", EAST_TD)
    server = context(ssl.PROTOCOL_TLS_SERVER, proxy_leaf(foreign, callee), foreign, foreign_root, tmp_path, "fs")
    client = context(ssl.PROTOCOL_TLS_CLIENT, proxy_leaf(west, identity("frontend", "web", WEST_TD)), west, root,
                     tmp_path, "w")
    result, _ = tcp_handshake(server, client, callee)
    assert result != "ok" and "client error" in result and "certificate verify failed" in result
