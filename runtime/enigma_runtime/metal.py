"""Metal backend through PyObjC (pyobjc-framework-Metal), kept thin.

Library from the package's .metallib (by file URL), or compiled from the shipped MSL source with safe
math when there is no metallib or the OS refuses it; one pipeline per kernel, cached on the library's
content; `maxTotalThreadsPerThreadgroup` checked against the block; shared-storage buffers; scalars
and the dims buffer (FORMAT.md section 5) through setBytes; dispatchThreadgroups; wait; check the
command buffer's status; copy written arguments back.

PyObjC is imported on the first launch, through `_frameworks()`, which reads `sys.modules` first:
tests inject fake `Metal` and `Foundation` modules there.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import threading
from typing import Any

import numpy as np

from .binding import Bound, metal_buffers
from .errors import MetalError

MAX_SET_BYTES = 4096
COMMAND_BUFFER_COMPLETED = 4  # MTLCommandBufferStatusCompleted


def _frameworks() -> tuple[Any, Any]:
    try:
        return importlib.import_module("Metal"), importlib.import_module("Foundation")
    except ImportError as e:
        raise MetalError(f"Metal is unavailable ({e}): on macOS install pyobjc-framework-Metal "
                         f"(a dependency of enigma-runtime there); elsewhere run with device='cpu' or "
                         f"ENIGMA_DEVICE=cpu") from None


class _Device:
    """The system default device, its command queue, and caches of libraries and pipelines."""

    def __init__(self) -> None:
        self.Metal, self.Foundation = _frameworks()
        self.device = self.Metal.MTLCreateSystemDefaultDevice()
        if self.device is None:
            raise MetalError("MTLCreateSystemDefaultDevice() returned no device (no Metal GPU available); "
                             "run with device='cpu' or ENIGMA_DEVICE=cpu")
        self.queue = self.device.newCommandQueue()
        self.libraries: dict[tuple, Any] = {}
        self.pipelines: dict[tuple, Any] = {}
        self.lock = threading.Lock()
        self.tmpdir: str | None = None
        self.notes: list[str] = []  # why a metallib was passed over for source (for error messages)

    def _library_from_metallib(self, data: bytes) -> Any:
        # loaded by file URL (NSData-backed libraries have crashed PyObjC), from a private directory
        # of this process, so nobody else can swap the file between the sha256 check and the load
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="enigma-metal-")
        path = os.path.join(self.tmpdir, f"{hashlib.sha256(data).hexdigest()[:32]}.metallib")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        url = self.Foundation.NSURL.fileURLWithPath_(path)
        lib, err = self.device.newLibraryWithURL_error_(url, None)
        if lib is None:
            self.notes.append(f"the .metallib was refused ({err}); compiled the shipped source instead")
        return lib

    def _library_from_source(self, source: str, where: str) -> Any:
        M = self.Metal
        opts = M.MTLCompileOptions.new()
        if hasattr(opts, "setMathMode_") and hasattr(M, "MTLMathModeSafe"):
            opts.setMathMode_(M.MTLMathModeSafe)  # macOS 15+
        else:
            opts.setFastMathEnabled_(False)
        if hasattr(M, "MTLLanguageVersion3_1"):
            opts.setLanguageVersion_(M.MTLLanguageVersion3_1)
        lib, err = self.device.newLibraryWithSource_options_error_(source, opts, None)
        if lib is None:
            raise MetalError(f"{where}: Metal refused the kernel's source: {err}"
                             + ("; " + "; ".join(self.notes) if self.notes else ""))
        return lib

    def pipeline(self, sp: Any) -> Any:
        """The compute pipeline of specialisation `sp` (kernel.Specialisation), cached."""
        key = (sp.library_key, sp.spec["kernel_name"])
        with self.lock:
            pipe = self.pipelines.get(key)
            if pipe is not None:
                return pipe
            fn = None
            lib_key = (sp.library_key, "metallib")
            lib = self.libraries.get(lib_key)
            if lib is None and lib_key not in self.libraries:
                data = sp.metallib_bytes
                lib = self.libraries[lib_key] = self._library_from_metallib(data) if data else None
            if lib is not None:
                fn = lib.newFunctionWithName_(sp.spec["kernel_name"])
            if fn is None:  # no metallib, refused, or built without this kernel: compile its source
                src_key = ("source", hashlib.sha256(sp.metal_source.encode()).hexdigest())
                lib = self.libraries.get(src_key)
                if lib is None:
                    lib = self.libraries[src_key] = self._library_from_source(sp.metal_source, sp.where)
                fn = lib.newFunctionWithName_(sp.spec["kernel_name"])
            if fn is None:
                raise MetalError(f"{sp.where}: no function {sp.spec['kernel_name']!r} in the Metal library")
            pipe, err = self.device.newComputePipelineStateWithFunction_error_(fn, None)
            if pipe is None:
                raise MetalError(f"{sp.where}: cannot create the compute pipeline: {err}")
            self.pipelines[key] = pipe
            return pipe


_device: _Device | None = None
_device_lock = threading.Lock()


def device() -> _Device:
    global _device
    with _device_lock:
        if _device is None:
            _device = _Device()
        return _device


def reset() -> None:
    """Forget the device and its caches (tests swap the Metal module)."""
    global _device
    with _device_lock:
        _device = None


def available() -> bool:
    """Is there a Metal device (imports PyObjC)?"""
    try:
        device()
    except MetalError:
        return False
    return True


def _buffer(dev: _Device, arr: np.ndarray) -> Any:
    data = arr.tobytes() if arr.nbytes else b"\0"
    shared = dev.Metal.MTLResourceStorageModeShared
    buf = dev.device.newBufferWithBytes_length_options_(data, len(data), shared)
    if buf is None:
        raise MetalError(f"cannot allocate a Metal buffer of {len(data)} bytes")
    return buf


class Handle:
    """The "metal" device's handle of a specialisation: the specialisation and its pipeline."""

    def __init__(self, sp: Any, pipeline: Any) -> None:
        self.sp, self.pipeline = sp, pipeline


