"""Durations as cert-manager, Linkerd and Vault write them (Go's `48h0m0s`, `10m`, `1.5h`), parsed once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
# ASCII digits only: Python's \d also matches other scripts' digits, which Go's parser (and cert-manager) refuse.
_PART = re.compile(r"([0-9]{1,20}(?:\.[0-9]{1,20})?)(h|ms|m|s)")
# Go's time.Duration is an int64 of nanoseconds: 2562047h47m16.854775807s. cert-manager, Linkerd and Vault parse
# durations into it, so nothing longer can be written down for them.
MAX_SECONDS = (2**63 - 1) // 10**9


@dataclass(frozen=True, order=True)
class Duration:
    """A whole number of seconds; sub-second precision has no use in certificate lifetimes."""

    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Duration":
        """Parse a Go duration of hours, minutes and seconds. Raises ValueError with a reason."""
        if not isinstance(text, str):
            raise ValueError(f"expected a duration string like 48h0m0s, got {type(text).__name__}")
        compact = text.strip()
        if not compact:
            raise ValueError("is empty; expected a duration like 48h0m0s")
        if len(compact) > 64:
            raise ValueError(f"'{compact[:40]}...' is too long to be a duration")
        position, total = 0, Fraction(0)
        for match in _PART.finditer(compact):
            if match.start() != position:
                break
            number, unit = match.groups()
            if unit == "ms":
                raise ValueError(f"'{text}' uses milliseconds; certificate lifetimes are whole seconds or more")
            total += Fraction(number) * _UNIT_SECONDS[unit]
            position = match.end()
        if position != len(compact):
            raise ValueError(f"'{text}' is not a duration; write hours, minutes and seconds like 48h0m0s, 90m or 8760h")
        if total.denominator != 1:
            raise ValueError(f"'{text}' is not a whole number of seconds")
        if total > MAX_SECONDS:
            raise ValueError(f"'{text}' is longer than the longest duration Go can hold "
                             f"({cls(MAX_SECONDS).go()}, about 292 years)")
        return cls(int(total))

    def go(self) -> str:
        """Canonical Go form, as cert-manager writes durations back (`48h0m0s`)."""
        hours, rest = divmod(self.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{hours}h{minutes}m{seconds}s"

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def __str__(self) -> str:
        return self.go()
