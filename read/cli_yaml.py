"""YAML and config values as the Pulumi CLI reads them: `Pulumi.yaml`'s config declarations and a stack file's
config, decoded the way the CLI decodes them and rendered as the strings it hands the program.

Not PyYAML's YAML 1.1 (which turns `017` into 15 by a different rule, `1:30` into 90, `yes` into True and dates into
`datetime`): the CLI uses gopkg.in/yaml.v3 v3.0.1 (pulumi `sdk/go.mod`, `pkg/go.mod`), whose resolver is mostly
YAML 1.2 with a few 1.1 leftovers, and it decodes every value twice. Facts, from pulumi commit
1b5949891b3cefcb9974752b24a5ecef0acc86c8 and go-yaml v3.0.1 (f6f7691b1fdeb513f56608cd2c32c51f8194bf51):

- The stack file (`sdk/go/common/workspace/loaders.go` `LoadProjectStackBytes`) and Pulumi.yaml (`LoadProjectBytes`)
  are first decoded into `any`, then re-encoded (`yamlutil.YamlEncode`) and decoded again: each config value into a
  `config.Value` (`sdk/go/common/resource/config/value.go` `UnmarshalYAML` -> `object.go` `unmarshalObject`, again
  into `any`), each default into `ProjectConfigType.Default any` (`project.go`). So a scalar's type is what yaml.v3's
  `resolve` (`resolve.go`) makes of it, and its text is how the value is printed afterwards, never its spelling.
- `resolve` (plain scalars only; quoted and block scalars are strings): `true/True/TRUE/false/False/FALSE` are
  booleans (not `yes`/`on`); `''`, `~`, `null/Null/NULL` are null; `.inf`, `.nan` (and case variants) floats; a
  scalar starting with a digit or sign is tried as a timestamp (`2006-1-2`, `2006-1-2T15:4:5.999999999Z07:00`, its
  lower-case `t` form, `2006-1-2 15:4:5.999999999`), then, with every `_` removed, as Go's
  `strconv.ParseInt(s, 0, 64)` (so `0x1F` is 31, `0b11` 3, `0o17` and `017` are 15: the 1.1 octal is kept), then
  `ParseUint`, then a float of the form `[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`; base-60 (`1:30`) is
  purposely not supported: it stays a string. Anything else is a string.
- A stack value then becomes text (`object.go` `MarshalString`): a string as it is; a boolean `true`/`false`; an
  integer in decimal; a float as Go's `encoding/json` prints it (`1.5`, `1e+21`; an integral float prints like an
  integer; NaN and infinities make the CLI fail); a timestamp as Go's `time.Time.String()` (`2024-01-01` becomes
  `2024-01-01 00:00:00 +0000 UTC`); null (`key:` with no value) as the empty string (`loaders.go`
  `checkForEmptyConfig` warns about it); a list or mapping as compact JSON with sorted keys (`json.Marshal`), nested
  scalars by the same rules and nested non-string keys printed with `%v`. `{secure: <string>}` is a secret, and so is a
  list or mapping holding one (`object.Secure`): its key is a secret key, decrypted in place.
- A default (`pkg/workspace/config.go` `createConfigValue`): a string, an integer or a boolean with `fmt.Sprintf("%v")`
  (`false`, `3`), anything else as JSON (`[]`, `["a","b"]`).
- Values reach the language host through `config.Map.Decrypt` (`map.go`), which re-reads JSON values with `UseNumber`
  and prints them again: integers beyond int64 become floats (`18446744073709552000`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

# Resolving a document beyond this many nodes (aliases expanded) is refused: yaml.v3 refuses "excessive aliasing"
# (decode.go `allowedAliasRatio`), and an alias bomb must not hang a tool that reads a stack file.
MAX_NODES = 200_000
# A rendered value longer than this is refused for the same reason.
MAX_TEXT = 4 * 1024 * 1024

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_UINT64 = 2**64 - 1


class CliYamlError(ValueError):
    """What the CLI would refuse to load (or could not load the same way every time)."""


@dataclass(frozen=True)
class GoTime:
    """A yaml.v3 timestamp: the wall clock it was written with and its zone offset (None: no zone given, UTC)."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    nanosecond: int = 0
    offset: int | None = None

    def string(self) -> str:
        """Go's `time.Time.String()` of it after the CLI's re-encoding (RFC 3339 and back): UTC when the offset is 0
        (re-encoded as `Z`), otherwise a zone with no name, which Go prints as its offset (assumed: time.Parse would
        take the local zone's name instead were the machine's zone at that offset)."""
        fraction = f".{self.nanosecond:09d}".rstrip("0").rstrip(".") if self.nanosecond else ""
        clock = (f"{self.year:04d}-{self.month:02d}-{self.day:02d} {self.hour:02d}:{self.minute:02d}:"
                 f"{self.second:02d}{fraction}")
        offset = self.offset or 0
        sign = "-" if offset < 0 else "+"
        minutes = abs(offset) // 60
        zone = f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
        return f"{clock} {zone} {'UTC' if offset == 0 else zone}"

    def rfc3339(self) -> str:
        fraction = f".{self.nanosecond:09d}".rstrip("0").rstrip(".") if self.nanosecond else ""
        offset = self.offset or 0
        if offset == 0:
            zone = "Z"
        else:
            minutes = abs(offset) // 60
            zone = f"{'-' if offset < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
        return (f"{self.year:04d}-{self.month:02d}-{self.day:02d}T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
                f"{fraction}{zone}")


