"""Apple's Metal toolchain through `xcrun`: each source compiles to AIR, the AIR files link into one
.metallib (docs/build.md, "What lands in the wheel"):

    xcrun -sdk macosx metal -std=metal3.1 -mmacosx-version-min=14.0 -fno-fast-math -Wall -c k.metal -o k.air
    xcrun -sdk macosx metallib a.air b.air -o kernels.metallib

The flags come from `enigma.options.CompileOptions.compile_flags()` (Apple's spelling of the language
version, the deployment target, precise math). `compile_air` caches .air files by sha256(source, flags,
`xcrun -sdk macosx metal --version`), written atomically (temp file + os.replace) so concurrent builds
never see a partial file. The compiler's warnings (-Wall) are shown as `XcrunWarning`s, also when the
.air comes from the cache. Any failure raises `XcrunError`, whose message starts with "xcrun exit code
error" and carries the tool's stderr, the diagnosis command and the known fixes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from enigma.errors import EnigmaError
from enigma.options import CompileOptions

DIAGNOSE = "xcrun -sdk macosx metal -v"
FIXES = (
    "Command Line Tools alone have no Metal compiler: install Xcode, then "
    "`sudo xcode-select --switch /Applications/Xcode.app`",
    "Xcode 26 or newer (\"missing Metal Toolchain\"): `xcodebuild -downloadComponent MetalToolchain`",
    "off macOS there is no Metal toolchain: compile with emit_only=True (the default off macOS)",
)
PathLike = str | os.PathLike
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class XcrunError(EnigmaError, RuntimeError):
    """The Metal toolchain is missing or one of its tools failed."""

    def __init__(self, what: str, *, command: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        self.command, self.returncode, self.stderr = list(command), returncode, stderr
        msg = f"xcrun exit code error: {what}"
        if command:
            msg += f"\n  command: {' '.join(command)}"
        if returncode is not None:
            msg += f"\n  exit code: {returncode}"
        if stderr.strip():
            msg += "\n  stderr:\n" + "\n".join("    " + ln for ln in stderr.strip().splitlines())
        msg += f"\n  diagnose: {DIAGNOSE}\n  known fixes:\n" + "\n".join(f"    - {f}" for f in FIXES)
        super().__init__(msg)


class XcrunWarning(UserWarning):
    """The Metal compiler accepted a source with warnings (-Wall); the message carries them."""


def _xcrun() -> str:
    path = shutil.which("xcrun")
    if path is None:
        raise XcrunError("xcrun not found on PATH (the Metal toolchain needs macOS with Xcode)")
    return path


def _run(args: Sequence[str], what: str) -> subprocess.CompletedProcess:
    cmd = [_xcrun(), "-sdk", "macosx", *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise XcrunError(f"{what}: cannot run xcrun ({e})", command=cmd) from e
    if p.returncode != 0:
        raise XcrunError(what, command=["xcrun", "-sdk", "macosx", *args], returncode=p.returncode,
                         stderr=p.stderr or p.stdout)
    return p


def probe() -> str:
    """Path of the `metal` compiler (`xcrun -sdk macosx --find metal`); XcrunError when there is none."""
    return _run(["--find", "metal"], "the Metal compiler was not found").stdout.strip()


_versions: dict[tuple[str, str], str] = {}


def forget_versions() -> None:
    """Forget the probed compiler versions (after the toolchain changed, e.g. PATH or DEVELOPER_DIR)."""
    _versions.clear()


def metal_version() -> str:
    """`xcrun -sdk macosx metal --version` output (once per xcrun and DEVELOPER_DIR in a process)."""
    key = (_xcrun(), os.environ.get("DEVELOPER_DIR", ""))
    if key not in _versions:
        probe()
        _versions[key] = _run(["metal", "--version"], "`metal --version` failed").stdout.strip()
    return _versions[key]


def _options(options: CompileOptions | None, msl_version: str, macos_target: str,
             fast_math: bool) -> CompileOptions:
    return options if options is not None else CompileOptions(msl_version, macos_target, 0, fast_math)


def compile_flags(msl_version: str = "3.1", macos_target: str = "14.0", fast_math: bool = False, *,
                  options: CompileOptions | None = None) -> list[str]:
    """`metal -c` flags (CompileOptions.compile_flags; `options` wins over the other arguments)."""
    return _options(options, msl_version, macos_target, fast_math).compile_flags()


def _show_warnings(name: str, text: str, on_warning: Callable[[str], None] | None) -> None:
    if text.strip():
        message = f"xcrun metal: warnings compiling {name}.metal:\n" + "\n".join(
            "  " + ln for ln in text.strip().splitlines())
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(XcrunWarning(message), stacklevel=3)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad source name {name!r}: use letters, digits, '_', '.', '-' (no path separators)")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def air_key(source: str, flags: Sequence[str], version: str) -> str:
    """The .air cache key: sha256 over the source, the flags and the compiler's version output."""
    h = hashlib.sha256()
    for part in (source, "\0".join(flags), version):
        h.update(part.encode())
        h.update(b"\0\1")
    return h.hexdigest()


