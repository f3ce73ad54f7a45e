"""The Operator runs the policy shards in parallel (issue 24): for an operator-delivered platform stack with
policyShards, one Stack per shard stack that fits the Operator's real Stack CRD, waits for the platform's Stack in the
same namespace, and runs as a workspace ServiceAccount of its own that may write exactly the kinds its plan registers,
only in its own namespaces.

The repository's stacks are not operator-delivered, so these tests build a project of fixture stack files (a copy of
the repository's, with prod handed to the Operator and sharded) in a temporary directory.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from conformance import UPSTREAM, _to_jsonschema, shared_missing_reason, unknown_fields, validate_core
from harness import PROJECT_DIR

sys.path.insert(0, str(PROJECT_DIR))
from deploy import operator_shards as shards_module  # noqa: E402
from deploy import operator_stacks as generator  # noqa: E402
from deploy import promote  # noqa: E402
from plan.shards import shards_of  # noqa: E402

# The Operator's Stack CRD, verbatim from pulumi-kubernetes-operator v2.9.0 (tests/upstream/.../PROVENANCE.md).
STACK_CRD = Path(__file__).parent / "upstream" / "pulumi-kubernetes-operator" / "pulumi.com_stacks.yaml"
SHARDS = {"web": "storefront", "payments": "payments"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=1)
def stack_crd_version() -> dict:
    """The served storage version of the Stack CRD (pulumi.com/v1)."""
    crd = yaml.load(STACK_CRD.read_text(encoding="utf-8"), Loader=Loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert crd["spec"]["group"] == "pulumi.com" and version["name"] == "v1" and version["served"]
    return version


@lru_cache(maxsize=1)
def stack_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_to_jsonschema(stack_crd_version()["schema"]["openAPIV3Schema"]))


def stack_name_limit() -> int:
    """The CRD's CEL rule on the name (jsonschema cannot run CEL, so its bound is read and checked here)."""
    rules = stack_crd_version()["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    (limit,) = [int(m.group(1)) for r in rules if (m := re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", r["rule"]))]
    return limit


def stack_problems(obj: dict) -> list[str]:
    """What the API server would refuse or silently drop in a Stack object."""
    schema = stack_crd_version()["schema"]["openAPIV3Schema"]
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in stack_validator().iter_errors(obj)]
    problems += [f"{p}: not in the Stack schema" for p in unknown_fields(obj, schema)]
    if len(obj["metadata"]["name"]) > stack_name_limit():
        problems.append(f"metadata.name: longer than {stack_name_limit()}")
    if obj.get("apiVersion") != "pulumi.com/v1" or obj.get("kind") != "Stack":
        problems.append("not a pulumi.com/v1 Stack")
    return problems


@lru_cache(maxsize=1)
def crd_plurals() -> dict[tuple[str, str], str]:
    """(group, kind) -> resource plural, from every upstream CRD in ../shared (read independently of the generator)."""
    plurals = {}
    # The upstream CRD files, and of the pinned charts only Istio's, whose base chart carries every Istio CRD.
    istio_crds = UPSTREAM / "charts" / "istio-1.29.6" / "manifests" / "charts" / "base" / "files" / "crd-all.gen.yaml"
    paths = [p for p in UPSTREAM.rglob("*.yaml") if "charts" not in p.relative_to(UPSTREAM).parts[:1]]
    for path in sorted([*paths, istio_crds]):
        for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=Loader):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                spec = document["spec"]
                plurals[(spec["group"], spec["names"]["kind"])] = spec["names"]["plural"]
    # The Link CRD ships in the linkerd-multicluster chart as a template (Helm expressions in its metadata): its group,
    # kind and plural read as text.
    link_crd = (UPSTREAM / "charts" / "linkerd2-edge-26.8.3" / "multicluster" / "charts" / "linkerd-multicluster" /
                "templates" / "link-crd.yaml").read_text(encoding="utf-8")
    group = re.search(r"^  group: (\S+)$", link_crd, re.M).group(1)
    names = re.search(r"^  names:\n((?:    .*\n)+)", link_crd, re.M).group(1)
    fields = dict(re.findall(r"^    (\w+): (\S+)$", names, re.M))
    plurals[(group, fields["kind"])] = fields["plural"]
    return plurals


