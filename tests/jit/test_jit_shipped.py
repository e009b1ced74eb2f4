"""Shipped jit entries: every zoo jit compiled as enigma-build compiles it (TensorSpecs from its
annotations, kernels named after the jit), written into a package whose __init__ refuses to be
imported, loaded back by enigma_runtime.load from the manifest alone and called with the jit's own
arguments at three sizes against numpy; version-1 manifests still load."""
from __future__ import annotations

import json
import sys

import enigma_runtime
import numpy as np
import pytest
import zoo

import enigma
from enigma.artifacts import ENTRY_KEY, render, write_files

PKG = "enigma_jit_shipped_pkg"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from enigma_build import frontend
    from enigma_build.config import Settings

    root = tmp_path_factory.mktemp("site")
    settings = Settings(root=root)
    records = []
    for case in zoo.JITS:
        records += frontend.compile_all(case.jit, settings)  # the build's own path
    for e in zoo.ZOO:
        records += frontend.compile_all(e.kernel, settings)  # and the kernels on their own
    pkg = root / PKG
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('loading kernels must not import the package')\n")
    write_files(pkg / "_enigma", render(PKG, records, metallib=None, msl_version="3.1", macos_target="14.0",
                                        enigma_version="0"))
    sys.path.insert(0, str(root))
    yield pkg
    sys.path.remove(str(root))


def test_the_manifest_lists_every_entry_and_kernel(package):
    man = json.loads((package / "_enigma" / "manifest.json").read_text())
    assert man["schema"] == 2 and sorted(man["entries"]) == sorted(c.jit.name for c in zoo.JITS)
    assert not any(ENTRY_KEY in s for specs in man["kernels"].values() for s in specs)
    assert man["entries"]["add"]["file"].endswith("zoo.py")
    lib = enigma_runtime.load(PKG)
    assert sorted(lib.entries()) == sorted(man["entries"]) and "add" in lib and "vector_add" in lib
    assert "enigma_jit_shipped_pkg" not in sys.modules  # nothing of the package was imported


@pytest.mark.parametrize("size", [0, 1, 2])
@pytest.mark.parametrize("name", [c.name for c in zoo.JITS])
def test_every_zoo_jit_from_the_package(package, name, size):
    case = zoo.JIT_BY_NAME[name]
    entry = enigma_runtime.load(PKG)[case.jit.name]
    ins = case.make_inputs(np.random.default_rng(size), size)
    args = [np.copy(x) if isinstance(x, np.ndarray) else x for x in ins]
    want = case.expect(*[np.copy(x) if isinstance(x, np.ndarray) else x for x in ins])
    got = entry(*args, device="cpu")
    for key, value in want.items():
        np.testing.assert_allclose(got if key == "return" else args[key], value, rtol=case.rtol,
                                   atol=case.atol)


def test_the_launched_kernel_stays_loadable_under_its_own_name(package):
    k = enigma_runtime.load(PKG, "vector_add")
    a, b, c = np.arange(10, dtype=np.float32), np.ones(10, np.float32), np.zeros(10, np.float32)
    k(a, b, c, 10, grid=(1, 1, 1), block=(256, 1, 1), device="cpu")  # its own arguments
    np.testing.assert_array_equal(c, a + 1)
    jit_kernels = enigma_runtime.load(PKG).kernel("add")  # the jit's own compiled kernel, by its name
    assert jit_kernels.kernel_name == "enigma_kernel_add"


def test_version_1_manifests_keep_loading(tmp_path, monkeypatch):
    """A schema-1 manifest (as enigma 0.1 wrote it: no entries) loads and runs."""
    ck = enigma.compile(zoo.vector_add)
    files = render("v1_pkg", [ck], metallib=None, msl_version="3.1", macos_target="14.0",
                   enigma_version="0.1.0")
    doc = json.loads(files["manifest.json"])
    doc["schema"] = 1
    del doc["entries"]
    files["manifest.json"] = json.dumps(doc).encode()
    write_files(tmp_path / "v1_pkg" / "_enigma", files)
    monkeypatch.syspath_prepend(str(tmp_path))
    lib = enigma_runtime.load(tmp_path / "v1_pkg")
    assert lib.manifest.schema == 1 and lib.entries() == []
    a = np.arange(5, dtype=np.float32)
    c = np.zeros(5, np.float32)
    lib["vector_add"](a, a, c, 5, grid=(1, 1, 1), block=(256, 1, 1), device="cpu")
    np.testing.assert_array_equal(c, 2 * a)


def test_a_schema_1_manifest_with_entries_ignores_nothing_silently(tmp_path):
    """Entries are a schema-2 key: a manifest that says schema 2 has them validated (a bad one is a
    ManifestError naming the entry), never half-loaded."""
    ck = enigma.compile(zoo.add, *[enigma.TensorSpec(enigma.float32, ("n",))] * 3, name="add")
    files = render("bad_pkg", ck.parts, metallib=None, msl_version="3.1", macos_target="14.0",
                   enigma_version="0", entries={"add": ck.entry})
    doc = json.loads(files["manifest.json"])
    doc["entries"]["add"]["launches"][0]["cases"][0]["kernel_name"] = "enigma_kernel_nope"
    files["manifest.json"] = json.dumps(doc).encode()
    write_files(tmp_path / "bad_pkg" / "_enigma", files)
    with pytest.raises(enigma_runtime.ManifestError, match="entry 'add'.*enigma_kernel_nope"):
        enigma_runtime.load(tmp_path / "bad_pkg")
