"""enigma.require: conditions on sizes and scalars a kernel relies on, checked at every launch."""
from __future__ import annotations

import numpy as np
import pytest

import enigma
from enigma import EnigmaError, Tensor, float32


@enigma.kernel(block=(32, 1, 1), grid=lambda x, y: (x.shape[0] // 32, 1, 1))
def pairs(x: Tensor[float32, ("n",)], y: Tensor[float32, ("h",)]):  # noqa: F821, UP037
    enigma.require(x.shape[0] % 32 == 0, "n is whole simdgroups")
    enigma.require(x.shape[0] == 2 * y.shape[0], "y holds one value per pair of x")
    i = enigma.block_idx().x * 32 + enigma.thread_idx().x
    if i % 2 == 0:
        y[i // 2] = x[i] + x[i + 1]


def test_a_traced_condition_goes_into_the_signature_and_every_launch_checks_it():
    ck = enigma.compile(pairs)
    texts = [r["text"] for r in ck.signature["requires"]]
    assert texts == ["(x.shape[0] % 32) == 0", "x.shape[0] == (2 * y.shape[0])"]
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(32, np.float32)
    ck(x, y)
    np.testing.assert_array_equal(y, x[0::2] + x[1::2])
    with pytest.raises(ValueError, match="y holds one value per pair of x"):
        ck(x, np.zeros(31, np.float32))
    with pytest.raises(ValueError, match="n is whole simdgroups"):
        ck(np.zeros(48, np.float32), np.zeros(24, np.float32))


def test_a_false_python_condition_is_an_error_at_its_line():
    @enigma.kernel(block=(1, 1, 1), grid=(1, 1, 1))
    def k(x: Tensor[float32, (16,)]):
        enigma.require(x.shape[0] % 32 == 0, "whole simdgroups")  # a static shape: decided now
        x[0] = 1.0

    with pytest.raises(EnigmaError, match="enigma.require fails: whole simdgroups") as e:
        enigma.compile(k)
    assert e.value.line == k.fn.__code__.co_firstlineno + 2


def test_a_condition_on_thread_indices_is_refused_at_compile_time():
    @enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
    def k(x: Tensor[float32]):
        enigma.require(enigma.thread_idx().x < x.shape[0], "in range")
        x[enigma.thread_idx().x] = 1.0

    with pytest.raises(EnigmaError, match="no launch can check it"):
        enigma.compile(k)
