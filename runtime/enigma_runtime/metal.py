"""Metal backend through PyObjC (pyobjc-framework-Metal), kept thin: the "metal" device.

Library from the package's .metallib (by file URL), or compiled from the shipped MSL source with the
manifest's `msl_version` (MTLLanguageVersion) and precise math (`fastMathEnabled = NO`; on macOS 15+
`mathMode = safe` and `mathFloatingPointFunctions = precise`) when there is no metallib, the OS
refuses it, or it lacks the function; one pipeline per kernel, cached on the library's content, each
library and pipeline built under its own lock (first launches of different kernels on several
threads compile in parallel); `maxTotalThreadsPerThreadgroup` checked against the block and
`threadExecutionWidth` against the signature's `simd_width`; tensors in shared-storage buffers
(page-aligned contiguous arrays wrapped without a copy, the same array passed twice bound as one
buffer), scalars and the dims buffer (FORMAT.md section 5) through setBytes; dispatchThreadgroups;
wait; check the command buffer's status; copy written arguments back when they were copied in. Every
launch runs inside `objc.autorelease_pool()`.

When this Mac cannot run a kernel's library (macOS older than the manifest's `macos_target`, an MSL
version the OS does not know, a .metallib the OS refuses and source it cannot compile), the launch
runs on the CPU executor instead, after one RuntimeWarning naming the reason. A device that cannot
be created is not retried on every call: the MetalError is kept (reset() forgets it).

PyObjC is imported on the first launch, through `_frameworks()`, which reads `sys.modules` first:
tests inject fake `Metal`, `Foundation` and `objc` modules there (runtime/tests/test_rt_metal_fake.py,
held to pyobjc-framework-Metal's own metadata by runtime/tests/test_rt_metal_pyobjc.py).
"""
from __future__ import annotations

import hashlib
import importlib
import mmap
import os
import platform
import sys
import tempfile
import threading
import warnings
from typing import Any

import numpy as np

from .binding import Bound, metal_buffers
from .errors import MetalError

MAX_SET_BYTES = 4096
COMMAND_BUFFER_COMPLETED = 4  # MTLCommandBufferStatusCompleted
SIMD_WIDTH = 32  # what kernels using simd-group ops assume (FORMAT.md "simd_width")
PAGE = mmap.PAGESIZE  # newBufferWithBytesNoCopy needs page-aligned memory of whole pages

# bytes copied between numpy arrays and Metal buffers (bench/metal_copies.py reads them)
stats = {"copied_in": 0, "copied_out": 0, "wrapped": 0}


