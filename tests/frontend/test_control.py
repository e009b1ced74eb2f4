"""Corners of the control-flow rewrite: nesting, closures, swaps, helpers, static loops with break."""
from __future__ import annotations

import importlib.util
import inspect
import threading
from pathlib import Path

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


def _bench_nested_if():
    path = Path(__file__).parents[2] / "bench" / "nested_if.py"
    spec = importlib.util.spec_from_file_location("bench_nested_if", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _code_objects(code) -> int:
    return 1 + sum(_code_objects(c) for c in code.co_consts if inspect.iscode(c))


def test_nested_traced_ifs_rewrite_linearly_and_compile_at_depth_60(tmp_path):
    bench = _bench_nested_if()
    counts = {}
    for depth in (5, 10):
        fn, _ = bench.load(depth, tmp_path).k.rewritten()
        counts[depth] = _code_objects(fn.__code__)
    # one function per branch body (kept once, not twice per level: that was 2**depth)
    assert counts[10] - counts[5] == 5
    k = bench.load(60, tmp_path).k
    x = np.array([-3, 0, 1, 7, 59, 60, 61, 1000], np.int32)
    out = np.zeros_like(x)
    kern = run1(k, x, out, block=(8, 1, 1))
    assert out.tolist() == np.clip(x, 0, 60).tolist()
    assert len([op for op in ir.walk(kern.body) if op.name == "if"]) == 60
    enigma.compile(k)


def test_static_escapes_keep_python_semantics():
    """return/break/continue in Python-valued `if`s (inside Python loops, static whiles and helpers) act as
    in Python, and the variables assigned before them keep their values."""
    @enigma.func
    def first_at_least(limit):
        for v in enigma.range_constexpr(10):
            if v * v >= limit:
                return v
        return -1

    @enigma.kernel
    def k(x: Tensor[int32], N: Constexpr[int] = 6):
        hits = 0
        last = 0
        for j in enigma.range_constexpr(N):
            if j % 2 == 1:
                continue
            if j == 4:
                last = j
                break
            hits += 1
        n = 0
        while n < 100:
            n += 7
            if n > 20:
                if n % 2 == 0:
                    break
        x[0] = hits
        x[1] = last
        x[2] = n
        x[3] = first_at_least(N * 3)
        if N > 3:
            x[4] = 9
            return
        x[4] = -9

    x = np.zeros(5, np.int32)
    kern = run1(k, x)
    assert x.tolist() == [2, 4, 28, 5, 9]
    assert not [op for op in ir.walk(kern.body) if op.name in ("if", "while", "for")]


def test_return_in_static_if_inside_traced_loop_is_an_error_at_its_line():
    @enigma.kernel
    def k(x: Tensor[int32], n: int32):
        for j in range(n):
            if enigma.const_expr(j is not None):
                if enigma.const_expr(True):
                    return  # <-
            x[j] = 1

    with pytest.raises(enigma.EnigmaError) as info:
        enigma.compile(k)
    assert info.value.message == ("`return` inside a `for ... in range(...)` loop (a run-time loop) is not "
                                  "supported")
    lines, first = inspect.getsourcelines(k.fn)
    assert info.value.line == first + next(i for i, s in enumerate(lines) if "# <-" in s)


def test_two_threads_trace_at_once():
    """The tracer's stack is per thread: two kernels traced at the same time keep their own ops."""
    meet = threading.Barrier(2, timeout=20)

    def rendezvous():
        meet.wait()
        return 0

    @enigma.kernel
    def one(x: Tensor[float32]):
        x[0] = 1.0 + rendezvous()
        x[1] = 11.0

    @enigma.kernel
    def two(x: Tensor[float32]):
        x[0] = 2.0 + rendezvous()
        x[1] = 22.0

    results = {}

    def work(k):
        results[k.name] = k.trace()

    threads = [threading.Thread(target=work, args=(k,)) for k in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, want in (("one", {1.0, 11.0}), ("two", {2.0, 22.0})):
        consts = {op.attrs["value"] for op in ir.walk(results[name].body)
                  if op.name == "const" and isinstance(op.attrs["value"], float)}
        assert consts == want
