"""Apple's Metal toolchain through `xcrun`: each source compiles to AIR, the AIR files link into one
.metallib (docs/compile-api.md, "Metal facts the compiler relies on"):

    xcrun -sdk macosx metal -std=metal3.1 -mmacosx-version-min=14.0 -fno-fast-math -Wall -c k.metal -o k.air
    xcrun -sdk macosx metallib a.air b.air -o kernels.metallib

`compile_air` caches .air files by sha256(source, flags, `xcrun -sdk macosx metal --version`), written
atomically (temp file + os.replace) so concurrent builds never see a partial file. Any failure raises
`XcrunError`, whose message starts with "xcrun exit code error" and carries the tool's stderr, the
diagnosis command and the known fixes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from enigma.errors import EnigmaError

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


def metal_version() -> str:
    """`xcrun -sdk macosx metal --version` output (once per xcrun and DEVELOPER_DIR in a process)."""
    key = (_xcrun(), os.environ.get("DEVELOPER_DIR", ""))
    if key not in _versions:
        probe()
        _versions[key] = _run(["metal", "--version"], "`metal --version` failed").stdout.strip()
    return _versions[key]


def compile_flags(msl_version: str = "3.1", macos_target: str = "14.0", fast_math: bool = False) -> list[str]:
    return [f"-std=metal{msl_version}", f"-mmacosx-version-min={macos_target}",
            "-ffast-math" if fast_math else "-fno-fast-math", "-Wall"]


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
                fast_math: bool = False) -> Path:
    """Compile one MSL source to AIR. With `cache_dir`, the result is `<cache_dir>/<name>-<key>.air` and
    reused when present; without, it is `<out_dir>/<name>.air`. Returns the .air path."""
    _check_name(name)
    flags = compile_flags(msl_version, macos_target, fast_math)
    if cache_dir is not None:
        target = Path(cache_dir) / f"{name}-{air_key(source, flags, metal_version())[:32]}.air"
        if target.is_file():
            return target
    elif out_dir is not None:
        target = Path(out_dir) / f"{name}.air"
        probe()
    else:
        raise ValueError("compile_air needs cache_dir or out_dir")
    with tempfile.TemporaryDirectory(prefix="enigma-metal-") as tmp:
        src, air = Path(tmp) / f"{name}.metal", Path(tmp) / f"{name}.air"
        src.write_text(source)
        _run(["metal", *flags, "-c", str(src), "-o", str(air)], f"compiling {name}.metal to AIR failed")
        if not air.is_file():
            raise XcrunError(f"`metal` exited 0 but wrote no {air.name}", command=["metal", "-c", str(src)])
        _atomic_write(target, air.read_bytes())
    return target


def link_metallib(air_paths: Iterable[PathLike], out: PathLike) -> Path:
    """Link .air files into one .metallib with `xcrun metallib` (never `metal`, which can drop modules)."""
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


def build_metallib(sources: dict[str, str], work_dir: PathLike, *, msl_version: str = "3.1",
                   macos_target: str = "14.0", fast_math: bool = False,
                   cache_dir: PathLike | None = None, name: str = "kernels.metallib") -> Path:
    """Compile every `{name: msl_source}` to AIR (into `work_dir`, or through the cache) and link them into
    `<work_dir>/kernels.metallib`. The .metal files are kept in `work_dir` for inspection."""
    if not sources:
        raise ValueError("build_metallib needs at least one source")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    probe()
    airs = []
    for src_name, source in sources.items():
        stem = src_name[:-6] if src_name.endswith(".metal") else src_name
        _check_name(stem)
        (work / f"{stem}.metal").write_text(source)
        airs.append(compile_air(source, stem, cache_dir, out_dir=work, msl_version=msl_version,
                                macos_target=macos_target, fast_math=fast_math))
    return link_metallib(airs, work / name)
