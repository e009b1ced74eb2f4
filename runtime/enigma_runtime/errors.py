"""The errors enigma-runtime raises. Every one names the file, kernel or argument it is about.

Argument problems raise the builtin TypeError / ValueError (what Python callers expect); everything
about artifacts, lookup and execution is an `EnigmaRuntimeError`.
"""
from __future__ import annotations


class EnigmaRuntimeError(Exception):
    """Base class of the errors enigma-runtime raises (besides TypeError/ValueError for arguments)."""


class ManifestError(EnigmaRuntimeError):
    """manifest.json or an artifact it lists is missing, corrupt, tampered with or unsafe."""


class PackageNotFoundError(EnigmaRuntimeError, LookupError):
    """No importable package of that name, or it ships no `_enigma/` directory."""


class KernelNotFoundError(EnigmaRuntimeError, LookupError):
    """No kernel of that name in the package (the message lists the closest names first)."""


class GridError(EnigmaRuntimeError, ValueError):
    """A grid expression is malformed or cannot be evaluated from the call's arguments."""


class LaunchError(EnigmaRuntimeError):
    """A launch failed: no grid/block, a bad device, or the kernel failed while running."""


class LaunchLimitError(LaunchError, ValueError):
    """A grid or block beyond Metal's limits (threads per threadgroup, threads per grid dimension)."""


class UnknownDeviceError(LaunchError, ValueError):
    """No device of that name (devices.names() lists the known ones)."""


class KernelExecutionError(LaunchError):
    """The CPU executor found a bug in the kernel (out-of-bounds access, divergent barrier, ...)."""


class OutOfBoundsError(KernelExecutionError, IndexError):
    """A load or store outside its tensor; names the kernel, the tensor, the index and the line."""


class MetalError(LaunchError):
    """Metal is unavailable, or refused the library, the pipeline or the command buffer."""


class IRError(EnigmaRuntimeError):
    """A portable IR document is malformed (unknown op, use before definition, bad type)."""