def compile_air(source: str, name: str, cache_dir: PathLike | None, *,
                out_dir: PathLike | None = None, msl_version: str = "3.1", macos_target: str = "14.0",
                fast_math: bool = False, options: CompileOptions | None = None,
                on_warning: Callable[[str], None] | None = None) -> Path:
    """Compile one MSL source to AIR with `options` (or the three options given one by one). With
    `cache_dir`, the result is `<cache_dir>/<name>-<key>.air` and reused when present; without, it is
    `<out_dir>/<name>.air`. Returns the .air path. Compiler warnings are shown: given to `on_warning`
    (e.g. a build's log; safe from worker threads), else as an XcrunWarning."""
    _check_name(name)
    flags = compile_flags(options=_options(options, msl_version, macos_target, fast_math))
    if cache_dir is not None:
        target = Path(cache_dir) / f"{name}-{air_key(source, flags, metal_version())[:32]}.air"
        if target.is_file():
            log = target.with_name(target.name + ".warnings")
            _show_warnings(name, log.read_text() if log.is_file() else "", on_warning)
            return target
    elif out_dir is not None:
        target = Path(out_dir) / f"{name}.air"
        probe()
    else:
        raise ValueError("compile_air needs cache_dir or out_dir")
    with tempfile.TemporaryDirectory(prefix="enigma-metal-") as tmp:
        src, air = Path(tmp) / f"{name}.metal", Path(tmp) / f"{name}.air"
        src.write_text(source)
        p = _run(["metal", *flags, "-c", str(src), "-o", str(air)], f"compiling {name}.metal to AIR failed")
        if not air.is_file():
            raise XcrunError(f"`metal` exited 0 but wrote no {air.name}", command=["metal", "-c", str(src)])
        said = (p.stderr or "").replace(str(src), f"{name}.metal")
        if cache_dir is not None and said.strip():  # before the .air: a cache hit shows them again
            _atomic_write(target.with_name(target.name + ".warnings"), said.encode())
        _atomic_write(target, air.read_bytes())
    _show_warnings(name, said, on_warning)
    return target


def link_metallib(air_paths: Iterable[PathLike], out: PathLike) -> Path:
    """Link .air files into one .metallib with `xcrun metallib`, never through the `metal` driver:
    `metallib` keeps every module and takes the library's OS floor from the first .air (compiled with
    `-mmacosx-version-min`), whereas linking with `xcrun metal` stamps the SDK's own macOS version
    (e.g. macOS 26) onto a library meant for an older macOS, which then refuses to load it (mlx-node
    issue 135 measured the first; ml-explore/mlx PR 3501 and ollama PR 16053 hit the second)."""
    airs = [str(p) for p in air_paths]
    if not airs:
        raise ValueError("link_metallib needs at least one .air file")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="enigma-metallib-", dir=out.parent) as tmp:
        lib = Path(tmp) / out.name
        _run(["metallib", *airs, "-o", str(lib)], f"linking {out.name} failed")
        if not lib.is_file():
            raise XcrunError(f"`metallib` exited 0 but wrote no {out.name}", command=["metallib", *airs])
        os.replace(lib, out)
    return out


def build_metallib(sources: dict[str, str], work_dir: PathLike | None, *, msl_version: str = "3.1",
                   macos_target: str = "14.0", fast_math: bool = False,
                   cache_dir: PathLike | None = None, name: str = "kernels.metallib",
                   options: CompileOptions | None = None) -> Path:
    """Compile every `{name: msl_source}` to AIR with `options` (into `work_dir`, or through the cache)
    and link them into `<work_dir>/kernels.metallib`; the .metal files are kept in `work_dir` for
    inspection. With `work_dir=None` everything goes through `cache_dir` (required then): the library
    is `<cache_dir>/<stem>-<key>.metallib`, keyed by its .air files, and no directory is left behind."""
    if not sources:
        raise ValueError("build_metallib needs at least one source")
    opts = _options(options, msl_version, macos_target, fast_math)
    if work_dir is None and cache_dir is None:
        raise ValueError("build_metallib needs work_dir or cache_dir")
    work = Path(work_dir) if work_dir is not None else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    probe()
    airs = []
    for src_name, source in sources.items():
        stem = src_name[:-6] if src_name.endswith(".metal") else src_name
        _check_name(stem)
        if work is not None:
            (work / f"{stem}.metal").write_text(source)
        airs.append(compile_air(source, stem, cache_dir, out_dir=work, options=opts))
    if work is not None:
        return link_metallib(airs, work / name)
    assert cache_dir is not None
    stem = name[:-9] if name.endswith(".metallib") else name
    key = air_key("\0".join(p.name for p in airs), [], "metallib")[:32]  # the .air names hold their keys
    out = Path(cache_dir) / f"{stem}-{key}.metallib"
    return out if out.is_file() else link_metallib(airs, out)
