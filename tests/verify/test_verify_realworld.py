"""Real-world Metal that Apple's compiler accepts runs as written (issue 13): parameters without
[[buffer(i)]], template kernels instantiated with [[host_name]], function constants given at run time,
[[threadgroup(i)]] parameters sized at dispatch, no #include, brace-initialised vectors, constexpr
vector constructors and constant tables, and the library names real kernels use."""
from __future__ import annotations

import numpy as np
import pytest
from toolcheck import need_tool

from enigma.verify import KernelError, MslError, compile_msl, run_msl
from enigma.verify.msl import parse_kernel

pytestmark = pytest.mark.needs_clang
H = "#include <metal_stdlib>\nusing namespace metal;\n"


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


APPLE_ADD_ARRAYS = """#include <metal_stdlib>
using namespace metal;
/// This is a Metal Shading Language (MSL) function equivalent to the add_arrays() C function
kernel void add_arrays(device const float* inA,
                       device const float* inB,
                       device float* result,
                       uint index [[thread_position_in_grid]])
{
    // the for-loop is replaced with a collection of threads, each of which
    // calls this function.
    result[index] = inA[index] + inB[index];
}
"""


def test_parameters_without_buffer_attributes_get_indices_in_order():
    sig = parse_kernel(APPLE_ADD_ARRAYS)
    assert [(p.name, p.attr, p.index) for p in sig.params] == [
        ("inA", "buffer", 0), ("inB", "buffer", 1), ("result", "buffer", 2),
        ("index", "thread_position_in_grid", None)]
    a, b = np.arange(100, dtype=np.float32), np.full(100, 0.5, np.float32)
    out = np.zeros(100, np.float32)
    run_msl(APPLE_ADD_ARRAYS, a, b, out, grid=4, block=25)
    np.testing.assert_array_equal(out, a + b)
    mixed = parse_kernel(H + "kernel void k(device float* a [[buffer(1)]], constant uint& n, device float* c,"
                         " threadgroup float* t [[threadgroup(0)]], threadgroup float* u) { }")
    assert [(p.name, p.attr, p.index) for p in mixed.params] == [
        ("a", "buffer", 1), ("n", "buffer", 0), ("c", "buffer", 2), ("t", "threadgroup", 0),
        ("u", "threadgroup", 1)]
    with pytest.raises(MslError, match=r"kernel.metal:3: kernel parameter `uint n` has no \[\[...\]\] "
                       r"attribute"):
        parse_kernel(H + "kernel void k(uint n) { }")


@pytest.mark.parametrize("pch", [True, False])
def test_source_without_metal_stdlib_include(pch, monkeypatch):
    from enigma.verify import clang

    if not pch:  # without the precompiled header (e.g. the ziglang clang) the layer is still included
        monkeypatch.setattr(clang, "_pch", lambda: None)
    src = f"// pch={pch}\n" + """kernel void k(device float4* a [[buffer(0)]],
              uint i [[thread_position_in_grid]]) {
    a[i] = metal::max(a[i], float4(0.0f)) + float4(1.0f, 2.0f, 3.0f, 4.0f);
}
"""
    a = np.array([[-1, 1, -2, 2]], np.float32).repeat(3, 0)
    run_msl(src, a, grid=1, block=3)
    np.testing.assert_array_equal(a, [[1, 3, 3, 6]] * 3)


TEMPLATES = H + """
template <typename T, int N = 2>
kernel void scale(device const T* x [[buffer(0)]], device T* y [[buffer(1)]],
                  constant float& s [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  y[i] = static_cast<T>(float(x[i]) * s * N);
}
template [[host_name("scale_float")]] kernel void scale<float>(device const float* x [[buffer(0)]],
    device float* y [[buffer(1)]], constant float& s [[buffer(2)]], uint i [[thread_position_in_grid]]);

#define instantiate_kernel(name, func, ...) \\
  template [[host_name(name)]] [[kernel]] decltype(func<__VA_ARGS__>) func<__VA_ARGS__>;
template [[host_name("scale_half_3")]] [[kernel]] decltype(scale<half, 3>) scale<half, 3>;
"""


