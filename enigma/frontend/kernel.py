"""@enigma.kernel (device code, traced to ir.Kernel), @enigma.func, and the launches a kernel call
records (`kernel(args...).launch(grid=..., block=...)` inside an @enigma.jit: see jit.py)."""
from __future__ import annotations

import functools
import inspect
import linecache
import math
import re
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from enigma import ir
from enigma.errors import EnigmaError, EnigmaTypeError, is_user_file, user_frame
from enigma.frontend import control
from enigma.frontend.builder import Builder, tracing
from enigma.frontend.grid import Expr
from enigma.frontend.reductions import check_block
from enigma.frontend.rewrite import rewrite
from enigma.frontend.tensors import TensorRef
from enigma.frontend.types import ConstexprType, Shape, TensorSpec, TensorType
from enigma.frontend.values import Val

_SCALAR_PY = {int: dt.int32, float: dt.float32, bool: dt.bool_}
# names a kernel parameter cannot have: C++/MSL keywords, qualifiers and types the generated source uses
MSL_RESERVED = frozenset("""
    auto bool break case char class const constant constexpr continue default delete device do double else
    enum explicit extern false float for friend goto half if inline int kernel long namespace new operator
    private protected public register return short signed sizeof static struct switch template this
    thread threadgroup true typedef typename uint uchar ushort union unsigned using virtual void volatile
    while bfloat metal vertex fragment sampler texture atomic_int atomic_uint simd float2 float3 float4
    half2 half3 half4 int2 int3 int4 uint2 uint3 uint4 size_t ptrdiff_t
""".split())


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "tensor" | "scalar" | "constexpr"
    tensor: TensorType | None = None
    dtype: DType | None = None
    ctype: type | None = None
    default: Any = inspect.Parameter.empty


class HostTensor:
    """A jit-time view of a tensor argument: a numpy array or a TensorSpec. `.shape` entries are ints
    (static) or `Expr` sizes (known now for arrays, symbolic for specs) usable in grid arithmetic."""

    def __init__(self, label: str, dtype: DType, shape: Shape, array: np.ndarray | None = None) -> None:
        self.label, self.dtype, self.spec_shape, self.array = label, dtype, tuple(shape), array
        self.shape = tuple(self._size(k, s) for k, s in enumerate(self.spec_shape))

    def _size(self, axis: int, s: int | str | None) -> int | Expr:
        if self.array is not None:
            return Expr("dim", name=self.label, host=self, axis=axis, value=int(self.array.shape[axis]))
        if isinstance(s, int):
            return s
        if isinstance(s, str):
            return Expr("sym", name=s, host=self, axis=axis)
        return Expr("dim", name=self.label, host=self, axis=axis)

    @property
    def ndim(self) -> int:
        return len(self.spec_shape)

    def __repr__(self) -> str:
        return f"HostTensor({self.label}: {self.dtype.name}{list(self.spec_shape)})"


def host_value(x: Any, label: str) -> Any:
    if isinstance(x, HostTensor):
        return x
    if isinstance(x, np.ndarray):
        return HostTensor(label, dt.from_numpy(x.dtype), x.shape, x)
    if isinstance(x, TensorSpec):
        return HostTensor(label, x.dtype, x.shape)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return Expr("arg", name=label, value=int(x))
    if isinstance(x, np.floating):
        return float(x)
    return x


@dataclass
class Launch:
    """One kernel launch chosen by a @jit function (or a bare kernel's decorator)."""

    kernel: ir.Kernel
    bindings: dict[str, Any]  # kernel parameter -> jit value (HostTensor, Expr, number)
    grid: tuple[Any, Any, Any] | None  # ints where known, Expr where symbolic
    block: tuple[int, int, int] | None
    grid_json: list[Any] | None  # FORMAT.md grid expressions over the kernel's argument names
    source: str
    options: dict[str, Any]


def _err(message: str, file: str, line: int, hint: str = "",
         cls: type[EnigmaError] = EnigmaError) -> EnigmaError:
    return cls(message, file, line, hint=hint)


def _wrap(e: Exception, what: str) -> EnigmaError:
    """A Python exception raised while tracing, located at the innermost user line."""
    file, line = "", 0
    for fs in traceback.extract_tb(e.__traceback__):
        if is_user_file(fs.filename):
            file, line = fs.filename, fs.lineno or 0
    cls = EnigmaTypeError if isinstance(e, TypeError) else EnigmaError
    return cls(f"{type(e).__name__} while tracing {what}: {e}", file, line,
               hint="this Python error was raised by the kernel code itself at trace time")


