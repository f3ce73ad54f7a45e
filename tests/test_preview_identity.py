"""Previews that cannot write, in the cluster: the preview identity's admission policy, evaluated on admission requests
shaped as the API server sends them, admits its dry-runs and refuses its writes and nobody else's; its objects fit
Kubernetes' own schemas; its RBAC reaches every kind the program registers, writes nothing admission cannot see, and
reads no Secret at all; the setting is validated with one error per problem.

The expression is evaluated with cel-python (the CEL of the Common Expression Language spec, which Kubernetes embeds);
the Kubernetes API server itself is not available here, so the test cannot show its CEL cost limits or type-checking.
"""

from __future__ import annotations

import copy
import uuid

import pytest

from harness import PROJECT_DIR, STACKS, run_program, stack_config
from plan import preview_identity as preview
from plan.mesh import compile_mesh
from read.errors import SettingsError
from read.settings import DEFAULT_PREVIEW_IDENTITY, PreviewIdentity, load_settings

celpy = pytest.importorskip("celpy", reason="cel-python is not installed (requirements-dev.txt pins it; CI has it)")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

# The oldest Kubernetes with admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in 1.30), and the newest
# schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
IDENTITIES = {
    "serviceaccount": PreviewIdentity("serviceaccount", "mtls-mesh-preview", "ci"),
    "user": PreviewIdentity("user", "arn:aws:iam::111122223333:role/mtls-mesh-preview"),
    "group": DEFAULT_PREVIEW_IDENTITY,
}
DEPLOYER = {"username": "system:serviceaccount:pulumi-operator:mtls-mesh-deployer",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:pulumi-operator", "system:authenticated"]}


def user_info(identity: PreviewIdentity) -> dict:
    """The userInfo the API server reports for a request of the identity (an authenticated user's groups always
    include system:authenticated; a ServiceAccount's include its namespace's group)."""
    if identity.kind == "serviceaccount":
        return {"username": identity.username, "uid": str(uuid.uuid4()),
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{identity.namespace}",
                           "system:authenticated"]}
    if identity.kind == "user":
        return {"username": identity.name, "groups": ["system:authenticated"]}
    return {"username": "https://token.actions.githubusercontent.com#repo:acme/mtls-mesh:environment:preview-prod",
            "groups": [identity.name, "system:authenticated"]}


def admission_request(user: dict, operation: str, dry_run: bool, *, kind=("policy.linkerd.io", "v1beta3", "Server"),
                      resource="servers", namespace="payments", subresource: str = "") -> dict:
    """An AdmissionRequest (admission.k8s.io/v1) as the API server builds it for a policy: what pulumi-kubernetes'
    preview sends is a server-side apply PATCH with dryRun=All (operation UPDATE, or CREATE for a new object)."""
    group, version, kind_name = kind
    options_kind = {"CREATE": "CreateOptions", "UPDATE": "PatchOptions", "DELETE": "DeleteOptions",
                    "CONNECT": "PodExecOptions"}[operation]
    options = {"apiVersion": "meta.k8s.io/v1", "kind": options_kind}
    if operation in ("CREATE", "UPDATE"):
        options["fieldManager"] = "pulumi-kubernetes-5b1f0a7c"
    if dry_run:
        options["dryRun"] = ["All"]
    obj = {"apiVersion": f"{group}/{version}" if group else version, "kind": kind_name,
           "metadata": {"name": "api", "namespace": namespace}, "spec": {"port": 8080}}
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind_name},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind_name},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": "api", "namespace": namespace, "operation": operation, "userInfo": copy.deepcopy(user),
        "object": obj if operation in ("CREATE", "UPDATE") else None,
        "oldObject": obj if operation in ("UPDATE", "DELETE") else None,
        "dryRun": dry_run, "options": options,
    }
    if subresource:
        request["subResource"] = subresource
    return {k: v for k, v in request.items() if v is not None}


def decide(policy: dict, request: dict) -> str:
    """What the policy does with one request: "admit" (not matched, or every validation true) or "deny"; a match
    condition or validation that fails to evaluate denies (failurePolicy Fail)."""
    env = celpy.Environment()
    activation = {"request": celpy.json_to_cel(request)}

    def evaluate(expression: str):
        try:
            return env.program(env.compile(expression)).evaluate(activation)
        except celpy.CELEvalError as err:
            return err
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    rule = spec["matchConstraints"]["resourceRules"][0]
    if request["operation"] not in rule["operations"]:
        return "admit"
    for condition in spec["matchConditions"]:
        result = evaluate(condition["expression"])
        if isinstance(result, celpy.CELEvalError):
            return "deny"
        if not result:
            return "admit"
    for validation in spec["validations"]:
        result = evaluate(validation["expression"])
        if isinstance(result, celpy.CELEvalError) or not result:
            return "deny"
    return "admit"


