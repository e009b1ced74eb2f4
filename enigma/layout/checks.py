"""Run-time conditions of the layout algebra.

CuTe checks divisibility and bounds statically when it can and silently skips the check otherwise
(cutlass issues 3469-3471, 3513). Enigma never skips it: a condition on Python ints is decided at
trace time (a `LayoutError`, an `EnigmaError` at the user's line, when it fails); a condition on
traced values is recorded as a `Condition` (the traced bool, what it means, the user's file:line)
with the kernel being traced: `conditions()` while tracing, `kernel_conditions(ir_kernel)` after.
`enigma.compile` writes them into the signature's "requires" (runtime/FORMAT.md), which the runtime
checks before every launch; `check_conditions(kernel, *args)` evaluates them for concrete arguments
ahead of a launch (docs/layout.md, "Run-time conditions").
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from enigma.errors import EnigmaError, user_frame
from enigma.layout.int_tuple import LayoutError


@dataclass(frozen=True)
class Condition:
    """A condition that must hold at run time. `value` is the traced bool; `text` reads it over the
    kernel's arguments (`a.shape[0] >= 16`); `expr` is the same as plain data in the form of
    runtime/FORMAT.md's grid expressions (extended with the comparisons `ge gt le lt eq ne` and
    `and or`), or None when it depends on more than argument sizes and scalars."""

    value: Any
    message: str
    file: str
    line: int
    text: str = ""
    expr: Any = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: requires {self.text or '?'}: {self.message}"


_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "//", "mod": "%", "ge": ">=", "gt": ">", "le": "<=",
        "lt": "<", "eq": "==", "ne": "!=", "and": "&", "or": "|"}
_DATA_OP = {"div": "floordiv"}


def _defs(body: Any) -> dict[int, Any]:
    from enigma import ir

    return {id(r): op for op in ir.walk(body) for r in op.results}


def read_value(v: Any, body: Any, defs: dict[int, Any] | None = None) -> tuple[str, Any]:
    """(text, data expression or None) of a traced int/bool value, following its definitions in `body`."""
    defs = _defs(body) if defs is None else defs

    def go(x: Any, depth: int) -> tuple[str, Any]:
        op = defs.get(id(x))
        if op is None or depth > 40:
            return "?", None
        n, a = op.name, op.attrs
        if n == "const":
            return str(a["value"]), a["value"] if isinstance(a["value"], int) else None
        if n == "dim":
            return f"{a['tensor']}.shape[{a['axis']}]", {"dim": [a["tensor"], a["axis"]]}
        if n == "stride":
            return f"{a['tensor']}.stride[{a['axis']}]", None
        if n == "param":
            return a["name"], {"arg": a["name"]}
        if n == "cast":
            return go(op.operands[0], depth + 1)
        parts = [go(o, depth + 1) for o in op.operands]
        data = None
        if all(d is not None for _, d in parts):
            data = {"op": _DATA_OP.get(n, n), "args": [d for _, d in parts]}
        if n in _SYM and len(parts) == 2:
            return f"({parts[0][0]} {_SYM[n]} {parts[1][0]})", data
        if n in ("min", "max"):
            return f"{n}({parts[0][0]}, {parts[1][0]})", data
        return f"{n}({', '.join(t for t, _ in parts)})", None
    text, data = go(getattr(v, "v", v), 0)
    return (text[1:-1] if text.startswith("(") and text.endswith(")") else text), data


_conditions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # kernel body Block -> conditions
_outside: list[Condition] = []  # recorded outside any trace


def _store() -> list[Condition]:
    from enigma.frontend.builder import active  # late: keeps the pure algebra importable alone

    b = active()
    if b is None:
        return _outside
    return _conditions.setdefault(b.body, [])


def require(cond: Any, message: str) -> None:
    """`cond` must hold: checked now if it is a Python bool, recorded as a run-time condition if traced."""
    if isinstance(cond, bool):
        if not cond:
            raise LayoutError(f"layout condition fails: {message}")
        return
    file, line = user_frame(2)
    text, expr = "", None
    from enigma.frontend.builder import active

    b = active()
    if b is not None and hasattr(cond, "v"):
        text, expr = read_value(cond, b.body)
    _store().append(Condition(cond, message, file, line, text, expr))


def require_sizes(cond: Any, message: str = "") -> None:
    """`enigma.require(cond, message)`: a condition on the kernel's argument sizes and scalars that the
    kernel relies on (`enigma.require(k % 32 == 0, "k is whole blocks")`). A Python bool is checked
    now (False: an EnigmaError at this line); a traced one goes into the signature's `requires`, which
    the runtime checks before every launch and `enigma-build check` satisfies when it picks inputs.
    A condition on anything else (thread indices, loaded values) is an EnigmaError at compile time."""
    if isinstance(cond, bool) or type(cond).__module__ == "numpy":
        if not bool(cond):
            file, line = user_frame(2)
            raise EnigmaError(f"enigma.require fails: {message or 'condition is False'}", file, line)
        return
    if not hasattr(cond, "v"):
        file, line = user_frame(2)
        raise EnigmaError(f"enigma.require takes a condition on sizes or scalars, got "
                          f"{type(cond).__name__}", file, line)
    file, line = user_frame(2)
    from enigma.frontend.builder import active

    b = active()
    text, expr = read_value(cond, b.body) if b is not None else ("", None)
    _store().append(Condition(cond, message or text, file, line, text, expr))


def conditions() -> list[Condition]:
    """The run-time conditions recorded so far while tracing the current kernel."""
    return list(_store())


def _traced(kernel: Any) -> Any:
    """The traced ir.Kernel of an ir.Kernel, a frontend Launch or an enigma.compile result."""
    if hasattr(kernel, "launch"):  # CompiledKernel
        kernel = kernel.launch
    if not hasattr(kernel, "body") and hasattr(kernel, "kernel"):  # Launch
        kernel = kernel.kernel
    return kernel


def kernel_conditions(kernel: Any) -> list[Condition]:
    """The run-time conditions the layouts of a kernel rely on: `kernel` is a traced `enigma.ir.Kernel`
    (`my_kernel.trace()`) or what `enigma.compile` returned."""
    return list(_conditions.get(_traced(kernel).body, []))


def evaluate(expr: Any, args: dict[str, Any]) -> Any:
    """Value of a condition's data expression for concrete arguments (name -> array or scalar), by the
    runtime's evaluator of FORMAT.md's grid expressions (the one that checks "requires" at launch)."""
    from enigma_runtime.grid import evaluate as evaluate_expr

    shapes = {n: tuple(int(s) for s in v.shape) for n, v in args.items() if hasattr(v, "shape") and v.ndim}
    scalars = {n: (v.item() if hasattr(v, "item") else v) for n, v in args.items() if n not in shapes}
    return evaluate_expr(expr, {}, shapes, scalars)


def check_conditions(kernel: Any, *args: Any) -> list[Condition]:
    """Check a kernel's (traced, or compiled) run-time layout conditions for concrete arguments (in the
    kernel's argument order: arrays and scalars). Raises LayoutError, at the kernel line that needs the
    condition, for the first that fails; returns the conditions that could not be checked (their
    expression depends on more than sizes and scalars)."""
    kernel = _traced(kernel)
    if len(args) != len(kernel.args):
        raise TypeError(f"{kernel.name} takes {len(kernel.args)} arguments, got {len(args)}")
    named = {a.name: v for a, v in zip(kernel.args, args)}
    unchecked = []
    for c in kernel_conditions(kernel):
        if c.expr is None:
            unchecked.append(c)
        elif not evaluate(c.expr, named):
            raise EnigmaError(f"a layout condition fails for these arguments: {c.text} ({c.message})",
                              c.file, c.line)
    return unchecked
