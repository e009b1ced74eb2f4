"""Match a call's arguments against a specialisation's signature (FORMAT.md section 3).

`bind` checks count, dtype, rank, static and symbolic sizes, scalar ranges and writability, and
returns the arrays a backend runs on: C-contiguous arrays (a non-contiguous argument is copied in and,
when the kernel writes it, copied back after the launch) and typed numpy scalars.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import grid as _grid
from .dtypes import BY_NAME, DType
from .errors import GridError

_INT32_MAX = 2**31 - 1


def describe_arg(a: dict, *, access: bool = False) -> str:
    """`a: float32[n, 4]`, `n: int32`: how errors name what an argument expects; with `access`, tensors
    say how the kernel uses them (`c: float32[?] write`)."""
    if a["kind"] == "scalar":
        return f"{a['name']}: {a['dtype']}"
    shape = ", ".join("?" if s is None else str(s) for s in a.get("shape", []))
    return f"{a['name']}: {a['dtype']}[{shape}]" + (f" {a.get('access', 'read')}" if access else "")


def describe_signature(spec: dict) -> str:
    return f"{spec['name']}({', '.join(describe_arg(a) for a in spec['args'])})"


def describe_value(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)}"
    return type(v).__name__


@dataclass
class Bound:
    """One call's arguments, checked. `values[i]` is a contiguous ndarray (tensor) or a numpy scalar;
    `copy_back` lists (original, contiguous copy) pairs of written non-contiguous arguments."""

    spec: dict
    values: list[Any]
    sizes: dict[str, int]  # symbolic size -> int
    shapes: dict[str, tuple[int, ...]]  # tensor name -> shape
    scalars: dict[str, Any]  # scalar name -> python value
    written: list[np.ndarray] = field(default_factory=list)  # the caller's written arrays
    copy_back: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def finish(self) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """Copy written non-contiguous arguments back; the call's return value."""
        for orig, buf in self.copy_back:
            orig[...] = buf
        if not self.written:
            return None
        return self.written[0] if len(self.written) == 1 else tuple(self.written)


def _scalar_dtype_ok(dt: DType, v: Any, exact: bool = False) -> bool:
    """Can `v` be passed for a scalar of `dt`: bools for bool; ints (Python or numpy) for ints; ints and
    floats for floats. `exact`: numpy scalars must have `dt` itself (how specialisations are picked
    first, so that np.float16(2) picks a float16 variant over a float32 one)."""
    if dt.kind == "b":
        return isinstance(v, (bool, np.bool_))
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, np.generic):
        if exact and dt.name != "bfloat16":
            return v.dtype == dt.np
        return v.dtype.kind in ("iu" if dt.is_int else "fiu")
    if dt.is_int:
        return isinstance(v, int)
    return isinstance(v, (int, float))


def matches(spec: dict, args: tuple, exact: bool = False) -> bool:
    """Do the call's array dtypes and scalar kinds fit `spec` (used to pick a specialisation)?"""
    if len(args) != len(spec["args"]):
        return False
    for a, v in zip(spec["args"], args):
        if (a["kind"] == "none") != (v is None):  # an optional tensor left out: the argument is None
            return False
        if v is None:
            continue
        dt = BY_NAME[a["dtype"]]
        if a["kind"] == "tensor":
            if not isinstance(v, np.ndarray) or v.dtype != dt.np:
                return False
        elif not _scalar_dtype_ok(dt, v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v, exact):
            return False
    return True


def _scalar(a: dict, v: Any, where: str) -> Any:
    dt = BY_NAME[a["dtype"]]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if not _scalar_dtype_ok(dt, v):
        want = {"b": "a bool", "i": "an int", "u": "a non-negative int", "f": "a float or an int"}[dt.kind]
        raise TypeError(f"{where}: argument {a['name']!r} expects {want} ({a['dtype']}), got "
                        f"{describe_value(v)} {v!r}")
    if dt.is_int:
        info = np.iinfo(dt.np)
        if not info.min <= int(v) <= info.max:
            raise ValueError(f"{where}: argument {a['name']!r} = {int(v)} is out of range of {dt.name} "
                             f"[{info.min}, {info.max}]")
        return dt.np.type(int(v))
    if dt.is_float:
        f = float(v)
        limit = 3.3895313892515355e38 if dt.name == "bfloat16" else float(np.finfo(dt.np).max)
        if np.isfinite(f) and abs(f) > limit:
            raise ValueError(f"{where}: argument {a['name']!r} = {f!r} is out of range of {dt.name} "
                             f"(largest finite value {limit:.6g})")
        return np.float32(f) if dt.name == "bfloat16" else dt.np.type(f)
    return np.bool_(bool(v))


