"""The config the program gets is the config the Pulumi CLI hands it (docs/config-as-the-cli-hands-it.md): every
Pulumi.yaml default filled in, every value decoded and printed by the CLI's YAML rules (gopkg.in/yaml.v3, not PyYAML's
YAML 1.1), and what the CLI refuses refused. Single, platform and shard stacks all run under it, and every "is set"
decision treats a key at its default as not set.

The expected texts of the YAML cases were produced by tests/cli_oracle/main.go, which runs the real yaml.v3 v3.0.1
through the steps of pulumi's loader; `test_the_oracle_agrees` builds it (or takes the build cached for the same
sources and Go) and compares wherever Go is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings as hypothesis_settings, strategies as st

import tools
from harness import PROJECT_DIR, SHARD_STACKS, STACKS, run_program, stack_config, wire_value
from read import cli_yaml, stack_files
from read.errors import SettingsError
from read.settings import load_settings
from read.settings_format import load_declarations
from read.stack_files import load_stack_settings, read_stack_file

ALL_STACKS = STACKS + SHARD_STACKS

# A value as written in a stack file -> the text the CLI hands the program (from tests/cli_oracle/main.go).
YAML_CASES = [
    ("017", "15"),  # yaml.v3 keeps YAML 1.1's octal (resolve.go: ParseInt base 0)
    ("0o17", "15"),
    ("08", "8"),  # not octal, so a float, printed as Go prints 8.0
    ("1:30", "1:30"),  # no base 60 in yaml.v3 (PyYAML: 90)
    ("'1:30'", "1:30"),
    ("2024-01-01", "2024-01-01 00:00:00 +0000 UTC"),  # a timestamp, printed by time.Time.String()
    ("2024-01-01T10:00:00.500+02:00", "2024-01-01 10:00:00.5 +0200 +0200"),
    ("2024-02-30", "2024-02-30"),  # no such day: a string
    ("2026-11", "2026-11"),
    ("yes", "yes"),  # no YAML 1.1 booleans (PyYAML: True)
    ("on", "on"),
    ("True", "true"),
    ("FALSE", "false"),
    ("0x1F", "31"),
    ("1_000", "1000"),
    ("1e3", "1000"),
    ("1.50", "1.5"),
    (".5", "0.5"),
    ("0.0000001", "1e-7"),
    ("-0.0", "0"),
    ("1e400", "1e400"),  # out of a float's range: a string
    ("99999999999999999999", "100000000000000000000"),
    ("18446744073709551615", "18446744073709551615"),
    ("'017'", "017"),
    ("!!str 017", "017"),
    ("!!float 3", "3"),
    ("", ""),  # `key:` with no value: the empty string
    ("~", ""),
    ("[017, '017', 2024-01-01, {b: 1, a: [x]}]", '[15,"017","2024-01-01 00:00:00 +0000 UTC",{"a":["x"],"b":1}]'),
    ("[18446744073709551615, 1e6, 1.0, -0.0, 1e-7, 1e21]", "[18446744073709552000,1000000,1,0,1e-7,1e+21]"),
    ("{1: a, true: b, 1.5: c, ~: e, 2024-01-01: f}",
     '{"1":"a","1.5":"c","2024-01-01 00:00:00 +0000 UTC":"f","\\u003cnil\\u003e":"e","true":"b"}'),
    ("{'a<b': '&'}", '{"a\\u003cb":"\\u0026"}'),
    ("[~, null, '']", '[null,null,""]'),
    ("{x: 1, <<: {x: 2, y: 3}}", '{"x":1,"y":3}'),
    ("[&a {p: 1}, *a]", '[{"p":1},{"p":1}]'),
]
# Values the CLI cannot load at all.
YAML_REFUSED = [".inf", "[.nan]", "{1: a, 1.0: b}", "{a: 1, a: 2}", "!!int abc"]


def cli_text(written: str) -> str:
    document = cli_yaml.load(f"config:\n  mtls-mesh:k: {written}\n")
    return cli_yaml.config_text(document["config"]["mtls-mesh:k"], "[S]")[0]


@pytest.mark.parametrize("written, expected", YAML_CASES)
def test_a_value_reaches_the_program_as_the_cli_prints_it(written, expected):
    assert cli_text(written) == expected


@pytest.mark.parametrize("written", YAML_REFUSED)
def test_what_the_cli_cannot_load_is_refused(written):
    with pytest.raises(cli_yaml.CliYamlError):
        cli_text(written)


def test_secure_values_are_secret_wherever_they_are():
    document = cli_yaml.load("config:\n  a: {secure: v1:x}\n  b: [x, {secure: v1:y}]\n  c: {secure: 3}\n")["config"]
    assert cli_yaml.config_text(document["a"], "[S]") == ("[S]", True)
    assert cli_yaml.config_text(document["b"], "[S]") == ('["x","[S]"]', True)
    # Only a string ciphertext is one (object.go isSecureValue).
    assert cli_yaml.config_text(document["c"], "[S]") == ('{"secure":3}', False)


ORACLE_SOURCE = PROJECT_DIR / "tests" / "cli_oracle"


def built_oracle(go: str, yaml_source: Path, tmp_path: Path) -> Path:
    """tests/cli_oracle built with this Go and this yaml.v3. The binary is kept under ~/.cache/mtls-mesh/cli-oracle/,
    named by a digest of the Go version and of every file of both sources, so a run builds it (seconds, with a fresh
    GOCACHE) only when one of them changed; where that folder cannot be written, the build in tmp_path is used."""
    digest = hashlib.sha256(subprocess.run([go, "version"], capture_output=True, check=True).stdout)
    for root in (ORACLE_SOURCE, yaml_source):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(f"{root.name}/{path.relative_to(root)}".encode() + b"\0" + path.read_bytes() + b"\0")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = cache_home / "mtls-mesh" / "cli-oracle" / digest.hexdigest()[:32] / "oracle"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    built = tmp_path / "oracle"
    subprocess.run([go, "build", "-o", str(built), "."], cwd=ORACLE_SOURCE, check=True,
                   env={"GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "HOME": str(tmp_path),
                        "GOCACHE": str(tmp_path / "cache"), "PATH": str(Path(go).parent)})
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".oracle-{os.getpid()}")
        shutil.copy2(built, partial)
        os.replace(partial, cached)  # atomic: a concurrent run sees no binary or a whole one
    except OSError:
        return built
    return cached


def test_the_oracle_agrees(tmp_path):
    """Build tests/cli_oracle (the real yaml.v3 through pulumi's loader steps) and compare every case."""
    go, source = shutil.which("go"), Path("/usr/share/gocode/src/gopkg.in/yaml.v3")
    if go is None or not source.is_dir():
        tools._missing("go with gopkg.in/yaml.v3 (apt-get install golang-go golang-gopkg-yaml.v3-dev)")
    oracle = built_oracle(go, source, tmp_path)
    stack = tmp_path / "Pulumi.case.yaml"
    for written, expected in YAML_CASES:
        stack.write_text(f"config:\n  mtls-mesh:k: {written}\n")
        result = json.loads(subprocess.run([str(oracle), str(stack)], capture_output=True, text=True,
                                           check=True).stdout)
        assert result["mtls-mesh:k"]["Text"] == expected == cli_text(written), written
    for written in YAML_REFUSED:
        stack.write_text(f"config:\n  mtls-mesh:k: {written}\n")
        result = json.loads(subprocess.run([str(oracle), str(stack)], capture_output=True, text=True,
                                           check=True).stdout)
        assert "error" in result, written


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789+-._:eExXoObB TtFfNnYy~-'\"[]{},")), max_size=12))
def test_any_scalar_is_a_text_or_a_clean_refusal(written):
    """No traceback whatever a stack file holds: a value, or the CLI's refusal."""
    try:
        text = cli_text(written)
    except cli_yaml.CliYamlError:
        return
    assert isinstance(text, str)


def expected_defaults() -> dict[str, str]:
    """The CLI's rule (pulumi pkg/workspace/config.go `createConfigValue`), restated on Pulumi.yaml read directly: a
    string as it is, a boolean or an integer with %v, a list as compact JSON."""
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    defaults = {}
    for key, spec in project["config"].items():
        if "default" not in spec:
            continue
        value = spec["default"]
        text = ("true" if value else "false") if isinstance(value, bool) else \
            value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        defaults[f"mtls-mesh:{key}"] = text
    return defaults


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_the_harness_hands_the_program_every_default(stack):
    """A key the stack file does not set reaches the program with Pulumi.yaml's default, as the CLI copies it
    (pkg/workspace/config.go `mergeConfig`); a key it sets keeps the file's value."""
    config, _ = stack_config(stack)
    own = stack_files.stack_file_entries(stack_files.stack_file(stack))
    defaults = expected_defaults()
    assert defaults, "Pulumi.yaml declares defaults"
    for key, text in defaults.items():
        assert key in config, f"{stack}: {key} has a default, and the CLI hands it to the program"
        if key not in own:
            assert config[key] == text, f"{stack}: {key}"
    assert config["mtls-mesh:platformStack"] == (own.get("mtls-mesh:platformStack") or "")


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_every_stack_file_passes_the_clis_own_checks(stack):
    """Pulumi.yaml's required keys (no default) make the CLI refuse a stack file that leaves them out: a shard stack,
    which holds only platformStack and shard, would never run. Their default "" lets it, and the program refuses ""
    for a single or platform stack."""
    read_stack_file(stack_files.stack_file(stack), validate=True)


def test_a_required_setting_left_to_its_default_is_refused_in_a_single_stack():
    with pytest.raises(SettingsError) as refused:
        run_program("dev", unset=["environment", "trustAnchor"])
    message = str(refused.value)
    assert "mtls-mesh:environment: is required but not set" in message
    assert "mtls-mesh:trustAnchor: is required but not set" in message


@pytest.mark.parametrize("stack", SHARD_STACKS)
def test_a_shard_stack_runs_end_to_end_with_every_default(stack):
    run = run_program(stack)
    assert set(expected_defaults()) <= set(run.config)
    assert run.config["mtls-mesh:policyShards"] == "false" and run.config["mtls-mesh:kubeconfig"] == ""
    assert any(r.is_kubernetes for r in run.registrations), f"{stack} registers its namespaces' policy"


def write_stacks(tmp_path: Path, **files: str) -> Path:
    """A copy of stacks/ with some files replaced (stack -> text)."""
    directory = tmp_path / "stacks"
    shutil.copytree(PROJECT_DIR / "stacks", directory)
    for stack, text in files.items():
        (directory / f"Pulumi.{stack.replace('_', '-')}.yaml").write_text(text)
    return directory


def shard_settings(directory: Path, stack: str = "prod-payments"):
    raw, secrets = read_stack_file(directory / f"Pulumi.{stack}.yaml", project_dir=PROJECT_DIR)
    return load_stack_settings(raw, stack, secret_keys=secrets, stacks_dir=directory)


@pytest.mark.parametrize("written, seen", [
    ("017", "15"),
    ("1:30", "1:30"),
    ("2026-11-01", "2026-11-01 00:00:00 +0000 UTC"),
])
def test_a_shard_reads_its_platforms_file_as_the_cli_hands_it_to_the_platform(tmp_path, written, seen):
    """The same text reaches the shard as the platform (issue 30, 7): no traceback for a date, no YAML 1.1 number."""
    prod = (PROJECT_DIR / "stacks" / "Pulumi.prod.yaml").read_text()
    directory = write_stacks(tmp_path, prod=prod.replace("mtls-mesh:trustAnchor: 2026-11",
                                                         f"mtls-mesh:trustAnchor: {written}"))
    platform_raw, platform_secrets = read_stack_file(directory / "Pulumi.prod.yaml", project_dir=PROJECT_DIR)
    assert platform_raw["mtls-mesh:trustAnchor"] == seen
    try:
        platform = load_settings(platform_raw, "prod", secret_keys=platform_secrets)
    except SettingsError as err:
        with pytest.raises(SettingsError) as refused:
            shard_settings(directory)
        assert refused.value.problems == err.problems
        assert repr(seen) in str(refused.value)
        return
    shard = shard_settings(directory)
    assert shard.pki == platform.pki and shard.pki.rotation.current == seen


def test_a_shards_own_cluster_access_still_overrides_the_platforms(tmp_path):
    directory = write_stacks(tmp_path, prod_payments="config:\n  mtls-mesh:platformStack: prod\n"
                                                     "  mtls-mesh:shard: payments\n"
                                                     "  mtls-mesh:kubeContext: teams-eu1\n")
    settings = shard_settings(directory)
    assert settings.kubernetes.context == "teams-eu1"
    # kubeconfig at its default is what the CLI put there: the platform's (also the default) stays.
    assert settings.kubernetes.kubeconfig == ""


PROVIDER_KEYS = {"kubernetes:context": "other-cluster", "kubernetes:kubeconfig": "/tmp/kubeconfig",
                 "vault:token": "hvs.PLAINTEXT-TOKEN", "kubernetes:enableServerSideApply": "true"}


@pytest.mark.parametrize("key, value", PROVIDER_KEYS.items())
def test_a_provider_key_in_a_shard_stack_is_refused_as_the_platform_refuses_it(tmp_path, key, value):
    """Issue 30, 6: the shard ignored them; the platform refuses the default providers' keys it never reads."""
    directory = write_stacks(tmp_path, prod_payments="config:\n  mtls-mesh:platformStack: prod\n"
                                                     f"  mtls-mesh:shard: payments\n  {key}: {value}\n")
    with pytest.raises(SettingsError) as refused:
        shard_settings(directory)
    (problem,) = [p for p in refused.value.problems if p.where == key]
    assert "ignored" in problem.what and problem.fix
    assert value not in str(refused.value), "the value (a token, say) is never printed"
    if key in ("kubernetes:context", "kubernetes:kubeconfig", "vault:token"):
        with pytest.raises(SettingsError) as platform_refused:
            run_program("prod", set_config={key: value})
        (platform_problem,) = [p for p in platform_refused.value.problems if p.where == key]
        assert platform_problem.what == problem.what.split(",")[0]


def test_a_provider_key_given_to_a_shard_through_the_harness_stays_the_shards():
    """run_program puts a shard's own keys (and any provider's) in the shard's config, its settings in the
    platform's file; the shard refuses the provider key before registering anything."""
    with pytest.raises(SettingsError) as refused:
        run_program("prod-payments", set_config={"kubernetes:context": "other-cluster"})
    assert [p.where for p in refused.value.problems] == ["kubernetes:context"]
    assert refused.value.registrations == []


def test_an_engine_key_in_a_shard_stack_is_the_clis(tmp_path):
    directory = write_stacks(tmp_path, prod_payments="config:\n  mtls-mesh:platformStack: prod\n"
                                                     "  mtls-mesh:shard: payments\n  pulumi:tags: {team: payments}\n")
    assert shard_settings(directory).shard == "payments"


@pytest.mark.parametrize("line, refused", [
    ("mtls-mesh:trustDomain: other.local", True),
    ("mtls-mesh:adoptNamespaces: [payments]", True),
    ("mtls-mesh:protectPki: false", True),
    # Set to the default: exactly what the CLI hands a shard that leaves the key out.
    ("mtls-mesh:trustDomain: cluster.local", False),
    ("mtls-mesh:adoptNamespaces: []", False),
    ("mtls-mesh:protectPki: true", False),
])
def test_a_shard_refuses_a_setting_of_its_own_but_not_a_default(tmp_path, line, refused):
    directory = write_stacks(tmp_path, prod_payments="config:\n  mtls-mesh:platformStack: prod\n"
                                                     f"  mtls-mesh:shard: payments\n  {line}\n")
    key = line.split(": ")[0]
    if not refused:
        assert shard_settings(directory).shard == "payments"
        return
    with pytest.raises(SettingsError) as error:
        shard_settings(directory)
    assert [p.where for p in error.value.problems] == [key]
    assert "a shard stack holds only platformStack, shard, kubeContext and kubeconfig" in str(error.value)


def test_a_network_at_its_audit_default_is_refused_under_deny_however_it_got_there():
    """Before: only a key absent from the config counted as 'not set', and under the CLI no key is absent, so staging
    (deny) with prometheusNetworks at its default (every private range) was accepted."""
    default = load_declarations()["prometheusNetworks"].default
    for change in ({"set_config": {"prometheusNetworks": default}}, {"unset": ["prometheusNetworks"]}):
        with pytest.raises(SettingsError, match="mtls-mesh:prometheusNetworks: is not set"):
            run_program("staging", **change)


def test_unset_hands_the_program_the_default():
    run = run_program("prod", unset=["trustDomain", "adoptNamespaces"])
    assert run.config["mtls-mesh:trustDomain"] == "cluster.local"
    assert run.config["mtls-mesh:adoptNamespaces"] == "[]"


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (3, "3"), ("017", "017"), (["a", "b"], '["a","b"]'), ([], "[]"),
    ({"b": 1, "a": "<"}, '{"a":"\\u003c","b":1}'), (1.0, "1"), (2**70, "1.1805916207174113e+21"),
])
def test_the_harness_passes_a_value_as_the_cli_would(value, text):
    assert wire_value(value) == text


