"""Reading what users hand the program: files named by settings, and the service graph's YAML.

Everything here turns hostile or careless input into an `InputError` (what is wrong, how to fix it) instead of a
hang, a crash or a silently different document:
- only regular files are read (a FIFO or `/dev/zero` would block or never end), and never more than a size limit;
- text must be UTF-8;
- YAML is parsed event by event first, which is iterative in libyaml, so nesting deeper than `MAX_DEPTH` is refused
  before the recursive composer could overflow the C stack (30,000 nested `[` killed the process), and anchors and
  aliases are refused (a 2 KB alias bomb expands to gigabytes);
- a key written twice in one mapping is an error, not "the last one wins";
- plain scalars are typed by the YAML 1.2 core schema (`port: 0443` is 443, `134:40` is text, `2024-01-01` is text),
  and a form that YAML 1.1 or Go's yaml (which kubectl uses) would read differently is refused rather than guessed:
  `yes`/`no`/`on`/`off`/`y`/`n`, a decimal with a leading zero, `0b` binary, a signed hex or octal number, digits with
  `_`, and base-60 `1:30`. Go's readers: sigs.k8s.io/yaml (kubectl) decodes with its fork of go-yaml v2, whose
  booleans include yes/on/y; go-yaml v3 `resolve.go` (`resolve`) still reads `0777` as octal through
  `strconv.ParseInt(plain, 0, 64)` after dropping every `_`, and reads `0b1010`;
- a number has at most `MAX_NUMBER_DIGITS` digits: Python refuses to convert (or print) an int of more than 4,300
  digits, and no setting takes a number beyond 64 bits.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

import yaml

from read.errors import short

# The largest service graph accepted. A 10,000-service graph (benchmarks/synthetic.py) is about 1.9 MB and a 50,000-service
# one 9.6 MB; a real graph's longer names and selectors take more. Parsing stops at MAX_NODES whatever the size.
MAX_GRAPH_BYTES = 32 * 1024 * 1024
# PEM bundles (a CA bundle is a few certificates; a system bundle about 200 KB).
MAX_PEM_BYTES = 1024 * 1024
# Deeper than any sensible graph (services.<key>.allow[i].ports[j] is 5 levels) and far below the C stack's limit.
MAX_DEPTH = 32
# Values (scalars, lists, mappings) in one document: a 50,000-service graph (benchmarks/synthetic.py) has about 1.07
# million; 16 MiB of `[a, a, ...]` has 5 million, which took 50 s and 1.8 GB to build before any limit on them could be
# checked. The largest graph the other limits allow (50,000 services, 125,000 ports, 500,000 callers) has about 1.8
# million; a document just under this limit costs what benchmarks/hostile.py `allow 1990000` prints (docs/service-graph.md, 'Limits').
MAX_NODES = 2_000_000
# A 64-bit number has at most 20 decimal digits (22 octal, 16 hex); anything longer is refused before int() sees it.
MAX_NUMBER_DIGITS = 24

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: much faster on large graphs


class InputError(ValueError):
    def __init__(self, what: str, fix: str = ""):
        super().__init__(what)
        self.what = what
        self.fix = fix


def read_text_file(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"file not found at {path}") from None
    except ValueError:  # a NUL byte in the path
        raise InputError("is not a usable file path (it contains a NUL byte)") from None
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a directory" if stat.S_ISDIR(info.st_mode) else "a named pipe" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file")
        raise InputError(f"{path} is {kind}", "Point the setting at a regular file")
    if info.st_size > limit:
        raise InputError(f"is {info.st_size:,} bytes, more than the limit of {limit:,}",
                         "Split or trim the file; see docs/service-graph.md, 'Limits'")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}") from None
    if len(data) > limit:
        raise InputError(f"is more than the limit of {limit:,} bytes", "Split or trim the file; see docs/service-graph.md, 'Limits'")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise InputError(f"is not UTF-8 text (byte 0x{data[err.start]:02x} at line {line})",
                         "Save the file as UTF-8") from None


class _GraphLoader(_Loader):
    """Safe loading, with a key written twice in one mapping reported instead of silently overwritten."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):  # fewer keys than pairs: some key was written twice
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                first = seen.setdefault(key, key_node)
                if first is not key_node:
                    raise InputError(f"key {str(key)[:60]!r} is written twice in one mapping (lines "
                                     f"{first.start_mark.line + 1} and {key_node.start_mark.line + 1})",
                                     "Keep one: YAML would silently keep only the last")
        return mapping


