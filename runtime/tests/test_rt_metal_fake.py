"""The Metal backend's plumbing, run against a FAKE Metal framework (no Mac here).

FakeMetal / FakeFoundation stand in for PyObjC's `Metal` and `Foundation` modules (injected through
sys.modules). They record every call, and the fake dispatch runs a Python stand-in of the kernel on
the fake buffers, so copy-back is checked too. Nothing here talks to a GPU.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
import types
import warnings

import enigma_runtime
import numpy as np
import pytest
import rt_fixtures
from enigma_runtime import Kernel, MetalError
from enigma_runtime import metal as rt_metal
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


class FakeBuffer:
    def __init__(self, data) -> None:
        # newBufferWithBytes copies; newBufferWithBytesNoCopy shares the caller's memory
        self.data = data if isinstance(data, memoryview) else bytearray(data)

    def contents(self):
        buf = self.data
        return types.SimpleNamespace(as_buffer=lambda n: memoryview(buf)[:n])


class FakePipeline:
    def __init__(self, fn: str, max_threads: int, simd_width: int = 32) -> None:
        self.fn, self.max_threads, self.simd_width = fn, max_threads, simd_width

    def maxTotalThreadsPerThreadgroup(self) -> int:
        return self.max_threads

    def threadExecutionWidth(self) -> int:
        return self.simd_width


class FakeLibrary:
    def __init__(self, functions: list[str]) -> None:
        self.functions = functions

    def newFunctionWithName_(self, name: str):
        return name if name in self.functions else None


class FakeOptions:
    """MTLCompileOptions before macOS 15 (fastMathEnabled only)."""

    def __init__(self) -> None:
        self.settings: dict = {}

    @classmethod
    def new(cls) -> FakeOptions:
        return cls()

    def setFastMathEnabled_(self, v) -> None:
        self.settings["fastMathEnabled"] = v

    def setLanguageVersion_(self, v) -> None:
        self.settings["languageVersion"] = v


class FakeOptions15(FakeOptions):
    """MTLCompileOptions of macOS 15+ (mathMode, mathFloatingPointFunctions)."""

    def setMathMode_(self, v) -> None:
        self.settings["mathMode"] = v

    def setMathFloatingPointFunctions_(self, v) -> None:
        self.settings["mathFloatingPointFunctions"] = v


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
        def command_buffer():
            objc = sys.modules["objc"]
            assert objc.depth > 0, "a command buffer made outside an autorelease pool leaks"
            return FakeCommandBuffer(self.fake)
        return types.SimpleNamespace(commandBuffer=command_buffer)

    def newLibraryWithURL_error_(self, url, err):
        self.fake.log.append(("library_url", url))
        if self.fake.refuse_metallib:
            return None, "language version 4.0 not supported on this OS"
        return FakeLibrary(self.fake.metallib_functions), None

    def newLibraryWithSource_options_error_(self, source, opts, err):
        self.fake.log.append(("library_source", source, opts.settings))
        if self.fake.compile_hook:
            self.fake.compile_hook(source)
        if self.fake.refuse_source:
            return None, self.fake.refuse_source
        return FakeLibrary(self.fake.source_functions), None

    def newComputePipelineStateWithFunction_error_(self, fn, err):
        self.fake.log.append(("pipeline", fn))
        return FakePipeline(fn, self.fake.max_threads, self.fake.simd_width), None

    def newBufferWithBytes_length_options_(self, data, length, options):
        assert options == FakeMetal.MTLResourceStorageModeShared and len(data) == length
        self.fake.copied += length
        return FakeBuffer(data)

    def newBufferWithBytesNoCopy_length_options_deallocator_(self, data, length, options, deallocator):
        assert options == FakeMetal.MTLResourceStorageModeShared and deallocator is None
        view = memoryview(data)
        assert view.nbytes == length and length % FakeMetal.PAGE == 0
        self.fake.wrapped += length
        return FakeBuffer(view.cast("B"))

    def maxThreadgroupMemoryLength(self) -> int:
        return 32768


class FakeMetal(types.ModuleType):
    """A fake of PyObjC's Metal module (only what enigma_runtime.metal calls)."""

    MTLResourceStorageModeShared = 0
    MTLLanguageVersion3_0 = 196608
    MTLLanguageVersion3_1 = 196609
    MTLMathModeSafe = 0  # the values of pyobjc-framework-Metal (test_rt_metal_pyobjc.py checks)
    MTLMathFloatingPointFunctionsPrecise = 1
    MTLCompileOptions = FakeOptions
    PAGE = rt_metal.PAGE

    def __init__(self) -> None:
        super().__init__("Metal")
        self.log: list = []
        self.dispatches: list = []
        self.emulate = None
        self.status = 4
        self.max_threads = 1024
        self.simd_width = 32
        self.refuse_metallib = False
        self.refuse_source = ""
        self.compile_hook = None
        self.devices_created = 0
        self.no_device = False
        self.copied = self.wrapped = 0
        self.metallib_functions = ["enigma_kernel_vector_add"]
        self.source_functions = ["enigma_kernel_vector_add"]

    def MTLCreateSystemDefaultDevice(self):
        self.devices_created += 1
        return None if self.no_device else FakeDevice(self)

    @staticmethod
    def MTLSizeMake(x, y, z):
        return (x, y, z)


