"""The project's import graph, read from the source: no import circle anywhere, and the modules that read and compile
the settings import no Pulumi, directly or through anything they import (issue 23).

Every `import` counts, at module level or inside a function: a function-level import is still a dependency, only a
later one. Only the project's own modules are nodes; a third-party import is an edge to its top-level package name.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from harness import PROJECT_DIR

PACKAGES = ("read", "plan", "components", "discover", "policy", "deploy", "benchmarks")
# The layers, in the order data flows: each may import its own package and the layers before it, never one after it.
# components/ (registration, the only one that imports Pulumi) and the tools that check a cluster sit on top.
LAYERS = {"read": {"read"}, "plan": {"read", "plan"}, "discover": {"read", "plan", "discover"}}


def pulumi_free_modules() -> list[str]:
    """Read, compile and check-a-cluster: every module outside components/ that the program or discover runs."""
    return [m for m in module_files() if m.split(".")[0] in LAYERS]


def module_files() -> dict[str, Path]:
    files = {"__main__": PROJECT_DIR / "__main__.py"}
    for package in PACKAGES:
        for path in sorted((PROJECT_DIR / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """What a module imports: project modules by full name, anything else by its top-level package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if name.startswith("policy"):  # the pack runs as a project of its own, with policy/ on its path
        modules = modules | {m.removeprefix("policy.") for m in modules if m.startswith("policy.")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name` imports the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            if name.startswith("policy") and f"policy.{target}" in modules:
                target = f"policy.{target}"
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            found.add(target if target in modules else target.split(".")[0])
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    modules = set(files)
    return {name: imports_of(name, path, modules) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, as the modules along it (first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Everything `start` imports, directly or not: target -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for target in graph.get(node, ()):
            if target not in seen:
                seen[target] = node
                todo.append(target)
    return seen


def test_the_project_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c", "yaml"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "read.errors" in graph["read.settings"]
    assert "pulumi" in graph["components.runtime"]  # imported at module level and again inside a function
    assert "plan.mesh" in graph["__main__"]


def test_reading_and_compiling_the_settings_imports_no_pulumi():
    """Read and compile import no Pulumi; only registration does (which may import them)."""
    graph = import_graph()
    modules = pulumi_free_modules()
    assert {"read.settings", "plan.mesh", "plan.linkerd.authorization", "discover.traffic"} <= set(modules)
    for module in modules:
        seen = reachable(graph, module)
        for package in ("pulumi", "pulumi_kubernetes", "pulumi_tls", "pulumi_vault", "pulumi_policy"):
            if package in seen:
                chain = [package]
                while chain[-1] != module:
                    chain.append(seen[chain[-1]])
                raise AssertionError(f"{module} imports {package}: " + " <- ".join(chain))


def test_the_compile_step_runs_without_pulumi_installed(tmp_path):
    """Not only by the import graph: a fresh interpreter that cannot import pulumi compiles the dev stack."""
    import subprocess

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for package in ("pulumi", "pulumi_kubernetes", "pulumi_tls", "pulumi_vault"):
        (blocker / package).mkdir()
        (blocker / package / "__init__.py").write_text(f"raise ImportError('{package} is not for the compile step')\n")
    script = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
              "from read.stack_files import read_stack_file, stack_file\n"
              "from read.settings import load_settings\n"
              "from plan.mesh import compile_mesh\n"
              "config, secret_keys = read_stack_file(stack_file('dev'))\n"
              "plan = compile_mesh(load_settings(config, 'dev', secret_keys=secret_keys))\n"
              "print(len(plan.objects()))\n")
    done = subprocess.run([sys.executable, "-c", script, str(blocker), str(PROJECT_DIR)], capture_output=True,
                          text=True, cwd=PROJECT_DIR)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 20


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a project module against the flow: a read/ module importing plan/, a plan/ one importing
    components/ (or discover/)."""
    project = {name.split(".")[0] for name in graph}
    found = []
    for module, targets in sorted(graph.items()):
        allowed = LAYERS.get(module.split(".")[0])
        for target in sorted(targets):
            if allowed is not None and target.split(".")[0] in project - allowed:
                found.append(f"{module} imports {target}")
    return found


def test_each_layer_imports_only_the_layers_before_it():
    """read/ -> plan/ -> components/: the folders are the architecture, so an import against the flow fails here."""
    assert layer_violations(import_graph()) == []


def test_the_layer_check_can_fail():
    graph = {"read.graph": {"plan.mesh", "yaml"}, "plan.mesh": {"read.graph", "components.k8s"}, "components.k8s": set()}
    assert layer_violations(graph) == ["plan.mesh imports components.k8s", "read.graph imports plan.mesh"]


def test_component_resources_live_in_components():
    """A ComponentResource (a class whose bases name pulumi.ComponentResource) only in components/."""
    for name, path in module_files().items():
        if name.startswith("components.") or name == "components":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                assert "pulumi.ComponentResource" not in bases, f"{name}.{node.name} registers: move it to components/"


# --- one graph, two meshes (issue 32, item 7) ---------------------------------------------------------------------
# A mesh's own objects and annotations, as the program spells them: label and annotation keys under the mesh's domain
# (linkerd.io/inject, sidecar.istio.io/inject, istio.io/dry-run) and its API groups (policy.linkerd.io,
# security.istio.io, networking.istio.io). URLs are not names of objects (a chart repository's host is a setting's
# default), so they are read past.
MESH_NAMES = {
    "linkerd": re.compile(r"(?<![\w.-])linkerd\.io/|[\w-]+\.linkerd\.io\b"),
    "istio": re.compile(r"(?<![\w.-])istio\.io/|[\w-]+\.istio\.io\b"),
}
_URL = re.compile(r"https?://\S+")
# Where each mesh may be named: its plan package and its component, and the few modules below, each with its reason.
MESH_HOMES = {
    "linkerd": ("plan/linkerd/", "components/linkerd.py"),
    "istio": ("plan/istio/", "components/istio.py", "discover/istio_traffic.py"),
}
MESH_NAMES_ALLOWED = {
    "read/meshes.py": "the graph is checked once, in read/, before any plan exists, and read/ cannot import plan/: the "
                      "facts each mesh's graph checks need (its injector's label prefix) are one table per mesh there",
    "policy/": "the CrossGuard pack runs as a project of its own, without plan/ on its path, and checks the registered "
               "resources by their Pulumi type, which names the mesh's API group",
    "deploy/": "the Operator shards' RBAC names the API groups a shard's stack writes (deploy/operator_shards.py), "
               "outside the program",
}


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module but docstrings (which may cite a mesh's names as documentation)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def mesh_name_violations(files: dict[str, Path]) -> list[str]:
    """Each string constant naming a mesh's objects or annotations outside that mesh's homes and the allowed modules."""
    found = []
    for path in sorted(files.values()):
        relative = path.relative_to(PROJECT_DIR).as_posix()
        for lineno, value in _string_constants(path):
            text = _URL.sub("", value)
            for mesh, pattern in MESH_NAMES.items():
                homes = (*MESH_HOMES[mesh], *MESH_NAMES_ALLOWED)
                match = pattern.search(text)
                if match and not relative.startswith(homes):
                    found.append(f"{relative}:{lineno} names {mesh}'s {match.group(0)!r}")
    return found


def test_only_each_mesh_package_names_its_objects_and_annotations():
    """Nothing outside plan/<mesh>/, components/<mesh>.py (and the modules MESH_NAMES_ALLOWED gives a reason for)
    spells a mesh's API groups, labels or annotations: the shared steps are the same for both meshes."""
    assert mesh_name_violations(module_files()) == []


def test_the_mesh_name_check_can_fail(tmp_path, monkeypatch):
    """A planted violation in a shared module (and one in each mesh's own package, allowed) is found."""
    import harness

    (tmp_path / "plan" / "linkerd").mkdir(parents=True)
    (tmp_path / "plan" / "istio").mkdir(parents=True)
    (tmp_path / "read").mkdir()
    files = {
        "plan.edges": tmp_path / "plan" / "edges.py",
        "plan.linkerd.namespaces": tmp_path / "plan" / "linkerd" / "namespaces.py",
        "plan.istio.authorization": tmp_path / "plan" / "istio" / "authorization.py",
        "read.graph": tmp_path / "read" / "graph.py",
    }
    files["plan.edges"].write_text('"""Cites linkerd.io/inject in a docstring: allowed."""\n'
                                   'INJECT = "linkerd.io/inject"\nGROUP = "security.istio.io"\n'
                                   'REPO = "https://helm.linkerd.io/edge"\n')
    files["plan.linkerd.namespaces"].write_text('INJECT = "linkerd.io/inject"\n')
    files["plan.istio.authorization"].write_text('DRY_RUN = "istio.io/dry-run"\nPOLICY = "policy.linkerd.io"\n')
    files["read.graph"].write_text('LABEL = f"{1}config.linkerd.io/opaque-ports"\n')
    monkeypatch.setattr(sys.modules[__name__], "PROJECT_DIR", tmp_path)
    assert harness.PROJECT_DIR != tmp_path
    assert mesh_name_violations(files) == [
        "plan/edges.py:2 names linkerd's 'linkerd.io/'",
        "plan/edges.py:3 names istio's 'security.istio.io'",
        "plan/istio/authorization.py:2 names linkerd's 'policy.linkerd.io'",
        "read/graph.py:1 names linkerd's 'config.linkerd.io'",
    ]


def mesh_crossings(graph: dict[str, set[str]]) -> list[str]:
    """Each import from one mesh's package or component into the other mesh's."""
    own = {"linkerd": ("plan.linkerd", "components.linkerd"), "istio": ("plan.istio", "components.istio")}

    def of(module: str) -> str | None:
        return next((mesh for mesh, roots in own.items()
                     if any(module == root or module.startswith(root + ".") for root in roots)), None)

    return [f"{module} imports {target}" for module, targets in sorted(graph.items()) for target in sorted(targets)
            if of(module) and of(target) and of(module) != of(target)]


def test_neither_mesh_package_imports_the_other():
    """plan/linkerd/ (and components/linkerd.py) and plan/istio/ (and components/istio.py) share what they share
    through plan/'s shared modules, never through each other."""
    assert mesh_crossings(import_graph()) == []


def test_the_crossing_check_can_fail():
    graph = {"plan.istio.alerts": {"plan.linkerd.alerts", "plan.alerts"}, "components.istio": {"plan.linkerd"},
             "plan.linkerd.alerts": {"plan.alerts"}, "components.linkerd": {"plan.linkerd.control_plane"}}
    assert mesh_crossings(graph) == ["components.istio imports plan.linkerd",
                                     "plan.istio.alerts imports plan.linkerd.alerts"]
