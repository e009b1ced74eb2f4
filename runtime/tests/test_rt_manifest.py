"""Loading packages: manifest validation, lookups and their error messages."""
from __future__ import annotations

import json
import sys

import enigma_runtime
import numpy as np
import pytest
import rt_fixtures
from enigma_runtime import KernelNotFoundError, ManifestError, PackageNotFoundError
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


def _manifest(adir):
    return json.loads((adir / "manifest.json").read_text())


def _rewrite(adir, doc):
    (adir / "manifest.json").write_text(json.dumps(doc))


def test_load_library_and_kernel(make_package):
    make_package("pkg_ok", {"vector_add": [vector_add_kernel()],
                            "vector_add2": [vector_add_kernel(name="vector_add2")]})
    lib = enigma_runtime.load("pkg_ok")
    assert lib.names() == ["vector_add", "vector_add2"] and len(lib) == 2 and "vector_add" in lib
    k = lib["vector_add"]
    assert k is lib.vector_add is enigma_runtime.load("pkg_ok", "vector_add")
    assert k.name == "vector_add" and k.kernel_name == "enigma_kernel_vector_add"
    assert k.block == (256, 1, 1) and k.grid[0] == {"op": "ceil_div", "args": [{"sym": "n"}, 256]}
    assert [a["name"] for a in k.args] == ["a", "b", "c", "n"] and k.threadgroup_memory == 0
    assert "kernel void enigma_kernel_vector_add" in k.metal_source and k.metallib_bytes is None
    assert k.ir["format"] == "enigma-ir"
    assert "pkg_ok" not in sys.modules  # located with find_spec, never imported (its __init__ raises)
    a = np.arange(300, dtype=np.float32)
    c = np.zeros_like(a)
    assert k(a, a, c, 300, device="cpu") is c
    np.testing.assert_array_equal(c, 2 * a)
    assert "ceil_div(n, 256)" in repr(k)


def test_load_by_path_and_metallib(make_package):
    adir = make_package("pkg_lib", metallib=b"MTLB fake library")
    lib = enigma_runtime.load(adir.parent)
    assert lib.metallib_bytes() == b"MTLB fake library"
    assert enigma_runtime.load(adir, "vector_add").metallib_bytes == b"MTLB fake library"


def test_unknown_kernel_lists_closest_first(make_package):
    make_package("pkg_names", {n: [vector_add_kernel(name=n)] for n in ("softmax", "vector_add", "matmul")})
    with pytest.raises(KernelNotFoundError) as e:
        enigma_runtime.load("pkg_names", "vectr_add")
    msg = str(e.value)
    assert "'vectr_add'" in msg and msg.index("vector_add") < msg.index("matmul")
    with pytest.raises(AttributeError, match="vector_add"):
        _ = enigma_runtime.load("pkg_names").vectoradd


def test_unknown_package_lists_packages_with_kernels(make_package):
    make_package("pkg_present")
    with pytest.raises(PackageNotFoundError) as e:
        enigma_runtime.load("pkg_presnt")
    assert "pkg_present" in str(e.value)
    with pytest.raises(PackageNotFoundError, match="ships no _enigma"):
        enigma_runtime.load("json")


@pytest.mark.parametrize("text, problem", [
    ("{", "corrupt or truncated"), ('{"schema": 1, "files": {', "corrupt or truncated"),
    ("\xff\xfe", "corrupt or truncated"), ("[1, 2]", "top level must be an object"),
])
def test_corrupt_manifest(make_package, text, problem):
    adir = make_package("pkg_corrupt")
    (adir / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ManifestError, match=problem) as e:
        enigma_runtime.load("pkg_corrupt")
    assert "manifest.json" in str(e.value)


@pytest.mark.parametrize("schema, hint", [(3, "upgrade enigma-runtime"), (0, "rebuild"), ("1", "rebuild")])
def test_unknown_schema_names_both_versions(make_package, schema, hint):
    adir = make_package("pkg_schema")
    doc = _manifest(adir)
    doc["schema"] = schema
    _rewrite(adir, doc)
    with pytest.raises(ManifestError, match=f"schema {schema!r}.*reads schema 1 or 2.*{hint}"):
        enigma_runtime.load("pkg_schema")


def test_missing_artifact(make_package):
    adir = make_package("pkg_missing")
    (adir / "enigma_kernel_vector_add.ir.json").unlink()
    with pytest.raises(ManifestError, match="missing artifact.*enigma_kernel_vector_add.ir.json"):
        enigma_runtime.load("pkg_missing")


