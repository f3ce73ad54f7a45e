"""Linkerd multicluster groundwork (plan/linkerd/multicluster.py), checked against the pinned linkerd-multicluster chart
rendered by Helm, the Link CRD that chart ships, the Linkerd policy and prometheus-operator CRDs, core schemas, and
promtool: names the chart's objects refer to, values it reads, link-gen's shapes, the gateway's narrowed policy, the
refusal of gateway-mode edges that would need per-caller policy, and the link-health alerts."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conformance import _metadata_probe, _to_jsonschema, unknown_chart_values, unknown_fields, validate_core, validate_object
from plan.linkerd import multicluster as mc
from read.errors import SettingsError
from tools import CHARTS, CHART_PATHS, promtool, render_chart

WEST, EAST, NORTH = "west", "east", "north"
WEST_TD, EAST_TD, NORTH_TD = "west.example", "east.example", "north.example"
EAST_NET, NORTH_NET = "203.0.113.0/24", "198.51.100.0/24"
CHART_VERSION = "2026.8.3"

EAST_PEER = mc.Peer(EAST, EAST_TD, api_server="https://east.example:6443", gateway_addresses=("192.0.2.10",),
               networks=(EAST_NET,))
# Pod-to-pod only: no gateway, linked one way (west mirrors from north; north does not mirror from west).
NORTH_PEER = mc.Peer(NORTH, NORTH_TD, api_server="https://north.example:6443", networks=(NORTH_NET,), mirrored_by=False)


def west(exports=(), peers=(EAST_PEER, NORTH_PEER), **kw) -> mc.Cluster:
    return mc.Cluster(WEST, WEST_TD, peers=tuple(peers), exports=tuple(exports), **kw)


def caller(cluster, ns, sa, *ports):
    return mc.Caller(cluster, ns, sa, tuple(ports))


LEDGER = mc.Export("payments", "ledger", mc.GATEWAY, ("http",), (caller(EAST, "web", "frontend"),))
BILLING = mc.Export("payments", "billing", mc.GATEWAY, ("http", "admin"),
                    (caller(EAST, "web", "frontend"),))
ACCOUNTS = mc.Export("payments", "accounts", mc.REMOTE_DISCOVERY, ("grpc",), (caller(EAST, "batch", "reconciler"),))


@pytest.fixture(scope="module")
def cluster():
    return west([LEDGER, BILLING, ACCOUNTS])


def render(cluster: mc.Cluster) -> list[dict]:
    return render_chart(mc.CHART, mc.CHART, mc.NAMESPACE, mc.chart_values(cluster))


def find(objects, kind, name, namespace=mc.NAMESPACE):
    found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name
             and o["metadata"].get("namespace", namespace) == namespace]
    return found[0] if found else None


def link_schema(objects) -> dict:
    """The Link CRD as the chart ships it (templates/link-crd.yaml), the served v1alpha3 schema."""
    crd = next(o for o in objects if o.get("kind") == "CustomResourceDefinition"
               and o["spec"]["names"]["kind"] == "Link")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha3"]
    assert version["served"] and version["storage"]
    return version["schema"]["openAPIV3Schema"]


def validate_link(obj, schema) -> list[str]:
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(_to_jsonschema(schema)).iter_errors(obj)]
    errors += [f"{p}: not in the Link schema" for p in unknown_fields(obj, schema)]
    return errors + validate_core(_metadata_probe(obj))


def with_sample_kubeconfig(obj):
    """A Secret as the registration layer completes it: the marker replaced by its data."""
    done = copy.deepcopy(obj)
    for key, value in done.get("data", {}).items():
        if isinstance(value, mc.Kubeconfig):
            done["data"][key] = value.data("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "sample")
    return done


# --- the chart: values, controllers, gateway, accounts ------------------------------------------------------------

def test_one_controller_per_mirrored_peer_and_a_probe_service_only_where_the_peer_has_a_gateway(cluster, needs_shared):
    objects = render(cluster)
    for peer in (EAST_PEER, NORTH_PEER):
        deployment = find(objects, "Deployment", f"controller-{peer.name}")
        assert deployment, f"no controller for {peer.name}"
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-1] == peer.name and f"-probe-service=probe-{peer.name}" in args
        role = find(objects, "Role", f"controller-read-remote-creds-{peer.name}")
        # The controller may read exactly the Secret the program writes and the Link names.
        assert role["rules"][0]["resourceNames"] == [mc.credentials_secret_name(peer.name)]
        assert mc.link(peer)["spec"]["clusterCredentialsSecret"] == mc.credentials_secret_name(peer.name)
    assert find(objects, "Service", f"probe-{EAST}") is not None
    assert find(objects, "Service", f"probe-{NORTH}") is None, "north has no gateway to probe"
    assert not [o for o in objects if o.get("kind") == "Namespace"], "Helm does not create the namespace"


def test_remote_access_accounts_exist_for_peers_that_link_here_only(cluster, needs_shared):
    objects = render(cluster)
    accounts = {o["metadata"]["name"] for o in objects if o.get("kind") == "ServiceAccount"
                and o["metadata"]["name"].startswith(mc.REMOTE_ACCESS_PREFIX)}
    assert accounts == {mc.remote_access_account(EAST)}
    token = find(objects, "Secret", f"{mc.remote_access_account(EAST)}-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    alone = render(west([LEDGER], peers=[NORTH_PEER]))
    assert not [o for o in alone if o.get("kind") == "ServiceAccount" and o["metadata"]["name"].startswith(mc.REMOTE_ACCESS_PREFIX)]


def test_the_gateway_exists_only_when_something_is_exported_through_it(needs_shared):
    with_gateway = render(west([LEDGER]))
    assert find(with_gateway, "Deployment", mc.GATEWAY_NAME) and find(with_gateway, "Server", mc.GATEWAY_SERVER)
    service = find(with_gateway, "Service", mc.GATEWAY_NAME)
    assert service["spec"]["loadBalancerSourceRanges"] == [EAST_NET]
    # The gateway's source-network checks need the callers' own addresses: no masquerading by the nodes.
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    without = render(west([ACCOUNTS]))
    assert find(without, "Deployment", mc.GATEWAY_NAME) is None and find(without, "Server", mc.GATEWAY_SERVER) is None
    assert mc.gateway_policy_objects(west([ACCOUNTS]), CHART_VERSION) == []


def test_the_gateway_identity_peers_expect_is_the_one_the_chart_announces(needs_shared):
    """link-gen copies the gateway Service's annotation into the peers' Links: east's rendered chart must announce what
    west's Link to east expects, and with the chart's default trust domain it would not."""
    east_cluster = mc.Cluster(EAST, EAST_TD, peers=(mc.Peer(WEST, WEST_TD, networks=("192.0.2.0/24",)),),
                              exports=(mc.Export("web", "frontend", mc.GATEWAY, ("http",), (caller(WEST, "a", "b"),)),))
    values = mc.chart_values(east_cluster)
    announced = find(render(east_cluster), "Service", mc.GATEWAY_NAME)["metadata"]["annotations"]
    assert announced["mirror.linkerd.io/gateway-identity"] == mc.link(EAST_PEER)["spec"]["gatewayIdentity"]
    defaults = {k: v for k, v in values.items() if k != "identityTrustDomain"}
    wrong = find(render_chart(mc.CHART, mc.CHART, mc.NAMESPACE, defaults), "Service", mc.GATEWAY_NAME)
    assert wrong["metadata"]["annotations"]["mirror.linkerd.io/gateway-identity"] != mc.link(EAST_PEER)["spec"]["gatewayIdentity"]


def chart_dir() -> Path:
    return CHARTS / CHART_PATHS[mc.CHART]


def template_references() -> set[str]:
    found = set()
    for path in chart_dir().rglob("templates/**/*.yaml"):
        found |= set(re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text()))
    return {ref.lstrip(".") for ref in found}


def unknown_values(values: dict) -> list[str]:
    chart = yaml.safe_load((chart_dir() / "values.yaml").read_text())
    top = {k: v for k, v in values.items() if k != "controllers"}
    problems = list(unknown_chart_values(top, chart))
    # Each controllers entry: `link.ref.name` plus any key of controllerDefaults (the template `dig`s each there).
    entry_keys = {"link": {"ref": {"name": ""}}, **chart["controllerDefaults"]}
    for index, entry in enumerate(values.get("controllers", [])):
        problems += list(unknown_chart_values(entry, entry_keys, f".controllers[{index}]"))
    return problems


@pytest.mark.parametrize("high_availability", [False, True])
def test_every_value_is_one_the_chart_reads(high_availability, needs_shared):
    values = mc.chart_values(west([LEDGER, ACCOUNTS], high_availability=high_availability))
    assert unknown_values(values) == []
    read = template_references()
    leaves = ["identityTrustDomain", "linkerdNamespace", "gateway.enabled", "controllers", "remoteMirrorServiceAccount",
              "remoteMirrorServiceAccountName", "createNamespaceMetadataJob", "gateway.loadBalancerSourceRanges",
              "gateway.serviceExternalTrafficPolicy"]
    assert all(leaf in read for leaf in leaves if leaf.split(".")[0] in values), sorted(set(leaves) - read)
    assert "controllerDefaults.gateway.enabled" in read  # what a controllers entry's gateway.enabled falls back to
    objects = render(west([LEDGER, ACCOUNTS], high_availability=high_availability))
    assert find(objects, "Deployment", mc.GATEWAY_NAME)["spec"]["replicas"] == (3 if high_availability else 1)
    assert not [o for o in objects if o.get("kind") == "Job"], "no namespace-metadata hook Job"


def test_the_values_check_catches_a_misspelt_key(needs_shared):
    values = mc.chart_values(west([LEDGER]))
    values["gateway"]["enable"] = True
    values["controllers"][0]["gateway"] = {"enabeld": False}
    assert unknown_values(values) == [".gateway.enable: not a value of the chart",
                                      ".controllers[0].gateway.enabeld: not a value of the chart"]


# --- Links and credentials ------------------------------------------------------------------------------------------

def test_links_match_the_crd_the_chart_ships_and_link_gen_defaults(cluster, needs_shared):
    schema = link_schema(render(cluster))
    links = [o for o in mc.link_objects(cluster) if o["kind"] == "Link"]
    assert [l["metadata"]["name"] for l in links] == [EAST, NORTH]
    for obj in links:
        assert obj["apiVersion"] == "multicluster.linkerd.io/v1alpha3" and obj["metadata"]["namespace"] == mc.NAMESPACE
        assert validate_link(obj, schema) == [], obj["metadata"]["name"]
    east = mc.link(EAST_PEER)["spec"]
    assert east["gatewayPort"] == "4143" and east["probeSpec"]["port"] == "4191" and east["probeSpec"]["period"] == "3s"
    assert east["gatewayIdentity"] == "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.east.example"
    assert east["selector"] == {"matchLabels": {"mirror.linkerd.io/exported": "true"}}
    assert east["remoteDiscoverySelector"] == {"matchLabels": {"mirror.linkerd.io/exported": "remote-discovery"}}
    assert east["federatedServiceSelector"] == {"matchLabels": {"mirror.linkerd.io/federated": "member"}}
    north = mc.link(NORTH_PEER)["spec"]
    assert not {"gatewayAddress", "gatewayPort", "gatewayIdentity", "probeSpec", "selector"} & set(north)


def test_a_numeric_gateway_port_is_refused_by_the_crd(needs_shared):
    schema = link_schema(render(west([LEDGER])))
    bad = mc.link(EAST_PEER)
    bad["spec"]["gatewayPort"] = 4143
    bad["spec"]["gatewayIdentiy"] = "typo"
    errors = validate_link(bad, schema)
    assert any("gatewayPort" in e and "string" in e for e in errors) and any("gatewayIdentiy" in e for e in errors)


def test_credentials_secrets_are_link_gens_two(cluster):
    secrets = [o for o in mc.link_objects(cluster) if o["kind"] == "Secret"]
    by_namespace = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}
    assert set(by_namespace) == {(ns, f"cluster-credentials-{p}") for ns in (mc.NAMESPACE, "linkerd") for p in (EAST, NORTH)}
    for secret in secrets:
        assert secret["type"] == "mirror.linkerd.io/remote-kubeconfig" and list(secret["data"]) == ["kubeconfig"]
        assert validate_object(with_sample_kubeconfig(secret)) == [], secret["metadata"]
    destination = by_namespace[("linkerd", "cluster-credentials-east")]["metadata"]
    assert destination["labels"]["multicluster.linkerd.io/cluster-name"] == EAST
    assert destination["annotations"] == {"multicluster.linkerd.io/trust-domain": EAST_TD,
                                          "multicluster.linkerd.io/cluster-domain": "cluster.local"}
    mirror = by_namespace[(mc.NAMESPACE, "cluster-credentials-east")]["metadata"]
    assert "multicluster.linkerd.io/cluster-name" not in mirror["labels"] and "annotations" not in mirror


def test_the_kubeconfig_carries_the_token_only_when_rendered(cluster):
    """The plan holds a marker: no token anywhere in it; rendering with the token (inside Output.apply, later) gives
    link-gen's kubeconfig: the peer's server and CA, the remote-access account of this cluster, one context."""
    plan_text = json.dumps(mc.link_objects(cluster), default=repr)
    assert "token" not in plan_text.replace("service-account-token", "")
    source = mc.kubeconfig(cluster, EAST_PEER)
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    config = yaml.safe_load(base64.b64decode(source.data(ca, "s3cr3t-t0ken")))
    assert config["current-context"] == EAST
    (context,) = config["contexts"]
    (user,) = config["users"]
    (cluster_entry,) = config["clusters"]
    assert context["context"] == {"cluster": EAST, "user": "linkerd-service-mirror-remote-access-west"}
    assert user == {"name": "linkerd-service-mirror-remote-access-west", "user": {"token": "s3cr3t-t0ken"}}
    assert cluster_entry["cluster"]["server"] == "https://east.example:6443"
    assert base64.b64decode(cluster_entry["cluster"]["certificate-authority-data"]).decode() == ca


def test_the_token_stays_a_pulumi_secret_through_the_kubeconfig():
    """What the registration layer will do: the peer's token arrives as a secret Output (a StackReference output), and
    the Secret's data made from it with the marker is still secret."""
    import pulumi

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return [f"{args.name}-id", args.inputs]

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False)
    source = mc.kubeconfig(west(), EAST_PEER)
    token = pulumi.Output.secret("s3cr3t-t0ken")
    data = pulumi.Output.all(pulumi.Output.from_input("CA PEM"), token).apply(lambda v: source.data(*v))
    seen = {}

    @pulumi.runtime.test
    def check():
        return pulumi.Output.all(data, data.is_secret()).apply(lambda v: seen.update(data=v[0], secret=v[1]))

    check()
    assert seen["secret"] is True
    assert json.loads(base64.b64decode(seen["data"]))["users"][0]["user"]["token"] == "s3cr3t-t0ken"


