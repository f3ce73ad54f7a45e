"""`python -m discover`: propose allow-list changes to the service graph from the traffic Prometheus recorded (from
Linkerd's proxy metrics, or Istio's for a stack with `mesh: istio`: discover/istio_traffic.py).

Prints the report (Markdown for a pull-request comment, or JSON) on stdout; `--write FILE` also writes the proposed
graph, `--diff` prints only the proposal as a unified diff. A problem the user can fix is one line on stderr and
exit code 2; nothing is written then.
"""

from __future__ import annotations

import sys

from .command import EXIT_USAGE, parser, print_report
from . import DiscoverError, as_json, as_markdown, discover, load_stack, parse_window


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        parse_window(args.since)
        stack = load_stack(args.stack)
        if stack.settings.mesh == "istio":
            # The stack's sidecars are Istio's: its metrics are istio_requests_total and istio_tcp_*, not Linkerd's.
            from .istio_traffic import run
            return run(args, stack)
    except DiscoverError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return print_report(args, stack, discover, as_json, as_markdown)


if __name__ == "__main__":
    sys.exit(main())
