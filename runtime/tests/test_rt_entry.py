"""Jit entries (FORMAT.md section 7) on the CPU executor, written by hand: argument checks, conditions,
cases picked per call, temporaries, and the validation of malformed entries."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from enigma_runtime import Kernel, ManifestError
from enigma_runtime.entry import Entry, validate_entry
from rt_fixtures import vector_add_kernel

N = {"dim": ["a", 0]}
GRID = [{"op": "ceil_div", "args": [N, 256]}, 1, 1]


def entry_doc(**over) -> dict:
    doc = {"name": "add", "file": "pkg/k.py", "line": 3,
           "params": [{"name": "a", "kind": "tensor", "dtype": "float32", "shape": ["n"]},
                      {"name": "b", "kind": "tensor", "dtype": "float32", "shape": ["n"]},
                      {"name": "c", "kind": "tensor", "dtype": "float32", "shape": ["n"]}],
           "launches": [{"cases": [{"kernel": "vector_add", "kernel_name": "enigma_kernel_vector_add",
                                    "args": [{"tensor": "a"}, {"tensor": "b"}, {"tensor": "c"}, N],
                                    "grid": GRID, "block": [256, 1, 1]}]}],
           "returns": None}
    doc.update(over)
    return doc


@pytest.fixture
def kernels():
    ks = {name: Kernel.from_spec(*vector_add_kernel(name=name), "src") for name in ("vector_add", "other")}
    calls = []

    def resolve(kernel, kernel_name):
        calls.append(kernel)
        k = ks[kernel]
        return k, k.specs[0]
    return resolve, calls


def test_the_entry_computes_the_kernel_arguments_and_grid(kernels):
    e = Entry(entry_doc(), kernels[0])
    for n in (1, 300, 1000):
        a, b, c = np.arange(n, dtype=np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)
        assert e(a, b, c, device="cpu") is c
        np.testing.assert_array_equal(c, a + 1)
    assert "add(a: float32[n], b: float32[n], c: float32[n]), 1 launch" in repr(e)


def test_argument_errors_name_the_argument(kernels):
    e = Entry(entry_doc(), kernels[0])
    x = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"takes 3 arguments \(a, b, c\), got 2"):
        e(x, x)
    with pytest.raises(TypeError, match="argument 'b' has dtype float64, expected float32"):
        e(x, x.astype(np.float64), x)
    with pytest.raises(ValueError, match="symbolic size 'n' disagrees"):
        e(x, x, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="rank 2"):
        e(x, x, np.zeros((2, 2), np.float32))


def test_non_contiguous_arguments_are_copied_back(kernels):
    e = Entry(entry_doc(), kernels[0])
    a = np.arange(20, dtype=np.float32)[::2]
    c = np.zeros(20, np.float32)[::2]
    e(a, a, c, device="cpu")
    np.testing.assert_array_equal(c, 2 * a)


def test_cases_are_picked_by_their_condition_at_every_call(kernels):
    resolve, calls = kernels
    launch = entry_doc()["launches"][0]["cases"][0]
    small = {**launch, "when": {"op": "le", "args": [N, 8]}}
    big = {**launch, "kernel": "other", "kernel_name": "enigma_kernel_other",
           "when": {"op": "eq", "args": [{"op": "le", "args": [N, 8]}, 0]}}
    e = Entry(entry_doc(launches=[{"cases": [small, big]}]), resolve)
    x = np.zeros(8, np.float32)
    e(x, x, x.copy(), device="cpu")
    y = np.zeros(9, np.float32)
    e(y, y, y.copy(), device="cpu")
    assert calls == ["vector_add", "other"]
    none = Entry(entry_doc(launches=[{"cases": [small]}]), resolve)
    with pytest.raises(Exception, match="no case's condition holds"):
        none(y, y, y.copy(), device="cpu")


def test_requires_refuses_other_sizes(kernels):
    req = [{"expr": {"op": "eq", "args": [N, 4]}, "text": "a.shape[0] == 4", "message": "used in Python",
            "line": 7}]
    e = Entry(entry_doc(requires=req), kernels[0])
    x = np.zeros(4, np.float32)
    e(x, x, x.copy(), device="cpu")
    y = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"a.shape\[0\] == 4 \(used in Python; pkg/k.py:7\)"):
        e(y, y, y.copy(), device="cpu")


@pytest.mark.parametrize("path, value, message", [
    (("params", 0, "kind"), "matrix", "'kind' must be tensor, scalar or const"),
    (("params", 1, "dtype"), "float64", "unknown dtype 'float64'"),
    (("launches",), [], "'launches' must be a non-empty list"),
    (("launches", 0, "cases", 0, "block"), [0, 1, 1], "3 positive ints"),
    (("launches", 0, "cases", 0, "grid"), [{"op": "pow", "args": [2, 3]}, 1, 1], "unknown op 'pow'"),
    (("launches", 0, "cases", 0, "args", 0), {"tensor": "z"}, "names no tensor parameter"),
    (("returns",), {"scalar": "a"}, "must be {'tensor': name}"),
    # found by scripts/fuzz_artifacts.py: TypeErrors before these were named
    (("params", 1, "dtype"), {}, "unknown dtype {}"),
    (("launches", 0, "cases", 0, "args", 0), {"tensor": {}}, "names no tensor parameter"),
    (("requires",), 2, "'requires' must be a list"),
    (("temps",), False, "'temps' must be a list"),
])
def test_malformed_entries_are_refused_naming_the_key(path, value, message):
    doc = copy.deepcopy(entry_doc())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ManifestError, match=message):
        validate_entry(doc, "manifest.json, entry 'add'")


def test_an_entry_naming_a_missing_kernel_is_refused_with_the_manifest():
    with pytest.raises(ManifestError, match="no kernel 'vector_add' with the specialisation"):
        validate_entry(entry_doc(), "m", kernels={"other": [{"kernel_name": "enigma_kernel_other"}]})
