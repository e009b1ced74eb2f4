"""Run a traced `ir.Kernel` as it comes out of the tracer (before any pass) on the runtime's CPU executor,
so the frontend's semantic tests check what traced control flow, merges and carried values mean
without the passes in between. One executor for the whole project: enigma_runtime's."""
from __future__ import annotations

from typing import Any

from enigma_runtime import Kernel

from enigma import ir
from enigma.backends import msl, portable


def run(kernel: ir.Kernel, args: list[Any], grid: tuple, block: tuple) -> None:
    """Run `kernel` on numpy arrays / scalars in `args` (argument order), writing arrays in place."""
    spec = portable.signature(kernel, block=list(block), grid=list(grid))
    Kernel.from_spec(spec, portable.ir_to_json(kernel), msl.emit(kernel))(*args, device="cpu")
