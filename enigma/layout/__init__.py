"""enigma.layout: CuTe's layout algebra (static ints and traced values) and tensors with layouts."""
from enigma.layout.conditions import Condition, conditions
from enigma.layout.int_tuple import ceil_div, crd2idx, elem_less, idx2crd
from enigma.layout.layout import *  # noqa: F403
from enigma.layout.layout import __all__ as _layout_all

__all__ = ["Condition", "conditions", "ceil_div", "crd2idx", "elem_less", "idx2crd", *_layout_all]
