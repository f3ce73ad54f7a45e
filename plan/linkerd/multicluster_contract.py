"""The cross-stack contract of Linkerd multicluster, as plain data: what a cluster's stack exports for its peers (the
`multicluster` output), how a stack checks a peer's export, and how it completes its `Cluster` (plan/linkerd/
multicluster.py) with what only exists once the peer applied (its gateway addresses, API server CA, gateway identity).

The output, per cluster stack:

    multicluster = {cluster, trustDomain, linkerdNamespace, clusterDomain, apiServer, apiServerCa,
                    gatewayAddresses, gatewayIdentity, networks, remoteAccessTokens: {<peer cluster>: <secret>}}

`remoteAccessTokens` holds, per peer that links here, the token of the account this cluster's chart made for it
(`linkerd-service-mirror-remote-access-<peer>`), marked secret by the registration layer. Nothing here reads or
holds a token: `plain_part` drops them, so the plan only ever sees what the peer exported in clear.

A peer that has not applied yet (its stack has no such output, or a preview cannot know it) is not an error: this
stack then links to it later, and says so (`missing_peers_message`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from plan.linkerd import multicluster as mc
from read.errors import Problem

OUTPUT = "multicluster"
TOKENS = "remoteAccessTokens"
# The keys a peer's export must carry in clear (TOKENS apart: secret, read through the StackReference's Output).
PLAIN_KEYS = ("cluster", "trustDomain", "linkerdNamespace", "clusterDomain", "apiServer", "apiServerCa",
              "gatewayAddresses", "gatewayIdentity", "networks")


def plain_part(value: Any) -> dict[str, Any] | None:
    """A peer's `multicluster` output with only the names of the clusters it holds tokens for, not the tokens, or None
    when the peer exported none (not applied yet, or unknown in a preview)."""
    if not isinstance(value, Mapping):
        return None
    tokens = value.get(TOKENS)
    return {**{k: v for k, v in value.items() if k != TOKENS},
            TOKENS: sorted(k for k, v in tokens.items() if v) if isinstance(tokens, Mapping) else []}


def own_contract(cluster: mc.Cluster, *, cluster_domain: str, api_server: str, networks: tuple[str, ...]) -> dict[str, Any]:
    """The plain part of this cluster's export: everything but what the cluster computes (gateway addresses, API
    server CA, tokens), which registration adds once the release is applied."""
    return {"cluster": cluster.name, "trustDomain": cluster.trust_domain,
            "linkerdNamespace": cluster.linkerd_namespace, "clusterDomain": cluster_domain, "apiServer": api_server,
            "gatewayIdentity": mc.gateway_identity(cluster.trust_domain, cluster.linkerd_namespace)
            if cluster.gateway_exports else "",
            "networks": list(networks)}


def peer_problems(peer: mc.Peer, peer_stack: str, exported: Mapping[str, Any]) -> list[Problem]:
    """What this stack's view of a peer (from the peer's stack file) and the peer's applied export disagree on: each
    would make a Link that cannot work (a wrong gateway identity fails every mTLS handshake through the gateway; a
    wrong cluster name mirrors services under the wrong suffix)."""
    where = f"{peer_stack}.outputs.{OUTPUT}"
    problems = [Problem(f"{where}.{k}", "missing from the peer's export", f"Run `pulumi up` on {peer_stack} at this commit")
                for k in PLAIN_KEYS if k not in exported]
    if problems:
        return problems
    expected = {"cluster": peer.name, "trustDomain": peer.trust_domain, "linkerdNamespace": peer.linkerd_namespace,
                "clusterDomain": peer.cluster_domain}
    for key, wanted in expected.items():
        if exported[key] != wanted:
            problems.append(Problem(f"{where}.{key}", f"the peer applied {exported[key]!r}, its stack file says "
                                                      f"{wanted!r}", f"Run `pulumi up` on {peer_stack} first"))
    identity = exported["gatewayIdentity"]
    if identity and identity != peer.gateway_identity:
        problems.append(Problem(f"{where}.gatewayIdentity", f"{identity!r} is not the identity {peer.gateway_identity!r} "
                                                            "its trust domain and namespace give",
                                f"Run `pulumi up` on {peer_stack} first"))
    if not str(exported["apiServer"]).startswith("https://"):
        problems.append(Problem(f"{where}.apiServer", f"{exported['apiServer']!r} is not an https:// URL",
                                f"Set clusterApiServer in {peer_stack}'s stack file"))
    return problems


def with_peer_outputs(cluster: mc.Cluster, exported: Mapping[str, Mapping[str, Any] | None],
                      peer_stacks: Mapping[str, str]) -> tuple[mc.Cluster, tuple[str, ...], list[Problem]]:
    """This cluster completed with its peers' applied exports (`exported`: peer cluster -> plain part, None if not
    applied): each peer's API server, CA and gateway addresses. A peer we link to that has not applied keeps no Link,
    controller or credentials (`mirrors_from` off) until it has; it still gets its remote-access account here
    (`mirrored_by` stays), so that it can link to us first. Returns the cluster, the peers left unlinked, and the
    problems of the peers' exports."""
    peers, waiting, problems = [], [], []
    for peer in cluster.peers:
        value = exported.get(peer.name)
        if value is not None and peer.mirrors_from and cluster.name not in value.get(TOKENS, ()):
            # Applied, but before it listed us among its peers (or before its token controller filled our token in):
            # its chart has no account for us yet.
            value = None
        if value is None:
            if peer.mirrors_from:
                waiting.append(peer.name)
            peers.append(replace(peer, mirrors_from=False))
            continue
        found = peer_problems(peer, peer_stacks.get(peer.name, peer.name), value)
        problems += found
        if found:
            peers.append(replace(peer, mirrors_from=False))
            continue
        peers.append(replace(peer, api_server=peer.api_server or str(value["apiServer"]),
                             gateway_addresses=tuple(str(a) for a in value["gatewayAddresses"] or ()),
                             networks=peer.networks or tuple(str(n) for n in value["networks"] or ())))
    return replace(cluster, peers=tuple(peers)), tuple(waiting), problems


