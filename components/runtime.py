"""What the program's process needs from the Pulumi runtime, and gives it: the stack's config, settings errors in
the form the language host reports cleanly, and a garbage collector tuned for a one-shot run.

The entry point (`__main__.py`) calls these; nothing that reads or compiles settings imports this module (it
imports Pulumi).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any, Iterator

import pulumi

from read.errors import SettingsError


def read_stack_config() -> tuple[dict[str, str], frozenset[str]]:
    """Every config value of the running stack (as the language host passed it) and which keys are secret."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    return values, frozenset(secret_keys)


class StackSettingsError(SettingsError, pulumi.RunError):
    """A SettingsError as the program raises it to Pulumi: a `pulumi.RunError`, which the language host reports as a
    plain message with no traceback (pulumi SDK `errors.py` `RunError`), so a bad setting prints its list of
    problems and nothing else."""


@contextlib.contextmanager
def settings_errors_reported() -> Iterator[None]:
    """Re-raise a SettingsError from within as a StackSettingsError (same problems, same message)."""
    try:
        yield
    except SettingsError as err:
        if isinstance(err, pulumi.RunError):
            raise
        raise StackSettingsError(err.problems, err.stack) from None


def tune_garbage_collector() -> None:
    """A Pulumi program is a short-lived process that builds one large object graph. The cyclic collector's repeated
    scans of it cost about a third of the run at a few thousand services and free almost nothing
    (benchmarks/run.py), so it runs rarely; reference counting still frees everything else at once. What exists now
    (the imported modules) is frozen out of every later collection."""
    gc.freeze()
    gc.set_threshold(200_000, 100, 10_000)


def unknown_output() -> pulumi.Output:
    """A value this preview does not know, as the engine gives one no resource has made yet: a read whose id is this
    is skipped in a preview (pulumi pkg/resource/deploy/step.go ReadStep.Apply), a value shows as unknown."""
    loop = asyncio.get_event_loop()

    def done(value: Any) -> asyncio.Future:
        future = loop.create_future()
        future.set_result(value)
        return future

    return pulumi.Output(set(), done(None), done(False))
