"""Every element type of the language as a scalar parameter and as a tensor element, end to end: a @jit on
numpy arrays (bfloat16 as uint16 bit patterns), the CPU executor through `ck(*args)` against numpy with
the documented promotion rules, and the Metal source through the real clang of enigma.verify. Also
run-time `for` loops counting down (a negative step, as Python's range)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from toolcheck import need_tool

import enigma
from enigma import Tensor, bfloat16, bool_, float16, float32, int8, int16, int32, uint8, uint16, uint32

ALL = [float32, float16, bfloat16, int32, uint32, int16, uint16, int8, uint8, bool_]


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (truncation: the test data is exact in bfloat16)."""
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def make(dtype):
    @enigma.kernel
    def k(a: Tensor[dtype], b: Tensor[dtype], c: Tensor[dtype], s: dtype, n: int32):
        i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
        if i < n:
            if enigma.const_expr(dtype is bool_):
                c[i] = (a[i] ^ b[i]) | s
            else:
                c[i] = a[i] * b[i] + s

    @enigma.jit
    def run(a, b, c, s):
        n = a.shape[0]
        k(a, b, c, s, n).launch(grid=(enigma.ceil_div(n, 64), 1, 1), block=(64, 1, 1))

    return run


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_every_dtype_as_scalar_and_tensor_element(dtype):
    rng = np.random.default_rng(1)
    n = 100
    if dtype is bool_:
        a, b, s = rng.random(n) > 0.5, rng.random(n) > 0.5, False
        want = a ^ b
    elif dtype is bfloat16:
        # small integers and halves: exact in bfloat16, products too
        av = (rng.integers(-8, 8, n) / 2).astype(np.float32)
        bv = (rng.integers(-8, 8, n) / 2).astype(np.float32)
        a, b, s = bf16_bits(av), bf16_bits(bv), 1.5
        want = bf16_bits(av * bv + np.float32(1.5))
    else:
        lo, hi = (-9, 10) if dtype.kind == "i" else (0, 10)
        a = rng.integers(lo, hi, n).astype(dtype.np)
        b = rng.integers(lo, hi, n).astype(dtype.np)
        if dtype.kind == "f":
            a, b = (a / 4).astype(dtype.np), (b / 4).astype(dtype.np)
        s = 3
        want = (a * b + dtype.np.type(s)).astype(dtype.np)  # same type: wraps like numpy for small ints
    c = np.zeros_like(a)
    ck = enigma.compile(make(dtype), a, b, c, s)
    assert [x["dtype"] for x in ck.signature["args"]] == [dtype.name] * 4 + ["int32"]
    assert ck.grid == (2, 1, 1)
    ck(a, b, c, s)  # the jit's own arguments
    np.testing.assert_array_equal(c, want)
    if dtype is bfloat16:
        assert "device bfloat* c" in ck.metal_source and "constant bfloat& s" in ck.metal_source
        np.testing.assert_array_equal(bf16_value(c), bf16_value(want))


