"""A kernel module for tests/toolchain/test_options.py (kernels must live in a file: the tracer reads
their source)."""
import enigma
from enigma import Tensor, bfloat16, int32


@enigma.kernel
def bf_scale(a: Tensor[bfloat16], b: Tensor[bfloat16], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        b[i] = a[i] * 2.0
