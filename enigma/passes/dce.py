"""Dead-code elimination. Removes pure ops whose results are unused; never removes a side-effecting op
(ir.SIDE_EFFECTS). Control flow: an unused result of `if` is dropped with its yields; an unused carried
value of `for` is dropped when nothing live in the body depends on it; an `if`/`for` whose regions have
no effect and whose results are all unused is removed (a `for` over a range always terminates). A `while`
is kept whole (it may not terminate; its carried values feed its condition)."""
from __future__ import annotations

from enigma import ir
from enigma.passes.rewrite import with_body

_CONTROL = ("if", "for", "while")


def _has_effect(block: ir.Block) -> bool:
    return any(op.name in ir.SIDE_EFFECTS and op.name not in ("yield", "condition") for op in ir.walk(block))


def _sweep(block: ir.Block, live: set[int], term_live: list[bool] | None) -> ir.Block:
    """New block with dead ops removed. `live` holds ids used later (updated in place); `term_live` says
    which operands of the block's yield are needed (None: all)."""
    out: list[ir.Op] = []
    for op in reversed(block.ops):
        if op.name in ("yield", "condition"):
            keep = term_live if term_live is not None and op.name == "yield" else [True] * len(op.operands)
            if op.name == "condition":  # the condition itself is always live
                keep = [True] + list(term_live if term_live is not None else [True] * (len(op.operands) - 1))
            operands = [v for v, k in zip(op.operands, keep) if k]
            live.update(v.id for v in operands)
            out.append(ir.Op(op.name, operands, [], op.attrs, [], op.line))
            continue
        if op.name in _CONTROL:
            new = _control(op, live)
            if new is not None:
                out.append(new)
            continue
        if op.name not in ir.SIDE_EFFECTS and not any(r.id in live for r in op.results):
            continue
        live.update(v.id for v in op.operands)
        out.append(op)
    out.reverse()
    return ir.Block(block.args, out)


def _control(op: ir.Op, live: set[int]) -> ir.Op | None:
    used = [r.id in live for r in op.results]
    if op.name == "if":
        if not any(used) and not any(_has_effect(r) for r in op.regions):
            return None
        regions = [_sweep(r, live, used) for r in op.regions]
        live.add(op.operands[0].id)
        results = [r for r, u in zip(op.results, used) if u]
        return ir.Op("if", op.operands, results, op.attrs, regions, op.line)
    if op.name == "for":
        body = op.regions[0]
        if not any(used) and not _has_effect(body):
            return None
        keep = list(used)  # carried positions kept: grow until nothing kept depends on a dropped one
        while True:
            inner = set(live)
            swept = _sweep(body, inner, keep)
            grown = [k or a.id in inner for k, a in zip(keep, body.args[1:])]
            if grown == keep:
                break
            keep = grown
        live |= inner
        args = [body.args[0]] + [a for a, k in zip(body.args[1:], keep) if k]
        lb, ub, step, *init = op.operands
        operands = [lb, ub, step] + [v for v, k in zip(init, keep) if k]
        live.update(v.id for v in operands)
        return ir.Op("for", operands, [r for r, k in zip(op.results, keep) if k], op.attrs,
                     [ir.Block(args, swept.ops)], op.line)
    # while: keep everything it computes, sweep dead pure ops inside its regions
    before, after = op.regions
    inner = set(live)
    after2 = _sweep(after, inner, None)
    before2 = _sweep(before, inner, None)
    live |= inner
    live.update(v.id for v in op.operands)
    return ir.Op("while", op.operands, op.results, op.attrs, [before2, after2], op.line)


def dce(kernel: ir.Kernel) -> ir.Kernel:
    return with_body(kernel, _sweep(kernel.body, set(), None))
