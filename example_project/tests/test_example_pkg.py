"""example_pkg against numpy (runs the installed package: Metal on macOS, CPU elsewhere)."""
import example_pkg
import numpy as np
import pytest

rng = np.random.default_rng(1)


def test_every_kernel_is_shipped():
    assert set(example_pkg.kernels().names()) >= {"vector_add", "saxpy", "softmax", "matmul", "histogram"}
    assert set(example_pkg.kernels().entries()) == {"add", "add_f16", "axpy", "softmax_rows", "matmul_tiled",
                                                    "count_values", "total"}


def test_a_jit_entry_in_one_line():
    a, b = rng.standard_normal(77, dtype=np.float32), rng.standard_normal(77, dtype=np.float32)
    c = np.empty_like(a)
    assert example_pkg.kernels()["add"](a, b, c) is c
    np.testing.assert_array_equal(c, a + b)


@pytest.mark.parametrize("n", [1, 255, 256, 1000])
def test_vector_add(n):
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    np.testing.assert_array_equal(example_pkg.vector_add(a, b), a + b)


def test_vector_add_float16_specialisation():
    a, b = rng.standard_normal(300).astype(np.float16), rng.standard_normal(300).astype(np.float16)
    out = example_pkg.vector_add(a, b)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("n", [3, 1024, 1027])
def test_saxpy(n):
    x, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    np.testing.assert_allclose(example_pkg.saxpy(-1.5, x, y), np.float32(-1.5) * x + y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cols", [10, 64, 65, 256, 257, 777])
def test_softmax(cols):  # blocks of 64, 256 and 1024 threads, chosen at run time
    x = rng.standard_normal((5, cols), dtype=np.float32) * 4
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(example_pkg.softmax(x), e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("m, k, n", [(16, 16, 16), (33, 20, 17), (1, 40, 3)])
def test_matmul(m, k, n):
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    np.testing.assert_allclose(example_pkg.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_histogram():
    data = rng.integers(0, 10_000, 4097).astype(np.uint32)
    np.testing.assert_array_equal(example_pkg.histogram(data, 10), np.bincount(data % 10, minlength=10))
    with pytest.raises(ValueError, match="bins must be at least 1"):
        example_pkg.histogram(data, 0)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match="do not chain"):
        example_pkg.matmul(np.zeros((2, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="one length"):
        example_pkg.vector_add(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("n", [1, 256, 257, 100_000])
def test_two_pass_total(n):
    x = rng.standard_normal(n, dtype=np.float32)
    assert example_pkg.total(x) == pytest.approx(float(x.sum(dtype=np.float64)), rel=1e-4, abs=1e-3)
