"""The Istio CA's Vault login, decided by a real Vault API (OpenBao) and real TLS, not by our own code.

The program's Vault declarations for staging and prod (the same roots and intermediates the Linkerd path uses) are
applied to OpenBao through the program itself (tests/openbao.py); the Istio login of plan/istio/trust.py (policy and
Kubernetes auth role, as components/vault.py registers the others) is applied beside them. Then, with the login
cert-manager gets for istio-system's signer Issuer: cert-manager's exact request for the Istio CA is signed, and every
other CN, SAN, TTL or CA shape is refused (403); the login reaches no other path; no other login obtains the Istio CA;
no account of another namespace logs in. Finally the Vault-signed Istio CA issues workload leaves shaped as istio-csr
has them issued, which complete mutual TLS against the exported roots, across a rotation too.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from istio_settings import ROTATION, settings_of
from openbao import _kubernetes_role, cert_manager_sign, cert_manager_sign_parameters
from read.durations import Duration
from read.graph import identity_issuer_name, spiffe_id
from plan.istio.names import ISTIO_CSR, ISTIO_NAMESPACE, ISTIOD
from plan.istio.trust import (istio_ca_auth_role, istio_ca_certificate, istio_ca_login_args, istio_ca_policy,
                              signer_name, signers)
from test_istio_trust import BILLING, FRONTEND, IstioChain, meet
from test_vault_least_privilege import csr, deploy, new_key, pem
from test_x509 import Issued

OTHER_NAMESPACE, OTHER_ACCOUNT = "payments", "ledger-writer"


class IstioDeployed:
    """One stack's Vault applied to OpenBao (tests/test_vault_least_privilege.deploy) plus the Istio login."""

    def __init__(self, stack: str, **changes):
        self.deployed, (self.server, self.reviews) = deploy(stack, **changes)
        self.settings = settings_of(stack, **changes)
        self.namespace = self.deployed.vault_namespace
        vault = self.settings.vault
        role = istio_ca_auth_role(vault)
        self.server.write(f"sys/policies/acl/{role}", {"policy": istio_ca_policy(self.settings)}, method="PUT",
                          namespace=self.namespace)
        path, body = _kubernetes_role({**istio_ca_login_args(self.settings), "backend": vault.kubernetes_auth_path})
        self.server.write(path, body, namespace=self.namespace)
        self.spec = istio_ca_certificate(self.settings)["spec"]
        self.duration = datetime.timedelta(seconds=Duration.parse(self.spec["duration"]).seconds)

    def close(self):
        self.server.__exit__(None, None, None)
        self.reviews.__exit__(None, None, None)

    def signer(self, anchor: str | None = None) -> dict:
        return signers(self.settings)[signer_name(anchor or self.settings.pki.rotation.issuing_anchor)]

    def token(self, issuer: dict | None = None) -> str:
        status, body = self.deployed.login(issuer or self.signer())
        assert status == 200, body
        return body["auth"]["client_token"]

    def request(self) -> dict:
        """What cert-manager v1.21.1 POSTs for the Istio CA Certificate: its CN, no SANs, its duration."""
        return cert_manager_sign_parameters(csr(new_key(), self.spec["commonName"], ca=True), self.duration)

    def post(self, path: str, body: dict, token: str) -> tuple[int, dict]:
        return self.server.request("POST", path.strip("/"), body, token=token, namespace=self.namespace)

    def sign_ca(self, anchor: str | None = None) -> IstioChain:
        """The Istio CA as cert-manager gets it signed, with the chain Vault returns (intermediate, root)."""
        issuer = self.signer(anchor)
        key = new_key()
        status, body = cert_manager_sign(self.server, self.token(issuer), issuer["spec"]["vault"]["path"],
                                         csr(key, self.spec["commonName"], ca=True), self.duration,
                                         namespace=self.namespace)
        assert status == 200, body
        chain = [pem(c) for c in body["data"]["ca_chain"]]
        (root,) = [c for c in chain if c.subject == c.issuer]
        intermediates = [c for c in chain if c.subject != c.issuer and c != pem(body["data"]["certificate"])]
        return IstioChain(root, [*(Issued(c, None) for c in intermediates), Issued(pem(body["data"]["certificate"]), key)])

    def roots(self, anchors=None) -> list[x509.Certificate]:
        exported = self.deployed.run.exports["trustAnchors"]
        return [pem(exported[a]) for a in (anchors or exported)]


@pytest.fixture(scope="module", params=["staging", "prod"])
def istio(request):
    deployed = IstioDeployed(request.param)
    yield deployed
    deployed.close()


@pytest.fixture(scope="module")
def rotating():
    deployed = IstioDeployed("staging", **ROTATION)
    yield deployed
    deployed.close()


def test_the_istio_login_signs_cert_managers_request_for_the_istio_ca(istio):
    issuer = istio.signer()
    status, body = istio.post(issuer["spec"]["vault"]["path"], istio.request(), istio.token())
    assert status == 200, body
    issued = pem(body["data"]["certificate"])
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == istio.spec["commonName"]
    constraints = issued.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0, "a CA for leaves only"
    with pytest.raises(x509.ExtensionNotFound):
        issued.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert issued.not_valid_after_utc - issued.not_valid_before_utc <= istio.duration + datetime.timedelta(seconds=30)
    # Under the same root the Linkerd path exports.
    assert pem(body["data"]["ca_chain"][-1]) in istio.roots()