def test_the_destination_controller_may_read_the_credentials_secret_in_its_namespace(needs_shared):
    """The second Secret is for linkerd-destination (remote discovery): the control-plane chart must let it read
    Secrets in the namespace the program writes it to."""
    objects = render_chart("linkerd-control-plane", "linkerd-control-plane", "linkerd",
                           {"identity": {"externalCA": True, "issuer": {"scheme": "kubernetes.io/tls"}},
                            "identityTrustAnchorsPEM": "unused"})
    (secret,) = [s for s in mc.credentials_secrets(west(), EAST_PEER) if s["metadata"]["namespace"] == "linkerd"]
    roles = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Role"
             and o["metadata"]["namespace"] == secret["metadata"]["namespace"]
             and any("secrets" in r["resources"] and {"get", "list", "watch"} <= set(r["verbs"]) for r in o["rules"])}
    bound = [b for b in objects if b.get("kind") == "RoleBinding" and b["roleRef"]["name"] in roles
             and {"kind": "ServiceAccount", "name": "linkerd-destination", "namespace": "linkerd"} in b["subjects"]]
    assert bound, "no Role lets linkerd-destination read the credentials Secret"


def test_the_peer_reads_its_token_from_an_account_its_chart_creates(needs_shared):
    """west's kubeconfig for east names the account east's chart creates for west (and its token Secret)."""
    east_cluster = mc.Cluster(EAST, EAST_TD, peers=(mc.Peer(WEST, WEST_TD),))
    east_objects = render(east_cluster)
    user = mc.kubeconfig(west(), EAST_PEER).user
    assert find(east_objects, "ServiceAccount", user) and find(east_objects, "Secret", f"{user}-token")


