"""enigma.compile end to end: vec_width, metallib plumbing (with the toolchain tests' FAKE xcrun), save,
dump_mlir, and running every zoo kernel through CompiledKernel.__call__ (enigma_runtime's executor)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import zoo

import enigma

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
    runtime = pytest.importorskip("enigma_runtime")
    if not hasattr(runtime, "Kernel") and importlib.util.find_spec("enigma_runtime.kernel") is None:
        pytest.skip("enigma_runtime has no Kernel yet")
    ins = entry.make_inputs(np.random.default_rng(3))
    ck = enigma.compile(entry.jit, *ins, vec_width=entry.vec_width)
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in entry.kernel_args(ins)]
    expected = entry.reference(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in args])
    ck(*args)
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)


@pytest.fixture
def fake_xcrun(tmp_path, monkeypatch):
    if not FAKE_XCRUN.exists():
        pytest.skip("the toolchain tests' fake xcrun is not there")
    spec = importlib.util.spec_from_file_location("fake_xcrun", FAKE_XCRUN)
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    fake.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
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
    pytest.importorskip("enigma.artifacts")
    a = np.zeros(10, np.float32)
    ck = enigma.compile(zoo.add, a, a, a)
    out = ck.save(tmp_path / "pkg", package="pkg")
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    assert manifest["package"] == "pkg" and manifest["metallib"] is None
    assert manifest["kernels"]["vector_add"][0]["kernel_name"] == "enigma_kernel_vector_add"


def test_dump_mlir(capsys):
    pytest.importorskip("enigma.backends.mlir")
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
