"""The tracer: IR structure (ops, attrs, lines, merges, carried values), promotion, the issue-2 example,
TensorSpec grid expressions, and the meaning of traced control flow (run by a tiny IR interpreter)."""
from __future__ import annotations

import inspect
from pathlib import Path

import interp
import numpy as np
import pytest
import zoo

import enigma
from enigma import Constexpr, Tensor, TensorSpec, float16, float32, int8, int32, ir, uint32
from enigma.frontend import values as fv


def ops(kernel: ir.Kernel, name: str | None = None) -> list[ir.Op]:
    return [op for op in ir.walk(kernel.body) if name is None or op.name == name]


def line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, s in enumerate(lines) if text in s)


def trace(k, **values) -> ir.Kernel:
    return k.trace(values)


# ---------------------------------------------------------------------------------------------------
# the issue's example


def test_issue_example_jit_on_arrays():
    a = np.zeros(1000, np.float32)
    ck = enigma.compile(zoo.add, a, a.copy(), a.copy())
    assert ck.kernel_name == "enigma_kernel_vector_add"
    assert ck.grid == (4, 1, 1) and ck.block == (256, 1, 1)
    assert ck.signature["grid"] == [{"op": "ceil_div", "args": [{"dim": ["a", 0]}, 256]}, 1, 1]
    assert ck.signature["block"] == [256, 1, 1]
    assert [(a["name"], a["access"]) for a in ck.signature["args"]] == [
        ("a", "read"), ("b", "read"), ("c", "write"), ("n", "read")]
    assert ck.metallib_path is None and ck.metallib_bytes is None  # emit-only off macOS
    assert "enigma_kernel_vector_add" in ck.metal_source and ck.mlir_source is None


def test_jit_on_tensor_specs_keeps_grid_symbolic():
    spec = TensorSpec(float32, ("n",))
    ck = enigma.compile(zoo.add, spec, spec, spec)
    assert str(ck.grid[0]) == "ceil_div(n, 256)" and ck.grid[1:] == (1, 1)
    assert ck.signature["grid"] == [{"op": "ceil_div", "args": [{"sym": "n"}, 256]}, 1, 1]
    assert [a.shape for a in ck.ir.args] == [("n",), ("n",), ("n",), ()]


def test_unnamed_spec_sizes_become_dims_of_the_kernel_argument():
    spec = TensorSpec(float32, (None,))
    ck = enigma.compile(zoo.add, spec, spec, spec)
    assert str(ck.grid[0]) == "ceil_div(a.shape[0], 256)"
    assert ck.signature["grid"][0] == {"op": "ceil_div", "args": [{"dim": ["a", 0]}, 256]}


def test_jit_scalar_argument_serialises_as_arg():
    @enigma.jit
    def launch(x, y, n):
        zoo.saxpy(2.0, x, y, n).launch(grid=(enigma.ceil_div(n, 64) * 2, 1), block=64)

    a = np.zeros(100, np.float32)
    ck = enigma.compile(launch, a, a.copy(), 100)
    assert ck.grid == (4, 1, 1) and ck.block == (64, 1, 1)
    assert ck.signature["grid"][0] == {"op": "mul", "args": [
        {"op": "ceil_div", "args": [{"arg": "n"}, 64]}, 2]}


def test_bare_kernel_compiles_from_annotations():
    ck = enigma.compile(zoo.vector_add)
    assert ck.grid is None and ck.block is None and ck.signature["grid"] is None
    assert [a.shape for a in ck.ir.args] == [(None,), (None,), (None,), ()]


def test_decorator_launch_configuration():
    @enigma.kernel(block=(128, 1, 1), grid=lambda a, b, n: (enigma.ceil_div(n, 128), 1, 1))
    def scale(a: Tensor[float32], b: Tensor[float32], n: int32):
        i = enigma.block_idx().x * 128 + enigma.thread_idx().x
        if i < n:
            b[i] = a[i] * 2

    ck = enigma.compile(scale)
    assert ck.block == (128, 1, 1) and str(ck.grid[0]) == "ceil_div(n, 128)"
    assert ck.signature["grid"][0] == {"op": "ceil_div", "args": [{"arg": "n"}, 128]}


