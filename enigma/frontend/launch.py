"""A kernel launch as the frontend records it: `Launch` (kernel, argument bindings, grid and block,
the grid as FORMAT.md expressions), a @jit's `Step`s and `Recording`, the per-thread stack of running
@jit recordings (`jit_state`), and `make_launch`, which checks grid and block and resolves the grid
to expressions over the kernel's arguments."""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from enigma import ir
from enigma.errors import EnigmaError
from enigma.frontend.grid import Expr
from enigma.frontend.host import HostTensor
from enigma.frontend.simd_checks import check_block


@dataclass
class Launch:
    """One kernel launch chosen by a @jit function (or a bare kernel's decorator)."""

    kernel: ir.Kernel
    bindings: dict[str, Any]  # kernel parameter -> jit value (HostTensor, Expr, number)
    grid: tuple[Any, Any, Any] | None  # ints where known, Expr where symbolic
    block: tuple[int, int, int] | None
    grid_json: list[Any] | None  # FORMAT.md grid expressions over the kernel's argument names
    source: str
    options: dict[str, Any]
    grid_exprs: tuple[Any, Any, Any] | None = None  # the grid as the jit computed it (ints and Exprs)


@dataclass
class Step:
    """One `kernel(...).launch(...)` of a @jit: one Launch per case of the choices it uses (the
    condition is True, or a condition Expr when `enigma.select` chose the kernel or a value)."""

    cases: list[tuple[Any, Launch]]
    file: str
    line: int


@dataclass
class Recording:
    """What one run of a @jit records: its launches in order, the temporaries it allocated, the
    expressions whose values Python used (guards: (expr, value, file, line)) and what it returned."""

    steps: list[Step] = field(default_factory=list)
    temps: list[HostTensor] = field(default_factory=list)
    guards: list[tuple[Any, int, str, int]] = field(default_factory=list)
    returned: Any = None


class JitState(threading.local):
    def __init__(self) -> None:
        self.stack: list[Recording] = []  # what the @jit functions running in this thread recorded


jit_state = JitState()


def _norm3(v: Any, what: str, file: str, line: int) -> tuple[Any, ...] | None:
    if v is None:
        return None
    if isinstance(v, (int, Expr, np.integer)):
        v = (v,)
    v = tuple(v)
    if not 1 <= len(v) <= 3:
        raise EnigmaError(f"{what} has {len(v)} entries; it takes 1 to 3 (x, y, z)", file, line)
    out = []
    for x in v + (1,) * (3 - len(v)):
        if isinstance(x, np.integer):
            x = int(x)
        if not isinstance(x, (int, Expr)) or isinstance(x, bool):
            raise EnigmaError(f"{what} entries must be ints or launch-size expressions, got "
                              f"{type(x).__name__} {x!r}", file, line,
                              hint="compute sizes from jit argument shapes with + - * // and enigma.ceil_div")
        out.append(x)
    return tuple(out)


def make_launch(kernel: ir.Kernel, bindings: dict[str, Any], grid: Any, block: Any, source: str,
                options: dict[str, Any], file: str, line: int, in_jit: bool = False) -> Launch:
    """The launch of `kernel`; its grid as expressions over the kernel's arguments (`grid_json`). In a
    @jit a grid that depends on more than the kernel's arguments has no such form (grid_json None):
    the jit's entry carries the grid over the jit's arguments instead."""
    g = _norm3(grid, "grid", file, line)
    blk = _norm3(block, "block", file, line)
    if blk is not None:
        vals = [x if isinstance(x, int) or x.value is None else int(x) for x in blk]  # int(): a guard
        vals = [x if isinstance(x, int) else None for x in vals]
        if any(x is None for x in vals):
            raise EnigmaError(f"block {blk} depends on sizes known only at launch", file, line,
                              hint="the threadgroup size is fixed at compile time: use ints")
        if any(x < 1 for x in vals):  # type: ignore[operator]
            raise EnigmaError(f"block {tuple(vals)} has a non-positive size", file, line)
        threads = math.prod(vals)  # type: ignore[arg-type]
        if threads > ir.MAX_THREADS_PER_THREADGROUP:
            raise EnigmaError(f"block {tuple(vals)} has {threads} threads; Metal runs at most "
                              f"{ir.MAX_THREADS_PER_THREADGROUP} per threadgroup", file, line,
                              hint="use a smaller block and more threadgroups in the grid")
        blk = tuple(vals)
        check_block(kernel, blk, file, line)  # block reductions and simdgroup matrices: whole simdgroups
    grid_json = None
    exprs = g
    if g is not None:
        resolve = _resolver(kernel, bindings, file, line)
        try:
            grid_json = [x if isinstance(x, int) else x.to_json(resolve) for x in g]
        except EnigmaError:
            if not in_jit:
                raise
        g = tuple(x if isinstance(x, int) else (x.value if x.value is not None else x) for x in g)
    return Launch(kernel, bindings, g, blk, grid_json, source, options, exprs)  # type: ignore[arg-type]


def _resolver(kernel: ir.Kernel, bindings: dict[str, Any], file: str, line: int) -> Callable[[Expr], Any]:
    host_arg = {id(v): n for n, v in bindings.items() if isinstance(v, HostTensor)}
    scalar_arg = {id(v): a.name for a in kernel.args if a.kind == "scalar"
                  for v in [bindings.get(a.name)] if isinstance(v, Expr)}
    syms = {s for a in kernel.args for s in a.shape if isinstance(s, str)}

    def resolve(e: Expr) -> Any:
        if e.kind == "sym" and e.name in syms:
            return {"sym": e.name}
        if e.kind in ("sym", "dim") and id(e.host) in host_arg:
            name = host_arg[id(e.host)]
            static = kernel.arg(name).shape[e.axis]
            return static if isinstance(static, int) else {"dim": [name, e.axis]}
        if id(e) in scalar_arg:
            return {"arg": scalar_arg[id(e)]}
        if e.value is not None:
            return e.value
        raise EnigmaError(f"the launch size {e} is not known at compile time and is not an argument of "
                          f"kernel {kernel.name!r}", file, line,
                          hint="launch sizes may use the kernel's tensor sizes and scalar arguments only")

    return resolve
