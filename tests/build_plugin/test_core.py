"""The core's package cache: what its key covers, and a warm build that imports no compiler."""
from __future__ import annotations

import subprocess
import sys

from buildutil import fixture_example_copy, fixture_private_cache  # noqa: F401

from enigma_build import config, core, discover

WARM = """
import sys
from enigma_build import config, core
r = core.build(config.from_table(sys.argv[1], {}), log=lambda _: None)
assert r.packages[0].cached is (sys.argv[2] == "warm"), r.packages[0].cached
print(sorted(m for m in sys.modules if m == "enigma" or m.startswith(("enigma.", "_enigma_build_"))))
"""


def test_warm_build_imports_neither_enigma_nor_kernel_modules(example_copy):
    cold = subprocess.run([sys.executable, "-c", WARM, str(example_copy), "cold"], capture_output=True,
                          text=True, check=True).stdout
    assert "'enigma'" in cold
    warm = subprocess.run([sys.executable, "-c", WARM, str(example_copy), "warm"], capture_output=True,
                          text=True, check=True).stdout
    # only the two leaf modules of the settings (they import nothing of enigma), never the compiler
    assert warm.strip() == "['enigma.cache', 'enigma.options']"


def test_cache_key_covers_kernel_files_and_settings(example_copy):
    def key(table=None):
        s = config.from_table(example_copy, table or {})
        found = discover.scan(s)
        return core.cache_key("example_pkg", found, s)

    base = key()
    assert key() == base
    assert key({"msl-version": "3.2", "macos-target": "15.0"}) != base
    assert key({"fast-math": True}) != base
    assert key({"vec-width": {"saxpy": 2}}) != base
    (example_copy / "src/example_pkg/__init__.py").write_text("# not a kernel module\n")
    assert key() == base
    k = example_copy / "src/example_pkg/kernels.py"
    k.write_text(k.read_text() + "\n# an edit\n")
    assert key() != base
