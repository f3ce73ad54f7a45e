"""The trust chain as registered: Vault PKI, self-signed anchors, issuers, the identity issuer, the bundle, workload
certificates; their providers, ordering, protection, and secrecy; and every rotation phase."""

from __future__ import annotations

import json
import re

import pytest

from harness import is_secret_envelope, plain, run_program

ROOT_CERT = "vault:pkiSecret/secretBackendRootCert:SecretBackendRootCert"
SIGN_INTERMEDIATE = "vault:pkiSecret/secretBackendRootSignIntermediate:SecretBackendRootSignIntermediate"
CSR = "vault:pkiSecret/secretBackendIntermediateCertRequest:SecretBackendIntermediateCertRequest"
SET_SIGNED = "vault:pkiSecret/secretBackendIntermediateSetSigned:SecretBackendIntermediateSetSigned"
MOUNT = "vault:index/mount:Mount"
AUTH_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
RELEASE = "kubernetes:helm.sh/v3:Release"


def test_identity_issuer_certificate_is_exactly_what_linkerd_requires(each_stack):
    spec = each_stack.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]
    assert spec == {
        "secretName": "linkerd-identity-issuer",
        "duration": "48h0m0s", "renewBefore": "25h0m0s",
        "issuerRef": {"name": f"mtls-mesh-identity-{each_stack.config['mtls-mesh:trustAnchor']}",
                      "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "commonName": "identity.linkerd.cluster.local", "dnsNames": ["identity.linkerd.cluster.local"],
        "isCA": True,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["cert sign", "crl sign", "server auth", "client auth"],
    }


def test_trust_bundle_targets_the_control_plane_configmap(each_stack):
    spec = each_stack.object("Bundle", "linkerd-identity-trust-roots")["spec"]
    assert spec["target"] == {"configMap": {"key": "ca-bundle.crt"},
                              "namespaceSelector": {"matchLabels": {"linkerd.io/is-control-plane": "true"}}}


def test_dev_signs_with_a_p256_self_signed_anchor(dev):
    (key,) = dev.of_type("tls:index/privateKey:PrivateKey")
    assert key.inputs["algorithm"] == "ECDSA" and key.inputs["ecdsaCurve"] == "P256"
    (cert,) = dev.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert cert.inputs["isCaCertificate"] is True and cert.inputs["validityPeriodHours"] == 8760
    assert sorted(cert.inputs["allowedUses"]) == ["cert_signing", "crl_signing"]
    # An anchor changes only through the rotation runbook, never by pulumi-tls's early renewal.
    assert not cert.inputs.get("earlyRenewalHours")
    assert dev.object("ClusterIssuer", "mtls-mesh-identity-dev-1")["spec"] == {"ca": {"secretName": "mtls-mesh-anchor-dev-1"}}
    assert not dev.of_type(MOUNT), "dev needs no Vault"


def test_vault_keys_are_ec_p256_and_generated_inside_vault(staging):
    for resource in staging.of_type(ROOT_CERT) + staging.of_type(CSR):
        assert resource.inputs["type"] == "internal", "the private key must never leave Vault"
        assert (resource.inputs["keyType"], resource.inputs["keyBits"]) == ("ec", 256)


def test_intermediate_can_sign_the_identity_issuer_and_carries_the_full_chain(staging):
    (signed,) = staging.of_type(SIGN_INTERMEDIATE)
    assert signed.inputs["maxPathLength"] >= 1
    (set_signed,) = staging.of_type(SET_SIGNED)
    from cryptography import x509
    chain = x509.load_pem_x509_certificates(set_signed.inputs["certificate"].encode())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=MOCK-pki-int-2026-11-signed", "CN=MOCK-pki-root-2026-11"]


def test_identity_issuer_is_signed_by_sign_intermediate_never_by_a_leaf_role(staging):
    vault_spec = staging.object("ClusterIssuer", "mtls-mesh-identity-2026-11")["spec"]["vault"]
    assert vault_spec["path"] == "pki-mesh-int-2026-11/root/sign-intermediate"
    assert vault_spec["auth"]["kubernetes"]["serviceAccountRef"] == {
        "name": "mtls-mesh-vault-issuer", "audiences": ["vault://mtls-mesh"]}
    workload = staging.object("ClusterIssuer", "mtls-mesh-workload-2026-11")["spec"]["vault"]
    assert workload["path"] == "pki-mesh-int-2026-11/sign/mesh-workload"


def test_vault_policy_allows_exactly_the_two_signing_paths(staging):
    (policy,) = staging.of_type("vault:index/policy:Policy")
    stanzas = re.findall(r'path "([^"]+)" \{\s*capabilities = (\[[^\]]*\])\s*\}', policy.inputs["policy"])
    assert stanzas == [("pki-mesh-int-2026-11/root/sign-intermediate", '["create", "update"]'),
                       ("pki-mesh-int-2026-11/sign/mesh-workload", '["create", "update"]')]


def test_every_mount_publishes_its_ca_and_crl_urls(prod):
    urls = {r.name: plain(r.inputs) for r in prod.of_type("vault:pkiSecret/secretBackendConfigUrls:SecretBackendConfigUrls")}
    base = "https://vault.example.internal:8200/v1/platform"
    assert urls["pki-root-2026-11-urls"]["issuingCertificates"] == [f"{base}/pki-mesh-root-2026-11/ca"]
    assert urls["pki-root-2026-11-urls"]["crlDistributionPoints"] == [f"{base}/pki-mesh-root-2026-11/crl"]
    assert urls["pki-int-2026-11-urls"]["issuingCertificates"] == [f"{base}/pki-mesh-int-2026-11/ca"]
    crls = prod.of_type("vault:pkiSecret/secretBackendCrlConfig:SecretBackendCrlConfig")
    assert len(crls) == 2 and all(c.inputs["autoRebuild"] for c in crls)


def test_no_input_anywhere_is_a_stringified_output(each_stack):
    text = json.dumps([r.inputs for r in each_stack.registrations])
    assert "Calling __str__ on an Output" not in text


def test_kubernetes_auth_role_is_bound_narrowly_with_short_tokens(staging):
    (role,) = staging.of_type(AUTH_ROLE)
    assert role.inputs["boundServiceAccountNames"] == ["mtls-mesh-vault-issuer"]
    assert role.inputs["boundServiceAccountNamespaces"] == ["cert-manager"]
    assert role.inputs["audience"] == "vault://mtls-mesh"
    assert role.inputs["tokenTtl"] == 600
    (token_role,) = staging.objects("Role")
    assert token_role["rules"] == [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                                    "resourceNames": ["mtls-mesh-vault-issuer"], "verbs": ["create"]}]
    (binding,) = staging.objects("RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cert-manager", "namespace": "cert-manager"}]


