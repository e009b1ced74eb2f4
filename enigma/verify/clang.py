"""Find a clang that compiles C++ for OpenCL, build kernel libraries with it, cache what it builds.

clang comes from `$ENIGMA_CLANG`, else `clang++-22`, `clang++-19`, `clang++` on PATH, else the PyPI
`ziglang` wheel (which bundles clang). Built files are cached by the sha256 of their source, the
compatibility headers, the flags and the compiler's version, in enigma.cache's `verify` directory
(`$ENIGMA_CACHE_DIR/verify`, else the user cache directory); every write goes to a temporary file
renamed into place (atomic).
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
INCLUDE_DIR = HERE / "include"
RUNTIME_SRC = HERE / "runtime" / "dispatch.cpp"
COMPILE_TIMEOUT = 600  # seconds (the first use of the ziglang clang builds its C runtime: ~1 min)
CANDIDATES = ("clang++-22", "clang++-21", "clang++-20", "clang++-19", "clang++")

# C++ for OpenCL: real address spaces, kernel-scope threadgroup arrays, no double (see docs/verify.md)
MSL_FLAGS = ("-x", "clcpp", "-cl-std=clc++2021", "-cl-no-stdinc",
             "-Xclang", "-cl-ext=-cl_khr_fp64,-__opencl_c_fp64,+cl_khr_fp16,"
             "+__cl_clang_non_portable_kernel_param_types,+__cl_clang_function_pointers",
             "-Wno-unknown-attributes", "-Wno-unused-value", "-ffp-contract=off")
# no tail calls: a check hook called last in a function must return to it (its return address
# names the kernel's line)
OPT_FLAGS = ("-O2", "-fPIC", "-gline-tables-only", "-fno-optimize-sibling-calls")
# Every load and store of the kernel calls the dispatcher (__tsan_read4(addr) ...), which checks it
# against the buffers and threadgroup arrays (out of bounds: an error naming the array and element)
# and, in a race-checking run, records it. clang only marks the functions (sanitize_thread) and
# emits unoptimised IR; LLVM's `opt` then inlines (so that locals become registers, not hooked
# memory), instruments, and only then optimises: a load the optimiser later deletes (its value is
# unused) or sinks into a branch (its value only feeds a select) has been checked already. Atomics
# (volatile accesses in the layer) call the __tsan_volatile_* hooks: bounds only, never a race.
SANITIZE_FLAGS = ("-fsanitize=thread",)
TSAN_OPTIONS = ("-tsan-distinguish-volatile=true", "-tsan-instrument-func-entry-exit=false",
                "-tsan-instrument-memintrinsics=true")
EARLY_PIPELINE = "cgscc(inline),function(sroa),tsan-module,function(tsan),default<O2>"
# without `opt`: clang instruments after its own optimisation (a dead load is not checked)
LATE_FLAGS = ("-fsanitize=thread", *(x for o in TSAN_OPTIONS for x in ("-mllvm", o)))


class ClangNotFound(RuntimeError):
    """No usable clang: the message says how to get one."""


class CompileError(RuntimeError):
    """clang rejected the Metal source; `diagnostics` holds its messages (file:line: error: ...)."""

    def __init__(self, message: str, diagnostics: str = "") -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Clang:
    """A clang driver: `argv` runs it (e.g. ["clang++-19"] or [python, "-m", "ziglang", "clang"])."""

    argv: tuple[str, ...]
    version: str

    @property
    def is_zig(self) -> bool:
        return "ziglang" in self.argv


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


@functools.cache
def find_clang() -> Clang:
    """The clang to use (see the module docstring for the search order)."""
    env = os.environ.get("ENIGMA_CLANG")
    if env:
        argv = env.split()
        v = _version(argv)
        if v is None:
            raise ClangNotFound(f"$ENIGMA_CLANG={env!r} does not run (`{env} --version` failed); "
                                "point it at a clang++ executable, e.g. ENIGMA_CLANG=/usr/bin/clang++-19")
        return Clang(tuple(argv), v)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path and (v := _version([path])):
            return Clang((path,), v)
    try:
        import ziglang  # noqa: F401  (the PyPI wheel that bundles clang)
        argv = [sys.executable, "-m", "ziglang", "clang"]
        if v := _version(argv):
            return Clang(tuple(argv), v)
    except ImportError:
        pass
    raise ClangNotFound(
        "enigma.verify needs clang (C++ for OpenCL mode) to compile Metal source on this machine, and "
        f"found none ({', '.join(CANDIDATES)} on PATH, $ENIGMA_CLANG, the `ziglang` wheel). Install one: "
        "`apt-get install clang-19` (Debian/Ubuntu), or `pip install ziglang`, or set "
        "ENIGMA_CLANG=/path/to/clang++")


def cache_dir() -> Path:
    """enigma.cache's `verify` directory (created): `$ENIGMA_CACHE_DIR/verify` or the user cache."""
    from enigma.cache import cache_dir as shared_cache_dir

    return shared_cache_dir("verify", create=True)


