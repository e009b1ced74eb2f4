"""The frontend: Python kernels traced to enigma.ir (see docs/frontend.md)."""
from enigma.frontend.jit import JitFunction, jit, launch_of
from enigma.frontend.kernel import KernelFunction, kernel
from enigma.frontend.launch import Launch
from enigma.frontend.types import Constexpr, Tensor, TensorSpec

__all__ = ["Constexpr", "JitFunction", "KernelFunction", "Launch", "Tensor", "TensorSpec", "jit", "kernel",
           "launch_of"]
