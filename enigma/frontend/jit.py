"""@enigma.jit: host code run once at compile time (on numpy arrays or TensorSpecs) that records its
kernel launches, in order, with the temporaries it allocates (`enigma.empty`) and the choices it
leaves to launch time (`enigma.select`). `record_of` is what enigma.compile traces; the compiler turns
the Recording into a jit entry (runtime/FORMAT.md, "Entries"): data evaluated at every call."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from enigma_runtime.dtypes import DType

from enigma.errors import EnigmaError, def_line, user_frame, wrap_error
from enigma.frontend.grid import Expr, guards
from enigma.frontend.host import HostFloat, HostTensor, host_value
from enigma.frontend.kernel import KernelFunction
from enigma.frontend.launch import Launch, Recording, Step, jit_state


class JitFunction:
    """Host code run once at compile time (on numpy arrays or TensorSpecs) that launches kernels."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.name = fn, fn.__name__

    def __repr__(self) -> str:
        return f"<enigma.jit {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        file, line = user_frame(2)
        raise EnigmaError(f"an @enigma.jit function ({self.name}) is not called directly", file, line,
                          hint=f"compile it: ck = enigma.compile({self.name}, *arrays); then run "
                               f"ck(*arrays) with the jit's own arguments, at any size")

    @property
    def params(self) -> list[str]:
        return list(inspect.signature(self.fn).parameters)

    def record(self, *args: Any) -> tuple[Recording, list[tuple[str, Any]]]:
        """Run the host function on `args` (arrays / TensorSpecs / numbers / dtypes); returns what it
        recorded and its parameters as (name, host value) pairs."""
        sig = inspect.signature(self.fn)
        try:
            sig.bind(*args)
        except TypeError as e:
            raise EnigmaError(f"@jit function {self.name!r} got the wrong arguments: {e}",
                              self.fn.__code__.co_filename, def_line(self.fn),
                              hint=f"pass its arguments to enigma.compile: enigma.compile({self.name}, "
                                   f"{', '.join(sig.parameters)})") from None
        names = list(sig.parameters)
        params: list[tuple[str, Any]] = []
        for k, a in enumerate(args):
            label = names[k] if k < len(names) else f"arg{k}"
            if isinstance(a, DType):  # a scalar known only at launch (a build has no values): symbolic
                h: Any = Expr("arg", name=label)
            elif isinstance(a, (float, np.floating)) and not isinstance(a, bool):
                h = HostFloat.of(float(a), label)
            elif isinstance(a, (bool, np.bool_)):
                h = Expr("arg", name=label, value=int(a))
            else:
                h = host_value(a, label)
            params.append((label, h))
        rec = Recording()
        jit_state.stack.append(rec)
        outer, guards.sink = guards.sink, rec.guards
        try:
            rec.returned = self.fn(*[h for _, h in params])
        except EnigmaError:
            raise
        except Exception as e:  # noqa: BLE001 - relocated to the user's line
            raise wrap_error(e, f"@jit function {self.name!r}") from e
        finally:
            guards.sink = outer
            jit_state.stack.pop()
        if not rec.steps:
            raise EnigmaError(f"@jit function {self.name!r} launched no kernel",
                              self.fn.__code__.co_filename, def_line(self.fn),
                              hint="call kernel(args...).launch(grid=..., block=...)")
        return rec, params

    def run(self, *args: Any) -> Launch:
        """The launch of a jit that launches one kernel (its first case); see `record`."""
        rec, _ = self.record(*args)
        return rec.steps[0].cases[0][1]


def jit(fn: Callable[..., Any]) -> JitFunction:
    """`@enigma.jit`: host function that launches kernels; compiled with enigma.compile(fn, *args)."""
    return JitFunction(fn)


def _temp(shape: Any, dtype: DType, init: str, what: str) -> HostTensor:
    file, line = user_frame(3)
    if not jit_state.stack:
        raise EnigmaError(f"{what} allocates a temporary of an @enigma.jit function; call it inside one",
                          file, line, hint="allocate numpy arrays outside a jit")
    if not isinstance(dtype, DType):
        raise EnigmaError(f"{what}: the element type must be an enigma dtype (enigma.float32, ...), got "
                          f"{dtype!r}", file, line)
    sizes = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, Expr, np.integer)):
            raise EnigmaError(f"{what}: sizes must be ints or launch-size expressions, got "
                              f"{type(s).__name__} {s!r}", file, line,
                              hint="compute sizes from the jit's argument shapes: enigma.ceil_div(n, 256)")
    sizes = tuple(int(s) if isinstance(s, np.integer) else s for s in sizes)
    rec = jit_state.stack[-1]
    t = HostTensor(f"tmp{len(rec.temps)}", dtype, tuple(s if isinstance(s, int) else None for s in sizes),
                   sizes=sizes)
    t.init, t.line = init, line
    rec.temps.append(t)
    return t


