"""The model's per-op semantics: the op table's functions (enigma_runtime.ops), used on numpy arrays of
value dtypes (bfloat16 held in float32). The model evaluates programs itself (model.py); only the
meaning of each elementwise op comes from here."""
from __future__ import annotations

from typing import Any

import numpy as np
from enigma_runtime.dtypes import DType
from enigma_runtime.ops import apply as _apply


def value_np(d: DType) -> np.dtype:
    return np.dtype(d.value_np)


def int_range(d: DType) -> tuple[int, int]:
    return d.min, d.max


def out(d: DType, r: Any) -> np.ndarray:
    """`r` as values of `d`: bools, wrapped ints, floats rounded to nearest even."""
    r = np.asarray(r)
    if d.kind == "b":
        return r.astype(np.bool_)
    if d.is_int:
        return np.asarray(d.wrap(r.astype(np.int64) if r.dtype == object else r))
    return np.asarray(d.round(r))


def apply(name: str, src: DType, dst: DType, *xs: Any) -> np.ndarray:
    """The value of elementwise op `name` (operands of type `src`, result of type `dst`)."""
    return np.asarray(_apply(name, src, dst, *xs))
