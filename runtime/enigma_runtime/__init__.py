"""enigma-runtime: load prebuilt Enigma kernels by name and run them (Metal on macOS, CPU elsewhere).

    lib = enigma_runtime.load("example_pkg")              # every kernel of a package
    k = enigma_runtime.load("example_pkg", "vector_add")  # one kernel
    k(a, b, c, n)                                         # grid/block from the manifest

Submodules are imported on first use, so `import enigma_runtime` stays cheap (PyObjC is imported only
by the first Metal launch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    EnigmaRuntimeError,
    GridError,
    IRError,
    KernelExecutionError,
    KernelNotFoundError,
    LaunchError,
    LaunchLimitError,
    ManifestError,
    MetalError,
    OutOfBoundsError,
    PackageNotFoundError,
    UnknownDeviceError,
)

__version__ = "0.1.0"
__all__ = ["load", "Kernel", "Library", "default_device", "EnigmaRuntimeError", "ManifestError",
           "PackageNotFoundError", "KernelNotFoundError", "GridError", "LaunchError", "KernelExecutionError",
           "OutOfBoundsError", "MetalError", "IRError", "UnknownDeviceError",
           "LaunchLimitError"]

if TYPE_CHECKING:
    from .kernel import Kernel, Library, default_device, load


def __getattr__(name: str) -> Any:
    if name in ("load", "Kernel", "Library", "default_device"):
        from . import kernel
        return getattr(kernel, name)
    raise AttributeError(f"module 'enigma_runtime' has no attribute {name!r}")