def test_small_int_promotion_end_to_end():
    """docs/frontend.md's rules on 8/16-bit integers: int8 + int16 -> int16 (the wider type), uint8 +
    int8 -> uint8 (equal width: the unsigned type), a Python int stays weak (uint8 + 200 wraps in
    uint8), `/` is true division in float32."""
    @enigma.kernel(block=(16, 1, 1), grid=(1, 1, 1))
    def k(a: Tensor[int8, (16,)], b: Tensor[int16, (16,)], u: Tensor[uint8, (16,)],
          o16: Tensor[int16, (16,)], ou: Tensor[uint8, (16,)], of: Tensor[float32, (16,)]):
        i = enigma.thread_idx().x
        o16[i] = a[i] + b[i]           # int16
        ou[i] = u[i] + a[i] + 200      # uint8 (equal width: unsigned), 200 weak, wraps
        of[i] = a[i] / 2               # true division in float32

    a = np.arange(-8, 8, dtype=np.int8) * 15
    b = np.arange(16, dtype=np.int16) * 1000
    u = np.arange(16, dtype=np.uint8) * 16
    o16, ou, of = np.zeros(16, np.int16), np.zeros(16, np.uint8), np.zeros(16, np.float32)
    ck = enigma.compile(k)
    adds = [op.results[0].type.dtype.name for op in enigma.ir.walk(ck.ir.body) if op.name == "add"]
    assert adds == ["int16", "uint8", "uint8"], adds
    ck(a, b, u, o16, ou, of)
    np.testing.assert_array_equal(o16, a.astype(np.int16) + b)
    np.testing.assert_array_equal(ou, (u.astype(np.int32) + a.astype(np.int32) + 200).astype(np.uint8))
    np.testing.assert_array_equal(of, a.astype(np.float32) / 2)


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_every_dtype_metal_source_compiles_with_clang(dtype):
    from enigma.verify import compile_msl

    @enigma.kernel
    def k(a: Tensor[dtype], c: Tensor[dtype], o: Tensor[float32], s: dtype, n: int32):
        i = enigma.thread_idx().x
        if i < n:
            x = a[i]
            if enigma.const_expr(dtype is bool_):
                c[i] = enigma.where(x, s, ~x)
                o[i] = x.to(float32)
            elif enigma.const_expr(dtype.kind == "f"):
                y = enigma.exp(x) + enigma.exp2(x) + enigma.log(enigma.abs(x) + 1) + enigma.sqrt(x * x)
                y = y + enigma.rsqrt(x * x + 1) + enigma.sin(x) + enigma.cos(x) + enigma.tanh(x)
                y = y + enigma.floor(x) + enigma.ceil(x) + enigma.minimum(x, s) + enigma.fma(x, s, x)
                c[i] = enigma.where(x > s, y, enigma.maximum(x, s))
                o[i] = y.to(float32) + x.to(int8).to(float32) + enigma.log2(x * x + 1)
            else:
                c[i] = ((x << 1) >> 1) & s | (x ^ s) + enigma.abs(x) + x // 3 + x % 3 - ~x
                o[i] = x.to(float16).to(float32) + x.to(bfloat16).to(float32) + x / 3

    need_tool("clang++-19", "clang++")
    compile_msl(enigma.compile(k).metal_source, "enigma_kernel_k", f"k_{dtype.name}.metal")


@enigma.kernel(block=(1, 1, 1), grid=(1, 1, 1))
def count_down(a: Tensor[int32, ("n",)], o: Tensor[int32, (2,)], step: int32):  # noqa: F821, UP037
    acc = 0
    for j in range(a.shape[0] - 1, -1, -3):   # constant negative step
        acc = acc * 3 + a[j]
    o[0] = acc
    acc2 = 0
    for j in range(a.shape[0] - 1, -1, step):  # run-time step: its sign decides the comparison
        acc2 = acc2 * 3 + a[j]
    o[1] = acc2


def test_for_counts_down_with_a_negative_step():
    a = np.arange(1, 11, dtype=np.int32)
    o = np.zeros(2, np.int32)
    want = 0
    for j in range(9, -1, -3):
        want = want * 3 + int(a[j])
    want2 = 0
    for j in range(9, -1, -2):
        want2 = want2 * 3 + int(a[j])
    ck = enigma.compile(count_down)
    assert re.search(r"for \(int (v\d+) = v\d+; \1 > \(-1\); \1 \+= \(-3\)\)", ck.metal_source)
    assert re.search(r"\(step > 0 \? (v\d+) < \(-1\) : \1 > \(-1\)\)", ck.metal_source)
    ck(a, o, -2)
    assert o.tolist() == [want, want2]
    from enigma.verify import run_msl

    need_tool("clang++-19", "clang++")
    o2 = np.zeros(2, np.int32)
    run_msl(ck, a, o2, np.int32(-2))
    assert o2.tolist() == [want, want2]


