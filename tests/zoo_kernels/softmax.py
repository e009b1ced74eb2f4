"""Softmax: the row softmax (simd reductions, then across simdgroups through threadgroup memory), its
block size chosen at run time (softmax_auto, as Triton's fused softmax), and llama.cpp's soft_max with an
optional mask (masked_softmax, block reductions)."""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Constexpr, Tensor, float32

__all__ = ["NEG_BIG", "SM_BLOCK", "masked_softmax", "masked_softmax_inputs", "masked_softmax_launch",
           "masked_softmax_ref", "softmax", "softmax_auto", "softmax_launch"]

# ---------------------------------------------------------------------------------------------------
# row softmax: one threadgroup per row; simd reductions, then across simdgroups through threadgroup memory

NEG_BIG = -3.0e38  # finite "minus infinity" (JSON carries no infinities)


@enigma.kernel
def softmax(x: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037 (size names)
            y: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037
            BLOCK: Constexpr[int] = 256):
    row = enigma.block_idx().x
    tid = enigma.thread_idx().x
    cols = x.shape[1]
    partial = enigma.shared_tensor(float32, (BLOCK // 32,), name="partial")
    lane = enigma.simd_lane_id()
    group = enigma.simd_group_id()

    m = NEG_BIG
    for c in range(tid, cols, BLOCK):
        m = enigma.maximum(m, x[row, c])
    m = enigma.simd_max(m)
    if lane == 0:
        partial[group] = m
    enigma.barrier()
    m = partial[0]
    for k in enigma.range_constexpr(1, BLOCK // 32):
        m = enigma.maximum(m, partial[k])
    enigma.barrier()

    s = 0.0
    for c in range(tid, cols, BLOCK):
        s += enigma.exp(x[row, c] - m)
    s = enigma.simd_sum(s)
    if lane == 0:
        partial[group] = s
    enigma.barrier()
    total = partial[0]
    for k in enigma.range_constexpr(1, BLOCK // 32):
        total += partial[k]

    for c in range(tid, cols, BLOCK):
        y[row, c] = enigma.exp(x[row, c] - m) / total


@enigma.jit
def softmax_launch(x: Tensor[float32, ("rows", "cols")], y: Tensor[float32, ("rows", "cols")]):  # noqa: F821, UP037
    softmax(x, y).launch(grid=(x.shape[0], 1, 1), block=(256, 1, 1))


# ---------------------------------------------------------------------------------------------------
# softmax whose block size is chosen at run time from the row length (Triton's fused softmax picks
# BLOCK_SIZE = next_power_of_2(n_cols)): every choice is compiled, the runtime picks per call


@enigma.jit
def softmax_auto(x: Tensor[float32, ("rows", "cols")], y: Tensor[float32, ("rows", "cols")]):  # noqa: F821, UP037
    cols = x.shape[1]
    block = enigma.select(cols <= 64, 64, enigma.select(cols <= 256, 256, 1024))
    softmax(x, y, BLOCK=block).launch(grid=(x.shape[0], 1, 1), block=(block, 1, 1))


# ---------------------------------------------------------------------------------------------------
# llama.cpp's soft_max: an optional mask, block reductions (issue 12)

SM_BLOCK = 128


@enigma.kernel
def masked_softmax(x: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037
                   mask: Tensor[float32, ("rows", "cols")] | None,  # noqa: F821, UP037
                   y: Tensor[float32, ("rows", "cols")], scale: float32):  # noqa: F821, UP037
    """llama.cpp's soft_max: y = softmax(x * scale + mask) per row, the mask optional (a None mask
    selects the variant without it at compile time); one threadgroup per row, block reductions."""
    row = enigma.block_idx().x
    tid = enigma.thread_idx().x
    cols = x.shape[1]
    m = NEG_BIG
    for c in range(tid, cols, SM_BLOCK):
        v = x[row, c] * scale
        if mask is not None:
            v = v + mask[row, c]
        m = enigma.maximum(m, v)
    m = enigma.block_max(m)
    s = 0.0
    for c in range(tid, cols, SM_BLOCK):
        v = x[row, c] * scale
        if mask is not None:
            v = v + mask[row, c]
        e = enigma.exp(v - m)
        y[row, c] = e
        s += e
    inv = 1.0 / enigma.block_sum(s)
    for c in range(tid, cols, SM_BLOCK):
        y[row, c] = y[row, c] * inv


@enigma.jit
def masked_softmax_launch(x: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037
                          mask: Tensor[float32, ("rows", "cols")] | None,  # noqa: F821, UP037
                          y: Tensor[float32, ("rows", "cols")], scale: float32):  # noqa: F821, UP037
    masked_softmax(x, mask, y, scale).launch(grid=(x.shape[0], 1, 1), block=(SM_BLOCK, 1, 1))


# ---------------------------------------------------------------------------------------------------
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

SHAPES = [(1, 1), (5, 300), (3, 700)]


def _softmax_in(rng):
    return (rng.standard_normal((5, 300), np.float32), np.zeros((5, 300), np.float32))


def _softmax_ref(x, y):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True),)


def masked_softmax_inputs(mask: bool):
    def make(rng):
        rows, cols = 4, 300
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        m = np.where(rng.random((rows, cols)) < 0.2, np.float32(NEG_BIG), np.float32(0)).astype(np.float32) \
            if mask else None
        return (x, m, np.zeros((rows, cols), np.float32), np.float32(0.5))
    return make


def masked_softmax_ref(x, mask, y, scale):
    v = x * scale + (0 if mask is None else mask)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True),)


ENTRIES = [
    dict(name="softmax", kernel=softmax, jit=softmax_launch, make_inputs=_softmax_in, reference=_softmax_ref,
         outputs=(1,), kernel_args=lambda t: t,
         sized=lambda r, k: (r.standard_normal(SHAPES[k], np.float32), np.zeros(SHAPES[k], np.float32))),
    dict(name="masked_softmax", kernel=masked_softmax, jit=masked_softmax_launch,
         make_inputs=masked_softmax_inputs(True), reference=masked_softmax_ref, outputs=(2,),
         kernel_args=lambda t: t, rtol=1e-5, atol=1e-6,
         sized=lambda r, k: (r.standard_normal(SHAPES[k], np.float32),
                             np.where(r.random(SHAPES[k]) < 0.2, np.float32(NEG_BIG),
                                      np.float32(0)).astype(np.float32),
                             np.zeros(SHAPES[k], np.float32), np.float32(0.5))),
    # the softmax without a mask is the same jit: no case of its own
    dict(name="softmax_no_mask", kernel=masked_softmax, jit=masked_softmax_launch,
         make_inputs=masked_softmax_inputs(False), reference=masked_softmax_ref, outputs=(2,),
         kernel_args=lambda t: t, rtol=1e-5, atol=1e-6),
]
JIT_CASES = [
    dict(name="softmax_auto", jit=softmax_auto,  # 10, 200 and 700 columns: blocks of 64, 256 and 1024 threads
         make_inputs=lambda r, k: (r.standard_normal((3, (10, 200, 700)[k]), np.float32),
                                   np.zeros((3, (10, 200, 700)[k]), np.float32)),
         expect=lambda x, y: {1: _softmax_ref(x, y)[0]}),
]
