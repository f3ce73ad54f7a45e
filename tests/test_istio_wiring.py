"""`mesh: istio` wired end to end: the program run under the harness for dev, staging and prod registers Istio's
control plane on the operator's trust chain, in the order the sources force, its policy and namespaces, and no
Linkerd object; the emitted policy, read back from the registrations alone, admits exactly the graph's edges
(tests/istio_conformance.py) and passes the pinned CRDs; a first preview shows every object the `up` creates; an
unknown mesh, or a Linkerd-only setting under Istio, is one clear error before anything registers. The Linkerd
default is tests/test_urns.py's golden file, unchanged."""

from __future__ import annotations

import itertools
import json

import pytest

import test_istio_authorization as istio_checks
import test_preview as preview_checks
from conformance import validate_object
from harness import SHARD_STACKS, STACKS, run_program, stack_config
from istio_conformance import Cluster, validate_istio_object
from istio_settings import settings_of
from plan.istio import names
from plan.istio.authorization import access_matrix
from plan.linkerd.verification import verification_graph
from read.settings import VERIFICATION_NAMESPACE
from read.errors import SettingsError

ISTIO = {"mesh": "istio"}
# dev and staging turn linkerd-viz on, which means nothing under Istio and is refused there (test below).
NO_VIZ = {"linkerdViz": False}
ISTIO_STACKS = ("dev", "staging", "prod")
ISTIO_KINDS = {"PeerAuthentication", "AuthorizationPolicy", "Sidecar", "ServiceEntry"}
POLICY_KINDS = ISTIO_KINDS | {"NetworkPolicy"}

_runs: dict[str, object] = {}


def istio_run(stack: str):
    if stack not in _runs:
        _runs[stack] = run_program(stack, set_config={**ISTIO, **NO_VIZ})
    return _runs[stack]


def environment_runs(stack: str) -> list:
    """A platform stack and its shard stacks: the shards register their namespaces' policy (plan/shards.py)."""
    shards = [s for s in SHARD_STACKS if stack_config(s)[0].get("mtls-mesh:platformStack") == stack]
    return [istio_run(s) for s in (stack, *shards)]


def releases(run) -> dict[str, dict]:
    return {r.inputs["name"]: r for r in run.registrations if r.type == "kubernetes:helm.sh/v3:Release"}