# --- yaml.v3 resolve.go -------------------------------------------------------------------------------------------

_RESOLVE_MAP: dict[str, tuple[str, Any]] = {}
for _value, _tag, _spellings in (
        (True, "!!bool", ("true", "True", "TRUE")), (False, "!!bool", ("false", "False", "FALSE")),
        (None, "!!null", ("", "~", "null", "Null", "NULL")), (math.nan, "!!float", (".nan", ".NaN", ".NAN")),
        (math.inf, "!!float", (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")),
        (-math.inf, "!!float", ("-.inf", "-.Inf", "-.INF")), ("<<", "!!merge", ("<<",))):
    for _spelling in _spellings:
        _RESOLVE_MAP[_spelling] = (_tag, _value)

_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseFloat on the text `resolve` hands it when it starts with '.'.
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_RESOLVABLE = ("", "!!str", "!!bool", "!!int", "!!float", "!!null", "!!timestamp")
_LONG_PREFIX = "tag:yaml.org,2002:"


def short_tag(tag: str | None) -> str:
    if not tag:
        return ""
    return "!!" + tag[len(_LONG_PREFIX):] if tag.startswith(_LONG_PREFIX) else tag


def _hint(text: str) -> str:
    if text == "":
        return "N"
    first = text[0]
    if first in "+-":
        return "S"
    if first.isascii() and first.isdigit():
        return "D"
    if first in "yYnNtTfFoO~":
        return "M"
    if first == ".":
        return "."
    return ""


def go_parse_int(text: str, unsigned: bool = False) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64) (ParseUint with `unsigned`): base from the prefix (0x, 0o, 0b, a bare 0 is
    octal), underscores only between digits of a prefixed number (resolve removed them all anyway), range-checked."""
    body, negative = text, False
    if body[:1] in ("+", "-"):
        if unsigned:
            return None
        negative = body[0] == "-"
        body = body[1:]
    base = 10
    lowered = body[:2].lower()
    if lowered in ("0x", "0o", "0b"):
        base = {"0x": 16, "0o": 8, "0b": 2}[lowered]
        body = body[2:]
    elif len(body) > 1 and body[0] == "0":
        base = 8
        body = body[1:]
    if not body or "_" in body:
        return None
    digits = "0123456789abcdef"[:base]
    if any(c not in digits for c in body.lower()):
        return None
    value = int(body, base)
    value = -value if negative else value
    if unsigned:
        return value if value <= MAX_UINT64 else None
    return value if MIN_INT64 <= value <= MAX_INT64 else None


def _go_parse_float(text: str) -> float | None:
    """strconv.ParseFloat for the decimal forms resolve passes it; out of range is an error (it stays a string)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isinf(value) else value


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in(month: int, year: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS[month - 1]


_ONE_OR_TWO = r"([0-9]{1,2})"
_FRACTION = r"(?:[.,]([0-9]{1,9}))?"
_TIMESTAMP_FORMATS = (
    # Go layouts (resolve.go allowedTimestampFormats) as expressions: "2006-1-2T15:4:5.999999999Z07:00", its 't' twin,
    # "2006-1-2 15:4:5.999999999" (a layout space matches one or more spaces) and "2006-1-2".
    re.compile(rf"([0-9]{{4}})-{_ONE_OR_TWO}-{_ONE_OR_TWO}T{_ONE_OR_TWO}:{_ONE_OR_TWO}:{_ONE_OR_TWO}{_FRACTION}"
               r"(Z|[+-][0-9]{2}:[0-9]{2})"),
    re.compile(rf"([0-9]{{4}})-{_ONE_OR_TWO}-{_ONE_OR_TWO}t{_ONE_OR_TWO}:{_ONE_OR_TWO}:{_ONE_OR_TWO}{_FRACTION}"
               r"(Z|[+-][0-9]{2}:[0-9]{2})"),
    re.compile(rf"([0-9]{{4}})-{_ONE_OR_TWO}-{_ONE_OR_TWO} +{_ONE_OR_TWO}:{_ONE_OR_TWO}:{_ONE_OR_TWO}{_FRACTION}()"),
    re.compile(rf"([0-9]{{4}})-{_ONE_OR_TWO}-{_ONE_OR_TWO}()()()()()"),
)


def parse_timestamp(text: str) -> GoTime | None:
    if not re.match(r"[0-9]{4}-", text):
        return None
    for pattern in _TIMESTAMP_FORMATS:
        match = pattern.fullmatch(text)
        if not match:
            continue
        year, month, day, hour, minute, second, fraction, zone = (match.groups() + ("",))[:8]
        year, month, day = int(year), int(month), int(day)
        hour, minute, second = int(hour or 0), int(minute or 0), int(second or 0)
        if not (1 <= month <= 12 and 1 <= day <= _days_in(month, year) and hour < 24 and minute < 60
                and second < 60):
            continue
        nanosecond = int((fraction or "")[:9].ljust(9, "0")) if fraction else 0
        offset = None
        if zone and zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 24 or minutes > 60:
                continue
            offset = (hours * 3600 + minutes * 60) * (-1 if zone[0] == "-" else 1)
        return GoTime(year, month, day, hour, minute, second, nanosecond, offset)
    return None


def resolve(tag: str, text: str) -> tuple[str, Any]:
    """yaml.v3's `resolve(tag, in)`: the tag and Go value of a scalar (an int is Go's int/uint64, a float a float)."""
    tag = short_tag(tag)
    if tag not in _RESOLVABLE:
        return tag, text
    rtag, out = _resolve_untagged(tag, text)
    if tag in ("", rtag, "!!str", "!!binary"):
        return rtag, out
    if tag == "!!float" and rtag == "!!int":
        return "!!float", float(out)
    raise CliYamlError(f"cannot decode {rtag} `{text}` as a {tag}")


def _resolve_untagged(tag: str, text: str) -> tuple[str, Any]:
    hint = _hint(text)
    if hint and tag not in ("!!str", "!!binary"):
        if text in _RESOLVE_MAP:
            return _RESOLVE_MAP[text]
        if hint == ".":
            if _DOT_FLOAT.fullmatch(text):
                value = _go_parse_float(text)
                if value is not None:
                    return "!!float", value
        elif hint in ("D", "S"):
            if tag in ("", "!!timestamp"):
                stamp = parse_timestamp(text)
                if stamp is not None:
                    return "!!timestamp", stamp
            plain = text.replace("_", "")
            for unsigned in (False, True):
                number = go_parse_int(plain, unsigned)
                if number is not None:
                    return "!!int", number
            if _YAML_STYLE_FLOAT.fullmatch(plain):
                value = _go_parse_float(plain)
                if value is not None:
                    return "!!float", value
    return "!!str", text


# --- composing nodes into Go values (decode.go) --------------------------------------------------------------------

_UNTAGGED = "!?untagged"


class _NodeLoader(yaml.SafeLoader):
    """PyYAML's parser and composer only: no resolution (yaml.v3 resolves, below)."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001 (PyYAML's signature)
        if kind is yaml.ScalarNode:
            return _UNTAGGED
        return (self.DEFAULT_SEQUENCE_TAG if kind is yaml.SequenceNode else self.DEFAULT_MAPPING_TAG)


class GoMap(dict):
    """A decoded mapping whose keys are not all strings (Go's map[interface{}]interface{}), keyed by GoKey."""


@dataclass(frozen=True)
class GoKey:
    """A key of a GoMap: Go tells 1, 1.0 and true apart, Python's dict would not."""

    kind: str
    value: Any


class _Decoder:
    def __init__(self) -> None:
        self.nodes = 0

    def value(self, node: yaml.Node) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise CliYamlError(f"more than {MAX_NODES:,} values once anchors and aliases are expanded")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)[1]
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item) for item in node.value]
        return self.mapping(node)

    def scalar(self, node: yaml.ScalarNode) -> tuple[str, Any]:
        tag = "" if node.tag in (_UNTAGGED, "!") else short_tag(node.tag)
        if not tag and node.style:  # quoted or block: a string
            return "!!str", node.value
        if tag == "!!binary":
            try:
                return "!!str", base64.b64decode(node.value, validate=False).decode("utf-8", errors="replace")
            except ValueError as err:
                raise CliYamlError("!!binary value contains invalid base64 data") from err
        return resolve(tag, node.value)

    def is_string_key(self, node: yaml.Node) -> bool:
        if not isinstance(node, yaml.ScalarNode):
            return False
        tag, _ = self.scalar(node)
        return tag in ("!!str", "!!merge")

    def mapping(self, node: yaml.MappingNode) -> dict:
        pairs = node.value
        seen: dict[tuple[type, str], int] = {}
        for key_node, _ in pairs:
            # yaml.v3 compares a key's kind and source text (decode.go `mapping`, uniqueKeys).
            ident = (type(key_node), key_node.value if isinstance(key_node, yaml.ScalarNode) else "")
            if ident in seen:
                raise CliYamlError(f"line {key_node.start_mark.line + 1}: mapping key {key_node.value!r} already "
                                   f"defined at line {seen[ident]}")
            seen[ident] = key_node.start_mark.line + 1
        string_keys = all(self.is_string_key(k) for k, _ in pairs)
        out: dict = {} if string_keys else GoMap()
        merges = []
        for key_node, value_node in pairs:
            if isinstance(key_node, yaml.ScalarNode) and not key_node.style and key_node.value == "<<" and \
                    key_node.tag in (_UNTAGGED, "tag:yaml.org,2002:merge"):
                merges.append(value_node)
                continue
            key = self.key(key_node)
            out[key if string_keys else GoKey(type(key).__name__, key)] = self.value(value_node)
        # A merge never overrides a key the mapping sets itself; of several merged mappings the first wins.
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    raise CliYamlError("map merge requires map or sequence of maps as the value")
            for source in sources:
                merged = self.mapping(source)
                for key, value in merged.items():
                    if not string_keys and not isinstance(key, GoKey):
                        key = GoKey(type(key).__name__, key)
                    out.setdefault(key, value)
        return out

    def key(self, node: yaml.Node) -> Any:
        value = self.value(node)
        if isinstance(value, (list, dict)):
            raise CliYamlError(f"line {node.start_mark.line + 1}: a mapping key must be a scalar")
        return value


