"""MLX's elementwise kernels in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): unary.h, binary.h, copy.h, ternary.h and arange.h as MLX's .metal files instantiate them,
contiguous forms (unary_v, binary_vv/sv/vs/ss, copy_v/s, ternary_v) over float32, float16, int32, bfloat16
and complex64, the general-stride forms (unary_g, binary_g(_nd2/_nd3), copy_g(_nd3), copy_gg, ternary_g)
on transposed and broadcast views, binary_two.h's DivMod (two outputs), and an out-of-bounds size
reported inside MLX's templates. Each family's instantiations are compiled together (mlx_corpus.GROUPS)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from mlx_corpus import (
    F16,
    F32,
    I32,
    MSL,
    N,
    add_member,
    bf16,
    case_rng,
    compile_kernel,
    from_bf16,
    group_source,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    register_cases,
    run_kernel,
    source,
)

pytestmark = pytest.mark.needs_clang


def _threads(size: int, dtype: Any) -> int:
    """MLX's launch: each thread does WorkPerThread<T>::n = 8 / sizeof(T) elements (utils.h)."""
    per = max(1, 8 // np.dtype(dtype).itemsize)
    return -(-size // per)


def _pos(x: np.ndarray) -> np.ndarray:
    return np.abs(x) + np.asarray(0.5, x.dtype)


# op[_variant] -> (MSL type name, input dtype, output dtype, numpy reference, input transform, rtol)
UNARY: dict[str, tuple[str, Any, Any, Callable[..., Any] | None, Callable[..., Any] | None, float]] = {
    "Abs": ("float", F32, F32, np.abs, None, 0),
    "Negative": ("float", F32, F32, np.negative, None, 0),
    "Exp": ("float", F32, F32, np.exp, None, 1e-5),
    "Expm1": ("float", F32, F32, np.expm1, None, 1e-5),
    "Log": ("float", F32, F32, np.log, _pos, 1e-5),
    "Log1p": ("float", F32, F32, np.log1p, _pos, 1e-5),
    "Sqrt": ("float", F32, F32, np.sqrt, _pos, 1e-6),
    "Rsqrt": ("float", F32, F32, lambda x: 1 / np.sqrt(x), _pos, 1e-5),
    "Sin": ("float", F32, F32, np.sin, None, 1e-5),
    "Tanh": ("float", F32, F32, np.tanh, None, 1e-5),
    "ArcTan": ("float", F32, F32, np.arctan, None, 1e-5),
    "Sigmoid": ("float", F32, F32, lambda x: 1 / (1 + np.exp(-x)), None, 1e-5),
    "Floor": ("float", F32, F32, np.floor, None, 0),
    "Sign": ("float", F32, F32, np.sign, None, 0),
    "Erf": ("float", F32, F32, None, None, 1e-5),  # reference: math.erf, below
    "Abs_half": ("half", F16, F16, np.abs, None, 0),
    "Exp_half": ("half", F16, F16, np.exp, None, 2e-3),
    "Negative_int": ("int", I32, I32, np.negative, None, 0),
    "Abs_int": ("int", I32, I32, np.abs, None, 0),
}
# op[_variant] -> (input dtype, output dtype, numpy reference, rtol)
BINARY: dict[str, tuple[Any, Any, Callable[..., Any] | None, float]] = {
    "Add": (F32, F32, np.add, 1e-6),
    "Multiply": (F32, F32, np.multiply, 1e-6),
    "Divide": (F32, F32, np.divide, 1e-6),
    "Maximum": (F32, F32, np.maximum, 0),
    "LogAddExp": (F32, F32, np.logaddexp, 1e-5),
    "ArcTan2": (F32, F32, np.arctan2, 1e-5),
    "Greater": (F32, bool, np.greater, 0),
    "Equal": (I32, bool, np.equal, 0),
    "FloorDivide": (I32, I32, None, 0),  # divisors made non-zero below
    "Remainder": (I32, I32, None, 0),
    "BitwiseXor": (I32, I32, np.bitwise_xor, 0),
    "Add_half": (F16, F16, np.add, 1e-3),
}

for _case, (_, _dt_in, _dt_out, *_) in UNARY.items():
    _t_in = MSL[np.dtype(_dt_in)]
    add_member("unary_v", "unary", f"v_{_case.split('_')[0]}{_t_in}", "unary_v", _t_in,
               MSL[np.dtype(_dt_out)], _case.split("_")[0])


@pytest.mark.parametrize("case", sorted(UNARY))
def test_mlx_unary_v(case, mlx):
    _, dt_in, dt_out, ref, prep, rtol = UNARY[case]
    op = case.split("_")[0]
    host = f"v_{op}{MSL[np.dtype(dt_in)]}"
    src, together = group_source("unary_v", host)
    rng = case_rng(case)
    if np.dtype(dt_in).kind == "i":
        x = rng.integers(-50, 50, N).astype(dt_in)
    else:
        x = (rng.standard_normal(N) * 2).astype(dt_in)
    if prep is not None:
        x = prep(x)
    out = np.zeros(N, dt_out)
    run_kernel(src, host, mlx, x, out, np.uint32(N), threads=_threads(N, dt_in), together=together)
    if ref is None:  # Erf
        import math

        want = np.array([math.erf(float(v)) for v in x])
    else:
        want = ref(x.astype(np.float64) if np.dtype(dt_in).kind == "f" else x)
    np.testing.assert_allclose(out.astype(np.float64), np.asarray(want, np.float64), rtol=rtol, atol=rtol)


# every op as vector-vector; the scalar forms (a or b of one element) for Add, and Divide's vs
BINARY_RUNS = [(c, "vv") for c in sorted(BINARY)] + [("Add", "sv"), ("Add", "vs"), ("Add", "ss"),
                                                     ("Divide", "vs")]


for _case, _form in BINARY_RUNS:
    _t_in, _t_out = MSL[np.dtype(BINARY[_case][0])], MSL[np.dtype(BINARY[_case][1])]
    add_member("binary", "binary", f"{_form}_{_case.split('_')[0]}{_t_in}", f"binary_{_form}", _t_in, _t_out,
                _case.split("_")[0])


@pytest.mark.parametrize("case,form", BINARY_RUNS)
def test_mlx_binary(case, form, mlx):
    dt_in, dt_out, ref, rtol = BINARY[case]
    op = case.split("_")[0]
    host = f"{form}_{op}{MSL[np.dtype(dt_in)]}"
    src, together = group_source("binary", host)
    rng = case_rng(case + form)
    if np.dtype(dt_in).kind == "i":
        a = rng.integers(-50, 50, N).astype(dt_in)
        b = rng.integers(1, 9, N).astype(dt_in) * rng.choice([-1, 1], N).astype(dt_in)
        if case == "Equal":
            b[::3] = a[::3]
    else:
        a, b = (rng.standard_normal(N) * 2).astype(dt_in), (rng.standard_normal(N) * 2).astype(dt_in)
    if form[0] == "s":
        a = a[:1].copy()
    if form[1] == "s":
        b = b[:1].copy()
    n = 1 if form == "ss" else N
    out = np.zeros(n, dt_out)
    if form == "ss":
        run_kernel(src, host, mlx, a, b, out, threads=1, together=together)
    else:
        run_kernel(src, host, mlx, a, b, out, np.uint32(n), threads=_threads(n, dt_in), together=together)
    wa = np.broadcast_to(a, (n,)).astype(np.float64 if np.dtype(dt_in).kind == "f" else np.int64)
    wb = np.broadcast_to(b, (n,)).astype(wa.dtype)
    if case == "FloorDivide":
        want = np.floor_divide(wa, wb)  # MLX: a / b, then floor if the signs differ and it is inexact
    elif case == "Remainder":
        want = np.remainder(wa, wb)  # MLX: the sign of the divisor, as numpy
    else:
        want = ref(wa, wb)
    np.testing.assert_allclose(out.astype(np.float64), np.asarray(want, np.float64), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("form,dt_in,dt_out", [("v", F32, F16), ("v", F16, F32), ("v", I32, F32),
                                               ("s", F32, F32), ("v", F32, I32)])
def test_mlx_copy(form, dt_in, dt_out, mlx):
    host = f"{form}_copy{MSL[np.dtype(dt_in)]}{MSL[np.dtype(dt_out)]}"
    src = source("copy", host, f"copy_{form}", MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)])
    rng = case_rng(host)
    x = (rng.standard_normal(N) * 20).astype(dt_in)
    if form == "s":
        x = x[:1].copy()
    out = np.zeros(N, dt_out)
    run_kernel(src, host, mlx, x, out, np.uint32(N), threads=_threads(N, dt_out))  # copy.h: WorkPerThread<U>
    np.testing.assert_array_equal(out, np.broadcast_to(x, (N,)).astype(dt_out))


@pytest.mark.parametrize("bscalar,cscalar", [(False, False), (True, False)])
def test_mlx_ternary_select(bscalar, cscalar, mlx):
    host = f"v_Selectfloat32{int(bscalar)}{int(cscalar)}"
    flags = [str(bscalar).lower(), str(cscalar).lower()]
    src = source("ternary", host, "ternary_v", "float", "Select", *flags)
    rng = case_rng(host)
    c = rng.integers(0, 2, N).astype(bool)
    a, b = rng.standard_normal(N).astype(F32), rng.standard_normal(N).astype(F32)
    a, b = a[:1].copy() if bscalar else a, b[:1].copy() if cscalar else b
    out = np.zeros(N, F32)
    run_kernel(src, host, mlx, c, a, b, out, np.uint32(N), threads=_threads(N, F32))
    np.testing.assert_array_equal(out, np.where(c, np.broadcast_to(a, (N,)), np.broadcast_to(b, (N,))))


@pytest.mark.parametrize("dt", [F32, I32])
def test_mlx_arange(dt, mlx):
    host = f"arange{MSL[np.dtype(dt)]}"
    src = source("arange", host, "arange", MSL[np.dtype(dt)])
    start, step = (np.array([1.5], dt), np.array([0.25], dt)) if dt is F32 else (np.array([-7], dt),
                                                                                  np.array([3], dt))
    out = np.zeros(N, dt)
    run_kernel(src, host, mlx, start, step, out, threads=N)
    np.testing.assert_array_equal(out, start[0] + np.arange(N, dtype=dt) * step[0])


def test_mlx_out_of_bounds_is_reported(mlx):
    """The checks hold inside MLX's templates: a size larger than the arrays is reported as an
    out-of-bounds access of the named buffer."""
    from enigma.verify import KernelError

    host = "v_Addfloat32"
    src = source("binary", host, "binary_vv", "float", "float", "Add")
    a, b, out = np.ones(N, F32), np.ones(N, F32), np.zeros(N, F32)
    with pytest.raises(KernelError, match=r"out-of-bounds"):
        run_kernel(src, host, mlx, a, b, out, np.uint32(N + 8), threads=_threads(N + 8, F32))


# ---------------------------------------------------------------------------------------------------
# bfloat16 and complex64 instantiations of unary/binary (MLX's bfloat16_t is Metal's bfloat: arrays
# hold its bits as uint16; complex64_t is two floats, numpy's complex64)

# op -> (numpy reference in float64, input transform)
BF16_UNARY: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None]] = {
    "Abs": (np.abs, None), "Exp": (np.exp, None), "Log": (np.log, _pos), "Sqrt": (np.sqrt, _pos),
    "Sigmoid": (lambda x: 1 / (1 + np.exp(-x)), None), "Tanh": (np.tanh, None),
}


