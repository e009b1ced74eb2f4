"""enigma.verify on hand-written MSL in the emitter's style: results, schedules, the compatibility
layer's functions, and every negative case the layer must reject or report."""
from __future__ import annotations

import numpy as np
import pytest
from toolcheck import need_tool

from enigma.verify import CompileError, KernelError, MslError, compile_msl, run_msl

pytestmark = pytest.mark.needs_clang
SCHEDULES = ("forward", "reverse", "random")
H = "#include <metal_stdlib>\nusing namespace metal;\n\n"


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


VECTOR_ADD = H + """kernel void enigma_kernel_vector_add(
    const device float* a [[buffer(0)]],
    const device float* b [[buffer(1)]],
    device float* c [[buffer(2)]],
    constant int& n [[buffer(3)]],
    uint3 enigma_tid [[thread_position_in_threadgroup]],
    uint3 enigma_bid [[threadgroup_position_in_grid]],
    uint3 enigma_bdim [[threads_per_threadgroup]])
{
    int v3 = (int)enigma_bid.x * (int)enigma_bdim.x + (int)enigma_tid.x;  // line 3
    bool v4 = v3 < n;  // line 4
    if (v4) {  // line 4
        c[v3] = a[v3] + b[v3];  // line 5
    }
}
"""

REDUCE = H + """kernel void enigma_kernel_reduce(
    const device float* x [[buffer(0)]],
    device float* out [[buffer(1)]],
    constant int& n [[buffer(2)]],
    uint3 tid [[thread_position_in_threadgroup]],
    uint3 bid [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]])
{
    threadgroup float partial[8];
    threadgroup float tile[256];
    int i = (int)bid.x * 256 + (int)tid.x;
    tile[tid.x] = i < n ? x[i] : 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = 128; s >= 32; s >>= 1) {
        if (tid.x < s) tile[tid.x] += tile[tid.x + s];
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    float v = tid.x < 32 ? tile[tid.x] : 0.0f;
    v = simd_sum(v);
    if (lane == 0) partial[sg] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid.x == 0) {
        float s = 0.0f;
        for (int k = 0; k < 8; k++) s += partial[k];
        out[bid.x] = s;
    }
}
"""


