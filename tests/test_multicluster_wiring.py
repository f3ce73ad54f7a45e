"""Linkerd multicluster registered (components/linkerd_multicluster.py) and the cross-stack contract
(plan/linkerd/multicluster_contract.py), run under the harness's mocks: two cluster stacks of one environment, where
each reads the other's `multicluster` output through a StackReference answered as the other stack exported it.

What must hold: the release is the pinned chart with the plan's values; per peer that applied, its two credentials
Secrets and its Link (valid against the Link CRD the chart ships) carry what the peer exported; the peer's token is a
Pulumi secret from the StackReference to the Secret and appears in clear in no registered input, no log line and no
export; the own tokens are exported secret; a peer that has not applied (no output, or unknown in a preview) gets no
Link and a warning naming the order; a peer whose export disagrees with its stack file is refused by `up`."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging

import grpc
import pytest

import pulumi

from conformance import validate_object
from harness import (UNKNOWN, is_secret_envelope, mock_certificate_pem, plain, run_function, run_program, secret)
from plan.linkerd import multicluster as mc
from plan.linkerd import multicluster_contract as contract
from read.errors import SettingsError

TD = "prod.example"  # one trust domain for every cluster of the environment (docs/multicluster.md)
EAST, WEST = "east", "west"
EAST_STACK, WEST_STACK = "prod-east", "prod-west"
EAST_NETWORKS, WEST_NETWORKS = ("203.0.113.0/24",), ("198.51.100.0/24",)
CHART_VERSION = "2026.8.3"
REPOSITORY = "https://helm.linkerd.io/edge"
EAST_TOKEN = "MOCK-JWT-linkerd-service-mirror-remote-access-west-token"  # what east's token Secret holds for west


def east_cluster() -> mc.Cluster:
    # east exports `ledger` through its gateway to west's frontend.
    return mc.Cluster(EAST, TD, peers=(mc.Peer(WEST, TD, networks=WEST_NETWORKS),),
                      exports=(mc.Export("payments", "ledger", mc.GATEWAY, ("http",),
                                         (mc.Caller(WEST, "web", "frontend"),)),))


def west_cluster() -> mc.Cluster:
    return mc.Cluster(WEST, TD, peers=(mc.Peer(EAST, TD, networks=EAST_NETWORKS),),
                      exports=(mc.Export("web", "frontend", mc.REMOTE_DISCOVERY, ("http",),
                                         (mc.Caller(EAST, "payments", "ledger"),)),))


def program(cluster: mc.Cluster, peer_stacks: dict[str, str], api_server: str, networks=()):
    def run():
        from components.linkerd_multicluster import register_multicluster
        from plan.linkerd.multicluster_verification import link_checks

        register_multicluster(cluster, peer_stacks, chart_version=CHART_VERSION, repository=REPOSITORY,
                              api_server=api_server, networks=networks,
                              prometheus_service_accounts=[("prometheus", "monitoring")],
                              monitoring_labels={"release": "prometheus"},
                              link_checks=lambda completed: link_checks(completed, "curlimages/curl:8.11.1", "d1"))
    return run


def run_east(**kw):
    return run_function(program(east_cluster(), {WEST: WEST_STACK}, "https://east.example:6443", EAST_NETWORKS),
                        EAST_STACK, **kw)


def run_west(**kw):
    return run_function(program(west_cluster(), {EAST: EAST_STACK}, "https://west.example:6443", WEST_NETWORKS),
                        WEST_STACK, **kw)


def as_referenced(run) -> dict:
    """A run's outputs as a StackReference to its stack answers them: each value exported secret keeps its envelope
    (checked here on the run's own Outputs, so the fixture cannot mark secret what the program left plain)."""
    raw = run.raw_exports[contract.OUTPUT]
    value = copy.deepcopy(run.exports[contract.OUTPUT])
    for peer, token in raw[contract.TOKENS].items():
        assert isinstance(token, pulumi.Output)
        from pulumi.runtime.sync_await import _sync_await
        assert _sync_await(token.is_secret()), f"the token for {peer} is exported in clear"
        value[contract.TOKENS][peer] = secret(value[contract.TOKENS][peer])
    # Every other output as the stack exported it (the peers also read trustRotation, trustAnchors and, from the
    # root-owning stack, its secret meshRootKeys), secret where the run exported it secret.
    others = {name: secret(out) if name in run.secret_exports else out
              for name, out in run.exports.items() if name != contract.OUTPUT}
    return {**others, contract.OUTPUT: value}


@pytest.fixture(scope="module")
def east_first():
    return run_east()


@pytest.fixture(scope="module")
def west_linked(east_first):
    return run_west(references={EAST_STACK: as_referenced(east_first)})


def objects(run, kind):
    return [r.object() for r in run.kubernetes() if r.type.endswith(f":{kind}")]


# --- the contract ------------------------------------------------------------------------------------------------

def test_a_stack_exports_its_contract_with_each_peers_token_secret(east_first):
    value = east_first.exports[contract.OUTPUT]
    assert set(value) == set(contract.PLAIN_KEYS) | {contract.TOKENS}
    assert value["cluster"] == EAST and value["trustDomain"] == TD and value["linkerdNamespace"] == "linkerd"
    assert value["apiServer"] == "https://east.example:6443" and value["networks"] == list(EAST_NETWORKS)
    # Read back from the gateway Service's LoadBalancer status and from the chart's token Secret, after the release.
    assert value["gatewayAddresses"] == ["192.0.2.10"]
    assert value["apiServerCa"] == mock_certificate_pem("apiserver-ca")
    assert value["gatewayIdentity"] == mc.gateway_identity(TD)
    assert value[contract.TOKENS] == {WEST: EAST_TOKEN}
    assert contract.OUTPUT in east_first.secret_exports
    as_referenced(east_first)  # each token is its own secret Output


def test_the_first_stack_up_links_nothing_and_says_which_peer_to_bring_up(caplog):
    with caplog.at_level(logging.WARNING):
        run = run_east()
    assert objects(run, "Link") == [] and [s for s in objects(run, "Secret")] == []
    said = " ".join(r.getMessage() for r in caplog.records)
    assert WEST_STACK in said and "Bring the peer up first" in said
    # The account west will use is made now, so west can link first (chart values: one remote-access account).
    values = plain(run.named("multicluster-release").inputs["values"])
    assert values["remoteMirrorServiceAccountName"] == mc.remote_access_account(WEST)
    assert values["controllers"] == [], "no controller for a peer with no Link"


# --- links from the peer's export --------------------------------------------------------------------------------------

def test_a_peer_that_applied_gets_its_link_and_credentials(west_linked, east_first):
    exported = east_first.exports[contract.OUTPUT]
    (link,) = objects(west_linked, "Link")
    assert (link["metadata"]["name"], link["metadata"]["namespace"]) == (EAST, mc.NAMESPACE)
    assert link["spec"]["gatewayAddress"] == ",".join(exported["gatewayAddresses"])
    assert link["spec"]["gatewayIdentity"] == exported["gatewayIdentity"]
    secrets = objects(west_linked, "Secret")
    assert {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in secrets} == {
        (mc.NAMESPACE, "cluster-credentials-east"), ("linkerd", "cluster-credentials-east")}
    for s in secrets:
        config = json.loads(base64.b64decode(s["data"]["kubeconfig"]))
        assert config["users"][0]["user"]["token"] == EAST_TOKEN
        assert config["clusters"][0]["cluster"]["server"] == exported["apiServer"]
        assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == \
            exported["apiServerCa"]
    values = plain(west_linked.named("multicluster-release").inputs["values"])
    assert values["controllers"] == [{"link": {"ref": {"name": EAST}}}]


def shown_in_clear(run) -> str:
    """Every registered input with its secret envelopes cut out: what a preview or the state shows in clear."""
    def clear(value):
        if is_secret_envelope(value):
            return "[secret]"
        if isinstance(value, dict):
            return {k: clear(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clear(v) for v in value]
        return value

    return json.dumps([clear(r.inputs) for r in run.registrations])


def test_the_peers_token_is_a_secret_in_every_input_and_never_in_clear(west_linked, caplog):
    secrets = [r for r in west_linked.kubernetes() if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) == 2
    for registration in secrets:
        assert is_secret_envelope(registration.inputs["data"]), registration.name
    shown = shown_in_clear(west_linked)
    assert EAST_TOKEN not in shown and base64.b64encode(EAST_TOKEN.encode()).decode()[:24] not in shown
    assert "[secret]" in shown
    with caplog.at_level(logging.DEBUG):
        run_west(references={EAST_STACK: {contract.OUTPUT: {**peer_export(), contract.TOKENS: {WEST: secret(EAST_TOKEN)}}}})
    assert EAST_TOKEN not in " ".join(r.getMessage() for r in caplog.records)
    assert EAST_TOKEN not in json.dumps(west_linked.exports, default=str)


def test_the_clear_text_check_can_fail():
    """The token registered where nothing marks it secret (a ConfigMap) is found by the same walk."""
    run = run_function(lambda: __import__("pulumi_kubernetes").core.v1.ConfigMap(
        "leak", metadata={"name": "x", "namespace": "y"}, data={"kubeconfig": EAST_TOKEN}))
    assert EAST_TOKEN in shown_in_clear(run)


def test_the_peers_output_reaches_this_stack_secret_and_its_plain_part_holds_no_token():
    seen = {}

    def read():
        from components.linkerd_multicluster import read_peer_exports

        (export,) = read_peer_exports({EAST: EAST_STACK}).values()
        seen["plain"] = export.plain
        token = export.output.apply(lambda v: v[contract.TOKENS][WEST])
        pulumi.Output.all(token, token.is_secret()).apply(lambda v: seen.update(token=v[0], secret=v[1]))

    run_function(read, WEST_STACK, references={EAST_STACK: {contract.OUTPUT: {
        **peer_export(), contract.TOKENS: {WEST: secret(EAST_TOKEN)}}}})
    assert seen["secret"] is True and seen["token"] == EAST_TOKEN
    assert seen["plain"][contract.TOKENS] == [WEST] and EAST_TOKEN not in json.dumps(seen["plain"])


def peer_export() -> dict:
    """east's export as a fixture (the plain part; tokens added per test)."""
    return {"cluster": EAST, "trustDomain": TD, "linkerdNamespace": "linkerd", "clusterDomain": "cluster.local",
            "apiServer": "https://east.example:6443", "apiServerCa": "CA", "gatewayAddresses": ["192.0.2.10"],
            "gatewayIdentity": mc.gateway_identity(TD), "networks": list(EAST_NETWORKS)}


# --- previews and bring-up order ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("peer_outputs", [{}, {contract.OUTPUT: UNKNOWN}], ids=["never-applied", "unknown"])
def test_a_preview_before_the_peer_applied_registers_no_link_and_warns(peer_outputs, caplog):
    with caplog.at_level(logging.WARNING):
        run = run_west(references={EAST_STACK: peer_outputs}, preview=True)
    assert objects(run, "Link") == [] and objects(run, "Secret") == []
    said = [r.getMessage() for r in caplog.records if "does not link to" in r.getMessage()]
    assert len(said) == 1 and EAST_STACK in said[0] and "Bring the peer up first" in said[0]
    # The release still makes east's account here, so east can link to west first.
    values = plain(run.named("multicluster-release").inputs["values"])
    assert values["remoteMirrorServiceAccountName"] == mc.remote_access_account(EAST)


def test_a_peer_that_applied_before_listing_this_cluster_is_waited_for(east_first, caplog):
    """east applied, but its export holds no token for west (it did not list west yet): no Link, a warning."""
    reference = as_referenced(east_first)
    reference[contract.OUTPUT][contract.TOKENS] = {}
    with caplog.at_level(logging.WARNING):
        run = run_west(references={EAST_STACK: reference})
    assert objects(run, "Link") == []
    assert any("Bring the peer up first" in r.getMessage() for r in caplog.records)


def test_a_peer_whose_gateway_had_no_address_is_linked_without_one_and_said(east_first, caplog):
    reference = as_referenced(east_first)
    reference[contract.OUTPUT]["gatewayAddresses"] = []
    with caplog.at_level(logging.WARNING):
        run = run_west(references={EAST_STACK: reference})
    (link,) = objects(run, "Link")
    assert "gatewayAddress" not in link["spec"] and "probeSpec" not in link["spec"]
    assert any("had no LoadBalancer address" in r.getMessage() and EAST_STACK in r.getMessage()
               for r in caplog.records)


def test_a_first_preview_reads_nothing_that_does_not_exist_yet():
    """In a stack's first preview the release is not created: the reads' ids are unknown, so the engine skips them, and
    the contract is unknown instead of failing on a missing Service or Secret."""
    run = run_east(preview=True)
    assert run.exports[contract.OUTPUT] is None, "unknown until the release exists"
    assert objects(run, "Link") == [] and run.named("multicluster-release").step == "create"


def test_an_export_that_disagrees_with_the_peers_stack_file_is_refused_by_up(east_first, caplog):
    reference = as_referenced(east_first)
    reference[contract.OUTPUT]["gatewayIdentity"] = mc.gateway_identity("other.example")
    with pytest.raises(SettingsError, match="gatewayIdentity") as refused:
        run_west(references={EAST_STACK: reference})
    assert not [r for r in refused.value.registrations if r.type.startswith("kubernetes:")]
    with caplog.at_level(logging.WARNING):
        run = run_west(references={EAST_STACK: reference}, preview=True)
    assert objects(run, "Link") == []
    assert any("gatewayIdentity" in r.getMessage() for r in caplog.records)


# --- what is registered, against the pinned chart and schemas ---------------------------------------------------------

def test_the_release_is_the_pinned_chart_with_the_plans_values(west_linked, east_first, needs_shared):
    from tools import render_chart

    release = west_linked.named("multicluster-release")
    assert (release.inputs["chart"], release.inputs["version"]) == (mc.CHART, CHART_VERSION)
    values = plain(release.inputs["values"])
    assert values == mc.chart_values(west_linked_cluster(east_first))
    namespace = west_linked.object("Namespace", mc.NAMESPACE)
    assert release.inputs["namespace"] == mc.NAMESPACE and release.inputs["createNamespace"] is False
    namespace_urn = next(r.urn for r in west_linked.kubernetes() if r.object() == namespace)
    assert namespace_urn in release.dependencies
    rendered = render_chart(mc.CHART, mc.CHART, mc.NAMESPACE, values)
    assert any(o.get("kind") == "Deployment" and o["metadata"]["name"] == f"controller-{EAST}" for o in rendered)


def test_the_gateway_policy_patches_are_forced_and_follow_the_release(east_first):
    patches = [r for r in east_first.registrations if r.type.startswith("kubernetes:") and "Patch" in r.type]
    release = east_first.named("multicluster-release")
    assert {plain(r.inputs)["kind"] for r in patches} == {"MeshTLSAuthentication", "NetworkAuthentication"}
    for patch in patches:
        assert plain(patch.inputs)["metadata"]["annotations"][mc.PATCH_FORCE] == "true"
        assert release.urn in patch.dependencies
    identities = next(plain(r.inputs)["spec"]["identities"] for r in patches
                      if plain(r.inputs)["kind"] == "MeshTLSAuthentication")
    assert identities == [mc.identity("frontend", "web", TD)]


def test_every_registered_object_is_valid_against_its_schema(west_linked, east_first, needs_shared):
    from test_multicluster import link_schema, render, validate_link

    schema = link_schema(render(west_cluster()))
    kinds = set()
    for run in (west_linked, east_first):
        for registration in run.kubernetes():
            if registration.type.startswith("kubernetes:helm.sh"):
                continue
            obj = plain(registration.inputs)
            obj = {**obj, "apiVersion": _api_version(registration.type), "kind": registration.type.rsplit(":", 1)[1]
                   .removesuffix("Patch")}
            errors = validate_link(obj, schema) if obj["kind"] == "Link" else validate_object(obj)
            assert errors == [], (registration.name, errors)
            kinds.add(obj["kind"])
    assert {"Namespace", "Secret", "Link", "PodMonitor", "PrometheusRule", "MeshTLSAuthentication",
            "AuthorizationPolicy"} <= kinds


def west_linked_cluster(east_run):
    """West's cluster as completed from east's export (independently of the component)."""
    exported = {EAST: contract.plain_part(east_run.exports[contract.OUTPUT])}
    return contract.with_peer_outputs(west_cluster(), exported, {EAST: EAST_STACK})[0]


def _api_version(type_: str) -> str:
    group, _, version = type_.split(":")[1].rpartition("/")
    return version if group == "core" else f"{group}/{version}"


# --- the program: the example's two cluster stacks, one reading the other -------------------------------------------

@contextlib.contextmanager
def in_example():
    """examples/multicluster as the stacks directory: dev-east and dev-west read each other's stack files there."""
    from harness import PROJECT_DIR
    from read import stack_files

    saved = stack_files.STACKS_DIR
    stack_files.STACKS_DIR = PROJECT_DIR / "examples" / "multicluster"
    try:
        yield
    finally:
        stack_files.STACKS_DIR = saved


@pytest.fixture(scope="module")
def example_stacks():
    with in_example():
        east = run_program("dev-east")
        west = run_program("dev-west", references={"dev-east": as_referenced(east)})
        # Before east applied, `up` refuses (test_a_secondary_cluster_before_its_root_stack_refuses); a preview shows it.
        west_first = run_program("dev-west", preview=True)
        east_again = run_program("dev-east", references={"dev-west": as_referenced(west)})
        preview = run_program("dev-west", references={"dev-east": {}}, preview=True)
    return {"east": east, "west": west, "west-first": west_first, "east-again": east_again, "preview": preview}


def test_without_alerts_no_link_monitor_or_rules_are_registered(example_stacks):
    assert {o["metadata"]["name"] for o in example_stacks["east"].objects("PodMonitor")} >= {mc.POD_MONITOR_NAME}
    with in_example():
        quiet = run_program("dev-east", set_config={"alerts": False})
    assert mc.POD_MONITOR_NAME not in {o["metadata"]["name"] for o in quiet.objects("PodMonitor")}
    assert mc.RULE_NAME not in {o["metadata"]["name"] for o in quiet.objects("PrometheusRule")}


def links(run):
    return sorted(o["metadata"]["name"] for o in objects(run, "Link"))


def test_a_secondary_cluster_before_its_root_stack_refuses():
    """dev-west shares dev-east's root (meshRootStack): before dev-east applied there is no root to sign under, so
    `up` stops with one error naming the key and the order, before anything is registered."""
    with in_example(), pytest.raises(SettingsError) as caught:
        run_program("dev-west")
    text = str(caught.value)
    assert "mtls-mesh:meshRootStack" in text and "dev-east" in text and "pulumi up" in text


def test_the_program_links_cluster_stacks_in_the_documented_order(example_stacks):
    """The root stack first (links nothing), the other next (links to it), the root again (links back)."""
    assert links(example_stacks["east"]) == []
    assert links(example_stacks["west"]) == [EAST]
    assert links(example_stacks["west-first"]) == [], "east had not applied"
    assert links(example_stacks["east-again"]) == [WEST]
    assert links(example_stacks["preview"]) == []
    for run in example_stacks.values():
        if not run.preview:
            assert set(run.exports[contract.OUTPUT]) == set(contract.PLAIN_KEYS) | {contract.TOKENS}
            assert contract.OUTPUT in run.secret_exports


def test_the_program_registers_the_release_after_the_control_plane_and_checks_each_link(example_stacks):
    west = example_stacks["west"]
    release = west.named("multicluster-release")
    control_plane = west.named("linkerd-control-plane")
    assert control_plane.urn in release.dependencies
    jobs = [r for r in west.kubernetes() if r.type.endswith(":Job") and "link-" in r.name]
    assert {plain(j.inputs)["metadata"]["labels"]["mtls-mesh.io/target-cluster"] for j in jobs} == {EAST}
    assert len(jobs) == 3
    # The canary the peers' checks call is exported.
    canary = next(o for o in west.objects("Service") if o["metadata"]["name"] == "canary")
    assert canary["metadata"]["labels"][mc.EXPORTED] == "remote-discovery"
    assert shown_in_clear(west).count("MOCK-JWT") == 0


def test_a_single_cluster_stack_registers_nothing_of_multicluster():
    run = run_program("dev")
    assert contract.OUTPUT not in run.exports
    assert not [r for r in run.registrations if "multicluster" in r.name or r.type.endswith(":Link")]
    canary = next(o for o in run.objects("Service") if o["metadata"]["name"] == "canary")
    assert mc.EXPORTED not in canary["metadata"].get("labels", {})


def test_cross_cluster_network_policies_are_registered_with_the_peers_gateway_addresses(example_stacks):
    """The gateway pods' NetworkPolicy in the cluster that exports in gateway mode, and the caller's egress to that
    peer's gateway filled from the address the peer exported (plan/linkerd/multicluster_network.py); none before the
    peer applied, since an empty `to` would admit every destination."""
    east, west = example_stacks["east"], example_stacks["west"]
    gateway = [o for o in east.objects("NetworkPolicy") if o["metadata"]["namespace"] == mc.NAMESPACE]
    assert [o["metadata"]["name"] for o in gateway] == ["mtls-mesh-gateway"]
    exported = east.exports[contract.OUTPUT]["gatewayAddresses"]
    assert exported, "the example's east exports in gateway mode, so it publishes its gateway's address"
    egress = [o for o in west.objects("NetworkPolicy") if o["metadata"]["name"].endswith("-gateways")]
    assert egress, "west's caller of a gateway-exported east service gets its way out to east's gateway"
    blocks = {peer["ipBlock"]["cidr"] for o in egress for rule in o["spec"]["egress"] for peer in rule["to"]}
    assert blocks == {f"{address}/32" for address in exported}
    assert all(port["port"] == mc.GATEWAY_PORT for o in egress for rule in o["spec"]["egress"] for port in rule["ports"])
    for policy in gateway + egress:
        validate_object(policy)
    before = example_stacks["preview"]
    assert not [o for o in before.objects("NetworkPolicy") if o["metadata"]["name"].endswith("-gateways")]


def test_every_alert_of_a_cluster_stack_names_its_cluster(example_stacks):
    """Each cluster's Prometheus evaluates its own certificates and links; the `cluster` label keeps their alerts apart
    downstream (certificate expiry per cluster), including the expiry groups written at registration. A single-cluster
    stack's alerts are unchanged."""
    west = example_stacks["west"]  # linked to east's gateway: its link alerts exist
    rules = [rule for obj in west.objects("PrometheusRule") for group in obj["spec"]["groups"]
             for rule in group["rules"] if "alert" in rule]
    assert {r["alert"] for r in rules} >= {"MeshIdentityIssuerExpiring", "MulticlusterLinkStalled"}
    assert any(r["alert"].startswith("MeshTrustAnchor") for r in rules), "the expiry group written at registration"
    assert {r["labels"].get("cluster") for r in rules} == {"west"}
    single = run_program("dev")
    assert not [rule for obj in single.objects("PrometheusRule") for group in obj["spec"]["groups"]
                for rule in group["rules"] if "cluster" in rule.get("labels", {})]


class BackendWithoutStacks:
    """Mocks whose backend knows only the running stack and the referenced ones: reading any other fails, for a
    StackReference and for the readStackOutputs invoke alike, as the engine does (pulumi pkg/backend/backend.go
    `GetStackOutputs`: `unknown stack %q`)."""

    def __new__(cls, previous_outputs):
        from harness import RecordingMocks

        class EngineError(grpc.RpcError):
            """What the resource monitor answers a failed invoke or read with (a gRPC error; the SDK hands an
            invoke's to its caller: pulumi/runtime/invoke.py `do_invoke`)."""

            def __init__(self, message):
                super().__init__(message)
                self.message = message

            def code(self):
                return grpc.StatusCode.UNKNOWN

            def details(self):
                return self.message

        class Mocks(RecordingMocks):
            def known(self, name, token):
                target = str(name).rsplit("/", 1)[-1]
                if target != pulumi.get_stack() and target not in self.references:
                    raise EngineError(f'invocation of {token} returned an error: unknown stack "{name}"')

            def new_resource(self, args):
                if args.typ == "pulumi:pulumi:StackReference":
                    self.known(args.name, "read")
                return super().new_resource(args)

            def call(self, args):
                if args.token == "pulumi:pulumi:readStackOutputs":
                    self.known(args.args.get("name", ""), args.token)
                return super().call(args)

        return Mocks(previous_outputs)


def test_the_first_cluster_comes_up_before_its_peers_have_stacks(caplog):
    """Bringing stacks up, step 1 (and an existing stack's first `up` as cluster east): the peer's stack has not been
    created yet. It is waited for as a peer that has not applied (no Link, the warning naming the order), in `up`
    and in a preview, instead of failing the update on a StackReference to a stack the backend does not know."""
    for preview in (False, True):
        caplog.clear()
        with in_example(), caplog.at_level(logging.WARNING):
            east = run_program("dev-east", mocks_factory=BackendWithoutStacks, preview=preview)
        assert links(east) == []
        assert "does not link to dev-west (west) yet" in caplog.text


def test_a_preview_reads_no_token_secret():
    """A pull request's preview runs the pull request's code as the preview identity, which may read no Secret
    (plan/preview_identity.py): a read of the remote-access token Secrets would be forbidden, and pulumi-kubernetes
    fails a read on any error but a 404 (provider/pkg/provider/provider.go `Read`), so every preview of a stack a
    peer links to would fail; were it allowed, unreviewed code would hold the tokens. The preview reads them with an
    unknown id (the engine skips such a read: pulumi pkg/resource/deploy/step.go ReadStep.Apply), so they stay under
    their URNs; `up` reads them."""
    from harness import RecordingMocks

    reads = []

    class Recording(RecordingMocks):
        def new_resource(self, args):
            if args.typ == "kubernetes:core/v1:Secret" and args.name.startswith("multicluster-token-"):
                reads.append((args.name, args.resource_id))
            return super().new_resource(args)

    with in_example():
        east = run_program("dev-east", mocks_factory=Recording)
        assert [name for name, _ in reads] == ["multicluster-token-west"], reads
        assert reads[0][1] != UNKNOWN
        reads.clear()
        preview = run_program("dev-east", mocks_factory=Recording, preview=True, state=east)
    assert [name for name, _ in reads] == ["multicluster-token-west"], reads
    assert reads[0][1] == UNKNOWN, "the preview read the token Secret"


def test_the_preview_identity_may_dry_run_every_kind_a_cluster_stack_registers(example_stacks):
    """A pull request's preview runs as the preview identity (plan/preview_identity.py), which may read and dry-run
    only the kinds its ClusterRole names: a cluster stack's role must name the Link and every other kind of its
    multicluster part, or their previews lose the server-side diff."""
    west = example_stacks["west"]
    role = next(o for o in west.objects("ClusterRole") if o["metadata"]["name"] == "mtls-mesh-preview")
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}
    assert ("multicluster.linkerd.io", "links") in granted
    from plan.preview_identity import group_kind, resource_of
    for registration in west.kubernetes():
        obj = registration.object()
        if obj.get("metadata", {}).get("namespace") == mc.NAMESPACE and obj.get("kind") not in ("Secret", None):
            group, kind = group_kind(obj["apiVersion"], obj["kind"])
            assert (group, resource_of(group, kind)) in granted, (group, kind)
