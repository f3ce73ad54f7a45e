"""Benchmark: one platform stack and one of its policy shards, each the whole program under Pulumi's mocks, against
the same mesh as a single stack (issue 24).

    venv/bin/python -m benchmarks.shards                      # 3,000, 10,000 and 20,000 services, 10 shards, median of 3
    venv/bin/python -m benchmarks.shards 3000 --shards 20 --runs 1
    venv/bin/python -m benchmarks.shards 10000 --namespaces 10000 --runs 1   # a namespace per service (issue 22)
    venv/bin/python -m benchmarks.shards --mesh istio          # the same with `mesh: istio`

Each size's synthetic graph (benchmarks/synthetic.py) gets `shard: shard-<nn>` on its namespaces, round robin, and the
staging stack file `policyShards: true`. Each stack runs in a fresh process, as `pulumi up` does: the single stack (the
same settings with policyShards false), the platform, and the first shard, which reads the platform's applied
contracts and ledger (computed once, before the timed runs, as the platform would export them).

Columns: `registered`, what the program registers (a ConfigGroup counts once); `resources`, what the engine holds
after an `up`, every ConfigGroup child included (pulumi-kubernetes registers one resource per object:
provider/pkg/provider/yaml/v2/yaml.go `Register`); seconds and peak RSS of the run. A figure here is the program's
side; the engine's per-resource Check, Diff and Create come on top (docs/shards.md).
"""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.run import (PROJECT_DIR, CountingMocks, _run, child_process, median, mesh_config, mesh_option,
                            runs_option, stack_config)
from benchmarks.synthetic import synthetic_graph

SIZES = (3000, 10000, 20000)
SHARDS = 10
PLATFORM = "staging"
FIRST_SHARD = "shard-00"  # benchmarks/synthetic.py names the shards shard-<nn>, round robin over the namespaces


def sharded_graph(services: int, shards: int, namespaces: int | None) -> dict:
    return synthetic_graph(services, shards=shards, **({"namespaces": namespaces} if namespaces else {}))


def write_project(directory: Path, services: int, shards: int, namespaces: int | None, mesh: str = "linkerd") -> None:
    """The stacks directory the runs read: the platform's stack file pointing at the graph, and the first shard's."""
    graph_file = directory / "graph.yaml"
    graph_file.write_text(yaml.safe_dump(sharded_graph(services, shards, namespaces)))
    config = stack_config(PLATFORM)
    config.update({"mtls-mesh:serviceGraph": str(graph_file), "mtls-mesh:inboundPolicyOverrides": [],
                   "mtls-mesh:allowFilesOutsideProject": True, "mtls-mesh:policyShards": True})
    config.update(mesh_config(mesh))  # strings, as stack_config hands every value
    # Each value as JSON, which the CLI's YAML reads as written (a string stays the string it is).
    lines = ["config:"]
    for key, value in config.items():
        written = value if isinstance(value, str) and value[:1] in "[{" else json.dumps(value)
        lines.append(f"  {json.dumps(key)}: {written}")
    (directory / f"Pulumi.{PLATFORM}.yaml").write_text("\n".join(lines) + "\n")
    (directory / f"Pulumi.{PLATFORM}-{FIRST_SHARD}.yaml").write_text(yaml.safe_dump({"config": {
        "mtls-mesh:platformStack": PLATFORM, "mtls-mesh:shard": FIRST_SHARD}}))


def applied_outputs(directory: Path) -> dict[str, dict[str, str]]:
    """What the platform exports in the steady state and a shard reads: its contracts and its ledger
    (plan/ownership.py: a shard refuses with none)."""
    from plan.mesh import compile_mesh
    from plan.ownership import HOLDERS_OUTPUT, next_holders, owners
    from plan.shards import contract_digests
    from read import stack_files

    stack_files.STACKS_DIR = directory
    config, secret_keys = stack_files.read_stack_file(directory / f"Pulumi.{PLATFORM}.yaml")
    settings = stack_files.load_stack_settings(config, PLATFORM, secret_keys=secret_keys)
    return {"shardContracts": contract_digests(compile_mesh(settings), settings.graph),
            HOLDERS_OUTPUT: next_holders(None, owners(settings.graph, True, PLATFORM))}