def empty(shape: Any, dtype: DType) -> HostTensor:
    """`enigma.empty((n_groups,), float32)` in a @jit: a temporary tensor allocated at every call
    (sizes may be launch-size expressions), passed to later launches or returned to the caller. Its
    contents are unspecified until a kernel writes them (use enigma.zeros for accumulators)."""
    return _temp(shape, dtype, "empty", "enigma.empty")


def zeros(shape: Any, dtype: DType) -> HostTensor:
    """Like enigma.empty, filled with zeros at every call (e.g. for atomic accumulators)."""
    return _temp(shape, dtype, "zeros", "enigma.zeros")


def record_of(fn: Any, args: tuple) -> tuple[Recording, list[tuple[str, Any]] | None]:
    """What enigma.compile compiles: a @jit's recording and parameters, or a bare kernel's own launch
    as a one-step recording (parameters None: its CompiledKernel takes the kernel's arguments)."""
    if isinstance(fn, JitFunction):
        return fn.record(*args)
    if isinstance(fn, KernelFunction):
        launch = fn.launch_from_annotations(args)
        return Recording(steps=[Step([(True, launch)], fn.file, fn.def_line)]), None
    file, line = user_frame(3)
    raise EnigmaError(f"enigma.compile expects an @enigma.kernel or @enigma.jit function, got "
                      f"{type(fn).__name__}", file, line, hint="decorate the function with @enigma.kernel")


def launch_of(fn: Any, args: tuple) -> Launch:
    """The (first) launch enigma.compile(fn, *args) compiles."""
    rec, _ = record_of(fn, args)
    return rec.steps[0].cases[0][1]



# ---------------------------------------------------------------------------------------------------
# a Recording as data: the jit entry of FORMAT.md ("Entries")

def _param_json(name: str, arg: Any, host: Any) -> dict[str, Any]:
    if isinstance(host, HostTensor):
        shape = [None] * host.ndim if host.array is not None else list(host.spec_shape)
        return {"name": name, "kind": "tensor", "dtype": host.dtype.name, "shape": shape}
    if isinstance(arg, DType):
        return {"name": name, "kind": "scalar", "dtype": arg.name}
    if isinstance(arg, (bool, np.bool_)):
        return {"name": name, "kind": "scalar", "dtype": "bool"}
    if isinstance(arg, (int, np.integer)):
        return {"name": name, "kind": "scalar", "dtype": "int32"}
    if isinstance(arg, (float, np.floating)):
        return {"name": name, "kind": "scalar", "dtype": "float32"}
    if arg is None or isinstance(arg, str):
        return {"name": name, "kind": "const", "value": arg}
    raise TypeError(f"argument {name!r} is a {type(arg).__name__}; a compiled jit takes arrays, "
                    "TensorSpecs, numbers, dtypes, strings or None")


