"""CPU executor of the portable IR (FORMAT.md section 4), with numpy.

Every thread of the grid runs in lockstep: an SSA value is one numpy array with one element per
thread. Values live in the launch's 6-d thread space (grid z, y, x, block z, y, x), so a value that
depends only on some builtins is broadcast along the others (`thread_idx(0)` is a (1,1,1,1,1,bx)
array) and uniform values are numpy scalars; vectors add a trailing lanes axis. Divergent control flow
runs under boolean masks: `if` runs both regions under sub-masks and selects the results, loops run
until no active thread continues, so a barrier holds by construction and one reached by part of a
threadgroup is an error.

Integer indices that are affine in the builtins (`block_idx * block_dim + thread_idx` and sums and
uniform multiples of them) are kept symbolic (`Aff`): their range is known without touching memory,
so their bounds checks are O(1), comparisons against uniform values fold, and their loads and stores
are strided views instead of gathers and scatters. Anything else is gathered and scattered with every
active index checked; an out-of-bounds access raises OutOfBoundsError naming the kernel, the tensor,
the index, the thread and the source line.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .cpu_dot import count_uses, fuse_dot_chains
from .dtypes import BY_NAME, DType
from .errors import EnigmaRuntimeError, IRError, KernelExecutionError, OutOfBoundsError

_I32 = np.dtype(np.int32)


def _wrap32(x: int) -> int:
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


# ---------------------------------------------------------------------------------------------------
# bfloat16: float32 values rounded to bfloat16 precision; memory holds uint16 bit patterns

def bf16_round(x: Any) -> np.ndarray:
    """float32 -> the nearest bfloat16 value (round to nearest even), still as float32."""
    f = np.asarray(x, np.float32)
    bits = f.view(np.uint32)
    r = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000))
    r = np.where(np.isnan(f), bits | np.uint32(0x00400000), r).astype(np.uint32)
    return r.view(np.float32)


def bf16_to_bits(x: Any) -> np.ndarray:
    return (bf16_round(x).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def bf16_from_bits(b: Any) -> np.ndarray:
    return (np.asarray(b).astype(np.uint32) << np.uint32(16)).view(np.float32)


def parse_type(t: Any, where: str) -> tuple[DType, int]:
    """"float32" -> (float32, 0); "float32x4" -> (float32, 4)."""
    if not isinstance(t, str):
        raise IRError(f"{where}: type {t!r} is not a string")
    if t in BY_NAME:
        return BY_NAME[t], 0
    base, _, lanes = t.rpartition("x")
    if base in BY_NAME and lanes.isdigit() and int(lanes) > 1:
        return BY_NAME[base], int(lanes)
    raise IRError(f"{where}: unknown type {t!r}; expected a dtype ({', '.join(BY_NAME)}) or <dtype>x<lanes>")


def _value_dtype(dt: DType) -> np.dtype:
    """The numpy dtype a value of `dt` is computed in (bfloat16 in float32)."""
    return np.dtype(np.float32) if dt.name == "bfloat16" else dt.np


# ---------------------------------------------------------------------------------------------------
# the launch's thread space

class Geo:
    """grid (x, y, z) threadgroups of block (x, y, z) threads as the 6-d space (gz, gy, gx, bz, by, bx)."""

    def __init__(self, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
        self.grid, self.block = grid, block
        self.full = (grid[2], grid[1], grid[0], block[2], block[1], block[0])
        self.ngroups, self.tpg = grid[0] * grid[1] * grid[2], block[0] * block[1] * block[2]
        self.ar = [np.arange(n, dtype=np.int64).reshape([n if i == ax else 1 for i in range(6)])
                   for ax, n in enumerate(self.full)]
        gz, gy, gx = self.full[:3]
        self.group_coefs = (gy * gx, gx, 1, 0, 0, 0)  # linear threadgroup id
        self.gid = self.ar[0] * (gy * gx) + self.ar[1] * gx + self.ar[2]
        bz, by, bx = self.full[3:]
        self.ltid = (self.ar[3] * (by * bx) + self.ar[4] * bx + self.ar[5])  # linear thread id in group
        self.spans: dict[tuple[int, ...], tuple[int, int]] = {}  # Aff coefficients -> (min, max) offsets

    def lane(self, flat_pos: int) -> str:
        """'thread (x, y, z) of threadgroup (x, y, z)' for a position in the C-order thread space."""
        gz, gy, gx, bz, by, bx = np.unravel_index(flat_pos, self.full)
        return f"thread ({bx}, {by}, {bz}) of threadgroup ({gx}, {gy}, {gz})"


class Aff:
    """An int32 value c + sum(k[i] * index along axis i) of the thread space, kept symbolic."""

    __slots__ = ("c", "k", "geo", "_arr", "_range")

    def __init__(self, c: int, k: tuple[int, ...], geo: Geo) -> None:
        self.c, self.k, self.geo, self._arr, self._range = c, k, geo, None, None

    def range(self) -> tuple[int, int]:
        if self._range is None:
            spans = self.geo.spans.get(self.k)
            if spans is None:  # the coefficients repeat across loop iterations; only c changes
                lo = hi = 0
                for ki, n in zip(self.k, self.geo.full):
                    if ki and n > 1:
                        span = ki * (n - 1)
                        lo, hi = lo + min(0, span), hi + max(0, span)
                spans = self.geo.spans[self.k] = (lo, hi)
            self._range = (self.c + spans[0], self.c + spans[1])
        return self._range

    def exact(self) -> bool:
        """No lane wraps around int32, so the affine form is the value itself."""
        lo, hi = self.range()
        return -(2**31) <= lo and hi < 2**31

    def array(self) -> Any:
        if self._arr is None:
            acc: Any = None
            for ax, (ki, n) in enumerate(zip(self.k, self.geo.full)):
                if ki and n > 1:
                    term = self.geo.ar[ax] * ki
                    acc = term if acc is None else acc + term
            self._arr = np.int32(_wrap32(self.c)) if acc is None else (acc + self.c).astype(np.int32)
        return self._arr


def _mk_aff(c: int, k: tuple[int, ...], geo: Geo) -> Any:
    """An Aff, or a uniform int32 when no coefficient is left; k is 0 on axes of length 1."""
    if not any(k):
        return np.int32(_wrap32(c))
    if max(k) >= 2**31 or min(k) < -(2**31):
        k = tuple(_wrap32(x) for x in k)
        if not any(k):
            return np.int32(_wrap32(c))
    return Aff(c if -(2**31) <= c < 2**31 else _wrap32(c), k, geo)


def _mat(v: Any) -> Any:
    return v.array() if type(v) is Aff else v


def _uniform_int(v: Any) -> int | None:
    t = type(v)
    if t is Aff:
        return None
    if t is int:
        return v
    if v.ndim == 0:
        return int(v)
    return int(v.reshape(-1)[0]) if v.size == 1 else None


# ---------------------------------------------------------------------------------------------------
# launch state

class Memory:
    """A tensor argument or a threadgroup array: flat storage and how to check and offset indices."""

    __slots__ = ("name", "flat", "dt", "size", "shared", "written", "views", "loaned")

    def __init__(self, name: str, flat: np.ndarray, dt: DType, size: int, shared: bool,
                 written: bool) -> None:
        self.name, self.flat, self.dt, self.size, self.shared = name, flat, dt, size, shared
        self.written, self.views = written, {}  # views: (coefs, lanes) -> (shape, strides)
        self.loaned = False  # SSA values may be views of `flat`: the next write copies it first

    def before_write(self) -> None:
        """Copy-on-write of threadgroup memory: values loaded as views keep the old contents. Every
        live view references `flat` (its base), so a reference count of 2 (this attribute and the
        call's argument) means no loaded value can see the write."""
        if self.loaned:
            if sys.getrefcount(self.flat) > 2:
                self.flat = self.flat.copy()
            self.loaned = False


class State:
    def __init__(self, plan: Plan, values: list[Any], geo: Geo) -> None:
        self.plan, self.geo = plan, geo
        self.memo: dict[int, tuple] = {}
        self.mem: dict[str, Memory] = {}
        self.params: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for a, v in zip(plan.args, values):
            dt = BY_NAME[a["dtype"]]
            if a["kind"] == "tensor":
                self.mem[a["name"]] = Memory(a["name"], v.reshape(-1), dt, v.size, False,
                                             a.get("access", "read") != "read")
                self.shapes[a["name"]] = v.shape
            else:
                self.params[a["name"]] = bf16_round(v)[()] if dt.name == "bfloat16" else v
        written = [m.flat for m in self.mem.values() if m.written]
        for m in self.mem.values():  # a read-only argument aliasing a written one: loads must copy
            if not m.written and any(np.may_share_memory(m.flat, w) for w in written):
                m.written = True
        for s in plan.shared:
            size = int(np.prod(s["shape"], dtype=np.int64))
            dt = BY_NAME[s["dtype"]]
            # uninitialised threadgroup memory reads as all-ones bytes (NaN, -1): bugs show, not hide
            flat = np.empty(geo.ngroups * size, dt.np)  # owns its data: views of it count as its refs
            flat.view(np.uint8).fill(0xFF)
            self.mem[s["name"]] = Memory(s["name"], flat, dt, size, True, True)

    def where(self, line: int) -> str:
        p = self.plan
        return f"kernel {p.name!r} ({p.file}:{line})" if p.file else f"kernel {p.name!r} (line {line})"


# ---------------------------------------------------------------------------------------------------
# masks

def _narrow(mask: Any, cond: Any) -> tuple[Any, bool]:
    """(mask & cond, whether any lane is active); returns `mask` itself when cond holds on all of it."""
    sub = cond if mask is None else mask & cond
    if not sub.any():
        return sub, False
    if mask is None:
        return (None if sub.all() else sub), True
    if sub.sum() == np.broadcast_to(mask, np.broadcast_shapes(np.shape(mask), np.shape(sub))).sum():
        return mask, True
    return sub, True


def _merge(cond: Any, a: Any, b: Any, vector: bool) -> Any:
    if a is b:
        return a
    a, b = _mat(a), _mat(b)
    c = cond[..., None] if vector and np.ndim(cond) else cond
    return np.where(c, a, b)


# ---------------------------------------------------------------------------------------------------
# elementwise ops

def _int_div(a: Any, b: Any) -> Any:
    return (a - np.fmod(a, b)) // b


BINARY: dict[str, tuple[Callable, Callable]] = {  # op -> (float fn, int fn)
    "add": (np.add, np.add), "sub": (np.subtract, np.subtract), "mul": (np.multiply, np.multiply),
    "div": (np.divide, _int_div), "mod": (np.fmod, np.fmod),
    "min": (np.fmin, np.minimum), "max": (np.fmax, np.maximum),
    "and": (np.bitwise_and, np.bitwise_and), "or": (np.bitwise_or, np.bitwise_or),
    "xor": (np.bitwise_xor, np.bitwise_xor), "shl": (np.left_shift, np.left_shift),
    "shr": (np.right_shift, np.right_shift),
    "lt": (np.less, np.less), "le": (np.less_equal, np.less_equal), "gt": (np.greater, np.greater),
    "ge": (np.greater_equal, np.greater_equal), "eq": (np.equal, np.equal),
    "ne": (np.not_equal, np.not_equal),
}
UNARY: dict[str, Callable] = {
    "neg": np.negative, "not": np.invert, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "log": np.log,
    "log2": np.log2, "sqrt": np.sqrt, "rsqrt": lambda x: np.reciprocal(np.sqrt(x)), "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
}
CATALOGUE = frozenset(BINARY) | frozenset(UNARY) | {  # FORMAT.md section 4; yield/condition end regions
    "const", "param", "dim", "stride", "thread_idx", "block_idx", "block_dim", "grid_dim", "simd_lane_id",
    "simd_group_id", "fma", "select", "cast", "broadcast", "load", "store", "vload", "vstore", "atomic_add",
    "atomic_max", "atomic_min", "barrier", "simd_sum", "simd_max", "simd_min", "simd_shuffle_down",
    "simd_broadcast", "if", "for", "while"}
FLOAT_ONLY = {"exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "floor", "ceil"}
_CMP = {"lt": lambda lo, hi, u: (hi < u, lo >= u), "le": lambda lo, hi, u: (hi <= u, lo > u),
        "gt": lambda lo, hi, u: (lo > u, hi <= u), "ge": lambda lo, hi, u: (lo >= u, hi < u),
        "eq": lambda lo, hi, u: (lo == hi == u, u < lo or u > hi),
        "ne": lambda lo, hi, u: (u < lo or u > hi, lo == hi == u)}
_SWAP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def _fix(out: Any, want: np.dtype, bf16: bool) -> Any:
    if bf16:
        return bf16_round(out)
    if out.dtype != want:
        return out.astype(want)
    return out


_OUTER: dict[tuple, tuple[str, tuple[int, ...]] | None] = {}


def _outer_mul(a: Any, b: Any) -> np.ndarray | None:
    """a * b for float32 operands that vary along different thread axes (neither has the result's
    shape): numpy's broadcasting loops are slow there, einsum's outer product is not. None otherwise."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.dtype != np.float32 or b.dtype != a.dtype:
        return None
    key = (a.shape, b.shape)
    plan = _OUTER.get(key, False)
    if plan is False:
        plan = None
        if a.ndim == b.ndim:
            shape = np.broadcast_shapes(a.shape, b.shape)
            if shape not in key and np.prod(shape) >= 4096:
                letters = "abcdefghijklmnop"
                sa = "".join(letters[i] for i, n in enumerate(a.shape) if n > 1)
                sb = "".join(letters[i] for i, n in enumerate(b.shape) if n > 1)
                so = "".join(letters[i] for i, n in enumerate(shape) if n > 1)
                plan = (f"{sa},{sb}->{so}", shape)
        _OUTER[key] = plan
    if plan is None:
        return None
    squeeze = lambda x: x.reshape([n for n in x.shape if n > 1])  # noqa: E731
    return np.einsum(plan[0], squeeze(a), squeeze(b)).reshape(plan[1])


# ---------------------------------------------------------------------------------------------------
# the plan: the IR compiled once into closures; a closure runs one op for all threads

Step = tuple[Callable[[State, dict, Any], None], dict]


class Region:
    __slots__ = ("args", "steps", "term")

    def __init__(self, args: list[int], steps: list[Step], term: list[int]) -> None:
        self.args, self.steps, self.term = args, steps, term


class Plan:
    """A kernel's IR compiled for the CPU executor: built once per kernel, run per launch."""

    def __init__(self, ir: dict) -> None:
        self.ir = ir
        self.name, self.file = ir.get("name", "?"), ir.get("file", "")
        self.args, self.shared = ir["args"], ir.get("shared", [])
        self.arg_names = {a["name"]: a for a in self.args}
        self.shared_names = {s["name"] for s in self.shared}
        defined: set[int] = set()
        self.uses = count_uses(ir["body"]) if isinstance(ir.get("body"), list) else {}
        self.nested: dict[int, list[Region]] = {}  # id of an op of `ir` -> its compiled regions
        self.body = self._region({"args": [], "types": [], "body": ir["body"]}, defined, None)

    def _err(self, op: dict, msg: str) -> IRError:
        return IRError(f"kernel {self.name!r} IR, op {op.get('op')!r} at line {op.get('line', 0)}: {msg}")

    def _region(self, reg: dict, defined: set[int], term: str | None) -> Region:
        defined = set(defined)
        args = list(reg.get("args", []))
        defined.update(args)
        ops = reg.get("body", [])
        if not isinstance(ops, list):
            raise IRError(f"kernel {self.name!r} IR: a region's body must be a list of ops")
        steps, term_ids = [], []
        for i, op in enumerate(ops):
            if not isinstance(op, dict) or not isinstance(op.get("op"), str):
                raise IRError(f"kernel {self.name!r} IR: op {op!r} is not an object with an 'op' name")
            for key in ("in", "out"):
                if not isinstance(op.get(key, []), list) or not all(
                        isinstance(v, int) and not isinstance(v, bool) for v in op.get(key, [])):
                    raise self._err(op, f"{key!r} must be a list of integer value ids")
            for v in op.get("in", []):
                if v not in defined:
                    raise self._err(op, f"operand %{v} is used before it is defined (or outside its region)")
            name = op["op"]
            if name in ("yield", "condition"):
                if term is None or name != term or i != len(ops) - 1:
                    raise self._err(op, f"{name!r} must end a region whose terminator is {name!r} "
                                        f"(expected {term!r} here)")
                term_ids = list(op.get("in", []))
                continue
            steps.append((self._compile(op, defined), op))
            defined.update(op.get("out", []))
        if term is not None and (not ops or ops[-1].get("op") != term):
            raise IRError(f"kernel {self.name!r} IR: a region must end in {term!r}")
        return Region(args, fuse_dot_chains(steps, self.uses, _mat), term_ids)

    # -- compile one op -----------------------------------------------------------------------------
    def _compile(self, op: dict, defined: set[int]) -> Callable:
        name, ins, outs = op["op"], list(op.get("in", [])), list(op.get("out", []))
        attrs, line = op.get("attrs", {}) or {}, op.get("line", 0)
        types = [parse_type(t, f"kernel {self.name!r} line {line}") for t in op.get("types", [])]
        if len(types) != len(outs):
            raise self._err(op, f"{len(outs)} results but {len(types)} types")
        self._defined = defined
        if name not in CATALOGUE:
            raise self._err(op, "unknown op (not in the FORMAT.md catalogue)")
        handler = self._op_binary if name in BINARY else self._op_unary if name in UNARY else \
            getattr(self, "_op_" + name)
        return handler(op, name, ins, outs, types, attrs, line)

    def _need(self, op: dict, ins: list, n: int, outs: list | None = None, nout: int = 1) -> None:
        if len(ins) != n:
            raise self._err(op, f"takes {n} operands, got {len(ins)}")
        if outs is not None and len(outs) != nout:
            raise self._err(op, f"defines {nout} results, got {len(outs)}")

    def _tensor(self, op: dict, attrs: dict) -> str:
        t = attrs.get("tensor")
        if t in self.shared_names or (t in self.arg_names and self.arg_names[t]["kind"] == "tensor"):
            return t
        raise self._err(op, f"'tensor' {t!r} is neither a tensor argument nor a shared array")

    def _op_const(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        (dt, lanes), value = types[0], attrs.get("value")
        if isinstance(value, str) or value is None:
            raise self._err(op, f"'value' must be a number or a bool, not {value!r}")
        vd = _value_dtype(dt)
        if dt.is_int and not isinstance(value, bool):
            value = int(value) & ((1 << dt.bits) - 1)
            if dt.kind == "i" and value >= 1 << (dt.bits - 1):
                value -= 1 << dt.bits
        c = np.array(value).astype(vd)
        if dt.name == "bfloat16":
            c = bf16_round(c)
        c = np.full(lanes, c, vd) if lanes else c[()]
        out = outs[0]

        def run(st, env, mask):
            env[out] = c
        return run

    def _op_param(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        p = attrs.get("name")
        if p not in self.arg_names or self.arg_names[p]["kind"] != "scalar":
            raise self._err(op, f"'name' {p!r} is not a scalar argument")
        out = outs[0]

        def run(st, env, mask):
            env[out] = st.params[p]
        return run

    def _op_dim(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        t, axis = attrs.get("tensor"), attrs.get("axis")
        a = self.arg_names.get(t)
        if a is None or a["kind"] != "tensor" or not isinstance(axis, int) or not 0 <= axis < len(a["shape"]):
            raise self._err(op, f"needs a tensor argument and an axis below its rank, got {t!r}, {axis!r}")
        out, stride = outs[0], name == "stride"

        def run(st, env, mask):
            shape = st.shapes[t]
            env[out] = np.int32(int(np.prod(shape[axis + 1:], dtype=np.int64)) if stride else shape[axis])
        return run

    _op_stride = _op_dim

    def _op_thread_idx(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        d = attrs.get("dim", 0)
        if d not in (0, 1, 2):
            raise self._err(op, f"'dim' must be 0, 1 or 2, not {d!r}")
        out, want = outs[0], types[0][0].np
        axis = {"thread_idx": 5 - d, "block_idx": 2 - d}.get(name)

        def run(st, env, mask):
            geo = st.geo
            if axis is not None:
                v = _mk_aff(0, tuple(int(i == axis and geo.full[i] > 1) for i in range(6)), geo)
            else:
                v = np.int32((geo.block if name == "block_dim" else geo.grid)[d])
            env[out] = v if want == _I32 else _mat(v).astype(want)
        return run

    _op_block_idx = _op_block_dim = _op_grid_dim = _op_thread_idx

    def _op_simd_lane_id(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        out, lane = outs[0], name == "simd_lane_id"

        def run(st, env, mask):
            t = st.geo.ltid
            env[out] = (t % 32 if lane else t // 32).astype(np.int32)
        return run

    _op_simd_group_id = _op_simd_lane_id

    def _op_binary(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 2, outs)
        a_id, b_id, out = ins[0], ins[1], outs[0]
        dt, lanes = types[0]
        cmp = name in _CMP
        want = np.dtype(bool) if cmp else _value_dtype(dt)
        bf16 = dt.name == "bfloat16" and not cmp
        fl, fi = BINARY[name]
        aff = name in ("add", "sub", "mul") and dt.name == "int32" and not lanes

        def run(st, env, mask):
            a, b = env[a_id], env[b_id]
            memo = st.memo.get(out)  # loop-invariant operands: reuse the last result
            if memo is not None and memo[0] is a and memo[1] is b:
                env[out] = memo[2]
                return
            env[out] = r = _binary(a, b)
            st.memo[out] = (a, b, r)

        def _binary(a, b):
            if type(a) is Aff or type(b) is Aff:
                r = _aff_binary(name, a, b, (a if type(a) is Aff else b).geo) if aff or cmp else None
                if r is not None:
                    return r
                a, b = _mat(a), _mat(b)
            if name == "mul" and (r := _outer_mul(a, b)) is not None:
                return _fix(r, want, bf16)
            fn = fl if a.dtype.kind == "f" else fi
            return _fix(fn(a, b), want, bf16)
        return run

    def _op_unary(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        dt, _ = types[0]
        if name in FLOAT_ONLY and not dt.is_float:
            raise self._err(op, f"{name} takes a float operand, not {dt.name}")
        if name == "abs" and dt.kind == "u":
            fn = np.positive
        elif name == "neg" and dt.kind == "b":
            raise self._err(op, "neg of a bool")
        else:
            fn = UNARY[name]
        want, bf16 = _value_dtype(dt), dt.name == "bfloat16"
        is_neg = name == "neg" and dt.name == "int32"

        def run(st, env, mask):
            a = env[a_id]
            if type(a) is Aff:
                if is_neg:
                    env[out] = _mk_aff(-a.c, tuple(-k for k in a.k), a.geo)
                    return
                a = a.array()
            env[out] = _fix(fn(a), want, bf16)
        return run

    def _op_fma(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 3, outs)
        a_id, b_id, c_id, out = *ins, outs[0]
        dt, _ = types[0]
        want, bf16 = _value_dtype(dt), dt.name == "bfloat16"

        def run(st, env, mask):
            a, b = _mat(env[a_id]), _mat(env[b_id])
            p = _outer_mul(a, b)
            if p is None:
                p = np.multiply(a, b)
            c = _mat(env[c_id])
            if np.ndim(p) and p.shape == np.broadcast_shapes(p.shape, np.shape(c)):
                env[out] = _fix(np.add(p, c, out=p), want, bf16)
            else:
                env[out] = _fix(p + c, want, bf16)
        return run

    def _op_select(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 3, outs)
        c_id, a_id, b_id, out = *ins, outs[0]
        lanes = types[0][1]

        def run(st, env, mask):
            c = env[c_id]
            if np.ndim(c) == 0 or np.size(c) == 1 and type(c) is not Aff:
                env[out] = env[a_id] if bool(np.reshape(c, -1)[0]) else env[b_id]
                return
            env[out] = _merge(_mat(c), env[a_id], env[b_id], bool(lanes) and np.ndim(c) == 6)
        return run

    def _op_cast(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        dt, _ = types[0]
        want = _value_dtype(dt)

        def run(st, env, mask):
            a = _mat(env[a_id])
            if dt.kind == "b":
                env[out] = np.not_equal(a, 0)
            elif dt.name == "bfloat16":
                env[out] = bf16_round(np.asarray(a).astype(np.float32))
            else:
                env[out] = np.asarray(a).astype(want)[()]
        return run

    def _op_broadcast(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        lanes = attrs.get("lanes", types[0][1])
        if not isinstance(lanes, int) or lanes < 1:
            raise self._err(op, f"'lanes' must be a positive int, not {lanes!r}")

        def run(st, env, mask):
            a = np.asarray(_mat(env[a_id]))
            env[out] = np.broadcast_to(a[..., None], a.shape + (lanes,))
        return run

    # -- memory ---------------------------------------------------------------------------------------
    def _op_load(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        t, i_id, out = self._tensor(op, attrs), ins[0], outs[0]
        lanes = attrs.get("lanes", types[0][1]) if name == "vload" else 0
        if name == "vload" and (not isinstance(lanes, int) or lanes < 1):
            raise self._err(op, f"'lanes' must be a positive int, not {lanes!r}")

        def run(st, env, mask):
            env[out] = _load(st, st.mem[t], env[i_id], mask, lanes, line, name)
        return run

    _op_vload = _op_load

    def _op_store(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 2, outs, 0)
        t, i_id, v_id = self._tensor(op, attrs), ins[0], ins[1]
        vec = name == "vstore"

        def run(st, env, mask):
            v = _mat(env[v_id])
            lanes = np.shape(v)[-1] if vec else 0
            _store(st, st.mem[t], env[i_id], v, mask, lanes, line, name)
        return run

    _op_vstore = _op_store

    def _op_atomic_add(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 2, outs)
        t, i_id, v_id, out = self._tensor(op, attrs), ins[0], ins[1], outs[0]
        dt = types[0][0]
        if dt.name not in ("int32", "uint32") and not (dt.name == "float32" and name == "atomic_add"):
            also = ", float32" if name == "atomic_add" else ""
            raise self._err(op, f"{name} on {dt.name} (int32, uint32{also} only)")
        ufunc = {"atomic_add": np.add, "atomic_max": np.maximum, "atomic_min": np.minimum}[name]

        def run(st, env, mask):
            env[out] = _atomic(st, st.mem[t], env[i_id], _mat(env[v_id]), mask, ufunc, line, name)
        return run

    _op_atomic_max = _op_atomic_min = _op_atomic_add

    def _op_barrier(self, op, name, ins, outs, types, attrs, line):
        def run(st, env, mask):
            if mask is None:
                return
            geo = st.geo
            m = np.broadcast_to(mask, geo.full).reshape(geo.ngroups, geo.tpg)
            some, every = m.any(1), m.all(1)
            partial = np.flatnonzero(some & ~every)
            if partial.size:
                g = int(partial[0])
                gz, gy, gx = np.unravel_index(g, geo.full[:3])
                raise KernelExecutionError(
                    f"{st.where(line)}: barrier reached by only {int(m[g].sum())} of the {geo.tpg} threads "
                    f"of threadgroup ({gx}, {gy}, {gz}) (divergent control flow around a barrier is "
                    f"undefined on the GPU); move the barrier out of the branch or loop, or make its "
                    f"condition the same for the whole threadgroup")
        return run

    # -- simd-group ops -------------------------------------------------------------------------------
    def _op_simd_sum(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 2 if name in ("simd_shuffle_down", "simd_broadcast") else 1, outs)
        v_id, out = ins[0], outs[0]
        x_id = ins[1] if len(ins) > 1 else None
        dt = types[0][0]
        bf16 = dt.name == "bfloat16"

        def run(st, env, mask):
            r = _simd(st.geo, name, _mat(env[v_id]), None if x_id is None else _mat(env[x_id]), mask)
            env[out] = bf16_round(r) if bf16 and name == "simd_sum" else r
        return run

    _op_simd_max = _op_simd_min = _op_simd_shuffle_down = _op_simd_broadcast = _op_simd_sum

    # -- control flow ---------------------------------------------------------------------------------
    def _regions(self, op, n, defined, terms):
        regs = op.get("regions", [])
        if len(regs) != n:
            raise self._err(op, f"needs {n} regions, got {len(regs)}")
        compiled = [self._region(r, defined, term) for r, term in zip(regs, terms)]
        self.nested[id(op)] = compiled
        return compiled

    def _op_if(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1)
        then, other = self._regions(op, 2, self._defined, ("yield", "yield"))
        for r in (then, other):
            if len(r.term) != len(outs):
                raise self._err(op, f"a region yields {len(r.term)} values for {len(outs)} results")
        c_id, vec = ins[0], [bool(t[1]) for t in types]

        def run(st, env, mask):
            c = _mat(env[c_id])
            if np.ndim(c) == 0 or np.size(c) == 1:
                vals = _run_region(st, then if bool(np.reshape(c, -1)[0]) else other, env, mask, ())
                env.update(zip(outs, vals))
                return
            m_then, any_then = _narrow(mask, c)
            m_else, any_else = _narrow(mask, ~c)
            if not any_else:
                env.update(zip(outs, _run_region(st, then, env, mask, ())))
            elif not any_then:
                env.update(zip(outs, _run_region(st, other, env, mask, ())))
            else:
                tv = _run_region(st, then, env, m_then, ())
                ev = _run_region(st, other, env, m_else, ())
                for o, a, b, v in zip(outs, tv, ev, vec):
                    env[o] = _merge(c, a, b, v)
        return run

    def _op_for(self, op, name, ins, outs, types, attrs, line):
        if len(ins) < 3:
            raise self._err(op, "takes lb, ub, step and the initial carried values")
        (body,) = self._regions(op, 1, self._defined, ("yield",))
        n = len(ins) - 3
        if len(outs) != n or len(body.args) != n + 1 or len(body.term) != n:
            raise self._err(op, f"{n} carried values need {n} results, {n + 1} region args and {n} yields")
        lb_id, ub_id, st_id, init = ins[0], ins[1], ins[2], ins[3:]
        iv_dt = op["regions"][0].get("types", ["int32"])[0]
        ivt = BY_NAME.get(iv_dt, BY_NAME["int32"]).np
        vec = [bool(t[1]) for t in types]
        where = f"line {line}"
        inner = _inner_ids(op)

        def run(st, env, mask):
            lbv = env[lb_id]
            lb, ub, step = _uniform_int(lbv), _uniform_int(env[ub_id]), _uniform_int(env[st_id])
            carried = [env[i] for i in init]
            if step == 0:
                raise KernelExecutionError(f"{st.where(line)}: for loop with step 0 never ends")
            if lb is not None and ub is not None and step is not None:
                for i in range(lb, ub, step):
                    carried = _run_region(st, body, env, mask, (ivt.type(i), *carried))
            elif step is not None and (trips := _same_trip_count(lbv, env[ub_id], step)) is not None:
                # per-thread start, same trip count everywhere (a strided loop): no masks needed
                for k in range(trips):
                    iv = _aff_binary("add", lbv, np.int32(_wrap32(k * step)), st.geo) if type(lbv) is Aff \
                        else (np.asarray(lbv, np.int64) + k * step).astype(ivt)
                    carried = _run_region(st, body, env, mask, (iv, *carried))
            else:
                carried = _for_divergent(st, body, env, mask, [_mat(env[i]) for i in (lb_id, ub_id, st_id)],
                                         carried, vec, where)
            env.update(zip(outs, carried))
            for i in inner:  # values of the loop body are dead now; views they hold are released
                env.pop(i, None)
        return run

    def _op_while(self, op, name, ins, outs, types, attrs, line):
        before, after = self._regions(op, 2, self._defined, ("condition", "yield"))
        if len(before.args) != len(ins) or len(before.term) != len(outs) + 1 or \
                len(after.args) != len(outs) or len(after.term) != len(ins):
            raise self._err(op, "region arities do not match (before: carried -> condition(cond, vals), "
                                "after: vals -> yield(carried))")
        vec = [bool(t[1]) for t in types]

        inner = _inner_ids(op)

        def run(st, env, mask):
            env.update(zip(outs, _while(st, before, after, env, mask, [env[i] for i in ins], vec)))
            for i in inner:
                env.pop(i, None)
        return run



# ---------------------------------------------------------------------------------------------------
# running regions and loops

def _inner_ids(op: dict) -> tuple[int, ...]:
    """Ids defined inside `op`'s regions (region arguments and results of nested ops)."""
    ids: list[int] = []
    for reg in op.get("regions", []):
        ids += reg.get("args", [])
        for inner in reg.get("body", []):
            ids += inner.get("out", [])
            ids += _inner_ids(inner)
    return tuple(ids)


def _run_region(st: State, reg: Region, env: dict, mask: Any, args: tuple) -> list[Any]:
    if args:
        env.update(zip(reg.args, args))
    for fn, op in reg.steps:
        try:
            fn(st, env, mask)
        except EnigmaRuntimeError:
            raise
        except Exception as e:  # a malformed IR that got past the plan: name the op and its line
            raise KernelExecutionError(f"{st.where(op.get('line', 0))}: op {op['op']!r} failed: "
                                       f"{type(e).__name__}: {e}") from e
    return [env[i] for i in reg.term]


def _for_divergent(st: State, body: Region, env: dict, mask: Any, bounds: list, carried: list,
                   vec: list[bool], where: str) -> list:
    """A for loop whose bounds differ between threads: iterate while any active thread continues."""
    lb, ub, step = bounds
    if np.any(np.asarray(step) == 0):
        raise KernelExecutionError(f"{st.where(int(where.split()[-1]))}: for loop with step 0 never ends")
    iv = np.asarray(lb).astype(np.int32)
    while True:
        go = np.where(step > 0, iv < ub, iv > ub)
        active, anyone = _narrow(mask, go)
        if not anyone:
            return carried
        new = _run_region(st, body, env, active, (iv, *carried))
        if active is mask:
            carried = new
        else:
            carried = [_merge(active, n, c, v) for n, c, v in zip(new, carried, vec)]
        iv = (iv + step).astype(np.int32)


def _same_trip_count(lb: Any, ub: Any, step: int) -> int | None:
    """The trip count of range(lb, ub, step) when it is the same for every thread, else None."""
    if type(lb) is Aff and not lb.exact() or type(ub) is Aff and not ub.exact():
        return None
    lo = np.asarray(_mat(lb), np.int64)
    hi = np.asarray(_mat(ub), np.int64)
    span = hi - lo if step > 0 else lo - hi
    trips = np.maximum((span + abs(step) - 1) // abs(step), 0)
    t0 = int(trips.reshape(-1)[0])
    return t0 if (trips == t0).all() else None


def _while(st: State, before: Region, after: Region, env: dict, mask: Any, carried: list, vec: list[bool]
           ) -> list:
    active, result = mask, None
    while True:
        cond, *vals = _run_region(st, before, env, active, tuple(carried))
        cond = _mat(cond)
        if np.ndim(cond) == 0 or np.size(cond) == 1:
            if bool(np.reshape(cond, -1)[0]):
                carried = _run_region(st, after, env, active, tuple(vals))
                continue
            if result is None or active is None:
                return vals
            return [_merge(active, v, r, x) for v, r, x in zip(vals, result, vec)]
        exiting = ~cond if active is None else active & ~cond
        result = vals if result is None else [_merge(exiting, v, r, x) for v, r, x in zip(vals, result, vec)]
        active, anyone = _narrow(active, cond)
        if not anyone:
            return result
        carried = _run_region(st, after, env, active, tuple(vals))


# ---------------------------------------------------------------------------------------------------
# affine index arithmetic

def _aff_binary(name: str, a: Any, b: Any, geo: Geo) -> Any:
    """add/sub/mul/compare with an Aff operand, kept symbolic when possible (None: materialise)."""
    if name in _CMP:
        if type(a) is not Aff:
            a, b, name = b, a, _SWAP[name]
        u = _uniform_int(b)
        if u is None or not a.exact():
            return None
        lo, hi = a.range()
        yes, no = _CMP[name](lo, hi, u)
        return np.bool_(True) if yes else np.bool_(False) if no else None
    ua, ub = _uniform_int(a), _uniform_int(b)
    if name == "mul":
        if type(a) is Aff and ub is not None:
            return _mk_aff(a.c * ub, tuple(k * ub for k in a.k), geo)
        if type(b) is Aff and ua is not None:
            return _mk_aff(b.c * ua, tuple(k * ua for k in b.k), geo)
        return None
    sign = -1 if name == "sub" else 1
    if type(a) is Aff and type(b) is Aff:
        return _mk_aff(a.c + sign * b.c, tuple(x + sign * y for x, y in zip(a.k, b.k)), geo)
    if type(a) is Aff and ub is not None:  # the common `index + uniform`: coefficients unchanged
        c = a.c + sign * ub
        return Aff(c if -(2**31) <= c < 2**31 else _wrap32(c), a.k, geo)
    if type(b) is Aff and ua is not None:
        return _mk_aff(ua + sign * b.c, tuple(sign * k for k in b.k), geo)
    return None


# ---------------------------------------------------------------------------------------------------
# memory access

def _oob(st: State, m: Memory, kind: str, idx: Any, bad: Any, line: int, lanes: int) -> OutOfBoundsError:
    geo = st.geo
    badf = np.broadcast_to(bad, geo.full) if np.ndim(bad) else np.broadcast_to(bad, geo.full)
    pos = int(np.flatnonzero(badf.reshape(-1))[0])
    i = int(np.broadcast_to(idx, geo.full).reshape(-1)[pos])
    n = int(badf.sum())
    span = f"index {i}" + (f" (.. {i + lanes - 1}, {lanes} lanes)" if lanes else "")
    what = f"threadgroup array {m.name!r} of {m.size} elements" if m.shared else \
        f"tensor {m.name!r} of {m.size} elements"
    return OutOfBoundsError(f"{st.where(line)}: out-of-bounds {kind} of {what} at {span} by {geo.lane(pos)}"
                            f"{f' (and {n - 1} more threads)' if n > 1 else ''}; check the bounds test "
                            f"guarding the access at line {line}")


def _aff_view(st: State, m: Memory, idx: Aff, lanes: int) -> np.ndarray | None:
    """A strided view of the elements an in-bounds affine index addresses, or None."""
    lo, hi = idx.range()
    if not idx.exact() or lo < 0 or hi + max(lanes, 1) > m.size:
        return None
    if lanes and (idx.c % lanes or any(k % lanes for k in idx.k)):
        return None  # possibly misaligned: the checked path names the thread
    item = m.flat.itemsize
    geom = m.views.get((idx.k, lanes))
    if geom is None:
        k = idx.k
        if m.shared:
            k = tuple(a + m.size * g for a, g in zip(k, st.geo.group_coefs))
        shape = tuple(n if ki else 1 for n, ki in zip(st.geo.full, k))
        strides = tuple(ki * item if ki else 0 for ki in k)
        if lanes:
            shape, strides = shape + (lanes,), strides + (item,)
        geom = m.views[(idx.k, lanes)] = (shape, strides)
    shape, strides = geom
    c = idx.c
    return np.ndarray(shape, m.flat.dtype, m.flat, c * item, strides)


def _checked_index(st: State, m: Memory, idx: Any, mask: Any, kind: str, line: int, lanes: int) -> Any:
    """The index as an array, every active lane checked; inactive lanes clamped into bounds."""
    idx = _mat(idx)
    if lanes and np.any(np.asarray(idx) % lanes):
        bad = (np.asarray(idx) % lanes != 0) if mask is None else (np.asarray(idx) % lanes != 0) & mask
        if np.any(bad):
            pos = np.broadcast_to(bad, st.geo.full).reshape(-1).argmax()
            raise KernelExecutionError(f"{st.where(line)}: {kind} of {lanes} lanes from tensor {m.name!r} at "
                                       f"index {int(np.broadcast_to(idx, st.geo.full).reshape(-1)[pos])}, "
                                       f"which is not a multiple of {lanes} ({st.geo.lane(int(pos))})")
    hi_ok = m.size - max(lanes, 1)
    if np.size(idx) and (np.min(idx) < 0 or np.max(idx) > hi_ok):
        bad = (idx < 0) | (idx > hi_ok)
        if mask is not None:
            bad = bad & mask
        if np.any(bad):
            raise _oob(st, m, kind, idx, bad, line, lanes)
        idx = np.clip(idx, 0, max(hi_ok, 0))
    idx = np.asarray(idx, np.intp)
    if m.shared:
        idx = idx + st.geo.gid * m.size
    if lanes:
        idx = idx[..., None] + np.arange(lanes)
    return idx


def _load(st: State, m: Memory, idx: Any, mask: Any, lanes: int, line: int, kind: str) -> Any:
    if type(idx) is Aff:
        v = _aff_view(st, m, idx, lanes)
        if v is not None:
            if m.dt.name == "bfloat16":
                return bf16_from_bits(v)
            if m.shared:  # no copy: the next store to the array copies the array instead
                m.loaned = True
                return v
            return v.copy() if m.written else v
    i = _checked_index(st, m, idx, mask, kind, line, lanes)
    if m.size == 0:
        return np.zeros(np.shape(i), _value_dtype(m.dt))
    v = m.flat[i]
    return bf16_from_bits(v) if m.dt.name == "bfloat16" else v


def _store(st: State, m: Memory, idx: Any, v: Any, mask: Any, lanes: int, line: int, kind: str) -> None:
    if m.dt.name == "bfloat16":
        v = bf16_to_bits(v)
    elif np.asarray(v).dtype != m.flat.dtype:
        v = np.asarray(v).astype(m.flat.dtype)
    if not m.flat.flags.writeable:
        raise KernelExecutionError(f"{st.where(line)}: {kind} to tensor {m.name!r}, which is read-only")
    m.before_write()
    mk = None if mask is None else (mask[..., None] if lanes else mask)
    if type(idx) is Aff:
        view = _aff_view(st, m, idx, lanes)
        if view is not None:
            shapes = [view.shape, np.shape(v)] + ([] if mk is None else [np.shape(mk)])
            if np.broadcast_shapes(*shapes) == view.shape:
                np.copyto(view, v, where=True if mk is None else mk)
                return
    i = _checked_index(st, m, idx, mask, kind, line, lanes)
    shape = np.broadcast_shapes(np.shape(i), np.shape(v), () if mk is None else np.shape(mk))
    ib, vb = np.broadcast_to(i, shape), np.broadcast_to(v, shape)
    if mk is None:
        m.flat[ib.reshape(-1)] = vb.reshape(-1)
    else:
        sel = np.broadcast_to(mk, shape)
        m.flat[ib[sel]] = vb[sel]


def _atomic(st: State, m: Memory, idx: Any, v: Any, mask: Any, ufunc: np.ufunc, line: int, kind: str) -> Any:
    """Atomic read-modify-write applied in thread order; each thread gets the value before its own
    update (a segmented scan over the threads that hit the same element)."""
    geo = st.geo
    i = _checked_index(st, m, idx, mask, kind, line, 0)
    m.before_write()
    i, v = np.broadcast_to(i, geo.full), np.broadcast_to(v.astype(m.flat.dtype), geo.full)
    if mask is None:
        e, x, sel = i.reshape(-1), v.reshape(-1), None
    else:
        sel = np.broadcast_to(mask, geo.full)
        e, x = i[sel], v[sel]
    order = np.argsort(e, kind="stable")
    es, scan = e[order], x[order].copy()
    d = 1
    while d < es.size:
        same = es[d:] == es[:-d]
        if not same.any():
            break
        scan[d:] = np.where(same, ufunc(scan[d:], scan[:-d]), scan[d:])
        d *= 2
    start = np.ones(es.size, bool)
    start[1:] = es[1:] != es[:-1]
    init = m.flat[es]
    old_sorted = init.copy()
    old_sorted[~start] = ufunc(init[~start], scan[:-1][~start[1:]])
    end = np.ones(es.size, bool)
    end[:-1] = start[1:]
    m.flat[es[end]] = ufunc(init[end], scan[end])
    old = np.empty_like(old_sorted)
    old[order] = old_sorted
    if sel is None:
        return old.reshape(geo.full)
    out = np.zeros(geo.full, m.flat.dtype)
    out[sel] = old
    return out


# ---------------------------------------------------------------------------------------------------
# simd-group ops: groups of 32 consecutive linear thread ids of each threadgroup

def _simd(geo: Geo, name: str, v: Any, x: Any, mask: Any) -> np.ndarray:
    tail = np.shape(v)[6:] if np.ndim(v) > 6 else (np.shape(v) if 0 < np.ndim(v) < 6 else ())
    if np.ndim(v) and np.ndim(v) < 6:  # a vector that does not depend on the thread (lanes only)
        v = np.asarray(v).reshape((1,) * 6 + tail)
    full = geo.full + tail
    tpg, nsg = geo.tpg, -(-geo.tpg // 32)
    pad = nsg * 32 - tpg

    def groups(a: Any, fill: Any) -> np.ndarray:
        a = np.broadcast_to(a, full).reshape((geo.ngroups, tpg) + tail)
        if pad:
            a = np.concatenate([a, np.full((geo.ngroups, pad) + tail, fill, a.dtype)], axis=1)
        return a.reshape((geo.ngroups, nsg, 32) + tail)

    def back(a: np.ndarray) -> np.ndarray:
        a = a.reshape((geo.ngroups, nsg * 32) + tail)[:, :tpg]
        return a.reshape(full)

    vv = groups(v, 0)
    if name in ("simd_sum", "simd_max", "simd_min"):
        dt = vv.dtype
        if name == "simd_sum":
            ident, red = 0, np.sum
        else:
            big = np.inf if dt.kind == "f" else (np.iinfo(dt).max if dt.kind in "iu" else True)
            small = -np.inf if dt.kind == "f" else (np.iinfo(dt).min if dt.kind in "iu" else False)
            ident, red = (small, np.max) if name == "simd_max" else (big, np.min)
        act = groups(True if mask is None else mask, False)
        if act.ndim < vv.ndim:
            act = act[..., None]
        if pad or mask is not None:
            vv = np.where(act, vv, np.array(ident).astype(dt))
        r = red(vv, axis=2, keepdims=True, dtype=dt) if name == "simd_sum" else red(vv, axis=2, keepdims=True)
        return back(np.broadcast_to(r, vv.shape))
    lane = np.arange(32).reshape((1, 1, 32) + (1,) * len(tail))
    if name == "simd_broadcast":
        src = _uniform_int(x)
        if src is None:
            xs = groups(x, 0).reshape((geo.ngroups, nsg, 32))
            src_arr = xs[..., :1] if not tail else xs[..., :1, None]
            r = np.take_along_axis(vv, np.broadcast_to(src_arr % 32, vv.shape).astype(np.intp), axis=2)
            return back(r)
        return back(np.broadcast_to(vv[:, :, src % 32:src % 32 + 1], vv.shape))
    # simd_shuffle_down
    xs = groups(x, 0)
    if tail and xs.ndim == vv.ndim - len(tail):
        xs = xs.reshape(xs.shape + (1,) * len(tail))
    src = lane + xs.astype(np.int64)
    valid = (src >= 0) & (src < 32)
    r = np.take_along_axis(vv, np.broadcast_to(np.where(valid, src, lane), vv.shape).astype(np.intp), axis=2)
    return back(r)


# ---------------------------------------------------------------------------------------------------

def run(plan: Plan, values: list[Any], grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    """Run `plan` over grid x block threads on `values` (checked by binding.bind); tensors are
    updated in place."""
    if 0 in grid or 0 in block:
        return
    geo = Geo(grid, block)
    st = State(plan, values, geo)
    with np.errstate(all="ignore"):
        _run_region(st, plan.body, {}, None, ())
