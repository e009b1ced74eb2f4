"""enigma.compile: trace -> passes -> MSL / MLIR / portable IR + signature -> (macOS) .metallib.

Each stage is its own module (docs/ARCHITECTURE.md); this file only runs them in order and packs the
outputs into a CompiledKernel (the contract is docs/compile-api.md).
Every option that changes the output travels in one `CompileOptions` (enigma/options.py)."""
from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enigma import ir
from enigma.frontend.jit import JitFunction, entry_of, record_of
from enigma.frontend.language import ceil_div
from enigma.frontend.launch import Launch
from enigma.options import DEFAULT_MACOS_TARGET, DEFAULT_MSL_VERSION, CompileOptions, OptionsError

MSL_VERSION = DEFAULT_MSL_VERSION
MACOS_TARGET = DEFAULT_MACOS_TARGET


@dataclass(eq=False)
class CompiledKernel:
    """One compiled kernel specialisation (what enigma.compile returns).

    grid/block: the launch configuration computed at compile time; `grid` entries are ints, or
    launch-size expressions (printing like `ceil_div(n, 256)`) when they depend on symbolic sizes;
    None when the kernel declares none (the caller gives one).

    Calling it: a bare @kernel's CompiledKernel takes the kernel's arguments; a @jit's takes the jit's
    own arguments, `ck(a, b, c)`, at any size its arguments allow: its `entry` (FORMAT.md section 7)
    recomputes every kernel argument, temporary and grid per call. For a @jit the attributes above
    are those of its first launch; `parts` holds every kernel it compiled (each launch and each
    `enigma.select` case) and `kernel` runs the first one with the kernel's own arguments."""

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
    options: CompileOptions = field(default_factory=CompileOptions)
    entry: dict[str, Any] | None = field(default=None, repr=False)  # a @jit's entry (FORMAT.md)
    parts: list[CompiledKernel] = field(default_factory=list, repr=False)  # a @jit's kernels
    _entry: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.ir.name

    def export_metal(self, path: str | os.PathLike[str]) -> str:
        """Write the Metal source to `path`; returns the resolved path."""
        p = Path(path).expanduser().resolve()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.metal_source)
        return str(p)

    @property
    def kernel(self) -> Any:
        """The compiled kernel as an enigma_runtime.Kernel, called with the kernel's own arguments
        (for a @jit: its first launch's kernel)."""
        if self._runnable is None:
            from enigma_runtime import Kernel

            self._runnable = Kernel.from_spec(self.signature, self.ir_json, self.metal_source,
                                              self.metallib_bytes)
        return self._runnable

    def __call__(self, *args: Any, grid: Any = None, block: Any = None, device: Any = None) -> Any:
        """Run through enigma_runtime (Metal on macOS, its CPU executor elsewhere): a @kernel with the
        kernel's arguments (grid/block default to the compiled ones), a @jit with the jit's arguments."""
        if self.entry is None:
            return self.kernel(*args, grid=grid, block=block, device=device)
        if grid is not None or block is not None:
            raise TypeError(f"{self.entry['name']}: a compiled @jit computes its grids and blocks; call "
                            f"it with the jit's arguments only (or run ck.kernel(...) with grid=/block=)")
        if len(args) != len(self.entry["params"]):
            names = ", ".join(p["name"] for p in self.entry["params"])
            raise TypeError(f"{self.entry['name']}: a compiled @jit takes the jit's arguments ({names}), got "
                            f"{len(args)}; to run its kernel with the kernel's own arguments, call "
                            f"ck.kernel(...)")
        if self._entry is None:
            from enigma_runtime.entry import Entry

            by_name = {p.kernel_name: p for p in self.parts}
            self._entry = Entry(self.entry, lambda kname, metal: (by_name[metal].kernel,
                                                                 by_name[metal].kernel.specs[0]),
                                where=f"jit {self.entry['name']!r}")
        return self._entry(*args, device=device)

    def save(self, directory: str | os.PathLike[str], package: str | None = None) -> Path:
        """Write this kernel as a package's artifacts (runtime/FORMAT.md section 1): `directory` is the
        package directory (its name is the default package name); returns `directory/_enigma`."""
        from enigma.artifacts import write_artifacts

        package = package or getattr(self.launch, "package", None) or Path(directory).resolve().name
        entries = {self.entry["name"]: self.entry} if self.entry is not None else None
        return write_artifacts(Path(directory), package, self.parts or [self], metallib=self.metallib_bytes,
                               msl_version=self.options.msl_version, macos_target=self.options.macos_target,
                               entries=entries)


