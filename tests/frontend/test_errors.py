"""Malformed kernels and launchers: each error's exact message, type and the user's line (marked `# <-`)."""
from __future__ import annotations

import importlib.util
import inspect
import math

import numpy as np
import pytest
import zoo

import enigma
from enigma import Constexpr, EnigmaError, Tensor, bfloat16, float16, float32, int32


def marked_line(fn) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(k for k, s in enumerate(lines) if "# <-" in s)


# --- control flow --------------------------------------------------------------------------------

@enigma.kernel
def return_in_dynamic_if(x: Tensor[float32], n: int32):
    i = enigma.thread_idx().x
    if i >= n:
        return  # <-
    x[i] = 0.0


@enigma.kernel
def break_in_range_loop(x: Tensor[float32], n: int32):
    for j in range(n):
        if enigma.const_expr(True):
            break  # <-
        x[j] = 1.0


@enigma.kernel
def continue_in_while(x: Tensor[int32]):
    v = x[0]
    while v > 0:
        v -= 1
        continue  # <-


@enigma.kernel
def one_branch_only(x: Tensor[float32], n: int32):
    i = enigma.thread_idx().x
    if i < n:
        y = x[i]
    x[0] = y  # <-


@enigma.kernel
def loop_local_used_after(x: Tensor[float32], n: int32):
    for j in range(n):
        t = x[j]
    x[0] = t  # <-


@enigma.kernel
def loop_variable_after_loop(x: Tensor[float32], n: int32):
    for j in range(n):
        x[j] = 0.0
    x[0] = j  # <-


@enigma.kernel
def value_escapes_through_a_list(x: Tensor[float32], n: int32):
    seen = []
    for j in range(n):
        seen.append(x[j])
    x[0] = seen[0] + 1.0  # <-


@enigma.kernel
def carried_type_changes(x: Tensor[int32], n: int32):
    v = x[0]
    for _j in range(n):  # <-
        v = v * 0.5


@enigma.kernel
def python_object_in_loop(x: Tensor[float32], n: int32):
    pair = (0, 0)
    for j in range(n):  # <-
        pair = (j, j)
    x[0] = pair[0]


@enigma.kernel
def zero_step(x: Tensor[float32], n: int32):
    for j in range(n, 0, 0):  # <-
        x[j] = 0.0


# --- Python values vs traced values (TypeError) --------------------------------------------------

@enigma.kernel
def traced_as_bool(x: Tensor[float32], n: int32):
    i = enigma.thread_idx().x
    m = max(i, n)  # <-
    x[m] = 0.0


@enigma.kernel
def traced_as_list_index(x: Tensor[float32]):
    table = [1.0, 2.0, 3.0]
    x[0] = table[enigma.thread_idx().x]  # <-


@enigma.kernel
def math_sqrt_of_traced(x: Tensor[float32]):
    x[0] = math.sqrt(x[1])  # <-


@enigma.kernel
def add_a_string(x: Tensor[float32]):
    x[0] = x[1] + "1"  # <-


@enigma.kernel
def bitwise_on_float(x: Tensor[float32]):
    x[0] = x[1] & 1  # <-


@enigma.kernel
def float_index(x: Tensor[float32]):
    x[0] = x[x[1]]  # <-


@enigma.kernel
def traced_range_constexpr(x: Tensor[float32], n: int32):
    for j in enigma.range_constexpr(n):  # <-
        x[j] = 0.0


# --- tensors and memory --------------------------------------------------------------------------

@enigma.kernel
def wrong_rank_index(x: Tensor[float32, 2]):
    x[0] = 1.0  # <-


@enigma.kernel
def slicing(x: Tensor[float32]):
    x[0] = x[1:3]  # <-


@enigma.kernel
def static_out_of_bounds(x: Tensor[float32, (4, 4)]):
    x[1, 4] = 0.0  # <-


@enigma.kernel
def shared_in_dynamic_if(x: Tensor[float32], n: int32):
    if enigma.thread_idx().x < n:
        t = enigma.shared_tensor(float32, (32,))  # <-
        t[0] = 1.0


@enigma.kernel
def shared_dynamic_shape(x: Tensor[float32]):
    t = enigma.shared_tensor(float32, (x.shape[0],))  # <-
    t[0] = 1.0


@enigma.kernel
def shared_named_like_a_parameter(tile: Tensor[float32]):
    t = enigma.shared_tensor(float32, (4,), name="tile")  # <-
    t[0] = tile[0]


