"""fold / cse / dce: exact folding semantics, scoping, what is never removed or merged, inputs left
intact, and (end to end) every zoo kernel computes the same results before and after passes.run on
enigma_runtime's CPU executor."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "backends"))
import handir  # noqa: E402
import zoo  # noqa: E402
from enigma_runtime.dtypes import bfloat16, bool_, float16, float32, int8, int32, uint8, uint32  # noqa: E402
from handir import F32, I32, for_, if_, kernel, tensor, while_  # noqa: E402

import enigma  # noqa: E402
from enigma import ir, passes  # noqa: E402
from enigma.backends import msl, portable  # noqa: E402
from enigma.passes import cse, dce  # noqa: E402
from enigma.passes.fold import evaluate  # noqa: E402
from enigma.passes.opbuilder import OpBuilder  # noqa: E402


def ops(k: ir.Kernel) -> list[str]:
    return [op.name for op in ir.walk(k.body)]


def store_of(build) -> ir.Kernel:
    """A kernel storing build(b)'s value to out[0]."""
    def body(b: OpBuilder):
        v = build(b)
        b.op("store", [b.const(0, I32), v], attrs={"tensor": "out"})
    return kernel("k", [tensor("out", access="write"), handir.scalar("n"), handir.scalar("x", float32)], body)


def folded_value(build):
    k = passes.run(store_of(build))
    st = next(op for op in ir.walk(k.body) if op.name == "store")
    val = st.operands[1]
    d = next((op for op in ir.walk(k.body) if val in op.results), None)
    return d.attrs["value"] if d is not None and d.name == "const" else None


@pytest.mark.parametrize("name, args, src, dst, want", [
    ("add", [2**31 - 1, 1], int32, int32, -2**31),  # wraps
    ("mul", [100, 3], int8, int8, 44),
    ("div", [-7, 2], int32, int32, -3),  # truncates toward zero
    ("mod", [-7, 2], int32, int32, -1),  # sign of a
    ("shr", [-8, 1], int32, int32, -4),  # arithmetic
    ("shr", [2**32 - 8, 1], uint32, uint32, 2**31 - 4),  # logical
    ("sub", [0, 1], uint8, uint8, 255),
    ("not", [0], int32, int32, -1),
    ("lt", [2**32 - 1, 0], uint32, bool_, False),
    ("div", [1.0, 0.0], float32, float32, float("inf")),
    ("add", [0.1, 0.2], float32, float32, float(np.float32(0.1) + np.float32(0.2))),
    ("add", [65504.0, 65504.0], float16, float16, float("inf")),
    ("min", [float("nan"), 1.0], float32, float32, 1.0),
    ("cast", [-2.7], float32, int32, -2),
    ("cast", [300], int32, uint8, 44),
    ("cast", [16777217], int32, float32, 16777216.0),
    ("cast", [3], int32, bool_, True),
    ("select", [False, 1, 2], bool_, int32, 2),
    # every input has a defined result (docs/abi.md), so these fold too
    ("div", [1, 0], int32, int32, 1),  # x / 0 = x
    ("mod", [5, 0], int32, int32, 0),  # x % 0 = 0
    ("div", [-2**31, -1], int32, int32, -2**31),  # MIN / -1 = MIN
    ("mod", [-2**31, -1], int32, int32, 0),
    ("shl", [1, 32], int32, int32, 1),  # amounts modulo the width
    ("shl", [-1, 31], int32, int32, -2**31),  # shifting a negative value
    ("shr", [-8, 33], int32, int32, -4),
    ("abs", [-2**31], int32, int32, -2**31),
    ("neg", [-128], int8, int8, -128),
    ("cast", [3e10], float32, int32, 2**31 - 1),  # float -> int saturates
    ("cast", [-1.5], float32, uint8, 0),
    ("cast", [float("nan")], float32, int32, 0),  # NaN -> 0
    ("cast", [70000], int32, float16, float("inf")),  # past float16's range: inf
    ("min", [0.0, -0.0], float32, float32, -0.0),
    ("fma", [256.0, 256.0, -65504.0], float16, float16, 32.0),  # one rounding
])
def test_evaluate_exact(name, args, src, dst, want):
    got = evaluate(name, args, src, dst)
    assert got == want and type(got) is type(want)
    if isinstance(want, float) and want == 0:
        assert math.copysign(1, got) == math.copysign(1, want)


@pytest.mark.parametrize("name, args, src, dst", [
    ("exp", [1.0], float32, float32), ("sqrt", [2.0], float32, float32),
    ("add", [1.0, 2.0], bfloat16, bfloat16), ("tanh", [1.0], float16, float16),
])
def test_not_folded(name, args, src, dst):
    assert evaluate(name, args, src, dst) is None


