"""Hand-built IR kernels (no tracer) covering every op of the catalogue; shared by the backend and pass
tests (tests/passes adds this folder to sys.path)."""
from __future__ import annotations

from enigma_runtime.dtypes import bfloat16, bool_, float16, float32, int32, uint8, uint16, uint32

from enigma import ir
from enigma.passes.opbuilder import OpBuilder, region

F32, I32, B = ir.Type(float32), ir.Type(int32), ir.Type(bool_)



def tensor(name, dtype=float32, shape=(None,), access="read"):
    return ir.Arg(name, "tensor", dtype, tuple(shape), access)


def scalar(name, dtype=int32):
    return ir.Arg(name, "scalar", dtype)


def global_index(b: OpBuilder) -> ir.Value:
    bid = b.val("block_idx", type=I32, dim=0)
    bdim = b.val("block_dim", type=I32, dim=0)
    tid = b.val("thread_idx", type=I32, dim=0)
    return b.val("add", b.val("mul", bid, bdim), tid)


def if_(b: OpBuilder, cond, then, else_=None, types=()):
    def yielding(fn):
        def build(rb):
            res = fn(rb) if fn else None
            rb.op("yield", res if isinstance(res, list) else [])
        return build
    return b.op("if", [cond], types, regions=[region([], yielding(then), b.line),
                                              region([], yielding(else_), b.line)]).results


def for_(b: OpBuilder, lb, ub, step, inits, body):
    iv = ir.Value(lb.type)
    carried = [ir.Value(v.type) for v in inits]
    blk = region([iv, *carried], lambda rb: rb.op("yield", body(rb, iv, *carried)), b.line)
    return b.op("for", [lb, ub, step, *inits], [v.type for v in inits], regions=[blk]).results


def while_(b: OpBuilder, inits, before, after):
    bargs = [ir.Value(v.type) for v in inits]
    aargs = [ir.Value(v.type) for v in inits]
    rb = region(bargs, lambda r: r.op("condition", before(r, *bargs)), b.line)
    ra = region(aargs, lambda r: r.op("yield", after(r, *aargs)), b.line)
    return b.op("while", inits, [v.type for v in inits], regions=[rb, ra]).results


def kernel(name, args, build, shared=(), line=10):
    b = OpBuilder(line + 1)
    build(b)
    return ir.Kernel(name, list(args), ir.Block([], b.ops), list(shared), file="kernels.py", line=line)


def vector_add(dtype=float32):
    def body(b):
        i = global_index(b)
        n = b.val("param", type=I32, name="n")
        b.line += 1
        def then(t):
            t.line = b.line + 1
            a, bb = t.val("load", i, type=dtype, tensor="a"), t.val("load", i, type=dtype, tensor="b")
            s = t.val("add", a, bb)
            t.op("store", [i, s], attrs={"tensor": "c"})
        if_(b, b.val("lt", i, n), then)
    return kernel("vector_add", [tensor("a", dtype), tensor("b", dtype), tensor("c", dtype, access="write"),
                                 scalar("n")], body)


def saxpy():
    def body(b):
        i = global_index(b)
        n = b.val("dim", type=I32, tensor="x", axis=0)
        alpha = b.val("param", type=F32, name="alpha")
        def then(t):
            x, y = t.val("load", i, type=F32, tensor="x"), t.val("load", i, type=F32, tensor="y")
            y = t.val("fma", alpha, x, y)
            t.op("store", [i, y], attrs={"tensor": "y"})
        if_(b, b.val("lt", i, n), then)
    return kernel("saxpy", [tensor("x"), tensor("y", access="readwrite"), scalar("alpha", float32)], body)


def row_sum():
    """One threadgroup per row of a (m, n) matrix: strided loop, shared array, barrier, simd_sum, for."""
    def body(b):
        row = b.val("block_idx", type=I32, dim=0)
        tid = b.val("thread_idx", type=I32, dim=0)
        bdim = b.val("block_dim", type=I32, dim=0)
        n = b.val("dim", type=I32, tensor="x", axis=1)
        s0 = b.val("stride", type=I32, tensor="x", axis=0)
        zero = b.const(0.0, F32)
        acc, = for_(b, tid, n, bdim, [zero], lambda r, j, a: [r.val("add", a, r.val(
            "load", r.val("add", r.val("mul", row, s0), j), type=F32, tensor="x"))])
        part = b.val("simd_sum", acc)
        lane = b.val("simd_lane_id", type=I32)
        warp = b.val("simd_group_id", type=I32)
        if_(b, b.val("eq", lane, b.const(0, I32)),
            lambda t: t.op("store", [warp, part], attrs={"tensor": "partial"}))
        b.op("barrier")
        def first(t):
            v = t.val("load", lane, type=F32, tensor="partial")
            total = t.val("simd_sum", v)
            if_(t, t.val("eq", lane, t.const(0, I32)),
                lambda u: u.op("store", [row, total], attrs={"tensor": "out"}))
        if_(b, b.val("eq", warp, b.const(0, I32)), first)
    return kernel("row_sum", [tensor("x", shape=("m", "n")), tensor("out", shape=("m",), access="write")],
                  body, shared=[ir.Shared("partial", float32, (32,))])


