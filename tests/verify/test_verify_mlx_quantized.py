"""MLX's quantized kernels in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): quantized.h's affine quantization (affine_quantize, affine_dequantize, qmv, qmv_fast,
qvm, qmm_t, qmm_n over 2, 4 and 8 bits, affine_gather_qmv_fast for mixture of experts) and
fp_quantized.h's fp4 (mxfp4 and nvfp4) qmv, against numpy on the same values."""
from __future__ import annotations

import numpy as np
import pytest
from mlx_corpus import (
    F32,
    add_member,
    case_rng,
    compile_kernel,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    register_cases,
    source,
    to_t,
    val_t,
)

pytestmark = pytest.mark.needs_clang


# ---------------------------------------------------------------------------------------------------
# affine quantization (quantized.h with quantized_utils.h and steel/gemm/gemm.h, as MLX's
# quantized.metal includes them): w holds `bits`-bit values packed little-endian into uint32
# (value i of a word at bit bits * i), one scale and bias per group of `group_size` along K:
# W = scale * q + bias. qmv/qmm_t take W as (N, K), qvm/qmm_n as (K, N) (packed along N).

# case -> (kernel, T, group_size, bits, M, N, K, extra template arguments)
QUANT = {
    "qmv_fast_f32_b4": ("affine_qmv_fast", "float", 64, 4, 3, 16, 1024, ("false",)),
    "qmv_fast_f16_b8": ("affine_qmv_fast", "half", 32, 8, 2, 24, 512, ("false",)),
    "qmv_fast_bf16_b4_partial": ("affine_qmv_fast", "bfloat16_t", 128, 4, 2, 20, 512, ("false", "true")),
    "qmv_f32_b4": ("affine_qmv", "float", 64, 4, 3, 20, 320, ("false",)),
    "qmv_f16_b2": ("affine_qmv", "half", 32, 2, 2, 12, 160, ("false",)),
    "qvm_f32_b4": ("affine_qvm", "float", 64, 4, 3, 128, 96, ("false",)),
    "qmm_t_f32_b4": ("affine_qmm_t", "float", 64, 4, 40, 48, 256, ("false", "false")),
    "qmm_t_f16_b8_aligned": ("affine_qmm_t", "half", 64, 8, 33, 64, 128, ("true", "false")),
    "qmm_n_f32_b4": ("affine_qmm_n", "float", 64, 4, 40, 128, 96, ("false",)),
    "dequantize_f32_b4": ("affine_dequantize", "float", 64, 4, 0, 8, 256, ()),
    "dequantize_f16_b8": ("affine_dequantize", "half", 32, 8, 0, 6, 128, ()),
}


def _quantize(rng: np.random.Generator, rows: int, cols: int, bits: int, gs: int, t: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(packed uint32 (rows, cols * bits / 32), scales, biases (rows, cols / gs) in T, and the
    dequantized matrix in float64 from the values T holds)."""
    q = rng.integers(0, 2 ** bits, (rows, cols)).astype(np.uint32)
    scales = to_t(t, rng.random((rows, cols // gs)) * 0.1 + 0.01)
    biases = to_t(t, rng.standard_normal((rows, cols // gs)) * 0.1)
    per = 32 // bits
    packed = np.zeros((rows, cols // per), np.uint32)
    for i in range(per):
        packed |= q[:, i::per] << np.uint32(bits * i)
    deq = np.repeat(val_t(t, scales), gs, 1) * q + np.repeat(val_t(t, biases), gs, 1)
    return packed, scales, biases, deq


def _round_away(x: np.ndarray) -> np.ndarray:
    """Metal's round: halfway cases away from zero."""
    return (np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))).astype(x.dtype)


