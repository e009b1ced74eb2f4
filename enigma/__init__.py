"""Enigma: Apple-GPU (Metal) compute kernels written in Python."""
__version__ = "0.1.0"

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

from enigma.compiler import CompiledKernel, compile
from enigma.errors import EnigmaError
from enigma.frontend.jit import jit
from enigma.frontend.kernel import func, kernel
from enigma.frontend.language import abs_ as abs
from enigma.frontend.language import (
                                   atomic_add,
                                   atomic_max,
                                   atomic_min,
                                   barrier,
                                   block_dim,
                                   block_idx,
                                   ceil,
                                   ceil_div,
                                   const_expr,
                                   cos,
                                   exp,
                                   exp2,
                                   floor,
                                   fma,
                                   grid_dim,
                                   log,
                                   log2,
                                   maximum,
                                   minimum,
                                   range_constexpr,
                                   rsqrt,
                                   shared_tensor,
                                   simd_broadcast,
                                   simd_group_id,
                                   simd_lane_id,
                                   simd_max,
                                   simd_min,
                                   simd_shuffle_down,
                                   simd_sum,
                                   sin,
                                   sqrt,
                                   tanh,
                                   thread_idx,
                                   where,
)
from enigma.frontend.types import Constexpr, Tensor, TensorSpec

__all__ = [
    "abs", "atomic_add", "atomic_max", "atomic_min", "barrier", "bfloat16", "block_dim", "block_idx",
    "bool_", "ceil", "ceil_div", "compile", "CompiledKernel", "const_expr", "Constexpr", "cos", "DType",
    "EnigmaError", "exp", "exp2", "float16", "float32", "floor", "fma", "func", "grid_dim", "int16",
    "int32", "int8", "jit", "kernel", "log", "log2", "maximum", "minimum", "range_constexpr", "rsqrt",
    "shared_tensor", "simd_broadcast", "simd_group_id", "simd_lane_id", "simd_max", "simd_min",
    "simd_shuffle_down", "simd_sum", "sin", "sqrt", "tanh", "Tensor", "TensorSpec", "thread_idx", "uint16",
    "uint32", "uint8", "where",
]

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
