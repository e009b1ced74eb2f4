"""Common-subexpression elimination of pure ops (not in ir.NOT_PURE, no regions), scoped by region: an
op is replaced by an identical earlier one whose result dominates it."""
from __future__ import annotations

from enigma import ir
from enigma.passes.opbuilder import with_body


def _key(op: ir.Op, operands: list[ir.Value]) -> tuple:
    attrs = tuple(sorted((k, repr(v)) for k, v in op.attrs.items())) if op.attrs else ()
    return (op.name, tuple(v.id for v in operands), tuple(r.type for r in op.results), attrs)


def _block(block: ir.Block, seen: dict[tuple, list[ir.Value]], env: dict[int, ir.Value]) -> ir.Block:
    """`seen` holds the ops visible here (defined earlier in this block or in enclosing ones); keys added
    in this block are removed when it ends, so a region's values never leak out of it."""
    added = []
    out = []
    for op in block.ops:
        operands = [env.get(v.id, v) for v in op.operands]
        if op.name not in ir.NOT_PURE and not op.regions and op.results:
            key = _key(op, operands)
            prev = seen.get(key)
            if prev is not None:
                env.update({r.id: p for r, p in zip(op.results, prev)})
                continue
            seen[key] = op.results
            added.append(key)
        regions = [_block(r, seen, env) for r in op.regions]
        out.append(ir.Op(op.name, operands, op.results, op.attrs, regions, op.line))
    for key in added:
        del seen[key]
    return ir.Block(block.args, out)


def cse(kernel: ir.Kernel) -> ir.Kernel:
    return with_body(kernel, _block(kernel.body, {}, {}))
