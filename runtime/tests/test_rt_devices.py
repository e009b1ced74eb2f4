"""The device registry (devices.py): built-in cpu/metal, devices registered in-process and devices of
other distributions found through the entry-point group `enigma_runtime.devices` (a real .dist-info
on sys.path, read by importlib.metadata), handles cached per specialisation, launch options."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import rt_fixtures
from enigma_runtime import Kernel, LaunchError, UnknownDeviceError, devices
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry (entry points not read yet)."""
    monkeypatch.setattr(devices, "_registry", dict(devices._registry))
    monkeypatch.setattr(devices, "_entry_points_read", False)
    return devices._registry


class Recording(devices.Device):
    """A device that runs nothing: it records prepare/run and writes a marker into written arrays."""

    name = "recording"
    options = frozenset({"marker"})

    def __init__(self) -> None:
        self.prepared: list = []
        self.runs: list = []

    def prepare(self, sp):
        self.prepared.append(sp.spec["kernel_name"])
        return ("handle", sp.spec["kernel_name"])

    def run(self, handle, bound, grid, block, marker=7.0):
        self.runs.append((handle, grid, block))
        for a, v in zip(bound.spec["args"], bound.values):
            if a.get("access", "read") != "read":
                v[...] = marker


def _vector_add() -> Kernel:
    spec, ir = vector_add_kernel()
    return Kernel.from_spec(spec, ir, "// msl")


def test_builtins_and_unknown_names(registry):
    assert isinstance(devices.get("cpu"), devices.CpuDevice)
    assert devices.get("cpu") is devices.get("cpu")
    assert {"cpu", "metal"} <= set(devices.names())
    with pytest.raises(UnknownDeviceError, match="unknown device 'tpu'; known devices: cpu, metal"):
        devices.get("tpu")


def test_a_registered_device_runs_a_kernel_with_its_handle_cached(registry):
    dev = Recording()
    devices.register(dev)
    devices.register(dev)  # the same device again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        devices.register(devices.CpuDevice(), "recording")
    k = _vector_add()
    a, b, c = np.ones(300, np.float32), np.ones(300, np.float32), np.zeros(300, np.float32)
    for _ in range(3):
        assert k(a, b, c, 300, device="recording") is c
    assert dev.prepared == ["enigma_kernel_vector_add"]  # prepared once per specialisation
    assert dev.runs[0] == (("handle", "enigma_kernel_vector_add"), (2, 1, 1), (256, 1, 1))
    assert (c == 7).all()
    k.launch((a, b, c, 300), device="recording", options={"marker": 3.0})
    assert (c == 3).all()
    with pytest.raises(TypeError, match="device 'cpu' takes no launch option marker"):
        k.launch((a, b, c, 300), device="cpu", options={"marker": 3.0})
    # the runtime checks before any device sees the call
    with pytest.raises(ValueError, match="symbolic size 'n' disagrees"):
        k(a, b[:299], c, 300, device="recording")
    assert len(dev.runs) == 4


def test_launch_limits_are_checked_before_the_device(registry):
    dev = Recording()
    devices.register(dev)
    k = _vector_add()
    a = np.ones(4, np.float32)
    with pytest.raises(LaunchError, match="at most 1024 per threadgroup"):
        k(a, a, a.copy(), 4, device="recording", block=(1025, 1, 1))
    with pytest.raises(LaunchError, match="at most 4294967295"):
        k(a, a, a.copy(), 4, device="recording", grid=(2**32, 1, 1), block=(1, 1, 1))
    with pytest.raises(LaunchError, match="4294967296 threads along y"):
        k(a, a, a.copy(), 4, device="recording", grid=(1, 2**24, 1), block=(1, 256, 1))
    assert dev.runs == []


def test_devices_of_other_distributions_come_from_entry_points(registry, tmp_path, monkeypatch):
    (tmp_path / "fake_gpu_dist.py").write_text(textwrap.dedent("""
        from enigma_runtime import devices

        class FakeGpu(devices.Device):
            name = "fake-gpu"
            def prepare(self, sp):
                return sp.spec["kernel_name"]
            def run(self, handle, bound, grid, block):
                bound.values[2][...] = bound.values[0] + bound.values[1] + 1
        """))
    info = tmp_path / "fake_gpu_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-gpu-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[enigma_runtime.devices]\nfake-gpu = fake_gpu_dist:FakeGpu\n"
                                           "broken = fake_gpu_dist:Missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake-gpu" in devices.names()
    k = _vector_add()
    a, b, c = np.ones(5, np.float32), np.full(5, 2, np.float32), np.zeros(5, np.float32)
    k(a, b, c, 5, device="fake-gpu")
    np.testing.assert_array_equal(c, 4)
    assert devices.get("fake-gpu").name == "fake-gpu"
    with pytest.raises(LaunchError, match="device 'broken' .* failed to load: AttributeError"):
        devices.get("broken")


def test_environment_names_any_known_device(registry, monkeypatch):
    from enigma_runtime.kernel import default_device
    devices.register(Recording())
    monkeypatch.setenv("ENIGMA_DEVICE", "recording")
    assert default_device() == "recording"
    k = _vector_add()
    c = np.zeros(3, np.float32)
    k(np.ones(3, np.float32), np.ones(3, np.float32), c, 3)
    assert (c == 7).all()


def test_loaded_packages_run_on_cpu_without_reading_entry_points(registry, make_package):
    import enigma_runtime
    make_package("pkg_devices")
    k = enigma_runtime.load("pkg_devices", "vector_add")
    a = np.arange(10, dtype=np.float32)
    c = np.zeros_like(a)
    k(a, a, c, 10, device="cpu")
    np.testing.assert_array_equal(c, 2 * a)
    assert devices._entry_points_read is False
