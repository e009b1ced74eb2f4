"""Run Metal kernels on the CPU: compile with clang + the compatibility layer, dispatch with fibers.

    run_msl(compiled_kernel, *arrays, grid=..., block=..., schedule="random")
    run_msl(metal_source, *arrays, name="my_kernel", grid=..., block=...)     # raw MSL

Written arrays are updated in place. Errors come back as exceptions: `MslError` (the source cannot
be run: unknown attribute, unsupported parameter), `CompileError` (clang rejected it: address
spaces, `double`, ...), `KernelError` (found while running: divergent barrier, out-of-bounds
access, crash, and with `race_check=True` data races), each naming the .metal line where known.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from enigma_runtime import binding, devices
from enigma_runtime.kernel import Kernel

from enigma.verify import clang as _clang
from enigma.verify.msl import MSL_NUMPY, KernelSig, MslError, expand_macros, parse_kernels
from enigma.verify.report import Buffer, ErrInfo, KernelError, launch_error, oob_text
from enigma.verify.rewrite import absent_params
from enigma.verify.threadgroup import remap_lines, threadgroup_param_vars
from enigma.verify.wrapper import (
    ThreadgroupVar,
    entries_source,
    entry_source,
    entry_symbol,
    prepare_source,
)

SCHEDULES = {"forward": 0, "reverse": 1, "random": 2}
MAX_TIMEOUT = 24 * 3600.0  # seconds; an isolated child still running 5 s after its timeout is killed
_lock = threading.RLock()
_rt: ctypes.CDLL | None = None


def _runtime() -> ctypes.CDLL:
    global _rt
    if _rt is None:
        lib = ctypes.CDLL(str(_clang.runtime_library()), mode=os.RTLD_NOW | ctypes.RTLD_GLOBAL)
        lib.enigma_buf_alloc.argtypes = [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
        lib.enigma_buf_free.argtypes = [ctypes.c_int]
        lib.enigma_buf_check.argtypes = [ctypes.c_int]
        lib.enigma_buf_check.restype = ctypes.c_int64
        lib.enigma_err_size.restype = ctypes.c_size_t
        lib.enigma_set_tg_params.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_int, ctypes.c_int]
        lib.enigma_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                   ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32),
                                   ctypes.c_int, ctypes.c_uint64, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_double, ctypes.c_int, ctypes.POINTER(ErrInfo)]
        assert lib.enigma_err_size() == ctypes.sizeof(ErrInfo), "dispatcher ErrInfo layout mismatch"
        _rt = lib
    return _rt


def _load(path: Path) -> ctypes.CDLL:
    """dlopen with every symbol bound now: a forked child never runs the dynamic linker's lazy
    binding (which takes its locks, possibly held by another thread of the parent at the fork)."""
    return ctypes.CDLL(str(path), mode=os.RTLD_NOW | ctypes.RTLD_LOCAL)


def _entry_address(lib: ctypes.CDLL, symbol: str) -> int:
    addr = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    if not addr:
        raise KernelError(f"{lib._name}: {symbol} has no address")
    return addr


class _Library:
    """Kernels `names` of one source compiled into one library (one entry point each)."""

    def __init__(self, source: str, names: Sequence[str | None], file: str,
                 function_constants: Mapping[Any, Any] | None, include_dirs: Sequence[str | os.PathLike]
                 ) -> None:
        # the source's own macros (if they write declarations) and headers (`#include "x.h"`)
        code = expand_macros(source, file, include_dirs)
        sigs = parse_kernels(code, names, file)
        self.absent = [absent_params(sig, code, dict(function_constants or {}), file) for sig in sigs]
        prepared, tvars = prepare_source(code, dict(function_constants or {}), file)
        if code is not source:
            tvars = remap_lines(sigs[0], tvars, code, file)[1]
            sigs = [remap_lines(sig, [], code, file)[0] for sig in sigs]
        self.sigs, self.tvars = sigs, tvars
        self.full = prepared + (entry_source(sigs[0], file) if len(sigs) == 1 else entries_source(sigs, file))
        self.library = _clang.compile_kernel_library(self.full, file_name=file)


class MslProgram:
    """One Metal kernel compiled for the CPU and loaded (keep it to run the kernel many times)."""

    def __init__(self, source: str, name: str | None = None, file: str = "kernel.metal",
                 function_constants: Mapping[Any, Any] | None = None,
                 include_dirs: Sequence[str | os.PathLike] = (), *,
                 _shared: tuple[_Library, int] | None = None) -> None:
        self.source, self.file = source, file
        self.include_dirs = [str(d) for d in include_dirs]
        built, me = _shared or (_Library(source, [name], file, function_constants, include_dirs), 0)
        self.sig: KernelSig = built.sigs[me]
        self.threadgroup_vars: list[ThreadgroupVar] = list(built.tvars)
        # [[buffer(i), function_constant(c)]] parameters absent for these values (need no data)
        self.absent_buffers: set[int] = built.absent[me]
        self._tg_first = len(self.threadgroup_vars)  # [[threadgroup(i)]] parameters come after
        self.threadgroup_vars += threadgroup_param_vars(self.sig, self._tg_first)
        self._full, self.library = built.full, built.library
        self._symbol = entry_symbol(me if len(built.sigs) > 1 else None)
        rt = _runtime()
        self._lib = _load(self.library)
        self._entry = _entry_address(self._lib, self._symbol)
        self._race: tuple[Path, ctypes.CDLL, int] | None = None  # the instrumented library, on demand
        self.threadgroup_memory: int | None = None  # bytes of threadgroup variables, known after a run
        self._rt = rt

    @property
    def name(self) -> str:
        return self.sig.name

    def run(self, buffers: Mapping[int, Any], *, grid: Sequence[int] | int, block: Sequence[int] | int,
            schedule: str = "random", seed: int = 0, isolate: bool = True, timeout: float = 60.0,
            race_check: bool = False, threadgroup_memory: Mapping[int, int] | None = None) -> None:
        """Run one dispatchThreadgroups(grid, block) launch. `buffers[i]` binds [[buffer(i)]]: a numpy
        array (written back in place if the parameter is writable), a numpy scalar or bytes. One
        array object given at several indices is one buffer there (the same address), as when Metal
        binds one MTLBuffer at several indices (ggml binds src0 for an absent mask so).
        `threadgroup_memory[i]` is the length in bytes of the [[threadgroup(i)]] parameter.
        `race_check` runs a build instrumented on every load and store that reports two threads of a
        group touching the same threadgroup memory between two barriers (one of them writing).

        `isolate` runs the launch in a child process forked by the dispatcher (C only: see
        runtime/dispatch.cpp); the child ends itself after `timeout` seconds and the dispatcher kills
        it 5 s later if it has not, so a launch never hangs the caller (a KernelError instead)."""
        grid3, block3 = devices.check_launch(grid, block, f"kernel {self.name}")
        if 0 in grid3:
            return
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if not 0 < float(timeout) <= MAX_TIMEOUT:  # every launch is bounded (no "wait forever")
            raise ValueError(f"timeout must be > 0 and <= {MAX_TIMEOUT:g} seconds, got {timeout!r}")
        wanted = set(self.sig.buffer_indices)
        extra = set(buffers) - wanted
        if extra:
            raise ValueError(f"kernel {self.name} has no [[buffer({min(extra)})]]; its buffers are "
                             f"{sorted(wanted)}")
        missing = wanted - set(buffers) - self.absent_buffers
        if missing:
            p = self.sig.buffer(min(missing))
            raise ValueError(f"no data for [[buffer({p.index})]] ({p.name}) of kernel {self.name}")
        arrays = {i: self._as_array(i, v) for i, v in buffers.items()}
        tg_lens = self._tg_lengths(threadgroup_memory or {})
        with _lock:
            self._rt.enigma_set_tg_params((ctypes.c_uint64 * max(len(tg_lens), 1))(*tg_lens), len(tg_lens),
                                          self._tg_first)
            self._run_locked(arrays, grid3, block3, schedule, seed, isolate, timeout, race_check)

    def _tg_lengths(self, given: Mapping[int, int]) -> list[int]:
        params = {int(p.index or 0): p for p in self.sig.threadgroup_params}
        extra = set(given) - set(params)
        if extra:
            raise ValueError(f"kernel {self.name} has no [[threadgroup({min(extra)})]] parameter")
        for i, p in params.items():
            if int(given.get(i, 0)) <= 0:
                raise ValueError(f"{self.file}:{p.line}: give the length of [[threadgroup({i})]] {p.name} at "
                                 f"dispatch: threadgroup_memory={{{i}: nbytes}}")
        return [int(given.get(i, 0)) for i in range(max(params, default=-1) + 1)]

    def _as_array(self, index: int, v: Any) -> np.ndarray:
        p = self.sig.buffer(index)
        if isinstance(v, (bytes, bytearray, memoryview)):
            return np.frombuffer(bytes(v), np.uint8)
        base = re.sub(r"[234]$", "", p.base_type.replace("metal::", ""))
        if base in ("char", "uchar", "void") and not p.is_reference and isinstance(v, np.ndarray):
            base = ""  # `device const char*` takes any contiguous array as bytes
        want = MSL_NUMPY.get(base)
        if isinstance(v, (bool, int, float)) and want is not None:  # a Python number: the declared type
            v = np.array(v, dtype=want)
        a = v if isinstance(v, np.ndarray) else np.asarray(v)
        if not a.flags.c_contiguous:
            raise ValueError(f"[[buffer({index})]] ({p.name}): the array must be C-contiguous")
        if want is not None and a.dtype != np.dtype(want) and a.dtype != np.uint8:
            raise TypeError(f"{self.file}:{p.line}: [[buffer({index})]] {p.name} is `{p.type_text}` but the "
                            f"array has dtype {a.dtype}; pass a {np.dtype(want)} array")
        return a

    def _race_entry(self) -> tuple[Path, int]:
        if self._race is None:
            lib = _clang.compile_kernel_library(self._full, file_name=self.file, race=True)
            handle = _load(lib)
            self._race = (lib, handle, _entry_address(handle, self._symbol))
        return self._race[0], self._race[2]

    def _run_locked(self, arrays: dict[int, np.ndarray], grid3, block3, schedule, seed, isolate, timeout,
                    race_check):
        rt = self._rt
        library, entry = self._race_entry() if race_check else (self.library, self._entry)
        nbuf = max([*arrays, *self.sig.buffer_indices], default=-1) + 1  # an absent buffer reads null
        ptrs = (ctypes.c_void_p * max(nbuf, 1))()
        bufs: list[Buffer] = []
        try:
            shared: dict[int, Buffer] = {}  # one array at several indices: one buffer, as in Metal
            for i, a in arrays.items():
                if id(a) in shared:
                    ptrs[i] = shared[id(a)].ptr
                    continue
                out = ctypes.c_void_p()
                slot = rt.enigma_buf_alloc(a.nbytes, ctypes.byref(out))
                if slot < 0 or not out.value:
                    raise KernelError(f"cannot allocate a guarded buffer of {a.nbytes} bytes")
                p = self.sig.buffer(i)
                bufs.append(Buffer(slot, out.value, p.name, i, max(a.itemsize, 1), a.nbytes))
                if a.nbytes:
                    ctypes.memmove(out.value, a.ctypes.data, a.nbytes)
                ptrs[i] = out.value
                shared[id(a)] = bufs[-1]
            err = ErrInfo()
            code = rt.enigma_run(entry, ptrs, (ctypes.c_uint32 * 3)(*grid3),
                                 (ctypes.c_uint32 * 3)(*block3), SCHEDULES[schedule], seed,
                                 int(self.sig.uses_sync),
                                 int(isolate), float(timeout), int(race_check), ctypes.byref(err))
            if code:
                raise launch_error(self, code, err, bufs, library)
            self.threadgroup_memory = int(err.tg_bytes)
            for b in bufs:
                off = rt.enigma_buf_check(b.slot)
                if off != -(2**63):
                    raise KernelError(f"{self.file}: " + oob_text(self, b, off, True) + " (found after the "
                                      "run in the buffer's padding: the thread and line are unknown)")
            for b in bufs:
                a = arrays[b.index]
                writable = any(not self.sig.buffer(i).is_const for i, x in arrays.items() if x is a)
                if writable and a.nbytes and a.flags.writeable:
                    ctypes.memmove(a.ctypes.data, b.ptr, a.nbytes)
        finally:
            for b in bufs:
                rt.enigma_buf_free(b.slot)


_programs: dict[tuple[str, str | None, str, str, str, str], MslProgram] = {}


def compile_msl(source: str, name: str | None = None, file: str = "kernel.metal",
                function_constants: Mapping[Any, Any] | None = None,
                include_dirs: Sequence[str | os.PathLike] = (), *,
                together: Sequence[str] = ()) -> MslProgram:
    """Compile (cached on disk by content) and load kernel `name` of `source` (a template kernel by the
    host_name of its instantiation); `function_constants` ({index or name: value}) gives the values
    of `[[function_constant(i)]]` declarations; `include_dirs` are searched for the source's own
    `#include "..."` headers (an edited header is noticed: its size and mtime are part of the key).

    `together` names other kernels of the same source to compile in the same library: one clang run
    over the source serves them all (a large source such as ggml-metal.metal costs seconds per run),
    and a later `compile_msl(source, other, ..., together=...)` with the same names returns its
    program from that library. Each program still runs only its own kernel."""
    fcs = repr(sorted((str(k), repr(v)) for k, v in (function_constants or {}).items()))
    fingerprint = _headers_fingerprint(include_dirs)
    group = sorted({name or "", *together}) if together else []

    def key(n: str | None) -> tuple[str, str | None, str, str, str, str]:
        return (source, n, file, fcs, fingerprint, "\0".join(group))

    with _lock:
        if key(name) not in _programs:
            if not together:
                _programs[key(name)] = MslProgram(source, name, file, function_constants, include_dirs)
            else:
                names: list[str | None] = [n or None for n in group]
                built = _Library(source, names, file, function_constants, include_dirs)
                for i, n in enumerate(names):
                    _programs[key(n)] = MslProgram(source, n, file, function_constants, include_dirs,
                                                   _shared=(built, i))
        return _programs[key(name)]


def _headers_fingerprint(include_dirs: Sequence[str | os.PathLike]) -> str:
    out = []
    for d in include_dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file():
                st = p.stat()
                out.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# kernels with signature metadata (runtime/FORMAT.md sections 3 and 5): the runtime's device "msl-cpu"

class MslCpuDevice(devices.Device):
    """enigma_runtime device "msl-cpu": a kernel's Metal source compiled by clang with the
    compatibility layer and run on the CPU by the fiber dispatcher. The runtime binds the arguments,
    picks the specialisation, checks `requires` and the launch limits; this device binds the
    Metal argument table (binding.metal_buffers) and runs it. Launch options: schedule, seed,
    isolate, timeout, race_check (see `run_msl`)."""

    name = "msl-cpu"
    options = frozenset({"schedule", "seed", "isolate", "timeout", "race_check"})

    def available(self) -> bool:
        try:
            _clang.find_clang()
        except _clang.ClangNotFound:
            return False
        return True

    def prepare(self, sp: Any) -> MslProgram:
        spec = sp.spec
        file = f"{spec['kernel_name']}.metal"
        source = sp.metal_source
        try:
            return compile_msl(source, spec["kernel_name"], file)
        except (_clang.CompileError, MslError) as e:
            _note_origin(e, source, file, spec)
            raise

    def run(self, handle: Any, bound: Any, grid: tuple[int, int, int], block: tuple[int, int, int],
            **options: Any) -> None:
        prog: MslProgram = handle
        spec = bound.spec
        try:
            prog.run(binding.metal_buffers(bound), grid=grid, block=block, **options)
        except (KernelError, MslError) as e:
            _note_origin(e, prog.source, prog.file, spec)
            raise


DEVICE = MslCpuDevice()
devices.register(DEVICE)  # also found through the entry point enigma_runtime.devices "msl-cpu"


def _note_origin(e: Exception, metal_source: str, file: str, spec: Mapping[str, Any]) -> None:
    note = _python_origin(e, metal_source, file, spec)
    if note and note not in str(e.args[0] if e.args else ""):
        e.args = (f"{e.args[0]}\n  {note}", *e.args[1:])


def run_spec(spec: Mapping[str, Any], metal_source: str, *args: Any, grid: Any = None, block: Any = None,
             schedule: str = "random", seed: int = 0, isolate: bool = True, timeout: float = 60.0,
             race_check: bool = False) -> MslProgram:
    """Run the kernel described by signature `spec` and its Metal source on `args` (argument order)
    through the runtime's "msl-cpu" device; returns the loaded program (e.g. its
    `threadgroup_memory` as declared by the source)."""
    kernel = Kernel.from_spec(dict(spec), None, metal_source)
    return _launch(kernel, args, grid, block, dict(schedule=schedule, seed=seed, isolate=isolate,
                                                   timeout=timeout, race_check=race_check))


def _launch(kernel: Kernel, args: Sequence[Any], grid: Any, block: Any, options: dict[str, Any]
            ) -> MslProgram:
    kernel.launch(args, grid=grid, block=block, device=DEVICE, options=options)
    sp, _ = kernel.select(tuple(args))
    return sp.handle(DEVICE)


def _python_origin(e: Exception, metal_source: str, file: str, spec: Mapping[str, Any]) -> str:
    """"from kernels.py:12" for an error at a .metal line that the emitter tagged `// line 12`."""
    line = getattr(e, "line", 0)
    if not line:
        m = re.search(re.escape(file) + r":(\d+)", str(e))
        line = int(m.group(1)) if m else 0
    lines = metal_source.splitlines()
    if not 0 < line <= len(lines):
        return ""
    m = re.search(r"//\s*line\s+(\d+)\s*$", lines[line - 1])
    return f"from {spec.get('file') or 'the kernel source'}:{m.group(1)}" if m else ""


def run_msl(kernel: Any, *arrays: Any, grid: Sequence[int] | int | None = None,
            block: Sequence[int] | int | None = None, schedule: str = "random", seed: int = 0,
            name: str | None = None, buffers: Mapping[int, Any] | None = None, isolate: bool = True,
            timeout: float = 60.0, race_check: bool = False,
            function_constants: Mapping[Any, Any] | None = None,
            threadgroup_memory: Mapping[int, int] | None = None,
            include_dirs: Sequence[str | os.PathLike] = ()) -> None:
    """Run a Metal kernel on the CPU; written arrays are updated in place.

    `kernel` is a CompiledKernel (anything with `.metal_source` and `.signature`, or an
    enigma_runtime.Kernel with `.spec`; `arrays` are its arguments in order, scalars included;
    grid/block default to the kernel's), or Metal source text
    (`name` picks the kernel function; `arrays` bind the [[buffer(i)]] parameters in increasing
    index order, or pass `buffers={index: array}`). `schedule` orders the threads of a group (and
    the groups): "forward", "reverse" or "random" (seeded by `seed`). `isolate` runs the launch in a
    forked child process so that a crash is reported, never fatal. `race_check` reports threads of a
    group racing on threadgroup memory (a missing barrier). Raw source only: `function_constants`
    ({index or name: value}), `threadgroup_memory` ({i: bytes} for [[threadgroup(i)]] parameters)
    and `include_dirs` (for the source's own `#include "..."` headers).
    """
    if isinstance(kernel, str):
        prog = compile_msl(kernel, name, function_constants=function_constants, include_dirs=include_dirs)
        if buffers is None:
            idx = prog.sig.buffer_indices
            if len(arrays) != len(idx):
                raise TypeError(f"kernel {prog.name} has {len(idx)} buffers ({idx}); "
                                f"got {len(arrays)} arrays")
            buffers = dict(zip(idx, arrays))
        elif arrays:
            raise TypeError("pass the buffers either positionally or as buffers={index: array}, not both")
        if grid is None or block is None:
            raise ValueError("raw Metal source needs grid=... and block=...")
        prog.run(buffers, grid=grid, block=block, schedule=schedule, seed=seed, isolate=isolate,
                 timeout=timeout, race_check=race_check, threadgroup_memory=threadgroup_memory)
        return
    options = dict(schedule=schedule, seed=seed, isolate=isolate, timeout=timeout, race_check=race_check)
    if isinstance(kernel, Kernel):  # loaded from a package: every specialisation, picked by dtypes
        _launch(kernel, arrays, grid, block, options)
        return
    spec = getattr(kernel, "signature", None)
    src = getattr(kernel, "metal_source", None)
    if spec is None or src is None:
        raise TypeError("run_msl takes a CompiledKernel (with .metal_source and .signature), an "
                        "enigma_runtime.Kernel or Metal source text")

    def ints(v: Any) -> bool:  # a launch computed at compile time (not expressions of symbolic sizes)
        return v is not None and all(isinstance(x, (int, np.integer)) for x in v)

    # The signature's grid expressions are evaluated for these arguments by the runtime; the
    # kernel's own grid/block (ints for concrete arguments, expressions like ceil_div(n, 256) for
    # symbolic sizes) are used only when the signature has none.
    if grid is None and spec.get("grid") is None and ints(getattr(kernel, "grid", None)):
        grid = kernel.grid
    if block is None and spec.get("block") is None and ints(getattr(kernel, "block", None)):
        block = kernel.block
    runnable = Kernel.from_spec(dict(spec), getattr(kernel, "ir_json", None), src)
    _launch(runnable, arrays, grid, block, options)


__all__ = ["KernelError", "MslError", "MslProgram", "MslCpuDevice", "compile_msl", "run_msl", "run_spec",
           "SCHEDULES"]