class FakeObjc(types.ModuleType):
    """A fake of PyObjC's objc module: autorelease_pool() counts the pools and checks that every
    command buffer is made inside one."""

    def __init__(self, fake: FakeMetal) -> None:
        super().__init__("objc")
        self.fake, self.depth, self.pools = fake, 0, 0

    @contextlib.contextmanager
    def autorelease_pool(self):
        self.depth += 1
        self.pools += 1
        try:
            yield
        finally:
            self.depth -= 1


@pytest.fixture
def fake_metal(monkeypatch):
    fake = FakeMetal()
    foundation = types.ModuleType("Foundation")
    foundation.NSURL = types.SimpleNamespace(fileURLWithPath_=lambda p: f"file://{p}")
    monkeypatch.setitem(sys.modules, "Metal", fake)
    monkeypatch.setitem(sys.modules, "Foundation", foundation)
    monkeypatch.setitem(sys.modules, "objc", FakeObjc(fake))
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


# -- issue "wheels that run on every Mac": the Metal runtime -------------------------------------------

def _va(fake, **spec_changes):
    spec, ir = vector_add_kernel()
    spec = dict(spec, **spec_changes)
    fake.emulate = emulate_vector_add
    return Kernel.from_spec(spec, ir, "kernel void enigma_kernel_vector_add();")


def _inputs(n=100):
    a, b = np.arange(n, dtype=np.float32), np.ones(n, np.float32)
    return a, b, np.zeros(n, np.float32)


def test_every_launch_runs_in_an_autorelease_pool(fake_metal):
    k = _va(fake_metal)
    for _ in range(3):
        k(*_inputs(), 100, device="metal")
    assert sys.modules["objc"].pools == 3  # FakeDevice refuses command buffers outside a pool


def test_failed_device_creation_is_not_retried(fake_metal):
    fake_metal.no_device = True
    k = _va(fake_metal)
    for _ in range(3):
        with pytest.raises(MetalError, match="returned no device"):
            k(*_inputs(), 100, device="metal")
    assert not rt_metal.available()
    assert fake_metal.devices_created == 1
    rt_metal.reset()
    fake_metal.no_device = False
    k(*_inputs(), 100, device="metal")
    assert fake_metal.devices_created == 2


def test_source_is_compiled_with_the_manifests_msl_version(fake_metal, make_package):
    adir = make_package("pkg_msl30")
    import json
    doc = json.loads((adir / "manifest.json").read_text())
    doc["msl_version"] = "3.0"
    (adir / "manifest.json").write_text(json.dumps(doc))
    k = enigma_runtime.load("pkg_msl30", "vector_add")
    fake_metal.emulate = emulate_vector_add
    k(*_inputs(), 100, device="metal")
    (settings,) = [e[2] for e in fake_metal.log if isinstance(e, tuple) and e[0] == "library_source"]
    assert settings["languageVersion"] == FakeMetal.MTLLanguageVersion3_0


def test_precise_math_on_macos_15(fake_metal, monkeypatch):
    monkeypatch.setattr(FakeMetal, "MTLCompileOptions", FakeOptions15)
    _va(fake_metal)(*_inputs(), 100, device="metal")
    (settings,) = [e[2] for e in fake_metal.log if isinstance(e, tuple) and e[0] == "library_source"]
    assert settings == {"mathMode": FakeMetal.MTLMathModeSafe,
                        "mathFloatingPointFunctions": FakeMetal.MTLMathFloatingPointFunctionsPrecise,
                        "languageVersion": FakeMetal.MTLLanguageVersion3_1}


def _cpu_fallback(k, match):
    a, b, c = _inputs()
    with pytest.warns(RuntimeWarning, match=match):
        k(a, b, c, 100, device="metal")
    np.testing.assert_array_equal(c, a + b)  # computed by the CPU executor
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        k(a, b, c, 100, device="metal")


def test_an_msl_version_this_os_does_not_know_runs_on_the_cpu(fake_metal):
    k = _va(fake_metal, msl_version="4.0")
    _cpu_fallback(k, r"needs Metal Shading Language 4.0, which this macOS does not know.*on the CPU executor")
    assert fake_metal.dispatches == []


