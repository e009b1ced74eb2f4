"""example_pkg: a small numpy-in, numpy-out API over kernels precompiled into this package.

The kernels and the @enigma.jit functions that launch them (kernels.py) are compiled at wheel build
time; this module never imports enigma, only enigma_runtime, which runs the shipped jit entry points
from example_pkg/_enigma/ (`kernels()["add"](a, b, c)`: sizes and grids are computed by the entry). It
only allocates outputs and validates inputs.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["histogram", "kernels", "matmul", "saxpy", "softmax", "total", "vector_add"]


@functools.cache
def kernels():
    """Every kernel and jit entry of this package (an enigma_runtime library: .names(), .entries(),
    ["name"])."""
    import enigma_runtime

    return enigma_runtime.load("example_pkg")


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def vector_add(a, b) -> np.ndarray:
    """a + b for float32 or float16 vectors (the kernel has one specialisation for each)."""
    half = np.asarray(a).dtype == np.float16
    dtype = np.float16 if half else np.float32
    a, b = np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"vector_add: two vectors of one length, got {a.shape} and {b.shape}")
    return kernels()["add_f16" if half else "add"](a, b, np.empty_like(a))


def saxpy(alpha: float, x, y) -> np.ndarray:
    """alpha * x + y (float32); returns a new array."""
    x, out = _f32(x), _f32(y).copy()
    return kernels()["axpy"](np.float32(alpha), x, out)


def softmax(x) -> np.ndarray:
    """Softmax over the last axis of a 2-D float32 array (the block size is chosen from the rows'
    length at run time)."""
    x = _f32(x)
    return kernels()["softmax_rows"](x, np.empty_like(x))


def matmul(a, b) -> np.ndarray:
    """a @ b for 2-D float32 arrays (16x16 threadgroup tiles)."""
    a, b = _f32(a), _f32(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain")
    return kernels()["matmul_tiled"](a, b, np.empty((a.shape[0], b.shape[1]), np.float32))


def histogram(data, bins: int) -> np.ndarray:
    """Counts of `data % bins` for non-negative integer data (uint32 counts)."""
    if int(bins) < 1:
        raise ValueError(f"histogram: bins must be at least 1, got {bins}")
    data = np.ascontiguousarray(data, dtype=np.uint32)
    return kernels()["count_values"](data, np.zeros(int(bins), dtype=np.uint32))


def total(x) -> float:
    """The sum of a float32 vector (a two-pass reduction on the GPU)."""
    return float(kernels()["total"](_f32(x).ravel())[0])
