"""Binding and launch details of enigma.verify: bfloat16 scalars, boolN vectors (1 byte per lane),
symbolic grids of CompiledKernels, and check's scalar inputs for narrow integer types."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime.binding import bind, metal_buffers
from toolcheck import need_tool

import enigma
from enigma import Tensor, bfloat16, float32, int8, int32, uint8
from enigma.verify import check, run_msl

pytestmark = pytest.mark.needs_clang
H = "#include <metal_stdlib>\nusing namespace metal;\n\n"


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


def _scalar_spec(dtype: str) -> dict:
    return {"name": "k", "args": [{"name": "s", "kind": "scalar", "dtype": dtype, "rank": 0, "shape": [],
                                   "access": "read", "buffer": 0}]}


@pytest.mark.parametrize(("value", "bits"), [
    (1.5, 0x3FC0), (-2.0, 0xC000), (0.0, 0x0000),
    (1.00390625, 0x3F80),   # halfway between 1.0 (0x3F80) and the next bfloat16: rounds to even
    (1.01171875, 0x3F82),   # halfway between 0x3F81 and 0x3F82: rounds to even (up)
    (1.0 + 2**-7 + 2**-10, 0x3F81),  # below halfway: rounds down
])
def test_bfloat16_scalar_is_bound_as_rounded_bits(value, bits):
    spec = _scalar_spec("bfloat16")
    buf = metal_buffers(bind(spec, (value,), "k"))[0]  # the one binding of every Metal device
    assert buf.dtype == np.uint16 and int(buf) == bits
    assert int(metal_buffers(bind(spec, (np.float32(value),), "k"))[0]) == bits


@enigma.kernel
def scale_by_bf16(x: Tensor[float32], y: Tensor[float32], s: bfloat16, n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] * s.to(float32)


@enigma.jit
def launch_scale_by_bf16(x, y, s):
    n = x.shape[0]
    scale_by_bf16(x, y, s, n).launch(grid=(enigma.ceil_div(n, 64), 1, 1), block=(64, 1, 1))


def test_bfloat16_scalar_reaches_the_kernel_as_its_value():
    x = np.arange(100, dtype=np.float32)
    y = np.zeros_like(x)
    ck = enigma.compile(launch_scale_by_bf16, x, y, 1.5)
    run_msl(ck, x, y, 1.5, np.int32(100))
    np.testing.assert_array_equal(y, x * 1.5)  # the bit pattern 0x0001 would give ~1e-40 * x


# ---------------------------------------------------------------------------------------------------
# boolN: one byte per lane, as in Metal

@enigma.kernel
def bool_mix(a: Tensor[enigma.bool_], b: Tensor[enigma.bool_], x: Tensor[float32], out: Tensor[enigma.bool_],
             cnt: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        v = (a[i] & ~b[i]) | (x[i] > 0.0)
        out[i] = v ^ b[i]
        cnt[i] = v.to(int32) + enigma.where(a[i], 2, 0)


@enigma.jit
def launch_bool_mix(a, b, x, out, cnt):
    n = a.shape[0]
    bool_mix(a, b, x, out, cnt, n).launch(grid=(enigma.ceil_div(n, 64), 1, 1), block=(64, 1, 1))


@pytest.mark.parametrize("n", [1000, 1003])
def test_vec_width_4_kernel_over_bool_tensors(n):
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, n).astype(bool), rng.integers(0, 2, n).astype(bool)
    x = rng.standard_normal(n).astype(np.float32)
    out, cnt = np.zeros(n, bool), np.zeros(n, np.int32)
    ck = enigma.compile(launch_bool_mix, a, b, x, out, cnt, vec_width=4)
    assert "bool4" in ck.metal_source
    run_msl(ck, a, b, x, out, cnt, np.int32(n))
    v = (a & ~b) | (x > 0)
    assert out.view(np.uint8).max() <= 1  # lanes hold 0 or 1, like Metal's bool
    np.testing.assert_array_equal(out, v ^ b)
    np.testing.assert_array_equal(cnt, v.astype(np.int32) + np.where(a, 2, 0))


def test_boolN_layout_constructors_and_functions():
    src = H + """static_assert(sizeof(bool2) == 2 && sizeof(bool3) == 4 && sizeof(bool4) == 4, "bool sizes");
