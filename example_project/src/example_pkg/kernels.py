"""example_pkg's GPU kernels. This module is compiled at wheel build time by enigma-build: it imports
only enigma (and could import numpy and the standard library), never the rest of the package."""
import enigma
from enigma import Constexpr, Tensor, float16, float32, int32, uint32

BLOCK = 256


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda a, b, c, n: (enigma.ceil_div(n, BLOCK), 1, 1),
               specialize=[{"a": float16, "b": float16, "c": float16}])
def vector_add(a: Tensor[float32], b: Tensor[float32], c: Tensor[float32], n: int32):
    """c = a + b (float32, and a float16 specialisation)."""
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        c[i] = a[i] + b[i]


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda alpha, x, y, n: (enigma.ceil_div(n, BLOCK), 1, 1))
def saxpy(alpha: float32, x: Tensor[float32], y: Tensor[float32], n: int32):
    """y = alpha * x + y; built with vec_width 4 ([tool.enigma.vec-width] in pyproject.toml)."""
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        y[i] = alpha * x[i] + y[i]


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda x, out, rows, cols: (rows, 1, 1))
def softmax(x: Tensor[float32, 2], out: Tensor[float32, 2], rows: int32, cols: int32):
    """Row softmax: one threadgroup per row; simd reductions, then across simdgroups in threadgroup memory."""
    row = enigma.block_idx().x
    tid = enigma.thread_idx().x
    lane = enigma.simd_lane_id()
    warp = enigma.simd_group_id()
    partial = enigma.shared_tensor(float32, (BLOCK // 32,))
    m = -3.0e38
    for j in range(tid, cols, BLOCK):
        m = enigma.maximum(m, x[row, j])
    m = enigma.simd_max(m)
    if lane == 0:
        partial[warp] = m
    enigma.barrier()
    m = partial[0]
    for w in enigma.range_constexpr(1, BLOCK // 32):
        m = enigma.maximum(m, partial[w])
    enigma.barrier()
    s = 0.0
    for j in range(tid, cols, BLOCK):
        s = s + enigma.exp(x[row, j] - m)
    s = enigma.simd_sum(s)
    if lane == 0:
        partial[warp] = s
    enigma.barrier()
    s = partial[0]
    for w in enigma.range_constexpr(1, BLOCK // 32):
        s = s + partial[w]
    for j in range(tid, cols, BLOCK):
        out[row, j] = enigma.exp(x[row, j] - m) / s


@enigma.kernel(block=(16, 16, 1),
               grid=lambda a, b, c, m, n, k, TILE: (enigma.ceil_div(n, 16), enigma.ceil_div(m, 16), 1))
def matmul(a: Tensor[float32, 2], b: Tensor[float32, 2], c: Tensor[float32, 2], m: int32, n: int32, k: int32,
           TILE: Constexpr[int] = 16):
    """c[m, n] = a[m, k] @ b[k, n] with TILE x TILE threadgroup tiles (one thread per output)."""
    ta = enigma.shared_tensor(float32, (TILE, TILE + 1))
    tb = enigma.shared_tensor(float32, (TILE, TILE + 1))
    tx = enigma.thread_idx().x
    ty = enigma.thread_idx().y
    col = enigma.block_idx().x * TILE + tx
    row = enigma.block_idx().y * TILE + ty
    acc = 0.0
    for t in range(0, k, TILE):
        ta[ty, tx] = enigma.where((row < m) & (t + tx < k), a[enigma.minimum(row, m - 1),
                                                               enigma.minimum(t + tx, k - 1)], 0.0)
        tb[ty, tx] = enigma.where((t + ty < k) & (col < n), b[enigma.minimum(t + ty, k - 1),
                                                               enigma.minimum(col, n - 1)], 0.0)
        enigma.barrier()
        for i in enigma.range_constexpr(TILE):
            acc = acc + ta[ty, i] * tb[i, tx]
        enigma.barrier()
    if (row < m) & (col < n):
        c[row, col] = acc


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda data, hist, n, bins: (enigma.ceil_div(n, BLOCK), 1, 1))
def histogram(data: Tensor[uint32], hist: Tensor[uint32], n: int32, bins: uint32):
    """hist[v % bins] += 1 for every value v of data (device atomics)."""
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        enigma.atomic_add(hist, data[i] % bins, 1)
