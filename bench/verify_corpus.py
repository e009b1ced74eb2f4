"""enigma.verify on the whole third-party corpus: tinygrad (tests/verify/test_verify_thirdparty.py),
MLX (test_verify_mlx_*.py) and llama.cpp's ggml-metal (test_verify_ggml.py), each kernel compiled as
written, run and compared with numpy. Three runs of those test files in a fresh cache directory:
everything cold (downloads of the pinned sources, rendering, every compile); a cold compile cache
(the downloaded sources kept, everything else removed: the issue's measure); warm (everything
cached: the per-kernel check is the warm run's time over its number of tests).

Targets (issue 13): <= 60 s for the corpus with a cold compile cache, <= 0.1 s per cached kernel
check. Baseline measured in the same run: the Python interpreter start (`python -c pass`).

    .venv/bin/python bench/verify_corpus.py
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/verify/test_verify_thirdparty.py",
         *(f"tests/verify/test_verify_mlx_{family}.py"
           for family in ("elementwise", "reduce", "gemm", "quantized", "attention", "misc")),
         "tests/verify/test_verify_ggml.py"]


def corpus(cache: str) -> tuple[float, int]:
    """Seconds for one pytest run of the corpus files in `cache`, and the number of tests passed."""
    env = dict(os.environ, ENIGMA_CACHE_DIR=cache, CI="true")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"the corpus failed:\n{out.stdout[-3000:]}")
    m = re.search(r"(\d+) passed", out.stdout)
    return elapsed, int(m.group(1)) if m else 0


def drop_all_but_downloads(cache: Path) -> None:
    """Remove every compiled or rendered file of the cache, keeping the downloaded corpus sources
    (the pinned archives and what was extracted from them: corpus/<sha prefix>/...)."""
    import shutil

    corpus = cache / "verify" / "corpus"
    for p in cache.rglob("*"):
        downloaded = corpus in p.parents and p.parent != corpus  # corpus/<sha prefix>/...
        if p.is_file() and not downloaded:
            p.unlink()
    for d in sorted((p for p in cache.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            shutil.rmtree(d)


def main() -> None:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as cache:
        everything, n = corpus(cache)
        drop_all_but_downloads(Path(cache))
        cold, _ = corpus(cache)
        warm, _ = corpus(cache)
    per = warm / n
    print(f"python start (baseline): {start:.3f} s")
    print(f"all cold (downloads, rendering, every compile): {everything:.1f} s for {n} tests")
    print(f"cold compile cache (downloaded sources kept): {cold:.1f} s for {n} tests (tinygrad, MLX, ggml); "
          f"target 60 s: {cold / 60:.2f}x of it, {cold / start:.0f}x python start")
    print(f"cached per-kernel check: {per * 1e3:.1f} ms (a warm run of the corpus, {warm:.1f} s, over its "
          f"{n} tests); target 100 ms: {per / 0.1:.2f}x of it, {per / start:.2f}x python start")


if __name__ == "__main__":
    main()
