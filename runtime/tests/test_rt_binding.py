"""Calling a kernel: argument validation, specialisations, grid/block, device choice, return value."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime import GridError, Kernel, LaunchError
from irb import gid, kernel, scalar, tensor
from rt_fixtures import vector_add_kernel


@pytest.fixture
def va() -> Kernel:
    return Kernel.from_spec(*vector_add_kernel(), "// msl")


def arrays(n=100, dtype=np.float32):
    return np.arange(n, dtype=dtype), np.ones(n, dtype), np.zeros(n, dtype)


def test_call_updates_in_place_and_returns_written(va):
    a, b, c = arrays()
    assert va(a, b, c, 100, device="cpu") is c
    np.testing.assert_array_equal(c, a + 1)


def test_wrong_argument_count(va):
    a, b, c = arrays()
    with pytest.raises(TypeError, match=r"takes 4 arguments \(vector_add\(a: float32\[n\].*got 3"):
        va(a, b, c, device="cpu")


def test_wrong_dtype(va):
    a, b, c = arrays()
    with pytest.raises(TypeError, match="argument 'b' has dtype float64, expected float32"):
        va(a, b.astype(np.float64), c, 100, device="cpu")
    with pytest.raises(TypeError, match="argument 'a' expects a numpy array"):
        va([1.0] * 100, b, c, 100, device="cpu")


def test_wrong_rank(va):
    a, b, c = arrays()
    with pytest.raises(ValueError, match=r"argument 'a' has rank 2 \(shape \[10, 10\]\), expected rank 1"):
        va(a.reshape(10, 10), b, c, 100, device="cpu")


def test_symbolic_sizes_must_agree(va):
    a, b, c = arrays()
    with pytest.raises(ValueError, match=r"symbolic size 'n' disagrees: a.shape\[0\] = 100 but "
                                         r"b.shape\[0\] = 99"):
        va(a, b[:99], c, 100, device="cpu")


def test_static_sizes_must_agree():
    def body(b):
        i = b.v("thread_idx", t="int32", dim=0)
        b.op("store", i, b.v("load", i, t="float32", tensor="x"), attrs={"tensor": "y"})
    k = Kernel.from_spec(*kernel("copy4", [tensor("x", "float32", [4]), tensor("y", "float32", [4], "write")],
                                 body, block=(4, 1, 1), grid=[1, 1, 1]), "")
    with pytest.raises(ValueError, match="argument 'x' has size 5 along axis 0, but the kernel was compiled "
                                         "for the static size 4"):
        k(np.zeros(5, np.float32), np.zeros(4, np.float32), device="cpu")
    y = np.zeros(4, np.float32)
    k(np.arange(4, dtype=np.float32), y, device="cpu")
    np.testing.assert_array_equal(y, np.arange(4))


@pytest.mark.parametrize("dtype, value, exc, match", [
    ("int32", 2**31, ValueError, r"'s' = 2147483648 is out of range of int32 \[-2147483648, 2147483647\]"),
    ("int32", -(2**31) - 1, ValueError, "out of range of int32"),
    ("uint32", -1, ValueError, r"out of range of uint32 \[0, 4294967295\]"),
    ("int8", 128, ValueError, "out of range of int8"),
    ("float32", 1e39, ValueError, "out of range of float32"),
    ("float16", 70000.0, ValueError, "out of range of float16"),
    ("int32", 1.5, TypeError, r"expects an int \(int32\), got float"),
    ("int32", True, TypeError, "expects an int"),
    ("bool", 1, TypeError, "expects a bool"),
    ("float32", "1", TypeError, "expects a float or an int"),
    ("int32", np.int64(2**40), ValueError, "= 1099511627776 is out of range of int32"),
    ("int32", np.float32(3), TypeError, r"expects an int \(int32\), got float32"),
    ("uint8", np.int16(-1), ValueError, "out of range of uint8"),
])
def test_scalar_validation(dtype, value, exc, match):
    def body(b):
        b.v("param", t=dtype, name="s")
    k = Kernel.from_spec(*kernel("scal", [scalar("s", dtype)], body, block=(1, 1, 1), grid=[1, 1, 1]), "")
    with pytest.raises(exc, match=match):
        k(value, device="cpu")


@pytest.mark.parametrize("dtype, value", [("float32", float("inf")), ("float32", 3), ("int32", np.int32(-5)),
                                          ("bool", True), ("uint8", 255), ("bfloat16", 1e38),
                                          ("int32", np.int64(-5)), ("uint32", np.uint8(7)),
                                          ("float32", np.float64(0.5)), ("float16", np.int32(3))])
def test_scalar_accepted(dtype, value):
    def body(b):
        p = b.v("param", t=dtype, name="s")
        b.op("store", b.c(0), p, attrs={"tensor": "out"})
    k = Kernel.from_spec(*kernel("scal", [scalar("s", dtype), tensor("out", dtype, [1], "write")], body,
                                 block=(1, 1, 1), grid=[1, 1, 1]), "")
    out = np.zeros(1, np.uint16 if dtype == "bfloat16" else dtype)
    k(value, out, device="cpu")
    if dtype != "bfloat16":
        assert out[0] == value


def test_non_contiguous_arrays_are_copied_in_and_back(va):
    big = np.zeros((100, 2), np.float32)
    a = np.arange(200, dtype=np.float32)[::2]
    out = va(a, np.ones(100, np.float32), big[:, 1], 100, device="cpu")
    np.testing.assert_array_equal(big[:, 1], a + 1)
    np.testing.assert_array_equal(big[:, 0], 0)
    assert out.base is big  # the caller's view, not the temporary copy


def test_read_only_output_refused(va):
    a, b, c = arrays()
    c.flags.writeable = False
    with pytest.raises(ValueError, match="argument 'c' is written by the kernel but the array is read-only"):
        va(a, b, c, 100, device="cpu")


def test_grid_and_block(va):
    a, b, c = arrays(1000)
    va(a, b, c, 1000, grid=(2, 1, 1), block=(128,), device="cpu")  # covers only 256 elements
    np.testing.assert_array_equal(c[:256], a[:256] + 1)
    assert not c[256:].any()
    with pytest.raises(ValueError, match="block"):
        va(a, b, c, 1000, block=(0, 1, 1), device="cpu")
    with pytest.raises(ValueError, match="grid"):
        va(a, b, c, 1000, grid=(1, 2, 3, 4), device="cpu")
    with pytest.raises(LaunchError, match=r"block \(64, 32, 1\) has 2048 threads; Metal allows at most 1024"):
        va(a, b, c, 1000, block=(64, 32), device="cpu")


def test_missing_grid_or_block_is_a_clear_error():
    spec, ir = vector_add_kernel()
    k = Kernel.from_spec(dict(spec, grid=None, block=None), ir, "")
    a, b, c = arrays()
    with pytest.raises(LaunchError, match=r"no block in its metadata.*pass block=\(x, y, z\)"):
        k(a, b, c, 100, device="cpu")
    with pytest.raises(LaunchError, match=r"no grid in its metadata.*pass grid=\(x, y, z\)"):
        k(a, b, c, 100, block=256, device="cpu")
    k(a, b, c, 100, grid=1, block=128, device="cpu")
    np.testing.assert_array_equal(c, a + 1)


def test_grid_expression_errors_name_the_expression():
    spec, ir = vector_add_kernel()
    k = Kernel.from_spec(dict(spec, grid=[{"op": "ceil_div", "args": [{"sym": "m"}, 256]}, 1, 1]), ir, "")
    with pytest.raises(GridError, match=r"ceil_div\(m, 256\).*symbolic size 'm'"):
        k(*arrays(), 100, device="cpu")


def test_specialisations_pick_by_dtype():
    sp32, ir32 = vector_add_kernel("float32")
    sp16, ir16 = vector_add_kernel("int32")
    k = Kernel("vector_add", Kernel.from_spec(sp32, ir32, "").specs + Kernel.from_spec(sp16, ir16, "").specs)
    a, b, c = arrays(10, np.int32)
    k(a, b, c, 10, device="cpu")
    np.testing.assert_array_equal(c, a + 1)
    with pytest.raises(TypeError, match=r"no specialisation matches.*float64.*available: "
                                        r"vector_add\(a: float32"
                                        r".*vector_add\(a: int32"):
        k(*arrays(10, np.float64), 10, device="cpu")
    # with several specialisations the error still names the argument and what was expected
    a32, b32, c32 = arrays(10)
    with pytest.raises(TypeError, match=r"argument 'b' has dtype int32, expected float32; no specialisation"):
        k(a32, b, c32, 10, device="cpu")
    with pytest.raises(TypeError, match=r"takes 4 arguments .*, got 3; no specialisation"):
        k(a32, b32, c32, device="cpu")
    with pytest.raises(ValueError, match=r"argument 'a' has rank 2 .*expected rank 1"):  # dtypes pick int32
        k(np.zeros((2, 5), np.int32), b, c, 10, device="cpu")
    with pytest.raises(TypeError, match=r"argument 'n' expects an int \(int32\), got float.*available: "):
        k(a, b, c, 10.0, device="cpu")


def test_device_choice(va, monkeypatch):
    a, b, c = arrays()
    monkeypatch.setenv("ENIGMA_DEVICE", "cpu")
    va(a, b, c, 100)
    np.testing.assert_array_equal(c, a + 1)
    monkeypatch.setenv("ENIGMA_DEVICE", "tpu")
    with pytest.raises(LaunchError, match="ENIGMA_DEVICE='tpu'"):
        va(a, b, c, 100)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        va(a, b, c, 100, device="gpu")
    monkeypatch.delenv("ENIGMA_DEVICE")
    import sys

    from enigma_runtime.kernel import default_device
    if sys.platform != "darwin":
        assert default_device() == "cpu"


def test_no_written_argument_returns_none():
    def body(b):
        gid(b)
    k = Kernel.from_spec(*kernel("noop", [tensor("x", "float32", ["n"])], body, grid=[1, 1, 1]), "")
    assert k(np.zeros(3, np.float32), device="cpu") is None


def test_two_written_arguments_return_a_tuple():
    def body(b):
        i = b.v("thread_idx", t="int32", dim=0)
        b.op("store", i, b.c(1.0, "float32"), attrs={"tensor": "x"})
        b.op("store", i, b.c(2.0, "float32"), attrs={"tensor": "y"})
    args = [tensor("x", "float32", [4], "write"), tensor("y", "float32", [4], "write")]
    k = Kernel.from_spec(*kernel("two", args, body, block=(4, 1, 1), grid=[1, 1, 1]), "")
    x, y = np.zeros(4, np.float32), np.zeros(4, np.float32)
    rx, ry = k(x, y, device="cpu")
    assert rx is x and ry is y and (x == 1).all() and (y == 2).all()


def test_from_spec_validates():
    spec, ir = vector_add_kernel()
    from enigma_runtime import ManifestError
    with pytest.raises(ManifestError, match="IR version 2"):
        Kernel.from_spec(spec, dict(ir, version=2), "")
    with pytest.raises(ManifestError, match="'kind' must be"):
        Kernel.from_spec(dict(spec, args=[{"name": "a", "kind": "pointer", "dtype": "float32"}]), ir, "")


def test_numpy_scalars_pick_the_specialisation_of_their_dtype_first():
    def spec(dt):
        def body(b):
            b.op("store", b.c(0), b.v("param", t=dt, name="s"), attrs={"tensor": "out"})
        return kernel("pick", [scalar("s", dt), tensor("out", "float32", [1], "write")], body,
                      block=(1, 1, 1), grid=[1, 1, 1])
    sp32, sp16 = (Kernel.from_spec(*spec(dt), "") for dt in ("float32", "float16"))
    k = Kernel("pick", sp32.specs + sp16.specs)
    assert k.select((np.float16(2), np.zeros(1, np.float32)))[0] is sp16.specs[0]
    assert k.select((np.float32(2), np.zeros(1, np.float32)))[0] is sp32.specs[0]
    assert k.select((2.0, np.zeros(1, np.float32)))[0] is sp32.specs[0]  # Python numbers: the first
