"""@enigma.kernel: device code traced to ir.Kernel per specialisation (argument dtypes, shapes and
constexpr values), its `specialize=` variants, and `kernel(args...)` inside an @enigma.jit, whose
`.launch(grid=..., block=...)` records the launch (launch.py; the @jit itself is jit.py)."""
from __future__ import annotations

import functools
import inspect
import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import EnigmaError, user_frame, wrap_error
from enigma.frontend import control
from enigma.frontend.builder import Builder, tracing
from enigma.frontend.func import func as func  # noqa: F401 - the old import path of @enigma.func
from enigma.frontend.grid import Choice, Expr, and_condition, flatten_choices, substitute
from enigma.frontend.host import HostFloat, HostTensor, host_value
from enigma.frontend.launch import Launch, Step, jit_state, make_launch
from enigma.frontend.params import Param, parse_params
from enigma.frontend.rewrite import rewrite
from enigma.frontend.tensors import TensorRef
from enigma.frontend.types import Shape, TensorSpec, TensorType
from enigma.frontend.values import Val


def _err(message: str, file: str, line: int, hint: str = "",
         cls: type[EnigmaError] = EnigmaError) -> EnigmaError:
    return cls(message, file, line, hint=hint)


def variant_name(values: dict[str, Any]) -> str:
    """A C-identifier suffix for a `specialize=` entry: its distinct values in parameter-name order
    (dtypes by their short names), e.g. {"a": float16, "b": float16} -> "f16"."""
    parts: list[str] = []
    for k, v in sorted(values.items()):
        part = f"no_{k}" if v is None else v.short if isinstance(v, DType) else \
            re.sub(r"[^0-9A-Za-z]", "_", str(v))
        if part not in parts:
            parts.append(part)
    return "_".join(parts) or "v"


