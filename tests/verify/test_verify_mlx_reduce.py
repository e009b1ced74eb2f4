"""MLX's reductions in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): reduce.h (all_reduce, row_reduce_simple/small/looped, col_reduce_small/looped,
init_reduce), softmax.h (single-row and looped), logsumexp.h, scan.h (contiguous and strided scans) and
sort.h (block_sort, argsort), launched as MLX launches them; and a launch that is not MLX's (more threads
than columns) whose return before a barrier is reported."""
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
    add_member,
    bf16,
    case_rng,
    compile_kernel,
    from_bf16,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    register_cases,
    source,
    to_t,
    val_t,
)

pytestmark = pytest.mark.needs_clang


# ---------------------------------------------------------------------------------------------------
# reductions (reduce.h: reduction/reduce_{all,row,col,init}.h with reduction/ops.h and atomic.h),
# instantiated as MLX's reduce.metal does: `instantiate_kernel(name, kernel, T, U, Op<U>, ...)`

OPS = {"sum": ("Sum", np.sum), "prod": ("Prod", np.prod), "max": ("Max", np.max), "min": ("Min", np.min)}


def _red_input(name: str, op: str, dt: Any, shape: tuple[int, ...]) -> np.ndarray:
    rng = case_rng(name)
    if np.dtype(dt).kind == "i":
        if op == "prod":
            return rng.choice(np.array([-1, 1, 1, 2], dt), shape)
        return rng.integers(-1000, 1000, shape).astype(dt)
    if op == "prod":  # products of many values stay in range
        return (1 + 0.02 * rng.standard_normal(shape)).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def _red_source(kernel: str, op: str, dt: Any, *extra: str) -> tuple[str, str]:
    t = MSL[np.dtype(dt)]
    host = f"{kernel}_{op}{t}{''.join('_' + e for e in extra)}"
    return host, source("reduce", host, kernel, t, t, f"{OPS[op][0]}<{t}>", *extra)


def _check_red(got: np.ndarray, x: np.ndarray, op: str, axis: Any) -> None:
    want = OPS[op][1](x.astype(np.float64 if x.dtype.kind == "f" else np.int64), axis=axis)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    else:
        np.testing.assert_array_equal(got, want.astype(x.dtype))  # int32 wraps as MLX's does


@pytest.mark.parametrize("op,dt", [("sum", F32), ("max", F32), ("min", I32), ("prod", F32), ("sum", I32)])
def test_mlx_all_reduce(op, dt, mlx):
    """all_reduce in MLX's two passes: 4 threadgroups of 64 threads (2 simdgroups) each reduce a
    row of 250 (the last one short), then one group reduces the 4 partial results."""

    host, src = _red_source("all_reduce", op, dt)
    x = _red_input(host, op, dt, (997,))
    prog = compile_kernel(src, host, mlx)
    part, out = np.zeros(4, dt), np.zeros(1, dt)
    prog.run({0: x, 1: part, 2: np.uint64(x.size), 3: np.uint64(250)}, grid=(1, 4, 1), block=(64, 1, 1))
    prog.run({0: part, 1: out, 2: np.uint64(4), 3: np.uint64(4)}, grid=(1, 1, 1), block=(32, 1, 1))
    _check_red(out[0], x, op, None)


@pytest.mark.parametrize("op,dt", [("sum", F32), ("max", I32), ("prod", F32)])
def test_mlx_row_reduce_simple(op, dt, mlx):
    """row_reduce_simple: each group writes REDUCE_N_WRITES = 4 rows (the last group is moved back
    to rows 9..12 of 13); 70-element rows over 32 threads x 4 reads leave a partial block."""

    host, src = _red_source("row_reduce_simple", op, dt)
    x = _red_input(host, op, dt, (13, 70))
    out = np.zeros(13, dt)
    compile_kernel(src, host, mlx).run(
              {0: x, 1: out, 2: np.uint64(70), 3: np.int64(13)}, grid=(1, 4, 1), block=(32, 1, 1))
    _check_red(out, x, op, 1)


