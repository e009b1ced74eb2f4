#!/usr/bin/env python3
"""A FAKE `xcrun` for tests (there is no Mac here). It checks its arguments the way the real Metal
toolchain is driven by enigma.toolchain.xcrun and writes recognisable files:

    xcrun -sdk macosx --find metal            prints /fake/Xcode/metal
    xcrun -sdk macosx metal --version         prints "fake metal 1.0 (enigma tests)"
    xcrun -sdk macosx metal -std=metal3.1 -mmacosx-version-min=14.0 -fno-fast-math -Wall -c k.metal -o k.air
                                              writes "FAKE-AIR <sha256 of k.metal> <flags>" into k.air
    xcrun -sdk macosx metallib a.air ... -o out.metallib
                                              writes "FAKE-METALLIB macos=<floor>" + one line per input
                                              .air; the floor is the first .air's -mmacosx-version-min,
                                              as the real `metallib` does (mlx-node issue 135)

`-std=` takes only the values Apple's compiler takes: `macos-metal1.0` ... `macos-metal2.4` before
MSL 3.0, then `metal3.0`, `metal3.1`, `metal3.2`, `metal4.0` (Apple's "Metal Shading Language
Specification", section 1.6 "Metal Compiler Options"; `-std=metal2.3` is an invalid value there).

Behaviour switches (environment): FAKE_XCRUN_FAIL=find|metal|metallib|version makes that step exit 1
with FAKE_XCRUN_STDERR (default: a typical Apple message) on stderr; FAKE_XCRUN_WARN=<text> makes
`metal -c` succeed with a clang-style warning line about the source on stderr (as -Wall does);
FAKE_XCRUN_LOG=<file> appends each argv as one JSON line. Reuse it from other tests with
`install(bin_dir)`.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

DEFAULT_STDERR = 'xcrun: error: unable to find utility "metal", not a developer tool or in PATH'
STD_VALUES = {*(f"macos-metal{v}" for v in ("1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4")),
              "metal3.0", "metal3.1", "metal3.2", "metal4.0"}


def install(bin_dir: str | os.PathLike) -> Path:
    """Write an executable `xcrun` into `bin_dir` that runs this fake; prepend `bin_dir` to PATH to use it."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "xcrun"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def activate(tmp_path: Path, monkeypatch) -> Path:
    """Put this fake first on PATH for one test (pytest's tmp_path and monkeypatch), with a private
    ENIGMA_CACHE_DIR (unless the test set one); forget the real toolchain versions
    enigma.toolchain.xcrun probed. Returns the log file of its invocations."""
    install(tmp_path / "bin")
    if not os.environ.get("ENIGMA_CACHE_DIR", "").startswith(str(tmp_path)):
        monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    log = tmp_path / "xcrun.log"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_XCRUN_LOG", str(log))
    monkeypatch.delenv("FAKE_XCRUN_FAIL", raising=False)
    from enigma.toolchain import xcrun

    xcrun.forget_versions()
    return log


def _fail(step: str) -> None:
    if os.environ.get("FAKE_XCRUN_FAIL") == step:
        sys.stderr.write(os.environ.get("FAKE_XCRUN_STDERR", DEFAULT_STDERR) + "\n")
        sys.exit(1)


def _usage(msg: str) -> None:
    sys.stderr.write(f"fake xcrun: bad arguments: {msg}\n")
    sys.exit(64)


def main(argv: list[str]) -> None:
    if os.environ.get("FAKE_XCRUN_LOG"):
        with open(os.environ["FAKE_XCRUN_LOG"], "a") as f:
            f.write(json.dumps(argv) + "\n")
    if argv[:2] != ["-sdk", "macosx"]:
        _usage(f"expected '-sdk macosx' first, got {argv[:2]}")
    args = argv[2:]
    if args == ["--find", "metal"]:
        _fail("find")
        print("/fake/Xcode/metal")
    elif args == ["metal", "--version"]:
        _fail("version")
        print("fake metal 1.0 (enigma tests)")
    elif args[:1] == ["metal"]:
        _fail("metal")
        flags, rest = args[1:5], args[5:]
        if not (flags[0].startswith("-std=") and flags[0][5:] in STD_VALUES
                and flags[1].startswith("-mmacosx-version-min=")
                and flags[2] in ("-fno-fast-math", "-ffast-math") and flags[3] == "-Wall"):
            _usage(f"metal flags {flags}")
        if len(rest) != 4 or rest[0] != "-c" or rest[2] != "-o" or not rest[1].endswith(".metal") \
                or not rest[3].endswith(".air"):
            _usage(f"expected -c X.metal -o X.air, got {rest}")
        src = Path(rest[1]).read_bytes()
        if b"kernel void" not in src:
            sys.stderr.write(f"{rest[1]}:1:1: error: fake metal found no 'kernel void' in the source\n")
            sys.exit(1)
        Path(rest[3]).write_text(f"FAKE-AIR {hashlib.sha256(src).hexdigest()} {' '.join(flags)}\n")
        if os.environ.get("FAKE_XCRUN_WARN"):
            sys.stderr.write(f"{rest[1]}:2:5: warning: {os.environ['FAKE_XCRUN_WARN']} [-Wunused-variable]\n")
    elif args[:1] == ["metallib"]:
        _fail("metallib")
        if len(args) < 4 or args[-2] != "-o" or not args[-1].endswith(".metallib"):
            _usage(f"expected metallib A.air ... -o X.metallib, got {args}")
        airs = args[1:-2]
        lines = []
        floor = ""
        for a in airs:
            data = Path(a).read_text()
            if not (a.endswith(".air") and data.startswith("FAKE-AIR ")):
                _usage(f"{a} is not a .air file written by the fake metal")
            lines.append(f"{Path(a).name} {data.split()[1]}")
            floor = floor or next(f.split("=", 1)[1] for f in data.split() if f.startswith("-mmacosx"))
        Path(args[-1]).write_text(f"FAKE-METALLIB macos={floor}\n" + "\n".join(lines) + "\n")
    else:
        _usage(" ".join(args))


if __name__ == "__main__":
    main(sys.argv[1:])
