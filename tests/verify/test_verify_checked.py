"""Every device and threadgroup access is checked whatever the optimiser does (issue 13): loads whose
value only feeds a select, clamped indices, dead loads, atomics and struct copies; and threadgroup
arrays in every declaration form Metal allows get the same treatment (poisoning, reset between
threadgroups, race reports, bounds reports naming the array, 32 KiB accounting)."""
from __future__ import annotations

import numpy as np
import pytest
from toolcheck import need_tool

import enigma
from enigma import Tensor, float32, int32
from enigma.verify import KernelError, compile_msl, run_msl
from enigma.verify.msl import strip_comments
from enigma.verify.threadgroup import find_threadgroup_vars

pytestmark = pytest.mark.needs_clang
H = "#include <metal_stdlib>\nusing namespace metal;\n"


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


def _kernel(body: str, extra: str = "") -> str:
    return H + extra + """kernel void k(device const float* x [[buffer(0)]], device float* out [[buffer(1)]],
              constant uint& n [[buffer(2)]], device atomic_uint* cnt [[buffer(3)]],
              uint i [[thread_position_in_grid]]) {
""" + body + "\n}\n"


READS = {  # each reads x[32] (or x[-1]) of a 32-element x in a way clang -O2 would not fault on
    "ternary": ("uint j = i + 1;\n  float v = x[j];\n  out[i] = j < n ? v : 0.0f;", 32),
    "select": ("uint j = i + 1;\n  float v = x[j];\n  out[i] = select(0.0f, v, j < n);", 32),
    "min_clamped": ("uint j = min(i + 1, n);\n  out[i] = x[j] * 0.0f + 1.0f;", 32),
    "clamp_below": ("int j = clamp((int)i - 1, -1, 31);\n  out[i] = x[j] * 0.0f + 1.0f;", -1),
    "dead_load": ("float unused = x[i + 1];\n  out[i] = x[i];", 32),
    "dead_helper": ("float unused = metal::max(x[i + 1], 0.0f);\n  out[i] = 2.0f;", 32),
}


@pytest.mark.parametrize("name", sorted(READS))
def test_out_of_bounds_read_is_reported_whatever_the_optimiser_does(name):
    body, elem = READS[name]
    x = np.arange(32, dtype=np.float32)
    out = np.zeros(32, np.float32)
    with pytest.raises(KernelError) as info:
        run_msl(_kernel(body), x, out, np.uint32(32), np.zeros(33, np.uint32), grid=1, block=32,
                isolate=name != "select")
    msg = str(info.value)
    assert "out-of-bounds read access to [[buffer(0)]] x" in msg and f"element {elem}," in msg, msg
    line = next(n for n, text in enumerate(_kernel(body).splitlines(), 1) if "x[" in text and
                ("unused" in text or "v = x" in text or "out[i] = x[j]" in text))
    assert "holds 32 elements" in msg and msg.startswith(f"kernel.metal:{line}: "), msg
    # and the same kernel in bounds runs clean
    ok = body.replace("i + 1", "min(i + 1, 31u)").replace("(int)i - 1", "(int)i").replace(
        "min(min(i + 1, 31u), n)", "min(i, n - 1)")
    run_msl(_kernel(ok), x, out, np.uint32(32), np.zeros(33, np.uint32), grid=1, block=32)


def test_atomic_and_struct_copy_out_of_bounds_are_reported():
    x, out = np.zeros(32, np.float32), np.zeros(32, np.float32)
    atomic = "atomic_fetch_add_explicit(&cnt[i + 2], 1u, memory_order_relaxed);"
    with pytest.raises(KernelError, match=r"out-of-bounds (read|write) access to \[\[buffer\(3\)\]\] cnt "
                       r".*element 33"):
        run_msl(_kernel(atomic), x, out, np.uint32(32), np.zeros(33, np.uint32), grid=1, block=32)
    cnt = np.zeros(33, np.uint32)
    run_msl(_kernel(atomic.replace("i + 2", "i + 1")), x, out, np.uint32(32), cnt, grid=1, block=32)
    assert cnt.tolist() == [0] + [1] * 32
    struct = "struct S { float v[6]; };\n"
    copy = "S s = ((device const S*)x)[i / 6 + 1];\n  out[i] = s.v[i % 6];"  # 5.33 structs: the 6th is cut
    with pytest.raises(KernelError, match=r"out-of-bounds read access to \[\[buffer\(0\)\]\] x"):
        run_msl(_kernel(copy, struct), x, out, np.uint32(32), cnt, grid=1, block=32)


