"""The mesh's self-check: after every change of the mesh, prove on the cluster that mTLS and the rollout phase hold
(objects built here, registered by register_verification.MeshVerification).

In the namespace `mtls-mesh-verify` (injected, in the stack's default rollout phase) a canary HTTP server echoes the
headers it receives, and three Jobs call it, each as its own service account:

- `verify-allowed`: the one identity the canary's policy admits. It must get 200, and the `l5d-client-id` header the
  canary's proxy added must be its own mesh identity: mTLS verified end to end by the server side.
- `verify-other`: meshed, another identity. Under `deny` it must be refused with 403; in a phase that admits
  authenticated clients (audit, all-authenticated, ...) it must get in, with its own identity.
- `verify-unmeshed`: no proxy. Refused (403) in phases that require identity, admitted in open ones.

The canary's Server, MeshTLSAuthentication and AuthorizationPolicy come from the same builders as the graph's services
(authorization.namespace_objects on a graph of the canary and its clients), so the checks exercise the code path every
service uses, and the canary's entries join the `accessMatrix` export. The namespace has no NetworkPolicies: a refusal
must come from Linkerd, not from the network.

pulumi-kubernetes waits for a Job to complete and fails the update when it fails (provider/pkg/await/job.go), so a
mesh that does not enforce fails `pulumi up` with the Job's output. Jobs are immutable: their names carry a digest of
what the mesh's enforcement depends on (anchors, issuing anchor, chart version, phase, images), so they run again when
one of those changes and not on unrelated updates. Each Job also exists as a suspended CronJob with the same template,
so `kubectl create job --from=cronjob/<name>` re-runs a check on demand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any, Mapping

from plan.linkerd.authorization import access_matrix, effective_policy, namespace_objects
from read.graph import mesh_identity
from plan.linkerd.namespaces import DEFAULT_INBOUND_POLICY, INJECT
from plan.objects import metadata
from plan.verification import (JUDGE_ADMISSION, LABEL, NAMESPACE, UNMESHED, check_container, cronjobs, jobs, labels,
                               verification_graph)
from read.settings import Settings

# The check each client runs (POSIX sh and curl). It retries while the connection fails (the canary may still be
# starting), then judges the first answer it gets. A connection that never succeeds proves nothing and fails.
CHECK_SCRIPT = r'''set -u
attempts="${ATTEMPTS:-30}"; n=0
while :; do
  n=$((n + 1))
  out=$(curl -sS -m 5 -D - -o /dev/null "$URL" 2>&1) && break
  if [ "$n" -ge "$attempts" ]; then
    echo "FAIL: $CLIENT could not connect to $URL after $n attempts ($out); the canary is down or unreachable, so this proves nothing"; exit 1
  fi
  sleep "${RETRY_DELAY:-2}"
done
body=$(curl -sS -m 5 "$URL" 2>&1 || true)
code=$(printf '%s\n' "$out" | awk 'NR==1 {print $2}')
seen=$(printf '%s\n' "$body" | tr -d '\r' | awk -F': ' 'tolower($1) == "l5d-client-id" {print $2; exit}')
''' + JUDGE_ADMISSION + r'''  if [ "$code" != "403" ]; then
    echo "FAIL: $CLIENT expected to be refused (403) by $URL in phase $PHASE, got $code: the mesh does not enforce"; exit 1
  fi
  echo "OK: $CLIENT refused in phase $PHASE"
fi
'''


def mesh_digest(settings: Settings) -> str:
    """What enforcement depends on; a change reruns the checks."""
    rotation = settings.pki.rotation
    state = {"bundle": list(rotation.bundle_anchors), "issuing": rotation.issuing_anchor,
             "chart": settings.linkerd.chart_version, "phase": settings.rollout.default_policy,
             "trustDomain": settings.trust_domain, "server": settings.verification.server_image,
             "client": settings.verification.client_image}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:10]


def namespace_object(phase: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(NAMESPACE, labels={LABEL: "true"},
                                 annotations={INJECT: "enabled", DEFAULT_INBOUND_POLICY: phase})}


def job_template(client: str, settings: Settings) -> dict[str, Any]:
    meshed = client != UNMESHED
    container = check_container(client, settings, CHECK_SCRIPT,
                                mesh_identity(client, NAMESPACE, settings.trust_domain) if meshed else "")
    # Native sidecars (proxy.nativeSidecar, the default) start the proxy before this container and stop it when the
    # container exits, so a meshed Job completes.
    return {"backoffLimit": 1, "activeDeadlineSeconds": 300,
            "template": {"metadata": {"labels": labels(client), "annotations": {INJECT: "enabled" if meshed else "disabled"}},
                         "spec": {"serviceAccountName": client, "restartPolicy": "Never", "containers": [container]}}}


def check_jobs(settings: Settings) -> list[dict[str, Any]]:
    return jobs(mesh_digest(settings), lambda client: job_template(client, settings))


def on_demand_cronjobs(settings: Settings) -> list[dict[str, Any]]:
    return cronjobs(lambda client: job_template(client, settings))


def policy_objects(settings: Settings) -> list[dict[str, Any]]:
    """The canary namespace's authorization objects, built as every graph namespace's are (no NetworkPolicies: a
    refusal must come from Linkerd)."""
    access = replace(effective_policy(settings), network_policies=False)
    return namespace_objects(verification_graph(), NAMESPACE, settings.rollout.default_policy, access,
                             settings.trust_domain, settings.linkerd.viz)


def verification_matrix(settings: Settings, remote_names: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The canary's rows of the access matrix; `remote_names` (a cluster stack): identity -> the callers of linked
    clusters it stands for (the peers' verify-allowed carry the local one's identity across each Link)."""
    return access_matrix(policy_objects(settings), verification_graph(), settings.trust_domain,
                         settings.policy.kubelet_networks, remote_names)
