"""Istio's control plane (plan/istio/control_plane.py) against the pinned charts, rendered offline by Helm with the
program's release names, namespaces and values: istiod's CA is off and its proxies are sent to istio-csr; istio-csr
pins the mesh roots from the Bundle trust.py makes and signs with the Issuer trust.py makes; trust domain and cluster
id agree on both sides; one writer of `istio-ca-root-cert`; HA in prod; and every key set is one the chart knows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from istio_settings import CLUSTER, ROTATION, TRUST_DOMAIN, settings_of
from conformance import validate_object
from tools import CHART_PATHS, CHARTS, RenderError, render_chart
from plan.istio.control_plane import (HA_REPLICAS, base_values, ca_address, istio_csr_values, istio_settings,
                                      ISTIOD_PRIVATE_KEY_VALUES, istiod_certificate, istiod_values,
                                      root_cert_check)
from plan.istio.names import (BASE_CHART, BASE_RELEASE, ISTIO_CSR, ISTIO_CSR_CHART, ISTIO_CSR_GRPC_PORT,
                              ISTIO_CSR_NAMESPACE, ISTIO_CSR_RELEASE, ISTIO_NAMESPACE,
                              ISTIOD, ISTIOD_CERTIFICATE, ISTIOD_CHART, ISTIOD_RELEASE, ISTIOD_TLS_DIR,
                              ISTIOD_TLS_SECRET, INJECTOR_CONFIG_MAP, MESH_CONFIG_MAP, ROOT_CERT_CONFIG_MAP)
from plan.istio.trust import ISTIO_ROOTS_FILE, istio_ca_issuer, trust_objects

# Where each chart's defaults live: Istio's charts keep them under `_internal_defaults_do_not_set` and merge the
# user's values over them (templates/zzz_profile.yaml [IC]); istio-csr's are its values.yaml.
ISTIO_DEFAULTS_KEY = "_internal_defaults_do_not_set"
# Values a template takes whole, so any key below them is read: istiod renders `meshConfig` merged over its mesh
# config (templates/configmap.yaml `mergeOverwrite $originalMesh .Values.meshConfig`) and every `env` entry as a
# container variable (deployment.yaml `range $key, $val := .Values.env`). The render checks below show our keys arrive.
WHOLE_MAPS = {ISTIOD_CHART: {"meshConfig", "env"}}


def releases(stack: str, **changes) -> dict[str, tuple[str, str, dict]]:
    settings = settings_of(stack, trustDomain=TRUST_DOMAIN, **changes)
    istio = istio_settings(settings, cluster_name=CLUSTER)
    return {BASE_CHART: (BASE_RELEASE, ISTIO_NAMESPACE, base_values(settings, istio)),
            ISTIOD_CHART: (ISTIOD_RELEASE, ISTIO_NAMESPACE, istiod_values(settings, istio)),
            ISTIO_CSR_CHART: (ISTIO_CSR_RELEASE, ISTIO_CSR_NAMESPACE, istio_csr_values(settings, istio))}


def rendered(stack: str, **changes) -> dict[str, dict[tuple[str, str], dict]]:
    """chart -> (kind, name) -> object, as `helm template` renders it with the program's values."""
    return {chart: {(o["kind"], o["metadata"]["name"]): o for o in render_chart(chart, release, namespace, values)}
            for chart, (release, namespace, values) in releases(stack, **changes).items()}


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def stack(request):
    return request.param, rendered(request.param)


def container(deployment: dict) -> dict:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def env(deployment: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(deployment)["env"]}