def test_compile_options(tmp_path, capsys):
    ck = enigma.compile(zoo.vector_add, dump_ir=True, dump_mlir=False, keep_metal_source=True,
                        work_dir=str(tmp_path), emit_only=True)
    out = capsys.readouterr().out
    assert out.startswith("kernel vector_add(") and f"# line {line_of(zoo.vector_add.fn, 'c[i] =')}" in out
    assert (tmp_path / "enigma_kernel_vector_add.metal").read_text() == ck.metal_source
    path = ck.export_metal(tmp_path / "sub" / "k.metal")
    assert path == str((tmp_path / "sub" / "k.metal").resolve()) and Path(path).read_text() == ck.metal_source
    assert ck.metallib_path is None and ck.metallib_bytes is None


# ---------------------------------------------------------------------------------------------------
# structure of the IR


def test_vector_add_structure_and_lines():
    k = trace(zoo.vector_add)
    fn = zoo.vector_add.fn
    assert [a.access for a in k.args] == ["read", "read", "write", "read"]
    assert [a.buffer for a in k.args] == [0, 1, 2, 3]
    assert k.line == line_of(fn, "def vector_add")
    (if_op,) = ops(k, "if")
    assert if_op.line == line_of(fn, "if i < n") and not if_op.results
    then = [op.name for op in if_op.regions[0].ops]
    assert then == ["load", "load", "add", "store", "yield"]
    assert [op.attrs["tensor"] for op in if_op.regions[0].ops[:2]] == ["a", "b"]
    assert all(op.line == line_of(fn, "c[i] = ") for op in if_op.regions[0].ops[:4])
    assert {op.attrs["dim"] for op in ops(k, "thread_idx")} == {0}
    assert all(op.line > 0 for op in ops(k))
    (param,) = ops(k, "param")
    assert param.attrs == {"name": "n"} and param.results[0].type.dtype == int32


def test_if_merges_values_with_promotion():
    @enigma.kernel
    def k(x: Tensor[float32], n: int32):
        i = enigma.thread_idx().x
        v = 0
        if i < n:
            v = x[i]
        elif i < 2 * n:
            v = 1
        x[i] = v

    kern = trace(k)
    outer = kern.body.ops[[op.name for op in kern.body.ops].index("if")]
    assert [r.type.dtype for r in outer.results] == [float32]
    assert outer.regions[0].ops[-1].name == "yield" and len(outer.regions[0].ops[-1].operands) == 1
    inner = [op for op in outer.regions[1].ops if op.name == "if"][0]
    assert [r.type.dtype for r in inner.results] == [int32]  # two Python ints merge as int32
    assert [op.name for op in outer.regions[1].ops][-2:] == ["cast", "yield"]  # ... cast to the outer type
    store = ops(kern, "store")[-1]
    assert store.operands[1] is outer.results[0]


def test_for_loop_carries_values_and_widens_python_numbers():
    @enigma.kernel
    def k(x: Tensor[float32], out: Tensor[float32], n: int32):
        acc = 0
        count = 0
        for j in range(n):
            acc = acc + x[j]
            count += 1
        out[0] = acc / count

    kern = trace(k)
    (loop,) = ops(kern, "for")
    assert [r.type.dtype for r in loop.results] == [float32, int32]
    body = loop.regions[0]
    assert [a.type.dtype for a in body.args] == [int32, float32, int32]
    assert body.ops[-1].name == "yield"
    div = ops(kern, "div")[-1]
    assert div.results[0].type.dtype == float32