@enigma.kernel
def too_much_threadgroup_memory(x: Tensor[float32]):
    a = enigma.shared_tensor(float32, (64, 64), name="a")
    b = enigma.shared_tensor(float32, (64, 64), name="b")
    c = enigma.shared_tensor(float32, (1,), name="c")  # <- 16 KB + 16 KB + 4 bytes
    a[0, 0] = b[0, 0] + c[0]


@enigma.kernel(block=(32, 32, 2))
def too_many_threads(x: Tensor[float32]):  # <-
    x[0] = 1.0


@enigma.kernel
def atomic_on_half(x: Tensor[float16]):
    enigma.atomic_add(x, 0, 1.0)  # <-


@enigma.kernel
def const_expr_of_traced(x: Tensor[float32]):
    if enigma.const_expr(x[0] > 0):  # <-
        x[0] = 1.0


@enigma.kernel
def python_error_in_body(x: Tensor[float32]):
    x[0] = undefined_name  # noqa: F821  # <-


# --- signatures ----------------------------------------------------------------------------------

@enigma.kernel
def missing_annotation(x: Tensor[float32], n):  # <-
    x[0] = 1.0


@enigma.kernel
def constexpr_without_value(x: Tensor[float32], BLOCK: Constexpr[int]):  # <-
    x[0] = 1.0


@enigma.kernel
def returns_value(x: Tensor[float32]):  # <-
    return x[0]


# --- trace-time constants and values from elsewhere ----------------------------------------------

@enigma.kernel
def fstring_of_traced(a: Tensor[int32], out: Tensor[int32]):
    i = enigma.thread_idx().x
    out[i] = len(f"{a[i]}")  # <-


@enigma.kernel
def str_of_traced(a: Tensor[int32], out: Tensor[int32]):
    out[0] = len(str(a[0]))  # <-


@enigma.kernel
def repr_of_traced(a: Tensor[int32], out: Tensor[int32]):
    out[0] = len(repr(a[0]))  # <-


@enigma.kernel
def format_of_traced(a: Tensor[int32], out: Tensor[int32]):
    out[0] = len(format(a[0], "d"))  # <-


@enigma.kernel
def hash_of_traced(a: Tensor[int32], out: Tensor[int32]):
    seen = {a[0]: 1}  # <-
    out[0] = seen[a[0]]


@enigma.kernel
def half_times_huge_float(h: Tensor[float16]):
    h[0] = h[0] * 1e5  # <-


@enigma.kernel
def half_times_tiny_float(h: Tensor[float16]):
    h[0] = h[0] * 1e-8  # <-


@enigma.kernel
def half_plus_huge_int(h: Tensor[float16]):
    h[0] = h[0] + 70000  # <-


@enigma.kernel
def bfloat_less_than_huge_float(h: Tensor[bfloat16], out: Tensor[int32]):
    out[0] = (h[0] < 1e39).to(int32)  # <-


@enigma.kernel
def float_times_tiny_float(x: Tensor[float32]):
    x[0] = x[0] * 1e-50  # <-


@enigma.kernel
def default_on_scalar_parameter(x: Tensor[float32], n: int32 = 4):  # <-
    x[0] = n


@enigma.kernel
def simd_sum_of_bool(x: Tensor[int32]):
    x[0] = enigma.simd_sum(x[0] > 0)  # <-


@enigma.func
def recurse_forever(v):
    return recurse_forever(v + 1)  # <-


@enigma.kernel
def recursive_func(x: Tensor[int32]):
    x[0] = recurse_forever(x[0])


@enigma.func
def recurse_through_an_if(v):
    if v > 0:
        v = v + 1
    return recurse_through_an_if(v)  # <-


@enigma.kernel
def recursive_func_with_if(x: Tensor[int32]):
    x[0] = recurse_through_an_if(x[0])