@pytest.mark.needs_mlir
def test_count_down_verifies_in_mlir(mlir_opt):
    import subprocess

    from enigma.backends import mlir

    text = mlir.emit(enigma.compile(count_down).ir)
    assert "scf.while" in text  # scf.for only takes positive steps
    for _ in range(2):  # verify, then parse what mlir-opt printed
        r = subprocess.run([mlir_opt, "--allow-unregistered-dialect"], input=text, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        text = r.stdout


@enigma.kernel(block=(4, 1, 1), grid=(1, 1, 1))
def out_of_range_comparisons(a: Tensor[int8, (4,)], u: Tensor[uint8, (4,)], o: Tensor[int32, (4,)]):
    i = enigma.thread_idx().x
    x, y = a[i], u[i]
    bits = (x < 300).to(int32) + (x <= 300).to(int32) * 2 + (x > -129).to(int32) * 4 \
        + (y > -1).to(int32) * 8 + (y >= 256).to(int32) * 16 + (y == 256).to(int32) * 32 \
        + (y != 256).to(int32) * 64 + (300 > x).to(int32) * 128 + (x < 100).to(int32) * 256
    o[i] = bits


def test_comparisons_with_python_ints_outside_the_type_use_the_true_values():
    """NumPy 2 semantics: int8 < 300 is true for every int8 (not `x < 44` after wrapping 300)."""
    a = np.array([-128, 0, 100, 127], np.int8)
    u = np.array([0, 1, 200, 255], np.uint8)
    o = np.zeros(4, np.int32)
    enigma.compile(out_of_range_comparisons)(a, u, o)
    want = 1 + 2 + 4 + 8 + 0 + 0 + 64 + 128
    assert o.tolist() == [want + 256 * int(v < 100) for v in a.tolist()]


def test_arithmetic_with_a_python_int_outside_the_type_is_an_error():
    @enigma.kernel
    def k(a: Tensor[int8], o: Tensor[int8]):
        i = enigma.thread_idx().x
        o[i] = a[i] + 300  # <-

    with pytest.raises(enigma.EnigmaError) as info:
        enigma.compile(k)
    assert isinstance(info.value, TypeError)
    assert info.value.message == ("the Python int 300 does not fit int8, the type of the other operand of + "
                                  "(it would wrap to 44)")
    assert info.value.source_line == "o[i] = a[i] + 300  # <-"


def test_static_shift_amounts_must_be_inside_the_width():
    @enigma.kernel
    def k(a: Tensor[int32], u: Tensor[uint8]):
        i = enigma.thread_idx().x
        a[i] = (a[i] << 31) >> 0
        u[i] = u[i] >> 8  # <-

    with pytest.raises(enigma.EnigmaError) as info:
        enigma.compile(k)
    assert info.value.message == ("shift amount 8 is outside 0..7 for uint8 (the result would be "
                                  "unspecified: FORMAT.md section 4)")
    assert info.value.source_line.startswith("u[i] = u[i] >> 8")


def _abs_helper(x):
    r = -x
    if x > 0:  # a plain helper: its `if` is not compiled
        r = x
    return r


def test_if_on_a_traced_value_in_a_plain_helper_points_to_enigma_func():
    @enigma.kernel
    def k(a: Tensor[float32]):
        i = enigma.thread_idx().x
        a[i] = _abs_helper(a[i])

    with pytest.raises(TypeError) as info:
        enigma.compile(k)
    assert info.value.source_line == "if x > 0:  # a plain helper: its `if` is not compiled"
    assert "@enigma.func" in info.value.hint
    compiled_helper = enigma.func(_abs_helper)

    @enigma.kernel(block=(4, 1, 1), grid=(1, 1, 1))
    def k2(a: Tensor[float32, (4,)]):
        i = enigma.thread_idx().x
        a[i] = compiled_helper(a[i])

    a = np.array([-2, -1, 0, 3], np.float32)
    enigma.compile(k2)(a)
    assert a.tolist() == [2, 1, 0, 3]
