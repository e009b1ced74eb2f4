"""A tiny scalar interpreter of enigma IR for the frontend's semantic tests: runs every thread of the
grid one after another (so only kernels without barriers or simd-group ops). The runtime's CPU executor
is the real one; this only checks that traced control flow, merges and carried values mean the right
thing."""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from enigma import ir

_BIN = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "min": min, "max": max, "and": lambda a, b: a & b, "or": lambda a, b: a | b,
        "xor": lambda a, b: a ^ b, "shl": lambda a, b: a << b, "shr": lambda a, b: a >> b}
_CMP = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}
_UN = {"neg": lambda a: -a, "abs": abs, "exp": math.exp, "exp2": lambda a: 2.0 ** a, "log": math.log,
       "log2": math.log2, "sqrt": math.sqrt, "rsqrt": lambda a: 1 / math.sqrt(a), "sin": math.sin,
       "cos": math.cos, "tanh": math.tanh, "floor": math.floor, "ceil": math.ceil}


def _conv(x: Any, t: ir.Type) -> Any:
    d = t.dtype
    if d.kind == "b":
        return bool(x)
    if d.is_float:
        return float(np.array(x, dtype=d.np if d.name != "bfloat16" else np.float32))
    v = int(math.trunc(x)) if isinstance(x, float) else int(x)
    return int(np.array(v).astype(np.int64).astype(d.np))


class _Run:
    def __init__(self, kernel: ir.Kernel, buffers: dict[str, np.ndarray], scalars: dict[str, Any],
                 tid: tuple, bid: tuple, bdim: tuple, gdim: tuple) -> None:
        self.k, self.buf, self.scalars = kernel, buffers, scalars
        self.b = {"thread_idx": tid, "block_idx": bid, "block_dim": bdim, "grid_dim": gdim}
        self.env: dict[ir.Value, Any] = {}

    def block(self, blk: ir.Block) -> list[Any]:
        for op in blk.ops:
            if op.name in ("yield", "condition"):
                return [self.env[v] for v in op.operands]
            self.op(op)
        return []

    def op(self, op: ir.Op) -> None:
        e, n = self.env, op.name
        ins = [e[v] for v in op.operands]
        t = op.results[0].type if op.results else None
        if n == "const":
            r: Any = op.attrs["value"]
        elif n == "param":
            r = self.scalars[op.attrs["name"]]
        elif n in ("dim", "stride"):
            a = self.buf[op.attrs["tensor"]]
            r = a.shape[op.attrs["axis"]] if n == "dim" else a.strides[op.attrs["axis"]] // a.itemsize
        elif n in self.b:
            r = self.b[n][op.attrs["dim"]]
        elif n in _BIN:
            r = _BIN[n](*ins)
        elif n == "div":
            r = ins[0] / ins[1] if t.dtype.is_float else int(ins[0] / ins[1])
        elif n == "mod":
            r = math.fmod(*ins) if t.dtype.is_float else int(math.fmod(*ins))
        elif n in _CMP:
            r = _CMP[n](*ins)
        elif n == "not":
            r = (not ins[0]) if t.dtype.kind == "b" else ~ins[0]
        elif n in _UN:
            r = _UN[n](ins[0])
        elif n == "fma":
            r = ins[0] * ins[1] + ins[2]
        elif n == "select":
            r = ins[1] if ins[0] else ins[2]
        elif n == "cast":
            r = ins[0]
        elif n == "load":
            r = self.buf[op.attrs["tensor"]].reshape(-1)[ins[0]].item()
        elif n == "store":
            self.buf[op.attrs["tensor"]].reshape(-1)[ins[0]] = ins[1]
            return
        elif n.startswith("atomic_"):
            flat = self.buf[op.attrs["tensor"]].reshape(-1)
            r = flat[ins[0]].item()
            flat[ins[0]] = {"atomic_add": r + ins[1], "atomic_max": max(r, ins[1]),
                            "atomic_min": min(r, ins[1])}[n]
        elif n == "if":
            outs = self.block(op.regions[0 if ins[0] else 1])
            for v, x in zip(op.results, outs):
                e[v] = x
            return
        elif n == "for":
            lb, ub, st, *vals = ins
            blk = op.regions[0]
            for i in range(lb, ub, st):
                for v, x in zip(blk.args, [i, *vals]):
                    e[v] = x
                vals = self.block(blk)
            for v, x in zip(op.results, vals):
                e[v] = x
            return
        elif n == "while":
            vals = ins
            while True:
                for v, x in zip(op.regions[0].args, vals):
                    e[v] = x
                c, *vals = self.block(op.regions[0])
                if not c:
                    break
                for v, x in zip(op.regions[1].args, vals):
                    e[v] = x
                vals = self.block(op.regions[1])
            for v, x in zip(op.results, vals):
                e[v] = x
            return
        else:
            raise NotImplementedError(f"interp: {n}")
        e[op.results[0]] = _conv(r, t)


def run(kernel: ir.Kernel, args: list[Any], grid: tuple, block: tuple) -> None:
    """Run `kernel` on numpy arrays / scalars in `args` (argument order), writing arrays in place."""
    buffers = {a.name: x for a, x in zip(kernel.args, args) if a.kind == "tensor"}
    scalars = {a.name: x for a, x in zip(kernel.args, args) if a.kind == "scalar"}
    for s in kernel.shared:
        buffers[s.name] = np.zeros(s.shape, s.dtype.np)
    for bid in itertools.product(*(range(g) for g in reversed(grid))):
        for tid in itertools.product(*(range(b) for b in reversed(block))):
            _Run(kernel, buffers, scalars, tid[::-1], bid[::-1], block, grid).block(kernel.body)
