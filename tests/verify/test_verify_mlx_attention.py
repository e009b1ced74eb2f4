"""MLX's attention kernels in the third-party corpus (issue 13; helpers and the instantiation scheme:
mlx_corpus.py): sdpa_vector.h (decoding attention: grouped-query heads, causal, bool and float masks,
sinks; and its two-pass form for long key sequences) and steel attention (the fused attention for longer
queries), with steel attention's KNOWN_FAILURES case checked to fail with its report."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mlx_corpus import (
    F32,
    KNOWN_FAILURES,
    case_rng,
    mlx_fixture,  # noqa: F401 - the `mlx` fixture
    source,
    to_t,
    val_t,
)

pytestmark = pytest.mark.needs_clang


# ---------------------------------------------------------------------------------------------------
# sdpa_vector.h: attention for a few queries (decoding), one group of 32 simdgroups x 32 lanes per
# (query head, query position), each simdgroup a key out of every 32; grouped-query heads; masks
# and causality by function constant (as MLX's scaled_dot_product_attention.metal instantiates it)

# case -> (T, D, query heads, kv heads, keys, queries, mask: None / "causal" / "bool")
SDPAS = {
    "f32_d64_gqa2": ("float", 64, 4, 2, 45, 1, None),
    "f16_d128_causal": ("half", 128, 2, 1, 40, 3, "causal"),
    "f32_d64_bool_mask": ("float", 64, 2, 2, 37, 2, "bool"),
    "f32_d64_float_mask": ("float", 64, 4, 2, 41, 1, "float"),
    "f16_d64_sinks": ("half", 64, 4, 1, 50, 1, "sinks"),
}


@pytest.mark.parametrize("case", sorted(SDPAS))
def test_mlx_sdpa_vector(case, mlx):
    from enigma.verify import compile_msl

    t, d, hq, hkv, n, lq, mask = SDPAS[case]
    host = f"sdpa_vector_{t}_{d}_{d}"
    src = source("sdpa", host, "sdpa_vector", t, str(d), str(d))
    fc = {"has_mask": mask in ("bool", "float"), "bool_mask": mask == "bool", "do_causal": mask == "causal",
          "query_transposed": False, "float_mask": mask == "float", "has_sinks": mask == "sinks"}
    prog = compile_msl(src, host, include_dirs=[mlx], function_constants=fc)
    rng = case_rng(case)
    q, k, v = (to_t(t, rng.standard_normal(shape)) for shape in ((hq, lq, d), (hkv, n, d), (hkv, n, d)))
    out = np.zeros((hq, lq, d), q.dtype)
    scale = 1 / np.sqrt(d)
    bufs: dict[int, Any] = dict(enumerate([q, k, v, out, np.int32(hq // hkv), np.int32(n), np.uint64(n * d),
                                           np.uint64(d), np.uint64(n * d), np.uint64(d), np.float32(scale)]))
    keep = np.ones((hq, lq, n), bool)
    add = np.zeros((hq, lq, n))
    sink = np.full((hq, lq, 1), -np.inf)  # an extra logit whose value vector is 0
    if mask == "bool":
        keep = rng.random((hq, lq, n)) < 0.7
        keep[..., 0] = True
        bufs.update({11: keep, 13: np.int32(1), 14: np.int32(n), 15: np.int32(lq * n)})
    elif mask == "float":  # added to the scores; -inf drops a key
        fm = to_t(t, rng.standard_normal((hq, lq, n)))
        fm[..., 3::7] = -np.inf
        keep, add = np.isfinite(fm), np.where(np.isfinite(fm), val_t(t, fm), 0.0)
        bufs.update({12: fm, 13: np.int32(1), 14: np.int32(n), 15: np.int32(lq * n)})
    elif mask == "sinks":
        sinks = to_t(t, rng.standard_normal(hq))
        sink = np.broadcast_to(val_t(t, sinks)[:, None, None], (hq, lq, 1))
        bufs.update({16: sinks, 17: np.int32(hq)})
    elif mask == "causal":
        keep = np.arange(n)[None, None, :] <= (n - lq + np.arange(lq))[None, :, None]
    prog.run(bufs, grid=(hq, lq, 1), block=(1024, 1, 1))
    kv = np.repeat(np.arange(hkv), hq // hkv)
    scores = np.einsum("hqd,hkd->hqk", val_t(t, q), val_t(t, k)[kv]) * scale + add
    scores = np.concatenate([sink, np.where(keep, scores, -np.inf)], -1)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    want = np.einsum("hqk,hkd->hqd", (p / p.sum(-1, keepdims=True))[..., 1:], val_t(t, v)[kv])
    tol = {"float": 2e-5, "half": 2e-3}[t]
    np.testing.assert_allclose(val_t(t, out), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("t,d,hq,hkv,n,lq", [("float", 64, 4, 2, 200, 1), ("half", 128, 2, 1, 150, 2)])
def test_mlx_sdpa_vector_2pass(t, d, hq, hkv, n, lq, mlx):
    """The two-pass form for long key sequences: pass 1 (a group of 32 x gqa x queries per kv head
    and block of keys; `blocks` = 32 by function constant) writes each block's partial output, sum
    and max; pass 2 (32 simdgroups per query) combines the 32 blocks."""
    from enigma.verify import compile_msl

    blocks = 32
    fc = {"has_mask": False, "bool_mask": False, "float_mask": False, "do_causal": False,
          "query_transposed": False, "has_sinks": False, "blocks": blocks}
    progs = []
    for kernel, extra in (("sdpa_vector_2pass_1", (str(d), str(d))), ("sdpa_vector_2pass_2", (str(d),))):
        host = f"{kernel}_{t}_{d}"
        progs.append(compile_msl(source("sdpa", host, kernel, t, *extra), host, include_dirs=[mlx],
                                 function_constants=fc))
    rng = case_rng(f"2pass{t}{d}")
    q, k, v = (to_t(t, rng.standard_normal(shape)) for shape in ((hq, lq, d), (hkv, n, d), (hkv, n, d)))
    partials = np.zeros((hq, lq, blocks, d), q.dtype)
    sums, maxs = np.zeros((hq, lq, blocks), F32), np.zeros((hq, lq, blocks), F32)
    scale = 1 / np.sqrt(d)
    progs[0].run({0: q, 1: k, 2: v, 3: partials, 4: sums, 5: maxs, 7: np.int32(n), 8: np.uint64(n * d),
                  9: np.uint64(d), 10: np.uint64(n * d), 11: np.uint64(d), 12: np.float32(scale)},
                 grid=(hkv, 1, blocks), block=(32, hq // hkv, lq))
    out = np.zeros((hq, lq, d), q.dtype)
    progs[1].run({0: partials, 1: sums, 2: maxs, 3: out, 4: np.int32(blocks)}, grid=(hq, lq, 1),
                 block=(1024, 1, 1))
    kv = np.repeat(np.arange(hkv), hq // hkv)
    scores = np.einsum("hqd,hkd->hqk", val_t(t, q), val_t(t, k)[kv]) * scale
    p = np.exp(scores - scores.max(-1, keepdims=True))
    want = np.einsum("hqk,hkd->hqd", p / p.sum(-1, keepdims=True), val_t(t, v)[kv])
    tol = {"float": 2e-5, "half": 3e-3}[t]
    np.testing.assert_allclose(val_t(t, out), want, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------
# steel attention (steel/attn/kernels/steel_attention.h with attn.h, mma.h, loader.h): the fused
# attention of MLX's scaled_dot_product_attention for longer queries,
# `instantiate_kernel(name, attention, T, BQ, BK, BD, BV, WM, WN, MaskType, float)`; a group of
# 32 x WM x WN threads per BQ queries of a head, grid (ceil(qL / BQ), heads, batch)

ATTN_PARAMS = np.dtype([(n, "i4") for n in ("B", "H", "D", "qL", "kL", "gqa_factor")] + [("scale", "f4")]
                       + [(n, "i4") for n in ("NQ", "NK", "NQ_aligned", "NK_aligned", "qL_rem", "kL_rem",
                                              "qL_off")]
                       + [(f"{n}_strides", "i8", (3,)) for n in "QKVO"], align=True)
# case -> (T, BQ, BK, BD, WM, WN, batch, heads, kv heads, qL, kL, mask: None / "causal" / mask type)
ATTNS = {
    "f32_bd64_gqa": ("float", 32, 32, 64, 4, 1, 1, 2, 1, 45, 70, None),
    "f16_bd128_causal": ("half", 32, 16, 128, 4, 1, 2, 2, 2, 40, 40, "causal"),
    "f32_bd64_float_mask": ("float", 32, 32, 64, 4, 1, 1, 2, 2, 33, 50, "float"),
    "f16_bd64_bool_mask": ("half", 32, 32, 64, 4, 1, 1, 1, 1, 20, 40, "bool"),  # KNOWN_FAILURES
}
KNOWN_FAILURES["steel_attention[f16_bd64_bool_mask]"] = (
    r"invalid vector element type 'bool'",
    "a limit of the compatibility layer, not of MLX: steel attention with a bool mask instantiates "
    "BaseMMAFrag<bool, 8, 8>, whose fragments are `metal::vec<bool, 2>`; C++ for OpenCL has no bool "
    "vectors, and `vec<T, N>` must be the extended vector type itself for MLX's `dtype_frag_t<U>&` "
    "parameters to deduce U, so a vec<bool, N> written with a template's T does not compile "
    "(a literal `vec<bool, N>` still reads boolN)")


@pytest.mark.parametrize("case", sorted(ATTNS))
def test_mlx_steel_attention(case, mlx):
    from enigma.verify import CompileError, compile_msl

    t, bq, bk, bd, wm, wn, b, h, hkv, ql, kl, mask = ATTNS[case]
    mtype = "bool" if mask == "bool" else t
    host = f"steel_attention_{t}_bq{bq}_bk{bk}_bd{bd}_wm{wm}_wn{wn}_mask{mtype}"
    src = source("attention", host, "attention", t, str(bq), str(bk), str(bd), str(bd), str(wm), str(wn),
                 mtype, "float")
    fc = {"align_Q": ql % bq == 0, "align_K": kl % bk == 0, "has_mask": mask in ("float", "bool"),
          "do_causal": mask == "causal", "has_sinks": False, "save_lse": False}
    known = KNOWN_FAILURES.get(f"steel_attention[{case}]")
    if known:
        with pytest.raises(CompileError, match=known[0]):
            compile_msl(src, host, include_dirs=[mlx], function_constants=fc)
        return
    prog = compile_msl(src, host, include_dirs=[mlx], function_constants=fc)
    rng = case_rng(case)
    q = to_t(t, rng.standard_normal((b, h, ql, bd)))
    k, v = (to_t(t, rng.standard_normal((b, hkv, kl, bd))) for _ in range(2))
    o = np.zeros_like(q)
    scale = 1 / np.sqrt(bd)

    def strides(a: np.ndarray) -> list[int]:
        return [s // a.itemsize for s in a.strides[:3]]

    p = np.array([(b, h, bd, ql, kl, h // hkv, scale, -(-ql // bq), -(-kl // bk), ql // bq, kl // bk, ql % bq,
                   kl % bk, kl - ql, strides(q), strides(k), strides(v), strides(o))], ATTN_PARAMS)
    bufs: dict[int, Any] = {0: q, 1: k, 2: v, 3: o, 4: p.view(np.uint8)}
    add = np.zeros((b, h, ql, kl))
    if mask == "float":
        m = to_t(t, rng.standard_normal((b, h, ql, kl)))
        bufs.update({5: np.array([strides(m)], np.int64), 6: m})
        add = val_t(t, m)
    elif mask == "causal":
        add = np.where(np.arange(kl)[None, :] > (np.arange(ql) + kl - ql)[:, None], -np.inf, 0.0)
    prog.run(bufs, grid=(-(-ql // bq), h, b), block=(32, wm, wn))
    kv = np.repeat(np.arange(hkv), h // hkv)
    s = np.einsum("bhqd,bhkd->bhqk", val_t(t, q), val_t(t, k)[:, kv]) * scale + add
    e = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum("bhqk,bhkd->bhqd", e / e.sum(-1, keepdims=True), val_t(t, v)[:, kv])
    tol = {"float": 2e-5, "half": 3e-3}[t]
    np.testing.assert_allclose(val_t(t, o), want, rtol=tol, atol=tol)