# --- the admission policy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", IDENTITIES)
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE"])
def test_the_preview_identity_may_dry_run_and_nothing_else(kind, operation):
    identity = IDENTITIES[kind]
    policy = preview.admission_policy(identity)
    assert decide(policy, admission_request(user_info(identity), operation, dry_run=True)) == "admit"
    assert decide(policy, admission_request(user_info(identity), operation, dry_run=False)) == "deny"


@pytest.mark.parametrize("kind", IDENTITIES)
def test_a_write_of_the_preview_identity_is_refused_on_any_resource_and_subresource(kind):
    identity = IDENTITIES[kind]
    policy = preview.admission_policy(identity)
    user = user_info(identity)
    for request in (admission_request(user, "CREATE", False, kind=("", "v1", "Secret"), resource="secrets"),
                    admission_request(user, "UPDATE", False, kind=("rbac.authorization.k8s.io", "v1", "ClusterRole"),
                                      resource="clusterroles", namespace=""),
                    admission_request(user, "CONNECT", False, kind=("", "v1", "PodExecOptions"), resource="pods",
                                      subresource="exec")):
        assert decide(policy, request) == "deny", request["resource"]
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert rule["resources"] == ["*/*"] and rule["apiGroups"] == ["*"] and rule["apiVersions"] == ["*"], \
        "every resource and every subresource of every group (admission rules: '*' alone skips subresources)"
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE", "CONNECT"}


@pytest.mark.parametrize("kind", IDENTITIES)
def test_other_identities_are_not_the_policys_business(kind):
    policy = preview.admission_policy(IDENTITIES[kind])
    for user in (DEPLOYER, {"username": "alice@example.com", "groups": ["system:authenticated", "platform"]},
                 {"username": "system:kube-controller-manager"}):
        for operation in ("CREATE", "UPDATE", "DELETE"):
            assert decide(policy, admission_request(user, operation, dry_run=False)) == "admit", (user, operation)


def test_identities_that_only_look_alike_are_not_matched():
    sa = preview.admission_policy(IDENTITIES["serviceaccount"])
    other_namespace = {"username": "system:serviceaccount:other:mtls-mesh-preview", "groups": ["system:authenticated"]}
    assert decide(sa, admission_request(other_namespace, "CREATE", dry_run=False)) == "admit"
    group = preview.admission_policy(IDENTITIES["group"])
    prefixed = {"username": "bob", "groups": ["mtls-mesh-preview-admins"]}
    assert decide(group, admission_request(prefixed, "CREATE", dry_run=False)) == "admit"


def test_the_decision_helper_can_deny_on_an_evaluation_error():
    policy = copy.deepcopy(preview.admission_policy(IDENTITIES["group"]))
    policy["spec"]["validations"][0]["expression"] = "request.noSuchField == true"
    assert decide(policy, admission_request(user_info(IDENTITIES["group"]), "CREATE", dry_run=True)) == "deny"


# --- the objects against Kubernetes' schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_every_preview_object_fits_kubernetes_schemas(stack):
    settings = settings_of(stack)
    plan = compile_mesh(settings)
    for identity in IDENTITIES.values():
        admission, rbac = preview.preview_identity_objects(identity, plan)
        for obj in (*admission, *rbac):
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_can_fail():
    policy = copy.deepcopy(preview.admission_policy(DEFAULT_PREVIEW_IDENTITY))
    policy["spec"]["validations"][0]["expresion"] = policy["spec"]["validations"][0].pop("expression")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, KUBERNETES_VERSIONS[0], strict=True)


def settings_of(stack: str):
    raw, secret_keys = stack_config(stack)
    return load_settings(raw, stack, secret_keys=frozenset(secret_keys))


# --- RBAC ------------------------------------------------------------------------------------------------------------

