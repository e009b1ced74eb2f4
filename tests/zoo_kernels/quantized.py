"""Quantised weights read in place: llama.cpp's q4_0 matrix-vector product (q4_0_matvec) and its
dequantize_row_q4_0 in numpy (the reference)."""
from __future__ import annotations

import numpy as np

import enigma
from enigma import Tensor, float32

__all__ = ["BLOCK_Q4_0", "Q4_BLOCK", "Q4_BYTES", "q4_0_dequantize", "q4_0_matvec", "q4_0_matvec_launch"]

# ---------------------------------------------------------------------------------------------------
# llama.cpp's q4_0 blocks, read in place (issue 12)

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


# ---------------------------------------------------------------------------------------------------
# cases (ZooEntry and JitCase fields, for the index in tests/zoo.py)

def q4_0_dequantize(wq: np.ndarray, rows: int) -> np.ndarray:
    """llama.cpp's dequantize_row_q4_0 for the whole matrix (rows x k)."""
    blocks = wq.view(BLOCK_Q4_0)
    qs = blocks["qs"].astype(np.int32)
    w = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8], axis=1).astype(np.float32)
    w *= blocks["d"].astype(np.float32)[:, None]
    return w.reshape(rows, -1)


def _q4_blocks(rng, rows, k):
    blocks = np.zeros(rows * k // Q4_BLOCK, BLOCK_Q4_0)
    blocks["d"] = (rng.standard_normal(blocks.size) * 0.1).astype(np.float16)
    blocks["qs"] = rng.integers(0, 256, (blocks.size, 16), dtype=np.uint8)
    return blocks


def _q4_in(rng):
    rows, k = 6, 128
    blocks = _q4_blocks(rng, rows, k)
    return (blocks.view(np.uint8).copy(), rng.standard_normal(k).astype(np.float32),
            np.zeros(rows, np.float32))


def _q4_sized(r, k):
    rows, cols = [(1, 32), (6, 128), (9, 256)][k]
    blocks = _q4_blocks(r, rows, cols)
    return (blocks.view(np.uint8).copy(), r.standard_normal(cols, np.float32), np.zeros(rows, np.float32))


ENTRIES = [
    dict(name="q4_0_matvec", kernel=q4_0_matvec, jit=q4_0_matvec_launch, make_inputs=_q4_in,
         reference=lambda wq, x, y: (q4_0_dequantize(wq, y.shape[0]) @ x,), outputs=(2,),
         kernel_args=lambda t: t, rtol=1e-4, atol=1e-4, sized=_q4_sized),
]
JIT_CASES: list[dict] = []