# ---------------------------------------------------------------------------------------------------
# @kernel

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

    @property
    def params(self) -> list[Param]:
        if self._params is None:
            self._params = self._parse_params()
        return self._params

    def _parse_params(self) -> list[Param]:
        fn = self.fn
        closure = {n: c.cell_contents for n, c in zip(fn.__code__.co_freevars, fn.__closure__ or ())
                   if _has_contents(c)}
        try:
            ann = inspect.get_annotations(fn, locals=closure, eval_str=True)
        except Exception as e:  # noqa: BLE001 - any failure evaluating a string annotation
            raise _err(f"cannot evaluate the annotations of kernel {self.name!r}: {e}", self.file,
                       self.def_line) from e
        params = []
        for p in inspect.signature(fn).parameters.values():
            if p.name in MSL_RESERVED or p.name.startswith("enigma_"):
                raise _err(f"kernel parameter name {p.name!r} is reserved in the generated Metal source",
                           self.file, self.def_line, "rename the parameter")
            if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                raise _err(f"kernel parameter {p.name!r} must be a plain positional parameter "
                           "(no *args/**kwargs/keyword-only)", self.file, self.def_line)
            a = ann.get(p.name, inspect.Parameter.empty)
            if isinstance(a, TensorType):
                params.append(Param(p.name, "tensor", tensor=a))
            elif isinstance(a, ConstexprType):
                params.append(Param(p.name, "constexpr", ctype=a.type, default=p.default))
            elif isinstance(a, DType):
                params.append(Param(p.name, "scalar", dtype=a))
            elif a in _SCALAR_PY:
                params.append(Param(p.name, "scalar", dtype=_SCALAR_PY[a]))
            else:
                what = "has no annotation" if a is inspect.Parameter.empty else f"is annotated {a!r}"
                raise _err(f"kernel parameter {p.name!r} {what}", self.file, self.def_line,
                           "annotate every kernel parameter: enigma.Tensor[float32], a dtype such as "
                           "enigma.int32, or enigma.Constexpr[int]")
        return params

    # -- calling from a @jit function
    def __call__(self, *args: Any, **kwargs: Any) -> KernelCall:
        if not _jit.stack:
            file, line = user_frame(2)
            raise EnigmaError(f"calling kernel {self.name!r} directly does not run it", file, line,
                              hint=f"compile it with enigma.compile({self.name}) and call the "
                                   "CompiledKernel, "
                                   "or launch it from an @enigma.jit function: "
                                   f"{self.name}(...).launch(grid=..., block=...)")
        return KernelCall(self, self._bind(args, kwargs))

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
        b = Builder()
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
                raise _wrap(e, f"kernel {self.name!r}") from e
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
        if isinstance(v, Expr):
            if v.value is None:
                raise self._here(f"Constexpr parameter {p.name!r} needs a compile-time value, got the "
                                 f"symbolic size {v}")
            v = v.value
        if isinstance(v, np.generic):
            v = v.item()
        ok = isinstance(v, p.ctype) and (p.ctype is bool or not isinstance(v, bool))  # type: ignore[arg-type]
        if p.ctype is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            raise self._here(f"Constexpr parameter {p.name!r} is Constexpr[{p.ctype.__name__}], "  # type: ignore[union-attr]
                             f"got {type(v).__name__} {v!r}")
        return v

    # -- a bare kernel's own launch (decorator grid/block)
    def launch_from_annotations(self, args: tuple = ()) -> Launch:
        """What enigma.compile(kernel, *args) compiles: the kernel's arguments are `args` (or the
        annotations), the grid/block those of the decorator (None when it declares none)."""
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


def def_line(fn: Callable[..., Any]) -> int:
    """The line of `def` (co_firstlineno is the first decorator's line)."""
    code = fn.__code__
    for line in range(code.co_firstlineno, code.co_firstlineno + 50):
        if linecache.getline(code.co_filename, line).lstrip().startswith(("def ", "async def ")):
            return line
    return code.co_firstlineno


