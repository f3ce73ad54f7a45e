"""A service graph split per team (serviceGraph naming a directory, read/fragments.py): the example directory is the
repository's graph and compiles to exactly its plan; the team boundaries hold (a namespace or service key in one file
only, a service in its own file's namespace); every problem names the file and the path inside it; the graph's limits
hold for the files together; and a stack reads a directory as it reads a file."""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

from harness import PROJECT_DIR, STACKS, stack_config, stack_plan
from plan.mesh import compile_mesh
from read import fragments, graph_format, inputs
from read.errors import Problems, SettingsError
from read.fragments import load_service_graph
from read.settings import load_settings

EXAMPLE_DIR = PROJECT_DIR / "examples" / "services.d"
SINGLE = PROJECT_DIR / "services.yaml"

# A small graph of two teams: b's service allows a's caller (a reference across files), and a's allows b's.
A = {"owners": ["@org/team-a"], "namespaces": {"web": {}},
     "services": {"front": {"namespace": "web", "ports": [{"name": "http", "port": 8080, "protocol": "HTTP/1"}],
                            "allow": ["pay"]}}}
B = {"owners": ["@org/team-b", "b@example.com"], "shard": "pay",
     "namespaces": {"payments": {}, "ledger": {"shard": "books"}},
     "services": {"pay": {"namespace": "payments", "ports": [{"name": "grpc", "port": 9090, "protocol": "gRPC"}],
                          "allow": ["front"]}}}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # the reader refuses anchors: write a value shared by two places out twice
        return True


def write(directory, files: dict) -> None:
    directory.mkdir(exist_ok=True)
    for name, document in files.items():
        (directory / name).write_text(document if isinstance(document, str) else yaml.dump(document, Dumper=_Dumper))


def load(tmp_path, files: dict, display: str = "services.d/"):
    directory = tmp_path / "services.d"
    write(directory, files)
    problems = Problems()
    graph = load_service_graph(directory, display, problems, tmp_path)
    assert (graph is None) == bool(problems.items), "a graph is returned exactly when there are no problems"
    return graph, [str(p) for p in problems.items]


def edit(document: dict, change) -> dict:
    copied = yaml.safe_load(yaml.safe_dump(document))
    change(copied)
    return copied


# ---- the example is the repository's graph ----------------------------------------------------------------------

def _example_config(stack: str) -> dict[str, str]:
    config, _ = stack_config(stack)
    return {**config, "mtls-mesh:serviceGraph": "examples/services.d/"}


# A shard's stack file names only its platform and shard (its plan is its platform's): the stacks with settings.
SETTINGS_STACKS = [stack for stack in STACKS if not stack_config(stack)[0].get("mtls-mesh:platformStack")]


@pytest.mark.parametrize("stack", SETTINGS_STACKS)
def test_the_example_directory_compiles_to_the_plan_of_services_yaml(stack):
    """examples/services.d/ is services.yaml split in three team files: the same graph (the fragments' shards aside,
    which a single stack ignores) and exactly the same plan, every object and both matrices."""
    config, secret_keys = stack_config(stack)
    single = load_settings(config, stack, secret_keys=frozenset(secret_keys))
    split = load_settings(_example_config(stack), stack, secret_keys=frozenset(secret_keys))
    assert split.graph.services == single.graph.services
    plain = {name: dataclasses.replace(ns, shard=None) for name, ns in split.graph.namespaces.items()}
    assert plain == {name: dataclasses.replace(ns, shard=None) for name, ns in single.graph.namespaces.items()}
    assert split.graph.edges() == single.graph.edges()
    assert compile_mesh(split) == compile_mesh(single)


def test_the_example_directory_has_three_owned_files_and_the_shards_of_the_design():
    graph, problems = load_service_graph(EXAMPLE_DIR, "examples/services.d/", Problems(), PROJECT_DIR), None
    assert [f.project_path for f in graph.fragments] == [
        "examples/services.d/data.yaml", "examples/services.d/payments.yaml", "examples/services.d/storefront.yaml"]
    assert all(f.owners for f in graph.fragments)
    # payments.yaml sets the file's default shard; storefront.yaml sets web's own, and leaves ingress unsharded;
    # data.yaml gives data to the payments shard (who applies a namespace and who owns its file are separate).
    assert {n: ns.shard for n, ns in graph.namespaces.items() if ns.shard} == {
        "payments": "payments", "web": "storefront", "data": "payments"}
    # Cross-file grants: postgres (data.yaml) allows billing (payments.yaml) and catalog (storefront.yaml).
    assert {("billing", "postgres"), ("catalog", "postgres"), ("checkout", "billing")} <= \
        {(caller, callee) for caller, callee, _ in graph.edges()}


