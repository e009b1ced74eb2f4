"""Simd-group semantics the CPU executor and enigma.verify share (docs/verify.md, FORMAT.md): a
shuffle from a lane past the end or an inactive lane gives the lane's own value; simd_sum adds the
active lanes in lane order in the value's type (float16: every addition rounded to half)."""
from __future__ import annotations

import numpy as np
import pytest
from toolcheck import need_tool

import enigma
from enigma import Tensor, bfloat16, float16, float32
from enigma.verify import run_msl

pytestmark = pytest.mark.needs_clang


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


@enigma.kernel
def simd_ops(x: Tensor[float16], s: Tensor[float16], y: Tensor[float32], down: Tensor[float32],
             odd: Tensor[float32], b: Tensor[bfloat16], bs: Tensor[bfloat16]):
    t = enigma.thread_idx().x
    s[t] = enigma.simd_sum(x[t])
    down[t] = enigma.simd_shuffle_down(y[t], 4)
    bs[t] = enigma.simd_sum(b[t])
    if t % 2 == 0:
        odd[t] = enigma.simd_shuffle_down(y[t], 1)  # the source lanes are inactive


@enigma.jit
def launch(x, s, y, down, odd, b, bs):
    simd_ops(x, s, y, down, odd, b, bs).launch(grid=(1, 1, 1), block=(40, 1, 1))


def _inputs():
    x = np.ones(40, np.float16)
    x[0] = x[32] = 2048  # half: 2048 + 1 rounds back to 2048 every time; float32 would give 2079
    y = np.arange(40, dtype=np.float32) + 100
    b = np.full(40, 1.0, np.float32)
    b[0] = 256.0  # bfloat16 has 8 bits: 256 + 31 in float32, rounded once -> 288
    from enigma_runtime.cpu_space import bf16_to_bits

    return [x, np.zeros(40, np.float16), y, np.zeros(40, np.float32), np.zeros(40, np.float32),
            bf16_to_bits(b), np.zeros(40, np.uint16)]


def _expected():
    s = np.full(40, 2048, np.float16)
    down = np.arange(40, dtype=np.float32) + 104
    down[28:32] = np.arange(28, 32) + 100  # past lane 31: own value
    down[36:40] = np.arange(36, 40) + 100  # past the threadgroup's last thread (lane 8 of 8): own value
    odd = np.zeros(40, np.float32)
    odd[::2] = np.arange(0, 40, 2) + 100  # lane t+1 is inactive: own value
    return s, down, odd


@pytest.mark.parametrize("device", ["cpu", "msl"])
def test_simd_sum_half_and_shuffle_down_past_the_end(device):
    args = _inputs()
    ck = enigma.compile(launch, *args)
    if device == "cpu":
        import enigma_runtime

        enigma_runtime.Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)(*args, device="cpu")
    else:
        run_msl(ck, *args)
    s, down, odd = _expected()
    np.testing.assert_array_equal(args[1], s)
    np.testing.assert_array_equal(args[3], down)
    np.testing.assert_array_equal(args[4], odd)
    from enigma_runtime.cpu_space import bf16_to_bits

    want_b = np.concatenate([np.full(32, 288.0, np.float32), np.full(8, 8.0, np.float32)])
    np.testing.assert_array_equal(args[6], bf16_to_bits(want_b))


@enigma.kernel
def simd_nan(x: Tensor[float32], mx: Tensor[float32], mn: Tensor[float32]):
    t = enigma.thread_idx().x
    mx[t] = enigma.simd_max(x[t])
    mn[t] = enigma.simd_min(x[t])


@enigma.jit
def launch_nan(x, mx, mn):
    simd_nan(x, mx, mn).launch(grid=(1, 1, 1), block=(64, 1, 1))


@pytest.mark.parametrize("device", ["cpu", "msl"])
def test_simd_max_min_ignore_a_nan_lane(device):
    x = np.arange(64, dtype=np.float32) - 10
    x[3] = np.nan
    x[32:] = np.nan  # a simdgroup of NaN only: NaN
    args = [x, np.zeros(64, np.float32), np.zeros(64, np.float32)]
    ck = enigma.compile(launch_nan, *args)
    if device == "cpu":
        import enigma_runtime

        enigma_runtime.Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)(*args, device="cpu")
    else:
        run_msl(ck, *args)
    np.testing.assert_array_equal(args[1][:32], 21.0)
    np.testing.assert_array_equal(args[2][:32], -10.0)
    assert np.isnan(args[1][32:]).all() and np.isnan(args[2][32:]).all()


@enigma.kernel
def simd_zeros(x: Tensor[float32], mx: Tensor[float32], mn: Tensor[float32],
               hx: Tensor[enigma.float16], hmn: Tensor[enigma.float16]):
    t = enigma.thread_idx().x
    mx[t] = enigma.simd_max(x[t])
    mn[t] = enigma.simd_min(x[t])
    hmn[t] = enigma.simd_min(hx[t])


@enigma.jit
def launch_zeros(x, mx, mn, hx, hmn):
    simd_zeros(x, mx, mn, hx, hmn).launch(grid=(1, 1, 1), block=(96, 1, 1))


@pytest.mark.parametrize("device", ["cpu", "msl"])
def test_simd_max_min_of_signed_zeros_follow_the_min_max_rule(device):
    """simd_min/simd_max pick their zero as min/max do (-0 < +0), whatever the hardware's reduction
    gives (fuzzer seeds 101426, 101824): the emitted Metal fixes a zero result up with simd_any."""
    x = np.zeros(96, np.float32)
    x[0:32:2] = -0.0          # simdgroup 0: +0 and -0 -> min -0, max +0
    x[32:64] = -0.0           # simdgroup 1: -0 only -> min -0, max -0
    x[64:96] = 1.0            # simdgroup 2: +0 and 1 -> min +0
    x[70] = 0.0
    hx = x.astype(np.float16)
    args = [x, np.ones(96, np.float32), np.ones(96, np.float32), hx, np.ones(96, np.float16)]
    ck = enigma.compile(launch_zeros, *args)
    assert "enigma_simd_min" in ck.metal_source and "simd_any" in ck.metal_source
    if device == "cpu":
        import enigma_runtime

        enigma_runtime.Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)(*args, device="cpu")
    else:
        run_msl(ck, *args)
    mx, mn, hmn = args[1], args[2], args[4]
    assert (mn[:64] == 0).all() and np.signbit(mn[:64]).all()
    assert (mx[:32] == 0).all() and not np.signbit(mx[:32]).any()
    assert (mx[32:64] == 0).all() and np.signbit(mx[32:64]).all()
    assert (mn[64:] == 0).all() and not np.signbit(mn[64:]).any() and (mx[64:] == 1).all()
    assert np.signbit(hmn[:64]).all() and not np.signbit(hmn[64:]).any()
