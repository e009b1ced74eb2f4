"""Trace-time cost of the layouts of a 128x128 tiled matmul (16x16 tiles, 16x16 threads).

What one trace of the kernel does with layouts, on Python ints: build the global layouts of A, B, C,
divide them into tiles, slice out the block's tiles, build the threadgroup tiles' layouts and
evaluate the offset of every access of one k-step (2 global loads, 2 shared stores, 32 shared loads
of the unrolled inner loop, 1 global store). Target: <= 1 ms. Printed next to two baselines measured
in the same run: the same offsets by hand-written index arithmetic, and pycute (NVIDIA's pure-Python
CuTe) doing the same divisions and slices. Then the whole trace (enigma.compile's tracing) of a
layout-based 128x128 matmul kernel next to the zoo's hand-indexed one.

Run: .venv/bin/python bench/layout_speed.py
"""
from __future__ import annotations

import statistics
import time

import enigma
from enigma import Tensor, float32
from enigma.layout import local_tile, make_layout, make_tensor, zipped_divide

N, T = 128, 16


def with_layouts(by: int, bx: int, k: int, ty: int, tx: int) -> list[int]:
    mA = make_layout((N, N), stride=(N, 1))
    mB = make_layout((N, N), stride=(N, 1))
    mC = make_layout((N, N), stride=(N, 1))
    zA, zB, zC = zipped_divide(mA, (T, T)), zipped_divide(mB, (T, T)), zipped_divide(mC, (T, T))
    gA, oA = zA((None, None), (by, None)), zA((0, 0), (by, 0))  # the tile and its offset (16, 16, k)
    gB, oB = zB((None, None), (None, bx)), zB((0, 0), (0, bx))
    gC, oC = zC((None, None), (by, bx)), zC((0, 0), (by, bx))
    sA = make_layout((T, T), stride=(T, 1))
    sB = make_layout((T, T), stride=(T, 1))
    out = [oA + gA(ty, tx, k), oB + gB(ty, tx, k), sA(ty, tx), sB(ty, tx)]
    for kk in range(T):
        out += [sA(ty, kk), sB(kk, tx)]
    return [*out, oC + gC(ty, tx)]


def by_hand(by: int, bx: int, k: int, ty: int, tx: int) -> list[int]:
    out = [(by * T + ty) * N + k * T + tx, (k * T + ty) * N + bx * T + tx, ty * T + tx, ty * T + tx]
    for kk in range(T):
        out += [ty * T + kk, kk * T + tx]
    return [*out, (by * T + ty) * N + bx * T + tx]


def with_pycute(by: int, bx: int, k: int, ty: int, tx: int) -> list[int]:
    import pycute as P

    mA, mB, mC = P.Layout((N, N), (N, 1)), P.Layout((N, N), (N, 1)), P.Layout((N, N), (N, 1))
    zA, zB, zC = P.zipped_divide(mA, (T, T)), P.zipped_divide(mB, (T, T)), P.zipped_divide(mC, (T, T))
    gA, oA = zA((None, None), (by, None)), zA((0, 0), (by, 0))
    gB, oB = zB((None, None), (None, bx)), zB((0, 0), (0, bx))
    gC, oC = zC((None, None), (by, bx)), zC((0, 0), (by, bx))
    sA, sB = P.Layout((T, T), (T, 1)), P.Layout((T, T), (T, 1))
    out = [oA + gA(ty, tx, k), oB + gB(ty, tx, k), sA(ty, tx), sB(ty, tx)]
    for kk in range(T):
        out += [sA(ty, kk), sB(kk, tx)]
    return [*out, oC + gC(ty, tx)]


def timeit(fn, *args, reps: int = 300) -> float:
    fn(*args)
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


@enigma.kernel
def mm_layouts(a: Tensor[float32, (N, N)], b: Tensor[float32, (N, N)], c: Tensor[float32, (N, N)]):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    gA = local_tile(make_tensor(a), (T, T), (by, None))
    gB = local_tile(make_tensor(b), (T, T), (None, bx))
    gC = local_tile(make_tensor(c), (T, T), (by, bx))
    rowmajor = make_layout((T, T), stride=(T, 1))
    sA = make_tensor(enigma.shared_tensor(float32, (T, T), name="sA"), rowmajor)
    sB = make_tensor(enigma.shared_tensor(float32, (T, T), name="sB"), rowmajor)
    acc = 0.0
    for k in range(N // T):
        sA[ty, tx] = gA[ty, tx, k]
        sB[ty, tx] = gB[ty, tx, k]
        enigma.barrier()
        for kk in enigma.range_constexpr(T):
            acc = enigma.fma(sA[ty, kk], sB[kk, tx], acc)
        enigma.barrier()
    gC[ty, tx] = acc


@enigma.kernel
def mm_by_hand(a: Tensor[float32, (N, N)], b: Tensor[float32, (N, N)], c: Tensor[float32, (N, N)]):
    tx, ty, _ = enigma.thread_idx()
    bx, by, _ = enigma.block_idx()
    sA = enigma.shared_tensor(float32, (T, T), name="sA")
    sB = enigma.shared_tensor(float32, (T, T), name="sB")
    row, col = by * T + ty, bx * T + tx
    acc = 0.0
    for k in range(0, N, T):
        sA[ty, tx] = a[row, k + tx]
        sB[ty, tx] = b[k + ty, col]
        enigma.barrier()
        for kk in enigma.range_constexpr(T):
            acc = enigma.fma(sA[ty, kk], sB[kk, tx], acc)
        enigma.barrier()
    c[row, col] = acc


def main() -> None:
    args = (3, 5, 2, 7, 11)
    assert with_layouts(*args) == by_hand(*args) == with_pycute(*args), "the three disagree"
    t_layout = timeit(with_layouts, *args)
    t_hand = timeit(by_hand, *args)
    t_pycute = timeit(with_pycute, *args)
    print(f"layouts of a {N}x{N} tiled matmul, built and evaluated at trace time (one k-step):")
    print(f"  enigma.layout        {t_layout * 1e3:8.3f} ms   (target <= 1 ms: "
          f"{'met' if t_layout <= 1e-3 else 'MISSED'})")
    print(f"  hand-written indices {t_hand * 1e3:8.3f} ms   enigma.layout / hand = {t_layout / t_hand:6.1f}x")
    print(f"  pycute               {t_pycute * 1e3:8.3f} ms   enigma.layout / pycute = "
          f"{t_layout / t_pycute:6.2f}x")
    tr_layout = timeit(mm_layouts.trace, reps=30)
    tr_hand = timeit(mm_by_hand.trace, reps=30)
    print("whole kernel trace (tracer + layouts), same kernel written both ways:")
    print(f"  with layouts         {tr_layout * 1e3:8.3f} ms")
    print(f"  hand-indexed         {tr_hand * 1e3:8.3f} ms   layouts / hand = {tr_layout / tr_hand:6.2f}x")


if __name__ == "__main__":
    main()
