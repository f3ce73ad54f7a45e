"""Benchmark: what choosing a pull request's stacks costs (deploy/changed_stacks.py), on a synthetic sharded mesh.

    venv/bin/python -m benchmarks.changed_stacks                 # 3,000 services
    venv/bin/python -m benchmarks.changed_stacks 3000 10000      # chosen sizes

Per size: two copies of the project whose prod stack is a platform over the synthetic graph (50 namespaces, five per
shard: ten shards), one with a service's allow-list extended within its namespace. Prints the wall seconds and the
compiles of `choose` for that change, and for an unchanged pull request (base = head: one compile, shared).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from benchmarks.synthetic import synthetic_graph  # noqa: E402
from deploy import changed_stacks  # noqa: E402

COPIED = ("Pulumi.yaml", "__main__.py", "requirements.txt", "services.yaml", "read", "plan", "components", "policy",
          "stacks")


def project(root: Path, services: int) -> Path:
    root.mkdir()
    for name in COPIED:
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "venv"))
        else:
            shutil.copy2(source, root / name)
    graph = synthetic_graph(services)
    for index, namespace in enumerate(graph["namespaces"]):
        graph["namespaces"][namespace] = {"shard": f"team{index // 5}"}
    (root / "services.yaml").write_text(yaml.safe_dump(graph))
    stack = root / "stacks" / "Pulumi.prod.yaml"
    document = yaml.safe_load(stack.read_text())
    document["config"].update({"mtls-mesh:policyShards": True, "mtls-mesh:adoptNamespaces": [],
                               "mtls-mesh:inboundPolicyOverrides": []})
    stack.write_text(yaml.safe_dump(document))
    for shard in sorted({n["shard"] for n in graph["namespaces"].values()}):
        (root / "stacks" / f"Pulumi.prod-{shard}.yaml").write_text(
            f"config:\n  mtls-mesh:platformStack: prod\n  mtls-mesh:shard: {shard}\n")
    return root


def one_allow_more(root: Path) -> None:
    path = root / "services.yaml"
    graph = yaml.safe_load(path.read_text())
    first = graph["services"]["svc-00000"]
    first["allow"].append(next(name for name, s in graph["services"].items() if s["namespace"] == first["namespace"]
                               and name != "svc-00000" and name not in first["allow"]))
    path.write_text(yaml.safe_dump(graph))


def measure(base: Path, head: Path) -> tuple[float, int, list[str]]:
    compiles = []
    original = changed_stacks.compile_mesh
    changed_stacks.compile_mesh = lambda settings: compiles.append(settings.stack) or original(settings)
    try:
        start = time.perf_counter()
        choices = changed_stacks.choose(base, head, ("dev", "staging"))
        return time.perf_counter() - start, len(compiles), [c.stack for c in choices if c.selected]
    finally:
        changed_stacks.compile_mesh = original


def main(sizes: list[int]) -> None:
    for services in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base = project(Path(tmp) / "base", services)
            head = Path(tmp) / "head"
            shutil.copytree(base, head)
            one_allow_more(head)
            seconds, compiles, chosen = measure(base, head)
            print(f"{services:,} services, 11 stacks, one allow-list entry more: {seconds:.2f} s, {compiles} compiles,"
                  f" chosen {chosen}")
            seconds, compiles, chosen = measure(base, base)
            print(f"{services:,} services, unchanged: {seconds:.2f} s, {compiles} compile, chosen {chosen}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [3000])
