"""Benchmark: what the largest and the most hostile inputs cost (issue 22), each in a fresh process.

    venv/bin/python -m benchmarks.hostile                      # every case below, median of 3 runs
    venv/bin/python -m benchmarks.hostile ports allow --runs 1 # chosen cases

Cases (wall seconds of the work itself; CPU seconds and peak RSS of the whole child process):
- `ports N`: one service declaring N ports, read and validated (`parse_graph`, no Pulumi);
- `allow N`: one service whose `allow:` lists N one-letter callers in flow style (`[a, a, ...]`, 3 bytes each: 11M of
  them fit the 32 MiB file limit), read from the file and validated (`load_graph`);
- `int N`: `port: 1` followed by N zeros, and a base-60 integer of N parts, read (`load_graph`);
- `namespaces N`: the whole program (stack `staging`, under mocks, as `benchmarks.run` does) on N services in N
  namespaces.
A case the program refuses reports the first problem instead of crashing the benchmark.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]

from benchmarks.run import child_process, runs_option  # noqa: E402 (after the path)

CASES = {
    "ports": (5_000, 10_000, 20_000, 40_000),
    "allow": (1_990_000, 5_000_000, 11_000_000),  # 1,990,000: the largest just under the YAML value limit
    "int": (5_000, 100_000),
    "namespaces": (10_000,),
}


def _one_service(extra: str) -> str:
    return ("namespaces: {a: {}}\nservices:\n  s:\n    namespace: a\n" + extra)


def child(case: str, size: int) -> dict:
    from read.errors import Problems

    problems = Problems()
    if case == "ports":
        from read.graph import parse_graph

        document = {"namespaces": {"a": {}}, "services": {"s": {"namespace": "a", "ports": [
            {"name": f"p{i}", "port": 10_000 + i, "protocol": "HTTP/1"} for i in range(size)]}}}
        started = time.perf_counter()
        parse_graph(document, "graph.yaml", problems)
    elif case in ("allow", "int"):
        from read.graph import load_graph

        if case == "allow":
            text = _one_service("    ports: [{name: http, port: 80, protocol: HTTP/1}]\n    allow: ["
                                + ", ".join(["a"] * size) + "]\n")
        else:
            text = _one_service(f"    ports: [{{name: http, port: 1{'0' * size}, protocol: HTTP/1}}]\n"
                                f"  t:\n    namespace: a\n    ports: [{{name: http, port: {':'.join(['1'] * size)}, "
                                "protocol: HTTP/1}]\n")
        path = Path(tempfile.mkdtemp()) / "graph.yaml"
        path.write_text(text)
        started = time.perf_counter()
        load_graph(path, "graph.yaml", problems)
    elif case == "namespaces":
        import runpy

        import yaml

        from benchmarks.run import CountingMocks, _run, stack_config
        from benchmarks.synthetic import synthetic_graph

        path = Path(tempfile.mkdtemp()) / "graph.yaml"
        path.write_text(yaml.safe_dump(synthetic_graph(size, namespaces=size)))
        config = stack_config("staging")
        config.update({"mtls-mesh:serviceGraph": str(path), "mtls-mesh:inboundPolicyOverrides": "[]",
                       "mtls-mesh:allowFilesOutsideProject": "true"})  # the synthetic graph is in a temporary directory
        started = time.perf_counter()
        try:
            _run(lambda: runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__"), "staging", config,
                 CountingMocks())
        except Exception as err:  # a SettingsError: report it as the outcome
            problems.add("program", str(err).splitlines()[1] if "\n" in str(err) else str(err))
    else:
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "outcome": str(problems.items[0])[:100] if problems else "accepted"}


def measure(case: str, size: int) -> dict:
    try:
        return child_process("benchmarks.hostile", case, str(size))
    except SystemExit as crash:
        return {"seconds": float("nan"), "peak_mib": float("nan"), "cpu": float("nan"),
                "outcome": "CRASH: " + (str(crash).strip().splitlines() or ["?"])[-1][:100]}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        result = child(argv[1], int(argv[2]))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_mib"] = usage.ru_maxrss / 1024
        result["cpu"] = usage.ru_utime + usage.ru_stime  # the whole child, imports included: less noisy when shared
        print(json.dumps(result))
        return
    runs, argv = runs_option(argv)
    chosen = argv or list(CASES)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {runs} runs", flush=True)
    print(f"{'case':>10} {'size':>10} {'seconds':>8} {'CPU s':>7} {'peak MiB':>8}  outcome")
    for case in chosen:
        for size in CASES[case]:
            results = sorted((measure(case, size) for _ in range(runs)), key=lambda r: r["seconds"])
            middle = results[len(results) // 2]
            print(f"{case:>10} {size:>10,} {middle['seconds']:>8.2f} {middle.get('cpu', float('nan')):>7.2f} "
                  f"{middle['peak_mib']:>8.0f}  {middle['outcome']}",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
