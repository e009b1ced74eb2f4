"""Run-time conditions of the layout algebra.

CuTe checks divisibility and bounds statically when it can and silently skips the check otherwise
(cutlass issues 3469-3471, 3513). Enigma never skips it: a condition on Python ints is decided at
trace time (a `LayoutError`/`EnigmaError` when it fails); a condition on traced values is recorded
as a `Condition` (the traced bool, what it means, the user's file:line) in the conditions of the
kernel being traced, which `conditions()` returns and the tracer attaches to the kernel
(`Kernel.layout_conditions`), so the launch side can check it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from enigma.layout.int_tuple import LayoutError

_HERE = os.path.dirname(os.path.abspath(__file__))
_ENIGMA = os.path.dirname(_HERE)


@dataclass(frozen=True)
class Condition:
    """A condition that must hold at run time: `value` is the traced bool."""

    value: Any
    message: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: requires {self.message}"


_conditions: dict[int, list[Condition]] = {}


def user_location() -> tuple[str, int]:
    """The innermost stack frame outside the enigma package: the kernel author's file:line."""
    f = sys._getframe(1)
    while f is not None:
        path = os.path.abspath(f.f_code.co_filename)
        if not path.startswith(_ENIGMA + os.sep):
            return f.f_code.co_filename, f.f_lineno
        f = f.f_back
    return "<unknown>", 0


def _trace_key() -> int:
    try:
        from enigma.frontend import current_builder  # type: ignore[attr-defined]
    except ImportError:  # the tracer is optional for the pure algebra
        return 0
    b = current_builder()
    return id(b) if b is not None else 0


def require(cond: Any, message: str) -> None:
    """`cond` must hold: checked now if it is a Python bool, recorded as a run-time condition if traced."""
    if isinstance(cond, bool):
        if not cond:
            raise LayoutError(f"layout condition fails: {message}")
        return
    file, line = user_location()
    _conditions.setdefault(_trace_key(), []).append(Condition(cond, message, file, line))


def conditions(clear: bool = False) -> list[Condition]:
    """The run-time conditions recorded while tracing the current kernel (or outside any trace)."""
    key = _trace_key()
    out = list(_conditions.get(key, []))
    if clear:
        _conditions.pop(key, None)
    return out
