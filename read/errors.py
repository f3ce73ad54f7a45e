"""The one error a bad setting or service graph produces: every problem, each with the key that holds it.

Pure (no Pulumi import), so reading and compiling the settings can run anywhere. The entry point re-raises a
`SettingsError` as `runtime.StackSettingsError`, which is also a `pulumi.RunError`: the Pulumi language host reports
that as a plain message with no traceback, so `pulumi preview` with bad input prints the list of problems and
registers nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (a config key or a service-graph path), what, and how to put it right."""

    where: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}"
        return f"{text}. {self.fix}" if self.fix else text


# The most problems one error prints: the rest are counted (a graph can hold tens of thousands of bad entries, and the
# first hundred show the pattern).
SHOWN_PROBLEMS = 100


class SettingsError(Exception):
    """Raised once, before any resource is registered, listing every problem found."""

    def __init__(self, problems: Iterable[Problem], stack: str = ""):
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.stack = stack
        subject = f"stack '{stack}'" if stack else "this stack"
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the settings of {subject}:"
        lines = [header, *(f"  - {p}" for p in self.problems[:SHOWN_PROBLEMS])]
        if count > SHOWN_PROBLEMS:
            lines.append(f"  ... and {count - SHOWN_PROBLEMS:,} more")
        super().__init__("\n".join(lines))


