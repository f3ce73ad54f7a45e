"""The mesh's self-check across each Link (objects built here, registered by components/linkerd_multicluster.py).

Every cluster's verification canary (plan/linkerd/verification.py: `canary` in `mtls-mesh-verify`, admitting exactly
the callers the verification graph allows) is exported to the peers that link to it (`canary_export`, `canary_labels`).
The service mirror makes it `canary-<peer>` in each cluster that links to that peer ([L] multicluster/service-mirror/
cluster_watcher.go mirrorServiceName: `<name>-<targetClusterName>`, in the same namespace). Per peer this cluster
links to, three Jobs call that mirror, each as one of the verification clients:

- as the identity the canary's graph allows (`verify-allowed`): must get 200, and the canary's proxy must have seen
  the identity the mode carries (the caller's own in remote-discovery mode, the peer's gateway's in gateway mode);
- as a meshed identity the graph does not allow (`verify-other`): must be refused;
- unmeshed (`verify-unmeshed`): must be refused.

Whether a client is allowed is not written here: it is computed from the canary's edges in the verification graph,
turned into the peer's `Export` of the canary, through the same functions the peer's stack builds its policy with
(`mc.gateway_callers` for what its gateway admits, `mc.callee_identities` for what the canary admits), so the check
and the policy cannot disagree silently.

A refusal across a link is not always an HTTP 403: the peer's gateway authorizes connections on its port 4143 and
resets one it refuses; an unmeshed client has no endpoint for a remote-discovery mirror (its endpoints exist only
in the proxies' discovery, [L] controller/api/destination) and cannot connect. So a refusal is a 403, or a connection
reset, refused or timed out, once the mirror's name resolves; a name that never resolves (the Link or the mirror is
missing) proves nothing and fails the Job, as a canary that never answers does in plan/linkerd/verification.py.

pulumi-kubernetes waits for a Job to complete and fails the update when it fails (provider/pkg/await/job.go), so a
link that does not enforce fails `pulumi up`. The names carry a digest of what the outcome depends on, so the Jobs
run again when it changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Iterable

from plan.linkerd import multicluster as mc
from plan.verification import (ALLOWED, CANARY, CANARY_PORT, LABEL, NAMESPACE, OTHER, REQUIRE_AUTHORIZATION, UNMESHED,
                               verification_graph)
from plan.linkerd.namespaces import INJECT
from plan.objects import metadata
from read.graph import ServiceGraph

TARGET_CLUSTER_LABEL = "mtls-mesh.io/target-cluster"
CLIENT_LABEL = "mtls-mesh.io/verification-client"
SHORT = {ALLOWED: "allowed", OTHER: "other", UNMESHED: "unmeshed"}
CANARY_PORT_NAME = "http"

# The check (POSIX sh and curl). curl's exit codes (curl(1) EXIT CODES): 6 the name did not resolve, 7 could not
# connect, 28 timed out, 52 empty reply, 56 the connection was reset while receiving.
CROSS_CHECK_SCRIPT = r'''set -u
attempts="${ATTEMPTS:-60}"; n=0; dir="${TMPDIR:-/tmp}"
while :; do
  n=$((n + 1))
  code=$(curl -sS -m 5 -o "$dir/body" -w '%{http_code}' "$URL" 2>"$dir/err"); rc=$?
  if [ "$rc" -eq 6 ] || { [ "$EXPECT" = "allow" ] && [ "$rc" -ne 0 ]; }; then
    if [ "$n" -ge "$attempts" ]; then
      echo "FAIL: $CLIENT could not reach $URL after $n attempts (curl exit $rc: $(cat "$dir/err")); the Link to $PEER or its mirror is missing, so this proves nothing"; exit 1
    fi
    sleep "${RETRY_DELAY:-5}"; continue
  fi
  break
done
if [ "$EXPECT" = "allow" ]; then
  seen=$(tr -d '\r' < "$dir/body" | awk -F': ' 'tolower($1) == "l5d-client-id" {print $2; exit}')
  if [ "$code" != "200" ]; then
    echo "FAIL: $CLIENT expected 200 from $URL across the link to $PEER, got $code"; exit 1
  fi
  if [ "$seen" != "$IDENTITY" ]; then
    echo "FAIL: $CLIENT got 200 but the canary in $PEER saw client identity '$seen', not '$IDENTITY'"; exit 1
  fi
  echo "OK: $CLIENT admitted across the link to $PEER, seen as $IDENTITY"
else
  case "$rc:$code" in
    0:403) echo "OK: $CLIENT refused (403) across the link to $PEER" ;;
    7:*|28:*|52:*|56:*) echo "OK: $CLIENT refused across the link to $PEER (curl exit $rc: $(cat "$dir/err"))" ;;
    *) echo "FAIL: $CLIENT expected to be refused across the link to $PEER, got HTTP $code (curl exit $rc): the link does not enforce"; exit 1 ;;
  esac
fi
'''


def canary_callers(graph: ServiceGraph | None = None) -> tuple[tuple[str, str], ...]:
    """(namespace, service account) of each caller the verification graph lets call the canary."""
    graph = graph or verification_graph()
    canary = next(s for s in graph.services.values() if s.name == CANARY and s.namespace == NAMESPACE)
    callers = []
    for caller in canary.callers:
        service = graph.services[caller.service]
        callers.append((service.namespace, service.service_account))
    return tuple(sorted(set(callers)))


def canary_export(cluster: mc.Cluster, mode: str = mc.REMOTE_DISCOVERY,
                  graph: ServiceGraph | None = None) -> mc.Export:
    """This cluster's canary as exported to the peers that link here: the canary's graph edges, from every such peer
    (allow edges are cluster-agnostic). Added to the cluster's exports, it joins the gateway's admitted callers."""
    callers = tuple(mc.Caller(peer.name, namespace, account)
                    for peer in sorted(cluster.linked_by, key=lambda p: p.name)
                    for namespace, account in canary_callers(graph))
    return mc.Export(NAMESPACE, CANARY, mode, (CANARY_PORT_NAME,), callers, where=f"verification.{CANARY}")


def canary_labels(mode: str = mc.REMOTE_DISCOVERY) -> dict[str, str]:
    """The labels the canary's Service carries so the peers' controllers mirror it in `mode`."""
    return dict(mc.EXPORT_LABELS[mode])


def exported_canary_objects(canary: Iterable[dict[str, Any]], mode: str = mc.REMOTE_DISCOVERY) -> list[dict[str, Any]]:
    """The canary's objects with its Service labelled for export."""
    objects = []
    for obj in canary:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == CANARY:
            meta = obj["metadata"]
            obj = {**obj, "metadata": {**meta, "labels": {**meta.get("labels", {}), **canary_labels(mode)}}}
        objects.append(obj)
    return objects