def bind(spec: dict, args: tuple, where: str) -> Bound:
    """Check `args` against `spec`; raise TypeError/ValueError naming the argument otherwise."""
    params = spec["args"]
    if len(args) != len(params):
        raise TypeError(f"{where}: takes {len(params)} arguments ({describe_signature(spec)}), "
                        f"got {len(args)}")
    values: list[Any] = []
    sizes: dict[str, int] = {}
    size_from: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    scalars: dict[str, Any] = {}
    bound = Bound(spec, values, sizes, shapes, scalars)
    for a, v in zip(params, args):
        if a["kind"] == "none":  # an optional tensor this specialisation leaves out
            if v is not None:
                raise TypeError(f"{where}: argument {a['name']!r} is left out of this specialisation: "
                                f"pass None")
            values.append(None)
            continue
        if a["kind"] == "scalar":
            s = _scalar(a, v, where)
            values.append(s)
            scalars[a["name"]] = s.item()
            continue
        dt, name, shape = BY_NAME[a["dtype"]], a["name"], a.get("shape", [])
        if not isinstance(v, np.ndarray):
            raise TypeError(f"{where}: argument {name!r} expects a numpy array ({describe_arg(a)}), got "
                            f"{describe_value(v)}")
        if v.dtype != dt.np:
            hint = " (bfloat16 tensors are passed as uint16 arrays of bit patterns)" \
                if dt.name == "bfloat16" else ""
            raise TypeError(f"{where}: argument {name!r} has dtype {v.dtype}, expected {dt.np}{hint}")
        if v.ndim != len(shape):
            raise ValueError(f"{where}: argument {name!r} has rank {v.ndim} (shape {list(v.shape)}), "
                             f"expected rank {len(shape)} ({describe_arg(a)})")
        for axis, (want, got) in enumerate(zip(shape, v.shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(f"{where}: argument {name!r} has size {got} along axis {axis}, but the "
                                 f"kernel was compiled for the static size {want} ({describe_arg(a)})")
            if isinstance(want, str):
                if want in sizes and sizes[want] != got:
                    raise ValueError(f"{where}: symbolic size {want!r} disagrees: {size_from[want]} = "
                                     f"{sizes[want]} but {name}.shape[{axis}] = {got}")
                sizes.setdefault(want, got)
                size_from.setdefault(want, f"{name}.shape[{axis}]")
        if v.size > _INT32_MAX:
            raise ValueError(f"{where}: argument {name!r} has {v.size} elements; kernels index with int32 "
                             f"(at most {_INT32_MAX})")
        writes = a.get("access", "read") != "read"
        if writes and not v.flags.writeable:
            raise ValueError(f"{where}: argument {name!r} is written by the kernel but the array is "
                             f"read-only")
        buf = v if v.flags.c_contiguous else np.ascontiguousarray(v)
        if writes:
            bound.written.append(v)
            if buf is not v:
                bound.copy_back.append((v, buf))
        values.append(buf)
        shapes[name] = tuple(v.shape)
    return bound


def scalar_bytes(dtype: str, value: Any) -> np.ndarray:
    """A bound scalar as the 0-d array whose bytes the kernel reads (FORMAT.md section 5): bfloat16
    values as their bit patterns (rounded to nearest even), others as their own type."""
    if dtype == "bfloat16":
        from .cpu_space import bf16_to_bits
        return np.asarray(bf16_to_bits(np.float32(value))).reshape(())
    return np.asarray(value).reshape(())


def metal_buffers(bound: Bound) -> dict[int, np.ndarray]:
    """The launch's Metal argument table (FORMAT.md section 5): [[buffer(i)]] index -> the contiguous
    array of a tensor, the 0-d array of a scalar (`scalar_bytes`), and the int32 dims buffer. What
    every device running the Metal source binds (metal.py, enigma.verify's msl-cpu)."""
    spec = bound.spec
    out: dict[int, np.ndarray] = {}
    for i, (a, v) in enumerate(zip(spec["args"], bound.values)):
        if a["kind"] == "none":  # an optional tensor this specialisation leaves out: nothing bound
            continue
        out[a.get("buffer", i)] = v if a["kind"] == "tensor" else scalar_bytes(a["dtype"], v)
    if spec.get("dims_buffer") is not None:
        out[spec["dims_buffer"]] = dims_array(spec, bound)
    return out


def dims_array(spec: dict, bound: Bound) -> np.ndarray:
    """The dims buffer of FORMAT.md section 5: sizes then element strides of every tensor argument
    with a `dims_offset`, as int32."""
    slots = [(a["dims_offset"], v) for a, v in zip(spec["args"], bound.values)
             if a["kind"] == "tensor" and a.get("dims_offset") is not None]
    n = max((off + 2 * v.ndim for off, v in slots), default=0)
    dims = np.zeros(max(n, 1), np.int32)
    for off, v in slots:
        dims[off:off + v.ndim] = v.shape
        dims[off + v.ndim:off + 2 * v.ndim] = [s // v.itemsize for s in v.strides]
    return dims


def check_requires(spec: dict, bound: Bound, where: str) -> None:
    """Raise ValueError if the arguments break a condition the kernel was compiled to rely on
    (FORMAT.md section 3, "requires": e.g. a layout's tile must fit a dynamically sized tensor)."""
    for r in spec.get("requires", ()):
        try:
            holds = _grid.evaluate(r["expr"], bound.sizes, bound.shapes, bound.scalars)
        except GridError as e:
            raise GridError(f"{where}: 'requires' {r['text']!r}: {e}") from None
        if not holds:
            at = f"{spec.get('file', '?')}:{r.get('line', 0)}"
            raise ValueError(f"{where}: these arguments break a condition the kernel relies on: "
                             f"{r['text']} ({r['message']}; required at {at})")