# --- the gateway's policy ------------------------------------------------------------------------------------------

def test_the_gateway_policy_keeps_the_charts_names_and_admits_only_allowed_callers(cluster, needs_shared):
    objects = render(cluster)
    authorization = find(objects, "AuthorizationPolicy", mc.GATEWAY_AUTHORIZATION)
    required = {(r["kind"], r["name"], r.get("namespace", mc.NAMESPACE)) for r in authorization["spec"]["requiredAuthenticationRefs"]}
    ours = mc.gateway_policy_objects(cluster, CHART_VERSION)
    assert {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in ours} == required
    for obj in ours:
        chart_copy = find(objects, obj["kind"], obj["metadata"]["name"])
        assert chart_copy is not None and chart_copy["apiVersion"] == obj["apiVersion"]
        assert validate_object(obj) == [], obj["metadata"]
    chart_identities = find(objects, "MeshTLSAuthentication", mc.GATEWAY_IDENTITIES)["spec"]["identities"]
    assert chart_identities == ["*"], "the chart admits any meshed identity: what the patch replaces"
    identities = next(o for o in ours if o["kind"] == "MeshTLSAuthentication")["spec"]["identities"]
    assert identities == ["frontend.web.serviceaccount.identity.linkerd.east.example"]
    networks = next(o for o in ours if o["kind"] == "NetworkAuthentication")["spec"]["networks"]
    assert networks == [{"cidr": EAST_NET}], "north does not link here: its network is not admitted"