def sharded_project(tmp_path: Path, shards: dict[str, str] = SHARDS, platform: str = "prod",
                    shard_files: dict[str, str] | None = None) -> Path:
    """A copy of the project's stack files and graph in which `platform` is operator-delivered with policyShards,
    the graph gives `shards` (namespace -> shard) and each shard has its stack file (or `shard_files`: stack ->
    shard, to get them wrong)."""
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", project)
    shutil.copytree(PROJECT_DIR / "stacks" / "ca", project / "stacks" / "ca")
    graph = yaml.safe_load((PROJECT_DIR / "services.yaml").read_text())
    for namespace in graph["namespaces"]:
        graph["namespaces"][namespace] = {k: v for k, v in (graph["namespaces"][namespace] or {}).items() if k != "shard"}
    for namespace, shard in shards.items():
        graph["namespaces"][namespace]["shard"] = shard
    (project / "services.yaml").write_text(yaml.safe_dump(graph, sort_keys=False))
    for path in (PROJECT_DIR / "stacks").glob("Pulumi.*.yaml"):
        document = yaml.safe_load(path.read_text())
        if "mtls-mesh:platformStack" in document["config"]:
            continue  # the repository's own shard stacks: this project has its own
        if path.name == "Pulumi.prod.yaml":
            document["config"] = {"mtls-mesh:deliveredBy": "operator", "mtls-mesh:policyShards": True,
                                  **document["config"]}
        (project / "stacks" / f"Pulumi.{platform if path.name == 'Pulumi.prod.yaml' else path.name.split('.')[1]}.yaml"
         ).write_text(yaml.safe_dump(document, sort_keys=False))
    files = shard_files if shard_files is not None else {f"{platform}-{s}": s for s in dict.fromkeys(shards.values())}
    for stack, shard in files.items():
        (project / "stacks" / f"Pulumi.{stack}.yaml").write_text(
            "# yaml-language-server: $schema=../schema/stack-settings.schema.json\n"
            f"config:\n  mtls-mesh:platformStack: {platform}\n  mtls-mesh:shard: {shard}\n")
    return project


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The sharded project and every document the generator writes for it: file stem -> documents."""
    tmp_path = tmp_path_factory.mktemp("operator")
    project = sharded_project(tmp_path)
    written = generator.write(tmp_path / "out", generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, project)
    return project, tmp_path / "out", {p.stem: list(yaml.safe_load_all(p.read_text())) for p in written}


def of_kind(documents, kind):
    return [d for d in documents if d["kind"] == kind]


def graph_shards(project: Path) -> dict[str, tuple[str, ...]]:
    platform, _ = shards_module.platform_plan("prod", project)
    return shards_of(platform)


# --- the Stacks --------------------------------------------------------------------------------------------------------

def test_one_stack_per_shard_stack_and_each_fits_the_operators_crd(generated):
    project, _, files = generated
    assert sorted(files) == ["prod", "prod-payments", "prod-storefront"]
    stacks = [s for documents in files.values() for s in of_kind(documents, "Stack")]
    assert len(stacks) == 3
    for stack in stacks:
        assert stack_problems(stack) == [], stack["metadata"]["name"]
        assert validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": stack["metadata"]}) == []
    for documents in files.values():
        for obj in documents:
            if obj["kind"] != "Stack":
                assert validate_core(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_stack_schema_check_can_fail(generated):
    _, _, files = generated
    (stack,) = of_kind(files["prod-payments"], "Stack")
    for mutate, expected in [
        (lambda s: s["spec"].update(workspaceReclaimPolicy="Remove"), "workspaceReclaimPolicy"),
        (lambda s: s["spec"]["prerequisites"][0].pop("name"), "'name' is a required property"),
        (lambda s: s["spec"].update(retryOnConflict=True), "spec.retryOnConflict: not in the Stack schema"),
        (lambda s: s["spec"]["prerequisites"][0]["requirement"].update(succeededWithin="5m"), "succeededWithin"),
        (lambda s: s["spec"].update(refresh="false"), "refresh"),
        (lambda s: s["metadata"].update(name="mtls-mesh-production-eu-west-storefront-abc"), "longer than 42"),
    ]:
        broken = copy.deepcopy(stack)
        mutate(broken)
        assert any(expected in p for p in stack_problems(broken)), expected


def test_a_shard_stack_waits_for_its_platform_and_runs_the_platforms_branch(generated):
    _, _, files = generated
    (platform,) = of_kind(files["prod"], "Stack")
    for stack_name, shard in (("prod-storefront", "storefront"), ("prod-payments", "payments")):
        documents = files[stack_name]
        (stack,) = of_kind(documents, "Stack")
        spec = stack["spec"]
        assert stack["metadata"]["name"] == f"mtls-mesh-{stack_name}"
        assert stack["metadata"]["namespace"] == platform["metadata"]["namespace"], \
            "the Operator looks a prerequisite up in the Stack's own namespace"
        assert [p["name"] for p in spec["prerequisites"]] == [platform["metadata"]["name"]]
        within = spec["prerequisites"][0]["requirement"]["succeededWithinDuration"]
        assert re.fullmatch(r"\d+(h|m|s)", within), "a Go duration (metav1.Duration)"
        assert spec["branch"] == platform["spec"]["branch"] == "refs/heads/deploy/prod"
        assert spec["config"] == {"mtls-mesh:kubeContext": "in-cluster"}, \
            "platform and shard come from the stack file at the promoted commit, like every other setting"
        assert spec["refresh"] is False and "retryOnUpdateConflict" not in spec
        assert spec["workspaceReclaimPolicy"] == "Delete"
        assert spec["stack"] == f"organization/mtls-mesh/{stack_name}"
        assert spec["backend"] == platform["spec"]["backend"] and spec["projectRepo"] == platform["spec"]["projectRepo"]
        assert set(spec["envRefs"]) == {"PULUMI_ACCESS_TOKEN"}, "the backend only: a shard needs no Vault token"
        assert {r["secret"]["name"] for r in spec["envRefs"].values()} == {stack["metadata"]["name"]}
        (account,) = of_kind(documents, "ServiceAccount")
        assert account["metadata"]["name"] == spec["serviceAccountName"] != platform["spec"]["serviceAccountName"]
        assert account["metadata"]["namespace"] == stack["metadata"]["namespace"]


def test_a_stack_name_the_crd_would_refuse_is_an_error_at_generation(tmp_path):
    long_shard = "storefront-checkouts"  # 20 characters, the longest shard name the graph allows
    project = sharded_project(tmp_path, {"web": long_shard}, platform="prod-eu-west-1")
    with pytest.raises(generator.GeneratorError) as caught:
        generator.write(tmp_path / "out", generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, project)
    message = str(caught.value)
    assert f"mtls-mesh-prod-eu-west-1-{long_shard}" in message and "at most 42" in message
    assert "namespaces.<name>.shard" in message
    assert len(f"mtls-mesh-prod-eu-west-1-{long_shard}") == 45 > stack_name_limit()
    assert shards_module.STACK_NAME_MAX == stack_name_limit(), "the generator's bound is the CRD's"
    assert not list((tmp_path / "out").glob("*.yaml")), "nothing is written when a stack is refused"


# --- the workspace's RBAC ------------------------------------------------------------------------------------------------

def test_each_shard_may_write_only_in_its_own_namespaces(generated):
    project, _, files = generated
    shards = graph_shards(project)
    for stack_name in ("prod-storefront", "prod-payments"):
        documents = files[stack_name]
        shard = stack_name.removeprefix("prod-")
        account = of_kind(documents, "ServiceAccount")[0]["metadata"]
        subject = [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]
        bindings = of_kind(documents, "RoleBinding")
        assert {b["metadata"]["namespace"] for b in bindings} == set(shards[shard])
        for binding in bindings:
            assert binding["subjects"] == subject
            (role,) = [r for r in of_kind(documents, "Role")
                       if r["metadata"]["namespace"] == binding["metadata"]["namespace"]]
            assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                          "name": role["metadata"]["name"]}
        (cluster_binding,) = of_kind(documents, "ClusterRoleBinding")
        assert cluster_binding["roleRef"]["name"] == "system:auth-delegator" and cluster_binding["subjects"] == subject
        assert not of_kind(documents, "ClusterRole"), "no cluster-wide write"
        assert {d["kind"] for d in documents} == {"ServiceAccount", "ClusterRoleBinding", "Role", "RoleBinding", "Stack"}
    platform = files["prod"]
    assert {b["roleRef"]["name"] for b in of_kind(platform, "ClusterRoleBinding")} == \
        {"system:auth-delegator", "cluster-admin"}, "the platform's deployer keeps what it has"


def expected_write_access(project: Path, namespace: str) -> set[tuple[str, str]]:
    """(apiGroup, resource) of every object the shard registers in `namespace`: its policy and workload Certificates in
    the compiled plan, each kind's plural from the upstream CRD (NetworkPolicy is Kubernetes' own)."""
    _, plan = shards_module.platform_plan("prod", project)
    ns = plan.namespaces[namespace]
    core = {("networking.k8s.io", "NetworkPolicy"): "networkpolicies"}
    plurals = {**crd_plurals(), **core}
    return {(group, plurals[(group, obj["kind"])]) for obj in [*ns.policy, *ns.certificates]
            for group in [obj["apiVersion"].rpartition("/")[0]]}


def granted(role: dict) -> tuple[set[tuple[str, str]], list[dict]]:
    """What a Role lets its subject write ((group, resource) with every verb the provider needs), and its other rules
    (removal rules left out: see removable)."""
    writes, others = set(), []
    for rule in role["rules"]:
        if rule["verbs"] == list(shards_module.VERBS):
            writes |= {(group, resource) for group in rule["apiGroups"] for resource in rule["resources"]}
        elif rule["verbs"] != list(shards_module.REMOVAL_VERBS):
            others.append(rule)
    return writes, others


def removable(role: dict) -> set[tuple[str, str]]:
    """(group, resource) the Role lets its subject get, watch and delete (writing included)."""
    return {(group, resource) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
            if set(shards_module.REMOVAL_VERBS) <= set(rule["verbs"])}


@pytest.mark.skipif(shared_missing_reason() is not None, reason=shared_missing_reason() or "")
def test_the_role_allows_exactly_the_kinds_the_shards_plan_registers(generated):
    project, _, files = generated
    shards = graph_shards(project)
    kinds_seen = set()
    for stack_name in ("prod-storefront", "prod-payments"):
        roles = {r["metadata"]["namespace"]: r for r in of_kind(files[stack_name], "Role")}
        for namespace in shards[stack_name.removeprefix("prod-")]:
            writes, others = granted(roles[namespace])
            expected = expected_write_access(project, namespace)
            assert writes == expected, namespace
            assert others == [{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]}], \
                "besides its own kinds, only reading the Events the provider reports"
            assert "update" not in shards_module.VERBS and "*" not in str(roles[namespace]["rules"])
            kinds_seen |= expected
    assert ("cert-manager.io", "certificates") not in kinds_seen, "prod's web and payments have no workload certificate"
    assert {("policy.linkerd.io", "servers"), ("gateway.networking.k8s.io", "tlsroutes"),
            ("networking.k8s.io", "networkpolicies")} <= kinds_seen


@pytest.mark.skipif(shared_missing_reason() is not None, reason=shared_missing_reason() or "")
def test_workload_certificates_are_in_the_role_of_the_shard_that_registers_them(tmp_path):
    """prod's `data` namespace has a workload Certificate (postgres): a shard holding it may write certificates."""
    project = sharded_project(tmp_path, {"data": "storage"})
    (shard,) = shards_module.shard_stacks("prod", project)
    (role,) = of_kind(shards_module.workspace_rbac(shard, "pulumi-operator", {}), "Role")
    writes, _ = granted(role)
    assert ("cert-manager.io", "certificates") in writes
    assert writes == expected_write_access(project, "data")