def test_while_loop():
    @enigma.kernel
    def k(x: Tensor[int32]):
        v = x[0]
        steps = 0
        while v > 1:
            if v % 2 == 0:
                v = v // 2
            else:
                v = 3 * v + 1
            steps += 1
        x[1] = steps

    kern = trace(k)
    (w,) = ops(kern, "while")
    before, after = w.regions
    assert before.ops[-1].name == "condition" and len(before.ops[-1].operands) == 3
    assert after.ops[-1].name == "yield" and [r.type.dtype for r in w.results] == [int32, int32]
    buf = np.array([27, 0], np.int32)
    interp.run(kern, [buf], (1, 1, 1), (1, 1, 1))
    assert buf[1] == 111


def test_python_values_decide_control_flow_at_trace_time():
    @enigma.kernel
    def k(x: Tensor[float32], MODE: Constexpr[int] = 1, N: Constexpr[int] = 4):
        if MODE == 0:
            x[0] = 1.0
            return
        for j in enigma.range_constexpr(N):
            if enigma.const_expr(j % 2 == 0):
                x[j] = 2.0

    assert [op.attrs["tensor"] for op in ops(trace(k), "store")] == ["x", "x"]
    assert not ops(trace(k), "if") and not ops(trace(k), "for")
    assert len(ops(trace(k, MODE=0), "store")) == 1


def test_boolean_operators_and_conditional_expression():
    @enigma.kernel
    def k(x: Tensor[float32], n: int32):
        i = enigma.thread_idx().x
        ok = i < n and not (i == 3) or i == 100
        x[i] = 1.0 if ok else x[i + 1]

    kern = trace(k)
    assert {"and", "or", "not"} <= {op.name for op in ops(kern)}
    ifs = ops(kern, "if")
    assert len(ifs) == 1 and [op.name for op in ifs[0].regions[1].ops][-2:] == ["load", "yield"]
    buf = np.arange(8, dtype=np.float32)
    interp.run(kern, [buf, 5], (1, 1, 1), (6, 1, 1))
    assert buf.tolist() == [1, 1, 1, 4, 1, 6, 6, 7]


def test_indexing_static_and_dynamic_strides():
    @enigma.kernel
    def k(s: Tensor[float32, (4, 8)], d: Tensor[float32, 2], e: Tensor[float32, ("m", 8)]):  # noqa: F821, UP037
        j, i, _ = enigma.thread_idx()
        s[i, j] = d[i, j] + e[i, j]

    kern = trace(k)
    assert {(op.attrs["tensor"], op.attrs["axis"]) for op in ops(kern, "stride")} == {("d", 0)}
    consts = {op.attrs["value"] for op in ops(kern, "const")}
    assert 8 in consts  # static row stride of s and e
    assert kern.arg("e").shape == ("m", 8) and kern.arg("d").shape == (None, None)
    a, b = np.arange(32, dtype=np.float32).reshape(4, 8), np.ones((4, 8), np.float32)
    out = np.zeros((4, 8), np.float32)
    interp.run(kern, [out, a, b], (1, 1, 1), (8, 4, 1))
    assert np.array_equal(out, a + 1)


