"""MLX's own Metal kernels in the third-party corpus (issue 13): the kernel templates of MLX's headers
(arange.h, unary.h, binary.h, copy.h, ternary.h with their ops and utils.h, bf16_math.h, complex.h...),
from the pinned mlx-metal macOS wheel (thirdparty.mlx_include), compiled exactly as written. The wheel
has no .metal files (MLX keeps its instantiations there), so each case writes one instantiation the
way MLX's .metal files do (`instantiate_kernel(host_name, template, types...)` from MLX's defines.h),
runs it by host_name on known inputs and compares with numpy."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import thirdparty
from toolcheck import need_tool

pytestmark = pytest.mark.needs_clang

N = 61  # not a multiple of the work per thread: the kernels' tail loops run too
F32, F16, I32 = np.float32, np.float16, np.int32
HEADERS = {
    "unary": ("utils.h", "unary_ops.h", "unary.h"),
    "binary": ("utils.h", "binary_ops.h", "binary.h"),
    "copy": ("utils.h", "copy.h"),
    "ternary": ("utils.h", "ternary_ops.h", "ternary.h"),
    "arange": ("utils.h", "arange.h"),
}
MSL = {np.dtype(F32): "float", np.dtype(F16): "half", np.dtype(I32): "int32_t", np.dtype(bool): "bool"}


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


def _source(family: str, host: str, template: str, *args: str) -> str:
    lines = [f'#include "{thirdparty.MLX_KERNELS}/{h}"' for h in HEADERS[family]]
    return "\n".join(["#include <metal_stdlib>", *lines,
                      f'instantiate_kernel("{host}", {template}, {", ".join(args)})', ""])


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.fixture(scope="module")
def mlx():
    need_tool("clang++-22", "clang++-19", "clang++")
    return str(thirdparty.mlx_include())


def _run(src: str, host: str, inc: str, *arrays: Any, threads: int) -> None:
    from enigma.verify import run_msl

    run_msl(src, *arrays, grid=1, block=threads, name=host, include_dirs=[inc])


@pytest.mark.parametrize("case", sorted(UNARY))
def test_mlx_unary_v(case, mlx):
    _, dt_in, dt_out, ref, prep, rtol = UNARY[case]
    op = case.split("_")[0]
    host = f"v_{op}{MSL[np.dtype(dt_in)]}"
    src = _source("unary", host, "unary_v", MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)], op)
    rng = _rng(case)
    if np.dtype(dt_in).kind == "i":
        x = rng.integers(-50, 50, N).astype(dt_in)
    else:
        x = (rng.standard_normal(N) * 2).astype(dt_in)
    if prep is not None:
        x = prep(x)
    out = np.zeros(N, dt_out)
    _run(src, host, mlx, x, out, np.uint32(N), threads=_threads(N, dt_in))
    if ref is None:  # Erf
        import math

        want = np.array([math.erf(float(v)) for v in x])
    else:
        want = ref(x.astype(np.float64) if np.dtype(dt_in).kind == "f" else x)
    np.testing.assert_allclose(out.astype(np.float64), np.asarray(want, np.float64), rtol=rtol, atol=rtol)


# every op as vector-vector; the scalar forms (a or b of one element) for Add, and Divide's vs
BINARY_RUNS = [(c, "vv") for c in sorted(BINARY)] + [("Add", "sv"), ("Add", "vs"), ("Add", "ss"),
                                                     ("Divide", "vs")]


@pytest.mark.parametrize("case,form", BINARY_RUNS)
def test_mlx_binary(case, form, mlx):
    dt_in, dt_out, ref, rtol = BINARY[case]
    op = case.split("_")[0]
    host = f"{form}_{op}{MSL[np.dtype(dt_in)]}"
    src = _source("binary", host, f"binary_{form}", MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)], op)
    rng = _rng(case + form)
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
        _run(src, host, mlx, a, b, out, threads=1)
    else:
        _run(src, host, mlx, a, b, out, np.uint32(n), threads=_threads(n, dt_in))
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
    src = _source("copy", host, f"copy_{form}", MSL[np.dtype(dt_in)], MSL[np.dtype(dt_out)])
    rng = _rng(host)
    x = (rng.standard_normal(N) * 20).astype(dt_in)
    if form == "s":
        x = x[:1].copy()
    out = np.zeros(N, dt_out)
    _run(src, host, mlx, x, out, np.uint32(N), threads=_threads(N, dt_out))  # copy.h: WorkPerThread<U>
    np.testing.assert_array_equal(out, np.broadcast_to(x, (N,)).astype(dt_out))


@pytest.mark.parametrize("bscalar,cscalar", [(False, False), (True, False)])
def test_mlx_ternary_select(bscalar, cscalar, mlx):
    host = f"v_Selectfloat32{int(bscalar)}{int(cscalar)}"
    flags = [str(bscalar).lower(), str(cscalar).lower()]
    src = _source("ternary", host, "ternary_v", "float", "Select", *flags)
    rng = _rng(host)
    c = rng.integers(0, 2, N).astype(bool)
    a, b = rng.standard_normal(N).astype(F32), rng.standard_normal(N).astype(F32)
    a, b = a[:1].copy() if bscalar else a, b[:1].copy() if cscalar else b
    out = np.zeros(N, F32)
    _run(src, host, mlx, c, a, b, out, np.uint32(N), threads=_threads(N, F32))
    np.testing.assert_array_equal(out, np.where(c, np.broadcast_to(a, (N,)), np.broadcast_to(b, (N,))))


@pytest.mark.parametrize("dt", [F32, I32])
def test_mlx_arange(dt, mlx):
    host = f"arange{MSL[np.dtype(dt)]}"
    src = _source("arange", host, "arange", MSL[np.dtype(dt)])
    start, step = (np.array([1.5], dt), np.array([0.25], dt)) if dt is F32 else (np.array([-7], dt),
                                                                                  np.array([3], dt))
    out = np.zeros(N, dt)
    _run(src, host, mlx, start, step, out, threads=N)
    np.testing.assert_array_equal(out, start[0] + np.arange(N, dtype=dt) * step[0])


def test_mlx_out_of_bounds_is_reported(mlx):
    """The checks hold inside MLX's templates: a size larger than the arrays is reported as an
    out-of-bounds access of the named buffer."""
    from enigma.verify import KernelError

    host = "v_Addfloat32"
    src = _source("binary", host, "binary_vv", "float", "float", "Add")
    a, b, out = np.ones(N, F32), np.ones(N, F32), np.zeros(N, F32)
    with pytest.raises(KernelError, match=r"out-of-bounds"):
        _run(src, host, mlx, a, b, out, np.uint32(N + 8), threads=_threads(N + 8, F32))


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