def test_template_kernels_by_host_name():
    sig = parse_kernel(TEMPLATES, "scale_half_3")
    assert sig.callee == "scale<half, 3>" and sig.params[0].type_text == "device const half*"
    x = np.arange(8, dtype=np.float32)
    y = np.zeros(8, np.float32)
    run_msl(TEMPLATES, x, y, np.float32(0.5), name="scale_float", grid=1, block=8)
    np.testing.assert_array_equal(y, x)  # N defaults to 2
    xh, yh = x.astype(np.float16), np.zeros(8, np.float16)
    run_msl(TEMPLATES, xh, yh, np.float32(0.5), name="scale_half_3", grid=1, block=8)
    np.testing.assert_array_equal(yh, (x * 1.5).astype(np.float16))
    with pytest.raises(TypeError, match=r"\[\[buffer\(0\)\]\] x is `device const half\*` but the array "
                       "has dtype float32"):
        run_msl(TEMPLATES, x, yh, np.float32(0.5), name="scale_half_3", grid=1, block=8)
    with pytest.raises(MslError, match="the source has 2 kernels .scale_float, scale_half_3."):
        parse_kernel(TEMPLATES)


FUNCTION_CONSTANTS = H + """
constant bool has_bias [[function_constant(0)]];
constant int repeat_n [[function_constant(1)]];
constant float gain [[function_constant(2)]];
constant bool bias_given = is_function_constant_defined(has_bias);
kernel void k(device float* y [[buffer(0)]], device const float* b [[buffer(1)]],
              uint i [[thread_position_in_grid]]) {
  float v = 0.0f;
  for (int r = 0; r < repeat_n; r++) v += gain;
  if (has_bias) v += b[i];
  y[i] = v + (bias_given ? 100.0f : 0.0f);
}
"""


def test_function_constants_given_at_run_time():
    y, b = np.zeros(4, np.float32), np.arange(4, dtype=np.float32)
    run_msl(FUNCTION_CONSTANTS, y, b, grid=1, block=4,
            function_constants={0: True, "repeat_n": 3, 2: np.float32(0.25)})
    np.testing.assert_array_equal(y, 100.75 + b)
    run_msl(FUNCTION_CONSTANTS, y, b, grid=1, block=4,
            function_constants={"repeat_n": np.int32(2), "gain": 1.5})
    np.testing.assert_array_equal(y, [3.0] * 4)  # has_bias not given: false, and not "defined"
    with pytest.raises(MslError, match="no function constant nope"):
        run_msl(FUNCTION_CONSTANTS, y, b, grid=1, block=4, function_constants={"nope": 1})


TG_PARAM = H + """kernel void block_sum(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
    threadgroup float* shared_mem [[threadgroup(0)]], constant uint& stride [[buffer(2)]],
    uint t [[thread_index_in_threadgroup]], uint n [[threads_per_threadgroup]],
    uint g [[threadgroup_position_in_grid]]) {
  shared_mem[t * stride] = x[g * n + t];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (t == 0) {
    float s = 0.0f;
    for (uint k = 0; k < n; k++) s += shared_mem[k * stride];
    out[g] = s;
  }
}
"""


def test_threadgroup_parameters_sized_at_dispatch():
    x = np.arange(128, dtype=np.float32)
    out = np.zeros(2, np.float32)
    prog = compile_msl(TG_PARAM)
    prog.run({0: x, 1: out, 2: np.uint32(1)}, grid=2, block=64, threadgroup_memory={0: 256})
    np.testing.assert_array_equal(out, [x[:64].sum(), x[64:].sum()])
    assert prog.threadgroup_memory == 256
    prog.run({0: x, 1: out, 2: np.uint32(1)}, grid=2, block=32, threadgroup_memory={0: 256})
    np.testing.assert_array_equal(out, [x[:32].sum(), x[32:64].sum()])  # the others are never read
    poisoned = TG_PARAM.replace("for (uint k = 0; k < n; k++)", "for (uint k = 0; k < 64; k++)")
    run_msl(poisoned, x, out, np.uint32(1), grid=2, block=32, threadgroup_memory={0: 256}, schedule="forward")
    assert np.isnan(out).all()  # elements 32..63 were never written in this group: 0xFF bytes (NaN)
    prog.run({0: x, 1: out, 2: np.uint32(2)}, grid=2, block=64, threadgroup_memory={0: 512})  # other length
    np.testing.assert_array_equal(out, [x[:64].sum(), x[64:].sum()])
    with pytest.raises(KernelError, match=r"out-of-bounds write access to threadgroup array shared_mem"):
        prog.run({0: x, 1: out, 2: np.uint32(2)}, grid=2, block=64, threadgroup_memory={0: 256})
    with pytest.raises(ValueError, match=r"give the length of \[\[threadgroup\(0\)\]\] shared_mem at "
                       "dispatch"):
        prog.run({0: x, 1: out, 2: np.uint32(1)}, grid=2, block=64)
    with pytest.raises(KernelError, match="Metal allows at most 32768"):
        prog.run({0: x, 1: out, 2: np.uint32(1)}, grid=2, block=64, threadgroup_memory={0: 40000})
    with pytest.raises(KernelError, match=r"data race on threadgroup memory shared_mem\["):
        racy = TG_PARAM.replace("threadgroup_barrier(mem_flags::mem_threadgroup);", "")
        run_msl(racy, x, out, np.uint32(1), grid=2, block=64, threadgroup_memory={0: 256}, race_check=True)


