"""The CPU executor's batched simdgroup-matrix path (runtime/enigma_runtime/cpu_simdgroup.py) against
straightforward references, bit for bit, on a 64x48x40 matmul whose block counts (8 x 6 x 5) are not
powers of two, through device and threadgroup memory, with every way the executor reaches the blocks
(cpu_simdgroup.Block): rows at multiples of 8 elements taken as whole items (`aligned`), rows of
positions affine in the threadgroup and simdgroup indices copied through one strided view (`rows`;
a and As have rows of 41 elements, so their blocks are not aligned), rows of positions no affine form
describes gathered (`items`); transposed blocks are read as rows and transposed (bt, ct). The stores
scatter aligned rows (c, ct) and unaligned ones (c2, rows of 49 elements); blocks of part of the
simdgroups (masked_blocks) are gathered and scattered element by element.

The defined semantics (FORMAT.md, docs/abi.md): simd_mma is `a @ b + c` computed in float32 and
rounded to c's type; the CPU executor sums each product row with numpy's matmul, enigma.verify's
header sums the float32 products in k order, then adds c. With float16 inputs every product is exact
in float32, so both equal the plain k-order sum below. With float32 inputs the CPU executor is held to
numpy's matmul of each 8x8 block and enigma.verify to the k-order sum of rounded products."""
from __future__ import annotations

import numpy as np
import pytest
from enigma_runtime import OutOfBoundsError
from toolcheck import need_tool

import enigma
from enigma import Tensor, bfloat16, float16, float32, int32
from enigma.verify import run_msl

M, N, K = 64, 48, 40  # 8 x 6 x 5 blocks of 8
KP, NP = K + 1, N + 1  # rows of a, As and c2: one element longer, so their blocks are not aligned


