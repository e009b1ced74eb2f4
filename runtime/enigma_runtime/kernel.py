"""Kernels and libraries: `load(package)`, `Kernel.from_spec(...)`, and calling a kernel.

A `Kernel` is every specialisation of one kernel name; a call picks the specialisation whose
argument dtypes match, checks the arguments (binding.py) and the kernel's `requires`, works out grid
and block within Metal's limits, and runs on the chosen device (devices.py: "cpu", "metal", or one
added by another distribution, like enigma.verify's "msl-cpu"). Artifacts are read lazily, checked
against their sha256, and cached, as is each device's handle of a specialisation (a CPU plan, a
Metal pipeline); caches are guarded by locks so loading and launching from several threads is safe.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import devices
from . import grid as _grid
from .binding import Bound, bind, check_requires, describe_signature, describe_value, matches
from .devices import default_device
from .errors import GridError, KernelNotFoundError, LaunchError
from .manifest import Manifest, closest, find_artifact_dir, read_manifest
from .validation import read_ir, validate_spec

DEVICES = ("cpu", "metal")  # the built-in devices; devices.names() lists every known one
MAX_THREADS_PER_THREADGROUP = devices.MAX_THREADS_PER_THREADGROUP


def _agreement(spec: dict, args: tuple) -> tuple[bool, int]:
    """How close `args` come to `spec`: (same argument count, number of arguments of fitting dtype)."""
    fitting = sum(matches({"args": [a]}, (v,)) for a, v in zip(spec["args"], args))
    return len(args) == len(spec["args"]), fitting


class Specialisation:
    """One entry of a kernel's list in the manifest (or of `Kernel.from_spec`), with lazy artifacts."""

    def __init__(self, spec: dict, *, ir: Callable[[], dict], metal_source: Callable[[], str],
                 metallib: Callable[[], bytes | None], library_key: tuple, where: str,
                 ir_where: str | None = None, msl_version: str = "", macos_target: str = "") -> None:
        self.spec, self.where, self.library_key = spec, where, library_key
        # the package's Metal language version and oldest macOS (manifest.json), for the metal device
        self.msl_version = msl_version or spec.get("msl_version") or ""
        self.macos_target = macos_target
        self.ir_where = ir_where or f"{where} IR"  # how errors about the IR name it (its file)
        self._loaders = {"ir": ir, "metal_source": metal_source, "metallib": metallib}
        self._cache: dict[Any, Any] = {}  # loader name, or ("handle", device name)
        self._lock = threading.RLock()  # building the plan reads the IR under the same lock

    def _get(self, key: str) -> Any:
        if key not in self._cache:
            with self._lock:
                if key not in self._cache:
                    self._cache[key] = self._loaders[key]()
        return self._cache[key]

    def handle(self, device: devices.Device) -> Any:
        """`device.prepare(self)`, once per device (a CPU plan, a Metal pipeline, ...)."""
        key = ("handle", device.name)
        hit = self._cache.get(key)
        if hit is None:
            with self._lock:  # one specialisation prepares once; others prepare in parallel
                hit = self._cache.get(key)
                if hit is None:
                    hit = self._cache[key] = device.prepare(self)
        return hit

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
        """The CPU executor's plan of the IR (the "cpu" device's handle, built once)."""
        return self.handle(devices.get("cpu"))


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
    def from_spec(cls, spec: dict, ir: dict | None, metal_source: str,
                  metallib_bytes: bytes | None = None) -> Kernel:
        """A runnable kernel from in-memory data: `spec` is FORMAT.md section 3 (signature
        metadata), `ir` section 4 (None: no portable IR, so the "cpu" device cannot run it, but
        devices running the Metal source can); what enigma.compile's CompiledKernel calls."""
        where = f"kernel {spec.get('name', '?')!r} (from_spec)" if isinstance(spec, dict) else "from_spec"
        validate_spec(spec, where)
        if ir is None:
            def no_ir() -> dict:
                raise LaunchError(f"{where} has no portable IR (FORMAT.md section 4), so the cpu device "
                                  f"cannot run it; run its Metal source (device='metal' or 'msl-cpu')")
            ir_of = no_ir
        else:
            ir = read_ir(ir, where + " IR", envelope_only=True)  # the rest on first use, like a package's

            def ir_of() -> dict:
                return read_ir(ir, where + " IR")
        import hashlib
        key = ("source", hashlib.sha256((metal_source or "").encode() + (metallib_bytes or b"")).hexdigest())
        sp = Specialisation(spec, ir=ir_of, metal_source=lambda: metal_source,
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
        best = max(self.specs, key=lambda sp: _agreement(sp.spec, args))
        got = ", ".join(describe_value(v) for v in args)
        avail = "; ".join(describe_signature(sp.spec) for sp in self.specs)
        try:
            bind(best.spec, args, where)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e}; no specialisation matches the arguments ({got}); available: "
                          f"{avail}") from None
        raise TypeError(f"{where}: no specialisation matches the arguments ({got}); available: {avail}")

    def launch_dims(self, sp: Specialisation, bound: Bound, grid: Any, block: Any
                    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(grid in threadgroups, block in threads) from the call or the manifest, within Metal's
        limits (devices.check_launch: LaunchError beyond them)."""
        where, spec = sp.where, sp.spec
        if block is None:
            if spec.get("block") is None:
                raise LaunchError(f"{where} has no block in its metadata (compiled without one): pass "
                                  f"block=(x, y, z), the threads per threadgroup")
            block = spec["block"]
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
        return devices.check_launch(grid, block, where)

    def __call__(self, *args: Any, grid: Any = None, block: Any = None, device: str | None = None
                 ) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """Launch over `grid` threadgroups of `block` threads (defaults: the metadata) on `device`
        (a name of devices.names(); default: default_device()). Written tensor arguments are updated
        in place; returns the written array (one), a tuple of them in argument order (several), or
        None (none)."""
        return self.launch(args, grid=grid, block=block, device=device)

    def launch(self, args: Sequence[Any], *, grid: Any = None, block: Any = None,
               device: str | devices.Device | None = None, options: dict[str, Any] | None = None
               ) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """`__call__` with device-specific launch `options` (e.g. msl-cpu's schedule, seed,
        race_check): pick the specialisation, check `requires`, compute launch dims, run."""
        args = tuple(args)
        dev = self.device_for(device)
        unknown = set(options or ()) - dev.options
        if unknown:
            takes = ", ".join(sorted(dev.options)) or "none"
            raise TypeError(f"kernel {self.name!r}: device {dev.name!r} takes no launch option "
                            f"{', '.join(sorted(unknown))} (its options: {takes})")
        sp, bound = self.select(args)
        check_requires(sp.spec, bound, sp.where)
        g, b = self.launch_dims(sp, bound, grid, block)
        dev.run(sp.handle(dev), bound, g, b, **(options or {}))
        return bound.finish()


    @staticmethod
    def device_for(device: str | devices.Device | None) -> devices.Device:
        """The device a launch runs on: `device` (a name or a Device), else default_device()."""
        if isinstance(device, devices.Device):
            return device
        return devices.get(default_device() if device is None else device)

    def prepare_launch(self, sp: Specialisation, args: Sequence[Any], grid: Any, block: Any, where: str
                       ) -> tuple[Bound, tuple[int, int, int], tuple[int, int, int]]:
        """What a launch does before running, for the given specialisation (no choice by dtypes): bind
        `args`, check `requires`, compute the launch dims. A jit entry's launches use it (entry.py)."""
        bound = bind(sp.spec, tuple(args), where)
        check_requires(sp.spec, bound, where)
        g, b = self.launch_dims(sp, bound, grid, block)
        return bound, g, b


class Library:
    """Every kernel of one package: `lib.names()`, `lib["name"]`, `lib.name`, `"name" in lib`. A name
    with a jit entry (FORMAT.md section 7) gives the Entry, called with the jit's own arguments;
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
                                          f"{closest(str(name), list(man.entries))}  ({man.path})")
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
                                      f"{closest(str(name), list(man.kernels))}  ({man.path})")
        metallib = self.metallib_bytes
        specs = []
        for i, spec in enumerate(man.kernels[name]):
            where = f"{man.path}, kernel {name!r} specialisation {i}"
            def ir(s: dict = spec) -> dict:
                return read_ir(man.read_json(s["ir"]), f"{man.dir / s['ir']}")

            def metal_source(s: dict = spec) -> str:
                return man.read_text(s["metal"])

            specs.append(Specialisation(
                spec, where=where, ir_where=str(man.dir / spec["ir"]),
                library_key=("package", str(man.dir), man.files.get(man.metallib or "")),
                ir=ir, metal_source=metal_source, metallib=metallib, msl_version=man.msl_version,
                macos_target=man.macos_target))
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
            from . import stale  # on first load (hashlib): `import enigma_runtime` stays cheap
            stale.check(man)  # an editable install whose kernel modules changed: warn once
    lib = hit[1]
    return lib if name is None else lib[name]
