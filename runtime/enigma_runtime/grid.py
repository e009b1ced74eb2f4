"""Grid expressions (FORMAT.md, "Grid expressions"): plain data read by this small evaluator.

An expression is an int, {"sym": n}, {"dim": [arg, axis]}, {"arg": n} or {"op": OP, "args": [a, b]}.
Nothing else is accepted: unknown nodes raise GridError naming the node, so a manifest can never
make the runtime execute anything. Bounds: expressions nest at most MAX_DEPTH deep, their ints and
every intermediate value lie within +-MAX_VALUE (GridError otherwise), so no input can exhaust the
stack or compute with huge integers.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import GridError

MAX_DEPTH = 64
MAX_VALUE = 2**63 - 1


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


def _short(expr: Any) -> str:
    if isinstance(expr, int) and abs(expr) >= 10**30:
        return f"an int of about {expr.bit_length() * 3 // 10} digits"
    r = repr(expr)
    return r if len(r) <= 120 else r[:117] + "..."


def _bounded(v: int, expr: Any) -> int:
    if not -MAX_VALUE <= v <= MAX_VALUE:
        raise GridError(f"grid expression {_short(to_str(expr))} overflows: {_short(v)} is beyond "
                        f"+-{MAX_VALUE}")
    return v


def evaluate(expr: Any, sizes: Mapping[str, int], shapes: Mapping[str, Sequence[int]],
             scalars: Mapping[str, Any], _depth: int = 0) -> int:
    """The value of `expr` for one call. `sizes`: symbolic size name -> int; `shapes`: tensor
    argument -> its shape; `scalars`: scalar argument -> its value."""
    if isinstance(expr, bool) or not isinstance(expr, (int, dict)):
        raise GridError(f"grid expression node {_short(expr)} is not an int or an object")
    if _depth > MAX_DEPTH:
        raise GridError(f"grid expression nested more than {MAX_DEPTH} deep")
    if isinstance(expr, int):
        return _bounded(expr, expr)
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
            raise GridError(f"grid expression node {_short(expr)}: 'dim' takes [tensor name, axis]")
        name, axis = node
        if name not in shapes or not 0 <= axis < len(shapes[name]):
            raise GridError(f"grid expression node {_short(expr)}: no tensor argument {name!r} with axis "
                            f"{axis}")
        return int(shapes[name][axis])
    if len(expr) == 1 and "arg" in expr:
        name = expr["arg"]
        if name not in scalars:
            raise GridError(f"grid expression node {_short(expr)}: no scalar argument {name!r}")
        value = scalars[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or value in (float("inf"), float("-inf")) or int(value) != value:
            raise GridError(f"grid expression uses scalar argument {name!r} = {value!r}, not an integer")
        return _bounded(int(value), expr)
    if set(expr) == {"op", "args"}:
        fn, args = OPS.get(expr["op"]) if isinstance(expr["op"], str) else None, expr["args"]
        if fn is None:
            raise GridError(f"grid expression node {_short(expr)}: unknown op {_short(expr['op'])}; "
                            f"expected one of {', '.join(OPS)}")
        if not isinstance(args, list) or len(args) != 2:
            raise GridError(f"grid expression node {_short(expr)}: 'args' must be a list of two expressions")
        a = evaluate(args[0], sizes, shapes, scalars, _depth + 1)
        b = evaluate(args[1], sizes, shapes, scalars, _depth + 1)
        return _bounded(fn(a, b), expr)
    raise GridError(f"unknown grid expression node {_short(expr)}; expected an int, {{'sym'}}, {{'dim'}}, "
                    f"{{'arg'}} or {{'op', 'args'}}")


def validate(expr: Any, _depth: int = 0) -> None:
    """Check the structure of `expr` without evaluating it (raises GridError): known nodes only,
    names that are strings, ints within +-MAX_VALUE, nesting at most MAX_DEPTH deep."""
    if _depth > MAX_DEPTH:
        raise GridError(f"grid expression nested more than {MAX_DEPTH} deep")
    if isinstance(expr, dict) and set(expr) == {"op", "args"}:
        if not isinstance(expr["op"], str) or expr["op"] not in OPS:
            raise GridError(f"grid expression node {_short(expr)}: unknown op {_short(expr['op'])}")
        if not isinstance(expr["args"], list) or len(expr["args"]) != 2:
            raise GridError(f"grid expression node {_short(expr)}: 'args' must be a list of two expressions")
        for a in expr["args"]:
            validate(a, _depth + 1)
        return
    if isinstance(expr, dict) and len(expr) == 1 and ("sym" in expr or "arg" in expr):
        if not isinstance(next(iter(expr.values())), str):
            raise GridError(f"grid expression node {_short(expr)}: the name must be a string")
        return
    if isinstance(expr, dict) and len(expr) == 1 and "dim" in expr:
        node = expr["dim"]
        if not (isinstance(node, list) and len(node) == 2 and isinstance(node[0], str)
                and isinstance(node[1], int) and not isinstance(node[1], bool) and 0 <= node[1] < 64):
            raise GridError(f"grid expression node {_short(expr)}: 'dim' takes [tensor name, axis]")
        return
    if isinstance(expr, int) and not isinstance(expr, bool):
        if not -MAX_VALUE <= expr <= MAX_VALUE:
            raise GridError(f"grid expression int {_short(expr)} is beyond +-{MAX_VALUE}")
        return
    raise GridError(f"unknown grid expression node {_short(expr)}")


def to_str(expr: Any, _depth: int = 0) -> str:
    """`ceil_div(n, 256)`, `a.shape[0]`, `(n + 1)`: how errors and reprs print an expression."""
    if _depth > MAX_DEPTH:
        return "..."
    if isinstance(expr, int):
        return str(expr) if abs(expr) < 10**30 else _short(expr)
    if isinstance(expr, dict):
        if "sym" in expr:
            return str(expr["sym"])
        if "arg" in expr:
            return str(expr["arg"])
        if "dim" in expr and isinstance(expr["dim"], list) and len(expr["dim"]) == 2:
            return f"{expr['dim'][0]}.shape[{expr['dim'][1]}]"
        if "op" in expr and isinstance(expr.get("args"), list) and len(expr["args"]) == 2:
            a, b = (to_str(x, _depth + 1) for x in expr["args"])
            op = expr["op"]
            if isinstance(op, str) and op in _INFIX:
                return f"({a} {_INFIX[op]} {b})"
            return f"{op}({a}, {b})"
    return _short(expr)
