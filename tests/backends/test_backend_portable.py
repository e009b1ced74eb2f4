"""Portable IR (FORMAT.md section 4) and signature metadata (section 3): exact keys, round trip through
json_to_ir, the binding ABI (buffers, dims buffer, dims offsets, access) and the source hash."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
import handir  # noqa: E402
import zoo  # noqa: E402

from enigma import ir, passes  # noqa: E402
from enigma.backends import msl, portable  # noqa: E402

KERNELS = [(e.name, lambda e=e: e.kernel.trace()) for e in zoo.ZOO] + [(f.__name__, f) for f in handir.ALL]


@pytest.mark.parametrize("name, make", KERNELS, ids=[n for n, _ in KERNELS])
def test_json_round_trip(name, make):
    for k in (make(), passes.run(make())):
        j = portable.ir_to_json(k)
        text = json.dumps(j)  # plain JSON, no NaN/inf objects needed
        back = portable.json_to_ir(json.loads(text))
        assert portable.ir_to_json(back) == j
        assert msl.emit(back) == msl.emit(k)
        assert ir.dump(back) == ir.dump(k)


def test_ir_json_shape():
    j = portable.ir_to_json(passes.run(zoo.vector_add.trace()))
    assert list(j) == ["format", "version", "name", "kernel_name", "file", "line", "args", "shared",
                       "vec_width", "body"]
    assert j["format"] == "enigma-ir" and j["version"] == 1 and j["kernel_name"] == "enigma_kernel_vector_add"
    ops = {o["op"]: o for o in j["body"]}
    assert ops["add"]["in"] and ops["add"]["out"] and ops["add"]["types"] == ["int32"]
    assert ops["if"]["regions"][0]["body"][-1] == {"op": "yield", "line": ops["if"]["line"]} or \
        ops["if"]["regions"][0]["body"][-1]["op"] == "yield"
    assert "regions" not in ops["add"] and "attrs" not in ops["add"]
    v = portable.ir_to_json(passes.run(zoo.saxpy.trace(), 4))
    assert v["vec_width"] == 4
    types = {t for op in _walk(v["body"]) for t in op.get("types", [])}
    assert "float32x4" in types


def _walk(ops):
    for op in ops:
        yield op
        for r in op.get("regions", []):
            yield from _walk(r["body"])


def test_signature_bindings():
    k = passes.run(zoo.matmul.trace())
    grid = [{"op": "ceil_div", "args": [{"sym": "n"}, 16]}, 3, 1]
    sig = portable.signature(k, block=(16, 16, 1), grid=grid)
    assert set(sig) == {"name", "kernel_name", "file", "line", "args", "dims_buffer", "block", "grid",
                        "grid_unit", "threadgroup_memory", "vec_width", "msl_version", "source_hash"}
    a, b, c = sig["args"]
    assert (a["buffer"], b["buffer"], c["buffer"]) == (0, 1, 2) and sig["dims_buffer"] == 3
    assert (a["dims_offset"], b["dims_offset"], c["dims_offset"]) == (0, 4, 8)
    assert a["shape"] == ["m", "k"] and a["rank"] == 2 and a["access"] == "read" and c["access"] == "write"
    assert sig["block"] == [16, 16, 1] and sig["grid"][1:] == [3, 1] and sig["grid_unit"] == "threadgroups"
    assert sig["threadgroup_memory"] == 2 * 16 * 16 * 4 and sig["msl_version"] == "3.1"


def test_static_and_scalar_args_take_no_dims_slot():
    sig = portable.signature(handir.histogram(), block=None, grid=None)
    offs = [(a["name"], a["dims_offset"]) for a in sig["args"]]
    assert offs == [("data", 0), ("bins", None), ("mx", None), ("mn", None), ("total", None)]
    assert sig["dims_buffer"] == 5 and sig["block"] is None and sig["grid"] is None
    sax = portable.signature(zoo.saxpy.trace(), block=None, grid=None)
    assert [(a["kind"], a["buffer"], a["dims_offset"]) for a in sax["args"]] == [
        ("scalar", 0, None), ("tensor", 1, 0), ("tensor", 2, 2), ("scalar", 3, None)]
    assert [a["access"] for a in sax["args"]] == ["read", "read", "readwrite", "read"]


def test_all_static_kernel_has_no_dims_buffer():
    k = handir.kernel("st", [handir.tensor("a", shape=(8,)), handir.tensor("b", shape=(8,), access="write")],
                      lambda b: b.op("store", [b.const(0, handir.I32), b.val("load", b.const(1, handir.I32),
                                                                             type=handir.F32, tensor="a")],
                                     attrs={"tensor": "b"}))
    assert portable.signature(k, block=None, grid=None)["dims_buffer"] is None
    assert "enigma_dims" not in msl.emit(k)


def test_access_is_derived_from_the_body():
    acc = portable.tensor_access(handir.histogram())
    assert acc == {"data": "read", "bins": "readwrite", "mx": "readwrite", "mn": "readwrite",
                   "total": "readwrite"}


def test_source_hash_is_stable_and_content_keyed():
    k = passes.run(zoo.vector_add.trace())
    h1 = portable.signature(k, block=None, grid=None)["source_hash"]
    h2 = portable.signature(portable.json_to_ir(portable.ir_to_json(k)), block=None, grid=None)["source_hash"]
    assert h1 == h2 and len(h1) == 64
    other = portable.signature(passes.run(zoo.saxpy.trace()), block=None, grid=None)["source_hash"]
    assert other != h1
    src = msl.emit(k)
    assert portable.source_hash(src, portable.ir_to_json(k)) == h1
    assert portable.source_hash(src + " ", portable.ir_to_json(k)) != h1


def test_json_to_ir_rejects_bad_input():
    j = portable.ir_to_json(zoo.vector_add.trace())
    with pytest.raises(ValueError, match="not enigma-ir"):
        portable.json_to_ir({**j, "version": 2})
    bad = json.loads(json.dumps(j))
    bad["body"][0]["in"] = [987654]
    with pytest.raises(ValueError, match="before its definition"):
        portable.json_to_ir(bad)
    assert portable.parse_type("float16x4") == ir.Type(portable.dtypes.float16, 4)
