"""Benchmark: the whole program under Pulumi's mocks on synthetic graphs of growing size, against the SDK's own floor.

    venv/bin/python -m benchmarks.run                    # 1,000, 3,000 and 10,000 services, median of 3 runs each
    venv/bin/python -m benchmarks.run 100 1000 --runs 5  # chosen sizes and repetitions
    venv/bin/python -m benchmarks.run --mesh istio       # the same with `mesh: istio`

For each size and run, two fresh processes: one runs `__main__.py` (stack `staging`, the synthetic graph, rollout
`deny`) and reports the resources it registered, the Kubernetes objects they carry (a ConfigGroup carries many) and its
wall seconds and peak RSS; the other registers as many bare resources, with no inputs, as the program emits
Kubernetes objects ("bare": what the SDK would cost to register each object as its own resource, at the very least).
The table shows the median of the runs; ratio = program / bare.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]
SIZES = (1000, 3000, 10000)


class CountingMocks:
    """Echo inputs back as outputs (plus the PEM stand-ins the program reads back), as the tests' mocks do; count the
    registrations and the Kubernetes objects they carry."""

    def __init__(self):
        self.count = 0
        self.objects = 0
        # The SDK calls the mocks from its executor's threads (pulumi/runtime/resource.py `run_in_executor`), and
        # `+=` on an attribute is no atomic step: without the lock a loaded machine lost thousands of objects from
        # the count (34,262 in two runs, 28,035 in a third, of one graph).
        self.lock = threading.Lock()

    def new_resource(self, args):
        from harness import computed_outputs

        if args.typ == "kubernetes:yaml/v2:ConfigGroup":
            objects = str(args.inputs.get("yaml", "")).count("---\n")
        elif args.typ.startswith("kubernetes:") and not args.typ.startswith(("kubernetes:helm.sh", "pulumi:")):
            objects = 1
        else:
            objects = 0
        with self.lock:
            self.count += 1
            self.objects += objects
        if args.typ == "pulumi:pulumi:StackReference":  # the program's own previous outputs: a first deployment
            return f"{args.name}-id", {"name": args.name, "outputs": {}, "secretOutputNames": []}
        return f"{args.name}-id", {**args.inputs, **computed_outputs(args.typ, args.name, args.inputs)}

    def call(self, args):
        return {}


def _run(program, stack: str, config: dict[str, str], mocks) -> float:
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    pulumi.runtime.set_all_config(config, [])
    pulumi.runtime.set_mocks(mocks, project="mtls-mesh", stack=stack, preview=False)
    started = time.perf_counter()
    _sync_await(run_pulumi_func(program))
    return time.perf_counter() - started


def stack_config(stack: str) -> dict[str, str]:
    """The stack's config as the Pulumi CLI hands it to the program (read/stack_files.py)."""
    from read.stack_files import read_stack_file

    return read_stack_file(PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml")[0]


MESHES = ("linkerd", "istio")


def mesh_config(mesh: str) -> dict[str, str]:
    """The stack config that selects the mesh. Staging turns linkerd-viz on, which Istio refuses (read/settings.py
    LINKERD_ONLY_SETTINGS), so an Istio run drops it as an Istio staging stack file would."""
    return {} if mesh == "linkerd" else {"mtls-mesh:mesh": mesh, "mtls-mesh:linkerdViz": "false"}


def mesh_option(argv: list[str]) -> tuple[str, list[str]]:
    """`--mesh linkerd|istio` (default linkerd) and the remaining arguments; shared by the benchmarks."""
    if "--mesh" not in argv:
        return "linkerd", argv
    at = argv.index("--mesh")
    mesh = argv[at + 1]
    if mesh not in MESHES:
        raise SystemExit(f"--mesh {mesh}: not one of {', '.join(MESHES)}")
    return mesh, argv[:at] + argv[at + 2:]


def child_program(services: int, mesh: str = "linkerd") -> dict:
    from benchmarks.synthetic import synthetic_graph

    graph_file = Path(tempfile.mkdtemp()) / "graph.yaml"
    graph = synthetic_graph(services)
    graph_file.write_text(yaml.safe_dump(graph))
    config = stack_config("staging")
    config.update({"mtls-mesh:serviceGraph": str(graph_file), "mtls-mesh:inboundPolicyOverrides": "[]",
                   "mtls-mesh:allowFilesOutsideProject": "true"})  # the synthetic graph is in a temporary directory
    config.update(mesh_config(mesh))
    mocks = CountingMocks()
    cpu = time.process_time()
    seconds = _run(lambda: runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__"), "staging", config,
                   mocks)
    cpu = time.process_time() - cpu
    ports = sum(len(s["ports"]) for s in graph["services"].values())
    return {"registered": mocks.count, "objects": mocks.objects, "seconds": seconds, "cpu": cpu, "ports": ports}


def child_floor(count: int) -> dict:
    import pulumi

    def program():
        for index in range(count):
            pulumi.CustomResource("bench:index:Bare", f"bare-{index}", {})

    mocks = CountingMocks()
    seconds = _run(program, "floor", {}, mocks)
    return {"registered": mocks.count, "seconds": seconds}


def runs_option(argv: list[str], default: int = 3) -> tuple[int, list[str]]:
    """`--runs N` (how many fresh processes per size or case) and the remaining arguments; shared by the benchmarks."""
    if "--runs" not in argv:
        return default, argv
    at = argv.index("--runs")
    return int(argv[at + 1]), argv[:at] + argv[at + 2:]


def child_process(module: str, *args: str) -> dict:
    """Run `python -m <module> --child <args>` in a fresh process (under Pulumi's test mode) and return the JSON its last
    line prints; a failed child raises SystemExit with its stderr's tail."""
    completed = subprocess.run([sys.executable, "-m", module, "--child", *args], capture_output=True, text=True,
                               cwd=PROJECT_DIR, env={**os.environ, "PULUMI_TEST_MODE": "true"})
    if completed.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(mode: str, size: int | str, *extra: str) -> dict:
    return child_process("benchmarks.run", mode, str(size), *extra)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        mode, arg = argv[1], argv[2]
        mesh = argv[3] if len(argv) > 3 else "linkerd"
        result = {"program": lambda: child_program(int(arg), mesh), "floor": lambda: child_floor(int(arg))}[mode]()
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    runs, argv = runs_option(argv)
    mesh, argv = mesh_option(argv)
    sizes = [int(a) for a in argv] or list(SIZES)
    print(f"mesh {mesh}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {runs} runs", flush=True)
    print(f"{'services':>8} {'ports':>6} {'objects':>8} {'obj/port':>8} {'resources':>9} {'program s':>9} "
          f"{'bare s':>7} {'ratio':>6} {'CPU s':>6} {'peak MiB':>8}")
    medians, cpu_medians = {}, {}
    for size in sizes:
        programs, floors = [], []
        for _ in range(runs):
            programs.append(measure("program", size, mesh))
            floors.append(measure("floor", programs[-1]["objects"]))
        program = programs[0]
        if len({p["objects"] for p in programs}) > 1:  # the same graph must give the same objects in every run
            print(f"  runs of {size} services emitted different object counts: {[p['objects'] for p in programs]}")
        seconds = median([p["seconds"] for p in programs])
        bare = median([f["seconds"] for f in floors])
        peak = median([p["peak_mib"] for p in programs])
        medians[size] = seconds
        cpu_medians[size] = median([p["cpu"] for p in programs])
        print(f"{size:>8} {program['ports']:>6} {program['objects']:>8} {program['objects'] / program['ports']:>8.2f} "
              f"{program['registered']:>9} {seconds:>9.2f} {bare:>7.2f} {seconds / bare:>6.2f} {cpu_medians[size]:>6.2f} "
              f"{peak:>8.0f}", flush=True)
    if 1000 in medians and 10000 in medians:
        print(f"growth: time(10000) / time(1000) = {medians[10000] / medians[1000]:.1f} (linear is 10)")
    if 10000 in cpu_medians and 20000 in cpu_medians:
        print(f"growth of CPU s 10,000 -> 20,000 services: {cpu_medians[20000] / cpu_medians[10000]:.2f}x (linear 2.0x)")


if __name__ == "__main__":
    main(sys.argv[1:])
