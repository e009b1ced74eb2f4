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
    for k in {id(e.kernel): e.kernel for e in zoo.ZOO}.values():  # (two entries may share a kernel)
        records += frontend.compile_all(k, settings)  # and the kernels on their own
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
    assert jit_kernels.kernel_name == "enigma_kernel_add_jit"


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


GENERIC_PROJECT = '''\
import enigma
from enigma import Tensor, float16, float32, int32


@enigma.kernel(block=(64, 1, 1), grid=lambda x, y, n: (enigma.ceil_div(n, 64), 1, 1),
               specialize=[{"x": float16, "y": float16}, {"x": float32, "y": float32}])
def twice(x: Tensor[None], y: Tensor[None], n: int32):
    i = enigma.block_idx().x * 64 + enigma.thread_idx().x
    if i < n:
        y[i] = x[i] + x[i]


@enigma.jit
def twice_f16(x: Tensor[float16, ("n",)], y: Tensor[float16, ("n",)]):  # noqa: F821
    twice(x, y, x.shape[0]).launch()
'''


def test_a_dtype_generic_kernel_with_specialisations_builds_and_runs(tmp_path, monkeypatch):
    """enigma-build's core on a project whose kernel is Tensor[None] with specialize=: it ships the
    specialisations (the runtime picks by dtype), and a jit launching it picks the one that fits."""
    from enigma_build import config, core

    root = tmp_path / "proj"
    (root / "gen_pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "gen-pkg"\nversion = "0"\n'
                                         'dependencies = ["enigma-runtime"]\n[tool.enigma]\n')
    (root / "gen_pkg" / "__init__.py").write_text("")
    (root / "gen_pkg" / "kernels.py").write_text(GENERIC_PROJECT)
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "1")
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    result = core.build(config.load(root), log=lambda _: None)
    core.write(result, lambda name: root / name)
    lib = enigma_runtime.load(root / "gen_pkg")
    k = lib["twice"]
    assert [s.spec["kernel_name"] for s in k.specs] == ["enigma_kernel_twice_f16", "enigma_kernel_twice_f32"]
    for dtype in (np.float16, np.float32):
        x = np.arange(100).astype(dtype)
        y = np.zeros_like(x)
        k(x, y, 100, device="cpu")
        np.testing.assert_array_equal(y, 2 * x)
    x = np.arange(70).astype(np.float16)
    y = lib["twice_f16"](x, np.zeros_like(x), device="cpu")
    np.testing.assert_array_equal(y, 2 * x)
