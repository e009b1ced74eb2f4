"""Grid expressions (FORMAT.md, "Grid expressions"): plain data read by this small evaluator.

An expression is an int, {"sym": n}, {"dim": [arg, axis]}, {"arg": n} or {"op": OP, "args": [a, b]}.
Nothing else is accepted: unknown nodes raise GridError naming the node, so a manifest can never
make the runtime execute anything.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import GridError


def _floordiv(a: int, b: int) -> int:
    if b == 0:
        raise GridError("division by zero in a grid expression")
    return a // b


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise GridError("modulo by zero in a grid expression")
    return a % b


def _ceil_div(a: int, b: int) -> int:
    if b == 0:
        raise GridError("ceil_div by zero in a grid expression")
    return -(-a // b)


OPS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "floordiv": _floordiv, "mod": _mod, "min": min, "max": max, "ceil_div": _ceil_div,
    # conditions ("requires"): 1 for true, 0 for false
    "lt": lambda a, b: int(a < b), "le": lambda a, b: int(a <= b), "gt": lambda a, b: int(a > b),
    "ge": lambda a, b: int(a >= b), "eq": lambda a, b: int(a == b), "ne": lambda a, b: int(a != b),
    "and": lambda a, b: int(bool(a) and bool(b)), "or": lambda a, b: int(bool(a) or bool(b)),
}
_INFIX = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "lt": "<", "le": "<=",
          "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "and", "or": "or"}


def evaluate(expr: Any, sizes: Mapping[str, int], shapes: Mapping[str, Sequence[int]],
             scalars: Mapping[str, Any]) -> int:
    """The value of `expr` for one call. `sizes`: symbolic size name -> int; `shapes`: tensor
    argument -> its shape; `scalars`: scalar argument -> its value."""
    if isinstance(expr, bool) or not isinstance(expr, (int, dict)):
        raise GridError(f"grid expression node {expr!r} is not an int or an object")
    if isinstance(expr, int):
        return expr
    if len(expr) == 1 and "sym" in expr:
        name = expr["sym"]
        if name not in sizes:
            raise GridError(f"grid expression uses symbolic size {name!r}, which no argument's shape "
                            f"names (known: {', '.join(sizes) or 'none'})")
        return int(sizes[name])
    if len(expr) == 1 and "dim" in expr:
        node = expr["dim"]
        if not (isinstance(node, list) and len(node) == 2 and isinstance(node[0], str)
                and isinstance(node[1], int) and not isinstance(node[1], bool)):
            raise GridError(f"grid expression node {expr!r}: 'dim' takes [tensor name, axis]")
        name, axis = node
        if name not in shapes or not 0 <= axis < len(shapes[name]):
            raise GridError(f"grid expression node {expr!r}: no tensor argument {name!r} with axis {axis}")
        return int(shapes[name][axis])
    if len(expr) == 1 and "arg" in expr:
        name = expr["arg"]
        if name not in scalars:
            raise GridError(f"grid expression node {expr!r}: no scalar argument {name!r}")
        value = scalars[name]
        if isinstance(value, bool) or int(value) != value:
            raise GridError(f"grid expression uses scalar argument {name!r} = {value!r}, not an integer")
        return int(value)
    if set(expr) == {"op", "args"}:
        fn, args = OPS.get(expr["op"]) if isinstance(expr["op"], str) else None, expr["args"]
        if fn is None:
            raise GridError(f"grid expression node {expr!r}: unknown op {expr['op']!r}; expected one of "
                            f"{', '.join(OPS)}")
        if not isinstance(args, list) or len(args) != 2:
            raise GridError(f"grid expression node {expr!r}: 'args' must be a list of two expressions")
        return fn(evaluate(args[0], sizes, shapes, scalars), evaluate(args[1], sizes, shapes, scalars))
    raise GridError(f"unknown grid expression node {expr!r}; expected an int, {{'sym'}}, {{'dim'}}, "
                    f"{{'arg'}} or {{'op', 'args'}}")


def validate(expr: Any) -> None:
    """Check the structure of `expr` without evaluating it (raises GridError)."""
    if isinstance(expr, dict) and set(expr) == {"op", "args"}:
        if expr["op"] not in OPS:
            raise GridError(f"grid expression node {expr!r}: unknown op {expr['op']!r}")
        if not isinstance(expr["args"], list) or len(expr["args"]) != 2:
            raise GridError(f"grid expression node {expr!r}: 'args' must be a list of two expressions")
        for a in expr["args"]:
            validate(a)
        return
    if isinstance(expr, dict) and len(expr) == 1 and ("sym" in expr or "arg" in expr):
        if not isinstance(next(iter(expr.values())), str):
            raise GridError(f"grid expression node {expr!r}: the name must be a string")
        return
    if isinstance(expr, dict) and len(expr) == 1 and "dim" in expr:
        node = expr["dim"]
        if not (isinstance(node, list) and len(node) == 2 and isinstance(node[0], str)
                and isinstance(node[1], int) and not isinstance(node[1], bool)):
            raise GridError(f"grid expression node {expr!r}: 'dim' takes [tensor name, axis]")
        return
    if isinstance(expr, int) and not isinstance(expr, bool):
        return
    raise GridError(f"unknown grid expression node {expr!r}")


def to_str(expr: Any) -> str:
    """`ceil_div(n, 256)`, `a.shape[0]`, `(n + 1)`: how errors and reprs print an expression."""
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, dict):
        if "sym" in expr:
            return str(expr["sym"])
        if "arg" in expr:
            return str(expr["arg"])
        if "dim" in expr and isinstance(expr["dim"], list) and len(expr["dim"]) == 2:
            return f"{expr['dim'][0]}.shape[{expr['dim'][1]}]"
        if "op" in expr and isinstance(expr.get("args"), list) and len(expr["args"]) == 2:
            a, b = (to_str(x) for x in expr["args"])
            op = expr["op"]
            return f"({a} {_INFIX[op]} {b})" if op in _INFIX else f"{op}({a}, {b})"
    return repr(expr)
