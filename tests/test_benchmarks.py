"""The benchmarks run for either mesh (`--mesh linkerd|istio`): each benchmark's child, at a size small enough for a
test, compiles or registers the mesh it was asked for. No timing is asserted (docs/benchmarks.md has the figures)."""

from __future__ import annotations

import json

import pytest

from benchmarks import run as bench_run
from benchmarks import scale, shards


@pytest.mark.parametrize("mesh", bench_run.MESHES)
def test_the_scale_benchmark_compiles_the_mesh_it_is_asked_for(mesh, tmp_path):
    result = scale.child(str(scale.graph_file(300, tmp_path)), mesh)
    assert result["mesh"] == mesh and result["objects"] > 300 and result["shard_entries"] > 0


def test_the_mesh_option_and_its_config():
    assert bench_run.mesh_option(["1000", "--mesh", "istio", "--runs", "2"]) == ("istio", ["1000", "--runs", "2"])
    assert bench_run.mesh_option(["1000"]) == ("linkerd", ["1000"])
    with pytest.raises(SystemExit, match="--mesh consul: not one of linkerd, istio"):
        bench_run.mesh_option(["--mesh", "consul"])
    # Istio refuses linkerd-viz, which the staging stack file turns on.
    assert bench_run.mesh_config("istio") == {"mtls-mesh:mesh": "istio", "mtls-mesh:linkerdViz": "false"}
    assert bench_run.mesh_config("linkerd") == {}


def test_the_shard_benchmark_runs_an_istio_platform_and_shard(tmp_path):
    from read import stack_files

    shards.write_project(tmp_path, 200, 4, None, "istio")
    config, secret_keys = stack_files.read_stack_file(tmp_path / f"Pulumi.{shards.PLATFORM}.yaml")
    assert stack_files.load_stack_settings(config, shards.PLATFORM, secret_keys=secret_keys).mesh == "istio"
    contracts = tmp_path / "contracts.json"
    contracts.write_text(json.dumps(shards.applied_outputs(tmp_path)))
    try:
        platform = shards.child("platform", tmp_path, contracts)
        shard = shards.child("shard", tmp_path, contracts)
    finally:
        stack_files.STACKS_DIR = stack_files.PROJECT_DIR / "stacks"
    assert shard["resources"] > shard["registered"] > 2 and platform["registered"] > shard["registered"]
