"""What a @jit sees of its arguments while it runs at compile time: tensors as HostTensor (a numpy
array or a TensorSpec, with sizes usable in launch-size arithmetic), float arguments as HostFloat,
ints as launch-size expressions (grid.Expr)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma.frontend.grid import Expr
from enigma.frontend.types import Shape, TensorSpec


class HostTensor:
    """A jit-time view of a tensor argument: a numpy array or a TensorSpec. `.shape` entries are ints
    (static) or `Expr` sizes (known now for arrays, symbolic for specs) usable in grid arithmetic.
    A temporary (`enigma.empty` in a @jit) has `sizes`: its shape as given (ints and expressions)."""

    def __init__(self, label: str, dtype: DType, shape: Shape, array: np.ndarray | None = None,
                 sizes: tuple[Any, ...] | None = None) -> None:
        self.label, self.dtype, self.spec_shape, self.array = label, dtype, tuple(shape), array
        self.init, self.line = "empty", 0  # a temporary's initial contents ("empty"/"zeros") and line
        if sizes is not None:
            self.shape: tuple[Any, ...] = tuple(sizes)
        else:
            self.shape = tuple(self._size(k, s) for k, s in enumerate(self.spec_shape))

    def _size(self, axis: int, s: int | str | None) -> int | Expr:
        if self.array is not None:
            return Expr("dim", name=self.label, host=self, axis=axis, value=int(self.array.shape[axis]))
        if isinstance(s, int):
            return s
        if isinstance(s, str):
            return Expr("sym", name=s, host=self, axis=axis)
        return Expr("dim", name=self.label, host=self, axis=axis)

    @property
    def ndim(self) -> int:
        return len(self.spec_shape)

    def __repr__(self) -> str:
        return f"HostTensor({self.label}: {self.dtype.name}{list(self.spec_shape)})"


class HostFloat(float):
    """A float argument of a @jit (`origin` names it). Arithmetic on it gives a HostFloat without an
    origin: a shipped entry passes scalars through unchanged, so a launch refuses a derived one."""

    origin: str | None = None

    @staticmethod
    def of(value: float, origin: str | None) -> HostFloat:
        f = HostFloat(value)
        f.origin = origin
        return f


def _derived(name: str) -> Callable[..., Any]:
    def op(self: HostFloat, *args: Any) -> Any:
        r = getattr(float, name)(self, *args)
        return HostFloat.of(r, None) if isinstance(r, float) else r
    return op


def _undecidable(name: str) -> Callable[..., Any]:
    def op(self: HostFloat, *args: Any) -> Any:
        raise TypeError(f"{name} on the @jit's float argument {self.origin or '(derived)'}: a compiled jit "
                        "passes float arguments to kernels unchanged and cannot decide on their values in "
                        "Python; decide in the kernel")
    return op


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
              "__neg__", "__pos__", "__abs__"):
    setattr(HostFloat, _name, _derived(_name))
for _name in ("__bool__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(HostFloat, _name, _undecidable(_name.strip("_")))


def host_value(x: Any, label: str) -> Any:
    if isinstance(x, HostTensor):
        return x
    if isinstance(x, np.ndarray):
        return HostTensor(label, dt.from_numpy(x.dtype), x.shape, x)
    if isinstance(x, TensorSpec):
        return HostTensor(label, x.dtype, x.shape)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return Expr("arg", name=label, value=int(x))
    if isinstance(x, np.floating):
        return float(x)
    return x
