#!/usr/bin/env python3
"""The demo: build example_project's wheel, install it in a fresh venv, run its kernels next to numpy.

    python3 scripts/demo.py

Stdlib only (Python 3.10+), so it works on a fresh machine with nothing but python3. Everything it
creates lives under .venv-demo/ at the repository root (gitignored):

1. .venv-demo/build: a venv with pip, build and hatchling that builds local wheels of enigma-runtime
   (runtime/) and enigma-build (the repository root) into .venv-demo/wheels;
2. `pip wheel example_project --find-links .venv-demo/wheels`: pip builds example_project in an isolated
   environment where the enigma-build hatchling hook compiles its kernels into the wheel (emit-only off
   macOS: Metal source + portable IR; on macOS with Xcode also a .metallib);
3. .venv-demo/run: a fresh venv where the example wheel is installed (enigma-runtime from the local
   wheels, numpy from PyPI), then `python -m example_pkg` runs every kernel (Metal on macOS, the CPU
   executor elsewhere) and prints the results next to numpy's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".venv-demo"
WHEELS = DEMO / "wheels"
BIN = "Scripts" if os.name == "nt" else "bin"


def run(*cmd: str | os.PathLike, cwd: Path = ROOT) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(c) for c in cmd], check=True, cwd=cwd, env=env)


def fresh_venv(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    except (subprocess.CalledProcessError, OSError) as e:
        sys.exit(f"scripts/demo.py: cannot create a virtual environment with pip in {path} ({e}); on "
                 f"Debian/Ubuntu install the venv module first: sudo apt install python3-venv")
    return path / BIN / ("python.exe" if os.name == "nt" else "python")


def main() -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 (a fresh machine may have an older python3)
        sys.exit(f"scripts/demo.py needs Python 3.10+, this is {sys.version.split()[0]}")
    DEMO.mkdir(exist_ok=True)
    if WHEELS.exists():
        shutil.rmtree(WHEELS)
    py = fresh_venv(DEMO / "build")
    run(py, "-m", "pip", "install", "-q", "hatchling>=1.21")
    # local wheels of the two distributions this repository makes
    run(py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", WHEELS,
        ROOT / "runtime", ROOT)
    # the example package: pip builds it in isolation; enigma-build comes from the local wheels
    run(py, "-m", "pip", "wheel", "-q", "--no-deps", "--find-links", WHEELS, "-w", WHEELS,
        ROOT / "example_project")
    wheel = max(WHEELS.glob("example_pkg-*.whl"), key=lambda p: p.stat().st_mtime)
    print(f"built {wheel.name}", flush=True)
    py = fresh_venv(DEMO / "run")
    run(py, "-m", "pip", "install", "-q", "--find-links", WHEELS, wheel)
    run(py, "-m", "example_pkg", cwd=DEMO)  # not from the repository root: use the installed package
    return 0


if __name__ == "__main__":
    sys.exit(main())