def test_a_plan_compiled_from_a_directory_differs_when_a_fragment_does(tmp_path):
    """The comparison above can fail: one grant fewer in a copy of the example changes the plan."""
    for path in EXAMPLE_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    data = tmp_path / "data.yaml"
    data.write_text(data.read_text().replace("allow: [billing, ledger, catalog]", "allow: [billing, ledger]"))
    config = {**_example_config("dev"), "mtls-mesh:serviceGraph": str(tmp_path),
              "mtls-mesh:allowFilesOutsideProject": "true"}
    assert compile_mesh(load_settings(config, "dev")) != stack_plan("dev")


# ---- the team boundaries and the fragment's own fields ----------------------------------------------------------

BAD_FRAGMENTS = [
    # A namespace, a service key: one file each.
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d["namespaces"].update(web={}))},
     "services.d/b.yaml: namespaces.web", "is also declared in services.d/a.yaml"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d["services"].update(front=d["services"]["pay"]))},
     "services.d/b.yaml: services.front", "is also declared in services.d/a.yaml"),
    # A service in another team's namespace, whichever file is read first.
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d["services"]["pay"].update(namespace="web"))},
     "services.d/b.yaml: services.pay.namespace", "namespace 'web' is declared in services.d/a.yaml, not in this file"),
    ({"a.yaml": edit(A, lambda d: d["services"]["front"].update(namespace="payments")), "b.yaml": B},
     "services.d/a.yaml: services.front.namespace",
     "namespace 'payments' is declared in services.d/b.yaml, not in this file"),
    # The graph's own checks, across files, name the file that declares the path.
    ({"a.yaml": edit(A, lambda d: d["services"]["front"].update(allow=["pya"])), "b.yaml": B},
     "services.d/a.yaml: services.front.allow[0]", "unknown caller 'pya'. Did you mean 'pay'?"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d["services"]["pay"].update(namespace="pay"))},
     "services.d/b.yaml: services.pay.namespace", "is not declared under 'namespaces'"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d["namespaces"].update(ledger={"skipInboundPorts": [0]}))},
     "services.d/b.yaml: namespaces.ledger.skipInboundPorts[0]", "must be a port number"),
    # owners
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.pop("owners"))}, "services.d/b.yaml: owners", "is missing"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=[]))}, "services.d/b.yaml: owners",
     "must be a non-empty list"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners="@org/team-b"))}, "services.d/b.yaml: owners",
     "must be a non-empty list of code owners, not a string"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=["org/team-b"]))}, "services.d/b.yaml: owners[0]",
     "is not a code owner (did you mean '@org/team-b'?)"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=["@org/team b"]))}, "services.d/b.yaml: owners[0]",
     "is not a code owner"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=["@-org"]))}, "services.d/b.yaml: owners[0]",
     "is not a code owner"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=["@org/team-b", "@org/team-b"]))},
     "services.d/b.yaml: owners[1]", "is listed twice"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owners=[f"@u{i}" for i in range(graph_format.MAX_OWNERS + 1)]))},
     "services.d/b.yaml: owners", "more than the limit of 20"),
    # shard, namespaces, services, other keys
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(shard="Pay"))}, "services.d/b.yaml: shard",
     "is not a valid Kubernetes name"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(shard="p" * 21))}, "services.d/b.yaml: shard",
     "longer than 20 characters"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.pop("namespaces"))}, "services.d/b.yaml: namespaces", "is missing"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(namespaces={}, services=None))},
     "services.d/b.yaml: namespaces", "is empty"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(services=["pay"]))}, "services.d/b.yaml: services",
     "must be a mapping of service name to service"),
    ({"a.yaml": A, "b.yaml": edit(B, lambda d: d.update(owner=["@org/x"]))}, "services.d/b.yaml: owner",
     "is not a known field. Did you mean 'owners'?"),
    ({"a.yaml": A, "b.yaml": ["not", "a", "mapping"]}, "services.d/b.yaml", "must be a mapping"),
    ({"a.yaml": A, "b.yaml": {"password": "hunter2"}}, "services.d/b.yaml", "is not a service graph fragment"),
    ({"a.yaml": A, "b.yaml": "owners: [@org/team-b]\n"}, "services.d/b.yaml", "Quote each owner"),
]


