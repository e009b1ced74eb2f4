"""A shipped jit entry vs the bare kernel it launches, on the CPU executor with 1-element arrays.

The zoo's `add` jit and its kernel `vector_add` are compiled as enigma-build compiles them and written
into a package directory; both are loaded back with enigma_runtime.load. Baseline (same run): the bare
kernel called with precomputed arguments `k(a, b, c, 1)` (its grid from the manifest). Measured: the
entry `entry(a, b, c)`, which checks the jit's arguments, evaluates the kernel's arguments and grid
from the data of FORMAT.md section 7 and launches the same kernel. Prints microseconds per call, the
ratio entry / kernel (target <= 1.5) and the entry's overhead (target <= 20 us).

    .venv/bin/python bench/jit_entry.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import enigma_runtime  # noqa: E402
import zoo  # noqa: E402

from enigma.artifacts import render, write_files  # noqa: E402
from enigma_build import frontend  # noqa: E402
from enigma_build.config import Settings  # noqa: E402


def best_of(fns: list, n: int = 1000, rounds: int = 7) -> list[float]:
    """Microseconds per call of each of `fns`: the best of `rounds` rounds of `n` calls, the functions
    measured in turn within each round (the machine is shared: interleaving keeps the comparison fair)."""
    for fn in fns:
        for _ in range(200):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / n)
    return [x * 1e6 for x in best]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(root=Path(d))
        kernel = vector_add_with_its_grid()
        records = frontend.compile_all(zoo.add, settings) + kernel
        write_files(Path(d) / "bench_pkg" / "_enigma",
                    render("bench_pkg", records, metallib=None, msl_version="3.1", macos_target="14.0",
                           enigma_version="0"))
        lib = enigma_runtime.load(Path(d) / "bench_pkg")
        entry, k = lib["add"], lib["vector_add"]
        a, b, c = np.ones(1, np.float32), np.ones(1, np.float32), np.zeros(1, np.float32)
        n = np.int32(1)
        bare, shipped = best_of([lambda: k(a, b, c, n, device="cpu"), lambda: entry(a, b, c, device="cpu")])
        assert c[0] == 2.0
    print(f"bare kernel k(a, b, c, n):   {bare:8.1f} us per call (baseline)")
    print(f"jit entry   entry(a, b, c):  {shipped:8.1f} us per call")
    print(f"ratio entry / kernel: {shipped / bare:.2f}x (target <= 1.5x); entry overhead "
          f"{shipped - bare:.1f} us (target <= 20 us)")


def vector_add_with_its_grid() -> list:
    """vector_add with the launch the `add` jit gives it, as a bare kernel (grid in its metadata)."""
    import enigma

    spec = enigma.TensorSpec(enigma.float32, ("n",))
    ck = enigma.compile(zoo.add, spec, spec, spec)
    return [ck]  # listed under "vector_add", with its grid over the kernel's arguments


if __name__ == "__main__":
    main()
