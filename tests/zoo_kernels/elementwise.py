"""Elementwise kernels: saxpy, the BLAS level-1 y = alpha * x + y. (vector_add, the issue's example,
is tests/zoo.py's.)"""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Tensor, float32, int32

__all__ = ["saxpy", "saxpy_launch"]

# ---------------------------------------------------------------------------------------------------
# saxpy (compiled with vec_width=4 by the suites)


@enigma.kernel
def saxpy(alpha: float32, x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = alpha * x[i] + y[i]


@enigma.jit
def saxpy_launch(alpha: float32, x: Tensor[float32, ("n",)], y: Tensor[float32, ("n",)]):  # noqa: F821, UP037
    n = x.shape[0]
    saxpy(alpha, x, y, n).launch(grid=(enigma.ceil_div(n, 128), 1, 1), block=(128, 1, 1))


# ---------------------------------------------------------------------------------------------------
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

SIZES = (1, 1000, 4099)


def _saxpy_in(rng):
    n = 1003  # not a multiple of 4: exercises the scalar tail of the vectorised path
    return (np.float32(1.5), rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32))


ENTRIES = [
    dict(name="saxpy", kernel=saxpy, jit=saxpy_launch, make_inputs=_saxpy_in,
         reference=lambda al, x, y, n: (al * x + y,), outputs=(2,), kernel_args=lambda t: (*t, t[1].shape[0]),
         vec_width=4,
         sized=lambda r, k: (np.float32(1.5 + k), r.standard_normal(SIZES[k] + 3, np.float32),
                             r.standard_normal(SIZES[k] + 3, np.float32))),
]
JIT_CASES: list[dict] = []
