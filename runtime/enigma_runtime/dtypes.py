"""Element types shared by the compiler and the runtime (the artifact format names them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
