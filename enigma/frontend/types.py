"""Parameter annotations: `Tensor[dtype]`, `Tensor[dtype, 2]`, `Tensor[dtype, ("m", "n")]`,
`Tensor[dtype, (128, 64)]`, `Constexpr[int]`, and `TensorSpec` (an array's dtype and shape without data,
for compiling @jit functions over symbolic sizes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from enigma_runtime.dtypes import DType

Shape = tuple[int | str | None, ...]


def _check_shape(shape: Any, what: str) -> Shape:
    if isinstance(shape, (int, str)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(
            s is None or isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool) and s > 0)
            for s in shape):
        raise TypeError(f"{what} shape entries are positive ints, size names (str) or None, got {shape!r}")
    return shape


@dataclass(frozen=True)
class TensorType:
    """What `Tensor[...]` makes: element type (None = taken from the argument) and shape per axis.
    `Tensor[...] | None` is an optional tensor (`optional`): the argument may be None."""

    dtype: DType | None
    shape: Shape
    optional: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __or__(self, other: Any) -> TensorType:
        if other is None or other is type(None):
            return TensorType(self.dtype, self.shape, True)
        return NotImplemented

    __ror__ = __or__

    def __repr__(self) -> str:
        return f"Tensor[{self.dtype.name if self.dtype else '?'}, {self.shape!r}]" + \
            (" | None" if self.optional else "")


class _TensorFactory:
    """`enigma.Tensor[dtype]` (1-D, dynamic size), `[dtype, rank]`, `[dtype, (sizes...)]`."""

    def __getitem__(self, item: Any) -> TensorType:
        dtype, shape = (item if isinstance(item, tuple) else (item, 1))
        if dtype is not None and not isinstance(dtype, DType):
            raise TypeError(f"Tensor[...] takes an enigma dtype first (enigma.float32, ...), got {dtype!r}")
        if isinstance(shape, int) and not isinstance(shape, bool):
            if shape < 1:
                raise TypeError(f"Tensor rank must be >= 1, got {shape}")
            return TensorType(dtype, (None,) * shape)
        return TensorType(dtype, _check_shape(shape, "Tensor"))

    def __repr__(self) -> str:
        return "enigma.Tensor"


Tensor = _TensorFactory()


@dataclass(frozen=True)
class ConstexprType:
    """`Constexpr[int]`: a compile-time parameter; the kernel is specialised for its value."""

    type: type

    def __repr__(self) -> str:
        return f"Constexpr[{self.type.__name__}]"


class _ConstexprFactory:
    def __getitem__(self, t: type) -> ConstexprType:
        if t not in (int, float, bool):
            raise TypeError(f"Constexpr[...] takes int, float or bool, got {t!r}")
        return ConstexprType(t)


Constexpr = _ConstexprFactory()


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's dtype and shape without data: `TensorSpec(float32, ("n",))`. Named sizes stay symbolic
    in launch grids (they print as `n` and are computed by the runtime at launch)."""

    dtype: DType
    shape: Shape

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            raise TypeError(f"TensorSpec dtype must be an enigma dtype, got {self.dtype!r}")
        object.__setattr__(self, "shape", _check_shape(self.shape, "TensorSpec"))

    @property
    def ndim(self) -> int:
        return len(self.shape)
