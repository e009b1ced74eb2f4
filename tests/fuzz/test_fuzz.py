"""The differential fuzzer's generator and comparison."""
from __future__ import annotations

from fuzz.gen import generate, render
from fuzz.run import differences

SEEDS = range(300)


def test_generator_is_seeded_and_covers_the_language():
    assert render(generate(7)) == render(generate(7))
    text = "".join(render(generate(s)) for s in SEEDS)
    for needle in ("if ", "else:", "for ", "while ", "shared_tensor", "barrier()", "simd_sum", "simd_max",
                   "simd_min", "simd_shuffle_down", "simd_broadcast", "atomic_add", "atomic_max",
                   "atomic_min", "enigma.fma", "enigma.where", "enigma.exp", "enigma.tanh", "enigma.floor",
                   "<<", ">>", " // ", " % ", " / ", "~", "enigma.minimum", "enigma.maximum", "enigma.abs",
                   ".to(enigma."):
        assert needle in text, needle
    for d in ("float32", "float16", "bfloat16", "int32", "uint32", "int16", "uint16", "int8", "uint8",
              "bool_"):
        assert f"Tensor[enigma.{d}]" in text, d


def test_comparison_distinguishes_signed_zeros_and_tolerates_only_inexact_elements():
    import numpy as np

    from enigma import float16, float32

    z = np.array([0.0, 1.0, np.nan], np.float32)
    assert differences(float32, z, np.array([-0.0, 1.0, np.nan], np.float32), np.zeros(3, bool)) == [0]
    near = np.array([1.0, 1.0001], np.float16)
    exact = np.zeros(2, bool)
    assert differences(float16, near, np.array([1.0, 1.001], np.float16), exact) == [1]
    assert differences(float16, near, np.array([1.0, 1.001], np.float16), ~exact) == []