def test_workload_role_issues_p256_server_and_client_certificates_for_mesh_names(staging):
    (role,) = staging.of_type("vault:pkiSecret/secretBackendRole:SecretBackendRole")
    assert (role.inputs["keyType"], role.inputs["keyBits"]) == ("ec", 256)
    assert role.inputs["serverFlag"] and role.inputs["clientFlag"]
    assert role.inputs["allowedUriSans"] == ["spiffe://cluster.local/ns/*/sa/*"]
    assert "data.svc.cluster.local" in role.inputs["allowedDomains"] and role.inputs["allowSubdomains"]
    assert role.inputs["ttl"] == role.inputs["maxTtl"] == str(2160 * 3600)
    assert not role.inputs.get("noStore"), "90-day certificates must stay revocable by serial"
    assert role.inputs["keyUsages"] == ["DigitalSignature", "KeyAgreement"], "no KeyEncipherment for EC keys"


def test_vault_resources_use_the_explicit_vault_provider(staging):
    (provider,) = staging.of_type("pulumi:providers:vault")
    assert provider.inputs["address"] == "https://vault.staging.example.internal:8200"
    vault_resources = [r for r in staging.registrations if r.type.startswith("vault:") and r.custom]
    assert vault_resources
    for resource in vault_resources:
        assert resource.provider.startswith(provider.urn), f"{resource.name} uses {resource.provider}"