def test_shape_and_constexpr_in_shared_sizes():
    kern = trace(zoo.softmax, BLOCK=128)
    assert kern.shared == [ir.Shared("partial", float32, (4,))]
    assert {(op.attrs["tensor"], op.attrs["axis"]) for op in ops(kern, "dim")} == {("x", 1)}
    assert kern.threadgroup_memory == 16
    assert len(ops(kern, "simd_max")) == 1 and len(ops(kern, "simd_sum")) == 1
    assert len(ops(kern, "barrier")) == 3


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_zoo_traces_with_expected_structure(entry):
    ins = entry.make_inputs(np.random.default_rng(0))
    launch = enigma.frontend.launch_of(entry.jit, ins)
    k = launch.kernel
    names = {op.name for op in ops(k)}
    want = {"vector_add": {"load", "store", "if"}, "saxpy": {"param", "load", "store"},
            "softmax": {"for", "simd_max", "simd_sum", "barrier", "exp"},
            "sum_reduce": {"simd_sum", "atomic_add", "if"}, "matmul": {"for", "barrier", "fma"},
            "transpose": {"barrier", "load", "store"}, "histogram": {"atomic_add", "for", "barrier"},
            "simd_matmul": {"simd_fill", "simd_load", "simd_mma", "simd_store", "for", "barrier"},
            "simd_matmul_f16": {"simd_load", "simd_mma", "simd_store"},
            "reg_matmul": {"vload", "vstore", "pack", "extract", "fma", "for"},
            "q4_0_matvec": {"load", "simd_sum", "for"}, "layer_norm": {"simd_sum", "barrier", "rsqrt"},
            "masked_softmax": {"simd_max", "simd_sum", "exp"}, "softmax_no_mask": {"simd_max", "exp"}}
    assert want[entry.name] <= names
    assert all(op.line for op in ops(k))
    outs = {k.args[i].name for i in entry.outputs}
    assert all(k.arg(n).access in ("write", "readwrite") for n in outs)
    assert all(a.access == "read" for a in k.args if a.name not in outs)
    assert all(isinstance(g, int) for g in launch.grid) and launch.block is not None


def test_zoo_shared_arrays():
    assert trace(zoo.transpose).shared == [ir.Shared("tile", float32, (16, 17))]
    assert [s.name for s in trace(zoo.matmul).shared] == ["ta", "tb"]
    assert trace(zoo.histogram, BINS=32).shared == [ir.Shared("local", int32, (32,))]


@pytest.mark.parametrize("name", ["vector_add", "saxpy"])
def test_zoo_semantics_on_interpreter(name):
    e = zoo.BY_NAME[name]
    ins = e.make_inputs(np.random.default_rng(1))
    launch = enigma.frontend.launch_of(e.jit, ins)
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in e.kernel_args(ins)]
    expected = e.reference(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in args])
    interp.run(launch.kernel, args, launch.grid, launch.block)
    for i, want in zip(e.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=e.rtol, atol=e.atol)


