"""Op and dtype coverage of the emitter + compatibility layer: small kernels using every math op,
integer arithmetic with negative operands, casts between dtypes, float16/bfloat16/int8/uint8 tensors,
shuffles and atomics, each checked (through enigma.verify.check) against the runtime's CPU executor,
which implements FORMAT.md's op semantics."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import need_tool

import enigma
from enigma import Tensor, bfloat16, float16, float32, int8, int32, uint8, uint16, uint32
from enigma.verify import run_msl
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


# ---------------------------------------------------------------------------------------------------
# every op defined for every input (docs/abi.md, "Semantics of every op"): the emitted Metal, compiled
# by clang through enigma.verify, computes bit for bit what the CPU executor (the op table) computes

def _both(kernel, *arrays, specs=None, vec_width=0):
    """(CPU executor's outputs, enigma.verify's outputs, Metal source) for `arrays` (+ n)."""
    n = np.int32(len(arrays[0]))
    ck = enigma.compile(_jit(kernel), *(specs or arrays), vec_width=vec_width)
    cpu = [np.array(a, copy=True) for a in arrays]
    ck.kernel(*cpu, n, device="cpu")
    metal = [np.array(a, copy=True) for a in arrays]
    run_msl(ck, *metal, n)
    return cpu, metal, ck.metal_source


def _same(cpu, metal):
    """Bit for bit, except that any NaN equals any NaN (a NaN's sign and payload are not specified)."""
    for c, m in zip(cpu, metal):
        if c.dtype.kind == "f":
            nan = np.isnan(c)
            assert (nan == np.isnan(m)).all(), (c, m)
            c, m = c[~nan], m[~nan]
        assert c.tobytes() == m.tobytes(), (c, m)


@enigma.kernel
def int_edges(a: Tensor[int32], b: Tensor[int32], q: Tensor[int32], r: Tensor[int32], sl: Tensor[int32],
              sr: Tensor[int32], ab: Tensor[int32], ar: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        x, y = a[i], b[i]
        q[i] = x // y
        r[i] = x % y
        sl[i] = x << y
        sr[i] = x >> y
        ab[i] = enigma.abs(x) + (-x) * 0
        ar[i] = x * y + (x - y) + enigma.fma(x, y, x)


def test_integer_edge_cases_are_defined_and_agree():
    MIN = -2**31
    a = np.array([MIN, MIN, 7, -7, 5, -1, MIN, 2**31 - 1, 3, -8, 1, 12345], np.int32)
    b = np.array([-1, 0, 0, 2, -3, 31, 1, 2, 32, 33, -1, 40], np.int32)
    outs = [np.zeros(12, np.int32) for _ in range(6)]
    cpu, metal, src = _both(int_edges, a, b, *outs)
    _same(cpu, metal)
    q, r, sl, sr, ab = cpu[2:7]
    assert list(q[:6]) == [MIN, MIN, 7, -3, -1, 0] and list(r[:6]) == [0, 0, 0, -1, 2, -1]
    assert sl[5] == MIN and sl[8] == 3 and sl[9] == -16 and sl[10] == MIN  # amounts modulo 32
    assert sr[8] == 3 and sr[9] == -4
    assert ab[0] == MIN  # abs(MIN) wraps
    assert "enigma_div(" in src and "enigma_rem(" in src and "uint(" in src


@enigma.kernel
def narrow_edges(a: Tensor[int8], b: Tensor[int8], u: Tensor[uint16], v: Tensor[uint16], q: Tensor[int8],
                 p: Tensor[uint16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        q[i] = a[i] // b[i] + (a[i] << b[i]) + enigma.abs(a[i])
        p[i] = u[i] * v[i] + u[i] // v[i] + (u[i] >> v[i])


def test_narrow_integer_edge_cases_agree():
    a = np.array([-128, -128, 100, -7, 1, 3], np.int8)
    b = np.array([-1, 0, 0, 2, 9, -1], np.int8)
    u = np.array([65535, 7, 65535, 1, 256, 3], np.uint16)
    v = np.array([65535, 0, 2, 17, 18, 1], np.uint16)
    cpu, metal, _ = _both(narrow_edges, a, b, u, v, np.zeros(6, np.int8), np.zeros(6, np.uint16))
    _same(cpu, metal)
    # 65535 * 65535 wraps to 1 (no int overflow from C++'s promotion), 65535 // 65535 = 1, and
    # 65535 >> (65535 mod 16) = 1; 7 // 0 = 7 and 7 >> (0 mod 16) = 7
    assert cpu[5][0] == 3 and cpu[5][1] == 0 + 7 + 7


@enigma.kernel
def conversions(x: Tensor[float32], h: Tensor[float16], k: Tensor[int32], i32: Tensor[int32],
                u8: Tensor[uint8], i8: Tensor[int8], u32: Tensor[uint32], hi: Tensor[int32],
                f16: Tensor[float16], g16: Tensor[float16], bf: Tensor[bfloat16], keep: Tensor[float32],
                n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        keep[i] = x[i] + 1.0  # a store before an out-of-range conversion survives
        v = x[i]
        i32[i] = v.to(int32)
        u8[i] = v.to(uint8)
        i8[i] = (v * 300.0).to(int8)
        u32[i] = v.to(uint32)
        hi[i] = h[i].to(enigma.int16).to(int32)
        f16[i] = (k[i] << 22).to(float16)
        g16[i] = k[i].to(float16)
        bf[i] = v.to(bfloat16)


def test_conversions_are_defined_and_agree():
    nan, inf = np.nan, np.inf
    x = np.array([3e10, -3e10, nan, -2.9, 300.0, -1.5, 5e9, inf, -inf, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 2.5],
                 np.float32)
    h = np.array([40000, -40000, nan, inf, -inf, 3.9, -3.9, 0, 1, 2, 65504, -65504], np.float16)
    k = np.array([1, -1, 16, 0, 2, 3, 65520, -70000, 65519, 4, 5, 6], np.int32)
    outs = [np.zeros(12, d) for d in (np.int32, np.uint8, np.int8, np.uint32, np.int32, np.float16,
                                      np.float16, np.uint16, np.float32)]
    specs = [x, h, k, *outs[:7], enigma.TensorSpec(bfloat16, ("n",)), outs[8]]
    cpu, metal, src = _both(conversions, x, h, k, *outs, specs=specs)
    _same(cpu, metal)
    i32, u8, i8, u32, hi, f16, g16, bf, keep = cpu[3:]
    assert list(i32[:4]) == [2**31 - 1, -2**31, 0, -2] and list(u8[:6]) == [255, 0, 0, 0, 255, 0]
    assert u32[6] == 4294967295 and u32[7] == 4294967295 and u32[8] == 0
    assert list(hi[:5]) == [32767, -32768, 0, 32767, -32768]
    assert list(f16[:4]) == [np.inf, -np.inf, np.inf, 0.0]  # (k << 22) past float16's range: inf
    assert g16[6] == np.inf and g16[7] == -np.inf and g16[8] == np.float16(65504)
    np.testing.assert_array_equal(keep, x + np.float32(1))
    assert list(bf[9:11]) == [0x3F80, 0x3F82]  # float -> bfloat16 ties to even (dispatch.cpp == ops.py)
    assert "enigma_cvt_int(" in src and "half(float(" in src


@enigma.kernel
def signed_zeros(a: Tensor[float32], b: Tensor[float32], lo: Tensor[float32], hi: Tensor[float32],
                 h: Tensor[float16], hl: Tensor[float16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        lo[i] = 1.0 / enigma.minimum(a[i], b[i])
        hi[i] = 1.0 / enigma.maximum(a[i], b[i])
        hl[i] = enigma.minimum(h[i], -h[i])


def test_min_max_signed_zero_rule_agrees():
    a = np.array([0.0, -0.0, np.nan, 1.0, -0.0, 0.0], np.float32)
    b = np.array([-0.0, 0.0, -0.0, np.nan, -0.0, 0.0], np.float32)
    h = np.array([0.0, -0.0, 1.0, np.nan, 2.0, 0.0], np.float16)
    outs = [np.zeros(6, np.float32), np.zeros(6, np.float32), h, np.zeros(6, np.float16)]
    cpu, metal, src = _both(signed_zeros, a, b, *outs)
    _same(cpu, metal)
    lo, hi, _, hl = cpu[2:]
    assert list(lo) == [-np.inf, -np.inf, -np.inf, 1.0, -np.inf, np.inf]
    assert list(hi) == [np.inf, np.inf, -np.inf, 1.0, -np.inf, np.inf]
    assert np.signbit(hl[0]) and np.signbit(hl[1])
    assert "enigma_min(" in src


@enigma.kernel
def fused(h: Tensor[float16], g: Tensor[float16], x: Tensor[float32], out_h: Tensor[float16],
          out_x: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        out_h[i] = enigma.fma(h[i], h[i], g[i])
        out_x[i] = enigma.fma(x[i], x[i], -1.0)


def test_fma_rounds_once_on_both_executors():
    h = np.array([256.0, 1.0 + 2**-10, 3.0], np.float16)
    g = np.array([-65504.0, -1.0, 0.5], np.float16)
    x = np.array([1.0 + 2**-12, 3.0, 1.0 + 2**-23], np.float32)
    cpu, metal, _ = _both(fused, h, g, x, np.zeros(3, np.float16), np.zeros(3, np.float32))
    _same(cpu, metal)
    assert cpu[3][0] == 32.0 and cpu[3][1] == np.float16(2**-9)
    assert cpu[4][0] == np.float32(2**-11 + 2**-24)  # unfused: 2**-11


@enigma.kernel
def bool_vectors(a: Tensor[float32], b: Tensor[float32], out: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        m, k = a[i] > 0.0, b[i] > 0.0
        c = enigma.where(m >= k, m, k) ^ (m < k)
        out[i] = enigma.where(c | (m == k), a[i], b[i])


def test_vec_width_4_over_bool_values_agrees():
    """Comparisons, select and logic on bool4 (Metal has no ordering or select of bool vectors: the
    printer spells them as lane-wise logic, MSL_BOOL_VECTOR)."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(256).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    cpu, metal, src = _both(bool_vectors, a, b, np.zeros(256, np.float32), vec_width=4)
    _same(cpu, metal)
    m, k = a > 0, b > 0
    c = np.where(m >= k, m, k) ^ (m < k)
    np.testing.assert_array_equal(cpu[2], np.where(c | (m == k), a, b))
    assert "bool4" in src and "select(" not in src.replace("select(v", "")  # no select of bool4 values


@enigma.kernel
def widened_select(c: Tensor[int32], x: Tensor[enigma.int16], out: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        out[i] = enigma.where(c[i].to(enigma.bool_), x[i].to(uint32).to(float32), 1.5)


def test_a_vector_select_of_sign_extended_values_agrees():
    """Fuzzer seed 101945: with vec_width=2, `select` of float2(uint2(short2)) gave the zero-extended
    value through enigma.verify (35536 for -30000): the layer's vector select built its result from
    an uninitialised vector, which clang's optimiser mishandled; it now starts from `a`."""
    c = np.array([1, 1, 1, 0] * 16, np.int32)
    x = np.array([-30000, 5, -1, 7] * 16, np.int16)
    cpu, metal, src = _both(widened_select, c, x, np.zeros(64, np.float32), vec_width=2)
    assert "select(" in src
    _same(cpu, metal)
    np.testing.assert_array_equal(cpu[2], np.where(c != 0, x.astype(np.uint32).astype(np.float32), 1.5))


# ---------------------------------------------------------------------------------------------------
# math added through the op table: its row, its Metal spelling, the compatibility header, docs, tests

@enigma.kernel
def powers(x: Tensor[float32], y: Tensor[float32], h: Tensor[float16], k: Tensor[int32],
           out: Tensor[float32], oh: Tensor[float16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        out[i] = enigma.pow(x[i], y[i]) + enigma.pow(k[i], 2) * 0.0  # int arguments become float32
        oh[i] = enigma.pow(h[i], h[i])


def test_pow_agrees_and_follows_c():
    x = np.array([2.0, -8.0, -8.0, 0.0, np.nan, 10.0, -0.0, 1.0], np.float32)
    y = np.array([0.5, 3.0, 1 / 3, -1.0, 0.0, 50.0, -3.0, np.nan], np.float32)
    h = np.array([2.0, 0.5, 3.0, -2.0, 1.0, 0.0, 4.0, 1.5], np.float16)
    k = np.arange(8, dtype=np.int32)
    cpu, metal, src = _both(powers, x, y, h, k, np.zeros(8, np.float32), np.zeros(8, np.float16))
    for c, m in zip(cpu[4:], metal[4:]):
        np.testing.assert_allclose(c, m, rtol=1e-6, atol=0)  # NaN positions equal too
    want = [np.float32(2**0.5), -512.0, np.inf, 1.0, np.inf, -np.inf, 1.0]
    assert list(cpu[4][[0, 1, 3, 4, 5, 6, 7]]) == want
    assert np.isnan(cpu[4][2])  # negative base, fractional exponent
    assert "pow(" in src
    assert enigma.pow(2, 10) == 1024.0 and enigma.pow(0.0, -1.0) == float("inf")  # Python numbers


@enigma.kernel
def more_math(x: Tensor[float32], y: Tensor[float32], h: Tensor[float16], o: Tensor[float32],
              e: Tensor[float32], eh: Tensor[float16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        v, w = x[i], y[i]
        u = v * 0.25  # inside [-1, 1] for asin/acos
        o[i] = enigma.sinh(v) + enigma.cosh(v) + enigma.asin(u) + enigma.acos(u) + enigma.atan(v) \
            + enigma.atan2(v, w)
        e[i] = enigma.erf(v)
        eh[i] = enigma.erf(h[i])


def test_sinh_cosh_asin_acos_atan_atan2_erf_agree_with_numpy():
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-4, 4, 250), [0.0, -0.0, 1e-30, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    y = rng.standard_normal(x.size).astype(np.float32)
    h = x.astype(np.float16)
    outs = [np.zeros(x.size, np.float32), np.zeros(x.size, np.float32), np.zeros(x.size, np.float16)]
    cpu, metal, src = _both(more_math, x, y, h, *outs)
    # libm vs numpy: a few ulp of each term (sinh(-4) + cosh(-4) cancels terms near 27)
    np.testing.assert_allclose(cpu[3], metal[3], rtol=2e-6, atol=2e-5)
    np.testing.assert_allclose(cpu[4], metal[4], rtol=2e-7, atol=0)  # the same steps; exp within an ulp
    np.testing.assert_array_equal(cpu[5], metal[5])
    xd = x[:250].astype(np.float64)
    u = xd * 0.25
    want = np.sinh(xd) + np.cosh(xd) + np.arcsin(u) + np.arccos(u) + np.arctan(xd) + np.arctan2(xd, y[:250])
    np.testing.assert_allclose(cpu[3][:250], want, rtol=1e-5, atol=1e-5)
    assert "inline float enigma_erf(float x)" in src and "half(enigma_erf(float(" in src
    np.testing.assert_allclose(cpu[4][-6:-1], [0.0, 0.0, 1e-30 * 2 / np.sqrt(np.pi), 1.0, -1.0], rtol=3e-7)
    assert np.signbit(cpu[4][-5]) and np.isnan(cpu[4][-1])


def test_erf_is_within_its_documented_accuracy():
    """ops.py: Enigma's erf (Metal has none) is within 3e-7 relative of the exact erf in float32."""
    import math

    from enigma_runtime import ops
    xs = np.concatenate([np.linspace(-6, 6, 20001), np.geomspace(1e-38, 6, 20000),
                         -np.geomspace(1e-30, 6, 2000)]).astype(np.float32)
    got = ops.apply("erf", float32, float32, xs).astype(np.float64)
    want = np.array([math.erf(float(v)) for v in xs])
    assert (np.abs(got - want) <= 3e-7 * np.abs(want)).all()
    assert enigma.erf(0.5) == math.erf(0.5) and enigma.atan2(1.0, -1.0) == math.atan2(1.0, -1.0)
    assert math.isnan(enigma.asin(2.0)) and enigma.sinh(1000.0) == math.inf  # C's results, not errors


@enigma.kernel
def to_bfloat(x: Tensor[float32], bf: Tensor[bfloat16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        bf[i] = x[i].to(bfloat16)


def test_verify_runtime_bfloat_rounding_is_the_op_tables():
    """enigma.verify's runtime rounds float -> bfloat in C (dispatch.cpp, for clang); it must be the
    op table's rounding (DType.round / bf16_round) bit for bit: ties to even, NaN stays NaN, overflow
    to inf, subnormals."""
    from enigma_runtime.dtypes import bf16_to_bits
    rng = np.random.default_rng(11)
    hi = rng.integers(0, 1 << 16, 4000, dtype=np.uint32) << 16
    lo = np.array([0x8000, 0x7FFF, 0x8001, 0, 0xFFFF, 0x18000 & 0xFFFF], np.uint32)
    bits = (hi + lo[rng.integers(0, lo.size, hi.size)]).astype(np.uint32)
    bits[:6] = [0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0x7FC00001, 0x00008000, 0x3F818000]
    x = bits.view(np.float32)
    bf = np.zeros(x.size, np.uint16)
    cpu, metal, _ = _both(to_bfloat, x, bf, specs=[x, enigma.TensorSpec(bfloat16, ("n",))])
    want = bf16_to_bits(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(metal[1][~nan], want[~nan])
    np.testing.assert_array_equal(cpu[1][~nan], want[~nan])
    m = metal[1][nan]
    assert nan.any() and (((m & 0x7F80) == 0x7F80) & ((m & 0x7F) != 0)).all()  # every NaN stays a NaN


@enigma.kernel
def long_loop(start: Tensor[int32], out: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        count = 0
        for _ in range(start[i], 2147483647, 4):  # the last j + 4 would pass INT_MAX
            count += 1
        for _ in range(start[i] - 2147483647, start[i] - 2147483647 - 10, -3):  # and below INT_MIN
            count += 100
        out[i] = count


def test_loop_increment_near_the_int_range_is_defined():
    start = np.array([2147483640, 2147483646, 2147483600], np.int32)
    cpu, metal, src = _both(long_loop, start, np.zeros(3, np.int32))
    _same(cpu, metal)
    assert list(cpu[1]) == [2 + 400, 1 + 400, 12 + 400]
    assert "uint(2147483647) - uint(" in src  # the guarded increment
