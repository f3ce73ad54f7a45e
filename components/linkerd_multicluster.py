"""LinkerdMulticluster: registers one cluster's part of Linkerd multicluster from its `Cluster` (plan/linkerd/
multicluster.py) and its peers' applied exports: the `linkerd-multicluster` namespace and release, per peer it links to
the two credentials Secrets and the Link, the gateway policy patches, the peers' probe and the program's scrape
authorizations, the PodMonitor and the link alerts, and the cross-link verification Jobs. It reads back what the
release made (the gateway Service's LoadBalancer addresses, the remote-access tokens of the peers that link here) and
offers it as `contract`, the stack's `multicluster` output (plan/linkerd/multicluster_contract.py).

Secrets: a peer's token reaches this stack only as the Output of a `pulumi.StackReference` to the peer's stack (the
output is secret because the peer exported the token with `pulumi.Output.secret`), and the credentials Secret's
`data.kubeconfig` is made from it inside `Output.apply`, so the token is a Pulumi secret from the peer's state to the
Secret. The own tokens are read from the chart's token Secrets (pulumi-kubernetes marks a Secret's data secret) and
exported wrapped in `Output.secret`.

Wiring: `register_multicluster` takes the cluster as the compile step gives it (`MeshPlan.multicluster`, not merged
yet) and the peers' stack names; `__main__.py` calls it after the Linkerd control plane and exports `contract`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime.sync_await import _sync_await

from components.k8s import register
from components.platform import current_outputs
from components.providers import secret_input
from components.runtime import unknown_output
from plan.linkerd import multicluster as mc
from plan.linkerd.multicluster_network import fill_gateway_egress
from plan.linkerd import multicluster_contract as contract
from plan.objects import HELM_TIMEOUT_SECONDS
from plan.linkerd.multicluster_verification import TARGET_CLUSTER_LABEL
from read.errors import SettingsError

GATEWAY_SERVICE_ID = f"{mc.NAMESPACE}/{mc.GATEWAY_NAME}"
# The token the chart's account Secret carries, filled in by the token controller (kubernetes.io/service-account-token:
# keys `token` and `ca.crt`, the cluster's root CA that verifies the API server, as a ServiceAccount's pod sees it).
TOKEN_KEY, CA_KEY = "token", "ca.crt"


@dataclass
class PeerExport:
    """A peer's `multicluster` output as this stack reads it: the plain part (None: not applied, or unknown in a
    preview) for the plan, and the whole output as the StackReference's Output, secret, for the token."""

    stack: str
    plain: dict[str, Any] | None
    output: pulumi.Output | None


def read_peer_exports(peer_stacks: Mapping[str, str], parent: pulumi.Resource | None = None) -> dict[str, PeerExport]:
    """Each peer's export through one StackReference per peer stack, read synchronously (as components/platform.py
    `read_outputs`) so that which Links exist is known before anything is registered, in previews too (a
    StackReference is a read, and reads run in previews: pulumi pkg/resource/deploy/step.go ReadStep.Apply). The
    token is never taken out of the Output: the plain part keeps only which peers it holds tokens for."""
    exports = {}
    for peer, stack in sorted(peer_stacks.items()):
        if not _stack_exists(stack):
            # Not `stack init`ed yet (the first cluster's first `up`, before its peers have stacks): nothing applied,
            # so waited for like a peer that has not applied. A StackReference to it would fail the whole update.
            exports[peer] = PeerExport(stack, None, None)
            continue
        reference = pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}",
                                          opts=pulumi.ResourceOptions(parent=parent))
        details = _sync_await(reference.get_output_details(contract.OUTPUT))
        value = details.value if details.value is not None else details.secret_value
        plain = contract.plain_part(value)
        exports[peer] = PeerExport(stack, plain, reference.get_output(contract.OUTPUT))
    return exports


