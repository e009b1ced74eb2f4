#!/usr/bin/env python3
"""Run the whole test suite: python3 scripts/test.py [pytest args...]

Stdlib only, so it works on a fresh machine with nothing but Python 3.10+. It creates (or reuses) the
virtual environment .venv at the repository root, installs enigma-runtime and enigma-build editable
with their test dependencies, then runs pytest. Tests that need clang, mlir-opt, glslangValidator or
spirv-cross skip when those are missing, except under CI=true, where a missing tool is a failure
(.ci/run installs them first).
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# pycute (CuTe's pure-Python layout algebra) is the test oracle of enigma.layout; it ships inside the
# nvidia-cutlass wheel, whose own dependencies we do not need (hence --no-deps).
ORACLE = "nvidia-cutlass==4.2.0.0"


def run(*cmd: str | os.PathLike) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 (this script may be run by an older python3)
        sys.exit(f"Python 3.10+ is needed, this is {sys.version.split()[0]}")
    if not PY.exists():
        venv.create(VENV, with_pip=True)
    pip = (PY, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    run(*pip, "-e", "runtime", "-e", ".[test]")
    run(*pip, "--no-deps", ORACLE)
    return subprocess.run([str(PY), "-m", "pytest", *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
