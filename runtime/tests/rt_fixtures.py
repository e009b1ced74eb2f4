"""Helpers of the runtime's tests: a vector_add kernel and fake installed packages with `_enigma/`."""
from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # irb.py, the IR builder

from irb import ceil_div, gid, kernel, scalar, tensor  # noqa: E402


def vector_add_kernel(dtype: str = "float32", name: str = "vector_add") -> tuple[dict, dict]:
    def body(b):
        i = gid(b)
        n = b.v("param", t="int32", name="n")

        def then():
            s = b.v("add", b.v("load", i, t=dtype, tensor="a"), b.v("load", i, t=dtype, tensor="b"), t=dtype)
            b.op("store", i, s, attrs={"tensor": "c"}, line=7)
        b.if_(b.v("lt", i, n, t="bool"), [], then)
    return kernel(name, [tensor("a", dtype, ["n"]), tensor("b", dtype, ["n"]),
                         tensor("c", dtype, ["n"], "write"), scalar("n")], body,
                  grid=[ceil_div({"sym": "n"}, 256), 1, 1])


def write_package(root: Path, package: str, kernels: dict[str, list[tuple[dict, dict]]], *,
                  metallib: bytes | None = None, schema: int = 1) -> Path:
    """Write `root/package/` with `_enigma/` (manifest, .metal, .ir.json) as enigma-build would."""
    pkg = root / package
    adir = pkg / "_enigma"
    adir.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('loading kernels must not import the package')\n")
    files: dict[str, str] = {}

    def put(name: str, data: bytes) -> str:
        (adir / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
        return name

    entries = {}
    for kname, specs in kernels.items():
        entries[kname] = []
        for i, (spec, ir) in enumerate(specs):
            stem = spec["kernel_name"] + (f"_{i}" if i else "")
            msl = f"// MSL of {stem}\nkernel void {spec['kernel_name']}();\n"
            spec = dict(spec, metal=put(stem + ".metal", msl.encode()),
                        ir=put(stem + ".ir.json", json.dumps(ir).encode()))
            entries[kname].append(spec)
    if metallib is not None:
        put("kernels.metallib", metallib)
    manifest = {"schema": schema, "enigma_version": "0.1.0", "package": package, "msl_version": "3.1",
                "macos_target": "14.0", "metallib": "kernels.metallib" if metallib is not None else None,
                "files": files, "kernels": entries}
    (adir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return adir


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """make_package(name, kernels, ...) -> the `_enigma/` dir; `tmp_path` is put on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, kernels: dict[str, list[tuple[dict, dict]]] | None = None, **kw) -> Path:
        if kernels is None:
            kernels = {"vector_add": [vector_add_kernel()]}
        return write_package(tmp_path, name, kernels, **kw)
    return make
