"""Every object the program emits, checked against the real schemas: CRDs from ../shared/upstream, Kubernetes core kinds
with kubernetes-validate (strict). The checker itself is shown to catch what it claims to catch."""

from __future__ import annotations


from conformance import describe, is_core, validate_object


def test_every_emitted_object_conforms(each_stack, needs_shared):
    failures = {describe(o): errors for o in each_stack.objects() if (errors := validate_object(o))}
    assert not failures, failures


def test_core_objects_conform_even_without_shared(each_stack):
    failures = {describe(o): errors for o in each_stack.objects() if is_core(o) and (errors := validate_object(o))}
    assert not failures, failures


SERVER = {
    "apiVersion": "policy.linkerd.io/v1beta3", "kind": "Server",
    "metadata": {"name": "billing-grpc", "namespace": "payments"},
    "spec": {"podSelector": {"matchLabels": {"app": "billing"}}, "port": "grpc", "proxyProtocol": "gRPC"},
}


def test_a_valid_custom_resource_passes(needs_shared):
    assert validate_object(SERVER) == []


def test_checker_catches_a_misspelled_custom_resource_field(needs_shared):
    bad = {**SERVER, "spec": {**SERVER["spec"], "proxyProtocl": "gRPC"}}
    assert any(".spec.proxyProtocl: field not in the Server schema" in e for e in validate_object(bad))


def test_checker_catches_a_wrong_type_and_a_missing_required_field(needs_shared):
    bad = {**SERVER, "spec": {"port": ["grpc"], "proxyProtocol": "gRPC"}}
    errors = validate_object(bad)
    assert any(e.startswith("spec.port") for e in errors), errors


def test_checker_catches_bad_metadata_on_a_custom_resource(needs_shared):
    bad = {**SERVER, "metadata": {"name": "billing-grpc", "labels": {"tier": 3}}}
    assert validate_object(bad), "a non-string label value must be rejected"


def test_checker_knows_no_unknown_api(needs_shared):
    assert validate_object({**SERVER, "apiVersion": "policy.linkerd.io/v9"}) == \
        ["no served upstream CRD for policy.linkerd.io/v9 Server"]


def test_checker_catches_an_unknown_field_on_a_core_kind():
    bad = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web", "anotations": {}}}
    assert validate_object(bad)
    assert validate_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}) == []