LIBRARY = """
METAL_FUNC float twice(float x) { return 2.0f * x; }
constexpr constant float table[4] = {1.0f, 2.0f, 3.0f, 4.0f};
constexpr constant float4 cvec = float4(float2(1.0f, 2.0f), 3.0f, 4.0f);
constexpr constant int N = 4;
float lookup(constant float* t, uint i) { return t[i]; }
static_assert(metal::is_convertible_v<half, float> && !metal::is_convertible_v<float*, int>, "traits");
kernel void k(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
              device const char* raw [[buffer(2)]], constant metal::array<uint, 4>& shape [[buffer(3)]],
              uint i [[thread_position_in_grid]]) {
  float4 acc = {0.f};
  float4 part = {x[i], 1.0f};
  float row[N];
  row[i % N] = 1.0f;
  out[i * 8 + 0] = acc.x + acc.w + part.x + part.y + part.z + part.w;  // x + 1
  out[i * 8 + 1] = twice(lookup(table, i % 4)) + cvec.w;                // 2 * table + 4
  out[i * 8 + 2] = metal::precise::sinh(x[i]) + metal::precise::cosh(x[i]) + metal::precise::asin(0.5f)
      + metal::precise::acos(0.5f) + metal::precise::atan(x[i]) + metal::precise::asinh(x[i])
      + metal::precise::acosh(1.0f + fabs(x[i])) + metal::precise::atanh(0.5f);
  out[i * 8 + 3] = (float)MAXHALF;
  out[i * 8 + 4] = simd_shuffle_and_fill_up(x[i], -x[i], (ushort)2);
  out[i * 8 + 5] = simd_shuffle_and_fill_down(x[i], -x[i], (ushort)3, (ushort)8);
  out[i * 8 + 6] = ((device const float*)raw)[i] + row[i % N];
  out[i * 8 + 7] = (float)(shape[0] * shape.size() + shape[3]);
}
"""


def test_library_names_real_kernels_use():
    x = (np.arange(32, dtype=np.float32) - 10) / 16
    out = np.zeros(32 * 8, np.float32)
    raw = np.arange(32, dtype=np.float32) * 3
    shape = np.array([5, 6, 7, 8], np.uint32)
    run_msl(LIBRARY, x, out, raw, shape, grid=1, block=32)
    o = out.reshape(32, 8)
    np.testing.assert_array_equal(o[:, 0], x + 1)
    np.testing.assert_array_equal(o[:, 1], 2 * np.array([1, 2, 3, 4] * 8, np.float32) + 4)
    want = (np.sinh(x) + np.cosh(x) + np.arcsin(0.5) + np.arccos(0.5) + np.arctan(x) + np.arcsinh(x)
            + np.arccosh(1 + np.abs(x)) + np.arctanh(0.5))
    np.testing.assert_allclose(o[:, 2], want, rtol=1e-5)
    assert (o[:, 3] == 65504).all()
    lane = np.arange(32)
    np.testing.assert_array_equal(o[:, 4], np.where(lane >= 2, x[lane - 2], -x[(lane + 30) % 32]))
    j, base = lane % 8, lane - lane % 8
    np.testing.assert_array_equal(o[:, 5], np.where(j + 3 < 8, x[np.minimum(base + j + 3, 31)],
                                                    -x[base + (j + 3) % 8]))
    np.testing.assert_array_equal(o[:, 6], raw + 1)  # a float32 array bound to `device const char*`
    assert (o[:, 7] == 5 * 4 + 8).all()


GGML_STYLE = H + """
template <int F>
kernel void kernel_scale_impl(device const char* src [[buffer(0)]], device float4* dst [[buffer(1)]],
                              uint i [[thread_position_in_grid]]) {
  float4 r = {0.f}, extra = {1.f, 2.f};
  r += ((device const float*)src)[i] * F;
  dst[i] = r + extra;
}
typedef decltype(kernel_scale_impl<1>) kernel_scale_t;
template [[host_name("kernel_scale_2")]]  kernel kernel_scale_t kernel_scale_impl<2>;
template [[host_name("kernel_scale_30")]] kernel kernel_scale_t kernel_scale_impl<30>;
"""