def _stack_exists(stack: str) -> bool:
    """Whether the backend has `stack`. Reading a stack that does not exist fails, for a StackReference and for the
    builtin invoke alike (pulumi pkg/backend/backend.go `GetStackOutputs`: `unknown stack %q`, returned as is by
    pkg/resource/deploy/builtins.go `readStackReference`); the invoke registers nothing, so it can ask first."""
    try:
        current_outputs(stack)
    except Exception as err:  # noqa: BLE001 - any other failure is the backend's, and stops the update as it would
        if "unknown stack" in str(err):
            return False
        raise
    return True


@dataclass
class LinkerdMulticlusterArgs:
    cluster: mc.Cluster
    # Peer cluster -> its stack name (clusterPeers, by the cluster each names).
    peer_stacks: Mapping[str, str]
    chart_version: str
    repository: Any
    # This cluster's API server as the peers reach it (clusterApiServer), its cluster domain and its networks.
    api_server: str
    networks: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    linkerd_namespace: pulumi.Resource | None = None
    control_plane: pulumi.Resource | None = None
    policy_crds: pulumi.Resource | None = None
    prometheus_service_accounts: Sequence[tuple[str, str]] = ()
    prometheus_networks: Sequence[str] = ()
    monitoring_labels: Mapping[str, str] = field(default_factory=dict)
    # Whether the stack's Prometheus (prometheus-operator's CRDs) is there for the PodMonitor and the link alerts.
    monitoring: bool = True
    # The cross-link checks: the completed cluster -> the Jobs (plan/linkerd/multicluster_verification.py
    # `link_checks`), and what they wait for besides their Link (the verification namespace, its accounts, canary).
    link_checks: Callable[[mc.Cluster], list[dict[str, Any]]] | None = None
    checks_after: Sequence[pulumi.Resource] = ()
    # Peers' exports already read (tests, or a caller that read them); None: read here.
    peers: Mapping[str, PeerExport] | None = None
    # NetworkPolicies of cross-cluster traffic (MulticlusterPlan.network_policies: the gateway pods' own, whole) and
    # the callers' ways out to the peers' gateways (MulticlusterPlan.gateway_egress: markers filled here from the
    # peers' applied gatewayAddresses; plan/linkerd/multicluster_network.py).
    network_policies: Sequence[dict[str, Any]] = ()
    gateway_egress: Sequence[dict[str, Any]] = ()
    # The workload namespaces' Namespace resources, by name: a caller's gateway egress waits for its namespace.
    workload_namespaces: Mapping[str, pulumi.Resource] = field(default_factory=dict)


class LinkerdMulticluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: LinkerdMulticlusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mtls-mesh:linkerd:Multicluster", name, None, opts)
        peers = args.peers if args.peers is not None else read_peer_exports(args.peer_stacks, parent=self)
        cluster, waiting, problems = contract.with_peer_outputs(
            args.cluster, {p: e.plain for p, e in peers.items()}, args.peer_stacks)
        if problems:
            if pulumi.runtime.is_dry_run():
                for problem in problems:
                    pulumi.log.warn(f"{problem}. `pulumi up` will refuse until then.")
            else:
                raise SettingsError(problems)
        if waiting:
            pulumi.log.warn(contract.missing_peers_message(cluster.name, waiting, args.peer_stacks))
        pending = [p for p in contract.gateways_pending({p: e.plain for p, e in peers.items()})
                   if cluster.peer(p) is not None and cluster.peer(p).mirrors_from]
        if pending:
            pulumi.log.warn(contract.GATEWAY_PENDING.format(peers=", ".join(args.peer_stacks.get(p, p) for p in pending)))
        mc.refuse_unsafe_exports(cluster)
        self.cluster = cluster
        self.waiting = waiting

        def after(*resources: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[r for r in resources if r is not None])

        namespace = register(f"{name}-namespace", mc.namespace_object(cluster.cni), after(args.linkerd_namespace))
        self.release = k8s.helm.v3.Release(
            f"{name}-release", name=mc.CHART, chart=mc.CHART, version=args.chart_version,
            repository_opts={"repo": secret_input(args.repository)}, namespace=mc.NAMESPACE, create_namespace=False,
            values=mc.chart_values(cluster), timeout=HELM_TIMEOUT_SECONDS,
            opts=after(namespace, args.control_plane))

        # Links and credentials: the Secrets first (the controller reads them when it sees the Link), the Link after
        # the release, which ships the Link CRD ([LC] templates/link-crd.yaml).
        self.credentials: dict[str, list[pulumi.Resource]] = {}
        self.links: dict[str, pulumi.Resource] = {}
        for peer in sorted(cluster.mirrored_from, key=lambda p: p.name):
            export = peers[peer.name]
            assert export.plain is not None  # with_peer_outputs linked only peers that applied
            ca = str(export.plain["apiServerCa"])
            token = export.output.apply(lambda value, me=cluster.name: value[contract.TOKENS][me])
            secrets = []
            for obj in mc.credentials_secrets(cluster, peer):
                marker = obj["data"][mc.KUBECONFIG_KEY]
                data = pulumi.Output.secret(token.apply(lambda t, marker=marker: marker.data(ca, t)))
                body = {**obj, "data": {mc.KUBECONFIG_KEY: data}}
                where = obj["metadata"]["namespace"]
                secrets.append(register(f"{name}-credentials-{peer.name}-{where}", body,
                                        after(namespace if where == mc.NAMESPACE else args.linkerd_namespace)))
            self.credentials[peer.name] = secrets
            self.links[peer.name] = register(f"{name}-link-{peer.name}", mc.link(peer), after(self.release, *secrets))

        # The chart's gateway policy, narrowed: forced server-side-apply patches over the release's objects.
        self.gateway_policy = [
            k8s.apiextensions.CustomResourcePatch(
                f"{name}-gateway-{obj['metadata']['name']}", api_version=obj["apiVersion"], kind=obj["kind"],
                metadata=obj["metadata"], spec=obj["spec"], opts=after(self.release))
            for obj in mc.gateway_policy_objects(cluster, args.chart_version)]

        policy = [*mc.peer_probe_objects(cluster),
                  *mc.prometheus_objects(args.prometheus_service_accounts, args.prometheus_networks,
                                         cluster.trust_domain, cluster.linkerd_namespace)]
        self.policy = [register(f"{name}-{o['kind'].lower()}-{o['metadata']['name']}", o,
                                after(namespace, args.policy_crds, self.release)) for o in policy]
        # The gateway pods' NetworkPolicy, and each caller's egress to the gateways of the peers that have applied
        # one (a peer without an address yet gets no rule: an empty `to` would admit every destination).
        self.network_policies = [register(f"{name}-networkpolicy-{o['metadata']['name']}", o, after(namespace))
                                 for o in args.network_policies]
        addresses = {args.peer_stacks.get(p, p): list((e.plain or {}).get("gatewayAddresses") or ())
                     for p, e in peers.items()}
        for policy in args.gateway_egress:
            filled = fill_gateway_egress(policy, addresses)
            if filled is None:
                continue
            where = filled["metadata"]["namespace"]
            self.network_policies.append(register(
                f"{name}-networkpolicy-{where}-{filled['metadata']['name']}", filled,
                after(args.workload_namespaces.get(where))))
        self.pod_monitor = self.rule = None
        if args.monitoring:
            self.pod_monitor = register(f"{name}-pod-monitor", mc.pod_monitor(args.monitoring_labels), after(namespace))
            self.rule = register(f"{name}-rules", mc.prometheus_rule(cluster, args.monitoring_labels), after(namespace))

        self.checks: list[pulumi.Resource] = []
        for obj in args.link_checks(cluster) if args.link_checks is not None else ():
            # Each check calls across one Link: it waits for that Link and what the verification namespace holds.
            peer = obj["metadata"]["labels"][TARGET_CLUSTER_LABEL]
            self.checks.append(register(f"{name}-check-{obj['metadata']['name']}", obj,
                                        after(self.links[peer], *args.checks_after)))

        self.contract = self._contract(name, cluster, args)
        self.register_outputs({"links": sorted(self.links), "waiting": list(waiting)})

    def _contract(self, name: str, cluster: mc.Cluster, args: LinkerdMulticlusterArgs) -> dict[str, Any]:
        """The `multicluster` output: the plain part, then what the release made, read back once it is applied. The
        reads' ids come from the release's id, so in a first preview (release not created) they are unknown and the
        engine skips the read instead of failing on an object that does not exist yet (pulumi
        pkg/resource/deploy/step.go ReadStep.Apply: "The only time we can't run is if the ID we are given is
        unknown")."""
        plain = contract.own_contract(cluster, cluster_domain=args.cluster_domain, api_server=args.api_server,
                                      networks=tuple(args.networks))
        released = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        addresses: Any = []
        if cluster.gateway_exports:
            service = k8s.core.v1.Service.get(f"{name}-gateway-service",
                                              self.release.id.apply(lambda _: GATEWAY_SERVICE_ID), opts=released)
            addresses = service.status.apply(_addresses_or_warn)
        tokens: dict[str, pulumi.Output] = {}
        ca: Any = ""
        for peer in sorted(cluster.linked_by, key=lambda p: p.name):
            account = mc.remote_access_account(peer.name)
            # Never read in a preview: a pull request's preview runs its own code as the preview identity, which may
            # read no Secret (plan/preview_identity.py), and a forbidden read fails the whole preview
            # (pulumi-kubernetes provider/pkg/provider/provider.go `Read` passes on every error but a 404); were it
            # allowed, unreviewed code would hold the tokens. An unknown id skips the read under the same URN.
            secret_id = (unknown_output() if pulumi.runtime.is_dry_run()
                         else self.release.id.apply(lambda _, a=account: f"{mc.NAMESPACE}/{a}-token"))
            secret = k8s.core.v1.Secret.get(f"{name}-token-{peer.name}", secret_id, opts=released)
            tokens[peer.name] = pulumi.Output.secret(secret.data.apply(lambda d: _decoded(d, TOKEN_KEY)))
            if not ca:
                ca = secret.data.apply(lambda d: _decoded(d, CA_KEY))
        # A dict of Outputs, not one Output: the stack output keeps each token a secret of its own (the SDK serializes
        # nested secrets as they are), and the rest stays readable with `pulumi stack output multicluster`.
        return {**plain, "gatewayAddresses": addresses, "apiServerCa": ca, contract.TOKENS: tokens}



