"""The mesh's self-check, the parts every mesh shares: in the namespace `mtls-mesh-verify` a canary HTTP server echoes
the headers it receives, and three Jobs call it, each as its own service account (`verify-allowed`, the one identity
the canary's policy admits; `verify-other`, meshed, another identity; `verify-unmeshed`, no proxy), expecting what
the stack's default rollout phase promises (`expectation`). The canary, its graph, the accounts, the check
container and the Jobs (each also a suspended CronJob, so `kubectl create job --from=cronjob/<name>` re-runs it) are
built here; each mesh's package adds how its namespace is injected, the canary's policy, how a Job's pod joins the
mesh and how the check reads the identity the server saw (plan/linkerd/verification.py, plan/istio/verification.py).
"""

from __future__ import annotations

from typing import Any, Callable

from plan.objects import metadata
from read.errors import Problems
from read.graph import ServiceGraph, parse_graph
from read.settings import VERIFICATION_NAMESPACE, Settings

NAMESPACE = VERIFICATION_NAMESPACE
CANARY = "canary"
CANARY_PORT = 8080
ALLOWED, OTHER, UNMESHED = "verify-allowed", "verify-other", "verify-unmeshed"
CLIENTS = (ALLOWED, OTHER, UNMESHED)
LABEL = "mtls-mesh.io/verification"
# Phases where a caller without mesh identity is refused, and where a meshed caller outside the policy is.
REQUIRE_IDENTITY = ("deny", "all-authenticated", "cluster-authenticated")
REQUIRE_AUTHORIZATION = ("deny",)


# The part of every mesh's check script (sh) that judges an admission: it expects the answer's status in `code` and
# the client identity the canary's proxy reported in `seen` (each mesh's script reads them its own way), then the
# refusal branch, which is each mesh's own.
JUDGE_ADMISSION = r'''if [ "$EXPECT" = "allow" ]; then
  if [ "$code" != "200" ]; then
    echo "FAIL: $CLIENT expected 200 from $URL in phase $PHASE, got $code"; exit 1
  fi
  if [ -n "$IDENTITY" ] && [ "$seen" != "$IDENTITY" ]; then
    echo "FAIL: $CLIENT got 200 but the server saw client identity '$seen', not '$IDENTITY': mTLS is not verified end to end"; exit 1
  fi
  if [ -z "$IDENTITY" ] && [ -n "$seen" ]; then
    echo "FAIL: $CLIENT has no proxy, yet the server saw client identity '$seen'"; exit 1
  fi
  echo "OK: $CLIENT admitted in phase $PHASE${IDENTITY:+ as $IDENTITY}"
else
'''


def expectation(client: str, phase: str) -> str:
    """What the phase promises for a client: `allow` or `refuse`."""
    if client == ALLOWED:
        return "allow"
    if client == OTHER:
        return "refuse" if phase in REQUIRE_AUTHORIZATION else "allow"
    return "refuse" if phase in REQUIRE_IDENTITY else "allow"


def verification_graph() -> ServiceGraph:
    """The canary and its meshed clients as a service graph: the canary admits exactly `verify-allowed`."""
    port = [{"name": "http", "port": CANARY_PORT, "protocol": "HTTP/1"}]
    document = {"namespaces": {NAMESPACE: {}},
                "services": {CANARY: {"namespace": NAMESPACE, "ports": port, "allow": [ALLOWED]},
                             ALLOWED: {"namespace": NAMESPACE, "ports": port},
                             OTHER: {"namespace": NAMESPACE, "ports": port}}}
    problems = Problems()
    graph = parse_graph(document, "verification", problems)
    assert graph is not None, problems.items
    return graph


def labels(app: str) -> dict[str, str]:
    return {"app": app, LABEL: "true"}


def service_accounts() -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(name, NAMESPACE)}
            for name in (CANARY, *CLIENTS)]


def canary_objects(image: str) -> list[dict[str, Any]]:
    """The echo server and its Service. traefik/whoami (its README: flag `--port`, `/health` answers 200, `/` prints
    each request header as `Name: value`, so the header the canary's proxy adds about its client comes back in the
    body)."""
    container = {"name": "echo", "image": image, "args": ["--port", str(CANARY_PORT)],
                 "ports": [{"name": "http", "containerPort": CANARY_PORT}],
                 "readinessProbe": {"httpGet": {"path": "/health", "port": CANARY_PORT}},
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                                     "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": metadata(CANARY, NAMESPACE),
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": CANARY}},
                  "template": {"metadata": {"labels": labels(CANARY)},
                               "spec": {"serviceAccountName": CANARY, "containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(CANARY, NAMESPACE),
         "spec": {"selector": {"app": CANARY}, "ports": [{"name": "http", "port": CANARY_PORT, "targetPort": "http"}]}},
    ]


def check_container(client: str, settings: Settings, script: str, identity: str) -> dict[str, Any]:
    """The container of one client's check: `script` (the mesh's, which reads the identity the server saw) with what
    the phase promises this client, and the identity the server must see (empty: the client has no proxy)."""
    phase = settings.rollout.default_policy
    env = {"CLIENT": client, "PHASE": phase, "EXPECT": expectation(client, phase),
           "URL": f"http://{CANARY}.{NAMESPACE}.svc.cluster.local:{CANARY_PORT}/", "IDENTITY": identity}
    return {"name": "check", "image": settings.verification.client_image, "command": ["sh", "-c", script],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}


def jobs(digest: str, job_template: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """One Job per client, named after `digest` (what the mesh's enforcement depends on: a change reruns them)."""
    return [{"apiVersion": "batch/v1", "kind": "Job",
             "metadata": metadata(f"{client}-{digest}", NAMESPACE, labels={LABEL: "true"}),
             "spec": job_template(client)} for client in CLIENTS]


def cronjobs(job_template: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Suspended CronJobs with the Jobs' templates: `kubectl create job --from=cronjob/<client>` re-runs a check."""
    return [{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(client, NAMESPACE, labels={LABEL: "true"}),
             "spec": {"schedule": "0 0 31 2 *", "suspend": True, "jobTemplate": {"spec": job_template(client)}}}
            for client in CLIENTS]
