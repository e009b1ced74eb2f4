"""Tensors with layouts: traced kernels (static and dynamic), the emitted index arithmetic, the
"tiler exceeds tensor" error and its documented way out (padded view + identity-tensor predicate)."""
import re

import numpy as np
import pytest

import enigma
from enigma import Constexpr, Tensor, float32
from enigma.layout import (
    elem_less,
    kernel_conditions,
    local_partition,
    local_tile,
    make_identity_tensor,
    make_layout,
    make_tensor,
    size,
    zipped_divide,
)

# ---------------------------------------------------------------------------------------------
# pure coordinates: identity tensors need no tracer


def test_local_tile_of_identity_tensor_gives_global_coordinates():
    c = make_identity_tensor((40, 24))
    t = local_tile(c, (8, 6), (3, 2))
    assert t.shape == (8, 6)
    for i in range(8):
        for j in range(6):
            assert t[i, j] == (3 * 8 + i, 2 * 6 + j)
    k = local_tile(c, (8, 6), (1, None))  # keep the rest mode of dim 1: (8, 6, 4)
    assert k.shape == (8, 6, 4)
    assert k[7, 5, 3] == (15, 23)
    assert local_tile(c, (8, 6, 5), (1, 2, 0), proj=(1, 1, None))[0, 0] == (8, 12)


def test_local_partition_of_identity_tensor_matches_cute_outer_partition():
    c = make_identity_tensor((16, 32))
    thr = make_layout((4, 8), stride=(8, 1))  # row-major threads: tid = 8*i + j
    for tid in range(32):
        p = local_partition(c, thr, tid)
        i, j = tid // 8, tid % 8
        assert p.shape == (4, 4)
        for a in range(4):
            for b in range(4):
                assert p[a, b] == (i + 4 * a, j + 8 * b)
    assert local_partition(c, thr, (1, 2))[3, 3] == (1 + 12, 2 + 24)  # a coordinate instead of an index


def test_identity_tensor_hierarchical_and_zero():
    c = make_identity_tensor(((2, 3), 4))
    assert c[0] == ((0, 0), 0)
    assert c[5] == ((1, 2), 0)
    assert c[(1, 2), 3] == ((1, 2), 3)
    z = zipped_divide(c, (2, 2))  # ((2,2),(3,2)): tile (i,j), rest (a,b) -> ((i, a), j + 2b)
    assert z.shape == ((2, 2), (3, 2))
    assert z[(1, 1), (2, 1)] == ((1, 2), 3)


def test_static_out_of_bounds_coordinates_are_errors():
    c = make_identity_tensor((4, 6))
    with pytest.raises(enigma.EnigmaError, match="out of bounds for mode 1"):
        c[1, 6]
    with pytest.raises(enigma.EnigmaError, match="index 24 is out of bounds"):
        c[24]
    with pytest.raises(TypeError):
        list(c)


def test_elem_less():
    assert elem_less((1, 2), (2, 3)) is True
    assert elem_less((1, 3), (2, 3)) is False
    assert elem_less(((0, 1), 2), ((1, 2), 3)) is True


# ---------------------------------------------------------------------------------------------
# traced kernels


@enigma.kernel
def mm_static(a: Tensor[float32, (32, 32)], b: Tensor[float32, (32, 32)], c: Tensor[float32, (32, 32)]):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    gA = local_tile(make_tensor(a), (16, 16), (by, None))  # (16, 16, k-tiles)
    gB = local_tile(make_tensor(b), (16, 16), (None, bx))
    gC = local_tile(make_tensor(c), (16, 16), (by, bx))
    rowmajor = make_layout((16, 16), stride=(16, 1))
    sA = make_tensor(enigma.shared_tensor(float32, (16, 16), name="sA"), rowmajor)
    sB = make_tensor(enigma.shared_tensor(float32, (16, 16), name="sB"), rowmajor)
    acc = 0.0
    for k in range(2):
        sA[ty, tx] = gA[ty, tx, k]
        sB[ty, tx] = gB[ty, tx, k]
        enigma.barrier()
        for kk in enigma.range_constexpr(16):
            acc = enigma.fma(sA[ty, kk], sB[kk, tx], acc)
        enigma.barrier()
    gC[ty, tx] = acc


