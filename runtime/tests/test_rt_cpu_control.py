"""The CPU executor: divergent control flow, loops, barriers and threadgroup memory, simd-group ops,
atomics and out-of-bounds errors."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime import Kernel, KernelExecutionError, OutOfBoundsError
from irb import gid, kernel, scalar, tensor

I, F = "int32", "float32"


def mk(name, args, body, block=(64, 1, 1), grid=(1, 1, 1), shared=None) -> Kernel:
    return Kernel.from_spec(*kernel(name, args, body, block=block, grid=list(grid), shared=shared), "")


def test_if_merges_results_per_thread():
    def body(b):
        i = gid(b)
        x = b.v("load", i, t=I, tensor="x")
        odd = b.v("ne", b.v("and", x, b.c(1), t=I), b.c(0), t="bool")

        def then():
            big = b.v("gt", x, b.c(10), t="bool")  # nested divergent if with a result
            return b.if_(big, [I], lambda: [b.v("mul", x, b.c(100), t=I)], lambda: [b.v("neg", x, t=I)])
        (r,) = b.if_(odd, [I], then, lambda: [b.v("add", x, b.c(1000), t=I)])
        b.op("store", i, r, attrs={"tensor": "y"})
    k = mk("ifs", [tensor("x", I, ["n"]), tensor("y", I, ["n"], "write")], body, grid=(2, 1, 1))
    x = np.arange(128, dtype=np.int32)
    y = np.zeros_like(x)
    k(x, y, device="cpu")
    np.testing.assert_array_equal(y, np.where(x % 2 == 1, np.where(x > 10, x * 100, -x), x + 1000))


def test_store_in_branch_only_touches_active_threads():
    def body(b):
        i = gid(b)
        b.if_(b.v("lt", i, b.v("param", t=I, name="n"), t="bool"), [],
              lambda: b.op("store", i, b.c(7), attrs={"tensor": "y"}))
    k = mk("guard", [tensor("y", I, ["m"], "write"), scalar("n")], body, grid=(2, 1, 1))
    y = np.full(128, -1, np.int32)
    k(y, 77, device="cpu")
    assert (y[:77] == 7).all() and (y[77:] == -1).all()


def test_for_with_carried_values():
    def body(b):
        i = gid(b)
        def step(j, s, p):
            return [b.v("add", s, j, t=I), b.v("mul", p, b.c(2), t=I)]
        s, p = b.for_(b.c(0), b.v("param", t=I, name="n"), b.c(3), [i, b.c(1)], [I, I], step)
        b.op("store", i, b.v("add", s, p, t=I), attrs={"tensor": "y"})
    k = mk("loop", [tensor("y", I, ["m"], "write"), scalar("n")], body)
    y = np.zeros(64, np.int32)
    k(y, 10, device="cpu")
    iters = list(range(0, 10, 3))
    np.testing.assert_array_equal(y, np.arange(64) + sum(iters) + 2 ** len(iters))


def test_for_with_per_thread_bounds_and_negative_step():
    def body(b):
        i = gid(b)
        def step(j, s):
            return [b.v("add", s, j, t=I)]
        (up,) = b.for_(b.c(0), i, b.c(1), [b.c(0)], [I], step)  # trip count = i
        (down,) = b.for_(i, b.c(0), b.c(-2), [b.c(0)], [I], step)  # i, i-2, ... > 0
        b.op("store", i, b.v("sub", up, down, t=I), attrs={"tensor": "y"})
    k = mk("tri", [tensor("y", I, ["m"], "write")], body)
    y = np.zeros(64, np.int32)
    k(y, device="cpu")
    np.testing.assert_array_equal(y, [sum(range(i)) - sum(range(i, 0, -2)) for i in range(64)])


def test_while_with_per_thread_exit():
    def body(b):
        i = gid(b)
        x0 = b.v("add", i, b.c(1), t=I)

        def before(x, steps):  # collatz: while x != 1
            return [b.v("ne", x, b.c(1), t="bool"), x, steps]

        def after(x, steps):
            even = b.v("eq", b.v("and", x, b.c(1), t=I), b.c(0), t="bool")
            (nx,) = b.if_(even, [I], lambda: [b.v("shr", x, b.c(1), t=I)],
                          lambda: [b.v("add", b.v("mul", x, b.c(3), t=I), b.c(1), t=I)])
            return [nx, b.v("add", steps, b.c(1), t=I)]
        _, steps = b.while_([x0, b.c(0)], [I, I], before, after)
        b.op("store", i, steps, attrs={"tensor": "y"})
    k = mk("collatz", [tensor("y", I, ["m"], "write")], body)
    y = np.zeros(64, np.int32)
    k(y, device="cpu")

    def collatz(x):
        n = 0
        while x != 1:
            x, n = (x // 2 if x % 2 == 0 else 3 * x + 1), n + 1
        return n
    np.testing.assert_array_equal(y, [collatz(i + 1) for i in range(64)])


def test_barrier_and_shared_memory_reverse_per_group():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        i = gid(b)
        b.op("store", t, b.v("load", i, t=F, tensor="x"), attrs={"tensor": "tile"})
        b.op("barrier")
        j = b.v("sub", b.c(63), t, t=I)
        b.op("store", i, b.v("load", j, t=F, tensor="tile"), attrs={"tensor": "y"})
    k = mk("rev", [tensor("x", F, ["n"]), tensor("y", F, ["n"], "write")], body, grid=(4, 1, 1),
           shared=[{"name": "tile", "dtype": F, "shape": [64]}])
    x = np.arange(256, dtype=np.float32)
    y = np.zeros_like(x)
    k(x, y, device="cpu")
    np.testing.assert_array_equal(y, x.reshape(4, 64)[:, ::-1].reshape(-1))


def test_shared_tree_reduction_with_divergent_ifs_between_barriers():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        b.op("store", t, b.v("load", gid(b), t=I, tensor="x"), attrs={"tensor": "s"})
        b.op("barrier")
        for half in (32, 16, 8, 4, 2, 1):
            def add(half=half):
                o = b.v("add", t, b.c(half), t=I)
                s = b.v("add", b.v("load", t, t=I, tensor="s"), b.v("load", o, t=I, tensor="s"), t=I)
                b.op("store", t, s, attrs={"tensor": "s"})
            b.if_(b.v("lt", t, b.c(half), t="bool"), [], add)
            b.op("barrier")
        b.if_(b.v("eq", t, b.c(0), t="bool"), [],
              lambda: b.op("store", b.v("block_idx", t=I, dim=0), b.v("load", t, t=I, tensor="s"),
                           attrs={"tensor": "y"}))
    k = mk("tree", [tensor("x", I, ["n"]), tensor("y", I, ["g"], "write")], body, grid=(3, 1, 1),
           shared=[{"name": "s", "dtype": I, "shape": [64]}])
    x = np.random.default_rng(0).integers(-1000, 1000, 192).astype(np.int32)
    y = np.zeros(3, np.int32)
    k(x, y, device="cpu")
    np.testing.assert_array_equal(y, x.reshape(3, 64).sum(1))


def test_barrier_in_divergent_branch_is_an_error_naming_the_line():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        b.if_(b.v("lt", t, b.c(10), t="bool"), [], lambda: b.op("barrier", line=42))
    k = mk("badbar", [tensor("x", I, ["n"])], body, grid=(2, 1, 1))
    with pytest.raises(KernelExecutionError, match=r"kern.py:42\): barrier reached by only 10 of the "
                                                   r"64 threads of threadgroup \(0, 0, 0\)"):
        k(np.zeros(4, np.int32), device="cpu")


def test_barrier_in_uniform_branch_is_fine():
    def body(b):
        bid = b.v("block_idx", t=I, dim=0)  # the whole group takes the same side
        b.if_(b.v("eq", b.v("and", bid, b.c(1), t=I), b.c(0), t="bool"), [], lambda: b.op("barrier"))
        b.op("store", gid(b), b.c(1), attrs={"tensor": "x"})
    k = mk("okbar", [tensor("x", I, ["n"], "write")], body, grid=(4, 1, 1))
    x = np.zeros(256, np.int32)
    k(x, device="cpu")
    assert x.all()


def simd_kernel(op: str, block: int, extra=None, masked=False):
    def body(b):
        i = gid(b)
        v = b.v("load", i, t=I, tensor="x")
        args = [v] + ([b.c(extra)] if extra is not None else [])
        if masked:  # only threads with an even value take part
            cond = b.v("eq", b.v("and", v, b.c(1), t=I), b.c(0), t="bool")
            (r,) = b.if_(cond, [I], lambda: [b.v(op, *args, t=I)], lambda: [b.c(-1)])
        else:
            r = b.v(op, *args, t=I)
        b.op("store", i, r, attrs={"tensor": "y"})
    return mk(op, [tensor("x", I, ["n"]), tensor("y", I, ["n"], "write")], body, block=(block, 1, 1),
              grid=(2, 1, 1))


@pytest.mark.parametrize("block", [64, 40])  # 40: the last simdgroup of each threadgroup has 8 threads
@pytest.mark.parametrize("op, red", [("simd_sum", np.sum), ("simd_max", np.max), ("simd_min", np.min)])
def test_simd_reductions(op, red, block):
    x = np.random.default_rng(2).integers(-100, 100, 2 * block).astype(np.int32)
    y = np.zeros_like(x)
    simd_kernel(op, block)(x, y, device="cpu")
    for g in range(2):
        for s in range(0, block, 32):
            seg = x[g * block + s: g * block + min(s + 32, block)]
            assert (y[g * block + s: g * block + s + len(seg)] == red(seg)).all()


def test_simd_reduction_over_active_threads_only():
    x = np.random.default_rng(3).integers(-100, 100, 128).astype(np.int32)
    y = np.zeros_like(x)
    simd_kernel("simd_sum", 64, masked=True)(x, y, device="cpu")
    for s in range(0, 128, 32):
        seg = x[s:s + 32]
        want = np.where(seg % 2 == 0, seg[seg % 2 == 0].sum(), -1)
        np.testing.assert_array_equal(y[s:s + 32], want)


def test_simd_shuffle_down_and_broadcast():
    x = np.arange(128, dtype=np.int32) * 3
    y = np.zeros_like(x)
    simd_kernel("simd_shuffle_down", 64, extra=5)(x, y, device="cpu")
    lane = np.arange(128) % 32
    np.testing.assert_array_equal(y, np.where(lane + 5 < 32, np.roll(x, -5), x))
    simd_kernel("simd_broadcast", 64, extra=7)(x, y, device="cpu")
    np.testing.assert_array_equal(y, x[(np.arange(128) // 32) * 32 + 7])


def atomic_kernel(op: str, dt: str, target: str):
    def body(b):
        i = gid(b)
        idx = b.v("load", i, t=I, tensor="idx")
        old = b.v(op, idx, b.v("load", i, t=dt, tensor="val"), t=dt, tensor=target)
        b.op("store", i, old, attrs={"tensor": "old"})
    return mk(op, [tensor("idx", I, ["n"]), tensor("val", dt, ["n"]), tensor("acc", dt, ["m"], "readwrite"),
                   tensor("old", dt, ["n"], "write")], body, grid=(4, 1, 1))


ATOMICS = (("atomic_add", np.add), ("atomic_max", np.maximum), ("atomic_min", np.minimum))


@pytest.mark.parametrize("op, ufunc, dt", [(op, uf, dt) for op, uf in ATOMICS
                                           for dt in ("int32", "uint32", "float32")
                                           if dt != "float32" or op == "atomic_add"])
def test_atomics_match_some_serial_order(op, ufunc, dt):
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 5, 256).astype(np.int32)
    val = rng.integers(0, 50, 256).astype(dt)
    acc0 = rng.integers(0, 20, 5).astype(dt)
    acc, old = acc0.copy(), np.zeros(256, dt)
    atomic_kernel(op, dt, "acc")(idx, val, acc, old, device="cpu")
    want, want_old = acc0.copy(), np.zeros(256, dt)
    for t in range(256):  # thread order is one valid serial order
        want_old[t] = want[idx[t]]
        want[idx[t]] = ufunc(want[idx[t]], val[t])
    np.testing.assert_array_equal(acc, want)
    np.testing.assert_array_equal(old, want_old)


def test_atomic_counter_hands_out_distinct_slots():
    def body(b):
        slot = b.v("atomic_add", b.c(0), b.c(1), t=I, tensor="counter")
        b.op("store", slot, gid(b), attrs={"tensor": "out"})
    k = mk("counter", [tensor("counter", I, [1], "readwrite"), tensor("out", I, ["n"], "write")], body,
           grid=(4, 1, 1))
    counter, out = np.zeros(1, np.int32), np.full(256, -1, np.int32)
    k(counter, out, device="cpu")
    assert counter[0] == 256 and sorted(out.tolist()) == list(range(256))


def test_atomic_int_wraps():
    idx = np.zeros(256, np.int32)
    val = np.full(256, 2**30, np.int32)
    acc, old = np.zeros(1, np.int32), np.zeros(256, np.int32)
    atomic_kernel("atomic_add", I, "acc")(idx, val, acc, old, device="cpu")
    assert acc[0] == np.int32(0)  # 256 * 2**30 wraps to 0


def test_out_of_bounds_load_names_kernel_tensor_index_and_line():
    def body(b):
        i = gid(b)
        b.op("store", i, b.v("load", b.v("add", i, b.c(1), t=I), t=F, tensor="x", line=12),
             attrs={"tensor": "y"})
    k = mk("shift", [tensor("x", F, ["n"]), tensor("y", F, ["n"], "write")], body, grid=(2, 1, 1))
    with pytest.raises(OutOfBoundsError) as e:
        k(np.zeros(128, np.float32), np.zeros(128, np.float32), device="cpu")
    msg = str(e.value)
    assert "kernel 'shift' (kern.py:12)" in msg and "load of tensor 'x' of 128 elements at index 128" in msg
    assert "thread (63, 0, 0) of threadgroup (1, 0, 0)" in msg


@pytest.mark.parametrize("affine", [True, False])
def test_out_of_bounds_store_is_an_error(affine):
    def body(b):
        i = gid(b)
        j = b.v("sub", i, b.c(3), t=I) if affine else b.v("load", i, t=I, tensor="perm")
        b.op("store", j, b.c(1.0, F), attrs={"tensor": "y"}, line=30)
    k = mk("oob", [tensor("perm", I, ["n"]), tensor("y", F, ["n"], "write")], body)
    perm = np.arange(64, dtype=np.int32)[::-1].copy()
    perm[10] = -1
    y = np.zeros(64, np.float32)
    with pytest.raises(OutOfBoundsError, match=r"line 30|kern.py:30") as e:
        k(perm, y, device="cpu")
    assert ("index -3" if affine else "index -1") in str(e.value) and "tensor 'y'" in str(e.value)


def test_out_of_bounds_shared_memory():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        b.op("store", b.v("mul", t, b.c(2), t=I), b.c(1.0, F), attrs={"tensor": "tile"}, line=5)
    k = mk("sh", [tensor("x", F, ["n"])], body, shared=[{"name": "tile", "dtype": F, "shape": [64]}])
    with pytest.raises(OutOfBoundsError, match="threadgroup array 'tile' of 64 elements at index 64"):
        k(np.zeros(1, np.float32), device="cpu")


def test_guarded_out_of_range_indices_in_inactive_threads_are_fine():
    def body(b):
        i = b.v("load", gid(b), t=I, tensor="idx")  # gathered (not affine) indices, some out of range
        ok = b.v("lt", i, b.v("dim", t=I, tensor="x", axis=0), t="bool")
        (v,) = b.if_(ok, [F], lambda: [b.v("load", i, t=F, tensor="x")], lambda: [b.c(0.0, F)])
        b.op("store", gid(b), v, attrs={"tensor": "y"})
    k = mk("gather", [tensor("idx", I, ["n"]), tensor("x", F, ["m"]), tensor("y", F, ["n"], "write")], body)
    idx = np.arange(64, dtype=np.int32) * 3
    x = np.arange(50, dtype=np.float32)
    y = np.zeros(64, np.float32)
    k(idx, x, y, device="cpu")
    np.testing.assert_array_equal(y, np.where(idx < 50, np.minimum(idx, 49), 0))


def test_float_atomic_max_is_rejected():
    from enigma_runtime import IRError
    with pytest.raises(IRError, match="atomic_max on float32"):
        z = np.zeros(256, np.float32)
        k = atomic_kernel("atomic_max", F, "acc")
        k(np.zeros(256, np.int32), z, np.zeros(1, np.float32), z, device="cpu")


@pytest.mark.parametrize("where", ["shared", "global", "aliased"])
def test_loaded_values_do_not_change_when_memory_is_written_later(where):
    """A load is a snapshot (a register on the GPU), even though the executor may load strided views."""
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        if where == "shared":
            b.op("store", t, b.v("load", t, t=I, tensor="x"), attrs={"tensor": "tile"})
            b.op("barrier")
        src = "tile" if where == "shared" else "x"
        old = b.v("load", t, t=I, tensor=src)
        b.op("store", t, b.c(99), attrs={"tensor": "tile" if where == "shared" else "y"})
        b.op("store", t, b.v("add", old, b.v("load", t, t=I, tensor=src), t=I), attrs={"tensor": "y"})
    k = mk("snap", [tensor("x", I, ["n"]), tensor("y", I, ["n"], "readwrite")], body,
           shared=[{"name": "tile", "dtype": I, "shape": [64]}])
    x = np.arange(64, dtype=np.int32)
    y = x.copy() if where != "aliased" else x  # aliased: y is x
    if where == "global":
        y = np.zeros(64, np.int32)
    k(x, y, device="cpu")
    if where == "shared":
        np.testing.assert_array_equal(y, np.arange(64) + 99)
    elif where == "global":  # x is only read: old + x
        np.testing.assert_array_equal(y, 2 * np.arange(64))
    else:  # x is y: old (0..63) + 99 written through y
        np.testing.assert_array_equal(y, np.arange(64) + 99)


def test_vector_values_merge_across_a_divergent_if():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        i4 = b.v("mul", b.v("load", t, t=I, tensor="perm"), b.c(4), t=I)  # gathered, not affine
        v = b.v("vload", i4, t="int32x4", tensor="x", lanes=4)
        odd = b.v("ne", b.v("and", t, b.c(1), t=I), b.c(0), t="bool")
        (r,) = b.if_(odd, ["int32x4"], lambda: [b.v("neg", v, t="int32x4")],
                     lambda: [b.v("add", v, b.v("broadcast", b.c(100), t="int32x4", lanes=4), t="int32x4")])
        b.op("vstore", b.v("mul", t, b.c(4), t=I), r, attrs={"tensor": "y"})
    k = mk("vmerge", [tensor("perm", I, ["m"]), tensor("x", I, ["n"]), tensor("y", I, ["n"], "write")], body,
           block=(16, 1, 1))
    perm = np.random.default_rng(5).permutation(16).astype(np.int32)
    x = np.arange(64, dtype=np.int32)
    y = np.zeros(64, np.int32)
    k(perm, x, y, device="cpu")
    rows = x.reshape(16, 4)[perm]
    want = np.where((np.arange(16) % 2 == 1)[:, None], -rows, rows + 100)
    np.testing.assert_array_equal(y.reshape(16, 4), want)


def test_loop_with_per_thread_bounds_inside_a_divergent_branch():
    def body(b):
        i = gid(b)
        def count():
            (s,) = b.for_(b.c(0), i, b.c(1), [b.c(0)], [I], lambda j, s: [b.v("add", s, b.c(1), t=I)])
            return [s]
        (r,) = b.if_(b.v("lt", i, b.c(20), t="bool"), [I], count, lambda: [b.c(-1)])
        b.op("store", i, r, attrs={"tensor": "y"})
    k = mk("nested", [tensor("y", I, ["n"], "write")], body)
    y = np.zeros(64, np.int32)
    k(y, device="cpu")
    np.testing.assert_array_equal(y, np.where(np.arange(64) < 20, np.arange(64), -1))


def test_while_with_uniform_condition():
    def body(b):
        def before(x):
            return [b.v("lt", x, b.v("param", t=I, name="n"), t="bool"), x]
        (r,) = b.while_([b.c(1)], [I], before, lambda x: [b.v("mul", x, b.c(3), t=I)])
        b.op("store", gid(b), r, attrs={"tensor": "y"})
    k = mk("uwhile", [tensor("y", I, ["m"], "write"), scalar("n")], body)
    y = np.zeros(64, np.int32)
    k(y, 100, device="cpu")
    assert (y == 243).all()


def test_atomics_on_threadgroup_memory():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        b.if_(b.v("lt", t, b.c(4), t="bool"), [], lambda: b.op("store", t, b.c(0), attrs={"tensor": "bins"}))
        b.op("barrier")
        x = b.v("load", gid(b), t=I, tensor="x")
        b.v("atomic_add", b.v("and", x, b.c(3), t=I), b.c(1), t=I, tensor="bins")
        b.op("barrier")
        out = b.v("add", b.v("mul", b.v("block_idx", t=I, dim=0), b.c(4), t=I), t, t=I)
        b.if_(b.v("lt", t, b.c(4), t="bool"), [],
              lambda: b.op("store", out, b.v("load", t, t=I, tensor="bins"), attrs={"tensor": "h"}))
    k = mk("shist", [tensor("x", I, ["n"]), tensor("h", I, ["m"], "write")], body, grid=(3, 1, 1),
           shared=[{"name": "bins", "dtype": I, "shape": [4]}])
    x = np.random.default_rng(6).integers(0, 1000, 192).astype(np.int32)
    h = np.zeros(12, np.int32)
    k(x, h, device="cpu")
    want = [np.bincount(g & 3, minlength=4) for g in x.reshape(3, 64)]
    np.testing.assert_array_equal(h.reshape(3, 4), want)


def test_simd_sum_on_floats_and_bfloat16():
    def body(b):
        i = gid(b)
        v = b.v("load", i, t="bfloat16", tensor="x")
        b.op("store", i, b.v("simd_sum", v, t="bfloat16"), attrs={"tensor": "y"})
    k = mk("bsum", [tensor("x", "bfloat16", ["n"]), tensor("y", "bfloat16", ["n"], "write")], body)
    from enigma_runtime.cpu_space import bf16_from_bits, bf16_to_bits
    x = bf16_to_bits(np.full(64, 1.5, np.float32))
    y = np.zeros(64, np.uint16)
    k(x, y, device="cpu")
    assert (bf16_from_bits(y) == 48.0).all()


def test_views_derived_from_a_threadgroup_load_survive_later_stores():
    def body(b):
        t = b.v("thread_idx", t=I, dim=0)
        b.op("store", t, b.v("load", t, t=I, tensor="x"), attrs={"tensor": "tile"})
        b.op("barrier")

        def loop(j, acc):  # loads inside a loop, dropped after it: no copy needed then
            return [b.v("add", acc, b.v("load", t, t=I, tensor="tile"), t=I)]
        (s,) = b.for_(b.c(0), b.c(3), b.c(1), [b.c(0)], [I], loop)
        wide = b.v("broadcast", b.v("load", t, t=I, tensor="tile"), t="int32x4", lanes=4)  # a view of a view
        b.op("barrier")
        b.op("store", t, b.c(-5), attrs={"tensor": "tile"})
        total = b.v("add", wide, b.v("broadcast", s, t="int32x4", lanes=4), t="int32x4")
        b.op("vstore", b.v("mul", t, b.c(4), t=I), total, attrs={"tensor": "y"})
    k = mk("derived", [tensor("x", I, ["n"]), tensor("y", I, ["m"], "write")], body,
           shared=[{"name": "tile", "dtype": I, "shape": [64]}])
    x = np.arange(64, dtype=np.int32)
    y = np.zeros(256, np.int32)
    k(x, y, device="cpu")
    np.testing.assert_array_equal(y.reshape(64, 4), np.repeat((4 * x)[:, None], 4, axis=1))