def metal_features(kernel: ir.Kernel) -> dict[str, int]:
    """The language features (enigma.options.FEATURES) the kernel's Metal source will use that the
    MSL printer does not check itself, each with the line of its first use. (bfloat: msl.emit refuses
    a bfloat16 kernel below MSL 3.1 at the line of its first use.)"""
    out: dict[str, int] = {}
    tensors = {a.name: a.dtype for a in kernel.args}
    for op in ir.walk(kernel.body):
        t = tensors.get(str(op.attrs.get("tensor")))
        if op.name.startswith("atomic_") and t is not None and t.is_float:
            out.setdefault("atomic_float", op.line or kernel.line)
    return out


def make_options(options: CompileOptions | None, *, vec_width: int, msl_version: str | None,
                 macos_target: str | None, fast_math: bool | None) -> CompileOptions:
    """`options` (default CompileOptions()) with the keyword arguments given (not None) applied;
    ValueError (OptionsError) names a bad value."""
    base = options if options is not None else CompileOptions()
    if not isinstance(base, CompileOptions):
        raise TypeError(f"options must be an enigma.CompileOptions, got {type(base).__name__}")
    if isinstance(vec_width, bool) or not isinstance(vec_width, int) or vec_width < 0:
        raise OptionsError(f"vec_width must be 0 (scalar) or a lane count such as 4, got {vec_width!r}")
    changes: dict[str, Any] = {}
    if vec_width:
        changes["vec_width"] = vec_width
    for key, value in (("msl_version", msl_version), ("macos_target", macos_target),
                       ("fast_math", fast_math)):
        if value is not None:
            changes[key] = value
    return base.replace(**changes) if changes else base


def requirements(launch: Launch) -> list[dict[str, Any]]:
    """The run-time conditions the kernel's layouts rely on, as data the runtime checks at every launch
    (FORMAT.md section 3, "requires"). A condition that depends on more than argument sizes and scalars
    cannot be checked there: that is a compile error, not a silently skipped check."""
    from enigma.errors import EnigmaError
    from enigma.layout.checks import kernel_conditions

    out: list[dict[str, Any]] = []
    for c in kernel_conditions(launch.kernel):
        if c.expr is None:
            raise EnigmaError(f"a required condition (enigma.require, or a layout's) depends on run-time "
                              f"values other than argument sizes and scalars, so no launch can check it: "
                              f"{c.text or '?'} ({c.message})",
                              c.file, c.line, hint="state it over tensor shapes (t.shape[i]) and scalar "
                              "arguments, and build layouts from those or from static sizes")
        if all(r["expr"] != c.expr for r in out):  # one check per condition, at its first line
            out.append({"expr": c.expr, "text": c.text, "message": c.message, "line": c.line})
    return out


