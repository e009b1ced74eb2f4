"""The binding ABI (runtime/FORMAT.md section 5, docs/abi.md), computed in this one place: which buffer
carries which argument, where the dims buffer is, where each tensor's sizes and strides start in it,
and each tensor's access. The MSL printer and the portable form (signature) both call `bindings`."""
from __future__ import annotations

from dataclasses import dataclass

from enigma import ir


@dataclass(frozen=True)
class Binding:
    """Where one argument lives at launch: `[[buffer(buffer)]]`, and for a tensor with a non-static
    size, `dims_offset` = index of its first size in the dims buffer (its strides follow its sizes)."""

    arg: ir.Arg
    buffer: int
    access: str
    dims_offset: int | None


def tensor_access(kernel: ir.Kernel) -> dict[str, str]:
    """`read`/`write`/`readwrite` of every tensor argument, derived from the body (loads read, stores
    write, atomics do both). A wider access declared on the `Arg` (by the tracer) is kept."""
    reads: set[str] = set()
    writes: set[str] = set()
    for op in ir.walk(kernel.body):
        t = str(op.attrs.get("tensor"))
        if op.name in ("load", "vload", "simd_load"):
            reads.add(t)
        elif op.name in ("store", "vstore", "simd_store"):
            writes.add(t)
        elif op.name.startswith("atomic_"):
            reads.add(t)
            writes.add(t)
    out = {}
    for a in kernel.args:
        if a.kind != "tensor":
            continue
        r = a.name in reads or a.access == "readwrite"
        w = a.name in writes or a.access in ("write", "readwrite")
        out[a.name] = "readwrite" if r and w else "write" if w else "read"
    return out


def bindings(kernel: ir.Kernel) -> tuple[list[Binding], int | None]:
    """Every argument's binding, in argument order, and the dims buffer index (None when no tensor has a
    non-static size). Argument i is at buffer i; the dims buffer follows the arguments."""
    access = tensor_access(kernel)
    out: list[Binding] = []
    offset = 0
    for i, a in enumerate(kernel.args):
        if a.kind == "tensor" and not a.is_static:
            out.append(Binding(a, i, access[a.name], offset))
            offset += 2 * a.rank
        else:
            out.append(Binding(a, i, access.get(a.name, "read"), None))
    return out, (len(kernel.args) if offset else None)
