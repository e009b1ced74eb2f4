"""Devices: where a kernel runs, found by name (FORMAT.md is device-independent).

A device has a `name`, says whether it is `available()` here, turns a specialisation into a `handle`
with `prepare(sp)` (a CPU plan, a Metal pipeline, a program compiled for the CPU by clang; cached per
specialisation and device by `Specialisation.handle`), and runs a launch with
`run(handle, bound, grid, block, **options)` on the checked arguments (binding.Bound), the grid in
threadgroups and the block in threads (both checked against `check_launch`).

Built in: "cpu" (the portable IR's executor, cpu.py) and "metal" (metal.py, through PyObjC). Other
distributions add devices through the entry-point group `enigma_runtime.devices` (name = the device
name, value = a Device subclass, a factory returning a Device, or a Device instance); enigma-build's
`enigma.verify` adds "msl-cpu" (the kernel's Metal source compiled by clang and run on the CPU).
Entry points are read on the first lookup of a name that is not registered yet, never at import.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from .errors import LaunchError, LaunchLimitError, UnknownDeviceError

ENTRY_POINT_GROUP = "enigma_runtime.devices"

# Metal's launch limits, checked on every device (what runs on the CPU also runs on a GPU)
MAX_THREADS_PER_THREADGROUP = 1024
# thread_position_in_grid is a 32-bit uint: a dimension's threads (threadgroups x block) must fit in it
MAX_THREADS_PER_GRID_DIM = 2**32 - 1


class Device:
    """Base class of devices. Subclasses set `name` and implement `prepare` and `run`."""

    name: str = ""
    #: the launch options `run` accepts (besides grid/block); others are refused by name
    options: frozenset[str] = frozenset()

    def available(self) -> bool:
        """Can this device run kernels here (imports what it needs on first call)?"""
        return True

    def prepare(self, sp: Any) -> Any:
        """The handle `run` needs for specialisation `sp` (a kernel.Specialisation)."""
        raise NotImplementedError

    def run(self, handle: Any, bound: Any, grid: tuple[int, int, int], block: tuple[int, int, int],
            **options: Any) -> None:
        """Launch: written arrays of `bound` (binding.Bound) are updated in place."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<enigma_runtime device {self.name!r}>"


class CpuDevice(Device):
    """The CPU executor of the portable IR (cpu.py); its handle is the IR's plan."""

    name = "cpu"

    def prepare(self, sp: Any) -> Any:
        from .cpu import Plan
        from .errors import IRError
        ir, where = sp.ir, sp.ir_where
        check_ir_args(sp.spec, ir, where)
        try:
            return Plan(ir)
        except IRError as e:
            if where in str(e):
                raise
            raise IRError(f"{where}: {e}") from None

    def run(self, handle: Any, bound: Any, grid: tuple[int, int, int], block: tuple[int, int, int],
            **options: Any) -> None:
        from . import cpu
        cpu.run(handle, bound.values, grid, block)


class MetalDevice(Device):
    """The system's Metal GPU through PyObjC (metal.py); its handle is the compute pipeline."""

    name = "metal"

    def available(self) -> bool:
        import sys
        if sys.platform != "darwin" and "Metal" not in sys.modules:  # tests inject a fake Metal
            return False
        from . import metal
        return metal.available()

    def prepare(self, sp: Any) -> Any:
        from . import metal
        return metal.prepare(sp)

    def run(self, handle: Any, bound: Any, grid: tuple[int, int, int], block: tuple[int, int, int],
            **options: Any) -> None:
        from . import metal
        if handle.fallback:  # this Mac cannot run the kernel's library: the CPU, said once
            metal.warn_once(f"{handle.fallback}: running it on the CPU executor instead of Metal")
            cpu = get("cpu")
            cpu.run(handle.sp.handle(cpu), bound, grid, block)
            return
        metal.run(handle, bound, grid, block)

    def run_many(self, launches: list[tuple[Any, Any, tuple[int, int, int], tuple[int, int, int]]]) -> None:
        """(handle, bound, grid, block) launches in order in one command buffer (a jit entry's); when
        this Mac cannot run one of their libraries, each runs in order through `run` (the CPU)."""
        from . import metal
        if any(h.fallback for h, _, _, _ in launches):
            for handle, bound, grid, block in launches:
                self.run(handle, bound, grid, block)
            return
        metal.run_many(launches)


def check_ir_args(spec: dict, ir: dict, where: str) -> None:
    """The IR's arguments must be the signature's (name, kind, dtype, rank), in order (IRError)."""
    from .errors import IRError

    def key(a: dict) -> tuple:
        return a.get("name"), a.get("kind"), a.get("dtype"), len(a.get("shape", []))
    want, got = [key(a) for a in spec["args"]], [key(a) for a in ir["args"]]
    if want != got:
        raise IRError(f"{where}: the IR's arguments {got} disagree with the signature's {want} "
                      f"(name, kind, dtype, rank); rebuild the package with enigma-build")


Factory = Callable[[], Device]
_registry: dict[str, Device | Factory] = {"cpu": CpuDevice, "metal": MetalDevice}
_lock = threading.RLock()
_entry_points_read = False


