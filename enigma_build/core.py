"""The backend-agnostic build: discover -> compile (cached; .air files in parallel) -> render -> report.

The adapters (hatch.py, setuptools.py) and the CLI only decide where the files go.

Caching: a package's finished `_enigma/` files are stored under `cache_dir/packages/<key>/`, the key
hashing the kernel module files, the enigma compiler's own sources and the settings that change the
output. A warm rebuild reads them back without importing enigma or any kernel module.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enigma_build import discover
from enigma_build.config import ConfigError, Settings, unknown_key_message
from enigma_build.discover import Found
from enigma_build.leaf import enigma_leaf

CACHE_SCHEMA = "enigma-build-2"
Log = Callable[[str], None]


class BuildError(Exception):
    """One or more kernels failed; the message lists every failure with its file:line."""


@dataclass
class Record:
    """One compiled specialisation (the attributes enigma.artifacts reads from a CompiledKernel)."""

    kernel_name: str
    metal_source: str
    signature: dict[str, Any]
    ir_json: dict[str, Any]


@dataclass
class KernelOutcome:
    found: Found
    records: list[Record] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class PackageBuild:
    name: str
    files: dict[str, bytes]  # the files of <package>/_enigma/
    kernels: list[str]
    cached: bool
    metallib: bool


@dataclass
class BuildResult:
    packages: list[PackageBuild]
    seconds: float

    @property
    def has_metallib(self) -> bool:
        return any(p.metallib for p in self.packages)


# ---------------------------------------------------------------------------------------------------
# compile one kernel

def _relativise(rec: Record, f: Found) -> Record:
    """Build-directory independent records: the user's file as `pkg/module.py`, never an absolute path."""
    absolute = str(f.path)
    sig = dict(rec.signature)
    sig["file"] = f.rel
    ir = dict(rec.ir_json)
    if "file" in ir:
        ir["file"] = f.rel
    return Record(rec.kernel_name, rec.metal_source.replace(absolute, f.rel), sig, ir)


def _to_record(ck: Any) -> Record:
    return Record(ck.kernel_name, ck.metal_source, dict(ck.signature), dict(ck.ir_json))


def compile_found(f: Found, settings: Settings) -> KernelOutcome:
    """Load `f`'s module (once per process) and compile every specialisation of the kernel."""
    t0 = time.perf_counter()
    try:
        (_, obj), = discover.load([f])
        from enigma_build import frontend
        records = [_relativise(_to_record(ck), f) for ck in frontend.compile_all(obj, settings)]
        if not records:
            raise BuildError("no specialisation was compiled")
        return KernelOutcome(f, records, time.perf_counter() - t0)
    except discover.DiscoveryError as e:
        return KernelOutcome(f, [], time.perf_counter() - t0, str(e))
    except Exception as e:
        return KernelOutcome(f, [], time.perf_counter() - t0, _describe(e, f))


def _describe(e: BaseException, f: Found) -> str:
    msg = f"{type(e).__name__}: {e}"
    # point at the innermost frame in the user's kernel file when the error does not say where
    if f.rel not in msg and str(f.path) not in msg:
        lines = [fr.lineno for fr in traceback.extract_tb(e.__traceback__) if fr.filename == str(f.path)]
        if lines:
            msg = f"{f.rel}:{lines[-1]}: {msg}"
    return msg.replace(str(f.path), f.rel)


def compile_many(found: list[Found], settings: Settings, log: Log) -> list[KernelOutcome]:
    """Compile every kernel, logging one line each; all of them run even when some fail.

    Tracing runs serially in this process: the tracer keeps global state (no threads), and two
    forked workers measured between 1.3x slower and 1.3x faster than serial for 10-40 kernels on
    2 cores (a kernel traces in ~5 ms; bench/build_speed.py), i.e. at most tens of ms either way.
    The parallel part of a build is the .air compilation (`jobs` xcrun processes at once)."""
    width = max((len(f.name) for f in found), default=0)
    discover.load(found)  # a kernel module that fails to import fails the build here, once
    outcomes = []
    for f in found:
        o = compile_found(f, settings)
        status = f"{o.seconds * 1e3:7.1f} ms" if o.error is None else "  FAILED"
        spec = f" ({len(o.records)} specialisations)" if len(o.records) > 1 else ""
        log(f"enigma: {o.found.name:<{width}} {o.found.where}  {status}{spec}")
        outcomes.append(o)
    return outcomes


