"""example_pkg: a small numpy-in, numpy-out API over kernels precompiled into this package.

The kernels (kernels.py) are compiled at wheel build time; this module never imports enigma, only
enigma_runtime, which loads them from example_pkg/_enigma/.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["histogram", "kernels", "matmul", "saxpy", "softmax", "vector_add"]


@functools.cache
def kernels():
    """Every kernel of this package (an enigma_runtime library: .names(), ["name"], attributes)."""
    import enigma_runtime

    return enigma_runtime.load("example_pkg")


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def vector_add(a, b) -> np.ndarray:
    """a + b for float32 or float16 vectors (the kernel has one specialisation for each)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype != np.float16:
        a, b = _f32(a), _f32(b)
    c = np.empty_like(a)
    kernels()["vector_add"](a, b.astype(a.dtype), c, np.int32(a.size))
    return c


def saxpy(alpha: float, x, y) -> np.ndarray:
    """alpha * x + y (float32); returns a new array."""
    x, out = _f32(x), _f32(y).copy()
    kernels()["saxpy"](np.float32(alpha), x, out, np.int32(x.size))
    return out


def softmax(x) -> np.ndarray:
    """Softmax over the last axis of a 2-D float32 array."""
    x = _f32(x)
    out = np.empty_like(x)
    kernels()["softmax"](x, out, np.int32(x.shape[0]), np.int32(x.shape[1]))
    return out


def matmul(a, b) -> np.ndarray:
    """a @ b for 2-D float32 arrays (16x16 threadgroup tiles)."""
    a, b = _f32(a), _f32(b)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain")
    c = np.empty((m, n), dtype=np.float32)
    kernels()["matmul"](a, b, c, np.int32(m), np.int32(n), np.int32(k))
    return c


def histogram(data, bins: int) -> np.ndarray:
    """Counts of `data % bins` for non-negative integer data (uint32 counts)."""
    data = np.ascontiguousarray(data, dtype=np.uint32)
    hist = np.zeros(bins, dtype=np.uint32)
    kernels()["histogram"](data, hist, np.int32(data.size), np.uint32(bins))
    return hist
