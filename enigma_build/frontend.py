"""The one place that calls the compiler: every specialisation of one discovered kernel object.

- @enigma.kernel: compiled from its annotations and decorator grid/block; each `specialize=` variant
  is compiled too (the annotations' own variant first: the default), under the Metal function name
  the compiler gives it (`enigma_kernel_<name>_<suffix>`), so one .metallib can hold them all.
- @enigma.jit: run on enigma.TensorSpecs built from its parameter annotations (a wheel build has no
  arrays); its kernels are listed under the jit's name with Metal functions `enigma_kernel_<jit>_jit`,
  `enigma_kernel_<jit>_jit1`, ... (`enigma.compile(..., name=<jit name>)`), so the kernels it
  launches can also be built on their own; its entry (FORMAT.md section 7) rides on the first one's
  signature to the manifest's "entries".

Every compile gets the project's `CompileOptions` (Settings.options) with the kernel's vec_width.
"""
from __future__ import annotations

import inspect
from typing import Any

from enigma_build.config import Settings


class NotBuildable(Exception):
    """The kernel object cannot be compiled without run-time data; says what to add."""


def _jit_specs(obj: Any) -> list[Any]:
    import enigma
    from enigma.frontend.types import TensorType

    fn = obj.fn
    try:
        ann = inspect.get_annotations(fn, eval_str=True)
    except Exception as e:  # noqa: BLE001 - any failure evaluating a string annotation
        raise NotBuildable(f"cannot evaluate the annotations of @jit function {obj.name!r}: {e}") from e
    specs: list[Any] = []
    for p in inspect.signature(fn).parameters.values():
        a = ann.get(p.name)
        if isinstance(a, TensorType) and a.dtype is not None:
            specs.append(enigma.TensorSpec(a.dtype, tuple(a.shape)))
        elif isinstance(a, enigma.DType):
            specs.append(a)
        else:
            raise NotBuildable(
                f"@jit function {obj.name!r}: parameter {p.name!r} needs an annotation the build can turn "
                f"into a TensorSpec, e.g. {p.name}: enigma.Tensor[float32, (\"n\",)] (a wheel build has no "
                f"arrays to run it on)")
    return specs


def _compile(fn: Any, *args: Any, settings: Settings, vec_width: int, name: str | None = None) -> Any:
    """enigma.compile for a wheel: emit-only here, the core links one .metallib per package."""
    import enigma

    return enigma.compile(fn, *args, emit_only=True, options=settings.options.replace(vec_width=vec_width),
                          name=name)


def compile_all(obj: Any, settings: Settings) -> list[Any]:
    """CompiledKernels of `obj`, default first. Emit-only: the build links one .metallib per package."""
    from enigma.frontend.jit import JitFunction
    from enigma.frontend.kernel import KernelFunction

    if isinstance(obj, JitFunction):
        from enigma.artifacts import ENTRY_KEY

        ck = _compile(obj, *_jit_specs(obj), settings=settings, vec_width=settings.vec_width_of(obj.name),
                      name=obj.name)
        parts = list(ck.parts or [ck])
        parts[0].signature = {**parts[0].signature, ENTRY_KEY: ck.entry}
        return parts
    if not isinstance(obj, KernelFunction):
        raise NotBuildable(f"{getattr(obj, '__name__', obj)!r} is not an @enigma.kernel or @enigma.jit "
                           f"function (got {type(obj).__name__})")
    width = getattr(obj, "vec_width", None) or settings.vec_width_of(obj.name)
    variants = obj.variants()
    if len(variants) > 1 and not _typed(obj):  # a dtype-generic kernel ships its specialisations only
        variants = variants[1:]
    return [_compile(variant, settings=settings, vec_width=width) for variant in variants]


def _typed(k: Any) -> bool:
    """Does every tensor parameter of kernel `k` have an element type (Tensor[float32], not Tensor)?"""
    return all(p.kind != "tensor" or p.tensor.dtype is not None for p in k.params)
