"""Tiled kernels written with CuTe layouts (enigma.layout; docs/layout.md): the tiled matmul and the
transpose through a padded threadgroup tile."""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Constexpr, Tensor, float32

__all__ = ["matmul", "matmul_launch", "transpose", "transpose_launch"]

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
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

def _matmul_in(rng):
    return (rng.standard_normal((37, 29), np.float32), rng.standard_normal((29, 41), np.float32),
            np.zeros((37, 41), np.float32))


def _transpose_in(rng):
    return (rng.standard_normal((35, 19), np.float32), np.zeros((19, 35), np.float32))


ENTRIES = [
    dict(name="matmul", kernel=matmul, jit=matmul_launch, make_inputs=_matmul_in,
         reference=lambda a, b, c: (a @ b,), outputs=(2,), kernel_args=lambda t: t, rtol=1e-4, atol=1e-4,
         sized=lambda r, k: (r.standard_normal([(1, 1), (37, 29), (16, 48)][k], np.float32),
                             r.standard_normal([(1, 1), (29, 41), (48, 20)][k], np.float32),
                             np.zeros([(1, 1), (37, 41), (16, 20)][k], np.float32))),
    dict(name="transpose", kernel=transpose, jit=transpose_launch, make_inputs=_transpose_in,
         reference=lambda x, y: (x.T.copy(),), outputs=(1,), kernel_args=lambda t: t,
         sized=lambda r, k: (r.standard_normal([(1, 1), (35, 19), (64, 33)][k], np.float32),
                             np.zeros([(1, 1), (19, 35), (33, 64)][k], np.float32))),
]
JIT_CASES: list[dict] = []