def test_the_gateway_policy_is_a_forced_patch_carrying_no_labels_of_ours(cluster):
    for obj in mc.gateway_policy_objects(cluster, CHART_VERSION):
        assert obj["metadata"]["annotations"] == {"pulumi.com/patchForce": "true",
                                                  "mtls-mesh.io/linkerd-multicluster-chart": CHART_VERSION}
        assert "labels" not in obj["metadata"], "the object stays the release's"


def test_a_peer_without_declared_networks_keeps_the_network_check_open(needs_shared):
    """Narrowing to the other peers' networks would cut it off: the identity check alone narrows then."""
    quiet = mc.Peer("south", "south.example", gateway_addresses=("192.0.2.20",))
    cluster = west([mc.Export("payments", "ledger", mc.GATEWAY, ("http",),
                              (caller(EAST, "web", "frontend"), caller("south", "web", "frontend")))],
                   peers=[EAST_PEER, quiet])
    networks = next(o for o in mc.gateway_policy_objects(cluster, CHART_VERSION) if o["kind"] == "NetworkAuthentication")
    assert networks["spec"]["networks"] == [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]
    assert "loadBalancerSourceRanges" not in mc.chart_values(cluster)["gateway"]
    assert "serviceExternalTrafficPolicy" not in mc.chart_values(cluster)["gateway"]
    assert not [o for o in mc.peer_probe_objects(cluster) if o["kind"] == "NetworkAuthentication"]
    assert "loadBalancerSourceRanges" not in find(render(cluster), "Service", mc.GATEWAY_NAME)["spec"]