@enigma.kernel
def mm_by_hand(a: Tensor[float32, (32, 32)], b: Tensor[float32, (32, 32)], c: Tensor[float32, (32, 32)]):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    sA = enigma.shared_tensor(float32, (16, 16), name="sA")
    sB = enigma.shared_tensor(float32, (16, 16), name="sB")
    row, col = by * 16 + ty, bx * 16 + tx
    acc = 0.0
    for k in range(0, 32, 16):
        sA[ty, tx] = a[row, k + tx]
        sB[ty, tx] = b[k + ty, col]
        enigma.barrier()
        for kk in enigma.range_constexpr(16):
            acc = enigma.fma(sA[ty, kk], sB[kk, tx], acc)
        enigma.barrier()
    c[row, col] = acc


_INT_DEF = re.compile(r"^\s*int (v\d+) = (.*);")
_MULADD = re.compile(r"^[\w.\[\]]+ [*+] [\w.\[\]]+$")  # one multiply or add of two names/constants
_WRAPPING = re.compile(r"^int\(uint\((.*)\) ([*+]) uint\((.*)\)\)$")  # int32 math wraps through uint


def _plain(expr: str) -> str:
    """`int(uint(a) * uint(b))` (how the MSL printer spells wrapping int32 arithmetic) as `a * b`."""
    expr = expr.replace("(int)", "")
    m = _WRAPPING.match(expr)
    return f"{m.group(1)} {m.group(2)} {m.group(3)}" if m else expr


def test_static_tiled_matmul_emits_only_multiply_adds():
    src = enigma.compile(mm_static).metal_source
    int_ops = [m.group(2) for line in src.splitlines() if (m := _INT_DEF.match(line))]
    assert int_ops, src
    for expr in int_ops:  # every integer op is one multiply or one add of two operands
        assert _MULADD.match(_plain(expr)), f"index arithmetic beyond multiply-add: {expr}"
    assert "/" not in "".join(int_ops) and "%" not in "".join(int_ops)
    # the layouts folded at trace time: the row stride 32 and the tile step 16*32 appear as constants
    assert "* uint(512)" in src and "* uint(32)" in src
    hand = enigma.compile(mm_by_hand).metal_source
    hand_ops = [m.group(2) for line in hand.splitlines() if (m := _INT_DEF.match(line))]
    assert len(int_ops) <= len(hand_ops) + 4, (len(int_ops), len(hand_ops))  # as lean as hand indexing


def test_static_tiled_matmul_runs():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((32, 32), np.float32), rng.standard_normal((32, 32), np.float32)
    c = np.zeros((32, 32), np.float32)
    enigma.compile(mm_static)(a, b, c, grid=(2, 2, 1), block=(16, 16, 1), device="cpu")
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)


@enigma.kernel
def too_big(a: Tensor[float32, (100, 64)], c: Tensor[float32, (100, 64)]):
    tx, ty, _ = enigma.thread_idx()
    g = local_tile(make_tensor(a), (128, 64), (0, 0))  # the line the error names
    c[0, 0] = g[tx, ty]


def test_tiler_exceeds_tensor_error():
    with pytest.raises(enigma.EnigmaError) as ei:
        enigma.compile(too_big)
    msg = str(ei.value)
    assert "tiler exceeds tensor" in msg
    assert "mode 0" in msg and "(128,64)" in msg and "(100,64)" in msg and "128" in msg
    assert "ceil_div" in msg and "make_identity_tensor" in msg  # the way out
    assert ei.value.file == __file__
    with open(__file__) as f:
        want = next(i for i, ln in enumerate(f, 1) if ln.rstrip().endswith("# the line the error names"))
    assert ei.value.line == want
    assert "local_tile(make_tensor(a), (128, 64)" in ei.value.source_line


