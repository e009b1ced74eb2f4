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
# fast kernels (issue 12): simdgroup matrices, register fragments, float4 loads, block reductions,
# quantised blocks read in place. Sizes: the simdgroup matmul needs m, n multiples of 32 and k of 16.

SM_BM, SM_BN, SM_BK = 32, 32, 16  # threadgroup tile; 4 simdgroups, each a 16x16 tile (2x2 accumulators)


@enigma.func
def _simd_matmul_body(a, b, c):
    enigma.require(c.shape[0] % SM_BM == 0, "m is a multiple of the 32-row tile")
    enigma.require(c.shape[1] % SM_BN == 0, "n is a multiple of the 32-column tile")
    enigma.require(a.shape[1] % SM_BK == 0, "k is a multiple of the 16-deep tile")
    As = enigma.shared_tensor(a.dtype, (SM_BM, SM_BK), name="As")
    Bs = enigma.shared_tensor(b.dtype, (SM_BK, SM_BN), name="Bs")
    tx, ty = enigma.thread_idx().x, enigma.thread_idx().y  # block (16, 8): 4 simdgroups
    sg = enigma.simd_group_id()
    row0 = enigma.block_idx().y * SM_BM
    col0 = enigma.block_idx().x * SM_BN
    # this simdgroup's 16-row strip of As and 16-column strip of Bs (views: offsets computed once)
    a_w = enigma.local_tile(As, (16, SM_BK), (sg // 2, 0))
    b_w = enigma.local_tile(Bs, (SM_BK, 16), (0, sg % 2))
    c00 = enigma.simd_matrix(enigma.float32)
    c01 = enigma.simd_matrix(enigma.float32)
    c10 = enigma.simd_matrix(enigma.float32)
    c11 = enigma.simd_matrix(enigma.float32)
    for k0 in range(0, a.shape[1], SM_BK):
        for i in enigma.range_constexpr(0, SM_BM, 8):  # the 16 x 8 threads copy the tiles
            As[ty + i, tx] = a[row0 + ty + i, k0 + tx]
        for i in enigma.range_constexpr(0, SM_BK, 8):
            for j in enigma.range_constexpr(0, SM_BN, 16):
                Bs[ty + i, tx + j] = b[k0 + ty + i, col0 + tx + j]
        enigma.barrier()
        for kk in enigma.range_constexpr(0, SM_BK, 8):  # the inner loop: simdgroup loads and MMAs only
            a0 = enigma.simd_load(a_w, 0, kk)
            a1 = enigma.simd_load(a_w, 8, kk)
            b0 = enigma.simd_load(b_w, kk, 0)
            b1 = enigma.simd_load(b_w, kk, 8)
            c00 = enigma.simd_mma(a0, b0, c00)
            c01 = enigma.simd_mma(a0, b1, c01)
            c10 = enigma.simd_mma(a1, b0, c10)
            c11 = enigma.simd_mma(a1, b1, c11)
        enigma.barrier()
    tile = (enigma.block_idx().y * 2 + sg // 2, enigma.block_idx().x * 2 + sg % 2)
    c_w = enigma.local_tile(c, (16, 16), tile)
    enigma.simd_store(c00, c_w, 0, 0)
    enigma.simd_store(c01, c_w, 0, 8)
    enigma.simd_store(c10, c_w, 8, 0)
    enigma.simd_store(c11, c_w, 8, 8)


@enigma.kernel
def simd_matmul(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
                c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    _simd_matmul_body(a, b, c)


@enigma.kernel
def simd_matmul_f16(a: Tensor[enigma.float16, ("m", "k")],  # noqa: F821, UP037
                    b: Tensor[enigma.float16, ("k", "n")],  # noqa: F821, UP037
                    c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    _simd_matmul_body(a, b, c)


@enigma.jit
def simd_matmul_launch(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
                       c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    m, n = c.shape
    simd_matmul(a, b, c).launch(grid=(n // SM_BN, m // SM_BM, 1), block=(16, 8, 1))


@enigma.jit
def simd_matmul_f16_launch(a: Tensor[enigma.float16, ("m", "k")],  # noqa: F821, UP037
                           b: Tensor[enigma.float16, ("k", "n")],  # noqa: F821, UP037
                           c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    m, n = c.shape
    simd_matmul_f16(a, b, c).launch(grid=(n // SM_BN, m // SM_BM, 1), block=(16, 8, 1))


@enigma.kernel
def reg_matmul(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
               c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    """Each thread computes a 4x4 tile of c in a register fragment; rows of b are read as float4."""
    r0 = (enigma.block_idx().y * enigma.block_dim().y + enigma.thread_idx().y) * 4
    c0 = (enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x) * 4
    acc = enigma.make_fragment((4, 4), float32)
    acc.fill(0.0)
    enigma.require(c.shape[0] % 4 == 0, "m is a multiple of 4 (4x4 tiles per thread)")
    enigma.require(c.shape[1] % 4 == 0, "n is a multiple of 4 (rows of b are read as float4)")
    if r0 < c.shape[0] and c0 < c.shape[1]:
        for k in range(a.shape[1]):
            bv = b.load_vec((k, c0), 4)
            for i in enigma.range_constexpr(4):
                ai = a[r0 + i, k]
                for j in enigma.range_constexpr(4):
                    acc[i, j] = enigma.fma(ai, bv[j], acc[i, j])
        for i in enigma.range_constexpr(4):
            c.store_vec((r0 + i, c0), enigma.vec(acc[i, 0], acc[i, 1], acc[i, 2], acc[i, 3]))


@enigma.jit
def reg_matmul_launch(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821, UP037
                      c: Tensor[float32, ("m", "n")]):  # noqa: F821, UP037
    m, n = c.shape
    reg_matmul(a, b, c).launch(grid=(enigma.ceil_div(n, 32), enigma.ceil_div(m, 32), 1), block=(8, 8, 1))


Q4_BLOCK, Q4_BYTES = 32, 18  # llama.cpp block_q4_0: {half d; uint8 qs[16]}: 32 weights in 18 bytes
BLOCK_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@enigma.kernel
def q4_0_matvec(wq: Tensor[enigma.uint8], x: Tensor[float32, ("k",)],  # noqa: F821, UP037
                y: Tensor[float32, ("rows",)]):  # noqa: F821, UP037
    """y = W @ x with W in llama.cpp's q4_0 format, read in place from one byte buffer: one simdgroup
    per row; byte m of a block's qs holds weights m (low nibble) and m + 16 (high nibble), minus 8."""
    enigma.require(x.shape[0] % Q4_BLOCK == 0, "k is a whole number of 32-weight blocks")
    enigma.require(wq.shape[0] == y.shape[0] * (x.shape[0] // Q4_BLOCK) * 18,
                   "wq holds rows x k/32 blocks of 18 bytes")
    row = enigma.block_idx().x
    lane = enigma.simd_lane_id()
    nb = x.shape[0] // Q4_BLOCK
    halves = wq.view(enigma.float16)  # block i starts at half 9 * i (18 bytes)
    words = wq.view(enigma.uint16)  # its qs are the uint16 words 9 * i + 1 .. 9 * i + 8
    s = 0.0
    for blk in range(lane, nb, 32):
        i = row * nb + blk
        d = halves[9 * i].to(float32)
        base = blk * Q4_BLOCK
        part = 0.0
        for j in enigma.range_constexpr(8):
            q = words[9 * i + 1 + j].to(enigma.int32)
            lo, hi = q & 0xFF, q >> 8  # bytes 2j and 2j + 1 (little-endian)
            part += ((lo & 15) - 8).to(float32) * x[base + 2 * j]
            part += ((lo >> 4) - 8).to(float32) * x[base + 2 * j + 16]
            part += ((hi & 15) - 8).to(float32) * x[base + 2 * j + 1]
            part += ((hi >> 4) - 8).to(float32) * x[base + 2 * j + 17]
        s += d * part
    s = enigma.simd_sum(s)
    if lane == 0:
        y[row] = s


@enigma.jit
def q4_0_matvec_launch(wq: Tensor[enigma.uint8, ("bytes",)], x: Tensor[float32, ("k",)],  # noqa: F821, UP037
                       y: Tensor[float32, ("rows",)]):  # noqa: F821, UP037
    q4_0_matvec(wq, x, y).launch(grid=(y.shape[0], 1, 1), block=(32, 1, 1))


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


def _mm_in(dtype):
    def make(rng):
        m, k, n = 64, 48, 96
        return (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype),
                np.zeros((m, n), np.float32))
    return make


def _mm_ref(a, b, c):
    return (a.astype(np.float32) @ b.astype(np.float32),)


def _q4_in(rng):
    rows, k = 6, 128
    blocks = np.zeros(rows * k // Q4_BLOCK, BLOCK_Q4_0)
    blocks["d"] = (rng.standard_normal(blocks.size) * 0.1).astype(np.float16)
    blocks["qs"] = rng.integers(0, 256, (blocks.size, 16), dtype=np.uint8)
    return (blocks.view(np.uint8).copy(), rng.standard_normal(k).astype(np.float32),
            np.zeros(rows, np.float32))


def q4_0_dequantize(wq: np.ndarray, rows: int) -> np.ndarray:
    """llama.cpp's dequantize_row_q4_0 for the whole matrix (rows x k)."""
    blocks = wq.view(BLOCK_Q4_0)
    qs = blocks["qs"].astype(np.int32)
    w = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8], axis=1).astype(np.float32)
    w *= blocks["d"].astype(np.float32)[:, None]
    return w.reshape(rows, -1)


def _ln_in(rng):
    rows, cols = 5, 300
    f32 = np.float32
    return (rng.standard_normal((rows, cols)).astype(f32), rng.standard_normal(cols).astype(f32),
            rng.standard_normal(cols).astype(f32), np.zeros((rows, cols), f32), f32(1e-5))


def _ln_ref(x, w, b, y, eps):
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * w + b,)


def _masked_softmax_in(mask: bool):
    def make(rng):
        rows, cols = 4, 300
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        m = np.where(rng.random((rows, cols)) < 0.2, np.float32(NEG_BIG), np.float32(0)).astype(np.float32) \
            if mask else None
        return (x, m, np.zeros((rows, cols), np.float32), np.float32(0.5))
    return make


def _masked_softmax_ref(x, mask, y, scale):
    v = x * scale + (0 if mask is None else mask)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True),)


ZOO += [
    ZooEntry("masked_softmax", masked_softmax, masked_softmax_launch, _masked_softmax_in(True),
             _masked_softmax_ref, (2,), lambda t: t, rtol=1e-5, atol=1e-6),
    ZooEntry("softmax_no_mask", masked_softmax, masked_softmax_launch, _masked_softmax_in(False),
             _masked_softmax_ref, (2,), lambda t: t, rtol=1e-5, atol=1e-6),
    ZooEntry("simd_matmul", simd_matmul, simd_matmul_launch, _mm_in(np.float32), _mm_ref, (2,), lambda t: t,
             rtol=1e-4, atol=1e-4),
    ZooEntry("simd_matmul_f16", simd_matmul_f16, simd_matmul_f16_launch, _mm_in(np.float16), _mm_ref, (2,),
             lambda t: t, rtol=1e-3, atol=1e-3),
    ZooEntry("reg_matmul", reg_matmul, reg_matmul_launch, _mm_in(np.float32), _mm_ref, (2,), lambda t: t,
             rtol=1e-4, atol=1e-4),
    ZooEntry("q4_0_matvec", q4_0_matvec, q4_0_matvec_launch, _q4_in,
             lambda wq, x, y: (q4_0_dequantize(wq, y.shape[0]) @ x,), (2,), lambda t: t, rtol=1e-4,
             atol=1e-4),
    ZooEntry("layer_norm", layer_norm, layer_norm_launch, _ln_in, _ln_ref, (3,), lambda t: t,
             rtol=1e-4, atol=1e-4),
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

def _mm_sized(dtype: Any, sizes: tuple) -> Callable[[np.random.Generator, int], tuple]:
    def make(r: np.random.Generator, k: int) -> tuple:
        m, kk, n = sizes[k]
        return (r.standard_normal((m, kk)).astype(dtype), r.standard_normal((kk, n)).astype(dtype),
                np.zeros((m, n), np.float32))
    return make


def _q4_sized(r: np.random.Generator, k: int) -> tuple:
    rows, cols = [(1, 32), (6, 128), (9, 256)][k]
    blocks = np.zeros(rows * cols // Q4_BLOCK, BLOCK_Q4_0)
    blocks["d"] = (r.standard_normal(blocks.size) * 0.1).astype(np.float16)
    blocks["qs"] = r.integers(0, 256, (blocks.size, 16), dtype=np.uint8)
    return (blocks.view(np.uint8).copy(), _f32(r, cols), np.zeros(rows, np.float32))


_SHAPES = [(1, 1), (5, 300), (3, 700)]
_SIZED.update({  # the fast kernels (issue 12); the softmax without a mask is the same jit
    "simd_matmul": _mm_sized(np.float32, [(32, 16, 32), (64, 48, 96), (96, 32, 64)]),
    "simd_matmul_f16": _mm_sized(np.float16, [(32, 16, 32), (64, 48, 96), (96, 32, 64)]),
    "reg_matmul": _mm_sized(np.float32, [(4, 1, 4), (64, 48, 96), (36, 10, 20)]),
    "q4_0_matvec": _q4_sized,
    "layer_norm": lambda r, k: (_f32(r, *_SHAPES[k]), _f32(r, _SHAPES[k][1]), _f32(r, _SHAPES[k][1]),
                                np.zeros(_SHAPES[k], np.float32), np.float32(1e-5)),
    "masked_softmax": lambda r, k: (_f32(r, *_SHAPES[k]),
                                    np.where(r.random(_SHAPES[k]) < 0.2, np.float32(NEG_BIG),
                                             np.float32(0)).astype(np.float32),
                                    np.zeros(_SHAPES[k], np.float32), np.float32(0.5)),
})

JITS: list[JitCase] = [_from_zoo(e, _SIZED[e.name]) for e in ZOO if e.name in _SIZED] + [
    JitCase("two_pass_sum", two_pass_sum, lambda r, k: (_f32(r, (1, 1000, 9000)[k]),),
            lambda x: {"return": np.array([x.sum(dtype=np.float64)], np.float32)}, rtol=1e-4, atol=1e-4),
    JitCase("softmax_auto", softmax_auto,  # 10, 200 and 700 columns: blocks of 64, 256 and 1024 threads
            lambda r, k: (_f32(r, 3, (10, 200, 700)[k]), np.zeros((3, (10, 200, 700)[k]), np.float32)),
            lambda x, y: {1: _softmax_ref(x, y)[0]}),
]
JIT_BY_NAME = {c.name: c for c in JITS}