@functools.cache
def shim_digest() -> str:
    """sha256 of every file of the compatibility layer (part of every cache key)."""
    h = hashlib.sha256()
    for p in sorted(INCLUDE_DIR.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(INCLUDE_DIR)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _key(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:32]


def _atomic_move(src: Path, dst: Path) -> None:
    os.replace(src, dst)  # same directory: atomic on POSIX


def _run(cmd: list[str], what: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=COMPILE_TIMEOUT)
    if out.returncode != 0:
        raise CompileError(f"{what} failed:\n{out.stderr.strip()}", out.stderr)
    return out


def runtime_library() -> Path:
    """The dispatcher library (runtime/dispatch.cpp), built once per compiler and cached."""
    clang = find_clang()
    src = RUNTIME_SRC.read_text()
    flags: tuple[str, ...] = ("-O2", "-fPIC", "-shared", "-std=c++17")
    if os.environ.get("ENIGMA_VERIFY_UCONTEXT") == "1":  # force the portable fiber switch (tests)
        flags += ("-DENIGMA_FORCE_UCONTEXT",)
    out = cache_dir() / f"enigma_rt_{_key(src, clang.version, ' '.join(flags))}.so"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        t = Path(tmp)
        argv = list(clang.argv)
        if clang.is_zig:
            argv[-1] = "c++"  # `zig c++` links ordinary C++
        _run([*argv, *flags, str(RUNTIME_SRC), "-o", str(t / "rt.so")], "building the verify dispatcher", t)
        _atomic_move(t / "rt.so", out)
    return out


def include_dir() -> Path:
    """The compatibility headers, copied into the cache under their digest. clang stamps a precompiled
    header with its inputs' paths and mtimes, so a PCH built from the source tree went stale whenever
    the tree was checked out again (a fresh clone) though the headers' contents were the same."""
    d = cache_dir() / f"include_{shim_digest()[:32]}"
    if not d.is_dir():
        with tempfile.TemporaryDirectory(dir=d.parent) as tmp:
            copy = Path(tmp) / "include"
            shutil.copytree(INCLUDE_DIR, copy)
            try:
                os.replace(copy, d)
            except OSError:  # another process made it first
                if not d.is_dir():
                    raise
    return d


def _major(version_line: str) -> str:
    import re

    m = re.search(r"version (\d+)\.", version_line)
    return m.group(1) if m else ""


@functools.cache
def find_opt() -> tuple[str, ...] | None:
    """LLVM's `opt` of the same major version as clang (`$ENIGMA_OPT`, next to clang, `opt-<major>`,
    `opt`), or None: then kernels are instrumented after clang's optimisation (see SANITIZE_FLAGS)."""
    clang = find_clang()
    env = os.environ.get("ENIGMA_OPT")
    if env:
        return tuple(env.split())
    if clang.is_zig:
        return None
    major = _major(clang.version)
    cands: list[str] = []
    exe = shutil.which(clang.argv[0]) or clang.argv[0]
    here = Path(exe).resolve().parent
    cands += [str(here / "opt")]
    cands += [x for x in (shutil.which(f"opt-{major}"), shutil.which("opt")) if x]
    for c in cands:
        if Path(c).exists() and _major(_opt_version(c)) == major:
                return (c,)
    return None


def _opt_version(opt: str) -> str:
    try:
        out = subprocess.run([opt, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return next((ln for ln in out.splitlines() if "version" in ln), "")


def _pch() -> Path | None:
    """A precompiled header of <metal_stdlib> (cuts the per-kernel compile time); None if unsupported."""
    clang = find_clang()
    flags = MSL_FLAGS + OPT_FLAGS + SANITIZE_FLAGS
    key = _key(shim_digest(), clang.version, " ".join(flags), str(include_dir()))
    out = cache_dir() / f"metal_stdlib_{key}.pch"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        t = Path(tmp)
        inc = include_dir()
        cmd = [*clang.argv, *flags, "-Xclang", "-emit-pch", "-I", str(inc), "-c",
               str(inc / "metal_stdlib"), "-o", str(t / "h.pch")]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=t, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        _atomic_move(t / "h.pch", out)
    return out


def preprocess(source: str, file_name: str = "kernel.metal", include_dirs: Sequence[str | os.PathLike] = ()
               ) -> str:
    """`source` with its own macros expanded and its own headers (`#include "utils.h"`, found in
    `include_dirs`) inlined (`clang -E`; line markers kept, so later diagnostics still name
    `file_name`'s and the headers' lines). The compatibility layer defines only its version macros
    here (`__ENIGMA_PREPROCESS__`): nothing of it is expanded into the result. Cached by content,
    the include directories' files (paths and contents, up to PP_HASH_LIMIT bytes) included, so an
    edited header is never stale."""
    clang = find_clang()
    dirs = [str(Path(d).resolve()) for d in include_dirs]
    headers = _dirs_digest(dirs) if dirs else ""  # None: too large to hash on every call
    key = _key(source, shim_digest(), clang.version, " ".join(MSL_FLAGS), file_name, "pp", *dirs,
               headers or "")
    out = cache_dir() / f"pp_{key}.metal"
    if out.exists() and headers is not None:
        return out.read_text()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        t = Path(tmp)
        (t / file_name).write_text(source)
        cmd = [*clang.argv, *MSL_FLAGS, "-E", "-D__ENIGMA_PREPROCESS__", "-I", str(include_dir()),
               *(x for d in dirs for x in ("-I", d)), file_name, "-o", "pp.metal"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=t, timeout=COMPILE_TIMEOUT)
        if r.returncode != 0:
            raise CompileError(f"clang could not preprocess the Metal source:\n{r.stderr.strip()}", r.stderr)
        text = (t / "pp.metal").read_text()
        if headers is not None:
            _atomic_move(t / "pp.metal", out)
    return text


PP_HASH_LIMIT = 64 << 20  # bytes of include directories hashed to reuse a preprocessed source


def _dirs_digest(dirs: Sequence[str]) -> str | None:
    """sha256 of every file (path and content) under `dirs`, or None past PP_HASH_LIMIT bytes (such a
    source is preprocessed on every compile instead)."""
    h, total = hashlib.sha256(), 0
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                total += len(data)
                if total > PP_HASH_LIMIT:
                    return None
                h.update(f"{p}\0{len(data)}\0".encode())
                h.update(data)
    return h.hexdigest()


def compile_kernel_library(source: str, *, file_name: str = "kernel.metal", race: bool = False) -> Path:
    """Compile and link `source` (Metal source plus the generated wrapper) into a shared library whose
    every device/threadgroup access calls the dispatcher's checks (see SANITIZE_FLAGS); the same
    library serves race checking (`race` is accepted for compatibility: it changes nothing).

    Raises CompileError with clang's diagnostics, which name `file_name`:line.
    """
    del race
    clang = find_clang()
    opt = find_opt()
    how = f"early {EARLY_PIPELINE} {' '.join(TSAN_OPTIONS)}" if opt else " ".join(LATE_FLAGS)
    how += " no-static-storage"  # libraries are checked by _check_no_static_storage
    key = _key(source, shim_digest(), clang.version, " ".join(MSL_FLAGS + OPT_FLAGS), how, file_name)
    out = cache_dir() / f"k_{key}.so"
    if out.exists():
        return out
    pch = None if clang.is_zig else _pch()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        t = Path(tmp)
        (t / file_name).write_text(source)
        # the layer is always included (Metal needs no #include for its built-in names)
        inc = ["-include-pch", str(pch)] if pch else ["-include", "metal_stdlib"]
        if opt:
            stage = [*SANITIZE_FLAGS, "-Xclang", "-disable-llvm-passes", "-emit-llvm"]
            obj = "k.bc"
        else:
            stage, obj = list(LATE_FLAGS), "k.o"
        compile_cmd = [*clang.argv, *MSL_FLAGS, *OPT_FLAGS, *stage, *inc, "-I", str(include_dir()), "-c",
                       file_name, "-o", obj]
        try:
            r = subprocess.run(compile_cmd, capture_output=True, text=True, cwd=t, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CompileError(f"clang did not finish compiling {file_name} within {COMPILE_TIMEOUT} s") \
                from None
        if r.returncode != 0:
            raise CompileError(f"clang rejected the Metal source:\n{r.stderr.strip()}", r.stderr)
        if opt:
            _run([*opt, f"-passes={EARLY_PIPELINE}", *TSAN_OPTIONS, "k.bc", "-o", "k2.bc"],
                 "instrumenting and optimising the kernel (LLVM opt)", t)
            obj = "k2.bc"
        if clang.is_zig:
            link = [*clang.argv[:-1], "c++", "-shared", obj, "-o", "k.so", "-lm"]
        else:  # no C runtime start files: the library only needs libm and libgcc (half conversions)
            link = [*clang.argv, "-O2", "-fPIC", "-shared", "-nostdlib", obj, "-o", "k.so", "-lm", "-lgcc"]
        _run(link, "linking the kernel library", t)
        _check_no_static_storage(t / "k.so", file_name)
        _atomic_move(t / "k.so", out)
    return out


def _nm() -> str | None:
    exe = Path(shutil.which(find_clang().argv[0]) or find_clang().argv[0]).resolve().parent
    for name in ("llvm-nm", "nm"):
        if (exe / name).exists():
            return str(exe / name)
        if shutil.which(name):
            return shutil.which(name)
    return None


def _check_no_static_storage(lib: Path, file_name: str) -> None:
    """A threadgroup variable the source rewrite did not see (e.g. declared through a macro) would be a
    plain static array: not poisoned, not reset between threadgroups, not bounds- or race-checked.
    Such a variable is a function-local static with writable storage in the library (`_ZZ...` in
    .bss/.data; Metal has no other writable function-local statics): refuse it by name."""
    import re

    nm = _nm()
    if nm is None:
        return
    out = subprocess.run([nm, "--defined-only", str(lib)], capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "bBdD" and parts[2].startswith("_ZZ"):
            m = re.match(r"_ZZ(\d+)", parts[2])
            fn = parts[2][len(m.group(0)):len(m.group(0)) + int(m.group(1))] if m else "?"
            var = re.search(r"E(\d+)(\w+?)(?:_\d+)?$", parts[2])
            name = var.group(2)[:int(var.group(1))] if var else parts[2]
            raise CompileError(
                f"{file_name}: threadgroup variable `{name}` in `{fn}` is declared in a form enigma.verify "
                "could not rewrite (e.g. written by a macro), so its accesses could not be checked; "
                "declare it in the kernel's source text: `threadgroup T name[N];`")