def test_vector_add_matches_numpy():
    rng = np.random.default_rng(0)
    n = 1000
    a, b = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    c = np.full(n, -1, np.float32)
    run_msl(VECTOR_ADD, a, b, c, np.int32(n), grid=(4,), block=(256,))
    np.testing.assert_array_equal(c, a + b)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reduction_with_barriers_and_simd_sum(schedule):
    rng = np.random.default_rng(1)
    n = 16 * 256 - 5
    x = rng.standard_normal(n, np.float32)
    out = np.zeros(16, np.float32)
    run_msl(REDUCE, x, out, np.int32(n), grid=16, block=256, schedule=schedule, seed=7)
    want = np.pad(x, (0, 5)).reshape(16, 256).sum(axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_python_scalars_take_the_declared_type():
    a = np.arange(8, dtype=np.float32)
    c = np.zeros(8, np.float32)
    run_msl(VECTOR_ADD, a, a, c, 5, grid=1, block=8)  # `constant int& n`: 5 becomes an int32
    np.testing.assert_array_equal(c, np.where(np.arange(8) < 5, 2 * a, 0))


def test_buffers_bound_by_index_and_isolate_off():
    prog = compile_msl(VECTOR_ADD)
    assert prog.name == "enigma_kernel_vector_add" and prog.sig.buffer_indices == [0, 1, 2, 3]
    a = np.arange(64, dtype=np.float32)
    c = np.zeros(64, np.float32)
    prog.run({0: a, 1: a, 2: c, 3: np.int32(64)}, grid=1, block=64, isolate=False)
    np.testing.assert_array_equal(c, 2 * a)


def test_threadgroup_memory_is_poisoned_and_shared_within_a_group():
    src = H + """kernel void k(device uint* out [[buffer(0)]], uint t [[thread_index_in_threadgroup]],
                     uint3 g [[threadgroup_position_in_grid]]) {
    threadgroup uint seen[2];
    threadgroup uint* p = &seen[1];
    if (t == 0) out[g.x * 2] = seen[0];   // never written: the 0xFF poison
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (t == 3) *p = 40 + g.x;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (t == 1) out[g.x * 2 + 1] = seen[1];
}"""
    out = np.zeros(6, np.uint32)
    run_msl(src, out, grid=3, block=8, schedule="reverse")
    assert list(out[0::2]) == [0xFFFFFFFF] * 3
    assert list(out[1::2]) == [40, 41, 42]


def test_schedules_change_the_order_of_unsynchronised_threads():
    src = H + """kernel void k(device atomic_int* counter [[buffer(0)]], device int* order [[buffer(1)]],
                     uint t [[thread_position_in_threadgroup]]) {
    order[t] = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}"""
    got = {}
    for s in SCHEDULES:
        counter, order = np.zeros(1, np.int32), np.zeros(32, np.int32)
        run_msl(src, counter, order, grid=1, block=32, schedule=s, seed=3)
        assert counter[0] == 32 and sorted(order) == list(range(32))
        got[s] = order.copy()
    assert list(got["forward"]) == list(range(32))
    assert list(got["reverse"]) == list(range(31, -1, -1))
    assert list(got["random"]) not in (list(range(32)), list(range(31, -1, -1)))


def test_simd_group_functions():
    src = H + """kernel void k(device int* out [[buffer(0)]], device float* f [[buffer(1)]],
                     uint lane [[thread_index_in_simdgroup]], uint t [[thread_index_in_threadgroup]]) {
    int v = (int)t;
    out[t * 6 + 0] = simd_shuffle_down(v, 1);
    out[t * 6 + 1] = simd_prefix_exclusive_sum(v);
    out[t * 6 + 2] = simd_broadcast(v, 5);
    out[t * 6 + 3] = simd_max(v);
    out[t * 6 + 4] = (int)(ulong)simd_ballot(lane % 2 == 0);
    out[t * 6 + 5] = lane < 8 ? simd_sum(1) : -1;   // only 8 lanes active at this call
    float4 q = float4(float2(f[t], 1.0f), 2.0f, 3.0f);
    f[t] = simd_sum(q).x + q.w;
}"""
    out = np.zeros(64 * 6, np.int32)
    f = np.ones(64, np.float32)
    run_msl(src, out, f, grid=1, block=64, schedule="random", seed=5)
    o = out.reshape(64, 6)
    t = np.arange(64)
    lane = t % 32
    np.testing.assert_array_equal(o[:, 0], np.where(lane < 31, t + 1, t))
    np.testing.assert_array_equal(o[:, 1], [sum(range(x - x % 32, x)) for x in t])
    np.testing.assert_array_equal(o[:, 2], t - lane + 5)
    np.testing.assert_array_equal(o[:, 3], t - lane + 31)
    np.testing.assert_array_equal(o[:, 4], np.full(64, 0x55555555))
    np.testing.assert_array_equal(o[:, 5], np.where(lane < 8, 8, -1))
    np.testing.assert_array_equal(f, np.full(64, 35.0, np.float32))


def test_layer_types_math_and_constructors():
    src = H + """kernel void k(device half* h [[buffer(0)]], device ushort* bf [[buffer(1)]],
                     device float4* v [[buffer(2)]], device uint2* u [[buffer(3)]],
                     uint t [[thread_position_in_grid]]) {
    h[t] = h[t] * half(2.0f) + half(0.5f);
    bfloat b = as_type<bfloat>(bf[t]);
    bf[t] = as_type<ushort>(bfloat(float(b) * 4.0f));
    float4 a = *((device const float4*)(v) + t);
    float3 n = normalize(float3(3.0f, 0.0f, 4.0f));
    v[t] = float4(a.xy * 2.0f, clamp(a.z, 0.0f, 1.0f), dot(n, float3(1.0f)) + fma(a.w, 0.0f, exp2(1.0f)));
    u[t] = uint2(int2(a.xy)) + uint2(popcount(7u), max(3u, t));
}"""
    h = np.array([1, 2, 3, 4], np.float16)
    bf = (np.array([1.5, -2, 0.25, 8], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    v = np.array([[1, 2, 3, 4], [5, 6, -7, 8], [0, 1, 0.5, 2], [9, 9, 9, 9]], np.float32)
    u = np.zeros((4, 2), np.uint32)
    v0 = v.copy()
    run_msl(src, h, bf, v, u, grid=1, block=4)
    np.testing.assert_array_equal(h, np.array([2.5, 4.5, 6.5, 8.5], np.float16))
    np.testing.assert_array_equal((bf.astype(np.uint32) << 16).view(np.float32), [6, -8, 1, 32])
    np.testing.assert_allclose(v[:, 3], 1.4 + 2.0, rtol=1e-6)
    np.testing.assert_array_equal(v[:, 2], [1, 0, 0.5, 1])
    np.testing.assert_array_equal(v[:, :2], v0[:, :2] * 2)
    np.testing.assert_array_equal(u[:, 0], v0[:, 0].astype(np.int32).astype(np.uint32) + 3)  # popcount(7)
    np.testing.assert_array_equal(u[:, 1], v0[:, 1].astype(np.uint32) + 3)  # max(3u, t) for t < 4


# ---------------------------------------------------------------------------------------------------
# negative cases

def test_rejects_threadgroup_pointer_passed_as_device_pointer():
    src = H + """void store(device float* p, float v) { p[0] = v; }
kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    threadgroup float tile[32];
    store(&tile[t], 1.0f);
    a[t] = tile[t];
}"""
    with pytest.raises(CompileError) as e:
        compile_msl(src)
    assert "kernel.metal:7:" in str(e.value) and "__local" in str(e.value)


def test_rejects_write_through_constant():
    src = H + "kernel void k(constant float* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {\n" \
              "    a[t] = 1.0f;\n}\n"
    with pytest.raises(CompileError, match=r"kernel.metal:5:\d+: error: read-only variable"):
        compile_msl(src)


def test_rejects_double():
    src = H + "kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {\n" \
              "    double d = a[t];\n    a[t] = (float)d;\n}\n"
    with pytest.raises(CompileError, match=r"kernel.metal:5:\d+: error: use of type 'double'"):
        compile_msl(src)


def test_rejects_misspelled_attribute_with_line():
    src = VECTOR_ADD.replace("[[threadgroup_position_in_grid]]", "[[threadgroup_position_in_gird]]")
    with pytest.raises(MslError, match=r"kernel.metal:10: unknown attribute "
                       r"\[\[threadgroup_position_in_gird\]\][\s\S]*"
                       r"did you mean \[\[threadgroup_position_in_grid\]\]"):
        compile_msl(src)
    with pytest.raises(MslError, match=r"kernel.metal:6: \[\[buffer\]\] needs an integer index"):
        compile_msl(VECTOR_ADD.replace("[[buffer(1)]]", "[[buffer]]"))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_divergent_barrier_is_an_error_with_its_line(schedule):
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    if (t < 16) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    a[t] = 1.0f;
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:6: threadgroup_barrier at line 6 is not reached by "
                       r"every thread") as e:
        run_msl(src, np.zeros(32, np.float32), grid=1, block=32, schedule=schedule)
    assert e.value.line == 6
    two = src.replace("    }\n    a[t]", "    } else {\n        threadgroup_barrier(mem_flags::mem_device);\n"
                                        "    }\n    a[t]")
    with pytest.raises(KernelError, match=r"divergent threadgroup_barrier: .* line (6|8) .* line (6|8)"):
        run_msl(two, np.zeros(32, np.float32), grid=1, block=32, schedule=schedule)


def test_return_before_barrier_is_an_error():
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    if (t == 3) return;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    a[t] = 1.0f;
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:6: .*\(3, 0, 0\) returned without reaching it"):
        run_msl(src, np.zeros(8, np.float32), grid=1, block=8)


@pytest.mark.parametrize("isolate", [True, False])
def test_out_of_bounds_write_is_reported_not_a_crash(isolate):
    src = H + """kernel void k(device float* a [[buffer(0)]], const device float* b [[buffer(1)]],
                     uint t [[thread_position_in_grid]]) {
    a[t + 1] = b[t];
}"""
    a, b = np.zeros(64, np.float32), np.ones(64, np.float32)
    with pytest.raises(KernelError) as e:
        run_msl(src, a, b, grid=2, block=32, isolate=isolate)
    msg = str(e.value)
    assert "out-of-bounds write access to [[buffer(0)]] a" in msg and "element 64" in msg
    assert msg.startswith("kernel.metal:6:") and "thread_position_in_threadgroup (31, 0, 0)" in msg
    # the process is fine afterwards and the buffer was not written back
    run_msl(VECTOR_ADD, b, b, a, np.int32(64), grid=1, block=64)
    assert (a == 2).all()


def test_out_of_bounds_in_padding_and_wild_writes_are_reported():
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    a[t + 1] = 1.0f;
}"""
    # 40 bytes: the overrun is in the buffer's padding, still caught at the access (thread and line)
    with pytest.raises(KernelError, match=r"kernel.metal:5: out-of-bounds write .* element 10, .* holds 10 "
                       r"elements .*thread_position_in_threadgroup \(9, 0, 0\)"):
        run_msl(src, np.zeros(10, np.float32), grid=1, block=10)
    # a write through a wild pointer (here: near null) is a crash of the isolated child, reported
    wild = src.replace("a[t + 1]", "((device float*)(ulong)(4096 * (t + 1)))[0]")
    with pytest.raises(KernelError, match=r"kernel.metal:5: SIGSEGV: invalid memory access at address 0x"):
        run_msl(wild, np.zeros(10, np.float32), grid=1, block=10)


def test_launch_errors():
    with pytest.raises(ValueError, match="at most 1024"):
        run_msl(VECTOR_ADD, *[np.zeros(4, np.float32)] * 3, np.int32(4), grid=1, block=(32, 64))
    with pytest.raises(TypeError, match=r"kernel.metal:7: \[\[buffer\(2\)\]\] c is `device float\*` but the "
                       r"array has dtype int32"):
        run_msl(VECTOR_ADD, np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.int32),
                np.int32(4), grid=1, block=4)
    with pytest.raises(ValueError, match=r"no data for \[\[buffer\(3\)\]\] \(n\)"):
        compile_msl(VECTOR_ADD).run({0: 1, 1: 1, 2: 1}, grid=1, block=1)
    with pytest.raises(MslError, match="no kernel named 'nope'"):
        compile_msl(VECTOR_ADD, "nope")


def test_division_by_zero_and_infinite_loop_are_reported():
    src = H + """kernel void k(device int* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    a[t] = 7 / a[t];
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:5: SIGFPE"):
        run_msl(src, np.zeros(4, np.int32), grid=1, block=4)
    spin = H + """kernel void k(device int* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    while (*(device volatile int*)a == 0) { a[1] += 1; }
}"""
    with pytest.raises(KernelError, match="did not finish within the timeout"):
        compile_msl(spin).run({0: np.zeros(4, np.int32)}, grid=1, block=1, timeout=0.3)


def test_ucontext_fiber_fallback_gives_the_same_results(tmp_path):
    """The portable fiber switch (used off x86-64) in a child interpreter, forced by an env var."""
    import os
    import subprocess
    import sys

    code = (f"import numpy as np\nfrom enigma.verify import run_msl\nsrc = {REDUCE!r}\n"
            "x = np.arange(512, dtype=np.float32)\nout = np.zeros(2, np.float32)\n"
            "run_msl(src, x, out, np.int32(512), grid=2, block=256, schedule='random')\n"
            "assert out.tolist() == [x[:256].sum(), x[256:].sum()], out\nprint('ok')\n")
    env = dict(os.environ, ENIGMA_VERIFY_UCONTEXT="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_integer_bit_functions_and_packed_vectors():
    src = H + """kernel void k(device uint* u [[buffer(0)]], device int* s [[buffer(1)]],
                     device packed_float3* p [[buffer(2)]], uint t [[thread_position_in_grid]]) {
    uint x = u[t];
    u[t] = extract_bits(x, 4, 8) | (clz(x) << 8) | (ctz(x) << 16) | (popcount(x) << 24);
    s[t * 3] = extract_bits(int(x), 0, 4);                     // sign-extended 4-bit field
    s[t * 3 + 1] = int(insert_bits(0u, 5u, 28, 4));
    s[t * 3 + 2] = int(reverse_bits(x) == (x == 1u ? 0x80000000u : reverse_bits(x))) + int(clz(ulong(1)));
    float3 q = p[t];
    p[t] = q.zyx + 1.0f;
}"""
    u = np.array([1, 0xF0, 0x8000000F, 0x12345678], np.uint32)
    s = np.zeros(12, np.int32)
    p = np.arange(12, dtype=np.float32)  # 4 packed_float3 (12 bytes each)
    x = u.copy()
    run_msl(src, u, s, p, grid=1, block=4)

    def clz(v):
        return 32 - int(v).bit_length()

    def ctz(v):
        return (int(v) & -int(v)).bit_length() - 1

    want = [((int(v) >> 4) & 0xFF) | (clz(v) << 8) | (ctz(v) << 16) | (bin(int(v)).count("1") << 24)
            for v in x]
    np.testing.assert_array_equal(u, want)
    s = s.reshape(4, 3)
    np.testing.assert_array_equal(s[:, 0], [((int(v) & 0xF) ^ 8) - 8 for v in x])
    np.testing.assert_array_equal(s[:, 1], np.full(4, 0x50000000))
    np.testing.assert_array_equal(s[:, 2], np.full(4, 1 + 63))
    np.testing.assert_array_equal(p.reshape(4, 3), np.arange(12, dtype=np.float32).reshape(4, 3)[:, ::-1] + 1)


def test_kernel_attribute_spelling_and_half_literals():
    src = H + """[[kernel]] void k(device half* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    threadgroup half tmp[4];
    tmp[t] = a[t] * 2.0h;
    a[t] = tmp[t] + 0.5h;
}"""
    a = np.arange(4, dtype=np.float16)
    run_msl(src, a, grid=1, block=4)
    np.testing.assert_array_equal(a, [0.5, 2.5, 4.5, 6.5])


@pytest.mark.parametrize("isolate", [True, False])
def test_out_of_bounds_threadgroup_access_is_reported(isolate):
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    threadgroup float4 other[2];
    threadgroup float tile[16][16];
    other[t % 2] = float4(1.0f);
    tile[t][t + 1] = a[t];   // row 15 writes tile[15][16]: one past the end
    threadgroup_barrier(mem_flags::mem_threadgroup);
    a[t] = tile[t][0] + other[0].x;
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:8: out-of-bounds write access to threadgroup array "
                       r"tile \(`threadgroup float tile\[16\]\[16\]`, declared at line 6\): "
                       r"byte offset 1024, element 256 of 256 \(1024 bytes\) "
                       r"\(thread_position_in_threadgroup \(15, 0, 0\)"):
        run_msl(src, np.zeros(16, np.float32), grid=1, block=16, isolate=isolate)
    ok = src.replace("tile[t][t + 1]", "tile[t][t]")
    a = np.arange(16, dtype=np.float32)
    run_msl(ok, a, grid=1, block=16, isolate=isolate)
    assert a[0] == 1 and np.isnan(a[1:]).all()  # tile[t][0] for t > 0 was never written: the 0xFF poison


def test_constants_and_relational():
    src = H + """kernel void k(device float* f [[buffer(0)]], device int* i [[buffer(1)]],
                     uint t [[thread_position_in_grid]]) {
    f[0] = INFINITY; f[1] = -INFINITY; f[2] = NAN; f[3] = M_PI_F; f[4] = FLT_MAX; f[5] = float(HALF_MAX);
    i[0] = INT_MAX; i[1] = INT_MIN; i[2] = isnan(f[2]); i[3] = isinf(f[1]);
    float4 a = float4(1.0f, 2.0f, 3.0f, 4.0f), b = float4(4.0f, 3.0f, 2.0f, 1.0f);
    i[4] = all(a < 5.0f); i[5] = any(a > b); i[6] = all(a > b);
    float4 s = select(a, b, a < b);   // b where a < b
    f[6] = s.x + 10.0f * s.w;
}"""
    f = np.zeros(7, np.float32)
    i = np.zeros(7, np.int32)
    run_msl(src, f, i, grid=1, block=1)
    assert f[0] == np.inf and f[1] == -np.inf and np.isnan(f[2]) and f[3] == np.float32(np.pi)
    assert f[4] == np.finfo(np.float32).max and f[5] == 65504
    assert list(i) == [2**31 - 1, -(2**31), 1, 1, 1, 1, 0]
    assert f[6] == 4.0 + 10.0 * 4.0


def test_builtins_of_a_3d_launch():
    src = H + """kernel void k(device uint* o [[buffer(0)]],
    uint3 tpig [[thread_position_in_grid]], ushort3 tpitg [[thread_position_in_threadgroup]],
    uint3 tgpig [[threadgroup_position_in_grid]], uint3 tptg [[threads_per_threadgroup]],
    uint2 tgpg [[threadgroups_per_grid]], uint3 tpg [[threads_per_grid]],
    uint tiitg [[thread_index_in_threadgroup]], ushort lane [[thread_index_in_simdgroup]],
    uint sg [[simdgroup_index_in_threadgroup]], uint nsg [[simdgroups_per_threadgroup]],
    uint w [[thread_execution_width]], uint x [[thread_position_in_grid]]) {
    uint g = (tpig.z * tpg.y + tpig.y) * tpg.x + tpig.x;
    device uint* r = o + g * 16;
    r[0] = tpig.x; r[1] = tpig.y; r[2] = tpig.z; r[3] = tpitg.x; r[4] = tpitg.y; r[5] = tpitg.z;
    r[6] = tgpig.x; r[7] = tgpig.y; r[8] = tgpig.z; r[9] = tptg.x * 100 + tptg.y * 10 + tptg.z;
    r[10] = tgpg.x * 10 + tgpg.y; r[11] = tiitg; r[12] = lane; r[13] = sg; r[14] = nsg * 100 + w; r[15] = x;
}"""
    grid, block = (2, 3, 2), (8, 5, 2)
    tpg = [g * b for g, b in zip(grid, block)]
    o = np.zeros((tpg[2], tpg[1], tpg[0], 16), np.uint32)
    run_msl(src, o, grid=grid, block=block, schedule="reverse")
    z, y, x = np.meshgrid(*[np.arange(n) for n in tpg[::-1]], indexing="ij")
    lid = [x % 8, y % 5, z % 2]
    tiitg = lid[0] + 8 * lid[1] + 40 * lid[2]
    want = np.stack([x, y, z, *lid, x // 8, y // 5, z // 2, np.full_like(x, 852), np.full_like(x, 23), tiitg,
                     tiitg % 32, tiitg // 32, np.full_like(x, 3 * 100 + 32), x], axis=-1)
    np.testing.assert_array_equal(o, want)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_race_check_finds_a_missing_barrier(schedule):
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    threadgroup float tile[64];
    tile[t] = a[t];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float v = tile[(t + 1) % 64];
    tile[t] = v * 2.0f;   // another thread still has to read tile[t]: needs a barrier before this
    a[t] = v;
}"""
    # reported at the second access: the write (line 9) or the read (line 8), depending on the order
    with pytest.raises(KernelError, match=r"kernel.metal:(8|9): data race on threadgroup memory tile\[\d+\] "
                       r"\(`threadgroup float tile\[64\]`, line 5\): thread_position_in_threadgroup "
                       r"\(\d+, 0, 0\) of threadgroup \(\d, 0, 0\) (writes|reads) it here, but "
                       r"thread_position_in_threadgroup \(\d+, 0, 0\) (wrote|read) it since the last"):
        run_msl(src, np.arange(64, dtype=np.float32), grid=2, block=64, schedule=schedule, race_check=True)
    run_msl(src, np.arange(64, dtype=np.float32), grid=2, block=64, schedule=schedule)  # unchecked: runs
    fixed = src.replace("    tile[t] = v * 2.0f;", "    threadgroup_barrier(mem_flags::mem_threadgroup);\n"
                                                  "    tile[t] = v * 2.0f;")
    a = np.arange(64, dtype=np.float32)
    run_msl(fixed, a, grid=1, block=64, schedule=schedule, race_check=True)
    np.testing.assert_array_equal(a, np.roll(np.arange(64, dtype=np.float32), -1))
    # atomics on threadgroup memory are not races; the reduction with simd_sum is race-free
    x = np.ones(512, np.float32)
    out = np.zeros(2, np.float32)
    run_msl(REDUCE, x, out, np.int32(512), grid=2, block=256, schedule=schedule, race_check=True)
    assert out.tolist() == [256.0, 256.0]


def test_race_check_on_device_buffers():
    two_writers = H + """kernel void k(device float* a [[buffer(0)]], device float* out [[buffer(1)]],
                 uint t [[thread_position_in_grid]]) {
    out[t / 2] = a[t];   // two threads write each element
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:6: data race on \[\[buffer\(1\)\]\] out element "
                       r"\d+: thread_position_in_threadgroup \(\d+, 0, 0\) of threadgroup \((0|1), 0, 0\) "
                       r"writes it here, but .* wrote it since the last threadgroup_barrier"):
        run_msl(two_writers, np.arange(64, dtype=np.float32), np.zeros(32, np.float32), grid=2, block=32,
                race_check=True)
    across = H + """kernel void k(device float* a [[buffer(0)]], device float* out [[buffer(1)]],
                 uint t [[thread_position_in_grid]], uint g [[threadgroup_position_in_grid]]) {
    out[t] = a[t];
    if (g == 1) out[t] += out[t - 32];   // reads what threadgroup 0 wrote
}"""
    with pytest.raises(KernelError, match=r"kernel.metal:7: data race on \[\[buffer\(1\)\]\] out element "
                       r"\d+: .* of threadgroup \(1, 0, 0\) reads it here, but .* of threadgroup \(0, 0, 0\) "
                       r"wrote it \(threads of different threadgroups are never ordered"):
        run_msl(across, np.arange(64, dtype=np.float32), np.zeros(64, np.float32), grid=2, block=32,
                race_check=True, schedule="forward")
    ok = H + """kernel void k(device float* a [[buffer(0)]], device float* out [[buffer(1)]],
                 device atomic_int* c [[buffer(2)]], uint t [[thread_position_in_grid]]) {
    out[t] = a[t] * 2.0f;
    a[t] = out[t];                                            // same thread: ordered
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);    // atomics never race
}"""
    a, c = np.arange(64, dtype=np.float32), np.zeros(1, np.int32)
    run_msl(ok, a, np.zeros(64, np.float32), c, grid=2, block=32, race_check=True, isolate=False)
    assert c[0] == 64 and a[5] == 10


def test_type_traits_and_numeric_limits():
    src = H + """#include <metal_numeric>
template <typename T, typename = metal::enable_if_t<metal::is_floating_point_v<T>>>
T biggest() { return metal::numeric_limits<T>::max(); }
kernel void k(device float* f [[buffer(0)]], device int* i [[buffer(1)]],
              uint t [[thread_position_in_grid]]) {
    f[0] = biggest<float>();
    f[1] = float(biggest<half>());
    f[2] = numeric_limits<float>::lowest();
    f[3] = numeric_limits<float>::epsilon();
    i[0] = numeric_limits<int>::min();
    i[1] = is_same_v<uint, uint32_t> + 2 * is_integral_v<float> + 4 * is_signed_v<int>
           + 8 * is_signed_v<uint>;
}"""
    f, i = np.zeros(4, np.float32), np.zeros(2, np.int32)
    run_msl(src, f, i, grid=1, block=1)
    fi = np.finfo(np.float32)
    assert f.tolist() == [fi.max, 65504.0, -fi.max, fi.eps] and i.tolist() == [-(2**31), 5]


def test_race_check_treats_simdgroup_calls_as_ordering_their_lanes():
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_threadgroup]]) {
    threadgroup float tile[64];
    tile[t] = a[t];
    simdgroup_barrier(mem_flags::mem_threadgroup);   // orders the 32 lanes of each simdgroup
    a[t] = tile[t ^ 1];                              // a neighbour lane of the same simdgroup
}"""
    a = np.arange(64, dtype=np.float32)
    run_msl(src, a, grid=1, block=64, race_check=True)
    np.testing.assert_array_equal(a, np.arange(64) ^ 1)
    across = src.replace("tile[t ^ 1]", "tile[t ^ 32]")  # a lane of the other simdgroup: unordered
    with pytest.raises(KernelError, match=r"kernel.metal:8: data race on threadgroup memory tile\[\d+\]"):
        run_msl(across, np.arange(64, dtype=np.float32), grid=1, block=64, race_check=True)
    none = src.replace("    simdgroup_barrier(mem_flags::mem_threadgroup);", "")
    with pytest.raises(KernelError, match=r"data race on threadgroup memory tile\[\d+\]"):
        run_msl(none, np.arange(64, dtype=np.float32), grid=1, block=64, race_check=True)


def test_fault_lines_also_come_from_gnu_addr2line(monkeypatch):
    """Without llvm-symbolizer (not in every clang install) binutils' addr2line names the line."""
    from enigma.verify import report

    tool = need_tool("addr2line")
    monkeypatch.setattr(report, "symbolizer_argv", lambda lib, off: [tool, "-i", "-e", str(lib), hex(off)])
    src = H + """kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {
    float x = a[t] * 2.0f;
    a[t + 16] = x;
}"""
    with pytest.raises(KernelError, match=r"^kernel.metal:6: out-of-bounds write access to \[\[buffer"):
        run_msl(src, np.zeros(16, np.float32), grid=1, block=16)


