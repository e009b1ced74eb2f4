"""load(pkg) of a 20-kernel manifest, warm (issue 6 target: <= 2 ms) and cold (a fresh manifest).

    .venv/bin/python bench/runtime_load.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime" / "tests"))
import enigma_runtime  # noqa: E402
from enigma_runtime import manifest  # noqa: E402
from rt_fixtures import vector_add_kernel, write_package  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        write_package(Path(root), "bench_pkg20", {f"kernel_{i}": [vector_add_kernel(name=f"kernel_{i}")]
                                                  for i in range(20)})
        sys.path.insert(0, root)
        cold = []
        for _ in range(20):
            manifest._cache.clear()
            t = time.perf_counter()
            enigma_runtime.load("bench_pkg20")
            cold.append(time.perf_counter() - t)
        warm = []
        for _ in range(200):
            t = time.perf_counter()
            lib = enigma_runtime.load("bench_pkg20")
            warm.append(time.perf_counter() - t)
        t = time.perf_counter()
        k = lib["kernel_7"]
        k.ir, k.metal_source  # noqa: B018 (first artifact reads, sha256 checked)
        first = time.perf_counter() - t
    med = sorted(warm)[100] * 1e3
    print(f"load(pkg) 20 kernels, warm:            {min(warm) * 1e3:7.3f} ms (median {med:.3f})"
          f"  target <= 2 ms")
    print(f"load(pkg) 20 kernels, manifest parse:  {min(cold) * 1e3:7.3f} ms")
    print(f"first use of a kernel (IR + MSL read): {first * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
