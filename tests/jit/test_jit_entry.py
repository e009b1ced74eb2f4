"""A compiled @jit is called with the jit's own arguments (issue: jit entries): every zoo jit at three
sizes against numpy, sizes/grids/temporaries recomputed per call, choices made at launch, and what
cannot be shipped refused."""
from __future__ import annotations

import numpy as np
import pytest
import zoo

import enigma
from enigma import EnigmaError, Tensor, float32, int32


def _check(case, ck, size, device="cpu"):
    ins = case.make_inputs(np.random.default_rng(size), size)
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in ins]
    want = case.expect(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in ins])
    got = ck(*args, device=device)
    for key, value in want.items():
        np.testing.assert_allclose(got if key == "return" else args[key], value, rtol=case.rtol,
                                   atol=case.atol, err_msg=f"{case.name} size {size} {key}")


@pytest.fixture(scope="module")
def compiled():
    """Each jit compiled once, from the middle size's arrays."""
    return {c.name: enigma.compile(c.jit, *c.make_inputs(np.random.default_rng(0), 1),
                                   vec_width=c.vec_width) for c in zoo.JITS}


@pytest.mark.parametrize("size", [0, 1, 2])
@pytest.mark.parametrize("name", [c.name for c in zoo.JITS])
def test_every_zoo_jit_with_its_own_arguments_at_three_sizes(compiled, name, size):
    _check(zoo.JIT_BY_NAME[name], compiled[name], size)


@pytest.mark.parametrize("name", ["vector_add", "two_pass_sum", "softmax_auto"])
def test_compiled_from_tensor_specs_like_the_build(name):
    case = zoo.JIT_BY_NAME[name]
    specs = [enigma.TensorSpec(a.dtype, a.shape) for a in _annotations(case.jit)]
    ck = enigma.compile(case.jit, *specs)
    assert ck.entry["requires"] == []  # nothing was decided in Python on a size
    for size in range(3):
        _check(case, ck, size)


def _annotations(jit):
    import inspect
    return list(inspect.get_annotations(jit.fn, eval_str=True).values())


def test_the_readme_example():
    a, b = np.arange(5, dtype=np.float32), np.ones(5, np.float32)
    ck = enigma.compile(zoo.add, a, b, np.empty_like(a))
    for n in (5, 1, 3000):
        a, b, c = np.arange(n, dtype=np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)
        assert ck(a, b, c, device="cpu") is c  # returns the written argument, like a kernel call
        np.testing.assert_array_equal(c, a + 1)
    with pytest.raises(TypeError, match=r"takes the jit's arguments \(a, b, c\), got 4.*ck.kernel"):
        ck(a, b, c, 3000)
    ck.kernel(a, b, c, 3000, device="cpu")  # the launched kernel keeps the kernel's own arguments


def test_two_pass_sum_is_two_launches_with_temporaries():
    ck = enigma.compile(zoo.two_pass_sum, enigma.TensorSpec(float32, ("n",)))
    e = ck.entry
    assert [c["kernel"] for launch in e["launches"] for c in launch["cases"]] == ["partial_sums", "final_sum"]
    assert [t["name"] for t in e["temps"]] == ["tmp0", "tmp1"] and e["returns"] == {"tensor": "tmp1"}
    assert e["temps"][0]["shape"] == [{"op": "ceil_div", "args": [{"sym": "n"}, 256]}]
    second = e["launches"][1]["cases"][0]
    assert second["args"] == [{"tensor": "tmp0"}, {"tensor": "tmp1"},
                              {"op": "ceil_div", "args": [{"sym": "n"}, 256]}]
    x = np.arange(70000, dtype=np.float32) % 7
    np.testing.assert_allclose(ck(x, device="cpu"), [x.sum()], rtol=1e-5)


def test_select_compiles_every_case_and_the_runtime_picks():
    ck = enigma.compile(zoo.softmax_auto, *zoo.JIT_BY_NAME["softmax_auto"].make_inputs(
        np.random.default_rng(0), 0))
    (launch,) = ck.entry["launches"]
    blocks = [c["block"][0] for c in launch["cases"]]
    assert blocks == [64, 256, 1024] and len(ck.parts) == 3
    assert len({p.kernel_name for p in ck.parts}) == 3  # one Metal function per case
    assert all("when" in c for c in launch["cases"])
    from enigma_runtime.entry import Entry
    picked = []
    entry = Entry(ck.entry, lambda k, name: (picked.append(name), ck.parts[0].kernel)[1:] + (
        next(p for p in ck.parts if p.kernel_name == name).kernel.specs[0],))
    for cols, want in ((64, 0), (65, 1), (256, 1), (257, 2)):
        x = np.zeros((2, cols), np.float32)
        entry(x, np.zeros_like(x), device="cpu")
        assert picked[-1] == ck.parts[want].kernel_name, cols