def _addresses_or_warn(status: Any) -> list[str]:
    addresses = contract.gateway_addresses(status)
    if not addresses:
        pulumi.log.warn(contract.OWN_GATEWAY_PENDING)
    return addresses


def _decoded(data: Mapping[str, str] | None, key: str) -> str:
    """A value of a Secret's `data`, base64-decoded; "" while the token controller has not filled it in (the peer
    then finds no token for it and waits, contract.with_peer_outputs)."""
    value = (data or {}).get(key)
    return base64.b64decode(value).decode() if value else ""


def register_multicluster(cluster: mc.Cluster, peer_stacks: Mapping[str, str], *, chart_version: str,
                          repository: Any, api_server: str, networks: tuple[str, ...] = (),
                          opts: pulumi.ResourceOptions | None = None, **wiring: Any) -> LinkerdMulticluster:
    """What `__main__.py` calls for a cluster stack (`cluster` set): registers the cluster's multicluster part and
    exports the `multicluster` output its peers read."""
    component = LinkerdMulticluster("multicluster", LinkerdMulticlusterArgs(
        cluster=cluster, peer_stacks=peer_stacks, chart_version=chart_version, repository=repository,
        api_server=api_server, networks=networks, **wiring), opts)
    pulumi.export(contract.OUTPUT, component.contract)
    return component