static_assert(sizeof(vec<bool, 4>) == 4, "vec<bool, 4>");
kernel void k(device const bool4* in [[buffer(0)]], device bool4* out [[buffer(1)]],
              device int* r [[buffer(2)]], uint t [[thread_position_in_grid]]) {
    bool4 m = in[t];
    float4 f = float4(1.0f, -2.0f, 3.0f, -4.0f);
    bool4 pos = f > 0.0f;                     // a comparison's int4 becomes 0/1 lanes
    bool4 c = bool4(true, false, pos.z, m.w);
    out[t * 4 + 0] = !m;
    out[t * 4 + 1] = (m && pos) || c;
    out[t * 4 + 2] = bool4(bool2(true, false), bool2(m.x, false)) == bool4(int4(1, 0, 7, 0));
    out[t * 4 + 3] = bool4(m.x) != bool4(false);
    int4 s = select(int4(10), int4(20), m);
    r[t * 8 + 0] = s.x + s.y + s.z + s.w;
    r[t * 8 + 1] = any(m) + 2 * all(m) + 4 * all(pos) + 8 * any(pos);
    int4 asint = int4(m);
    r[t * 8 + 2] = asint.x * 1000 + asint.y * 100 + asint.z * 10 + asint.w;
    r[t * 8 + 3] = m[0] + m[3];
    r[t * 8 + 4] = int(sizeof(bool4));
    bool3 b3 = bool3(m.x, m.y, true);
    r[t * 8 + 5] = b3.x;
    r[t * 8 + 6] = 0;
    r[t * 8 + 7] = 0;
}"""
    m = np.array([[1, 0, 1, 1], [1, 1, 1, 1]], bool)
    out = np.zeros((8, 4), bool)
    r = np.zeros((2, 8), np.int32)
    run_msl(src, m, out, r, grid=1, block=2)
    assert out.view(np.uint8).max() <= 1
    pos = np.array([1, 0, 1, 0], bool)
    for t in range(2):
        c = np.array([1, 0, pos[2], m[t, 3]], bool)
        np.testing.assert_array_equal(out[t * 4 + 0], ~m[t])
        np.testing.assert_array_equal(out[t * 4 + 1], (m[t] & pos) | c)
        np.testing.assert_array_equal(out[t * 4 + 2], np.array([1, 0, m[t, 0], 0], bool) == [1, 0, 1, 0])
        np.testing.assert_array_equal(out[t * 4 + 3], np.full(4, m[t, 0]))
        assert r[t, 0] == sum(20 if x else 10 for x in m[t])
        assert r[t, 1] == m[t].any() + 2 * m[t].all() + 8
        assert r[t, 2] == int("".join(str(int(x)) for x in m[t]))
        assert r[t, 3] == int(m[t, 0]) + int(m[t, 3])
        assert r[t, 4] == 4 and r[t, 5] == m[t, 0]


# ---------------------------------------------------------------------------------------------------
# symbolic grids: evaluated from the signature for the arguments given

@enigma.kernel
def add_one(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] + 1.0


@enigma.jit
def launch_add_one(x, y):
    n = x.shape[0]
    add_one(x, y, n).launch(grid=(enigma.ceil_div(n, 64), 1, 1), block=(64, 1, 1))


@enigma.kernel(block=(32, 1, 1), grid=lambda x, y, n: (enigma.ceil_div(n, 32), 1, 1))
def add_one_decorated(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] + 1.0


def test_run_msl_evaluates_a_symbolic_jit_grid():
    spec = enigma.TensorSpec(float32, ("n",))
    ck = enigma.compile(launch_add_one, spec, spec)
    assert not isinstance(ck.grid[0], int)  # ceil_div(n, 64)
    for n in (1, 100, 1000):
        x = np.arange(n, dtype=np.float32)
        y = np.zeros_like(x)
        run_msl(ck, x, y, np.int32(n))
        np.testing.assert_array_equal(y, x + 1)


def test_run_msl_evaluates_a_decorator_grid_for_the_arguments():
    spec = enigma.TensorSpec(float32, ("n",))
    ck = enigma.compile(add_one_decorated, spec, spec, int32)
    assert not isinstance(ck.grid[0], int)
    x = np.arange(200, dtype=np.float32)
    y = np.zeros_like(x)
    run_msl(ck, x, y, np.int32(200))
    np.testing.assert_array_equal(y, x + 1)
    # compiled for concrete arguments (grid (2, 1, 1)), run on more: the signature's grid follows n
    ck = enigma.compile(add_one_decorated, x[:50].copy(), y[:50].copy(), 50)
    assert ck.grid == (2, 1, 1)
    y[:] = 0
    run_msl(ck, x, y, np.int32(200))
    np.testing.assert_array_equal(y, x + 1)


# ---------------------------------------------------------------------------------------------------
# check: integer scalars clamped to their type

def test_make_inputs_clamps_narrow_integer_scalars():
    spec = {"args": [{"name": "a", "kind": "tensor", "dtype": "int8", "rank": 1, "shape": ["n"],
                      "access": "read"}] + [
        {"name": name, "kind": "scalar", "dtype": dt, "rank": 0, "shape": [], "access": "read"}
        for name, dt in (("i8_size", "int8"), ("u8_size", "uint8"), ("i16_size", "int16"),
                         ("i32_size", "int32"), ("bf", "bfloat16"))]}  # size-like names get the size S
    a, i8, u8, i16, i32, bf = check.make_inputs(spec, np.random.default_rng(0))
    assert a.shape == (1003,)
    assert i8.dtype == np.int8 and i8 == 127
    assert u8.dtype == np.uint8 and u8 == 255
    assert i16 == 1003 and i32 == 1003
    assert bf == 0.75
    _, i8, u8, *_ = check.make_inputs(spec, np.random.default_rng(0), sizes={"i8_size": -500, "u8_size": 7})
    assert i8 == -128 and u8 == 7


@enigma.kernel
def count_below(x: Tensor[int8], out: Tensor[int32], limit: int8, k: uint8):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < x.shape[0]:
        out[i] = enigma.where(x[i] < limit, 1, 0) + k.to(int32)


@enigma.jit
def launch_count_below(x, out, limit, k):
    count_below(x, out, limit, k).launch(grid=(enigma.ceil_div(x.shape[0], 64), 1, 1), block=(64, 1, 1))


def test_check_runs_a_kernel_with_int8_and_uint8_scalars():
    x = np.zeros(10, np.int8)
    ck = enigma.compile(launch_count_below, x, np.zeros(10, np.int32), np.int8(3), np.uint8(2))
    rows = check.check_kernels([ck])
    assert [r.agree for r in rows] == [True], rows


def test_boolN_in_constant_and_threadgroup_memory():
    src = H + """kernel void k(constant bool4* in [[buffer(0)]], device bool4* out [[buffer(1)]],
              uint t [[thread_position_in_threadgroup]]) {
    threadgroup bool4 tile[4];
    tile[t] = !in[t];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    bool4 v = tile[3 - t];
    out[t] = v;
}"""
    m = np.random.default_rng(0).integers(0, 2, (4, 4)).astype(bool)
    out = np.zeros((4, 4), bool)
    for schedule in ("forward", "reverse", "random"):
        run_msl(src, m, out, grid=1, block=4, schedule=schedule)
        np.testing.assert_array_equal(out, ~m[::-1])