class Problems:
    """Collects problems while settings are read, so the user sees all of them at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        global _hint_budget
        _hint_budget = HINT_BUDGET

    def add(self, where: str, what: str, fix: str = "") -> None:
        self.items.append(Problem(_cap(conceal(where)), _cap(conceal(what)), _cap(conceal(fix))))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, stack: str = "") -> None:
        if self.items:
            raise SettingsError(self.items, stack)


# A bad value is quoted in a message only this far: a value can be megabytes long (a pasted file, a nested list).
QUOTE_LIMIT = 60
# No single part of a problem is longer than this, whatever was quoted into it.
PART_LIMIT = 1000


# Values stored as secrets (`pulumi config set --secret`) while the settings are read: no message quotes them.
_HIDDEN: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("hidden_values", default=())
HIDDEN_VALUE = "[a secret value, not shown]"
# A hidden value this short is only hidden where it stands as a word of its own: 'a' is in every sentence.
_SHORTEST_HIDDEN_PIECE = 4


@contextlib.contextmanager
def hiding(values: Iterable[str]) -> Iterator[None]:
    """While the block runs, `short` never quotes these values (nor any text holding one, nor a piece of one), and
    every problem added has them, and any quoted piece of them, replaced by HIDDEN_VALUE: a message built any other
    way (an f-string, a library's error text quoting part of a URL) cannot print them either."""
    hidden = tuple(sorted({v for v in values if isinstance(v, str) and v}, key=len, reverse=True))
    token = _HIDDEN.set(_HIDDEN.get() + hidden)
    try:
        yield
    finally:
        _HIDDEN.reset(token)


def _is_hidden(text: str, hidden: tuple[str, ...]) -> bool:
    return any(text == h or (len(h) >= _SHORTEST_HIDDEN_PIECE and h in text)
               or (len(text) >= _SHORTEST_HIDDEN_PIECE and text in h) for h in hidden)


_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")


def conceal(text: str) -> str:
    """`text` with every hidden value, and every quoted piece of one, replaced by HIDDEN_VALUE."""
    hidden = _HIDDEN.get()
    if not hidden or not text:
        return text

    def quoted(match: re.Match) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        # A quoted piece of two characters or more (a port a URL parser quotes); one character ('-', '/') is a
        # fix's own wording far more often than a piece of a secret.
        return HIDDEN_VALUE if len(inner) >= 2 and any(inner in h for h in hidden) else match.group(0)

    text = _QUOTED.sub(quoted, text)
    for value in hidden:
        for form in dict.fromkeys((repr(value), value)):
            if len(form) >= _SHORTEST_HIDDEN_PIECE:
                text = text.replace(form, HIDDEN_VALUE)
            else:
                text = re.sub(rf"(?<![\w.:/-]){re.escape(form)}(?![\w.:/-])", HIDDEN_VALUE, text)
    return text


def short(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, for quoting user input in a message, with any character outside ASCII
    named (`suspicious`): 'frontend' written with a Cyrillic 'е' looks like the right name and is not.

    Containers are summarised without being formatted whole: formatting a large nested value is what takes time; a
    number too large to print (Python refuses to format an int of more than 4,300 digits) is summarised by its size.
    A value stored as a secret (`hiding`) is never quoted.
    """
    hidden = _HIDDEN.get()
    if hidden and isinstance(value, str) and _is_hidden(value, hidden):
        return HIDDEN_VALUE
    if isinstance(value, (dict, list, tuple, set)):
        kind = {dict: "mapping", list: "list", tuple: "list", set: "set"}[type(value)]
        return f"<a {kind} of {len(value)} item{'s' if len(value) != 1 else ''}>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<a number of {value.bit_length():,} bits>"
    if isinstance(value, str) and len(value) > limit:
        length, value = len(value), value[:limit]
        return f"{value!r}... (the first {limit} of {length:,} characters){suspicious(value)}"
    try:
        text = repr(value)
    except ValueError:  # any other value Python cannot format
        return f"<a {type(value).__name__} that cannot be shown>"
    note = suspicious(value) if isinstance(value, str) else ""
    return (text if len(text) <= limit else f"{text[:limit]}...") + note


def short_url(value: str, limit: int = QUOTE_LIMIT) -> str:
    """`short` of a URL with the parts that carry secrets hidden: user information (`user:password@`), the query and
    the fragment (a `?token=...` or `#access_token=...`), each replaced by a placeholder, whatever else is wrong with
    the URL. Split on the text, not by a URL parser: the value may be one no parser accepts."""
    text = str(value)
    if _is_hidden(text, _HIDDEN.get()):  # a URL stored as a secret: no part of it is quoted, its host neither
        return short(text, limit)
    scheme, sep, rest = text.partition("//")
    if not sep:
        scheme, rest = "", text
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:cut], rest[cut:]
    if "@" in head:  # up to the last '@': a password may hold '/' or ':', and then no parser finds the authority
        head = "<credentials hidden>@" + head.rpartition("@")[2]
    placeholders = ""
    if tail.startswith("?"):
        query, _, fragment = tail[1:].partition("#")
        placeholders += "?<query hidden>" if query else "?"
        tail = f"#{fragment}" if "#" in tail else ""
    if tail.startswith("#"):
        placeholders += "#<fragment hidden>" if len(tail) > 1 else "#"
    # The placeholders do not count against the limit: a cut must not leave the reader guessing what was hidden.
    return short(scheme + sep + head + placeholders, limit + len(placeholders))


# At most this many distinct characters are named in one quote.
_NAMED_CHARACTERS = 3


def suspicious(text: str) -> str:
    """' (with Cyrillic 'с' U+0441 CYRILLIC SMALL LETTER ES)' for each character of `text` outside printable ASCII
    (first few, distinct), or '' if there is none. A look-alike letter is named with its script; an invisible or
    control character (which repr already escapes) by its code point and name."""
    if text.isascii() and text.isprintable():
        return ""
    seen: list[str] = []
    for char in text:
        if (char.isascii() and char.isprintable()) or char in seen:
            continue
        seen.append(char)
        if len(seen) == _NAMED_CHARACTERS:
            break
    return f" (with {', '.join(describe_character(c) for c in seen)})"


def describe_character(char: str) -> str:
    """"Cyrillic 'с' U+0441 CYRILLIC SMALL LETTER ES", or "U+200B ZERO WIDTH SPACE" for one that does not show."""
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}{' ' + name if name else ''}"
    if not char.isprintable() or unicodedata.category(char) in ("Zs", "Mn", "Me", "Cf"):
        return code
    words = name.split()
    script = []
    for word in words:  # CYRILLIC SMALL LETTER ES -> Cyrillic; FULLWIDTH DIGIT FOUR -> Fullwidth
        if word in ("SMALL", "CAPITAL", "LETTER", "DIGIT", "SIGN", "MARK"):
            break
        script.append(word)
    label = " ".join(script).capitalize() if script and len(script) < len(words) else "character"
    return f"{label} '{char}' {code}"


def _cap(text: str) -> str:
    return text if len(text) <= PART_LIMIT else f"{text[:PART_LIMIT]}... (cut)"


# How many candidate names 'did you mean' hints may compare in one load (reset by each `Problems()`): a graph of 10,000
# services whose every caller is misspelled would otherwise compare 10,000 names 10,000 times. Past the budget the
# hints are left out; the problems are all still reported.
HINT_BUDGET = 2_000_000
_hint_budget = HINT_BUDGET


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A 'did you mean' hint for a misspelled name, or a list of the valid ones."""
    global _hint_budget
    choices = choices if isinstance(choices, (list, tuple, set, frozenset, dict)) else list(choices)
    if _hint_budget < len(choices):
        return ""
    _hint_budget -= len(choices)
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