for _op in BF16_UNARY:
    add_member("unary_v", "unary", f"v_{_op}bfloat16", "unary_v", "bfloat16_t", "bfloat16_t", _op)


@pytest.mark.parametrize("op", sorted(BF16_UNARY))
def test_mlx_unary_v_bfloat16(op, mlx):
    """MLX computes bfloat unary ops in float and rounds once (bf16_math.h): the result is the
    float32 reference rounded to bfloat, give or take one bfloat ulp (libm vs Metal's float ops)."""
    from enigma_runtime.dtypes import bf16_round

    ref, prep = BF16_UNARY[op]
    host = f"v_{op}bfloat16"
    src, together = group_source("unary_v", host)
    x = (case_rng(host).standard_normal(N) * 2).astype(F32)
    x = from_bf16(bf16(prep(x) if prep else x))  # exactly representable inputs
    out = np.zeros(N, np.uint16)
    run_kernel(src, host, mlx, bf16(x), out, np.uint32(N), threads=_threads(N, np.uint16), together=together)
    want = bf16_round(ref(x.astype(np.float64)).astype(F32))
    np.testing.assert_allclose(from_bf16(out), want, rtol=2 ** -7, atol=0)


BF16_BINARY: dict[str, Callable[..., Any]] = {
    "Add": np.add, "Multiply": np.multiply, "Divide": np.divide, "Maximum": np.maximum,
    "Minimum": np.minimum, "Subtract": np.subtract,
}


