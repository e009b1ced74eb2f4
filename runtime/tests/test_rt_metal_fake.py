"""The Metal backend's plumbing, run against a FAKE Metal framework (no Mac here).

FakeMetal / FakeFoundation stand in for PyObjC's `Metal` and `Foundation` modules (injected through
sys.modules). They record every call, and the fake dispatch runs a Python stand-in of the kernel on
the fake buffers, so copy-back is checked too. Nothing here talks to a GPU.
"""
from __future__ import annotations

import sys
import types

import enigma_runtime
import numpy as np
import pytest
import rt_fixtures
from enigma_runtime import Kernel, MetalError
from enigma_runtime import metal as rt_metal
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


class FakeBuffer:
    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def contents(self):
        buf = self.data
        return types.SimpleNamespace(as_buffer=lambda n: memoryview(buf)[:n])


class FakePipeline:
    def __init__(self, fn: str, max_threads: int) -> None:
        self.fn, self.max_threads = fn, max_threads

    def maxTotalThreadsPerThreadgroup(self) -> int:
        return self.max_threads


class FakeLibrary:
    def __init__(self, functions: list[str]) -> None:
        self.functions = functions

    def newFunctionWithName_(self, name: str):
        return name if name in self.functions else None


class FakeOptions:
    def __init__(self) -> None:
        self.settings: dict = {}

    @classmethod
    def new(cls) -> FakeOptions:
        return cls()

    def setFastMathEnabled_(self, v) -> None:
        self.settings["fastMathEnabled"] = v

    def setLanguageVersion_(self, v) -> None:
        self.settings["languageVersion"] = v


class FakeEncoder:
    def __init__(self, fake: FakeMetal) -> None:
        self.fake, self.buffers, self.bytes = fake, {}, {}

    def setComputePipelineState_(self, p) -> None:
        self.pipeline = p

    def setBuffer_offset_atIndex_(self, buf, offset, index) -> None:
        assert offset == 0
        self.buffers[index] = buf

    def setBytes_length_atIndex_(self, data, length, index) -> None:
        assert len(data) == length <= 4096
        self.bytes[index] = bytes(data)

    def dispatchThreadgroups_threadsPerThreadgroup_(self, grid, block) -> None:
        self.fake.dispatches.append((self.pipeline.fn, grid, block, dict(self.buffers), dict(self.bytes)))
        if self.fake.emulate:
            self.fake.emulate(self.buffers, self.bytes)

    def endEncoding(self) -> None:
        self.fake.log.append("endEncoding")


class FakeCommandBuffer:
    def __init__(self, fake: FakeMetal) -> None:
        self.fake = fake

    def computeCommandEncoder(self):
        return FakeEncoder(self.fake)

    def commit(self) -> None:
        self.fake.log.append("commit")

    def waitUntilCompleted(self) -> None:
        self.fake.log.append("wait")

    def status(self) -> int:
        return self.fake.status

    def error(self):
        return "fake GPU fault" if self.fake.status != 4 else None


class FakeDevice:
    def __init__(self, fake: FakeMetal) -> None:
        self.fake = fake

    def newCommandQueue(self):
        return types.SimpleNamespace(commandBuffer=lambda: FakeCommandBuffer(self.fake))

    def newLibraryWithURL_error_(self, url, err):
        self.fake.log.append(("library_url", url))
        if self.fake.refuse_metallib:
            return None, "language version 4.0 not supported on this OS"
        return FakeLibrary(self.fake.metallib_functions), None

    def newLibraryWithSource_options_error_(self, source, opts, err):
        self.fake.log.append(("library_source", source, opts.settings))
        return FakeLibrary(self.fake.source_functions), None

    def newComputePipelineStateWithFunction_error_(self, fn, err):
        self.fake.log.append(("pipeline", fn))
        return FakePipeline(fn, self.fake.max_threads), None

    def newBufferWithBytes_length_options_(self, data, length, options):
        assert options == FakeMetal.MTLResourceStorageModeShared and len(data) == length
        return FakeBuffer(data)

    def maxThreadgroupMemoryLength(self) -> int:
        return 32768