@enigma.kernel
def padded_tile(a: Tensor[float32, (100, 64)], c: Tensor[float32, (128, 64)], BM: Constexpr[int] = 128):
    """The documented way out: tile a view padded to whole tiles, predicate with an identity tensor."""
    tx, ty, _ = enigma.thread_idx()
    M, N = a.shape
    padded = (enigma.ceil_div(M, BM) * BM, N)
    g = local_tile(make_tensor(a, make_layout(padded, stride=make_tensor(a).stride)), (BM, 64), (0, 0))
    p = local_tile(make_identity_tensor(padded), (BM, 64), (0, 0))
    o = local_tile(make_tensor(c), (BM, 64), (0, 0))
    for i in range(tx, BM, 32):
        for j in range(ty, 64, 8):
            if elem_less(p[i, j], (M, N)):
                o[i, j] = g[i, j]
            else:
                o[i, j] = -1.0


def test_partial_tile_with_predication_is_the_way_out():
    a = np.arange(100 * 64, dtype=np.float32).reshape(100, 64)
    c = np.zeros((128, 64), np.float32)
    enigma.compile(padded_tile)(a, c, grid=(1, 1, 1), block=(32, 8, 1), device="cpu")
    np.testing.assert_array_equal(c[:100], a)
    assert (c[100:] == -1).all()


@enigma.kernel
def dyn_tile(a: Tensor[float32, ("m", "n")], c: Tensor[float32, ("m", "n")],  # noqa: F821, UP037
             T: Constexpr[int] = 8):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    M, N = a.shape
    g = local_tile(make_tensor(a), (T, T), (by, bx))
    o = local_tile(make_tensor(c), (T, T), (by, bx))
    p = local_tile(make_identity_tensor((M, N)), (T, T), (by, bx))
    if elem_less(p[ty, tx], (M, N)):
        o[ty, tx] = g[ty, tx] * 2.0


def test_dynamic_shapes_emit_index_arithmetic_and_record_conditions():
    kernel = dyn_tile.trace()
    conds = kernel_conditions(kernel)
    assert conds and all("tiler exceeds tensor" in c.message for c in conds)  # M >= T and N >= T
    assert all(c.file == __file__ for c in conds)
    assert {c.text for c in conds} == {f"{t}.shape[{i}] >= 8" for t in "ac" for i in (0, 1)}
    for c in conds:  # plain data a launcher can evaluate (FORMAT.md grid expressions + comparisons)
        assert _eval(c.expr, {(t, i): n for t in "ac" for i, n in enumerate((19, 13))}) is True
        assert _eval(c.expr, {(t, i): 5 for t in "ac" for i in (0, 1)}) is False
    assert enigma.check_conditions(kernel, np.zeros((9, 8), np.float32), np.zeros((9, 8), np.float32)) == []
    with pytest.raises(enigma.EnigmaError, match=r"a.shape\[1\] >= 8") as ei:
        enigma.check_conditions(kernel, np.zeros((9, 5), np.float32), np.zeros((9, 5), np.float32))
    assert ei.value.file == __file__
    ck = enigma.compile(dyn_tile)
    assert [c.text for c in enigma.kernel_conditions(ck)] == [c.text for c in conds]
    with pytest.raises(enigma.EnigmaError, match=r"a.shape\[0\] >= 8"):
        enigma.check_conditions(ck, np.zeros((7, 8), np.float32), np.zeros((7, 8), np.float32))
    src = ck.metal_source
    assert "enigma_dims" in src  # strides read at run time
    a = np.arange(19 * 13, dtype=np.float32).reshape(19, 13)
    c = np.zeros_like(a)
    enigma.compile(dyn_tile)(a, c, grid=(2, 3, 1), block=(8, 8, 1), device="cpu")
    np.testing.assert_array_equal(c, 2 * a)  # partial edge tiles handled by the predicate


