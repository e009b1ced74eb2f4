"""What needs whole simdgroups: block reductions (frontend/reductions.py) and simdgroup matrices
(frontend/simdgroup.py) need a threadgroup size that is a multiple of 32, checked where a launch's block
is known (frontend/launch.py, make_launch). A leaf module (IR and errors only), so that the launch code
imports no kernel-language module."""
from __future__ import annotations

import math

from enigma import ir
from enigma.errors import EnigmaError

SIMD_WIDTH = 32
SCRATCH = "block_reduce_"  # + the element type's short name: a block reduction's threadgroup array


def needs_full_simdgroups(kernel: ir.Kernel) -> str:
    """What in `kernel` needs a threadgroup size that is a multiple of 32 ("" if nothing)."""
    if any(s.name.startswith(SCRATCH) for s in kernel.shared):
        return "a block reduction (enigma.block_sum/max/min)"
    for op in ir.walk(kernel.body):
        if op.name in ir.SIMD_MATRIX:
            return "a simdgroup matrix"
    return ""


def check_block(kernel: ir.Kernel, block: tuple[int, ...], file: str, line: int) -> None:
    """EnigmaError when the kernel needs whole simdgroups and `block` is not a multiple of 32 threads."""
    what = needs_full_simdgroups(kernel)
    threads = math.prod(block)
    if what and threads % SIMD_WIDTH:
        raise EnigmaError(f"kernel {kernel.name!r} uses {what}, which needs whole simdgroups, but its "
                          f"threadgroup of {tuple(block)} has {threads} threads, not a multiple of "
                          f"{SIMD_WIDTH}", file, line,
                          hint=f"launch with a block of a multiple of {SIMD_WIDTH} threads (e.g. 128 or 256)")
