"""Editable installs: after a kernel module is edited, loading the package warns that its artifacts
are stale, naming the file and the command that rebuilds them (runtime/enigma_runtime/stale.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from buildutil import fixture_example_copy, fixture_private_cache, hatch_build, no_editables  # noqa: F401

LOAD = """
import sys, warnings
import enigma_runtime
warnings.simplefilter("always")
lib = enigma_runtime.load(sys.argv[1])
lib2 = enigma_runtime.load(sys.argv[1])  # warned once per manifest, not per load
print(lib["vector_add"].name)
print(sorted(m for m in sys.modules if m == "enigma" or m.startswith("enigma.")))
"""


def _load(pkg):
    return subprocess.run([sys.executable, "-c", LOAD, str(pkg)], capture_output=True, text=True, check=True)


def test_edited_kernel_module_warns_at_load(example_copy, tmp_path):
    no_editables(example_copy)
    hatch_build(example_copy, tmp_path / "dist", version="editable")  # artifacts into the source tree
    pkg = example_copy / "src" / "example_pkg"
    man = json.loads((pkg / "_enigma" / "manifest.json").read_text())
    assert list(man["sources"]) == ["example_pkg/kernels.py"]
    fresh = _load(pkg)
    assert "stale" not in fresh.stderr and fresh.stdout.splitlines() == ["vector_add", "[]"]
    k = pkg / "kernels.py"
    k.write_text(k.read_text().replace("c[i] = a[i] + b[i]", "c[i] = a[i] - b[i]"))
    edited = _load(pkg)
    assert edited.stderr.count("StaleKernelWarning") == 1
    kernels = ("add, add_f16, axpy, block_sums, count_values, histogram, matmul, matmul_tiled, saxpy, "
               "softmax, softmax_rows, sum_all, total, vector_add")
    assert f"{k} (kernels {kernels}) changed" in edited.stderr
    assert f"Rebuild them: pip install -e {example_copy}" in edited.stderr
    assert edited.stdout.splitlines()[1] == "[]"  # the check never imports the compiler
    hatch_build(example_copy, tmp_path / "dist", version="editable")
    assert "stale" not in _load(pkg).stderr


def test_wheel_without_sources_or_modules_loads_quietly(example_copy, tmp_path):
    import zipfile
    whl = hatch_build(example_copy, tmp_path / "dist")
    site = tmp_path / "site"
    with zipfile.ZipFile(whl) as zf:
        zf.extractall(site)
    (site / "example_pkg" / "kernels.py").unlink()  # a wheel that ships only the artifacts
    assert "stale" not in _load(site / "example_pkg").stderr