@pytest.mark.parametrize("gs,bits", [(64, 4), (32, 8), (128, 2)])
def test_mlx_affine_quantize(gs, bits, mlx):
    """affine_quantize (a simdgroup per group of gs values: min and max by simd_min/simd_max, the
    packed values gathered by simd_shuffle_down) against the same arithmetic in numpy float32:
    the scale snapped so that the larger-magnitude edge is exactly representable."""

    host = f"affine_quantize_float_gs{gs}_b{bits}"
    src = source("quantized", host, "affine_quantize", "float", str(gs), str(bits))
    rows, cols = 6, 256
    w = case_rng(host).standard_normal((rows, cols)).astype(F32)
    packed = np.zeros(rows * cols * bits // 8, np.uint8)
    scales, biases = np.zeros((rows, cols // gs), F32), np.zeros((rows, cols // gs), F32)
    threads = rows * cols // (gs // 32)  # each thread reduces gs / 32 values
    compile_kernel(src, host, mlx).run({0: w, 1: packed, 2: scales, 3: biases},
                                       grid=(threads // 64, 1, 1), block=(64, 1, 1))
    g = w.reshape(rows, cols // gs, gs)
    n_bins = np.float32(2 ** bits - 1)
    lo, hi = g.min(-1), g.max(-1)
    scale = np.maximum((hi - lo) / n_bins, np.float32(1e-7))
    side = np.abs(lo) > np.abs(hi)
    scale = np.where(side, scale, -scale)
    edge = np.where(side, lo, hi)
    q0 = _round_away(edge / scale)
    scale = np.where(q0 == 0, scale, edge / np.where(q0 == 0, 1, q0)).astype(F32)
    bias = np.where(q0 == 0, 0, edge).astype(F32)
    np.testing.assert_array_equal(scales, scale)
    np.testing.assert_array_equal(biases, bias)
    q = np.minimum(_round_away((g - bias[..., None]) / scale[..., None]), n_bins).astype(np.uint32)
    per = 8 // bits
    got = np.stack([(packed >> np.uint8(bits * i)) & np.uint8(2 ** bits - 1) for i in range(per)], -1)
    np.testing.assert_array_equal(got.reshape(rows, cols), q.reshape(rows, cols))


def test_mlx_affine_gather_qmv_fast(mlx):
    """affine_gather_qmv_fast (mixture of experts): for each of 5 entries, x batch lhs[t] times the
    4-bit quantized weights of expert rhs[t] (3 experts of 16 x 512), as in MLX's gather_qmm."""
    from enigma.verify import compile_msl

    host = "affine_gather_qmv_fast_float_gs64_b4"
    src = source("quantized", host, "affine_gather_qmv_fast", "float", "64", "4")
    prog = compile_msl(src, host, include_dirs=[mlx])
    rng = case_rng(host)
    n, k, gs = 16, 512, 64
    experts = [_quantize(rng, n, k, 4, gs, "float") for _ in range(3)]
    w = np.stack([e[0] for e in experts])
    scales, biases = np.stack([e[1] for e in experts]), np.stack([e[2] for e in experts])
    x = rng.standard_normal((2, 1, k)).astype(F32)
    lhs, rhs = np.array([0, 1, 1, 0, 1], np.uint32), np.array([2, 0, 1, 1, 2], np.uint32)
    y = np.zeros((5, 1, n), F32)
    one = np.array([1], np.int64)
    bufs = dict(enumerate([w, scales, biases, x, lhs, rhs, y, np.int32(k), np.int32(n), np.int32(1),
                           np.array([2, 1, k], np.int32), np.array([k], np.int64), np.int32(1),
                           np.array([3], np.int32), np.array([n * k // 8], np.int64),
                           np.array([n * k // gs], np.int64), np.array([n * k // gs], np.int64), np.int32(1),
                           np.array([5], np.int32), one, one]))
    prog.run(bufs, grid=(1, n // 8, 5), block=(32, 2, 1))
    want = np.stack([x[lhs[i], 0].astype(np.float64) @ experts[rhs[i]][3].T for i in range(5)])
    np.testing.assert_allclose(y[:, 0], want, rtol=2e-5, atol=2e-5 * float(np.abs(want).max()))


FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def _e4m3(b: np.ndarray) -> np.ndarray:
    """fp8 e4m3 bytes (no NaNs among them) as float64."""
    b = b.astype(np.int64)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * 2.0 ** (e - 7))
    return np.where(b & 0x80, -v, v)


@pytest.mark.parametrize("kernel,t,gs,n,k", [("fp_qmv_fast", "float", 32, 16, 512),
                                             ("fp_qmv_fast", "half", 16, 24, 512),
                                             ("fp_qmv", "float", 32, 20, 320)])
def test_mlx_fp4_qmv(kernel, t, gs, n, k, mlx):
    """fp_quantized.h: fp4 (e2m1) weights, 8 per uint32, with a power-of-two e8m0 scale per 32
    (mxfp4) or an fp8 e4m3 scale per 16 (nvfp4), against numpy with the same values decoded."""

    host = f"{kernel}_{t}_gs{gs}_b4"
    src = source("fp_quantized", host, kernel, t, str(gs), "4", "false")
    prog = compile_kernel(src, host, mlx)
    rng = case_rng(host)
    m = 3
    q = rng.integers(0, 16, (n, k)).astype(np.uint32)
    w = np.zeros((n, k // 8), np.uint32)
    for i in range(8):
        w |= q[:, i::8] << np.uint32(4 * i)
    if gs == 32:
        s = rng.integers(122, 130, (n, k // gs)).astype(np.uint8)  # 2^(s - 127)
        scale = 2.0 ** (s.astype(np.float64) - 127)
    else:
        s = rng.integers(0x28, 0x48, (n, k // gs)).astype(np.uint8)  # e4m3 of about 1/8 to 2
        scale = _e4m3(s)
    x = to_t(t, rng.standard_normal((m, k)))
    y = np.zeros((m, n), x.dtype)
    i32, i64 = np.zeros(1, np.int32), np.zeros(1, np.int64)
    bufs = dict(enumerate([w, s, np.ones(1, F32), x, y, np.int32(k), np.int32(n), np.int32(0), i32, i64,
                           np.int32(0), i32, i64, i64]))
    prog.run(bufs, grid=(m, -(-n // 8), 1), block=(32, 2, 1))
    want = val_t(t, x) @ (FP4[q] * np.repeat(scale, gs, 1)).T
    tol = {"float": 2e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, y), want, rtol=tol, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize("case", sorted(QUANT))
def test_mlx_quantized(case, mlx):
    """Launched as MLX does: qmv and qmv_fast 2 simdgroups of 4 rows each per group, grid (M, N / 8);
    qvm 2 simdgroups of 32 columns, grid (M, N / 64); qmm_t and qmm_n 32 x 2 x 2 threads per 32 x 32
    tile of y; dequantize a thread per byte of w."""

    kernel, t, gs, bits, m, n, k, extra = QUANT[case]
    host = f"{case}_gs{gs}"
    src = source("quantized", host, kernel, t, str(gs), str(bits), *extra)
    prog = compile_kernel(src, host, mlx)
    rng = case_rng(case)
    transposed = kernel in ("affine_qmv_fast", "affine_qmv", "affine_qmm_t", "affine_dequantize")
    w, scales, biases, deq = _quantize(rng, n, k, bits, gs, t) if transposed else \
        _quantize(rng, k, n, bits, gs, t)
    if kernel == "affine_dequantize":
        out = np.zeros((n, k), scales.dtype)
        nbytes = w.nbytes
        prog.run({0: w.view(np.uint8), 1: scales, 2: biases, 3: out}, grid=(nbytes // 32, 1, 1),
                 block=(32, 1, 1))
        tol = {"float": 1e-6, "half": 1e-3}[t]
        np.testing.assert_allclose(val_t(t, out), deq, rtol=tol, atol=tol)
        return
    x = to_t(t, rng.standard_normal((m, k)))
    y = np.zeros((m, n), x.dtype)
    i32, i64 = np.zeros(1, np.int32), np.zeros(1, np.int64)
    batch = [np.int32(0), i32, i64, np.int32(0), i32, i64, i64, i64]  # not batched
    if kernel in ("affine_qmm_t", "affine_qmm_n"):
        bufs = dict(enumerate([w, scales, biases, x, y, np.int32(k), np.int32(n), np.int32(m), *batch]))
        launch = dict(grid=(-(-n // 32), -(-m // 32), 1), block=(32, 2, 2))
    else:
        bufs = dict(enumerate([w, scales, biases, x, y, np.int32(k), np.int32(n), *batch]))
        per_group = 64 if kernel == "affine_qvm" else 8
        launch = dict(grid=(m, -(-n // per_group), 1), block=(32, 2, 1))
    prog.run(bufs, **launch)
    want = val_t(t, x) @ (deq.T if transposed else deq)
    tol = {"float": 2e-5, "half": 2e-3, "bfloat16_t": 1e-2}[t]
    np.testing.assert_allclose(val_t(t, y), want, rtol=tol, atol=tol * float(np.abs(want).max()))


for _case, (_kernel, _t, _gs, _bits, *_, _extra) in QUANT.items():
    add_member("quantized", "quantized", f"{_case}_gs{_gs}", _kernel, _t, str(_gs), str(_bits), *_extra)
register_cases("quantized", "quantized", test_mlx_affine_quantize,
               lambda gs, bits: (f"affine_quantize_float_gs{gs}_b{bits}", "affine_quantize",
                                 ("float", str(gs), str(bits))))