def test_a_gateway_without_callers_admits_nobody():
    lonely = west([mc.Export("payments", "ledger", mc.GATEWAY, ("http",))])
    identities = next(o for o in mc.gateway_policy_objects(lonely, CHART_VERSION) if o["kind"] == "MeshTLSAuthentication")
    assert identities["spec"]["identities"] and "*" not in identities["spec"]["identities"]
    assert all(i.endswith(".invalid") for i in identities["spec"]["identities"])


def test_callees_behind_the_gateway_admit_the_gateway_and_pod_to_pod_callees_the_callers(cluster):
    assert mc.callee_identities(cluster, LEDGER, "http") == [
        "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.west.example"]
    assert mc.callee_identities(cluster, ACCOUNTS, "grpc") == [
        "reconciler.batch.serviceaccount.identity.linkerd.east.example"]
    narrow = mc.Export("payments", "ledger", mc.GATEWAY, ("http", "admin"), (caller(EAST, "web", "frontend", "http"),))
    assert mc.callee_identities(cluster, narrow, "admin") == []


def test_consistent_gateway_exports_pass(cluster):
    assert mc.export_problems(cluster) == []
    mc.refuse_unsafe_exports(cluster)


def test_a_gateway_edge_that_needs_per_caller_policy_is_refused_with_the_fix():
    """frontend may call ledger through the gateway, auditor only billing: behind the gateway both arrive as the
    gateway, so billing would admit frontend too."""
    billing = mc.Export("payments", "billing", mc.GATEWAY, ("http",), (caller(EAST, "ops", "auditor"),),
                        where="services.billing")
    with pytest.raises(SettingsError) as raised:
        mc.refuse_unsafe_exports(west([LEDGER, billing]))
    text = str(raised.value)
    assert "services.billing.export" in text and "east/web/frontend" in text and "remote-discovery" in text
    assert "services.payments/ledger.export" in text and "east/ops/auditor" in text


