"""CPU executor: the state of one launch (or one chunk of it): the tensors' memory, the scalar
arguments, the threadgroup arrays and the thread space, shared by every op's closure at run time."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .cpu_memory import Memory
from .cpu_space import Geo, bf16_round
from .dtypes import BY_NAME


class PlanArgs(Protocol):
    """What a launch's state needs of the plan (cpu_plan.Plan): its name and file, its arguments and
    its threadgroup arrays (FORMAT.md section 4)."""

    name: str
    file: str
    args: list[dict]
    shared: list[dict]


class State:
    """One launch (or chunk of one): memory per tensor and threadgroup array, scalar parameters, the
    tensors' shapes, the thread space (geo) and the memo of loop-invariant results."""

    def __init__(self, plan: PlanArgs, values: list[Any], geo: Geo) -> None:
        self.plan, self.geo = plan, geo
        self.memo: dict[int, tuple] = {}
        self.mem: dict[str, Memory] = {}
        self.params: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for a, v in zip(plan.args, values):
            dt = BY_NAME[a["dtype"]]
            if a["kind"] == "none":  # an optional tensor left out
                continue
            if a["kind"] == "tensor":
                self.mem[a["name"]] = Memory(a["name"], v.reshape(-1), dt, v.size, False,
                                             a.get("access", "read") != "read")
                self.shapes[a["name"]] = v.shape
            else:
                self.params[a["name"]] = bf16_round(v)[()] if dt.name == "bfloat16" else v
        written = [m.flat for m in self.mem.values() if m.written]
        for m in self.mem.values():  # a read-only argument aliasing a written one: loads must copy
            if not m.written and any(np.may_share_memory(m.flat, w) for w in written):
                m.written = True
        for s in plan.shared:
            size = int(np.prod(s["shape"], dtype=np.int64))
            dt = BY_NAME[s["dtype"]]
            # uninitialised threadgroup memory reads as all-ones bytes (NaN, -1): bugs show, not hide
            flat = np.empty(geo.ngroups * size, dt.np)  # owns its data: views of it count as its refs
            flat.view(np.uint8).fill(0xFF)
            self.mem[s["name"]] = Memory(s["name"], flat, dt, size, True, True)

    def where(self, line: int) -> str:
        p = self.plan
        return f"kernel {p.name!r} ({p.file}:{line})" if p.file else f"kernel {p.name!r} (line {line})"
