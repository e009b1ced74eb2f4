"""Compile time of nested traced `if`s, depth 1..60: the control-flow rewrite keeps each branch body
once, so the time grows linearly with the depth. Baseline measured in the same run: a kernel with the
same number of traced `if`s one after the other (not nested). Prints milliseconds (rewrite + trace +
passes + Metal emission) and the ratio nested / sequential.

    .venv/bin/python bench/nested_if.py [max_depth]
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType


def kernel_source(depth: int, nested: bool = True) -> str:
    """A kernel with `depth` traced `if`s, nested (each inside the previous one's then-branch) or in a
    row. Nested: out[i] = clamp(x[i], 0, depth); in a row: out[i] = the number of k < depth with x[i] > k."""
    lines = ["import enigma", "from enigma import Tensor, int32", "", "", "@enigma.kernel",
             "def k(x: Tensor[int32], out: Tensor[int32]):",
             "    i = enigma.thread_idx().x", "    v = x[i]", "    acc = 0"]
    for d in range(depth):
        pad = "    " * (d + 1 if nested else 1)
        lines += [f"{pad}if v > {d}:", f"{pad}    acc += 1"]
        if not nested:
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    acc += 0")
    lines.append("    out[i] = acc")
    return "\n".join(lines) + "\n"


def load(depth: int, directory: Path, nested: bool = True) -> ModuleType:
    """Write the kernel to a .py file (kernels need their source on disk) and import it."""
    name = f"nested_if_{'n' if nested else 's'}{depth}"
    path = directory / f"{name}.py"
    path.write_text(kernel_source(depth, nested))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compile_ms(mod: ModuleType) -> float:
    from enigma import passes
    from enigma.backends import msl
    t = time.perf_counter()
    msl.emit(passes.run(mod.k.trace()))
    return (time.perf_counter() - t) * 1e3


def main() -> None:
    max_depth = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    print(f"{'depth':>5s} {'nested ms':>10s} {'sequential ms':>14s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for depth in sorted({1, 2, 5, 10, 12, 14, 20, 30, 40, 50, max_depth}):
            if depth > max_depth:
                continue
            nested = compile_ms(load(depth, Path(tmp), True))
            flat = compile_ms(load(depth, Path(tmp), False))
            print(f"{depth:5d} {nested:10.1f} {flat:14.1f} {nested / flat:6.2f}")


if __name__ == "__main__":
    main()
