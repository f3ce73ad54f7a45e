"""The trust chain as registered: Vault PKI, self-signed anchors, issuers, the identity issuer, the bundle, workload
certificates; their providers, ordering, protection, and secrecy; and every rotation phase."""

from __future__ import annotations

import json
import re

import pytest

from harness import is_secret_envelope, plain, run_program, stack_config
from read.errors import SettingsError

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
                      "kind": "Issuer", "group": "cert-manager.io"},
        "commonName": "identity.linkerd.cluster.local", "dnsNames": ["identity.linkerd.cluster.local"],
        "isCA": True,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["cert sign", "crl sign", "server auth", "client auth"],
    }


def test_trust_bundle_targets_the_control_plane_configmap(each_stack):
    spec = each_stack.object("Bundle", "linkerd-identity-trust-roots")["spec"]
    assert spec["target"] == {"configMap": {"key": "ca-bundle.crt"},
                              "namespaceSelector": {"matchLabels": {"linkerd.io/is-control-plane": "true"}}}


def test_dev_signs_with_p256_self_signed_roots(dev):
    for key in dev.of_type("tls:index/privateKey:PrivateKey"):
        assert key.inputs["algorithm"] == "ECDSA" and key.inputs["ecdsaCurve"] == "P256"
    roots = {c.name: c.inputs for c in dev.of_type("tls:index/selfSignedCert:SelfSignedCert")}
    assert set(roots) == {"anchor-dev-1", "workload-root-dev-1"}, "a mesh anchor and a separate workload root"
    for cert in roots.values():
        assert cert["isCaCertificate"] is True and cert["validityPeriodHours"] == 8760
        assert sorted(cert["allowedUses"]) == ["cert_signing", "crl_signing"]
        # A root changes only through the rotation runbook, never by pulumi-tls's early renewal.
        assert not cert.get("earlyRenewalHours")
    assert roots["anchor-dev-1"]["subject"]["commonName"] != roots["workload-root-dev-1"]["subject"]["commonName"]
    assert dev.object("Issuer", "mtls-mesh-identity-dev-1", "linkerd")["spec"] == {"ca": {"secretName": "mtls-mesh-anchor-dev-1"}}
    assert not dev.of_type(MOUNT), "dev needs no Vault"


def _common_name(pem: str) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.load_pem_x509_certificate(pem.encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_no_issuer_is_usable_outside_its_own_namespace(each_stack):
    assert not each_stack.objects("ClusterIssuer"), "a ClusterIssuer signs for any namespace that asks"
    for certificate in each_stack.objects("Certificate"):
        assert certificate["spec"]["issuerRef"]["kind"] == "Issuer"
        issuer_namespace = certificate["metadata"]["namespace"]
        assert each_stack.object("Issuer", certificate["spec"]["issuerRef"]["name"], issuer_namespace)


def test_dev_anchor_key_lives_only_beside_the_identity_issuer(dev):
    keys = [o for o in dev.objects("Secret") if "tls.key" in o.get("stringData", {})
            and o["metadata"]["name"].startswith("mtls-mesh-anchor-")]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in keys] == [("linkerd", "mtls-mesh-anchor-dev-1")]
    # trust-manager reads only public certificates, from its own namespace.
    config_map = dev.object("ConfigMap", "mtls-mesh-anchor-dev-1", "cert-manager")
    assert set(config_map["data"]) == {"ca.crt"} and "PRIVATE" not in config_map["data"]["ca.crt"]
    ca_issuers = [o for o in dev.objects("Issuer") if "ca" in o["spec"]]
    assert {o["metadata"]["namespace"] for o in ca_issuers} <= {"linkerd", "linkerd-viz"}, \
        "a CA issuer signs CAs and any name: only the control plane's namespaces may have one"


