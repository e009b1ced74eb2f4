"""Reductions: a sum with simd_sum and one atomic per simdgroup (sum_reduce), a two-pass sum through a
temporary that the jit allocates and returns (two_pass_sum), a histogram in threadgroup memory merged
with device atomics, and Triton's layer-norm tutorial (layer_norm: statistics with enigma.block_sum)."""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Constexpr, Tensor, float32, int32

__all__ = ["LN_BLOCK", "final_sum", "histogram", "histogram_launch", "layer_norm", "layer_norm_launch",
           "partial_sums", "sum_launch", "sum_reduce", "two_pass_sum"]

# ---------------------------------------------------------------------------------------------------
# sum reduction: simd_sum per simdgroup, one atomic per simdgroup


@enigma.kernel
def sum_reduce(x: Tensor[float32], out: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    v = 0.0
    if i < n:
        v = x[i]
    v = enigma.simd_sum(v)
    if enigma.simd_lane_id() == 0:
        enigma.atomic_add(out, 0, v)


@enigma.jit
def sum_launch(x: Tensor[float32, ("n",)], out: Tensor[float32, (1,)]):  # noqa: F821, UP037
    n = x.shape[0]
    sum_reduce(x, out, n).launch(grid=(enigma.ceil_div(n, 256), 1, 1), block=(256, 1, 1))


# two-pass sum: partial sums per threadgroup into a temporary, then one threadgroup adds them up; the jit
# allocates the temporary and the result (enigma.empty) and returns the result


@enigma.func
def _group_sum(v, lanes):
    """The sum of v over the 256 threads (written by hand: simd sums, one slot per simdgroup, a
    barrier; enigma.block_sum does the same); every thread gets it."""
    v = enigma.simd_sum(v)
    if enigma.simd_lane_id() == 0:
        lanes[enigma.simd_group_id()] = v
    enigma.barrier()
    total = 0.0
    for k in enigma.range_constexpr(8):
        total += lanes[k]
    return total


@enigma.kernel
def partial_sums(x: Tensor[float32], partial: Tensor[float32], n: int32):
    lanes = enigma.shared_tensor(float32, (8,), name="lanes")  # one slot per simdgroup of 256 threads
    tid = enigma.thread_idx().x
    i = enigma.block_idx().x * 256 + tid
    v = 0.0
    if i < n:
        v = x[i]
    total = _group_sum(v, lanes)
    if tid == 0:
        partial[enigma.block_idx().x] = total


@enigma.kernel
def final_sum(partial: Tensor[float32], out: Tensor[float32], groups: int32):
    lanes = enigma.shared_tensor(float32, (8,), name="lanes")
    tid = enigma.thread_idx().x
    v = 0.0
    for k in range(tid, groups, 256):
        v += partial[k]
    total = _group_sum(v, lanes)
    if tid == 0:
        out[0] = total


@enigma.jit
def two_pass_sum(x: Tensor[float32, ("n",)]):  # noqa: F821, UP037
    n = x.shape[0]
    groups = enigma.ceil_div(n, 256)
    partial = enigma.empty((groups,), float32)
    out = enigma.empty((1,), float32)
    partial_sums(x, partial, n).launch(grid=(groups, 1, 1), block=(256, 1, 1))
    final_sum(partial, out, groups).launch(grid=(1, 1, 1), block=(256, 1, 1))
    return out


# ---------------------------------------------------------------------------------------------------
# histogram: per-threadgroup bins in threadgroup memory, merged with device atomics


@enigma.kernel
def histogram(x: Tensor[int32], hist: Tensor[int32], n: int32, BINS: Constexpr[int] = 64):
    local = enigma.shared_tensor(int32, (BINS,), name="local")
    tid = enigma.thread_idx().x
    threads = enigma.block_dim().x
    for b in range(tid, BINS, threads):
        local[b] = 0
    enigma.barrier()
    i = enigma.block_idx().x * threads + tid
    if i < n:
        enigma.atomic_add(local, x[i], 1)
    enigma.barrier()
    for b in range(tid, BINS, threads):
        count = local[b]
        if count != 0:
            enigma.atomic_add(hist, b, count)


@enigma.jit
def histogram_launch(x: Tensor[int32, ("n",)], hist: Tensor[int32, (64,)]):  # noqa: F821, UP037
    n = x.shape[0]
    histogram(x, hist, n).launch(grid=(enigma.ceil_div(n, 128), 1, 1), block=(128, 1, 1))


# ---------------------------------------------------------------------------------------------------
# layer norm (Triton's tutorial)

LN_BLOCK = 128


@enigma.kernel
def layer_norm(x: Tensor[float32, ("rows", "cols")], w: Tensor[float32, ("cols",)],  # noqa: F821, UP037
               b: Tensor[float32, ("cols",)], y: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037
               eps: float32):
    """Triton's layer-norm tutorial: one threadgroup per row, statistics with enigma.block_sum."""
    row = enigma.block_idx().x
    tid = enigma.thread_idx().x
    cols = x.shape[1]
    s = 0.0
    for c in range(tid, cols, LN_BLOCK):
        s += x[row, c]
    mean = enigma.block_sum(s) / cols
    v = 0.0
    for c in range(tid, cols, LN_BLOCK):
        d = x[row, c] - mean
        v += d * d
    rstd = enigma.rsqrt(enigma.block_sum(v) / cols + eps)
    for c in range(tid, cols, LN_BLOCK):
        y[row, c] = (x[row, c] - mean) * rstd * w[c] + b[c]


@enigma.jit
def layer_norm_launch(x: Tensor[float32, ("rows", "cols")], w: Tensor[float32, ("cols",)],  # noqa: F821, UP037
                      b: Tensor[float32, ("cols",)], y: Tensor[float32, ("rows", "cols")],  # noqa: F821, UP037
                      eps: float32):
    layer_norm(x, w, b, y, eps).launch(grid=(x.shape[0], 1, 1), block=(LN_BLOCK, 1, 1))


# ---------------------------------------------------------------------------------------------------
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

SIZES = (1, 1000, 4099)
SHAPES = [(1, 1), (5, 300), (3, 700)]


def _sum_in(rng):
    return (rng.standard_normal(1000, np.float32), np.zeros(1, np.float32))


def _hist_in(rng):
    return (rng.integers(0, 64, 1000, dtype=np.int32), np.zeros(64, np.int32))


def _ln_in(rng):
    rows, cols = 5, 300
    f32 = np.float32
    return (rng.standard_normal((rows, cols)).astype(f32), rng.standard_normal(cols).astype(f32),
            rng.standard_normal(cols).astype(f32), np.zeros((rows, cols), f32), f32(1e-5))


def _ln_ref(x, w, b, y, eps):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * w + b,)


