"""CPU executor: running compiled regions (cpu_plan.Plan) under masks. Divergent control flow runs
under boolean masks: `if` runs both regions under sub-masks and selects the results, loops run until
no active thread continues."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cpu_space import Aff, as_matrix
from .cpu_state import State
from .errors import EnigmaRuntimeError, KernelExecutionError

# ---------------------------------------------------------------------------------------------------
# masks

def narrow(mask: Any, cond: Any) -> tuple[Any, bool]:
    """(mask & cond, whether any lane is active); returns `mask` itself when cond holds on all of it."""
    sub = cond if mask is None else mask & cond
    if not sub.any():
        return sub, False
    if mask is None:
        return (None if sub.all() else sub), True
    if sub.sum() == np.broadcast_to(mask, np.broadcast_shapes(np.shape(mask), np.shape(sub))).sum():
        return mask, True
    return sub, True


def merge(cond: Any, a: Any, b: Any, vector: bool) -> Any:
    if a is b:
        return a
    a, b = as_matrix(a), as_matrix(b)
    c = cond[..., None] if vector and np.ndim(cond) else cond
    return np.where(c, a, b)


# ---------------------------------------------------------------------------------------------------
# compiled regions: a step is an op's closure (it runs the op for all threads) and the op

Step = tuple[Callable[[State, dict, Any], None], dict]


class Region:
    __slots__ = ("args", "steps", "term")

    def __init__(self, args: list[int], steps: list[Step], term: list[int]) -> None:
        self.args, self.steps, self.term = args, steps, term


# ---------------------------------------------------------------------------------------------------
# running regions and loops

def inner_ids(op: dict) -> tuple[int, ...]:
    """Ids defined inside `op`'s regions (region arguments and results of nested ops)."""
    ids: list[int] = []
    for reg in op.get("regions", []):
        ids += reg.get("args", [])
        for inner in reg.get("body", []):
            ids += inner.get("out", [])
            ids += inner_ids(inner)
    return tuple(ids)


def run_region(st: State, reg: Region, env: dict, mask: Any, args: tuple) -> list[Any]:
    if args:
        env.update(zip(reg.args, args))
    for fn, op in reg.steps:
        try:
            fn(st, env, mask)
        except EnigmaRuntimeError:
            raise
        except Exception as e:  # a malformed IR that got past the plan: name the op and its line
            raise KernelExecutionError(f"{st.where(op.get('line', 0))}: op {op['op']!r} failed: "
                                       f"{type(e).__name__}: {e}") from e
    return [env[i] for i in reg.term]


def for_divergent(st: State, body: Region, env: dict, mask: Any, bounds: list, carried: list,
                   vec: list[bool], where: str) -> list:
    """A for loop whose bounds differ between threads: iterate while any active thread continues."""
    lb, ub, step = bounds
    if np.any(np.asarray(step) == 0):
        raise KernelExecutionError(f"{st.where(int(where.split()[-1]))}: for loop with step 0 never ends")
    # the induction variable counts in int64: range(lb, ub, step) ends at ub even where iv + step would
    # pass the int32 range (wrapping there would never end the loop)
    iv = np.asarray(lb).astype(np.int64)
    ub, step = np.asarray(ub, np.int64), np.asarray(step, np.int64)
    while True:
        go = np.where(step > 0, iv < ub, iv > ub)
        active, anyone = narrow(mask, go)
        if not anyone:
            return carried
        new = run_region(st, body, env, active, (iv.astype(np.int32), *carried))
        if active is mask:
            carried = new
        else:
            carried = [merge(active, n, c, v) for n, c, v in zip(new, carried, vec)]
        iv = iv + step


def same_trip_count(lb: Any, ub: Any, step: int) -> int | None:
    """The trip count of range(lb, ub, step) when it is the same for every thread, else None."""
    if type(lb) is Aff and not lb.exact() or type(ub) is Aff and not ub.exact():
        return None
    lo = np.asarray(as_matrix(lb), np.int64)
    hi = np.asarray(as_matrix(ub), np.int64)
    span = hi - lo if step > 0 else lo - hi
    trips = np.maximum((span + abs(step) - 1) // abs(step), 0)
    t0 = int(trips.reshape(-1)[0])
    return t0 if (trips == t0).all() else None


def run_while(st: State, before: Region, after: Region, env: dict, mask: Any, carried: list, vec: list[bool]
           ) -> list:
    active, result = mask, None
    while True:
        cond, *vals = run_region(st, before, env, active, tuple(carried))
        cond = as_matrix(cond)
        if np.ndim(cond) == 0 or np.size(cond) == 1:
            if bool(np.reshape(cond, -1)[0]):
                carried = run_region(st, after, env, active, tuple(vals))
                continue
            if result is None or active is None:
                return vals
            return [merge(active, v, r, x) for v, r, x in zip(vals, result, vec)]
        exiting = ~cond if active is None else active & ~cond
        result = vals if result is None else [merge(exiting, v, r, x) for v, r, x in zip(vals, result, vec)]
        active, anyone = narrow(active, cond)
        if not anyone:
            return result
        carried = run_region(st, after, env, active, tuple(vals))
