"""Settings stored as secrets (`pulumi config set --secret`, issue 30 item 4): each one either stays a Pulumi secret in
every resource input that carries it, or is refused with what it is; no error ever prints a marked value.

Which setting does which is read/settings_format.py's MAY_BE_SECRET / CANNOT_BE_SECRET. Every declared setting is run
marked secret: with invalid values (the error names the key and never quotes the value) and with a valid one (a
refusal, the only problem; or every registered input holding the value is a secret envelope, and it is held by one).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from harness import PROJECT, STACKS, is_secret_envelope, plain, run_program, stack_config
from read import settings_format as sf
from read.errors import SettingsError
from read.settings import Secret, load_settings
from read.stack_files import load_stack_settings

DECLARATIONS = sf.load_declarations()
# A Vault stack, so every Vault setting is checked and reaches resources.
STACK = "staging"
STAGING, _ = stack_config(STACK)
# In every invalid value: a marked value must never reach a message, whole or in part.
MARK = "S3CR3T"

# Valid values of the settings that may be secret, each distinct from every other value of the stack (the staging
# file's kubeContext, staging-eu1, is also part of its vaultKubernetesHost), so finding it in an input means it
# came from this setting.
VALID_SECRETS = {
    "vaultToken": "s.secret-token-0f9e",
    "kubeContext": "secret-context-0f9e",
    "kubeconfig": "secret/kubeconfig-0f9e",
    "vaultKubernetesHost": "https://api-0f9e.staging.example.internal:6443",
    "linkerdHelmRepository": "https://helm.linkerd.io/edge",
}
# Settings that may be secret and reach no resource (the program only reads the file they name).
REACH_NO_RESOURCE: set[str] = set()

# Invalid values of the settings that may be secret, which the program reports under the key (or, for kubeContext, in
# the deliveredBy problem that quotes it): each message would quote the value, or a piece of it, if it could.
INVALID_SECRETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "kubeContext": [(f"ctx-{MARK}", {"deliveredBy": "operator"})],
    "kubeconfig": [(f"/home/{MARK}/kubeconfig", {"kubeContext": "in-cluster", "deliveredBy": "operator"})],
    "vaultKubernetesHost": [(f"https://{MARK}.example.com:99{MARK}/", {}), (f"ftp://{MARK}.example.com", {}),
                            (f"https://{MARK}.example.com/?token={MARK}", {}), (f"http://{MARK} host", {}),
                            (f"http://{MARK}.example.com:8200", {})],
    "vaultCaBundleFile": [(f"stacks/ca/{MARK}.pem", {}), ("README.md", {}), (f"../{MARK}.pem",
                                                                             {"allowFilesOutsideProject": False})],
    "vaultKubernetesCaFile": [(f"stacks/ca/{MARK}.pem", {}), ("README.md", {})],
    "linkerdHelmRepository": [(f"ftp://{MARK}.example.com/charts", {}),
                              (f"https://user:{MARK}@charts.example.com", {}), (f"https://{MARK} charts", {})],
}


def _invalid_values(key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Values the program refuses for `key` whatever else is set: a character no setting may hold, and (but for the
    free-text settings) one its format refuses; then the setting's own cases."""
    declaration = DECLARATIONS[key]
    if declaration.type == "array":
        yield json.dumps([f"{MARK}\u0007"]), {}
        yield f"not a list {MARK}", {}
    elif declaration.type == "boolean":
        yield f"{MARK}-maybe", {}
    else:
        yield f"{MARK}-\u0007-value", {}
        if key not in sf.MAY_BE_SECRET:
            yield f"!! {MARK} !!", {}
    yield from INVALID_SECRETS.get(key, [])


INVALID_CASES = [(key, value, extra) for key in DECLARATIONS for value, extra in _invalid_values(key)]


def test_every_setting_is_either_kept_secret_or_refused():
    assert not set(sf.MAY_BE_SECRET) & set(sf.CANNOT_BE_SECRET)
    assert set(sf.MAY_BE_SECRET) | set(sf.CANNOT_BE_SECRET) == set(DECLARATIONS) | set(sf.SECRET_SETTINGS)
    assert set(VALID_SECRETS) == set(sf.MAY_BE_SECRET), "every setting that may be secret is run secret below"


@pytest.mark.parametrize("key, value, extra", INVALID_CASES,
                         ids=[f"{key}-{i}" for i, (key, _, _) in enumerate(INVALID_CASES)])
def test_an_invalid_secret_value_is_reported_without_being_quoted(key, value, extra):
    with pytest.raises(SettingsError) as caught:
        run_program(STACK, set_config={key: value, **extra}, secrets=[key])
    message = str(caught.value)
    assert key in message, f"the error must name {key}:\n{message}"
    assert value not in message and MARK not in message, f"the error quotes the secret value:\n{message}"
    assert not caught.value.registrations


