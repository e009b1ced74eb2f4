"""enigma.compile: trace -> passes -> MSL / MLIR / portable IR + signature -> (macOS) .metallib.

Each stage is its own module (docs/ARCHITECTURE.md); this file only runs them in order and packs the
outputs into a CompiledKernel (the contract is docs/compile-api.md)."""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enigma import ir
from enigma.frontend.jit import launch_of
from enigma.frontend.kernel import Launch
from enigma.frontend.language import ceil_div

MSL_VERSION = "3.1"
MACOS_TARGET = "14.0"


@dataclass(eq=False)
class CompiledKernel:
    """One compiled kernel specialisation (what enigma.compile returns).

    grid/block: the launch configuration computed at compile time; `grid` entries are ints, or
    launch-size expressions (printing like `ceil_div(n, 256)`) when they depend on symbolic sizes;
    None when the kernel declares none (the caller gives one). Calling the CompiledKernel runs the
    *kernel's* arguments (for a @jit: the kernel it launched, not the jit function's arguments)."""

    kernel_name: str
    metallib_path: str | None
    metallib_bytes: bytes | None
    metal_source: str
    mlir_source: str | None
    grid: tuple[Any, Any, Any] | None
    block: tuple[int, int, int] | None
    signature: dict[str, Any]
    ir_json: dict[str, Any]
    ir: ir.Kernel
    launch: Launch = field(repr=False)
    work_dir: str = ""
    _runnable: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.ir.name

    def export_metal(self, path: str | os.PathLike[str]) -> str:
        """Write the Metal source to `path`; returns the resolved path."""
        p = Path(path).expanduser().resolve()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.metal_source)
        return str(p)

    def __call__(self, *args: Any, grid: Any = None, block: Any = None, device: Any = None) -> Any:
        """Run the kernel through enigma_runtime (Metal on macOS, its CPU executor elsewhere)."""
        if self._runnable is None:
            from enigma_runtime import Kernel

            self._runnable = Kernel.from_spec(self.signature, self.ir_json, self.metal_source,
                                              self.metallib_bytes)
        return self._runnable(*args, grid=grid, block=block, device=device)

    def save(self, directory: str | os.PathLike[str], package: str | None = None) -> Path:
        """Write this kernel as a package's artifacts (runtime/FORMAT.md section 1): `directory` is the
        package directory (its name is the default package name); returns `directory/_enigma`."""
        from enigma.artifacts import write_artifacts

        package = package or getattr(self.launch, "package", None) or Path(directory).resolve().name
        return write_artifacts(Path(directory), package, [self], metallib=self.metallib_bytes,
                               msl_version=MSL_VERSION, macos_target=MACOS_TARGET)


def source_hash(launch: Launch, vec_width: int) -> str:
    """sha256 of the kernel's Python source and its compile options (FORMAT.md section 3): the same
    kernel, specialisation and options give the same hash in every process and on every machine."""
    from enigma.version import __version__

    options = repr(sorted(launch.options.items())) + f"|vec_width={vec_width}|enigma={__version__}"
    return hashlib.sha256(f"{launch.source}\0{options}".encode()).hexdigest()


def requirements(launch: Launch) -> list[dict[str, Any]]:
    """The run-time conditions the kernel's layouts rely on, as data the runtime checks at every launch
    (FORMAT.md section 3, "requires"). A condition that depends on more than argument sizes and scalars
    cannot be checked there: that is a compile error, not a silently skipped check."""
    from enigma.errors import EnigmaError
    from enigma.layout.checks import kernel_conditions

    out: list[dict[str, Any]] = []
    for c in kernel_conditions(launch.kernel):
        if c.expr is None:
            raise EnigmaError(f"a layout condition depends on run-time values other than argument sizes "
                              f"and scalars, so no launch can check it: {c.text or '?'} ({c.message})",
                              c.file, c.line, hint="build the layout from static sizes or from the "
                              "tensor's shape (t.shape[i]) and scalar arguments")
        if all(r["expr"] != c.expr for r in out):  # one check per condition, at its first line
            out.append({"expr": c.expr, "text": c.text, "message": c.message, "line": c.line})
    return out


def compile(fn: Any, *jit_args: Any, vec_width: int = 0, dump_ir: bool = False, dump_mlir: bool = False,
            keep_metal_source: bool = False, work_dir: str | None = None,
            emit_only: bool | None = None) -> CompiledKernel:
    """Compile an @enigma.kernel (from its annotations, or for `jit_args` as its arguments) or an
    @enigma.jit function (run on `jit_args`: numpy arrays or TensorSpecs) to a CompiledKernel."""
    from enigma import passes
    from enigma.backends import msl, portable

    if not isinstance(vec_width, int) or isinstance(vec_width, bool) or vec_width < 0:
        raise ValueError(f"vec_width must be 0 (scalar) or a lane count such as 4, got {vec_width!r}")
    launch = launch_of(fn, jit_args)
    kernel = launch.kernel
    if dump_ir:  # numbered 0, 1, 2... for reading (the passes' output is renumbered below in any case)
        kernel = ir.renumber(kernel)
        print(ir.dump(kernel), end="")
    kernel = ir.renumber(passes.run(kernel, vec_width))
    metal = msl.emit(kernel)
    mlir_source = None
    if dump_mlir:
        from enigma.backends import mlir

        mlir_source = mlir.emit(kernel)
        print(mlir_source, end="" if mlir_source.endswith("\n") else "\n")
    grid, grid_json = launch.grid, launch.grid_json
    if vec_width > 1 and grid is not None:  # each thread handles vec_width elements: x shrinks
        from enigma.passes.vectorize import scale_grid

        grid = (ceil_div(grid[0], vec_width), grid[1], grid[2])
        grid_json = scale_grid(grid_json, vec_width)
    ir_json = portable.ir_to_json(kernel)
    signature = portable.signature(kernel, block=list(launch.block) if launch.block else None,
                                   grid=grid_json, msl_source=metal, ir_json=ir_json)
    signature["source_hash"] = source_hash(launch, vec_width)  # FORMAT.md's key: Python source + options
    signature["requires"] = requirements(launch)
    if emit_only is None:
        emit_only = sys.platform != "darwin"
    need_dir = keep_metal_source or not emit_only
    wd = work_dir if work_dir is not None else (tempfile.mkdtemp(prefix="enigma-") if need_dir else "")
    if keep_metal_source:
        Path(wd).mkdir(parents=True, exist_ok=True)
        (Path(wd) / f"{kernel.kernel_name}.metal").write_text(metal)
    metallib_path: str | None = None
    metallib_bytes: bytes | None = None
    if not emit_only:
        from enigma.toolchain import xcrun

        path = xcrun.build_metallib({kernel.kernel_name: metal}, wd, msl_version=MSL_VERSION,
                                    macos_target=MACOS_TARGET)
        metallib_path = str(Path(path).resolve())
        metallib_bytes = Path(path).read_bytes()
    return CompiledKernel(kernel.kernel_name, metallib_path, metallib_bytes, metal, mlir_source, grid,
                          launch.block, signature, ir_json, kernel, launch, str(wd))
