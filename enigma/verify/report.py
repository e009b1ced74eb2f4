"""The reports of a failed CPU launch: the dispatcher's error record (ErrInfo, shared with
runtime/dispatch.cpp) turned into a KernelError that names the kernel's file and line (or its own
header's), the thread and threadgroup, the array and element of an out-of-bounds or misaligned
access, and the two threads of a data race."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from enigma.verify import clang as _clang
from enigma.verify.msl import MSL_SIZES, KernelSig
from enigma.verify.threadgroup import ThreadgroupVar


class KernelError(RuntimeError):
    """The kernel failed while running on the CPU (the message names the .metal line when known)."""

    def __init__(self, message: str, line: int = 0, thread: tuple[int, ...] | None = None,
                 group: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.line, self.thread, self.group = line, thread, group


class ErrInfo(ctypes.Structure):
    """The dispatcher's error record (`ErrInfo` in runtime/dispatch.cpp: the same layout, checked when
    the dispatcher loads)."""

    _fields_ = [("code", ctypes.c_int32), ("line", ctypes.c_int32), ("is_write", ctypes.c_int32),
                ("have_thread", ctypes.c_int32), ("tid", ctypes.c_uint32 * 3), ("gid", ctypes.c_uint32 * 3),
                ("addr", ctypes.c_uint64), ("rip", ctypes.c_uint64), ("so_base", ctypes.c_uint64),
                ("buffer", ctypes.c_int32), ("sig", ctypes.c_int32), ("offset", ctypes.c_int64),
                ("so_path", ctypes.c_char * 512), ("msg", ctypes.c_char * 2048),
                ("tg_bytes", ctypes.c_uint64), ("tg_var", ctypes.c_int32), ("pad_", ctypes.c_int32),
                ("tg_size", ctypes.c_uint64), ("other", ctypes.c_uint32 * 3), ("other_write", ctypes.c_int32),
                ("other_gid", ctypes.c_uint32 * 3), ("pad2_", ctypes.c_int32)]


@dataclass
class Buffer:
    """One guarded buffer of a launch: the dispatcher's slot and address, the parameter it binds."""

    slot: int
    ptr: int
    param: str
    index: int
    itemsize: int
    nbytes: int


class Program(Protocol):
    """What a report needs of the program that failed (harness.MslProgram)."""

    file: str
    sig: KernelSig
    threadgroup_vars: list[ThreadgroupVar]
    include_dirs: list[str]

    @property
    def name(self) -> str: ...


def oob_text(prog: Program, b: Buffer, off: int, is_write: bool | None) -> str:
    kind = "" if is_write is None else ("write" if is_write else "read")
    p = prog.sig.buffer(b.index)
    elem = off // b.itemsize if off >= 0 else -((-off + b.itemsize - 1) // b.itemsize)
    return (f"out-of-bounds {kind} access to [[buffer({b.index})]] {p.name} (`{p.type_text}`): "
            f"byte offset {off}, element {elem}, but the buffer holds {b.nbytes // b.itemsize} elements "
            f"({b.nbytes} bytes)").replace("  ", " ")


def tg_oob_text(prog: Program, v: ThreadgroupVar, off: int, size: int, is_write: bool) -> str:
    itemsize = MSL_SIZES.get(v.type.replace("metal::", ""))
    elem = f", element {off // itemsize} of {size // itemsize}" if itemsize and off >= 0 else ""
    return (f"out-of-bounds {'write' if is_write else 'read'} access to threadgroup array {v.name} "
            f"(`threadgroup {v.type} {v.name}{v.dims}`, declared at line {v.line}): byte offset "
            f"{off}{elem} ({size} bytes)")


