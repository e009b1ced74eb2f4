"""CPU executor of the portable IR (FORMAT.md section 4), with numpy.

Every thread of the grid runs in lockstep: an SSA value is one numpy array with one element per
thread. Values live in the launch's 6-d thread space (grid z, y, x, block z, y, x), so a value that
depends only on some builtins is broadcast along the others (`thread_idx(0)` is a (1,1,1,1,1,bx)
array) and uniform values are numpy scalars; vectors add a trailing lanes axis. Divergent control flow
runs under boolean masks: `if` runs both regions under sub-masks and selects the results, loops run
until no active thread continues, so a barrier holds by construction and one reached by part of a
threadgroup is an error.

Integer indices that are affine in the builtins (`block_idx * block_dim + thread_idx` and sums and
uniform multiples of them) are kept symbolic (`Aff`): their range is known without touching memory,
so their bounds checks are O(1), comparisons against uniform values fold, and their loads and stores
are strided views instead of gathers and scatters. Anything else is gathered and scattered with every
active index checked; an out-of-bounds access raises OutOfBoundsError naming the kernel, the tensor,
the index, the thread and the source line.

Modules: cpu.py runs a plan over the grid in chunks of threadgroups; cpu_plan.py compiles the IR into
the plan; cpu_flow.py runs its regions and loops under masks; cpu_state.py is a launch's state;
cpu_space.py the thread space and affine indices; cpu_memory.py loads, stores and atomics; cpu_ops.py
elementwise and simd-group math; cpu_dot.py dot-product loops; cpu_simdgroup.py the fast-kernel ops.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .cpu_flow import run_region
from .cpu_plan import Plan
from .cpu_space import Geo
from .cpu_state import State
from .dtypes import BY_NAME

__all__ = ["THREADS_PER_CHUNK", "SHARED_BYTES_PER_CHUNK", "ChunkGeo", "Plan", "State", "chunks", "run"]

# At most this many threads (and bytes of threadgroup memory) are materialised at once: a larger grid
# runs in chunks of whole threadgroups, one after the other (threadgroups are never ordered against
# each other, so this is one of the orders a GPU may take), and nothing is allocated per grid cell.
THREADS_PER_CHUNK = 1 << 22
SHARED_BYTES_PER_CHUNK = 1 << 28


class ChunkGeo(Geo):
    """The thread space of `chunk` threadgroups starting at threadgroup `origin` of a launch of `grid`."""

    def __init__(self, grid: tuple[int, int, int], block: tuple[int, int, int],
                 chunk: tuple[int, int, int], origin: tuple[int, int, int]) -> None:
        super().__init__(chunk, block)
        self.grid, self.origin = grid, origin  # grid_dim is the launch's

    def lane(self, flat_pos: int) -> str:
        gz, gy, gx, bz, by, bx = np.unravel_index(flat_pos, self.full)
        ox, oy, oz = self.origin
        return f"thread ({bx}, {by}, {bz}) of threadgroup ({gx + ox}, {gy + oy}, {gz + oz})"


def chunks(grid: tuple[int, int, int], block: tuple[int, int, int], shared_bytes: int
           ) -> Iterator[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """(chunk, origin) pairs covering `grid` in x-fastest order, each of at most THREADS_PER_CHUNK
    threads and SHARED_BYTES_PER_CHUNK bytes of threadgroup memory (at least one threadgroup)."""
    tpg = block[0] * block[1] * block[2]
    groups = max(1, min(THREADS_PER_CHUNK // tpg, SHARED_BYTES_PER_CHUNK // max(shared_bytes, 1)))
    gx, gy, gz = grid
    cx = min(gx, groups)
    cy = min(gy, max(1, groups // gx)) if cx == gx else 1
    cz = min(gz, max(1, groups // (gx * gy))) if cy == gy and cx == gx else 1
    for z in range(0, gz, cz):
        for y in range(0, gy, cy):
            for x in range(0, gx, cx):
                yield (min(cx, gx - x), min(cy, gy - y), min(cz, gz - z)), (x, y, z)


def run(plan: Plan, values: list[Any], grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    """Run `plan` over grid x block threads on `values` (checked by binding.bind); tensors are
    updated in place."""
    if 0 in grid or 0 in block:
        return
    shared = sum(int(np.prod(s["shape"], dtype=np.int64)) * BY_NAME[s["dtype"]].itemsize for s in plan.shared)
    for chunk, origin in chunks(grid, block, shared):
        geo = ChunkGeo(grid, block, chunk, origin)
        st = State(plan, values, geo)
        with np.errstate(all="ignore"):
            run_region(st, plan.body, {}, None, ())
