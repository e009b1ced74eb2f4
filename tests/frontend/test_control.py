"""Corners of the control-flow rewrite: nesting, closures, swaps, helpers, static loops with break."""
from __future__ import annotations

import interp
import numpy as np
import pytest

import enigma
from enigma import Constexpr, Tensor, float32, int32, ir


def run1(kernel, *args, grid=(1, 1, 1), block=(1, 1, 1)):
    k = kernel.trace()
    interp.run(k, list(args), grid, block)
    return k


def test_nested_loops_with_if_carry_the_right_values():
    @enigma.kernel
    def k(x: Tensor[int32, ("m", "n")], out: Tensor[int32]):  # noqa: F821, UP037
        total = 0
        odd = 0
        for r in range(x.shape[0]):
            for c in range(x.shape[1]):
                v = x[r, c]
                if v % 2 == 1:
                    odd += 1
                else:
                    total += v
        out[0] = total
        out[1] = odd

    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    out = np.zeros(2, np.int32)
    kern = run1(k, x, out)
    assert out.tolist() == [x[x % 2 == 0].sum(), (x % 2 == 1).sum()]
    outer = next(op for op in kern.body.ops if op.name == "for")
    assert len(outer.results) == 2 and [op.name for op in outer.regions[0].ops].count("for") == 1


def test_swap_in_dynamic_if_and_closure_constants():
    SCALE = 3

    @enigma.kernel
    def k(x: Tensor[int32]):
        a = x[0]
        b = x[1]
        if a > b:
            a, b = b, a
        x[0] = a * SCALE
        x[1] = b * SCALE

    x = np.array([5, 2], np.int32)
    run1(k, x)
    assert x.tolist() == [6, 15]


def test_static_while_with_break_and_static_if_return():
    @enigma.kernel
    def k(x: Tensor[int32], LIMIT: Constexpr[int] = 3):
        j = 0
        while j < 10:
            if j == LIMIT:
                break
            x[j] = j + 100
            j += 1
        if LIMIT > 5:
            return
        x[5] = 7

    x = np.zeros(8, np.int32)
    kern = run1(k, x)
    assert x.tolist() == [100, 101, 102, 0, 0, 7, 0, 0]
    assert not [op for op in ir.walk(kern.body) if op.name in ("if", "while", "for")]


def test_device_function_helper():
    @enigma.func
    def clamp01(v):
        if v < 0.0:
            v = 0.0
        elif v > 1.0:
            v = 1.0
        return v

    @enigma.kernel
    def k(x: Tensor[float32]):
        i = enigma.thread_idx().x
        x[i] = clamp01(x[i])

    x = np.array([-1.0, 0.25, 3.0], np.float32)
    run1(k, x, block=(3, 1, 1))
    assert x.tolist() == [0.0, 0.25, 1.0]


def test_tensor_augmented_assignment_and_while_on_traced():
    @enigma.kernel
    def k(x: Tensor[int32], n: int32):
        i = enigma.thread_idx().x
        j = i
        while j < n:
            x[j] += 1
            j += enigma.block_dim().x

    x = np.zeros(10, np.int32)
    run1(k, x, 10, block=(4, 1, 1))
    assert x.tolist() == [1] * 10


def test_specialize_variants_and_bare_compile_with_arrays():
    @enigma.kernel(specialize=[{"x": enigma.float16, "N": 8}])
    def k(x: Tensor[float32], N: Constexpr[int] = 4):
        for j in enigma.range_constexpr(N):
            x[j] = x[j] * 2

    base, half = k.variants()
    assert base.trace().args[0].dtype == float32 and len(list(ir.walk(base.trace().body))) > 0
    kh = half.trace()
    assert kh.args[0].dtype == enigma.float16
    assert sum(op.name == "store" for op in ir.walk(kh.body)) == 8
    ck = enigma.compile(half, np.zeros(4, np.float16))
    assert ck.ir.args[0].dtype == enigma.float16 and ck.grid is None
    # every variant has its own Metal function, named after its values (one .metallib holds them all)
    assert enigma.compile(base).kernel_name == "enigma_kernel_k"
    assert ck.kernel_name == "enigma_kernel_k_8_f16" == ck.signature["kernel_name"]
    assert "kernel void enigma_kernel_k_8_f16(" in ck.metal_source
    # enigma.compile picks the specialisation that fits the arguments, as the build and the runtime do
    assert enigma.compile(k, np.zeros(4, np.float16)).kernel_name == "enigma_kernel_k_8_f16"
    with pytest.raises(enigma.EnigmaError, match="got a int32 tensor"):
        enigma.compile(k, np.zeros(4, np.int32))  # no specialisation fits


def test_variant_names_stay_distinct():
    @enigma.kernel(specialize=[{"x": enigma.float16}, {"x": enigma.float16}])
    def k(x: Tensor[float32]):
        x[0] = x[0] * 2

    assert [v.trace().kernel_name for v in k.variants()] == [
        "enigma_kernel_k", "enigma_kernel_k_f16", "enigma_kernel_k_f16_2"]


def test_constexpr_float_and_bool():
    @enigma.kernel
    def k(x: Tensor[float32], ALPHA: Constexpr[float] = 0.5, FLIP: Constexpr[bool] = False):
        v = x[0] * ALPHA
        if FLIP:
            v = -v
        x[0] = v

    x = np.array([4.0], np.float32)
    interp.run(k.trace({"FLIP": True}), [x], (1, 1, 1), (1, 1, 1))
    assert x.tolist() == [-2.0]
