"""benchmarks/scale.py's measured work runs, for each mesh (issue 32: the benchmarks run with `mesh: istio` too): a
small synthetic graph read and compiled as the benchmark does it, the shard's part and every shard's contract included.
No timing is asserted; this keeps the benchmark runnable (a changed signature of what it calls breaks it silently)."""

from __future__ import annotations

import pytest

from benchmarks.scale import child, graph_file


@pytest.mark.parametrize("mesh", ["linkerd", "istio"])
def test_the_scale_benchmark_compiles_a_sharded_graph_with_each_mesh(mesh, tmp_path):
    result = child(str(graph_file(300, tmp_path)), mesh)
    assert result["namespaces"] == 3 and result["shards"] == 3, result
    assert result["objects"] > 300 and result["shard_entries"] > 0, result


def test_the_benchmark_compiles_istios_objects_under_mesh_istio(tmp_path):
    """The mesh reaches the compile: the same graph gives other objects (Istio's have no Servers)."""
    path = str(graph_file(300, tmp_path))
    assert child(path, "istio")["objects"] != child(path, "linkerd")["objects"]