def _frameworks() -> tuple[Any, Any, Any]:
    try:
        return (importlib.import_module("Metal"), importlib.import_module("Foundation"),
                importlib.import_module("objc"))
    except ImportError as e:
        raise MetalError(f"Metal is unavailable ({e}): on macOS install pyobjc-framework-Metal "
                         f"(a dependency of enigma-runtime there); elsewhere run with device='cpu' or "
                         f"ENIGMA_DEVICE=cpu") from None


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.strip().split("."))
    except ValueError:
        return None


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """A RuntimeWarning, once per message (the CPU fallback of a kernel says so once)."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, RuntimeWarning, stacklevel=5)


class Unsupported(Exception):
    """This Mac cannot run the library (the launch falls back to the CPU, with a warning)."""


class _Device:
    """The system default device, its command queue, and caches of libraries and pipelines."""

    def __init__(self) -> None:
        self.Metal, self.Foundation, self.objc = _frameworks()
        self.device = self.Metal.MTLCreateSystemDefaultDevice()
        if self.device is None:
            raise MetalError("MTLCreateSystemDefaultDevice() returned no device (no Metal GPU available); "
                             "run with device='cpu' or ENIGMA_DEVICE=cpu")
        self.queue = self.device.newCommandQueue()
        self.libraries: dict[tuple, Any] = {}
        self.pipelines: dict[tuple, Any] = {}
        self.lock = threading.Lock()  # guards the dicts and `locks`, never held across a compile
        self.locks: dict[tuple, threading.Lock] = {}
        self.tmpdir: str | None = None
        self.notes: dict[tuple, str] = {}  # why a metallib was passed over for source

    def _lock_of(self, key: tuple) -> threading.Lock:
        with self.lock:
            return self.locks.setdefault(key, threading.Lock())

    def _cached(self, cache: dict[tuple, Any], key: tuple, make: Any) -> Any:
        """cache[key], made once under key's own lock (exceptions are not cached)."""
        with self.lock:
            if key in cache:
                return cache[key]
        with self._lock_of(key):
            with self.lock:
                if key in cache:
                    return cache[key]
            value = make()
            with self.lock:
                cache[key] = value
            return value

    def _library_from_metallib(self, data: bytes, key: tuple) -> Any:
        # loaded by file URL (NSData-backed libraries have crashed PyObjC), from a private directory
        # of this process, so nobody else can swap the file between the sha256 check and the load
        with self.lock:
            if self.tmpdir is None:
                self.tmpdir = tempfile.mkdtemp(prefix="enigma-metal-")
            tmpdir = self.tmpdir
        path = os.path.join(tmpdir, f"{hashlib.sha256(data).hexdigest()[:32]}.metallib")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        url = self.Foundation.NSURL.fileURLWithPath_(path)
        lib, err = self.device.newLibraryWithURL_error_(url, None)
        if lib is None:
            self.notes[key] = f"the package's .metallib was refused by this OS ({err})"
        return lib

    def _library_from_source(self, source: str, msl_version: str, where: str, note: str) -> Any:
        M = self.Metal
        opts = M.MTLCompileOptions.new()
        if hasattr(opts, "setMathMode_") and hasattr(opts, "setMathFloatingPointFunctions_") \
                and hasattr(M, "MTLMathModeSafe"):  # macOS 15+: fastMathEnabled is deprecated
            opts.setMathMode_(M.MTLMathModeSafe)
            opts.setMathFloatingPointFunctions_(M.MTLMathFloatingPointFunctionsPrecise)
        else:
            opts.setFastMathEnabled_(False)
        version = msl_version or "3.1"
        lang = getattr(M, "MTLLanguageVersion" + version.replace(".", "_"), None)
        if lang is None:
            raise Unsupported(f"{where} needs Metal Shading Language {version}, which this macOS does not "
                              f"know (no MTLLanguageVersion{version.replace('.', '_')})"
                              + (f"; {note}" if note else ""))
        opts.setLanguageVersion_(lang)
        lib, err = self.device.newLibraryWithSource_options_error_(source, opts, None)
        if lib is None:
            if note:  # the OS refused the metallib and cannot compile the source either: too old
                raise Unsupported(f"{where}: {note}, and Metal refused the kernel's source: {err}")
            raise MetalError(f"{where}: Metal refused the kernel's source: {err}")
        return lib

    def pipeline(self, sp: Any) -> Any:
        """The compute pipeline of specialisation `sp` (kernel.Specialisation), cached."""
        return self._cached(self.pipelines, (sp.library_key, sp.spec["kernel_name"]),
                            lambda: self._make_pipeline(sp))

    def _make_pipeline(self, sp: Any) -> Any:
        name = sp.spec["kernel_name"]
        lib_key = (sp.library_key, "metallib")
        fn = None

        def from_metallib() -> Any:
            data = sp.metallib_bytes
            return self._library_from_metallib(data, lib_key) if data else None
        lib = self._cached(self.libraries, lib_key, from_metallib)
        if lib is not None:
            fn = lib.newFunctionWithName_(name)
        if fn is None:  # no metallib, refused, or built without this kernel: compile its source
            source = sp.metal_source
            version = getattr(sp, "msl_version", "") or sp.spec.get("msl_version") or ""
            src_key = ("source", version, hashlib.sha256(source.encode()).hexdigest())
            note = self.notes.get(lib_key, "")
            lib = self._cached(self.libraries, src_key,
                               lambda: self._library_from_source(source, version, sp.where, note))
            fn = lib.newFunctionWithName_(name)
        if fn is None:
            raise MetalError(f"{sp.where}: no function {name!r} in the Metal library")
        pipe, err = self.device.newComputePipelineStateWithFunction_error_(fn, None)
        if pipe is None:
            raise MetalError(f"{sp.where}: cannot create the compute pipeline: {err}")
        return pipe