def test_sha256_mismatch_is_caught_on_read(make_package):
    adir = make_package("pkg_tamper")
    (adir / "enigma_kernel_vector_add.metal").write_text("// tampered")
    k = enigma_runtime.load("pkg_tamper", "vector_add")
    with pytest.raises(ManifestError, match="enigma_kernel_vector_add.metal: sha256 mismatch"):
        _ = k.metal_source


@pytest.mark.parametrize("where, name", [
    ("files", "../evil.py"), ("files", "/etc/passwd"), ("files", "sub/x.metal"), ("files", ".."),
    ("files", "C:evil"), ("metal", "../../x.metal"), ("ir", "/abs.ir.json"), ("metallib", "../lib"),
])
def test_paths_leaving_the_directory_are_refused(make_package, where, name):
    adir = make_package("pkg_traversal")
    doc = _manifest(adir)
    if where == "files":
        doc["files"][name] = "0" * 64
    elif where == "metallib":
        doc["metallib"] = name
    else:
        doc["kernels"]["vector_add"][0][where] = name
    _rewrite(adir, doc)
    with pytest.raises(ManifestError, match="not a bare file name"):
        enigma_runtime.load("pkg_traversal")


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d.update(kernels=[]), "'kernels' must be an object"),
    (lambda d: d["kernels"].update(vector_add=[]), "non-empty list"),
    (lambda d: d["kernels"]["vector_add"][0].update(grid=[{"op": "pow", "args": [2, 3]}, 1, 1]),
     "unknown op"),
    (lambda d: d["kernels"]["vector_add"][0].update(grid=[{"eval": "__import__('os')"}, 1, 1]),
     "unknown grid expression node"),
    (lambda d: d["kernels"]["vector_add"][0].update(block=[0, 1, 1]), "positive ints"),
    (lambda d: d["kernels"]["vector_add"][0]["args"][0].update(dtype="float64"), "unknown dtype 'float64'"),
    (lambda d: d["kernels"]["vector_add"][0].update(grid_unit="threads"), "grid_unit"),
    (lambda d: d["files"].update({"x.metal": "nothex"}), "not a sha256"),
    (lambda d: d["kernels"]["vector_add"][0].update(metal="other.metal"), "not listed in 'files'"),
])
def test_invalid_manifest_fields(make_package, mutate, problem):
    adir = make_package("pkg_invalid")
    doc = _manifest(adir)
    mutate(doc)
    _rewrite(adir, doc)
    with pytest.raises(ManifestError, match=problem):
        enigma_runtime.load("pkg_invalid")


def test_corrupt_ir_is_a_manifest_error(make_package):
    adir = make_package("pkg_badir")
    doc = _manifest(adir)
    import hashlib
    bad = b'{"format": "enigma-ir", "version": 7, "body": []'
    (adir / "enigma_kernel_vector_add.ir.json").write_bytes(bad)
    doc["files"]["enigma_kernel_vector_add.ir.json"] = hashlib.sha256(bad).hexdigest()
    _rewrite(adir, doc)
    with pytest.raises(ManifestError, match="ir.json: corrupt or truncated JSON"):
        _ = enigma_runtime.load("pkg_badir", "vector_add").ir


def test_manifest_is_reread_when_it_changes(make_package):
    adir = make_package("pkg_reload")
    assert enigma_runtime.load("pkg_reload").names() == ["vector_add"]
    doc = _manifest(adir)
    doc["kernels"]["renamed_kernel"] = doc["kernels"].pop("vector_add")
    _rewrite(adir, doc)
    assert enigma_runtime.load("pkg_reload").names() == ["renamed_kernel"]


def test_import_is_light():
    import subprocess
    code = ("import sys, enigma_runtime; bad = [m for m in ('enigma', 'Metal', 'objc', 'json', 'hashlib') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loading_and_running_never_imports_the_compiler(make_package):
    """A fresh interpreter loads a package and runs a kernel on the CPU: no `enigma` module appears."""
    import subprocess
    adir = make_package("pkg_no_compiler")
    code = ("import sys, numpy as np, enigma_runtime\n"
            "k = enigma_runtime.load(sys.argv[1], 'vector_add')\n"
            "a = np.arange(5, dtype=np.float32); c = np.zeros(5, np.float32)\n"
            "k(a, a, c, 5, device='cpu'); assert (c == 2 * a).all()\n"
            "print(sorted(m for m in sys.modules\n"
            "             if m == 'enigma' or m.startswith(('enigma.', 'enigma_build'))))")
    out = subprocess.run([sys.executable, "-c", code, str(adir.parent)], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
