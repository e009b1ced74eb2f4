"""CPU executor: elementwise ops (the op table's functions, enigma_runtime/ops.py) and simd-group ops."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .cpu_space import uniform_int
from .dtypes import DType
from .ops import OPS

if TYPE_CHECKING:
    from .cpu_space import Geo

# ---------------------------------------------------------------------------------------------------
# elementwise ops: the op table's functions (ops.py), one definition for every stage

ELEMENTWISE = frozenset(n for n, o in OPS.items() if o.elementwise)
BINARY = frozenset(n for n, o in OPS.items() if o.group in ("binary", "compare"))
UNARY = frozenset(n for n, o in OPS.items() if o.group == "unary")
# FORMAT.md section 4; yield/condition end regions
CATALOGUE = frozenset(n for n in OPS if n not in ("yield", "condition"))
FLOAT_ONLY = frozenset(n for n, o in OPS.items() if o.float_only)
FN = {n: o.fn for n, o in OPS.items() if o.fn is not None}


def elementwise(name: str, src: DType, dst: DType, *xs: Any) -> Any:
    """The op table's `name` on thread-space arrays (Aff operands materialised by the caller). Called
    inside the launch's np.errstate(all="ignore") (cpu.py), so the function runs directly."""
    return FN[name](src, dst, *xs)


_OUTER: dict[tuple, tuple[str, tuple[int, ...]] | None] = {}


def outer_mul(a: Any, b: Any) -> np.ndarray | None:
    """a * b for float32 operands that vary along different thread axes (neither has the result's
    shape): numpy's broadcasting loops are slow there, einsum's outer product is not. None otherwise."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != np.float32 or b.dtype != a.dtype:
        return None
    key = (a.shape, b.shape)
    if key in _OUTER:
        plan = _OUTER[key]
    else:
        plan = None
        if a.ndim == b.ndim:
            shape = np.broadcast_shapes(a.shape, b.shape)
            if shape not in key and np.prod(shape) >= 4096:
                letters = "abcdefghijklmnop"
                sa = "".join(letters[i] for i, n in enumerate(a.shape) if n > 1)
                sb = "".join(letters[i] for i, n in enumerate(b.shape) if n > 1)
                so = "".join(letters[i] for i, n in enumerate(shape) if n > 1)
                plan = (f"{sa},{sb}->{so}", shape)
        _OUTER[key] = plan
    if plan is None:
        return None
    squeeze = lambda x: x.reshape([n for n in x.shape if n > 1])  # noqa: E731
    return np.einsum(plan[0], squeeze(a), squeeze(b)).reshape(plan[1])


# ---------------------------------------------------------------------------------------------------
# simd-group ops: groups of 32 consecutive linear thread ids of each threadgroup

def simd_op(geo: Geo, name: str, v: Any, x: Any, mask: Any) -> np.ndarray:
    tail = np.shape(v)[6:] if np.ndim(v) > 6 else (np.shape(v) if 0 < np.ndim(v) < 6 else ())
    if np.ndim(v) and np.ndim(v) < 6:  # a vector that does not depend on the thread (lanes only)
        v = np.asarray(v).reshape((1,) * 6 + tail)
    full = geo.full + tail
    tpg, nsg = geo.tpg, -(-geo.tpg // 32)
    pad = nsg * 32 - tpg

    def groups(a: Any, fill: Any) -> np.ndarray:
        a = np.broadcast_to(a, full).reshape((geo.ngroups, tpg) + tail)
        if pad:
            a = np.concatenate([a, np.full((geo.ngroups, pad) + tail, fill, a.dtype)], axis=1)
        return a.reshape((geo.ngroups, nsg, 32) + tail)

    def back(a: np.ndarray) -> np.ndarray:
        a = a.reshape((geo.ngroups, nsg * 32) + tail)[:, :tpg]
        return a.reshape(full)

    vv = groups(v, 0)
    if name in ("simd_sum", "simd_max", "simd_min"):
        dt = vv.dtype
        ident: float | int | bool
        if name == "simd_sum":
            ident = 0
        else:
            big = np.inf if dt.kind == "f" else (np.iinfo(dt).max if dt.kind in "iu" else True)
            small = -np.inf if dt.kind == "f" else (np.iinfo(dt).min if dt.kind in "iu" else False)
            ident = small if name == "simd_max" else big
        act = groups(True if mask is None else mask, False)
        if act.ndim < vv.ndim:
            act = act[..., None]
        if pad or mask is not None:
            vv = np.where(act, vv, np.array(ident).astype(dt))
        if name == "simd_sum":
            # Metal's order (docs/verify.md): the active lanes in lane order, each addition rounded to
            # the value's type (float16 adds in half, as the compatibility header does)
            r = vv[:, :, :1].copy()
            first = np.ones(r.shape, bool)
            with np.errstate(over="ignore", invalid="ignore"):
                for k in range(32):
                    a, x = np.broadcast_to(act[:, :, k:k + 1], r.shape), vv[:, :, k:k + 1]
                    r = np.where(a & first, x, np.where(a, (r + x).astype(dt), r))
                    first &= ~a
            r = np.where(first, np.zeros((), dt), r)
        else:
            # a NaN lane is ignored unless every active lane is NaN (Metal's fmax/fmin, as max/min do)
            fn = (np.fmax if name == "simd_max" else np.fmin) if dt.kind == "f" else \
                (np.maximum if name == "simd_max" else np.minimum)
            r = fn.reduce(vv, axis=2, keepdims=True)
            if dt.kind == "f":  # a zero result is -0 or +0 by the rule of min/max (-0 < +0)
                zero = (vv == 0) & act
                neg = np.signbit(vv)
                want = (zero & neg) if name == "simd_min" else (zero & ~neg)
                pick = np.any(want, axis=2, keepdims=True)
                z = np.array(-0.0 if name == "simd_min" else 0.0, dt)
                r = np.where(r == 0, np.where(pick, z, -z), r)
        return back(np.broadcast_to(r, vv.shape))
    lane = np.arange(32).reshape((1, 1, 32) + (1,) * len(tail))
    if name == "simd_broadcast":
        src = uniform_int(x)
        if src is None:
            xs = groups(x, 0).reshape((geo.ngroups, nsg, 32))
            src_arr = xs[..., :1] if not tail else xs[..., :1, None]
            r = np.take_along_axis(vv, np.broadcast_to(src_arr % 32, vv.shape).astype(np.intp), axis=2)
            return back(r)
        return back(np.broadcast_to(vv[:, :, src % 32:src % 32 + 1], vv.shape))
    # simd_shuffle_down
    xs = groups(x, 0)
    if tail and xs.ndim == vv.ndim - len(tail):
        xs = xs.reshape(xs.shape + (1,) * len(tail))
    src_lane = lane + xs.astype(np.int64)
    # a source lane past lane 31, past the threadgroup's last thread or inactive: the lane's own
    # value (Metal's rule, and the compatibility header's)
    live = groups(True if mask is None else mask, False)
    if live.ndim < vv.ndim:
        live = live.reshape(live.shape + (1,) * (vv.ndim - live.ndim))
    inside = (src_lane >= 0) & (src_lane < 32)
    src_idx = np.broadcast_to(np.where(inside, src_lane, lane), vv.shape).astype(np.intp)
    valid = inside & np.take_along_axis(np.broadcast_to(live, vv.shape), src_idx, axis=2)
    r = np.take_along_axis(vv, np.where(valid, src_idx, np.broadcast_to(lane, vv.shape)), axis=2)
    return back(r)


