"""Launch-size expressions of @jit functions and decorator grids, and run-time choices.

A jit argument's `.shape[k]` is an `Expr`: a size that may be known now (a numpy array) or only at
launch (a TensorSpec with symbolic sizes). Arithmetic builds a tree that prints like `ceil_div(n, 256)`
and serialises to the data form of runtime/FORMAT.md "Grid expressions" (over the kernel's arguments
for a kernel's grid, over the jit's arguments for a jit entry). Comparisons (`n <= 256`) build
conditions; `enigma.select(cond, a, b)` makes a `Choice` that the launch compiles both ways and the
runtime decides at every call.

Using an expression's value in Python (`if n > 100:`, `range(n)`, `int(n)`) needs a value: for a
size known only at launch it raises (a shipped jit cannot do it); for a size known now (numpy arrays
given to enigma.compile) it is recorded as a guard of the compiled jit (`n > 100` must hold the same
way at every call).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

OPS = ("add", "sub", "mul", "floordiv", "mod", "min", "max", "ceil_div", "lt", "le", "gt", "ge", "eq",
       "ne", "and", "or")
_INFIX = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "lt": "<", "le": "<=",
          "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "and", "or": "or"}


class Guards(threading.local):
    """Where the running @jit (this thread's) records the expressions whose values Python used."""

    def __init__(self) -> None:
        self.sink: list[tuple[Expr, int, str, int]] | None = None


guards = Guards()


def _user_line() -> tuple[str, int]:
    from enigma.errors import user_frame  # enigma.errors imports nothing of the frontend
    return user_frame(3)


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
    if op == "ceil_div":
        return -(-a // b)
    return int(_COMPARE[op](a, b))


_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "and": lambda a, b: bool(a) and bool(b), "or": lambda a, b: bool(a) or bool(b)}


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
            if not isinstance(x, (int, Expr)) or (isinstance(x, bool) and op not in ("and", "or")):
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

    def __lt__(self, o: Any) -> Any: return Expr.apply("lt", self, o)
    def __le__(self, o: Any) -> Any: return Expr.apply("le", self, o)
    def __gt__(self, o: Any) -> Any: return Expr.apply("gt", self, o)
    def __ge__(self, o: Any) -> Any: return Expr.apply("ge", self, o)

    def _known(self, what: str) -> int:
        if self.value is None:
            raise TypeError(f"{what} of {self}, a size known only at launch: a jit that decides in Python "
                            "on a launch-time size cannot be shipped as data; build launch sizes with "
                            "+ - * // % and enigma.ceil_div/minimum/maximum, and choose between kernels or "
                            "Constexpr values with enigma.select(condition, a, b)")
        sink = guards.sink
        if sink is not None:
            sink.append((self, self.value, *_user_line()))
        return self.value

    def __int__(self) -> int: return self._known("int()")
    def __index__(self) -> int: return self._known("using as an int")
    def __bool__(self) -> bool: return bool(self._known("the truth value"))
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
        a, b = (_show(x) for x in self.args)
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


def _show(x: Any) -> str:
    return f"{x}" if not isinstance(x, Expr) else str(x)


def ceil_div_expr(a: Any, b: Any) -> Any:
    return Expr.apply("ceil_div", a, b)


def evaluate(e: Any) -> Any:
    """The concrete int of an expression, or the expression itself when only known at launch."""
    if isinstance(e, Expr):
        return e.value if e.value is not None else e
    return e


class Choice:
    """A value picked at every launch: `cases` are (condition, value) pairs whose conditions exclude
    each other. Made by `enigma.select`; arithmetic with ints and sizes applies to every case; a launch
    that uses one is compiled once per case (FORMAT.md section 7)."""

    def __init__(self, cases: list[tuple[Any, Any]], file: str, line: int) -> None:
        self.cases, self.file, self.line = cases, file, line

    def __repr__(self) -> str:
        return "select(" + ", ".join(f"{c}: {v!r}" for c, v in self.cases) + ")"

    def _refuse(self, what: str) -> TypeError:
        return TypeError(f"{what} of {self!r}, a value chosen at launch: pass it to a kernel launch "
                         "(as the kernel, a Constexpr argument, or a grid/block entry), after + - * // % "
                         "with ints or sizes if need be; decide with enigma.select, not in Python")

    def __bool__(self) -> bool:
        raise self._refuse("the truth value")

    def _map(self, fn: Callable[[Any], Any], what: str) -> Choice:
        if any(not isinstance(v, (int, Expr)) or isinstance(v, bool) for _, v in self.cases):
            raise self._refuse(what)
        return Choice([(c, fn(v)) for c, v in self.cases], self.file, self.line)

    def __add__(self, o: Any) -> Choice: return self._map(lambda v: v + o, "+")
    def __radd__(self, o: Any) -> Choice: return self._map(lambda v: o + v, "+")
    def __sub__(self, o: Any) -> Choice: return self._map(lambda v: v - o, "-")
    def __rsub__(self, o: Any) -> Choice: return self._map(lambda v: o - v, "-")
    def __mul__(self, o: Any) -> Choice: return self._map(lambda v: v * o, "*")
    def __rmul__(self, o: Any) -> Choice: return self._map(lambda v: o * v, "*")
    def __floordiv__(self, o: Any) -> Choice: return self._map(lambda v: v // o, "//")
    def __rfloordiv__(self, o: Any) -> Choice: return self._map(lambda v: o // v, "//")
    def __mod__(self, o: Any) -> Choice: return self._map(lambda v: v % o, "%")
    def __lt__(self, o: Any) -> bool: raise self._refuse("comparing (<)")
    def __le__(self, o: Any) -> bool: raise self._refuse("comparing (<=)")
    def __gt__(self, o: Any) -> bool: raise self._refuse("comparing (>)")
    def __ge__(self, o: Any) -> bool: raise self._refuse("comparing (>=)")

    def __index__(self) -> int:
        raise self._refuse("using as an int")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`enigma.select(c, kernel_a, kernel_b)(args...)`: a launch of whichever kernel is chosen."""
        # kernels are told apart by their `call_choice` (enigma.frontend.kernel imports this module)
        if not all(callable(getattr(v, "call_choice", None)) for _, v in self.cases):
            raise self._refuse("calling")
        return self.cases[0][1].call_choice(self, args, kwargs)


def not_condition(c: Any) -> Any:
    return Expr.apply("eq", c, 0)


def and_condition(a: Any, b: Any) -> Any:
    if a is True:
        return b
    if b is True:
        return a
    return Expr.apply("and", a, b)


def select(condition: Any, a: Any, b: Any) -> Any:
    """`enigma.select(condition, a, b)` in a @jit: `a` where `condition` holds at launch, else `b`.

    `condition` is a comparison of launch sizes or int scalars (`n_cols <= 256`); `a` and `b` are
    kernels, Constexpr values or grid/block entries (or nested selects). Both are compiled and
    shipped; the runtime evaluates `condition` at every call. A plain bool picks at once."""
    if isinstance(condition, bool):
        return a if condition else b
    if not isinstance(condition, Expr):
        raise TypeError(f"enigma.select's condition must compare launch sizes or scalars (n <= 256), "
                        f"got {type(condition).__name__} {condition!r}")
    file, line = _user_line()
    cases: list[tuple[Any, Any]] = []
    for cond, v in (a.cases if isinstance(a, Choice) else [(True, a)]):
        cases.append((and_condition(condition, cond), v))
    rest = not_condition(condition)
    for cond, v in (b.cases if isinstance(b, Choice) else [(True, b)]):
        cases.append((and_condition(rest, cond), v))
    return Choice(cases, file, line)


def flatten_choices(values: list[Any]) -> list[Choice]:
    """The distinct Choices among `values` (and inside tuples/lists among them), in order."""
    out: list[Choice] = []
    for v in values:
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(x, Choice) and all(x is not c for c in out):
                out.append(x)
    return out


def substitute(v: Any, picked: dict[int, Any]) -> Any:
    """`v` with every Choice replaced by the value `picked[id(choice)]` (inside tuples/lists too)."""
    if isinstance(v, Choice):
        return picked[id(v)]
    if isinstance(v, (tuple, list)):
        return type(v)(substitute(x, picked) for x in v)
    return v
