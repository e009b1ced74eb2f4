"""Fast matmuls (issue 12): simdgroup matrices (simd_matmul, float32 and float16 inputs; m and n multiples
of 32, k of 16) and a register-tiled matmul with float4 loads (reg_matmul)."""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Tensor, float32

__all__ = ["SM_BK", "SM_BM", "SM_BN", "reg_matmul", "reg_matmul_launch", "simd_matmul", "simd_matmul_f16",
           "simd_matmul_f16_launch", "simd_matmul_launch"]

# ---------------------------------------------------------------------------------------------------
# simdgroup matrices (issue 12). Sizes: the simdgroup matmul needs m, n multiples of 32 and k of 16.

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


# ---------------------------------------------------------------------------------------------------
# register fragments and float4 loads (issue 12)


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



# ---------------------------------------------------------------------------------------------------
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

def _mm_in(dtype):
    def make(rng):
        m, k, n = 64, 48, 96
        return (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype),
                np.zeros((m, n), np.float32))
    return make


def _mm_ref(a, b, c):
    return (a.astype(np.float32) @ b.astype(np.float32),)


def _mm_sized(dtype, sizes):
    def make(r, k):
        m, kk, n = sizes[k]
        return (r.standard_normal((m, kk)).astype(dtype), r.standard_normal((kk, n)).astype(dtype),
                np.zeros((m, n), np.float32))
    return make


ENTRIES = [
    dict(name="simd_matmul", kernel=simd_matmul, jit=simd_matmul_launch, make_inputs=_mm_in(np.float32),
         reference=_mm_ref, outputs=(2,), kernel_args=lambda t: t, rtol=1e-4, atol=1e-4,
         sized=_mm_sized(np.float32, [(32, 16, 32), (64, 48, 96), (96, 32, 64)])),
    dict(name="simd_matmul_f16", kernel=simd_matmul_f16, jit=simd_matmul_f16_launch,
         make_inputs=_mm_in(np.float16), reference=_mm_ref, outputs=(2,), kernel_args=lambda t: t,
         rtol=1e-3, atol=1e-3, sized=_mm_sized(np.float16, [(32, 16, 32), (64, 48, 96), (96, 32, 64)])),
    dict(name="reg_matmul", kernel=reg_matmul, jit=reg_matmul_launch, make_inputs=_mm_in(np.float32),
         reference=_mm_ref, outputs=(2,), kernel_args=lambda t: t, rtol=1e-4, atol=1e-4,
         sized=_mm_sized(np.float32, [(4, 1, 4), (64, 48, 96), (36, 10, 20)])),
]
JIT_CASES: list[dict] = []
