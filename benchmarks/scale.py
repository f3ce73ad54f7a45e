"""Benchmark: the program's own cost (read + compile, no Pulumi) on meshes of 3,000 to 50,000 services across shards.

    venv/bin/python -m benchmarks.scale                      # 3,000, 10,000, 20,000 and 50,000 services, median of 3
    venv/bin/python -m benchmarks.scale 10000 20000 --runs 1 # chosen sizes and repetitions
    venv/bin/python -m benchmarks.scale --namespaces 50      # a fixed number of namespaces (benchmarks.run's graphs)
    venv/bin/python -m benchmarks.scale --mesh istio         # the same with `mesh: istio`

The graphs are benchmarks/synthetic.py's with one namespace per 100 services (30 to 500) spread round robin over at
most 50 shards (`shard:` on each namespace). Each size's graph file is written once; each run is a fresh process that
reads it as the stack `staging` (every namespace in `deny`) and compiles it: `read.settings.load_settings` (the YAML,
the graph's validation) and `plan.mesh.compile_mesh` (every object, the access and egress matrices, the alerts, the
collision and etcd-size checks), then what a shard stack adds on top (plan/shards.py: its scope, its parts of both
matrices, every shard's contract digest). The table shows the median of the runs: wall and CPU seconds of that work
(CPU is steadier on a shared machine), the peak RSS of the whole child process (imports included), and the growth of
the CPU time from 10,000 to 20,000 services (issue 24's goal: at most 2.2x; linear is 2.0) and from 20,000 to 50,000
(linear is 2.5).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import child_process, median, mesh_config, mesh_option, runs_option, stack_config

SIZES = (3_000, 10_000, 20_000, 50_000)
SERVICES_PER_NAMESPACE = 100
SHARDS = 50


def graph_file(services: int, directory: Path, namespaces: int | None = None) -> Path:
    import yaml

    from benchmarks.synthetic import synthetic_graph

    path = directory / f"graph-{services}.yaml"
    if not path.exists():
        namespaces = namespaces or max(1, services // SERVICES_PER_NAMESPACE)
        path.write_text(yaml.safe_dump(synthetic_graph(services, namespaces=namespaces,
                                                       shards=min(SHARDS, namespaces))))
    return path


def child(path: str, mesh: str = "linkerd") -> dict:
    from plan.mesh import compile_mesh
    from plan.shards import contract_digests, scoped_matrix, shards_of, stack_scope
    from read.settings import load_settings

    config = stack_config("staging")
    config.update({"mtls-mesh:serviceGraph": path, "mtls-mesh:inboundPolicyOverrides": "[]",
                   "mtls-mesh:allowFilesOutsideProject": "true"})  # the synthetic graph is in a temporary directory
    config.update(mesh_config(mesh))
    wall, cpu = time.perf_counter(), time.process_time()
    settings = load_settings(config, "staging")
    read_cpu = time.process_time() - cpu
    plan = compile_mesh(settings)
    shard = next(iter(shards_of(settings.graph)))
    scope = stack_scope(settings.graph, True, shard)
    scoped = (len(scoped_matrix(plan.access_matrix, scope, settings.graph))
              + len(scoped_matrix(plan.egress_matrix, scope, settings.graph)))
    digests = contract_digests(plan, settings.graph)
    return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "read_cpu": read_cpu,
            "mesh": plan.mesh, "objects": len(plan.objects()), "namespaces": len(plan.namespaces), "shards": len(digests),
            "shard_entries": scoped}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        result = child(argv[1], *argv[2:3])
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    runs, argv = runs_option(argv)
    mesh, argv = mesh_option(argv)
    namespaces = None
    if "--namespaces" in argv:
        at = argv.index("--namespaces")
        namespaces, argv = int(argv[at + 1]), argv[:at] + argv[at + 2:]
    mesh = "linkerd"
    if "--mesh" in argv:
        at = argv.index("--mesh")
        mesh, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    sizes = [int(a) for a in argv] or list(SIZES)
    print(f"mesh {mesh}, python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, median of {runs} runs", flush=True)
    print(f"{'services':>8} {'namespaces':>10} {'shards':>6} {'objects':>8} {'wall s':>7} {'CPU s':>6} "
          f"{'read CPU s':>10} {'peak MiB':>8}")
    cpu_of: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        for size in sizes:
            path = graph_file(size, Path(directory), namespaces)
            results = [child_process("benchmarks.scale", str(path), mesh) for _ in range(runs)]
            first = results[0]
            cpu_of[size] = median([r["cpu"] for r in results])
            print(f"{size:>8,} {first['namespaces']:>10,} {first['shards']:>6} {first['objects']:>8,} "
                  f"{median([r['seconds'] for r in results]):>7.2f} {cpu_of[size]:>6.2f} "
                  f"{median([r['read_cpu'] for r in results]):>10.2f} {median([r['peak_mib'] for r in results]):>8.0f}",
                  flush=True)
    for low, high, linear in ((10_000, 20_000, 2.0), (20_000, 50_000, 2.5)):
        if low in cpu_of and high in cpu_of:
            print(f"growth of CPU s {low:,} -> {high:,} services: {cpu_of[high] / cpu_of[low]:.2f}x (linear {linear}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