def _valid_value(key: str) -> Any:
    if key in VALID_SECRETS:
        return VALID_SECRETS[key]
    full = f"{PROJECT}:{key}"
    return STAGING[full] if full in STAGING else DECLARATIONS[key].default


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any, bool]]:
    """Every scalar of a registration's inputs: (path, value, inside a secret envelope)."""
    if is_secret_envelope(value):
        for inner_path, leaf, _ in _leaves(plain(value), path):
            yield inner_path, leaf, True
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value, False


@pytest.mark.parametrize("key", [*DECLARATIONS, *sf.SECRET_SETTINGS])
def test_a_valid_secret_value_is_kept_secret_or_refused(key):
    value = _valid_value(key)
    if key in sf.CANNOT_BE_SECRET:
        with pytest.raises(SettingsError) as caught:
            run_program(STACK, set_config={key: value}, secrets=[key])
        assert [str(p) for p in caught.value.problems] == [
            f"{PROJECT}:{key}: is stored as a secret, but it is {sf.CANNOT_BE_SECRET[key]}. Store it in plain text: "
            + (f"pulumi config rm {PROJECT}:{key}, then pulumi config set --path '{PROJECT}:{key}[0]' <value> for "
               "each entry" if DECLARATIONS[key].type == "array" else f"pulumi config set {PROJECT}:{key} <value>")]
        assert not caught.value.registrations
        return
    if key == "vaultToken":
        # Staging refuses a token in config whatever its form (every preview of the stack can decrypt it); dev keeps
        # one secret end to end (tests/test_trust_chain.py, test_no_private_key_or_token_appears_outside_...).
        with pytest.raises(SettingsError) as caught:
            run_program(STACK, set_config={key: value}, secrets=[key])
        assert [p.where for p in caught.value.problems] == [f"{PROJECT}:vaultToken"]
        assert value not in str(caught.value) and not caught.value.registrations
        return
    run = run_program(STACK, set_config={key: value}, secrets=[key])
    text = value if isinstance(value, str) else json.dumps(value)
    holders = [(r.type, r.name, path, secret) for r in run.registrations for path, leaf, secret in _leaves(r.inputs)
               if isinstance(leaf, str) and text in leaf]
    exposed = [holder for holder in holders if not holder[3]]
    assert not exposed, f"{key}'s secret value is a plain input of {exposed}"
    if key not in REACH_NO_RESOURCE:
        assert holders, f"{key}'s value reaches no resource: the test would pass whatever the program did"


def _exposed(run, values: list[str]) -> list[tuple[str, str, str]]:
    return [(r.type, r.name, path) for r in run.registrations for path, leaf, secret in _leaves(r.inputs)
            if isinstance(leaf, str) and not secret and any(v in leaf for v in values)]


STACK_VALUES = [(stack, key) for stack in STACKS for key in sorted(sf.MAY_BE_SECRET)
                if stack_config(stack)[0].get(f"{PROJECT}:{key}")]


@pytest.mark.parametrize("stack, key", STACK_VALUES, ids=[f"{s}-{k}" for s, k in STACK_VALUES])
def test_a_stack_files_own_value_marked_secret_is_kept_secret_or_refused(stack, key):
    """The stack files' values, as they are: the staging file's kubeContext, staging-eu1, is also part of its plain
    vaultKubernetesHost, so a secret one would be in the auth config for all to read: refused, naming that setting."""
    value = stack_config(stack)[0][f"{PROJECT}:{key}"]
    try:
        run = run_program(stack, secrets=[key])
    except SettingsError as err:
        assert [p.where for p in err.problems] == [f"{PROJECT}:{key}"], str(err)
        assert "is stored as a secret, but its value is also part of mtls-mesh:" in str(err)
        assert value not in str(err)
        return
    assert not _exposed(run, [value])


def test_a_secret_that_is_part_of_another_setting_is_kept_once_both_are_secret():
    config = stack_config("staging")[0]
    keys = ["kubeContext", "vaultKubernetesHost"]
    assert config[f"{PROJECT}:kubeContext"] in config[f"{PROJECT}:vaultKubernetesHost"]
    with pytest.raises(SettingsError, match="mtls-mesh:kubeContext: is stored as a secret, but its value is also part "
                                            "of mtls-mesh:vaultKubernetesHost, which is not"):
        run_program("staging", secrets=keys[:1])
    run = run_program("staging", secrets=keys)
    assert not _exposed(run, [config[f"{PROJECT}:{key}"] for key in keys])


def test_a_setting_that_may_be_secret_stays_one_in_the_settings_and_their_repr():
    config, secrets = stack_config(STACK)
    # vaultToken apart: staging refuses it in config (test_a_valid_secret_value_is_kept_secret_or_refused).
    marked = {k: v for k, v in VALID_SECRETS.items() if k != "vaultToken"}
    raw = {**config, **{f"{PROJECT}:{k}": v for k, v in marked.items()}}
    settings = load_settings(raw, STACK, secret_keys=frozenset(secrets | {f"{PROJECT}:{k}" for k in marked}))
    kept = (settings.kubernetes.context, settings.kubernetes.kubeconfig, settings.vault.kubernetes_host,
            settings.linkerd.repository)
    assert all(isinstance(value, Secret) for value in kept)
    assert not any(value in repr(settings) for value in marked.values())