ENTRIES = [
    dict(name="sum_reduce", kernel=sum_reduce, jit=sum_launch, make_inputs=_sum_in,
         reference=lambda x, out, n: (np.array([x.sum()], np.float32),), outputs=(1,),
         kernel_args=lambda t: (*t, t[0].shape[0]), rtol=1e-4, atol=1e-4,
         sized=lambda r, k: (r.standard_normal(SIZES[k], np.float32), np.zeros(1, np.float32))),
    dict(name="histogram", kernel=histogram, jit=histogram_launch, make_inputs=_hist_in,
         reference=lambda x, h, n: (np.bincount(x, minlength=64).astype(np.int32),), outputs=(1,),
         kernel_args=lambda t: (*t, t[0].shape[0]),
         sized=lambda r, k: (r.integers(0, 64, SIZES[k], dtype=np.int32), np.zeros(64, np.int32))),
    dict(name="layer_norm", kernel=layer_norm, jit=layer_norm_launch, make_inputs=_ln_in, reference=_ln_ref,
         outputs=(3,), kernel_args=lambda t: t, rtol=1e-4, atol=1e-4,
         sized=lambda r, k: (r.standard_normal(SHAPES[k], np.float32),
                             r.standard_normal(SHAPES[k][1], np.float32),
                             r.standard_normal(SHAPES[k][1], np.float32),
                             np.zeros(SHAPES[k], np.float32), np.float32(1e-5))),
]
JIT_CASES = [
    dict(name="two_pass_sum", jit=two_pass_sum,
         make_inputs=lambda r, k: (r.standard_normal((1, 1000, 9000)[k], np.float32),),
         expect=lambda x: {"return": np.array([x.sum(dtype=np.float64)], np.float32)}, rtol=1e-4, atol=1e-4),
]
