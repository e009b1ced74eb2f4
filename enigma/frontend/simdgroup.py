"""Simdgroup matrices (Metal's simdgroup_float8x8 / half8x8 / bfloat8x8) in kernel bodies.

An 8x8 matrix owned by the 32 lanes of a simdgroup together: every lane of the simdgroup must take
part in each operation (uniform control flow; the CPU executor and enigma.verify report a simdgroup
matrix op reached by part of a simdgroup). Matrices are values: `acc = enigma.simd_mma(a, b, acc)`
in a run-time loop carries `acc` like any variable.

    enigma.simd_matrix(dtype, fill=0.0)               8x8 of `fill`
    enigma.simd_load(t, row, col, transpose=False)     the 8x8 block of 2-D tensor t at (row, col)
    enigma.simd_mma(a, b, c)                           a @ b + c (the type of c)
    enigma.simd_store(m, t, row, col, transpose=False) write m to the 8x8 block of t at (row, col)

`t` is a 2-D tensor argument or threadgroup array (row-major: unit stride along columns; the row
stride is Metal's elements-per-row argument), or a 2-D LayoutTensor view of one with static shape and
one unit stride (a column-major view reads the transposed block). With transpose=True the block at
(row, col) of `t` is read (written) as the transpose of the matrix: element (i, j) is t[row + j, col + i].
The op's offset is split into a traced int32 operand and a static `origin` attribute, so constant
block positions inside an unrolled loop add no index arithmetic.
"""
from __future__ import annotations

from typing import Any

from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import error_here
from enigma.frontend.builder import current
from enigma.frontend.tensors import TensorRef
from enigma.frontend.values import EXTENSIONS, PyNum, Undefined, Val, as_val, describe, type_error
from enigma.layout.tensor import LayoutTensor

N = 8  # Metal's simdgroup matrices are 8x8
MATRIX_DTYPES = ("float32", "float16", "bfloat16")