def _strided(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """MLX's (shape, strides) of the kept dimensions and of the reduced ones (but the last or the
    column), as int32 / int64 arrays (row-major input)."""
    strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
    kept = [i for i in range(len(shape)) if i not in axes]
    return (np.array([shape[i] for i in kept], np.int32), np.array([strides[i] for i in kept], np.int64))


@pytest.mark.parametrize("op,dt,outer", [("sum", F32, 5), ("sum", F32, 40), ("min", I32, 40)])
def test_mlx_row_reduce_small(op, dt, outer, mlx):
    """row_reduce_small over axes (0, 2) of (outer, 6, 7): rows of 7, `outer` rows per output; with 5
    rows one thread per output loops over them, with 40 a simdgroup per output shares them."""

    host, src = _red_source("row_reduce_small", op, dt, "int", "1")
    x = _red_input(host + str(outer), op, dt, (outer, 6, 7))
    shape, strides = _strided(x.shape, (0, 2))
    out = np.zeros(6, dt)
    bufs = {0: x, 1: out, 2: np.int64(7), 3: np.int64(outer), 4: shape, 5: strides, 6: np.int32(1),
            7: np.array([outer], np.int32), 8: np.array([42], np.int64), 9: np.int32(1)}
    launch = dict(grid=(1, 1, 1), block=(6, 1, 1)) if outer <= 8 else dict(grid=(1, 6, 1), block=(32, 1, 1))
    compile_kernel(src, host, mlx).run(bufs, **launch)
    _check_red(out, x, op, (0, 2))


@pytest.mark.parametrize("op,dt", [("sum", F32), ("max", F32)])
def test_mlx_row_reduce_looped(op, dt, mlx):
    """row_reduce_looped over axes (0, 2) of (3, 5, 300): a group of 64 threads per output loops over
    3 rows of 300 (one block of 256 and a partial one)."""

    host, src = _red_source("row_reduce_looped", op, dt, "int", "1")
    x = _red_input(host, op, dt, (3, 5, 300))
    shape, strides = _strided(x.shape, (0, 2))
    out = np.zeros(5, dt)
    bufs = {0: x, 1: out, 2: np.int64(300), 3: np.int64(3), 4: shape, 5: strides, 6: np.int32(1),
            7: np.array([3], np.int32), 8: np.array([1500], np.int64), 9: np.int32(1)}
    compile_kernel(src, host, mlx).run(bufs, grid=(1, 5, 1), block=(64, 1, 1))
    _check_red(out, x, op, (0, 2))


def _col_bufs(x: np.ndarray, out: np.ndarray) -> dict[int, Any]:
    p, r, c = x.shape
    return {0: x, 1: out, 2: np.uint64(r), 3: np.int64(c), 4: np.array([p], np.int32),
            5: np.array([r * c], np.int64), 6: np.int32(1), 7: np.array([r], np.int32),
            8: np.array([c], np.int64), 9: np.int32(1), 10: np.uint64(1)}


@pytest.mark.parametrize("op,dt", [("sum", F32), ("min", F32), ("max", I32)])
def test_mlx_col_reduce_small(op, dt, mlx):
    """col_reduce_small over axis 1 of (3, 50, 37): one group of 10 x 4 threads per output row, 4
    columns per thread (37 columns: the last thread's are partly past the end), the 4 row-threads
    combined through threadgroup memory. As MLX launches it, every thread has a column: a thread
    past the last column returns before the kernel's barrier (`column >= reduction_stride`), which
    enigma.verify reports (a launch with 8 x 4 threads and 2 groups across does that)."""

    host, src = _red_source("col_reduce_small", op, dt, "int", "1")
    x = _red_input(host, op, dt, (3, 50, 37))
    out = np.zeros((3, 37), dt)
    compile_kernel(src, host, mlx).run(_col_bufs(x, out), grid=(1, 3, 1), block=(10, 4, 1))
    _check_red(out, x, op, 1)


@pytest.mark.parametrize("op,dt,bm,bn", [("sum", F32, 32, 32), ("max", I32, 32, 32), ("sum", F32, 8, 128)])
def test_mlx_col_reduce_looped(op, dt, bm, bn, mlx):
    """col_reduce_looped with MLX's two tiles (BM x BN = 32 x 32: simd_sum across the 32 rows;
    8 x 128: threadgroup-memory combine), 256 threads, over axis 1 of (2, 70, 150)."""

    host, src = _red_source("col_reduce_looped", op, dt, "int", "1", str(bm), str(bn))
    x = _red_input(host, op, dt, (2, 70, 150))
    out = np.zeros((2, 150), dt)
    bufs = _col_bufs(x, out)
    bufs[11] = np.int64(0)  # column_offset
    compile_kernel(src, host, mlx).run(bufs, grid=(-(-150 // bn), 2, 1), block=(256, 1, 1))
    _check_red(out, x, op, 1)


def test_mlx_init_reduce(mlx):
    """init_reduce fills with the op's identity: Max<float> starts from -inf (MLX's Limits)."""

    host = "init_reduce_maxfloat32"
    src = source("reduce", host, "init_reduce", "float", "Max<float>")
    out = np.zeros(16, F32)
    compile_kernel(src, host, mlx).run({0: out}, grid=(1, 1, 1), block=(8, 2, 1))
    np.testing.assert_array_equal(out, -np.inf)


# ---------------------------------------------------------------------------------------------------
# softmax (softmax.h): one group per row; block_softmax for rows that fit in one pass (threads =
# ceil(axis / 4) rounded up to the simdgroup width), looped_softmax with 1024 threads (MLX's
# launch: its combine step reads all 32 simdgroups' partial results)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("kernel,t,acc,axis", [
    ("softmax_single_row", "float", "float", 203), ("softmax_single_row", "half", "half", 130),
    ("softmax_single_row", "half", "float", 130), ("softmax_single_row", "bfloat16_t", "float", 77),
    ("softmax_looped", "float", "float", 4500)])
def test_mlx_softmax(kernel, t, acc, axis, mlx):

    host = f"{kernel}_{t}_{acc}"
    src = source("softmax", host, kernel, t, acc)
    rows = 3 if kernel == "softmax_single_row" else 2
    x = (case_rng(host).standard_normal((rows, axis)) * 3).astype(F32)
    dt = {"float": F32, "half": F16, "bfloat16_t": np.uint16}[t]
    xin = bf16(x) if t == "bfloat16_t" else x.astype(dt)
    xval = from_bf16(xin) if t == "bfloat16_t" else xin.astype(F32)
    out = np.zeros_like(xin)
    threads = 1024 if kernel == "softmax_looped" else -(-axis // 128) * 32  # ceil(axis / 4) up to 32k
    compile_kernel(src, host, mlx).run({0: xin, 1: out, 2: np.int32(axis)}, grid=(rows, 1, 1),
                                       block=(threads, 1, 1))
    got = from_bf16(out) if t == "bfloat16_t" else out.astype(F32)
    tol = {"float": 1e-5, "half": 2e-3, "bfloat16_t": 1e-2}[t]
    np.testing.assert_allclose(got, _softmax(xval), rtol=tol, atol=tol * 0.1)


# ---------------------------------------------------------------------------------------------------
# scan (scan.h): contiguous_scan (one group per row, 4 reads per thread) and strided_scan (32 x 32
# tiles, 256 threads), `instantiate_kernel(name, kernel, T, U, Op<U>, N_READS, inclusive, reverse)`

SCANS = {"CumSum": np.cumsum, "CumProd": np.cumprod, "CumMax": np.maximum.accumulate,
         "CumMin": np.minimum.accumulate}


def _scan_ref(x: np.ndarray, op: str, axis: int, inclusive: bool, reverse: bool) -> np.ndarray:
    x = np.flip(x, axis) if reverse else x
    r = SCANS[op](x.astype(np.float64 if x.dtype.kind == "f" else np.int64), axis=axis)
    if not inclusive:
        init = {"CumSum": 0, "CumProd": 1, "CumMax": -np.inf, "CumMin": np.inf}[op]
        if x.dtype.kind == "i":
            init = {"CumMax": np.iinfo(x.dtype).min, "CumMin": np.iinfo(x.dtype).max}.get(op, init)
        r = np.concatenate([np.full_like(np.take(r, [0], axis), init), np.delete(r, -1, axis)], axis)
    return np.flip(r, axis) if reverse else r


def _scan_input(host: str, op: str, dt: Any, shape: tuple[int, ...]) -> np.ndarray:
    rng = case_rng(host)
    if np.dtype(dt).kind == "i":
        return rng.integers(-100, 100, shape).astype(dt)
    x = (1 + 0.01 * rng.standard_normal(shape)) if op == "CumProd" else rng.standard_normal(shape)
    return x.astype(dt)


@pytest.mark.parametrize("op,dt,inclusive,reverse", [
    ("CumSum", F32, True, False), ("CumSum", I32, False, False), ("CumProd", F32, True, True),
    ("CumMax", F32, False, True), ("CumMin", I32, True, False)])
def test_mlx_contiguous_scan(op, dt, inclusive, reverse, mlx):
    """3 rows of 301, one group per row: 96 threads (ceil(301 / 4) rounded up to the simdgroup width,
    as MLX launches it; the last threads' reads partly past the row's end), and for CumSum float
    32 threads, so each group carries its prefix over 3 blocks of 128."""

    t = MSL[np.dtype(dt)]
    flags = [str(inclusive).lower(), str(reverse).lower()]
    host = f"contig_scan_{op}_{t}_{'_'.join(flags)}"
    src = source("scan", host, "contiguous_scan", t, t, f"{op}<{t}>", "4", *flags)
    x = _scan_input(host, op, dt, (3, 301))
    out = np.zeros_like(x)
    threads = 32 if (op, dt) == ("CumSum", F32) else 96
    compile_kernel(src, host, mlx).run({0: x, 1: out, 2: np.uint64(301)}, grid=(1, 3, 1),
                                       block=(threads, 1, 1))
    want = _scan_ref(x, op, 1, inclusive, reverse)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("op,dt,inclusive,reverse", [
    ("CumSum", F32, True, False), ("CumSum", F32, False, True), ("CumMax", I32, True, False)])
def test_mlx_strided_scan(op, dt, inclusive, reverse, mlx):
    """A scan over axis 1 of (2, 45, 40): stride 40 (two 32-column blocks, the second partial), 45
    rows (two 32-row tiles); 256 threads per group, one group per (outer index, column block)."""

    t = MSL[np.dtype(dt)]
    flags = [str(inclusive).lower(), str(reverse).lower()]
    host = f"strided_scan_{op}_{t}_{'_'.join(flags)}"
    src = source("scan", host, "strided_scan", t, t, f"{op}<{t}>", "4", *flags)
    x = _scan_input(host, op, dt, (2, 45, 40))
    out = np.zeros_like(x)
    bufs = {0: x, 1: out, 2: np.uint64(45), 3: np.uint64(40), 4: np.uint64(2)}
    compile_kernel(src, host, mlx).run(bufs, grid=(1, 4, 1), block=(256, 1, 1))
    want = _scan_ref(x, op, 1, inclusive, reverse)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(out, want)


# ---------------------------------------------------------------------------------------------------
# sort (sort.h): block_sort, a merge sort of one row per threadgroup in threadgroup memory
# (`instantiate_kernel(name, block_sort, T, U, ARG_SORT, BLOCK_THREADS, N_PER_THREAD)`); argsort
# gives uint32 indices; NaNs sort last as in numpy


@pytest.mark.parametrize("dt,arg,threads,per", [(F32, False, 64, 8), (F32, True, 64, 8), (I32, False, 32, 8),
                                                (F16, True, 128, 4)])
def test_mlx_block_sort(dt, arg, threads, per, mlx):

    t = MSL[np.dtype(dt)]
    out_t, out_dt = ("uint32_t", np.uint32) if arg else (t, dt)
    host = f"{'arg' if arg else ''}sort_{t}_{threads}_{per}"
    src = source("sort", host, "block_sort", t, out_t, str(arg).lower(), str(threads), str(per))
    rows, n = 3, threads * per - 37  # the block's tail is padded with the comparison's init
    rng = case_rng(host)
    x = rng.integers(-1000, 1000, (rows, n)) if dt is I32 else rng.standard_normal((rows, n)) * 10
    x = x.astype(dt)
    if dt is F32:
        x[1, ::50] = np.nan
    out = np.zeros((rows, n), out_dt)
    bufs = {0: x, 1: out, 2: np.int32(n), 3: np.int32(1), 4: np.int32(1), 5: np.int32(n), 6: np.int32(n)}
    compile_kernel(src, host, mlx).run(bufs, grid=(1, rows, 1), block=(threads, 1, 1))
    if arg:  # ties may come in any order: the indices must give the sorted values
        assert (np.sort(out, axis=1) == np.arange(n)).all()
        np.testing.assert_array_equal(np.take_along_axis(x, out.astype(np.int64), 1), np.sort(x, axis=1))
    else:
        np.testing.assert_array_equal(out, np.sort(x, axis=1))


# ---------------------------------------------------------------------------------------------------
# logsumexp.h (launched as softmax)

@pytest.mark.parametrize("kernel,t,axis", [("logsumexp", "float", 203), ("logsumexp", "half", 130),
                                           ("logsumexp_looped", "float", 4500)])
def test_mlx_logsumexp(kernel, t, axis, mlx):

    host = f"{kernel}_{t}"
    src = source("logsumexp", host, kernel, t, "float")
    x = to_t(t, case_rng(host).standard_normal((3, axis)) * 3)
    out = np.zeros(3, x.dtype)
    threads = 1024 if kernel == "logsumexp_looped" else -(-axis // 128) * 32
    compile_kernel(src, host, mlx).run({0: x, 1: out, 2: np.int32(axis)}, grid=(3, 1, 1),
                                       block=(threads, 1, 1))
    xv = val_t(t, x)
    want = xv.max(1) + np.log(np.exp(xv - xv.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(val_t(t, out), want, rtol=1e-3 if t == "half" else 1e-5)


def test_mlx_return_before_barrier_is_reported(mlx):
    """col_reduce_small launched with more column-threads than columns (not MLX's launch): the
    threads past the last column return before the kernel's threadgroup_barrier, which is reported
    (on a GPU, undefined behaviour)."""
    from enigma.verify import KernelError

    host, src = _red_source("col_reduce_small", "sum", F32, "int", "1")
    x = _red_input(host, "sum", F32, (3, 50, 37))
    out = np.zeros((3, 37), F32)
    with pytest.raises(KernelError, match=r"threadgroup_barrier .* not reached by every thread"):
        compile_kernel(src, host, mlx).run(_col_bufs(x, out), grid=(2, 3, 1), block=(8, 4, 1))


# ---------------------------------------------------------------------------------------------------
# the groups compiled together (see mlx_corpus.GROUPS), each member as its test instantiates it
# (compile_kernel checks)

def _red(kernel: str, *extra: str) -> Callable[..., tuple[str, str, tuple[str, ...]]]:
    def member(op: str, dt: Any, *rest: Any) -> tuple[str, str, tuple[str, ...]]:
        t = MSL[np.dtype(dt)]
        more = (*extra, *map(str, rest)) if kernel == "col_reduce_looped" else extra
        host = f"{kernel}_{op}{t}{''.join('_' + e for e in more)}"
        return host, kernel, (t, t, f"{OPS[op][0]}<{t}>", *more)
    return member


register_cases("reduce", "reduce", test_mlx_all_reduce, _red("all_reduce"))
register_cases("reduce", "reduce", test_mlx_row_reduce_simple, _red("row_reduce_simple"))
register_cases("reduce", "reduce", test_mlx_row_reduce_small,
               lambda op, dt, _: _red("row_reduce_small", "int", "1")(op, dt))
register_cases("reduce", "reduce", test_mlx_row_reduce_looped, _red("row_reduce_looped", "int", "1"))
register_cases("reduce", "reduce", test_mlx_col_reduce_small, _red("col_reduce_small", "int", "1"))
register_cases("reduce", "reduce", test_mlx_col_reduce_looped, _red("col_reduce_looped", "int", "1"))
add_member("reduce", "reduce", "init_reduce_maxfloat32", "init_reduce", "float", "Max<float>")


def _scan(kernel: str, prefix: str) -> Callable[..., tuple[str, str, tuple[str, ...]]]:
    def member(op: str, dt: Any, inclusive: bool, reverse: bool) -> tuple[str, str, tuple[str, ...]]:
        t, flags = MSL[np.dtype(dt)], [str(inclusive).lower(), str(reverse).lower()]
        return f"{prefix}_{op}_{t}_{'_'.join(flags)}", kernel, (t, t, f"{op}<{t}>", "4", *flags)
    return member


register_cases("scan", "scan", test_mlx_contiguous_scan, _scan("contiguous_scan", "contig_scan"))
register_cases("scan", "scan", test_mlx_strided_scan, _scan("strided_scan", "strided_scan"))


def _sort(dt: Any, arg: bool, threads: int, per: int) -> tuple[str, str, tuple[str, ...]]:
    t = MSL[np.dtype(dt)]
    return (f"{'arg' if arg else ''}sort_{t}_{threads}_{per}", "block_sort",
            (t, "uint32_t" if arg else t, str(arg).lower(), str(threads), str(per)))


register_cases("sort", "sort", test_mlx_block_sort, _sort)
register_cases("softmax", "softmax", test_mlx_softmax,
               lambda kernel, t, acc, axis: (f"{kernel}_{t}_{acc}", kernel, (t, acc)))
