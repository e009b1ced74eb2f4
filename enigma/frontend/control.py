"""What the rewritten kernel source calls (see rewrite.py): dynamic `if`/`for`/`while` become IR
control flow when their condition or bounds are traced; values assigned inside are merged (`if`
results) or carried (loop block arguments and `yield`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enigma_runtime import dtypes as dt

from enigma import ir
from enigma.errors import EnigmaError, error_here, user_frame
from enigma.frontend.builder import current
from enigma.frontend.values import (
    PyNum,
    Undefined,
    Val,
    as_val,
    default_dtype,
    describe,
    join,
    to_bool,
    weak_join,
    wrap,
)


def pick(scope: dict[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    """The current values of `names` (Undefined for names not assigned yet)."""
    return tuple(scope[n] if n in scope else Undefined(n, "it is not assigned before this point")
                 for n in names)


def is_static(c: Any) -> bool:
    if isinstance(c, Undefined):
        c.fail()
    return not isinstance(c, Val)


def while_static(cond: Callable[..., Any], values: tuple[Any, ...]) -> bool:
    """Whether a `while` condition is a Python value (evaluated in a scratch block, then dropped)."""
    b = current()
    b.push(ir.Block())
    try:
        return is_static(cond(*values))
    finally:
        b.pop()


class Escape(Exception):  # noqa: N818 - a control signal, not an error
    """A `return`/`break`/`continue` leaving the function made of a construct's body (see rewrite.py).
    `values` are the construct's assigned variables at that point; `value()` the returned value."""

    def __init__(self, kind: str, value: Callable[[], Any], values: tuple[Any, ...], file: str,
                 line: int) -> None:
        super().__init__(kind)
        self.kind, self.value, self.values, self.file, self.line = kind, value, values, file, line


def escape(kind: str, value: Callable[[], Any], values: tuple[Any, ...]) -> Escape:
    file, line = user_frame(2)
    return Escape(kind, value, values, file, line)


def reraise(e: Escape, values: tuple[Any, ...]) -> Escape:
    """`e` leaving one more construct's function, carrying that construct's variables."""
    return Escape(e.kind, e.value, values, e.file, e.line)


def control_error(e: Escape, construct: str) -> EnigmaError:
    where = {"if": "an `if` on a traced condition", "for": "a `for ... in range(...)` loop (a run-time loop)",
             "while": "a `while` loop on a traced condition"}[construct]
    hint = {"return": "assign the result to an output tensor and let control reach the end of the kernel",
            "break": "fold the exit test into a `while` condition, or unroll with enigma.range_constexpr",
            "continue": "wrap the rest of the loop body in an `if` instead"}[e.kind]
    return EnigmaError(f"`{e.kind}` inside {where} is not supported", e.file, e.line, hint=hint)


def _traced(construct: str, fn: Callable[..., tuple], *args: Any) -> tuple:
    """Call a construct's body function while tracing it: an escape is an error at its line."""
    try:
        return tuple(fn(*args))
    except Escape as e:
        raise control_error(e, construct) from None


# ---------------------------------------------------------------------------------------------------
# merging

def _num(x: Any) -> bool:
    return isinstance(x, (Val, *PyNum))


def _merge_type(xs: list[Any]) -> ir.Type:
    """The type an `if` result or loop variable gets from its values: scalars promote; vectors and
    simdgroup matrices must agree exactly."""
    vals = [x for x in xs if isinstance(x, Val)]
    wide = [v.v.type for v in vals if not _scalar(v.v.type)]
    if wide:
        if len(wide) != len(xs) or any(t != wide[0] for t in wide):
            raise error_here(f"values of different kinds meet after run-time control flow: "
                             f"{', '.join(describe(x) + ' ' + _tname(x) for x in xs)}",
                             "give the variable the same vector (or matrix) type on every path")
        return wide[0]
    d = vals[0].dtype if vals else None
    for v in vals[1:]:
        d = join(d, v.dtype)  # type: ignore[arg-type]
    for x in xs:
        if not isinstance(x, Val):
            d = default_dtype(x) if d is None else weak_join(d, x)
    return ir.Type(d)  # type: ignore[arg-type]


def _scalar(t: ir.Type) -> bool:
    return t.lanes == 1 and not t.matrix


def _tname(x: Any) -> str:
    return f"({x.v.type.name})" if isinstance(x, Val) else ""


def coerce(x: Any, t: ir.Type) -> Val:
    """`x` as a value of type `t` (scalars convert; vectors and matrices must already have it)."""
    if _scalar(t):
        return as_val(x, t.dtype)
    if not isinstance(x, Val) or x.v.type != t:
        raise error_here(f"expected a {t.name} value here, got {describe(x)} {_tname(x)}")
    return x


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    return type(a) is type(b) and isinstance(a, PyNum) and a == b