def register(device: Device | type[Device] | Factory, name: str | None = None, *,
             replace: bool = False) -> None:
    """Add a device (an instance, a Device subclass or a factory, created on first use) under `name`
    (default: its `name`). Registering the same class again is a no-op; another device under a taken
    name is refused unless `replace`."""
    if name is None:
        name = getattr(device, "name", "")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a device needs a non-empty name, got {name!r} for {device!r}")
    with _lock:
        old = _registry.get(name)
        if old is not None and getattr(old, "entry_point", None) is not None:
            old = None  # an entry point not loaded yet: the distribution registering itself wins
        if old is not None and not replace and not _same(old, device):
            raise ValueError(f"device {name!r} is already registered ({old!r}); pass replace=True")
        if old is None or replace or not isinstance(old, Device):
            _registry[name] = device


def _same(a: Any, b: Any) -> bool:
    ka = a if isinstance(a, type) else type(a) if isinstance(a, Device) else a
    kb = b if isinstance(b, type) else type(b) if isinstance(b, Device) else b
    return bool(ka is kb or (getattr(ka, "__module__", 1), getattr(ka, "__qualname__", 1))
                == (getattr(kb, "__module__", 2), getattr(kb, "__qualname__", 2)))


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    from importlib.metadata import entry_points
    with _lock:
        if _entry_points_read:
            return
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _registry:
                _registry[ep.name] = _lazy(ep)
        _entry_points_read = True


def _lazy(ep: Any) -> Factory:
    def load() -> Device:
        try:
            obj = ep.load()
        except Exception as e:
            raise LaunchError(f"device {ep.name!r} (entry point {ep.value!r} of group {ENTRY_POINT_GROUP}) "
                              f"failed to load: {type(e).__name__}: {e}") from e
        dev = obj() if callable(obj) and not isinstance(obj, Device) else obj
        if not isinstance(dev, Device):
            raise LaunchError(f"device {ep.name!r}: entry point {ep.value!r} gave {dev!r}, not an "
                              f"enigma_runtime.devices.Device")
        return dev
    load.__qualname__ = f"entry point {ep.value}"
    load.entry_point = ep  # type: ignore[attr-defined]
    return load


def names() -> list[str]:
    """Every device name known here (built-in, registered and from entry points), available or not."""
    _read_entry_points()
    with _lock:
        return list(_registry)


def get(name: str) -> Device:
    """The device called `name` (LaunchError listing the known names otherwise)."""
    with _lock:
        known = name in _registry
    if not known:
        _read_entry_points()
    with _lock:
        entry = _registry.get(name)
        if entry is None:
            raise UnknownDeviceError(f"unknown device {name!r}; known devices: {', '.join(_registry)} "
                                     f"(more come from the entry-point group {ENTRY_POINT_GROUP!r})")
        if not isinstance(entry, Device):
            dev = entry()  # may import a module that registers its own instance under `name`
            now = _registry.get(name)
            if isinstance(now, Device):
                return now
            if not isinstance(dev, Device):
                raise LaunchError(f"device {name!r}: its factory {entry!r} gave {dev!r}, not an "
                                  f"enigma_runtime.devices.Device")
            if dev.name != name:
                dev.name = name
            _registry[name] = entry = dev
        return entry


def dim3(v: Any, what: str, where: str, minimum: int) -> tuple[int, int, int]:
    """An int or 1 to 3 ints as an (x, y, z) triple, each >= `minimum` (ValueError otherwise)."""
    import numpy as np
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


def check_launch(grid: Any, block: Any, where: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) as triples within Metal's limits, on every device: at most
    MAX_THREADS_PER_THREADGROUP threads per threadgroup and MAX_THREADS_PER_GRID_DIM threads along each
    dimension of the grid (LaunchLimitError, a LaunchError and a ValueError, otherwise; ValueError
    for values that are not ints)."""
    block3 = dim3(block, "block", where, 1)
    threads = block3[0] * block3[1] * block3[2]
    if threads > MAX_THREADS_PER_THREADGROUP:
        raise LaunchLimitError(f"{where}: block {block3} has {threads} threads; Metal allows at most "
                          f"{MAX_THREADS_PER_THREADGROUP} per threadgroup (checked on every device, so "
                          f"that what runs on the CPU also runs on a GPU)")
    grid3 = dim3(grid, "grid", where, 0)
    for axis, (g, b) in enumerate(zip(grid3, block3)):
        if g * b > MAX_THREADS_PER_GRID_DIM:
            raise LaunchLimitError(f"{where}: grid {grid3} of block {block3} has {g * b} threads along "
                              f"{'xyz'[axis]}; Metal's thread positions are 32-bit, so at most "
                              f"{MAX_THREADS_PER_GRID_DIM} (launch fewer threadgroups)")
    return grid3, block3


def default_device() -> str:
    """ENIGMA_DEVICE (a device name) when set, else metal on macOS when a Metal device exists, else cpu."""
    env = os.environ.get("ENIGMA_DEVICE", "").strip().lower()
    if env:
        if env not in names():
            raise LaunchError(f"ENIGMA_DEVICE={env!r} is not a device; expected one of "
                              f"{', '.join(names())}")
        return env
    if sys.platform == "darwin":
        from . import metal
        if metal.available():
            return "metal"
    return "cpu"
