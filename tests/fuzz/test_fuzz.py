"""The differential fuzzer in CI: generated kernels must give the same results on the CPU executor,
through enigma.verify (clang; every VERIFY_EVERY-th seed, clang being the slow part) and in the numpy
model. Seeds listed in KNOWN fail for the reason recorded there, in code owned elsewhere; they are
expected failures, not dropped cases (xfail is not strict: once the cause is fixed they pass, and the
entry is removed)."""
from __future__ import annotations

import pytest
from toolcheck import need_tool

from fuzz.gen import MATH, MATH2, generate, render
from fuzz.run import differences, minimize, run_seed

SEEDS = range(300)
VERIFY_EVERY = 5
# seed -> why it fails, for a disagreement whose cause lives in code owned elsewhere (none today; the
# CPU executor's simd_max/simd_min propagating NaN, seeds 20 and 105, was fixed on main)
KNOWN: dict[int, str] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check(seed: int, workdir, verify: bool, request) -> None:
    if seed in KNOWN:  # still run: an XPASS says the entry can go
        request.applymarker(pytest.mark.xfail(reason=KNOWN[seed], strict=False))
    o = run_seed(seed, workdir, verify=verify)
    assert o.status == "ok", o.report()


@pytest.mark.parametrize("seed", [s for s in SEEDS if s % VERIFY_EVERY])
def test_cpu_agrees_with_the_model(seed, workdir, request):
    _check(seed, workdir, False, request)


@pytest.mark.needs_clang
@pytest.mark.parametrize("seed", [s for s in SEEDS if s % VERIFY_EVERY == 0])
def test_cpu_verify_and_model_agree(seed, workdir, request):
    need_tool("clang++-22", "clang++-19", "clang++")
    _check(seed, workdir, True, request)


def test_generator_is_seeded_and_covers_the_language():
    assert render(generate(7)) == render(generate(7))
    text = "".join(render(generate(s)) for s in range(2000))  # generating is cheap: wider than SEEDS
    for needle in ("if ", "else:", "for ", "while ", "shared_tensor", "barrier()", "simd_sum", "simd_max",
                   "simd_min", "simd_shuffle_down", "simd_broadcast", "atomic_add", "atomic_max",
                   "atomic_min", "enigma.fma", "enigma.where", "<<", ">>", " // ", " % ", " / ", "~",
                   "enigma.minimum", "enigma.maximum", "enigma.block_dim()", "enigma.grid_dim()",
                   "enigma.simd_lane_id()", "enigma.simd_group_id()", ".shape[0]", "p0", ".to(enigma."):
        assert needle in text, needle
    for name in MATH + MATH2 + ("abs",):  # every math function of the op table
        assert f"enigma.{name}(" in text, name
    for d in ("float32", "float16", "bfloat16", "int32", "uint32", "int16", "uint16", "int8", "uint8",
              "bool_"):
        assert f"Tensor[enigma.{d}]" in text, d


def test_comparison_distinguishes_signed_zeros_and_tolerates_only_inexact_elements():
    import numpy as np

    from enigma import float16, float32

    z = np.array([0.0, 1.0, np.nan], np.float32)
    assert differences(float32, z, np.array([-0.0, 1.0, np.nan], np.float32), np.zeros(3, bool)) == [0]
    near = np.array([1.0, 1.0001], np.float16)
    exact = np.zeros(2, bool)
    assert differences(float16, near, np.array([1.0, 1.001], np.float16), exact) == [1]
    assert differences(float16, near, np.array([1.0, 1.001], np.float16), ~exact) == []


def test_model_against_hand_computed_numpy():
    """The model's control flow, threadgroup memory, simd ops and atomics, checked on a program
    written by hand against numpy written independently."""
    import numpy as np

    from enigma import bool_, float32, int32, uint32
    from fuzz.gen import E, Program, S
    from fuzz.model import run_model

    ld = E("load", int32, value=0)
    t, g = E("tid", int32), E("gid", int32)
    c = lambda v, d=int32: E("const", d, value=v)  # noqa: E731
    body = [
        S("assign", "acc", E("mul", int32, (g, c(0)))),
        S("if", e=E("gt", bool_, (ld, c(0))), body=[S("assign", "acc", E("add", int32, (ld, c(100))))],
          orelse=[S("assign", "acc", E("neg", int32, (ld,)))]),
        S("for", "j", E("and", int32, (t, c(3))), body=[S("assign", "acc", E("add", int32, (
            E("var", int32, value="acc"), E("var", int32, value="j"))))]),
        S("shared", "nb", E("var", int32, value="acc"), value=1),
        S("simd", "m", E("simd_max", int32, (E("var", int32, value="nb"),))),
        S("atomic", value="atomic_add", e=E("cast", uint32, (E("var", int32, value="acc"),))),
        S("store", value=0, e=E("var", int32, value="acc")),
        S("store", value=1, e=E("var", int32, value="m")),
        S("store", value=2, e=E("div", float32, (E("cast", float32, (ld,)), c(0.0, float32)))),
    ]
    p = Program(0, 64, 2, [int32], [int32, int32, float32], uint32, "atomic_add", body)
    x = np.arange(-50, 78, dtype=np.int32)
    outs = [np.zeros(128, np.int32), np.zeros(128, np.int32), np.zeros(128, np.float32)]
    got, inexact, cnt = run_model(p, [x], outs, np.zeros(4, np.uint32))
    tid = np.arange(128) % 64
    acc = np.where(x > 0, x + 100, -x) + (tid & 3) * ((tid & 3) - 1) // 2
    nb = acc.reshape(2, 64)[:, (np.arange(64) + 1) % 64].reshape(-1)
    assert got[0].tolist() == acc.tolist()
    assert got[1].tolist() == np.repeat(nb.reshape(-1, 32).max(axis=1), 32).tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.array_equal(got[2], x.astype(np.float32) / np.float32(0.0), equal_nan=True)
    assert cnt.tolist() == [int(acc[tid % 4 == k].astype(np.uint32).sum() % 2**32) for k in range(4)]
    assert not any(a.any() for a in inexact)


def test_minimize_keeps_the_outcome_and_shrinks_the_kernel(workdir):
    o = run_seed(7, workdir, verify=False)
    small = minimize(o, workdir, verify=False, budget=40)
    assert small.status == o.status == "ok"
    assert len(small.source.splitlines()) < len(o.source.splitlines())