def histogram():
    def body(b):
        i = global_index(b)
        n = b.val("dim", type=I32, tensor="data", axis=0)
        def then(t):
            v = t.val("load", i, type=ir.Type(uint32), tensor="data")
            bin_ = t.val("cast", t.val("and", v, t.const(255, ir.Type(uint32))), type=I32)
            t.val("atomic_add", bin_, t.const(1, ir.Type(uint32)), tensor="local_bins")
            t.val("atomic_add", bin_, t.const(1, ir.Type(uint32)), tensor="bins")
            t.val("atomic_max", t.const(0, I32), t.val("cast", v, type=I32), tensor="mx")
            t.val("atomic_min", t.const(0, I32), t.val("cast", v, type=I32), tensor="mn")
            t.val("atomic_add", t.const(0, I32), t.const(1.0, F32), tensor="total")
        if_(b, b.val("lt", i, n), then)
    return kernel("histogram", [tensor("data", uint32), tensor("bins", uint32, (256,), "readwrite"),
                                tensor("mx", int32, (1,), "readwrite"),
                                tensor("mn", int32, (1,), "readwrite"),
                                tensor("total", float32, (1,), "readwrite")],
                  body, shared=[ir.Shared("local_bins", uint32, (256,))])


def every_op():
    """Every op of the catalogue at least once (vload/vstore/broadcast included), with a while loop."""
    def body(b):
        i = global_index(b)
        x = b.val("param", type=F32, name="x")
        k = b.val("param", type=I32, name="k")
        u = b.val("cast", k, type=ir.Type(uint32))
        f = b.const(1.5, F32)
        vals = [b.val(op, x, f) for op in ("add", "sub", "mul", "div", "mod", "min", "max")]
        ints = [b.val(op, k, b.const(3, I32)) for op in ("add", "sub", "mul", "div", "mod", "min", "max",
                                                         "and", "or", "xor", "shl", "shr")]
        uints = [b.val(op, u, b.const(3, ir.Type(uint32))) for op in ("div", "mod", "shr", "min", "lt")]
        cmps = [b.val(op, x, f) for op in ir.COMPARE] + [b.val(op, k, ints[0]) for op in ir.COMPARE]
        both = b.val("and", cmps[0], b.val("or", cmps[1], b.val("xor", cmps[2], b.val("not", cmps[3]))))
        un = [b.val(op, x) for op in ir.UNARY if op != "not"]
        un += [b.val("neg", k), b.val("not", k), b.val("abs", k)]
        h = b.val("cast", x, type=ir.Type(float16))
        bf = b.val("cast", x, type=ir.Type(bfloat16))
        bf2 = b.val("exp", b.val("mul", bf, bf))
        g = b.val("fma", x, vals[0], b.val("cast", h, type=F32))
        g = b.val("add", g, b.val("cast", bf2, type=F32))
        g = b.val("select", both, g, un[0])
        sh = b.val("simd_shuffle_down", g, b.const(1, I32))
        sb = b.val("simd_broadcast", sh, b.const(0, I32))
        mx = b.val("simd_max", sb)
        mn = b.val("simd_min", mx)
        mixed = b.val("add", ints[-1], b.val("cast", uints[0], type=I32))
        acc = b.val("add", mn, b.val("cast", mixed, type=F32))
        for v in vals + un[:-3]:
            acc = b.val("add", acc, v)
        for v in ints + un[-3:] + [b.val("cast", uints[1], type=I32), b.val("cast", uints[2], type=I32),
                                   b.val("cast", uints[3], type=I32), b.val("cast", uints[4], type=I32)]:
            acc = b.val("add", acc, b.val("cast", v, type=F32))
        for c in cmps:
            acc = b.val("add", acc, b.val("cast", c, type=F32))
        d0 = b.val("dim", type=I32, tensor="m", axis=1)
        st = b.val("stride", type=I32, tensor="m", axis=0)
        gd = b.val("grid_dim", type=I32, dim=1)
        acc = b.val("add", acc, b.val("cast", b.val("add", b.val("add", d0, st), gd), type=F32))
        # while: halve until below 1
        r, steps = while_(b, [acc, b.const(0, I32)],
                          lambda r, a, s: [r.val("gt", a, r.const(1.0, F32)), a, s],
                          lambda r, a, s: [r.val("mul", a, r.const(0.5, F32)),
                                           r.val("add", s, r.const(1, I32))])
        b.op("store", [i, r], attrs={"tensor": "out"})
        b.op("store", [i, b.val("cast", steps, type=F32)], attrs={"tensor": "m"})
        four = b.val("mul", i, b.const(4, I32))
        v4 = b.val("vload", four, type=ir.Type(float32, 4), tensor="m", lanes=4)
        b.op("vstore", [four, b.val("add", v4, b.val("broadcast", r, type=ir.Type(float32, 4), lanes=4))],
             attrs={"tensor": "out"})
    return kernel("every_op", [tensor("out", access="write"),
                               tensor("m", shape=(None, None), access="readwrite"), scalar("x", float32),
                               scalar("k")], body)