def test_precompiled_header_survives_a_fresh_checkout_of_the_headers(tmp_path, monkeypatch):
    """clang stamps a PCH with its inputs' mtimes: a PCH built from one checkout of the headers used to
    be rejected ("has been modified since the precompiled header was built") after a fresh clone."""
    import os
    import shutil

    from enigma.verify import clang

    headers = tmp_path / "include"
    shutil.copytree(clang.INCLUDE_DIR, headers)
    monkeypatch.setattr(clang, "INCLUDE_DIR", headers)
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    a = np.arange(8, dtype=np.float32)
    c = np.zeros(8, np.float32)
    run_msl(VECTOR_ADD, a, a, c, 8, grid=1, block=8)  # builds the PCH
    for p in headers.rglob("*"):  # the same contents, checked out again later
        os.utime(p, (1, 1))
    run_msl(VECTOR_ADD.replace("a[v3] + b[v3]", "a[v3] - b[v3]"), a, a, c, 8, grid=1, block=8)
    assert c.tolist() == [0.0] * 8


def test_erf_is_not_in_the_compatibility_header_as_it_is_not_in_metal():
    # Metal's standard library has no erf: a hand-written kernel calling it must fail here as it
    # would under Apple's compiler (enigma.erf is emitted as its own helper, enigma_erf)
    src = H + "kernel void k(device float* a [[buffer(0)]], uint t [[thread_position_in_grid]]) {\n" \
              "    a[t] = erf(a[t]);\n}\n"
    with pytest.raises(CompileError) as e:
        compile_msl(src)
    assert "erf" in str(e.value)