class SimdMatrix(Val):
    """A traced 8x8 simdgroup matrix (a value of the whole simdgroup)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SimdMatrix({self.v!r})"

    def to(self, d: DType) -> Val:
        raise type_error("a simdgroup matrix cannot be converted element by element",
                         "load it with the type you need, or accumulate into a simd_matrix of that type")

    def _unsupported(self, *a: Any) -> Any:
        raise type_error("simdgroup matrices support only enigma.simd_mma, simd_load and simd_store",
                         "compute a @ b + c with enigma.simd_mma(a, b, c)")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _unsupported
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __and__ = __rand__ = __or__ = __ror__ = _unsupported
    __xor__ = __rxor__ = __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = __pow__ = _unsupported
    __lt__ = __le__ = __gt__ = __ge__ = __invert__ = __abs__ = __neg__ = __getitem__ = _unsupported
    __eq__ = __ne__ = _unsupported  # type: ignore[assignment]
    __hash__ = Val.__hash__


EXTENSIONS["matrix"] = SimdMatrix


def _check_dtype(d: Any, what: str) -> DType:
    if not isinstance(d, DType) or d.name not in MATRIX_DTYPES:
        raise type_error(f"{what}: simdgroup matrices hold float32, float16 or bfloat16, got "
                         f"{d.name if isinstance(d, DType) else describe(d)}",
                         "use a float tensor (or convert the data before the kernel)")
    return d


def matrix_type(d: DType) -> ir.Type:
    return ir.Type(d, 1, N)


def simd_matrix(dtype: DType, fill: Any = 0.0) -> SimdMatrix:
    """An 8x8 simdgroup matrix with every element `fill` (a Python number)."""
    d = _check_dtype(dtype, "enigma.simd_matrix")
    if isinstance(fill, Undefined):
        fill.fail()
    if not isinstance(fill, PyNum):
        raise type_error(f"enigma.simd_matrix's fill is a Python number, got {describe(fill)}",
                         "fill with a constant; add run-time values with simd_mma")
    return SimdMatrix(current().emit("simd_fill", [], [matrix_type(d)], {"value": float(fill)}).result)


def _split(c: Any, stride: Any) -> tuple[Any, int]:
    """(traced part, static part) of coordinate `c` times `stride`."""
    if isinstance(c, Undefined):
        c.fail()
    if isinstance(c, int) and not isinstance(c, bool):
        if isinstance(stride, int):
            return 0, c * stride
        return (c * stride if c else 0), 0
    if isinstance(c, Val) and c.dtype.is_int and c.v.type.lanes == 1:
        return (c if isinstance(stride, int) and stride == 1 else c * stride), 0
    raise type_error(f"a simdgroup matrix row/column is an integer, got {describe(c)}")


class _Block:
    """Where an 8x8 block lives: tensor, traced offset (int32), static offset, row stride, transpose."""

    def __init__(self, t: Any, row: Any, col: Any, transpose: Any, what: str) -> None:
        if not isinstance(transpose, bool):
            raise type_error(f"{what}'s transpose is a Python bool, got {describe(transpose)}")
        base: Any = 0
        shape: tuple[Any, ...]
        strides: tuple[Any, ...]
        if isinstance(t, LayoutTensor):
            lay = t.layout
            if not isinstance(t.engine, TensorRef) or len(lay) != 2 or \
                    not all(isinstance(x, int) for x in (lay.shape[0], lay.shape[1])):
                raise error_here(f"{what} needs a 2-D tensor with a static shape, got {t!r}")
            shape, strides = (lay.shape[0], lay.shape[1]), (lay.stride[0], lay.stride[1])
            base, ref = t.offset, t.engine
        elif isinstance(t, TensorRef):
            if t.ndim != 2:
                raise error_here(f"{what} needs a 2-D tensor; {t.name} has rank {t.ndim}",
                                 "declare it with two axes (rows, columns)")
            ref, shape, strides = t, t.static_shape, (t.stride(0), 1)
        else:
            raise type_error(f"{what}'s tensor is a tensor argument, shared_tensor or a 2-D view of one "
                             f"(enigma.make_tensor, local_tile), got {describe(t)}")
        _check_dtype(ref.dtype, f"{what} of {ref.name}")
        if strides[1] == 1:
            ld = strides[0]
        elif strides[0] == 1:  # column-major: the transposed block of a row-major matrix
            ld, transpose = strides[1], not transpose
        else:
            raise error_here(f"{what}: the tensor's strides {strides} have no unit stride",
                             "simdgroup matrices load rows (or columns) of consecutive elements")
        for axis, c in enumerate((row, col)):
            size = shape[axis]
            if isinstance(c, int) and not isinstance(c, bool) and isinstance(size, int) and \
                    not 0 <= c <= size - N:
                raise error_here(f"{what}: the 8x8 block at {'row' if axis == 0 else 'column'} {c} does not "
                                 f"fit axis {axis} (size {size})",
                                 "blocks start at least 8 elements before the end of each axis")
        traced: Any = base
        static = 0
        for c, st in zip((row, col), strides):
            tp, sp = _split(c, st)
            static += sp
            if not (isinstance(tp, int) and tp == 0):
                traced = tp if isinstance(traced, int) and traced == 0 else traced + tp
        if isinstance(traced, int):
            static, traced = static + traced, 0
        self.ref, self.transpose, self.origin = ref, transpose, static
        self.off = as_val(traced, dt.int32)
        self.ld = as_val(ld, dt.int32)

    def attrs(self) -> dict[str, Any]:
        return {**self.ref.attrs(), "origin": self.origin, "transpose": self.transpose}


def simd_load(t: Any, row: Any, col: Any, transpose: bool = False) -> SimdMatrix:
    """The 8x8 block of the 2-D tensor `t` whose top-left element is t[row, col] (Metal's
    simdgroup_load; with transpose=True the block's transpose)."""
    blk = _Block(t, row, col, transpose, "enigma.simd_load")
    blk.ref.record_access("r")
    return SimdMatrix(current().emit("simd_load", [blk.off.v, blk.ld.v], [matrix_type(blk.ref.dtype)],
                                     blk.attrs()).result)


def simd_store(m: Any, t: Any, row: Any, col: Any, transpose: bool = False) -> None:
    """Write the matrix `m` to the 8x8 block of `t` at (row, col) (Metal's simdgroup_store)."""
    if not isinstance(m, SimdMatrix):
        raise type_error(f"enigma.simd_store stores a simdgroup matrix, got {describe(m)}")
    blk = _Block(t, row, col, transpose, "enigma.simd_store")
    if m.dtype != blk.ref.dtype:
        raise type_error(f"enigma.simd_store of a {m.dtype.name} matrix into {blk.ref.name} "
                         f"({blk.ref.dtype.name})", f"accumulate in a simd_matrix({blk.ref.dtype.name}) or "
                         f"store into a {m.dtype.name} tensor")
    blk.ref.record_access("w")
    current().emit("simd_store", [m.v, blk.off.v, blk.ld.v], [], blk.attrs())


def simd_mma(a: Any, b: Any, c: Any) -> SimdMatrix:
    """a @ b + c (Metal's simdgroup_multiply_accumulate); the result has c's type. Inputs may be
    float16 or bfloat16 with a float32 accumulator."""
    for name, x in (("a", a), ("b", b), ("c", c)):
        if isinstance(x, Undefined):
            x.fail()
        if not isinstance(x, SimdMatrix):
            raise type_error(f"enigma.simd_mma's {name} is a simdgroup matrix, got {describe(x)}",
                             "make one with enigma.simd_matrix or enigma.simd_load")
    return SimdMatrix(current().emit("simd_mma", [a.v, b.v, c.v], [c.v.type]).result)
