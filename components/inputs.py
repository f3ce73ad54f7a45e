"""Reading what users hand the program: files named by settings, and the service graph's YAML.

Everything here turns hostile or careless input into an `InputError` (what is wrong, how to fix it) instead of a
hang, a crash or a silently different document:
- only regular files are read (a FIFO or `/dev/zero` would block or never end), and never more than a size limit;
- text must be UTF-8;
- YAML is parsed event by event first, which is iterative in libyaml, so nesting deeper than `MAX_DEPTH` is refused
  before the recursive composer could overflow the C stack (30,000 nested `[` killed the process), and anchors and
  aliases are refused (a 2 KB alias bomb expands to gigabytes);
- a key written twice in one mapping is an error, not "the last one wins".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

# The largest service graph accepted. A 10,000-service graph (benchmarks/synthetic.py) is about 2.2 MB.
MAX_GRAPH_BYTES = 16 * 1024 * 1024
# PEM bundles (a CA bundle is a few certificates; a system bundle about 200 KB).
MAX_PEM_BYTES = 1024 * 1024
# Deeper than any sensible graph (services.<key>.allow[i].ports[j] is 5 levels) and far below the C stack's limit.
MAX_DEPTH = 32

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
                         "Split or trim the file; see README, 'Limits'")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise InputError(f"cannot be read: {err.strerror}") from None
    if len(data) > limit:
        raise InputError(f"is more than the limit of {limit:,} bytes", "Split or trim the file; see README, 'Limits'")
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


def _check_structure(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise InputError(f"uses a YAML anchor or alias at line {mark.line + 1}",
                             "Write the value out: anchors and aliases are not accepted in this file")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise InputError(f"nests deeper than {MAX_DEPTH} levels (line {mark.line + 1})",
                                 "No valid document nests that deep")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load_yaml(text: str) -> Any:
    """One YAML document, refusing anchors/aliases, deep nesting and duplicate keys (InputError says where)."""
    try:
        _check_structure(text)
        return yaml.load(text, Loader=_GraphLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(err, "problem", None) or err)[:200]
        raise InputError(f"is not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise InputError("nests too deeply to read", f"Keep the nesting under {MAX_DEPTH} levels") from None
