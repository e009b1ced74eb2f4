"""The one place that calls the compiler: every specialisation of a discovered kernel object."""
from __future__ import annotations

from typing import Any

from enigma_build.config import Settings


def compile_all(obj: Any, settings: Settings) -> list[Any]:
    """CompiledKernels (emit-only: the build links one .metallib per package itself) of `obj`, the
    default specialisation first."""
    import enigma

    variants = getattr(obj, "specializations", None)
    targets = list(variants()) if callable(variants) else [obj]
    return [enigma.compile(t, emit_only=True) for t in targets]
