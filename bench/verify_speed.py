"""enigma.verify speed: per-kernel compile (uncached / cached) and check time, vector_add over 1M
floats and a 64K-element reduction with 256-thread groups through the harness.

Targets (docs/verify.md, from the reference experiment): <= 100 ms for vector_add, <= 40 ms for the
reduction, <= 0.1 s per cached kernel compile. Baselines measured in the same run: numpy for the
runs, the clang process start (`clang++ --version`) for compiles.

    .venv/bin/python bench/verify_speed.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

VECTOR_ADD = """#include <metal_stdlib>
using namespace metal;
kernel void vector_add(const device float* a [[buffer(0)]], const device float* b [[buffer(1)]],
                       device float* c [[buffer(2)]], constant int& n [[buffer(3)]],
                       uint i [[thread_position_in_grid]]) {
    if ((int)i < n) c[i] = a[i] + b[i];
}
"""
REDUCE = """#include <metal_stdlib>
using namespace metal;
kernel void reduce(const device float* x [[buffer(0)]], device float* out [[buffer(1)]],
                   uint3 tid [[thread_position_in_threadgroup]], uint3 bid [[threadgroup_position_in_grid]],
                   uint lane [[thread_index_in_simdgroup]], uint sg [[simdgroup_index_in_threadgroup]]) {
    threadgroup float partial[8];
    float v = simd_sum(x[bid.x * 256 + tid.x]);
    if (lane == 0) partial[sg] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (sg == 0) {
        float p = lane < 8 ? partial[lane] : 0.0f;
        p = simd_sum(p);
        if (lane == 0) out[bid.x] = p;
    }
}
"""


def best(f, n: int = 5) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    os.environ["ENIGMA_CACHE_DIR"] = tempfile.mkdtemp(prefix="enigma-verify-bench-")
    from enigma.verify import clang, compile_msl  # compile_msl + .run: what run_msl does, minus the lookup

    cl = clang.find_clang()
    print(f"clang: {' '.join(cl.argv)} ({cl.version}); cache {os.environ['ENIGMA_CACHE_DIR']}")
    t_proc = best(lambda: subprocess.run([*cl.argv, "--version"], capture_output=True), 3)
    t0 = time.perf_counter()
    clang.runtime_library()
    clang._pch()
    print(f"one-time: dispatcher + precompiled header {time.perf_counter() - t0:.2f} s")

    # --- per-kernel compile, uncached and cached (a fresh process would hit the disk cache)
    import zoo

    import enigma

    rng = np.random.default_rng(0)
    cks = [enigma.compile(e.jit, *e.make_inputs(rng), vec_width=e.vec_width) for e in zoo.ZOO]
    from enigma.verify.msl import parse_kernel
    from enigma.verify.wrapper import entry_source, prepare_source

    unc, cac = [], []
    for ck in cks:  # the source as the harness compiles it (threadgroup arrays rewritten, entry point)
        src = ck.metal_source
        full = prepare_source(src)[0] + entry_source(parse_kernel(src)) + "\n// uncached\n"
        t = time.perf_counter()
        clang.compile_kernel_library(full)
        unc.append(time.perf_counter() - t)
        t = time.perf_counter()
        clang.compile_kernel_library(full)
        cac.append(time.perf_counter() - t)
    print(f"kernel compile (clang + opt + link), {len(cks)} zoo kernels: uncached mean "
          f"{np.mean(unc) * 1e3:.0f} ms "
          f"(max {max(unc) * 1e3:.0f} ms), cached mean {np.mean(cac) * 1e3:.2f} ms "
          f"(target <= 100 ms); clang process start {t_proc * 1e3:.0f} ms -> uncached = "
          f"{np.mean(unc) / t_proc:.1f}x a bare clang start")

    from enigma.verify.check import check_kernels

    t = time.perf_counter()
    rows = check_kernels(cks)  # inputs picked to satisfy each kernel's requires
    per = (time.perf_counter() - t) / len(rows)
    bad = ", ".join(r.name for r in rows if not r.agree)
    print(f"check (cached compile + harness run + CPU executor + compare): {per * 1e3:.0f} ms per kernel, "
          f"{sum(r.agree for r in rows)}/{len(rows)} agree"
          + (f" (not: {bad}; sizes it assumes)" if bad else ""))

    # --- vector_add over 1M floats
    n = 1 << 20
    a, b = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    c = np.zeros(n, np.float32)
    prog = compile_msl(VECTOR_ADD, "vector_add")
    bufs = {0: a, 1: b, 2: c, 3: np.int32(n)}
    t_np = best(lambda: np.add(a, b, out=c))
    for iso in (True, False):
        t_run = best(lambda iso=iso: prog.run(bufs, grid=n // 256, block=256, isolate=iso))
        assert np.array_equal(c, a + b)
        print(f"vector_add 1M floats, isolate={iso}: {t_run * 1e3:.1f} ms (target <= 100 ms); "
              f"numpy {t_np * 1e3:.2f} ms -> {t_run / t_np:.0f}x")

    # --- 64K-element reduction, 256-thread groups (simd_sum + barrier: fibers)
    m = 1 << 16
    x = rng.standard_normal(m, np.float32)
    out = np.zeros(m // 256, np.float32)
    red = compile_msl(REDUCE, "reduce")
    t_np = best(lambda: x.reshape(-1, 256).sum(axis=1))
    for sched in ("forward", "random"):
        for iso in (True, False):
            t_run = best(lambda s=sched, iso=iso: red.run({0: x, 1: out}, grid=m // 256, block=256,
                                                         schedule=s, isolate=iso))
            assert np.allclose(out, x.reshape(-1, 256).sum(axis=1), rtol=1e-4, atol=1e-4)
            print(f"reduce 64K floats, {sched}, isolate={iso}: {t_run * 1e3:.1f} ms (target <= 40 ms); "
                  f"numpy {t_np * 1e3:.3f} ms -> {t_run / t_np:.0f}x")


if __name__ == "__main__":
    main()
