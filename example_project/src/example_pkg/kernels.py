"""example_pkg's GPU kernels and the jits launching them, compiled at wheel build time by enigma-build:
it imports only enigma (and could import numpy and the standard library), never the rest of the package."""
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


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda x, out, rows, cols, BLOCK: (rows, 1, 1))
def softmax(x: Tensor[float32, 2], out: Tensor[float32, 2], rows: int32, cols: int32,
            BLOCK: Constexpr[int] = BLOCK):
    """Row softmax: one threadgroup of BLOCK threads per row; simd reductions, then across simdgroups in
    threadgroup memory."""
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


@enigma.kernel(block=(BLOCK, 1, 1), grid=lambda x, partial, n: (enigma.ceil_div(n, BLOCK), 1, 1))
def block_sums(x: Tensor[float32], partial: Tensor[float32], n: int32):
    """partial[g] = the sum of threadgroup g's BLOCK elements of x (first pass of a two-pass sum)."""
    tid = enigma.thread_idx().x
    i = enigma.block_idx().x * BLOCK + tid
    v = 0.0
    if i < n:
        v = x[i]
    total = enigma.block_sum(v)  # simd sums, threadgroup memory and a barrier: every thread gets it
    if tid == 0:
        partial[enigma.block_idx().x] = total


@enigma.kernel(block=(BLOCK, 1, 1), grid=(1, 1, 1))
def sum_all(partial: Tensor[float32], out: Tensor[float32], groups: int32):
    """out[0] = the sum of partial (second pass: one threadgroup)."""
    tid = enigma.thread_idx().x
    v = 0.0
    for g in range(tid, groups, BLOCK):
        v = v + partial[g]
    total = enigma.block_sum(v)
    if tid == 0:
        out[0] = total


# ---------------------------------------------------------------------------------------------------
# jit entry points: each @enigma.jit is shipped as data (its sizes, temporaries, grids and run-time
# choices), and `enigma_runtime.load("example_pkg")["add"](a, b, c)` runs it from the manifest alone,
# so __init__.py only allocates outputs and validates inputs

@enigma.jit
def add(a: Tensor[float32, ("n",)], b: Tensor[float32, ("n",)], c: Tensor[float32, ("n",)]):  # noqa: F821
    n = a.shape[0]
    vector_add(a, b, c, n).launch(grid=(enigma.ceil_div(n, BLOCK), 1, 1), block=(BLOCK, 1, 1))


@enigma.jit
def add_f16(a: Tensor[float16, ("n",)], b: Tensor[float16, ("n",)], c: Tensor[float16, ("n",)]):  # noqa: F821
    n = a.shape[0]  # launches vector_add's float16 specialisation (the one that fits the arguments)
    vector_add(a, b, c, n).launch(grid=(enigma.ceil_div(n, BLOCK), 1, 1), block=(BLOCK, 1, 1))


@enigma.jit
def axpy(alpha: float32, x: Tensor[float32, ("n",)], y: Tensor[float32, ("n",)]):  # noqa: F821
    n = x.shape[0]
    saxpy(alpha, x, y, n).launch(grid=(enigma.ceil_div(n, BLOCK), 1, 1), block=(BLOCK, 1, 1))


@enigma.jit
def softmax_rows(x: Tensor[float32, ("rows", "cols")], out: Tensor[float32, ("rows", "cols")]):  # noqa: F821
    rows, cols = x.shape
    # the block size is chosen at run time from the row length (Triton's fused softmax picks
    # next_power_of_2(n_cols)): each choice is compiled and shipped, the runtime picks per call
    block = enigma.select(cols <= 64, 64, enigma.select(cols <= 256, 256, 1024))
    softmax(x, out, rows, cols, BLOCK=block).launch(grid=(rows, 1, 1), block=(block, 1, 1))


@enigma.jit
def matmul_tiled(a: Tensor[float32, ("m", "k")], b: Tensor[float32, ("k", "n")],  # noqa: F821
                 c: Tensor[float32, ("m", "n")]):  # noqa: F821
    m, k = a.shape
    n = b.shape[1]
    matmul(a, b, c, m, n, k).launch(grid=(enigma.ceil_div(n, 16), enigma.ceil_div(m, 16), 1),
                                    block=(16, 16, 1))


@enigma.jit
def count_values(data: Tensor[uint32, ("n",)], hist: Tensor[uint32, ("bins",)]):  # noqa: F821
    n = data.shape[0]
    histogram(data, hist, n, hist.shape[0]).launch(grid=(enigma.ceil_div(n, BLOCK), 1, 1),
                                                   block=(BLOCK, 1, 1))


@enigma.jit
def total(x: Tensor[float32, ("n",)]):  # noqa: F821
    """The sum of x in two passes: per-threadgroup partial sums into a temporary, then one threadgroup
    adds them up; returns a new 1-element array."""
    n = x.shape[0]
    groups = enigma.ceil_div(n, BLOCK)
    partial = enigma.empty((groups,), float32)
    out = enigma.empty((1,), float32)
    block_sums(x, partial, n).launch(grid=(groups, 1, 1), block=(BLOCK, 1, 1))
    sum_all(partial, out, groups).launch(grid=(1, 1, 1), block=(BLOCK, 1, 1))
    return out
