"""Dot-product chains (an unrolled inner product) run as one matrix product on the CPU, when their
operands vary along different thread axes; otherwise exactly as written."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime import Kernel, cpu_dot
from irb import kernel, scalar, tensor

F, I = "float32", "int32"


def unrolled_matmul(tile: int = 8, unroll: int | None = None, mixed: bool = False,
                    rolled: str = "") -> Kernel:
    """c = a @ b with tile x tile threadgroups staging tiles in threadgroup memory and the inner
    product unrolled into a chain of mul/add (as the compiler emits range_constexpr). `mixed`: the
    operands of every other product are swapped, and each chain starts from a product. `rolled`
    ("fma" or "muladd"): the inner product is a for loop over the tile instead."""
    unroll = tile if unroll is None else unroll

    def body(b):
        T = b.c(tile)
        tx, ty = b.v("thread_idx", t=I, dim=0), b.v("thread_idx", t=I, dim=1)
        bx, by = b.v("block_idx", t=I, dim=0), b.v("block_idx", t=I, dim=1)
        K, N = b.v("dim", t=I, tensor="a", axis=1), b.v("dim", t=I, tensor="b", axis=1)
        row = b.v("add", b.v("mul", by, T, t=I), ty, t=I)
        col = b.v("add", b.v("mul", bx, T, t=I), tx, t=I)
        lid = b.v("add", b.v("mul", ty, T, t=I), tx, t=I)

        def ktile(t, acc):
            ai = b.v("add", b.v("mul", row, K, t=I), b.v("add", t, tx, t=I), t=I)
            bi = b.v("add", b.v("mul", b.v("add", t, ty, t=I), N, t=I), col, t=I)
            b.op("store", lid, b.v("load", ai, t=F, tensor="a"), attrs={"tensor": "As"})
            b.op("store", lid, b.v("load", bi, t=F, tensor="b"), attrs={"tensor": "Bs"})
            b.op("barrier")

            def product(i):
                x = b.v("load", b.v("add", b.v("mul", ty, T, t=I), i, t=I), t=F, tensor="As")
                y = b.v("load", b.v("add", b.v("mul", i, T, t=I), tx, t=I), t=F, tensor="Bs")
                return x, y
            if rolled:  # a for loop over the tile: acc = fma(x, y, acc) or acc + x * y
                def inner(i, acc):
                    x, y = product(i)
                    if rolled == "fma":
                        return [b.v("fma", x, y, acc, t=F)]
                    return [b.v("add", b.v("mul", x, y, t=F), acc, t=F)]
                (acc,) = b.for_(b.c(0), T, b.c(1), [acc], [F], inner)
            for i in range(0 if rolled else unroll):
                x, y = product(b.c(i))
                p = b.v("mul", *((y, x) if mixed and i % 2 else (x, y)), t=F)
                acc = b.v("add", *((p, acc) if mixed else (acc, p)), t=F)
            b.op("barrier")
            return [acc]
        (acc,) = b.for_(b.c(0), K, T, [b.c(0.0, F)], [F], ktile)
        b.op("store", b.v("add", b.v("mul", row, N, t=I), col, t=I), acc, attrs={"tensor": "c"})
    sh = [{"name": s, "dtype": F, "shape": [tile * tile]} for s in ("As", "Bs")]
    spec, ir = kernel("mm", [tensor("a", F, ["m", "k"]), tensor("b", F, ["k", "n"]),
                             tensor("c", F, ["m", "n"], "write"), scalar("m"), scalar("n")], body,
                      block=(tile, tile, 1), shared=sh)
    return Kernel.from_spec(spec, ir, "")


def _run(k: Kernel, m: int, kk: int, n: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, kk)).astype(np.float32)
    b = rng.standard_normal((kk, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    k(a, b, c, m, n, grid=(n // tile, m // tile, 1), device="cpu")
    return a, b, c


def _float_ops(steps: list, name: str) -> int:
    return sum(op["op"] == name and op.get("types") == [F] for _, op in steps)


def _loop_body(k: Kernel):
    """The CPU plan's compiled body of the kernel's (first, top-level) for loop."""
    plan = k.specs[0].plan
    return plan.nested[id(next(op for op in plan.ir["body"] if op["op"] == "for"))][0]


@pytest.mark.parametrize("mixed", [False, True])
def test_unrolled_chain_is_one_step_and_matches_numpy(mixed, monkeypatch):
    products = []
    real = cpu_dot._outer_sum
    monkeypatch.setattr(cpu_dot, "_outer_sum", lambda xs, ys: products.append(real(xs, ys)) or products[-1])
    k = unrolled_matmul(8, mixed=mixed)
    steps = _loop_body(k).steps
    assert _float_ops(steps, "mul") == 0 and _float_ops(steps, "add") == 1  # one step: the fused chain
    a, b, c = _run(k, 32, 64, 24, 8)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)
    assert len(products) == 64 // 8 and all(p is not None for p in products)  # the matrix product ran


def test_a_chain_that_is_not_an_outer_product_runs_as_written(monkeypatch):
    """Products of operands that vary along the same thread axes: the fused step falls back to the
    chain's own steps, so the result equals the unfused executor's bit for bit."""
    def body(b):
        tx = b.v("thread_idx", t=I, dim=0)
        acc = b.c(0.5, F)
        for i in range(6):
            x = b.v("load", b.v("add", b.v("mul", tx, b.c(6), t=I), b.c(i), t=I), t=F, tensor="x")
            acc = b.v("add", acc, b.v("mul", x, x, t=F), t=F)
        b.op("store", tx, acc, attrs={"tensor": "y"})
    spec, ir = kernel("sq", [tensor("x", F, [64 * 6]), tensor("y", F, [64], "write")], body,
                      block=(64, 1, 1), grid=[1, 1, 1])
    x = np.random.default_rng(1).standard_normal(64 * 6).astype(np.float32)
    fused, plain = np.zeros(64, np.float32), np.zeros(64, np.float32)
    k = Kernel.from_spec(spec, ir, "")
    assert _float_ops(k.specs[0].plan.body.steps, "mul") == 0
    k(x, fused, device="cpu")
    monkeypatch.setattr(cpu_dot, "ENABLED", False)  # the unfused executor
    Kernel.from_spec(spec, ir, "")(x, plain, device="cpu")
    np.testing.assert_array_equal(fused, plain)
    want = np.float32(0.5)
    for i in range(6):
        want = want + x[i::6] * x[i::6]
    np.testing.assert_array_equal(fused, want)


def test_short_chains_and_reused_values_are_left_alone():
    k = unrolled_matmul(8, unroll=3)  # 3 < MIN_CHAIN: the loop's body keeps its 3 products
    assert _float_ops(_loop_body(k).steps, "mul") == 3


@pytest.mark.parametrize("rolled", ["fma", "muladd"])
def test_a_loop_accumulating_products_is_one_matrix_product(rolled, monkeypatch):
    products = []
    real = cpu_dot._outer_sum
    monkeypatch.setattr(cpu_dot, "_outer_sum", lambda xs, ys: products.append(real(xs, ys)) or products[-1])
    k = unrolled_matmul(8, rolled=rolled)
    a, b, c = _run(k, 32, 64, 24, 8)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)
    assert len(products) == 64 // 8 and all(p is not None for p in products)


def test_a_loop_whose_products_are_not_outer_products_runs_as_written(monkeypatch):
    def body(b):
        tx = b.v("thread_idx", t=I, dim=0)

        def inner(i, acc):
            x = b.v("load", b.v("add", b.v("mul", tx, b.c(6), t=I), i, t=I), t=F, tensor="x")
            return [b.v("fma", x, x, acc, t=F)]
        (acc,) = b.for_(b.c(0), b.c(6), b.c(1), [b.c(0.5, F)], [F], inner)
        b.op("store", tx, acc, attrs={"tensor": "y"})
    spec, ir = kernel("sqloop", [tensor("x", F, [64 * 6]), tensor("y", F, [64], "write")], body,
                      block=(64, 1, 1), grid=[1, 1, 1])
    x = np.random.default_rng(2).standard_normal(64 * 6).astype(np.float32)
    fused, plain = np.zeros(64, np.float32), np.zeros(64, np.float32)
    Kernel.from_spec(spec, ir, "")(x, fused, device="cpu")
    monkeypatch.setattr(cpu_dot, "ENABLED", False)  # the unfused executor
    Kernel.from_spec(spec, ir, "")(x, plain, device="cpu")
    np.testing.assert_array_equal(fused, plain)
