"""Settings validation: each rule rejects its bad input with a message naming the key, before any resource exists."""

from __future__ import annotations

import pulumi
import pytest

from harness import run_program
from read.durations import Duration
from read.errors import SettingsError
from read.settings import AnchorRotation, load_declarations, load_settings
from harness import stack_config

# (stack, settings to change, settings to remove, the key the message must name, words it must contain)
BAD_SETTINGS = [
    ("dev", {}, ["environment"], "mtls-mesh:environment", "is required but not set"),
    ("dev", {"environment": "production"}, [], "mtls-mesh:environment", "'production' is not one of dev, staging, prod"),
    ("dev", {}, ["kubeContext"], "mtls-mesh:kubeContext", "is required"),
    ("dev", {"kubeContext": ""}, [], "mtls-mesh:kubeContext", "is empty"),
    ("dev", {"vaultAdress": "https://vault:8200"}, [], "mtls-mesh:vaultAdress", "Did you mean 'vaultAddress'?"),
    ("dev", {"kubernetes:context": "other"}, [], "kubernetes:context", "Set mtls-mesh:kubeContext instead"),
    ("prod", {"pkiMode": "self-signed"}, [], "mtls-mesh:pkiMode", "self-signed in a prod environment"),
    ("staging", {}, ["vaultAddress"], "mtls-mesh:vaultAddress", "is required with pkiMode vault"),
    ("staging", {"vaultAddress": "http://vault:8200"}, [], "mtls-mesh:vaultAddress", "plain http in staging"),
    ("staging", {"vaultAddress": "vault.example.com"}, [], "mtls-mesh:vaultAddress", "is not an http(s) URL"),
    ("staging", {}, ["vaultKubernetesHost"], "mtls-mesh:vaultKubernetesHost", "required when vaultKubernetesAuthCreate"),
    ("staging", {"vaultMountPrefix": "/pki/"}, [], "mtls-mesh:vaultMountPrefix", "is not a Vault path"),
    ("prod", {"vaultIntermediateTtl": "87600h"}, [], "mtls-mesh:vaultIntermediateTtl", "must be shorter than the root"),
    ("prod", {"vaultAuthTokenTtl": "24h"}, [], "mtls-mesh:vaultAuthTokenTtl", "between 1m and 1h"),
    ("prod", {"vaultIntermediateRenewals": ["2031-05", "2031/06"]}, [], "mtls-mesh:vaultIntermediateRenewals[1]",
     "is not a valid renewal id"),
    ("prod", {"vaultIntermediateRenewals": ["2031-05", "2031-05"]}, [], "mtls-mesh:vaultIntermediateRenewals[1]",
     "is listed twice"),
    ("staging", {"vaultToken": "s.plaintext"}, [], "mtls-mesh:vaultToken", "stored in plaintext"),
    ("staging", {"certManagerServiceAccount": "cm-controller"}, [], "mtls-mesh:certManagerServiceAccount",
     "the cert-manager this program installs runs as 'cert-manager'"),
    ("staging", {"installCertManager": False, "certManagerServiceAccount": "CM_Controller"}, [],
     "mtls-mesh:certManagerServiceAccount", "is not a service account name"),
    ("staging", {"vaultCaBundleFile": "no-such.pem"}, [], "mtls-mesh:vaultCaBundleFile", "cannot read 'no-such.pem'"),
    ("dev", {"identityIssuerRenewBefore": "48h"}, [], "mtls-mesh:identityIssuerRenewBefore", "must be shorter than identityIssuerDuration"),
    ("dev", {"identityIssuerRenewBefore": "12h"}, [], "mtls-mesh:identityIssuerRenewBefore", "shorter than the proxies' 24h0m0s leaf"),
    ("dev", {"identityIssuerDuration": "9000h", "identityIssuerRenewBefore": "100h"}, [], "mtls-mesh:identityIssuerDuration",
     "must be shorter than trustAnchorValidity"),
    ("dev", {"trustAnchorValidity": "720h"}, [], "mtls-mesh:trustAnchorValidity", "under 60 days"),
    ("dev", {"identityIssuerDuration": "2 days"}, [], "mtls-mesh:identityIssuerDuration", "is not a duration"),
    ("dev", {"workloadCertDuration": "30m"}, [], "mtls-mesh:workloadCertDuration", "shorter than an hour"),
    ("dev", {"defaultInboundPolicy": "denied"}, [], "mtls-mesh:defaultInboundPolicy", "Did you mean 'deny'?"),
    ("dev", {"inboundPolicyOverrides": ["web:deny"]}, [], "mtls-mesh:inboundPolicyOverrides[0]", "is not namespace=policy"),
    ("dev", {"inboundPolicyOverrides": ["wbe=deny"]}, [], "mtls-mesh:inboundPolicyOverrides[0]", "Did you mean 'web'?"),
    ("dev", {"inboundPolicyOverrides": ["batch=deny"]}, [], "mtls-mesh:inboundPolicyOverrides[0]", "is not meshed"),
    ("dev", {"adoptNamespaces": ["paymnts"]}, [], "mtls-mesh:adoptNamespaces[0]", "Did you mean 'payments'?"),
    ("dev", {"adoptNamespaces": "web"}, [], "mtls-mesh:adoptNamespaces", "must be a list of strings"),
    ("dev", {"protectPki": "yes"}, [], "mtls-mesh:protectPki", "must be true or false"),
    ("dev", {"trustDomain": "Cluster_Local"}, [], "mtls-mesh:trustDomain", "is not a DNS name"),
    ("dev", {"trustAnchor": "Root 2026"}, [], "mtls-mesh:trustAnchor", "is not a valid anchor id"),
    ("dev", {"anchorRotationPhase": "add-next"}, [], "mtls-mesh:anchorRotationPhase", "needs the anchor being rotated in"),
    ("dev", {"nextTrustAnchor": "dev-2"}, [], "mtls-mesh:nextTrustAnchor", "anchorRotationPhase is none"),
    ("dev", {"anchorRotationPhase": "issue-from-next", "nextTrustAnchor": "dev-1"}, [], "mtls-mesh:nextTrustAnchor",
     "is the current anchor"),
    ("dev", {"anchorRotationPhase": "rotate"}, [], "mtls-mesh:anchorRotationPhase", "is not one of none, add-next"),
    ("dev", {"certManagerChartVersion": "latest"}, [], "mtls-mesh:certManagerChartVersion", "is not a chart version"),
    ("dev", {"serviceGraph": "missing.yaml"}, [], "missing.yaml", "file not found"),
    ("dev", {"serviceGraph": "graph\x00.yaml"}, [], "graph\x00.yaml", "is not a usable file path"),
    ("staging", {"vaultCaBundleFile": "ca\x00.pem"}, [], "mtls-mesh:vaultCaBundleFile", "is not a usable file path"),
]


