"""The model's per-op semantics: `apply(name, src, dst, *xs)` on numpy arrays of value dtypes (bfloat16
held in float32), returning the result rounded to `dst`.

This is the one line to switch to the runtime's op table (`from enigma_runtime.ops import apply`) once
it exists; until then a local implementation of the semantics docs/abi.md and FORMAT.md section 4
define (integers wrap; x / 0 = x, MIN / -1 = MIN, x % 0 = 0; shift amounts modulo the width; float ->
int truncates and saturates, NaN -> 0; min/max: NaN yields the other operand and -0 < +0)."""
from __future__ import annotations

from typing import Any

import numpy as np
from enigma_runtime.dtypes import DType

try:  # the op table, when this tree has it
    from enigma_runtime.ops import apply as _table_apply  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - before the op table lands
    _table_apply = None


def value_np(d: DType) -> np.dtype:
    return np.dtype(np.float32) if d.name == "bfloat16" else np.dtype(d.np)


def round_bf16(x: Any) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even; NaN stays NaN), as float32."""
    f = np.asarray(x, np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    out = r.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(f), f, out)


def bits(d: DType) -> int:
    return d.itemsize * 8


def int_range(d: DType) -> tuple[int, int]:
    b = bits(d)
    return (0, (1 << b) - 1) if d.kind == "u" else (-(1 << (b - 1)), (1 << (b - 1)) - 1)


def wrap(d: DType, x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.int64).astype(np.uint64).astype(d.np) if d.kind == "i" \
        else np.asarray(x).astype(np.uint64).astype(d.np)


def out(d: DType, r: Any) -> np.ndarray:
    r = np.asarray(r)
    if d.kind == "b":
        return r.astype(np.bool_)
    if d.is_int:
        return wrap(d, r)
    if d.name == "bfloat16":
        return round_bf16(r.astype(np.float32))
    return r.astype(d.np)


_MATH = {"exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
         "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
         "floor": np.floor, "ceil": np.ceil}
_CMP = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
        "ne": np.not_equal}


def _own_apply(name: str, src: DType, dst: DType, *xs: Any) -> Any:
    xs = tuple(np.asarray(x) for x in xs)
    i64 = [x.astype(np.int64) for x in xs] if src.is_int or src.kind == "b" else []
    if name in _CMP:
        return _CMP[name](*xs)
    if name in ("add", "sub", "mul"):
        if src.is_float:
            return out(dst, {"add": np.add, "sub": np.subtract, "mul": np.multiply}[name](*xs))
        a, b = (x.astype(np.uint64) for x in i64)
        return out(dst, {"add": a + b, "sub": a - b, "mul": a * b}[name])
    if name in ("div", "mod"):
        a, b = xs
        if src.is_float:
            return out(dst, np.divide(a, b) if name == "div" else np.fmod(a, b))
        a, b = i64
        lo, _ = int_range(src)
        bad = (b == 0) | ((a == lo) & (b == -1) & (src.kind == "i"))
        sb = np.where(bad, 1, b)
        q = np.abs(a) // np.abs(sb) * np.sign(a) * np.sign(sb)
        if name == "div":
            return out(dst, np.where(bad, a, q))
        return out(dst, np.where(bad, 0, a - q * sb))
    if name in ("min", "max"):
        a, b = xs
        if not src.is_float:
            return (np.minimum if name == "min" else np.maximum)(a, b)
        r = (np.fmin if name == "min" else np.fmax)(a, b)
        tie = a == b
        neg = np.signbit(a)
        return out(dst, np.where(tie, np.where(neg if name == "min" else ~neg, a, b), r))
    if name in ("and", "or", "xor"):
        return {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[name](*xs)
    if name in ("shl", "shr"):
        a, b = i64
        s = b.astype(np.uint64) & np.uint64(bits(src) - 1)
        if name == "shl":
            return out(dst, a.astype(np.uint64) << s)
        return out(dst, a >> s.astype(np.int64))
    if name == "neg":
        return out(dst, -i64[0]) if src.is_int else out(dst, -xs[0])
    if name == "not":
        return np.invert(xs[0])
    if name == "abs":
        return out(dst, np.abs(i64[0])) if src.is_int else np.abs(xs[0])
    if name in _MATH:
        return out(dst, _MATH[name](xs[0].astype(np.float64)))
    if name == "fma":
        a, b, c = (x.astype(np.float64) for x in xs)
        return out(dst, a * b + c)
    if name == "select":
        return np.where(*xs)
    if name == "cast":
        x = xs[0]
        if dst.kind == "b":
            return x != 0
        if src.kind == "b" or src.is_int:
            if dst.is_int:
                return wrap(dst, x.astype(np.int64))
            return out(dst, x.astype(np.float64).astype(np.float32) if dst.name != "float32"
                       else x.astype(np.float64))
        if dst.is_int:
            lo, hi = int_range(dst)
            t = np.trunc(x.astype(np.float64))
            return np.where(np.isnan(t), 0, np.clip(t, lo, hi)).astype(dst.np)
        return out(dst, x.astype(np.float32) if "float32" not in (src.name, dst.name) else x)
    raise ValueError(f"the fuzz model has no semantics for op {name!r}")


def apply(name: str, src: DType, dst: DType, *xs: Any) -> Any:
    """The value of elementwise op `name` (operands of type `src`, result of type `dst`)."""
    with np.errstate(all="ignore"):
        if _table_apply is not None:
            return np.asarray(_table_apply(name, src, dst, *xs))
        return np.asarray(_own_apply(name, src, dst, *xs))
