"""Durations as cert-manager, Linkerd and Vault write them (Go's `48h0m0s`, `10m`, `1.5h`), parsed once."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


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
        position, total = 0, 0.0
        for match in _PART.finditer(compact):
            if match.start() != position:
                break
            number, unit = match.groups()
            if unit == "ms":
                raise ValueError(f"'{text}' uses milliseconds; certificate lifetimes are whole seconds or more")
            total += float(number) * _UNIT_SECONDS[unit]
            position = match.end()
        if position != len(compact):
            raise ValueError(f"'{text}' is not a duration; write hours, minutes and seconds like 48h0m0s, 90m or 8760h")
        if total != int(total):
            raise ValueError(f"'{text}' is not a whole number of seconds")
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