def compile(fn: Any, *jit_args: Any, vec_width: int = 0, dump_ir: bool = False, dump_mlir: bool = False,
            keep_metal_source: bool = False, work_dir: str | None = None,
            emit_only: bool | None = None, msl_version: str | None = None, macos_target: str | None = None,
            fast_math: bool | None = None, options: CompileOptions | None = None,
            name: str | None = None) -> CompiledKernel:
    """Compile an @enigma.kernel (from its annotations, or for `jit_args` as its arguments: the
    `specialize=` variant that fits them) or an @enigma.jit function (run on `jit_args`: numpy arrays,
    TensorSpecs, numbers or dtypes) to a CompiledKernel.

    Beyond the reference parameters: `options` (an enigma.CompileOptions) and the keyword arguments
    `msl_version` ("3.1"), `macos_target` ("14.0") and `fast_math` (False), which override it;
    `name` renames the kernel: its signature's `name` and its Metal function `enigma_kernel_<name>`
    (so two specialisations of one kernel can live in one .metallib under names of your choice); a
    jit's kernels (each launch and `enigma.select` case) are `enigma_kernel_<name>_jit`,
    `enigma_kernel_<name>_jit1`, ... (never the name of a kernel variant: a jit `twice_f16` and the
    float16 variant of a kernel `twice` live side by side)."""
    options = make_options(options, vec_width=vec_width, msl_version=msl_version,
                           macos_target=macos_target, fast_math=fast_math)
    vec_width = options.vec_width
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ValueError(f"name must be a Python identifier (it names the Metal function "
                         f"enigma_kernel_<name>), got {name!r}")
    rec, params = record_of(fn, jit_args)
    parts: list[CompiledKernel] = []
    by_key: dict[str, CompiledKernel] = {}
    part_of: dict[int, CompiledKernel] = {}
    for step in rec.steps:
        for _, launch in step.cases:
            key = repr(sorted(launch.options.items())) + "\0" + launch.source
            if key not in by_key:  # a kernel launched twice with the same specialisation: compiled once
                kernel = launch.kernel
                if name is not None:  # a jit's kernels: enigma_kernel_<name>_jit, _jit1, ... (no kernel
                    # variant is called "jit", so they never meet a specialisation of a kernel <name>_...)
                    variant = "" if params is None else f"jit{len(parts) or ''}"
                    kernel = dataclasses.replace(kernel, name=name, variant=variant)
                base, k = kernel, 1
                while any(p.kernel_name == kernel.kernel_name for p in parts):
                    k += 1  # another specialisation of a kernel the jit already launched
                    kernel = dataclasses.replace(base, variant=f"{base.variant or 'v'}_{k}")
                by_key[key] = _compile_launch(launch, kernel, options, dump_ir, dump_mlir)
                parts.append(by_key[key])
            part_of[id(launch)] = by_key[key]
    if emit_only is None:
        emit_only = sys.platform != "darwin"
    wd = work_dir if work_dir is not None else \
        (tempfile.mkdtemp(prefix="enigma-") if keep_metal_source else "")
    if keep_metal_source:
        Path(wd).mkdir(parents=True, exist_ok=True)
        for p in parts:
            (Path(wd) / f"{p.kernel_name}.metal").write_text(p.metal_source)
    if not emit_only:
        from enigma.cache import cache_dir
        from enigma.toolchain import xcrun

        # .air and .metallib through the cache (no temporary directory is left behind); with a
        # work_dir the .metal source and kernels.metallib are written there as well
        lib_name = "kernels.metallib" if wd else f"{parts[0].kernel_name}.metallib"
        path = xcrun.build_metallib({p.kernel_name: p.metal_source for p in parts}, wd or None,
                                    options=options, cache_dir=cache_dir("air", create=True), name=lib_name)
        metallib_bytes = Path(path).read_bytes()
        for p in parts:
            p.metallib_path, p.metallib_bytes = str(Path(path).resolve()), metallib_bytes
    for p in parts:
        p.work_dir = str(wd)
    main = parts[0]
    if isinstance(fn, JitFunction) and params is not None:
        main.parts = parts

        def named(launch: Launch) -> tuple[str, str]:
            p = part_of[id(launch)]
            return p.signature["name"], p.kernel_name
        main.entry = entry_of(fn, rec, params, jit_args, named)
        if vec_width > 1:  # each thread handles vec_width elements: grid x shrinks, as for the parts
            from enigma.passes.vectorize import scale_grid

            for launch_json in main.entry["launches"]:
                for case in launch_json["cases"]:
                    case["grid"] = scale_grid(case["grid"], vec_width)
    return main


def _compile_launch(launch: Launch, kernel: ir.Kernel, options: CompileOptions, dump_ir: bool,
                    dump_mlir: bool) -> CompiledKernel:
    """One kernel of a compile: passes, Metal source, signature (no metallib yet)."""
    from enigma import passes
    from enigma.backends import msl, portable
    from enigma.errors import EnigmaError

    vec_width = options.vec_width
    if dump_ir:  # numbered 0, 1, 2... for reading (the passes' output is renumbered below in any case)
        kernel = ir.renumber(kernel)
        print(ir.dump(kernel), end="")
    kernel = ir.renumber(passes.run(kernel, vec_width))
    features = metal_features(kernel)
    for feature, line in features.items():
        refusal = options.refusal([feature])
        if refusal:
            raise EnigmaError(f"kernel {kernel.name!r} cannot target MSL {options.msl_version}: {refusal}",
                              kernel.file, line, hint="raise msl_version (and macos_target with it)")
    metal = msl.emit(kernel, msl_version=options.msl_version)
    mlir_source = None
    if dump_mlir:
        from enigma.backends import mlir

        mlir_source = mlir.emit(kernel)
        print(mlir_source, end="" if mlir_source.endswith("\n") else "\n")
    grid, grid_json = launch.grid, launch.grid_json
    if vec_width > 1 and grid is not None:  # each thread handles vec_width elements: x shrinks
        from enigma.passes.vectorize import scale_grid

        grid = (ceil_div(grid[0], vec_width), grid[1], grid[2])
        grid_json = scale_grid(grid_json, vec_width) if grid_json is not None else None
    ir_json = portable.ir_to_json(kernel)
    signature = portable.signature(kernel, block=list(launch.block) if launch.block else None,
                                   grid=grid_json, msl_source=metal, ir_json=ir_json,
                                   msl_version=options.msl_version)
    signature["requires"] = requirements(launch)
    return CompiledKernel(kernel.kernel_name, None, None, metal, mlir_source, grid, launch.block, signature,
                          ir_json, kernel, launch, options=options)
