"""The Layout API surface and CuTe's documented examples (media/docs/cpp/cute/02_layout_algebra.md)."""
import pytest

import enigma
from enigma.layout import (
    LayoutError,
    blocked_product,
    coalesce,
    complement,
    composition,
    cosize,
    depth,
    flatten_layout,
    left_inverse,
    logical_divide,
    logical_product,
    make_layout,
    raked_product,
    rank,
    right_inverse,
    size,
    zipped_divide,
)


def test_exported_from_enigma():
    for name in ("make_layout", "composition", "complement", "local_tile", "local_partition",
                 "make_identity_tensor", "make_tensor", "zipped_divide", "blocked_product", "cosize"):
        assert getattr(enigma, name) is getattr(enigma.layout, name)
    assert enigma.ceil_div(7, 2) == 4  # the frontend's ceil_div is not shadowed
    star: dict = {}
    exec("from enigma import *", star)
    for name in enigma.layout.__all__:  # kernels written after `from enigma import *` see them all
        assert name == "filter" or star[name] is getattr(enigma.layout, name), name
    assert "filter" not in star and star["make_layout"] is enigma.make_layout


def test_make_layout_forms_and_column_major_default():
    assert repr(make_layout(8)) == "8:1"
    assert repr(make_layout((4, (2, 3)))) == "(4,(2,3)):(1,(4,8))"
    assert repr(make_layout((4, 8), stride=(8, 1))) == "(4,8):(8,1)"
    assert repr(make_layout((4, 8), (8, 1))) == "(4,8):(8,1)"
    assert repr(make_layout(make_layout(4, 2), make_layout((2, 3)))) == "(4,(2,3)):(2,(1,2))"
    with pytest.raises(LayoutError, match="not congruent"):
        make_layout((4, 8), stride=(1,))


def test_queries_and_modes():
    L = make_layout((4, (2, 3)), stride=(1, (4, 8)))
    assert size(L) == 24 and size(L, 1) == 6 and size(L, [1, 0]) == 2
    assert rank(L) == 2 and rank(L, 1) == 2 and rank(make_layout(5)) == 1
    assert depth(L) == 2 and depth(make_layout(5)) == 0
    assert cosize(L) == 3 + 4 + 16 + 1
    assert L[1] == make_layout((2, 3), stride=(4, 8)) and L[0] != L[1]
    assert len(L) == 2 and [repr(m) for m in L] == ["4:1", "(2,3):(4,8)"]
    assert L(5) == 1 + 4 and L(1, (1, 2)) == 1 + 4 + 16 and L((1, (1, 2))) == 21
    assert repr(L(None, 3)) == "(4,):(1,)"
    assert repr(flatten_layout(L)) == "(4,2,3):(1,4,8)"
    assert size((2, (3, 4))) == 24


def test_cute_documented_examples():
    assert repr(coalesce(make_layout((2, (1, 6)), stride=(1, (6, 2))))) == "12:1"
    assert repr(composition(make_layout((6, 2), stride=(8, 2)), make_layout((4, 3), stride=(3, 1)))) \
        == "((2,2),3):((24,2),8)"
    assert repr(composition(make_layout(20, 2), make_layout((4, 5), stride=(1, 4)))) == "(4,5):(2,8)"
    assert repr(complement(make_layout((2, 2), stride=(1, 6)), 24)) == "(3,2):(2,12)"
    assert repr(complement(make_layout(4, 2), 24)) == "(2,3):(1,8)"
    assert repr(logical_divide(make_layout((4, 2, 3), stride=(2, 1, 8)), make_layout(4, 2))) \
        == "((2,2),(2,3)):((4,1),(2,8))"
    tiler = (make_layout(3, 3), make_layout((2, 4), stride=(1, 8)))
    assert repr(zipped_divide(make_layout((9, (4, 8)), stride=(59, (13, 1))), tiler)) \
        == "((3,(2,4)),(3,(2,2))):((177,(13,2)),(59,(26,1)))"
    assert repr(logical_product(make_layout((2, 2), stride=(4, 1)), make_layout(6, 1))) \
        == "((2,2),(2,3)):((4,1),(2,8))"
    block, tile = make_layout((2, 5), stride=(5, 1)), make_layout((3, 4), stride=(1, 3))
    assert repr(blocked_product(block, tile)) == "((2,3),(5,4)):((5,10),(1,30))"
    assert repr(raked_product(block, tile)) == "((3,2),(4,5)):((10,5),(30,1))"
    assert repr(right_inverse(make_layout((4, 8), stride=(8, 1)))) == "(8,4):(4,1)"
    assert repr(left_inverse(make_layout((4, 8), stride=(8, 1)))) == "(8,4):(4,1)"


def test_algebra_errors_name_the_callers_line():
    with pytest.raises(LayoutError) as ei:
        composition(make_layout((4, 6), stride=(1, 5)), make_layout(3, 3))  # 3 vs shape 4: neither divides
    assert "divisibility" in str(ei.value)
    assert ei.value.file == __file__ and "composition(make_layout((4, 6)" in ei.value.source_line
    with pytest.raises(LayoutError, match="not injective"):
        complement(make_layout((2, 2), stride=(2, 3)))
    with pytest.raises(LayoutError, match="more modes"):
        logical_divide(make_layout(8), (2, 2))
    assert isinstance(ei.value, enigma.EnigmaError)
