"""Import cost of enigma_runtime over numpy (issue 6 target: <= 15 ms), fresh interpreters, best of N.

    .venv/bin/python bench/runtime_import.py
"""
from __future__ import annotations

import subprocess
import sys

CODE = "import time, numpy; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def measure(stmt: str, reps: int = 15) -> float:
    runs = []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", CODE.format(stmt=stmt)], capture_output=True, text=True,
                             check=True)
        runs.append(float(out.stdout))
    return min(runs)


def main() -> None:
    base = measure("pass")
    rt = measure("import enigma_runtime")
    load = measure("import enigma_runtime; enigma_runtime.load")  # the loader module too
    print(f"import enigma_runtime over numpy:           {(rt - base) * 1e3:6.2f} ms  (target <= 15 ms)")
    print(f"  + first touch of enigma_runtime.load:     {(load - base) * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