class ShardMocks(CountingMocks):
    """CountingMocks whose StackReference to the platform answers the outputs it applied."""

    def __init__(self, outputs: dict[str, dict[str, str]]):
        super().__init__()
        self.outputs = outputs

    def new_resource(self, args):
        if args.typ == "pulumi:pulumi:StackReference" and args.name.endswith(f"/{PLATFORM}") and self.outputs:
            with self.lock:
                self.count += 1
            return f"{args.name}-id", {"name": args.name, "outputs": self.outputs, "secretOutputNames": []}
        return super().new_resource(args)


def child(role: str, directory: Path, contracts_file: Path) -> dict:
    from read import stack_files

    stack_files.STACKS_DIR = directory
    stack = {"single": PLATFORM, "platform": PLATFORM, "shard": f"{PLATFORM}-{FIRST_SHARD}"}[role]
    config = stack_files.read_stack_file(directory / f"Pulumi.{stack}.yaml", project_dir=PROJECT_DIR)[0]
    if role == "single":
        config["mtls-mesh:policyShards"] = "false"
    mocks = ShardMocks(json.loads(contracts_file.read_text()) if role == "shard" else {})
    grouped = []

    def count_groups(args):
        if args.typ == "kubernetes:yaml/v2:ConfigGroup":
            grouped.append(str(args.inputs.get("yaml", "")).count("---\n"))
    original = mocks.new_resource

    def new_resource(args):
        count_groups(args)
        return original(args)
    mocks.new_resource = new_resource
    cpu = time.process_time()
    seconds = _run(lambda: runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__"), stack, config, mocks)
    return {"registered": mocks.count, "resources": mocks.count + sum(grouped), "seconds": seconds,
            "cpu": time.process_time() - cpu}


def measure(role: str, directory: Path, contracts_file: Path) -> dict:
    return child_process("benchmarks.shards", role, str(directory), str(contracts_file))


def _option(argv: list[str], name: str, default: int | None) -> tuple[int | None, list[str]]:
    if name not in argv:
        return default, argv
    at = argv.index(name)
    return int(argv[at + 1]), argv[:at] + argv[at + 2:]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        result = child(argv[1], Path(argv[2]), Path(argv[3]))
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    runs, argv = runs_option(argv)
    shards, argv = _option(argv, "--shards", SHARDS)
    namespaces, argv = _option(argv, "--namespaces", None)
    mesh, argv = mesh_option(argv)
    sizes = [int(a) for a in argv] or list(SIZES)
    print(f"mesh {mesh}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {runs} runs, {shards} shards"
          + (f", {namespaces} namespaces" if namespaces else ""), flush=True)
    print(f"{'services':>8} {'stack':>9} {'registered':>10} {'resources':>9} {'seconds':>8} {'CPU s':>6} {'peak MiB':>8}")
    medians: dict[tuple[int, str], float] = {}
    for size in sizes:
        directory = Path(tempfile.mkdtemp(prefix="mtls-mesh-shards-"))
        write_project(directory, size, shards, namespaces, mesh)
        contracts_file = directory / "contracts.json"
        contracts_file.write_text(json.dumps(applied_outputs(directory)))
        for role in ("single", "platform", "shard"):
            results = [measure(role, directory, contracts_file) for _ in range(runs)]
            seconds = median([r["seconds"] for r in results])
            medians[(size, role)] = median([r["cpu"] for r in results])
            print(f"{size:>8} {role:>9} {results[0]['registered']:>10} {results[0]['resources']:>9} {seconds:>8.2f} "
                  f"{medians[(size, role)]:>6.2f} "
                  f"{median([r['peak_mib'] for r in results]):>8.0f}", flush=True)
    for role in ("single", "platform", "shard"):
        if (10000, role) in medians and (20000, role) in medians:
            print(f"growth {role}: CPU s(20000) / CPU s(10000) = "
                  f"{medians[(20000, role)] / medians[(10000, role)]:.2f} (linear is 2)")


if __name__ == "__main__":
    main(sys.argv[1:])
