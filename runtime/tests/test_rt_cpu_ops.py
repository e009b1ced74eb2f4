"""The CPU executor, op by op (FORMAT.md section 4 catalogue), against numpy / Python references."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime import IRError, Kernel
from enigma_runtime.cpu_space import bf16_from_bits, bf16_to_bits
from irb import kernel, scalar, tensor

N = 64
RNG = np.random.default_rng(1)


def storage(dt: str) -> np.dtype:
    return np.dtype(np.uint16 if dt == "bfloat16" else dt)


def run_elementwise(op: str, in_dtypes: list[str], out_dtype: str, inputs: list[np.ndarray],
                    attrs: dict | None = None, block: int = N) -> np.ndarray:
    """out[i] = op(in0[i], in1[i], ...) with one thread per element."""
    def body(b):
        i = b.v("add", b.v("mul", b.v("block_idx", t="int32", dim=0), b.c(block), t="int32"),
                b.v("thread_idx", t="int32", dim=0), t="int32")
        vals = [b.v("load", i, t=dt, tensor=f"x{j}") for j, dt in enumerate(in_dtypes)]
        r = b.op(op, *vals, types=(out_dtype,), attrs=attrs)[0]
        b.op("store", i, r, attrs={"tensor": "out"})
    n = len(inputs[0])
    args = [tensor(f"x{j}", dt, ["n"]) for j, dt in enumerate(in_dtypes)]
    args.append(tensor("out", out_dtype, ["n"], "write"))
    k = Kernel.from_spec(*kernel(op, args, body, block=(block, 1, 1), grid=[n // block, 1, 1]), "")
    out = np.zeros(n, storage(out_dtype))
    k(*inputs, out, device="cpu")
    return out


def rand(dt: str, n: int = N) -> np.ndarray:
    if dt in ("float32", "float16"):
        return (RNG.standard_normal(n) * 4).astype(dt)
    if dt == "bool":
        return RNG.random(n) < 0.5
    info = np.iinfo(dt)
    return RNG.integers(info.min, info.max, n, dtype=np.int64, endpoint=True).astype(dt)


INTS = ["int32", "uint32", "int16", "uint16", "int8", "uint8"]


@pytest.mark.parametrize("dt", INTS)
@pytest.mark.parametrize("op, ref", [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                                     ("min", np.minimum), ("max", np.maximum), ("and", np.bitwise_and),
                                     ("or", np.bitwise_or), ("xor", np.bitwise_xor)])
def test_int_binary_wraps(dt, op, ref):
    a, b = rand(dt), rand(dt)
    a[:4] = np.iinfo(dt).max  # overflow lanes
    b[:4] = np.iinfo(dt).max
    np.testing.assert_array_equal(run_elementwise(op, [dt, dt], dt, [a, b]), ref(a, b))


@pytest.mark.parametrize("dt", INTS)
def test_int_div_mod_truncate_like_c(dt):
    a, b = rand(dt), rand(dt)
    b[b == 0] = 3
    if np.iinfo(dt).min < 0:
        a[:4], b[:4] = [-7, 7, -7, 7], [2, -2, -2, 2]
    q = run_elementwise("div", [dt, dt], dt, [a, b])
    r = run_elementwise("mod", [dt, dt], dt, [a, b])
    for x, y, qq, rr in zip(a.tolist(), b.tolist(), q.tolist(), r.tolist()):
        want_q = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
        want_q = np.array(want_q).astype(np.int64).astype(dt).item()  # INT_MIN / -1 wraps
        assert qq == want_q, (x, y)
        assert rr == np.array(x - y * want_q).astype(np.int64).astype(dt).item(), (x, y)


@pytest.mark.parametrize("dt", ["int32", "uint32", "int8", "uint16"])
def test_shifts(dt):
    a = rand(dt)
    s = RNG.integers(0, np.dtype(dt).itemsize * 8, N).astype(dt)
    np.testing.assert_array_equal(run_elementwise("shl", [dt, dt], dt, [a, s]), np.left_shift(a, s))
    np.testing.assert_array_equal(run_elementwise("shr", [dt, dt], dt, [a, s]), np.right_shift(a, s))
    if dt == "int32":  # arithmetic on signed
        minus8, one = np.full(N, -8, np.int32), np.full(N, 1, np.int32)
        assert run_elementwise("shr", [dt, dt], dt, [minus8, one])[0] == -4


@pytest.mark.parametrize("dt", ["float32", "float16", "int32", "uint8", "bool"])
@pytest.mark.parametrize("op, ref", [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                                     ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)])
def test_compare(dt, op, ref):
    a, b = rand(dt), rand(dt)
    a[:8] = b[:8]
    np.testing.assert_array_equal(run_elementwise(op, [dt, dt], "bool", [a, b]), ref(a, b))


@pytest.mark.parametrize("dt", ["float32", "float16"])
@pytest.mark.parametrize("op, ref", [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                                     ("div", np.divide), ("mod", np.fmod), ("min", np.fmin),
                                     ("max", np.fmax)])
def test_float_binary(dt, op, ref):
    a, b = rand(dt), rand(dt)
    a[0], b[1] = np.nan, np.nan
    with np.errstate(all="ignore"):
        want = ref(a, b)
    got = run_elementwise(op, [dt, dt], dt, [a, b])
    np.testing.assert_array_equal(got, want)
    if op in ("min", "max"):  # a NaN operand yields the other operand
        assert got[0] == b[0] and got[1] == a[1]


@pytest.mark.parametrize("op", ["neg", "abs", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos",
                                "tanh", "floor", "ceil"])
def test_float_unary(op):
    a = np.abs(rand("float32")) + 0.5 if op in ("log", "log2", "sqrt", "rsqrt") else rand("float32")
    ref = {"neg": np.negative, "rsqrt": lambda x: 1 / np.sqrt(x)}.get(op, getattr(np, op, None))
    np.testing.assert_allclose(run_elementwise(op, ["float32"], "float32", [a]), ref(a), rtol=1e-6)


@pytest.mark.parametrize("dt", ["int32", "int8", "uint32"])
def test_int_unary(dt):
    a = rand(dt)
    a[0] = np.iinfo(dt).min
    np.testing.assert_array_equal(run_elementwise("neg", [dt], dt, [a]), np.negative(a))
    np.testing.assert_array_equal(run_elementwise("abs", [dt], dt, [a]), a if dt[0] == "u" else np.abs(a))
    np.testing.assert_array_equal(run_elementwise("not", [dt], dt, [a]), np.invert(a))


def test_bool_logic():
    a, b = rand("bool"), rand("bool")
    for op, ref in (("and", np.logical_and), ("or", np.logical_or), ("xor", np.logical_xor)):
        np.testing.assert_array_equal(run_elementwise(op, ["bool", "bool"], "bool", [a, b]), ref(a, b))
    np.testing.assert_array_equal(run_elementwise("not", ["bool"], "bool", [a]), ~a)


def test_fma_and_select():
    a, b, c = rand("float32"), rand("float32"), rand("float32")
    got = run_elementwise("fma", ["float32"] * 3, "float32", [a, b, c])
    np.testing.assert_allclose(got, a * b + c, rtol=1e-6)
    cond = rand("bool")
    np.testing.assert_array_equal(run_elementwise("select", ["bool", "int32", "int32"], "int32",
                                                  [cond, rand("int32"), rand("int32")]).dtype, np.int32)
    x, y = rand("int16"), rand("int16")
    got = run_elementwise("select", ["bool", "int16", "int16"], "int16", [cond, x, y])
    np.testing.assert_array_equal(got, np.where(cond, x, y))


@pytest.mark.parametrize("src, dst, values, want", [
    ("float32", "int32", [2.7, -2.7, 0.5, -0.5], [2, -2, 0, 0]),  # truncates toward zero
    ("int32", "int8", [127, 128, 255, -129], [127, -128, -1, 127]),  # wraps
    ("int32", "uint8", [256, -1, 3, 511], [0, 255, 3, 255]),
    ("float32", "bool", [0.0, -0.0, 0.1, np.nan], [False, False, True, True]),
    ("int32", "bool", [0, 1, -5, 2], [False, True, True, True]),
    ("bool", "float32", [True, False, True, False], [1.0, 0.0, 1.0, 0.0]),
    ("float32", "float16", [1.0 + 2**-11, 1.0 + 3 * 2**-11, 65520.0, 1e-8], [1.0, 1.0 + 2**-9, np.inf, 0.0]),
    ("uint32", "float32", [4294967295, 0, 16777217, 1], [4294967296.0, 0.0, 16777216.0, 1.0]),
])
def test_cast(src, dst, values, want):
    x = np.resize(np.array(values, dtype=src), N)
    got = run_elementwise("cast", [src], dst, [x])
    np.testing.assert_array_equal(got[:4], np.array(want, dtype=dst))


def test_bfloat16_round_to_nearest_even():
    f = np.array([1.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 1.0 + 2**-8 + 2**-20, -2.5, 3.0e38, np.inf], np.float32)
    bits = bf16_to_bits(f)
    back = bf16_from_bits(bits)
    want = np.array([1.0, 1.0, 1.0 + 2**-6, 1.0 + 2**-7, -2.5, np.inf], np.float32)
    np.testing.assert_array_equal(back[[0, 1, 2, 3, 4, 6]], want)
    lo = np.array(np.float32(3.0e38).view(np.uint32) & 0xFFFF0000, np.uint32).view(np.float32)
    hi = np.array((np.float32(3.0e38).view(np.uint32) & 0xFFFF0000) + 0x10000, np.uint32).view(np.float32)
    assert back[5] == (lo if 3.0e38 - float(lo) < float(hi) - 3.0e38 else hi)
    assert np.isnan(bf16_from_bits(bf16_to_bits(np.float32(np.nan))))


def test_bfloat16_arithmetic_rounds_each_result():
    a = bf16_to_bits(np.resize(np.array([1.0, 256.0, 3.0], np.float32), N))
    b = bf16_to_bits(np.resize(np.array([2**-8, 1.0, 0.25], np.float32), N))
    got = bf16_from_bits(run_elementwise("add", ["bfloat16", "bfloat16"], "bfloat16", [a, b]))
    np.testing.assert_array_equal(got[:3], [1.0, 256.0, 3.25])
    f = np.resize(np.array([1.0 + 2**-7, 2.0 ** 20 + 1], np.float32), N)
    np.testing.assert_array_equal(bf16_from_bits(run_elementwise("cast", ["float32"], "bfloat16", [f]))[:2],
                                  [1.0 + 2**-7, 2.0**20])


def test_const_param_dim_stride_builtins():
    def body(b):
        tx, ty, tz = (b.v("thread_idx", t="int32", dim=d) for d in range(3))
        bx, by, bz = (b.v("block_idx", t="int32", dim=d) for d in range(3))
        # linear thread id across the whole grid
        bdx, bdy, bdz = (b.v("block_dim", t="int32", dim=d) for d in range(3))
        gdx, gdy = (b.v("grid_dim", t="int32", dim=d) for d in range(2))
        m = lambda x, y: b.v("mul", x, y, t="int32")  # noqa: E731
        a = lambda x, y: b.v("add", x, y, t="int32")  # noqa: E731
        ltid = a(a(tx, m(ty, bdx)), m(tz, m(bdx, bdy)))
        gidl = a(a(bx, m(by, gdx)), m(bz, m(gdx, gdy)))
        idx = a(ltid, m(gidl, m(bdx, m(bdy, bdz))))
        rec = [tx, ty, tz, bx, by, bz, b.v("simd_lane_id", t="int32"), b.v("simd_group_id", t="int32"),
               b.v("dim", t="int32", tensor="out", axis=0), b.v("stride", t="int32", tensor="out", axis=0),
               b.v("param", t="int32", name="s"), b.c(-7)]
        for j, v in enumerate(rec):
            b.op("store", a(m(idx, b.c(len(rec))), b.c(j)), v, attrs={"tensor": "out"})
    k = Kernel.from_spec(*kernel("builtins", [tensor("out", "int32", ["n", 12], "write"), scalar("s")], body,
                                 block=(5, 4, 3), grid=[2, 3, 2]), "")
    total = 5 * 4 * 3 * 2 * 3 * 2
    out = np.zeros((total, 12), np.int32)
    k(out, 42, device="cpu")
    rows = []
    for gz in range(2):
        for gy in range(3):
            for gx in range(2):
                for tz in range(3):
                    for ty in range(4):
                        for tx in range(5):
                            lt = tx + 5 * ty + 20 * tz
                            rows.append([tx, ty, tz, gx, gy, gz, lt % 32, lt // 32, total, 12, 42, -7])
    np.testing.assert_array_equal(out, np.array(rows))


def test_vectors_vload_vstore_broadcast():
    def body(b):
        i = b.v("thread_idx", t="int32", dim=0)
        i4 = b.v("mul", i, b.c(4), t="int32")
        v = b.v("vload", i4, t="float32x4", tensor="x", lanes=4)
        two = b.v("broadcast", b.c(2.0, "float32"), t="float32x4", lanes=4)
        w = b.v("fma", v, two, two, t="float32x4")
        big = b.v("gt", w, b.v("broadcast", b.c(5.0, "float32"), t="float32x4", lanes=4), t="boolx4")
        r = b.v("select", big, w, b.v("neg", w, t="float32x4"), t="float32x4")
        b.op("vstore", i4, r, attrs={"tensor": "y"})
    args = [tensor("x", "float32", ["n"]), tensor("y", "float32", ["n"], "write")]
    k = Kernel.from_spec(*kernel("vec", args, body, block=(16, 1, 1), grid=[1, 1, 1]), "")
    x = RNG.standard_normal(64).astype(np.float32)
    y = np.zeros(64, np.float32)
    k(x, y, device="cpu")
    w = x * 2 + 2
    np.testing.assert_allclose(y, np.where(w > 5, w, -w), rtol=1e-6)


def test_vload_misaligned_is_an_error():
    def body(b):
        i = b.v("add", b.v("mul", b.v("thread_idx", t="int32", dim=0), b.c(4), t="int32"), b.c(1), t="int32")
        b.op("vstore", i, b.v("vload", i, t="float32x4", tensor="x", lanes=4), attrs={"tensor": "x"})
    k = Kernel.from_spec(*kernel("mis", [tensor("x", "float32", ["n"], "readwrite")], body, block=(2, 1, 1),
                                 grid=[1, 1, 1]), "")
    from enigma_runtime import KernelExecutionError
    with pytest.raises(KernelExecutionError, match="not a multiple of 4"):
        k(np.zeros(16, np.float32), device="cpu")


@pytest.mark.parametrize("body_ops, problem", [
    ([{"op": "frobnicate", "out": [1], "types": ["int32"], "line": 3}], "unknown op"),
    ([{"op": "binary", "out": [1], "types": ["int32"], "line": 3}], "unknown op"),
    ([{"op": "add", "in": [5, 6], "out": [1], "types": ["int32"], "line": 4}], "used before it is defined"),
    ([{"op": "const", "out": [1], "types": ["float64"], "attrs": {"value": 1}}], "unknown type 'float64'"),
    ([{"op": "load", "in": [], "out": [1], "types": ["int32"], "attrs": {"tensor": "q"}}],
     "takes 1 operands"),
    ([{"op": "yield"}], "must end a region"),
    # operand kinds come from the op table
    ([{"op": "const", "out": [1], "types": ["int32"], "attrs": {"value": 2}},
      {"op": "pow", "in": [1, 1], "out": [2], "types": ["int32"], "line": 5}], "pow takes a float operand"),
    ([{"op": "const", "out": [1], "types": ["float32"], "attrs": {"value": 2}},
      {"op": "shl", "in": [1, 1], "out": [2], "types": ["float32"], "line": 5}], "shl takes integer or bool"),
    ([{"op": "const", "out": [1], "types": ["bool"], "attrs": {"value": True}},
      {"op": "neg", "in": [1], "out": [2], "types": ["bool"], "line": 5}], "neg of a bool"),
])
def test_malformed_ir_is_rejected(body_ops, problem):
    spec, ir = kernel("bad", [tensor("x", "int32", ["n"], "readwrite")], lambda b: None, grid=[1, 1, 1])
    k = Kernel.from_spec(spec, dict(ir, body=body_ops), "")
    with pytest.raises(IRError, match=problem):
        k(np.zeros(4, np.int32), device="cpu")


@pytest.mark.parametrize("op", ["exp", "sqrt", "tanh", "floor"])
def test_half_precision_unary(op):
    a = np.abs(rand("float32")) * 0.5 + 0.25
    np.testing.assert_array_equal(run_elementwise(op, ["float16"], "float16", [a.astype(np.float16)]),
                                  getattr(np, op)(a.astype(np.float16)))
    bits = bf16_to_bits(a)
    got = bf16_from_bits(run_elementwise(op, ["bfloat16"], "bfloat16", [bits]))
    np.testing.assert_array_equal(got, bf16_from_bits(bf16_to_bits(getattr(np, op)(bf16_from_bits(bits)))))


# ---------------------------------------------------------------------------------------------------
# the op table (enigma_runtime/ops.py): one definition, defined for every input

def test_op_table_rows_are_complete():
    from enigma_runtime import ops
    from enigma_runtime.cpu_ops import CATALOGUE
    for name, o in ops.OPS.items():
        assert o.name == name and o.group in ops.GROUPS and o.result in ("same", "bool", "declared", "none")
        assert not (o.side_effect and o.pure), name
        if o.foldable:
            assert o.fn is not None and o.pure, name
        if o.frontend:
            assert o.py is not None and o.fn is not None, name
    assert CATALOGUE == set(ops.OPS) - {"yield", "condition"}
    with pytest.raises(ValueError, match="already"):
        ops.register(ops.OPS["add"])


def _values(dt, shape):
    from enigma_runtime.dtypes import BY_NAME
    d = BY_NAME[dt]
    if d.kind == "b":
        return RNG.random(shape) < 0.5
    if d.is_int:
        return RNG.integers(d.min, d.max, shape, dtype=np.int64, endpoint=True).astype(d.np)
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    return d.round(x)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16", "int32", "uint8", "int16", "bool"])
def test_op_table_functions_work_on_any_shape(dt):
    """Each elementwise function takes broadcasting arrays of any shape (and numpy scalars) and returns
    the value dtype of its result type: the fuzzer's numpy model and the CPU executor call the same."""
    from enigma_runtime import ops
    from enigma_runtime.dtypes import BY_NAME, bool_
    d = BY_NAME[dt]
    for name, o in ops.OPS.items():
        if o.fn is None or name == "cast" or (o.operands == "float" and not d.is_float) \
                or (o.operands == "int" and d.is_float) or (o.operands == "number" and d.kind == "b"):
            continue
        for shapes in ([(2, 3)] * 3, [(2, 1), (1, 3), (3,)], [()] * 3):
            xs = [_values(dt, s) for s in shapes[:o.arity]]
            if name == "select":
                xs[0] = _values("bool", shapes[0])
            dst = bool_ if o.result == "bool" else d
            r = np.asarray(ops.apply(name, d, dst, *xs))
            assert r.dtype == dst.value_np, (name, dt)
            assert r.shape == np.broadcast_shapes(*shapes[:o.arity]), (name, dt)
            if name in ("add", "mul", "min", "neg", "abs") and d.kind == "f":
                assert np.array_equal(d.round(r), r, equal_nan=True), name  # rounded to the type


