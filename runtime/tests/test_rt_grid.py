"""Grid expressions (FORMAT.md): evaluation from a call's arguments, and rejection of anything else."""
from __future__ import annotations

import pytest
from enigma_runtime.errors import GridError
from enigma_runtime.grid import evaluate, to_str, validate

SIZES, SHAPES, SCALARS = {"n": 1000, "m": 7}, {"a": (1000, 3)}, {"k": 5, "f": 2.5}


def ev(e):
    return evaluate(e, SIZES, SHAPES, SCALARS)


def op(name, a, b):
    return {"op": name, "args": [a, b]}


@pytest.mark.parametrize("expr, want", [
    (4, 4), ({"sym": "n"}, 1000), ({"dim": ["a", 1]}, 3), ({"arg": "k"}, 5),
    (op("ceil_div", {"sym": "n"}, 256), 4), (op("floordiv", -7, 2), -4), (op("ceil_div", -7, 2), -3),
    (op("mod", -7, 3), 2), (op("min", {"sym": "m"}, 3), 3), (op("max", 1, {"arg": "k"}), 5),
    (op("sub", op("mul", 3, 4), op("add", 1, 1)), 10),
    (op("ge", {"dim": ["a", 0]}, 1000), 1), (op("lt", {"sym": "m"}, 7), 0),
    (op("and", op("ne", 1, 2), op("eq", {"arg": "k"}, 5)), 1), (op("or", 0, op("le", 3, 2)), 0),
])
def test_evaluate(expr, want):
    validate(expr)
    assert ev(expr) == want


@pytest.mark.parametrize("expr, problem", [
    ({"sym": "q"}, "symbolic size 'q'"), ({"dim": ["b", 0]}, "no tensor argument 'b'"),
    ({"dim": ["a", 2]}, "with axis 2"), ({"dim": ["a", -1]}, "with axis -1"),
    ({"arg": "zz"}, "no scalar argument 'zz'"),
    ({"arg": "f"}, "not an integer"), (op("pow", 2, 3), "unknown op 'pow'"),
    ({"op": "add", "args": [1]}, "two expressions"), (op("floordiv", 1, 0), "division by zero"),
    ({"lambda": "x"}, "unknown grid expression node"), ("n", "not an int or an object"),
    (True, "not an int"), (1.5, "not an int"), ({"sym": "n", "extra": 1}, "unknown grid expression node"),
])
def test_rejected(expr, problem):
    with pytest.raises(GridError, match=problem):
        ev(expr)


def test_validate_rejects_structurally_bad_nodes():
    for bad in ({"op": "exec", "args": [1, 2]}, {"sym": 3}, {"dim": "a"}, [1, 2], None):
        with pytest.raises(GridError):
            validate(bad)


def test_to_str():
    assert to_str(op("ceil_div", {"sym": "n"}, 256)) == "ceil_div(n, 256)"
    assert to_str(op("add", {"dim": ["a", 0]}, {"arg": "k"})) == "(a.shape[0] + k)"


def test_requires_are_checked_before_every_launch():
    import numpy as np
    from enigma_runtime import Kernel
    from enigma_runtime.errors import ManifestError
    from enigma_runtime.manifest import validate_spec
    from rt_fixtures import vector_add_kernel

    spec, ir = vector_add_kernel()
    need = {"expr": op("ge", {"arg": "n"}, 4), "text": "n >= 4", "message": "tile fits", "line": 9}
    k = Kernel.from_spec({**spec, "requires": [need]}, ir, "")
    a = np.ones(8, np.float32)
    c = np.zeros(8, np.float32)
    k(a, a, c, 8, grid=(1, 1, 1), block=(8, 1, 1), device="cpu")
    assert c.tolist() == [2.0] * 8
    with pytest.raises(ValueError, match=r"break a condition.*n >= 4 \(tile fits; required at .*:9\)"):
        k(a, a, c, 3, grid=(1, 1, 1), block=(8, 1, 1), device="cpu")
    for bad in ({"expr": {"exec": "x"}, "text": "t", "message": "m", "line": 1}, {"expr": 1}, "n >= 4"):
        with pytest.raises(ManifestError, match="'requires'"):
            validate_spec({**spec, "requires": [bad]}, "test")
