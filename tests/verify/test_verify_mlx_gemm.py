"""MLX's matrix products in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): gemv.h (gemv, gemv_t), steel GEMM (steel_gemm_fused with aligned and unaligned tiles,
transposes, batches, a C source and axpby), split-K GEMM and its accumulation, segmented_mm,
gather_mm_rhs (mixture of experts) and steel conv (2-D convolution as an implicit GEMM), with the
KNOWN_FAILURES of gemv and steel GEMM checked to fail with their reports."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlx_corpus import (
    F32,
    KNOWN_FAILURES,
    add_member,
    case_rng,
    compile_kernel,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    source,
    to_t,
    val_t,
)

pytestmark = pytest.mark.needs_clang


# ---------------------------------------------------------------------------------------------------
# gemv.h: gemv (out = mat @ vec, mat (out, in)) and gemv_t (out = vec @ mat, mat (in, out)),
# `instantiate_kernel(name, gemv, T, BM, BN, SM, SN, TM, TN, kDoNCBatch, kDoAxpby)`; a group of
# 32 x BN x BM threads per block of outputs along x (MLX's launch)

# case -> (kernel, T, (BM, BN, SM, SN, TM, TN), axpby, out size, in size)
GEMVS = {
    "gemv_f32": ("gemv", "float", (4, 1, 1, 32, 4, 4), False, 77, 130),
    "gemv_f32_axpby": ("gemv", "float", (4, 1, 1, 32, 4, 4), True, 77, 130),
    "gemv_f16_sm8": ("gemv", "half", (1, 1, 8, 4, 4, 4), False, 70, 96),
    "gemv_f32_bn8": ("gemv", "float", (1, 8, 1, 32, 4, 4), False, 77, 130),  # KNOWN_FAILURES
    "gemv_t_f32": ("gemv_t", "float", (1, 1, 8, 4, 4, 4), False, 77, 130),
    "gemv_t_f32_axpby_bn2": ("gemv_t", "float", (1, 2, 8, 4, 4, 1), True, 80, 130),
    "gemv_t_f32_bn2_partial": ("gemv_t", "float", (1, 2, 8, 4, 4, 1), False, 77, 130),  # KNOWN_FAILURES
    "gemv_t_bf16_bm4": ("gemv_t", "bfloat16_t", (4, 1, 1, 32, 1, 4), False, 256, 100),
}
KNOWN_FAILURES["gemv[gemv_f32_bn8]"] = (
    r"threadgroup_barrier at line \d+ is not reached by every thread of the threadgroup",
    "gemv with BN > 1 (several simdgroups across the input) combines them with a "
    "threadgroup_barrier inside `if (thrN == 0)` (gemv.h, GEMVKernel::run): only lane 0 of each "
    "simdgroup reaches it, which Metal's rule for barriers forbids (every thread of the group "
    "must reach it, or none)")
KNOWN_FAILURES["gemv[gemv_t_f32_bn2_partial]"] = (
    r"threadgroup_barrier at line \d+ is not reached by every thread of the threadgroup",
    "gemv_t's main loop has a threadgroup_barrier inside `if (out_col < out_vec_size)` "
    "(GEMVTKernel::run): when the output size is not a multiple of the block (TN = 1: 77 of 80 "
    "columns), the threads of the columns past the end skip every barrier of the loop")


@pytest.mark.parametrize("case", sorted(GEMVS))
def test_mlx_gemv(case, mlx):
    from enigma.verify import KernelError

    kernel, t, (bm, bn, sm, sn, tm, tn), axpby, n_out, n_in = GEMVS[case]
    host = f"{case}_{bm}_{bn}_{sm}_{sn}_{tm}_{tn}"
    src = source("gemv", host, kernel, t, *map(str, (bm, bn, sm, sn, tm, tn)), "false", str(axpby).lower())
    prog = compile_kernel(src, host, mlx)
    rng = case_rng(case)
    mat = to_t(t, rng.standard_normal((n_out, n_in) if kernel == "gemv" else (n_in, n_out)))
    vec, bias = to_t(t, rng.standard_normal(n_in)), to_t(t, rng.standard_normal(n_out))
    out = np.zeros(n_out, vec.dtype)
    i64 = np.zeros(1, np.int64)
    bufs = dict(enumerate([mat, vec, bias, out, np.int32(n_in), np.int32(n_out),
                           np.int32(n_in if kernel == "gemv" else n_out), np.float32(0.5), np.float32(-2.0),
                           np.int32(1), np.array([1], np.int32), i64, i64, i64, np.int32(1)]))
    block = bm * sm * tm if kernel == "gemv" else bn * sn * tn  # outputs per group
    launch = dict(grid=(-(-n_out // block), 1, 1), block=(32, bn, bm))
    known = KNOWN_FAILURES.get(f"gemv[{case}]")
    if known:
        with pytest.raises(KernelError, match=known[0]):
            prog.run(bufs, **launch)
        return
    prog.run(bufs, **launch)
    want = val_t(t, mat) @ val_t(t, vec) if kernel == "gemv" else val_t(t, vec) @ val_t(t, mat)
    if axpby:
        want = 0.5 * want - 2.0 * val_t(t, bias)
    tol = {"float": 2e-5, "half": 2e-3, "bfloat16_t": 1e-2}[t]
    np.testing.assert_allclose(val_t(t, out), want, rtol=tol, atol=tol * float(np.abs(want).max()))


# ---------------------------------------------------------------------------------------------------
# steel GEMM (steel/gemm/kernels/steel_gemm_fused.h with gemm.h, mma.h, loader.h: simdgroup
# matrices, threadgroup tiles): `instantiate_kernel(name, gemm, T, BM, BN, BK, WM, WN, transpose_a,
# transpose_b, float)` as MLX's steel_gemm_fused.metal; function constants (alignment of M/N/K,
# batch, C source, axpby) given at run time; launched as MLX does: a group of 32 x WN x WM threads
# per BM x BN tile, grid (tiles_n, tiles_m, batch)

GEMM_PARAMS = np.dtype([(n, "i4") for n in ("M", "N", "K", "lda", "ldb", "ldd", "tiles_n", "tiles_m")]
                       + [(n, "i8") for n in ("batch_stride_a", "batch_stride_b", "batch_stride_d")]
                       + [(n, "i4") for n in ("swizzle_log", "gemm_k_iterations_aligned", "batch_ndim")],
                       align=True)
ADDMM_PARAMS = np.dtype([("ldc", "i4"), ("fdc", "i4"), ("batch_stride_c", "i8"), ("alpha", "f4"),
                         ("beta", "f4")], align=True)


# (T, BM, BN, BK, WM, WN, transpose_a, transpose_b, M, N, K, batch, C source: None / "add" / "axpby",
#  batch given as shapes and strides (has_batch, B broadcast over the batch))
GEMMS = {
    "nn_f32_unaligned": ("float", 32, 32, 16, 2, 2, False, False, 45, 70, 37, 1, None, False),
    "nn_f32_aligned": ("float", 64, 64, 16, 2, 2, False, False, 64, 128, 48, 1, None, False),
    "nt_f32": ("float", 64, 64, 16, 2, 2, False, True, 70, 45, 40, 1, None, False),
    "tn_f32_batched": ("float", 32, 64, 16, 1, 2, True, False, 40, 72, 33, 2, None, False),
    "tt_f32_add": ("float", 32, 32, 16, 2, 2, True, True, 64, 40, 24, 1, "add", False),
    "nn_f16_axpby": ("half", 64, 32, 32, 2, 2, False, False, 64, 50, 70, 1, "axpby", False),
    # M not a multiple of BM with a C source: see KNOWN_FAILURES
    "nn_f32_add_partial_m": ("float", 32, 32, 16, 2, 2, False, False, 45, 40, 24, 1, "add", False),
    "nn_bf16_has_batch": ("bfloat16_t", 32, 32, 16, 2, 2, False, False, 40, 36, 20, 3, None, True),
}


KNOWN_FAILURES["steel_gemm[nn_f32_add_partial_m]"] = (
    r"out-of-bounds read access to \[\[buffer\(2\)\]\] C .*element \d+, "
    r"but the buffer holds 1800 elements",
    "steel GEMM's apply_epilogue_safe (mma.h) reads C for every row of the last M tile and checks "
    "only the columns (store_result_safe checks both), so with a C source and M not a multiple of "
    "BM it reads C past its end (rows M..; the values are discarded): a real out-of-bounds read")


@pytest.mark.parametrize("case", sorted(GEMMS))
def test_mlx_steel_gemm(case, mlx):
    from enigma.verify import KernelError, compile_msl

    t, bm, bn, bk, wm, wn, ta, tb, m, n, k, batch, csrc, has_batch = GEMMS[case]
    host = f"steel_gemm_fused_{'nt'[ta]}{'nt'[tb]}_{t}_bm{bm}_bn{bn}_bk{bk}_wm{wm}_wn{wn}"
    src = source("gemm", host, "gemm", t, str(bm), str(bn), str(bk), str(wm), str(wn), str(ta).lower(),
                 str(tb).lower(), "float")
    fc = {"has_batch": has_batch, "use_out_source": csrc is not None, "do_axpby": csrc == "axpby",
          "align_M": m % bm == 0, "align_N": n % bn == 0, "align_K": k % bk == 0}
    prog = compile_msl(src, host, include_dirs=[mlx], function_constants=fc)
    rng = case_rng(case)
    nb_b = 1 if has_batch else batch  # has_batch: B is broadcast over the batch (stride 0)
    a = to_t(t, rng.standard_normal((batch, k, m) if ta else (batch, m, k)))
    b = to_t(t, rng.standard_normal((nb_b, n, k) if tb else (nb_b, k, n)))
    d = np.zeros((batch, m, n), a.dtype)
    tiles_n, tiles_m = -(-n // bn), -(-m // bm)
    p = np.array([(m, n, k, m if ta else k, k if tb else n, n, tiles_n, tiles_m, m * k,
                   0 if has_batch else n * k, m * n, 0, k // bk, 1 if has_batch else 0)], GEMM_PARAMS)
    bufs: dict[int, Any] = {0: a, 1: b, 3: d, 4: p.view(np.uint8)}
    alpha, beta = (0.5, -2.0) if csrc == "axpby" else (1.0, 1.0)
    c = to_t(t, rng.standard_normal((batch, m, n)))
    if csrc is not None:
        bufs[2] = c
        bufs[5] = np.array([(n, 1, m * n, alpha, beta)], ADDMM_PARAMS).view(np.uint8)
    if has_batch:
        bufs[6] = np.array([batch], np.int32)
        bufs[7] = np.array([m * k, 0], np.int64)  # A's batch stride, B's
    known = KNOWN_FAILURES.get(f"steel_gemm[{case}]")
    if known:
        with pytest.raises(KernelError, match=known[0]):
            prog.run(bufs, grid=(tiles_n, tiles_m, batch), block=(32, wn, wm))
        return
    prog.run(bufs, grid=(tiles_n, tiles_m, batch), block=(32, wn, wm))
    av, bv = val_t(t, a), val_t(t, b)
    want = (np.swapaxes(av, 1, 2) if ta else av) @ (np.swapaxes(bv, 1, 2) if tb else bv)
    if csrc is not None:
        want = alpha * want + beta * val_t(t, c)
    tol = {"float": 2e-5, "half": 2e-3, "bfloat16_t": 1e-2}[t]
    np.testing.assert_allclose(val_t(t, d), want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t,ta,tb,m,n,k,parts", [("float", False, False, 40, 36, 500, 4),
                                                 ("half", True, False, 64, 64, 256, 2)])
def test_mlx_steel_gemm_splitk(t, ta, tb, m, n, k, parts, mlx):
    """Split-K GEMM: gemm_splitk writes each K partition's float product (the last partition also
    does the K remainder), gemm_splitk_accum sums the partitions into T (MLX's two launches)."""
    from enigma.verify import compile_msl

    bm, bn, bk, wm, wn = 32, 32, 16, 2, 2
    mn_al, k_al = m % bm == 0 and n % bn == 0, k % bk == 0
    host = f"steel_gemm_splitk_{'nt'[ta]}{'nt'[tb]}_{t}_float32_bm{bm}_bn{bn}_bk{bk}_wm{wm}_wn{wn}"
    acc_host = f"steel_gemm_splitk_accum_{t}_float32"
    src = "\n".join([source("gemm_splitk", host, "gemm_splitk", t, "float", str(bm), str(bn), str(bk),
                                 str(wm), str(wn), str(ta).lower(), str(tb).lower(), str(mn_al).lower(),
                                 str(k_al).lower()),
                    f'instantiate_kernel("{acc_host}", gemm_splitk_accum, float, {t})', ""])
    progs = [compile_msl(src, h, include_dirs=[mlx], together=[host, acc_host]) for h in (host, acc_host)]
    rng = case_rng(f"splitk{t}{m}{n}{k}")
    a = to_t(t, rng.standard_normal((k, m) if ta else (m, k)))
    b = to_t(t, rng.standard_normal((n, k) if tb else (k, n)))
    tiles_n, tiles_m = -(-n // bn), -(-m // bm)
    iters = (k // bk) // parts
    params = np.array([m, n, k, m if ta else k, k if tb else n, n, tiles_n, tiles_m, parts, m * n, iters * bk,
                       0, iters], np.int32)
    partial = np.zeros((parts, m, n), F32)
    progs[0].run({0: a, 1: b, 2: partial, 3: params}, grid=(tiles_n, tiles_m, parts), block=(32, wn, wm))
    d = np.zeros((m, n), a.dtype)
    progs[1].run({0: partial, 1: d, 2: np.int32(parts), 3: np.int32(m * n), 4: np.int32(n)},
                 grid=(1, m, 1), block=(n, 1, 1))
    av, bv = val_t(t, a), val_t(t, b)
    want = (av.T if ta else av) @ (bv.T if tb else bv)
    tol = {"float": 2e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, d), want, rtol=tol, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize("t,ta,m,n", [("float", False, 40, 36), ("half", True, 64, 64)])
def test_mlx_steel_segmented_mm(t, ta, m, n, mlx):
    """segmented_mm: C[z] = A[:, k0:k1] @ B[k0:k1, :] for each (k0, k1) pair of `segments` (an empty
    and overlapping segments too, K ends not multiples of BK); grid (tiles_n, tiles_m, segments)."""
    from enigma.verify import compile_msl

    bm, bn, bk, wm, wn, k = 32, 32, 16, 2, 2, 100
    segments = np.array([[0, 30], [30, 30], [30, 77], [50, 100]], np.uint32)
    host = f"steel_segmented_mm_{'nt'[ta]}n_{t}_bm{bm}_bn{bn}_bk{bk}_wm{wm}_wn{wn}"
    src = source("gemm_segmented", host, "segmented_mm", t, str(bm), str(bn), str(bk), str(wm), str(wn),
                 str(ta).lower(), "false", "float")
    prog = compile_msl(src, host, include_dirs=[mlx], function_constants={
        "segments_contiguous": True, "align_M": m % bm == 0, "align_N": n % bn == 0})
    rng = case_rng(host)
    a = to_t(t, rng.standard_normal((k, m) if ta else (m, k)))
    b = to_t(t, rng.standard_normal((k, n)))
    c = np.full((len(segments), m, n), 7, a.dtype)
    tiles_n, tiles_m = -(-n // bn), -(-m // bm)
    params = np.array([(m, n, k, m if ta else k, n, n, tiles_n, tiles_m, 0, 0, m * n, 0, 0, 0)], GEMM_PARAMS)
    prog.run({0: a, 1: b, 2: segments, 3: c, 4: params.view(np.uint8)},
             grid=(tiles_n, tiles_m, len(segments)), block=(32, wn, wm))
    av = val_t(t, a).T if ta else val_t(t, a)
    want = np.stack([av[:, k0:k1] @ val_t(t, b)[k0:k1] for k0, k1 in segments])
    tol = {"float": 2e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, c), want, rtol=tol, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize("t,tb,bm,bn,wm,wn", [("float", False, 16, 64, 1, 2), ("half", True, 32, 32, 2, 2)])
def test_mlx_steel_gather_mm_rhs(t, tb, bm, bn, wm, wn, mlx):
    """gather_mm_rhs (mixture of experts): rows of A sorted by expert, `offsets` the first row of
    each expert; each row tile is scheduled to its expert by a simdgroup scan (schedule_row_tile)
    and multiplied by that expert's B. Grid: an upper bound of row tiles (the extra ones return)."""
    from enigma.verify import compile_msl

    bk, m, n, k = 16, 70, 36, 40
    offsets = np.array([0, 20, 45], np.int32)
    host = f"steel_gather_mm_rhs_n{'nt'[tb]}_{t}_bm{bm}_bn{bn}_bk{bk}_wm{wm}_wn{wn}"
    src = source("gemm_gather", host, "gather_mm_rhs", t, str(bm), str(bn), str(bk), str(wm), str(wn),
                 "false", str(tb).lower(), "float")
    prog = compile_msl(src, host, include_dirs=[mlx], function_constants={
        "align_M": m % bm == 0, "align_N": n % bn == 0, "align_K": k % bk == 0, "has_batch": False})
    rng = case_rng(host)
    a = to_t(t, rng.standard_normal((m, k)))
    b = to_t(t, rng.standard_normal((3, n, k) if tb else (3, k, n)))
    c = np.zeros((m, n), a.dtype)
    tiles_n, tiles_m = -(-n // bn), -(-m // bm) + len(offsets)
    params = np.array([(m, n, k, k, k if tb else n, n, tiles_n, tiles_m, m * k, n * k, m * n, 0, k // bk, 0)],
                      GEMM_PARAMS)
    prog.run({0: a, 1: b, 2: offsets, 3: c, 4: params.view(np.uint8), 5: np.int32(len(offsets))},
             grid=(tiles_n, tiles_m, 1), block=(32, wn, wm))
    bv = val_t(t, b)
    bv = np.swapaxes(bv, 1, 2) if tb else bv
    expert = np.searchsorted(offsets, np.arange(m), side="right") - 1
    want = np.einsum("mk,mkn->mn", val_t(t, a), bv[expert])
    tol = {"float": 2e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, c), want, rtol=tol, atol=tol * float(np.abs(want).max()))


# ---------------------------------------------------------------------------------------------------
# steel conv (steel/conv/kernels/steel_conv.h with conv.h and its channel-last loaders): 2-D
# convolution as an implicit GEMM over NHWC inputs and OHWI weights (M = N * oH * oW, N = O,
# K = kH * kW * C), `instantiate_kernel(name, implicit_gemm_conv_2d, T, BM, BN, BK, WM, WN, 0,
# false)`; MLX's parameters: the loaders step the input pointer by inp_jump_w along a kernel row,
# inp_jump_h to the next row and inp_jump_c to the next BK channels

CONV_PARAMS = np.dtype([(n, "i4") for n in ("N", "C", "O")]
                       + [(n, "i4", (2,)) for n in ("iS", "wS", "oS", "str", "pad", "kdil", "idil")]
                       + [(n, "i8", (4,)) for n in ("in_strides", "wt_strides", "out_strides")]
                       + [("groups", "i4"), ("flip", "?")], align=True)
# case -> (T, (BM, BN, BK, WM, WN), (N, H, W, C), (O, kH, kW), stride, padding, dilation)
CONVS = {
    "f32_3x3": ("float", (32, 32, 16, 2, 2), (2, 9, 8, 32), (64, 3, 3), (1, 1), (1, 1), (1, 1)),
    "f32_bn8_stride2": ("float", (32, 8, 16, 4, 1), (1, 7, 6, 16), (12, 3, 2), (2, 1), (1, 0), (1, 1)),
    "f16_dilated": ("half", (64, 32, 16, 2, 2), (1, 10, 9, 16), (32, 3, 3), (1, 2), (2, 1), (2, 1)),
}


@pytest.mark.parametrize("case", sorted(CONVS))
def test_mlx_steel_conv2d(case, mlx):

    t, (bm, bn, bk, wm, wn), (nb, h, w, c), (o, kh, kw), st, pad, dil = CONVS[case]
    host = f"implicit_gemm_conv_2d_{t}_bm{bm}_bn{bn}_bk{bk}_wm{wm}_wn{wn}"
    src = source("conv", host, "implicit_gemm_conv_2d", t, str(bm), str(bn), str(bk), str(wm), str(wn), "0",
                 "false")
    prog = compile_kernel(src, host, mlx)
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // st[0] + 1
    ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // st[1] + 1
    rng = case_rng(case)
    x, wt = to_t(t, rng.standard_normal((nb, h, w, c))), to_t(t, rng.standard_normal((o, kh, kw, c)) * 0.2)
    y = np.zeros((nb, oh, ow, o), x.dtype)

    def el(a: np.ndarray) -> list[int]:
        return [s // a.itemsize for s in a.strides]

    ins = el(x)
    params = np.array([(nb, c, o, [h, w], [kh, kw], [oh, ow], st, pad, dil, [1, 1], ins, el(wt), el(y), 1,
                        False)], CONV_PARAMS)
    m_, n_, k_ = nb * oh * ow, o, kh * kw * c
    jump_w = dil[1] * ins[2]
    jump_h = dil[0] * ins[1] - (kw - 1) * dil[1] * ins[2]
    jump_c = bk - (kh - 1) * dil[0] * ins[1] - (kw - 1) * dil[1] * ins[2]
    tiles_n, tiles_m = -(-n_ // bn), -(-m_ // bm)
    gemm = np.array([m_, n_, k_, k_ // bk, jump_w, jump_h, jump_c, tiles_n, tiles_m, 0], np.int32)
    prog.run({0: x, 1: wt, 2: y, 3: params.view(np.uint8), 4: gemm}, grid=(tiles_n, tiles_m, 1),
             block=(32, wn, wm))
    xp = np.pad(val_t(t, x), ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    want = np.zeros((nb, oh, ow, o))
    for i in range(kh):
        for j in range(kw):
            win = xp[:, i * dil[0]:i * dil[0] + (oh - 1) * st[0] + 1:st[0],
                     j * dil[1]:j * dil[1] + (ow - 1) * st[1] + 1:st[1], :]
            want += np.einsum("nhwc,oc->nhwo", win, val_t(t, wt)[:, i, j, :])
    tol = {"float": 2e-5, "half": 3e-3}[t]
    np.testing.assert_allclose(val_t(t, y), want, rtol=tol, atol=tol * float(np.abs(want).max()))


for _case, (_kernel, _t, _dims, _axpby, *_) in GEMVS.items():
    add_member("gemv", "gemv", f"{_case}_{'_'.join(map(str, _dims))}", _kernel, _t, *map(str, _dims), "false",
                str(_axpby).lower())