class FakeMetal(types.ModuleType):
    """A fake of PyObjC's Metal module (only what enigma_runtime.metal calls)."""

    MTLResourceStorageModeShared = 0
    MTLLanguageVersion3_1 = 196609
    MTLCompileOptions = FakeOptions

    def __init__(self) -> None:
        super().__init__("Metal")
        self.log: list = []
        self.dispatches: list = []
        self.emulate = None
        self.status = 4
        self.max_threads = 1024
        self.refuse_metallib = False
        self.metallib_functions = ["enigma_kernel_vector_add"]
        self.source_functions = ["enigma_kernel_vector_add"]

    def MTLCreateSystemDefaultDevice(self):
        return FakeDevice(self)

    @staticmethod
    def MTLSizeMake(x, y, z):
        return (x, y, z)


@pytest.fixture
def fake_metal(monkeypatch):
    fake = FakeMetal()
    foundation = types.ModuleType("Foundation")
    foundation.NSURL = types.SimpleNamespace(fileURLWithPath_=lambda p: f"file://{p}")
    monkeypatch.setitem(sys.modules, "Metal", fake)
    monkeypatch.setitem(sys.modules, "Foundation", foundation)
    rt_metal.reset()
    yield fake
    rt_metal.reset()


def emulate_vector_add(buffers, byts):
    n = int(np.frombuffer(byts[3], np.int32)[0])
    a, b = (np.frombuffer(buffers[i].data, np.float32) for i in (0, 1))
    c = np.frombuffer(buffers[2].data, np.float32)
    c[:n] = a[:n] + b[:n]


def test_dispatch_binds_buffers_scalars_and_dims(fake_metal, make_package):
    make_package("pkg_metal", metallib=b"MTLB")
    k = enigma_runtime.load("pkg_metal", "vector_add")
    fake_metal.emulate = emulate_vector_add
    a, b = np.arange(1000, dtype=np.float32), np.ones(1000, np.float32)
    c = np.zeros(1000, np.float32)
    assert k(a, b, c, 1000, device="metal") is c
    np.testing.assert_array_equal(c, a + 1)  # copied back from the (fake) shared buffer
    (fn, grid, block, buffers, byts), = fake_metal.dispatches
    assert fn == "enigma_kernel_vector_add" and grid == (4, 1, 1) and block == (256, 1, 1)
    assert sorted(buffers) == [0, 1, 2] and sorted(byts) == [3, 4]
    assert np.frombuffer(byts[3], np.int32).tolist() == [1000]
    # dims buffer (FORMAT.md section 5): per tensor with symbolic sizes, its sizes then its strides
    assert np.frombuffer(byts[4], np.int32).tolist() == [1000, 1, 1000, 1, 1000, 1]
    assert [e[0] for e in fake_metal.log if isinstance(e, tuple)] == ["library_url", "pipeline"]
    assert fake_metal.log[-3:] == ["endEncoding", "commit", "wait"]
    k(a, b, c, 1000, device="metal")
    assert sum(1 for e in fake_metal.log if isinstance(e, tuple) and e[0] == "pipeline") == 1  # cached


def test_without_metallib_the_source_is_compiled_with_safe_math(fake_metal, make_package):
    make_package("pkg_src")
    k = enigma_runtime.load("pkg_src", "vector_add")
    x = np.zeros(10, np.float32)
    k(x, x, x.copy(), 10, device="metal")
    libs = [e for e in fake_metal.log if isinstance(e, tuple) and e[0].startswith("library")]
    (kind, source, settings), = libs
    assert kind == "library_source" and "kernel void enigma_kernel_vector_add" in source
    assert settings == {"fastMathEnabled": False, "languageVersion": FakeMetal.MTLLanguageVersion3_1}


def test_refused_metallib_falls_back_to_source(fake_metal, make_package):
    make_package("pkg_refused", metallib=b"MTLB too new")
    fake_metal.refuse_metallib = True
    x = np.zeros(10, np.float32)
    enigma_runtime.load("pkg_refused", "vector_add")(x, x, x.copy(), 10, device="metal")
    kinds = [e[0] for e in fake_metal.log if isinstance(e, tuple)]
    assert kinds == ["library_url", "library_source", "pipeline"]


def test_block_larger_than_the_pipeline_allows(fake_metal):
    fake_metal.max_threads = 128
    k = Kernel.from_spec(*vector_add_kernel(), "kernel void enigma_kernel_vector_add();")
    x = np.zeros(10, np.float32)
    with pytest.raises(MetalError, match=r"block \(256, 1, 1\) has 256 threads.*at most 128"):
        k(x, x, x.copy(), 10, device="metal")


def test_failed_command_buffer_is_an_error(fake_metal):
    fake_metal.status = 5  # MTLCommandBufferStatusError
    k = Kernel.from_spec(*vector_add_kernel(), "src")
    x = np.zeros(10, np.float32)
    with pytest.raises(MetalError, match="status 5: fake GPU fault"):
        k(x, x, x.copy(), 10, device="metal")


