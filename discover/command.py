"""The options, exit code and report output shared by `python -m discover` and `python -m discover.istio_traffic`: one module both
import, so neither imports the other's entry point (tests/test_architecture.py: no import circle)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .errors import DiscoverError
from .prometheus import Prometheus

DESCRIPTION = "`python -m discover`: propose allow-list changes to the service graph from the traffic Prometheus recorded."

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other error of the command
        self.exit(EXIT_USAGE, f"error: {message} (see python -m discover --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m discover", description=DESCRIPTION)
    p.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://localhost:9090")
    p.add_argument("--stack", required=True, help="stack whose settings and service graph to compare with")
    p.add_argument("--since", default="7d", help="window to look back over, a Prometheus duration (default 7d)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown", help="report format (default markdown)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--write", metavar="FILE", help="write the proposed service graph to FILE (may be the graph itself)")
    out.add_argument("--diff", action="store_true", help="print only the proposal, as a unified diff of the graph")
    return p


def print_report(args: Any, stack: Any, discover: Callable[..., Any], as_json: Callable[..., dict],
                 as_markdown: Callable[..., str]) -> int:
    """Run `discover` for a loaded stack and print what the options ask for: the diff only, or the report (after
    writing the proposal with --write). A problem the user can fix is one line on stderr and exit 2."""
    try:
        report = discover(stack, Prometheus(args.prometheus), args.since)
        if args.diff:
            sys.stdout.write(report.diff())
            return 0
        if args.write:
            report.write(args.write)
    except DiscoverError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        print(json.dumps(as_json(report, stack.graph), indent=2))
    else:
        sys.stdout.write(as_markdown(report, stack.graph))
    return 0