@pytest.mark.parametrize("files,where,words", BAD_FRAGMENTS)
def test_a_bad_fragment_is_refused_naming_the_file_and_path(tmp_path, files, where, words):
    _, problems = load(tmp_path, files)
    assert any(p.startswith(f"{where}: ") and words in p for p in problems), problems


def test_the_two_teams_load_as_one_graph_with_the_default_shard(tmp_path):
    graph, problems = load(tmp_path, {"a.yaml": A, "b.yaml": B})
    assert not problems
    assert {n: ns.shard for n, ns in graph.namespaces.items()} == {"web": None, "payments": "pay", "ledger": "books"}
    assert {(c, s) for c, s, _ in graph.edges()} == {("pay", "front"), ("front", "pay")}
    assert [(f.file, f.project_path, f.owners) for f in graph.fragments] == [
        ("services.d/a.yaml", "services.d/a.yaml", ("@org/team-a",)),
        ("services.d/b.yaml", "services.d/b.yaml", ("@org/team-b", "b@example.com"))]
    assert graph.where("services.pay.allow[0]") == "services.d/b.yaml: services.pay.allow[0]"
    assert graph.locate(["services.front", "services.pay"]) == \
        "services.d/a.yaml: services.front and services.d/b.yaml: services.pay"


def test_every_problem_of_every_file_is_one_settings_error(tmp_path):
    """Problems of several files and of the merged graph, all at once, before anything is compiled."""
    write(tmp_path / "services.d", {
        "a.yaml": edit(A, lambda d: (d.update(owners=[]), d["services"]["front"].update(allow=["nobody"]))),
        "b.yaml": edit(B, lambda d: (d["namespaces"].update(web={}), d["services"]["pay"].update(namespace="web")))})
    config, _ = stack_config("dev")
    config.update({"mtls-mesh:serviceGraph": str(tmp_path / "services.d"), "mtls-mesh:allowFilesOutsideProject": "true"})
    with pytest.raises(SettingsError) as raised:
        load_settings(config, "dev")
    shown = str(raised.value)
    d = tmp_path / "services.d"
    for expected in (f"{d}/a.yaml: owners", f"{d}/a.yaml: services.front.allow[0]", f"{d}/b.yaml: namespaces.web",
                     f"{d}/b.yaml: services.pay.namespace"):
        assert expected in shown, shown


def test_a_problem_found_after_reading_names_the_file(tmp_path):
    """Problems the settings (an egress CIDR inside the cluster) and the compile step (a derived name used twice)
    report on the graph name the fragment too."""
    directory = tmp_path / "services.d"
    config, _ = stack_config("staging")
    config.update({"mtls-mesh:serviceGraph": str(directory), "mtls-mesh:allowFilesOutsideProject": "true"})
    b = edit(B, lambda d: d["services"]["pay"].update(egress=[{"name": "db", "cidrs": ["10.0.0.0/8"], "ports": [5432]}]))
    write(directory, {"a.yaml": A, "b.yaml": b})
    with pytest.raises(SettingsError) as raised:
        load_settings(config, "staging")
    assert f"{directory}/b.yaml: services.pay.egress[0].cidrs[0]" in str(raised.value), str(raised.value)
    # front-http's Server would be named like front's port http: the compile step's name check.
    a = edit(A, lambda d: d["services"].update({"front-http": {
        "namespace": "web", "ports": [{"name": "x", "port": 9000, "protocol": "HTTP/1"}]}}))
    write(directory, {"a.yaml": a, "b.yaml": B})
    with pytest.raises(SettingsError) as raised:
        compile_mesh(load_settings(config, "staging"))
    assert f"{directory}/a.yaml: services.front" in str(raised.value), str(raised.value)