def test_enigma_where_reading_past_the_end_is_reported_like_the_cpu_executor():
    @enigma.kernel
    def shifted(x: Tensor[float32], out: Tensor[float32], n: int32):
        i = enigma.thread_idx().x
        out[i] = enigma.where(i + 1 < n, x[i + 1], 0.0)

    @enigma.jit
    def launch(x, out):
        shifted(x, out, x.shape[0]).launch(grid=(1, 1, 1), block=(32, 1, 1))

    x, out = np.arange(32, dtype=np.float32), np.zeros(32, np.float32)
    ck = enigma.compile(launch, x, out)
    with pytest.raises(KernelError, match=r"out-of-bounds read access to \[\[buffer\(\d\)\]\] x "
                       r".*element 32,"):
        run_msl(ck, x, out, np.int32(32))
    import enigma_runtime

    cpu = enigma_runtime.Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)
    with pytest.raises(Exception, match=r"out-of-bounds load of tensor 'x' of 32 elements at index 32"):
        cpu(x, out, np.int32(32), device="cpu")


# ---------------------------------------------------------------------------------------------------
# threadgroup declarations: every form

FORMS = {  # declaration of `buf` with {n} floats; B(i) is element i
    "plain": "threadgroup float buf[{n}];",
    "gnu_aligned_before_type": "threadgroup __attribute__((aligned(16))) float buf[{n}];",
    "gnu_aligned_after": "threadgroup float buf[{n}] __attribute__((aligned(64)));",
    "alignas_after_keyword": "threadgroup alignas(16) float buf[{n}];",
    "alignas_first": "alignas(32) threadgroup float buf[{n}];",
    "cxx_attribute_first": "[[maybe_unused]] threadgroup float buf[{n}];",
    "two_declarators": "threadgroup float other[4], buf[{n}];",
    "split_over_lines": "threadgroup\n      float\n      buf[{n}];",
    "constexpr_size": "constexpr int N = {n} / 2;\n  threadgroup float buf[N * 2];",
    "two_dimensional": "threadgroup float buf[{n8}][8];",
    "template_type": "threadgroup enable_if_t<sizeof(float) == 4, float> buf[{n}];",
}


