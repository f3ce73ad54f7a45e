"""The mesh's self-check for Istio: after every change of the mesh, prove on the cluster that mTLS and the rollout phase
hold, as plan/linkerd/verification.py does for Linkerd (plain data; with `mesh: istio`, plan/mesh.py builds the
VerificationPlan from it and components/verification.py registers it).

The same canary, clients, expectations and re-run digest scheme as the Linkerd check, imported from it where they are
mesh-neutral (the canary Deployment and Service, the ServiceAccounts, `expectation`); what differs is Istio's:

- injection: the namespace label `istio-injection=enabled`; the unmeshed client opts out with the pod *label*
  `sidecar.istio.io/inject: "false"` (reference A4: a label, not an annotation), and meshed Jobs ask for a native
  sidecar (`sidecar.istio.io/nativeSidecar: "true"`, read by the injection template [IC]) so the proxy stops when the
  check exits and the Job completes (Kubernetes >= 1.29; the project requires 1.31);
- the identity the canary saw: its sidecar appends the caller's URI SAN to `X-Forwarded-Client-Cert`
  (ForwardClientCertDetails APPEND_FORWARD with the URI, pilot/pkg/networking/util/proxy_headers.go and
  listener_inbound.go `buildSidecarInboundHTTPOpts` [I]), which the echo server prints back;
- a refusal: a meshed caller outside the ALLOW policy gets Envoy's 403 `RBAC: access denied`; a caller without a proxy
  meets STRICT mTLS on the TCP connection, which the sidecar accepts and then closes without an HTTP answer (curl
  exit 52 or 56), whereas a connection that cannot be made at all (DNS, refused, timeout) proves nothing and is retried;
- the policy: built by plan/istio/authorization.py `namespace_objects` on the canary's graph (the canary admitting
  exactly `verify-allowed`, plan/linkerd/verification.py `verification_graph`), as the Linkerd check builds its own
  with Linkerd's, so the check exercises the code path every graph service's policy takes: the namespace's
  PeerAuthentication (STRICT where the phase needs an identity), its phase policy (allow-nothing under deny, dry runs
  under audit) and the canary's ALLOW on its port for the allowed client's principal. Without the per-workload egress
  objects: a refusal must come from the canary's authorization, and verify-other's own Sidecar (`~/*`: it calls no
  one in the graph) would have its sidecar drop the request before the canary could refuse it. Under deny the
  namespace's selector-less REGISTRY_ONLY Sidecar stays (every registered host, the canary's Service among them), so
  the canary's pods run REGISTRY_ONLY as every deny namespace's do while the mesh is ALLOW_ANY. The canary's rows of the
  `accessMatrix` are read back from these objects (`verification_matrix`), as the graph's are.

pulumi-kubernetes waits for a Job and fails the update when it fails (provider/pkg/await/job.go), so a mesh that does
not enforce fails `pulumi up` with the Job's output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from plan.istio.authorization import access_matrix, namespace_objects
from plan.istio.names import (ISTIO_CHART_VERSION, NAMESPACE_INJECTION_LABEL, POD_INJECTION_LABEL)
from plan.objects import metadata
from plan.verification import (ALLOWED, CANARY, CANARY_PORT, JUDGE_ADMISSION, LABEL, NAMESPACE, REQUIRE_AUTHORIZATION,
                               REQUIRE_IDENTITY, UNMESHED, canary_objects, check_container, cronjobs, jobs,
                               service_accounts, verification_graph)
from read.graph import spiffe_id
from read.settings import Settings

NATIVE_SIDECAR_ANNOTATION = "sidecar.istio.io/nativeSidecar"
# The canary namespace's egress objects, left out but for a selector-less Sidecar (see the module's docstring).
EGRESS_KINDS = ("Sidecar", "ServiceEntry")

# The check each client runs (POSIX sh and curl). It retries while no TCP connection can be made (the canary may still
# be starting; curl exit 6 DNS, 7 refused, 28 timeout), then judges the first answer. A connection the server side
# accepts and closes without HTTP (52 empty reply, 56 reset) is how a STRICT sidecar meets a plaintext client.
CHECK_SCRIPT = r'''set -u
attempts="${ATTEMPTS:-30}"; n=0
while :; do
  n=$((n + 1))
  out=$(curl -sS -m 5 -D - -o /dev/null "$URL" 2>&1); rc=$?
  case "$rc" in 6|7|28) ;; *) break ;; esac
  if [ "$n" -ge "$attempts" ]; then
    echo "FAIL: $CLIENT could not connect to $URL after $n attempts ($out); the canary is down or unreachable, so this proves nothing"; exit 1
  fi
  sleep "${RETRY_DELAY:-2}"
done
if [ "$rc" = 52 ] || [ "$rc" = 56 ]; then
  if [ "$EXPECT" = "refuse" ] && [ -z "$IDENTITY" ]; then
    echo "OK: $CLIENT refused in phase $PHASE (connection closed without an answer: mTLS required)"; exit 0
  fi
  echo "FAIL: $CLIENT got no answer from $URL in phase $PHASE ($out)"; exit 1
fi
if [ "$rc" != 0 ]; then
  echo "FAIL: $CLIENT: curl failed on $URL with exit code $rc ($out)"; exit 1
fi
body=$(curl -sS -m 5 "$URL" 2>&1 || true)
code=$(printf '%s\n' "$out" | awk 'NR==1 {print $2}')
xfcc=$(printf '%s\n' "$body" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-forwarded-client-cert" {print $2; exit}')
# The canary's sidecar appends its element last: By=<canary>;Hash=...;Subject="";URI=<caller>[;DNS=...].
seen=$(printf '%s\n' "$xfcc" | awk -F',' '{print $NF}' | tr ';' '\n' | awk -F'=' '$1 == "URI" {print $2; exit}')
''' + JUDGE_ADMISSION + r'''  if [ "$code" != "403" ] || ! printf '%s' "$body" | grep -q "RBAC: access denied"; then
    echo "FAIL: $CLIENT expected to be refused by $URL in phase $PHASE, got $code: the mesh does not enforce"; exit 1
  fi
  echo "OK: $CLIENT refused in phase $PHASE"
fi
'''


def mesh_digest(settings: Settings) -> str:
    """What enforcement depends on; a change reruns the checks (Istio's chart version in place of Linkerd's)."""
    rotation = settings.pki.rotation
    state = {"mesh": "istio", "bundle": list(rotation.bundle_anchors), "issuing": rotation.issuing_anchor,
             "chart": ISTIO_CHART_VERSION, "phase": settings.rollout.default_policy,
             "trustDomain": settings.trust_domain, "server": settings.verification.server_image,
             "client": settings.verification.client_image}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:10]


def namespace_object() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": metadata(NAMESPACE, labels={LABEL: "true", NAMESPACE_INJECTION_LABEL: "enabled"})}


def policy_objects(settings: Settings) -> list[dict[str, Any]]:
    """The canary namespace's authorization objects, built as every graph namespace's are, in the stack's default
    phase: no NetworkPolicies (a refusal must come from Istio), no ServiceEntries and no per-workload Sidecars (see
    the module's docstring)."""
    access = replace(settings.policy, network_policies=False)
    return [obj for obj in namespace_objects(verification_graph(), NAMESPACE, settings.rollout.default_policy, access,
                                             settings.trust_domain)
            if obj["kind"] not in EGRESS_KINDS or (obj["kind"] == "Sidecar" and "workloadSelector" not in obj["spec"])]


def verification_matrix(settings: Settings) -> dict[str, Any]:
    """The canary's and its clients' rows of the `accessMatrix`, read back from the objects above as the graph's are
    (plan/istio/authorization.py `access_matrix`), in the Linkerd path's shape."""
    return access_matrix(policy_objects(settings), verification_graph(), settings.trust_domain)


def job_template(client: str, settings: Settings) -> dict[str, Any]:
    meshed = client != UNMESHED
    container = check_container(client, settings, CHECK_SCRIPT,
                                spiffe_id(client, NAMESPACE, settings.trust_domain) if meshed else "")
    labels = {"app": client, LABEL: "true", POD_INJECTION_LABEL: "true" if meshed else "false"}
    annotations = {NATIVE_SIDECAR_ANNOTATION: "true"} if meshed else {}
    pod_metadata: dict[str, Any] = {"labels": labels}
    if annotations:
        pod_metadata["annotations"] = annotations
    return {"backoffLimit": 1, "activeDeadlineSeconds": 300,
            "template": {"metadata": pod_metadata,
                         "spec": {"serviceAccountName": client, "restartPolicy": "Never", "containers": [container]}}}


def check_jobs(settings: Settings) -> list[dict[str, Any]]:
    return jobs(mesh_digest(settings), lambda client: job_template(client, settings))


def on_demand_cronjobs(settings: Settings) -> list[dict[str, Any]]:
    return cronjobs(lambda client: job_template(client, settings))


def verification_objects(settings: Settings) -> list[dict[str, Any]]:
    """Everything the check registers, in the order it can be applied (the Jobs last: they need the canary ready and
    its policy in place). No NetworkPolicy: a refusal must come from Istio, not from the network."""
    return [namespace_object(), *service_accounts(), *canary_objects(settings.verification.server_image),
            *policy_objects(settings), *on_demand_cronjobs(settings), *check_jobs(settings)]