# ---------------------------------------------------------------------------------------------------
# the package-level cache

def _enigma_fingerprint() -> str:
    """Hash of the enigma compiler's sources (its version alone misses development edits)."""
    spec = importlib.util.find_spec("enigma")
    h = hashlib.sha256()
    for loc in (spec.submodule_search_locations or []) if spec else []:
        for dirpath, dirs, files in os.walk(loc):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".h", ".hpp", ".metal")):
                    p = Path(dirpath, name)
                    h.update(p.relative_to(loc).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


_FINGERPRINT: str | None = None


def cache_key(package: str, found: list[Found], settings: Settings) -> str:
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = _enigma_fingerprint()
    h = hashlib.sha256()
    parts = {
        "schema": CACHE_SCHEMA, "enigma": _FINGERPRINT, "package": package,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "options": settings.options.hash(), "emit_only": settings.emit_only,
        "vec_width": {f.name: settings.vec_width_of(f.name) for f in found},
        "kernels": [[f.rel, f.name, f.line] for f in found],
        "files": {f.rel: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in found},
    }
    if not settings.emit_only:
        parts["toolchain"] = _toolchain_id()
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()


def _toolchain_id() -> str:
    try:
        from enigma.toolchain import xcrun
    except ImportError:
        return "none"
    try:
        return xcrun.metal_version()
    except Exception:
        return "unavailable"  # the metallib step reports the toolchain error


def _cache_dir(settings: Settings, key: str) -> Path:
    return enigma_leaf("cache").cache_dir("packages", root=settings.cache_dir) / key[:2] / key


def cache_read(settings: Settings, key: str) -> dict[str, bytes] | None:
    d = _cache_dir(settings, key)
    index = d / "index.json"
    try:
        names = json.loads(index.read_text())
        files = {n: (d / n).read_bytes() for n in names}
    except (OSError, ValueError):
        return None
    return files


def cache_write(settings: Settings, key: str, files: dict[str, bytes]) -> None:
    """Atomic: a complete entry appears under its final name or not at all (concurrent builds race
    harmlessly: the loser's identical entry is dropped)."""
    d = _cache_dir(settings, key)
    if (d / "index.json").exists():
        return
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
        for n, data in files.items():
            (tmp / n).write_bytes(data)
        (tmp / "index.json").write_text(json.dumps(sorted(files)))
        try:
            os.replace(tmp, d)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # an unwritable cache never fails a build


# ---------------------------------------------------------------------------------------------------
# the build

def _metallib(records: list[Record], settings: Settings, log: Log) -> bytes:
    """One .air per specialisation (in parallel: the work is in xcrun subprocesses; cached by the
    toolchain module under cache_dir/air), linked into one .metallib by `xcrun metallib` (see
    xcrun.link_metallib: it keeps every module and takes the OS floor from the first .air, which was
    compiled with -mmacosx-version-min = macos-target; linking through `xcrun metal` would stamp the
    SDK's macOS instead)."""
    from enigma.cache import cache_dir
    from enigma.toolchain import xcrun
    air_cache = cache_dir("air", root=settings.cache_dir)
    check_toolchain()  # probe once, before the threads

    said: list[str] = []  # the compiler's -Wall warnings, logged after the pool (list.append is atomic)

    def air(r: Record) -> Path:
        return xcrun.compile_air(r.metal_source, r.kernel_name, air_cache, on_warning=said.append,
                                 options=settings.options.replace(vec_width=r.signature.get("vec_width", 0)))

    with cf.ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
        futures = [pool.submit(air, r) for r in records]
        airs, errors = [], []
        for r, fut in zip(records, futures):
            try:
                airs.append(fut.result())
            except Exception as e:
                errors.append(f"  {r.signature.get('name')} ({r.signature.get('file')}:"
                              f"{r.signature.get('line')}): {e}")
    for message in said:
        log(f"enigma: warning: {message}")
    if errors:
        raise BuildError(f"{len(errors)} of {len(records)} Metal sources failed to compile:\n"
                         + "\n".join(errors))
    with tempfile.TemporaryDirectory(prefix="enigma-metallib-") as work:
        return xcrun.link_metallib(airs, Path(work) / "kernels.metallib").read_bytes()


def build_package(package: str, found: list[Found], settings: Settings, log: Log) -> PackageBuild:
    key = cache_key(package, found, settings)
    names = [f.name for f in found]
    files = cache_read(settings, key)
    if files is not None:
        log(f"enigma: {package}: {len(found)} kernels from the cache ({key[:12]})")
        return PackageBuild(package, files, names, True, "kernels.metallib" in files)
    outcomes = compile_many(found, settings, log)
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        lines = "\n".join(f"  {o.found.name} ({o.found.where}): {o.error}" for o in failed)
        raise BuildError(f"{len(failed)} of {len(outcomes)} kernels of {package!r} failed to compile:\n"
                         f"{lines}")
    records = [r for o in outcomes for r in o.records]
    metallib = None
    if not settings.emit_only and records:
        t0 = time.perf_counter()
        metallib = _metallib(records, settings, log)
        log(f"enigma: {package}: kernels.metallib ({len(records)} .air) {time.perf_counter() - t0:.2f} s")
    from enigma.artifacts import render
    sources = {f.rel: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in found}
    files = render(package, records, metallib=metallib, msl_version=settings.options.msl_version,
                   macos_target=settings.options.macos_target, sources=sources)
    cache_write(settings, key, files)
    return PackageBuild(package, files, names, False, metallib is not None)


NO_METALLIB_HINT = ("  or build without a .metallib (the runtime then compiles the shipped Metal source "
                    "on the Mac): ENIGMA_EMIT_ONLY=1, emit-only = true in [tool.enigma], or --emit-only")


def check_toolchain() -> None:
    """BuildError (with the fixes) when Apple's Metal compiler cannot run here."""
    from enigma.toolchain import xcrun
    try:
        xcrun.metal_version()
    except xcrun.XcrunError as e:
        raise BuildError(f"{e}\n{NO_METALLIB_HINT}") from e


def check_vec_width(settings: Settings, found: list[Found]) -> None:
    """Every name in [tool.enigma.vec-width] must be a kernel of the project."""
    names = sorted({f.name for f in found})
    for name, _ in settings.vec_width:
        if name not in names:
            msg = unknown_key_message(name, tuple(names), "tool.enigma.vec-width")
            raise ConfigError(msg.replace("unknown key", "no kernel named", 1)
                              .replace("valid keys", "the project's kernels"))


def build(settings: Settings, hints: Iterable[str] = (), *, log: Log | None = None) -> BuildResult:
    """Discover and compile every kernel of the project; artifacts in memory, per package."""
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    if not settings.emit_only:
        check_toolchain()  # at once, not after compiling every kernel
    found = discover.scan(settings, hints)
    check_vec_width(settings, found)
    by_pkg: dict[str, list[Found]] = {}
    for f in found:
        by_pkg.setdefault(f.package, []).append(f)
    if not found:
        log("enigma: no @enigma.kernel or @enigma.jit functions found")
    packages = [build_package(p, fs, settings, log) for p, fs in by_pkg.items()]
    result = BuildResult(packages, time.perf_counter() - t0)
    log(f"enigma: {len(found)} kernels in {len(packages)} package(s), "
        f"{'metallib' if result.has_metallib else 'emit-only'}, {result.seconds:.2f} s")
    return result


def write(result: BuildResult, package_dir: Callable[[str], Path]) -> dict[str, list[Path]]:
    """Write each package's `_enigma/` into `package_dir(name)`; returns the written files."""
    out = {}
    for p in result.packages:
        d = replace_dir(Path(package_dir(p.name)) / "_enigma", p.files)
        out[p.name] = [d / n for n in sorted(p.files)]
    return out


def replace_dir(out: Path, files: dict[str, bytes]) -> Path:
    """Make directory `out` hold exactly `files` (stale artifacts of removed kernels go away). Kept
    here rather than importing enigma.artifacts so a warm build never imports the compiler."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise BuildError(f"artifact file name {name!r} is not a bare file name")
        (tmp / name).write_bytes(data)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
