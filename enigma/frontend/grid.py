"""Launch-size expressions of @jit functions and decorator grids.

A jit argument's `.shape[k]` is an `Expr`: a size that may be known now (a numpy array) or only at
launch (a TensorSpec with symbolic sizes). Arithmetic builds a tree that prints like `ceil_div(n, 256)`
and serialises to the data form of runtime/FORMAT.md "Grid expressions" over the kernel's arguments.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

OPS = ("add", "sub", "mul", "floordiv", "mod", "min", "max", "ceil_div")
_INFIX = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%"}


def _eval(op: str, a: int, b: int) -> int:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "floordiv":
        return a // b
    if op == "mod":
        return a % b
    if op == "min":
        return min(a, b)
    if op == "max":
        return max(a, b)
    return -(-a // b)  # ceil_div


class Expr:
    """An integer launch-size expression. kind: "sym" (named size), "dim" (size of a jit tensor along an
    axis), "arg" (a jit scalar), "op" (OP over args). `value` is the concrete int when known."""

    __slots__ = ("kind", "name", "host", "axis", "op", "args", "value")

    def __init__(self, kind: str, *, name: str = "", host: Any = None, axis: int = 0, op: str = "",
                 args: tuple = (), value: int | None = None) -> None:
        self.kind, self.name, self.host, self.axis = kind, name, host, axis
        self.op, self.args, self.value = op, args, value

    @staticmethod
    def apply(op: str, a: Any, b: Any) -> Any:
        for x in (a, b):
            if not isinstance(x, (int, Expr)) or isinstance(x, bool):
                raise TypeError(f"launch-size expression {op} needs ints, got {type(x).__name__}")
        if isinstance(a, int) and isinstance(b, int):
            return _eval(op, a, b)
        va = a if isinstance(a, int) else a.value
        vb = b if isinstance(b, int) else b.value
        value = _eval(op, va, vb) if va is not None and vb is not None else None
        return Expr("op", op=op, args=(a, b), value=value)

    def __add__(self, o: Any) -> Any: return Expr.apply("add", self, o)
    def __radd__(self, o: Any) -> Any: return Expr.apply("add", o, self)
    def __sub__(self, o: Any) -> Any: return Expr.apply("sub", self, o)
    def __rsub__(self, o: Any) -> Any: return Expr.apply("sub", o, self)
    def __mul__(self, o: Any) -> Any: return Expr.apply("mul", self, o)
    def __rmul__(self, o: Any) -> Any: return Expr.apply("mul", o, self)
    def __floordiv__(self, o: Any) -> Any: return Expr.apply("floordiv", self, o)
    def __rfloordiv__(self, o: Any) -> Any: return Expr.apply("floordiv", o, self)
    def __mod__(self, o: Any) -> Any: return Expr.apply("mod", self, o)
    def __rmod__(self, o: Any) -> Any: return Expr.apply("mod", o, self)

    def _known(self, what: str) -> int:
        if self.value is None:
            raise TypeError(f"{what} of the symbolic size {self} is only known at launch; build launch "
                            "sizes with + - * // % and enigma.ceil_div/minimum/maximum instead")
        return self.value

    def __int__(self) -> int: return self._known("int()")
    def __index__(self) -> int: return self._known("using as an int")
    def __bool__(self) -> bool: return bool(self._known("truth"))
    def __lt__(self, o: Any) -> bool: return self._known("<") < int(o)
    def __le__(self, o: Any) -> bool: return self._known("<=") <= int(o)
    def __gt__(self, o: Any) -> bool: return self._known(">") > int(o)
    def __ge__(self, o: Any) -> bool: return self._known(">=") >= int(o)
    __hash__ = object.__hash__

    def __eq__(self, o: object) -> bool:  # type: ignore[override]
        if isinstance(o, Expr) and o is self:
            return True
        return self._known("==") == int(o)  # type: ignore[call-overload]

    def __str__(self) -> str:
        if self.kind == "sym":
            return self.name
        if self.kind == "dim":
            return f"{self.name}.shape[{self.axis}]"
        if self.kind == "arg":
            return self.name
        a, b = (str(x) for x in self.args)
        if self.op in _INFIX:
            return f"({a} {_INFIX[self.op]} {b})"
        return f"{self.op}({a}, {b})"

    __repr__ = __str__

    def to_json(self, resolve: Callable[[Expr], Any]) -> Any:
        """FORMAT.md grid expression; `resolve` maps leaves to their data form over kernel args."""
        if self.kind == "op":
            args = [a if isinstance(a, int) else a.to_json(resolve) for a in self.args]
            return {"op": self.op, "args": args}
        return resolve(self)


def ceil_div_expr(a: Any, b: Any) -> Any:
    return Expr.apply("ceil_div", a, b)


def evaluate(e: Any) -> Any:
    """The concrete int of an expression, or the expression itself when only known at launch."""
    if isinstance(e, Expr):
        return e.value if e.value is not None else e
    return e
