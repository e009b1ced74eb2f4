"""Enigma: Apple-GPU (Metal) compute kernels written in Python."""

import builtins
from typing import TYPE_CHECKING, Any

from enigma_runtime.dtypes import (
    DType,
    bfloat16,
    bool_,
    float16,
    float32,
    int8,
    int16,
    int32,
    uint8,
    uint16,
    uint32,
)

# submodules enigma_build may load on their own before enigma (enigma_build.leaf.enigma_leaf): bind
# them here so `enigma.options` and `enigma.cache` are attributes of the package in every case
from enigma import cache, options  # noqa: F401
from enigma.compiler import (
    CompiledKernel,
    compile,  # noqa: F401 - enigma.compile; not in __all__ (shadows the builtin)
)
from enigma.errors import EnigmaError
from enigma.frontend.func import func
from enigma.frontend.grid import select
from enigma.frontend.jit import empty, jit, zeros
from enigma.frontend.kernel import kernel
from enigma.frontend.language import MATH_FUNCTIONS as _MATH
from enigma.frontend.language import (
    atomic_add,
    atomic_max,
    atomic_min,
    barrier,
    block_dim,
    block_idx,
    ceil_div,
    const_expr,
    fma,
    grid_dim,
    maximum,
    minimum,
    range_constexpr,
    shared_tensor,
    simd_broadcast,
    simd_group_id,
    simd_lane_id,
    simd_max,
    simd_min,
    simd_shuffle_down,
    simd_sum,
    thread_idx,
    where,
)
from enigma.frontend.types import Constexpr, Tensor, TensorSpec
from enigma.layout.checks import require_sizes as require
from enigma.options import CompileOptions  # noqa: F401  (enigma.CompileOptions, for enigma.compile)
from enigma.version import __version__ as __version__

# the math functions, one per math op of the op table (enigma_runtime/ops.py): enigma.exp, enigma.abs, ...
globals().update(_MATH)
if TYPE_CHECKING:
    def __getattr__(name: str) -> Any: ...  # tells type checkers about the generated math functions

__all__ = [
    "atomic_add", "atomic_max", "atomic_min", "barrier", "bfloat16", "block_dim", "block_idx", "bool_",
    "ceil_div", "CompiledKernel", "const_expr", "Constexpr", "DType", "EnigmaError", "empty",
    "float16", "float32", "fma", "func", "grid_dim", "int16", "int32", "int8", "jit", "kernel", "maximum",
    "minimum", "range_constexpr", "require", "select", "shared_tensor", "simd_broadcast", "simd_group_id",
    "simd_lane_id", "simd_max", "simd_min", "simd_shuffle_down", "simd_sum", "Tensor", "TensorSpec",
    "thread_idx", "uint16", "uint32", "uint8", "where", "zeros",
]

__all__ += [n for n in _MATH if n not in dir(builtins)]  # exp, ...; not abs, pow (builtins)

# fast kernels (issue 12): fragments, vectors, bit views, block reductions, simdgroup matrices
from enigma.frontend.fragments import Fragment, copy, make_fragment  # noqa: E402
from enigma.frontend.reductions import block_max, block_min, block_sum  # noqa: E402
from enigma.frontend.simdgroup import simd_load, simd_matrix, simd_mma, simd_store  # noqa: E402
from enigma.frontend.vectors import Vector, bitcast, dot, vec  # noqa: E402

__all__ += ["Fragment", "Vector", "bitcast", "block_max", "block_min", "block_sum", "copy", "dot",
            "make_fragment", "simd_load", "simd_matrix", "simd_mma", "simd_store", "vec"]

from enigma.layout import *  # noqa: E402,F401,F403  (CuTe layouts: enigma.make_layout, local_tile, ...)
from enigma.layout import __all__ as _layout_names  # noqa: E402

# `from enigma import *` brings the layout names too, except `filter` (enigma.filter), which would
# shadow Python's builtin filter in the importing module
__all__ += [n for n in _layout_names if n != "filter"]
