"""Optional tensors (issue 12): `Tensor[...] | None` parameters, the variant without the tensor, and
the runtime choosing between the shipped variants by argument."""
from __future__ import annotations

import sys

import enigma_runtime
import numpy as np
import pytest
import zoo

import enigma
from enigma import Tensor, float32
from enigma.artifacts import write_artifacts


def test_both_variants_are_built_and_named():
    variants = zoo.masked_softmax.variants()
    assert [v.variant for v in variants] == ["", "no_mask"]
    with_mask, without = (enigma.compile(v) for v in variants)
    assert [a["kind"] for a in with_mask.signature["args"]] == ["tensor", "tensor", "tensor", "scalar"]
    assert [a["kind"] for a in without.signature["args"]] == ["tensor", "none", "tensor", "scalar"]
    assert without.kernel_name == "enigma_kernel_masked_softmax_no_mask"
    # the variant without the mask has no mask parameter; the other buffers keep their indices
    assert "mask [[" not in without.metal_source and "y [[buffer(2)]]" in without.metal_source
    assert "mask[" in with_mask.metal_source
    assert len([op for op in enigma.ir.walk(without.ir.body) if op.name == "load"]) < \
        len([op for op in enigma.ir.walk(with_mask.ir.body) if op.name == "load"])


def test_the_runtime_picks_the_variant_by_argument(tmp_path):
    pkg = tmp_path / "enigma_optional_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    cks = [enigma.compile(v) for v in zoo.masked_softmax.variants()]
    write_artifacts(pkg, "enigma_optional_pkg", cks, metallib=None, msl_version="3.1", macos_target="14.0")
    sys.path.insert(0, str(tmp_path))
    try:
        k = enigma_runtime.load("enigma_optional_pkg", "masked_softmax")
        rng = np.random.default_rng(4)
        for mask in (True, False):
            x, m, y, scale = zoo.masked_softmax_inputs(mask)(rng)
            want = zoo.masked_softmax_ref(x, m, y, scale)[0]
            k(x, m, y, scale, grid=(x.shape[0], 1, 1), block=(zoo.SM_BLOCK, 1, 1), device="cpu")
            np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        with pytest.raises(TypeError, match="no specialisation matches"):
            k(x, np.zeros(3, np.int32), y, scale, grid=(4, 1, 1), block=(128, 1, 1), device="cpu")
    finally:
        sys.path.remove(str(tmp_path))


@enigma.kernel
def required(x: Tensor[float32], y: Tensor[float32]):
    y[0] = x[0]


@enigma.jit
def pass_none(y):
    required(None, y).launch(grid=(1, 1, 1), block=(1, 1, 1))  # LINE-NONE


def test_none_for_a_tensor_that_is_not_optional_is_an_error():
    with pytest.raises(enigma.EnigmaError, match="is a tensor, got None") as e:
        enigma.compile(pass_none, np.zeros(1, np.float32))
    assert "Tensor[...] | None" in str(e.value)


def test_the_annotation():
    t = Tensor[float32, 2] | None
    assert t.optional and t.rank == 2 and repr(t).endswith("| None")
    assert not Tensor[float32].optional
