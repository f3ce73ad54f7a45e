"""Wiring shared by every component: explicit providers, parents, type tokens, and stack files that build."""

from __future__ import annotations

import re

from harness import STACKS


def test_the_three_environments_have_stack_files():
    assert {"dev", "staging", "prod"} <= set(STACKS)


def test_every_stack_file_builds_and_exports_its_environment(each_stack):
    assert each_stack.exports["environment"] == each_stack.config["mtls-mesh:environment"]
    assert each_stack.kubernetes(), "a stack that registers nothing on the cluster is not a mesh"


def test_every_kubernetes_resource_uses_the_explicit_provider(each_stack):
    providers = each_stack.of_type("pulumi:providers:kubernetes")
    assert len(providers) == 1
    explicit = f"{providers[0].urn}::{providers[0].name}-id"
    assert providers[0].inputs["context"] == each_stack.config["mtls-mesh:kubeContext"]
    for resource in each_stack.kubernetes():
        assert resource.provider == explicit, f"{resource.type} {resource.name} uses {resource.provider or 'the default provider'}"


def test_components_use_project_type_tokens_and_parent_their_children(each_stack):
    components = [r for r in each_stack.registrations if not r.custom]
    assert components
    own_components = {c.urn for c in components if c.type != "kubernetes:yaml/v2:ConfigGroup"}
    for component in components:
        if component.type == "kubernetes:yaml/v2:ConfigGroup":
            assert component.parent in own_components, f"ConfigGroup {component.name} is not inside a component"
        else:
            assert re.fullmatch(r"mtls-mesh:[a-z_]+:[A-Z][A-Za-z]+", component.type), component.type
    component_urns = {c.urn for c in components}
    for resource in each_stack.kubernetes():
        assert resource.parent in component_urns, f"{resource.name} is not inside a component"