def test_dev_workload_certificates_are_signed_by_the_program_from_the_workload_root(dev):
    (request,) = dev.of_type("tls:index/certRequest:CertRequest")
    assert request.inputs["dnsNames"] == ["postgres.data.svc", "postgres.data.svc.cluster.local"]
    assert request.inputs["uris"] == ["spiffe://cluster.local/ns/data/sa/postgres"]
    (leaf,) = dev.of_type("tls:index/locallySignedCert:LocallySignedCert")
    assert leaf.inputs["isCaCertificate"] is False
    assert sorted(leaf.inputs["allowedUses"]) == ["client_auth", "digital_signature", "key_agreement", "server_auth"]
    assert leaf.inputs["validityPeriodHours"] == 720 and leaf.inputs["earlyRenewalHours"] == 240
    (workload_root,) = [c for c in dev.of_type("tls:index/selfSignedCert:SelfSignedCert") if c.name == "workload-root-dev-1"]
    # The harness's stand-in certificates are named after the resource that made them (CN=MOCK-<name>).
    assert _common_name(leaf.inputs["caCertPem"]) == "MOCK-workload-root-dev-1"
    assert workload_root.urn in leaf.property_dependencies["caCertPem"]
    (workload_key,) = [k for k in dev.of_type("tls:index/privateKey:PrivateKey") if k.name == "workload-root-dev-1"]
    assert leaf.property_dependencies["caPrivateKeyPem"] == (workload_key.urn,), "signed with the workload root's key only"
    secret = dev.named("certs-tls-postgres")
    assert secret.object()["metadata"]["name"] == "postgres-mesh-tls" and secret.object()["type"] == "kubernetes.io/tls"
    string_data = secret.inputs["stringData"]
    assert is_secret_envelope(string_data) or is_secret_envelope(string_data["tls.key"]), "the key stays a Pulumi secret"
    assert secret.object()["stringData"]["ca.crt"] == leaf.inputs["caCertPem"]


def test_workload_roots_reach_every_graph_namespace_and_follow_the_rotation(each_stack):
    bundle = each_stack.object("Bundle", "mtls-mesh-workload-trust")["spec"]
    anchors = each_stack.exports["trustRotation"]["trustedAnchors"]
    assert bundle["sources"] == [{"configMap": {"name": f"mtls-mesh-workload-anchor-{a}", "key": "ca.crt"}} for a in anchors]
    (selector,) = bundle["target"]["namespaceSelector"]["matchExpressions"]
    assert selector["key"] == "kubernetes.io/metadata.name" and "data" in selector["values"]
    assert set(each_stack.exports["workloadRoots"]) == set(each_stack.exports["trustAnchors"])


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
    vault_spec = staging.object("Issuer", "mtls-mesh-identity-2026-11", "linkerd")["spec"]["vault"]
    assert vault_spec["path"] == "pki-mesh-int-2026-11/root/sign-intermediate"
    assert vault_spec["auth"]["kubernetes"]["role"] == "cert-manager-mesh-identity"
    assert vault_spec["auth"]["kubernetes"]["serviceAccountRef"] == {
        "name": "mtls-mesh-vault-issuer", "audiences": ["vault://mtls-mesh"]}
    workload = staging.object("Issuer", "mtls-mesh-workload-2026-11", "data")["spec"]["vault"]
    assert workload["path"] == "pki-mesh-workload-2026-11/sign/mesh-workload-data"
    assert workload["auth"]["kubernetes"]["role"] == "cert-manager-mesh-ns-data"


def _policy_paths(policy) -> list[tuple[str, str]]:
    return re.findall(r'path "([^"]+)" \{\s*capabilities = (\[[^\]]*\])\s', policy.inputs["policy"])


PREVIEW = "mtls-mesh-preview"  # the preview identity's RBAC (plan/preview_identity.py), tested in test_preview_identity.py


def test_each_vault_login_may_call_exactly_its_own_signing_path(staging):
    policies = {p.inputs["name"]: _policy_paths(p) for p in staging.of_type("vault:index/policy:Policy")}
    # The preview token's policy (tests/test_preview_vault.py): reads, and only a child token's create.
    preview = policies.pop("cert-manager-mesh-preview")
    assert [path for path, caps in preview if "update" in caps or "create" in caps] == ["auth/token/create"]
    assert policies == {
        "cert-manager-mesh-identity": [("pki-mesh-int-2026-11/root/sign-intermediate", '["create", "update"]')],
        "cert-manager-mesh-ns-data": [("pki-mesh-workload-2026-11/sign/mesh-workload-data", '["create", "update"]')],
    }


def test_during_a_rotation_each_login_covers_both_anchors():
    run = run_program("staging", set_config={"trustAnchor": "2026-11", "nextTrustAnchor": "2027-11",
                                             "anchorRotationPhase": "add-next"})
    policies = {p.inputs["name"]: [path for path, _ in _policy_paths(p)] for p in run.of_type("vault:index/policy:Policy")}
    assert policies["cert-manager-mesh-ns-data"] == ["pki-mesh-workload-2026-11/sign/mesh-workload-data",
                                                     "pki-mesh-workload-2027-11/sign/mesh-workload-data"]
    # Sorted: the two roles are registered concurrently, in no fixed order.
    roles = sorted(r.inputs["backend"] for r in run.of_type("vault:pkiSecret/secretBackendRole:SecretBackendRole"))
    assert roles == ["pki-mesh-workload-2026-11", "pki-mesh-workload-2027-11"]


