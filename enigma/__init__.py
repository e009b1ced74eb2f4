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
from enigma.frontend.grid import select
from enigma.frontend.jit import empty, jit, zeros
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
    "EnigmaError", "empty", "exp", "exp2", "float16", "float32", "floor", "fma", "func", "grid_dim", "int16",
    "int32", "int8", "jit", "kernel", "log", "log2", "maximum", "minimum", "range_constexpr", "rsqrt",
    "select", "shared_tensor", "simd_broadcast", "simd_group_id", "simd_lane_id", "simd_max", "simd_min",
    "simd_shuffle_down", "simd_sum", "sin", "sqrt", "tanh", "Tensor", "TensorSpec", "thread_idx", "uint16",
    "uint32", "uint8", "where", "zeros",
]

from enigma.layout import *  # noqa: E402,F401,F403  (CuTe layouts: enigma.make_layout, local_tile, ...)
from enigma.layout import __all__ as _layout_names  # noqa: E402

# `from enigma import *` brings the layout names too, except `filter` (enigma.filter), which would
# shadow Python's builtin filter in the importing module
__all__ += [n for n in _layout_names if n != "filter"]
