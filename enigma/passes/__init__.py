"""IR -> IR passes, each a function Kernel -> Kernel that builds new blocks and leaves its input intact:
fold (constant folding), cse (common subexpressions), dce (dead code), vectorize (vec_width lanes)."""
from __future__ import annotations

from enigma import ir
from enigma.passes.cse import cse
from enigma.passes.dce import dce
from enigma.passes.fold import fold

__all__ = ["cse", "dce", "fold", "run", "simplify"]


def simplify(kernel: ir.Kernel) -> ir.Kernel:
    """fold, cse, dce until the kernel stops shrinking (at most a few rounds)."""
    size = -1
    for _ in range(4):
        kernel = dce(cse(fold(kernel)))
        n = sum(1 for _ in ir.walk(kernel.body))
        if n == size:
            break
        size = n
    return kernel


def run(kernel: ir.Kernel, vec_width: int = 0) -> ir.Kernel:
    """The pass pipeline enigma.compile runs: simplify, then (vec_width > 0) vectorize and simplify again.
    Raises enigma.errors.EnigmaError when the kernel cannot be vectorised at `vec_width`."""
    kernel = simplify(kernel)
    if vec_width:
        from enigma.passes.vectorize import vectorize
        kernel = simplify(vectorize(kernel, vec_width))
    return kernel