@pytest.mark.parametrize("name, dt, args, want", [
    ("div", "int32", [7, 0], 7), ("div", "int32", [-2**31, -1], -2**31), ("div", "uint8", [200, 0], 200),
    ("div", "int8", [-7, 2], -3), ("mod", "int32", [7, 0], 0), ("mod", "int32", [-2**31, -1], 0),
    ("mod", "int16", [-7, 2], -1), ("shl", "int32", [-1, 31], -2**31), ("shl", "int32", [1, 33], 2),
    ("shl", "uint8", [1, 9], 2), ("shl", "int32", [3, -1], -2**31), ("shr", "int32", [-8, 32], -8),
    ("shr", "uint32", [2**31, 35], 2**28), ("abs", "int32", [-2**31], -2**31), ("neg", "int8", [-128], -128),
    ("add", "int32", [2**31 - 1, 1], -2**31), ("mul", "uint16", [65535, 65535], 1),
    ("fma", "int8", [100, 3, 1], 45),
])
def test_int_edge_cases_are_defined(name, dt, args, want):
    from enigma_runtime import ops
    from enigma_runtime.dtypes import BY_NAME
    d = BY_NAME[dt]
    got = ops.apply(name, d, d, *[np.array(a).astype(d.np) for a in args])
    assert int(got) == want
    x = [np.resize(np.array(a).astype(d.np), N) for a in args]  # the CPU executor computes the same
    assert int(run_elementwise(name, [dt] * len(args), dt, x)[0]) == want


