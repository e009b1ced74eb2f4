"""CPU executor: elementwise ops (numpy ufuncs per IR op, the op catalogue) and simd-group ops."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .cpu_space import _uniform_int, bf16_round

if TYPE_CHECKING:
    from .cpu_space import Geo

# ---------------------------------------------------------------------------------------------------
# elementwise ops

def _int_div(a: Any, b: Any) -> Any:
    return (a - np.fmod(a, b)) // b


BINARY: dict[str, tuple[Callable, Callable]] = {  # op -> (float fn, int fn)
    "add": (np.add, np.add), "sub": (np.subtract, np.subtract), "mul": (np.multiply, np.multiply),
    "div": (np.divide, _int_div), "mod": (np.fmod, np.fmod),
    "min": (np.fmin, np.minimum), "max": (np.fmax, np.maximum),
    "and": (np.bitwise_and, np.bitwise_and), "or": (np.bitwise_or, np.bitwise_or),
    "xor": (np.bitwise_xor, np.bitwise_xor), "shl": (np.left_shift, np.left_shift),
    "shr": (np.right_shift, np.right_shift),
    "lt": (np.less, np.less), "le": (np.less_equal, np.less_equal), "gt": (np.greater, np.greater),
    "ge": (np.greater_equal, np.greater_equal), "eq": (np.equal, np.equal),
    "ne": (np.not_equal, np.not_equal),
}
UNARY: dict[str, Callable] = {
    "neg": np.negative, "not": np.invert, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "log": np.log,
    "log2": np.log2, "sqrt": np.sqrt, "rsqrt": lambda x: np.reciprocal(np.sqrt(x)), "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
}
CATALOGUE = frozenset(BINARY) | frozenset(UNARY) | {  # FORMAT.md section 4; yield/condition end regions
    "const", "param", "dim", "stride", "thread_idx", "block_idx", "block_dim", "grid_dim", "simd_lane_id",
    "simd_group_id", "fma", "select", "cast", "broadcast", "load", "store", "vload", "vstore", "atomic_add",
    "atomic_max", "atomic_min", "barrier", "simd_sum", "simd_max", "simd_min", "simd_shuffle_down",
    "simd_broadcast", "if", "for", "while"} | {  # cpu_simdgroup.py: vectors, bits, simdgroup matrices
    "extract", "pack", "bitcast", "simd_fill", "simd_load", "simd_mma", "simd_store"}
FLOAT_ONLY = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "floor", "ceil"}
def _fix(out: Any, want: np.dtype, bf16: bool) -> Any:
    if bf16:
        return bf16_round(out)
    if out.dtype != want:
        return out.astype(want)
    return out


_OUTER: dict[tuple, tuple[str, tuple[int, ...]] | None] = {}


def _outer_mul(a: Any, b: Any) -> np.ndarray | None:
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

def _simd(geo: Geo, name: str, v: Any, x: Any, mask: Any) -> np.ndarray:
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
            r = np.sum(vv, axis=2, keepdims=True, dtype=dt)
        else:
            r = (np.max if name == "simd_max" else np.min)(vv, axis=2, keepdims=True)
        return back(np.broadcast_to(r, vv.shape))
    lane = np.arange(32).reshape((1, 1, 32) + (1,) * len(tail))
    if name == "simd_broadcast":
        src = _uniform_int(x)
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
    valid = (src_lane >= 0) & (src_lane < 32)
    r = np.take_along_axis(vv, np.broadcast_to(np.where(valid, src_lane, lane), vv.shape).astype(np.intp),
                           axis=2)
    return back(r)


