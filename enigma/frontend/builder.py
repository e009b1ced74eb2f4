"""The op-emitting context of one trace: the block stack, hoisted entry ops, shared arrays and the
tensor accesses seen so far. Every op records the kernel author's source line."""
from __future__ import annotations

import collections
import threading
from typing import Any

from enigma import ir
from enigma.errors import error_here, user_frame


class Builder:
    def __init__(self, name: str = "") -> None:
        self.name = name  # the kernel being traced (named in errors)
        self.body = ir.Block()
        self.blocks: list[ir.Block] = [self.body]
        self.n_entry = 0  # operand-free ops hoisted to the start of the body (params, dims, builtins, consts)
        self.cache: dict[tuple, ir.Value] = {}
        self.shared: list[ir.Shared] = []
        self.access: dict[str, set[str]] = {}  # tensor argument -> {"r", "w"}
        self.home: dict[ir.Value, ir.Block] = {}  # defining block of each value of this trace
        self.arg_names: set[str] = set()
        self.fragments: list[Any] = []  # register fragments (frontend/fragments.py), carried by control flow

    @staticmethod
    def line() -> int:
        """The kernel author's current line (the innermost frame outside the enigma package)."""
        return user_frame(3)[1]

    def emit(self, name: str, operands: list[ir.Value] | tuple = (), types: list[ir.Type] | tuple = (),
             attrs: dict[str, Any] | None = None, regions: list[ir.Block] | None = None) -> ir.Op:
        home, blocks = self.home, self.blocks
        for v in operands:
            b = home.get(v)
            if b is None:
                raise self.foreign(v)
            if b not in blocks:
                raise error_here("a value computed inside a run-time `if` or loop body is used outside it",
                                 "values leave run-time control flow only through variables assigned in it; "
                                 "do not carry them out in Python lists, dicts or attributes (unroll with "
                                 "enigma.range_constexpr instead)")
        op = ir.Op(name, list(operands), [ir.Value(t) for t in types], attrs or {}, regions or [],
                   self.line())
        blocks[-1].ops.append(op)
        for r in op.results:
            home[r] = blocks[-1]
        return op

    def append(self, op: ir.Op) -> None:
        """Append an op built elsewhere (loops) to the current block."""
        for v in op.operands:
            if v not in self.home:
                raise self.foreign(v)
        self.blocks[-1].ops.append(op)
        for r in op.results:
            self.home[r] = self.blocks[-1]

    def entry(self, name: str, type: ir.Type, attrs: dict[str, Any] | None = None) -> ir.Value:
        """An operand-free pure op placed once at the top of the kernel (dominates every use)."""
        # floats by repr: 0.0 == -0.0 and nan != nan must not merge or miss
        key = (name, type,
               tuple((k, repr(v) if isinstance(v, float) else v) for k, v in (attrs or {}).items()))
        v = self.cache.get(key)
        if v is None:
            op = ir.Op(name, [], [ir.Value(type)], attrs or {}, [], self.line())
            self.body.ops.insert(self.n_entry, op)
            self.n_entry += 1
            v = self.cache[key] = op.results[0]
            self.home[v] = self.body
        return v

    def foreign(self, v: ir.Value) -> Exception:
        """The error for an operand that is not a value of this trace (kept from another kernel's trace in
        a global, a default argument or a closure)."""
        traces = list(_traced) + [(t.body, t.name) for t in _current.stack]
        where = next((name for body, name in traces if defines(body, v)), None)
        origin = f"kernel {where!r}" if where else "another trace"
        this = f"kernel {self.name!r}" if self.name else "this kernel"
        return error_here(f"a traced value of {origin} is used while tracing {this}",
                          "a traced value lives only in the trace that made it: do not keep it in a global, "
                          "a default argument or a closure; compute it again in this kernel")

    def push(self, block: ir.Block) -> None:
        self.blocks.append(block)
        for a in block.args:
            self.home[a] = block

    def pop(self) -> ir.Block:
        return self.blocks.pop()

    def live_fragments(self) -> list[Any]:
        """The register fragments (frontend/fragments.py) whose block encloses the construct being traced
        now: their cells can change in it and must be carried out of it (frontend/control.py)."""
        stack = set(map(id, self.blocks))
        return [f for f in self.fragments if id(f.block) in stack]

    def record(self, tensor: str, mode: str) -> None:
        self.access.setdefault(tensor, set()).add(mode)

    def add_shared(self, shared: ir.Shared) -> None:
        if shared.name in self.arg_names:
            raise error_here(f"the threadgroup array name {shared.name!r} is also a kernel parameter",
                             "give the enigma.shared_tensor(...) another name=")
        if any(s.name == shared.name for s in self.shared):
            raise error_here(f"a threadgroup array named {shared.name!r} already exists in this kernel",
                             "give each enigma.shared_tensor(...) its own name=")
        self.shared.append(shared)


class _TraceState(threading.local):
    def __init__(self) -> None:
        self.stack: list[Builder] = []  # traces in progress in this thread (innermost last)


_current = _TraceState()  # per thread, like the @jit launch stack: two threads can trace at once


def active() -> Builder | None:
    """The builder of the trace in progress in this thread, or None outside kernel bodies."""
    stack = _current.stack
    return stack[-1] if stack else None


def current() -> Builder:
    stack = _current.stack
    if not stack:
        raise error_here("enigma kernel-language functions only work inside an @enigma.kernel body",
                         "call them from a kernel; compile it with enigma.compile(kernel)")
    return stack[-1]


class tracing:
    def __init__(self, builder: Builder) -> None:
        self.builder = builder

    def __enter__(self) -> Builder:
        _current.stack.append(self.builder)
        return self.builder

    def __exit__(self, *exc: object) -> None:
        _current.stack.pop()
        _traced.append((self.builder.body, self.builder.name))


# the latest finished traces (body, kernel name): names the kernel a stray traced value came from
_traced: collections.deque[tuple[ir.Block, str]] = collections.deque(maxlen=16)


def defines(body: ir.Block, v: ir.Value) -> bool:
    """Whether `v` is defined in `body` (an op result or a block argument, at any depth)."""
    blocks = [body]
    while blocks:
        blk = blocks.pop()
        if any(a is v for a in blk.args):
            return True
        for op in blk.ops:
            if any(r is v for r in op.results):
                return True
            blocks.extend(op.regions)
    return False