def _yield(block: ir.Block, values: list[Any], types: list[ir.Type], op: str = "yield",
           lead: list[ir.Value] | None = None) -> None:
    b = current()
    b.push(block)
    try:
        vs = [coerce(v, t).v for v, t in zip(values, types)]
        b.emit(op, (lead or []) + vs)
    finally:
        b.pop()


def _frag_state(frags: list[Any]) -> list[list[ir.Value]]:
    return [list(f.cells) for f in frags]


def _frag_set(frags: list[Any], state: list[list[ir.Value]]) -> None:
    for f, cells in zip(frags, state):
        f.cells = list(cells)


def dyn_if(cond: Any, then_fn: Callable[..., tuple], else_fn: Callable[..., tuple] | None,
           names: tuple[str, ...], values: tuple[Any, ...]) -> tuple[Any, ...]:
    """`if` on a traced condition: trace both branches into regions; merge what they assign (and the
    fragment elements they change)."""
    b = current()
    c = to_bool(cond)
    frags = b.live_fragments()
    before = _frag_state(frags)
    blocks, outs, fouts = [ir.Block(), ir.Block()], [], []
    for blk, fn in zip(blocks, (then_fn, else_fn)):
        _frag_set(frags, before)
        b.push(blk)
        try:
            outs.append(_traced("if", fn, *values) if fn is not None else values)
        finally:
            b.pop()
        fouts.append(_frag_state(frags))
    t_out, e_out = outs
    merged: list[Any] = list(values)
    carried: list[int] = []
    for k, (t, e) in enumerate(zip(t_out, e_out)):
        if _same(t, e):
            merged[k] = t
        elif isinstance(t, Undefined) or isinstance(e, Undefined):
            branch = "else" if isinstance(t, Undefined) else "then"
            merged[k] = Undefined(names[k], f"it is assigned only in the {branch} branch of the `if` on a "
                                            "traced condition")
        elif _num(t) and _num(e):
            carried.append(k)
        else:
            merged[k] = Undefined(names[k], f"the branches of the `if` on a traced condition assign it "
                                            f"different Python objects ({describe(t)}, {describe(e)})")
    types = [_merge_type([t_out[k], e_out[k]]) for k in carried]
    # fragment cells that differ between the branches become results too
    cells = [(i, j) for i, f in enumerate(frags) for j in range(len(f.cells))
             if fouts[0][i][j] is not fouts[1][i][j]]
    ctypes = [ir.Type(frags[i].dtype) for i, _ in cells]
    _yield(blocks[0], [t_out[k] for k in carried] + [Val(fouts[0][i][j]) for i, j in cells], types + ctypes)
    _yield(blocks[1], [e_out[k] for k in carried] + [Val(fouts[1][i][j]) for i, j in cells], types + ctypes)
    op = b.emit("if", [c.v], types + ctypes, regions=blocks)
    for k, r in zip(carried, op.results):
        merged[k] = wrap(r)
    _frag_set(frags, fouts[0])
    for (i, j), r in zip(cells, op.results[len(carried):]):
        frags[i].cells[j] = r
    return tuple(merged)


def ifexp(cond: Any, then_fn: Callable[[], Any], else_fn: Callable[[], Any]) -> Any:
    """`a if cond else b`: a Python choice, or an `if` op evaluating only the taken side at run time."""
    if is_static(cond):
        return then_fn() if cond else else_fn()
    (r,) = dyn_if(cond, lambda _: (then_fn(),), lambda _: (else_fn(),), ("<expression>",), (None,))
    if isinstance(r, Undefined):
        r.fail()
    return r


def and_(*operands: Callable[[], Any]) -> Any:
    """`a and b`: Python short-circuit on Python values; `&` of bools once a value is traced."""
    acc: Any = None
    for fn in operands:
        x = fn()
        if isinstance(acc, Val):
            acc = acc & to_bool(x)
        elif isinstance(x, Val):
            acc = to_bool(x)
        else:
            if not x:
                return x
            acc = x
    return acc


def or_(*operands: Callable[[], Any]) -> Any:
    acc: Any = None
    for fn in operands:
        x = fn()
        if isinstance(acc, Val):
            acc = acc | to_bool(x)
        elif isinstance(x, Val):
            acc = to_bool(x)
        else:
            if x:
                return x
            acc = x
    return acc


def not_(x: Any) -> Any:
    if isinstance(x, Undefined):
        x.fail()
    return ~to_bool(x) if isinstance(x, Val) else not x


# ---------------------------------------------------------------------------------------------------
# loops

