"""enigma.compile end to end: vec_width, metallib plumbing (with the toolchain tests' FAKE xcrun), save,
dump_mlir, and running every zoo kernel through CompiledKernel.__call__ (enigma_runtime's executor)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import zoo

import enigma
from enigma import Constexpr, Tensor, float32, int32

FAKE_XCRUN = Path(__file__).resolve().parent.parent / "toolchain" / "fake_xcrun.py"


def test_vec_width_scales_the_grid_and_emits_vector_accesses():
    e = zoo.BY_NAME["saxpy"]
    ins = e.make_inputs(np.random.default_rng(0))  # n = 1003
    ck = enigma.compile(e.jit, *ins, vec_width=4)
    assert ck.grid == (2, 1, 1) and ck.block == (128, 1, 1)  # ceil(ceil(1003 / 128) / 4)
    assert ck.signature["vec_width"] == 4 and ck.ir.vec_width == 4
    assert ck.signature["grid"][0] == {"op": "ceil_div", "args": [
        {"op": "ceil_div", "args": [{"dim": ["x", 0]}, 128]}, 4]}
    assert "float4" in ck.metal_source
    spec = enigma.TensorSpec(enigma.float32, ("n",))
    assert str(enigma.compile(e.jit, 1.0, spec, spec, vec_width=4).grid[0]) == "ceil_div(ceil_div(n, 128), 4)"


def test_vec_width_on_a_threadgroup_kernel_is_a_clear_error():
    e = zoo.BY_NAME["softmax"]
    with pytest.raises(enigma.EnigmaError, match="vec_width"):
        enigma.compile(e.jit, *e.make_inputs(np.random.default_rng(0)), vec_width=4)


@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_zoo_runs_through_the_runtime(entry):
    ins = entry.make_inputs(np.random.default_rng(3))
    ck = enigma.compile(entry.jit, *ins, vec_width=entry.vec_width)
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in entry.kernel_args(ins)]
    expected = entry.reference(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in args])
    ck.kernel(*args)  # the launched kernel, with the kernel's own arguments
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)
    jit_args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in ins]
    ck(*jit_args)  # the jit's own arguments: sizes and grid recomputed
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(jit_args[i], want, rtol=entry.rtol, atol=entry.atol)


@pytest.fixture
def fake_xcrun(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("fake_xcrun", FAKE_XCRUN)
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    fake.activate(tmp_path, monkeypatch)
    return tmp_path


def test_metallib_through_a_fake_xcrun(fake_xcrun):
    work = fake_xcrun / "work"
    ck = enigma.compile(zoo.vector_add, emit_only=False, work_dir=str(work))
    assert ck.metallib_path == str((work / "kernels.metallib").resolve())
    assert ck.metallib_bytes == Path(ck.metallib_path).read_bytes()
    assert ck.metallib_bytes.startswith(b"FAKE-METALLIB")


def test_missing_toolchain_is_the_reference_error(fake_xcrun, monkeypatch):
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "metal")
    with pytest.raises(Exception, match="xcrun exit code error") as info:
        enigma.compile(zoo.vector_add, emit_only=False, work_dir=str(fake_xcrun / "w"))
    assert "xcrun -sdk macosx metal -v" in str(info.value)


def test_save_writes_the_artifact_layout(tmp_path):
    a = np.zeros(10, np.float32)
    ck = enigma.compile(zoo.add, a, a, a)
    out = ck.save(tmp_path / "pkg", package="pkg")
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert manifest["package"] == "pkg" and manifest["metallib"] is None
    assert out == tmp_path / "pkg" / "_enigma"
    default = ck.save(tmp_path / "other_pkg")  # the package directory's name by default
    assert json.loads((default / "manifest.json").read_text())["package"] == "other_pkg"
    assert manifest["kernels"]["vector_add"][0]["kernel_name"] == "enigma_kernel_vector_add"


def test_dump_mlir(capsys):
    ck = enigma.compile(zoo.vector_add, dump_mlir=True)
    assert ck.mlir_source and "func.func" in ck.mlir_source
    assert ck.mlir_source.strip() in capsys.readouterr().out


def test_source_hash_is_stable_and_tracks_options():
    def h(**kw):
        return enigma.compile(zoo.histogram, **kw).signature["source_hash"]

    a = h()
    assert a == h() and len(a) == 64
    assert enigma.compile(zoo.histogram.variants()[0]).signature["source_hash"] == a
    spec = enigma.TensorSpec(enigma.int32, ("n",))
    other = enigma.compile(zoo.histogram, spec, spec, 5, 32).signature["source_hash"]  # BINS=32
    assert other != a


# --- more kernels run through the runtime: dynamic while + barriers, static while unrolling shuffles,
# --- simd reductions over a strided loop; each checks the traced control flow against numpy

@enigma.kernel
def tree_sum(x: Tensor[float32], out: Tensor[float32], n: int32, BLOCK: Constexpr[int] = 128):
    sh = enigma.shared_tensor(float32, (BLOCK,), name="sh")
    tid = enigma.thread_idx().x
    i = enigma.block_idx().x * BLOCK + tid
    sh[tid] = x[i] if i < n else 0.0
    enigma.barrier()
    s = enigma.block_dim().x // 2
    while s > 0:
        if tid < s:
            sh[tid] += sh[tid + s]
        enigma.barrier()
        s >>= 1
    if tid == 0:
        enigma.atomic_add(out, 0, sh[0])

@enigma.jit
def go(x, out):
    n = x.shape[0]
    tree_sum(x, out, n).launch(grid=enigma.ceil_div(n, 128), block=128)

@enigma.kernel
def shuffle_sum(x: Tensor[float32], out: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    v = enigma.where(i < n, 1.0, 0.0) * 0
    if i < n:
        v = x[i]
    off = 16
    while off > 0:
        v += enigma.simd_shuffle_down(v, off)
        off //= 2
    if enigma.simd_lane_id() == 0:
        enigma.atomic_add(out, 0, v)

@enigma.jit
def go2(x, out):
    n = x.shape[0]
    shuffle_sum(x, out, n).launch(grid=enigma.ceil_div(n, 64), block=64)

@enigma.kernel
def layernorm(x: Tensor[float32, 2], y: Tensor[float32, 2], eps: float32):
    row = enigma.block_idx().x
    lane = enigma.thread_idx().x
    C = x.shape[1]
    s = 0.0
    ss = 0.0
    for c in range(lane, C, 32):
        v = x[row, c]
        s += v
        ss += v * v
    s = enigma.simd_sum(s)
    ss = enigma.simd_sum(ss)
    mean = s / C
    var = ss / C - mean * mean
    inv = enigma.rsqrt(var + eps)
    for c in range(lane, C, 32):
        y[row, c] = (x[row, c] - mean) * inv

@enigma.jit
def go3(x, y):
    layernorm(x, y, 1e-5).launch(grid=x.shape[0], block=32)



def test_more_kernels_through_the_runtime():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    for launcher in (go, go2):
        out = np.zeros(1, np.float32)
        enigma.compile(launcher, x, out)(x, out)
        np.testing.assert_allclose(out[0], x.sum(), rtol=1e-4)
    X = rng.standard_normal((4, 77)).astype(np.float32)
    Y = np.zeros_like(X)
    enigma.compile(go3, X, Y)(X, Y)
    ref = (X - X.mean(1, keepdims=True)) / np.sqrt(X.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(Y, ref, atol=1e-5)


def test_emit_only_false_without_xcrun_on_path(tmp_path, monkeypatch):
    """Off macOS with emit_only=False, enigma.compile takes the xcrun path and a PATH without xcrun gives
    the reference page's error with the diagnosis command (no fake here: nothing is on PATH)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(enigma.EnigmaError) as info:
        enigma.compile(zoo.vector_add, emit_only=False, work_dir=str(tmp_path / "w"))
    msg = str(info.value)
    assert msg.startswith("xcrun exit code error: xcrun not found on PATH")
    assert "diagnose: xcrun -sdk macosx metal -v" in msg and "known fixes:" in msg


def test_emit_only_default_and_work_dir(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    ck = enigma.compile(zoo.vector_add)  # None = auto: emit-only off macOS, so no toolchain is needed
    assert ck.metallib_path is None and ck.metallib_bytes is None and "kernel void" in ck.metal_source
    kept = enigma.compile(zoo.vector_add, keep_metal_source=True)  # work_dir defaults to a temp directory
    assert Path(kept.work_dir).is_dir() and Path(kept.work_dir).name.startswith("enigma-")
    assert (Path(kept.work_dir) / "enigma_kernel_vector_add.metal").read_text() == kept.metal_source
    assert kept.grid is None and kept.block is None  # a bare kernel without a declared launch


def test_emit_only_auto_on_macos_builds_the_metallib(fake_xcrun, monkeypatch):
    monkeypatch.setattr("sys.platform", "darwin")  # None = auto: on macOS the FAKE xcrun is driven
    ck = enigma.compile(zoo.vector_add, work_dir=str(fake_xcrun / "auto"))
    assert ck.metallib_bytes is not None and ck.metallib_bytes.startswith(b"FAKE-METALLIB")
