"""Vault's Kubernetes auth in both places Vault can run, the CA it is reached through, and login tokens that carry
exactly the declared policy."""

from __future__ import annotations

import base64

import pytest
import yaml

from read.errors import SettingsError
from harness import PROJECT_DIR, is_secret_envelope, run_program

AUTH_CONFIG = "vault:kubernetes/authBackendConfig:AuthBackendConfig"


def auth_config(run):
    (config,) = run.of_type(AUTH_CONFIG)
    return config


def test_external_vault_reviews_tokens_with_a_reviewer_account_and_the_clusters_ca(staging):
    config = auth_config(staging)
    inputs = config.inputs
    ca = (PROJECT_DIR / "stacks" / "ca" / "kubernetes-staging-eu1.pem").read_text()
    assert inputs["kubernetesCaCert"] == ca
    assert inputs["disableLocalCaJwt"] is True, "outside a pod there are no local CA and JWT files"
    assert is_secret_envelope(inputs["tokenReviewerJwt"]), "the reviewer's token must stay a Pulumi secret"
    binding = staging.object("ClusterRoleBinding", "mtls-mesh-vault-token-reviewer")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mtls-mesh-vault-token-reviewer",
                                    "namespace": "kube-system"}]
    secret = staging.object("Secret", "mtls-mesh-vault-token-reviewer", "kube-system")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "mtls-mesh-vault-token-reviewer"
    # Vault gets the token only once the account may review tokens.
    assert staging.named("vault-token-reviewer-auth-delegator").urn in config.dependencies


def test_in_cluster_vault_uses_its_own_pods_account():
    run = run_program("staging", set_config={"vaultKubernetesAuthMode": "in-cluster"})
    inputs = auth_config(run).inputs
    assert set(inputs) == {"backend", "kubernetesHost"}
    assert not [r for r in run.of_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
                if r.object()["roleRef"]["name"] == "system:auth-delegator"], "no token reviewer account"
    assert not run.of_type("kubernetes:core/v1:Secret")


def test_login_tokens_carry_only_the_declared_policy(each_stack):
    for role in each_stack.of_type("vault:kubernetes/authBackendRole:AuthBackendRole"):
        assert role.inputs["tokenNoDefaultPolicy"] is True
        assert len(role.inputs["tokenPolicies"]) == 1


def test_the_cluster_ca_can_come_from_the_kubeconfig(tmp_path):
    ca = (PROJECT_DIR / "stacks" / "ca" / "kubernetes-prod-eu1.pem").read_text()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": "https://api:6443",
                                                  "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "contexts": [{"name": "prod-eu1", "context": {"cluster": "prod", "user": "me"}}],
        "users": [{"name": "me", "user": {}}]}))
    run = run_program("prod", set_config={"kubeconfig": str(kubeconfig)}, unset=["vaultKubernetesCaFile"])
    assert auth_config(run).inputs["kubernetesCaCert"] == ca


def test_external_mode_without_a_ca_is_a_settings_error_that_says_how_to_get_it(tmp_path):
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"kubeconfig": str(tmp_path / "none")}, unset=["vaultKubernetesCaFile"])
    assert caught.value.registrations == []
    (problem,) = [p for p in caught.value.problems if p.where == "mtls-mesh:vaultKubernetesCaFile"]
    assert "certificate-authority-data" in problem.fix and "in-cluster" in problem.fix


@pytest.mark.parametrize("address", ["https://vault.example.internal:8200", "https://10.20.0.5:8200",
                                     "https://vault.vault.svc:8200", "https://vault:8200"])
def test_a_private_vault_address_needs_its_ca(address):
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"vaultAddress": address}, unset=["vaultCaBundleFile"])
    assert [p for p in caught.value.problems if p.where == "mtls-mesh:vaultCaBundleFile" and "looks private" in p.what]


def test_a_public_vault_address_or_an_explicit_public_ca_needs_no_bundle():
    run_program("staging", set_config={"vaultAddress": "https://vault.example.com:8200"}, unset=["vaultCaBundleFile"])
    run_program("staging", set_config={"vaultPublicCa": True}, unset=["vaultCaBundleFile"])
