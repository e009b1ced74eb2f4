"""Kernels and libraries: `load(package)`, `Kernel.from_spec(...)`, and calling a kernel.

A `Kernel` is every specialisation of one kernel name; a call picks the specialisation whose
argument dtypes match, checks the arguments (binding.py), works out grid and block, and runs on the
chosen device (cpu.py or metal.py). Artifacts are read lazily, checked against their sha256, and
cached; caches are guarded by locks so loading and launching from several threads is safe.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import grid as _grid
from .binding import Bound, bind, describe_signature, describe_value, matches
from .errors import GridError, KernelNotFoundError, LaunchError
from .manifest import Manifest, _closest, find_artifact_dir, read_ir, read_manifest, validate_spec

DEVICES = ("cpu", "metal")
MAX_THREADS_PER_THREADGROUP = 1024  # Apple GPUs; a pipeline may allow fewer (metal.py checks)


def default_device() -> str:
    """ENIGMA_DEVICE (cpu|metal) when set, else metal on macOS when a Metal device exists, else cpu."""
    env = os.environ.get("ENIGMA_DEVICE", "").strip().lower()
    if env:
        if env not in DEVICES:
            raise LaunchError(f"ENIGMA_DEVICE={env!r} is not a device; expected one of {', '.join(DEVICES)}")
        return env
    if sys.platform == "darwin":
        from . import metal
        if metal.available():
            return "metal"
    return "cpu"


def _dim3(v: Any, what: str, where: str, minimum: int) -> tuple[int, int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v,)
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= 3:
        raise ValueError(f"{where}: {what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < minimum:
            raise ValueError(f"{where}: {what} {tuple(v)} must hold ints >= {minimum}")
        out.append(int(x))
    return tuple(out + [1] * (3 - len(out)))  # type: ignore[return-value]


def _agreement(spec: dict, args: tuple) -> tuple[bool, int]:
    """How close `args` come to `spec`: (same argument count, number of arguments of fitting dtype)."""
    fitting = sum(matches({"args": [a]}, (v,)) for a, v in zip(spec["args"], args))
    return len(args) == len(spec["args"]), fitting


class Specialisation:
    """One entry of a kernel's list in the manifest (or of `Kernel.from_spec`), with lazy artifacts."""

    def __init__(self, spec: dict, *, ir: Callable[[], dict], metal_source: Callable[[], str],
                 metallib: Callable[[], bytes | None], library_key: tuple, where: str) -> None:
        self.spec, self.where, self.library_key = spec, where, library_key
        self._loaders = {"ir": ir, "metal_source": metal_source, "metallib": metallib}
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()  # building the plan reads the IR under the same lock

    def _get(self, key: str) -> Any:
        if key not in self._cache:
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = self._loaders[key]() if key in self._loaders else self._build(key)
        return self._cache[key]

    def _build(self, key: str) -> Any:
        assert key == "plan"
        from .cpu import Plan
        return Plan(self.ir)

    @property
    def ir(self) -> dict:
        return self._get("ir")

    @property
    def metal_source(self) -> str:
        return self._get("metal_source")

    @property
    def metallib_bytes(self) -> bytes | None:
        return self._get("metallib")

    @property
    def plan(self) -> Any:
        """The CPU executor's plan of the IR (built once)."""
        return self._get("plan")


