"""Every zoo kernel: enigma.compile's Metal source, compiled by clang and run through enigma.verify,
agrees with numpy and with the runtime's CPU executor; kernels with barriers under all schedules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zoo
from conftest import need_tool

import enigma
from enigma.verify import run_msl
from enigma.verify.check import check_kernels

pytestmark = pytest.mark.needs_clang
SCHEDULES = ("forward", "reverse", "random")
SYNC = ("softmax", "sum_reduce", "matmul", "transpose", "histogram")  # barriers / simd-group functions


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


_compiled: dict[str, object] = {}


def compiled(e):
    if e.name not in _compiled:
        _compiled[e.name] = enigma.compile(e.jit, *e.make_inputs(np.random.default_rng(0)),
                                           vec_width=e.vec_width)
    return _compiled[e.name]


def cases():
    for e in zoo.ZOO:
        for s in SCHEDULES if e.name in SYNC else ("random",):
            yield pytest.param(e, s, id=f"{e.name}-{s}")


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


@pytest.mark.parametrize("entry,schedule", list(cases()))
def test_zoo_kernel_agrees_with_numpy_and_cpu_executor(entry, schedule):
    ck = compiled(entry)
    assert "kernel void " + ck.kernel_name in ck.metal_source
    args = list(entry.kernel_args(entry.make_inputs(np.random.default_rng(0))))
    cpu_args = _copy(args)
    run_msl(ck, *args, schedule=schedule, seed=3)
    for i, want in zip(entry.outputs, entry.reference(*_copy(cpu_args))):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol,
                                   err_msg=f"{entry.name}: argument {i} vs numpy")
    import enigma_runtime

    k = enigma_runtime.Kernel.from_spec(ck.signature, ck.ir_json, ck.metal_source)
    k(*cpu_args, grid=ck.grid, block=ck.block, device="cpu")
    for i in entry.outputs:
        np.testing.assert_allclose(args[i], cpu_args[i], rtol=1e-4, atol=1e-4,
                                   err_msg=f"{entry.name}: argument {i} vs the CPU executor")


@pytest.mark.parametrize("name", SYNC)
def test_zoo_kernels_with_threadgroup_memory_are_race_free(name):
    entry = zoo.BY_NAME[name]
    args = list(entry.kernel_args(entry.make_inputs(np.random.default_rng(1))))
    run_msl(compiled(entry), *args, schedule="reverse", race_check=True)  # raises on a race
    for i in entry.outputs:
        assert np.isfinite(args[i]).all()


def test_check_kernels_rows_for_the_zoo():
    rows = check_kernels([compiled(e) for e in zoo.ZOO if e.name in ("vector_add", "softmax", "matmul")])
    assert [r.name for r in rows] == ["vector_add", "softmax", "matmul"]
    for r in rows:
        assert r.agree, r.detail
        assert r.max_error < 1e-3 and r.seconds > 0


def test_errors_name_the_metal_line_and_the_python_line():
    e = zoo.BY_NAME["vector_add"]
    ck = compiled(e)
    a = np.ones(1000, np.float32)
    c = np.zeros(512, np.float32)  # too short for n = 1000: the kernel writes past its end
    with pytest.raises(Exception) as info:
        run_msl(ck, a, a, c, np.int32(1000), grid=(4, 1, 1), block=(256, 1, 1))
    msg = str(info.value)
    assert msg.startswith("enigma_kernel_vector_add.metal:") and "out-of-bounds write" in msg
    metal_line = int(msg.split(":")[1])
    py_line = ck.metal_source.splitlines()[metal_line - 1].rsplit("// line", 1)[1].strip()
    assert msg.rstrip().endswith(f"zoo.py:{py_line}") and "c[i] = a[i] + b[i]" in \
        Path(zoo.__file__).read_text().splitlines()[int(py_line) - 1]