def test_a_caller_allowed_on_one_port_only_cannot_go_through_the_gateway_to_another():
    both = mc.Export("payments", "ledger", mc.GATEWAY, ("http", "admin"),
                     (caller(EAST, "web", "frontend", "http"), caller(EAST, "ops", "admin", "admin")))
    problems = mc.export_problems(west([both]))
    assert len(problems) == 2 and {("'http'" in p.what) for p in problems} == {True, False}


def test_pod_to_pod_exports_need_a_linked_caller_and_the_same_control_plane_namespace():
    elsewhere = mc.Peer(EAST, EAST_TD, linkerd_namespace="linkerd-edge", networks=(EAST_NET,))
    problems = mc.export_problems(west([ACCOUNTS], peers=[elsewhere, NORTH_PEER]))
    assert [p.where for p in problems] == ["services.payments/accounts.callers[0]"] and "namespace" in problems[0].what
    from_north = mc.Export("payments", "accounts", mc.REMOTE_DISCOVERY, ("grpc",), (caller(NORTH, "x", "y"),))
    unknown = mc.Export("payments", "ledger", mc.GATEWAY, ("http",), (caller("south", "x", "y"),))
    problems = mc.export_problems(west([from_north, unknown]))
    assert "does not link to" in problems[0].what and "not linked" in problems[1].what
    assert mc.export_problems(west([mc.Export("a", "b", "mirror", ("http",))]))[0].what.startswith("unknown mode")


# --- probes and scraping ---------------------------------------------------------------------------------------------

def test_peer_probes_are_admitted_on_the_gateways_admin_server(cluster, needs_shared):
    objects = render(cluster)
    server = find(objects, "Server", mc.ADMIN_SERVER)
    gateway = find(objects, "Deployment", mc.GATEWAY_NAME)
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in server["spec"]["podSelector"]["matchLabels"].items())
    assert server["spec"]["port"] == "linkerd-admin"
    probes = mc.peer_probe_objects(cluster)
    policy = next(o for o in probes if o["kind"] == "AuthorizationPolicy")
    assert policy["spec"]["targetRef"]["name"] == mc.ADMIN_SERVER
    identities = next(o for o in probes if o["kind"] == "MeshTLSAuthentication")["spec"]["identities"]
    assert identities == ["controller-west.linkerd-multicluster.serviceaccount.identity.linkerd.east.example"]
    # The account east's chart runs the probing controller under, for its Link to west.
    east_objects = render(mc.Cluster(EAST, EAST_TD, peers=(mc.Peer(WEST, WEST_TD, gateway_addresses=("192.0.2.1",)),)))
    assert find(east_objects, "ServiceAccount", "controller-west")
    for obj in probes:
        assert validate_object(obj) == [], obj["metadata"]


def test_the_programs_prometheus_may_scrape_the_controllers(cluster, needs_shared):
    objects = render(cluster)
    server = find(objects, "Server", mc.CONTROLLER_SERVER)
    assert server["spec"]["port"] == mc.CONTROLLER_ADMIN_PORT
    chart_policy = find(objects, "AuthorizationPolicy", mc.CONTROLLER_SERVER)
    assert chart_policy["spec"]["requiredAuthenticationRefs"][0]["namespace"] == "linkerd-viz", "viz only upstream"
    ours = mc.prometheus_objects([("prometheus", "monitoring")], ["10.8.0.0/16"], WEST_TD)
    targets = {o["spec"]["targetRef"]["name"] for o in ours if o["kind"] == "AuthorizationPolicy"}
    assert targets == {mc.CONTROLLER_SERVER}
    assert ours[0]["spec"]["identities"] == ["prometheus.monitoring.serviceaccount.identity.linkerd.west.example"]
    for obj in ours:
        assert validate_object(obj) == [], obj["metadata"]