_device: _Device | None = None
_device_error: MetalError | None = None
_device_lock = threading.Lock()


def device() -> _Device:
    """The default Metal device; a failure to create it is raised again, not retried, on later calls."""
    global _device, _device_error
    with _device_lock:
        if _device is None:
            if _device_error is not None:
                raise MetalError(str(_device_error))
            try:
                _device = _Device()
            except MetalError as e:
                _device_error = e
                raise
        return _device


def reset() -> None:
    """Forget the device, its caches and a failure to create it (tests swap the Metal module)."""
    global _device, _device_error
    with _device_lock:
        _device, _device_error = None, None
    with _warned_lock:
        _warned.clear()


def available() -> bool:
    """Is there a Metal device (imports PyObjC)?"""
    try:
        device()
    except MetalError:
        return False
    return True


def macos_version() -> tuple[int, ...] | None:
    """This Mac's macOS version, or None off macOS."""
    if sys.platform != "darwin":
        return None
    return _version(platform.mac_ver()[0])


class Handle:
    """The "metal" device's handle of a specialisation: its pipeline, or why it runs on the CPU."""

    def __init__(self, sp: Any, pipeline: Any, fallback: str = "", dev: Any = None) -> None:
        self.sp, self.pipeline, self.fallback, self.device = sp, pipeline, fallback, dev


def prepare(sp: Any) -> Handle:
    """The compute pipeline of specialisation `sp` (kernel.Specialisation) on the default device, or a
    CPU fallback when this Mac cannot run its library (said once, as a RuntimeWarning)."""
    dev = device()
    target = getattr(sp, "macos_target", "") or ""
    have, want = macos_version(), _version(target)
    if have is not None and want is not None and have < want:
        return Handle(sp, None, f"{sp.where} was built for macOS {target}, and this is macOS "
                                f"{'.'.join(map(str, have))}", dev)
    try:
        return Handle(sp, dev.pipeline(sp), "", dev)
    except Unsupported as e:
        return Handle(sp, None, str(e), dev)


