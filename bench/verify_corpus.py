"""enigma.verify on the third-party corpus (tests/verify/thirdparty.py): the whole corpus with a cold
cache (download of the pinned sources, rendering, every compile) and a cached per-kernel check.

Targets (issue 13): <= 60 s for the cold corpus, <= 0.1 s per cached kernel check. Baseline measured
in the same run: the Python interpreter start (`python -c pass`), which every cold run pays too.

    .venv/bin/python bench/verify_corpus.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = """
import json, sys, time
sys.path[:0] = PATHS
t0 = time.perf_counter()
import thirdparty
rendered = thirdparty.render_tinygrad()
t1 = time.perf_counter()
n = 0
for name, case in rendered.items():
    thirdparty.run_case(case, thirdparty.case_inputs(name, case))
    n += len(case["kernels"])
t2 = time.perf_counter()
print(json.dumps({"render": t1 - t0, "run": t2 - t1, "kernels": n, "cases": len(rendered)}))
"""
PATHS = [str(ROOT / "tests" / "verify"), str(ROOT / "tests")]


def corpus(cache: str) -> dict:
    env = dict(os.environ, ENIGMA_CACHE_DIR=cache, CI="true")
    t0 = time.perf_counter()
    code = f"PATHS = {PATHS!r}\n" + RUN
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["total"] = time.perf_counter() - t0
    return r


def main() -> None:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as cache:
        cold = corpus(cache)
        warm = corpus(cache)
    per = warm["run"] / warm["kernels"]
    print(f"python start (baseline): {start:.3f} s")
    print(f"cold corpus: {cold['total']:.1f} s for {cold['cases']} cases / {cold['kernels']} kernels "
          f"(download + render {cold['render']:.1f} s, compile + run {cold['run']:.1f} s); "
          f"target 60 s: {cold['total'] / 60:.2f}x of it, {cold['total'] / start:.0f}x python start")
    print(f"cached per-kernel check: {per * 1e3:.1f} ms (compile from cache + run); target 100 ms: "
          f"{per / 0.1:.2f}x of it, {per / start:.2f}x python start")


if __name__ == "__main__":
    main()