TWO_KERNELS = """#include <metal_stdlib>
using namespace metal;
kernel void twice(device const float* a [[buffer(0)]], device float* out [[buffer(1)]],
                  uint i [[thread_position_in_grid]]) { out[i] = 2 * a[i]; }
kernel void same(device const float* a [[buffer(0)]], device const float* b [[buffer(1)]],
                 device int* out [[buffer(2)]], uint i [[thread_position_in_grid]]) { out[i] = a == b; }
kernel void shift(device const float* a [[buffer(0)]], device float* out [[buffer(1)]],
                  uint i [[thread_position_in_grid]]) {
  device float4* o = (device float4*)(out + 1);  // misaligned for float4 (Metal: undefined)
  o[i] = float4(a[i]);
}
"""


def test_kernels_compiled_together_share_one_library():
    together = ["same", "shift"]
    p = compile_msl(TWO_KERNELS, "twice", together=together)
    q = compile_msl(TWO_KERNELS, "same", together=["twice", "shift"])
    assert p.library == q.library and p.name == "twice" and q.name == "same"
    a = np.arange(8, dtype=np.float32)
    out = np.zeros(8, np.float32)
    p.run({0: a, 1: out}, grid=1, block=8)
    np.testing.assert_array_equal(out, 2 * a)
    with pytest.raises(MslError, match="no kernel named 'nope'"):
        compile_msl(TWO_KERNELS, "twice", together=["nope"])