for _op in BF16_BINARY:
    add_member("binary", "binary", f"vv_{_op}bfloat16", "binary_vv", "bfloat16_t", "bfloat16_t", _op)


@pytest.mark.parametrize("op", sorted(BF16_BINARY))
def test_mlx_binary_vv_bfloat16(op, mlx):
    """bfloat binary ops: float32 arithmetic on the exact bfloat inputs, rounded once to bfloat
    (round to nearest even), so the result is exactly numpy's float32 result rounded."""
    from enigma_runtime.dtypes import bf16_round

    host = f"vv_{op}bfloat16"
    src, together = group_source("binary", host)
    rng = case_rng(host)
    a, b = (from_bf16(bf16(rng.standard_normal(N).astype(F32) * 3)) for _ in range(2))
    out = np.zeros(N, np.uint16)
    run_kernel(src, host, mlx, bf16(a), bf16(b), out, np.uint32(N), threads=_threads(N, np.uint16),
              together=together)
    np.testing.assert_array_equal(from_bf16(out), bf16_round(BF16_BINARY[op](a, b)))


def _c64(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)


COMPLEX_UNARY: dict[str, Callable[..., Any]] = {"Exp": np.exp, "Negative": np.negative, "Conjugate": np.conj,
                                                "Abs": np.abs, "Log": np.log, "Sqrt": np.sqrt}