def _eval(e, dims):
    if isinstance(e, int):
        return e
    if "dim" in e:
        return dims[tuple(e["dim"])]
    a, b = (_eval(x, dims) for x in e["args"])
    return {"ge": a >= b, "add": a + b, "sub": a - b, "mul": a * b, "floordiv": a // b}[e["op"]]


@enigma.kernel
def partitioned_copy(a: Tensor[float32, (16, 32)], c: Tensor[float32, (16, 32)]):
    tid = enigma.thread_idx().x
    thr = make_layout((4, 8), stride=(8, 1))
    src = local_partition(make_tensor(a), thr, tid)
    dst = local_partition(make_tensor(c), thr, tid)
    for i in enigma.range_constexpr(size(src)):
        dst[i] = src[i] + 1.0


def test_local_partition_in_a_kernel():
    a = np.arange(16 * 32, dtype=np.float32).reshape(16, 32)
    c = np.zeros_like(a)
    enigma.compile(partitioned_copy)(a, c, grid=(1, 1, 1), block=(32, 1, 1), device="cpu")
    np.testing.assert_array_equal(c, a + 1)


def test_slicing_with_none_in_a_kernel():
    @enigma.kernel
    def rows(a: Tensor[float32, (4, 6)], c: Tensor[float32, (4, 6)]):
        bid = enigma.block_idx().x
        t = make_tensor(a, make_layout(((2, 2), 6), stride=((12, 6), 1)))
        o = make_tensor(c, make_layout(((2, 2), 6), stride=((12, 6), 1)))
        r, w = t[(None, None), bid], o[(None, None), bid]  # column bid: a (2, 2) slice
        for i in enigma.range_constexpr(4):
            w[i] = r[i] * 3.0

    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    c = np.zeros_like(a)
    enigma.compile(rows)(a, c, grid=(6, 1, 1), block=(1, 1, 1), device="cpu")
    np.testing.assert_array_equal(c, 3 * a)


# ---------------------------------------------------------------------------------------------
# the zoo's tiled matmul and transpose (written with layouts)


def _zoo():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import zoo

    return zoo


def test_zoo_tiled_matmul_index_arithmetic_is_multiply_add():
    """Dynamic sizes: the strides come from the dims buffer, yet every access offset is built from
    multiplies and adds only (the padded shapes' ceil_div feed only the run-time conditions)."""
    zoo = _zoo()
    src = enigma.compile(zoo.matmul).metal_source
    int_ops = [m.group(2) for line in src.splitlines() if (m := _INT_DEF.match(line))]
    for expr in int_ops:
        assert _MULADD.match(_plain(expr)), f"index arithmetic beyond multiply-add: {expr}"
    assert "enigma_dims[2]" in src  # a's row stride, read at run time


@pytest.mark.parametrize("name", ["matmul", "transpose"])
def test_zoo_layout_kernels_run(name):
    zoo = _zoo()
    entry = next(e for e in zoo.ZOO if e.name == name)
    rng = np.random.default_rng(1)
    args = entry.make_inputs(rng)
    expect = entry.reference(*[a.copy() for a in args])
    ck = enigma.compile(entry.jit, *args)
    ck(*args, device="cpu")
    for i, want in zip(entry.outputs, expect):
        np.testing.assert_allclose(args[i], want, rtol=1e-4, atol=1e-4)


def test_layout_conditions_travel_in_the_signature_and_are_checked_at_every_launch():
    ck = enigma.compile(dyn_tile)
    req = ck.signature["requires"]
    assert sorted(r["text"] for r in req) == sorted(f"{t}.shape[{i}] >= 8" for t in "ac" for i in (0, 1))
    assert [r["line"] - dyn_tile.def_line for r in req] == [5, 5, 6, 6]  # the first two local_tiles
    a = np.zeros((9, 5), np.float32)  # 5 columns cannot hold one 8-wide tile
    with pytest.raises(ValueError, match=r"a.shape\[1\] >= 8 \(.*tiler exceeds tensor"):
        ck(a, np.zeros_like(a), grid=(1, 2, 1), block=(8, 8, 1), device="cpu")
    ok = np.ones((9, 8), np.float32)
    out = np.zeros_like(ok)
    ck(ok, out, grid=(1, 2, 1), block=(8, 8, 1), device="cpu")
    np.testing.assert_array_equal(out, 2 * ok)