def test_a_shard_keeps_its_own_secret_context_and_refuses_a_secret_platform_name():
    raw = {f"{PROJECT}:platformStack": "prod", f"{PROJECT}:shard": "payments",
           f"{PROJECT}:kubeContext": "secret-context-0f9e"}
    settings = load_stack_settings(raw, "prod-payments", secret_keys=frozenset({f"{PROJECT}:kubeContext"}))
    assert isinstance(settings.kubernetes.context, Secret)
    assert settings.kubernetes.context.reveal() == "secret-context-0f9e"
    plain_settings = load_stack_settings(raw, "prod-payments")
    assert plain_settings.kubernetes.context == "secret-context-0f9e"
    for key in ("platformStack", "shard"):
        with pytest.raises(SettingsError) as caught:
            load_stack_settings(raw, "prod-payments", secret_keys=frozenset({f"{PROJECT}:{key}"}))
        assert str(caught.value.problems[0]).startswith(f"{PROJECT}:{key}: is stored as a secret, but it is")
        assert [raw[f"{PROJECT}:{key}"] not in str(problem) for problem in caught.value.problems] == [True]


def test_the_schema_allows_encryption_exactly_where_the_program_does():
    schema = json.loads((sf.PROJECT_DIR / "schema" / "stack-settings.schema.json").read_text())
    properties = schema["properties"]["config"]["properties"]
    for key in [*DECLARATIONS, *sf.SECRET_SETTINGS]:
        encrypted = "secure" in json.dumps(properties[f"{PROJECT}:{key}"])
        assert encrypted == (key in sf.MAY_BE_SECRET), key


# The campaign's class, generated: any setting, any value holding the mark, marked secret; the run builds (only a
# setting that may be secret), or gives the one settings error (a refusal alone, for one that may not), and no error
# quotes the marked value.
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted({*DECLARATIONS, *sf.SECRET_SETTINGS})),
       shape=st.sampled_from(["{m}", "https://{m}.example.com:{m}", "{m}/{m}.pem", "oci://{m}", "{m} {m}",
                              "https://a:{m}@b.example.com", "{m}\u202e", "[\"{m}\"]", "../{m}", "http://{m}:8200/x?{m}"]),
       # "qx" first: a mark that is a word of the program's own messages ("secret", "stored") would be found in an
       # error that quotes nothing.
       mark=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12).map(lambda m: "qx" + m),
       stack=st.sampled_from(["dev", "staging", "prod"]))
def test_fuzz_no_error_quotes_a_value_stored_as_a_secret(key, shape, mark, stack):
    value = shape.format(m=mark)
    try:
        run_program(stack, set_config={key: value}, secrets=[key])
    except SettingsError as err:
        assert mark not in str(err), str(err)
        if key in sf.CANNOT_BE_SECRET:
            assert [p.where for p in err.problems] == [f"{PROJECT}:{key}"], str(err)
    else:
        assert key in sf.MAY_BE_SECRET, f"{key} stored as a secret was accepted"



@pytest.mark.parametrize("key", sorted(set(sf.MAY_BE_SECRET) - set(sf.SECRET_SETTINGS)))
def test_a_shard_says_clearly_that_it_cannot_read_a_secret_of_its_platforms_file(key, tmp_path):
    """A stack's secrets are encrypted for that stack alone, so the CLI hands a shard none of its platform's: a setting
    the shard reads from the platform's file, stored there as a secret, is one clear problem naming the key and the
    fix, never a check of the placeholder that stands for it ("contains a space", "file not found"). A shard that
    sets its own kubeContext or kubeconfig does not read the platform's."""
    import shutil

    import yaml

    from read.stack_files import STACKS_DIR

    for name in ("prod", "prod-payments"):
        shutil.copy(STACKS_DIR / f"Pulumi.{name}.yaml", tmp_path / f"Pulumi.{name}.yaml")
    platform = tmp_path / "Pulumi.prod.yaml"
    document = yaml.safe_load(platform.read_text())
    document["config"][f"{PROJECT}:{key}"] = {"secure": "v1:ciphertext"}
    platform.write_text(yaml.safe_dump(document))
    raw = {f"{PROJECT}:platformStack": "prod", f"{PROJECT}:shard": "payments"}
    with pytest.raises(SettingsError) as caught:
        load_stack_settings(raw, "prod-payments", stacks_dir=tmp_path)
    assert [p.where for p in caught.value.problems] == [f"{PROJECT}:{key}"], caught.value
    assert "cannot decrypt another stack's secrets" in str(caught.value.problems[0])
    if key in ("kubeContext", "kubeconfig"):
        own = {**raw, f"{PROJECT}:{key}": "its-own"}
        settings = load_stack_settings(own, "prod-payments", stacks_dir=tmp_path)
        assert (settings.kubernetes.context if key == "kubeContext" else settings.kubernetes.kubeconfig) == "its-own"
