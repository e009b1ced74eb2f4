"""Block reductions (Triton's tl.sum / tl.max over a block): `enigma.block_sum(v)`, `block_max`,
`block_min` reduce one value per thread over the whole threadgroup; every thread receives the result.

A frontend lowering onto existing ops (no IR op of its own):

    s = simd_sum(v)                                  # one partial result per simdgroup
    if simd_lane_id == 0: scratch[simd_group_id] = s
    barrier
    x = scratch[lane] if lane < simdgroups else 0    # 0 / -inf / +inf: the operation's identity
    r = simd_sum(x)                                  # every simdgroup reduces the partials
    barrier                                          # scratch may be reused by the next reduction

`scratch` is a threadgroup array of 32 elements per element type (`block_reduce_<type>`, shared by
the kernel's reductions of that type). Every thread of the threadgroup must call it (it holds barriers),
and the threadgroup size must be a multiple of the simdgroup width, 32 (checked where the launch's
block is known: frontend/simd_checks.py).
"""
from __future__ import annotations

import math
from typing import Any

from enigma_runtime import dtypes as dt

from enigma import ir
from enigma.frontend import control
from enigma.frontend.builder import current
from enigma.frontend.simd_checks import SCRATCH, SIMD_WIDTH
from enigma.frontend.tensors import TensorRef
from enigma.frontend.values import Val, describe, to_val, type_error

REDUCIBLE = ("float32", "float16", "int32", "uint32")


def _identity(kind: str, d: dt.DType) -> float | int:
    if kind == "sum":
        return 0
    top = (1 << d.bits) - 1 if d.kind == "u" else (1 << (d.bits - 1)) - 1
    big: float | int = math.inf if d.is_float else top
    small: float | int = -math.inf if d.is_float else (0 if d.kind == "u" else -(1 << (d.bits - 1)))
    return small if kind == "max" else big


def _scratch(d: dt.DType) -> TensorRef:
    b = current()
    name = SCRATCH + d.short
    if not any(s.name == name for s in b.shared):
        b.shared.append(ir.Shared(name, d, (SIMD_WIDTH,)))
    return TensorRef(name, d, (SIMD_WIDTH,), "shared")


def _block_reduce(kind: str, v: Any) -> Val:
    from enigma.frontend import language as lang  # (language imports this module)
    x = to_val(v)
    if x.v.type.lanes > 1 or x.v.type.matrix or x.dtype.name not in REDUCIBLE:
        raise type_error(f"enigma.block_{kind} reduces a scalar of {', '.join(REDUCIBLE)}, got {describe(x)}"
                         f"{' (' + x.v.type.name + ')' if x.v.type.lanes > 1 else ''}",
                         "convert it first, e.g. x.to(enigma.float32)")
    d = x.dtype
    scratch = _scratch(d)
    simd = {"sum": lang.simd_sum, "max": lang.simd_max, "min": lang.simd_min}[kind]
    lane, group = lang.simd_lane_id(), lang.simd_group_id()
    s = simd(x)

    def write() -> tuple:
        scratch[group] = s
        return ()

    control.dyn_if(lane == 0, write, None, (), ())
    lang.barrier()
    bd = lang.block_dim()
    groups = (bd.x * bd.y * bd.z + (SIMD_WIDTH - 1)) // SIMD_WIDTH
    part = control.ifexp(lane < groups, lambda: scratch[lane], lambda: _identity(kind, d))
    r = simd(part)
    lang.barrier()
    return r.to(d) if r.dtype != d else r


def block_sum(v: Any) -> Val:
    """The sum of `v` over every thread of the threadgroup, in every thread (simd sums of simd sums:
    the order of a float sum is that of the simdgroup reductions)."""
    return _block_reduce("sum", v)


def block_max(v: Any) -> Val:
    """The largest `v` of the threadgroup, in every thread."""
    return _block_reduce("max", v)


def block_min(v: Any) -> Val:
    """The smallest `v` of the threadgroup, in every thread."""
    return _block_reduce("min", v)
