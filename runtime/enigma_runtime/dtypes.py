"""Element types shared by the compiler and the runtime (the artifact format names them).

Two pieces of arithmetic live here, once, for every stage (frontend constants, constant folding, the
printers' literals, the CPU executor, the op table in ops.py): integer wrap-around (`DType.wrap`) and
rounding to a float type (`DType.round`, with bfloat16's round-to-nearest-even in `bf16_round`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy import dtype as NumpyDType


@dataclass(frozen=True)
class DType:
    """A scalar element type. `name` is what the artifact format and the user write."""

    name: str  # "float32"
    short: str  # "f32": MLIR element type and IR dumps
    msl: str  # "float": Metal Shading Language spelling
    itemsize: int  # bytes
    kind: str  # "f" float, "i" signed int, "u" unsigned int, "b" bool

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def bits(self) -> int:
        return 1 if self.kind == "b" else self.itemsize * 8

    @property
    def np(self) -> np.dtype:
        """The numpy dtype that stores it (bfloat16 is stored as its uint16 bit pattern)."""
        return np.dtype(_NUMPY[self.name])

    @property
    def value_np(self) -> NumpyDType:
        """The numpy dtype a value of this type is computed in (bfloat16 values in float32, already
        rounded to bfloat16 precision); `np` is the storage dtype."""
        return np.dtype(np.float32) if self.name == "bfloat16" else self.np

    @property
    def min(self) -> int:
        """Smallest value of an integer (or bool) type."""
        return -(1 << (self.bits - 1)) if self.kind == "i" else 0

    @property
    def max(self) -> int:
        """Largest value of an integer (or bool) type."""
        return (1 << (self.bits - 1)) - 1 if self.kind == "i" else (1 << self.bits) - 1

    def wrap(self, x: Any) -> Any:
        """`x` reduced to this integer type (two's complement wrap-around): a Python int for a Python
        int, else a numpy value of this type (any integer numpy array or scalar)."""
        if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) and \
                not isinstance(x, np.ndarray):
            n = int(x) & ((1 << self.bits) - 1)
            r = n - (1 << self.bits) if self.kind == "i" and n >= 1 << (self.bits - 1) else n
            return r if isinstance(x, int) else self.np.type(r)
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype == self.np:
            return x
        return np.asarray(x).astype(self.np, copy=False)[()]

    def round(self, x: Any) -> Any:
        """`x` (a number or a float array) rounded to nearest-even in this float type, overflowing to
        infinity: a numpy value of `value_np` (bfloat16: float32 holding a bfloat16 value)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if self.name == "bfloat16":
                return bf16_round(x)[()]
            return np.asarray(x).astype(self.np, copy=False)[()]

    def __repr__(self) -> str:
        return f"enigma.{self.name}"

    def __copy__(self) -> DType:  # one object per dtype: code may compare with `is`
        return self

    def __deepcopy__(self, memo: dict) -> DType:
        return self


float32 = DType("float32", "f32", "float", 4, "f")
float16 = DType("float16", "f16", "half", 2, "f")
bfloat16 = DType("bfloat16", "bf16", "bfloat", 2, "f")
int32 = DType("int32", "i32", "int", 4, "i")
uint32 = DType("uint32", "ui32", "uint", 4, "u")
int16 = DType("int16", "i16", "short", 2, "i")
uint16 = DType("uint16", "ui16", "ushort", 2, "u")
int8 = DType("int8", "i8", "char", 1, "i")
uint8 = DType("uint8", "ui8", "uchar", 1, "u")
bool_ = DType("bool", "i1", "bool", 1, "b")

ALL: tuple[DType, ...] = (float32, float16, bfloat16, int32, uint32, int16, uint16, int8, uint8, bool_)
BY_NAME: dict[str, DType] = {d.name: d for d in ALL}
_NUMPY = {"float32": "float32", "float16": "float16", "bfloat16": "uint16", "int32": "int32",
          "uint32": "uint32", "int16": "int16", "uint16": "uint16", "int8": "int8", "uint8": "uint8",
          "bool": "bool"}


def from_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(BY_NAME)}") from None


def from_numpy(dt: np.dtype | type) -> DType:
    """The DType a numpy array of dtype `dt` holds (uint16 arrays are uint16, never bfloat16)."""
    dt = np.dtype(dt)
    for d in ALL:
        if d.name != "bfloat16" and np.dtype(_NUMPY[d.name]) == dt:
            return d
    raise TypeError(f"numpy dtype {dt} has no enigma element type; supported: "
                    f"{', '.join(d.name for d in ALL)} (float64 is not supported by Metal)")


# ---------------------------------------------------------------------------------------------------
# bfloat16: float32 values rounded to bfloat16 precision; memory holds uint16 bit patterns

def bf16_round(x: Any) -> np.ndarray:
    """float32 (or any float/int array) -> the nearest bfloat16 value (round to nearest even; a NaN stays
    a quiet NaN), as float32. Values are first rounded to float32 (e.g. int -> bfloat16 goes through
    float32, as the emitted Metal does)."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.asarray(x, np.float32)
    bits = f.view(np.uint32)
    r = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000))
    r = np.where(np.isnan(f), bits | np.uint32(0x00400000), r).astype(np.uint32)
    return r.view(np.float32)


def bf16_to_bits(x: Any) -> np.ndarray:
    return (bf16_round(x).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def bf16_from_bits(b: Any) -> np.ndarray:
    return (np.asarray(b).astype(np.uint32) << np.uint32(16)).view(np.float32)
