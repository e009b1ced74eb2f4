"""Shared helpers of the MLX corpus tests (issue 13; tests/verify/test_verify_mlx_*.py, one file per
family of MLX's kernels): MLX's own Metal kernel templates from the pinned mlx-metal macOS wheel
(thirdparty.mlx_include), compiled exactly as written. The wheel has no .metal files (MLX keeps its
instantiations there), so each case writes one instantiation the way MLX's .metal files do
(`instantiate_kernel(host_name, template, args...)` from MLX's defines.h), runs it by host_name on
known inputs, launched as MLX's host code launches it, and compares with numpy.

Here: the `mlx` fixture (the wheel's include directory), the source builders (`source`: one
instantiation after the family's headers; `group_source`: every member of a group), the groups
compiled together (GROUPS: one clang run for a family's cases, `compile_kernel` uses it), dtype
helpers (bfloat16 bits, T's numpy form and value), and KNOWN_FAILURES: the cases that cannot run as
written, each checked by its test to fail with its report (docs/verify.md), and kept to <= 10% of
every family's cases together (`mlx_cases`)."""
from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import thirdparty
from toolcheck import need_tool

N = 61  # not a multiple of the work per thread: the kernels' tail loops run too
F32, F16, I32 = np.float32, np.float16, np.int32
# family -> MLX's headers, included as its .metal files include them
HEADERS = {
    "unary": ("utils.h", "unary_ops.h", "unary.h"),
    "binary": ("utils.h", "binary_ops.h", "binary.h"),
    "copy": ("utils.h", "copy.h"),
    "ternary": ("utils.h", "ternary_ops.h", "ternary.h"),
    "arange": ("utils.h", "arange.h"),
    "binary_two": ("utils.h", "binary_ops.h", "binary_two.h"),
    "reduce": ("utils.h", "reduce_utils.h", "reduce.h"),
    "softmax": ("utils.h", "softmax.h"),
    "logsumexp": ("utils.h", "logsumexp.h"),
    "scan": ("utils.h", "scan.h"),
    "sort": ("utils.h", "sort.h"),
    "gemv": ("utils.h", "gemv.h"),
    "gemm": ("utils.h", "steel/gemm/gemm.h", "steel/gemm/kernels/steel_gemm_fused.h"),
    "gemm_splitk": ("utils.h", "steel/gemm/gemm.h", "steel/gemm/kernels/steel_gemm_splitk.h"),
    "gemm_segmented": ("utils.h", "steel/gemm/gemm.h", "steel/gemm/kernels/steel_gemm_segmented.h"),
    "gemm_gather": ("utils.h", "steel/gemm/gemm.h", "steel/gemm/kernels/steel_gemm_gather.h"),
    "conv": ("utils.h", "steel/gemm/mma.h", "steel/conv/conv.h", "steel/conv/params.h", "steel/utils.h",
             "steel/conv/kernels/steel_conv.h"),
    "quantized": ("utils.h", "steel/gemm/gemm.h", "quantized_utils.h", "quantized.h"),
    "fp_quantized": ("utils.h", "steel/gemm/gemm.h", "quantized_utils.h", "fp_quantized.h"),
    "sdpa": ("utils.h", "sdpa_vector.h"),
    "attention": ("utils.h", "steel/attn/kernels/steel_attention.h"),
    "hadamard": ("utils.h", "hadamard.h"),
    "gather_axis": ("utils.h", "indexing/gather_axis.h"),
    "scatter_axis": ("utils.h", "reduce_utils.h", "indexing/scatter_axis.h"),
    "cross_entropy": ("utils.h", "cross_entropy.h"),
    "searchsorted": ("utils.h", "sort.h", "searchsorted.h"),  # LessThan (NaN last) is sort.h's
}
MSL = {np.dtype(F32): "float", np.dtype(F16): "half", np.dtype(I32): "int32_t", np.dtype(bool): "bool"}
# the test modules of the families (test_verify_mlx_<family>.py next to this one), whose cases make up
# the corpus (mlx_cases)
FAMILY_MODULES = tuple(sorted(p.stem for p in Path(__file__).parent.glob("test_verify_mlx_*.py")))


def source(family: str, host: str, template: str, *args: str) -> str:
    """A source of the family's headers and one instantiation, as MLX's .metal files write it."""
    lines = [f'#include "{thirdparty.MLX_KERNELS}/{h}"' for h in HEADERS[family]]
    return "\n".join(["#include <metal_stdlib>", *lines,
                      f'instantiate_kernel("{host}", {template}, {", ".join(args)})', ""])


def case_rng(name: str) -> np.random.Generator:
    """A generator seeded by the case's name (the same inputs on every run)."""
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.fixture(scope="module", name="mlx")
def mlx_fixture() -> str:
    """The `mlx` fixture: the include directory of the pinned wheel's kernel headers (import it into a
    test module under this name; its tests take `mlx`)."""
    need_tool("clang++-22", "clang++-19", "clang++")
    return str(thirdparty.mlx_include())


