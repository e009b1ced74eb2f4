"""Bytes copied between numpy and Metal per launch, against the FAKE Metal (no GPU here), and the
host-side time of a launch: page-aligned arrays of whole pages wrapped with newBufferWithBytesNoCopy
(zero-copy) against the same arrays one element off alignment (copied in, written ones copied back:
the baseline, measured in the same run).

    .venv/bin/python bench/metal_copies.py

The fake (runtime/tests/test_rt_metal_fake.py) runs no kernel; what is measured is the runtime's own
work around a dispatch: binding, buffers, copies. On Apple silicon (unified memory) the zero-copy
path is what the GPU sees too.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime" / "tests"))

import test_rt_metal_fake as fk  # noqa: E402
from enigma_runtime import Kernel  # noqa: E402
from enigma_runtime import metal as rt_metal  # noqa: E402
from rt_fixtures import vector_add_kernel  # noqa: E402


def aligned(n: int, offset: int = 0) -> np.ndarray:
    raw = np.zeros((n + offset) * 4 + rt_metal.PAGE, np.uint8)
    off = (-raw.ctypes.data) % rt_metal.PAGE + offset * 4
    return raw[off:off + n * 4].view(np.float32)


def launch_stats(k: Kernel, arrays: list[np.ndarray], n: int, reps: int) -> tuple[float, float]:
    """(bytes copied per launch, seconds per launch)"""
    for key in rt_metal.stats:
        rt_metal.stats[key] = 0
    k(*arrays, n, device="metal")  # warm: pipeline
    for key in rt_metal.stats:
        rt_metal.stats[key] = 0
    t = time.perf_counter()
    for _ in range(reps):
        k(*arrays, n, device="metal")
    dt = (time.perf_counter() - t) / reps
    return (rt_metal.stats["copied_in"] + rt_metal.stats["copied_out"]) / reps, dt


def main() -> None:
    fake = fk.FakeMetal()
    foundation = type(sys)("Foundation")
    foundation.NSURL = type("NSURL", (), {"fileURLWithPath_": staticmethod(lambda p: p)})
    sys.modules.update(Metal=fake, Foundation=foundation, objc=fk.FakeObjc(fake))
    rt_metal.reset()
    k = Kernel.from_spec(*vector_add_kernel(), "kernel void enigma_kernel_vector_add();")
    print(f"{'elements':>10} {'copied B/launch (baseline)':>27} {'zero-copy':>10} {'ratio':>7} "
          f"{'us/launch (baseline)':>21} {'zero-copy':>10} {'speed-up':>9}")
    for n in (rt_metal.PAGE // 4 * 16, 1 << 20, 1 << 24):
        base = [aligned(n, 1) for _ in range(3)]
        zero = [aligned(n) for _ in range(3)]
        reps = 20 if n <= 1 << 20 else 3
        (cb, tb), (cz, tz) = launch_stats(k, base, n, reps), launch_stats(k, zero, n, reps)
        ratio = f"{cb / cz:.1f}x" if cz else "inf"
        print(f"{n:>10} {cb:>27,.0f} {cz:>10,.0f} {ratio:>7} {tb * 1e6:>21,.0f} {tz * 1e6:>10,.0f} "
              f"{tb / tz:>8.1f}x")


if __name__ == "__main__":
    main()