def _carried(values: tuple[Any, ...]) -> list[int]:
    """Indices of the variables a loop carries: those holding numbers (traced or Python) before it."""
    return [k for k, v in enumerate(values) if _num(v)]


def _init_type(x: Any) -> ir.Type:
    return x.v.type if isinstance(x, Val) else ir.Type(default_dtype(x))


class _Frags:
    """The fragments around a loop: every cell is carried while tracing; `prune` then drops the cells
    the body does not change (their uses in the body read the value from before the loop)."""

    def __init__(self) -> None:
        self.frags = current().live_fragments()
        self.before = _frag_state(self.frags)
        self.slots = [(i, j) for i, f in enumerate(self.frags) for j in range(len(f.cells))]

    def values(self) -> list[Val]:
        return [Val(self.before[i][j]) for i, j in self.slots]

    def types(self) -> list[ir.Type]:
        return [ir.Type(self.frags[i].dtype) for i, _ in self.slots]

    def enter(self, args: list[ir.Value]) -> None:
        _frag_set(self.frags, self.before)
        for (i, j), a in zip(self.slots, args):
            self.frags[i].cells[j] = a

    def outs(self) -> list[Val]:
        return [Val(self.frags[i].cells[j]) for i, j in self.slots]

    def leave(self, results: list[ir.Value]) -> None:
        _frag_set(self.frags, self.before)
        for (i, j), r in zip(self.slots, results):
            self.frags[i].cells[j] = r


def _loop(kind: str, names: tuple[str, ...], values: tuple[Any, ...],
          build: Callable[[list[ir.Type]], tuple[ir.Op, list[Any]]]) -> tuple[Any, ...]:
    """Trace a loop whose carried values are the numeric `values`; retrace once when a variable that
    started as a Python number (weak) gets a wider type in the body."""
    carried = _carried(values)
    types = [_init_type(values[k]) for k in carried]
    for _attempt in range(3):
        op, outs = build(types)
        new_types = list(types)
        for j, k in enumerate(carried):
            o = outs[k]
            if isinstance(o, Val) and o.v.type != types[j]:
                ot = o.v.type
                if not _scalar(ot) or not _scalar(types[j]) or isinstance(values[k], Val) \
                        or join(types[j].dtype, o.dtype) != o.dtype:
                    raise error_here(f"variable {names[k]!r} changes type in the {kind} loop: it is "
                                     f"{types[j].name} before the loop and {ot.name} after the body",
                                     f"give it its final type before the loop ({names[k]} = "
                                     f"{names[k]}.to(enigma.{o.dtype.name})) or cast the new value in the "
                                     "body "
                                     f"with .to(enigma.{types[j].dtype.name})")
                new_types[j] = ot
        if new_types == types:
            break
        types = new_types
    else:
        raise error_here(f"the types of the {kind} loop's variables do not settle")
    result: list[Any] = list(values)
    for j, k in enumerate(carried):
        result[k] = wrap(op.results[j])
    for k, (v, o) in enumerate(zip(values, outs)):
        if k in carried:
            continue
        if isinstance(v, Undefined):
            result[k] = Undefined(names[k], f"it is assigned only inside the body of a {kind} loop")
        elif o is not v:
            raise error_here(f"variable {names[k]!r} holds a {describe(v)} and is reassigned inside a {kind} "
                             "loop; only numbers can change from one iteration to the next",
                             "use enigma.range_constexpr to unroll the loop in Python instead")
    return tuple(result)


def dyn_for(bounds: tuple[Any, ...], body: Callable[..., tuple], names: tuple[str, ...],
            values: tuple[Any, ...]) -> tuple[Any, ...]:
    """`for i in range(...)`: an IR `for` loop (bounds are int32; the step may be negative, as in Python)."""
    if not 1 <= len(bounds) <= 3:
        raise error_here(f"range expects 1 to 3 arguments, got {len(bounds)}")
    lb, ub, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
    for x in (lb, ub, step):
        if isinstance(x, Undefined):
            x.fail()
        py_int = isinstance(x, int) and not isinstance(x, bool)
        if not (isinstance(x, Val) and x.dtype.is_int and _scalar(x.v.type)) and not py_int:
            raise error_here(f"range bounds must be integers, got {describe(x)}")
    if isinstance(step, int) and step == 0:
        raise error_here("range step must not be zero", "use a positive step to count up, a negative one "
                         "to count down")
    b = current()
    lbv, ubv, stv = (as_val(x, dt.int32) for x in (lb, ub, step))
    fr = _Frags()

    def build(types: list[ir.Type]) -> tuple[ir.Op, list[Any]]:
        carried = _carried(values)
        init = [coerce(values[k], t) for k, t in zip(carried, types)] + fr.values()
        all_types = types + fr.types()
        blk = ir.Block([ir.Value(ir.Type(dt.int32))] + [ir.Value(t) for t in all_types])
        ins = list(values)
        for k, a in zip(carried, blk.args[1:]):
            ins[k] = wrap(a)
        fr.enter(blk.args[1 + len(carried):])
        b.push(blk)
        try:
            outs = list(_traced("for", body, Val(blk.args[0]), *ins))
        finally:
            b.pop()
        _yield(blk, [outs[k] for k in carried] + fr.outs(), all_types)
        op = ir.Op("for", [lbv.v, ubv.v, stv.v] + [v.v for v in init],
                   [ir.Value(t) for t in all_types], {}, [blk], b.line())
        return op, outs

    result = _finish(b, "`for`", names, values, build)
    op = b.blocks[-1].ops[-1]
    fr.leave(_prune_for(op, len(_carried(values)), len(fr.slots)))
    return result