TEXT = "(a run-time value): its value is only known at run time, so the text would be a trace-time constant"
T = EnigmaError
TE = TypeError
CASES = [
    (fstring_of_traced, TE, f"format() (or an f-string) of a traced int32 {TEXT}"),
    (str_of_traced, TE, f"str() (or an f-string) of a traced int32 {TEXT}"),
    (repr_of_traced, TE, f"repr() of a traced int32 {TEXT}"),
    (format_of_traced, TE, f"format() (or an f-string) of a traced int32 {TEXT}"),
    (hash_of_traced, TE, "hash() of a traced int32 (a run-time value) (a dict key or set member): its value "
                         "is only known at run time"),
    (half_times_huge_float, TE, "the Python float 100000.0 does not fit float16, the type of the other "
                                "operand of * (it would become inf)"),
    (half_times_tiny_float, TE, "the Python float 1e-08 does not fit float16, the type of the other operand "
                                "of * (it would become 0.0)"),
    (half_plus_huge_int, TE, "the Python int 70000 does not fit float16, the type of the other operand of + "
                             "(it would become inf)"),
    (bfloat_less_than_huge_float, TE, "the Python float 1e+39 does not fit bfloat16, the type of the other "
                                      "operand of < (it would become inf)"),
    (float_times_tiny_float, TE, "the Python float 1e-50 does not fit float32, the type of the other operand "
                                 "of * (it would become 0.0)"),
    (default_on_scalar_parameter, T, "kernel parameter 'n' has a default value (4); only Constexpr "
                                     "parameters can have one"),
    (simd_sum_of_bool, TE, "enigma.simd_sum of a traced bool (a run-time value): Metal's simdgroup "
                           "reductions take numbers, not bools"),
    (return_in_dynamic_if, T, "`return` inside an `if` on a traced condition is not supported"),
    (break_in_range_loop, T, "`break` inside a `for ... in range(...)` loop (a run-time loop) is not "
                             "supported"),
    (continue_in_while, T, "`continue` inside a `while` loop on a traced condition is not supported"),
    (one_branch_only, T, "variable 'y' is used but has no value here: it is assigned only in the then branch "
                         "of the `if` on a traced condition"),
    (loop_local_used_after, T, "variable 't' is used but has no value here: it is assigned only inside the "
                               "body of a `for` loop"),
    (loop_variable_after_loop, T, "variable 'j' is used but has no value here: it is the variable of a "
                                  "run-time `for` loop, which has no value after the loop"),
    (value_escapes_through_a_list, T, "a value computed inside a run-time `if` or loop body is used outside "
                                      "it"),
    (carried_type_changes, T, "variable 'v' changes type in the `for` loop: it is int32 before the loop and "
                              "float32 after the body"),
    (python_object_in_loop, T, "variable 'pair' holds a Python tuple (a compile-time value) and is "
                               "reassigned inside a `for` loop; only numbers can change from one "
                               "iteration to the next"),
    (zero_step, T, "range step must not be zero"),
    (traced_as_bool, TE, "a traced bool (a run-time value) cannot be used as a Python bool"),
    (traced_as_list_index, TE, "a traced int32 (a run-time value) cannot be used as a Python int (list "
                               "index, range_constexpr, slice)"),
    (math_sqrt_of_traced, TE, "float() of a traced float32 (a run-time value) (e.g. math.sqrt of it): its "
                              "value is only known at run time"),
    (add_a_string, TE, "unsupported operand types for +: traced float32 (a run-time value) and Python str "
                       "(a compile-time value)"),
    (bitwise_on_float, TE, "& needs integer or bool operands, got traced float32 (a run-time value) and "
                           "Python int (a compile-time value)"),
    (float_index, TE, "index 0 of x is a traced float32 (a run-time value); indices are integers"),
    (traced_range_constexpr, T, "range_constexpr bounds must be Python ints, got traced int32 (a run-time "
                                "value)"),
    (wrong_rank_index, T, "x has rank 2 but is indexed with 1 index"),
    (slicing, T, "slicing x is not supported in kernels"),
    (static_out_of_bounds, T, "index 4 is out of bounds for axis 1 of x (size 4)"),
    (shared_in_dynamic_if, T, "shared_tensor must be declared at the top level of the kernel, not inside "
                              "dynamic control flow"),
    (shared_dynamic_shape, T, "shared_tensor needs a static shape of positive Python ints, got "
                              "(<traced int32>,)"),
    (shared_named_like_a_parameter, T, "the threadgroup array name 'tile' is also a kernel parameter"),
    (too_much_threadgroup_memory, T, "threadgroup memory of 32772 bytes (a, b, c) exceeds Metal's 32768 "
                                     "bytes per threadgroup"),
    (too_many_threads, T, "block (32, 32, 2) has 2048 threads; Metal runs at most 1024 per threadgroup"),
    (atomic_on_half, T, "enigma.atomic_add on a float16 tensor (x) is not supported by Metal"),
    (const_expr_of_traced, T, "const_expr needs a compile-time value, got a traced bool (a run-time value)"),
    (python_error_in_body, T, "NameError while tracing kernel 'python_error_in_body': name 'undefined_name' "
                              "is not defined"),
    (missing_annotation, T, "kernel parameter 'n' has no annotation"),
    (constexpr_without_value, T, "Constexpr parameter 'BLOCK' of constexpr_without_value has no value"),
    (returns_value, T, "kernel 'returns_value' returns a value; kernels return nothing"),
]