for _op in COMPLEX_UNARY:
    add_member("unary_v", "unary", f"v_{_op}complex64", "unary_v", "complex64_t",
                "float" if _op == "Abs" else "complex64_t", _op)


@pytest.mark.parametrize("op", sorted(COMPLEX_UNARY))
def test_mlx_unary_v_complex64(op, mlx):
    """complex64_t (complex.h): two floats, numpy's complex64 memory layout; Abs gives float32."""
    host = f"v_{op}complex64"
    out_t, out_dt = ("float", F32) if op == "Abs" else ("complex64_t", np.complex64)
    src, together = group_source("unary_v", host)
    x = _c64(case_rng(host), N)
    out = np.zeros(N, out_dt)
    run_kernel(src, host, mlx, x.view(F32), out.view(F32), np.uint32(N), threads=_threads(N, np.complex64),
              together=together)
    np.testing.assert_allclose(out, COMPLEX_UNARY[op](x.astype(np.complex128)), rtol=2e-5, atol=2e-6)


COMPLEX_BINARY: dict[str, Callable[..., Any]] = {"Add": np.add, "Multiply": np.multiply, "Divide": np.divide,
                                                 "Subtract": np.subtract}


for _op in COMPLEX_BINARY:
    add_member("binary", "binary", f"vv_{_op}complex64", "binary_vv", "complex64_t", "complex64_t", _op)