def istio_attempts(istio: IstioDeployed) -> dict[str, dict]:
    """Each one change away from cert-manager's request: another name, a SAN, another lifetime or CA shape."""
    td = istio.settings.trust_domain
    base = istio.request()
    spiffe = spiffe_id(OTHER_ACCOUNT, OTHER_NAMESPACE, td)
    return {
        "the Linkerd identity issuer's CN (another CA)": {**base, "common_name": identity_issuer_name(td),
                                                          "alt_names": identity_issuer_name(td)},
        "another CN": {**base, "common_name": f"istio-ca.{OTHER_NAMESPACE}.svc"},
        "a SPIFFE URI SAN": {**base, "uri_sans": spiffe},
        "a DNS SAN (istio-csr's service)": {**base, "alt_names": f"{ISTIO_CSR}.{ISTIO_NAMESPACE}.svc"},
        "an IP SAN": {**base, "ip_sans": "10.0.0.1"},
        "a longer TTL": {**base, "ttl": "87600h"},
        "a TTL in seconds": {**base, "ttl": int(istio.duration.total_seconds())},
        "no TTL (the mount's default)": {k: v for k, v in base.items() if k != "ttl"},
        "not_after": {**{k: v for k, v in base.items() if k != "ttl"}, "not_after": "2099-01-01T00:00:00Z"},
        "max_path_length": {**base, "max_path_length": 5},
        "use_csr_values with a URI SAN": {**base, "use_csr_values": True,
                                          "csr": csr(new_key(), istio.spec["commonName"], uris=[spiffe], ca=True)},
        "other_sans": {**base, "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:admin@example.com"},
        "permitted_dns_domains": {**base, "permitted_dns_domains": "example.com"},
        "subject fields": {**base, "organization": "mtls-mesh"},
    }


def test_the_istio_login_signs_nothing_else(istio):
    token, path = istio.token(), istio.signer()["spec"]["vault"]["path"]
    answers = {case: istio.post(path, body, token) for case, body in istio_attempts(istio).items()}
    signed = {case: pem(body["data"]["certificate"]).subject.rfc4514_string()
              for case, (status, body) in answers.items() if status == 200}
    assert not signed, f"the Istio login got signed: {signed}"
    assert {case: status for case, (status, _) in answers.items()} == dict.fromkeys(answers, 403), answers


def test_the_istio_login_reaches_no_other_path(istio):
    """Not a namespace's workload role, not the workload root, not the root itself, not the intermediate's leaf paths."""
    vault, anchor = istio.settings.vault, istio.settings.pki.rotation.issuing_anchor
    token, body = istio.token(), istio.request()
    (namespace,) = [ns for ns in istio.settings.graph.certificate_services][:1]
    paths = [f"{vault.workload_mount(anchor)}/sign/{vault.namespace_workload_role(namespace)}",
             f"{vault.workload_mount(anchor)}/root/sign-intermediate",
             f"{vault.root_mount(anchor)}/root/sign-intermediate",
             f"{vault.intermediate_mount(anchor)}/sign-verbatim",
             f"{vault.intermediate_mount(anchor)}/issue/{vault.namespace_workload_role(namespace)}"]
    answers = {path: istio.post(path, body, token)[0] for path in paths}
    assert answers == dict.fromkeys(paths, 403), answers


def test_no_other_login_obtains_the_istio_ca(istio):
    """The Linkerd identity login signs on the same path, pinned to its own CA; a namespace's login not at all."""
    path, body = istio.signer()["spec"]["vault"]["path"], istio.request()
    others = [o for (ns, name), o in istio.deployed.issuers.items() if ns != ISTIO_NAMESPACE]
    assert {o["metadata"]["namespace"] for o in others} >= {"linkerd", "data"}
    for other in others:
        status, answer = istio.post(path, body, istio.token(other))
        assert status == 403, (other["metadata"], answer)


def test_no_account_of_another_namespace_or_istio_system_logs_in(istio):
    issuer = istio.signer()
    account = issuer["spec"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]["name"]
    from openbao import cert_manager_token_audiences
    impostors = [("linkerd", account), ("data", account), (OTHER_NAMESPACE, account),
                 (ISTIO_NAMESPACE, ISTIOD), (ISTIO_NAMESPACE, ISTIO_CSR)]
    for namespace, name in impostors:
        jwt = istio.reviews.issue(namespace, name, cert_manager_token_audiences(issuer))
        status, body = istio.deployed.login(issuer, jwt)
        assert status == 403 and not (body or {}).get("auth"), (namespace, name, body)
    # The check can fail: the right account of istio-system logs in.
    assert istio.deployed.login(issuer)[0] == 200


# --- what the sidecars verify: real mutual TLS under the Vault-signed Istio CA ---------------------------------------

def test_workloads_under_the_vault_signed_istio_ca_complete_mutual_tls(istio, tmp_path):
    chain = istio.sign_ca()
    td = istio.settings.trust_domain
    result, server_saw, client_saw = meet(chain, chain, istio.roots(), tmp_path, td)
    assert result == "ok", result
    assert server_saw == [spiffe_id(*FRONTEND, td)] and client_saw == [spiffe_id(*BILLING, td)]


def test_during_a_rotation_workloads_under_both_anchors_meet_while_both_roots_are_trusted(rotating, tmp_path):
    anchors = sorted(rotating.deployed.run.exports["trustAnchors"])
    assert anchors == [ROTATION["trustAnchor"], ROTATION["nextTrustAnchor"]]
    old, new = (rotating.sign_ca(anchor) for anchor in anchors)
    assert old.root != new.root
    td = rotating.settings.trust_domain
    assert meet(old, new, rotating.roots(anchors), tmp_path, td)[0] == "ok"
    result = meet(old, new, rotating.roots([anchors[1]]), tmp_path, td)[0]
    assert result != "ok" and "certificate verify failed" in result, result