def load(text: str) -> Any:
    """The first document of `text` as yaml.v3 decodes it into `any` (later documents are not read, as
    `yaml.Unmarshal` reads only the first)."""
    loader = _NodeLoader(text)
    try:
        node = loader.get_node() if loader.check_node() else None
    except yaml.YAMLError as err:
        raise CliYamlError(f"invalid YAML: {err}") from None
    finally:
        loader.dispose()
    return None if node is None else _Decoder().value(node)


def reload(value: Any) -> Any:
    """A decoded value after the CLI's re-encoding and second decode (yamlutil.YamlEncode, then yaml.v3 again): a
    float that Go prints without a '.' or exponent (`%g`: integral, below 1e6) comes back an integer; everything else
    comes back as it was."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e6:
        return int(value)
    if isinstance(value, list):
        return [reload(item) for item in value]
    if isinstance(value, dict):
        # Keys that print alike (1 and 1.0, 1 and "1") are duplicates to the second decode.
        printed = [_emitted(key.value if isinstance(key, GoKey) else key) for key in value]
        if len(set(printed)) != len(printed):
            twice = next(text for text in printed if printed.count(text) > 1)
            raise CliYamlError(f"mapping key {twice!r} is there twice once the CLI has re-encoded the file")
    if isinstance(value, GoMap):
        out = GoMap()
        for key, item in value.items():
            reloaded = reload(key.value)
            out[GoKey(type(reloaded).__name__, reloaded)] = reload(item)
        return out
    if isinstance(value, dict):
        return {key: reload(item) for key, item in value.items()}
    return value


def _emitted(value: Any) -> str:
    """The text yaml.v3's encoder writes for a scalar (encode.go): what the second decode compares keys by."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(go_float_text(value), go_float_text(value))
    if isinstance(value, GoTime):
        return value.rfc3339()
    return str(value)