def _has_contents(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


class KernelCall:
    """`kernel(args...)` inside a @jit function; `.launch(grid=..., block=...)` records the launch."""

    def __init__(self, kernel: KernelFunction, bindings: dict[str, Any]) -> None:
        self.kernel, self.bindings = kernel, bindings

    def launch(self, grid: Any = None, block: Any = None) -> None:
        file, line = user_frame(2)
        if not _jit.stack:
            raise EnigmaError("kernel launches only happen inside an @enigma.jit function", file, line)
        k = self.kernel
        bindings = {n: host_value(v, n) for n, v in self.bindings.items()}
        kernel = k.trace(bindings)
        grid = grid if grid is not None else (k.grid(*[bindings.get(p.name) for p in k.params])
                                              if callable(k.grid) else k.grid)
        block = block if block is not None else k.block
        options = k._options(kernel, bindings)
        _jit.stack[-1].append(make_launch(kernel, bindings, grid, block, k.source, options, file, line))


class _JitState(threading.local):
    def __init__(self) -> None:
        self.stack: list[list[Launch]] = []  # launches recorded by the @jit functions running in this thread


_jit = _JitState()


def _norm3(v: Any, what: str, file: str, line: int) -> tuple[Any, ...] | None:
    if v is None:
        return None
    if isinstance(v, (int, Expr, np.integer)):
        v = (v,)
    v = tuple(v)
    if not 1 <= len(v) <= 3:
        raise EnigmaError(f"{what} has {len(v)} entries; it takes 1 to 3 (x, y, z)", file, line)
    out = []
    for x in v + (1,) * (3 - len(v)):
        if isinstance(x, np.integer):
            x = int(x)
        if not isinstance(x, (int, Expr)) or isinstance(x, bool):
            raise EnigmaError(f"{what} entries must be ints or launch-size expressions, got "
                              f"{type(x).__name__} {x!r}", file, line,
                              hint="compute sizes from jit argument shapes with + - * // and enigma.ceil_div")
        out.append(x)
    return tuple(out)


def make_launch(kernel: ir.Kernel, bindings: dict[str, Any], grid: Any, block: Any, source: str,
                options: dict[str, Any], file: str, line: int) -> Launch:
    g = _norm3(grid, "grid", file, line)
    blk = _norm3(block, "block", file, line)
    if blk is not None:
        vals = [x if isinstance(x, int) else x.value for x in blk]
        if any(x is None for x in vals):
            raise EnigmaError(f"block {blk} depends on sizes known only at launch", file, line,
                              hint="the threadgroup size is fixed at compile time: use ints")
        if any(x < 1 for x in vals):  # type: ignore[operator]
            raise EnigmaError(f"block {tuple(vals)} has a non-positive size", file, line)
        threads = math.prod(vals)  # type: ignore[arg-type]
        if threads > ir.MAX_THREADS_PER_THREADGROUP:
            raise EnigmaError(f"block {tuple(vals)} has {threads} threads; Metal runs at most "
                              f"{ir.MAX_THREADS_PER_THREADGROUP} per threadgroup", file, line,
                              hint="use a smaller block and more threadgroups in the grid")
        blk = tuple(vals)
        check_block(kernel, blk, file, line)  # block reductions and simdgroup matrices: whole simdgroups
    grid_json = None
    if g is not None:
        resolve = _resolver(kernel, bindings, file, line)
        grid_json = [x if isinstance(x, int) else x.to_json(resolve) for x in g]
        g = tuple(x if isinstance(x, int) else (x.value if x.value is not None else x) for x in g)
    return Launch(kernel, bindings, g, blk, grid_json, source, options)  # type: ignore[arg-type]


def _resolver(kernel: ir.Kernel, bindings: dict[str, Any], file: str, line: int) -> Callable[[Expr], Any]:
    host_arg = {id(v): n for n, v in bindings.items() if isinstance(v, HostTensor)}
    scalar_arg = {id(v): a.name for a in kernel.args if a.kind == "scalar"
                  for v in [bindings.get(a.name)] if isinstance(v, Expr)}
    syms = {s for a in kernel.args for s in a.shape if isinstance(s, str)}

    def resolve(e: Expr) -> Any:
        if e.kind == "sym" and e.name in syms:
            return {"sym": e.name}
        if e.kind in ("sym", "dim") and id(e.host) in host_arg:
            name = host_arg[id(e.host)]
            static = kernel.arg(name).shape[e.axis]
            return static if isinstance(static, int) else {"dim": [name, e.axis]}
        if id(e) in scalar_arg:
            return {"arg": scalar_arg[id(e)]}
        if e.value is not None:
            return e.value
        raise EnigmaError(f"the launch size {e} is not known at compile time and is not an argument of "
                          f"kernel {kernel.name!r}", file, line,
                          hint="launch sizes may use the kernel's tensor sizes and scalar arguments only")

    return resolve


def kernel(fn: Callable[..., Any] | None = None, *, block: Any = None, grid: Any = None,
           specialize: list[dict[str, Any]] | None = None) -> Any:
    """`@enigma.kernel`, or `@enigma.kernel(block=(256, 1, 1), grid=lambda a, b, c, n: (...),
    specialize=[...])`.

    grid: a tuple of ints, or a function of the kernel's parameters (tensors give `.shape` sizes,
    scalars are symbolic) returning one. specialize: extra variants, each a dict of parameter ->
    dtype (tensor element type or scalar type) or Constexpr value."""
    def wrap(f: Callable[..., Any]) -> KernelFunction:
        return KernelFunction(f, block=block, grid=grid, specialize=specialize)
    return wrap(fn) if fn is not None else wrap


class DeviceFunction:
    """`@enigma.func`: a helper called from kernel bodies, with the same control-flow rewrite as a kernel
    (plain helpers also work, but only with Python-valued `if`/`while`)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._rewritten: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._rewritten is None:
            self._rewritten = rewrite(self.fn, control, keep_defaults=True)[0]
        return self._rewritten(*args, **kwargs)


def func(fn: Callable[..., Any]) -> DeviceFunction:
    """`@enigma.func`: a device helper whose `if`/`for range`/`while` on traced values compile to IR."""
    return DeviceFunction(fn)
