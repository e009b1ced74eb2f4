"""Enigma IR: typed SSA with structured control flow (the shape of MLIR's scf).

A `Kernel` holds its arguments, its threadgroup arrays and one `Block` of `Op`s. Every value is
defined once (`Op.results`) and used by later ops (`Op.operands`). Control flow nests blocks inside
ops (`Op.regions`) and passes values in and out only through block arguments and `yield`/`condition`,
never by mutation, so every later stage (passes, printers, the portable form the runtime executes)
walks plain data in one direction.

The op catalogue (names, operands, attributes, results) is specified in runtime/FORMAT.md: the
portable form is this IR written as JSON, and the runtime's CPU executor implements exactly it. The
ops themselves (groups, flags, exact semantics) are one table, `enigma_runtime.ops.OPS`.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from enigma_runtime import ops
from enigma_runtime.dtypes import DType

# ---------------------------------------------------------------------------------------------------
# op classes (every op name in the catalogue is in exactly one), read from the op table
# (enigma_runtime/ops.py), which also holds each elementwise op's exact semantics
BINARY = ops.group("binary")
COMPARE = ops.group("compare")
UNARY = ops.group("unary")
TERNARY = ops.group("ternary")
BUILTIN = ops.group("builtin")
MEMORY = ops.group("memory")
SIMD = ops.group("simd")
CONTROL = ops.group("control")
OTHER = ops.group("other")
# fast-kernel ops (issue 12): extract (lane `lane` of a vector), pack (N scalars -> an N-lane vector),
# bitcast (the same bits as another type of the same total size, Metal's as_type); load/store/vload/
# vstore also take the attributes `view` (a dtype name: the tensor's bytes read as that type) and
# `packed` (vload/vstore: aligned like one element, Metal's packed_<type>N)
VECTOR = ops.group("vector")
# simdgroup matrices (8x8, owned by the 32 lanes of a simdgroup; Type.matrix == 8): simd_fill {value};
# simd_load(offset, elements_per_row) {tensor, origin, transpose}; simd_mma(a, b, c) = a @ b + c;
# simd_store(m, offset, elements_per_row) {tensor, origin, transpose}
SIMD_MATRIX = ops.group("simd_matrix")
ALL_OPS = frozenset(ops.OPS)
# ops with an effect besides their result: never removed or merged by passes
SIDE_EFFECTS = frozenset(n for n, o in ops.OPS.items() if o.side_effect)
# ops whose result depends on the memory state or on the other lanes: never merged (CSE) or folded
NOT_PURE = frozenset(n for n, o in ops.OPS.items() if not o.pure)


@dataclass(frozen=True)
class Type:
    """A value's type: a scalar dtype, a vector of `lanes` of it (vectorising, `load_vec`), or (matrix=8)
    an 8x8 simdgroup matrix of it, a value owned by the 32 lanes of a simdgroup together."""

    dtype: DType
    lanes: int = 1
    matrix: int = 0

    @property
    def name(self) -> str:  # "float32", "float32x4", "float32x8x8"
        if self.matrix:
            return f"{self.dtype.name}x{self.matrix}x{self.matrix}"
        return self.dtype.name if self.lanes == 1 else f"{self.dtype.name}x{self.lanes}"

    def __str__(self) -> str:
        if self.matrix:
            return f"!enigma.simdgroup_matrix<{self.matrix}x{self.matrix}x{self.dtype.short}>"
        return self.dtype.short if self.lanes == 1 else f"vector<{self.lanes}x{self.dtype.short}>"


_ids = itertools.count()


@dataclass(eq=False)
class Value:
    """An SSA value. Identity is the object; `id` only names it in dumps and in the portable form."""

    type: Type
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.id}:{self.type}"


@dataclass(eq=False)
class Block:
    """A region's single block: arguments (loop induction variable, carried values) and ops."""

    args: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


@dataclass(eq=False)
class Op:
    """One operation. `line` is the kernel author's source line it was traced from (0 if none)."""

    name: str
    operands: list[Value] = field(default_factory=list)
    results: list[Value] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    regions: list[Block] = field(default_factory=list)
    line: int = 0

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]