class KernelFunction:
    """A kernel: traced to IR per specialisation (argument dtypes, shapes and constexpr values)."""

    def __init__(self, fn: Callable[..., Any], block: Any = None, grid: Any = None,
                 specialize: list[dict[str, Any]] | None = None,
                 _preset: dict[str, Any] | None = None, _variant: str = "") -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.name = fn, fn.__name__
        self.block, self.grid = block, grid
        self.specialize = list(specialize or [])
        self.preset = dict(_preset or {})
        self.variant = _variant  # "" for the annotations' own variant; names the Metal function's suffix
        self._rewritten: tuple[Callable[..., Any], int] | None = None
        self._params: list[Param] | None = None
        self._source: str | None = None

    def __repr__(self) -> str:
        return f"<enigma.kernel {self.name}>"

    @property
    def file(self) -> str:
        return self.fn.__code__.co_filename

    @property
    def def_line(self) -> int:
        return self.rewritten()[1]

    @property
    def source(self) -> str:
        if self._source is None:
            try:
                self._source = inspect.getsource(self.fn)
            except (OSError, TypeError):
                self._source = self.fn.__code__.co_code.hex()
        return self._source

    def rewritten(self) -> tuple[Callable[..., Any], int]:
        if self._rewritten is None:
            self._rewritten = rewrite(self.fn, control)
        return self._rewritten

    def variants(self) -> list[KernelFunction]:
        """This kernel once per `specialize=` entry (the annotations' own variant first). Each variant
        has its own Metal function name: `enigma_kernel_vector_add_f16` for {"a": float16, ...}.
        An optional tensor (`Tensor[...] | None`) doubles them: every variant also without it
        (`{"mask": None}`, Metal name suffix `no_mask`)."""
        out, names = [self], {self.variant}
        specs: list[dict[str, Any]] = list(self.specialize)
        for p in self.params:
            if p.kind == "tensor" and p.tensor is not None and p.tensor.optional:
                base_specs: list[dict[str, Any]] = [{}] + specs
                specs += [{**s, p.name: None} for s in base_specs]
        for s in specs:
            name = base = variant_name(s)
            k = 1
            while name in names:
                k += 1
                name = f"{base}_{k}"
            names.add(name)
            out.append(KernelFunction(self.fn, self.block, self.grid, None, {**self.preset, **s}, name))
        return out

    def variant_for(self, values: dict[str, Any]) -> KernelFunction:
        """The variant (this kernel or a `specialize=` entry) whose tensor element types fit the
        arrays / TensorSpecs in `values`: enigma.compile, a @jit launch and the build pick alike. A
        dtype-generic kernel (Tensor[None]) given no tensors takes its first typed variant."""
        if not self.specialize:
            return self
        variants = self.variants()
        if any(p.kind == "tensor" and p.tensor is not None and p.tensor.dtype is None for p in self.params):
            variants = variants[1:] + variants[:1]  # a generic kernel: its specialisations come first
        for v in variants:
            ok = True
            for p in v.params:
                if p.kind != "tensor":
                    continue
                assert p.tensor is not None
                preset = v.preset.get(p.name)
                want = preset if isinstance(preset, DType) else p.tensor.dtype
                got = values.get(p.name)
                gdt = got.dtype if isinstance(got, (HostTensor, TensorSpec)) else (
                    dt.from_numpy(got.dtype) if isinstance(got, np.ndarray) else got)
                if isinstance(gdt, DType) and want is not None and gdt != want and not (
                        want.name == "bfloat16" and isinstance(got, np.ndarray) and got.dtype == np.uint16):
                    ok = False
                elif not isinstance(gdt, DType) and want is None:
                    ok = False  # nothing gives this variant an element type
            if ok:
                return v
        return self

    @property
    def params(self) -> list[Param]:
        if self._params is None:
            self._params = parse_params(self.fn, self.name, self.file, lambda: self.def_line)
        return self._params

    # -- calling from a @jit function
    @staticmethod
    def call_choice(choice: Any, args: tuple, kwargs: dict) -> KernelCall:
        """`enigma.select(c, kernel_a, kernel_b)(args...)`: a launch of whichever kernel is chosen."""
        return KernelCall(choice, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> KernelCall:
        if not jit_state.stack:
            file, line = user_frame(2)
            raise EnigmaError(f"calling kernel {self.name!r} directly does not run it", file, line,
                              hint=f"compile it with enigma.compile({self.name}) and call the "
                                   "CompiledKernel, "
                                   "or launch it from an @enigma.jit function: "
                                   f"{self.name}(...).launch(grid=..., block=...)")
        self._bind(args, kwargs)  # argument errors at the call's line
        return KernelCall(self, args, kwargs)

    def _bind(self, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
        names = [p.name for p in self.params]
        if len(args) > len(names):
            file, line = user_frame(3)
            raise EnigmaError(f"kernel {self.name!r} takes {len(names)} arguments, got {len(args)}", file,
                              line)
        out = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                file, line = user_frame(3)
                raise EnigmaError(f"kernel {self.name!r} has no parameter {k!r}", file, line,
                                  hint=f"its parameters are {', '.join(names)}")
            out[k] = v
        missing = [p.name for p in self.params if p.name not in out and p.default is inspect.Parameter.empty
                   and p.name not in self.preset]
        if missing:
            file, line = user_frame(3)
            plural = "s" if len(missing) > 1 else ""
            raise EnigmaError(f"kernel {self.name!r} is launched without its argument{plural} "
                              f"{', '.join(map(repr, missing))}", file, line,
                              hint=f"pass every parameter: {self.name}({', '.join(names)})")
        return out

    # -- tracing
    def trace(self, values: dict[str, Any] | None = None) -> ir.Kernel:
        """The IR of this kernel specialised for `values` (parameter -> array, TensorSpec, HostTensor,
        dtype, or constexpr value); parameters not given take their annotation (and default)."""
        values = {**self.preset, **(values or {})}
        fn, def_line = self.rewritten()
        b = Builder(self.name)
        args: list[ir.Arg] = []
        call: list[Any] = []
        sizes: dict[str, int] = {}
        scalars: list[tuple[int, ir.Arg]] = []
        for p in self.params:
            v = values.get(p.name, inspect.Parameter.empty)
            if p.kind == "tensor" and v is None:  # an optional tensor left out: None in the body
                assert p.tensor is not None
                if not p.tensor.optional:
                    raise self._here(f"parameter {p.name!r} of {self.name} is a tensor, got None",
                                     "annotate it Tensor[...] | None to make it optional")
                args.append(ir.Arg(p.name, "none", p.tensor.dtype or dt.uint8, (), "read", len(args)))
                call.append(None)
            elif p.kind == "tensor":
                dtype, shape = self._tensor_binding(p, v, sizes)
                args.append(ir.Arg(p.name, "tensor", dtype, shape, "read", len(args)))
                call.append(TensorRef(p.name, dtype, shape, "arg"))
            elif p.kind == "scalar":
                sdtype = v if isinstance(v, DType) else p.dtype
                assert sdtype is not None  # a scalar parameter's annotation is a dtype
                dtype = sdtype
                if isinstance(v, HostTensor):
                    raise self._here(f"parameter {p.name!r} of {self.name} is a {dtype.name} scalar, got a "
                                     "tensor")
                args.append(ir.Arg(p.name, "scalar", dtype, (), "read", len(args)))
                scalars.append((len(call), args[-1]))
                call.append(None)
            else:
                call.append(self._constexpr(p, v))
        b.arg_names = {a.name for a in args}
        with tracing(b):
            for k, a in scalars:
                call[k] = Val(b.entry("param", ir.Type(a.dtype), {"name": a.name}))
            for op in b.body.ops:
                op.line = def_line
            try:
                ret = fn(*call)
            except EnigmaError:
                raise
            except Exception as e:  # noqa: BLE001 - relocated to the user's line
                raise wrap_error(e, f"kernel {self.name!r}") from e
        if ret is not None:
            raise _err(f"kernel {self.name!r} returns a value; kernels return nothing", self.file, def_line,
                       "write results into an output tensor argument")
        for k, a in enumerate(args):
            if a.kind == "tensor":
                modes = b.access.get(a.name, set())
                access = "readwrite" if modes == {"r", "w"} else "write" if modes == {"w"} else "read"
                args[k] = replace(a, access=access)
        # an optional tensor left out by the call (not by a variant's preset) names the Metal function too
        absent = [f"no_{a.name}" for a in args if a.kind == "none" and self.preset.get(a.name, 0) is not None]
        variant = "_".join([self.variant] + absent if self.variant else absent)
        return ir.Kernel(self.name, args, b.body, b.shared, self.file, def_line, variant=variant)

    def _here(self, message: str, hint: str = "") -> EnigmaError:
        return _err(message, self.file, self.def_line, hint)

    def _tensor_binding(self, p: Param, v: Any, sizes: dict[str, int]) -> tuple[DType, Shape]:
        t = p.tensor
        assert t is not None
        if v is inspect.Parameter.empty or isinstance(v, DType):
            dtype = v if isinstance(v, DType) else t.dtype
            if dtype is None:
                raise self._here(f"parameter {p.name!r} of {self.name} is a Tensor without an element type",
                                 "write enigma.Tensor[float32] or pass an array / enigma.TensorSpec for it")
            return dtype, t.shape
        preset = self.preset.get(p.name)
        if isinstance(preset, DType):  # a specialize= variant fixes the element type
            t = TensorType(preset, t.shape)
        if isinstance(v, (np.ndarray, TensorSpec)):
            v = host_value(v, p.name)
        if not isinstance(v, HostTensor):
            raise self._here(f"parameter {p.name!r} of {self.name} is a tensor, got {type(v).__name__}",
                             "pass a numpy array or an enigma.TensorSpec")
        if t.dtype is not None and t.dtype.name == "bfloat16" and v.array is not None \
                and v.array.dtype == np.uint16:  # bfloat16 data travels as its uint16 bit patterns
            v = HostTensor(v.label, t.dtype, v.spec_shape, v.array)
        if t.dtype is not None and v.dtype != t.dtype:
            raise self._here(f"parameter {p.name!r} of {self.name} is Tensor[{t.dtype.name}], got a "
                             f"{v.dtype.name} tensor", f"pass {t.dtype.name} data"
                             + (" (a uint16 array of bit patterns)" if t.dtype.name == "bfloat16" else "")
                             + " or annotate the parameter with another element type")
        if v.ndim != t.rank:
            raise self._here(f"parameter {p.name!r} of {self.name} has rank {t.rank}, got a rank-{v.ndim} "
                             "tensor")
        shape: list[int | str | None] = []
        for axis, (want, got) in enumerate(zip(t.shape, v.spec_shape)):
            concrete = (int(v.array.shape[axis]) if v.array is not None
                        else got if isinstance(got, int) else None)
            if isinstance(want, int) and concrete is not None and concrete != want:
                raise self._here(f"parameter {p.name!r} of {self.name} has static size {want} on axis "
                                 f"{axis}, "
                                 f"got size {concrete}", "a kernel compiled for a static shape only fits it")
            if isinstance(want, str) and concrete is not None:
                if sizes.setdefault(want, concrete) != concrete:
                    raise self._here(f"size {want!r} is {sizes[want]} in one argument and {concrete} in "
                                     f"{p.name!r}", "arguments sharing a size name must agree")
            shape.append(want if want is not None or v.array is not None else got)
        return (t.dtype or v.dtype), tuple(shape)

    def _constexpr(self, p: Param, v: Any) -> Any:
        if v is inspect.Parameter.empty:
            v = p.default
        if v is inspect.Parameter.empty:
            raise self._here(f"Constexpr parameter {p.name!r} of {self.name} has no value",
                             f"give it a default ({p.name}: enigma.Constexpr[int] = 256), pass it, or list "
                             "it "
                             "in specialize=")
        if isinstance(v, HostFloat):
            raise self._here(f"Constexpr parameter {p.name!r} got the @jit's float argument "
                             f"{v.origin or '(derived)'}, whose value a compiled jit does not know",
                             "pass a literal, or make the parameter a scalar (float32) argument")
        if isinstance(v, Choice):
            raise self._here(f"Constexpr parameter {p.name!r} got {v!r}, a value chosen at launch: pass the "
                             "select to the kernel call itself (kernel(..., BLOCK=enigma.select(...)))")
        if isinstance(v, Expr):
            if v.value is None:
                raise self._here(f"Constexpr parameter {p.name!r} needs a compile-time value, got the "
                                 f"symbolic size {v}",
                                 "choose among compile-time values at launch with enigma.select(n <= 256, "
                                 "256, 1024)")
            v = int(v)  # a size known now: the compiled jit guards it
            if p.ctype is bool:
                v = bool(v)
        if isinstance(v, np.generic):
            v = v.item()
        ok = isinstance(v, p.ctype) and (p.ctype is bool or not isinstance(v, bool))  # type: ignore[arg-type]
        if p.ctype is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            raise self._here(f"Constexpr parameter {p.name!r} is Constexpr[{p.ctype.__name__}], "  # type: ignore[union-attr]
                             f"got {type(v).__name__} {v!r}")
        return v

    def record_launch(self, args: tuple, kwargs: dict[str, Any], grid: Any, block: Any, file: str,
                      line: int) -> Launch:
        """The Launch of `kernel(*args, **kwargs).launch(grid=..., block=...)` in a @jit: the variant
        fitting the arguments, traced; grid/block default to the decorator's."""
        raw = self._bind(args, kwargs)
        k = self.variant_for(raw)
        bindings = {n: host_value(v, n) for n, v in raw.items()}
        kernel = k.trace(bindings)
        if grid is None and callable(k.grid):
            grid = k.grid(*[bindings.get(p.name, k.preset.get(p.name, p.default)) for p in k.params])
        grid = grid if grid is not None else k.grid
        block = block if block is not None else k.block
        options = k._options(kernel, bindings)
        return make_launch(kernel, bindings, grid, block, k.source, options, file, line, in_jit=True)

    # -- a bare kernel's own launch (decorator grid/block)
    def launch_from_annotations(self, args: tuple = ()) -> Launch:
        """What enigma.compile(kernel, *args) compiles: the kernel's arguments are `args` (or the
        annotations), the grid/block those of the decorator (None when it declares none); the variant
        is the one whose element types fit `args` (variant_for)."""
        picked = self.variant_for(dict(zip([p.name for p in self.params], args)))
        if picked is not self:
            return picked.launch_from_annotations(args)
        names = [p.name for p in self.params]
        if len(args) > len(names):
            raise self._here(f"kernel {self.name!r} takes {len(names)} arguments, got {len(args)}")
        bindings: dict[str, Any] = {}
        for p, a in zip(self.params, args):
            bindings[p.name] = host_value(a, p.name) if not isinstance(a, DType) else a
        kernel = self.trace(bindings)
        if self.grid is None and self.block is None:
            return Launch(kernel, bindings, None, None, None, self.source, self._options(kernel, bindings))
        sym: list[Any] = []
        for p in self.params:
            v = bindings.get(p.name, self.preset.get(p.name, inspect.Parameter.empty))
            if p.kind == "tensor" and kernel.arg(p.name).kind == "none":
                v = None
            elif p.kind == "tensor":
                a = kernel.arg(p.name)
                v = v if isinstance(v, HostTensor) else HostTensor(p.name, a.dtype, a.shape)
            elif p.kind == "scalar":
                v = v if isinstance(v, (Expr, int, float)) else Expr("arg", name=p.name)
            else:
                v = self._constexpr(p, v)
            bindings[p.name] = v
            sym.append(v)
        grid = self.grid(*sym) if callable(self.grid) else self.grid
        return make_launch(kernel, bindings, grid, self.block, self.source, self._options(kernel, bindings),
                           self.file, self.def_line)

    def _options(self, kernel: ir.Kernel, values: dict[str, Any]) -> dict[str, Any]:
        """What this specialisation was traced for (argument types and shapes, constexpr values)."""
        merged = {**self.preset, **values}
        cx = [(p.name, repr(self._constexpr(p, merged.get(p.name, inspect.Parameter.empty))))
              for p in self.params if p.kind == "constexpr"]
        return {"args": [(a.name, a.kind, a.dtype.name, a.shape) for a in kernel.args], "constexpr": cx}


class KernelCall:
    """`kernel(args...)` inside a @jit function; `.launch(grid=..., block=...)` records the launch.
    `kernel` may be a Choice of kernels (`enigma.select(cond, k1, k2)(args...)`)."""

    def __init__(self, kernel: KernelFunction | Choice, args: tuple, kwargs: dict[str, Any]) -> None:
        self.kernel, self.args, self.kwargs = kernel, args, kwargs

    def launch(self, grid: Any = None, block: Any = None) -> None:
        """Record this launch (once per combination of the `enigma.select` choices it uses)."""
        file, line = user_frame(2)
        if not jit_state.stack:
            raise EnigmaError("kernel launches only happen inside an @enigma.jit function", file, line)
        choices = flatten_choices([self.kernel, *self.args, *self.kwargs.values(), grid, block])
        cases: list[tuple[Any, Launch]] = []
        for combo in itertools.product(*(c.cases for c in choices)):
            cond: Any = True
            picked: dict[int, Any] = {}
            for c, (when, value) in zip(choices, combo):
                cond = and_condition(cond, when)
                picked[id(c)] = value
            k = substitute(self.kernel, picked)
            args = substitute(self.args, picked)
            kwargs = {n: substitute(v, picked) for n, v in self.kwargs.items()}
            cases.append((cond, k.record_launch(args, kwargs, substitute(grid, picked),
                                                substitute(block, picked), file, line)))
        jit_state.stack[-1].steps.append(Step(cases, file, line))



def kernel(fn: Callable[..., Any] | None = None, *, block: Any = None, grid: Any = None,
           specialize: list[dict[str, Any]] | None = None) -> Any:
    """`@enigma.kernel`, or `@enigma.kernel(block=(256, 1, 1), grid=lambda a, b, c, n: (...),
    specialize=[...])`.

    grid: a tuple of ints, or a function of the kernel's parameters (tensors give `.shape` sizes,
    scalars are symbolic) returning one. specialize: extra variants, each a dict of parameter ->
    dtype (tensor element type or scalar type) or Constexpr value."""
    def wrap(f: Callable[..., Any]) -> KernelFunction:
        if callable(grid):
            check_grid_function(f, grid)
        return KernelFunction(f, block=block, grid=grid, specialize=specialize)
    return wrap(fn) if fn is not None else wrap


def check_grid_function(fn: Callable[..., Any], grid: Callable[..., Any]) -> None:
    """A decorator's grid function is called with every kernel parameter in order: refuse one that
    cannot take them, at the decorator's line, naming both parameter lists."""
    kernel_params = list(inspect.signature(fn).parameters)
    try:
        grid_sig = inspect.signature(grid)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check ahead of the call
    try:
        grid_sig.bind(*kernel_params)
    except TypeError:
        grid_params = ", ".join(str(p) for p in grid_sig.parameters.values())
        raise EnigmaError(f"the grid function of kernel {fn.__name__!r} takes ({grid_params}), but it is "
                          f"called with the kernel's parameters ({', '.join(kernel_params)})",
                          fn.__code__.co_filename, fn.__code__.co_firstlineno,
                          hint=f"give it one parameter per kernel parameter, in order: grid=lambda "
                               f"{', '.join(kernel_params)}: (...)") from None
