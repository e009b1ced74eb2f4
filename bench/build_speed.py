#!/usr/bin/env python3
"""Wheel build time with the enigma-build hook vs. without it, measured in one run.

    python bench/build_speed.py [--repeat 3]

The project is example_project plus five more elementwise kernels (19 kernels and jit entries),
built emit-only with `python -m hatchling build -t wheel` in a fresh process each time (what a
frontend runs inside its build environment):

- baseline: the same project with [tool.hatch.build.hooks.enigma] removed;
- cold: the hook with an empty kernel cache (imports enigma, traces and emits every kernel);
- warm: the hook with the cache filled by a previous build (no enigma import at all).

Targets (issue 5): cold overhead <= 1 s, warm overhead <= 0.2 s. It also times tracing the kernels
in-process serially (what enigma-build does) against a pool of forked worker processes (threads
cannot be used: the tracer keeps global state), on fresh copies.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
EXTRA = '''\
import enigma
from enigma import Tensor, float32, int32

B = 256
'''
OPS = {"relu": "enigma.maximum(x[i], 0.0)", "square": "x[i] * x[i]", "negate": "-x[i]",
       "axpb": "x[i] * 2.0 + 1.0", "expo": "enigma.exp(x[i])"}
for _name, _expr in OPS.items():
    EXTRA += f'''

@enigma.kernel(block=(B, 1, 1), grid=lambda x, y, n: (enigma.ceil_div(n, B), 1, 1))
def {_name}(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * B + enigma.thread_idx().x
    if i < n:
        y[i] = {_expr}
'''


def make_project(dest: Path, hook: bool) -> Path:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "dist", "_enigma", "__pycache__"))
    (dest / "src/example_pkg/more_kernels.py").write_text(EXTRA)
    if not hook:
        pp = dest / "pyproject.toml"
        pp.write_text(pp.read_text().replace("[tool.hatch.build.hooks.enigma]\n", ""))
    return dest


def build_once(project: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "ENIGMA_CACHE_DIR": str(cache), "ENIGMA_EMIT_ONLY": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)], cwd=project,
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def trace_all(tmp: Path, tag: str, pool: bool) -> float:
    import concurrent.futures as cf
    import multiprocessing as mp

    from enigma_build import config, core, discover
    proj = make_project(tmp / f"trace-{tag}", hook=True)
    s = config.from_table(proj, {"vec-width": {"saxpy": 4}})
    found = discover.scan(s)
    t0 = time.perf_counter()
    discover.load(found)
    if pool:
        with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
            outcomes = list(ex.map(core.compile_found, found, [s] * len(found)))
    else:
        outcomes = [core.compile_found(f, s) for f in found]
    assert all(o.error is None for o in outcomes) and len(outcomes) == len(found)
    COUNT[0] = len(outcomes)
    return time.perf_counter() - t0


COUNT = [0]  # what trace_all compiled, for the report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="enigma-bench-") as t:
        tmp = Path(t)
        base = make_project(tmp / "nohook", hook=False)
        hooked = make_project(tmp / "hook", hook=True)
        times: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
        for k in range(args.repeat):
            times["baseline"].append(build_once(base, tmp / f"out-b{k}", tmp / "cache-b"))
            times["cold"].append(build_once(hooked, tmp / f"out-c{k}", tmp / f"cache-cold-{k}"))
            build_once(hooked, tmp / f"out-w{k}", tmp / "cache-warm")  # fills the cache (first time)
            times["warm"].append(build_once(hooked, tmp / f"out-w{k}b", tmp / "cache-warm"))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"example_project + 5 kernels, emit-only, median of {args.repeat} "
              f"(fresh `python -m hatchling build -t wheel` each)")
        print(f"  baseline (hook disabled) {med['baseline']:.3f} s")
        for name, target in (("cold", 1.0), ("warm", 0.2)):
            over = med[name] - med["baseline"]
            print(f"  hook, {name} cache        {med[name]:.3f} s  overhead {over:+.3f} s "
                  f"({med[name] / med['baseline']:.2f}x baseline; target <= {target} s: "
                  f"{'met' if over <= target else 'MISSED'})")
        import enigma  # noqa: F401  (both variants below run with the compiler imported)
        serial = statistics.median(trace_all(tmp, f"s{k}", False) for k in range(args.repeat))
        forked = statistics.median(trace_all(tmp, f"f{k}", True) for k in range(args.repeat))
        print(f"tracing {COUNT[0]} kernels and jit entries in-process: serial {serial * 1e3:.1f} ms, "
              f"2 forked workers {forked * 1e3:.1f} ms (forked/serial time {forked / serial:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