# --- rendering (Go's fmt and encoding/json, pulumi's config object) ------------------------------------------------

def go_json_float(value: float) -> str:
    """encoding/json's float64: the shortest digits, %f between 1e-6 and 1e21, otherwise %e with `e-07` as `e-7`."""
    if not math.isfinite(value):
        raise CliYamlError(f"json: unsupported value: {go_float_text(value)}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)  # Python's repr is the shortest round-tripping digits, in exponent form at these sizes
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0] if exponent[:1] in "+-" else "+"
        digits = exponent.lstrip("+-")
        if sign == "-" and len(digits) == 2 and digits[0] == "0":
            digits = digits[1:]
        elif len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def go_float_text(value: float) -> str:
    """fmt's %v of a float64 (strconv 'g' with the shortest digits: %e below 1e-4 and from 1e6 on)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    negative = "-" if math.copysign(1, value) < 0 else ""
    if value == 0:
        return f"{negative}0"
    shortest = Decimal(repr(abs(value))).normalize()
    _, digits, exponent = shortest.as_tuple()
    decimal_exponent = len(digits) + exponent - 1
    if decimal_exponent < -4 or decimal_exponent >= 6:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        return f"{negative}{mantissa}e{'-' if decimal_exponent < 0 else '+'}{abs(decimal_exponent):02d}"
    return f"{negative}{format(shortest, 'f')}"


def _go_string(text: str) -> str:
    rendered = json.dumps(text, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        rendered = rendered.replace(char, escaped)
    return rendered


def _is_secure(value: Any) -> bool:
    """`{secure: <string>}`, and nothing else, is a ciphertext (object.go `isSecureValue`)."""
    return type(value) is dict and len(value) == 1 and isinstance(value.get("secure"), str)


def percent_v(key: Any) -> str:
    """fmt's %v of a decoded map key (object.go `unmarshalObject`, map[any]any)."""
    if isinstance(key, GoKey):
        key = key.value
    if key is None:
        return "<nil>"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float):
        return go_float_text(key)
    if isinstance(key, GoTime):
        return key.string()
    return str(key)