def test_one_array_at_two_indices_is_one_buffer():
    """Metal binds one MTLBuffer at several indices with one address (ggml passes src0 again for an
    absent mask and compares the pointers)."""
    prog = compile_msl(TWO_KERNELS, "same")
    a, b = np.zeros(4, np.float32), np.zeros(4, np.float32)
    out = np.zeros(4, np.int32)
    prog.run({0: a, 1: a, 2: out}, grid=1, block=4)
    assert out.tolist() == [1, 1, 1, 1]
    prog.run({0: a, 1: b, 2: out}, grid=1, block=4)
    assert out.tolist() == [0, 0, 0, 0]


def test_misaligned_vector_access_is_named():
    """A float4 store at an address that is not a multiple of 16: on x86 the aligned vector move
    faults without an address; the report names the access, the buffer and the offset."""
    a = np.zeros(4, np.float32)
    out = np.zeros(32, np.float32)
    with pytest.raises(KernelError, match=r"kernel.metal:10: misaligned 16-byte write of "
                       r"\[\[buffer\(1\)\]\] out \(`device float\*`\) at byte offset 4: Metal requires"):
        run_msl(TWO_KERNELS, a, out, name="shift", grid=1, block=4)


WARP_SYNCHRONOUS = """#include <metal_stdlib>
using namespace metal;
kernel void k(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
              ushort l [[thread_index_in_simdgroup]]) {
  threadgroup float sr[16];
  float v = x[l];
  v += simd_shuffle_down(v, 16);
  v += simd_shuffle_down(v, 8);
  v += simd_shuffle_down(v, 4);  // lanes 0-3 hold the sums of the lanes l % 4 == lane
  for (short i = l; i < 16; i += 4) sr[i] = v;   // lanes 4-15 write partial sums first, then
  threadgroup_barrier(mem_flags::mem_threadgroup);  // lanes 0-3 overwrite them a round later
  if (l < 16) out[l] = sr[l];
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_threadgroup_accesses_run_in_lockstep(schedule):
    """ggml's flash attention stores a reduction from several lanes to one threadgroup address in
    successive iterations of one loop and relies on the GPU running a simdgroup's lanes in step (the
    last iteration's lane wins). Threads yield at every threadgroup access, so the k-th access of
    every thread comes before any thread's (k+1)-th, whatever the schedule."""
    x = np.arange(32, dtype=np.float32)
    out = np.zeros(16, np.float32)
    run_msl(WARP_SYNCHRONOUS, x, out, grid=1, block=32, schedule=schedule)
    np.testing.assert_array_equal(out, np.tile(x.reshape(8, 4).sum(0), 4))
    with pytest.raises(KernelError, match=r"kernel.metal:10: data race on threadgroup memory sr\["):
        run_msl(WARP_SYNCHRONOUS, x, out, grid=1, block=32, race_check=True)
