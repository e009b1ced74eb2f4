"""Block reductions and simdgroup matrices (issue 12): results on the CPU executor and through
enigma.verify under every schedule, the Metal they produce, and the errors users can hit."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zoo
from enigma_runtime import KernelExecutionError
from toolcheck import need_tool

import enigma
from enigma import Tensor, float16, float32, int32
from enigma.backends import mlir
from enigma.verify import KernelError, run_msl


def _clang() -> None:
    need_tool("clang++-19", "clang++")


# ---------------------------------------------------------------------------------------------------
# block reductions

@enigma.kernel(block=(96, 1, 1), grid=(3, 1, 1))
def reduce3(x: Tensor[float32, (3, 96)], i: Tensor[int32, (3, 96)], out: Tensor[float32, (3, 96, 3)],
            iout: Tensor[int32, (3, 96, 2)]):
    g, t = enigma.block_idx().x, enigma.thread_idx().x
    out[g, t, 0] = enigma.block_sum(x[g, t])
    out[g, t, 1] = enigma.block_max(x[g, t])
    out[g, t, 2] = enigma.block_min(x[g, t])
    iout[g, t, 0] = enigma.block_sum(i[g, t])
    iout[g, t, 1] = enigma.block_max(i[g, t])


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_block_reductions_give_every_thread_the_result(schedule):
    ck = enigma.compile(reduce3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 96)).astype(np.float32)
    i = rng.integers(-1000, 1000, (3, 96), dtype=np.int32)
    want = np.stack([x.sum(1), x.max(1), x.min(1)], axis=1)[:, None, :].repeat(96, 1)
    iwant = np.stack([i.sum(1), i.max(1)], axis=1)[:, None, :].repeat(96, 1)
    cpu = [x, i, np.zeros((3, 96, 3), np.float32), np.zeros((3, 96, 2), np.int32)]
    ck(*cpu, device="cpu")
    _clang()
    ver = [x, i, np.zeros((3, 96, 3), np.float32), np.zeros((3, 96, 2), np.int32)]
    run_msl(ck, *ver, schedule=schedule, race_check=True)
    for got in (cpu, ver):
        np.testing.assert_allclose(got[2], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got[3], iwant)
    src = ck.metal_source
    assert src.count("simd_sum(") == 4 and src.count("threadgroup_barrier(") == 10
    assert "threadgroup float block_reduce_f32[32];" in src and "threadgroup int block_reduce_i32[32];" in src


@enigma.kernel
def reduce_any(x: Tensor[float32], out: Tensor[float32]):
    out[enigma.thread_idx().x] = enigma.block_sum(x[enigma.thread_idx().x])


@enigma.jit
def reduce_48(x, out):
    reduce_any(x, out).launch(grid=(1, 1, 1), block=(48, 1, 1))  # LINE-48


def test_a_block_that_is_not_whole_simdgroups_is_an_error():
    with pytest.raises(enigma.EnigmaError, match=r"block reduction.*48 threads, not a multiple of 32") as e:
        enigma.compile(reduce_48, np.zeros(48, np.float32), np.zeros(48, np.float32))
    lines = Path(__file__).read_text().splitlines()
    assert e.value.line == next(i for i, s in enumerate(lines, 1) if "LINE-48" in s)


@enigma.kernel
def reduce_vector(x: Tensor[float32], out: Tensor[float32]):
    out[0] = enigma.block_sum(x.load_vec(0, 4))


def test_block_reductions_take_scalars():
    with pytest.raises(enigma.EnigmaError, match="reduces a scalar"):
        enigma.compile(reduce_vector)


# ---------------------------------------------------------------------------------------------------
# simdgroup matrices

@enigma.kernel(block=(64, 1, 1), grid=(1, 1, 1))
def transposes(a: Tensor[float32, (16, 16)], b: Tensor[float16, (16, 16)], out: Tensor[float32, (16, 16)],
               out_t: Tensor[float32, (16, 16)]):
    sg = enigma.simd_group_id()  # two simdgroups: each its own 8 rows
    x = enigma.simd_load(a, sg * 8, 0, transpose=True)  # a[sg*8:.., 0:8].T
    y = enigma.simd_load(b, 8, sg * 8)
    one = enigma.simd_matrix(float32, fill=1.0)
    r = enigma.simd_mma(x, y, one)  # x @ y + 1, half y, float accumulator
    enigma.simd_store(r, out, sg * 8, 8)
    enigma.simd_store(r, out_t, 0, sg * 8, transpose=True)
    # a column-major view reads the transposed block
    cm = enigma.make_tensor(a, enigma.make_layout((16, 16), stride=(1, 16)))
    enigma.simd_store(enigma.simd_load(cm, 8, 8), out, sg * 8, 0)


def _transposes_ref(a, b):
    out = np.zeros((16, 16), np.float32)
    out_t = np.zeros((16, 16), np.float32)
    for sg in range(2):
        x = a[sg * 8: sg * 8 + 8, 0:8].T
        y = b[8:16, sg * 8: sg * 8 + 8].astype(np.float32)
        r = x @ y + 1
        out[sg * 8: sg * 8 + 8, 8:16] = r
        out_t[0:8, sg * 8: sg * 8 + 8] = r.T
        out[sg * 8: sg * 8 + 8, 0:8] = a[8:16, 8:16].T
    return out, out_t


def test_simdgroup_loads_stores_transposes_and_mixed_precision():
    ck = enigma.compile(transposes)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((16, 16)).astype(np.float32)
    b = rng.standard_normal((16, 16)).astype(np.float16)
    want, want_t = _transposes_ref(a, b)
    cpu = [a, b, np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32)]
    ck(*cpu, device="cpu")
    _clang()
    ver = [a, b, np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32)]
    run_msl(ck, *ver)
    for got in (cpu, ver):
        np.testing.assert_allclose(got[2], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[3], want_t, rtol=1e-5, atol=1e-5)
    assert "simdgroup_half8x8" in ck.metal_source and ", true);" in ck.metal_source


@enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
def divergent(a: Tensor[float32, (8, 8)], out: Tensor[float32, (8, 8)]):
    m = enigma.simd_load(a, 0, 0)
    if enigma.simd_lane_id() < 16:
        enigma.simd_store(m, out, 0, 0)


def test_a_simdgroup_matrix_under_divergent_control_flow_is_an_error():
    ck = enigma.compile(divergent)
    a = np.ones((8, 8), np.float32)
    with pytest.raises(KernelExecutionError, match=r"simd_store reached by 16 of the 32 lanes.*divergent"):
        ck(a, np.zeros((8, 8), np.float32), device="cpu")
    _clang()
    with pytest.raises(KernelError, match=r"simdgroup_store.*only part of the simdgroup"):
        run_msl(ck, a, np.zeros((8, 8), np.float32))


@enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
def lanes_disagree(a: Tensor[float32, (40, 8)], out: Tensor[float32, (8, 8)]):
    enigma.simd_store(enigma.simd_load(a, enigma.simd_lane_id(), 0), out, 0, 0)


def test_lanes_passing_different_blocks_is_an_error():
    ck = enigma.compile(lanes_disagree)
    with pytest.raises(KernelExecutionError, match="pass different positions"):
        ck(np.ones((40, 8), np.float32), np.zeros((8, 8), np.float32), device="cpu")
    _clang()
    with pytest.raises(KernelError, match="pass different arguments"):
        run_msl(ck, np.ones((40, 8), np.float32), np.zeros((8, 8), np.float32))


@enigma.kernel
def store_mismatch(a: Tensor[float32, (8, 8)], out: Tensor[float16, (8, 8)]):
    enigma.simd_store(enigma.simd_load(a, 0, 0), out, 0, 0)


@enigma.kernel
def block_past_end(a: Tensor[float32, (8, 12)], out: Tensor[float32, (8, 8)]):
    enigma.simd_store(enigma.simd_load(a, 0, 6), out, 0, 0)


@enigma.kernel
def matrix_arith(a: Tensor[float32, (8, 8)], out: Tensor[float32, (8, 8)]):
    m = enigma.simd_load(a, 0, 0)
    enigma.simd_store(m + m, out, 0, 0)


@enigma.kernel
def int_matrix(a: Tensor[int32, (8, 8)], out: Tensor[float32, (8, 8)]):
    enigma.simd_store(enigma.simd_load(a, 0, 0), out, 0, 0)


@pytest.mark.parametrize("kernel,message", [
    (store_mismatch, "simd_store of a float32 matrix into out"),
    (block_past_end, "block at column 6 does not fit axis 1"),
    (matrix_arith, "support only enigma.simd_mma"),
    (int_matrix, "hold float32, float16 or bfloat16"),
])
def test_simdgroup_matrix_errors(kernel, message):
    with pytest.raises(enigma.EnigmaError, match=message) as e:
        enigma.compile(kernel)
    assert e.value.file == __file__


@enigma.jit
def simd_matmul_48(a, b, c):
    zoo.simd_matmul(a, b, c).launch(grid=(1, 1, 1), block=(16, 3, 1))


def test_simdgroup_matrices_need_whole_simdgroups():
    with pytest.raises(enigma.EnigmaError, match="simdgroup matrix, which needs whole simdgroups"):
        enigma.compile(simd_matmul_48, *zoo.BY_NAME["simd_matmul"].make_inputs(np.random.default_rng(0)))


def _simd_matmul_source() -> str:
    e = zoo.BY_NAME["simd_matmul"]
    return enigma.compile(e.jit, *e.make_inputs(np.random.default_rng(0))).metal_source


def test_simd_matmul_inner_loop_holds_only_simdgroup_loads_and_mmas():
    """Between the two barriers of the k loop (the unrolled inner loop over the threadgroup tiles):
    only simdgroup loads from threadgroup memory and multiply-accumulates, no index arithmetic."""
    src = _simd_matmul_source()
    lines = [ln.split("//")[0].strip() for ln in src.splitlines()]
    bars = [i for i, ln in enumerate(lines) if ln.startswith("threadgroup_barrier(")]
    assert len(bars) == 2
    inner = [ln for ln in lines[bars[0] + 1: bars[1]] if ln]
    assert len(inner) == 2 * (8 + 8)  # 2 k-steps x (4 loads + 4 mma), each a declaration and a call
    for ln in inner:
        assert re.fullmatch(r"simdgroup_float8x8 v\d+;|"
                            r"simdgroup_load\(v\d+, (As|Bs) \+ v\d+( \+ \d+)?, \(ulong\)(16|32), "
                            r"ulong2\(0, 0\), false\);|"
                            r"simdgroup_multiply_accumulate\(v\d+, v\d+, v\d+, v\d+\);", ln), ln


def test_mlir_of_the_fast_ops_verifies(mlir_opt):
    e = zoo.BY_NAME["simd_matmul_f16"]
    k = enigma.frontend.launch_of(e.jit, e.make_inputs(np.random.default_rng(0))).kernel
    text = mlir.emit(k)
    for s in ['"enigma.simd_fill"() {value = 0.0 : f64} : () -> !enigma.simdgroup_matrix<8x8xf32>',
              '"enigma.simd_load"(%shared.As, ', "-> !enigma.simdgroup_matrix<8x8xf16>",
              '"enigma.simd_mma"(', '"enigma.simd_store"(%c, ', "iter_args("]:
        assert s in text, s
    r = subprocess.run([mlir_opt, "--allow-unregistered-dialect"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("reg_matmul", "q4_0_matvec"):
        e = zoo.BY_NAME[name]
        text = mlir.emit(enigma.frontend.launch_of(e.jit, e.make_inputs(np.random.default_rng(0))).kernel)
        r = subprocess.run([mlir_opt, "--allow-unregistered-dialect"], input=text, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    assert "vector.extract" in mlir.emit(zoo.reg_matmul.trace())
    assert 'view = "float16"' in mlir.emit(zoo.q4_0_matvec.trace())


@pytest.mark.parametrize("name", ["simd_matmul", "simd_matmul_f16", "q4_0_matvec", "layer_norm"])
@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_fast_zoo_kernels_under_every_schedule(name, schedule):
    e = zoo.BY_NAME[name]
    ins = e.make_inputs(np.random.default_rng(5))
    ck = enigma.compile(e.jit, *ins)
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in e.kernel_args(ins)]
    want = e.reference(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    _clang()
    run_msl(ck, *args, schedule=schedule, race_check=True)
    for i, w in zip(e.outputs, want):
        np.testing.assert_allclose(args[i], w, rtol=e.rtol, atol=e.atol)