_GraphLoader.add_constructor("tag:yaml.org,2002:map", _GraphLoader.construct_yaml_map)

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_STR, _NULL_TAG, _BOOL_TAG = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT_TAG, _FLOAT_TAG, _MERGE_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:merge"
_AMBIGUOUS_TAG = "tag:mtls-mesh,2026:ambiguous"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
# Booleans to YAML 1.1 and to kubectl's go-yaml v2 fork; strings to YAML 1.2.
_YAML11_BOOLS = frozenset("y Y yes Yes YES n N no No NO on On ON off Off OFF".split())
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_OTHER_NUMBER = re.compile(r"[-+]?0[bB][0-1_]+|[-+]0[xXoO][0-9a-fA-F_]+|[-+]?[0-9][0-9a-fA-FxXoO_.eE+-]*")
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


def _plain_tag(value: str) -> str:
    if value in _NULLS:
        return _NULL_TAG
    if value in _BOOLS:
        return _BOOL_TAG
    first = value[0]
    if first in "yYnNoO" and value in _YAML11_BOOLS:
        return _AMBIGUOUS_TAG
    if first not in "0123456789+-.":
        return _STR
    if _LEADING_ZERO.fullmatch(value) or _BASE60.fullmatch(value):
        return _AMBIGUOUS_TAG
    if _INT.fullmatch(value):
        return _INT_TAG
    if _FLOAT.fullmatch(value):
        return _FLOAT_TAG
    if _OTHER_NUMBER.fullmatch(value) and ("_" in value or value.lstrip("+-")[:2].lower() in ("0b", "0x", "0o")):
        return _AMBIGUOUS_TAG  # 1_000, 0b101, -0x1f: numbers to Go's yaml and YAML 1.1, text to YAML 1.2
    return _STR


def _ambiguity(value: str) -> tuple[str, str]:
    """What YAML 1.1 / Go would make of an ambiguous plain scalar, and how to write it unambiguously."""
    quoted = short(value)
    if value in _YAML11_BOOLS:
        meaning = value[0] in "yYoO" and value not in ("off", "Off", "OFF")
        return (f"{quoted} is the boolean {str(meaning).lower()} to YAML 1.1 and to kubectl's YAML reader, "
                f"but the text {quoted} to YAML 1.2",
                f"Write {str(meaning).lower()} for a boolean, or quote it ('{value}') for the word")
    if _BASE60.fullmatch(value):
        return (f"{quoted} is a base-60 number to YAML 1.1 but text to YAML 1.2 and Go",
                "Write the number in decimal, or quote it if you mean the text")
    if _LEADING_ZERO.fullmatch(value):
        return (f"{quoted} has a leading zero: YAML 1.1 and Go's yaml (kubectl) read it as octal, YAML 1.2 as decimal",
                "Write it without the leading zero, or with 0o for octal (0o17)")
    return (f"{quoted} is a number to YAML 1.1 and Go's yaml (kubectl) but text to YAML 1.2",
            "Write the number in plain decimal (no '_', no '0b', no sign before 0x/0o), or quote it for the text")