@pytest.mark.parametrize("src, dst, values, want", [
    ("float32", "int32", [3e10, -3e10, np.nan, -2.9], [2**31 - 1, -2**31, 0, -2]),
    ("float32", "uint8", [300.0, -5.0, np.nan, 255.9], [255, 0, 0, 255]),
    ("float16", "int8", [np.inf, -np.inf, 127.5, -128.9], [127, -128, 127, -128]),
    ("float32", "uint32", [5e9, -1.0, 4294967040.0, 1.5], [4294967295, 0, 4294967040, 1]),
    ("int32", "float16", [4194304, -70000, 65519, 65520], [np.inf, -np.inf, 65504.0, np.inf]),
    ("float32", "bool", [np.nan, 0.0, -0.0, 1e-30], [True, False, False, True]),
])
def test_cast_edge_cases_are_defined(src, dst, values, want):
    x = np.resize(np.array(values).astype(src), N)
    got = run_elementwise("cast", [src], dst, [x])
    np.testing.assert_array_equal(got[:4], np.array(want).astype(dst))


@pytest.mark.parametrize("dt", ["float32", "float16"])
def test_min_max_signed_zero_rule(dt):
    a = np.resize(np.array([0.0, -0.0, np.nan, 1.0], dt), N)
    b = np.resize(np.array([-0.0, 0.0, -0.0, np.nan], dt), N)
    mn = run_elementwise("min", [dt, dt], dt, [a, b])[:4]
    mx = run_elementwise("max", [dt, dt], dt, [a, b])[:4]
    assert list(np.signbit(mn[:3])) == [True, True, True] and mn[3] == 1.0
    assert list(np.signbit(mx[:3])) == [False, False, True] and mx[3] == 1.0