def gateways_pending(exported: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """Peers that export through a gateway (they announce its identity) whose load balancer had no address when they
    applied: their gateway-mode services are not mirrored here until they apply again and this stack follows."""
    return sorted(peer for peer, value in exported.items()
                  if value is not None and value.get("gatewayIdentity") and not value.get("gatewayAddresses"))


GATEWAY_PENDING = ("the gateway of {peers} had no LoadBalancer address when it applied: the Link to it carries no "
                   "gateway, so its gateway-mode services are not mirrored here. Once its load balancer has an "
                   "address, run `pulumi up` on that stack, then on this one.")
OWN_GATEWAY_PENDING = ("this cluster's gateway Service has no LoadBalancer address yet, so the `multicluster` output "
                       "offers none: the peers link without a gateway until this stack runs again once it has one.")


def missing_peers_message(cluster: str, waiting: tuple[str, ...], peer_stacks: Mapping[str, str]) -> str:
    """The warning for peers this stack cannot link to yet: which, why, and the order that fixes it."""
    stacks = ", ".join(f"{peer_stacks.get(p, p)} ({p})" for p in waiting)
    return (f"cluster {cluster!r} does not link to {stacks} yet: no `{OUTPUT}` output of theirs is applied (or a "
            "preview cannot know it), so no Link, controller or credentials for them are registered. Bring the peer "
            "up first (`pulumi up` on its stack), then run `pulumi up` on this stack again to link "
            "(docs/multicluster.md, 'Bringing stacks up').")


def gateway_addresses(status: Any) -> list[str]:
    """The gateway Service's LoadBalancer ingress as link-gen reads it ([L] multicluster/cmd/link-gen.go: each
    ingress's IP, else its hostname; empty ones skipped). `status` is the Service's `status`, as a dict (camelCase)
    or as the SDK's output type (snake_case attributes)."""
    def field(obj: Any, camel: str, snake: str) -> Any:
        if obj is None:
            return None
        if type(obj) is not dict and hasattr(obj, snake):  # the SDK's output types are dicts with getters
            return getattr(obj, snake)
        return obj.get(camel, obj.get(snake)) if isinstance(obj, Mapping) else None

    balancer = field(status, "loadBalancer", "load_balancer")
    found = []
    for ingress in field(balancer, "ingress", "ingress") or ():
        address = field(ingress, "ip", "ip") or field(ingress, "hostname", "hostname")
        if address:
            found.append(str(address))
    return found