@enigma.func
def _global_body(a, b, bt, c, ct):
    """Each simdgroup makes one 8x8 block of c = a[:, :K] @ b straight from device memory, twice: b
    read as is and from its transpose bt; the second result is stored transposed."""
    bi = enigma.block_idx().y * 2 + enigma.simd_group_id()  # 2 simdgroups per threadgroup
    bj = enigma.block_idx().x
    acc = enigma.simd_matrix(float32)
    acc_t = enigma.simd_matrix(float32)
    for kb in range(b.shape[0] // 8):
        x = enigma.simd_load(a, bi * 8, kb * 8)
        acc = enigma.simd_mma(x, enigma.simd_load(b, kb * 8, bj * 8), acc)
        acc_t = enigma.simd_mma(x, enigma.simd_load(bt, bj * 8, kb * 8, transpose=True), acc_t)
    enigma.simd_store(acc, c, bi * 8, bj * 8)
    enigma.simd_store(acc_t, ct, bj * 8, bi * 8, transpose=True)


@enigma.kernel(block=(64, 1, 1), grid=(N // 8, M // 16, 1))
def mm_global_f16(a: Tensor[float16, (M, KP)], b: Tensor[float16, (K, N)], bt: Tensor[float16, (N, K)],
                  c: Tensor[float32, (M, N)], ct: Tensor[float32, (N, M)]):
    _global_body(a, b, bt, c, ct)


@enigma.kernel(block=(64, 1, 1), grid=(N // 8, M // 16, 1))
def mm_global_f32(a: Tensor[float32, (M, KP)], b: Tensor[float32, (K, N)], bt: Tensor[float32, (N, K)],
                  c: Tensor[float32, (M, N)], ct: Tensor[float32, (N, M)]):
    _global_body(a, b, bt, c, ct)


@enigma.kernel(block=(64, 1, 1), grid=(N // 8, M // 16, 1))
def mm_global_bf16(a: Tensor[bfloat16, (M, KP)], b: Tensor[bfloat16, (K, N)], bt: Tensor[bfloat16, (N, K)],
                   c: Tensor[float32, (M, N)], ct: Tensor[float32, (N, M)]):
    _global_body(a, b, bt, c, ct)


@enigma.func
def _shared_body(a, b, c, c2):
    """Four simdgroups share a 32-row strip of a[:, :K] copied to threadgroup memory (rows of 41
    elements); simdgroup s takes row block s of it (threadgroup g's array at g * 1312 of the storage)
    for c, and row block (3 s) % 4 for c2: positions with no affine form."""
    As = enigma.shared_tensor(a.dtype, (32, KP), name="As")
    t = enigma.thread_idx().x
    row0 = enigma.block_idx().y * 32
    for i in enigma.range_constexpr(0, 32 * K, 128):
        As[(t + i) // K, (t + i) % K] = a[row0 + (t + i) // K, (t + i) % K]
    enigma.barrier()
    s = enigma.simd_group_id()
    r = (s * 3) % 4
    bj = enigma.block_idx().x
    acc = enigma.simd_matrix(float32)
    acc2 = enigma.simd_matrix(float32)
    for kb in range(b.shape[0] // 8):
        y = enigma.simd_load(b, kb * 8, bj * 8)
        acc = enigma.simd_mma(enigma.simd_load(As, s * 8, kb * 8), y, acc)
        acc2 = enigma.simd_mma(enigma.simd_load(As, r * 8, kb * 8), y, acc2)
    enigma.simd_store(acc, c, row0 + s * 8, bj * 8)
    enigma.simd_store(acc2, c2, row0 + r * 8, bj * 8)


@enigma.kernel(block=(128, 1, 1), grid=(N // 8, M // 32, 1))
def mm_shared_f16(a: Tensor[float16, (M, KP)], b: Tensor[float16, (K, N)], c: Tensor[float32, (M, N)],
                  c2: Tensor[float32, (M, NP)]):
    _shared_body(a, b, c, c2)


@enigma.kernel(block=(128, 1, 1), grid=(N // 8, M // 32, 1))
def mm_shared_f32(a: Tensor[float32, (M, KP)], b: Tensor[float32, (K, N)], c: Tensor[float32, (M, N)],
                  c2: Tensor[float32, (M, NP)]):
    _shared_body(a, b, c, c2)


def k_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The header's simdgroup_multiply_accumulate chained over the 8-deep blocks of k: per block, the
    float32 products summed in k order from 0, then + the accumulator."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for kb in range(0, a.shape[1], 8):
        s = np.zeros_like(acc)
        for k in range(kb, kb + 8):
            s = s + a32[:, k, None] * b32[None, k, :]
        acc = s + acc
    return acc


def blockwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The CPU executor's definition, block by block: numpy's matmul of each 8x8 pair, + the
    accumulator."""
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for i in range(0, a.shape[0], 8):
        for j in range(0, b.shape[1], 8):
            acc = np.zeros((8, 8), np.float32)
            for kb in range(0, a.shape[1], 8):
                acc = np.matmul(a[i:i + 8, kb:kb + 8].astype(np.float32),
                                b[kb:kb + 8, j:j + 8].astype(np.float32)) + acc
            out[i:i + 8, j:j + 8] = acc
    return out


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype == np.float32
    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert diff.size == 0, f"{diff.size} elements differ, first at {np.unravel_index(diff[0], got.shape)}: " \
                           f"{got.reshape(-1)[diff[0]]!r} != {want.reshape(-1)[diff[0]]!r}"


def _inputs(dt: type, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """a (M, KP) whose last column no block reads, and b (K, N)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, KP)).astype(dt), rng.standard_normal((K, N)).astype(dt)


def _run_global(kernel, a, b, device):
    ck = enigma.compile(kernel)
    c, ct = np.full((M, N), np.nan, np.float32), np.full((N, M), np.nan, np.float32)
    args = (a, b, np.ascontiguousarray(b.T), c, ct)
    ck(*args, device="cpu") if device == "cpu" else run_msl(ck, *args)
    return c, ct


def _run_shared(kernel, a, b, device):
    """c, and c2 without its last column (which must stay NaN: no block covers it)."""
    ck = enigma.compile(kernel)
    c, c2 = np.full((M, N), np.nan, np.float32), np.full((M, NP), np.nan, np.float32)
    ck(a, b, c, c2, device="cpu") if device == "cpu" else run_msl(ck, a, b, c, c2)
    assert np.isnan(c2[:, N]).all()
    return c, np.ascontiguousarray(c2[:, :N])


@pytest.mark.parametrize("device", ["cpu", "verify"])
def test_float16_blocks_are_the_k_order_sum_bit_for_bit(device):
    if device == "verify":
        need_tool("clang++-19", "clang++")
    a, b = _inputs(np.float16, 11)
    want = k_order(a[:, :K], b)
    c, ct = _run_global(mm_global_f16, a, b, device)
    same_bits(c, want)
    same_bits(ct, np.ascontiguousarray(want.T))
    for c in _run_shared(mm_shared_f16, a, b, device):
        same_bits(c, want)


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (truncated: any bfloat16 values will do)."""
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("device", ["cpu", "verify"])
def test_bfloat16_blocks_are_the_k_order_sum_bit_for_bit(device):
    """bfloat16 tensors hold bit patterns (uint16): the blocks move as such and are read as values."""
    if device == "verify":
        need_tool("clang++-19", "clang++")
    a, b = (_bf16(x) for x in _inputs(np.float32, 16))
    want = k_order(_bf16_values(a[:, :K]), _bf16_values(b))
    c, ct = _run_global(mm_global_bf16, a, b, device)
    same_bits(c, want)
    same_bits(ct, np.ascontiguousarray(want.T))


def test_float32_blocks_on_the_cpu_are_numpys_blockwise_matmul_bit_for_bit():
    a, b = _inputs(np.float32, 12)
    want = blockwise_matmul(a[:, :K], b)
    c, ct = _run_global(mm_global_f32, a, b, "cpu")
    same_bits(c, want)
    same_bits(ct, np.ascontiguousarray(want.T))
    for c in _run_shared(mm_shared_f32, a, b, "cpu"):
        same_bits(c, want)
    # the two orders agree to rounding
    np.testing.assert_allclose(want, k_order(a[:, :K], b), rtol=1e-4, atol=1e-4)


def test_float32_blocks_through_verify_are_the_k_order_sum_bit_for_bit():
    need_tool("clang++-19", "clang++")
    a, b = _inputs(np.float32, 12)
    want = k_order(a[:, :K], b)
    c, ct = _run_global(mm_global_f32, a, b, "verify")
    same_bits(c, want)
    same_bits(ct, np.ascontiguousarray(want.T))
    for c in _run_shared(mm_shared_f32, a, b, "verify"):
        same_bits(c, want)


def test_each_way_of_reaching_the_blocks_is_taken():
    """Count the ways the loads of one launch reach their blocks (so the tests above check them all;
    masked_blocks below takes the element path)."""
    from enigma_runtime import cpu_simdgroup

    used: dict[str, int] = {}
    real = cpu_simdgroup.gather_blocks

    def counting(m, blk):
        way = "aligned" if blk.aligned is not None else "rows" if blk.rows is not None else \
            "items" if blk.item is not None else "elements"
        way += " transposed" if blk.transposed else ""
        used[way] = used.get(way, 0) + 1
        return real(m, blk)

    cpu_simdgroup.gather_blocks = counting
    try:
        a, b = _inputs(np.float16, 13)
        _run_global(mm_global_f16, a, b, "cpu")
        assert used == {"aligned": 5, "rows": 5, "aligned transposed": 5}, used  # b, a, bt per k block
        used.clear()
        _run_shared(mm_shared_f16, a, b, "cpu")
        assert used == {"aligned": 5, "rows": 5, "items": 5}, used  # b, As, the permuted As blocks
        used.clear()
        _run_masked(np.arange(16 * 16, dtype=np.float32).reshape(16, 16))
        assert used == {"elements": 2}, used
    finally:
        cpu_simdgroup.gather_blocks = real


@enigma.kernel(block=(64, 1, 1), grid=(1, 1, 1))
def masked_blocks(a: Tensor[float32, (16, 16)], out: Tensor[float32, (16, 16)]):
    """Only simdgroup 1 loads and stores (a condition uniform per simdgroup: masked, not divergent)."""
    s = enigma.simd_group_id()
    if s == 1:
        m = enigma.simd_load(a, 8, 0)
        enigma.simd_store(m, out, 0, 8)
        enigma.simd_store(enigma.simd_load(a, 0, 8, transpose=True), out, 8, 8)


def _run_masked(a):
    out = np.full((16, 16), np.nan, np.float32)
    enigma.compile(masked_blocks)(a, out, device="cpu")
    return out


def test_blocks_of_part_of_the_simdgroups():
    a = np.random.default_rng(15).standard_normal((16, 16)).astype(np.float32)
    out = _run_masked(a)
    want = np.full((16, 16), np.nan, np.float32)
    want[0:8, 8:16] = a[8:16, 0:8]
    want[8:16, 8:16] = a[0:8, 8:16].T
    same_bits(out, want)


@enigma.kernel(block=(64, 1, 1), grid=(2, 1, 1))
def copy_blocks(a: Tensor[float32, ("m", 16)], out: Tensor[float32, (16, 16)], row: int32):  # noqa: F821
    """Threadgroup g's simdgroup s copies the block of a at (row + 8 s, 8 g) to out (8 s, 8 g)."""
    s, g = enigma.simd_group_id(), enigma.block_idx().x
    enigma.simd_store(enigma.simd_load(a, row + s * 8, g * 8), out, s * 8, g * 8)


def test_blocks_kept_across_launches_follow_the_positions_and_sizes():
    """The plan keeps the blocks of a launch for the next ones (CACHED): a launch at other positions or
    with a smaller tensor gets its own blocks and bounds check, never the kept ones."""
    ck = enigma.compile(copy_blocks)
    rng = np.random.default_rng(14)
    a = rng.standard_normal((40, 16)).astype(np.float32)
    for row in (0, 8, 24, 0):
        out = np.zeros((16, 16), np.float32)
        ck(a, out, row, device="cpu")
        same_bits(out, a[row:row + 16])
    small = np.ascontiguousarray(a[:20])  # rows 8 .. 23 of 20: out of bounds
    with pytest.raises(OutOfBoundsError, match=r"simd_load of tensor 'a' \(320 elements\)"):
        ck(small, np.zeros((16, 16), np.float32), 8, device="cpu")
    out = np.zeros((16, 16), np.float32)
    ck(small, out, 4, device="cpu")
    same_bits(out, small[4:20])


@enigma.kernel(block=(32, 1, 1), grid=(1, 1, 1))
def f16_round_trip(a: Tensor[float16, (8, 8)], out: Tensor[float16, (8, 8)], wide: Tensor[float32, (8, 8)]):
    m = enigma.simd_load(a, 0, 0)
    enigma.simd_store(m, out, 0, 0)
    enigma.simd_store(enigma.simd_mma(m, enigma.simd_load(a, 0, 0), enigma.simd_matrix(float32)), wide, 0, 0)


def test_float16_blocks_keep_every_value():
    """A float16 block is widened to float32 when loaded (a table of numpy's conversions): zeros of both
    signs, subnormals, the largest values, infinities and NaN come back as they went in."""
    bits = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                     0x7E00, 0x3C00, 0xBC00, 0x3555, 0x1234, 0xC123], np.uint16)
    a = np.resize(bits, 64).reshape(8, 8).view(np.float16)
    out, wide = np.zeros((8, 8), np.float16), np.zeros((8, 8), np.float32)
    enigma.compile(f16_round_trip)(a, out, wide, device="cpu")
    np.testing.assert_array_equal(out.view(np.uint16), a.view(np.uint16))
    a32 = a.astype(np.float32)
    with np.errstate(all="ignore"):  # inf - inf
        want = np.matmul(a32, a32) + np.float32(0)
    np.testing.assert_array_equal(wide, want)  # NaN where numpy's has NaN