class _Yaml12Loader(_GraphLoader):
    """`_GraphLoader` typing plain scalars by the YAML 1.2 core schema (see the module docstring)."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0]:
            return _MERGE_TAG if value == "<<" else _plain_tag(value)
        return super().resolve(kind, value, implicit)

    def _number_text(self, node) -> str:
        value = self.construct_scalar(node)
        digits = value.lstrip("+-")
        if len(digits) > MAX_NUMBER_DIGITS:
            raise InputError(f"has a number of {len(digits):,} characters at line {node.start_mark.line + 1} "
                             f"({short(value, 20)})", "No setting takes a number beyond 64 bits: write a smaller one")
        return value

    def construct_int12(self, node):
        value = self._number_text(node)
        if not _INT.fullmatch(value) or _LEADING_ZERO.fullmatch(value):
            self.refuse(node)
        sign, digits = (-1, value[1:]) if value[0] == "-" else (1, value.lstrip("+"))
        base = 16 if digits.startswith("0x") else 8 if digits.startswith("0o") else 10
        return sign * int(digits[2:] if base != 10 else digits, base)

    def construct_float12(self, node):
        value = self._number_text(node)
        if not _FLOAT.fullmatch(value) and not _INT.fullmatch(value):
            self.refuse(node)
        return float(value.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf")
                     .replace(".nan", "nan").replace(".NaN", "nan").replace(".NAN", "nan"))

    def construct_bool12(self, node):
        value = self.construct_scalar(node)
        if value not in _BOOLS:
            self.refuse(node)
        return _BOOLS[value]

    def refuse(self, node):
        what, fix = _ambiguity(self.construct_scalar(node))
        raise InputError(f"line {node.start_mark.line + 1}: {what}", fix)


_Yaml12Loader.add_constructor(_INT_TAG, _Yaml12Loader.construct_int12)
_Yaml12Loader.add_constructor(_FLOAT_TAG, _Yaml12Loader.construct_float12)
_Yaml12Loader.add_constructor(_BOOL_TAG, _Yaml12Loader.construct_bool12)
_Yaml12Loader.add_constructor(_AMBIGUOUS_TAG, _Yaml12Loader.refuse)


def _check_structure(text: str, values_before: int = 0) -> int:
    """The number of values the document holds, after `values_before` counted in earlier files of one graph."""
    depth, nodes = 0, values_before
    starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)
        if kind is yaml.AliasEvent or getattr(event, "anchor", None):
            mark = event.start_mark
            raise InputError(f"uses a YAML anchor or alias at line {mark.line + 1}",
                             "Write the value out: anchors and aliases are not accepted in this file")
        if kind is yaml.ScalarEvent or kind in starts:
            nodes += 1
            if nodes > MAX_NODES:
                together = " with the graph's files read before it" if values_before else ""
                raise InputError(f"holds more than {MAX_NODES:,} values (lists, mappings and scalars){together}, "
                                 f"stopped at line {event.start_mark.line + 1}",
                                 "Split the platform into several stacks (see docs/service-graph.md, 'Limits')")
        if kind in starts:
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise InputError(f"nests deeper than {MAX_DEPTH} levels (line {mark.line + 1})",
                                 "No valid document nests that deep")
        elif kind in ends:
            depth -= 1
    return nodes


def load_yaml(text: str) -> Any:
    """One YAML 1.2 document, refusing anchors/aliases, deep nesting, duplicate keys, numbers and booleans that other
    YAML readers would read differently, and numbers too large for any setting (InputError says where)."""
    return load_yaml_counting(text)[0]


def load_yaml_counting(text: str, values_before: int = 0) -> tuple[Any, int]:
    """`load_yaml`, for one of several files that share the `MAX_NODES` limit (a graph split per team): the document,
    and the values counted so far (`values_before` plus this document's)."""
    try:
        values = _check_structure(text, values_before)
        return yaml.load(text, Loader=_Yaml12Loader), values
    except InputError:
        raise
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(err, "problem", None) or err)[:200]
        raise InputError(f"is not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise InputError("nests too deeply to read", f"Keep the nesting under {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError, TypeError) as err:  # a constructor's own failure (e.g. an explicit !!tag)
        raise InputError(f"holds a value that cannot be read ({type(err).__name__})",
                         "Write plain YAML values without explicit tags") from None


# --- the kubeconfig a process outside the cluster uses -------------------------------------------------------------
# client-go's loading rules (k8s.io/client-go/tools/clientcmd/loader.go, `ClientConfigLoadingRules.Load`): the files
# of KUBECONFIG (a path list, `os.pathsep`-separated) in order, else ~/.kube/config; when merging, "the first file to
# set a particular map key wins", and current-context is taken from the first file that sets it. pulumi-kubernetes
# uses these rules when its provider has no kubeconfig setting (provider.go `Configure`:
# `clientcmd.NewDefaultClientConfigLoadingRules`).

MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024


def kubeconfig_files(environ: Mapping[str, str], home: Path) -> list[Path]:
    paths = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p) for p in paths] if paths else [home / ".kube" / "config"]


def current_context(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The current-context of the first kubeconfig file that sets one (None: no file does, or none can be read)."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    for path in kubeconfig_files(environ, home):
        try:
            # A kubeconfig is not ours to validate (kubectl and the provider read it), only its current-context:
            # read as any file a setting names (a regular file, within a size), parsed by the plain YAML loader.
            document = yaml.safe_load(read_text_file(path, MAX_KUBECONFIG_BYTES)) or {}
        except (InputError, yaml.YAMLError):
            continue
        context = document.get("current-context") if isinstance(document, dict) else None
        if isinstance(context, str) and context:
            return context
    return None