def test_the_pod_monitor_selects_the_controllers_admin_port(cluster, needs_shared):
    monitor = mc.pod_monitor()
    assert validate_object(monitor) == []
    deployment = find(render(cluster), "Deployment", f"controller-{EAST}")
    template = deployment["spec"]["template"]
    assert all(template["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert ports[monitor["spec"]["podMetricsEndpoints"][0]["port"]] == 9999
    # The gateway's pods are not controllers: the selector does not pick them.
    gateway = find(render(cluster), "Deployment", mc.GATEWAY_NAME)["spec"]["template"]["metadata"]["labels"]
    assert not all(gateway.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def test_every_object_is_valid_against_its_schema(cluster, needs_shared):
    schema = link_schema(render(cluster))
    everything = mc.objects(cluster, [("prometheus", "monitoring")], ["10.8.0.0/16"]) + mc.gateway_policy_objects(cluster, CHART_VERSION)
    everything.append(mc.prometheus_rule(cluster, {"release": "prometheus"}))
    kinds = set()
    for obj in everything:
        obj = with_sample_kubeconfig(obj)
        errors = validate_link(obj, schema) if obj["kind"] == "Link" else validate_object(obj)
        assert errors == [], (obj["kind"], obj["metadata"]["name"], errors)
        kinds.add(obj["kind"])
    assert {"Namespace", "Secret", "Link", "MeshTLSAuthentication", "NetworkAuthentication", "AuthorizationPolicy",
            "PodMonitor", "PrometheusRule"} <= kinds
    assert mc.namespace_object(False)["metadata"]["labels"]["linkerd.io/extension"] == "multicluster"
    assert mc.namespace_object(True)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- alerts, with promtool -------------------------------------------------------------------------------------------

def scraped(metric, value_series, **labels):
    """A series as Prometheus stores it from the PodMonitor: the controller's own labels plus the target's."""
    labels = {"namespace": mc.NAMESPACE, "pod": "controller-east-5d9f7c7b9-abcde", "container": "controller",
              "endpoint": mc.CONTROLLER_ADMIN_PORT, **labels}
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": value_series}


def alert_test(alert, series, firing, eval_time="20m"):
    # The rules under test are west's: every alert names the cluster that raised it.
    expected = [{"exp_labels": {"cluster": WEST, **labels}} for labels in firing]
    return {"interval": "1m", "input_series": series,
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert, "exp_alerts": expected}]}


def scenarios():
    east = {"target_cluster_name": EAST}
    stalled = {**east, "namespace": mc.NAMESPACE}
    healthy_repairs = scraped("service_mirror_endpoint_repairs", "0+1x40", **east)
    north_repairs = scraped("service_mirror_endpoint_repairs", "0+1x40", target_cluster_name=NORTH)
    return [
        alert_test("MulticlusterGatewayDown", [scraped("gateway_alive", "1x10 0x20", **east)],
                   [{**east, "severity": "critical"}]),
        alert_test("MulticlusterGatewayDown", [scraped("gateway_alive", "1x30", **east)], []),
        alert_test("MulticlusterGatewaySlow", [scraped("gateway_latency", "1500x30", **east),
                                               scraped("gateway_alive", "1x30", **east)],
                   [{**east, "severity": "warning"}]),
        alert_test("MulticlusterGatewaySlow", [scraped("gateway_latency", "40x30", **east),
                                               scraped("gateway_alive", "1x30", **east)], []),
        alert_test("MulticlusterGatewayProbesFailing",
                   [scraped("gateway_probes", "0+20x30", probe_successful="true", **east),
                    scraped("gateway_probes", "0x15 1x15", probe_successful="false", **east)],
                   [{**east, "severity": "warning"}]),
        alert_test("MulticlusterGatewayProbesFailing",
                   [scraped("gateway_probes", "0+20x30", probe_successful="true", **east),
                    scraped("gateway_probes", "0x30", probe_successful="false", **east)], []),
        alert_test("MulticlusterGatewayFlapping", [scraped("service_mirror_endpoint_repairs", "0+3x30", **east),
                                                   north_repairs],
                   [{**east, "severity": "warning"}]),
        alert_test("MulticlusterGatewayFlapping", [healthy_repairs, north_repairs], []),
        # Stopped after two minutes: the window holds no repair from minute 17, the alert fires 5 minutes later.
        alert_test("MulticlusterLinkStalled", [scraped("service_mirror_endpoint_repairs", "0+1x2 2x40", **east),
                                               north_repairs],
                   [{**stalled, "severity": "critical"}], eval_time="25m"),
        # A link whose watcher never started has no series at all.
        alert_test("MulticlusterLinkStalled", [north_repairs], [{**stalled, "severity": "critical"}]),
        alert_test("MulticlusterLinkStalled", [healthy_repairs, north_repairs], [], eval_time="25m"),
    ]


def run_promtool(tmp_path, group, tests):
    stripped = copy.deepcopy(group)
    for rule in stripped["rules"]:
        rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [stripped]}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)


