"""Run-time conditions of the layout algebra.

CuTe checks divisibility and bounds statically when it can and silently skips the check otherwise
(cutlass issues 3469-3471, 3513). Enigma never skips it: a condition on Python ints is decided at
trace time (a `LayoutError`, an `EnigmaError` at the user's line, when it fails); a condition on
traced values is recorded as a `Condition` (the traced bool, what it means, the user's file:line)
with the kernel being traced: `conditions()` while tracing, `kernel_conditions(ir_kernel)` after.
The artifact format has no place for them yet, so they are documented (docs/layout.md, "Run-time
conditions") rather than checked at launch.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from enigma.errors import user_frame
from enigma.layout.int_tuple import LayoutError


@dataclass(frozen=True)
class Condition:
    """A condition that must hold at run time: `value` is the traced bool."""

    value: Any
    message: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: requires {self.message}"


_conditions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # kernel body Block -> conditions
_outside: list[Condition] = []  # recorded outside any trace


def _store() -> list[Condition]:
    from enigma.frontend.builder import _current  # late: keeps the pure algebra importable alone

    if not _current:
        return _outside
    return _conditions.setdefault(_current[-1].body, [])


def require(cond: Any, message: str) -> None:
    """`cond` must hold: checked now if it is a Python bool, recorded as a run-time condition if traced."""
    if isinstance(cond, bool):
        if not cond:
            raise LayoutError(f"layout condition fails: {message}")
        return
    file, line = user_frame(2)
    _store().append(Condition(cond, message, file, line))


def conditions() -> list[Condition]:
    """The run-time conditions recorded so far while tracing the current kernel."""
    return list(_store())


def kernel_conditions(kernel: Any) -> list[Condition]:
    """The run-time conditions the layouts of a traced kernel (an `enigma.ir.Kernel`) rely on."""
    return list(_conditions.get(kernel.body, []))