def exported_canary(verification: Any, mode: str = mc.REMOTE_DISCOVERY) -> Any:
    """A VerificationPlan whose canary Service is exported: what a cluster stack registers instead of the plain one,
    so that its peers' checks find `canary-<this cluster>`."""
    return replace(verification, canary=tuple(exported_canary_objects(verification.canary, mode)))


@dataclass(frozen=True)
class Expectation:
    client: str
    expect: str  # "allow" or "refuse"
    identity: str  # what the canary sees when it admits the client ("" when refused)


# The rollout phase in which the verification namespace's default policy admits authenticated clients only from the
# cluster's own networks: whether a peer's pod is among them depends on how the clusters' networks are laid out, so
# the check of a meshed identity outside the edges is left out there (docs/multicluster.md).
NETWORK_DEPENDENT = "cluster-authenticated"


def expectations(cluster: mc.Cluster, peer: mc.Peer, mode: str = mc.REMOTE_DISCOVERY,
                 graph: ServiceGraph | None = None, phase: str = "deny") -> list[Expectation]:
    """Per verification client of this cluster, what calling `peer`'s canary must give, from the peer's view: its
    canary export (its edges), what its gateway admits, and what its canary admits on the canary's port, in the
    rollout `phase` of the peer's verification namespace (outside `deny`, the canary's namespace also admits meshed
    callers its edges do not name, as plan/linkerd/verification.py `expectation` says for local ones; the gateway's
    own policy is the program's in every phase)."""
    me = mc.Peer(cluster.name, cluster.trust_domain, linkerd_namespace=cluster.linkerd_namespace, mirrors_from=False)
    callee = mc.Cluster(peer.name, peer.trust_domain, peers=(me,), linkerd_namespace=peer.linkerd_namespace)
    export = canary_export(callee, mode, graph)
    callee = mc.Cluster(peer.name, peer.trust_domain, peers=(me,), exports=(export,),
                        linkerd_namespace=peer.linkerd_namespace)
    admitted_by_canary = set(mc.callee_identities(callee, export, CANARY_PORT_NAME))
    through_gateway = set(mc.gateway_callers(callee)) if mode == mc.GATEWAY else None
    found = []
    for client in (ALLOWED, OTHER, UNMESHED):
        if client == UNMESHED:
            # No identity: the gateway requires one on its port, and a remote-discovery mirror has no endpoint for a
            # client without a proxy.
            found.append(Expectation(client, "refuse", ""))
            continue
        mine = mc.identity(client, NAMESPACE, cluster.trust_domain, cluster.linkerd_namespace)
        if through_gateway is not None:
            gateway = mc.gateway_identity(peer.trust_domain, peer.linkerd_namespace)
            allowed = mine in through_gateway and (gateway in admitted_by_canary or phase not in REQUIRE_AUTHORIZATION)
            found.append(Expectation(client, "allow" if allowed else "refuse", gateway if allowed else ""))
        else:
            allowed = mine in admitted_by_canary or phase not in REQUIRE_AUTHORIZATION
            if not allowed or mine in admitted_by_canary or phase != NETWORK_DEPENDENT:
                found.append(Expectation(client, "allow" if allowed else "refuse", mine if allowed else ""))
    return found


