"""Settings stored as secrets, as resource inputs: a `read.settings.Secret` the plan carries becomes a Pulumi secret
(`pulumi.Output.secret`), so the engine encrypts it in the state and every input that carries it shows as secret."""

from __future__ import annotations

from typing import Any

import pulumi

from read.settings import Secret


def secret_input(value: Any) -> Any:
    """`value` as an input: a Secret, or a dict or list holding one, turned into Pulumi secrets; anything else as is."""
    if isinstance(value, Secret):
        return pulumi.Output.secret(value.reveal())
    if isinstance(value, dict):
        return {key: secret_input(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [secret_input(item) for item in value]
    return value