def contains_secret(value: Any) -> bool:
    if _is_secure(value):
        return True
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    return False


class _Json:
    """Go's json.Marshal of pulumi's config object (map keys sorted), within a size budget."""

    def __init__(self, secret_text: str):
        self.secret_text = secret_text
        self.size = 0

    def render(self, value: Any) -> str:
        parts: list[str] = []
        self._render(value, parts)
        return "".join(parts)

    def _add(self, parts: list[str], text: str) -> None:
        self.size += len(text)
        if self.size > MAX_TEXT:
            raise CliYamlError(f"a value longer than {MAX_TEXT:,} characters")
        parts.append(text)

    def _render(self, value: Any, parts: list[str]) -> None:
        if _is_secure(value):
            self._add(parts, _go_string(self.secret_text))
        elif value is None:
            self._add(parts, "null")
        elif isinstance(value, bool):
            self._add(parts, "true" if value else "false")
        elif isinstance(value, int):
            # Decrypt re-reads the JSON with UseNumber: what does not fit int64 comes back a float64.
            self._add(parts, str(value) if MIN_INT64 <= value <= MAX_INT64 else go_json_float(float(value)))
        elif isinstance(value, float):
            self._add(parts, go_json_float(value))
        elif isinstance(value, str):
            self._add(parts, _go_string(value))
        elif isinstance(value, GoTime):
            self._add(parts, _go_string(value.string()))
        elif isinstance(value, list):
            self._add(parts, "[")
            for index, item in enumerate(value):
                if index:
                    self._add(parts, ",")
                self._render(item, parts)
            self._add(parts, "]")
        else:
            items = {(percent_v(key) if isinstance(value, GoMap) else key): item for key, item in value.items()}
            self._add(parts, "{")
            for index, key in enumerate(sorted(items)):
                if index:
                    self._add(parts, ",")
                self._add(parts, _go_string(key) + ":")
                self._render(items[key], parts)
            self._add(parts, "}")