def entry_of(fn: JitFunction, rec: Recording, params: list[tuple[str, Any]], args: tuple,
             part_of: Callable[[Launch], tuple[str, str]]) -> dict[str, Any]:
    """The jit entry (FORMAT.md, "Entries") of one recording: every kernel argument, grid and
    temporary size as data over the jit's parameters. `part_of(launch)` names the compiled kernel
    of a launch: (kernel table name, Metal function name)."""
    file, line = fn.fn.__code__.co_filename, def_line(fn.fn)
    refs: dict[int, str] = {}
    scalars: dict[int, str] = {}
    pjson = []
    for (name, host), arg in zip(params, args):
        try:
            pjson.append(_param_json(name, arg, host))
        except TypeError as e:
            raise EnigmaError(f"@jit function {fn.name!r}: {e}", file, line) from None
        (refs if isinstance(host, HostTensor) else scalars)[id(host)] = name
    for t in rec.temps:
        refs[id(t)] = t.label

    def expr(e: Any, where: str, at: int) -> Any:
        if isinstance(e, (bool, np.bool_)):
            return int(e)
        if isinstance(e, (int, np.integer)):
            return int(e)

        def leaf(x: Expr) -> Any:
            if x.kind == "arg" and id(x) in scalars:
                return {"arg": scalars[id(x)]}
            if x.kind in ("dim", "sym") and id(x.host) in refs:
                return {"sym": x.name} if x.kind == "sym" else {"dim": [refs[id(x.host)], x.axis]}
            if x.value is not None:
                return x.value
            raise EnigmaError(f"{where}: the size {x} is not known at compile time and is not a size of "
                              f"the jit's arguments", file, at,
                              hint="compute launch sizes from the jit's own arguments")
        if not isinstance(e, Expr):
            raise EnigmaError(f"{where}: {type(e).__name__} {e!r} is not a launch-size expression", file, at)
        return e.to_json(leaf)

    def argument(launch: Launch, a: Any, at: int) -> Any:
        v = launch.bindings.get(a.name)
        where = f"argument {a.name!r} of kernel {launch.kernel.name!r}"
        if a.kind == "none":  # an optional tensor left out (Tensor[...] | None): the kernel gets None
            return {"const": None}
        if a.kind == "tensor":
            if isinstance(v, HostTensor) and id(v) in refs:
                return {"tensor": refs[id(v)]}
            raise EnigmaError(f"{where} is not an argument of the jit or a temporary it allocated", file, at,
                              hint="pass the jit's own arrays, or allocate with enigma.empty(shape, dtype) "
                                   "inside the jit (a compiled jit allocates it at every call)")
        if isinstance(v, HostFloat):
            if v.origin is None:
                raise EnigmaError(f"{where} is computed in Python from a float argument of the jit; a "
                                  "compiled jit passes scalar arguments through unchanged", file, at,
                                  hint="pass the jit's argument itself and compute in the kernel")
            return {"scalar": v.origin}
        if isinstance(v, Expr):
            if id(v) in scalars:
                return {"scalar": scalars[id(v)]}
            return expr(v, where, at)
        if isinstance(v, (bool, int, float, np.number, np.bool_)):
            return {"const": v.item() if isinstance(v, np.generic) else v}
        raise EnigmaError(f"{where} is a {type(v).__name__}, which a compiled jit cannot pass", file, at)

    launches = []
    for step in rec.steps:
        cases = []
        for cond, launch in step.cases:
            if launch.grid_exprs is None or launch.block is None:
                raise EnigmaError(f"the launch of kernel {launch.kernel.name!r} has no "
                                  f"{'grid' if launch.grid_exprs is None else 'block'}", file, step.line,
                                  hint="give .launch(grid=..., block=...) or the kernel decorator's")
            kname, metal = part_of(launch)
            case: dict[str, Any] = {
                "kernel": kname, "kernel_name": metal,
                "args": [argument(launch, a, step.line) for a in launch.kernel.args],
                "grid": [expr(g, "the grid", step.line) for g in launch.grid_exprs],
                "block": list(launch.block),
            }
            if cond is not True:
                case["when"] = expr(cond, "an enigma.select condition", step.line)
            cases.append(case)
        launches.append({"line": step.line, "cases": cases})
    temps = [{"name": t.label, "dtype": t.dtype.name, "init": t.init, "line": t.line,
              "shape": [expr(s, f"the shape of temporary {t.label}", t.line) for s in t.shape]}
             for t in rec.temps]
    requires: list[dict[str, Any]] = []
    for used_expr, value, gfile, gline in rec.guards:
        used = expr(used_expr, "a size used in Python", gline)
        cond = {"op": "eq", "args": [used, int(value)]}
        if not isinstance(used, int) and all(r["expr"] != cond for r in requires):  # constants need none
            requires.append({"expr": cond, "text": f"{used_expr} == {int(value)}", "line": gline,
                             "message": f"the jit used this value in Python at {gfile}:{gline}, so it was "
                                        "compiled for it; compile again for other sizes, or choose at "
                                        "launch with enigma.select"})

    def returned(v: Any) -> Any:
        if isinstance(v, HostTensor) and id(v) in refs:
            return {"tensor": refs[id(v)]}
        raise EnigmaError(f"@jit function {fn.name!r} returns {type(v).__name__} {v!r}; a compiled jit "
                          "returns only tensors it was given or allocated (enigma.empty)", file, line)
    ret = rec.returned
    returns = None if ret is None else ([returned(v) for v in ret] if isinstance(ret, (tuple, list))
                                        else returned(ret))
    return {"name": fn.name, "file": file, "line": line, "params": pjson, "requires": requires,
            "temps": temps, "launches": launches, "returns": returns}