@pytest.mark.parametrize("op", sorted(COMPLEX_BINARY))
def test_mlx_binary_vv_complex64(op, mlx):
    host = f"vv_{op}complex64"
    src, together = group_source("binary", host)
    rng = case_rng(host)
    a, b = _c64(rng, N), _c64(rng, N)
    out = np.zeros(N, np.complex64)
    run_kernel(src, host, mlx, a.view(F32), b.view(F32), out.view(F32), np.uint32(N),
              threads=_threads(N, np.complex64), together=together)
    np.testing.assert_allclose(out, COMPLEX_BINARY[op](a.astype(np.complex128), b), rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------------------------------------------
# general-stride forms (unary_g, binary_g(_nd2/_nd3), copy_g(_nd3), copy_gg, ternary_g): strided views
# of a larger buffer (transposed, broadcast), shapes and strides in elements as extra buffers; a
# thread per N elements of the last axis, grid (ceil(last / N), shape[-2], rest), as MLX launches

def _strided_view(name: str, dt: Any, shape: tuple[int, ...], perm: tuple[int, ...]
                  ) -> tuple[np.ndarray, ...]:
    """A contiguous base array and its transposed view of `shape`: (base, view, strides in elements)."""
    base_shape = tuple(shape[perm.index(i)] for i in range(len(shape)))
    rng = case_rng(name)
    base = rng.integers(-50, 50, base_shape).astype(dt) if np.dtype(dt).kind == "i" else \
        rng.standard_normal(base_shape).astype(dt)
    view = base.transpose(perm)
    return base, view, np.array(view.strides, np.int64) // base.itemsize


SHAPE3 = (4, 5, 7)


def _g_launch(shape: tuple[int, ...], n: int) -> dict[str, Any]:
    return dict(grid=(1, shape[-2], int(np.prod(shape[:-2]))), block=(-(-shape[-1] // n), 1, 1))


@pytest.mark.parametrize("op,dt,n", [("Exp", F32, 1), ("Abs", I32, 4), ("Sqrt", F16, 2)])
def test_mlx_unary_g(op, dt, n, mlx):

    t = MSL[np.dtype(dt)]
    host = f"g{n}_{op}{t}"
    src = source("unary", host, "unary_g", t, t, op, str(n))
    base, view, strides = _strided_view(host, dt, SHAPE3, (2, 0, 1))
    base = np.abs(base) if op == "Sqrt" else base
    view = base.transpose((2, 0, 1))
    out = np.zeros(SHAPE3, dt)
    bufs = {0: base, 1: out, 2: np.array(SHAPE3, np.int32), 3: strides, 4: np.int32(3)}
    compile_kernel(src, host, mlx).run(bufs, **_g_launch(SHAPE3, n))
    want = {"Exp": np.exp, "Abs": np.abs, "Sqrt": np.sqrt}[op](view.astype(dt if dt is I32 else np.float64))
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=1e-3 if dt is F16 else 1e-6)


@pytest.mark.parametrize("kernel,op,n", [("binary_g", "Add", 1), ("binary_g", "Multiply", 4),
                                         ("binary_g_nd3", "Subtract", 1), ("binary_g_nd2", "Maximum", 1)])
def test_mlx_binary_g(kernel, op, n, mlx):
    """a transposed, b broadcast along the middle axis (stride 0); binary_g_nd2 on 2-D views."""

    host = f"{kernel}{n}_{op}float32"
    extra = [str(n)] if kernel == "binary_g" else []
    src = source("binary", host, kernel, "float", "float", op, *extra)
    shape = SHAPE3 if kernel != "binary_g_nd2" else SHAPE3[1:]
    perm = (2, 0, 1) if len(shape) == 3 else (1, 0)
    a_base, a, a_strides = _strided_view(host + "a", F32, shape, perm)
    b_base = case_rng(host + "b").standard_normal(shape[:-2] + (1,) + shape[-1:]).astype(F32)
    b = np.broadcast_to(b_base, shape)
    b_strides = np.array(b.strides, np.int64) // 4
    out = np.zeros(shape, F32)
    bufs: dict[int, Any] = {0: a_base, 1: b_base, 2: out}
    if kernel == "binary_g":
        bufs.update({3: np.array(shape, np.int32), 4: a_strides, 5: b_strides, 6: np.int32(len(shape))})
    else:
        bufs.update({3: a_strides, 4: b_strides})
    launch = _g_launch(shape, n) if len(shape) == 3 else dict(grid=(1, shape[0], 1), block=(shape[1], 1, 1))
    compile_kernel(src, host, mlx).run(bufs, **launch)
    want = {"Add": np.add, "Multiply": np.multiply, "Subtract": np.subtract, "Maximum": np.maximum}[op](a, b)
    np.testing.assert_allclose(out, want, rtol=1e-6)


@pytest.mark.parametrize("kernel,dt_in,dt_out,n", [("copy_g", F32, F16, 1), ("copy_g", I32, F32, 4),
                                                   ("copy_g_nd3", F32, F32, 1), ("copy_gg", F32, F32, 1)])
def test_mlx_copy_g(kernel, dt_in, dt_out, n, mlx):
    """A transposed view copied to a contiguous array (copy_gg: into a transposed destination)."""

    t_in, t_out = MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)]
    host = f"{kernel}{n}_{t_in}{t_out}"
    extra = [str(n)] if kernel == "copy_g" else []
    src = source("copy", host, kernel, t_in, t_out, *extra)
    base, view, strides = _strided_view(host, dt_in, SHAPE3, (2, 0, 1))
    if kernel == "copy_gg":
        dst_base = np.zeros((SHAPE3[2], SHAPE3[1], SHAPE3[0]), dt_out)  # the destination is (2, 1, 0)
        dst_view = dst_base.transpose((2, 1, 0))
        bufs = {0: base, 1: dst_base, 2: np.array(SHAPE3, np.int32), 3: strides,
                4: np.array(dst_view.strides, np.int64) // dst_base.itemsize, 5: np.int32(3)}
        compile_kernel(src, host, mlx).run(bufs, **_g_launch(SHAPE3, 1))
        np.testing.assert_array_equal(dst_view, view.astype(dt_out))
        return
    out = np.zeros(SHAPE3, dt_out)
    if kernel == "copy_g":
        bufs = {0: base, 1: out, 2: np.array(SHAPE3, np.int32), 3: strides, 5: np.int32(3)}
    else:
        bufs = {0: base, 1: out, 3: strides}
    compile_kernel(src, host, mlx).run(bufs, **_g_launch(SHAPE3, n))
    np.testing.assert_array_equal(out, view.astype(dt_out))


def test_mlx_ternary_g(mlx):
    """Select with a transposed condition, a broadcast b and a contiguous c, 2 elements per thread."""

    host = "g2_Selectfloat32"
    src = source("ternary", host, "ternary_g", "float", "Select", "2")
    cond_base, cond, c_strides = _strided_view(host, np.int32, SHAPE3, (1, 2, 0))
    cond_base = (cond_base > 0)
    cond = cond_base.transpose((1, 2, 0))
    b_base = case_rng(host + "b").standard_normal(SHAPE3[-1]).astype(F32)
    c = case_rng(host + "c").standard_normal(SHAPE3).astype(F32)
    out = np.zeros(SHAPE3, F32)
    bufs = {0: cond_base, 1: b_base, 2: c, 3: out, 4: np.array(SHAPE3, np.int32), 5: c_strides,
            6: np.array([0, 0, 1], np.int64), 7: np.array(c.strides, np.int64) // 4, 8: np.int32(3)}
    compile_kernel(src, host, mlx).run(bufs, **_g_launch(SHAPE3, 2))
    np.testing.assert_array_equal(out, np.where(cond, np.broadcast_to(b_base, SHAPE3), c))


# ---------------------------------------------------------------------------------------------------
# binary_two.h (DivMod: two outputs, metal::array results)


@pytest.mark.parametrize("dt,form", [(I32, "vv"), (F32, "vv"), (I32, "sv")])
def test_mlx_binary_two_divmod(dt, form, mlx):
    """DivMod writes the floor quotient and the remainder (numpy's divmod) to two outputs."""

    t = MSL[np.dtype(dt)]
    host = f"{form}_DivMod{t}"
    src = source("binary_two", host, f"binary_{form}", t, t, "DivMod")
    rng = case_rng(host)
    a = (rng.integers(-50, 50, N) if dt is I32 else rng.standard_normal(N) * 20).astype(dt)
    b = rng.integers(1, 9, N) * rng.choice([-1, 1], N) if dt is I32 else rng.standard_normal(N) * 3
    b = b.astype(dt)
    if form == "sv":
        a = a[:1].copy()
    q, r = np.zeros(N, dt), np.zeros(N, dt)
    compile_kernel(src, host, mlx).run({0: a, 1: b, 2: q, 3: r, 4: np.uint32(N)}, grid=(1, 1, 1),
                                       block=(_threads(N, dt), 1, 1))
    wq, wr = np.divmod(np.broadcast_to(a, (N,)).astype(np.float64 if dt is F32 else dt), b)
    if dt is I32:
        np.testing.assert_array_equal(q, wq)
        np.testing.assert_array_equal(r, wr)
    else:  # MLX: trunc(a / b) adjusted, fmod-based remainder: equal to numpy's up to rounding
        np.testing.assert_allclose(q, wq, rtol=0, atol=1e-4)
        np.testing.assert_allclose(r, wr, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# the groups compiled together (see mlx_corpus.GROUPS), each member as its test instantiates it
# (compile_kernel checks)

register_cases("unary_v", "unary", test_mlx_unary_g,
               lambda op, dt, n: (f"g{n}_{op}{MSL[np.dtype(dt)]}", "unary_g",
                                  (MSL[np.dtype(dt)], MSL[np.dtype(dt)], op, str(n))))
register_cases("binary", "binary", test_mlx_binary_g,
               lambda kernel, op, n: (f"{kernel}{n}_{op}float32", kernel,
                                      ("float", "float", op, *([str(n)] if kernel == "binary_g" else []))))
register_cases("copy", "copy", test_mlx_copy,
               lambda form, dt_in, dt_out: (f"{form}_copy{MSL[np.dtype(dt_in)]}{MSL[np.dtype(dt_out)]}",
                                            f"copy_{form}", (MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)])))
register_cases("copy", "copy", test_mlx_copy_g,
               lambda kernel, dt_in, dt_out, n: (f"{kernel}{n}_{MSL[np.dtype(dt_in)]}{MSL[np.dtype(dt_out)]}",
                                                 kernel, (MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)],
                                                          *([str(n)] if kernel == "copy_g" else []))))
