"""enigma.verify: compile Metal source with a real clang and run it on the CPU (see docs/verify.md).

    from enigma.verify import run_msl
    run_msl(compiled_kernel, a, b, c, n)                       # grid/block from the kernel
    run_msl(metal_source, a, out, name="k", grid=(4,), block=(256,), schedule="reverse")
"""
from __future__ import annotations

from typing import Any

from enigma.verify.clang import ClangNotFound, CompileError, find_clang
from enigma.verify.harness import KernelError, MslProgram, compile_msl, run_msl, run_spec
from enigma.verify.msl import MslError

__all__ = ["ClangNotFound", "CompileError", "KernelError", "MslError", "MslProgram", "compile_msl",
           "find_clang", "run_msl", "run_spec", "check_kernels", "check_package"]


def __getattr__(name: str) -> Any:  # check.py imports the runtime; load it on first use
    if name in ("check_kernels", "check_package", "CheckRow"):
        from enigma.verify import check

        return getattr(check, name)
    raise AttributeError(name)
