"""The third-party corpus (issue 13): Metal kernels written by others, compiled by enigma.verify exactly
as written (no edits), run on known inputs and compared with numpy. Sources come from package
registries at test time (thirdparty.py: pinned by version and sha256, cached). Every kernel that
does not run as written is listed in docs/verify.md with the reason."""
from __future__ import annotations

import numpy as np
import pytest
import thirdparty
from tinygrad_cases import CASES
from toolcheck import need_tool

pytestmark = pytest.mark.needs_clang
KNOWN_FAILURES: dict[str, str] = {}  # case -> reason (each also in docs/verify.md)


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


@pytest.fixture(scope="module")
def rendered():
    return thirdparty.render_tinygrad()


def test_the_corpus_is_large_enough(rendered):
    assert len(rendered) >= 30
    kernels = [k for case in rendered.values() for k in case["kernels"]]
    assert len(kernels) >= 30 and all("kernel void" in k["src"] for k in kernels)
    assert len(KNOWN_FAILURES) <= 0.1 * len(rendered)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tinygrad_kernels_run_as_written(name, rendered):
    if name in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[name])
    case = rendered[name]
    _, _, ref, rtol = CASES[name]
    inputs = thirdparty.case_inputs(name, case)
    got = thirdparty.run_case(case, inputs).reshape(case["out_shape"])
    want = np.asarray(ref(*inputs))
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol * scale)


def test_tinygrad_threadgroup_arrays_with_attributes_are_checked(rendered):
    """tinygrad declares `threadgroup __attribute__((aligned(16))) float temp0[16];`: found, poisoned and
    race-checked like a plain declaration (a run with race checking is clean: tinygrad's barriers are
    right), and a missing barrier is reported on the array."""
    from enigma.verify import KernelError, compile_msl

    with_tg = [(n, k) for n, c in rendered.items() for k in c["kernels"]
               if "threadgroup __attribute__((aligned(16)))" in k["src"]]
    assert len(with_tg) >= 3
    for name, k in with_tg:
        prog = compile_msl(k["src"], k["function"], f"{k['function']}.metal")
        assert prog.threadgroup_vars and prog.threadgroup_vars[0].name.startswith("temp"), name
    name = with_tg[0][0]
    case = rendered[name]
    inputs = thirdparty.case_inputs(name, case)
    thirdparty.run_case(case, inputs, race_check=True)
    barrier = "threadgroup_barrier(mem_flags::mem_threadgroup);"
    racy = dict(case, kernels=[dict(k, src=k["src"].replace(barrier, "", 1)) for k in case["kernels"]])
    with pytest.raises(KernelError, match=r"data race on threadgroup memory temp\d\["):
        thirdparty.run_case(racy, inputs, race_check=True)