def config_text(value: Any, secret_text: str) -> tuple[str, bool]:
    """A stack file's config value (as `load` decoded it) as the text the CLI hands the program, and whether it is a
    secret. `secret_text` stands for each ciphertext's plaintext."""
    text, secret, _ = config_value(value, secret_text)
    return text, secret


def config_value(value: Any, secret_text: str) -> tuple[str, bool, bool]:
    """config_text, and whether the CLI holds the value as an object (a list or mapping: JSON text), which its type
    check parses (pkg/workspace/config.go `validateStackConfigValue`)."""
    value = reload(value)
    if _is_secure(value):
        return secret_text, True, False
    if value is None:
        return "", False, False
    if isinstance(value, (list, dict)):
        return _Json(secret_text).render(value), contains_secret(value), True
    return scalar_text(value), False, False


def from_python(value: Any) -> Any:
    """A Python value as yaml.v3 would decode it had it been written into a stack file (by its JSON text): an integer
    beyond uint64 is a float (or, beyond a float's range, the digits as a string); a mapping with a key that is not a
    string is a GoMap."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        if MIN_INT64 <= value <= MAX_UINT64:
            return value
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, (list, tuple)):
        return [from_python(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: from_python(item) for key, item in value.items()}
        out = GoMap()
        for key, item in value.items():
            key = from_python(key)
            out[GoKey(type(key).__name__, key)] = from_python(item)
        return out
    return str(value)


def plain(value: Any) -> Any:
    """A decoded value (after `reload`) with Python's types only: a timestamp as the text the CLI hands over, a
    mapping with keys that are not strings keyed by their %v text, `{secure: ...}` kept as it is."""
    value = reload(value)
    if isinstance(value, GoTime):
        return value.string()
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, GoMap):
        return {percent_v(key): plain(item) for key, item in value.items()}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def go_atoi(text: str) -> bool:
    """Whether Go's strconv.Atoi accepts `text`: an optional sign and decimal digits within int64."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return False
    return MIN_INT64 <= int(text) <= MAX_INT64


def scalar_text(value: Any) -> str:
    """object.go MarshalString of a scalar: a string as it is, the rest as JSON, a timestamp as time.String()."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_json_float(value)
    if isinstance(value, GoTime):
        return value.string()
    raise CliYamlError(f"unexpected value {value!r}")


def default_is_object(value: Any) -> bool:
    """createConfigValue makes anything but a string, an int or a bool an object (JSON)."""
    value = reload(value)
    return not (isinstance(value, (str, bool)) or (isinstance(value, int) and MIN_INT64 <= value <= MAX_INT64))


def default_text(value: Any) -> str:
    """A Pulumi.yaml default (after `reload`) as createConfigValue renders it and Decrypt hands it over: a string, an
    int or a bool with %v, anything else as JSON (a timestamp as the JSON string Go marshals a time.Time to)."""
    value = reload(value)
    if isinstance(value, (str, bool)) or (isinstance(value, int) and MIN_INT64 <= value <= MAX_INT64):
        return scalar_text(value)
    if isinstance(value, GoTime):
        return value.rfc3339()
    return _Json("").render(value)


def _yaml_printable(char: str) -> bool:
    """libyaml's printable set (what a YAML file may hold unescaped): tab, LF, CR, NEL and the printable planes."""
    code = ord(char)
    return (code in (0x09, 0x0A, 0x0D, 0x85) or 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD and code != 0xFEFF or 0x10000 <= code <= 0x10FFFF)


def double_quoted(text: str) -> str:
    """`text` as a YAML double-quoted scalar that every YAML reader, yaml.v3 included, reads back as exactly `text`:
    JSON's escapes (a subset of YAML's), no surrogate escapes, and line and paragraph separators and whatever YAML
    may not hold raw escaped."""
    out = []
    for char in json.dumps(text, ensure_ascii=False)[1:-1]:
        code = ord(char)
        if char in "\x85\u2028\u2029" or not _yaml_printable(char):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