def _tg_kernel(form: str, n: int, barrier: bool = True) -> str:
    decl = FORMS[form].format(n=n, n8=n // 8)
    elem = "buf[(j) / 8][(j) % 8]" if form == "two_dimensional" else "buf[j]"
    sync = "threadgroup_barrier(mem_flags::mem_threadgroup);" if barrier else ""
    return H + f"""#define B(j) {elem}
kernel void k(device float* out [[buffer(0)]], device const uint* idx [[buffer(1)]],
              uint t [[thread_index_in_threadgroup]], uint g [[threadgroup_position_in_grid]]) {{
  {decl}
  if (g == 0) B(t) = 1.0f + t;
  {sync}
  out[g * 64 + t] = B(idx[t]);
}}
"""


@pytest.mark.parametrize("form", sorted(FORMS))
def test_threadgroup_declaration_forms_get_the_same_checks(form):
    src = _tg_kernel(form, 64)
    found = [v for _, _, vs in find_threadgroup_vars(strip_comments(src)) for v in vs]
    assert "buf" in [v.name for v in found], found
    idx = np.arange(64, dtype=np.uint32)
    out = np.zeros(128, np.float32)
    prog = compile_msl(src)
    # poisoned before every threadgroup: group 1 reads what group 0 wrote only if not reset
    prog.run({0: out, 1: idx}, grid=2, block=64, schedule="forward")
    assert out[:64].tolist() == [1.0 + t for t in range(64)]
    assert np.isnan(out[64:]).all()  # 0xFF bytes
    assert prog.threadgroup_memory == 64 * 4 + (16 if form == "two_declarators" else 0)
    # out of bounds names the array
    bad = idx.copy()
    bad[5] = 64
    with pytest.raises(KernelError, match=r"out-of-bounds read access to threadgroup array buf "
                       r".*byte offset 256"):
        prog.run({0: out, 1: bad}, grid=1, block=64)
    # a race (no barrier) is reported on the array
    racy = compile_msl(_tg_kernel(form, 64, barrier=False))
    with pytest.raises(KernelError, match=r"data race on threadgroup memory (buf\[\d+\]|byte \d+ of buf)"):
        racy.run({0: out, 1: idx[::-1].copy()}, grid=1, block=64, race_check=True)
    # 32 KiB accounting
    big = compile_msl(_tg_kernel(form, 8200))
    with pytest.raises(KernelError, match=r"declares \d+ bytes of threadgroup memory; Metal allows at "
                       r"most 32768"):
        big.run({0: np.zeros(8200 + 64, np.float32), 1: idx}, grid=1, block=64)


def test_threadgroup_alignment_is_honoured_and_pointers_are_not_declarations():
    src = H + """kernel void k(device ulong* out [[buffer(0)]], uint t [[thread_index_in_threadgroup]]) {
  threadgroup float a[3] __attribute__((aligned(64)));
  threadgroup float* p = a;  // not storage
  threadgroup float (&r)[3] = a;
  p[t] = 1.0f;
  out[t] = (ulong)(&r[0]) % 64;
}
"""
    found = [v for _, _, vs in find_threadgroup_vars(strip_comments(src)) for v in vs]
    assert [(v.name, v.align) for v in found] == [("a", 64)]
    out = np.ones(3, np.uint64)
    run_msl(src, out, grid=1, block=3)
    assert out.tolist() == [0, 0, 0]


def test_threadgroup_arrays_declared_by_the_sources_macros_are_checked():
    """The source's own macros are expanded first (msl.expand_macros), so the declaration is found."""
    src = H + """#define SHARED(n) threadgroup float n[16]
kernel void k(device float* a [[buffer(0)]], device const uint* idx [[buffer(1)]],
              uint i [[thread_position_in_grid]]) {
  SHARED(hidden);
  hidden[i] = a[i];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  a[i] = hidden[idx[i]];
}
"""
    prog = compile_msl(src)
    assert [(v.name, v.line) for v in prog.threadgroup_vars] == [("hidden", 6)]
    a = np.arange(16, dtype=np.float32)
    prog.run({0: a, 1: np.arange(16, dtype=np.uint32)[::-1].copy()}, grid=1, block=16)
    assert a.tolist() == list(range(15, -1, -1))
    with pytest.raises(KernelError, match=r"kernel.metal:9: out-of-bounds read access to threadgroup array "
                       r"hidden .*declared at line 6"):
        prog.run({0: a, 1: np.full(16, 16, np.uint32)}, grid=1, block=16)


def test_a_threadgroup_array_left_unrewritten_is_refused_not_run_unchecked():
    """The last line of defence: a library still holding threadgroup storage of its own (a declaration
    no rewrite saw) is refused by name."""
    from enigma.verify import CompileError, clang

    src = H + """kernel void k(device float* a [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  threadgroup float hidden[16];
  hidden[i] = a[i];
  a[i] = hidden[15 - i];
}
extern "C" void enigma_entry(const void*) {}
"""
    with pytest.raises(CompileError, match=r"threadgroup variable `hidden` in `k` is declared in a form"):
        clang.compile_kernel_library(src)


def test_one_threadgroup_declaration_with_two_sizes_is_an_error_not_a_silent_overlap():
    src = H + """template <typename T> T mirror(T x, uint t) {
  threadgroup T buf[4];
  buf[t] = x;
  return buf[3 - t];
}
kernel void k(device float* out [[buffer(0)]], uint t [[thread_index_in_threadgroup]]) {
  out[t] = mirror<float>(1.0f, t) + (float)mirror<half>((half)2.0f, t);
}
"""
    with pytest.raises(KernelError, match=r"declared with 16 and with 8 bytes"):
        run_msl(src, np.zeros(4, np.float32), grid=1, block=4)