def test_float16_fma_rounds_once():
    a = np.resize(np.array([256.0, 1.0 + 2**-10], np.float16), N)
    c = np.resize(np.array([-65504.0, -1.0], np.float16), N)
    got = run_elementwise("fma", ["float16"] * 3, "float16", [a, a, c])
    assert got[0] == 32.0  # 65536 - 65504: the product is not rounded to float16 (inf) first
    assert got[1] == np.float16(2**-9)  # (1 + 2^-10)^2 - 1 = 2^-9 + 2^-20 rounds to 2^-9


def test_wrap_and_round_are_one_function_each():
    from enigma_runtime.dtypes import bfloat16, float16, int8, uint16
    assert int8.wrap(128) == -128 and int8.wrap(-129) == 127 and uint16.wrap(-1) == 65535
    assert int8.wrap(np.array([128, 255], np.int64)).tolist() == [-128, -1]
    assert float(float16.round(65520.0)) == np.inf and float(bfloat16.round(1.0 + 2**-8)) == 1.0
    assert float(bfloat16.round(1.0 + 3 * 2**-8)) == 1.0 + 2**-6  # ties to even


@pytest.mark.parametrize("rolled", ["fma", "muladd"])
def test_fused_dot_products_stay_within_the_documented_bound(rolled, monkeypatch):
    """docs/abi.md: the CPU's fused dot products (one np.matmul) differ from the loop the IR (and the
    emitted Metal) computes by at most n * 2^-24 * sum|a*b|, inside enigma.verify.check's float32
    tolerance (1e-4 relative + 1e-4 absolute) for standard normal inputs."""
    from enigma_runtime import cpu_dot
    from test_rt_cpu_dot import _run, unrolled_matmul
    m, kk, n = 16, 2048, 16
    a, b, fused = _run(unrolled_matmul(8, rolled=rolled), m, kk, n, 8)
    monkeypatch.setattr(cpu_dot, "ENABLED", False)  # the unfused executor: the loop as written
    _, _, loop = _run(unrolled_matmul(8, rolled=rolled), m, kk, n, 8)
    bound = kk * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    err = np.abs(fused.astype(np.float64) - loop)
    assert (err <= bound).all() and err.max() > 0  # they do differ, within the bound
    assert (err <= 1e-4 + 1e-4 * np.abs(loop)).all()