@enigma.kernel
def scale(x: Tensor[float32], y: Tensor[float32], n: int32, s: float32):
    i = enigma.block_idx().x * 64 + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] * s


@enigma.jit
def scaled(x, y, s):
    scale(x, y, x.shape[0], s).launch(grid=enigma.ceil_div(x.shape[0], 64), block=64)


@enigma.jit
def scaled_twice(x, y, s):
    scale(x, y, x.shape[0], s * 2).launch(grid=enigma.ceil_div(x.shape[0], 64), block=64)  # <-


def test_scalar_arguments_pass_through_and_derived_floats_are_refused():
    x = np.arange(10, dtype=np.float32)
    ck = enigma.compile(scaled, x, np.zeros_like(x), 2.0)
    y = np.zeros_like(x)
    ck(x, y, 3.0, device="cpu")
    np.testing.assert_array_equal(y, 3 * x)
    with pytest.raises(EnigmaError, match="computed in Python from a float argument") as info:
        enigma.compile(scaled_twice, x, np.zeros_like(x), 2.0)
    assert info.value.line == scaled_twice.fn.__code__.co_firstlineno + 2


@enigma.jit
def numpy_temporary(x, y):
    t = np.zeros(10, np.float32)
    scale(x, t, x.shape[0], 1.0).launch(grid=1, block=64)  # <-


def test_a_numpy_array_made_in_the_jit_is_refused():
    x = np.arange(10, dtype=np.float32)
    with pytest.raises(EnigmaError, match="not an argument of the jit or a temporary") as info:
        enigma.compile(numpy_temporary, x, x)
    assert "enigma.empty" in info.value.hint


# --- specialisations: one rule in enigma.compile, in jit launches and in the build -------------------

@enigma.kernel(specialize=[{"inp": enigma.float16, "out": enigma.float16}])
def double(inp: Tensor[float32], out: Tensor[float32]):
    i = enigma.thread_idx().x
    out[i] = inp[i] * 2


@enigma.kernel(specialize=[{"inp": enigma.float16, "out": enigma.float16},
                           {"inp": enigma.float32, "out": enigma.float32}])
def generic_double(inp: Tensor[None], out: Tensor[None]):
    i = enigma.thread_idx().x
    out[i] = inp[i] * 2


@enigma.jit
def double_it(inp, out):
    double(inp, out).launch(grid=1, block=inp.shape[0])


def test_compile_picks_the_specialisation_that_fits():
    h = np.arange(4, dtype=np.float16)
    ck = enigma.compile(double, h, np.zeros_like(h))
    assert ck.kernel_name == "enigma_kernel_double_f16" and ck.ir.args[0].dtype == enigma.float16
    assert enigma.compile(double).kernel_name == "enigma_kernel_double"
    jk = enigma.compile(double_it, h, np.zeros_like(h))
    assert jk.kernel_name == "enigma_kernel_double_f16"
    out = np.zeros_like(h)
    jk(h, out, device="cpu")
    np.testing.assert_array_equal(out, 2 * h)
    # a dtype-generic kernel: its first specialisation without arguments, the fitting one with them
    assert enigma.compile(generic_double).kernel_name == "enigma_kernel_generic_double_f16"
    f = np.ones(4, np.float32)
    assert enigma.compile(generic_double, f, f).kernel_name == "enigma_kernel_generic_double_f32"


def test_a_dtype_generic_kernel_with_specialisations_builds(tmp_path):
    from enigma_build import frontend
    from enigma_build.config import Settings
    cks = frontend.compile_all(generic_double, Settings(root=tmp_path))
    assert [c.kernel_name for c in cks] == ["enigma_kernel_generic_double_f16",
                                            "enigma_kernel_generic_double_f32"]


# --- grid functions that do not take the kernel's parameters ------------------------------------------

def test_a_grid_function_with_the_wrong_parameters_is_refused_at_the_decorator():
    import inspect
    line = inspect.currentframe().f_lineno + 2
    with pytest.raises(EnigmaError) as info:
        @enigma.kernel(block=(64, 1, 1), grid=lambda a, b, n: (enigma.ceil_div(n, 64), 1, 1))
        def k(a: Tensor[float32], b: Tensor[float32], n: int32, BLOCK: enigma.Constexpr[int] = 64):
            pass
    err = info.value
    assert (err.file, err.line) == (__file__, line)
    assert "(a, b, n)" in err.message and "(a, b, n, BLOCK)" in err.message
    assert "lambda a, b, n, BLOCK" in err.hint