def _name(peer: str, client: str, digest: str) -> str:
    name = f"link-{peer}-{SHORT[client]}-{digest}"
    if len(name) > 63:  # the Job's name is its pods' `job-name` label value (63 characters)
        name = f"link-{hashlib.sha256(peer.encode()).hexdigest()[:8]}-{SHORT[client]}-{digest}"
    return name


def link_checks(cluster: mc.Cluster, client_image: str, mesh_digest: str, mode: str = mc.REMOTE_DISCOVERY,
                cluster_domain: str = "cluster.local", graph: ServiceGraph | None = None,
                phase: str = "deny") -> list[dict[str, Any]]:
    """The Jobs of this cluster: per peer it links to, one per verification client (`phase`: the peers'
    verification namespace's rollout phase, the environment's `defaultInboundPolicy`)."""
    jobs = []
    for peer in sorted(cluster.mirrored_from, key=lambda p: p.name):
        if mode == mc.GATEWAY and not peer.has_gateway:
            continue  # nothing to call through
        found = expectations(cluster, peer, mode, graph, phase)
        state = {"peer": peer.name, "mode": mode, "phase": phase, "gateway": list(peer.gateway_addresses), "mesh": mesh_digest,
                 "image": client_image, "expect": [vars(e) for e in found]}
        digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:10]
        url = f"http://{CANARY}-{peer.name}.{NAMESPACE}.svc.{cluster_domain}:{CANARY_PORT}/"
        for expectation in found:
            jobs.append(_job(_name(peer.name, expectation.client, digest), peer.name, expectation, url, client_image))
    return jobs


def _job(name: str, peer: str, expectation: Expectation, url: str, image: str) -> dict[str, Any]:
    client = expectation.client
    labels = {LABEL: "true", TARGET_CLUSTER_LABEL: peer, CLIENT_LABEL: SHORT[client]}
    env = {"CLIENT": client, "PEER": peer, "EXPECT": expectation.expect, "URL": url, "IDENTITY": expectation.identity}
    container = {"name": "check", "image": image, "command": ["sh", "-c", CROSS_CHECK_SCRIPT],
                 "env": [{"name": k, "value": v} for k, v in env.items()],
                 "terminationMessagePolicy": "FallbackToLogsOnError",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                 "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                                     "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}
    meshed = client != UNMESHED
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(name, NAMESPACE, labels=labels),
            "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": labels,
                                               "annotations": {INJECT: "enabled" if meshed else "disabled"}},
                                  "spec": {"serviceAccountName": client, "restartPolicy": "Never",
                                           "containers": [container],
                                           "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Mi"}}]}}}}