@pytest.mark.parametrize("line, words", [
    ("mtls-mesh:policyShards: 'yes'", "must be of type 'boolean'"),
    ("mtls-mesh:adoptNamespaces: web", "must be of type 'array<string>'"),
    ("mtls-mesh:adoptNamespaces: [1, 2]", "must be of type 'array<string>'"),
    ("mtls-mesh:trustDomain: [a]", "must be of type 'string'"),
])
def test_a_value_the_cli_refuses_is_refused_before_the_program(tmp_path, line, words):
    """pkg/workspace/config.go `validateStackConfigValue`: the CLI checks each value against its declared type."""
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text((PROJECT_DIR / "stacks" / "Pulumi.dev.yaml").read_text() + f"  {line}\n")
    with pytest.raises(SettingsError) as refused:
        read_stack_file(stack, project_dir=PROJECT_DIR)
    assert words in str(refused.value) and line.split(":")[1] in str(refused.value)
    # --skip-config-validation: the values reach the program, whose own checks refuse them.
    config, secrets = read_stack_file(stack, project_dir=PROJECT_DIR, validate=False)
    with pytest.raises(SettingsError):
        load_settings(config, "dev", secret_keys=secrets)


def test_a_file_the_cli_cannot_load_is_one_error_naming_it(tmp_path):
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text("config:\n  mtls-mesh:a: 1\n  mtls-mesh:a: 2\n")
    with pytest.raises(SettingsError, match="Pulumi.dev.yaml: the Pulumi CLI cannot load it"):
        read_stack_file(stack, project_dir=PROJECT_DIR)
