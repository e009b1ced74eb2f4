"""Register fragments, vector values, bit casts and byte views (issue 12): results on the CPU executor
and through enigma.verify, the IR and Metal they produce, and the errors users can hit."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import zoo
from toolcheck import need_tool

import enigma
from enigma import Tensor, float16, float32, int32, uint8
from enigma.verify import run_msl


def _run_both(ck, *args):
    """Run on the CPU executor and through enigma.verify; returns both argument lists."""
    cpu = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ver = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    ck(*cpu, device="cpu")
    need_tool("clang++-19", "clang++")
    run_msl(ck, *ver)
    return cpu, ver


# ---------------------------------------------------------------------------------------------------
# fragments

@enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
def frag_loop(a: Tensor[float32, (32,)], out: Tensor[float32, (32, 4)], n: int32):
    t = enigma.thread_idx().x
    f = enigma.make_fragment(4, float32)
    f.fill(1.0)
    for _k in range(n):
        f[0] = f[0] + a[t]
        if a[t] > 0.0:
            f[2] = f[2] * 2.0
    for j in enigma.range_constexpr(4):
        out[t, j] = f[j]


def test_fragment_cells_are_carried_through_loops_and_ifs():
    ck = enigma.compile(frag_loop)
    a = np.random.default_rng(0).standard_normal(32).astype(np.float32)
    out = np.zeros((32, 4), np.float32)
    cpu, ver = _run_both(ck, a, out, 5)
    want = np.ones((32, 4), np.float32)
    for _ in range(5):
        want[:, 0] += a  # float32, in loop order
    want[:, 2] = np.where(a > 0, 32.0, 1.0)
    np.testing.assert_allclose(cpu[1], want, rtol=1e-6)
    np.testing.assert_allclose(ver[1], want, rtol=1e-6)


def test_a_loop_carries_only_the_cells_it_changes():
    k = frag_loop.trace()
    (loop,) = [op for op in k.body.ops if op.name == "for"]
    assert len(loop.results) == 2  # f[0] and f[2]; f[1] and f[3] are read from before the loop
    (branch,) = [op for op in loop.regions[0].ops if op.name == "if"]
    assert len(branch.results) == 1  # f[2]


@enigma.kernel
def frag_traced_index(a: Tensor[float32], out: Tensor[float32]):
    f = enigma.make_fragment((2, 2), float32)
    out[0] = f[enigma.thread_idx().x, 0]  # LINE-TRACED


def test_a_traced_fragment_index_is_an_error_at_its_line():
    with pytest.raises(enigma.EnigmaError, match="fragment is indexed with a traced") as e:
        enigma.compile(frag_traced_index)
    line = next(i for i, s in enumerate(Path(__file__).read_text().splitlines(), 1) if "LINE-TRACED" in s)
    assert e.value.line == line and e.value.file == __file__


@enigma.kernel
def frag_out_of_range(out: Tensor[float32]):
    f = enigma.make_fragment((2, 2), float32)
    out[0] = f[2, 0]


def test_a_fragment_index_out_of_range_is_an_error():
    with pytest.raises(enigma.EnigmaError, match="out of range for mode 0"):
        enigma.compile(frag_out_of_range)


@enigma.kernel(block=(4, 4, 1), grid=(2, 1, 1))
def frag_copy(src: Tensor[float32, (8, 16)], dst: Tensor[float32, (8, 16)]):
    tx, ty = enigma.thread_idx().x, enigma.thread_idx().y
    tile = enigma.local_tile(src, (2, 2), (ty, enigma.block_idx().x * 4 + tx))
    f = enigma.make_fragment((2, 2), float32)
    enigma.copy(tile, f)
    for i in enigma.range_constexpr(4):
        f[i] = f[i] * 10.0
    enigma.copy(f, enigma.local_tile(dst, (2, 2), (ty, enigma.block_idx().x * 4 + tx)))


def test_copies_between_fragments_and_tiles():
    ck = enigma.compile(frag_copy)
    src = np.arange(128, dtype=np.float32).reshape(8, 16)
    cpu, ver = _run_both(ck, src, np.zeros_like(src))
    np.testing.assert_array_equal(cpu[1], src * 10)
    np.testing.assert_array_equal(ver[1], src * 10)


def test_register_tiled_matmul_adds_no_index_arithmetic_beyond_multiply_adds():
    """The fragment itself is registers: the only int32 arithmetic in the Metal is the + and * of the
    tensor indices (no division, modulo or index tables)."""
    ins = zoo.BY_NAME["reg_matmul"].make_inputs(np.random.default_rng(0))
    ck = enigma.compile(zoo.reg_matmul_launch, *ins)
    src = ck.metal_source
    ints = [ln for ln in src.splitlines() if re.match(r"\s*int v\d+ = ", ln)]
    assert ints
    for ln in ints:
        expr = ln.split("=", 1)[1].split(";")[0]
        assert not re.search(r"[/%]|<<|>>|\?", expr), ln
    assert "float acc" not in src and "[16]" not in src  # no array: one register per element
    assert src.count("packed_float4*") == 5  # one row of b per k, four rows of c


# ---------------------------------------------------------------------------------------------------
# vectors

@enigma.kernel(block=(7, 1, 1), grid=(1, 1, 1))
def vec_ops(a: Tensor[float32, (32,)], h: Tensor[float16, (32,)], out: Tensor[float32, (32,)],
            d: Tensor[float32, (8,)]):
    t = enigma.thread_idx().x
    v = a.load_vec(t * 3 + 1, 4)  # starts at 1, 4, 7, ...: not 16-byte aligned
    w = (v * 2.0 - 1.0) / 4.0 + v
    out.store_vec(t * 3 + 2, w.to(float16).to(float32))
    hv = h.load_vec(t * 4, 3)
    d[t] = enigma.dot(v, enigma.vec(hv[0], hv[1], hv[2], 1.0)) + (-v)[3]


def test_vector_loads_stores_arithmetic_and_dot():
    ck = enigma.compile(vec_ops)
    rng = np.random.default_rng(1)
    a = rng.standard_normal(32).astype(np.float32)
    h = rng.standard_normal(32).astype(np.float16)
    cpu, ver = _run_both(ck, a, h, np.zeros(32, np.float32), np.zeros(8, np.float32))
    out = np.zeros(32, np.float32)
    d = np.zeros(8, np.float32)
    for t in range(7):
        v = a[t * 3 + 1: t * 3 + 5]
        w = (v * 2 - 1) / 4 + v
        out[t * 3 + 2: t * 3 + 6] = w.astype(np.float16).astype(np.float32)
        hv = np.append(h[t * 4: t * 4 + 3].astype(np.float32), 1.0)
        d[t] = np.dot(v, hv) - v[3]
    for got in (cpu, ver):
        np.testing.assert_allclose(got[2], out, rtol=1e-6)
        np.testing.assert_allclose(got[3], d, rtol=1e-5, atol=1e-6)
    src = ck.metal_source
    assert "packed_float4*)(a + " in src and "packed_half3*)(h + " in src
    assert "float4 v" in src and not re.search(r"\((device|threadgroup)( const)? float4\*\)", src)


@enigma.kernel
def vec_bad_width(a: Tensor[float32], out: Tensor[float32]):
    out[0] = a.load_vec(0, 8)[0]


@enigma.kernel
def vec_bad_lane(a: Tensor[float32], out: Tensor[float32]):
    out[0] = a.load_vec(0, 4)[enigma.thread_idx().x]


@enigma.kernel
def vec_past_end(a: Tensor[float32, (6,)], out: Tensor[float32]):
    out[0] = a.load_vec(4, 4)[0]


@enigma.kernel
def vec_bfloat(a: Tensor[enigma.bfloat16], out: Tensor[float32]):
    out[0] = a.load_vec(0, 2)[0].to(float32)


@pytest.mark.parametrize("kernel,message", [
    (vec_bad_width, "width must be a Python int 2, 3 or 4"),
    (vec_bad_lane, "vector lane must be a Python int"),
    (vec_past_end, "runs past the end of the last axis"),
    (vec_bfloat, "no packed vectors of bfloat16"),
])
def test_vector_errors(kernel, message):
    with pytest.raises(enigma.EnigmaError, match=message) as e:
        enigma.compile(kernel)
    assert e.value.file == __file__ and e.value.line > 0


# ---------------------------------------------------------------------------------------------------
# bits and bytes

@enigma.kernel(block=(4, 1, 1), grid=(1, 1, 1))
def bits(x: Tensor[float32, (4,)], raw: Tensor[uint8, (16,)], out: Tensor[enigma.uint32, (4,)],
         back: Tensor[float32, (4,)], words: Tensor[float16, (4,)]):
    t = enigma.thread_idx().x
    out[t] = x[t].bitcast(enigma.uint32)
    back[t] = out[t].bitcast(float32) + raw.view(float32)[t]
    words[t] = raw.view(enigma.uint16)[2 * t + 1].bitcast(float16)
    raw.view(enigma.int16)[2 * t] = -1  # writes go through the view into the byte buffer


def test_bitcast_and_views_of_a_byte_buffer():
    ck = enigma.compile(bits)
    x = np.array([1.0, -2.5, np.inf, 3e-40], np.float32)
    f = np.array([0.5, 1.5, -4.0, 8.0], np.float32)
    raw = f.view(np.uint8).copy()
    args = (x, raw, np.zeros(4, np.uint32), np.zeros(4, np.float32), np.zeros(4, np.float16))
    cpu, ver = _run_both(ck, *args)
    for got in (cpu, ver):
        np.testing.assert_array_equal(got[2], x.view(np.uint32))
        np.testing.assert_array_equal(got[3], x + f)
        np.testing.assert_array_equal(got[4], f.view(np.float16)[1::2])
        expect = f.view(np.int16).copy()
        expect[0::2] = -1
        np.testing.assert_array_equal(got[1].view(np.int16), expect)
    assert "as_type<uint>(" in ck.metal_source and "((device float*)(raw))" in ck.metal_source


@enigma.kernel
def bitcast_size(x: Tensor[float32], out: Tensor[float32]):
    out[0] = x[0].bitcast(enigma.float16).to(float32)


@enigma.kernel
def view_ragged(raw: Tensor[uint8, (6,)], out: Tensor[float32]):
    out[0] = raw.view(float32)[0]


@enigma.kernel
def view_shared(out: Tensor[float32]):
    s = enigma.shared_tensor(uint8, (16,), name="s")
    out[0] = s.view(float32)[0]


@pytest.mark.parametrize("kernel,message", [
    (bitcast_size, "the sizes differ"),
    (view_ragged, "not a whole number of 4-byte elements"),
    (view_shared, "only tensor arguments can be viewed"),
])
def test_bit_errors(kernel, message):
    with pytest.raises(enigma.EnigmaError, match=message) as e:
        enigma.compile(kernel)
    assert e.value.file == __file__


def test_view_reads_past_the_end_are_out_of_bounds_on_the_cpu():
    from enigma_runtime import OutOfBoundsError

    @enigma.kernel(block=(1, 1, 1), grid=(1, 1, 1))
    def tail(raw: Tensor[uint8], out: Tensor[float32]):
        out[0] = raw.view(float32)[1]  # 7 bytes hold one whole float32

    ck = enigma.compile(tail, np.zeros(7, np.uint8), np.zeros(1, np.float32))
    with pytest.raises(OutOfBoundsError, match="tensor 'raw'.*1 elements of float32.*index 1"):
        ck(np.zeros(7, np.uint8), np.zeros(1, np.float32), device="cpu")


@enigma.kernel
def bitcast_1d(a: Tensor[float32], out: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        out[i] = a[i].bitcast(enigma.uint32).to(float32)


def test_vec_width_refuses_the_fast_ops():
    with pytest.raises(enigma.EnigmaError, match="cannot vectorise kernel 'bitcast_1d': it uses a bitcast"):
        enigma.compile(bitcast_1d, vec_width=4)
    assert "as_type<uint>" in enigma.compile(bitcast_1d).metal_source


@enigma.kernel(block=(4, 1, 1), grid=(1, 1, 1))
def vector_bits(raw: Tensor[uint8, (16,)], out: Tensor[enigma.uint32, (4,)], halves: Tensor[float32, (8,)]):
    t = enigma.thread_idx().x
    out[t] = raw.load_vec(4 * t, 4).bitcast(enigma.uint32)  # uchar4 -> uint
    h = raw.load_vec(4 * t, 4).bitcast(float16)  # uchar4 -> half2
    halves[2 * t] = h[0].to(float32)
    halves[2 * t + 1] = h[1].to(float32)


def test_vector_bitcasts_change_the_lane_count():
    ck = enigma.compile(vector_bits)
    raw = np.frombuffer(np.array([1.0, -2.0, 0.5, 3.0, 7.0, 8.0, -0.25, 1e-3], np.float16).tobytes(),
                        np.uint8).copy()
    cpu, ver = _run_both(ck, raw, np.zeros(4, np.uint32), np.zeros(8, np.float32))
    for got in (cpu, ver):
        np.testing.assert_array_equal(got[1], raw.view(np.uint32))
        np.testing.assert_array_equal(got[2], raw.view(np.float16).astype(np.float32))


@enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
def frag_while(a: Tensor[float32, (32,)], out: Tensor[float32, (32, 2)]):
    t = enigma.thread_idx().x
    f = enigma.make_fragment(2, float32)
    f[1] = a[t]
    k = 0
    while k < t % 5:  # a different trip count per thread
        f[0] = f[0] + 1.0
        f[1] = f[1] * 2.0
        k += 1
    out[t, 0] = f[0]
    out[t, 1] = f[1]


def test_fragments_in_while_loops_with_divergent_trip_counts():
    ck = enigma.compile(frag_while)
    a = np.arange(32, dtype=np.float32)
    cpu, ver = _run_both(ck, a, np.zeros((32, 2), np.float32))
    trips = np.arange(32) % 5
    want = np.stack([trips.astype(np.float32), a * 2.0 ** trips], axis=1)
    np.testing.assert_array_equal(cpu[1], want)
    np.testing.assert_array_equal(ver[1], want)


@enigma.kernel(block=(3, 1, 1), grid=(1, 1, 1))
def view_vectors(raw: Tensor[uint8, (18,)], out: Tensor[float32, (9,)]):
    t = enigma.thread_idx().x
    h = raw.view(float16).load_vec(3 * t, 3)  # half3 read from a byte buffer (6-byte steps)
    out.store_vec(3 * t, h.to(float32) * 2.0)
    raw.view(enigma.uint16).store_vec(3 * t, enigma.vec(h[0].bitcast(enigma.uint16), 7, 9))


def test_packed_vectors_through_a_view():
    ck = enigma.compile(view_vectors)
    halves = np.arange(9, dtype=np.float16) - 4
    raw = halves.view(np.uint8).copy()
    cpu, ver = _run_both(ck, raw, np.zeros(9, np.float32))
    want = raw.view(np.uint16).copy().reshape(3, 3)
    want[:, 1:] = (7, 9)
    for got in (cpu, ver):
        np.testing.assert_array_equal(got[1], halves.astype(np.float32) * 2)
        np.testing.assert_array_equal(got[0].view(np.uint16).reshape(3, 3), want)
    assert "packed_half3*)(((device half*)(raw)) + " in ck.metal_source