def fast_ops():
    """The fast-kernel ops (issue 12): extract, pack, bitcast, packed and view memory ops, and the
    simdgroup matrix ops in a loop carrying the accumulator (block of 32 threads)."""
    M = ir.Type(float32, 1, 8)

    def body(b):
        i = b.val("thread_idx", type=I32, dim=0)
        four = b.val("mul", i, b.const(4, I32))
        v = b.val("vload", four, type=ir.Type(float32, 4), tensor="a", packed=True)
        x = b.val("extract", v, type=F32, lane=2)
        y = b.val("extract", v, type=F32, lane=0)
        p = b.val("pack", x, y, type=ir.Type(float32, 2))
        h = b.val("load", i, type=ir.Type(float16), tensor="raw", view="float16")
        bits = b.val("bitcast", h, type=ir.Type(uint16))
        word = b.val("bitcast", p, type=ir.Type(uint32, 2))
        b.op("vstore", [b.val("mul", i, b.const(2, I32)), word], attrs={"tensor": "bits", "packed": True})
        b.op("store", [i, bits], attrs={"tensor": "raw", "view": "uint16"})
        acc0 = b.val("simd_fill", type=M, value=0.0)
        (acc,) = for_(b, b.const(0, I32), b.const(16, I32), b.const(8, I32), [acc0],
                      lambda rb, k, c: [rb.val("simd_mma",
                                               rb.val("simd_load", k, b.const(16, I32), type=M, tensor="m",
                                                      origin=0, transpose=False),
                                               rb.val("simd_load", k, b.const(16, I32), type=M, tensor="m",
                                                      origin=8, transpose=True), c, type=M)])
        b.op("simd_store", [acc, b.const(0, I32), b.const(16, I32)],
             attrs={"tensor": "out", "origin": 128, "transpose": False})
    return kernel("fast_ops", [tensor("a", shape=(128,)), tensor("raw", dtype=uint8, shape=(64,),
                                                                 access="readwrite"),
                               tensor("bits", dtype=uint32, shape=(64,), access="write"),
                               tensor("m", shape=(16, 16)), tensor("out", shape=(16, 16), access="write")],
                  body)



ALL = [vector_add, saxpy, row_sum, histogram, every_op, fast_ops]


def accepts(op: str, d) -> bool:
    """Whether the op table's op `op` takes operands of dtype `d`."""
    from enigma_runtime import ops
    kinds = ops.OPS[op].operands
    return {"any": True, "float": d.is_float, "int": not d.is_float, "number": d.kind != "b"}[kinds]


def every_elementwise(dtype, lanes: int = 1):
    """Every elementwise op of the op table that takes `dtype` (and a cast to and from every dtype),
    on loaded values (scalars, or vectors of `lanes`); each result is stored."""
    from enigma_runtime import ops
    from enigma_runtime.dtypes import ALL
    t, bt = ir.Type(dtype, lanes), ir.Type(bool_, lanes)

    def body(b):
        i = global_index(b)
        if lanes > 1:
            i = b.val("mul", i, b.const(lanes, I32))
            ld = lambda name, ty: b.val("vload", i, type=ty, tensor=name, lanes=lanes)  # noqa: E731
            st = lambda name, v: b.op("vstore", [i, v], attrs={"tensor": name})  # noqa: E731
        else:
            ld = lambda name, ty: b.val("load", i, type=ty, tensor=name)  # noqa: E731
            st = lambda name, v: b.op("store", [i, v], attrs={"tensor": name})  # noqa: E731
        x, y, z, c = ld("a", t), ld("b", t), ld("c", t), ld("m", bt)
        for name, o in ops.OPS.items():
            if not o.elementwise or name == "cast" or not accepts(name, dtype):
                continue
            args = [c, x, y] if name == "select" else [x, y, z][:o.arity]
            r = b.val(name, *args, type=bt if o.result == "bool" else t)
            st("m" if o.result == "bool" else "out", r)
        for other in ALL:
            back = b.val("cast", b.val("cast", x, type=ir.Type(other, lanes)), type=t)
            st("out", back)
    args = [tensor(n, dtype) for n in "abc"] + [tensor("m", bool_, access="readwrite"),
                                                tensor("out", dtype, access="write")]
    return kernel(f"every_{dtype.name}_x{lanes}", args, body)


def every_elementwise_op():
    """Every elementwise op of the op table that takes floats (every_op has the integer-only ones), so
    an op added to the table is covered by the tests that run handir.ALL."""
    return every_elementwise(float32)


ALL.append(every_elementwise_op)