def _buffers(dev: _Device, bound: Bound, made: dict[tuple[int, int], Any],
             copy_back: dict[tuple[int, int], tuple[Any, np.ndarray]], keep: list[memoryview]
             ) -> tuple[dict[int, Any], dict[int, bytes]]:
    """Metal buffers of one launch's tensors and dims buffer, and the setBytes data of its scalars.
    `made` (memory -> buffer) is shared by the launches of one command buffer: an array passed twice
    is one buffer. A page-aligned array of whole pages is wrapped without a copy (shared storage: the
    GPU writes the array itself; `keep` holds the views until the launch ends); others are copied
    in, and when written, recorded in `copy_back`."""
    spec = bound.spec
    tensors = {a.get("buffer", i): a for i, a in enumerate(spec["args"]) if a["kind"] == "tensor"}
    shared = dev.Metal.MTLResourceStorageModeShared
    buffers: dict[int, Any] = {}
    setbytes: dict[int, bytes] = {}
    for index, v in metal_buffers(bound).items():
        a = tensors.get(index)
        if a is None and v.nbytes <= MAX_SET_BYTES:
            setbytes[index] = v.tobytes()
            continue
        key = (v.ctypes.data, v.nbytes) if a is not None else (id(v), -1)
        buf = made.get(key)
        if buf is None:
            if v.nbytes and v.nbytes % PAGE == 0 and v.ctypes.data % PAGE == 0:
                view = memoryview(v.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
                buf = dev.device.newBufferWithBytesNoCopy_length_options_deallocator_(
                    view, v.nbytes, shared, None)
                keep.append(view)
                stats["wrapped"] += v.nbytes
            else:
                data = v.tobytes() if v.nbytes else b"\0"
                buf = dev.device.newBufferWithBytes_length_options_(data, len(data), shared)
                stats["copied_in"] += v.nbytes
            if buf is None:
                raise MetalError(f"cannot allocate a Metal buffer of {v.nbytes} bytes")
            made[key] = buf
        if a is not None and a.get("access", "read") != "read" and key not in copy_back \
                and not (v.nbytes and v.nbytes % PAGE == 0 and v.ctypes.data % PAGE == 0):
            copy_back[key] = (buf, v)
        buffers[index] = buf
    return buffers, setbytes


def run(handle: Handle, bound: Bound, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    """Launch a prepared specialisation on the default Metal device; written arrays are updated in place."""
    run_many([(handle, bound, grid, block)])


def run_many(launches: list[tuple[Handle, Bound, tuple[int, int, int], tuple[int, int, int]]]) -> None:
    """Prepared launches in order, in one command buffer (a jit entry's launches: FORMAT.md section 7),
    inside one autorelease pool. An array passed to several launches (or twice to one) is one Metal
    buffer, so a later launch reads what an earlier one wrote; written arrays that were copied in are
    copied back once, after the command buffer completes."""
    launches = [x for x in launches if 0 not in x[2]]
    if not launches:
        return
    dev = device()
    M = dev.Metal
    ready = []
    for handle, bound, grid, block in launches:
        if handle.device is not dev:  # prepared for a device that reset() has since forgotten
            handle = prepare(handle.sp)
        if handle.fallback:  # devices.MetalDevice runs these on the CPU
            raise MetalError(f"{handle.fallback}; run it with device='cpu'")
        _check_launch(dev, handle, block)
        ready.append((handle, bound, grid, block))
    with dev.objc.autorelease_pool():  # command buffers and encoders are autoreleased
        made: dict[tuple[int, int], Any] = {}
        copy_back: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}
        keep: list[memoryview] = []
        cb = dev.queue.commandBuffer()
        for handle, bound, grid, block in ready:
            buffers, setbytes = _buffers(dev, bound, made, copy_back, keep)
            enc = cb.computeCommandEncoder()
            enc.setComputePipelineState_(handle.pipeline)
            for index, buf in buffers.items():
                enc.setBuffer_offset_atIndex_(buf, 0, index)
            for index, raw in setbytes.items():
                enc.setBytes_length_atIndex_(raw, len(raw), index)
            enc.dispatchThreadgroups_threadsPerThreadgroup_(M.MTLSizeMake(*grid), M.MTLSizeMake(*block))
            enc.endEncoding()
        cb.commit()
        cb.waitUntilCompleted()
        status = int(cb.status())
        if status != COMMAND_BUFFER_COMPLETED:
            where = ", ".join(dict.fromkeys(h.sp.where for h, _, _, _ in ready))
            raise MetalError(f"{where}: the command buffer ended with status {status}: {cb.error()}")
        for buf, v in copy_back.values():
            if v.nbytes:
                view = buf.contents().as_buffer(v.nbytes)
                v[...] = np.frombuffer(view, v.dtype, v.size).reshape(v.shape)
                stats["copied_out"] += v.nbytes


def _check_launch(dev: _Device, handle: Handle, block: tuple[int, int, int]) -> None:
    """The pipeline's thread limit, the SIMD width the kernel assumes, the threadgroup memory."""
    sp, pipe, spec = handle.sp, handle.pipeline, handle.sp.spec
    limit = int(pipe.maxTotalThreadsPerThreadgroup())
    threads = block[0] * block[1] * block[2]
    if threads > limit:
        raise MetalError(f"{sp.where}: block {block} has {threads} threads, but this pipeline allows at most "
                         f"{limit} per threadgroup on this GPU; launch with a smaller block=")
    simd = spec.get("simd_width")
    if simd is not None and hasattr(pipe, "threadExecutionWidth"):
        width = int(pipe.threadExecutionWidth())
        if width != simd:
            raise MetalError(f"{sp.where} uses simd-group ops written for {simd}-wide SIMD groups, but this "
                             f"GPU's threadExecutionWidth is {width}; run it with device='cpu'")
    tgm = spec.get("threadgroup_memory", 0)
    has_limit = hasattr(dev.device, "maxThreadgroupMemoryLength")
    if has_limit and tgm > int(dev.device.maxThreadgroupMemoryLength()):
        raise MetalError(f"{sp.where}: needs {tgm} bytes of threadgroup memory, more than this GPU's "
                         f"{int(dev.device.maxThreadgroupMemoryLength())}")