def launch_error(prog: Program, code: int, e: ErrInfo, bufs: list[Buffer], library: Path) -> Exception:
    if code < 0:
        what = "fork" if code == -2 else "map memory"
        return KernelError(f"{prog.file}: the dispatcher could not {what} to run kernel {prog.name} "
                           "(out of memory or processes?); try isolate=False")
    thread = tuple(e.tid) if e.have_thread else None
    group = tuple(e.gid) if e.have_thread else None
    where = f" (thread_position_in_threadgroup {thread}, threadgroup {group})" if thread else ""
    msg = e.msg.decode(errors="replace")
    if code == 1:
        if "thread_position_in_threadgroup" in msg:
            where = f" (threadgroup {group})" if group else ""
        return KernelError(f"{prog.file}:{e.line}: {msg}{where}" if e.line else msg + where, e.line,
                           thread, group)
    where_file, line = symbolize(prog, e, library)
    loc = f"{where_file}:{line}: " if line else f"{prog.file}: "
    if where_file != prog.file:
        line = 0  # KernelError.line is a line of the .metal file; the message names the header
    if code == 5 and 0 <= e.tg_var < len(prog.threadgroup_vars):
        v = prog.threadgroup_vars[e.tg_var]  # ids are list positions (parameters after declarations)
        itemsize = MSL_SIZES.get(v.type.replace("metal::", ""))
        elem = f"{v.name}[{e.offset // itemsize}]" if itemsize else f"byte {e.offset} of {v.name}"
        other = ("other threads" if e.other[0] == 0xFFFFFFFF else
                 f"thread_position_in_threadgroup {tuple(e.other)}")
        return KernelError(
            f"{loc}data race on threadgroup memory {elem} (`threadgroup {v.type} {v.name}{v.dims}`, line "
            f"{v.line}): thread_position_in_threadgroup {thread} of threadgroup {group} "
            f"{'writes' if e.is_write else 'reads'} it here, but {other} "
            f"{'wrote' if e.other_write else 'read'} it since the last threadgroup_barrier; put a "
            f"threadgroup_barrier between the two accesses", line, thread, group)
    if code == 5:
        b = next((b for b in bufs if b.slot == e.buffer), None)
        p = prog.sig.buffer(b.index) if b else None
        what = (f"[[buffer({b.index})]] {p.name} element {e.offset // b.itemsize}" if b and p
                else f"device memory (byte {e.offset})")
        same = tuple(e.other_gid) == group
        return KernelError(
            f"{loc}data race on {what}: thread_position_in_threadgroup {thread} of threadgroup {group} "
            f"{'writes' if e.is_write else 'reads'} it here, but thread_position_in_threadgroup "
            f"{tuple(e.other)} of threadgroup {tuple(e.other_gid)} "
            f"{'wrote' if e.other_write else 'read'} it "
            + ("since the last threadgroup_barrier" if same else
               "(threads of different threadgroups are never ordered: use atomics or separate launches)"),
            line, thread, group)
    if code == 3:
        how = f" ({msg})" if msg else ""
        return KernelError(f"{loc}kernel {prog.name} did not finish within the timeout{how}{where}", line,
                           thread, group)
    if code == 2:
        b = next((b for b in bufs if b.slot == e.buffer), None)
        if msg.startswith("misaligned "):
            size = int(msg.split()[1])
            kind = "write" if e.is_write else "read"
            if b is not None:
                p = prog.sig.buffer(b.index)
                what = f"[[buffer({b.index})]] {b.param} (`{' '.join(p.type_text.split())}`)"
            elif 0 <= e.tg_var < len(prog.threadgroup_vars):
                what = f"threadgroup {prog.threadgroup_vars[e.tg_var].name}"
            else:
                what = "memory"
            text = (f"misaligned {size}-byte {kind} of {what} at byte offset {e.offset}: Metal requires "
                    f"a {size}-byte vector access at a multiple of {size} bytes (undefined behaviour "
                    "otherwise; use a packed_ type or scalar accesses for unaligned data)")
        elif b is not None:
            text = oob_text(prog, b, e.offset, bool(e.is_write))
        elif 0 <= e.tg_var < len(prog.threadgroup_vars):
            text = tg_oob_text(prog, prog.threadgroup_vars[e.tg_var], e.offset, int(e.tg_size),
                                     bool(e.is_write))
        elif msg:
            text = msg
        else:
            names = {4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE (integer division "
                     "by zero?)", 11: "SIGSEGV"}
            text = (f"{names.get(e.sig, f'signal {e.sig}')}: invalid memory access at address "
                    f"{e.addr:#x}" if e.sig in (7, 11) else names.get(e.sig, f"signal {e.sig}"))
        return KernelError(f"{loc}{text}{where}", line, thread, group)
    return KernelError(f"{loc}kernel {prog.name} crashed the isolated run (signal {e.sig}){where}", line,
                       thread, group)


def symbolize(prog: Program, e: ErrInfo, library: Path) -> tuple[str, int]:
    """Where the faulting instruction is (from the library's line tables): the innermost inlined
    frame in the kernel's own source, `(file, line)`, or in one of its own headers
    (`("utils.h", line)`, a path relative to its include directory when it is under one),
    skipping the compatibility layer's frames; `(file, 0)` when unknown."""
    none = (prog.file, 0)
    if not e.rip or not e.so_path or Path(e.so_path.decode()).resolve() != library.resolve():
        return none
    argv = symbolizer_argv(library, e.rip - e.so_base)
    if argv is None:
        return none
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return none
    layer = str(_clang.include_dir())
    for path, ln in re.findall(r"^(.+?):(\d+)(?::\d+)?\s*$", out, re.M):
        if path.startswith(layer) or path.startswith("<enigma entry") or int(ln) == 0:
            continue
        if Path(path).name == prog.file or path == prog.file:
            return prog.file, int(ln)
        return header_name(prog, path), int(ln)
    return none


def header_name(prog: Program, path: str) -> str:
    for d in prog.include_dirs:
        try:
            return str(Path(path).resolve().relative_to(Path(d).resolve()))
        except ValueError:
            continue
    return Path(path).name


def symbolizer_argv(library: Path, offset: int) -> list[str] | None:
    """A command printing the source lines (innermost inlined frame first) of `offset` in `library`:
    llvm-symbolizer (next to clang, or on PATH), else llvm-addr2line or GNU addr2line (binutils)."""
    clang = _clang.find_clang()
    exe = Path(clang.argv[0])
    suffix = re.search(r"-\d+$", exe.name)
    ver = suffix.group(0) if suffix else ""
    here = exe.resolve().parent if exe.is_absolute() else None
    for name in (f"llvm-symbolizer{ver}", "llvm-symbolizer"):
        tool = shutil.which(name) or (str(here / name) if here and (here / name).exists() else None)
        if tool:
            return [tool, f"--obj={library}", hex(offset)]
    for name in (f"llvm-addr2line{ver}", "llvm-addr2line", "addr2line"):
        tool = shutil.which(name)
        if tool:
            return [tool, "-i", "-e", str(library), hex(offset)]
    return None
