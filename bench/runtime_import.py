"""Import cost of enigma_runtime over numpy (issue 6 target: <= 15 ms), fresh interpreters, best of N.

    .venv/bin/python bench/runtime_import.py

Measured as an installed wheel runs: with bytecode (pip compiles .pyc files at install time), so the
runs share a temporary PYTHONPYCACHEPREFIX, warmed once, even when PYTHONDONTWRITEBYTECODE is set.
`import enigma_runtime` defers its loader module to the first touch of `enigma_runtime.load`, so the
second line, import plus that first touch, is the cost a program that loads kernels pays.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

CODE = "import time, numpy; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def measure(stmt: str, env: dict[str, str], reps: int = 15) -> float:
    runs = []
    for _ in range(reps + 1):  # the first run writes the bytecode
        out = subprocess.run([sys.executable, "-c", CODE.format(stmt=stmt)], capture_output=True, text=True,
                             check=True, env=env)
        runs.append(float(out.stdout))
    return min(runs[1:])


def main() -> None:
    with tempfile.TemporaryDirectory() as pyc:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pyc
        base = measure("pass", env)
        rt = measure("import enigma_runtime", env)
        load = measure("import enigma_runtime; enigma_runtime.load", env)  # the loader module too
    print(f"import enigma_runtime over numpy:              {(rt - base) * 1e3:6.2f} ms  (target <= 15 ms)")
    print(f"import + first touch of enigma_runtime.load:  {(load - base) * 1e3:6.2f} ms  (target <= 15 ms)")


if __name__ == "__main__":
    main()
