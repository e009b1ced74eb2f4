"""The frontend: Python kernels traced to enigma.ir (see docs/frontend.md)."""
from enigma.frontend.kernel import JitFunction, KernelFunction, Launch, jit, kernel, launch_of
from enigma.frontend.types import Constexpr, Tensor, TensorSpec

__all__ = ["Constexpr", "JitFunction", "KernelFunction", "Launch", "Tensor", "TensorSpec", "jit", "kernel",
           "launch_of"]