def prepare(sp: Any) -> Handle:
    """The compute pipeline of specialisation `sp` (kernel.Specialisation) on the default device."""
    return Handle(sp, device().pipeline(sp))


def run(handle: Handle, bound: Bound, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    """Launch a prepared specialisation on the default Metal device; written arrays are updated in place."""
    run_many([(handle, bound, grid, block)])


def run_many(launches: list[tuple[Handle, Bound, tuple[int, int, int], tuple[int, int, int]]]) -> None:
    """Prepared launches in order, in one command buffer (a jit entry's launches: FORMAT.md section 7).
    An array passed to several launches is one Metal buffer, so a later launch reads what an earlier
    one wrote; written arrays are copied back once, after the command buffer completes."""
    launches = [x for x in launches if 0 not in x[2]]
    if not launches:
        return
    dev = device()
    M = dev.Metal
    for handle, _, _, block in launches:
        sp, pipe = handle.sp, handle.pipeline
        limit = int(pipe.maxTotalThreadsPerThreadgroup())
        threads = block[0] * block[1] * block[2]
        if threads > limit:
            raise MetalError(f"{sp.where}: block {block} has {threads} threads, but this pipeline allows at "
                             f"most {limit} per threadgroup on this GPU; launch with a smaller block=")
        tgm = sp.spec.get("threadgroup_memory", 0)
        has_limit = hasattr(dev.device, "maxThreadgroupMemoryLength")
        if has_limit and tgm > int(dev.device.maxThreadgroupMemoryLength()):
            raise MetalError(f"{sp.where}: needs {tgm} bytes of threadgroup memory, more than this GPU's "
                             f"{int(dev.device.maxThreadgroupMemoryLength())}")
    cb = dev.queue.commandBuffer()
    shared: dict[int, Any] = {}  # id(array) -> its Metal buffer, one for every launch that passes it
    outputs: dict[int, tuple[Any, np.ndarray]] = {}
    for handle, bound, grid, block in launches:
        spec = handle.sp.spec
        enc = cb.computeCommandEncoder()
        enc.setComputePipelineState_(handle.pipeline)
        tensors = {a.get("buffer", i): a for i, a in enumerate(spec["args"]) if a["kind"] == "tensor"}
        for index, v in metal_buffers(bound).items():
            a = tensors.get(index)
            if a is not None:
                buf = shared.get(id(v))
                if buf is None:
                    buf = shared[id(v)] = _buffer(dev, v)
                enc.setBuffer_offset_atIndex_(buf, 0, index)
                if a.get("access", "read") != "read":
                    outputs[id(v)] = (buf, v)
            elif v.nbytes > MAX_SET_BYTES:  # a dims buffer too big for setBytes
                enc.setBuffer_offset_atIndex_(_buffer(dev, v), 0, index)
            else:
                raw = v.tobytes()
                enc.setBytes_length_atIndex_(raw, len(raw), index)
        enc.dispatchThreadgroups_threadsPerThreadgroup_(M.MTLSizeMake(*grid), M.MTLSizeMake(*block))
        enc.endEncoding()
    cb.commit()
    cb.waitUntilCompleted()
    status = int(cb.status())
    if status != COMMAND_BUFFER_COMPLETED:
        where = ", ".join(dict.fromkeys(h.sp.where for h, _, _, _ in launches))
        raise MetalError(f"{where}: the command buffer ended with status {status}: {cb.error()}")
    for buf, v in outputs.values():
        view = buf.contents().as_buffer(v.nbytes) if v.nbytes else b""
        v[...] = np.frombuffer(view, v.dtype, v.size).reshape(v.shape)