# ---- the directory ----------------------------------------------------------------------------------------------

def test_only_yaml_files_are_fragments_and_surprises_are_refused(tmp_path):
    directory = tmp_path / "services.d"
    write(directory, {"a.yaml": A, "b.yaml": B, "README.md": "notes", ".gitkeep": "", ".b.yaml.swp": "x",
                      "c.yml": A, "d e.yaml": A})
    (directory / "teams").mkdir()
    os.symlink(directory / "a.yaml", directory / "e.yaml")
    problems = Problems()
    assert load_service_graph(directory, "services.d/", problems, tmp_path) is None
    found = {p.where: p.what for p in problems.items}
    assert set(found) == {"services.d/c.yml", "services.d/d e.yaml", "services.d/teams", "services.d/e.yaml"}, found
    assert "ends in .yml" in found["services.d/c.yml"] and "symbolic link" in found["services.d/e.yaml"]
    assert "not recursive" in found["services.d/teams"] or "subdirectories" in found["services.d/teams"]
    # Without the surprises, README.md and the hidden files are simply not read.
    for name in ("c.yml", "d e.yaml", "e.yaml"):
        (directory / name).unlink()
    (directory / "teams").rmdir()
    problems = Problems()
    assert load_service_graph(directory, "services.d/", problems, tmp_path) is not None, problems.items


def test_an_empty_directory_is_refused(tmp_path):
    (tmp_path / "services.d").mkdir()
    _, problems = load(tmp_path, {})
    assert problems == ["services.d/: holds no *.yaml fragment file. Add a file per team (docs/service-graph.md, "
                        "'Splitting the graph per team'), or point mtls-mesh:serviceGraph at a graph file such as services.yaml"]


def test_the_limits_hold_for_the_files_together(tmp_path, monkeypatch):
    files = {"a.yaml": A, "b.yaml": B}
    monkeypatch.setattr(graph_format, "MAX_GRAPH_FILES", 1)
    _, problems = load(tmp_path, files)
    assert problems and "2 fragment files, more than the limit of 1" in problems[0]
    monkeypatch.undo()
    # Bytes: each file alone is under the limit, the two together are not.
    sizes = [len((tmp_path / "services.d" / name).read_bytes()) for name in files]
    monkeypatch.setattr(fragments, "MAX_GRAPH_BYTES", max(sizes) + 10)
    assert sum(sizes) > max(sizes) + 10
    _, problems = load(tmp_path, files)
    assert any(p.startswith("services.d/b.yaml: ") and "fragment files may hold together" in p for p in problems), problems
    monkeypatch.undo()
    # YAML values: counted across the files.
    values_a = inputs._check_structure(yaml.safe_dump(A))
    monkeypatch.setattr(inputs, "MAX_NODES", values_a + 5)
    _, problems = load(tmp_path, files)
    assert any(p.startswith("services.d/b.yaml: ") and "with the graph's files read before it" in p
               for p in problems), problems
    # The graph's own limits hold for the merged graph (namespaces of both files together).
    monkeypatch.undo()
    from read import graph as graph_module
    monkeypatch.setattr(graph_module, "MAX_NAMESPACES", 2)
    _, problems = load(tmp_path, files)
    assert any(p.startswith("services.d/: namespaces: lists 3 namespaces") for p in problems), problems


def test_a_stack_reads_the_directory_its_setting_names_inside_the_project(tmp_path):
    """serviceGraph is relative to the project, like a file; a directory outside it is refused like a file."""
    config, secret_keys = stack_config("dev")
    settings = load_settings({**config, "mtls-mesh:serviceGraph": "examples/services.d"}, "dev",
                             secret_keys=frozenset(secret_keys))
    assert settings.graph.source == "examples/services.d" and len(settings.graph.fragments) == 3
    write(tmp_path / "services.d", {"a.yaml": A, "b.yaml": B})
    with pytest.raises(SettingsError, match="outside the project directory"):
        load_settings({**config, "mtls-mesh:serviceGraph": str(tmp_path / "services.d"),
                       "mtls-mesh:allowFilesOutsideProject": "false"}, "dev", secret_keys=frozenset(secret_keys))
