"""python -m example_pkg: run every shipped jit entry on small inputs and print it next to numpy."""
from __future__ import annotations

import sys

import numpy as np

import example_pkg


def _row(name: str, ours: np.ndarray, ref: np.ndarray, tol: float) -> bool:
    err = float(np.max(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    ok = err <= tol
    show = np.array2string(ours.ravel()[:4], precision=4, separator=", ")
    want = np.array2string(ref.ravel()[:4], precision=4, separator=", ")
    print(f"{name:<20} enigma {show:<40} numpy {want:<40} max|err| {err:.2e}  {'ok' if ok else 'MISMATCH'}")
    return ok


def main() -> int:
    rng = np.random.default_rng(0)
    lib = example_pkg.kernels()
    print(f"example_pkg kernels: {', '.join(lib.names())}")
    print(f"example_pkg jit entries: {', '.join(lib.entries())}")
    ok = True
    a, b = rng.standard_normal(1000, dtype=np.float32), rng.standard_normal(1000, dtype=np.float32)
    ok &= _row("vector_add f32", example_pkg.vector_add(a, b), a + b, 0)
    a16, b16 = a.astype(np.float16), b.astype(np.float16)
    ok &= _row("vector_add f16", example_pkg.vector_add(a16, b16), a16 + b16, 0)
    x, y = rng.standard_normal(1003, dtype=np.float32), rng.standard_normal(1003, dtype=np.float32)
    ok &= _row("saxpy (vec 4)", example_pkg.saxpy(2.5, x, y), np.float32(2.5) * x + y, 1e-5)
    s = rng.standard_normal((8, 200), dtype=np.float32)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    ok &= _row("softmax (block 256)", example_pkg.softmax(s), e / e.sum(axis=1, keepdims=True), 1e-5)
    w = rng.standard_normal((2, 1500), dtype=np.float32)
    e = np.exp(w - w.max(axis=1, keepdims=True))
    ok &= _row("softmax (block 1024)", example_pkg.softmax(w), e / e.sum(axis=1, keepdims=True), 1e-5)
    v = rng.standard_normal(100_000, dtype=np.float32)
    ok &= _row("two-pass sum", np.array([example_pkg.total(v)]), np.array([v.sum(dtype=np.float64)]), 1e-2)
    ma, mb = rng.standard_normal((33, 20), dtype=np.float32), rng.standard_normal((20, 17), dtype=np.float32)
    ok &= _row("matmul (tiled)", example_pkg.matmul(ma, mb), ma @ mb, 1e-4)
    data = rng.integers(0, 1000, 5000).astype(np.uint32)
    ok &= _row("histogram", example_pkg.histogram(data, 16), np.bincount(data % 16, minlength=16), 0)
    print("all kernels agree with numpy" if ok else "SOME KERNELS DISAGREE WITH NUMPY")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