def rules_allow(rules, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


@pytest.mark.parametrize("stack", STACKS)
def test_the_preview_identity_can_read_and_dry_run_every_kind_the_program_registers(stack):
    """Every Kubernetes object the program registers (the harness sees each one, groups' children too): get (the
    provider reads the live object) and patch (the dry-run apply); no Secret at all."""
    run = run_program(stack)
    settings = settings_of(stack)
    admission, rbac = preview.preview_identity_objects(settings.preview_identity, compile_mesh(settings))
    cluster = next(o for o in rbac if o["kind"] == "ClusterRole")["rules"]
    roles = {o["metadata"]["namespace"]: o["rules"] for o in rbac if o["kind"] == "Role"}
    checked = 0
    for registration in run.registrations:
        if not registration.type.startswith("kubernetes:") or registration.type.split(":")[1] in (
                "helm.sh/v3", "yaml/v2") or registration.type == "pulumi:providers:kubernetes":
            continue
        api, kind = registration.type.split(":")[1:]
        kind = "Namespace" if kind == "NamespacePatch" else kind
        group = "" if api in ("v1", "core/v1") else api.rpartition("/")[0]
        resource = preview.RESOURCES[(group, kind)]
        meta = registration.inputs.get("metadata") or {}
        if kind == "Secret":
            # Not even the program's own: they hold keys and the token reviewer's token.
            rules = roles.get(meta.get("namespace"), [])
            for verb in ("get", "list", "watch", "patch"):
                assert not rules_allow(rules, "", "secrets", verb, meta.get("name")), (stack, meta, verb)
                assert not rules_allow(cluster, "", "secrets", verb, meta.get("name")), (stack, meta, verb)
        elif (group, kind) in preview.ADMISSION_EXEMPT:
            assert rules_allow(cluster, group, resource, "get")
            assert not any(rules_allow(cluster, group, resource, v) for v in ("create", "patch", "update", "delete"))
        else:
            for verb in ("get", "list", "create", "patch"):
                assert rules_allow(cluster, group, resource, verb), (stack, registration.type, verb)
        checked += 1
    assert checked > 20


def test_no_delete_update_escalate_or_bind_is_granted():
    """A preview never deletes or PUTs (PUT is for CRDs, which the program does not register); escalate and bind would
    let a Role grant more than its author holds. What is granted writes only through a dry-run, and never where
    admission does not look (the admission configuration)."""
    settings = settings_of("prod")
    _, rbac = preview.preview_identity_objects(settings.preview_identity, compile_mesh(settings))
    for obj in rbac:
        for rule in obj.get("rules", []):
            assert not set(rule["verbs"]) & {"delete", "deletecollection", "update", "escalate", "bind", "impersonate",
                                             "*"}, rule
            assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
            if "admissionregistration.k8s.io" in rule["apiGroups"]:
                assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(KeyError, match="Gadget"):
        preview.cluster_role([{"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}])


@pytest.mark.parametrize("stack", STACKS)
def test_the_grant_is_registered_after_the_refusal(stack):
    run = run_program(stack)
    by_name = {r.name: r for r in run.registrations}
    binding = by_name["preview-policy-binding"]
    assert by_name["preview-policy"].urn in binding.dependencies
    grants = [r for r in run.registrations if r.name.startswith("preview-") and "role" in r.name]
    assert grants and all(binding.urn in r.dependencies for r in grants)


def test_the_resources_match_the_upstream_crds():
    from test_operator_shards import crd_plurals, shared_missing_reason

    if shared_missing_reason():
        pytest.skip(shared_missing_reason())
    plurals = crd_plurals()
    kubernetes_groups = ("", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io",
                         "admissionregistration.k8s.io")
    for (group, kind), plural in preview.RESOURCES.items():
        if group in kubernetes_groups:
            continue  # Kubernetes' own kinds: no CRD; their plurals are the API's
        assert plurals.get((group, kind)) == plural, f"{group} {kind}: the upstream CRD names it otherwise (or none)"


# --- the setting -----------------------------------------------------------------------------------------------------

def settings_with(stack: str, value: str):
    raw, secret_keys = stack_config(stack)
    raw = {**raw, "mtls-mesh:previewIdentity": value}
    return load_settings(raw, stack, secret_keys=frozenset(secret_keys))


@pytest.mark.parametrize("value,expected", [
    ("serviceaccount:ci/mtls-mesh-preview", PreviewIdentity("serviceaccount", "mtls-mesh-preview", "ci")),
    ("user:arn:aws:iam::111122223333:role/mtls-mesh-preview",
     PreviewIdentity("user", "arn:aws:iam::111122223333:role/mtls-mesh-preview")),
    ("group:mtls-mesh-preview", DEFAULT_PREVIEW_IDENTITY),
])
def test_a_preview_identity_is_read(value, expected):
    assert settings_with("staging", value).preview_identity == expected


def test_the_default_is_a_group_nobody_is_in_until_you_put_the_preview_job_there():
    raw, secret_keys = stack_config("staging")
    raw.pop("mtls-mesh:previewIdentity", None)
    assert load_settings(raw, "staging", secret_keys=frozenset(secret_keys)).preview_identity == \
        PreviewIdentity("group", "mtls-mesh-preview")


@pytest.mark.parametrize("value,said", [
    ("group:system:authenticated", "Kubernetes' own users or groups"),
    ("group:system:serviceaccounts", "Kubernetes' own users or groups"),
    ("user:system:serviceaccount:ci:preview", "Kubernetes' own users or groups"),
    ("group:system:masters", "Kubernetes' own users or groups"),
    ("mtls-mesh-preview", "is not serviceaccount:<namespace>/<name>"),
    ("serviceaccount:ci", "is not serviceaccount:<namespace>/<name>"),
    ("group:it's", "is not serviceaccount:<namespace>/<name>"),
    ("user:", "is not serviceaccount:<namespace>/<name>"),
    ("", "is not serviceaccount:<namespace>/<name>"),
])
def test_a_bad_preview_identity_is_one_error_under_its_key(value, said):
    with pytest.raises(SettingsError) as caught:
        settings_with("staging", value)
    assert [p.where for p in caught.value.problems] == ["mtls-mesh:previewIdentity"]
    assert said in str(caught.value)
