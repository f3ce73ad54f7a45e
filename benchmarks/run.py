"""Benchmark: the whole program under Pulumi's mocks on synthetic graphs of growing size, against the SDK's own floor.

    venv/bin/python benchmarks/run.py            # 10, 100, 1000, 3000 services
    venv/bin/python benchmarks/run.py 10 100     # chosen sizes

For each size, three fresh processes: one runs `__main__.py` (stack `staging`, the synthetic graph, rollout `deny`);
one registers the same number of bare resources with no inputs ("bare": the least any program can cost under this
engine); one registers exactly the resources the program registered, with the same inputs, in a flat loop ("same":
what the SDK costs for this content, so program / same is the program's own overhead). The program's process prints
its registrations, wall seconds and peak RSS; this script prints the table and the ratios.
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]
SIZES = (10, 100, 1000, 3000)


class CountingMocks:
    """Echo inputs back as outputs (plus the PEM stand-ins the program reads back), as the tests' mocks do."""

    def __init__(self, keep: bool = False):
        self.count = 0
        self.kept: list[tuple[str, str, dict]] | None = [] if keep else None

    def new_resource(self, args):
        from harness import computed_outputs

        self.count += 1
        if self.kept is not None:
            self.kept.append((args.typ, args.name, args.inputs))
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
    document = yaml.safe_load((PROJECT_DIR / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in document["config"].items()}


def child_program(services: int) -> dict:
    from benchmarks.synthetic import synthetic_graph

    graph_file = Path(tempfile.mkdtemp()) / "graph.yaml"
    graph = synthetic_graph(services)
    graph_file.write_text(yaml.safe_dump(graph))
    config = stack_config("staging")
    config.update({"mtls-mesh:serviceGraph": str(graph_file), "mtls-mesh:inboundPolicyOverrides": "[]"})
    mocks = CountingMocks(keep=True)
    seconds = _run(lambda: runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__"), "staging", config,
                   mocks)
    ports = sum(len(s["ports"]) for s in graph["services"].values())
    (graph_file.parent / "registered.json").write_text(json.dumps(mocks.kept, default=str))
    return {"registered": mocks.count, "seconds": seconds, "ports": ports, "registered_file": str(graph_file.parent / "registered.json")}


def child_same_objects(registered_file: str) -> dict:
    """The same resources with the same inputs, registered in a flat loop: what the SDK costs for exactly this content."""
    import pulumi

    kept = json.loads(Path(registered_file).read_text())

    def program():
        for index, (type_, name, inputs) in enumerate(kept):
            pulumi.CustomResource(f"bench:index:{type_.rsplit(':', 1)[-1]}", f"{name}-{index}", inputs)

    mocks = CountingMocks()
    seconds = _run(program, "floor", {}, mocks)
    return {"registered": mocks.count, "seconds": seconds}


def child_floor(count: int) -> dict:
    import pulumi

    def program():
        for index in range(count):
            pulumi.CustomResource("bench:index:Bare", f"bare-{index}", {})

    mocks = CountingMocks()
    seconds = _run(program, "floor", {}, mocks)
    return {"registered": mocks.count, "seconds": seconds}


def measure(mode: str, size: int | str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", mode, str(size)], capture_output=True, text=True,
                               cwd=PROJECT_DIR, env={**os.environ, "PULUMI_TEST_MODE": "true"})
    if completed.returncode != 0:
        raise SystemExit(f"{mode} {size} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        mode, arg = argv[1], argv[2]
        result = {"program": lambda: child_program(int(arg)), "floor": lambda: child_floor(int(arg)),
                  "same": lambda: child_same_objects(arg)}[mode]()
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    sizes = [int(a) for a in argv] or list(SIZES)
    print(f"{'services':>8} {'ports':>6} {'resources':>9} {'obj/port':>8} {'program s':>9} {'bare s':>7} "
          f"{'ratio':>6} {'same s':>7} {'ratio':>6} {'peak MiB':>8}")
    rows = {}
    for size in sizes:
        program = measure("program", size)
        floor = measure("floor", program["registered"])
        same = measure("same", program["registered_file"])
        rows[size] = program
        print(f"{size:>8} {program['ports']:>6} {program['registered']:>9} "
              f"{program['registered'] / program['ports']:>8.2f} {program['seconds']:>9.2f} {floor['seconds']:>7.2f} "
              f"{program['seconds'] / floor['seconds']:>6.2f} {same['seconds']:>7.2f} "
              f"{program['seconds'] / same['seconds']:>6.2f} {program['peak_mib']:>8.0f}", flush=True)
    if 100 in rows and 1000 in rows:
        print(f"growth: time(1000) / time(100) = {rows[1000]['seconds'] / rows[100]['seconds']:.1f} (linear is 10)")


if __name__ == "__main__":
    main(sys.argv[1:])
