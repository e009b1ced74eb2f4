"""`enigma_leaf`: load one dependency-free module of enigma (options, cache) without the compiler."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def enigma_leaf(name: str) -> ModuleType:
    """`enigma.<name>` for a module that imports nothing of enigma (options, cache), without running
    enigma/__init__.py, which imports the whole compiler (~150 ms a warm build does not need). The
    module is registered under its real name, so a later `import enigma.<name>` gets the same object."""
    full = f"enigma.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if "enigma" in sys.modules:
        return importlib.import_module(full)
    spec = importlib.util.find_spec("enigma")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        raise ImportError("enigma is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
    leaf = importlib.util.spec_from_file_location(full, path)
    assert leaf is not None and leaf.loader is not None
    module = importlib.util.module_from_spec(leaf)
    sys.modules[full] = module
    try:
        leaf.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
    return module
