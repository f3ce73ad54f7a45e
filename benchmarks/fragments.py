"""Benchmark: reading a graph split per team against the same graph in one file (read/fragments.py).

    venv/bin/python -m benchmarks.fragments                  # 10,000 services: one file, then 50 and 1,000 files
    venv/bin/python -m benchmarks.fragments 3000 --files 50 --runs 3

The synthetic graph (benchmarks/synthetic.py) is written once as one file and once split in F files (its namespaces
dealt round-robin, each with its services); each is read and validated (load_service_graph: files, YAML, the team
boundaries, the merged graph's checks) in this process. Prints the median CPU seconds of `--runs` runs, and checks
that every split reads to the same services and edges as the one file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR)]

from benchmarks.synthetic import synthetic_graph  # noqa: E402
from read.errors import Problems  # noqa: E402
from read.fragments import load_service_graph  # noqa: E402


def split(graph: dict, files: int) -> dict[str, dict]:
    namespaces = list(graph["namespaces"])
    count = min(files, len(namespaces))
    out = {f"team-{i:04d}.yaml": {"owners": [f"@example-org/team-{i}"], "namespaces": {}, "services": {}}
           for i in range(count)}
    names = list(out)
    team_of = {ns: names[i % count] for i, ns in enumerate(namespaces)}
    for ns, body in graph["namespaces"].items():
        out[team_of[ns]]["namespaces"][ns] = body
    for key, service in graph["services"].items():
        out[team_of[service["namespace"]]]["services"][key] = service
    return out


def timed(path: Path, runs: int):
    seconds, graph = [], None
    for _ in range(runs):
        problems = Problems()
        start = time.process_time()  # CPU seconds: the machine may be shared, and reading is single-threaded
        graph = load_service_graph(path, path.name, problems, path.parent)
        seconds.append(time.process_time() - start)
        assert graph is not None, [str(p) for p in problems.items[:5]]
    return statistics.median(seconds), graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fragments")
    parser.add_argument("services", nargs="?", type=int, default=10_000)
    parser.add_argument("--files", nargs="+", type=int, default=[50, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    # One namespace per ten services, so that a thousand teams each own some.
    graph = synthetic_graph(args.services, namespaces=max(50, min(args.services // 10, 10_000)))
    with tempfile.TemporaryDirectory() as tmp:
        single = Path(tmp) / "services.yaml"
        single.write_text(yaml.safe_dump(graph, sort_keys=False))
        base_seconds, base = timed(single, args.runs)
        print(f"{args.services:,} services, {len(graph['namespaces']):,} namespaces")
        print(f"  one file ({single.stat().st_size / 1e6:.1f} MB): {base_seconds:.2f} s")
        for files in args.files:
            directory = Path(tmp) / f"services-{files}.d"
            directory.mkdir()
            for name, fragment in split(graph, files).items():
                (directory / name).write_text(yaml.safe_dump(fragment, sort_keys=False))
            seconds, merged = timed(directory, args.runs)
            assert merged.services == base.services and merged.edges() == base.edges()
            print(f"  {len(merged.fragments):,} files: {seconds:.2f} s ({seconds / base_seconds:.2f}x the one file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