def test_an_older_macos_than_the_target_runs_on_the_cpu(fake_metal, make_package, monkeypatch):
    make_package("pkg_target")
    monkeypatch.setattr(rt_metal, "macos_version", lambda: (13, 6))
    k = enigma_runtime.load("pkg_target", "vector_add")  # macos_target 14.0
    _cpu_fallback(k, r"built for macOS 14.0, and this is macOS 13.6: running it on the CPU executor")
    assert fake_metal.dispatches == []
    monkeypatch.setattr(rt_metal, "macos_version", lambda: (14, 2))
    rt_metal.reset()
    make_package("pkg_target2")
    enigma_runtime.load("pkg_target2", "vector_add")(*_inputs(), 100, device="metal")
    assert len(fake_metal.dispatches) == 1


def test_a_library_the_os_refuses_is_a_clear_message_and_runs_on_the_cpu(fake_metal, make_package):
    make_package("pkg_too_new", metallib=b"MTLB for macOS 26")
    fake_metal.refuse_metallib = True
    fake_metal.refuse_source = "program_source:1: error: unknown type name 'bfloat'"
    k = enigma_runtime.load("pkg_too_new", "vector_add")
    _cpu_fallback(k, r"the package's .metallib was refused by this OS \(language version 4.0 not supported"
                     r".*and Metal refused the kernel's source.*on the CPU executor")


def test_source_refused_without_a_metallib_is_an_error(fake_metal):
    fake_metal.refuse_source = "program_source:3: error: oops"
    with pytest.raises(MetalError, match="Metal refused the kernel's source: program_source:3"):
        _va(fake_metal)(*_inputs(), 100, device="metal")


def test_simd_width_other_than_32_is_refused(fake_metal):
    fake_metal.simd_width = 64  # an AMD GPU of an Intel Mac
    k = _va(fake_metal, simd_width=32)
    with pytest.raises(MetalError, match="32-wide SIMD groups, but this GPU's threadExecutionWidth is 64"):
        k(*_inputs(), 100, device="metal")
    _va(fake_metal)(*_inputs(), 100, device="metal")  # no simd ops: no assumption


def _page_aligned(n: int, dtype=np.float32) -> np.ndarray:
    raw = np.zeros(n * np.dtype(dtype).itemsize + rt_metal.PAGE, np.uint8)
    off = (-raw.ctypes.data) % rt_metal.PAGE
    return raw[off:off + n * np.dtype(dtype).itemsize].view(dtype)


def test_page_aligned_arrays_are_wrapped_without_copies(fake_metal):
    n = rt_metal.PAGE // 4 * 2  # two pages of float32
    a, b, c = _page_aligned(n), _page_aligned(n), _page_aligned(n)
    a[:] = np.arange(n)
    b[:] = 1
    k = _va(fake_metal)
    k(a, b, c, n, device="metal")
    np.testing.assert_array_equal(c, a + 1)  # the (fake) GPU wrote the array itself
    assert fake_metal.copied == 0 and fake_metal.wrapped == 3 * a.nbytes
    # unaligned arrays are copied in, and written ones copied back
    a2, b2, c2 = _inputs(n + 1)
    k(a2, b2, c2, n + 1, device="metal")
    np.testing.assert_array_equal(c2, a2 + b2)
    assert fake_metal.copied >= 3 * a2.nbytes


def test_the_same_array_twice_is_one_buffer(fake_metal):
    k = _va(fake_metal)
    x = np.arange(10, dtype=np.float32)
    c = np.zeros(10, np.float32)
    k(x, x, c, 10, device="metal")
    (_, _, _, buffers, _), = fake_metal.dispatches
    assert buffers[0] is buffers[1] and buffers[2] is not buffers[0]
    np.testing.assert_array_equal(c, 2 * x)


def test_first_launches_on_threads_compile_in_parallel(fake_metal):
    """Two kernels' first launches on two threads: the second compile starts before the first ends
    (no lock held across a whole compile)."""
    running, overlap = [], []
    lock = threading.Lock()

    def compile_hook(source):
        with lock:
            running.append(source)
            overlap.append(len(running))
        time.sleep(0.3)
        with lock:
            running.remove(source)
    fake_metal.compile_hook = compile_hook
    specs = [vector_add_kernel(name=n) for n in ("va_one", "va_two")]
    fake_metal.source_functions = [s["kernel_name"] for s, _ in specs]
    kernels = [Kernel.from_spec(s, ir, f"// source of {s['name']}") for s, ir in specs]
    errors = []

    def launch(k):
        try:
            k(*_inputs(10), 10, device="metal")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=launch, args=(k,)) for k in kernels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and max(overlap) == 2


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
