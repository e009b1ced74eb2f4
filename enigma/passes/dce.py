"""Dead-code elimination. Removes pure ops whose results are unused; never removes a side-effecting op
(ir.SIDE_EFFECTS). Control flow: an unused result of `if` is dropped with its yields; an unused carried
value of `for` is dropped when nothing live in the body depends on it; an `if`/`for` whose regions have
no effect and whose results are all unused is removed (a `for` over a range always terminates). A `while`
is always kept (it may not terminate); its unused results and the carried values nothing live needs are
dropped."""
from __future__ import annotations

from enigma import ir
from enigma.passes.opbuilder import with_body

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
    # while: always kept (it may not terminate). Its condition values (results, after-region args) and
    # its carried values (before-region args, yields) are dropped when nothing live depends on them.
    before, after = op.regions
    keep_res, keep_carry = list(used), [False] * len(before.args)
    while True:
        inner = set(live)
        after2 = _sweep(after, inner, keep_carry)
        res = [k or a.id in inner for k, a in zip(keep_res, after.args)]
        before2 = _sweep(before, inner, res)
        carry = [k or a.id in inner for k, a in zip(keep_carry, before.args)]
        if (res, carry) == (keep_res, keep_carry):
            break
        keep_res, keep_carry = res, carry
    live |= inner
    operands = [v for v, k in zip(op.operands, keep_carry) if k]
    live.update(v.id for v in operands)
    before2.args = [a for a, k in zip(before.args, keep_carry) if k]
    after2.args = [a for a, k in zip(after.args, keep_res) if k]
    return ir.Op("while", operands, [r for r, k in zip(op.results, keep_res) if k], op.attrs,
                 [before2, after2], op.line)

def dce(kernel: ir.Kernel) -> ir.Kernel:
    return with_body(kernel, _sweep(kernel.body, set(), None))