def test_a_kind_without_an_rbac_resource_is_refused_by_name(tmp_path, monkeypatch):
    project = sharded_project(tmp_path)
    monkeypatch.delitem(shards_module.RESOURCES, ("gateway.networking.k8s.io", "TLSRoute"))
    with pytest.raises(generator.GeneratorError, match=r"TLSRoute.*RESOURCES"):
        shards_module.shard_stacks("prod", project)


@pytest.mark.skipif(shared_missing_reason() is not None, reason=shared_missing_reason() or "")
def test_the_resource_table_is_the_crds(generated):
    plurals = crd_plurals()
    for (group, kind), plural in shards_module.RESOURCES.items():
        if group == "networking.k8s.io":
            continue  # Kubernetes' own NetworkPolicy: no CRD
        assert plurals.get((group, kind)) == plural, f"{group} {kind}"


def test_every_shard_namespace_with_objects_gets_a_role_and_one_without_gets_none(tmp_path):
    project = sharded_project(tmp_path, {"web": "storefront", "batch": "storefront"})
    (shard,) = shards_module.shard_stacks("prod", project)
    assert shard.namespaces == ("web", "batch")
    documents = shards_module.workspace_rbac(shard, "pulumi-operator", {})
    assert {r["metadata"]["namespace"] for r in of_kind(documents, "Role")} == {"web"}, \
        "batch (unmeshed, no services of its own) registers nothing, so its Role would allow nothing"


