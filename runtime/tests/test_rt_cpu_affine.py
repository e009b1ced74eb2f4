"""Indices affine in the builtins take the executor's strided-view path; everything else gathers.
Random affine index expressions must give the same answers as a plain numpy reference."""
from __future__ import annotations

import numpy as np
from enigma_runtime import Kernel, OutOfBoundsError
from hypothesis import given, settings
from hypothesis import strategies as st
from irb import kernel, tensor

I = "int32"


def affine_kernel(coefs: tuple[int, ...], c: int, guard: bool) -> Kernel:
    """y[linear thread id] = x[c + k0*tx + k1*ty + k2*bx + k3*by] (guarded: -1 when out of range);
    z[that index] = 1 for in-range threads."""
    def body(b):
        tx, ty = b.v("thread_idx", t=I, dim=0), b.v("thread_idx", t=I, dim=1)
        bx, by = b.v("block_idx", t=I, dim=0), b.v("block_idx", t=I, dim=1)
        i = b.c(c)
        for k, v in zip(coefs, (tx, ty, bx, by)):
            i = b.v("add", i, b.v("mul", v, b.c(k), t=I), t=I)
        bdx, bdy = b.v("block_dim", t=I, dim=0), b.v("block_dim", t=I, dim=1)
        gdx = b.v("grid_dim", t=I, dim=0)
        gid = b.v("add", b.v("mul", b.v("add", b.v("mul", by, gdx, t=I), bx, t=I),
                             b.v("mul", bdx, bdy, t=I), t=I),
                  b.v("add", b.v("mul", ty, bdx, t=I), tx, t=I), t=I)
        n = b.v("dim", t=I, tensor="x", axis=0)
        if guard:
            ok = b.v("and", b.v("ge", i, b.c(0), t="bool"), b.v("lt", i, n, t="bool"), t="bool")

            def then():
                b.op("store", i, b.c(1), attrs={"tensor": "z"})
                return [b.v("load", i, t=I, tensor="x")]
            (v,) = b.if_(ok, [I], then, lambda: [b.c(-1)])
        else:
            v = b.v("load", i, t=I, tensor="x")
            b.op("store", i, b.c(1), attrs={"tensor": "z"})
        b.op("store", gid, v, attrs={"tensor": "y"})
    args = [tensor("x", I, ["n"]), tensor("y", I, ["m"], "write"), tensor("z", I, ["n"], "write")]
    return Kernel.from_spec(*kernel("affine", args, body, block=(4, 3, 1), grid=[2, 3, 1]), "")


def reference(coefs, c, n):
    idx = []
    for by in range(3):
        for bx in range(2):
            for ty in range(3):
                for tx in range(4):
                    idx.append(c + coefs[0] * tx + coefs[1] * ty + coefs[2] * bx + coefs[3] * by)
    return np.array(idx)


@settings(max_examples=60, deadline=None)
@given(coefs=st.tuples(*[st.integers(-20, 20)] * 4), c=st.integers(-50, 150), guard=st.booleans())
def test_affine_indices_match_numpy(coefs, c, guard):
    n = 100
    x = np.arange(n, dtype=np.int32) * 7 + 3
    y, z = np.zeros(72, np.int32), np.zeros(n, np.int32)
    idx = reference(coefs, c, n)
    ok = (idx >= 0) & (idx < n)
    k = affine_kernel(coefs, c, guard)
    if not guard and not ok.all():
        try:
            k(x, y, z, device="cpu")
        except OutOfBoundsError as e:
            assert f"index {idx[~ok][0]} " in str(e)
            return
        raise AssertionError("out-of-bounds access was not reported")
    k(x, y, z, device="cpu")
    np.testing.assert_array_equal(y, np.where(ok, x[np.clip(idx, 0, n - 1)], -1))
    want_z = np.zeros(n, np.int32)
    want_z[idx[ok]] = 1
    np.testing.assert_array_equal(z, want_z)
