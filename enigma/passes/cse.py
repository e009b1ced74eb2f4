"""Common-subexpression elimination of pure ops (not in ir.NOT_PURE, no regions), scoped by region: an
op is replaced by an identical earlier one whose result dominates it."""
from __future__ import annotations

from enigma import ir
from enigma.passes.rewrite import with_body


def _key(op: ir.Op, operands: list[ir.Value]) -> tuple:
    attrs = tuple(sorted((k, repr(v)) for k, v in op.attrs.items()))
    return (op.name, tuple(v.id for v in operands), tuple(r.type for r in op.results), attrs)


def _block(block: ir.Block, scopes: list[dict[tuple, list[ir.Value]]], env: dict[int, ir.Value]) -> ir.Block:
    scopes.append({})
    out = []
    for op in block.ops:
        operands = [env.get(v.id, v) for v in op.operands]
        if op.name not in ir.NOT_PURE and not op.regions and op.results:
            key = _key(op, operands)
            prev = next((s[key] for s in reversed(scopes) if key in s), None)
            if prev is not None:
                env.update({r.id: p for r, p in zip(op.results, prev)})
                continue
            scopes[-1][key] = op.results
        regions = [ir.Block(r.args, _block(r, scopes, env).ops) for r in op.regions]
        out.append(ir.Op(op.name, operands, op.results, op.attrs, regions, op.line))
    scopes.pop()
    return ir.Block(block.args, out)


def cse(kernel: ir.Kernel) -> ir.Kernel:
    return with_body(kernel, _block(kernel.body, [], {}))