def test_fold_in_kernel_and_identities():
    assert folded_value(lambda b: b.val("mul", b.const(6, I32), b.const(7, I32))) == 42
    assert folded_value(lambda b: b.val("add", b.const(1.5, F32), b.const(2.0, F32))) == 3.5
    # identities: int x+0, x*1 vanish; float x+0.0 stays (-0.0 + 0.0 is +0.0), x-0.0 vanishes
    k = passes.run(store_of(lambda b: b.val("mul", b.val("add", b.val("param", type=I32, name="n"),
                                                           b.const(0, I32)), b.const(1, I32))))
    assert "add" not in ops(k) and "mul" not in ops(k)
    k = passes.run(store_of(lambda b: b.val("add", b.val("param", type=F32, name="x"), b.const(0.0, F32))))
    assert "add" in ops(k)
    k = passes.run(store_of(lambda b: b.val("sub", b.val("param", type=F32, name="x"), b.const(0.0, F32))))
    assert "sub" not in ops(k)
    k = passes.run(store_of(lambda b: b.val("sub", b.val("param", type=F32, name="x"), b.const(-0.0, F32))))
    assert "sub" in ops(k)
    k = passes.run(store_of(lambda b: b.val("mul", b.val("param", type=I32, name="n"), b.const(0, I32))))
    assert "mul" not in ops(k) and folded_value(
        lambda b: b.val("mul", b.val("param", type=I32, name="n"), b.const(0, I32))) == 0


def test_fold_if_and_static_dims():
    def build(b):
        c = b.val("lt", b.const(1, I32), b.const(2, I32))
        r, = if_(b, c, lambda t: [t.const(10, I32)], lambda e: [e.const(20, I32)], types=[I32])
        return b.val("add", r, b.val("dim", type=I32, tensor="m", axis=1))
    k = kernel("k", [tensor("out", access="write"), tensor("m", shape=(3, 5))],
               lambda b: b.op("store", [b.const(0, I32), build(b)], attrs={"tensor": "out"}))
    opt = passes.run(k)
    assert "if" not in ops(opt) and "dim" not in ops(opt)
    st = [op for op in ir.walk(opt.body) if op.name == "const"]
    assert 15 in [op.attrs["value"] for op in st]
    s = handir.kernel("s", [tensor("m", shape=(3, 5), access="write")], lambda b: b.op(
        "store", [b.val("stride", type=I32, tensor="m", axis=0), b.const(1.0, F32)], attrs={"tensor": "m"}))
    assert "m[5] = 1.0f;" in msl.emit(passes.run(s))


def test_zero_trip_for_is_removed():
    def build(b):
        r, = for_(b, b.const(5, I32), b.const(5, I32), b.const(1, I32), [b.const(7, I32)],
                  lambda rb, iv, a: [rb.val("add", a, iv)])
        return r
    assert folded_value(build) == 7


def test_cse_scoping_and_impure_ops():
    def body(b):
        n = b.val("param", type=I32, name="n")
        a1 = b.val("add", n, b.const(1, I32))
        a2 = b.val("add", n, b.const(1, I32))  # same: merged
        l1 = b.val("load", a1, type=F32, tensor="m")
        l2 = b.val("load", a2, type=F32, tensor="m")  # a load: never merged
        s1, s2 = b.val("simd_sum", l1), b.val("simd_sum", l1)  # simd: never merged
        inner = []
        if_(b, b.val("lt", n, a1), lambda t: inner.append(t.val("mul", n, n)) or t.op("store", [a1, l2],
                                                                                     attrs={"tensor": "m"}))
        after = b.val("mul", n, n)  # not merged with the one inside the branch
        b.op("store", [after, b.val("add", b.val("add", s1, s2), l1)], attrs={"tensor": "m"})
    k = kernel("c", [tensor("m", access="readwrite"), handir.scalar("n")], body)
    before = ir.dump(k)
    out = cse(k)
    assert ir.dump(k) == before  # the input is left intact
    names = ops(out)
    assert names.count("load") == 2 and names.count("simd_sum") == 2 and names.count("mul") == 2
    assert [op.name for op in out.body.ops].count("add") == 3  # n+1 (once), s1+s2, +l1