def run_kernel(src: str, host: str, inc: str, *arrays: Any, threads: int, together: Sequence[str] = ()
               ) -> None:
    """Kernel `host` of `src` on `arrays` (buffers 0, 1, ...) in one group of `threads` threads."""
    from enigma.verify import compile_msl

    prog = compile_msl(src, host, include_dirs=[inc], together=together)
    prog.run(dict(enumerate(arrays)), grid=(1, 1, 1), block=(threads, 1, 1))


# Groups of instantiations compiled into one library (compile_msl's `together`: one clang run for a
# family's cases instead of one per case, which is most of a cold run's time): group -> {host_name:
# (family, template, template arguments)}, registered by each family's module next to its case
# tables (a group belongs to one module)
GROUPS: dict[str, dict[str, tuple[str, str, tuple[str, ...]]]] = {}


def add_member(group: str, family: str, host: str, template: str, *args: str) -> None:
    GROUPS.setdefault(group, {})[host] = (family, template, args)


def group_source(group: str, host: str) -> tuple[str, list[str]]:
    """The source instantiating every member of `group` (MLX's headers, as its .metal files write
    them) and the members' host names; `host` must be one of them."""
    members = GROUPS[group]
    assert host in members, f"{host} is not registered in group {group}"
    family = next(iter(members.values()))[0]
    lines = [f'#include "{thirdparty.MLX_KERNELS}/{h}"' for h in HEADERS[family]]
    inst = [f'instantiate_kernel("{h}", {t}, {", ".join(a)})' for h, (_, t, a) in sorted(members.items())]
    return "\n".join(["#include <metal_stdlib>", *lines, *inst, ""]), sorted(members)


def compile_kernel(src: str, host: str, mlx: str, **kw: Any) -> Any:
    """compile_msl of kernel `host` of `src`, or, when `host` belongs to a group, of the group's source
    with its members together (the same instantiation: checked)."""
    from enigma.verify import compile_msl

    for group, members in GROUPS.items():
        if host in members:
            gsrc, together = group_source(group, host)
            mine = [ln for ln in src.splitlines() if ln.startswith("instantiate_kernel(")]
            assert mine and mine[0] in gsrc.splitlines(), f"{host}: {mine} differs from group {group}"
            return compile_msl(gsrc, host, include_dirs=[mlx], together=together, **kw)
    return compile_msl(src, host, include_dirs=[mlx], **kw)


def register_cases(group: str, family: str, test: Any,
                   member: Callable[..., tuple[str, str, tuple[str, ...]]]) -> None:
    """Every parametrised case of `test` as a member of `group`: member(*params) -> (host, template,
    template arguments), as the test builds them."""
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "parametrize":
            for params in mark.args[1]:
                host, template, args = member(*(params if isinstance(params, tuple) else (params,)))
                add_member(group, family, host, template, *args)


# ---------------------------------------------------------------------------------------------------
# dtypes: MLX's bfloat16_t is Metal's bfloat (arrays hold its bits as uint16); T by its MSL name

def bf16(x: np.ndarray) -> np.ndarray:
    from enigma_runtime.dtypes import bf16_to_bits

    return bf16_to_bits(x)


def from_bf16(b: np.ndarray) -> np.ndarray:
    from enigma_runtime.dtypes import bf16_from_bits

    return bf16_from_bits(b)


def to_t(t: str, x: np.ndarray) -> np.ndarray:
    """x as an array of T ("float", "half" or "bfloat16_t")."""
    return bf16(x) if t == "bfloat16_t" else x.astype({"float": F32, "half": F16}[t])


def val_t(t: str, x: np.ndarray) -> np.ndarray:
    """The values an array of T holds, in float64."""
    return from_bf16(x).astype(np.float64) if t == "bfloat16_t" else x.astype(np.float64)


# ---------------------------------------------------------------------------------------------------
# MLX kernels that do not run as written, with the reason: `family[case]` -> (the report's pattern,
# why). Each family's module adds its own next to its case table; its test still runs the case and
# checks that it fails with exactly this report (docs/verify.md lists them)
KNOWN_FAILURES: dict[str, tuple[str, str]] = {}
# tests of the family modules that are not kernel cases of the corpus
NOT_CASES = {"test_mlx_out_of_bounds_is_reported", "test_mlx_return_before_barrier_is_reported",
             "test_mlx_known_failures_are_few"}


def mlx_cases() -> list[str]:
    """Every MLX kernel case of every family's module: `family[param id]` (one per parametrised run);
    importing the modules also registers their KNOWN_FAILURES."""
    out = []
    for module in FAMILY_MODULES:
        for name, fn in sorted(vars(importlib.import_module(module)).items()):
            if not name.startswith("test_mlx_") or name in NOT_CASES or not callable(fn):
                continue
            marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
            family = name.removeprefix("test_mlx_")
            out += [f"{family}[{v}]" for m in marks for v in m.args[1]] if marks else [family]
    return out