@pytest.mark.parametrize("stack,protected", [("prod", True), ("staging", False), ("dev", False)])
def test_roots_and_intermediates_are_protected_where_settings_say_so(request, stack, protected):
    run = request.getfixturevalue(stack)
    pki = run.of_type(MOUNT) + run.of_type(ROOT_CERT) + run.of_type(SET_SIGNED) + run.of_type(SIGN_INTERMEDIATE) \
        + run.of_type("tls:index/selfSignedCert:SelfSignedCert") + run.of_type("tls:index/privateKey:PrivateKey")
    assert pki and all(r.protect == protected for r in pki), [(r.name, r.protect) for r in pki]


def _depends_on(run, resource_name: str, dependency_name: str) -> bool:
    return run.named(dependency_name).urn in run.named(resource_name).dependencies


def test_certificates_wait_for_issuers_and_issuers_wait_for_the_install(each_stack):
    anchor = each_stack.config["mtls-mesh:trustAnchor"]
    assert _depends_on(each_stack, "certs-identity-issuer", f"certs-mtls-mesh-identity-{anchor}")
    assert _depends_on(each_stack, "certs-identity-issuer", "mesh-linkerd")
    assert _depends_on(each_stack, f"certs-mtls-mesh-identity-{anchor}", "certs-cert-manager")
    assert _depends_on(each_stack, f"certs-mtls-mesh-identity-{anchor}", f"certs-anchor-{anchor}")
    assert _depends_on(each_stack, "certs-trust-roots", "certs-trust-manager")
    assert _depends_on(each_stack, "certs-trust-manager", "certs-cert-manager")
    # Workload certificates are created by their namespace's ConfigGroup, which waits for the workload issuer.
    workload_group = each_stack.named("certs-workload-data")
    issuer = each_stack.named(f"certs-mtls-mesh-workload-{anchor}").urn
    assert issuer in workload_group.dependencies and issuer in workload_group.property_dependencies["yaml"]
    postgres = each_stack.named("certs-workload-data:data/postgres-mesh-tls")
    assert postgres.group is workload_group and postgres.object()["kind"] == "Certificate"


def test_vault_issuers_wait_for_vault_login_to_work(staging):
    assert _depends_on(staging, "certs-mtls-mesh-identity-2026-11", "pki-cert-manager-login")
    assert _depends_on(staging, "certs-mtls-mesh-identity-2026-11", "pki-cert-manager-policy")
    assert _depends_on(staging, "certs-mtls-mesh-identity-2026-11", "pki-int-2026-11-set-signed")


def test_cert_manager_charts_are_pinned_and_install_their_crds(each_stack):
    releases = {r.name: r.inputs for r in each_stack.of_type(RELEASE)}
    cm, tm = releases["certs-cert-manager"], releases["certs-trust-manager"]
    assert (cm["chart"], cm["version"], cm["repositoryOpts"]["repo"]) == ("cert-manager", "v1.21.1", "https://charts.jetstack.io")
    assert (tm["chart"], tm["version"]) == ("trust-manager", "v0.24.0")
    assert cm["values"]["crds"]["enabled"] is True and tm["values"]["crds"]["enabled"] is True


def test_existing_cert_manager_is_used_when_install_is_off():
    run = run_program("dev", set_config={"installCertManager": False})
    assert not [r for r in run.of_type(RELEASE) if r.inputs["chart"] in ("cert-manager", "trust-manager")]
    assert run.object("ClusterIssuer", "mtls-mesh-identity-dev-1")