@pytest.mark.parametrize("kernel,cls,message", CASES, ids=[c[0].name for c in CASES])
def test_malformed_kernel(kernel, cls, message):
    with pytest.raises(cls) as info:
        enigma.compile(kernel)
    err = info.value
    assert isinstance(err, EnigmaError)
    assert err.message.startswith(message) if message.endswith("%") else err.message == message
    assert (err.file, err.line) == (__file__, marked_line(kernel.fn))
    text = str(err)
    assert text.startswith(f"{__file__}:{err.line}: {err.message}\n    ")
    assert text.splitlines()[1].strip() == err.source_line and "# <-" in err.source_line
    if not isinstance(err, TypeError) or "hint" in text:
        assert err.hint and text.endswith(f"\n  hint: {err.hint}")


# --- launchers -----------------------------------------------------------------------------------

@enigma.jit
def launches_nothing(a, b, c):  # <-
    pass


@enigma.jit
def launches_twice(a, b, c):  # <-
    n = a.shape[0]
    for _ in range(2):
        zoo.vector_add(a, b, c, n).launch(grid=(1, 1, 1), block=(256, 1, 1))


@enigma.jit
def launches_per_element(a, b, c):
    n = a.shape[0]
    for _ in range(n):  # <-
        zoo.vector_add(a, b, c, n).launch(grid=(1, 1, 1), block=(256, 1, 1))


@enigma.jit
def chooses_in_python(a, b, c):
    n = a.shape[0]
    if n > 1024:  # <-
        zoo.vector_add(a, b, c, n).launch(grid=(1, 1, 1), block=(256, 1, 1))


@enigma.jit
def launches_without_n(a, b, c):
    zoo.vector_add(a, b, c).launch(grid=(1, 1, 1), block=(256, 1, 1))  # <-


@enigma.jit
def symbolic_block(a, b, c):
    n = a.shape[0]
    zoo.vector_add(a, b, c, n).launch(grid=(1, 1, 1), block=(n, 1, 1))  # <-


@enigma.jit
def wrong_dtype(a, b, c):
    zoo.vector_add(a, b, c, 3).launch(grid=(1, 1, 1), block=(4, 1, 1))


def test_jit_errors():
    a = np.zeros(8, np.float32)
    spec = enigma.TensorSpec(float32, ("n",))
    for fn, msg, args in [
        (launches_nothing, "@jit function 'launches_nothing' launched no kernel", (a, a, a)),
        (symbolic_block, "block (n, 1, 1) depends on sizes known only at launch", (spec, spec, spec)),
        (launches_without_n, "kernel 'vector_add' is launched without its argument 'n'", (a, a, a)),
        (launches_twice, "@jit function 'launches_twice' got the wrong arguments: missing a required "
                         "argument: 'c'", (a, a)),
    ]:
        with pytest.raises(EnigmaError) as info:
            enigma.compile(fn, *args)
        assert info.value.message == msg
        assert (info.value.file, info.value.line) == (__file__, marked_line(fn.fn))
    with pytest.raises(EnigmaError, match=r"'a' of vector_add is Tensor\[float32\], got a int32 tensor"):
        enigma.compile(wrong_dtype, np.zeros(4, np.int32), a, a)


def test_calling_kernels_and_jits_directly():
    with pytest.raises(EnigmaError) as info:
        zoo.vector_add(1, 2, 3, 4)  # <- direct call
    assert info.value.message == "calling kernel 'vector_add' directly does not run it"
    assert info.value.line == inspect.currentframe().f_lineno - 2
    with pytest.raises(EnigmaError, match="is not called directly"):
        zoo.add(1, 2, 3)


@pytest.mark.parametrize("fn, what", [(launches_per_element, "using as an int"),
                                      (chooses_in_python, "the truth value")])
def test_unshippable_jits_are_refused_at_their_line(fn, what):
    """A jit that decides in Python on a size known only at launch cannot become data (a build runs
    it on TensorSpecs): refused at the user's line, saying why and what to use instead."""
    spec = enigma.TensorSpec(float32, ("n",))
    with pytest.raises(EnigmaError) as info:
        enigma.compile(fn, spec, spec, spec)
    err = info.value
    assert (err.file, err.line) == (__file__, marked_line(fn.fn))
    assert what in err.message and "a size known only at launch" in err.message
    assert "cannot be shipped" in err.message and "enigma.select" in err.message


def test_a_size_used_in_python_is_a_guard_of_the_compiled_jit():
    """With arrays the same jit compiles (the size is known), guarded: other sizes are refused, naming
    the condition and the line, never run with a stale decision."""
    a = np.zeros(8, np.float32)
    ck = enigma.compile(launches_per_element, a, a, a)
    assert len(ck.entry["launches"]) == 8
    ck(a, a.copy(), a.copy(), device="cpu")
    b = np.zeros(9, np.float32)
    with pytest.raises(ValueError, match=r"a.shape\[0\] == 8.*compile again"):
        ck(b, b, b.copy(), device="cpu")