def test_every_mount_publishes_its_ca_and_crl_urls(prod):
    urls = {r.name: plain(r.inputs) for r in prod.of_type("vault:pkiSecret/secretBackendConfigUrls:SecretBackendConfigUrls")}
    base = "https://vault.example.internal:8200/v1/platform"
    assert urls["pki-root-2026-11-urls"]["issuingCertificates"] == [f"{base}/pki-mesh-root-2026-11/ca"]
    assert urls["pki-root-2026-11-urls"]["crlDistributionPoints"] == [f"{base}/pki-mesh-root-2026-11/crl"]
    assert urls["pki-int-2026-11-urls"]["issuingCertificates"] == [f"{base}/pki-mesh-int-2026-11/ca"]
    assert urls["pki-workload-2026-11-urls"]["issuingCertificates"] == [f"{base}/pki-mesh-workload-2026-11/ca"]
    crls = prod.of_type("vault:pkiSecret/secretBackendCrlConfig:SecretBackendCrlConfig")
    assert len(crls) == 3 and all(c.inputs["autoRebuild"] for c in crls)


def test_no_input_anywhere_is_a_stringified_output(each_stack):
    text = json.dumps([r.inputs for r in each_stack.registrations])
    assert "Calling __str__ on an Output" not in text


def test_kubernetes_auth_roles_are_bound_to_their_own_namespace_with_short_tokens(staging):
    roles = {r.inputs["roleName"]: r.inputs for r in staging.of_type(AUTH_ROLE)}
    assert {name: role["boundServiceAccountNamespaces"] for name, role in roles.items()} == {
        "cert-manager-mesh-identity": ["linkerd"], "cert-manager-mesh-ns-data": ["data"]}
    for role in roles.values():
        assert role["boundServiceAccountNames"] == ["mtls-mesh-vault-issuer"]
        assert role["audience"] == "vault://mtls-mesh"
        assert role["tokenTtl"] == 600
    token_roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in staging.objects("Role")
                   if o["metadata"]["name"] != PREVIEW}
    assert set(token_roles) == {("linkerd", "mtls-mesh-vault-issuer-token"), ("data", "mtls-mesh-vault-issuer-token")}
    for token_role in token_roles.values():
        assert token_role["rules"] == [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                                        "resourceNames": ["mtls-mesh-vault-issuer"], "verbs": ["create"]}]
    for binding in staging.objects("RoleBinding"):
        if binding["metadata"]["name"] != PREVIEW:
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cert-manager",
                                            "namespace": "cert-manager"}]


def test_an_existing_cert_manager_names_its_own_account():
    run = run_program("staging", set_config={"installCertManager": False, "certManagerServiceAccount": "cm-controller",
                                             "certManagerNamespace": "security"})
    for binding in run.objects("RoleBinding"):
        if binding["metadata"]["name"] != PREVIEW:
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cm-controller", "namespace": "security"}]


def test_workload_role_allows_exactly_its_namespaces_names(staging):
    (role,) = staging.of_type("vault:pkiSecret/secretBackendRole:SecretBackendRole")
    assert role.inputs["name"] == "mesh-workload-data" and role.inputs["backend"] == "pki-mesh-workload-2026-11"
    assert (role.inputs["keyType"], role.inputs["keyBits"]) == ("ec", 256)
    assert role.inputs["serverFlag"] and role.inputs["clientFlag"]
    # Exact names, no globs: Vault's `*` in allowed_uri_sans also spans `/`.
    assert role.inputs["allowedUriSans"] == ["spiffe://cluster.local/ns/data/sa/postgres"]
    assert role.inputs["allowedDomains"] == ["postgres.data.svc", "postgres.data.svc.cluster.local"]
    assert role.inputs["allowBareDomains"] and not role.inputs["allowSubdomains"] and not role.inputs["allowGlobDomains"]
    assert not role.inputs["allowWildcardCertificates"] and not role.inputs["allowAnyName"]
    assert not role.inputs["allowedUriSansTemplate"]
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
    anchor_material = f"certs-anchor-key-{anchor}" if each_stack.stack == "dev" else f"pki-int-{anchor}-set-signed"
    assert _depends_on(each_stack, f"certs-mtls-mesh-identity-{anchor}", anchor_material)
    assert _depends_on(each_stack, "certs-trust-roots", f"certs-anchor-{anchor}")
    assert _depends_on(each_stack, "certs-trust-roots", "certs-trust-manager")
    assert _depends_on(each_stack, "certs-trust-manager", "certs-cert-manager")
    if each_stack.stack == "dev":
        return
    # Workload certificates are created by their namespace's ConfigGroup, which waits for the workload issuer
    # (tests/test_preview.py: how the group's dependencies order its children). A platform stack's shard registers
    # data's group (no dependency across stacks: the contract check orders them), so the stack is read as one here.
    if each_stack.config.get("mtls-mesh:policyShards") == "true":
        each_stack = run_program(each_stack.stack, set_config={"policyShards": False})
    workload_group = each_stack.named("certs-workload-data")
    issuer = each_stack.named(f"certs-data-mtls-mesh-workload-{anchor}").urn
    assert issuer in workload_group.dependencies
    postgres = each_stack.named("certs-workload-data:data/postgres-mesh-tls")
    assert postgres.group is workload_group and postgres.object()["kind"] == "Certificate"