# --- generation ----------------------------------------------------------------------------------------------------------

def test_regeneration_is_stable_and_drops_a_shard_that_went(generated, tmp_path):
    project, out, files = generated
    before = {p.name: p.read_bytes() for p in out.glob("*/*.yaml")}
    assert before and {p.parent.name for p in out.glob("*/*.yaml")} == {"prod"}, \
        "an environment's manifests in the directory its GitOps tool syncs (deploy/operator/<env>/)"
    generator.write(out, generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, project)
    assert {p.name: p.read_bytes() for p in out.glob("*/*.yaml")} == before
    yamllint = Path(sys.executable).parent / "yamllint"
    result = subprocess.run([str(yamllint) if yamllint.exists() else shutil.which("yamllint") or "yamllint", "-c",
                             str(PROJECT_DIR / ".yamllint.yaml"), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    fewer = sharded_project(tmp_path, {"web": "storefront"})
    written = generator.write(out, generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, fewer)
    assert sorted(p.name for p in written) == sorted(p.name for p in out.glob("*/*.yaml")) == \
        ["prod-storefront.yaml", "prod.yaml"]


@pytest.mark.parametrize("shards,files,expected", [
    (SHARDS, {"prod-storefront": "storefront"}, r"payments have no stack file \(stacks/Pulumi\.prod-payments\.yaml\)"),
    (SHARDS, {"prod-storefront": "storefront", "prod-payments": "payments", "prod-ledger": "ledger"},
     r"'ledger', not a shard of the service graph"),
    (SHARDS, {"prod-storefront": "storefront", "prod-pay": "payments"},
     r"named <platformStack>-<shard>, prod-payments"),
])
def test_shard_stack_files_that_do_not_match_the_graph_are_refused(tmp_path, shards, files, expected):
    project = sharded_project(tmp_path, shards, shard_files=files)
    with pytest.raises(generator.GeneratorError, match=expected):
        shards_module.shard_stacks("prod", project)


def test_a_shard_of_a_platform_without_policy_shards_or_with_its_own_settings_is_refused(tmp_path):
    project = sharded_project(tmp_path)
    platform = project / "stacks" / "Pulumi.prod.yaml"
    platform.write_text(platform.read_text().replace("  mtls-mesh:policyShards: true\n", ""))
    with pytest.raises(generator.GeneratorError, match="does not set mtls-mesh:policyShards: true"):
        shards_module.shard_stacks("prod", project)
    project = sharded_project(tmp_path / "2")
    shard = project / "stacks" / "Pulumi.prod-payments.yaml"
    shard.write_text(shard.read_text() + "  mtls-mesh:defaultInboundPolicy: all-unauthenticated\n")
    with pytest.raises(generator.GeneratorError, match=r"defaultInboundPolicy set in a shard stack.*Pulumi\.prod\.yaml"):
        shards_module.shard_stacks("prod", project)


def test_a_shards_workspace_reads_a_diy_backend_with_the_clusters_workload_identity(tmp_path):
    project = sharded_project(tmp_path)
    (shard, _) = shards_module.shard_stacks("prod", project)
    documents = generator.shard_documents(shard, generator.DEFAULT_REPO, "azblob://state?storage_account=meshstate",
                                          "azure", "00000000-0000-0000-0000-000000000000")
    (account,) = of_kind(documents, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"azure.workload.identity/client-id":
                                                  "00000000-0000-0000-0000-000000000000"}
    (stack,) = of_kind(documents, "Stack")
    assert stack_problems(stack) == []
    assert stack["spec"]["workspaceTemplate"]["spec"]["podTemplate"]["metadata"]["labels"] == \
        {"azure.workload.identity/use": "true"}
    assert set(stack["spec"]["envRefs"]) == {"PULUMI_CONFIG_PASSPHRASE"}


def test_a_shard_stack_is_delivered_by_its_platforms_deliverer(generated):
    project, _, _ = generated
    assert promote.delivered_by("prod-storefront", project) == promote.delivered_by("prod", project) == "operator"
    assert promote.delivered_by("staging", project) == "workflows"


def test_a_shards_inline_config_is_what_the_program_accepts_of_a_shard_stack(generated):
    """The program takes of a shard stack only the settings read.settings_format.SHARD_STACK_SETTINGS names (the rest
    is the platform's); the Operator's inline config must stay within them."""
    from read import settings_format

    accepted = getattr(settings_format, "SHARD_STACK_SETTINGS", None)
    if accepted is None:
        pytest.skip("this branch's settings have no shard stacks yet (read.settings_format.SHARD_STACK_SETTINGS)")
    _, _, files = generated
    for stack_name in ("prod-storefront", "prod-payments"):
        (stack,) = of_kind(files[stack_name], "Stack")
        assert {key.removeprefix("mtls-mesh:") for key in stack["spec"]["config"]} <= set(accepted)


# --- RBAC across a change of shards: the base commit's namespaces stay removable until the shard has left them -------

EVERY_KIND = {(group, shards_module.RESOURCES[(group, kind)]) for group, kind in shards_module.SHARD_KINDS["linkerd"]}


def test_a_namespace_that_leaves_a_shard_stays_removable_until_the_shard_has_applied_without_it(tmp_path):
    """base: web and payments in storefront; head: payments moved to the payments shard. Generated from head alone
    (the old behaviour), storefront has no right in payments and its `up`, which deletes the objects it registered
    there, would get 403s; with the base's namespaces (--applied) it keeps get/list/watch/delete there, and only
    there and only until it applied head; payments may write at once."""
    base = sharded_project(tmp_path / "base", {"web": "storefront", "payments": "storefront"})
    head = sharded_project(tmp_path / "head", {"web": "storefront", "payments": "payments"})
    held = shards_module.held_namespaces("prod", base)
    assert held == {"prod-storefront": ("web", "payments")}

    def roles(project, held):
        stacks = {s.shard: s for s in shards_module.shard_stacks("prod", project, held)}
        return {shard: {r["metadata"]["namespace"]: r for r in of_kind(
            shards_module.workspace_rbac(stack, "pulumi-operator", {}), "Role")} for shard, stack in stacks.items()}

    head_only = roles(head, None)
    assert "payments" not in head_only["storefront"], "from head alone, storefront could not delete in payments"
    across = roles(head, held)
    leaving = across["storefront"]["payments"]
    assert leaving["metadata"]["labels"]["mtls-mesh.io/leaving"] == "true"
    assert granted(leaving)[0] == set(), "it may no longer create or patch there"
    assert removable(leaving) == EVERY_KIND, "it may remove whatever it registered there"
    assert removable(across["storefront"]["web"]) >= EVERY_KIND
    assert granted(across["payments"]["payments"])[0], "the new owner writes at once"
    # Narrowed: once storefront has applied head, head is what it holds, and the Role in payments goes.
    after = roles(head, shards_module.held_namespaces("prod", head))
    assert "payments" not in after["storefront"]
    assert set(after["storefront"]) == {"web"}


def test_a_kind_the_shard_stops_emitting_stays_removable():
    role = {"rules": shards_module.role_rules([("policy.linkerd.io", "Server")],
                                              shards_module.removable_kinds("linkerd"))}
    assert ("policy.linkerd.io", "servers") in granted(role)[0]
    assert ("policy.linkerd.io", "serverauthorizations") in removable(role) - granted(role)[0]
    assert not [r for r in role["rules"] if "create" in r["verbs"] and "serverauthorizations" in r["resources"]]
    assert "serverauthorizations" not in str(shards_module.role_rules([("policy.linkerd.io", "Server")]))


def test_the_last_applied_commit_is_the_newest_successful_update():
    history = [{"kind": "update", "result": "failed", "environment": {"git.head": "c3"}},
               {"kind": "refresh", "result": "succeeded", "environment": {"git.head": "c2"}},
               {"kind": "update", "result": "succeeded", "environment": {"git.head": "c1"}}]
    assert shards_module.last_applied_commit(history) == "c1", "a failed update keeps the older commit's rights"
    assert shards_module.last_applied_commit([]) is None


def test_the_generator_reads_the_applied_commit_from_git(tmp_path):
    """`--applied <ref>`: the namespaces each shard held at that commit of the repository, read with `git archive`."""
    base = sharded_project(tmp_path / "repo", {"web": "storefront", "payments": "storefront"})
    git = ["git", "-C", str(base), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    head = sharded_project(tmp_path / "head", {"web": "storefront", "payments": "payments"})
    held = generator.held_at(commit, head_project=head, repository=base)
    assert held == {"prod": {"prod-storefront": ("web", "payments")}}
    out = tmp_path / "out"
    generator.write(out, generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, head, held=held)
    documents = list(yaml.safe_load_all((out / "prod" / "prod-storefront.yaml").read_text()))
    assert {r["metadata"]["namespace"] for r in of_kind(documents, "Role")} == {"web", "payments"}


def test_the_platform_and_its_shards_read_one_source_for_each_setting(generated):
    """Under the Operator the shards read stacks/Pulumi.<platform>.yaml in their checkout of deploy/<platform>, the
    branch their platform runs: the same file at the same commit. Whatever the platform's Stack still carries inline
    must be that file's value (the kubeContext aside: how the workspace reaches its cluster), and compiled as the
    platform runs it, it must give the contract digests the shards compile from the file: otherwise each shard would
    wait for a contract its platform never applies."""
    from plan.mesh import compile_mesh
    from plan.shards import contract_digests
    from read.settings import load_settings
    from read.stack_files import read_stack_file, wire_value

    project, _, files = generated
    (platform,) = of_kind(files["prod"], "Stack")
    inline = dict(platform["spec"].get("config") or {})
    file_config, secret_keys = read_stack_file(project / "stacks" / "Pulumi.prod.yaml")
    for key, value in inline.items():
        if key != "mtls-mesh:kubeContext":
            assert wire_value(value) == file_config.get(key), f"{key}: inline and in the stack file differ"
    as_run = {**file_config, **{k: wire_value(v) for k, v in inline.items()}}
    platform_settings = load_settings(as_run, "prod", secret_keys=secret_keys, project_dir=project)
    shard_settings = load_settings(file_config, "prod", secret_keys=secret_keys, project_dir=project)
    assert contract_digests(compile_mesh(platform_settings), platform_settings.graph) == \
        contract_digests(compile_mesh(shard_settings), shard_settings.graph)
    for stack_name in ("prod-storefront", "prod-payments"):
        (stack,) = of_kind(files[stack_name], "Stack")
        assert stack["spec"]["branch"] == platform["spec"]["branch"], "the same commit"
        assert set(stack["spec"]["config"]) <= {"mtls-mesh:platformStack", "mtls-mesh:shard", "mtls-mesh:kubeContext"}


# --- an Istio platform's shards (mesh: istio), and a switch of mesh -----------------------------------------------------

def with_mesh(project: Path, mesh: str) -> Path:
    """The project's operator platform (prod) switched to `mesh`; its shards read it from there."""
    path = project / "stacks" / "Pulumi.prod.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["mtls-mesh:mesh"] = mesh
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return project


def shard_roles(project: Path, held=None) -> dict[str, dict[str, dict]]:
    """shard -> namespace -> its Role."""
    stacks = {s.shard: s for s in shards_module.shard_stacks("prod", project, held)}
    return {shard: {r["metadata"]["namespace"]: r for r in of_kind(
        shards_module.workspace_rbac(stack, "pulumi-operator", {}), "Role")} for shard, stack in stacks.items()}


def role_groups(role: dict) -> set[str]:
    return {group for rule in role["rules"] for group in rule["apiGroups"]}


@pytest.mark.skipif(shared_missing_reason() is not None, reason=shared_missing_reason() or "")
def test_an_istio_platforms_shards_may_write_exactly_the_kinds_istio_emits_in_their_namespaces(tmp_path):
    """Generated, not refused: each Role allows the kinds of the compiled Istio plan in that namespace (PeerAuthentication,
    AuthorizationPolicy, Sidecar, ServiceEntry, NetworkPolicy, workload Certificates), plurals from the pinned Istio
    CRDs, and names no Linkerd API group."""
    project = with_mesh(sharded_project(tmp_path, {"web": "storefront", "payments": "payments", "data": "payments"}),
                        "istio")
    written = generator.write(tmp_path / "out", generator.DEFAULT_REPO, generator.DEFAULT_BACKEND, None, None, project)
    assert {p.stem for p in written} == {"prod", "prod-storefront", "prod-payments"}
    _, plan = shards_module.platform_plan("prod", project)
    assert plan.istio is not None
    seen = set()
    for shard, roles in shard_roles(project).items():
        for namespace, role in roles.items():
            writes, others = granted(role)
            assert writes == expected_write_access(project, namespace), namespace
            assert others == [shards_module.EVENTS_RULE]
            assert "policy.linkerd.io" not in role_groups(role) and "gateway.networking.k8s.io" not in role_groups(role)
            seen |= writes
    assert {("security.istio.io", "peerauthentications"), ("security.istio.io", "authorizationpolicies"),
            ("networking.istio.io", "sidecars"), ("networking.istio.io", "serviceentries"),
            ("networking.k8s.io", "networkpolicies"), ("cert-manager.io", "certificates")} <= seen, seen


def test_a_linkerd_shards_role_names_no_istio_kind(generated):
    _, _, files = generated
    for stack_name in ("prod-storefront", "prod-payments"):
        for role in of_kind(files[stack_name], "Role"):
            assert not {"security.istio.io", "networking.istio.io"} & role_groups(role), role


def test_an_istio_kind_missing_from_the_table_is_refused_by_name(tmp_path, monkeypatch):
    project = with_mesh(sharded_project(tmp_path), "istio")
    monkeypatch.setitem(shards_module.SHARD_KINDS, "istio", tuple(
        k for k in shards_module.SHARD_KINDS["istio"] if k != ("networking.istio.io", "Sidecar")))
    with pytest.raises(generator.GeneratorError, match=r"Sidecar.*SHARD_KINDS\['istio'\]"):
        shards_module.shard_stacks("prod", project)


def test_across_a_switch_of_mesh_a_shard_may_remove_the_old_meshs_objects_until_it_applied_the_new_one(tmp_path):
    """base: Linkerd; head: Istio. The shard's `up` at head deletes the Servers, AuthorizationPolicies, routes... its
    state holds from base: with --applied base, its Role in each namespace it held keeps removing Linkerd's kinds
    (never creating them) beside writing Istio's; once it applied head, Linkerd's kinds go from its Role."""
    shards = {"web": "storefront", "payments": "payments"}
    base = sharded_project(tmp_path / "base", shards)
    head = with_mesh(sharded_project(tmp_path / "head", shards), "istio")
    held = shards_module.held_namespaces("prod", base)
    assert held == {"prod-storefront": ("web",), "prod-payments": ("payments",)}
    assert {h.mesh for h in held.values()} == {"linkerd"}
    linkerd = {(g, shards_module.RESOURCES[(g, k)]) for g, k in shards_module.SHARD_KINDS["linkerd"]}
    istio = {(g, shards_module.RESOURCES[(g, k)]) for g, k in shards_module.SHARD_KINDS["istio"]}
    across = shard_roles(head, held)
    for shard, namespace in (("storefront", "web"), ("payments", "payments")):
        role = across[shard][namespace]
        writes, _ = granted(role)
        assert writes == expected_write_access(head, namespace) and writes <= istio
        assert removable(role) >= linkerd, f"{namespace}: its Linkerd objects must stay removable"
        assert not writes & (linkerd - istio), "never creates the old mesh's kinds"
    head_only = shard_roles(head, None)
    assert not removable(head_only["storefront"]["web"]) & (linkerd - istio), \
        "generated from head alone, the switch's deletes would get 403s"
    after = shard_roles(head, shards_module.held_namespaces("prod", head))
    assert not role_groups(after["storefront"]["web"]) & {"policy.linkerd.io", "gateway.networking.k8s.io"}