def test_loop_semantics_on_interpreter():
    @enigma.kernel
    def k(x: Tensor[float32, ("m", "n")], out: Tensor[float32]):  # noqa: F821, UP037
        r = enigma.thread_idx().x
        best = -1.0e30
        where_best = -1
        for c in range(0, x.shape[1], 2):
            v = x[r, c]
            if v > best:
                best = v
                where_best = c
        out[r] = best + where_best

    x = np.random.default_rng(2).standard_normal((3, 7)).astype(np.float32)
    out = np.zeros(3, np.float32)
    interp.run(trace(k), [x, out], (1, 1, 1), (3, 1, 1))
    even = x[:, ::2]
    np.testing.assert_allclose(out, even.max(axis=1) + 2 * even.argmax(axis=1), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# promotion rules


def test_promotion_table():
    j = fv.join
    assert j(int32, float16) == float16 and j(float16, enigma.bfloat16) == float32
    assert j(int8, int32) == int32 and j(int32, uint32) == uint32 and j(enigma.bool_, int8) == int8
    assert fv.weak_join(int8, 300) == int8 and fv.weak_join(int32, 0.5) == float32
    assert fv.weak_join(float16, 2.0) == float16 and fv.weak_join(enigma.bool_, 1) == int32


def test_traced_promotion():
    @enigma.kernel
    def k(h: Tensor[float16], i: Tensor[int32], o: Tensor[float32]):
        t = enigma.thread_idx().x
        a = h[t] * 2.0  # weak literal: stays float16
        b = i[t] / 2  # int / int: float32
        c = i[t] // 3  # C division on ints
        d = i[t] * 0.5  # float literal and int: float32
        e = (h[t] < 1) & (i[t] != 0)
        o[t] = enigma.where(e, a.to(float32) + b, c + d)

    kern = trace(k)
    by_line = {op.line: op for op in ops(kern) if op.name in ("mul", "div", "and")}
    fn = k.fn
    assert by_line[line_of(fn, "a = h[t]")].results[0].type.dtype == float16
    assert by_line[line_of(fn, "b = i[t]")].results[0].type.dtype == float32
    assert by_line[line_of(fn, "c = i[t]")].results[0].type.dtype == int32
    assert by_line[line_of(fn, "d = i[t]")].results[0].type.dtype == float32
    assert by_line[line_of(fn, "e = (h[t]")].results[0].type.dtype == enigma.bool_
    assert not [op for op in ops(kern) if op.name == "floor"]
    (sel,) = ops(kern, "select")
    assert sel.results[0].type.dtype == float32


def test_math_builtins_and_atomics():
    @enigma.kernel
    def k(x: Tensor[float32], h: Tensor[int32]):
        t = enigma.thread_idx().x
        v = enigma.sqrt(x[t]) + enigma.rsqrt(2.0) + enigma.exp2(t) + enigma.fma(x[t], 2, 1)
        v = enigma.maximum(v, enigma.minimum(0, x[t])) + enigma.simd_shuffle_down(v, 1)
        v += enigma.simd_broadcast(v, 0) + enigma.tanh(v) + abs(v) + enigma.floor(v)
        old = enigma.atomic_max(h, t, v.to(int32))
        x[t] = v + old

    kern = trace(k)
    names = [op.name for op in ops(kern)]
    for n in ("sqrt", "exp2", "fma", "max", "min", "simd_shuffle_down", "simd_broadcast", "tanh", "abs",
              "floor", "atomic_max", "cast"):
        assert n in names, n
    assert "rsqrt" not in names  # rsqrt(2.0) of a Python float is computed at trace time
    assert kern.arg("h").access == "readwrite"


def test_constants_are_hoisted_once_and_keep_signed_zero():
    @enigma.kernel
    def k(x: Tensor[float32]):
        i = enigma.thread_idx().x
        x[i] = x[i] * 0.0 + x[i] * -0.0 + x[i] * 0.0

    consts = [op for op in ops(trace(k)) if op.name == "const" and op.results[0].type.dtype == float32]
    assert sorted(repr(op.attrs["value"]) for op in consts) == ["-0.0", "0.0"]


def test_jit_scalar_given_as_dtype_stays_symbolic():
    @enigma.jit
    def launch(x, y, n):
        zoo.saxpy(1.0, x, y, n).launch(grid=(enigma.ceil_div(n, 32), 1, 1), block=(32, 1, 1))

    spec = TensorSpec(float32, (None,))
    ck = enigma.compile(launch, spec, spec, int32)
    assert str(ck.grid[0]) == "ceil_div(n, 32)"
    assert ck.signature["grid"][0] == {"op": "ceil_div", "args": [{"arg": "n"}, 32]}


def test_numpy_scalars_act_like_python_numbers():
    @enigma.kernel
    def k(x: Tensor[float16]):
        x[0] = np.float32(2.0) * x[1] + x[2] * np.int64(3)

    kern = trace(k)
    assert all(op.results[0].type.dtype == float16 for op in ops(kern) if op.name in ("mul", "add"))


def test_decorator_grid_with_dtype_arguments():
    @enigma.kernel(block=64, grid=lambda x, n: (enigma.ceil_div(n, 64),))
    def k(x: Tensor[None], n: int32):
        i = enigma.thread_idx().x
        if i < n:
            x[i] = 0

    ck = enigma.compile(k, enigma.float16, int32)
    assert ck.ir.args[0].dtype == float16 and ck.block == (64, 1, 1)
    assert ck.signature["grid"] == [{"op": "ceil_div", "args": [{"arg": "n"}, 64]}, 1, 1]
    ck = enigma.compile(k, np.zeros(10, np.int8), 10)
    assert ck.grid == (1, 1, 1) and ck.ir.args[0].dtype == int8
