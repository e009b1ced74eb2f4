"""The kernel zoo shared by every test suite: each entry has a kernel, a @jit launcher, an input maker,
a numpy reference and the indices of the output arguments (of the kernel's argument list)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import enigma
from enigma import Constexpr, Tensor, float32, int32

# ---------------------------------------------------------------------------------------------------
# vector_add (the example)


@enigma.kernel
def vector_add(a: Tensor[float32], b: Tensor[float32], c: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        c[i] = a[i] + b[i]


@enigma.jit
def add(a: Tensor[float32, ("n",)], b: Tensor[float32, ("n",)], c: Tensor[float32, ("n",)]):  # noqa: F821, UP037
    n = a.shape[0]
    vector_add(a, b, c, n).launch(grid=(enigma.ceil_div(n, 256), 1, 1), block=(256, 1, 1))


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


# ---------------------------------------------------------------------------------------------------
# tiled matmul: TILE x TILE threadgroup tiles of a and b, one output element per thread, written with
# CuTe layouts (enigma.layout): the block's rows of a, and its columns of b through a transposed (N, K)
# view of b. Edge tiles are partial: the tensors are viewed padded to whole tiles and every access is
# predicated with an identity tensor (docs/layout.md, "Partial tiles").


@enigma.kernel
def matmul(a: Tensor[float32, ("m", "k")],  # noqa: F821, UP037 (size names)
           b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
           c: Tensor[float32, ("m", "n")],  # noqa: F821, UP037
           TILE: Constexpr[int] = 16):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    M, K = a.shape
    N = b.shape[1]
    Mp, Kp, Np = (enigma.ceil_div(M, TILE) * TILE, enigma.ceil_div(K, TILE) * TILE,
                  enigma.ceil_div(N, TILE) * TILE)
    sa, sb, sc = enigma.make_tensor(a).stride, enigma.make_tensor(b).stride, enigma.make_tensor(c).stride
    mA = enigma.make_tensor(a, enigma.make_layout((Mp, Kp), stride=sa))
    mBt = enigma.make_tensor(b, enigma.make_layout((Np, Kp), stride=(sb[1], sb[0])))  # b as (N, K)
    mC = enigma.make_tensor(c, enigma.make_layout((Mp, Np), stride=sc))
    gA = enigma.local_tile(mA, (TILE,), (by,))  # (TILE, Kp): this block's rows of a
    gBt = enigma.local_tile(mBt, (TILE,), (bx,))  # (TILE, Kp): this block's columns of b
    gC = enigma.local_tile(mC, (TILE, TILE), (by, bx))
    cA = enigma.local_tile(enigma.make_identity_tensor((Mp, Kp)), (TILE,), (by,))  # coordinates
    cBt = enigma.local_tile(enigma.make_identity_tensor((Np, Kp)), (TILE,), (bx,))
    cC = enigma.local_tile(enigma.make_identity_tensor((Mp, Np)), (TILE, TILE), (by, bx))
    ta = enigma.make_tensor(enigma.shared_tensor(float32, (TILE, TILE), name="ta"))
    tb = enigma.make_tensor(enigma.shared_tensor(float32, (TILE, TILE), name="tb"))
    acc = 0.0
    for k0 in range(0, K, TILE):
        if enigma.elem_less(cA[ty, k0 + tx], (M, K)):
            ta[ty, tx] = gA[ty, k0 + tx]
        else:
            ta[ty, tx] = 0.0
        if enigma.elem_less(cBt[tx, k0 + ty], (N, K)):
            tb[ty, tx] = gBt[tx, k0 + ty]
        else:
            tb[ty, tx] = 0.0
        enigma.barrier()
        for kk in enigma.range_constexpr(TILE):
            acc = enigma.fma(ta[ty, kk], tb[kk, tx], acc)
        enigma.barrier()
    if enigma.elem_less(cC[ty, tx], (M, N)):
        gC[ty, tx] = acc


@enigma.jit
def matmul_launch(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
                  c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    m, n = c.shape
    matmul(a, b, c).launch(grid=(enigma.ceil_div(n, 16), enigma.ceil_div(m, 16), 1), block=(16, 16, 1))


# ---------------------------------------------------------------------------------------------------
# transpose through a padded 16x17 threadgroup tile (no bank conflicts on the column read), with
# layouts: the tile is a 16x16 view of row stride 17, read back through its transposed view


@enigma.kernel
def transpose(x: Tensor[float32, ("m", "n")], y: Tensor[float32, ("n", "m")]):  # noqa: F821, UP037
    tile = enigma.shared_tensor(float32, (16, 17), name="tile")
    sT = enigma.make_tensor(tile, enigma.make_layout((16, 16), stride=(17, 1)))
    sTt = enigma.make_tensor(tile, enigma.make_layout((16, 16), stride=(1, 17)))  # the same tile, transposed
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    M, N = x.shape
    Mp, Np = enigma.ceil_div(M, 16) * 16, enigma.ceil_div(N, 16) * 16  # padded to whole tiles
    mX = enigma.make_tensor(x, enigma.make_layout((Mp, Np), stride=enigma.make_tensor(x).stride))
    mY = enigma.make_tensor(y, enigma.make_layout((Np, Mp), stride=enigma.make_tensor(y).stride))
    gX = enigma.local_tile(mX, (16, 16), (by, bx))
    gY = enigma.local_tile(mY, (16, 16), (bx, by))
    cX = enigma.local_tile(enigma.make_identity_tensor((Mp, Np)), (16, 16), (by, bx))
    cY = enigma.local_tile(enigma.make_identity_tensor((Np, Mp)), (16, 16), (bx, by))
    if enigma.elem_less(cX[ty, tx], (M, N)):
        sT[ty, tx] = gX[ty, tx]
    enigma.barrier()
    if enigma.elem_less(cY[ty, tx], (N, M)):
        gY[ty, tx] = sTt[ty, tx]


@enigma.jit
def transpose_launch(x: Tensor[float32, ("m", "n")], y: Tensor[float32, ("n", "m")]):  # noqa: F821, UP037
    m, n = x.shape
    transpose(x, y).launch(grid=(enigma.ceil_div(n, 16), enigma.ceil_div(m, 16), 1), block=(16, 16, 1))


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
# two-pass sum: partial sums per threadgroup into a temporary, then one threadgroup adds them up; the jit
# allocates the temporary and the result (enigma.empty) and returns the result


@enigma.kernel
def partial_sums(x: Tensor[float32], partial: Tensor[float32], n: int32):
    lanes = enigma.shared_tensor(float32, (8,), name="lanes")  # one slot per simdgroup of 256 threads
    tid = enigma.thread_idx().x
    i = enigma.block_idx().x * 256 + tid
    v = 0.0
    if i < n:
        v = x[i]
    v = enigma.simd_sum(v)
    if enigma.simd_lane_id() == 0:
        lanes[enigma.simd_group_id()] = v
    enigma.barrier()
    if tid == 0:
        total = 0.0
        for k in enigma.range_constexpr(8):
            total += lanes[k]
        partial[enigma.block_idx().x] = total


@enigma.kernel
def final_sum(partial: Tensor[float32], out: Tensor[float32], groups: int32):
    lanes = enigma.shared_tensor(float32, (8,), name="lanes")
    tid = enigma.thread_idx().x
    v = 0.0
    for k in range(tid, groups, 256):
        v += partial[k]
    v = enigma.simd_sum(v)
    if enigma.simd_lane_id() == 0:
        lanes[enigma.simd_group_id()] = v
    enigma.barrier()
    if tid == 0:
        total = 0.0
        for k in enigma.range_constexpr(8):
            total += lanes[k]
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
# softmax whose block size is chosen at run time from the row length (Triton's fused softmax picks
# BLOCK_SIZE = next_power_of_2(n_cols)): every choice is compiled, the runtime picks per call


@enigma.jit
def softmax_auto(x: Tensor[float32, ("rows", "cols")], y: Tensor[float32, ("rows", "cols")]):  # noqa: F821, UP037
    cols = x.shape[1]
    block = enigma.select(cols <= 64, 64, enigma.select(cols <= 256, 256, 1024))
    softmax(x, y, BLOCK=block).launch(grid=(x.shape[0], 1, 1), block=(block, 1, 1))


# ---------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kernel: Any  # enigma.KernelFunction
    jit: Any  # enigma.JitFunction
    make_inputs: Callable[[np.random.Generator], tuple]  # the jit's (and the kernel's) tensor inputs
    reference: Callable[..., tuple]  # kernel args -> expected values of the output args
    outputs: tuple[int, ...]  # indices (in the kernel's argument list) of the outputs
    kernel_args: Callable[[tuple], tuple]  # jit inputs -> the kernel's full argument list
    rtol: float = 1e-5
    atol: float = 1e-6
    vec_width: int = 0


def _vadd_in(rng):
    n = 1000
    return (rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32), np.zeros(n, np.float32))


def _saxpy_in(rng):
    n = 1003  # not a multiple of 4: exercises the scalar tail of the vectorised path
    return (np.float32(1.5), rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32))


def _softmax_in(rng):
    return (rng.standard_normal((5, 300), np.float32), np.zeros((5, 300), np.float32))


def _softmax_ref(x, y):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True),)


def _sum_in(rng):
    return (rng.standard_normal(1000, np.float32), np.zeros(1, np.float32))


def _matmul_in(rng):
    return (rng.standard_normal((37, 29), np.float32), rng.standard_normal((29, 41), np.float32),
            np.zeros((37, 41), np.float32))


def _transpose_in(rng):
    return (rng.standard_normal((35, 19), np.float32), np.zeros((19, 35), np.float32))


def _hist_in(rng):
    return (rng.integers(0, 64, 1000, dtype=np.int32), np.zeros(64, np.int32))


ZOO: list[ZooEntry] = [
    ZooEntry("vector_add", vector_add, add, _vadd_in, lambda a, b, c, n: (a + b,), (2,),
             lambda t: (*t, t[0].shape[0])),
    ZooEntry("saxpy", saxpy, saxpy_launch, _saxpy_in, lambda al, x, y, n: (al * x + y,), (2,),
             lambda t: (*t, t[1].shape[0]), vec_width=4),
    ZooEntry("softmax", softmax, softmax_launch, _softmax_in, _softmax_ref, (1,), lambda t: t),
    ZooEntry("sum_reduce", sum_reduce, sum_launch, _sum_in,
             lambda x, out, n: (np.array([x.sum()], np.float32),), (1,), lambda t: (*t, t[0].shape[0]),
             rtol=1e-4, atol=1e-4),
    ZooEntry("matmul", matmul, matmul_launch, _matmul_in, lambda a, b, c: (a @ b,), (2,), lambda t: t,
             rtol=1e-4, atol=1e-4),
    ZooEntry("transpose", transpose, transpose_launch, _transpose_in, lambda x, y: (x.T.copy(),), (1,),
             lambda t: t),
    ZooEntry("histogram", histogram, histogram_launch, _hist_in,
             lambda x, h, n: (np.bincount(x, minlength=64).astype(np.int32),), (1,),
             lambda t: (*t, t[0].shape[0])),
]

BY_NAME = {e.name: e for e in ZOO}


# ---------------------------------------------------------------------------------------------------
# every jit called with its own arguments at three sizes (in process and from an installed wheel)


@dataclass(frozen=True)
class JitCase:
    name: str
    jit: Any  # enigma.JitFunction
    make_inputs: Callable[[np.random.Generator, int], tuple]  # size index 0, 1, 2 -> the jit's arguments
    expect: Callable[..., dict[Any, np.ndarray]]  # jit arguments -> {argument index or "return": value}
    rtol: float = 1e-5
    atol: float = 1e-6
    vec_width: int = 0


def _from_zoo(e: ZooEntry, make: Callable[[np.random.Generator, int], tuple]) -> JitCase:
    def expect(*ins: Any) -> dict[Any, np.ndarray]:
        args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in e.kernel_args(ins)]
        return dict(zip(e.outputs, e.reference(*args)))
    return JitCase(e.name, e.jit, make, expect, e.rtol, e.atol, e.vec_width)


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, np.float32)


_N = (1, 1000, 4099)
_SIZED: dict[str, Callable[[np.random.Generator, int], tuple]] = {
    "vector_add": lambda r, k: (_f32(r, _N[k]), _f32(r, _N[k]), np.zeros(_N[k], np.float32)),
    "saxpy": lambda r, k: (np.float32(1.5 + k), _f32(r, _N[k] + 3), _f32(r, _N[k] + 3)),
    "softmax": lambda r, k: (_f32(r, *[(1, 1), (5, 300), (3, 700)][k]),
                             np.zeros([(1, 1), (5, 300), (3, 700)][k], np.float32)),
    "sum_reduce": lambda r, k: (_f32(r, _N[k]), np.zeros(1, np.float32)),
    "matmul": lambda r, k: (_f32(r, *[(1, 1), (37, 29), (16, 48)][k]),
                            _f32(r, *[(1, 1), (29, 41), (48, 20)][k]),
                            np.zeros([(1, 1), (37, 41), (16, 20)][k], np.float32)),
    "transpose": lambda r, k: (_f32(r, *[(1, 1), (35, 19), (64, 33)][k]),
                               np.zeros([(1, 1), (19, 35), (33, 64)][k], np.float32)),
    "histogram": lambda r, k: (r.integers(0, 64, _N[k], dtype=np.int32), np.zeros(64, np.int32)),
}

JITS: list[JitCase] = [_from_zoo(e, _SIZED[e.name]) for e in ZOO] + [
    JitCase("two_pass_sum", two_pass_sum, lambda r, k: (_f32(r, (1, 1000, 9000)[k]),),
            lambda x: {"return": np.array([x.sum(dtype=np.float64)], np.float32)}, rtol=1e-4, atol=1e-4),
    JitCase("softmax_auto", softmax_auto,  # 10, 200 and 700 columns: blocks of 64, 256 and 1024 threads
            lambda r, k: (_f32(r, 3, (10, 200, 700)[k]), np.zeros((3, (10, 200, 700)[k]), np.float32)),
            lambda x, y: {1: _softmax_ref(x, y)[0]}),
]
JIT_BY_NAME = {c.name: c for c in JITS}
