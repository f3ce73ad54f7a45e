"""A stack file (`stacks/Pulumi.<stack>.yaml`) read the way the Pulumi CLI hands its config to the program.

The program itself gets its config from the language host (`runtime.read_stack_config`); tools that run outside
Pulumi (`python -m discover`, deploy/, the tests' harness) read the stack file here, with `read_stack_file`, and pass
the result to `load_stack_settings`, so they see exactly the config `pulumi up` hands the program: the file's values
decoded and printed as the CLI does (read/cli_yaml.py), Pulumi.yaml's defaults filled in for every key the file does
not set, and the CLI's own refusals (a required key missing, a value of the wrong type).
docs/config-as-the-cli-hands-it.md has the facts and their sources.

Since the CLI fills in every default, the program cannot tell a key the file leaves out from one the file sets to its
default: wherever a decision depends on whether a key "is set", it asks whether the value differs from the default
(`user_set` here, `settings._Config.is_set`), never whether the key is present.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from read import cli_yaml
from read.errors import Problem, Problems, SettingsError, did_you_mean, short
from read.settings import PROJECT, PROJECT_DIR, Settings, StackFileConfig, load_settings, secret_refusal
from read.settings_format import (IGNORED_PROVIDER_KEYS, MAY_BE_SECRET, SECRET_SETTINGS, SHARD_STACK_SETTINGS,
                                  STACK_NAME, STACK_NAME_MAX, Declaration, load_declarations)

STACKS_DIR = PROJECT_DIR / "stacks"
# What a `secure:` value stands for when the ciphertext cannot (and need not) be decrypted.
SECRET_PLACEHOLDER = "[secret from the stack file]"
# Namespaces of the CLI and engine themselves (pulumi:tags, pulumi:disable-default-providers): per stack, not settings.
ENGINE_NAMESPACES = ("pulumi",)


def stack_names(stacks_dir: Path = STACKS_DIR, *, shards: bool = False) -> tuple[str, ...]:
    """The stacks with a stack file: the environments' (single and platform stacks), and with `shards` the shard
    stacks too."""
    names = sorted(p.name.split(".")[1] for p in stacks_dir.glob("Pulumi.*.yaml"))
    return tuple(name for name in names if shards or not is_shard_stack(name, stacks_dir))


def stack_file(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def wire_value(value: Any) -> str:
    """A value as the CLI hands it to the program had it been written in a stack file: a string as it is, a boolean
    `true`/`false`, a number as Go prints it, a list or mapping as Go's compact JSON (read/cli_yaml.py). A value no
    stack file can hold (NaN, an infinity) is passed as JSON, so tests can still feed it to the program."""
    if isinstance(value, str):
        return value
    try:
        return cli_yaml.config_text(cli_yaml.from_python(value), SECRET_PLACEHOLDER)[0]
    except (cli_yaml.CliYamlError, ValueError, OverflowError):
        return json.dumps(value)


@dataclass(frozen=True)
class ProjectKey:
    """One key of Pulumi.yaml's `config:` block as the CLI applies it (pkg/workspace/config.go `mergeConfig`)."""

    key: str  # namespaced: mtls-mesh:<name>, or a provider's key
    type: str | None
    items: Any
    secret: bool
    # The text the CLI sets when the stack does not (createConfigValue of `default` or `value`); None: required.
    fill: str | None
    fill_is_object: bool = False


@functools.lru_cache(maxsize=16)
def _project_keys(text: str) -> tuple[str, tuple[ProjectKey, ...]]:
    project = cli_yaml.reload(cli_yaml.load(text)) or {}
    name = str(project.get("name", PROJECT))
    keys = []
    for key, spec in (project.get("config") or {}).items():
        if not isinstance(spec, dict):  # the shorthand `key: value` (project.go RewriteShorthandConfigValues)
            spec = {"default" if ":" not in key or key.startswith(f"{name}:") else "value": spec}
        full = _namespaced(str(key), name)
        fill_value = spec.get("default") if spec.get("default") is not None else spec.get("value")
        keys.append(ProjectKey(full, spec.get("type"), spec.get("items"), bool(spec.get("secret")),
                               None if fill_value is None else cli_yaml.default_text(fill_value),
                               fill_value is not None and cli_yaml.default_is_object(fill_value)))
    return name, tuple(sorted(keys, key=lambda k: k.key))


