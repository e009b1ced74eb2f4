"""enigma_runtime's Metal backend end to end on Linux: a FAKE Metal module records the calls and, at
dispatch, runs the kernel's real MSL on the CPU (enigma.verify's clang harness) on exactly the bytes
the backend bound (tensor buffers, setBytes scalars, the dims buffer). Checks the binding ABI of
FORMAT.md section 5 from the runtime's side against the generated Metal source."""
from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest
import zoo
from enigma_runtime import Kernel
from enigma_runtime import metal as rt_metal
from toolcheck import need_tool

import enigma

pytestmark = [pytest.mark.needs_clang, pytest.mark.slow]


class _Buf:
    def __init__(self, data) -> None:  # a memoryview: newBufferWithBytesNoCopy shares the memory
        self.data = data if isinstance(data, memoryview) else bytearray(data)

    def contents(self):
        return types.SimpleNamespace(as_buffer=lambda n: memoryview(self.data)[:n])


class FakeMetalRunningMSL(types.ModuleType):
    """Fake PyObjC Metal: a dispatch runs the MSL with enigma.verify.run_msl on the bound buffers."""

    MTLResourceStorageModeShared = 0
    MTLLanguageVersion3_1 = 196609

    class MTLCompileOptions:
        @classmethod
        def new(cls):
            noop = lambda v: None  # noqa: E731
            return types.SimpleNamespace(setFastMathEnabled_=noop, setLanguageVersion_=noop)

    def __init__(self) -> None:
        super().__init__("Metal")
        self.dispatched: list = []

    @staticmethod
    def MTLSizeMake(x, y, z):
        return (x, y, z)

    def MTLCreateSystemDefaultDevice(self):
        fake = self

        class Encoder:
            def __init__(self):
                self.bound = {}

            def setComputePipelineState_(self, p):
                self.pipe = p

            def setBuffer_offset_atIndex_(self, buf, off, i):
                self.bound[i] = np.frombuffer(buf.data, np.uint8)  # shares the fake buffer's memory

            def setBytes_length_atIndex_(self, data, n, i):
                self.bound[i] = np.frombuffer(bytearray(data), np.uint8)

            def dispatchThreadgroups_threadsPerThreadgroup_(self, grid, block):
                from enigma.verify import run_msl
                src, name = self.pipe
                run_msl(src, buffers=self.bound, grid=grid, block=block, name=name, isolate=False)
                fake.dispatched.append((name, grid, block, sorted(self.bound)))

            def endEncoding(self):
                pass

        class CommandBuffer:
            def computeCommandEncoder(self):
                return Encoder()

            def commit(self):
                pass

            def waitUntilCompleted(self):
                pass

            def status(self):
                return 4

            def error(self):
                return None

        class Device:
            def newCommandQueue(self):
                return types.SimpleNamespace(commandBuffer=CommandBuffer)

            def newLibraryWithSource_options_error_(self, src, opts, err):
                return types.SimpleNamespace(newFunctionWithName_=lambda n: (src, n)), None

            def newComputePipelineStateWithFunction_error_(self, fn, err):
                return _Pipe(fn), None  # fn is (source, name): the encoder runs that source

            def newBufferWithBytes_length_options_(self, data, n, opts):
                return _Buf(data)

            def newBufferWithBytesNoCopy_length_options_deallocator_(self, data, n, opts, dealloc):
                return _Buf(memoryview(data).cast("B"))

        return Device()


class _Pipe(tuple):
    def maxTotalThreadsPerThreadgroup(self):
        return 1024


@pytest.fixture
def msl_metal(monkeypatch):
    need_tool("clang++-22", "clang++-19", "clang++")
    fake = FakeMetalRunningMSL()
    monkeypatch.setitem(sys.modules, "Metal", fake)
    monkeypatch.setitem(sys.modules, "Foundation", types.ModuleType("Foundation"))
    objc = types.ModuleType("objc")  # fake PyObjC objc module: only the autorelease pool is used
    objc.autorelease_pool = contextlib.nullcontext
    monkeypatch.setitem(sys.modules, "objc", objc)
    rt_metal.reset()
    yield fake
    rt_metal.reset()


@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_metal_backend_binds_what_the_msl_expects(name, msl_metal):
    entry = zoo.BY_NAME[name]
    ins = entry.make_inputs(np.random.default_rng(11))
    ck = enigma.compile(entry.jit, *ins, vec_width=entry.vec_width)
    k = Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)  # no metallib: source path
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in entry.kernel_args(ins)]
    expected = entry.reference(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in args])
    grid = None if ck.signature.get("grid") is not None else ck.grid
    block = None if ck.signature.get("block") is not None else ck.block
    k(*args, grid=grid, block=block, device="metal")
    assert msl_metal.dispatched and msl_metal.dispatched[0][0] == ck.kernel_name
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)