@pytest.mark.parametrize("stack,changes,removed,key,words", BAD_SETTINGS,
                         ids=[f"{case[3]}:{case[4][:30]}" for case in BAD_SETTINGS])
def test_bad_setting_is_rejected_naming_its_key(stack, changes, removed, key, words):
    with pytest.raises(SettingsError) as caught:
        run_program(stack, set_config=changes, unset=removed)
    matching = [str(p) for p in caught.value.problems if p.where == key]
    assert matching, f"no problem reported under {key}; got: {caught.value}"
    assert any(words in text for text in matching), f"expected {words!r} under {key}; got: {matching}"
    # Nothing was registered before the error: no half-applied change is possible.
    assert caught.value.registrations == []


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"environment": "qa", "defaultInboundPolicy": "strict"}, unset=["vaultAddress"])
    keys = {p.where for p in caught.value.problems}
    assert {"mtls-mesh:environment", "mtls-mesh:defaultInboundPolicy", "mtls-mesh:vaultAddress"} <= keys
    assert str(caught.value).startswith("3 problems in the settings of stack 'staging':")


def test_settings_error_is_a_run_error_so_pulumi_prints_no_traceback():
    # The Python language host reports a RunError as its message alone; any other exception gets a stack trace.
    # Settings are read and compiled without Pulumi (read/errors.py), so the program raises them as RunErrors.
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"environment": "qa"})
    assert isinstance(caught.value, pulumi.RunError)
    assert str(caught.value).startswith("1 problem in the settings of stack 'staging':")


def test_a_secret_value_never_appears_in_an_error():
    with pytest.raises(SettingsError) as caught:
        run_program("staging", set_config={"vaultToken": "s.very-secret-token"})
    assert "s.very-secret-token" not in str(caught.value)


def test_self_signed_prod_is_allowed_only_when_said_explicitly():
    config, _ = stack_config("prod")
    config.update({"mtls-mesh:pkiMode": "self-signed", "mtls-mesh:allowSelfSignedInProd": "true"})
    settings = load_settings(config, "prod")
    assert settings.pki.mode == "self-signed" and settings.vault is None


def test_defaults_come_from_pulumi_yaml_declarations():
    declarations = load_declarations()
    config, _ = stack_config("dev")
    settings = load_settings(config, "dev")
    assert settings.trust_domain == declarations["trustDomain"].default == "cluster.local"
    assert settings.pki.issuer_duration == Duration.parse(declarations["identityIssuerDuration"].default)


def test_every_declared_setting_has_a_type_and_description():
    for declaration in load_declarations().values():
        assert declaration.type in ("string", "integer", "boolean", "array"), declaration.key
        assert declaration.description.strip(), f"{declaration.key} has no description"
        if declaration.type == "array":
            assert declaration.items, f"{declaration.key} is an array without items"


@pytest.mark.parametrize("text,seconds", [("48h0m0s", 172800), ("25h", 90000), ("10m", 600), ("1h30m", 5400),
                                          ("8760h", 31536000), ("1.5h", 5400), ("90s", 90)])
def test_durations_parse_as_go_writes_them(text, seconds):
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize("text", ["", "48", "2d", "h", "10ms", "1h 30m", "-5m", "0.5s"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        Duration.parse(text)


def test_duration_renders_canonical_go_form():
    assert Duration.parse("48h").go() == "48h0m0s" and Duration.parse("90m").go() == "1h30m0s"


@pytest.mark.parametrize("phase,bundle,issuer", [
    ("none", ("a",), "a"),
    ("add-next", ("a", "b"), "a"),
    ("issue-from-next", ("a", "b"), "b"),
    ("drop-previous", ("b",), "b"),
])
def test_rotation_phase_decides_bundle_and_issuing_anchor(phase, bundle, issuer):
    rotation = AnchorRotation(phase, "a", "" if phase == "none" else "b")
    assert rotation.bundle_anchors == bundle and rotation.issuing_anchor == issuer
    # The issuer always chains to an anchor every proxy already trusts.
    assert rotation.issuing_anchor in rotation.bundle_anchors