@enigma.kernel
def plus_one(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * 64 + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] + 1


@enigma.kernel
def minus_one(x: Tensor[float32], y: Tensor[float32], n: int32):
    i = enigma.block_idx().x * 64 + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] - 1


@enigma.jit
def small_up_big_down(x, y):
    n = x.shape[0]
    enigma.select(n < 100, plus_one, minus_one)(x, y, n).launch(grid=enigma.ceil_div(n, 64), block=64)


def test_select_between_kernels():
    spec = enigma.TensorSpec(float32, ("n",))
    ck = enigma.compile(small_up_big_down, spec, spec)
    assert [p.name for p in ck.parts] == ["plus_one", "minus_one"]
    for n, delta in ((99, 1), (100, -1), (5000, -1)):
        x = np.arange(n, dtype=np.float32)
        y = np.zeros_like(x)
        ck(x, y, device="cpu")
        np.testing.assert_array_equal(y, x + delta)


def test_arithmetic_on_a_choice_applies_to_every_case_and_python_decisions_are_refused():
    @enigma.jit
    def doubled_grid(x, y):
        b = enigma.select(x.shape[0] < 100, 1, 2)
        plus_one(x, y, x.shape[0]).launch(grid=b * 2, block=64)

    spec = enigma.TensorSpec(float32, ("n",))
    ck = enigma.compile(doubled_grid, spec, spec)
    assert [c["grid"][0] for c in ck.entry["launches"][0]["cases"]] == [2, 4] and len(ck.parts) == 1

    @enigma.jit
    def decides_in_python(x, y):
        b = enigma.select(x.shape[0] < 100, 64, 128)
        if b > 64:  # <-
            plus_one(x, y, x.shape[0]).launch(grid=1, block=64)

    with pytest.raises(EnigmaError, match="comparing .* a value chosen at launch") as info:
        enigma.compile(decides_in_python, spec, spec)
    assert info.value.line == decides_in_python.fn.__code__.co_firstlineno + 3


@enigma.kernel
def shift(x: Tensor[float32], y: Tensor[float32], n: int32, OFFSET: enigma.Constexpr[float] = 0.0):
    i = enigma.thread_idx().x
    if i < n:
        y[i] = x[i] + OFFSET


@enigma.jit
def float_as_constexpr(x, y, off):
    shift(x, y, x.shape[0], OFFSET=off).launch(grid=1, block=64)


@enigma.jit
def float_decided_in_python(x, y, off):
    if off > 0:  # <-
        shift(x, y, x.shape[0]).launch(grid=1, block=64)


def test_a_float_argument_is_never_compiled_in_silently():
    x = np.zeros(4, np.float32)
    with pytest.raises(EnigmaError, match="Constexpr parameter 'OFFSET' got the @jit's float argument off"):
        enigma.compile(float_as_constexpr, x, x, 1.0)
    with pytest.raises(EnigmaError, match="gt on the @jit's float argument off") as info:
        enigma.compile(float_decided_in_python, x, x, 1.0)
    assert info.value.line == float_decided_in_python.fn.__code__.co_firstlineno + 2


@pytest.mark.needs_clang
@pytest.mark.parametrize("name", ["two_pass_sum", "softmax_auto"])
def test_the_emitted_metal_of_every_part_through_msl_cpu(name):
    """The entry on enigma.verify's "msl-cpu" device: each launch runs its kernel's Metal source
    (compiled by clang), so the emitted Metal of every part and case agrees with numpy too."""
    from toolcheck import need_tool

    need_tool("clang++-22", "clang++-19", "clang++")
    import enigma.verify  # noqa: F401  (registers the msl-cpu device)

    case = zoo.JIT_BY_NAME[name]
    ck = enigma.compile(case.jit, *case.make_inputs(np.random.default_rng(0), 1))
    for size in range(3):
        _check(case, ck, size, device="msl-cpu")


@enigma.jit
def maybe_double(x, y, twice):
    n = x.shape[0]
    if twice:  # decided in Python on a bool argument: the compiled jit requires the same value
        scale(x, y, n, 2.0).launch(grid=enigma.ceil_div(n, 64), block=64)
    else:
        scale(x, y, n, 1.0).launch(grid=enigma.ceil_div(n, 64), block=64)


def test_a_bool_argument_decided_in_python_is_required_at_every_call():
    x = np.arange(5, dtype=np.float32)
    ck = enigma.compile(maybe_double, x, x, True)
    y = np.zeros_like(x)
    ck(x, y, True, device="cpu")
    np.testing.assert_array_equal(y, 2 * x)
    with pytest.raises(ValueError, match="twice == 1"):
        ck(x, y, False, device="cpu")
