"""Discover the allow-list from traffic: compare what the proxies report to Prometheus with a stack's service graph.

The proxies count every inbound request and connection they authorize or refuse (`inbound_{http,tcp}_authz_
{allow,deny}_total`, linkerd2-proxy linkerd/app/inbound/src/metrics/authz.rs; ../shared/upstream/linkerd/METRICS.md)
with the Server (`srv_kind`, `srv_name`), the caller's TLS state (`tls`) and mesh identity (`client_id`); the
program's PodMonitor adds the pod's `namespace`. This package maps those labels back to the graph with the program's
own naming (the Servers of the compiled plan, `graph.mesh_identity` for callers) and reports:

- edges seen but not allowed by the graph, with counts and first/last seen, as a proposed `services.yaml` that keeps
  its comments and layout (ruamel.yaml round trip, a tool dependency only);
- allowed edges never seen in the window (candidates to remove: never removed automatically);
- plaintext callers and identities the graph does not know, listed apart and never turned into allows.

"Allowed or not" is decided by comparing `client_id` with the graph's edges, never by `authz_name`: in an `audit`
namespace Linkerd may count an allowed caller under `authz_name=audit` (docs/authorization.md, "Reading the access
matrix").
Settings and graph are loaded and compiled exactly as the program does it (`settings.load_settings` and
`plan.compile_mesh` on the stack file, discover/stack.py); the Servers come from the compiled plan.

Modules: stack.py (the stack and its plan), prometheus.py (the API calls, the window), traffic.py (the comparison),
proposal.py (the edited graph), report.py (JSON and Markdown), __main__.py (the command).
"""

from .errors import DiscoverError
from .prometheus import Prometheus, parse_window, promql_duration
from .proposal import propose
from .report import as_json, as_markdown
from .stack import Stack, load_stack
from .traffic import METRICS, Report, Traffic, discover

__all__ = ["DiscoverError", "METRICS", "Prometheus", "Report", "Stack", "Traffic", "as_json", "as_markdown", "discover",
           "load_stack", "parse_window", "promql_duration", "propose"]