def test_ggml_style_typedef_instantiations_and_several_brace_initialised_vectors():
    x = np.arange(8, dtype=np.float32)
    out = np.zeros((8, 4), np.float32)
    run_msl(GGML_STYLE, x, out, name="kernel_scale_30", grid=1, block=8)
    np.testing.assert_array_equal(out, 30 * x[:, None] + [1, 2, 0, 0])
    run_msl(GGML_STYLE, x, out, name="kernel_scale_2", grid=1, block=8)
    np.testing.assert_array_equal(out, 2 * x[:, None] + [1, 2, 0, 0])


MLX_STYLE = H + """
#define instantiate_kernel(name, func, ...) \\
  template [[host_name(name)]] [[kernel]] decltype(func<__VA_ARGS__>) func<__VA_ARGS__>;
#define instantiate_unary(op, tname, T) instantiate_kernel("v_" #op #tname, unary_v, T, op)

struct Neg { template <typename T> T operator()(T x) { return -x; } };
struct Sq { template <typename T> T operator()(T x) { return x * x; } };

template <typename T, typename Op>
[[kernel]] void unary_v(device const T* in, device T* out, uint index [[thread_position_in_grid]]) {
  out[index] = Op()(in[index]);
}

instantiate_unary(Neg, float32, float)
instantiate_unary(Sq, float16, half)
"""


def test_mlx_style_instantiations_written_by_macros():
    x = np.arange(6, dtype=np.float32) - 2
    out = np.zeros(6, np.float32)
    run_msl(MLX_STYLE, x, out, name="v_Negfloat32", grid=1, block=6)
    np.testing.assert_array_equal(out, -x)
    xh, oh = x.astype(np.float16), np.zeros(6, np.float16)
    run_msl(MLX_STYLE, xh, oh, name="v_Sqfloat16", grid=1, block=6)
    np.testing.assert_array_equal(oh, xh * xh)
    with pytest.raises(TypeError, match=r"kernel.metal:12: \[\[buffer\(0\)\]\] in is `device const half\*`"):
        run_msl(MLX_STYLE, x, oh, name="v_Sqfloat16", grid=1, block=6)


def test_own_headers_from_include_dirs(tmp_path):
    (tmp_path / "ops.h").write_text("#pragma once\n#define SCALE 3.0f\n"
                                    "inline float op(float x) { return x * SCALE; }\n")
    src = H + '#include "ops.h"\n' + """kernel void k(device float* a [[buffer(0)]],
              uint i [[thread_position_in_grid]]) {
  a[i] = op(a[i]);
  a[i + 4] = 1.0f;
}
"""
    a = np.arange(4, dtype=np.float32)
    with pytest.raises(KernelError, match=r"kernel.metal:7: out-of-bounds write access to "
                       r"\[\[buffer\(0\)\]\] a"):
        run_msl(src, a.copy(), grid=1, block=4, include_dirs=[tmp_path])  # lines are the source's
    ok = src.replace("  a[i + 4] = 1.0f;\n", "")
    run_msl(ok, a, grid=1, block=4, include_dirs=[tmp_path])
    np.testing.assert_array_equal(a, np.arange(4) * 3)
    import os
    import time

    (tmp_path / "ops.h").write_text((tmp_path / "ops.h").read_text().replace("3.0f", "5.0f"))
    os.utime(tmp_path / "ops.h", ns=(time.time_ns() + 10**9,) * 2)  # an edited header is noticed
    b = np.arange(4, dtype=np.float32)
    run_msl(ok, b, grid=1, block=4, include_dirs=[tmp_path])
    np.testing.assert_array_equal(b, np.arange(4) * 5)
    from enigma.verify import CompileError

    with pytest.raises(CompileError, match="'ops.h' file not found"):
        run_msl(ok, b, grid=1, block=4)


MLX_REDUCE_FORMS = H + """
#pragma METAL internals : enable
template <typename T>
constexpr constant bool is_atomic_type = _disjunction<is_same<T, int>, is_same<T, float>>::value;
#pragma METAL internals : disable
template <typename T>
constexpr constant bool both = _conjunction<is_same<T, T>, _negation<is_same<T, int>>>::value;
union bool4_or_uint { bool4 b; uint i; };
struct cplx {
  float re, im;
  cplx(float r, float i) thread : re(r), im(i) {}
  operator float() const thread { return re; }
  operator float() const device { return re + 1000.0f; }
};
cplx make(float x) { return cplx(x, -x); }
float2 proto(float a);
float2 proto2(float);
float2 proto(float a) { return float2(a, 2.0f * a); }
kernel void k(device const float* x [[buffer(0)]], device uint* flags [[buffer(1)]],
              device short2* offs [[buffer(2)]], device float* conv [[buffer(3)]],
              device const cplx* dc [[buffer(4)]], uint i [[thread_position_in_grid]]) {
  bool4_or_uint u;
  u.b = {true, true, true, true};
  u.b[i % 4] = false;
  flags[i] = u.i | (is_atomic_type<float> ? 0x100u : 0u) | (is_atomic_type<half> ? 0x200u : 0u)
      | (both<float> ? 0x400u : 0u) | (both<int> ? 0x800u : 0u);
  short2 off(i * 3 % 5, i / 2);
  offs[i] = off;
  conv[3 * i] = static_cast<float>(make(x[i]));  // a temporary: the thread conversion serves it
  conv[3 * i + 1] = proto(x[i]).y;
  conv[3 * i + 2] = static_cast<float>(dc[i]);  // the device one for device memory
}
"""


