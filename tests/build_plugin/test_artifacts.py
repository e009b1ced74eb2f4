"""enigma.artifacts: FORMAT.md sections 1-3, deterministic bytes, hashes, specialisations."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pytest

from enigma.artifacts import render, write_artifacts


@dataclass
class CK:  # the attributes the writer reads from a CompiledKernel
    kernel_name: str
    metal_source: str
    signature: dict = field(default_factory=dict)
    ir_json: dict = field(default_factory=dict)


def ck(name, kname, dtype="float32"):
    sig = {"name": name, "kernel_name": kname, "file": "pkg/k.py", "line": 3,
           "args": [{"name": "a", "kind": "tensor", "dtype": dtype, "rank": 1, "shape": ["n"],
                     "access": "read", "buffer": 0, "dims_offset": 0}],
           "dims_buffer": 1, "block": [256, 1, 1], "grid": [{"sym": "n"}, 1, 1],
           "grid_unit": "threadgroups", "threadgroup_memory": 0, "vec_width": 0, "msl_version": "3.1",
           "source_hash": "ab"}
    return CK(kname, f"// {kname}\r\nkernel void {kname}() {{}}", sig,
              {"format": "enigma-ir", "version": 1, "name": name, "body": [{"op": "const"}]})


def test_layout_manifest_and_hashes(tmp_path):
    out = write_artifacts(tmp_path / "pkg", "pkg", [ck("add", "enigma_kernel_add"),
                                                    ck("add", "enigma_kernel_add_f16", "float16"),
                                                    ck("mul", "enigma_kernel_mul")],
                          metallib=b"MTLB", msl_version="3.1", macos_target="14.0")
    assert out == tmp_path / "pkg" / "_enigma"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "manifest.json", "kernels.metallib", "enigma_kernel_add.metal", "enigma_kernel_add.ir.json",
        "enigma_kernel_add_f16.metal", "enigma_kernel_add_f16.ir.json", "enigma_kernel_mul.metal",
        "enigma_kernel_mul.ir.json"])
    man = json.loads((out / "manifest.json").read_text())
    assert man["schema"] == 2 and man["package"] == "pkg" and man["metallib"] == "kernels.metallib"
    assert [s["kernel_name"] for s in man["kernels"]["add"]] == ["enigma_kernel_add", "enigma_kernel_add_f16"]
    assert man["kernels"]["add"][1]["metal"] == "enigma_kernel_add_f16.metal"
    assert man["kernels"]["mul"][0]["ir"] == "enigma_kernel_mul.ir.json"
    for name, digest in man["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert b"\r" not in (out / "enigma_kernel_add.metal").read_bytes()


def test_deterministic_and_replaces_stale_files(tmp_path):
    kw = dict(metallib=None, msl_version="3.1", macos_target="14.0")
    a = render("pkg", [ck("add", "enigma_kernel_add"), ck("mul", "enigma_kernel_mul")], **kw)
    b = render("pkg", [ck("add", "enigma_kernel_add"), ck("mul", "enigma_kernel_mul")], **kw)
    assert a == b
    assert json.loads(a["manifest.json"])["metallib"] is None
    assert a["manifest.json"].endswith(b"}\n") and list(json.loads(a["manifest.json"])) == sorted(
        json.loads(a["manifest.json"]))
    write_artifacts(tmp_path, "pkg", [ck("add", "enigma_kernel_add"), ck("mul", "enigma_kernel_mul")], **kw)
    write_artifacts(tmp_path, "pkg", [ck("add", "enigma_kernel_add")], **kw)
    assert not (tmp_path / "_enigma" / "enigma_kernel_mul.metal").exists()


def test_refuses_clashing_or_unsafe_names():
    kw = dict(metallib=None, msl_version="3.1", macos_target="14.0")
    with pytest.raises(ValueError, match="share the Metal function name 'enigma_kernel_add'"):
        render("pkg", [ck("add", "enigma_kernel_add"), ck("add2", "enigma_kernel_add")], **kw)
    with pytest.raises(ValueError, match="not a bare file name"):
        render("pkg", [ck("x", "../evil")], **kw)