def test_the_rules_pass_promtool_check(cluster, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [mc.rule_group(cluster)]}))
    result = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_link_alert_fires_on_failure_and_stays_silent_on_health(cluster, tmp_path):
    group = mc.rule_group(west([LEDGER], peers=[EAST_PEER, mc.Peer(NORTH, NORTH_TD, mirrored_by=False)]))
    tests = scenarios()
    assert {r["alert"] for r in group["rules"]} == {t["alert_rule_test"][0]["alertname"] for t in tests}
    result = run_promtool(tmp_path, group, tests)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_a_link_without_a_gateway_gets_no_stalled_alert():
    """The controller repairs endpoints only for a Link with a gatewayAddress ([L] multicluster/service-mirror/
    cluster_watcher.go Start returns before its repair loop otherwise): a pod-to-pod-only link never has
    service_mirror_endpoint_repairs, so a stalled-link alert on it would fire from the first evaluation on."""
    pod_to_pod = mc.Peer(NORTH, NORTH_TD, api_server="https://north.example")
    group = mc.rule_group(west([LEDGER], peers=[EAST_PEER, pod_to_pod]))
    stalled = {r["labels"]["target_cluster_name"] for r in group["rules"] if r["alert"] == "MulticlusterLinkStalled"}
    assert stalled == {EAST}


def test_the_alert_tests_can_fail(tmp_path):
    """A rule reading the name with `_total` (what an OpenMetrics exporter would add) never fires: promtool says so."""
    group = mc.rule_group(west([LEDGER], peers=[EAST_PEER, mc.Peer(NORTH, NORTH_TD, mirrored_by=False)]))
    for rule in group["rules"]:
        rule["expr"] = rule["expr"].replace("gateway_alive{", "gateway_alive_total{")
    result = run_promtool(tmp_path, group, scenarios())
    assert result.returncode != 0 and "MulticlusterGatewayDown" in result.stdout + result.stderr


def test_runbooks_point_at_sections_of_the_multicluster_page(cluster):
    page = (Path(__file__).resolve().parent.parent / "docs" / "multicluster.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", page, re.M)}
    for rule in mc.rule_group(cluster)["rules"]:
        page_name, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page_name == "docs/multicluster.md" and anchor in anchors, rule["annotations"]["runbook"]


def test_names_ports_and_links_that_cannot_become_objects_are_refused_all_at_once():
    bad = mc.Cluster("West", WEST_TD, peers=(
        mc.Peer("east", EAST_TD),  # linked to, without an API server
        mc.Peer("east", EAST_TD, api_server="https://east.example", gateway_port=70000),
        mc.Peer("n" * 60, NORTH_TD, api_server="https://north.example")),
        exports=(mc.Export("payments", "ledger", mc.GATEWAY, ("http",), (caller("east", "web", "frontend", "grpc"),)),))
    with pytest.raises(SettingsError) as raised:
        mc.refuse_unsafe_exports(bad)
    where = [p.where for p in raised.value.problems]
    assert where == ["multicluster.cluster", "multicluster.peers[1].name", "multicluster.peers[2].name",
                     "multicluster.peers[0].apiServer", "multicluster.peers[1].gatewayPort",
                     "services.payments/ledger.callers[0].ports"]
    assert mc.cluster_problems(west([LEDGER, ACCOUNTS])) == []


def test_the_longest_accepted_cluster_name_still_makes_valid_object_names(needs_shared):
    name = "p" * mc.CLUSTER_NAME_MAX
    peer = mc.Peer(name, EAST_TD, api_server="https://p.example", gateway_addresses=("192.0.2.9",))
    cluster = west([LEDGER], peers=[EAST_PEER, peer])
    assert mc.cluster_problems(cluster) == []
    for obj in render(cluster):
        if obj.get("kind") in ("Service", "Deployment", "ServiceAccount", "Role", "RoleBinding"):
            assert validate_object(obj) == [], (obj["kind"], obj["metadata"]["name"])
    for obj in mc.link_objects(cluster):
        assert len(obj["metadata"]["name"]) <= 253