def test_missing_function_is_an_error(fake_metal):
    fake_metal.source_functions = []
    k = Kernel.from_spec(*vector_add_kernel(), "src")
    x = np.zeros(10, np.float32)
    with pytest.raises(MetalError, match="no function 'enigma_kernel_vector_add'"):
        k(x, x, x.copy(), 10, device="metal")


def test_no_pyobjc_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "Metal", None)  # import Metal raises ImportError
    rt_metal.reset()
    k = Kernel.from_spec(*vector_add_kernel(), "src")
    x = np.zeros(10, np.float32)
    with pytest.raises(MetalError, match="Metal is unavailable.*device='cpu'"):
        k(x, x, x.copy(), 10, device="metal")
    assert not rt_metal.available()
    rt_metal.reset()


def test_default_device_is_metal_on_macos_when_available(fake_metal, monkeypatch):
    from enigma_runtime.kernel import default_device
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("ENIGMA_DEVICE", raising=False)
    assert default_device() == "metal"
    monkeypatch.setenv("ENIGMA_DEVICE", "cpu")
    assert default_device() == "cpu"


def test_scalars_are_passed_as_their_dtype_bytes(fake_metal):
    from irb import kernel, scalar, tensor
    args = [scalar("h", "bfloat16"), scalar("f", "float16"), scalar("flag", "bool"), scalar("u", "uint8"),
            tensor("x", "float32", [4], "write")]
    spec, ir = kernel("scalars", args, lambda b: None, block=(4, 1, 1), grid=[1, 1, 1])
    fake_metal.source_functions = [spec["kernel_name"]]
    Kernel.from_spec(spec, ir, "src")(1.5, 0.25, True, 200, np.zeros(4, np.float32), device="metal")
    (_, _, _, buffers, byts), = fake_metal.dispatches
    assert byts == {0: np.uint16(0x3FC0).tobytes(), 1: np.float16(0.25).tobytes(), 2: b"\x01", 3: b"\xc8"}
    assert sorted(buffers) == [4] and spec["dims_buffer"] is None


def _two_adds_entry() -> dict:
    """A jit entry (FORMAT.md section 7) written by hand: t = a + b into a temporary, then out = t + b."""
    n = {"dim": ["a", 0]}
    case = {"kernel": "vector_add", "kernel_name": "enigma_kernel_vector_add", "block": [256, 1, 1],
            "grid": [{"op": "ceil_div", "args": [n, 256]}, 1, 1]}
    return {"name": "two_adds", "file": "pkg/k.py", "line": 1,
            "params": [{"name": "a", "kind": "tensor", "dtype": "float32", "shape": [None]},
                       {"name": "b", "kind": "tensor", "dtype": "float32", "shape": [None]}],
            "temps": [{"name": "t", "dtype": "float32", "shape": [n], "init": "empty"},
                      {"name": "out", "dtype": "float32", "shape": [n], "init": "empty"}],
            "launches": [
                {"cases": [{**case, "args": [{"tensor": "a"}, {"tensor": "b"}, {"tensor": "t"}, n]}]},
                {"cases": [{**case, "args": [{"tensor": "t"}, {"tensor": "b"}, {"tensor": "out"}, n]}]}],
            "returns": {"tensor": "out"}}


def test_a_jit_entry_runs_its_launches_in_one_command_buffer(fake_metal):
    from enigma_runtime.entry import Entry
    k = Kernel.from_spec(*vector_add_kernel(), "src")
    entry = Entry(_two_adds_entry(), lambda name, kname: (k, k.specs[0]))
    fake_metal.emulate = emulate_vector_add
    a, b = np.arange(1000, dtype=np.float32), np.full(1000, 2, np.float32)
    out = entry(a, b, device="metal")
    np.testing.assert_array_equal(out, a + 4)  # the second launch read the temporary the first wrote
    assert [d[0] for d in fake_metal.dispatches] == ["enigma_kernel_vector_add"] * 2
    assert fake_metal.log.count("commit") == 1 and fake_metal.log.count("wait") == 1
    assert fake_metal.log[-4:] == ["endEncoding", "endEncoding", "commit", "wait"]
    first, second = fake_metal.dispatches
    assert first[3][2] is second[3][0]  # the temporary is one Metal buffer in both launches
    np.testing.assert_array_equal(entry(a, b, device="cpu"), a + 4)  # the CPU executor agrees