def test_forms_of_mlx_reduction_headers():
    """What MLX's reduction headers (atomic.h, reduction/ops.h, reduce_col.h) and complex.h write:
    Apple's `_disjunction`/`_conjunction`/`_negation` (after `#pragma METAL internals`); a bool4
    assigned a braced list and written through `b[i]` (its bytes read back through a union); a vector
    declared with its constructor's arguments, `short2 off(a * b, c);` (prototypes stay prototypes);
    a conversion operator qualified `thread` converting a temporary."""
    x = np.array([1.5, -2.0, 3.25, 0.5, 7.0], np.float32)
    flags = np.zeros(5, np.uint32)
    offs = np.zeros((5, 2), np.int16)
    conv = np.zeros((5, 3), np.float32)
    dc = np.stack([x, -x], 1).astype(np.float32)
    run_msl(MLX_REDUCE_FORMS, x, flags, offs, conv, dc, grid=1, block=5)
    lanes = np.array([0x01010100, 0x01010001, 0x01000101, 0x00010101], np.uint32)
    np.testing.assert_array_equal(flags, lanes[np.arange(5) % 4] | 0x100 | 0x400)
    np.testing.assert_array_equal(offs, np.stack([np.arange(5) * 3 % 5, np.arange(5) // 2], 1))
    np.testing.assert_array_equal(conv, np.stack([x, 2 * x, x + 1000], 1))


def test_kernel_attribute_listing_a_thread_limit():
    """`[[kernel, max_total_threads_per_threadgroup(N)]]` (MLX's sort.h) marks a kernel, plain and as
    a template instantiated by host_name."""
    src = H + """[[kernel, max_total_threads_per_threadgroup(64)]] void twice(device float* x [[buffer(0)]],
    uint i [[thread_position_in_grid]]) { x[i] *= 2.0f; }
template <typename T, short N>
[[kernel, max_total_threads_per_threadgroup(N)]] void add_n(device T* x [[buffer(0)]],
    uint i [[thread_position_in_grid]]) { x[i] += T(N); }
template [[host_name("add_n_8")]] [[kernel]] decltype(add_n<float, 8>) add_n<float, 8>;
"""
    x = np.arange(4, dtype=np.float32)
    run_msl(src, x, name="twice", grid=1, block=4)
    run_msl(src, x, name="add_n_8", grid=1, block=4)
    np.testing.assert_array_equal(x, 2 * np.arange(4) + 8)


MLX_STEEL_FORMS = """#include <metal_stdlib>
#include <metal_simdgroup_matrix>
using namespace metal;
#define instantiate(name, T) template [[host_name(name)]] [[kernel]] decltype(steel<T>) steel<T>;
struct Tile {
  float v[2] = {1.0f, 2.0f};
  METAL_FUNC Tile() thread {}
};
struct Block {
  Tile t;
  short s;
  Block(short s) thread : s(s) {}
};
float twice(thread const short& x) { return 2.0f * x; }
template <typename T> struct is_f : metal::bool_constant<is_same_v<metal::remove_addrspace_t<T>, float>> {};
constant bool use_c [[function_constant(3)]];
template <typename T>
[[kernel]] void steel(device const T* a, device T* out,
                      device const T* c [[buffer(2), function_constant(use_c)]],
                      uint l [[thread_index_in_simdgroup]]) {
  const int k = 7;
  Block b(5);
  simdgroup_matrix<T, 8, 8> m(T(3));
  reinterpret_cast<thread vec<T, 2>&>(m.thread_elements()) = float2(a[2 * l], a[2 * l + 1]);
  simdgroup_store(m, out, 8);
  if (l == 0) {
    out[64] = b.t.v[1] + twice(k) + (is_f<device T>::value ? 100.0f : 0.0f) + (use_c ? c[0] : T(0));
  }
}
instantiate("steel_f32", float)
"""


@pytest.mark.parametrize("use_c", [False, True])
def test_forms_of_mlx_steel_headers(use_c):
    """What MLX's steel GEMM headers write: `#include <metal_simdgroup_matrix>` in a source whose own
    macros are expanded first; a member default-constructed by a `thread` constructor without an
    initialiser list; an int temporary bound to a `thread const short&` parameter;
    `metal::bool_constant` and `metal::remove_addrspace_t`; a local simdgroup matrix's
    `thread_elements()` as a `thread` reference; a buffer that exists only when a function constant
    is true (`[[buffer(2), function_constant(use_c)]]`: not bound when false)."""
    a = np.arange(64, dtype=np.float32)
    out = np.zeros(65, np.float32)
    prog = compile_msl(MLX_STEEL_FORMS, "steel_f32", function_constants={"use_c": use_c})
    bufs = {0: a, 1: out}
    if use_c:
        bufs[2] = np.array([1000.0], np.float32)
    prog.run(bufs, grid=1, block=32)
    lane = np.arange(32)
    row, col = ((lane // 4) & 4) + (lane // 2) % 4, ((lane // 4) & 2) * 2 + (lane % 2) * 2  # the layout
    want = np.zeros(64, np.float32)
    want[row * 8 + col], want[row * 8 + col + 1] = a[2 * lane], a[2 * lane + 1]
    np.testing.assert_array_equal(out[:64], want)  # each lane's two elements where the lane holds them
    assert out[64] == 2 + 14 + 100 + (1000 if use_c else 0)
    if not use_c:
        with pytest.raises(ValueError, match=r"no data for \[\[buffer\(2\)\]\] \(c\)"):
            compile_msl(MLX_STEEL_FORMS, "steel_f32", function_constants={"use_c": True}).run(
                bufs, grid=1, block=32)


def test_uniform_values():
    """Metal's `uniform<T>` and `make_uniform` (MLX's gemv.h): a value promised equal in every thread,
    with T's arithmetic and conversions."""
    src = H + """kernel void k(device int* out [[buffer(0)]], constant int& n [[buffer(1)]],
                  uint i [[thread_position_in_grid]]) {
  constexpr const uniform<int> stride = make_uniform(4);
  const uniform<int> size = make_uniform(n);
  const uniform<int> iters = size / stride;
  const uniform<int> rest = size - stride * iters;
  int acc = 0;
  for (int j = 0; j < iters; ++j) acc += j;
  out[i] = acc * 100 + rest + int(i);
}
"""
    out = np.zeros(3, np.int32)
    run_msl(src, out, np.int32(23), grid=1, block=3)
    np.testing.assert_array_equal(out, (0 + 1 + 2 + 3 + 4) * 100 + 3 + np.arange(3))


def test_braced_list_arguments_and_array_parameters():
    """MLX's general-stride kernels pass `{N * index.x, index.y, index.z}` for a uint3 parameter
    (a braced list as a call argument: to a vector of as many lanes, or a struct) and declare
    `constant const int64_t strides[3]` parameters (an array parameter is a pointer, bound in order)."""
    src = H + """struct pair_t { int a; float b; };
int pick(uint3 e, int k) { return int(e[k]); }
float both(pair_t p) { return float(p.a) + p.b; }
float2 twice(float2 v) { return 2.0f * v; }
kernel void k(device float* out, constant const int64_t strides[3], uint3 i [[thread_position_in_grid]]) {
  out[4 * i.x] = float(pick({2 * i.x, i.y + 7u, 9u}, 0) + pick({i.x, 5u, 9u}, 1));
  out[4 * i.x + 1] = both({int(i.x), 0.5f});
  out[4 * i.x + 2] = twice({1.0f, float(i.x)}).y;
  out[4 * i.x + 3] = float(strides[0] + strides[2]);
}
"""
    out = np.zeros((3, 4), np.float32)
    run_msl(src, out, np.array([10, 20, 30], np.int64), grid=1, block=3)
    i = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(out, np.stack([2 * i + 5, i + 0.5, 2 * i, np.full(3, 40.0)], 1))


@pytest.mark.parametrize("src,want", [
    ('a // c "x"\nb', "a" + " " * 9 + "\nb"),
    ("a /* x\ny */ b", "a     \n     b"),
    ('s = "a\\"b // c";', 's = "         ";'),
    ("c = '\\''; d", "c = '  '; d"),
    ('u = "abc\nv', 'u = "   "v'),  # an unterminated literal closes at the newline (kept as before)
    ('w = "ab\\\nc" x', 'w = "     " x'),  # an escaped newline is inside the literal
    ("/* open", "       "),
    ('"', '"'),
])
def test_strip_comments(src, want):
    """Comments and literals blanked (newlines kept), as the scanner did before it became one regex
    (MLX's preprocessed headers are ~1 MB: the rewrite passes scan them several times per build)."""
    from enigma.verify.msl import strip_comments

    assert strip_comments(src) == want


def test_forms_of_mlx_steel_attention_headers():
    """What MLX's steel attention headers write: a parameter `thread vec<U, 2>&` whose U is deduced
    (vec<T, N> is the vector type itself); pointer arithmetic with a class converting to int through
    a `const thread noexcept` operator (`src += Int<1>{}`); a literal `vec<bool, N>` in a template
    still reads boolN; a template constructor qualified `thread` (MLX's fp8.h) building a temporary."""
    src = H + """template <typename T, T v> struct ic {
  static constexpr constant T value = v;
  constexpr operator T() const thread noexcept { return value; }
};
template <typename U> U first(thread vec<U, 2>& x) { return x[0]; }
struct fp8_like {  // MLX's fp8.h: a template constructor qualified thread, building a temporary
  uchar bits;
  template <typename T>
  fp8_like(T f) thread { bits = uchar(int(f) + 1); }
};
template <int N> vec<bool, N> flip(vec<bool, N> b) { return !b; }
kernel void k(device const float* a [[buffer(0)]], device float* out [[buffer(1)]],
              uint i [[thread_position_in_grid]]) {
  const device float* src = a;
  src += ic<int, 2>{};
  src = src - ic<int, 1>{};
  float2 v = float2(src[i], 0.0f);
  bool2 b = flip<2>(bool2(true, false));
  out[i] = first(v) + (b.y ? 100.0f : 0.0f) + float(static_cast<int>(ic<int, 3>{}))  // a temporary
      + float(fp8_like(1000.0f).bits);
}
"""
    a = np.arange(6, dtype=np.float32)
    out = np.zeros(4, np.float32)
    run_msl(src, a, out, grid=1, block=4)
    np.testing.assert_array_equal(out, a[1:5] + 103 + (1001 % 256))


def test_function_constants_declared_static_constexpr():
    """MLX's fft.h declares its function constants through its STEEL_CONST macro, which reads
    `static constant constexpr const int name [[function_constant(i)]];`."""
    src = H + """static constant constexpr const int steps_ [[function_constant(4)]];
static constant constexpr const bool inv_ [[function_constant(0)]];
kernel void k(device int* out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  out[i] = steps_ * 10 + (inv_ ? 1 : 0);
}
"""
    out = np.zeros(2, np.int32)
    run_msl(src, out, grid=1, block=2, function_constants={"steps_": 3, 0: True})
    np.testing.assert_array_equal(out, [31, 31])


def test_c_style_vector_conversions():
    src = H + """float4 widen(half4 v) { return (float4) v; }
kernel void k(device const half4* h [[buffer(0)]], device float4* out [[buffer(1)]],
              uint i [[thread_position_in_grid]]) {
  float4 a = widen(h[i]);
  float4 b = (float4)(h[i] * (half)2.0h) + (float4) 1.0f;
  int4 c = (int4) a;
  out[i] = a + b + (float4) c.xyzw * 0.0f + dot((float4) h[i], (float4) h[i]) * 0.0f
      + (float4) 2.5e-1f * 0.0f + (float)(sizeof(float4)) * 0.0f;
}
"""
    h = (np.arange(8, dtype=np.float16) / 4).reshape(2, 4)
    out = np.zeros((2, 4), np.float32)
    run_msl(src, h, out, grid=1, block=2)
    np.testing.assert_array_equal(out, 3 * h.astype(np.float32) + 1)


GGML_DEQUANT = H + """
typedef struct { half d; uchar qs[4]; } block_t;
template <typename type4> void dequant(device const block_t* b, short il, thread type4& reg) {
  for (int i = 0; i < 4; i++) reg[i] = (float)b->d * (b->qs[i] - 8) + il;
}
void dequant_plain(device const block_t* b, short il, thread float4& reg) { reg = float4(il); }
template <typename q_t, short il,
          void (*deq)(device const q_t *, short, thread float4 &)>
kernel void get_rows(device const q_t* src, device float4* dst, uint i [[thread_position_in_grid]]) {
  float4 r; deq(src + i, il, r); dst[i] = r;
}
typedef decltype(get_rows<block_t, 1, dequant>) get_rows_t;
template [[host_name("get_rows_q")]] kernel get_rows_t get_rows<block_t, 1, dequant>;
template [[host_name("get_rows_plain")]] kernel get_rows_t get_rows<block_t, 2, dequant_plain>;

kernel void misc(device const float4x4* m, device half4x4* h, device int* sel, device float* diag,
                 device float* filled, uint l [[thread_index_in_simdgroup]]) {
  if (l == 0) { *h = (half4x4)(*m); }
  sel[l] = select(1, -1, (int)(l & 2));
  simdgroup_float8x8 d(2.0f);
  simdgroup_store(d, diag, 8);
  simdgroup_float8x8 f = make_filled_simdgroup_matrix<float, 8>(3.0f);
  simdgroup_store(f, filled, 8);
}
"""


def test_function_pointer_template_parameters_and_ggml_matrix_forms():
    """ggml passes its dequantizers as `void (*deq)(...)` template arguments (function templates and
    plain functions), builds diagonal simdgroup matrices with `simdgroup_float8x8 t(1.0f)`, fills with
    `make_filled_simdgroup_matrix<float, 8>`, converts `(half4x4) float4x4`, and selects on an int."""
    blocks = np.zeros(3, np.dtype([("d", np.float16), ("qs", np.uint8, 4)]))
    blocks["d"] = [1, 2, 0.5]
    blocks["qs"] = np.arange(12).reshape(3, 4)
    out = np.zeros((3, 4), np.float32)
    run_msl(GGML_DEQUANT, blocks.view(np.uint8), out, name="get_rows_q", grid=1, block=3)
    want = blocks["d"].astype(np.float32)[:, None] * (blocks["qs"].astype(np.float32) - 8) + 1
    np.testing.assert_array_equal(out, want)
    run_msl(GGML_DEQUANT, blocks.view(np.uint8), out, name="get_rows_plain", grid=1, block=3)
    np.testing.assert_array_equal(out, np.full((3, 4), 2, np.float32))
    m = np.arange(16, dtype=np.float32).reshape(4, 4) + 0.25
    h = np.zeros((4, 4), np.float16)
    sel = np.zeros(32, np.int32)
    diag, filled = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)
    run_msl(GGML_DEQUANT, m, h, sel, diag, filled, name="misc", grid=1, block=32)
    np.testing.assert_array_equal(h, m.astype(np.float16))
    np.testing.assert_array_equal(sel, np.where(np.arange(32) & 2, -1, 1))
    np.testing.assert_array_equal(diag, 2 * np.eye(8, dtype=np.float32))
    np.testing.assert_array_equal(filled, np.full((8, 8), 3, np.float32))


def test_casts_to_template_type_parameters_convert_lane_by_lane():
    """ggml: `sq4[i] = (q4_t) q4[i];` with q4_t = half4 and q4 a float4 (a bitcast error in clang's
    C-style cast); the same template with q4_t = float keeps a scalar cast."""
    src = H + """template <typename q4_t, typename s_t>
void f(device const float4* q, device q4_t* out, device s_t* s, uint i) {
  out[i] = (q4_t) q[i];
  s[i] = (s_t) q[i].x + (s_t)(q[i].y);
}
kernel void k(device const float4* q [[buffer(0)]], device half4* out [[buffer(1)]],
              device int* s [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  f<half4, int>(q, out, s, i);
}
"""
    q = (np.arange(8, dtype=np.float32) * 1.25).reshape(2, 4)
    out, s = np.zeros((2, 4), np.float16), np.zeros(2, np.int32)
    run_msl(src, q, out, s, grid=1, block=2)
    np.testing.assert_array_equal(out, q.astype(np.float16))
    np.testing.assert_array_equal(s, q[:, 0].astype(np.int32) + q[:, 1].astype(np.int32))


def test_a_fault_in_the_sources_own_header_names_the_header(tmp_path):
    """MLX's kernels live in its headers: an out-of-bounds access there is reported at the header's
    line (relative to its include directory), not as a bare `kernel.metal:`."""
    from enigma.verify import KernelError

    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "load.h").write_text(
        "template <typename T>\nT load(device const T* x, uint i) {\n  return x[i + 1];\n}\n")
    src = H + '#include "ops/load.h"\n' + """kernel void k(device const float* x [[buffer(0)]],
              device float* out [[buffer(1)]], uint i [[thread_position_in_grid]]) {
  out[i] = load(x, i);
}
"""
    x, out = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(KernelError, match=r"^ops/load.h:3: out-of-bounds read access to "
                       r"\[\[buffer\(0\)\]\] x"):
        run_msl(src, x, out, grid=1, block=4, include_dirs=[tmp_path])
    with pytest.raises(KernelError, match=r"^kernel.metal:6: out-of-bounds write access to "
                       r"\[\[buffer\(1\)\]\]"):
        run_msl(src.replace("out[i] = load(x, i);", "out[i + 1] = x[i];"), x, out, grid=1, block=4,
                include_dirs=[tmp_path])
