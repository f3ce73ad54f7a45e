"""What one stack's state holds at 3,000, 10,000 and 20,000 services, and what a real `up` of it writes: the figures of
docs/shards.md, reproducible.

    venv/bin/python -m benchmarks.state_size                 # 3,000, 10,000 and 20,000 services
    venv/bin/python -m benchmarks.state_size 1000 --json     # chosen sizes, one JSON line per size

For each size, in a fresh process: the whole program under the mocks (tests/harness.py, stack `staging`, the
synthetic graph of benchmarks/synthetic.py, every namespace in `deny`, as benchmarks.run), which records every
registration and, as pulumi-kubernetes does, one resource per object of each yaml/v2 ConfigGroup
(`harness.config_group_children`). From those, an **estimate** of the checkpoint the engine would store, built entry
by entry in the shape of pulumi's `apitype.ResourceV3` (sdk/go/common/apitype/core.go) and serialized the way the DIY
backend writes it (compact JSON, pkg/backend/diy/state.go `compactJSONMarshaler`):
- each Kubernetes object (a ConfigGroup child or a standalone object) stores its body three times: the engine's
  `inputs`, the provider's `outputs` (the live object), and `outputs.__inputs` (pulumi-kubernetes
  provider/pkg/provider/provider.go `checkpointObject`, lines 3087-3123 at 94977969d641; Create checkpoints with it,
  line 1856), plus `__initialApiVersion` and `__fieldManager`; the live copy gets the server's uid,
  resourceVersion, generation and creationTimestamp. NOT counted: `metadata.managedFields` in the live copy (whether
  Create's checkpoint keeps it was not verified; it would add about one more copy of the spec's field names) and any
  status a controller writes later: the estimate is a floor;
- a Helm release or another provider's resource stores its inputs twice (inputs and outputs); a component its name;
- every entry carries its URN, type, parent, provider reference, an id and the two timestamps.
The gzip figure is the same JSON compressed (DIY backends write it so with PULUMI_DIY_BACKEND_GZIP=true,
sdk/go/common/env/env.go `DIYBackendGzip`).

"DIY bytes written by a first `up`": without journaling every step rewrites the whole checkpoint
(pkg/backend/snapshot.go `saveSnapshot`, and a create is two writes: `doCreate` marks it pending and writes, `End`
writes again, lines 432-455), so creating the resources one by one writes the sum, over the creates, of twice the
checkpoint as it then is (entries in registration order). Each save also copies the previous file to `.bak`
(diy/state.go `saveCheckpoint`), not counted. "50 QPS floor": pulumi-kubernetes' client allows 50 requests/s per
provider (provider.go lines 926-935), and each object's create is at least one request. "Journaled": Pulumi's
own measurement, 2m50s to create 3,222 resources with journaling (pulumi/docs content/blog/journaling/index.md),
scaled linearly: an extrapolation, not a measurement.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]
SIZES = (3000, 10000, 20000)
TIMESTAMP = "2026-12-03T01:20:00.123456789Z"
FIELD_MANAGER = "pulumi-kubernetes-8c6e4e5a"
BLOG_RESOURCES, BLOG_SECONDS = 3222, 170.0  # journaling blog: 3,222 resources created in 2m50s
QPS = 50.0


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _live(obj: dict[str, Any], index: int) -> dict[str, Any]:
    """The object as the API server returns it on create (server-populated metadata; managedFields left out)."""
    meta = {**obj["metadata"], "uid": f"{index:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "resourceVersion": str(4000000 + index),
            "generation": 1, "creationTimestamp": TIMESTAMP[:19] + "Z"}
    return {**obj, "metadata": meta}


def checkpoint_entry(registration, index: int, provider_id: str) -> dict[str, Any]:
    """One resource of the checkpoint (apitype.ResourceV3's fields that a created resource carries)."""
    from harness import plain

    entry: dict[str, Any] = {"urn": registration.urn, "custom": registration.custom, "type": registration.type}
    if registration.custom:
        entry["id"] = f"{registration.name}-id"
    inputs = plain(registration.inputs)
    if registration.is_kubernetes and not registration.type.startswith("kubernetes:helm.sh"):
        obj = registration.object()
        entry["inputs"] = inputs
        entry["outputs"] = {**_live(obj, index), "__inputs": obj,
                            "__initialApiVersion": obj.get("apiVersion", ""), "__fieldManager": FIELD_MANAGER}
    elif registration.custom:
        entry["inputs"] = inputs
        entry["outputs"] = inputs
    if registration.parent:
        entry["parent"] = registration.parent
    if registration.protect:
        entry["protect"] = True
    if registration.provider:
        entry["provider"] = registration.provider.rpartition("::")[0] + "::" + provider_id
    if registration.dependencies:
        entry["dependencies"] = list(registration.dependencies)
    entry["created"] = entry["modified"] = TIMESTAMP
    return entry


def child(services: int) -> dict[str, Any]:
    from benchmarks.synthetic import synthetic_graph
    from harness import run_program
    from read import graph as graph_module, graph_format

    graph = synthetic_graph(services)
    if services > graph_format.MAX_SERVICES:
        # One stack refuses more (docs/service-graph.md, "Limits"); raised here only to show what that one stack would hold.
        graph_module.MAX_SERVICES = services
    started = time.perf_counter()
    run = run_program("staging", graph=graph, tmp_path=Path(tempfile.mkdtemp()),
                      set_config={"inboundPolicyOverrides": []})
    program_seconds = time.perf_counter() - started

    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    header = _dump({"version": 3, "checkpoint": {"stack": f"organization/mtls-mesh/{run.stack}", "latest": {
        "manifest": {"time": TIMESTAMP, "magic": "0" * 64, "version": "v3.272.0"},
        "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:" + "A" * 40}}, "resources": []}}})
    size = len(header)
    gzipped = len(compressor.compress(header))
    written = 0
    per_namespace: dict[str, int] = {}
    children = 0
    for index, registration in enumerate(run.registrations):
        entry = _dump(checkpoint_entry(registration, index, "0b8d6d6e-3f4c-4b8e-9f0a-6a3e2c1d5b7f")) + b","
        size += len(entry)
        gzipped += len(compressor.compress(entry))
        written += 2 * size  # the create's two saves of the whole checkpoint as it then is
        if registration.group is not None:
            children += 1
            namespace = registration.object()["metadata"]["namespace"]
            per_namespace[namespace] = per_namespace.get(namespace, 0) + len(entry)
    gzipped += len(compressor.flush())
    kubernetes_objects = sum(1 for r in run.registrations
                             if r.is_kubernetes and not r.type.startswith("kubernetes:helm.sh")
                             and r.type != "kubernetes:yaml/v2:ConfigGroup")
    resources = len(run.registrations) + 1  # and the root stack
    return {
        "services": services, "namespaces": len(graph["namespaces"]),
        "registered_by_program": sum(1 for r in run.registrations if r.group is None),
        "config_group_children": children, "resources": resources, "kubernetes_objects": kubernetes_objects,
        "state_mb": size / 1e6, "state_gzip_mb": gzipped / 1e6,
        "largest_namespace_mb": max(per_namespace.values(), default=0) / 1e6,
        "diy_first_up_written_gb": written / 1e9,
        "qps_floor_min": kubernetes_objects / QPS / 60,
        "journaled_min": resources * BLOG_SECONDS / BLOG_RESOURCES / 60,
        "program_seconds": program_seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(services: int) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-m", "benchmarks.state_size", "--child", str(services)],
                               capture_output=True, text=True, cwd=PROJECT_DIR,
                               env={**os.environ, "PULUMI_TEST_MODE": "true"})
    if completed.returncode != 0:
        raise SystemExit(f"{services} services failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine() -> str:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{' (' + model + ')' if model else ''}, "
            f"Python {platform.python_version()}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(int(argv[1]))))
        return
    as_json = "--json" in argv
    sizes = [int(a) for a in argv if a != "--json"] or list(SIZES)
    if not as_json:
        print(f"machine: {machine()}; one fresh process per size", flush=True)
        print("| services | resources in the state | of them ConfigGroup children | state (JSON, est.) | gzip | "
              "largest namespace | DIY first `up` writes (est.) | 50 QPS floor | journaled (extrapolated) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        r = measure(size)
        if as_json:
            print(json.dumps(r), flush=True)
            continue
        print(f"| {r['services']:,} | {r['resources']:,} | {r['config_group_children']:,} | {r['state_mb']:.0f} MB | "
              f"{r['state_gzip_mb']:.1f} MB | {r['largest_namespace_mb']:.1f} MB | "
              f"{r['diy_first_up_written_gb'] / 1000:.1f} TB | {r['qps_floor_min']:.1f} min | "
              f"{r['journaled_min']:.0f} min |", flush=True)
        print(f"<!-- {size}: program {r['program_seconds']:.1f} s under mocks, peak {r['peak_mib']:.0f} MiB -->",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
