"""The one error a bad setting or service graph produces: every problem, each with the key that holds it.

Pure (no Pulumi import), so reading and compiling the settings can run anywhere. The entry point re-raises a
`SettingsError` as `runtime.StackSettingsError`, which is also a `pulumi.RunError`: the Pulumi language host reports
that as a plain message with no traceback, so `pulumi preview` with bad input prints the list of problems and
registers nothing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (a config key or a service-graph path), what, and how to put it right."""

    where: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}"
        return f"{text}. {self.fix}" if self.fix else text


class SettingsError(Exception):
    """Raised once, before any resource is registered, listing every problem found."""

    def __init__(self, problems: Iterable[Problem], stack: str = ""):
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.stack = stack
        subject = f"stack '{stack}'" if stack else "this stack"
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the settings of {subject}:"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class Problems:
    """Collects problems while settings are read, so the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, where: str, what: str, fix: str = "") -> None:
        self.items.append(Problem(_cap(where), _cap(what), _cap(fix)))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, stack: str = "") -> None:
        if self.items:
            raise SettingsError(self.items, stack)


# A bad value is quoted in a message only this far: a value can be megabytes long (a pasted file, a nested list).
QUOTE_LIMIT = 60
# No single part of a problem is longer than this, whatever was quoted into it.
PART_LIMIT = 1000


def short(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, for quoting user input in a message.

    Containers are summarised without being formatted whole: formatting a large nested value is what takes time.
    """
    if isinstance(value, (dict, list, tuple, set)):
        kind = {dict: "mapping", list: "list", tuple: "list", set: "set"}[type(value)]
        return f"<a {kind} of {len(value)} item{'s' if len(value) != 1 else ''}>"
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
        return f"{value!r}... ({limit} of more characters shown)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _cap(text: str) -> str:
    return text if len(text) <= PART_LIMIT else f"{text[:PART_LIMIT]}... (cut)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint for a misspelled name, or a list of the valid ones."""
    choices = sorted(set(choices))
    if len(word) > 2 * QUOTE_LIMIT:  # nothing that long is a misspelling, and difflib is quadratic in it
        word = ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6) if word else []
    if close:
        return f"Did you mean '{close[0]}'?"
    if not choices:
        return ""
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"Known: {shown}."
