"""vec_width=4: structure of the vectorised IR/MSL, results identical to vec_width=0 on every size
1..13 (through enigma_runtime's CPU executor), and the EnigmaErrors for kernels it cannot vectorise."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import zoo  # noqa: E402

import enigma  # noqa: E402
from enigma import EnigmaError, Tensor, float32, int32, ir, passes  # noqa: E402
from enigma.backends import msl, portable  # noqa: E402
from enigma.passes.vectorize import scale_grid, scale_grid_int  # noqa: E402

BLOCK = 4  # small threadgroups: sizes 1..13 then span several groups and a partial last vector


def run_cpu(kernel: ir.Kernel, width: int, args: tuple, n_arg: str = "n"):
    from enigma_runtime import Kernel
    k = passes.run(kernel, width)
    grid = scale_grid([{"op": "ceil_div", "args": [{"arg": n_arg}, BLOCK]}, 1, 1], width)
    sig = portable.signature(k, block=[BLOCK, 1, 1], grid=grid)
    return Kernel.from_spec(sig, portable.ir_to_json(k), msl.emit(k))(*args, device="cpu")


@enigma.kernel
def shifted_copy(x: Tensor[float32], y: Tensor[float32], n: int32, flag: int32, reps: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n - 4:  # bound computed from a scalar; reads x[i + 4]
        v = x[i + 4]
        acc = 0.0
        for _ in range(reps):  # a loop carrying a per-element value
            acc = acc + v * 0.5
        if flag > 0:  # a uniform branch
            acc = enigma.where(v > 0.0, acc, -v)  # per-element select
        else:
            acc = enigma.exp(acc * 0.0)
        y[i] = acc


@enigma.kernel
def to_int(x: Tensor[float32], y: Tensor[int32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = (x[i] * 3.0).to(int32) + 1


def test_saxpy_vectorised_structure():
    k = passes.run(zoo.saxpy.trace(), 4)
    assert k.vec_width == 4
    names = [op.name for op in ir.walk(k.body)]
    assert names.count("vload") == 2 and names.count("vstore") == 1 and "broadcast" in names
    assert names.count("load") == 2 and names.count("store") == 1  # the scalar tail
    src = msl.emit(k)
    assert "*((device const float4*)(x + " in src and "*((device float4*)(y + " in src
    assert "float4(alpha)" in src and "vec_width=4" in src
    vl = next(op for op in ir.walk(k.body) if op.name == "vload")
    assert vl.result.type == ir.Type(float32, 4) and vl.attrs == {"tensor": "x", "lanes": 4}
    assert portable.signature(k, block=None, grid=None)["vec_width"] == 4


@pytest.mark.parametrize("n", range(1, 14))
def test_saxpy_vec4_equals_scalar(n):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    k = zoo.saxpy.trace()
    got0 = run_cpu(k, 0, (np.float32(1.5), x, y.copy(), np.int32(n)))
    got4 = run_cpu(k, 4, (np.float32(1.5), x, y.copy(), np.int32(n)))
    assert np.array_equal(got0, got4) and np.array_equal(got0, np.float32(1.5) * x + y)


@pytest.mark.parametrize("width", [2, 4])
def test_richer_kernel_vec_equals_scalar(width):
    k = shifted_copy.trace()
    vk = passes.run(k, width)
    assert any(op.name == "vload" for op in ir.walk(vk.body))
    for n in range(1, 14):
        rng = np.random.default_rng(100 + n)
        x = rng.standard_normal(n, np.float32)
        for flag in (0, 1):
            args = (x, np.full(n, 7.0, np.float32), np.int32(n), np.int32(flag), np.int32(3))
            a0 = run_cpu(k, 0, args[:1] + (args[1].copy(),) + args[2:])
            a4 = run_cpu(k, width, args[:1] + (args[1].copy(),) + args[2:])
            assert np.array_equal(a0, a4), (n, flag)


@enigma.kernel
def halve_until(x: Tensor[float32], y: Tensor[float32], n: int32, reps: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        v = x[i]
        k = 0
        while k < reps:  # uniform condition, per-element carried value
            v = v * 0.5 + 1.0
            k = k + 1
        y[i] = v


def test_while_kernel_vec_equals_scalar():
    k = halve_until.trace()
    vk = passes.run(k, 4)
    loops = [op for op in ir.walk(vk.body) if op.name == "while"]
    assert len(loops) == 2 and any(a.type.lanes == 4 for op in loops for a in op.regions[0].args)
    for n in range(1, 14):
        x = np.linspace(-5, 5, n, dtype=np.float32)
        a0 = run_cpu(k, 0, (x, np.zeros(n, np.float32), np.int32(n), np.int32(3)))
        a4 = run_cpu(k, 4, (x, np.zeros(n, np.float32), np.int32(n), np.int32(3)))
        assert np.array_equal(a0, a4)


def test_cast_kernel_vec_equals_scalar():
    k = to_int.trace()
    assert "int4(" in msl.emit(passes.run(k, 4))
    for n in range(1, 14):
        x = np.linspace(-3, 3, n, dtype=np.float32)
        a0 = run_cpu(k, 0, (x, np.zeros(n, np.int32), np.int32(n)))
        a4 = run_cpu(k, 4, (x, np.zeros(n, np.int32), np.int32(n)))
        assert np.array_equal(a0, a4)


@enigma.kernel
def half_scale(x: Tensor[enigma.float16], y: Tensor[enigma.float16], n: int32):
    i = enigma.thread_idx().x + enigma.block_idx().x * 4  # constant block size, operands swapped
    if n > i:  # bound on the left
        y[i] = x[i] * 2.0 + y[i]


def test_half_kernel_vec_equals_scalar():
    k = half_scale.trace()
    src = msl.emit(passes.run(k, 4))
    assert "*((device const half4*)(x + " in src and "*((device half4*)(y + " in src
    for n in range(1, 14):
        x = np.linspace(-2, 2, n).astype(np.float16)
        a0 = run_cpu(k, 0, (x, np.ones(n, np.float16), np.int32(n)))
        a4 = run_cpu(k, 4, (x, np.ones(n, np.float16), np.int32(n)))
        assert np.array_equal(a0, a4) and a0.dtype == np.float16


def test_scale_grid():
    assert scale_grid_int((10, 3, 1), 4) == (3, 3, 1) and scale_grid_int((8, 1, 1), 4) == (2, 1, 1)
    assert scale_grid([9, 2, 1], 4) == [3, 2, 1] and scale_grid(None, 4) is None
    e = {"op": "ceil_div", "args": [{"arg": "n"}, 128]}
    assert scale_grid([e, 1, 1], 4) == [{"op": "ceil_div", "args": [e, 4]}, 1, 1]
    assert scale_grid([e, 1, 1], 0) == [e, 1, 1]


# ---------------------------------------------------------------------------------------------------
# kernels that cannot be vectorised: a precise EnigmaError at the offending line


@enigma.kernel
def uses_index_as_value(y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = i.to(float32)


@enigma.kernel
def unguarded(x: Tensor[float32], y: Tensor[float32]):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    y[i] = x[i]


@enigma.kernel
def misaligned(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = x[i + 1]


@enigma.kernel
def gather(x: Tensor[float32], idx: Tensor[int32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = x[idx[i]]


@enigma.kernel
def branchy(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        if x[i] > 0.0:
            y[i] = 1.0


@enigma.kernel
def no_index(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.thread_idx().x
    if i < n:
        y[i] = x[i]


@pytest.mark.parametrize("fn, message, source", [
    (zoo.softmax, "simd", ""), (zoo.matmul, "barrier", "enigma.barrier()"),
    (zoo.sum_reduce, "simd lane id", "simd_lane_id"),
    (uses_index_as_value, "index is used as a value", "y[i] = i.to(float32)"),
    (unguarded, "`x[i]` is not inside a bounds check", "y[i] = x[i]"),
    (misaligned, "offset 1 is not a multiple of vec_width=4", "y[i] = x[i + 1]"),
    (gather, "gather or scatter", "y[i] = x[idx[i]]"),
    (branchy, "branch on per-element data", "if x[i] > 0.0:"),
    (no_index, "no linear thread index", "def no_index"),
])
def test_refusals_name_the_line(fn, message, source):
    k = fn.trace()
    with pytest.raises(EnigmaError) as e:
        passes.run(k, 4)
    assert message in str(e.value) and "cannot vectorise" in str(e.value)
    assert e.value.file == k.file and e.value.line >= k.line and source in e.value.source_line


def test_width_8_is_refused():
    with pytest.raises(EnigmaError, match="at most 4 lanes"):
        passes.run(zoo.saxpy.trace(), 8)


@pytest.mark.needs_clang
def test_vectorised_msl_runs_like_scalar_on_the_cpu_harness():
    """The emitted float4 MSL itself (not only the IR), compiled by clang with the Metal compatibility
    header and run by enigma.verify, on sizes 1..13 with 4-thread groups."""
    from toolcheck import need_tool
    need_tool("clang++-19", "clang++")
    from enigma.verify import run_msl
    a = np.ones(8, np.float32)
    ck = enigma.compile(zoo.saxpy_launch, np.float32(1.5), a, a.copy(), vec_width=4)
    assert "float4" in ck.metal_source
    for n in range(1, 14):
        rng = np.random.default_rng(n)
        x, y = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
        want = np.float32(1.5) * x + y
        run_msl(ck, np.float32(1.5), x, y, np.int32(n), grid=(scale_grid_int((-(-n // 4), 1, 1), 4)),
                block=(4, 1, 1))
        assert np.array_equal(y, want), n


@pytest.mark.needs_mlir
@pytest.mark.needs_clang
def test_vectorised_kernels_verify_in_mlir_and_compile_as_msl(mlir_opt, tmp_path):
    """Vector types, broadcasts, vector selects/casts/loops through both printers and real tools."""
    import subprocess

    from toolcheck import need_tool

    from enigma.backends import mlir
    clang = need_tool("clang++-19", "clang++")
    inc = Path(enigma.__file__).parent / "verify" / "include"
    for fn in (shifted_copy, to_int, half_scale, halve_until, zoo.saxpy):
        k = passes.run(fn.trace(), 4)
        p = subprocess.run([mlir_opt, "--allow-unregistered-dialect"], input=mlir.emit(k),
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        src = tmp_path / f"{k.name}.metal"
        src.write_text(msl.emit(k))
        if inc.is_dir():
            c = subprocess.run([clang, "-x", "clcpp", "-cl-std=clc++2021", "-cl-no-stdinc", "-Xclang",
                                "-cl-ext=-cl_khr_fp64,-__opencl_c_fp64", "-Wno-unknown-attributes",
                                "-I", str(inc), "-fsyntax-only", str(src)], capture_output=True, text=True)
            assert c.returncode == 0, c.stderr[:3000]
