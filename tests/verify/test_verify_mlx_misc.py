"""The rest of MLX's kernels in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): hadamard.h, indexing (gather_axis, scatter_axis), cross_entropy.h (loss and gradient)
and searchsorted.h; the compatibility layer MLX's headers need from enigma.verify (on a source of our
own); and issue 13's bound over every family's cases: known failures <= 10% of the corpus."""
from __future__ import annotations

import numpy as np
import pytest
from mlx_corpus import (
    F16,
    F32,
    FAMILY_MODULES,
    I32,
    KNOWN_FAILURES,
    MSL,
    case_rng,
    compile_kernel,
    mlx_cases,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    source,
    to_t,
    val_t,
)
from toolcheck import need_tool

pytestmark = pytest.mark.needs_clang


# ---------------------------------------------------------------------------------------------------
# hadamard.h: the Walsh-Hadamard transform of rows of N = 2^k in threadgroup memory (radix steps and
# a final smaller radix), `instantiate_kernel(name, hadamard_n, T, N, max_radix, read_width)`; a
# group of N / max_radix threads per row


@pytest.mark.parametrize("t,n,radix,width", [("float", 512, 16, 4), ("half", 64, 8, 2),
                                             ("float", 256, 16, 4)])
def test_mlx_hadamard_n(t, n, radix, width, mlx):

    host = f"hadamard_n_{t}_{n}"
    src = source("hadamard", host, "hadamard_n", t, str(n), str(radix), str(width))
    rows = 3
    x = to_t(t, case_rng(host).standard_normal((rows, n)))
    out = np.zeros_like(x)
    scale = 1 / np.sqrt(n)
    compile_kernel(src, host, mlx).run({0: x, 1: out, 2: np.float32(scale)}, grid=(1, rows, 1),
                                       block=(n // radix, 1, 1))
    had = np.ones((1, 1))
    while had.shape[0] < n:  # Sylvester's construction: natural (Walsh-Hadamard) order
        had = np.block([[had, had], [had, -had]])
    want = val_t(t, x) @ had * scale
    tol = {"float": 1e-5, "half": 3e-3}[t]
    np.testing.assert_allclose(val_t(t, out), want, rtol=tol, atol=tol * float(np.abs(want).max()))


# ---------------------------------------------------------------------------------------------------
# indexing/gather_axis.h and scatter_axis.h (take_along_axis / put_along_axis): a thread per
# (post, index along the axis, pre) element; negative indices count from the end; scatter through
# MLX's atomics (mlx_atomic<T>, reduction/ops.h's None and Sum)

PRE, AXIS, POST, IDX_AXIS = 3, 7, 5, 4


@pytest.mark.parametrize("dt,src_c", [(F32, True), (I32, False)])
def test_mlx_gather_axis(dt, src_c, mlx):
    """take_along_axis over axis 1 of (3, 7, 5) with int32 indices (some negative); the strided form
    (SrcC false) reads a transposed source through its strides."""

    t = MSL[np.dtype(dt)]
    host = f"gather_axis_{t}_int32_{int(src_c)}"
    src = source("gather_axis", host, "gather_axis", t, "int32_t", "int64_t", str(src_c).lower(), "true")
    rng = case_rng(host)
    base = (rng.standard_normal((POST, AXIS, PRE)) * 10).astype(dt)  # x = base.transpose(2, 1, 0)
    x = np.ascontiguousarray(base.transpose(2, 1, 0)) if src_c else base.transpose(2, 1, 0)
    idx = rng.integers(-AXIS, AXIS, (PRE, IDX_AXIS, POST)).astype(np.int32)
    out = np.zeros((PRE, IDX_AXIS, POST), dt)
    shape = np.array([PRE, POST], np.int32)  # MLX's shape and strides without the axis
    bufs = {0: x if src_c else base, 1: idx, 2: out, 3: shape,
            4: np.array(x.strides, np.int64)[[0, 2]] // x.itemsize,
            5: np.array(idx.strides, np.int64)[[0, 2]] // 4, 6: np.uint64(2), 7: np.int32(1),
            8: np.int32(AXIS), 9: np.uint64(x.strides[1] // x.itemsize), 10: np.uint64(POST)}
    compile_kernel(src, host, mlx).run(bufs, grid=(1, IDX_AXIS, PRE), block=(POST, 1, 1))
    np.testing.assert_array_equal(out, np.take_along_axis(x, np.where(idx < 0, idx + AXIS, idx), 1))


@pytest.mark.parametrize("op,dt", [("Sum", F32), ("None", I32)])
def test_mlx_scatter_axis(op, dt, mlx):
    """put_along_axis over axis 1: Sum adds every update with an atomic (indices repeat); None stores
    (indices distinct along the axis, so the result does not depend on the order)."""

    t = MSL[np.dtype(dt)]
    host = f"scatter_axis_{op}_{t}"
    op_t = "None" if op == "None" else f"Sum<{t}>"
    src = source("scatter_axis", host, "scatter_axis", t, "int32_t", "int64_t", op_t, "true", "true")
    rng = case_rng(host)
    upd = (rng.standard_normal((PRE, IDX_AXIS, POST)) * 10).astype(dt)
    if op == "None":
        idx = np.argsort(rng.random((PRE, AXIS, POST)), axis=1)[:, :IDX_AXIS, :].astype(np.int32) - AXIS
    else:
        idx = rng.integers(-AXIS, AXIS, (PRE, IDX_AXIS, POST)).astype(np.int32)
    out = (rng.standard_normal((PRE, AXIS, POST)) * 10).astype(dt)
    want = out.copy()
    pos = np.where(idx < 0, idx + AXIS, idx)
    if op == "None":
        np.put_along_axis(want, pos, upd, 1)
    else:
        for p_ in range(PRE):
            for i in range(IDX_AXIS):
                for q in range(POST):
                    want[p_, pos[p_, i, q], q] += upd[p_, i, q]
    bufs = {0: upd, 1: idx, 2: out, 3: np.array([PRE, POST], np.int32),
            4: np.array(upd.strides, np.int64)[[0, 2]] // upd.itemsize,
            5: np.array(idx.strides, np.int64)[[0, 2]] // 4, 6: np.uint64(2), 7: np.int32(1),
            8: np.int32(AXIS), 9: np.uint64(POST), 10: np.uint64(POST)}
    compile_kernel(src, host, mlx).run(bufs, grid=(1, IDX_AXIS, PRE), block=(POST, 1, 1))
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# cross_entropy.h (loss and its gradient, a group per row) and searchsorted.h


@pytest.mark.parametrize("t,axis", [("float", 1000), ("half", 77)])
def test_mlx_cross_entropy(t, axis, mlx):
    """Loss = logsumexp(x) - x[target] (targets negative too), then cross_entropy_vjp's gradient
    cotan * (softmax(x) - onehot(target)) from that loss; 128 threads per row, 4 reads each."""
    from enigma.verify import compile_msl

    rows = 3
    rng = case_rng(f"ce{t}{axis}")
    x = to_t(t, rng.standard_normal((rows, axis)) * 2)
    target = rng.integers(-axis, axis, rows).astype(np.int32)
    loss = np.zeros(rows, F32)
    host = f"cross_entropy_{t}"
    compile_msl(source("cross_entropy", host, "cross_entropy", t, "float"), host, include_dirs=[mlx]).run(
        {0: x, 1: target, 2: loss, 3: np.int32(axis)}, grid=(rows, 1, 1), block=(128, 1, 1))
    xv, tgt = val_t(t, x), np.where(target < 0, target + axis, target)
    lse = xv.max(1) + np.log(np.exp(xv - xv.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(loss, lse - xv[np.arange(rows), tgt], rtol=1e-5, atol=1e-5)
    cotan = rng.standard_normal(rows).astype(F32)
    grad = np.zeros_like(x)
    host = f"cross_entropy_vjp_{t}"
    compile_msl(source("cross_entropy", host, "cross_entropy_vjp", t, "float"), host,
                include_dirs=[mlx]).run({0: x, 1: target, 2: loss, 3: cotan, 4: grad, 5: np.int32(axis)},
                                        grid=(rows, 1, 1), block=(128, 1, 1))
    want = np.exp(xv - lse[:, None])
    want[np.arange(rows), tgt] -= 1
    tol = {"float": 1e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, grad), want * cotan[:, None], rtol=tol, atol=tol)


@pytest.mark.parametrize("dt,right", [(F32, False), (F32, True), (I32, False)])
def test_mlx_searchsorted(dt, right, mlx):
    """Insertion points of 64 values into a sorted array read with stride 2 (ties included)."""

    t = MSL[np.dtype(dt)]
    host = f"searchsorted_{t}_{int(right)}"
    src = source("searchsorted", host, "searchsorted", t, str(right).lower())
    rng = case_rng(host)
    a = np.sort(rng.integers(-20, 20, 50)).astype(dt)
    strided = np.zeros(100, dt)
    strided[::2] = a
    v = np.concatenate([a[::5], rng.integers(-25, 25, 54)]).astype(dt)
    out = np.zeros(v.size, np.uint32)
    compile_kernel(src, host, mlx).run({0: strided, 1: v, 2: out, 3: np.uint32(a.size),
                                        4: np.int64(2)}, grid=(1, 1, 1), block=(v.size, 1, 1))
    np.testing.assert_array_equal(out, np.searchsorted(a, v, side="right" if right else "left"))


# ---------------------------------------------------------------------------------------------------
# what MLX's headers need from enigma.verify, on a source of our own

LAYER_SRC = r"""
#include <metal_stdlib>
using namespace metal;
typedef bfloat bf16_alias;
struct pair_t {
  float a, b;
  constexpr pair_t(float a, float b) thread : a(a), b(b) {}
};
pair_t make(float x) { return {x, 2.0f * x}; }  // a temporary: Metal's thread constructor serves it
struct logger_t {
  constexpr logger_t(constant char*, constant char*) constant {}
  void log(constant char*) const constant {}
};
constant logger_t logger("a", "b");
namespace metal { namespace precise {  // a header's own overload (MLX's bf16_math.h does this)
METAL_FUNC bfloat atan(bfloat x) {
  return static_cast<bfloat>(__metal_atan(static_cast<float>(x), __METAL_PRECISE_MATH__));
}
} }
kernel void layer(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
                  uint i [[thread_position_in_grid]]) {
  logger.log("string literals bind to constant char*");
  pair_t p = make(x[i]);
  out[8 * i + 0] = p.b;
  out[8 * i + 1] = metal::precise::atan(x[i]);  // still the float overload, not bfloat's
  out[8 * i + 2] = float(static_cast<bf16_alias>(half(x[i])));  // half -> bfloat, explicitly
  out[8 * i + 3] = __metal_fabs(x[i], __METAL_MAYBE_FAST_MATH__);
  out[8 * i + 4] = float(numeric_limits<bfloat>::max());
  out[8 * i + 5] = numeric_limits<float>::quiet_NaN();
  out[8 * i + 6] = float(numeric_limits<signed char>::min());
  out[8 * i + 7] = float(metal::precise::atan(bfloat(x[i])));
}
"""


def test_compatibility_layer_for_mlx_headers():
    """What MLX's headers need from enigma.verify, on a small source of our own (runs without the
    wheel): thread-qualified constructors serving temporaries, string literals bound to
    `constant char*`, static_cast from half to a typedef of bfloat, Apple's __metal_* builtins with
    their math-mode argument, overloads a header adds to metal::precise adding to (not hiding) ours,
    numeric_limits of bfloat and signed char, quiet_NaN."""
    from enigma.verify import run_msl

    need_tool("clang++-22", "clang++-19", "clang++")
    x = np.array([0.3, -1.7, 2.5, 11.0], F32)
    out = np.zeros(8 * len(x), F32)
    run_msl(LAYER_SRC, x, out, grid=1, block=len(x), name="layer")
    got = out.reshape(len(x), 8)
    np.testing.assert_array_equal(got[:, 0], 2 * x)
    np.testing.assert_allclose(got[:, 1], np.arctan(x), rtol=1e-6)
    bits = x.astype(F16).astype(F32).view(np.uint32)
    bf = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # round to nearest even, to bfloat
    np.testing.assert_array_equal(got[:, 2], bf.view(F32))
    np.testing.assert_array_equal(got[:, 3], np.abs(x))
    np.testing.assert_array_equal(got[:, 4], np.float32(3.3895314e38))
    assert np.isnan(got[:, 5]).all()
    np.testing.assert_array_equal(got[:, 6], -128)
    np.testing.assert_allclose(got[:, 7], np.arctan(x), rtol=1e-2)


def test_mlx_known_failures_are_few():
    """Issue 13's goal: >= 90% of the corpus compiles, runs and agrees as written. Each known failure
    names a case of a family's module (which checks that it fails exactly so)."""
    cases = mlx_cases()
    assert len(FAMILY_MODULES) >= 6 and len(cases) >= 100
    assert set(KNOWN_FAILURES) <= set(cases)
    assert len(KNOWN_FAILURES) <= 0.1 * len(cases)