class Kernel:
    """A kernel by name: its specialisations, its metadata (of the default, first, specialisation)
    and `__call__`, which launches it."""

    def __init__(self, name: str, specs: Sequence[Specialisation]) -> None:
        self.specs = list(specs)
        self._name = name

    # metadata of the default specialisation
    @property
    def name(self) -> str:
        return self._name

    @property
    def spec(self) -> dict:
        return self.specs[0].spec

    @property
    def kernel_name(self) -> str:
        return self.spec["kernel_name"]

    @property
    def grid(self) -> list | None:
        """The grid as 3 expressions (ints or FORMAT.md expression trees), or None."""
        return self.spec.get("grid")

    @property
    def block(self) -> tuple[int, int, int] | None:
        b = self.spec.get("block")
        return None if b is None else tuple(b)  # type: ignore[return-value]

    @property
    def args(self) -> list[dict]:
        return self.spec["args"]

    @property
    def threadgroup_memory(self) -> int:
        return self.spec.get("threadgroup_memory", 0)

    @property
    def metal_source(self) -> str:
        return self.specs[0].metal_source

    @property
    def metallib_bytes(self) -> bytes | None:
        return self.specs[0].metallib_bytes

    @property
    def ir(self) -> dict:
        return self.specs[0].ir

    def __repr__(self) -> str:
        g = "None" if self.grid is None else "(" + ", ".join(_grid.to_str(e) for e in self.grid) + ")"
        more = f", {len(self.specs)} specialisations" if len(self.specs) > 1 else ""
        return f"<enigma_runtime.Kernel {describe_signature(self.spec)} grid={g} block={self.block}{more}>"

    @classmethod
    def from_spec(cls, spec: dict, ir: dict, metal_source: str,
                  metallib_bytes: bytes | None = None) -> Kernel:
        """A runnable kernel from in-memory data: `spec` is FORMAT.md section 3 (signature
        metadata), `ir` section 4; what enigma.compile's CompiledKernel calls."""
        where = f"kernel {spec.get('name', '?')!r} (from_spec)" if isinstance(spec, dict) else "from_spec"
        validate_spec(spec, where)
        ir = read_ir(ir, where + " IR")
        import hashlib
        key = ("source", hashlib.sha256((metal_source or "").encode() + (metallib_bytes or b"")).hexdigest())
        sp = Specialisation(spec, ir=lambda: ir, metal_source=lambda: metal_source,
                            metallib=lambda: metallib_bytes, library_key=key, where=where)
        return cls(spec["name"], [sp])

    # ------------------------------------------------------------------------------------------
    def select(self, args: tuple) -> tuple[Specialisation, Bound]:
        """The specialisation for these arguments and the checked arguments."""
        where = f"kernel {self.name!r}"
        for exact in (True, False):  # numpy scalars of the very dtype first, then any that fits
            for sp in self.specs:
                if matches(sp.spec, args, exact):
                    return sp, bind(sp.spec, args, where)
        if len(self.specs) == 1:
            sp = self.specs[0]
            return sp, bind(sp.spec, args, where)  # raises the precise TypeError/ValueError
        # None matches: name the first wrong argument against the closest specialisation (same
        # argument count, most dtypes matching), then list every available signature.
        closest = max(self.specs, key=lambda sp: _agreement(sp.spec, args))
        got = ", ".join(describe_value(v) for v in args)
        avail = "; ".join(describe_signature(sp.spec) for sp in self.specs)
        try:
            bind(closest.spec, args, where)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e}; no specialisation matches the arguments ({got}); available: "
                          f"{avail}") from None
        raise TypeError(f"{where}: no specialisation matches the arguments ({got}); available: {avail}")

    def launch_dims(self, sp: Specialisation, bound: Bound, grid: Any, block: Any
                    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(grid in threadgroups, block in threads) from the call or the manifest."""
        where, spec = f"kernel {self.name!r}", sp.spec
        if block is None:
            if spec.get("block") is None:
                raise LaunchError(f"{where} has no block in its metadata (compiled without one): pass "
                                  f"block=(x, y, z), the threads per threadgroup")
            block = spec["block"]
        block = _dim3(block, "block", where, 1)
        threads = block[0] * block[1] * block[2]
        if threads > MAX_THREADS_PER_THREADGROUP:
            raise LaunchError(f"{where}: block {block} has {threads} threads; Metal allows at most "
                              f"{MAX_THREADS_PER_THREADGROUP} per threadgroup (checked on every device, so "
                              f"that what runs on the CPU also runs on a GPU)")
        if grid is None:
            if spec.get("grid") is None:
                raise LaunchError(f"{where} has no grid in its metadata (compiled without one): pass "
                                  f"grid=(x, y, z), the number of threadgroups")
            try:
                grid = [_grid.evaluate(e, bound.sizes, bound.shapes, bound.scalars) for e in spec["grid"]]
            except GridError as e:
                raise GridError(f"{where}: grid ({', '.join(_grid.to_str(e) for e in spec['grid'])}): {e}") \
                    from None
            if any(g < 0 for g in grid):
                raise GridError(f"{where}: grid evaluated to {tuple(grid)} for these arguments; "
                                f"threadgroup counts cannot be negative")
        grid = _dim3(grid, "grid", where, 0)
        return grid, block

    def __call__(self, *args: Any, grid: Any = None, block: Any = None, device: str | None = None
                 ) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """Launch over `grid` threadgroups of `block` threads (defaults: the metadata). Written tensor
        arguments are updated in place; returns the written array (one), a tuple of them in argument
        order (several), or None (none)."""
        sp, bound = self.select(args)
        check_requires(sp.spec, bound, f"kernel {self.name!r}")
        g, b = self.launch_dims(sp, bound, grid, block)
        dev = default_device() if device is None else device
        if dev == "cpu":
            from . import cpu
            cpu.run(sp.plan, bound.values, g, b)
        elif dev == "metal":
            from . import metal
            metal.run(sp, bound, g, b)
        else:
            raise ValueError(f"kernel {self.name!r}: unknown device {dev!r}; expected one of "
                             f"{', '.join(DEVICES)}")
        return bound.finish()


def check_requires(spec: dict, bound: Bound, where: str) -> None:
    """Raise ValueError if the arguments break a condition the kernel was compiled to rely on
    (FORMAT.md section 3, "requires": e.g. a layout's tile must fit a dynamically sized tensor)."""
    for r in spec.get("requires", ()):
        if not _grid.evaluate(r["expr"], bound.sizes, bound.shapes, bound.scalars):
            at = f"{spec.get('file', '?')}:{r.get('line', 0)}"
            raise ValueError(f"{where}: these arguments break a condition the kernel relies on: "
                             f"{r['text']} ({r['message']}; required at {at})")


class Library:
    """Every kernel of one package: `lib.names()`, `lib["name"]`, `lib.name`, `"name" in lib`. A name
    with a jit entry (FORMAT.md section 6) gives the Entry, called with the jit's own arguments;
    `lib.kernel(name)` always gives the kernel table's Kernel."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._kernels: dict[str, Kernel] = {}
        self._entries: dict[str, Any] = {}
        self._metallib: bytes | None = None
        self._lock = threading.Lock()

    @property
    def package(self) -> str:
        return self.manifest.package

    @property
    def path(self) -> Path:
        return self.manifest.dir

    def names(self) -> list[str]:
        return list(self.manifest.kernels)

    def entries(self) -> list[str]:
        """The jit entries of the package (schema 2 manifests)."""
        return list(self.manifest.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.manifest.kernels or name in self.manifest.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.manifest.kernels)

    def __len__(self) -> int:
        return len(self.manifest.kernels)

    def __getitem__(self, name: str) -> Any:
        if name in self.manifest.entries:
            return self.entry(name)
        return self.kernel(name)

    def entry(self, name: str) -> Any:
        """The jit entry `name`: called with the jit's arguments, it launches the package's kernels."""
        e = self._entries.get(name)
        if e is None:
            man = self.manifest
            if name not in man.entries:
                raise KernelNotFoundError(f"package {man.package!r} has no jit entry {name!r}; its entries: "
                                          f"{_closest(str(name), list(man.entries))}  ({man.path})")
            from .entry import Entry

            def resolve(kernel: str, kernel_name: str) -> tuple[Kernel, Specialisation]:
                k = self.kernel(kernel)
                return k, next(sp for sp in k.specs if sp.spec["kernel_name"] == kernel_name)
            e = Entry(man.entries[name], resolve, where=f"jit {name!r} of package {man.package!r}",
                      file=man.entries[name].get("file", "?"))
            with self._lock:
                e = self._entries.setdefault(name, e)
        return e

    def kernel(self, name: str) -> Kernel:
        """The kernel `name` of the kernel table, called with the kernel's own arguments."""
        k = self._kernels.get(name)
        if k is not None:
            return k
        man = self.manifest
        if name not in man.kernels:
            raise KernelNotFoundError(f"package {man.package!r} has no kernel {name!r}; its kernels: "
                                      f"{_closest(str(name), list(man.kernels))}  ({man.path})")
        metallib = self.metallib_bytes
        specs = []
        for i, spec in enumerate(man.kernels[name]):
            where = f"{man.path}, kernel {name!r} specialisation {i}"
            def ir(s: dict = spec) -> dict:
                return read_ir(man.read_json(s["ir"]), f"{man.dir / s['ir']}")

            def metal_source(s: dict = spec) -> str:
                return man.read_text(s["metal"])

            specs.append(Specialisation(
                spec, where=where, library_key=("package", str(man.dir), man.files.get(man.metallib or "")),
                ir=ir, metal_source=metal_source, metallib=metallib))
        with self._lock:
            return self._kernels.setdefault(name, Kernel(name, specs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KernelNotFoundError as e:
            raise AttributeError(str(e)) from None

    def metallib_bytes(self) -> bytes | None:
        """The package's .metallib (every kernel), checked against its sha256; None when not built."""
        if self.manifest.metallib is None:
            return None
        with self._lock:
            if self._metallib is None:
                self._metallib = self.manifest.read(self.manifest.metallib)
            return self._metallib

    def __repr__(self) -> str:
        return f"<enigma_runtime.Library {self.package!r}: {', '.join(self.names())}>"


_libraries: dict[Path, tuple[Manifest, Library]] = {}
_libraries_lock = threading.Lock()


def load(package: str | os.PathLike, name: str | None = None) -> Any:
    """The kernels of an installed package (a `Library`), or its kernel `name` (a `Kernel`; for the
    name of a jit entry, the `entry.Entry`, called with the jit's arguments).

    `package` is an importable package name (located without importing it when top-level) or a
    path to a package directory or its `_enigma/` directory."""
    adir = find_artifact_dir(package)
    man = read_manifest(adir)
    with _libraries_lock:
        hit = _libraries.get(adir)
        if hit is None or hit[0] is not man:
            hit = _libraries[adir] = (man, Library(man))
    lib = hit[1]
    return lib if name is None else lib[name]