def test_workload_certificate_for_a_proxy_free_database(each_stack):
    spec = each_stack.object("Certificate", "postgres-mesh-tls", "data")["spec"]
    assert spec["uris"] == ["spiffe://cluster.local/ns/data/sa/postgres"]
    assert spec["dnsNames"] == ["postgres.data.svc", "postgres.data.svc.cluster.local"]
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"]["size"] == 256
    duration = {"dev": "720h0m0s"}.get(each_stack.stack, "2160h0m0s")
    assert spec["duration"] == duration
    hours = int(duration.split("h")[0])
    assert spec["renewBefore"] == f"{hours // 3}h0m0s", "renewal at two thirds of the lifetime"
    workloads = {o["metadata"]["name"] for o in each_stack.objects("Certificate")
                 if o["spec"]["issuerRef"]["name"].startswith("mtls-mesh-workload-")}
    assert workloads == {"postgres-mesh-tls"}, "only services that terminate TLS themselves get one"


def _secret_leaks(value, path="", inside_secret=False):
    if is_secret_envelope(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _secret_leaks(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secret_leaks(v, f"{path}[{i}]")
    elif isinstance(value, str) and ("PRIVATE KEY" in value or "s.test-vault-token" in value):
        yield path


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_private_key_or_token_appears_outside_a_pulumi_secret(stack):
    run = run_program(stack, set_config={"vaultToken": "s.test-vault-token"}, secrets=["vaultToken"])
    leaks = [f"{r.type} {r.name}{path}" for r in run.registrations for path in _secret_leaks(r.inputs)]
    assert not leaks, leaks
    assert "s.test-vault-token" not in json.dumps(run.exports)
    if stack != "dev":
        (provider,) = run.of_type("pulumi:providers:vault")
        assert "s.test-vault-token" in json.dumps(provider.inputs), "the token reaches the provider (as a secret)"


def test_the_leak_detector_would_see_a_plaintext_key():
    assert list(_secret_leaks({"stringData": {"tls.key": "-----BEGIN PRIVATE KEY-----"}})) == [".stringData.tls.key"]


# Rotation: (phase, anchors in the bundle, anchor the identity issuer chains to).
PHASES = [("none", ["2026-11"], "2026-11"),
          ("add-next", ["2026-11", "2027-11"], "2026-11"),
          ("issue-from-next", ["2026-11", "2027-11"], "2027-11"),
          ("drop-previous", ["2027-11"], "2027-11")]


@pytest.mark.parametrize("stack", ["dev", "staging"])
@pytest.mark.parametrize("phase,bundle,issuing", PHASES)
def test_each_rotation_phase_sets_bundle_and_issuer(stack, phase, bundle, issuing):
    changes = {"trustAnchor": "2026-11", "anchorRotationPhase": phase}
    if phase != "none":
        changes["nextTrustAnchor"] = "2027-11"
    run = run_program(stack, set_config=changes)
    sources = run.object("Bundle", "linkerd-identity-trust-roots")["spec"]["sources"]
    named = [next(iter(s.values()))["name"] for s in sources]
    assert named == [f"mtls-mesh-anchor-{a}" for a in bundle]
    issuer_ref = run.object("Certificate", "linkerd-identity-issuer", "linkerd")["spec"]["issuerRef"]["name"]
    assert issuer_ref == f"mtls-mesh-identity-{issuing}"
    assert run.exports["trustRotation"]["phase"] == phase
    assert run.exports["trustRotation"]["trustedAnchors"] == bundle


def test_finishing_a_rotation_changes_nothing():
    dropping = run_program("staging", set_config={"trustAnchor": "2026-11", "nextTrustAnchor": "2027-11",
                                                  "anchorRotationPhase": "drop-previous"})
    finished = run_program("staging", set_config={"trustAnchor": "2027-11"})
    def state(run):
        return sorted((r.type, r.name, json.dumps(r.inputs, sort_keys=True)) for r in run.registrations
                      if r.custom and not r.type.startswith("pulumi:providers"))
    assert state(dropping) == state(finished)
