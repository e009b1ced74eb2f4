"""Jit entries (FORMAT.md section 7): a compiled @enigma.jit called with its own arguments.

An entry is data: the jit's parameters, the temporaries it allocates, its launches in order (each
with cases chosen by conditions), and what it returns. Every kernel argument, temporary size and grid
is a grid expression (grid.py, the one evaluator) over the sizes and integer scalars of the call, so
nothing of the package that shipped it is imported or executed.

    entry = enigma_runtime.load("example_pkg")["add"]
    entry(a, b, c)          # a @jit add(a, b, c): sizes, grids and temporaries computed per call
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import grid as _grid
from .dtypes import BY_NAME
from .errors import LaunchError, ManifestError

ARG_KINDS = ("tensor", "scalar", "const")  # an argument node {"tensor": n} / {"scalar": n} / {"const": v}


# ---------------------------------------------------------------------------------------------------
# validation (called by the manifest reader and by Entry)

def validate_entry(entry: Any, where: str, kernels: Mapping[str, list[dict]] | None = None) -> dict:
    """Check one entry's structure (FORMAT.md section 7); with `kernels` (a manifest's table), also that
    every launch names a kernel and a specialisation (by Metal function name) that exist."""
    def bad(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}")

    def expr(e: Any, what: str) -> None:
        try:
            _grid.validate(e)
        except Exception as err:
            raise bad(f"{what}: {err}") from None

    if not isinstance(entry, dict):
        raise bad(f"an entry must be an object, not {type(entry).__name__}")
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise bad("'name' must be a non-empty string")
    params = entry.get("params")
    if not isinstance(params, list):
        raise bad("'params' must be a list")
    for key in ("temps", "requires"):
        if not isinstance(entry.get(key, []), list):
            raise bad(f"{key!r} must be a list")
    names: dict[str, str] = {}
    for i, p in enumerate(params):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or p["name"] in names:
            raise bad(f"parameter {i} must be an object with a unique 'name'")
        kind = p.get("kind")
        if kind not in ("tensor", "scalar", "const"):
            raise bad(f"parameter {p['name']!r}: 'kind' must be tensor, scalar or const, not {kind!r}")
        if kind != "const" and not (isinstance(p.get("dtype"), str) and p["dtype"] in BY_NAME):
            raise bad(f"parameter {p['name']!r}: unknown dtype {p.get('dtype')!r}")
        if kind == "tensor":
            shape = p.get("shape")
            if not isinstance(shape, list) or not all(
                    s is None or isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool)
                                                        and s >= 0) for s in shape):
                raise bad(f"parameter {p['name']!r}: 'shape' must be a list of ints, names and nulls")
        names[p["name"]] = kind
    for t in entry.get("temps", []):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or t["name"] in names:
            raise bad(f"temporary {t!r} must be an object with a 'name' no parameter has")
        if not (isinstance(t.get("dtype"), str) and t["dtype"] in BY_NAME) \
                or t.get("init", "empty") not in ("empty", "zeros"):
            raise bad(f"temporary {t['name']!r}: bad 'dtype' {t.get('dtype')!r} or 'init' {t.get('init')!r}")
        if not isinstance(t.get("shape"), list):
            raise bad(f"temporary {t['name']!r}: 'shape' must be a list of expressions")
        for e in t["shape"]:
            expr(e, f"temporary {t['name']!r} shape")
        names[t["name"]] = "tensor"
    for r in entry.get("requires", []):
        if not (isinstance(r, dict) and isinstance(r.get("text"), str) and isinstance(r.get("message"), str)):
            raise bad(f"'requires' entry {r!r} must be an object with 'expr', 'text', 'message', 'line'")
        expr(r.get("expr"), f"'requires' entry {r.get('text')!r}")

    def ref(node: Any, what: str) -> None:
        if not (isinstance(node, dict) and len(node) == 1):
            expr(node, what)  # an int or {"op": ...}
            return
        (kind, value), = node.items()
        if kind == "tensor" or kind == "scalar":
            if not isinstance(value, str) or names.get(value) != kind:
                raise bad(f"{what}: {node!r} names no {kind} parameter or temporary")
        elif kind == "const":  # None: an optional tensor the kernel's specialisation leaves out
            if not isinstance(value, (int, float, bool)) and value is not None:
                raise bad(f"{what}: constant {value!r} is not a number, a bool or null")
        else:
            expr(node, what)

    launches = entry.get("launches")
    if not isinstance(launches, list) or not launches:
        raise bad("'launches' must be a non-empty list")
    for i, launch in enumerate(launches):
        cases = launch.get("cases") if isinstance(launch, dict) else None
        if not isinstance(cases, list) or not cases:
            raise bad(f"launch {i}: 'cases' must be a non-empty list")
        for case in cases:
            w = f"launch {i}"
            if not isinstance(case, dict) or not isinstance(case.get("kernel"), str) \
                    or not isinstance(case.get("kernel_name"), str):
                raise bad(f"{w}: a case needs 'kernel' and 'kernel_name' strings")
            if kernels is not None:
                specs = kernels.get(case["kernel"])
                if not specs or all(s.get("kernel_name") != case["kernel_name"] for s in specs):
                    raise bad(f"{w}: no kernel {case['kernel']!r} with the specialisation "
                              f"{case['kernel_name']!r} in the manifest")
            if not isinstance(case.get("args"), list):
                raise bad(f"{w}: 'args' must be a list")
            for a in case["args"]:
                ref(a, f"{w} argument")
            g, b = case.get("grid"), case.get("block")
            if not (isinstance(g, list) and len(g) == 3 and isinstance(b, list) and len(b) == 3
                    and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in b)):
                raise bad(f"{w}: 'grid' must be 3 expressions and 'block' 3 positive ints")
            for e in g:
                expr(e, f"{w} grid")
            if "when" in case:
                expr(case["when"], f"{w} condition")
    ret = entry.get("returns")
    for r in (ret if isinstance(ret, list) else [] if ret is None else [ret]):
        if not (isinstance(r, dict) and set(r) == {"tensor"}):
            raise bad(f"'returns' entry {r!r} must be {{'tensor': name}}")
        ref(r, "'returns'")
    return entry


# ---------------------------------------------------------------------------------------------------
# calling an entry

Resolve = Callable[[str, str], Any]  # (kernel table name, Metal function name) -> (Kernel, Specialisation)


class Entry:
    """A compiled @jit, called with the jit's arguments: `entry(a, b, c, device=None)`."""

    def __init__(self, entry: dict, resolve: Resolve, *, where: str = "", file: str = "") -> None:
        self.entry = validate_entry(entry, where or f"entry {entry.get('name')!r}")
        self.name: str = entry["name"]
        self.where = where or f"jit {self.name!r}"
        self.file = file or entry.get("file", "?")
        self._resolve = resolve
        self._parts: dict[str, Any] = {}
        self.params: list[dict] = entry["params"]
        self.temps: list[dict] = entry.get("temps", [])
        self.requires: list[dict] = entry.get("requires", [])
        self.launches: list[list[dict]] = [launch["cases"] for launch in entry["launches"]]
        ret = entry.get("returns")
        self._returns: list[str] | None = None if ret is None else [r["tensor"] for r in
                                                                    (ret if isinstance(ret, list) else [ret])]
        self._return_tuple = isinstance(ret, list)
        self._np = {p["name"]: BY_NAME[p["dtype"]].np for p in self.params if p["kind"] == "tensor"}
        self._bf16 = {p["name"] for p in self.params if p.get("dtype") == "bfloat16"}
        self._static = {p["name"]: [(k, s) for k, s in enumerate(p["shape"]) if not isinstance(s, str)
                                    and s is not None] for p in self.params if p["kind"] == "tensor"}
        self._named = {p["name"]: [(k, s) for k, s in enumerate(p["shape"]) if isinstance(s, str)]
                       for p in self.params if p["kind"] == "tensor"}

    def __repr__(self) -> str:
        def show(p: dict) -> str:
            if p["kind"] == "tensor":
                dims = ", ".join("?" if s is None else str(s) for s in p["shape"])
                return f"{p['name']}: {p['dtype']}[{dims}]"
            return f"{p['name']}: {p.get('dtype', 'const')}"
        return (f"<enigma_runtime.Entry {self.name}({', '.join(show(p) for p in self.params)}), "
                f"{len(self.launches)} launch{'es' if len(self.launches) != 1 else ''}>")

    def part(self, kernel: str, kernel_name: str) -> Any:
        hit = self._parts.get(kernel_name)
        if hit is None:
            hit = self._parts[kernel_name] = self._resolve(kernel, kernel_name)
        return hit

    def _bind(self, args: tuple) -> tuple[dict, dict, dict, dict, list]:
        where = self.where
        if len(args) != len(self.params):
            raise TypeError(f"{where}: takes {len(self.params)} arguments "
                            f"({', '.join(p['name'] for p in self.params)}), got {len(args)}")
        values: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        scalars: dict[str, Any] = {}
        copy_back: list[tuple[np.ndarray, np.ndarray]] = []
        for p, v in zip(self.params, args):
            name, kind = p["name"], p["kind"]
            if kind == "tensor":
                want = self._np[name]
                if not isinstance(v, np.ndarray):
                    raise TypeError(f"{where}: argument {name!r} expects a numpy array of {p['dtype']}, got "
                                    f"{type(v).__name__}")
                if v.dtype != want:
                    raise TypeError(f"{where}: argument {name!r} has dtype {v.dtype}, expected {want}"
                                    + (" (bfloat16 as uint16 bit patterns)" if name in self._bf16 else ""))
                if v.ndim != len(p["shape"]):
                    raise ValueError(f"{where}: argument {name!r} has rank {v.ndim}, expected "
                                     f"{len(p['shape'])}")
                for axis, s in self._static[name]:
                    if v.shape[axis] != s:
                        raise ValueError(f"{where}: argument {name!r} has size {v.shape[axis]} along axis "
                                         f"{axis}, but the jit was compiled for the static size {s}")
                for axis, s in self._named[name]:
                    got = v.shape[axis]
                    if sizes.setdefault(s, got) != got:
                        raise ValueError(f"{where}: symbolic size {s!r} disagrees: {sizes[s]} elsewhere but "
                                         f"{name}.shape[{axis}] = {got}")
                if not v.flags.c_contiguous:  # one buffer for every launch (Metal shares it by identity)
                    buf = np.ascontiguousarray(v)
                    copy_back.append((v, buf))
                    v = buf
                values[name] = v
                shapes[name] = v.shape
            elif kind == "scalar":
                if isinstance(v, np.ndarray) and v.ndim == 0:
                    v = v[()]
                values[name] = v  # passed to kernels as given (their binding checks it)
                v = v.item() if isinstance(v, np.generic) else v
                scalars[name] = int(v) if isinstance(v, bool) else v  # expressions count bools as 0/1
            elif v != p.get("value"):
                raise ValueError(f"{where}: argument {name!r} was {p.get('value')!r} when the jit was "
                                 f"compiled, got {v!r}; compile it again for another value")
        return values, sizes, shapes, scalars, copy_back

    def __call__(self, *args: Any, device: Any = None) -> Any:
        """Run every launch in order on `device` (a name or a device; default: the runtime's default
        device); returns what the jit returns, else the written arguments (one array, a tuple in
        argument order, or None), like a kernel call."""
        values, sizes, shapes, scalars, copy_back = self._bind(args)
        where = self.where
        ev = _grid.evaluate
        for r in self.requires:
            if not ev(r["expr"], sizes, shapes, scalars):
                raise ValueError(f"{where}: these arguments break a condition the jit was compiled for: "
                                 f"{r['text']} ({r['message']}; {self.file}:{r.get('line', 0)})")
        for t in self.temps:
            shape = tuple(ev(e, sizes, shapes, scalars) for e in t["shape"])
            if any(s < 0 for s in shape):
                raise LaunchError(f"{where}: temporary {t['name']} has the negative shape {shape}")
            make = np.zeros if t.get("init") == "zeros" else np.empty
            values[t["name"]] = make(shape, BY_NAME[t["dtype"]].np)
            shapes[t["name"]] = shape
        dev = None
        batch = None
        queued = []
        written: dict[int, np.ndarray] = {}
        for i, cases in enumerate(self.launches):
            for case in cases:
                if "when" not in case or ev(case["when"], sizes, shapes, scalars):
                    break
            else:
                raise LaunchError(f"{where}: launch {i}: no case's condition holds for these arguments")
            k, sp = self.part(case["kernel"], case["kernel_name"])
            kargs = []
            for a in case["args"]:
                if isinstance(a, dict) and ("tensor" in a or "scalar" in a):
                    kargs.append(values[a.get("tensor", a.get("scalar"))])
                elif isinstance(a, dict) and "const" in a:
                    kargs.append(a["const"])
                else:
                    kargs.append(ev(a, sizes, shapes, scalars))
            if dev is None:
                dev = k.device_for(device)
                batch = getattr(dev, "run_many", None)  # Metal: every launch in one command buffer
            grid = tuple(ev(e, sizes, shapes, scalars) for e in case["grid"])
            bound, g, b = k.prepare_launch(sp, kargs, grid, case["block"],
                                           f"{where}, launch {i} (kernel {k.name!r})")
            for v in bound.written:
                written[id(v)] = v
            if batch is not None:
                queued.append((sp.handle(dev), bound, g, b))
            else:
                dev.run(sp.handle(dev), bound, g, b)
                bound.finish()
        if queued:
            assert batch is not None
            batch(queued)
            for _, bound, _, _ in queued:
                bound.finish()
        for orig, buf in copy_back:
            if id(buf) in written:
                orig[...] = buf
        if self._returns is not None:
            out = [values[n] for n in self._returns]
            return tuple(out) if self._return_tuple else out[0]
        back = {id(buf): orig for orig, buf in copy_back}
        res = [back.get(id(values[p["name"]]), args[j]) for j, p in enumerate(self.params)
               if p["kind"] == "tensor" and id(values[p["name"]]) in written]
        return None if not res else res[0] if len(res) == 1 else tuple(res)
