"""A stack file (`stacks/Pulumi.<stack>.yaml`) read the way the Pulumi CLI hands its config to the program.

The program itself gets its config from the language host (`runtime.read_stack_config`); tools that run outside
Pulumi (`python -m discover`, the tests' harness) read the stack file here and pass the result to
`settings.load_settings`, so they see exactly the settings and graph `pulumi up` would.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from read.errors import Problems, did_you_mean, short
from read.settings import PROJECT, PROJECT_DIR, Settings, load_settings, secret_refusal
from read.settings_format import SHARD_STACK_SETTINGS, STACK_NAME, STACK_NAME_MAX

STACKS_DIR = PROJECT_DIR / "stacks"
# What a `secure:` value stands for when the ciphertext cannot (and need not) be decrypted.
SECRET_PLACEHOLDER = "[secret from the stack file]"


def stack_names(stacks_dir: Path = STACKS_DIR, *, shards: bool = False) -> tuple[str, ...]:
    """The stacks with a stack file: the environments' (single and platform stacks), and with `shards` the shard
    stacks too."""
    names = sorted(p.name.split(".")[1] for p in stacks_dir.glob("Pulumi.*.yaml"))
    return tuple(name for name in names if shards or not is_shard_stack(name, stacks_dir))


def stack_file(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def wire_value(value: Any) -> str:
    """A config value as the CLI passes it: strings as they are, everything else as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def read_stack_file(path: Path) -> tuple[dict[str, str], frozenset[str]]:
    """The config of a stack file as strings (objects as JSON text), and which keys are secret (`secure:` values,
    replaced by a placeholder: the program's settings only check that they are secret)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config, secret_keys = {}, set()
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = SECRET_PLACEHOLDER
            secret_keys.add(key)
        else:
            config[key] = wire_value(value)
    return config, frozenset(secret_keys)


def load_stack_settings(raw: Mapping[str, str], stack: str, *, secret_keys: frozenset[str] = frozenset(),
                        project_dir: Path = PROJECT_DIR, stacks_dir: Path | None = None,
                        updating: bool = False) -> Settings:
    """The settings of any stack: a single or platform stack's from its own config; a shard stack's (platformStack
    set) from its platform's stack file, with only how to reach the cluster (kubeContext, kubeconfig) its own.

    A shard reads the platform's file rather than repeating its settings so the two cannot drift: both compile the
    plan from the same settings and graph of the same commit, which is what makes the shard's contract digest
    comparable with the one the platform applied (plan/shards.py)."""
    platform = raw.get(f"{PROJECT}:platformStack", "")
    if not platform:
        return load_settings(raw, stack, secret_keys=secret_keys, project_dir=project_dir, updating=updating)
    stacks_dir = stacks_dir if stacks_dir is not None else STACKS_DIR
    problems = Problems()
    marked = [key for key in ("platformStack", "shard") if f"{PROJECT}:{key}" in secret_keys]
    for key in marked:
        problems.add(f"{PROJECT}:{key}", *secret_refusal(key))
    problems.raise_if_any(stack)  # nothing below may quote a value stored as a secret
    shard = raw.get(f"{PROJECT}:shard", "")
    for key in sorted(raw):
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and name not in SHARD_STACK_SETTINGS:
            problems.add(key, "is set, but a shard stack holds only platformStack, shard, kubeContext and kubeconfig: "
                         f"every other setting is the platform's", f"Set it in stacks/Pulumi.{short(platform)}.yaml")
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

    platform_raw, platform_secrets = read_stack_file(stack_file(platform, stacks_dir))
    if f"{PROJECT}:platformStack" in platform_raw:
        problems.add(f"{PROJECT}:platformStack", f"stacks/Pulumi.{platform}.yaml is itself a shard stack",
                     "Name the platform stack, the one that sets policyShards: true")
        problems.raise_if_any(stack)
    for key in ("kubeContext", "kubeconfig"):
        if f"{PROJECT}:{key}" in raw:
            platform_raw[f"{PROJECT}:{key}"] = raw[f"{PROJECT}:{key}"]
            # Secret or not as the shard stores it (a secret one stays a Pulumi secret in the shard's provider).
            marks = {f"{PROJECT}:{key}"} & set(secret_keys)
            platform_secrets = (frozenset(platform_secrets) - {f"{PROJECT}:{key}"}) | marks
    settings = load_settings(platform_raw, stack, secret_keys=platform_secrets, project_dir=project_dir,
                             updating=updating)
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


def is_shard_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> bool:
    """Whether a stack file is a shard's (it names a platformStack)."""
    return f"{PROJECT}:platformStack" in read_stack_file(stack_file(stack, stacks_dir))[0]