def _prune_for(op: ir.Op, n_named: int, n_cells: int) -> list[ir.Value]:
    """Drop the carried fragment cells a `for` body yields unchanged (uses of their region argument read
    the initial value instead); returns the value of every cell after the loop."""
    body = op.regions[0]
    term = body.ops[-1]
    after: list[ir.Value] = []
    subst: dict[ir.Value, ir.Value] = {}
    keep = [True] * (1 + n_named)  # region args: iv + named
    keep_c = [True] * n_named  # carried values (results, init, yields)
    for j in range(n_cells):
        c = n_named + j
        arg, init, res = body.args[1 + c], op.operands[3 + c], op.results[c]
        if term.operands[c] is arg:
            subst[arg] = init
            keep.append(False)
            keep_c.append(False)
            after.append(init)
        else:
            keep.append(True)
            keep_c.append(True)
            after.append(res)
    if subst:
        for inner in ir.walk(body):
            inner.operands = [subst.get(v, v) for v in inner.operands]
        body.args = [a for a, k in zip(body.args, keep) if k]
        term.operands = [v for v, k in zip(term.operands, keep_c) if k]
        op.operands = op.operands[:3] + [v for v, k in zip(op.operands[3:], keep_c) if k]
        op.results = [r for r, k in zip(op.results, keep_c) if k]
    return after


def loop_var_after(name: str) -> Undefined:
    return Undefined(name, "it is the variable of a run-time `for` loop, which has no value after the loop")


def _finish(b: Any, kind: str, names: tuple[str, ...], values: tuple[Any, ...],
            build: Callable[[list[ir.Type]], tuple[ir.Op, list[Any]]]) -> tuple[Any, ...]:
    holder: list[ir.Op] = []

    def build_and_keep(types: list[ir.Type]) -> tuple[ir.Op, list[Any]]:
        op, outs = build(types)
        holder[:] = [op]
        return op, outs

    result = _loop(kind, names, values, build_and_keep)
    b.append(holder[0])
    return result


def dyn_while(cond: Callable[..., Any], body: Callable[..., tuple], names: tuple[str, ...],
              values: tuple[Any, ...]) -> tuple[Any, ...]:
    """`while` on a traced condition: before-region computes the condition, after-region the body
    (fragment cells are carried through both)."""
    b = current()
    fr = _Frags()

    def build(types: list[ir.Type]) -> tuple[ir.Op, list[Any]]:
        carried = _carried(values)
        n = len(carried)
        init = [coerce(values[k], t) for k, t in zip(carried, types)] + fr.values()
        all_types = types + fr.types()
        before = ir.Block([ir.Value(t) for t in all_types])
        after = ir.Block([ir.Value(t) for t in all_types])
        ins_b, ins_a = list(values), list(values)
        for k, x, y in zip(carried, before.args, after.args):
            ins_b[k], ins_a[k] = wrap(x), wrap(y)
        fr.enter(before.args[n:])
        b.push(before)
        try:
            c = to_bool(cond(*ins_b))
        finally:
            b.pop()
        _yield(before, [ins_b[k] for k in carried] + fr.outs(), all_types, "condition", [c.v])
        fr.enter(after.args[n:])
        b.push(after)
        try:
            outs = list(_traced("while", body, *ins_a))
        finally:
            b.pop()
        _yield(after, [outs[k] for k in carried] + fr.outs(), all_types)
        op = ir.Op("while", [v.v for v in init], [ir.Value(t) for t in all_types], {}, [before, after],
                   b.line())
        return op, outs

    result = _finish(b, "`while`", names, values, build)
    op = b.blocks[-1].ops[-1]
    fr.leave(op.results[len(_carried(values)):])
    return result
