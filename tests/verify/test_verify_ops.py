"""Op and dtype coverage of the emitter + compatibility layer: small kernels using every math op,
integer arithmetic with negative operands, casts between dtypes, float16/bfloat16/int8/uint8 tensors,
shuffles and atomics, each checked (through enigma.verify.check) against the runtime's CPU executor,
which implements FORMAT.md's op semantics."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import need_tool

import enigma
from enigma import Tensor, bfloat16, float16, float32, int8, int32, uint8, uint32
from enigma.verify.check import check_kernels

pytestmark = pytest.mark.needs_clang


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


@enigma.kernel
def float_ops(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        v = x[i]
        a = enigma.abs(v)
        y[i] = (enigma.exp(v * 0.25) + enigma.log(a + 1.0) + enigma.sqrt(a) + enigma.rsqrt(a + 1.0)
                + enigma.sin(v) + enigma.cos(v) + enigma.tanh(v) + enigma.floor(v * 3.0)
                + enigma.ceil(v * 3.0) + enigma.exp2(v) + enigma.log2(a + 2.0) + enigma.fma(v, v, 1.0)
                + enigma.maximum(v, 0.25)
                + enigma.minimum(v, 0.5) + enigma.where(v > 0.0, v, -v) + v / (a + 1.0) - v % 0.75)


@enigma.kernel
def int_ops(a: Tensor[int32], b: Tensor[int32], out: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        x = a[i] - 8  # negative operands: C division/remainder truncate toward zero
        d = b[i] + 1
        out[i] = (x // d) * 1000 + (x % d) * 100 + ((x << 2) ^ (x >> 1)) + (x & 5) - (x | 3) \
            + enigma.abs(x) + enigma.minimum(x, d) * enigma.maximum(x, 2)


@enigma.kernel
def casts(x: Tensor[float32], h: Tensor[float16], bf: Tensor[bfloat16], c: Tensor[int8], u: Tensor[uint8],
          w: Tensor[uint32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        v = x[i] * 40.0
        h[i] = (v * 0.5).to(float16) + h[i]
        bf[i] = (v + bf[i].to(float32)).to(bfloat16)
        c[i] = (v.to(int32) + c[i].to(int32)).to(int8)  # float -> int truncates; int -> int8 wraps
        u[i] = (u[i].to(int32) * 37 + 200).to(uint8)
        w[i] = w[i] * 2654435761 + (v > 0.0).to(uint32)


@enigma.kernel
def simd_and_atomics(x: Tensor[int32], out: Tensor[int32], hist: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    v = 0
    if i < n:
        v = x[i]
    s = enigma.simd_shuffle_down(v, 3) + enigma.simd_broadcast(v, 7) * 2 + enigma.simd_min(v) \
        + enigma.simd_max(v) * 3
    if i < n:
        out[i] = s
        enigma.atomic_add(hist, v % 16, 1)
        enigma.atomic_max(hist, 16, v)
        enigma.atomic_min(hist, 17, v)


def _jit(kernel):
    @enigma.jit
    def launch(*args):
        n = args[0].shape[0]
        kernel(*args, n).launch(grid=(enigma.ceil_div(n, 64), 1, 1), block=(64, 1, 1))
    return launch


@pytest.mark.parametrize("kernel,inputs", [
    (float_ops, lambda r: (r.standard_normal(300).astype(np.float32), np.zeros(300, np.float32))),
    (int_ops, lambda r: (r.integers(0, 16, 300).astype(np.int32), r.integers(0, 16, 300).astype(np.int32),
                         np.zeros(300, np.int32))),
    (casts, lambda r: tuple(enigma.TensorSpec(d, ("n",))  # bfloat16 data: a spec (numpy has no bfloat16)
                            for d in (float32, float16, bfloat16, int8, uint8, uint32))),
    (simd_and_atomics, lambda r: (r.integers(0, 16, 300).astype(np.int32), np.zeros(300, np.int32),
                                  np.zeros(18, np.int32))),
], ids=["float_ops", "int_ops", "casts", "simd_and_atomics"])
def test_op_coverage_agrees_with_cpu_executor(kernel, inputs):
    ck = enigma.compile(_jit(kernel), *inputs(np.random.default_rng(0)))
    rows = check_kernels([ck], size=300)
    assert rows[0].agree, rows[0].detail
