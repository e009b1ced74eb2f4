"""Trace + codegen time per zoo kernel in a warm process (issue 2 targets on a 2-core machine:
vector_add <= 2 ms, tiled matmul <= 10 ms). Prints, per kernel: trace alone, trace + passes + MSL +
portable IR + signature (what enigma.compile does in emit-only mode), and the ratio to a baseline
measured in the same run (a plain Python loop doing comparable object work: building one ir.Op per
traced op)."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import zoo  # noqa: E402

import enigma  # noqa: E402
from enigma import ir  # noqa: E402
from enigma.frontend import launch_of  # noqa: E402

TARGET_MS = {"vector_add": 2.0, "matmul": 10.0}


def best_ms(fn, repeat: int = 30) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def baseline_ms(n_ops: int) -> float:
    def work():
        blk = ir.Block()
        for _ in range(n_ops):
            blk.ops.append(ir.Op("add", [], [ir.Value(ir.Type(enigma.float32))], {}, [], 1))
    return best_ms(work)[0]


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'kernel':<12} {'ops':>5} {'trace ms':>9} {'compile ms':>11} {'median':>8} {'target':>7} "
          f"{'x baseline':>10}")
    for e in zoo.ZOO:
        ins = e.make_inputs(rng)
        n_ops = sum(1 for _ in ir.walk(launch_of(e.jit, ins).kernel.body))
        t_trace, _ = best_ms(lambda e=e, ins=ins: launch_of(e.jit, ins))
        try:
            t_all, t_med = best_ms(lambda e=e, ins=ins: enigma.compile(e.jit, *ins, vec_width=e.vec_width,
                                                                         emit_only=True))
        except (ImportError, NotImplementedError):  # vectorize pass not there yet
            t_all, t_med = best_ms(lambda e=e, ins=ins: enigma.compile(e.jit, *ins, emit_only=True))
        base = baseline_ms(n_ops)
        target = TARGET_MS.get(e.name)
        tgt = f"{target:.0f} ms" if target else "-"
        flag = "" if target is None or t_all <= target else "  OVER TARGET"
        print(f"{e.name:<12} {n_ops:>5} {t_trace:>9.3f} {t_all:>11.3f} {t_med:>8.3f} {tgt:>7} "
              f"{t_all / base:>10.1f}{flag}")


if __name__ == "__main__":
    main()