def static_strides(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Row-major element strides of a static shape (tensor arguments are contiguous)."""
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


@dataclass(frozen=True)
class Arg:
    """A kernel argument and its place in the binding ABI (runtime/FORMAT.md, "Binding ABI").

    shape entries: int (static), str (symbolic size shared by name across arguments) or None
    (dynamic, unnamed). Scalars have rank 0 and shape (). access: "read", "write", "readwrite" for
    tensors (derived from the body), "read" for scalars. `buffer` is informational: the binding ABI
    is computed in one place, `enigma.backends.abi.bindings`, which every printer uses.
    """

    name: str
    kind: str  # "tensor" | "scalar"
    dtype: DType
    shape: tuple[int | str | None, ...] = ()
    access: str = "read"
    buffer: int = 0

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(s, int) for s in self.shape)


@dataclass(frozen=True)
class Shared:
    """A threadgroup array declared in the kernel body (`enigma.shared_tensor`)."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


@dataclass(eq=False)
class Kernel:
    """One traced @enigma.kernel, specialised for its constexpr values and dtypes."""

    name: str  # the Python function's name
    args: list[Arg]
    body: Block
    shared: list[Shared] = field(default_factory=list)
    file: str = ""
    line: int = 0  # line of the `def`
    vec_width: int = 0
    variant: str = ""  # names a `specialize=` variant: "f16" gives enigma_kernel_<name>_f16

    @property
    def kernel_name(self) -> str:
        """The Metal function name: distinct for every variant of one kernel."""
        return f"enigma_kernel_{self.name}" + (f"_{self.variant}" if self.variant else "")

    @property
    def threadgroup_memory(self) -> int:
        return sum(s.nbytes for s in self.shared)

    def arg(self, name: str) -> Arg:
        return next(a for a in self.args if a.name == name)


# Metal's limits (docs/compile-api.md, "Metal facts"): threads and threadgroup memory per threadgroup
MAX_THREADS_PER_THREADGROUP = 1024
MAX_THREADGROUP_MEMORY = 32 * 1024


def walk(block: Block) -> Iterator[Op]:
    """Every op of `block` and of the blocks nested in it, in program order (pre-order)."""
    for op in block.ops:
        yield op
        for region in op.regions:
            yield from walk(region)


def renumber(kernel: Kernel) -> Kernel:
    """A copy of `kernel` whose values are numbered 0, 1, 2... in definition order.

    Ids come from a process-wide counter while tracing, so without this the names in every printed
    form (v94 or v102) would depend on what the process traced before, and two builds of one tree
    would differ. A copy, because passes share Value objects between their input and output."""
    counter = itertools.count()
    new: dict[Value, Value] = {}

    def define(v: Value) -> Value:
        new[v] = Value(v.type, next(counter))
        return new[v]

    def block(b: Block) -> Block:
        args = [define(v) for v in b.args]
        ops = []
        for op in b.ops:
            operands = [new[v] for v in op.operands]
            regions = [block(r) for r in op.regions]
            ops.append(Op(op.name, operands, [define(v) for v in op.results], dict(op.attrs), regions,
                          op.line))
        return Block(args, ops)

    return dataclasses.replace(kernel, body=block(kernel.body))


# ---------------------------------------------------------------------------------------------------
# readable dump (dump_ir=True)

def _attrs(op: Op) -> str:
    return "" if not op.attrs else " {" + ", ".join(f"{k}={v!r}" for k, v in op.attrs.items()) + "}"


def _dump_block(block: Block, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for op in block.ops:
        lhs = ", ".join(map(repr, op.results)) + " = " if op.results else ""
        loc = f"  # line {op.line}" if op.line else ""
        out.append(f"{pad}{lhs}{op.name}({', '.join(f'%{v.id}' for v in op.operands)}){_attrs(op)}{loc}")
        for i, region in enumerate(op.regions):
            args = f"({', '.join(map(repr, region.args))})" if region.args else ""
            out.append(f"{pad}  region {i}{args}:")
            _dump_block(region, indent + 2, out)


def dump(kernel: Kernel) -> str:
    """The kernel as readable text: one op a line, with the user's source line of each op."""
    sig = ", ".join(f"{a.name}: {a.dtype.name}{list(a.shape) if a.kind == 'tensor' else ''}"
                    f"{' ' + a.access if a.kind == 'tensor' else ''}" for a in kernel.args)
    out = [f"kernel {kernel.name}({sig})  # {kernel.file}:{kernel.line}"]
    out += [f"  shared {s.name}: {s.dtype.name}{list(s.shape)}" for s in kernel.shared]
    _dump_block(kernel.body, 1, out)
    return "\n".join(out) + "\n"
