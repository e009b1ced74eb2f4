"""Time of the stages after tracing, per zoo kernel, in a warm process: passes.run, msl.emit, mlir.emit,
portable.signature (+ ir_to_json). Baseline measured in the same run: tracing the kernel (the stage
before). Prints milliseconds per call and the ratio codegen / trace.

    .venv/bin/python bench/backends_codegen.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import zoo  # noqa: E402

from enigma import passes  # noqa: E402
from enigma.backends import mlir, msl, portable  # noqa: E402


def per_call(fn, n: int = 30) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    cols = ("trace", "passes", "msl", "mlir", "sig+ir")
    print(f"{'kernel':12s} " + " ".join(f"{c:>7s}" for c in cols) + "  codegen/trace")
    for e in zoo.ZOO:
        k = e.kernel.trace()
        opt = passes.run(k, e.vec_width)
        t_trace = per_call(lambda e=e: e.kernel.trace())
        t_pass = per_call(lambda k=k, e=e: passes.run(k, e.vec_width))
        t_msl = per_call(lambda opt=opt: msl.emit(opt))
        t_mlir = per_call(lambda opt=opt: mlir.emit(opt))
        t_sig = per_call(lambda opt=opt: (portable.signature(opt, block=None, grid=None),
                                          portable.ir_to_json(opt)))
        total = t_pass + t_msl + t_mlir + t_sig
        print(f"{e.name:12s} {t_trace:7.2f} {t_pass:7.2f} {t_msl:7.2f} {t_mlir:7.2f} {t_sig:7.2f}  "
              f"{total / t_trace:5.2f}x  (ms per call)")


if __name__ == "__main__":
    main()
