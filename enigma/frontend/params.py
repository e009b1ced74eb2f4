"""A kernel's parameters, read from its annotations: tensors (enigma.Tensor[...]), scalars (a dtype or
int / float / bool) and compile-time values (enigma.Constexpr[...]); names the generated Metal source
reserves are refused."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma.errors import EnigmaError
from enigma.frontend.types import ConstexprType, TensorType

_SCALAR_PY = {int: dt.int32, float: dt.float32, bool: dt.bool_}
# names a kernel parameter cannot have: C++/MSL keywords, qualifiers and types the generated source uses
MSL_RESERVED = frozenset("""
    auto bool break case char class const constant constexpr continue default delete device do double else
    enum explicit extern false float for friend goto half if inline int kernel long namespace new operator
    private protected public register return short signed sizeof static struct switch template this
    thread threadgroup true typedef typename uint uchar ushort union unsigned using virtual void volatile
    while bfloat metal vertex fragment sampler texture atomic_int atomic_uint simd float2 float3 float4
    half2 half3 half4 int2 int3 int4 uint2 uint3 uint4 size_t ptrdiff_t
""".split())


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "tensor" | "scalar" | "constexpr"
    tensor: TensorType | None = None
    dtype: DType | None = None
    ctype: type | None = None
    default: Any = inspect.Parameter.empty


def parse_params(fn: Callable[..., Any], name: str, file: str, line: Callable[[], int]) -> list[Param]:
    """The parameters of kernel `name` (the function `fn`); an error is located at file:line(), the
    line of its `def` (asked for only then: finding it rewrites the kernel's source)."""
    closure = {n: c.cell_contents for n, c in zip(fn.__code__.co_freevars, fn.__closure__ or ())
               if _has_contents(c)}
    try:
        ann = inspect.get_annotations(fn, locals=closure, eval_str=True)
    except Exception as e:  # noqa: BLE001 - any failure evaluating a string annotation
        raise EnigmaError(f"cannot evaluate the annotations of kernel {name!r}: {e}", file, line()) from e
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in MSL_RESERVED or p.name.startswith("enigma_"):
            raise EnigmaError(f"kernel parameter name {p.name!r} is reserved in the generated Metal source",
                              file, line(), hint="rename the parameter")
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            raise EnigmaError(f"kernel parameter {p.name!r} must be a plain positional parameter "
                              "(no *args/**kwargs/keyword-only)", file, line())
        a = ann.get(p.name, inspect.Parameter.empty)
        if p.default is not inspect.Parameter.empty and not isinstance(a, ConstexprType):
            raise EnigmaError(f"kernel parameter {p.name!r} has a default value ({p.default!r}); only "
                              "Constexpr parameters can have one", file, line(),
                              hint=f"pass {p.name!r} at every launch, or make it a compile-time value: "
                                   f"{p.name}: enigma.Constexpr[{type(p.default).__name__}] = {p.default!r}")
        if isinstance(a, TensorType):
            params.append(Param(p.name, "tensor", tensor=a))
        elif isinstance(a, ConstexprType):
            params.append(Param(p.name, "constexpr", ctype=a.type, default=p.default))
        elif isinstance(a, DType):
            params.append(Param(p.name, "scalar", dtype=a))
        elif a in _SCALAR_PY:
            params.append(Param(p.name, "scalar", dtype=_SCALAR_PY[a]))
        else:
            what = "has no annotation" if a is inspect.Parameter.empty else f"is annotated {a!r}"
            raise EnigmaError(f"kernel parameter {p.name!r} {what}", file, line(),
                              hint="annotate every kernel parameter: enigma.Tensor[float32], a dtype such as "
                                   "enigma.int32, or enigma.Constexpr[int]")
    return params


def _has_contents(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True