def test_the_launches_of_a_loop_over_a_static_count_are_recorded_in_order():
    a = np.arange(4, dtype=np.float32)
    ck = enigma.compile(launches_twice, a, a, a)
    assert len(ck.entry["launches"]) == 2 and len(ck.parts) == 1  # one kernel, launched twice
    c = np.zeros(4, np.float32)
    ck(a, a, c, device="cpu")
    np.testing.assert_array_equal(c, 2 * a)
    with pytest.raises(EnigmaError, match="expects an @enigma.kernel or @enigma.jit function"):
        enigma.compile(lambda: None)


def test_named_sizes_must_agree_across_arrays():
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32)
    with pytest.raises(EnigmaError) as info:
        enigma.compile(zoo.matmul_launch, a, b, np.zeros((3, 2), np.float32))
    assert info.value.message == "size 'k' is 4 in one argument and 5 in 'b'"


def test_generic_element_type_needs_an_argument():
    @enigma.kernel
    def k(x: Tensor[None]):  # <-
        x[0] = 1

    assert enigma.compile(k, np.zeros(3, np.int16)).ir.args[0].dtype == enigma.int16
    with pytest.raises(EnigmaError) as info:
        enigma.compile(k)
    assert info.value.message == "parameter 'x' of k is a Tensor without an element type"
    assert info.value.line == marked_line(k.fn)


def test_reserved_parameter_names():
    @enigma.kernel
    def k(half: Tensor[float32]):  # <-
        half[0] = 1.0

    with pytest.raises(EnigmaError) as info:
        enigma.compile(k)
    assert info.value.message == "kernel parameter name 'half' is reserved in the generated Metal source"
    assert info.value.line == marked_line(k.fn)


# a traced value kept in a global by one kernel's trace and used by another's
_KEPT: list = []


@enigma.kernel
def keeps_a_traced_value(x: Tensor[float32]):
    _KEPT.append(x[0] * 2.0)
    x[0] = 1.0


@enigma.kernel
def uses_a_kept_value(x: Tensor[float32]):
    x[0] = _KEPT[-1] + 1.0  # <-


def test_traced_value_from_another_kernel():
    enigma.compile(keeps_a_traced_value)
    with pytest.raises(EnigmaError) as info:
        enigma.compile(uses_a_kept_value)
    assert info.value.message == ("a traced value of kernel 'keeps_a_traced_value' is used while tracing "
                                  "kernel 'uses_a_kept_value'")
    assert (info.value.file, info.value.line) == (__file__, marked_line(uses_a_kept_value.fn))
    assert "do not keep it in a global" in info.value.hint


def test_literals_that_fit_and_explicit_infinities_are_accepted():
    @enigma.kernel
    def k(h: Tensor[float16], b: Tensor[bfloat16]):
        h[0] = h[0] * 60000.0 + 6e-8 + float("inf") * 0.0 - 65504
        b[0] = b[0] * 1e38 + float("-inf")

    enigma.compile(k)


@pytest.mark.parametrize("kernel,helper", [(recursive_func, recurse_forever),
                                           (recursive_func_with_if, recurse_through_an_if)])
def test_recursive_func_is_an_error_at_the_recursive_call(kernel, helper):
    """Not at `<string>:3` (a dataclass __init__ where the stack ran out): at the user's recursive call."""
    with pytest.raises(EnigmaError) as info:
        enigma.compile(kernel)
    assert info.value.message.startswith(f"RecursionError while tracing kernel {kernel.name!r}: maximum "
                                         "recursion depth exceeded")
    assert (info.value.file, info.value.line) == (__file__, marked_line(helper.fn))
    assert "recursion must stop on a Python (compile-time) condition" in info.value.hint


def test_a_250_term_expression_compiles_and_runs(tmp_path):
    terms = " + ".join(["a[i]"] * 250)
    path = tmp_path / "deep_expression.py"
    path.write_text("import enigma\nfrom enigma import Tensor, float32\n\n\n@enigma.kernel\n"
                    "def k(a: Tensor[float32], o: Tensor[float32]):\n    i = enigma.thread_idx().x\n"
                    f"    if i < 4:\n        o[i] = {terms}\n")
    spec = importlib.util.spec_from_file_location("deep_expression", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    compiled = enigma.compile(mod.k)
    a, o = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    compiled(a, o, grid=(1, 1, 1), block=(4, 1, 1), device="cpu")
    assert o.tolist() == (a * 250).tolist()