def test_vault_issuers_wait_for_vault_login_to_work(staging):
    identity = "certs-mtls-mesh-identity-2026-11"
    for dependency in ("pki-identity-login", "pki-identity-policy", "pki-int-2026-11-set-signed",
                       "certs-linkerd-rolebinding", "certs-linkerd-serviceaccount"):
        assert _depends_on(staging, identity, dependency), dependency
    workload = "certs-data-mtls-mesh-workload-2026-11"
    for dependency in ("pki-ns-data-login", "pki-ns-data-policy", "pki-workload-2026-11/data", "pki-workload-2026-11-urls",
                       "certs-data-rolebinding", "mesh-data"):
        assert _depends_on(staging, workload, dependency), dependency
    (workload_root,) = [r for r in staging.of_type(ROOT_CERT) if r.name == "pki-workload-2026-11"]
    assert workload_root.urn in staging.named(workload).dependencies


def test_cert_manager_charts_are_pinned_and_install_their_crds(each_stack):
    releases = {r.name: r.inputs for r in each_stack.of_type(RELEASE)}
    cm, tm = releases["certs-cert-manager"], releases["certs-trust-manager"]
    assert (cm["chart"], cm["version"], cm["repositoryOpts"]["repo"]) == ("cert-manager", "v1.21.1", "https://charts.jetstack.io")
    assert (tm["chart"], tm["version"]) == ("trust-manager", "v0.24.0")
    assert cm["values"]["crds"]["enabled"] is True and tm["values"]["crds"]["enabled"] is True


def test_existing_cert_manager_is_used_when_install_is_off():
    run = run_program("dev", set_config={"installCertManager": False})
    assert not [r for r in run.of_type(RELEASE) if r.inputs["chart"] in ("cert-manager", "trust-manager")]
    assert run.object("Issuer", "mtls-mesh-identity-dev-1", "linkerd")


@pytest.mark.parametrize("stack", ["staging", "prod_mesh"])
def test_workload_certificate_for_a_proxy_free_database(request, stack):
    each_stack = request.getfixturevalue(stack)
    spec = each_stack.object("Certificate", "postgres-mesh-tls", "data")["spec"]
    assert spec["uris"] == ["spiffe://cluster.local/ns/data/sa/postgres"]
    assert spec["dnsNames"] == ["postgres.data.svc", "postgres.data.svc.cluster.local"]
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"]["size"] == 256
    duration = "2160h0m0s"
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


# Dev on staging's Vault: the one kind of stack where a token may be in config.
VAULT_DEV = {key.partition(":")[2]: value for key, value in stack_config("staging")[0].items()
             if key.startswith("mtls-mesh:vault") or key in ("mtls-mesh:pkiMode", "mtls-mesh:trustAnchorValidity",
                                                             "mtls-mesh:identityIssuerDuration")}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_private_key_or_token_appears_outside_a_pulumi_secret(stack):
    token = {"vaultToken": "s.test-vault-token"}
    if stack == "dev":
        # Dev alone may hold a token in config; with Vault, it reaches the provider as a secret and nowhere else.
        for extra in ({}, VAULT_DEV):
            run = run_program(stack, set_config={**token, **extra}, secrets=["vaultToken"])
            leaks = [f"{r.type} {r.name}{path}" for r in run.registrations for path in _secret_leaks(r.inputs)]
            assert not leaks, leaks
            assert "s.test-vault-token" not in json.dumps(run.exports)
        (provider,) = run.of_type("pulumi:providers:vault")
        assert "s.test-vault-token" in json.dumps(provider.inputs), "the token reaches the provider (as a secret)"
        return
    # Staging and prod refuse it (every preview of the stack can decrypt its config), without quoting it.
    with pytest.raises(SettingsError) as refused:
        run_program(stack, set_config=token, secrets=["vaultToken"])
    assert [p.where for p in refused.value.problems] == ["mtls-mesh:vaultToken"]
    assert "s.test-vault-token" not in str(refused.value)
    run = run_program(stack)
    leaks = [f"{r.type} {r.name}{path}" for r in run.registrations for path in _secret_leaks(r.inputs)]
    assert not leaks, leaks


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
