"""Speed of the fast-kernel features (issue 12), with baselines measured in the same run:

1. trace + codegen (passes, MSL) of the simdgroup-matrix matmul (target <= 15 ms), against the plain
   zoo matmul's trace + codegen;
2. the CPU executor on a 256^3 simdgroup matmul (target within 50x of numpy's a @ b);
3. enigma.verify (clang + fibers) on the same 256^3 launch (target <= 1 s; the compile is cached
   after the first run and reported apart), against the CPU executor.

    .venv/bin/python bench/fast_kernels.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import zoo  # noqa: E402

import enigma  # noqa: E402
from enigma import passes  # noqa: E402
from enigma.backends import msl  # noqa: E402
from enigma.frontend.jit import launch_of  # noqa: E402


def best(fn, n: int = 5) -> float:
    """Best of n runs, in seconds (after one warm-up run)."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def codegen(jit, ins) -> str:
    return msl.emit(passes.run(launch_of(jit, ins).kernel))


def main() -> None:
    rng = np.random.default_rng(0)
    e = zoo.BY_NAME["simd_matmul"]
    ins = e.make_inputs(rng)
    plain = zoo.BY_NAME["matmul"]
    pins = plain.make_inputs(rng)
    t_simd = best(lambda: codegen(e.jit, ins), 20)
    t_plain = best(lambda: codegen(plain.jit, pins), 20)
    print(f"trace + codegen, simd_matmul:   {t_simd * 1e3:7.2f} ms  (target <= 15 ms: "
          f"{t_simd * 1e3 / 15:.2f}x of the budget; plain matmul {t_plain * 1e3:.2f} ms, ratio "
          f"{t_simd / t_plain:.2f})")

    n = 256
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    c = np.zeros((n, n), np.float32)
    ck = enigma.compile(e.jit, a, b, c)
    # the executor first: after numpy's multi-threaded a @ b, OpenBLAS's worker threads keep spinning
    # for a while and take a core from whatever runs next (10-15% slower here; not with
    # OPENBLAS_NUM_THREADS=1)
    t_cpu = best(lambda: ck(a, b, c, device="cpu"), 15)  # best of 15: the machine may be shared
    t_np = best(lambda: a @ b, 50)
    np.testing.assert_allclose(c, a @ b, rtol=1e-3, atol=1e-3)
    print(f"CPU executor, 256^3:            {t_cpu * 1e3:7.2f} ms  numpy a @ b {t_np * 1e3:.3f} ms: "
          f"{t_cpu / t_np:.1f}x numpy (target <= 50x)")

    from enigma.verify import run_msl
    c2 = np.zeros((n, n), np.float32)
    t = time.perf_counter()
    run_msl(ck, a, b, c2)  # compiles (or takes the cached library) and runs
    t_first = time.perf_counter() - t
    t_ver = best(lambda: run_msl(ck, a, b, c2), 2)
    np.testing.assert_allclose(c2, c, rtol=1e-4, atol=1e-4)
    print(f"enigma.verify, 256^3:           {t_ver * 1e3:7.2f} ms  (target <= 1000 ms: {t_ver:.2f}x of the "
          f"budget; first call with compile {t_first * 1e3:.0f} ms; {t_ver / t_cpu:.1f}x the CPU executor)")


if __name__ == "__main__":
    main()
