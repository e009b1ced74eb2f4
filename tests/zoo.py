"""The kernel zoo shared by every test suite: kernels ported from public sources, each with a @jit
launcher, an input maker, a numpy reference and the indices of its output arguments.

This module holds the issue's example (vector_add and its jit add: tests name its source lines) and the
zoo's index, built from every family on first use:
- ZOO, BY_NAME: a ZooEntry per kernel (kernel, jit, inputs, numpy reference, outputs, tolerances);
- JITS, JIT_BY_NAME: a JitCase per jit (its own arguments at three sizes and the expected results);
- every family's public names (its __all__) as attributes: zoo.saxpy, zoo.softmax_auto, zoo.SM_BLOCK.
The other kernels are in tests/zoo_kernels/, one module per family (FAMILIES), each with its kernels,
jits, input makers and references, and its cases as data: ENTRIES (ZooEntry's fields, plus `sized`, the
jit's arguments at size 0, 1 or 2) and JIT_CASES (JitCase's fields).

Every zoo module imports only enigma, numpy and the standard library, because enigma-build loads each
kernel module on its own (tests/build_plugin/test_venv.py ships the zoo's modules in a wheel): so this
one imports the families when the index or a family's name is first asked for (__getattr__ below).
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import enigma
from enigma import Tensor, float32, int32

FAMILIES = ("elementwise", "softmax", "reductions", "tiled", "fast_matmul", "quantized")  # tests/zoo_kernels/

# ---------------------------------------------------------------------------------------------------
# vector_add (the example)


@enigma.kernel
def vector_add(a: Tensor[float32], b: Tensor[float32], c: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        c[i] = a[i] + b[i]


@enigma.jit
def add(a: Tensor[float32, ("n",)], b: Tensor[float32, ("n",)], c: Tensor[float32, ("n",)]):  # noqa: F821, UP037
    n = a.shape[0]
    vector_add(a, b, c, n).launch(grid=(enigma.ceil_div(n, 256), 1, 1), block=(256, 1, 1))


# ---------------------------------------------------------------------------------------------------
# the index


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kernel: Any  # enigma.KernelFunction
    jit: Any  # enigma.JitFunction
    make_inputs: Callable[[np.random.Generator], tuple]  # the jit's (and the kernel's) tensor inputs
    reference: Callable[..., tuple]  # kernel args -> expected values of the output args
    outputs: tuple[int, ...]  # indices (in the kernel's argument list) of the outputs
    kernel_args: Callable[[tuple], tuple]  # jit inputs -> the kernel's full argument list
    rtol: float = 1e-5
    atol: float = 1e-6
    vec_width: int = 0


@dataclass(frozen=True)
class JitCase:
    name: str
    jit: Any  # enigma.JitFunction
    make_inputs: Callable[[np.random.Generator, int], tuple]  # size index 0, 1, 2 -> the jit's arguments
    expect: Callable[..., dict[Any, np.ndarray]]  # jit arguments -> {argument index or "return": value}
    rtol: float = 1e-5
    atol: float = 1e-6
    vec_width: int = 0


def _from_zoo(e: ZooEntry, make: Callable[[np.random.Generator, int], tuple]) -> JitCase:
    def expect(*ins: Any) -> dict[Any, np.ndarray]:
        args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in e.kernel_args(ins)]
        return dict(zip(e.outputs, e.reference(*args)))
    return JitCase(e.name, e.jit, make, expect, e.rtol, e.atol, e.vec_width)


SIZES = (1, 1000, 4099)


def _vadd_in(rng):
    n = 1000
    return (rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32), np.zeros(n, np.float32))


ENTRIES = [
    dict(name="vector_add", kernel=vector_add, jit=add, make_inputs=_vadd_in,
         reference=lambda a, b, c, n: (a + b,), outputs=(2,), kernel_args=lambda t: (*t, t[0].shape[0]),
         sized=lambda r, k: (r.standard_normal(SIZES[k], np.float32), r.standard_normal(SIZES[k], np.float32),
                             np.zeros(SIZES[k], np.float32))),
]


@functools.cache
def index() -> dict[str, Any]:
    """ZOO, BY_NAME, JITS, JIT_BY_NAME and the families' public names (imported once, on first use)."""
    names: dict[str, Any] = {}
    entries, jit_cases = list(ENTRIES), []
    for family in FAMILIES:
        module = importlib.import_module(f"zoo_kernels.{family}")
        for name in module.__all__:
            if name in names or name in globals():
                raise RuntimeError(f"zoo_kernels.{family} defines {name!r} a second time in the zoo")
            names[name] = getattr(module, name)
        entries += module.ENTRIES
        jit_cases += module.JIT_CASES
    zoo: list[ZooEntry] = []
    jits: list[JitCase] = []
    for fields in entries:
        fields = dict(fields)
        sized = fields.pop("sized", None)
        zoo.append(ZooEntry(**fields))
        if sized is not None:
            jits.append(_from_zoo(zoo[-1], sized))
    jits += [JitCase(**fields) for fields in jit_cases]
    return {**names, "ZOO": zoo, "BY_NAME": {e.name: e for e in zoo}, "JITS": jits,
            "JIT_BY_NAME": {c.name: c for c in jits}}


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # Python's own probes (__path__, ...): never the families
        raise AttributeError(name)
    try:
        return index()[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
