"""The runtime device "msl-cpu" (enigma.verify's clang + fiber executor): a loaded package's kernel
runs its Metal source on the CPU through `k(..., device="msl-cpu")`, with the runtime's binding,
specialisation choice, `requires` check and launch limits, and `run_msl` is a thin call of it."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import enigma_runtime
import numpy as np
import pytest
from enigma_runtime import LaunchError, devices
from toolcheck import need_tool

import enigma
from enigma import Tensor, float16, float32, int32
from enigma.artifacts import write_artifacts
from enigma.verify import KernelError, run_msl

pytestmark = pytest.mark.needs_clang


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


@enigma.kernel(block=(64, 1, 1), grid=lambda a, b, c, n: (enigma.ceil_div(n, 64), 1, 1),
               specialize=[{"a": float16, "b": float16, "c": float16}])
def scaled_add(a: Tensor[float32, ("m",)], b: Tensor[float32, ("m",)],  # noqa: F821
               c: Tensor[float32, ("m",)], n: int32):  # noqa: F821
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        c[i] = a[i] * 2 + b[i]


@enigma.kernel(block=(64, 1, 1), grid=lambda a, n: (enigma.ceil_div(n, 64), 1, 1))
def reads_past_n(a: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        a[i + 1] = a[i]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = tmp_path_factory.mktemp("msl_cpu_site")
    pkg = root / "enigma_msl_cpu_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('loading kernels must not import the package')\n")
    compiled = [enigma.compile(v, emit_only=True) for v in scaled_add.variants()]
    compiled.append(enigma.compile(reads_past_n, emit_only=True))
    assert len({ck.kernel_name for ck in compiled}) == 3
    write_artifacts(pkg, "enigma_msl_cpu_pkg", compiled, metallib=None, msl_version="3.1",
                    macos_target="14.0")
    sys.path.insert(0, str(root))
    yield enigma_runtime.load("enigma_msl_cpu_pkg")
    sys.path.remove(str(root))


def _inputs(dtype, n=100):
    a = np.arange(n).astype(dtype)
    b = np.full(n, 0.5, dtype)
    return a, b, np.zeros(n, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_loaded_kernel_runs_its_metal_source_on_msl_cpu(package, dtype):
    k = package["scaled_add"]
    assert len(k.specs) == 2
    a, b, c = _inputs(dtype)
    out = k(a, b, c, 100, device="msl-cpu")
    assert out is c
    np.testing.assert_array_equal(c, a * 2 + b)
    # the specialisation of these dtypes ran: its own Metal function, compiled by clang
    sp, _ = k.select((a, b, c, 100))
    assert sp.spec["args"][0]["dtype"] == np.dtype(dtype).name
    prog = sp.handle(devices.get("msl-cpu"))
    assert prog.name == sp.spec["kernel_name"]
    # the cpu device computes the same
    c2 = np.zeros_like(c)
    k(a, b, c2, 100, device="cpu")
    np.testing.assert_array_equal(c, c2)


def test_run_msl_is_the_device_and_picks_the_specialisation(package):
    k = package["scaled_add"]
    a, b, c = _inputs(np.float16)
    run_msl(k, a, b, c, np.int32(100), schedule="reverse", seed=3)
    np.testing.assert_array_equal(c, a * 2 + b)
    with pytest.raises(TypeError, match="takes no launch option nope"):
        k.launch((a, b, c, 100), device="msl-cpu", options={"nope": 1})


def test_symbolic_sizes_must_agree_on_msl_cpu(package):
    k = package["scaled_add"]
    a, _, c = _inputs(np.float32)
    b = np.zeros(99, np.float32)  # reading b[99] would land in the guard padding: refused up front
    with pytest.raises(ValueError, match="symbolic size .* disagrees"):
        k(a, b, c, 100, device="msl-cpu")
    with pytest.raises(ValueError, match="symbolic size .* disagrees"):
        run_msl(k, a, b, c, np.int32(100))


def test_requires_and_launch_limits_are_checked_on_msl_cpu(package):
    k = package["scaled_add"]
    spec = dict(k.specs[0].spec, requires=[{
        "expr": {"op": "ge", "args": [{"dim": ["a", 0]}, 128]}, "text": "a.shape[0] >= 128",
        "message": "a tile of 128 must fit", "line": 7}])
    strict = enigma_runtime.Kernel.from_spec(spec, None, k.specs[0].metal_source)
    a, b, c = _inputs(np.float32)
    with pytest.raises(ValueError, match=r"a.shape\[0\] >= 128 \(a tile of 128 must fit"):
        strict(a, b, c, 100, device="msl-cpu")
    with pytest.raises(LaunchError, match="at most 1024 per threadgroup"):
        k(a, b, c, 100, device="msl-cpu", block=(64, 32))
    with pytest.raises(LaunchError, match="cpu device cannot run it"):
        strict(*_inputs(np.float32, 128), 128, device="cpu")  # no IR given: only Metal source devices
    a, b, c = _inputs(np.float32, 128)
    strict(a, b, c, 128, device="msl-cpu")
    np.testing.assert_array_equal(c, a * 2 + b)


def test_out_of_bounds_found_by_msl_cpu_names_the_python_line(package):
    k = package["reads_past_n"]
    a = np.arange(64, dtype=np.float32)
    with pytest.raises(KernelError, match=r"out-of-bounds .* a .*\n  from .*test_runtime_msl_cpu.py:\d+"):
        k(a, 64, device="msl-cpu")


def test_msl_cpu_is_an_entry_point_and_registered_by_enigma_verify():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=devices.ENTRY_POINT_GROUP)}
    assert eps.get("msl-cpu") == "enigma.verify.harness:MslCpuDevice"
    assert "msl-cpu" in devices.names()
    assert type(devices.get("msl-cpu")).__name__ == "MslCpuDevice"
    # a fresh process that never imports enigma finds the device through the entry point, lazily
    code = ("import sys, enigma_runtime; from enigma_runtime import devices\n"
            "assert not any(m.startswith('enigma.') for m in sys.modules), 'enigma imported early'\n"
            "assert not devices._entry_points_read\n"
            "d = devices.get('msl-cpu'); print(type(d).__module__, d.available())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["enigma.verify.harness", "True"]