def args(deployment: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for arg in container(deployment)["args"]:
        key, _, value = arg.partition("=")
        found.setdefault(key, []).append(value)
    return found


# --- istiod: CA off, proxies sent to istio-csr, the trust domain and cluster id ----------------------------------------

def test_istiod_runs_without_its_ca_and_with_our_trust_domain_and_cluster(stack):
    _, charts = stack
    istiod = charts[ISTIOD_CHART]
    variables = env(istiod[("Deployment", ISTIOD)])
    assert variables["ENABLE_CA_SERVER"] == "false" and variables["CLUSTER_ID"] == CLUSTER
    mesh = yaml.safe_load(istiod[("ConfigMap", MESH_CONFIG_MAP)]["data"]["mesh"])
    assert mesh["trustDomain"] == TRUST_DOMAIN


def test_every_injected_proxy_asks_istio_csr_for_its_certificate(stack):
    """The injector renders its template with the values in its ConfigMap: CA_ADDR comes from global.caAddress."""
    _, charts = stack
    injector = charts[ISTIOD_CHART][("ConfigMap", INJECTOR_CONFIG_MAP)]["data"]
    assert json.loads(injector["values"])["global"]["caAddress"] == ca_address()
    assert re.search(r"- name: CA_ADDR\n\s*\{\{- if \.Values\.global\.caAddress \}\}\n\s*value: \{\{ \.Values\.global\.caAddress \}\}",
                     injector["config"]), "the injection template no longer takes CA_ADDR from global.caAddress"
    assert json.loads(injector["values"])["global"]["multiCluster"]["clusterName"] == CLUSTER


def test_ca_address_is_istio_csrs_service_in_the_rendered_chart(stack):
    _, charts = stack
    host, port = ca_address().rsplit(":", 1)
    name, namespace, svc = host.split(".")
    service = charts[ISTIO_CSR_CHART][("Service", name)]
    assert (svc, service["metadata"]["namespace"]) == ("svc", namespace)
    (serving,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert serving["targetPort"] == ISTIO_CSR_GRPC_PORT
    deployment = charts[ISTIO_CSR_CHART][("Deployment", ISTIO_CSR)]
    assert ISTIO_CSR_GRPC_PORT in {p["containerPort"] for p in container(deployment)["ports"]}
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # istio-csr's serving certificate names the host the proxies dial, or their TLS check fails.
    assert host in args(deployment)["--serving-certificate-dns-names"]


# --- istio-csr: trust domain, cluster id, pinned roots, the Issuer --------------------------------------------------

def test_istio_csr_agrees_with_istiod_and_signs_with_the_istio_ca_issuer(stack):
    _, charts = stack
    flags = args(charts[ISTIO_CSR_CHART][("Deployment", ISTIO_CSR)])
    assert flags["--trust-domain"] == [TRUST_DOMAIN]
    assert flags["--cluster-id"] == [env(charts[ISTIOD_CHART][("Deployment", ISTIOD)])["CLUSTER_ID"]] == [CLUSTER]
    assert flags["--max-client-certificate-duration"] == ["1h"]
    issuer = istio_ca_issuer()
    assert flags["--certificate-namespace"] == [issuer["metadata"]["namespace"]]
    assert (flags["--issuer-name"], flags["--issuer-kind"], flags["--issuer-group"]) == (
        [issuer["metadata"]["name"]], ["Issuer"], ["cert-manager.io"])
    assert flags["--issuer-enabled"] == ["true"]


def test_istio_csr_pins_the_roots_trust_manager_distributes(stack):
    """--root-ca-file is a file of the Bundle's ConfigMap, mounted as a directory (no subPath: the kubelet then swaps
    the file on every Bundle change and istio-csr's watch reloads it), in the namespace the Bundle targets."""
    name, charts = stack
    deployment = charts[ISTIO_CSR_CHART][("Deployment", ISTIO_CSR)]
    assert args(deployment)["--root-ca-file"] == [ISTIO_ROOTS_FILE]
    spec = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in container(deployment).get("volumeMounts", []) if ISTIO_ROOTS_FILE.startswith(m["mountPath"] + "/")]
    assert "subPath" not in mount and mount.get("readOnly") is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (bundle,) = [o for o in trust_objects(settings_of(name)) if o["kind"] == "Bundle"]
    assert volume["configMap"]["name"] == bundle["metadata"]["name"]
    assert ISTIO_ROOTS_FILE == f"{mount['mountPath']}/{bundle['spec']['target']['configMap']['key']}"
    (selector,) = bundle["spec"]["target"]["namespaceSelector"]["matchExpressions"]
    assert selector["values"] == [deployment["metadata"]["namespace"]]


def test_istiods_certificate_is_ours_and_reaches_istiod(stack):
    """The chart's Certificate `istiod` is off (the program registers it, so istiod can wait for it); ours uses our
    Issuer and trust domain; the istiod chart mounts its Secret where istiod looks for custom TLS, and the roots
    istio-csr writes."""
    name, charts = stack
    assert ("Certificate", ISTIOD_CERTIFICATE) not in charts[ISTIO_CSR_CHART]
    certificate = istiod_certificate(settings_of(name, trustDomain=TRUST_DOMAIN))
    issuer = istio_ca_issuer()
    assert certificate["metadata"]["namespace"] == issuer["metadata"]["namespace"]
    assert certificate["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                                "group": "cert-manager.io"}
    assert certificate["spec"]["uris"] == [f"spiffe://{TRUST_DOMAIN}/ns/{ISTIO_NAMESPACE}/sa/istiod-service-account"]
    assert certificate["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Ready"}
    istiod = charts[ISTIOD_CHART][("Deployment", ISTIOD)]
    spec = istiod["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container(istiod)["volumeMounts"]}
    secrets = {v["secret"]["secretName"]: v["name"] for v in spec["volumes"] if "secret" in v}
    config_maps = {v["configMap"]["name"]: v["name"] for v in spec["volumes"] if "configMap" in v}
    assert certificate["spec"]["secretName"] == ISTIOD_TLS_SECRET and mounts[secrets[ISTIOD_TLS_SECRET]] == ISTIOD_TLS_DIR
    assert mounts[config_maps[ROOT_CERT_CONFIG_MAP]] == "/var/run/secrets/istiod/ca"


def test_istiods_certificate_is_the_one_the_chart_would_render(stack):
    """Rendered by the pinned istio-csr chart with our values, `istiodCertificateEnable: true` and the mesh's key
    profile, the chart's Certificate `istiod` has exactly our spec, field by field, and the same name and namespace."""
    name, _ = stack
    settings = settings_of(name, trustDomain=TRUST_DOMAIN)
    release, namespace, values = releases(name)[ISTIO_CSR_CHART]
    enabled = {**values, "app": {**values["app"], "tls": {**values["app"]["tls"], "istiodCertificateEnable": True,
                                                                      **ISTIOD_PRIVATE_KEY_VALUES}}}
    (chart,) = [o for o in render_chart(ISTIO_CSR_CHART, release, namespace, enabled) if o["kind"] == "Certificate"
                and o["metadata"]["name"] == ISTIOD_CERTIFICATE]
    ours = istiod_certificate(settings)
    assert (ours["apiVersion"], ours["metadata"]["name"], ours["metadata"]["namespace"]) == \
        (chart["apiVersion"], chart["metadata"]["name"], chart["metadata"]["namespace"])
    assert set(ours["spec"]) == set(chart["spec"])
    for key in chart["spec"]:
        assert ours["spec"][key] == chart["spec"][key], key


def test_root_cert_check_may_read_only_istio_ca_root_cert(stack):
    """The check's account may `get` that one ConfigMap in istio-system and nothing else; its Job runs under that
    account with the verification clients' image; every object passes the core schemas."""
    name, _ = stack
    settings = settings_of(name)
    objects = {o["kind"]: o for o in root_cert_check(settings)}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "Job"}
    assert {o["metadata"]["namespace"] for o in objects.values()} == {ISTIO_NAMESPACE}
    assert objects["Role"]["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                                         "resourceNames": [ROOT_CERT_CONFIG_MAP], "verbs": ["get"]}]
    account = objects["ServiceAccount"]["metadata"]["name"]
    assert objects["RoleBinding"]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                 "name": objects["Role"]["metadata"]["name"]}
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                                   "namespace": ISTIO_NAMESPACE}]
    pod = objects["Job"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    (check,) = pod["containers"]
    assert check["image"] == settings.verification.client_image
    assert {e["name"]: e["value"] for e in check["env"]}["CONFIG_MAP"] == ROOT_CERT_CONFIG_MAP
    failures = {o["kind"]: errors for o in objects.values() if (errors := validate_object(o))}
    assert not failures, failures


def test_istio_ca_root_cert_has_one_writer_istio_csr(stack):
    """With ENABLE_CA_SERVER=false istiod starts no namespace controller (reference A1); no chart renders the
    ConfigMap; none of our Bundles targets it; istio-csr may write ConfigMaps in every namespace and is told no
    namespace selector, so every namespace gets it."""
    name, charts = stack
    for chart, objects in charts.items():
        assert ("ConfigMap", ROOT_CERT_CONFIG_MAP) not in objects, chart
    assert env(charts[ISTIOD_CHART][("Deployment", ISTIOD)])["ENABLE_CA_SERVER"] == "false"
    for settings in (settings_of(name), settings_of(name, **ROTATION)):
        targets = {o["metadata"]["name"] for o in trust_objects(settings) if o["kind"] == "Bundle"}
        assert targets and ROOT_CERT_CONFIG_MAP not in targets
    csr = charts[ISTIO_CSR_CHART]
    (rule,) = [r for r in csr[("ClusterRole", ISTIO_CSR)]["rules"] if "configmaps" in r["resources"]]
    assert {"create", "update"} <= set(rule["verbs"])
    assert "--configmap-namespace-selector" not in args(csr[("Deployment", ISTIO_CSR)])


# --- HA ----------------------------------------------------------------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_prod_runs_both_controllers_highly_available():
    charts = rendered("prod")
    istiod, csr = charts[ISTIOD_CHART], charts[ISTIO_CSR_CHART]
    assert istiod[("HorizontalPodAutoscaler", ISTIOD)]["spec"]["minReplicas"] == HA_REPLICAS
    assert "replicas" not in istiod[("Deployment", ISTIOD)]["spec"], "the HPA owns the replica count"
    assert istiod[("PodDisruptionBudget", ISTIOD)]["spec"]["maxUnavailable"] == 1
    assert csr[("Deployment", ISTIO_CSR)]["spec"]["replicas"] == HA_REPLICAS
    assert csr[("PodDisruptionBudget", ISTIO_CSR)]["spec"]["maxUnavailable"] == 1
    for objects, name in ((istiod, ISTIOD), (csr, ISTIO_CSR)):
        template = objects[("Deployment", name)]["spec"]["template"]
        (required,) = template["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert required["topologyKey"] == "kubernetes.io/hostname"
        # An anti-affinity that selects no replica of its own Deployment would keep nothing apart.
        assert _selects(required["labelSelector"], template["metadata"]["labels"]), name
        assert _selects(objects[("PodDisruptionBudget", name)]["spec"]["selector"], template["metadata"]["labels"])


@pytest.mark.parametrize("name", ["dev", "staging"])
def test_other_environments_run_one_replica_without_budgets(name):
    charts = rendered(name)
    assert charts[ISTIOD_CHART][("Deployment", ISTIOD)]["spec"]["replicas"] == 1
    assert charts[ISTIO_CSR_CHART][("Deployment", ISTIO_CSR)]["spec"]["replicas"] == 1
    for chart, objects in charts.items():
        assert not {kind for kind, _ in objects} & {"PodDisruptionBudget", "HorizontalPodAutoscaler"}, chart


# --- every key is one the chart knows --------------------------------------------------------------------------------

def chart_dir(chart: str) -> Path:
    return CHARTS / CHART_PATHS[chart]


def chart_defaults(chart: str) -> dict:
    values = yaml.safe_load((chart_dir(chart) / "values.yaml").read_text())
    return values.get(ISTIO_DEFAULTS_KEY, values)


def template_references(chart: str) -> set[str]:
    """Every `.Values.a.b.c` path a template (or a file a template includes) reads."""
    found = set()
    for path in [*chart_dir(chart).glob("templates/*"), *chart_dir(chart).glob("files/*")]:
        found |= set(re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", path.read_text(errors="replace")))
    return {ref.lstrip(".") for ref in found}


def leaves(values: dict, prefix: str = "") -> Iterator[str]:
    """Dotted paths of what a values tree sets (a list is one value)."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{path}.")
        else:
            yield path


def unknown_keys(chart: str, values: dict) -> list[str]:
    defaults, read = chart_defaults(chart), template_references(chart)
    whole = WHOLE_MAPS.get(chart, set())
    unknown = []
    for path in leaves(values):
        parts, node, known = path.split("."), defaults, False
        for depth, part in enumerate(parts):
            if ".".join(parts[:depth + 1]) in whole:
                known = True
                break
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            # A key present in the defaults, or below one whose default is an empty map (open for any key).
            if depth == len(parts) - 1 or node == {}:
                known = True
                break
        if not known and path not in read:
            unknown.append(path)
    return unknown


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_key_we_set_is_one_the_chart_knows(name, needs_shared):
    for chart, (_, _, values) in releases(name).items():
        assert not unknown_keys(chart, values), (chart, unknown_keys(chart, values))


def test_the_key_check_finds_a_misspelled_key(needs_shared):
    _, _, values = releases("prod")[ISTIO_CSR_CHART]
    wrong = json.loads(json.dumps(values))
    wrong["app"]["tls"]["trustDomian"] = wrong["app"]["tls"].pop("trustDomain")
    assert unknown_keys(ISTIO_CSR_CHART, wrong) == ["app.tls.trustDomian"]
    _, _, values = releases("prod")[ISTIOD_CHART]
    wrong = {**values, "global": {**values["global"], "caAdress": values["global"]["caAddress"]}}
    assert unknown_keys(ISTIOD_CHART, wrong) == ["global.caAdress"]


def test_istio_csr_chart_refuses_an_unknown_key(needs_shared):
    """istio-csr's values.schema.json is enforced on render, so a wrong key would fail here, not in the cluster."""
    release, namespace, values = releases("dev")[ISTIO_CSR_CHART]
    with pytest.raises(RenderError, match="trustDomian"):
        render_chart(ISTIO_CSR_CHART, release, namespace,
                     {**values, "app": {**values["app"], "tls": {"trustDomian": TRUST_DOMAIN}}})


def test_the_charts_render_their_defaults_otherwise():
    """The checks above can fail: with the charts' defaults istiod keeps its CA and proxies dial istiod."""
    istiod = {(o["kind"], o["metadata"]["name"]): o for o in render_chart(ISTIOD_CHART, ISTIOD_RELEASE, ISTIO_NAMESPACE, {})}
    assert "ENABLE_CA_SERVER" not in env(istiod[("Deployment", ISTIOD)])
    assert json.loads(istiod[("ConfigMap", INJECTOR_CONFIG_MAP)]["data"]["values"])["global"]["caAddress"] == ""
    csr = {(o["kind"], o["metadata"]["name"]): o for o in render_chart(ISTIO_CSR_CHART, ISTIO_CSR_RELEASE, ISTIO_CSR_NAMESPACE, {})}
    assert args(csr[("Deployment", ISTIO_CSR)])["--root-ca-file"] == [""]


def test_what_the_rendered_charts_mount_exists(stack):
    """Every Secret and ConfigMap a rendered workload mounts (not optional) comes from the chart itself or from
    plan/istio/trust.py's objects (a Bundle's ConfigMap appears in the namespaces it selects, a Certificate's Secret
    beside it): istio-csr would otherwise never start, waiting for its roots."""
    name, charts = stack
    objects = trust_objects(settings_of(name))
    made = {("Secret", o["metadata"]["namespace"], o["spec"]["secretName"]) for o in objects if o["kind"] == "Certificate"}
    for bundle in (o for o in objects if o["kind"] == "Bundle"):
        for expression in bundle["spec"]["target"]["namespaceSelector"]["matchExpressions"]:
            made |= {("ConfigMap", ns, bundle["metadata"]["name"]) for ns in expression["values"]}
    checked = 0
    for chart, rendered_objects in charts.items():
        made |= {(kind, o["metadata"].get("namespace"), o["metadata"]["name"]) for (kind, _), o in rendered_objects.items()
                 if kind in ("Secret", "ConfigMap")}
        for (kind, workload_name), workload in rendered_objects.items():
            if kind != "Deployment":
                continue
            for volume in workload["spec"]["template"]["spec"].get("volumes", []):
                for ref_kind, key, name_key in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
                    if key in volume and not volume[key].get("optional"):
                        ref = (ref_kind, workload["metadata"]["namespace"], volume[key][name_key])
                        assert ref in made, f"{chart}: {workload_name} mounts {ref}, which nothing creates"
                        checked += 1
    assert checked >= 1, "istio-csr's roots at least"


def test_istiods_certificate_validates_against_the_pinned_crd(stack, needs_shared):
    """Our Certificate `istiod` (the chart's, as the test above shows) is one cert-manager v1.21.1 accepts."""
    name, _ = stack
    certificate = istiod_certificate(settings_of(name, trustDomain=TRUST_DOMAIN))
    assert validate_object(certificate) == []
    broken = {**certificate, "spec": {**certificate["spec"], "issuerRef": {"nam": "x"}}}
    assert validate_object(broken), "the schema check can fail"


def test_the_rendered_mesh_config_leaves_outbound_traffic_at_allow_any():
    """REGISTRY_ONLY is per Sidecar in the deny namespaces (plan/istio/authorization.py `MESH_CONFIG`): istiod's
    rendered mesh config, from the values the plan hands the release, says ALLOW_ANY, so injected pods outside the
    graph keep every destination."""
    from plan.mesh import build_plan
    settings = settings_of("prod", trustDomain=TRUST_DOMAIN, mesh="istio", linkerdViz=False)
    values = build_plan(settings).istio.istiod_values
    (configmap,) = [o for o in render_chart(ISTIOD_CHART, ISTIOD_RELEASE, ISTIO_NAMESPACE, values)
                    if o["kind"] == "ConfigMap" and o["metadata"]["name"] == MESH_CONFIG_MAP]
    assert yaml.safe_load(configmap["data"]["mesh"])["outboundTrafficPolicy"] == {"mode": "ALLOW_ANY"}