def test_dce_keeps_effects_and_drops_dead_results():
    def body(b):
        n = b.val("param", type=I32, name="n")
        b.val("mul", n, n)  # dead
        b.val("load", n, type=F32, tensor="m")  # dead load: removable
        b.op("barrier")
        r1, r2 = if_(b, b.val("lt", n, n), lambda t: [t.const(1, I32), t.val("add", n, n)],
                     lambda e: [e.const(2, I32), e.const(3, I32)], types=[I32, I32])
        live, dead = for_(b, b.const(0, I32), n, b.const(1, I32), [b.const(0.0, F32), b.const(0, I32)],
                          lambda r, iv, a, c: [r.val("add", a, r.const(1.0, F32)), r.val("add", c, iv)])
        for_(b, b.const(0, I32), n, b.const(1, I32), [], lambda r, iv: [])  # no effect: removed
        w, = while_(b, [n], lambda r, x: [r.val("gt", x, r.const(0, I32)), x],
                    lambda r, x: [r.val("sub", x, r.const(1, I32))])  # result unused, kept whole
        b.op("store", [r1, live], attrs={"tensor": "m"})
    k = kernel("d", [tensor("m", access="readwrite"), handir.scalar("n")], body)
    before = ir.dump(k)
    out = dce(k)
    assert ir.dump(k) == before
    names = ops(out)
    assert "mul" not in names and "load" not in names and "barrier" in names and "while" in names
    the_if = next(op for op in out.body.ops if op.name == "if")
    assert len(the_if.results) == 1 and all(len(r.ops[-1].operands) == 1 for r in the_if.regions)
    fors = [op for op in out.body.ops if op.name == "for"]
    assert len(fors) == 1 and len(fors[0].results) == 1 and len(fors[0].regions[0].args) == 2


def test_dce_keeps_carried_values_a_live_one_depends_on():
    def body(b):
        n = b.val("param", type=I32, name="n")
        a, c = for_(b, b.const(0, I32), n, b.const(1, I32), [b.const(0, I32), b.const(1, I32)],
                    lambda r, iv, x, y: [r.val("add", x, y), r.val("mul", y, r.const(2, I32))])
        b.op("store", [b.const(0, I32), b.val("cast", a, type=F32)], attrs={"tensor": "m"})
    out = dce(kernel("e", [tensor("m", access="write"), handir.scalar("n")], body))
    loop = next(op for op in out.body.ops if op.name == "for")
    assert len(loop.results) == 2  # y feeds x, so y stays although its result is unused


def test_fold_does_not_mutate_input():
    k = zoo.softmax.trace()
    before = ir.dump(k)
    passes.run(k)
    assert ir.dump(k) == before


# ---------------------------------------------------------------------------------------------------
# end to end: same results before and after the passes


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_zoo_results_unchanged_by_passes(entry):
    from enigma_runtime import Kernel
    inputs = entry.make_inputs(np.random.default_rng(0))
    ck = enigma.compile(entry.jit, *inputs)
    raw = ck.launch.kernel
    outs = []
    for k in (raw, passes.run(raw)):
        sig = portable.signature(k, block=list(ck.block), grid=list(ck.grid))
        run = Kernel.from_spec(sig, portable.ir_to_json(k), msl.emit(k))
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in entry.kernel_args(inputs)]
        run(*args, device="cpu")
        outs.append([args[i] for i in entry.outputs])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    want = entry.reference(*entry.kernel_args(inputs))
    for got, ref in zip(outs[1], want):
        np.testing.assert_allclose(got, ref, rtol=entry.rtol, atol=entry.atol)


def test_dce_drops_while_values_nothing_needs():
    def body(b):
        n = b.val("param", type=I32, name="n")
        x, junk, total = while_(
            b, [n, b.const(1.0, F32), b.const(0, I32)],
            lambda r, x, j, t: [r.val("gt", x, r.const(0, I32)), x, j, t],
            lambda r, x, j, t: [r.val("sub", x, r.const(1, I32)), r.val("mul", j, r.const(2.0, F32)),
                                r.val("add", t, x)])
        b.op("store", [b.const(0, I32), b.val("cast", total, type=F32)], attrs={"tensor": "m"})
    k = kernel("w", [tensor("m", access="write"), handir.scalar("n")], body)
    out = dce(k)
    loop = next(op for op in out.body.ops if op.name == "while")
    assert [v.type for v in loop.results] == [I32, I32]  # x (feeds the condition and total), total
    assert len(loop.operands) == 2 and len(loop.regions[0].args) == 2 and len(loop.regions[1].args) == 2
    assert "mul" not in ops(out)  # junk is gone
    assert len(loop.regions[0].ops[-1].operands) == 3 and len(loop.regions[1].ops[-1].operands) == 2
    from enigma_runtime import Kernel
    for kk in (k, out):  # same result on the CPU executor
        sig = portable.signature(kk, block=[1, 1, 1], grid=[1, 1, 1])
        m = np.zeros(1, np.float32)
        Kernel.from_spec(sig, portable.ir_to_json(kk), msl.emit(kk))(m, np.int32(4), device="cpu")
        assert m[0] == 4 + 3 + 2 + 1
