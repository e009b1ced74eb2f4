"""enigma.layout: CuTe's layout algebra (static ints and traced values) and tensors with layouts.

The divisions exported here accept a Layout or a tensor (a LayoutTensor, or a kernel's tensor
argument or shared_tensor viewed through its own layout); on tensors they check that the tiler fits.
"""
from enigma.layout.checks import Condition, check_conditions, conditions, kernel_conditions
from enigma.layout.int_tuple import crd2idx, elem_less, idx2crd
from enigma.layout.layout import (
    Layout,
    LayoutError,
    blocked_product,
    coalesce,
    complement,
    cosize,
    depth,
    filter,
    flat_product,
    flatten_layout,
    is_layout,
    left_inverse,
    logical_product,
    make_layout,
    make_ordered_layout,
    raked_product,
    rank,
    right_inverse,
    size,
    tiled_product,
    zipped_product,
)
from enigma.layout.tensor import (
    LayoutTensor,
    composition,
    flat_divide,
    local_partition,
    local_tile,
    logical_divide,
    make_identity_tensor,
    make_tensor,
    natural_layout,
    tiled_divide,
    zipped_divide,
)

__all__ = [
    "Condition", "Layout", "LayoutError", "LayoutTensor", "blocked_product", "check_conditions", "coalesce",
    "complement",
    "composition", "conditions", "cosize", "crd2idx", "depth", "elem_less", "filter", "flat_divide",
    "flat_product", "flatten_layout", "idx2crd", "is_layout", "kernel_conditions", "left_inverse",
    "local_partition",
    "local_tile", "logical_divide", "logical_product", "make_identity_tensor", "make_layout",
    "make_ordered_layout", "make_tensor", "natural_layout", "raked_product", "rank", "right_inverse",
    "size", "tiled_divide", "tiled_product", "zipped_divide", "zipped_product",
]
