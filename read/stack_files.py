"""A stack file (`stacks/Pulumi.<stack>.yaml`) read the way the Pulumi CLI hands its config to the program.

The program itself gets its config from the language host (`runtime.read_stack_config`); tools that run outside
Pulumi (`python -m discover`, the tests' harness) read the stack file here and pass the result to
`settings.load_settings`, so they see exactly the settings and graph `pulumi up` would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from read.settings import PROJECT_DIR

STACKS_DIR = PROJECT_DIR / "stacks"
# What a `secure:` value stands for when the ciphertext cannot (and need not) be decrypted.
SECRET_PLACEHOLDER = "[secret from the stack file]"


def stack_names(stacks_dir: Path = STACKS_DIR) -> tuple[str, ...]:
    return tuple(sorted(p.name.split(".")[1] for p in stacks_dir.glob("Pulumi.*.yaml")))


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