def graph_of(stack: str):
    """The stack's Settings as the program loads them with `mesh: istio`."""
    return settings_of(stack, **ISTIO, **NO_VIZ)


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_istio_control_plane_is_registered_from_the_pinned_charts(stack):
    run = istio_run(stack)
    found = releases(run)
    pinned = {names.BASE_RELEASE: (names.BASE_CHART, names.ISTIO_CHART_VERSION, names.ISTIO_REPOSITORY),
              names.ISTIOD_RELEASE: (names.ISTIOD_CHART, names.ISTIO_CHART_VERSION, names.ISTIO_REPOSITORY),
              names.ISTIO_CSR_RELEASE: (names.ISTIO_CSR_CHART, names.ISTIO_CSR_CHART_VERSION, names.ISTIO_CSR_REPOSITORY)}
    for release, (chart, version, repository) in pinned.items():
        got = found[release].inputs
        assert (got["chart"], got["version"], got["repositoryOpts"]["repo"], got["namespace"]) == \
            (chart, version, repository, names.ISTIO_NAMESPACE), release
    istiod = found[names.ISTIOD_RELEASE].inputs["values"]
    assert istiod["env"]["ENABLE_CA_SERVER"] == "false"
    assert istiod["meshConfig"]["trustDomain"] == graph_of(stack).trust_domain
    assert istiod["meshConfig"]["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}  # REGISTRY_ONLY is per Sidecar
    # HA in prod only, as linkerdHighAvailability's auto.
    assert istiod.get("autoscaleEnabled") is (stack == "prod")
    assert (found[names.ISTIO_CSR_RELEASE].inputs["values"].get("replicaCount") == 3) is (stack == "prod")
    assert run.exports["istio"]["chartVersion"] == names.ISTIO_CHART_VERSION and "linkerd" not in run.exports


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_no_linkerd_object_is_registered(stack):
    run = istio_run(stack)
    linkerd = [r.urn for r in run.registrations if "linkerd" in r.type.lower() or "linkerd" in r.name.lower()]
    linkerd += [f"{o['kind']} {o['metadata'].get('name')}" for o in run.objects()
                if "linkerd" in o["apiVersion"] or o["metadata"].get("name") in ("linkerd", "linkerd-viz")
                or any("linkerd" in key for key in {**o["metadata"].get("labels", {}),
                                                    **o["metadata"].get("annotations", {})})]
    linkerd += [n for n in releases(run) if "linkerd" in n]
    assert not linkerd, linkerd
    # The check would see one: the same stack with Linkerd registers them.
    assert any("linkerd" in r.type for r in run_program(stack, set_config={"mesh": "linkerd"}).registrations)


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_namespaces_carry_istios_injection_label(stack):
    run, settings = istio_run(stack), graph_of(stack)
    for namespace in settings.graph.namespaces.values():
        obj = run.object("Namespace", namespace.name)
        wanted = "enabled" if namespace.meshed else "disabled"
        assert obj["metadata"]["labels"][names.NAMESPACE_INJECTION_LABEL] == wanted, namespace.name
    assert run.object("Namespace", names.ISTIO_NAMESPACE)["metadata"]["labels"][names.NAMESPACE_INJECTION_LABEL] == "disabled"


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_trust_chain_is_ordered_as_the_sources_force(stack):
    """Bundle and signers -> Istio CA -> its Issuer; base -> istio-csr (after the Issuer and the roots) -> istiod's
    Certificate (awaited until Ready) and the `istio-ca-root-cert` check Job -> istiod; the signers after their Vault
    login (staging, prod) or their anchor keys (dev)."""
    run = istio_run(stack)
    by_urn = {r.urn: r for r in run.registrations}

    def urn_of(kind: str, name: str) -> str:
        (found,) = [r.urn for r in run.kubernetes() if r.group is None and r.type.endswith(f":{kind}")
                    and r.inputs.get("metadata", {}).get("name") == name]
        return found

    def waits(urn: str) -> set[str]:
        """Everything `urn` waits for, transitively (depends_on and property dependencies)."""
        seen, todo = set(), [urn]
        while todo:
            r = by_urn[todo.pop()]
            for dep in {*r.dependencies, *itertools.chain.from_iterable(r.property_dependencies.values())}:
                if dep not in seen and dep in by_urn:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    rel = {n: r.urn for n, r in releases(run).items()}
    ca, ca_issuer = urn_of("Certificate", "mtls-mesh-istio-ca"), urn_of("Issuer", "mtls-mesh-istio-ca")
    bundle = urn_of("Bundle", "mtls-mesh-istio-roots")
    signers = [r.urn for r in run.kubernetes() if r.type.endswith(":Issuer")
               and r.inputs["metadata"]["name"].startswith("mtls-mesh-istio-signer-")]
    assert signers and set(signers) <= waits(ca)
    assert ca in waits(ca_issuer)
    assert {ca_issuer, bundle, rel[names.BASE_RELEASE]} <= waits(rel[names.ISTIO_CSR_RELEASE])
    assert {rel[names.ISTIO_CSR_RELEASE], ca_issuer, rel[names.BASE_RELEASE]} <= waits(rel[names.ISTIOD_RELEASE])
    # istiod mounts `istiod-tls` and `istio-ca-root-cert` as optional: it must wait for both to exist.
    istiod_certificate = urn_of("Certificate", names.ISTIOD_CERTIFICATE)
    (check,) = [r for r in run.kubernetes() if r.type.endswith(":Job")
                and r.inputs["metadata"]["namespace"] == names.ISTIO_NAMESPACE]
    assert ca_issuer in waits(istiod_certificate)
    assert by_urn[istiod_certificate].inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    assert rel[names.ISTIO_CSR_RELEASE] in waits(check.urn)
    (container,) = check.inputs["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e["value"] for e in container["env"]}["CONFIG_MAP"] == names.ROOT_CERT_CONFIG_MAP
    assert {istiod_certificate, check.urn} <= waits(rel[names.ISTIOD_RELEASE])
    # The chart's own Certificate `istiod` is off, so ours is the only one.
    assert rel[names.ISTIO_CSR_RELEASE] and \
        releases(run)[names.ISTIO_CSR_RELEASE].inputs["values"]["app"]["tls"]["istiodCertificateEnable"] is False
    anchor_configmaps = {r.urn for r in run.kubernetes() if r.type.endswith(":ConfigMap")
                         and r.inputs["metadata"]["name"].startswith("mtls-mesh-anchor-")}
    assert anchor_configmaps and anchor_configmaps <= waits(bundle)
    if stack == "dev":
        keys = {r.urn for r in run.kubernetes() if r.type.endswith(":Secret")
                and r.inputs["metadata"].get("namespace") == names.ISTIO_NAMESPACE}
        assert keys and all(keys <= waits(s) for s in signers)
    else:
        login = [r.urn for r in run.registrations if r.type.startswith("vault:kubernetes/authBackendRole")
                 and r.inputs["roleName"].endswith("-istio")]
        assert login and all(set(login) <= waits(s) for s in signers)
    # Policy waits for Istio's CRDs.
    groups = [r for r in run.registrations if r.type == "kubernetes:yaml/v2:ConfigGroup" and r.name.startswith("authz-")]
    assert groups and all(rel[names.BASE_RELEASE] in waits(g.urn) for g in groups)


@pytest.mark.parametrize("stack", ("staging", "prod"))
def test_istio_vault_login_is_the_plans_least_privilege_role(stack):
    """The Istio CA's signers log in as `<vaultAuthRole>-istio`, bound to istio-system's issuer account only, with
    exactly the policy plan/istio/trust.py writes (tests/test_istio_openbao.py proves that policy on OpenBao)."""
    from plan.istio.trust import istio_ca_login_args, istio_ca_policy
    run, settings = istio_run(stack), graph_of(stack)
    (role,) = [r for r in run.registrations if r.type.startswith("vault:kubernetes/authBackendRole")
               and r.inputs["roleName"].endswith("-istio")]
    (policy,) = [r for r in run.registrations if r.type == "vault:index/policy:Policy"
                 and r.inputs["name"] == role.inputs["roleName"]]
    args = istio_ca_login_args(settings)
    assert role.inputs["boundServiceAccountNamespaces"] == args["bound_service_account_namespaces"] == [names.ISTIO_NAMESPACE]
    assert role.inputs["boundServiceAccountNames"] == args["bound_service_account_names"]
    assert role.inputs["tokenNoDefaultPolicy"] is True and role.inputs["audience"] == args["audience"]
    assert policy.inputs["policy"] == istio_ca_policy(settings)
    assert not [r for r in run.registrations if r.type.startswith("vault:kubernetes/authBackendRole")
                and r.inputs["roleName"].endswith("-identity")]


def registered_policy(runs, settings) -> list[dict]:
    graph_namespaces = set(settings.graph.namespaces)
    return [o for run in runs for o in run.objects()
            if o["kind"] in POLICY_KINDS and o["metadata"].get("namespace") in graph_namespaces]


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_registered_policy_admits_exactly_the_graphs_edges(stack):
    """Read from the registrations alone, evaluated as Istio does: every caller/callee/port decision is what the
    graph and the phases say (both with and without sidecars on proxy-free pods), and under deny exactly the edges."""
    runs, settings = environment_runs(stack), graph_of(stack)
    graph, access, rollout = settings.graph, settings.policy, settings.rollout
    objects = registered_policy(runs, settings)
    # Each namespace's objects registered once, by one stack of the environment.
    assert len({(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects}) == len(objects)
    assert {o["kind"] for o in objects} >= {"PeerAuthentication", "AuthorizationPolicy", "Sidecar"}
    cluster = Cluster(objects, settings.trust_domain)
    for sidecars_on_unmeshed in (True, False):
        pods = istio_checks.pods_of(graph, access, sidecars_on_unmeshed)
        mismatches = []
        for caller, callee in itertools.product(graph.services, repeat=2):
            for port in graph.services[callee].ports:
                found = (cluster.mesh_allows(pods[caller], pods[callee], port.number),
                         cluster.network_allows(pods[caller], pods[callee], port.number))
                want = istio_checks.expected(graph, rollout, access, pods, caller, callee, port)
                if found != want:
                    mismatches.append((caller, callee, port.name, found, want))
        assert not mismatches, (sidecars_on_unmeshed, mismatches[:10])
    deny = {ns.name for ns in graph.meshed_namespaces if rollout.policy_for(ns.name) == "deny"}
    if deny:
        pods = istio_checks.pods_of(graph, access, True)
        allowed = {(c, s, p.name) for c, s in itertools.product(graph.services, repeat=2)
                   if graph.services[s].namespace in deny for p in graph.services[s].ports
                   if cluster.allows(pods[c], pods[s], p.number)}
        assert allowed == {e for e in graph.edges() if graph.services[e[1]].namespace in deny}
    # The exported matrices, merged over the environment's stacks, are the one read from these objects, and the
    # canary's rows read from the canary namespace's registered objects (on the canary's graph), as Linkerd's are.
    exported = {k: v for run in runs for k, v in run.exports["accessMatrix"].items()}
    read_back = access_matrix(objects, graph, settings.trust_domain)
    canary = [o for run in runs for o in run.objects() if o["kind"] in POLICY_KINDS
              and o["metadata"].get("namespace") == VERIFICATION_NAMESPACE]
    if settings.verification.enabled:
        assert canary
        read_back.update(access_matrix(canary, verification_graph(), settings.trust_domain))
        assert read_back[f"{VERIFICATION_NAMESPACE}/canary:http"]["others"] == \
            ("audit" if settings.rollout.default_policy == "audit" else "denied")
    assert exported == json.loads(json.dumps(read_back))


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_every_registered_istio_object_passes_the_pinned_schemas(stack, needs_shared):
    run = istio_run(stack)
    checked = [o for o in run.objects() if "istio.io" in o["apiVersion"] or o["kind"] in
               ("Certificate", "Issuer", "Bundle", "NetworkPolicy", "Namespace")
               or o["metadata"].get("namespace") == names.ISTIO_NAMESPACE]
    failures = {f"{o['kind']} {o['metadata'].get('namespace')}/{o['metadata']['name']}": errors for o in checked
                if (errors := validate_istio_object(o) if "istio.io" in o["apiVersion"] else validate_object(o))}
    assert {o["kind"] for o in checked} >= ISTIO_KINDS - {"ServiceEntry"} | {"Certificate", "Issuer", "Bundle", "Job",
                                                                            "Role", "RoleBinding", "ServiceAccount"}
    assert not failures, failures


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_first_preview_shows_every_istio_object(stack):
    preview = run_program(stack, preview=True, set_config={**ISTIO, **NO_VIZ})
    up = istio_run(stack)
    assert preview_checks.compare(preview, up) == {}
    istio_objects = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in up.objects()
                     if "istio.io" in o["apiVersion"]}
    assert istio_objects and istio_objects <= {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                                               for o in preview.objects()}
    assert set(releases(preview)) == set(releases(up))


@pytest.mark.parametrize("stack", ISTIO_STACKS)
def test_policy_pack_passes_on_a_first_istio_preview(stack):
    """The pack's mandatory policies hold for Istio's namespaces (the injection label, istio-system), and still
    catch a meshed namespace that lost it."""
    preview = run_program(stack, preview=True, set_config={**ISTIO, **NO_VIZ})
    assert preview_checks.policy_failures(preview) == {}
    (namespace,) = [r for r in preview.registrations if r.type.startswith("kubernetes:core/v1:Namespace")
                    and r.inputs["metadata"]["name"] == "web"]
    namespace.inputs["metadata"]["labels"]["istio-injection"] = "disabled"
    assert list(preview_checks.policy_failures(preview)) == ["workload-namespaces-injected"]


def test_an_unknown_mesh_is_one_error_before_anything_registers():
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={"mesh": "consul"})
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:mesh" and "is not one of linkerd, istio" in str(problem)
    assert caught.value.registrations == []


@pytest.mark.parametrize("key,value", [("linkerdViz", True), ("linkerdCni", True), ("proxyLogLevel", "debug"),
                                       ("linkerdChartVersion", "2026.1.1")])
def test_linkerd_only_settings_are_refused_under_istio_only_when_set(key, value):
    with pytest.raises(SettingsError) as caught:
        run_program("prod", set_config={**ISTIO, key: value})
    # One problem, on the line a person switching mesh changed, naming the line to remove with it.
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:mesh" and "is istio" in str(problem), problem
    assert f"pulumi config rm mtls-mesh:{key}" in str(problem) and caught.value.registrations == []
    # The same value is accepted with Linkerd.
    assert run_program("prod", set_config={key: value}).registrations


@pytest.mark.parametrize("url, hidden", [("https://bob:hunter2@charts.example.org/edge", "hunter2"),
                                         ("https://charts.example.org/edge?token=s3cr3t-t0k3n", "s3cr3t-t0k3n")])
def test_the_linkerd_only_line_named_under_istio_never_quotes_a_urls_credentials(url, hidden):
    """The mesh error names linkerdHelmRepository's line by its value; a credential or token in that URL stays out of
    it, as out of every other message quoting a URL (read/errors.py short_url)."""
    with pytest.raises(SettingsError) as caught:
        run_program("prod", set_config={**ISTIO, "linkerdHelmRepository": url})
    mesh = [p for p in caught.value.problems if p.where == "mtls-mesh:mesh"]
    assert mesh and "mtls-mesh:linkerdHelmRepository: 'https://" in str(mesh[0]), caught.value.problems
    assert hidden not in str(caught.value) and caught.value.registrations == []


def test_switching_dev_to_istio_names_exactly_the_lines_to_drop():
    """dev sets linkerdViz: true; flipping only `mesh` is one error on `mesh` naming that line and why, not an error
    on a line the person did not touch, and nothing else."""
    with pytest.raises(SettingsError) as caught:
        run_program("dev", set_config={**ISTIO, "proxyCpuLimit": "1"})
    (problem,) = caught.value.problems
    assert problem.where == "mtls-mesh:mesh", problem
    text = str(problem)
    assert "mtls-mesh:linkerdViz: true (Linkerd's viz dashboard" in text and "mtls-mesh:proxyCpuLimit: 1" in text, text
    assert "pulumi config rm mtls-mesh:linkerdViz; pulumi config rm mtls-mesh:proxyCpuLimit" in text, text
    # Without those lines it compiles; settings at their defaults are not named (dev's other lines are shared).
    assert "mtls-mesh:linkerdCni" not in text and run_program("dev", set_config={**ISTIO, **NO_VIZ}).registrations


def test_the_default_mesh_is_linkerd():
    """No `mesh` in a stack file: Linkerd, as always (tests/test_urns.py pins every URN of it)."""
    for stack in STACKS:
        config, _ = stack_config(stack)
        assert "mtls-mesh:mesh" not in {k for k, v in config.items() if v != "linkerd"}
    run = run_program("dev")
    assert releases(run).keys() >= {"linkerd-control-plane"} and "istio" not in run.exports


def test_preview_identity_may_dry_run_istios_kinds_and_only_those_it_manages():
    run = istio_run("staging")
    (role,) = [o for o in run.objects("ClusterRole") if o["metadata"]["name"] == "mtls-mesh-preview"]
    by_group = {rule["apiGroups"][0]: set(rule["resources"]) for rule in role["rules"]}
    assert by_group["security.istio.io"] == {"peerauthentications", "authorizationpolicies"}
    assert {"sidecars"} <= by_group["networking.istio.io"]
    assert "policy.linkerd.io" not in by_group


def test_shard_contracts_name_the_platforms_mesh():
    """A shard's objects assume the platform's mesh: its contract says which, so a shard of an Istio platform
    refuses a Linkerd platform's applied contract and the other way round."""
    from plan.mesh import compile_mesh
    from plan.shards import shard_contracts
    def contracts(settings):
        return shard_contracts(compile_mesh(settings), settings.graph)

    istio, linkerd = contracts(graph_of("prod")), contracts(settings_of("prod"))
    assert istio.keys() == linkerd.keys() and istio
    for shard in istio:
        assert istio[shard]["mesh"] == "istio" and istio[shard]["istioChartVersion"] == names.ISTIO_CHART_VERSION
        assert "mesh" not in linkerd[shard] and istio[shard]["namespaces"] == linkerd[shard]["namespaces"]