def project_keys(project_dir: Path = PROJECT_DIR) -> tuple[str, tuple[ProjectKey, ...]]:
    """The project's name and config keys, from its Pulumi.yaml as the CLI decodes it."""
    return _project_keys((project_dir / "Pulumi.yaml").read_text(encoding="utf-8-sig"))


def _namespaced(key: str, project: str) -> str:
    """A config key as the CLI parses it (sdk/go/common/resource/config/key.go `ParseKey`; a key without a namespace
    is the project's: loaders.go `stackConfigNamespacedWithProject`)."""
    colons = key.count(":")
    if colons == 0:
        return f"{project}:{key}"
    if colons == 1:
        return key
    namespace, module, name = key.split(":", 2)
    if colons == 2 and module == "config" and namespace and name:
        return f"{namespace}:{name}"
    raise cli_yaml.CliYamlError(f"could not parse {key} as a configuration key (configuration keys should be of the "
                                "form `<namespace>:<name>`)")


def with_defaults(config: Mapping[str, str], project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """`config` with what the CLI fills in for each key it lacks (Pulumi.yaml's defaults and provider `value`s): for
    config assembled by hand, as a stack file holding exactly these keys would reach the program."""
    filled = dict(config)
    for project_key in project_keys(project_dir)[1]:
        if project_key.key not in filled and project_key.fill is not None:
            filled[project_key.key] = project_key.fill
    return filled


def _project_dir_of(path: Path) -> Path:
    """The project a stack file belongs to: stacks/ sits in it (Pulumi.yaml `stackConfigDir: stacks`)."""
    candidate = path.resolve().parent.parent
    return candidate if (candidate / "Pulumi.yaml").is_file() else PROJECT_DIR


def read_stack_file(path: Path, *, project_dir: Path | None = None,
                    validate: bool = True) -> tuple[dict[str, str], frozenset[str]]:
    """The config the Pulumi CLI hands the program for this stack file, and which keys are secret.

    As `pulumi preview`/`up` build it (sdk/go/common/workspace/loaders.go `LoadProjectStackBytes`, then
    pkg/workspace/config.go `ValidateStackConfigAndApplyProjectConfig`): every value decoded and printed as the CLI
    does (read/cli_yaml.py), keys without a namespace put in the project's, every Pulumi.yaml default (or provider
    `value`) filled in where the file does not set the key; `secure:` values (and lists or mappings holding one) are
    secret, each ciphertext replaced by SECRET_PLACEHOLDER (the program's settings only check that they are secret).
    With `validate` (the CLI's default; `--skip-config-validation` turns it off) what the CLI refuses raises one
    SettingsError: a key with no default that the file does not set, a value not of its declared type, a plaintext
    value of a `secret: true` key. A file the CLI cannot load at all raises a SettingsError naming the file.
    """
    project_dir = project_dir if project_dir is not None else _project_dir_of(path)
    where = _display(path, project_dir)
    try:
        project_name, keys = project_keys(project_dir)
        document = cli_yaml.load(path.read_text(encoding="utf-8-sig"))
        config, secret_keys, object_keys = _file_config(document, project_name)
    except (cli_yaml.CliYamlError, UnicodeDecodeError) as err:
        raise SettingsError([Problem(where, f"the Pulumi CLI cannot load it: {err}",
                                      "Fix the file: a YAML mapping with a `config:` mapping of namespace:key values")],
                            path.name.split(".")[1] if path.name.count(".") >= 2 else "") from None
    stack = path.name.split(".")[1] if path.name.count(".") >= 2 else ""
    problems = Problems()
    for project_key in keys:
        if project_key.key in config:
            continue
        if project_key.fill is not None:
            config[project_key.key] = project_key.fill
            if project_key.fill_is_object:
                object_keys.add(project_key.key)
        elif project_key.key.startswith(f"{project_name}:"):
            problems.add(project_key.key, "is not set, and Pulumi.yaml gives it no default, so the Pulumi CLI refuses "
                         f"the stack (\"Stack '{stack}' is missing configuration value\")",
                         f"Set it: pulumi config set {project_key.key.partition(':')[2]} <value>")
    if validate:
        for project_key in keys:
            if project_key.key in config:
                _check_type(project_key, config[project_key.key], project_key.key in secret_keys,
                            project_key.key in object_keys, problems)
        problems.raise_if_any(stack)
    return config, frozenset(secret_keys)


def stack_file_document(path: Path) -> dict[str, Any]:
    """A stack file's top-level fields (config, secretsprovider, encryptionsalt, ...) as the CLI decodes them
    (read/cli_yaml.py), Python types only; a file the CLI cannot load raises a SettingsError naming it."""
    try:
        document = cli_yaml.plain(cli_yaml.load(path.read_text(encoding="utf-8-sig")))
    except (cli_yaml.CliYamlError, UnicodeDecodeError) as err:
        raise SettingsError([Problem(path.name, f"the Pulumi CLI cannot load it: {err}",
                                     "Fix the file: a YAML mapping with a `config:` mapping of namespace:key values")],
                            path.name.split(".")[1] if path.name.count(".") >= 2 else "") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SettingsError([Problem(path.name, "the Pulumi CLI cannot load it: it is not a mapping",
                                     "Fix the file: a YAML mapping with a `config:` mapping of namespace:key values")])
    return document


def stack_file_entries(path: Path, project_name: str = PROJECT) -> dict[str, Any]:
    """The config entries the stack file itself holds (no defaults), each key namespaced and each value decoded as
    the CLI decodes it (Python types; `{secure: ...}` as it is): for tools that copy a file's own settings elsewhere
    (the Operator's Stack objects) or compare its ciphertexts. What the program receives is `read_stack_file`'s."""
    config = stack_file_document(path).get("config") or {}
    if not isinstance(config, dict):
        return {}
    return {_namespaced(str(key), project_name): value for key, value in config.items()}


def _display(path: Path, project_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(project_dir.resolve()))
    except ValueError:
        return path.name


def _file_config(document: Any, project_name: str) -> tuple[dict[str, str], set[str], set[str]]:
    """The stack file's own config (texts), its secret keys and the keys the CLI holds as objects (JSON)."""
    if document is None:
        return {}, set(), set()
    if not isinstance(document, dict) or isinstance(document, cli_yaml.GoMap):
        raise cli_yaml.CliYamlError("expected the stack file to be a mapping")
    if document.get("environment") is not None:
        # ESC environments' values are resolved by the Pulumi Cloud, which no tool here can read.
        raise cli_yaml.CliYamlError("it imports Pulumi ESC environments, whose values only the Pulumi CLI can read")
    raw = document.get("config")
    if raw is None:
        return {}, set(), set()
    if not isinstance(raw, dict):
        raise cli_yaml.CliYamlError("`config:` is not a mapping")
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    object_keys: set[str] = set()
    for key, value in raw.items():
        if isinstance(key, cli_yaml.GoKey):
            raise cli_yaml.CliYamlError(f"could not parse {cli_yaml.percent_v(key)} as a configuration key "
                                        "(configuration keys should be of the form `<namespace>:<name>`)")
        full = _namespaced(key, project_name)
        if full in config:
            # Go's map order decides which of the two the CLI keeps: it differs from run to run.
            raise cli_yaml.CliYamlError(f"{key} and another key of the file both name {full}")
        text, secret, is_object = cli_yaml.config_value(value, SECRET_PLACEHOLDER)
        config[full] = text
        if secret:
            secret_keys.add(full)
        if is_object:
            object_keys.add(full)
    return config, secret_keys, object_keys


def _check_type(project_key: ProjectKey, text: str, secret: bool, is_object: bool, problems: Problems) -> None:
    """pkg/workspace/config.go `validateStackConfigValue` with sdk/go/common/workspace/project.go
    `ValidateConfigValue`: a plain value is checked as its text, a list or mapping as its JSON."""
    name = project_key.key.partition(":")[2]
    if project_key.secret and not secret:
        problems.add(project_key.key, "is declared secret in Pulumi.yaml but stored in plaintext, so the Pulumi CLI "
                     "refuses the stack", f"Store it encrypted: pulumi config set --secret {name} <value>")
    if project_key.type is None:
        return
    content: Any = json.loads(text) if is_object else text
    if not _valid(project_key.type, project_key.items, content):
        type_name = _type_name(project_key.type, project_key.items)
        problems.add(project_key.key, f"must be of type '{type_name}': the Pulumi CLI refuses the stack before the "
                     f"program runs (\"Stack ... with configuration key '{name}' must be of type '{type_name}'\")",
                     {"boolean": "Write true or false", "integer": "Write a whole number",
                      "array": "Write a YAML list, e.g. [a, b]", "string": "Write a single value, not a list or "
                      "mapping"}.get(project_key.type, ""))


def _valid(type_name: str, items: Any, value: Any) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return True
        return isinstance(value, str) and cli_yaml.go_atoi(value)
    if type_name == "boolean":
        return value in ("true", "false") or isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or not isinstance(items, dict):
        return False
    return all(_valid(items.get("type", ""), items.get("items"), item) for item in value)


def _type_name(type_name: str, items: Any) -> str:
    if isinstance(items, dict):
        return f"array<{_type_name(items.get('type', ''), items.get('items'))}>"
    return type_name


def user_set(config: Mapping[str, str], declarations: Mapping[str, Declaration]) -> list[str]:
    """The project keys of a CLI config whose value is not what the CLI fills in for an absent key: the keys a stack
    file (or `pulumi config set`) sets to something other than the default, and every undeclared key."""
    found = []
    for key, text in config.items():
        namespace, _, name = key.partition(":")
        if namespace != PROJECT:
            continue
        declaration = declarations.get(name)
        if declaration is None or not declaration.is_default(text):
            found.append(key)
    return sorted(found)


def load_stack_settings(raw: Mapping[str, str], stack: str, *, secret_keys: frozenset[str] = frozenset(),
                        project_dir: Path = PROJECT_DIR, stacks_dir: Path | None = None,
                        updating: bool = False) -> Settings:
    """The settings of any stack: a single or platform stack's from its own config; a shard stack's (platformStack
    set) from its platform's stack file, read as the CLI hands it to the platform (`read_stack_file`), with only how
    to reach the cluster (kubeContext, kubeconfig) its own.

    A shard reads the platform's file rather than repeating its settings so the two cannot drift: both compile the
    plan from the same settings and graph of the same commit, which is what makes the shard's contract digest
    comparable with the one the platform applied (plan/shards.py).

    `raw` is the config as the CLI hands it, every Pulumi.yaml default filled in: a shard's key holding its default is
    what the CLI put there; any other value of a project key, and any provider key, is the user's and refused."""
    platform = raw.get(f"{PROJECT}:platformStack", "")
    stacks_dir = stacks_dir if stacks_dir is not None else STACKS_DIR
    peers = peer_reader(stacks_dir, project_dir)
    if not platform:
        return load_settings(raw, stack, secret_keys=secret_keys, project_dir=project_dir, updating=updating,
                             peers=peers)
    declarations = load_declarations(project_dir / "Pulumi.yaml")
    problems = Problems()
    marked = [key for key in ("platformStack", "shard") if f"{PROJECT}:{key}" in secret_keys]
    for key in marked:
        problems.add(f"{PROJECT}:{key}", *secret_refusal(key))
    problems.raise_if_any(stack)  # nothing below may quote a value stored as a secret
    shard = raw.get(f"{PROJECT}:shard", "")
    set_here = user_set(raw, declarations)
    for key in set_here:
        if key.partition(":")[2] not in SHARD_STACK_SETTINGS:
            problems.add(key, "is set, but a shard stack holds only platformStack, shard, kubeContext and kubeconfig: "
                         f"every other setting is the platform's", f"Set it in stacks/Pulumi.{short(platform)}.yaml")
    for key in sorted(raw):
        namespace = key.partition(":")[0]
        if namespace in (PROJECT, *ENGINE_NAMESPACES):
            continue
        # The same refusal as the platform's (settings._check_keys): the program's explicit providers never read it.
        instead = IGNORED_PROVIDER_KEYS.get(key)
        if instead in SHARD_STACK_SETTINGS:
            problems.add(key, "is ignored: the program passes explicit providers their settings",
                         f"Set {PROJECT}:{instead} instead")
        elif instead:
            problems.add(key, "is ignored: the program passes explicit providers their settings, and a shard stack "
                         "holds only platformStack, shard, kubeContext and kubeconfig",
                         f"Remove it, and set {PROJECT}:{instead} in stacks/Pulumi.{short(platform)}.yaml")
        else:
            problems.add(key, "is set, but a shard stack holds only platformStack, shard, kubeContext and kubeconfig, "
                         "and the program passes explicit providers their settings (the platform's), so it is ignored",
                         f"Remove it from the shard's stack file")
    if not STACK_NAME.matches(platform) or len(platform) > STACK_NAME_MAX:
        problems.add(f"{PROJECT}:platformStack", f"{short(platform)} is not a stack name",
                     f"At most {STACK_NAME_MAX} lowercase letters, digits and '-', e.g. prod")
    elif not stack_file(platform, stacks_dir).is_file():
        problems.add(f"{PROJECT}:platformStack", f"the platform stack file stacks/Pulumi.{platform}.yaml is not there",
                     "Name an existing stack of this project, e.g. prod")
    elif not shard:
        problems.add(f"{PROJECT}:shard", "is set, but shard is not: a shard stack names both its platform and its shard",
                     "Set shard to one of the graph's shards")
    problems.raise_if_any(stack)

    # The platform's settings exactly as the CLI hands them to the platform: defaults, YAML 1.2 scalars, secrets. The
    # CLI's type checks are left to the program's own, which say more (the CLI checks the platform's file only when
    # the platform runs).
    platform_raw, platform_secrets = read_stack_file(stack_file(platform, stacks_dir), project_dir=project_dir,
                                                     validate=False)
    if platform_raw.get(f"{PROJECT}:platformStack"):
        problems.add(f"{PROJECT}:platformStack", f"stacks/Pulumi.{platform}.yaml is itself a shard stack",
                     "Name the platform stack, the one that sets policyShards: true")
        problems.raise_if_any(stack)
    secrets = set(platform_secrets)
    for key in (f"{PROJECT}:kubeContext", f"{PROJECT}:kubeconfig"):
        if key in set_here:
            platform_raw[key] = raw[key]
            secrets.discard(key)
            if key in secret_keys:
                secrets.add(key)
    # A stack's secrets are encrypted for that stack alone: the CLI hands a shard none of its platform's, so a
    # setting the shard takes from the platform's file cannot be one (vaultToken excepted: a shard registers nothing
    # of Vault's, and only checks that the platform keeps it secret).
    unreadable = sorted(key for key in platform_secrets if key.partition(":")[2] in MAY_BE_SECRET
                        and key.partition(":")[2] not in SECRET_SETTINGS and key not in set_here)
    for key in unreadable:
        name = key.partition(":")[2]
        own = name in SHARD_STACK_SETTINGS
        problems.add(key, f"is stored as a secret in stacks/Pulumi.{platform}.yaml, and a shard stack cannot "
                     "decrypt another stack's secrets (each stack's are encrypted for it alone), yet it reads this "
                     "setting from its platform's file",
                     f"Set the shard's own: pulumi config set --secret {key} <value> --stack {stack}" if own
                     else f"Store it in plain text in stacks/Pulumi.{platform}.yaml (pulumi config set {key} "
                     f"<value> --stack {platform}), or keep this environment unsharded")
    problems.raise_if_any(stack)
    # A shard of a multi-cluster platform is in its platform's cluster: the peers are the platform's (a shard
    # stack's name is not the platform's, which its peers list, so the platform's own name checks the links).
    settings = load_settings(platform_raw, stack, secret_keys=frozenset(secrets), project_dir=project_dir,
                             updating=updating, peers=peers, cluster_stack=platform)
    if not settings.policy_shards:
        problems.add(f"{PROJECT}:platformStack", f"stack {platform} does not set policyShards: true, so it registers "
                     "every namespace's policy itself and a shard would register the same objects twice",
                     f"Set mtls-mesh:policyShards: true in stacks/Pulumi.{platform}.yaml")
    elif shard not in settings.graph.shards:
        problems.add(f"{PROJECT}:shard", f"{short(shard)} is not a shard of {settings.graph.source}",
                     did_you_mean(shard, settings.graph.shards) or
                     "Give its namespaces `shard: <name>` in the service graph")
    elif stack != f"{platform}-{shard}":
        problems.add(f"{PROJECT}:shard", f"a shard stack is named <platformStack>-<shard>, {platform}-{shard}, "
                     f"not {short(stack)}", f"Rename the stack (pulumi stack rename {platform}-{shard}) and its file")
    problems.raise_if_any(stack)
    return replace(settings, platform_stack=platform, shard=shard)


def peer_reader(stacks_dir: Path = STACKS_DIR, project_dir: Path = PROJECT_DIR):
    """How a cluster stack reads the stack files it names (clusterPeers, meshRootStack): as the CLI would hand each to
    its own stack, beside this stack's file, in previews too. A file that is not there reads as None."""

    def read(name: str) -> StackFileConfig | None:
        path = stack_file(name, stacks_dir)
        if not path.is_file():
            return None
        raw, secret_keys = read_stack_file(path, project_dir=project_dir, validate=False)
        return StackFileConfig(_display(path, project_dir), raw, secret_keys)

    return read


def is_shard_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> bool:
    """Whether a stack file is a shard's: it names a platformStack (every stack holds the key, "" by default)."""
    return bool(read_stack_file(stack_file(stack, stacks_dir), validate=False)[0].get(f"{PROJECT}:platformStack"))
