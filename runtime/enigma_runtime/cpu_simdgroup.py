"""CPU executor: the fast-kernel ops (FORMAT.md "Vectors, bit views and simdgroup matrices").

- `extract`, `pack`, `bitcast` on values (vectors are arrays with a trailing lanes axis);
- loads and stores with the `view` attribute (a tensor's bytes read as another type: a numpy view of
  the same memory) or `packed` (vectors aligned like one element: gathered lane by lane);
- simdgroup matrices: `simd_fill`, `simd_load`, `simd_mma`, `simd_store`. A matrix value is a
  `SimdMatrix`: one 8x8 array per simdgroup of the launch, shape (threadgroups, simdgroups, 8, 8), so
  a simdgroup's lanes run each op together (in lockstep) and a matrix multiply-accumulate is one
  batched numpy matmul. Every op checks that all 32 lanes of each simdgroup take part (no divergent
  control flow) and that the threadgroup holds whole simdgroups.

`compile_op` is the executor's hook (cpu_plan.py calls it for every op before its own catalogue).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cpu_space import Aff, bf16_from_bits, bf16_round, bf16_to_bits
from .cpu_space import parse_type as parse_scalar_type
from .dtypes import BY_NAME, DType
from .errors import IRError, KernelExecutionError, OutOfBoundsError

# the executor's Plan (cpu_plan.py) and State (cpu_state.py) are duck-typed here: cpu_plan.py imports
# this module
Plan = Any
State = Any

N = 8  # simdgroup matrices are 8x8
SIMD = 32  # lanes of a simdgroup
MATRIX_LANES = -1  # the `lanes` parse_type reports for a matrix type: not a vector, never merged
OPS = ("extract", "pack", "bitcast", "simd_fill", "simd_load", "simd_mma", "simd_store")
MATRIX_DTYPES = ("float32", "float16", "bfloat16")


def parse_type(t: Any, where: str) -> tuple[DType, int]:
    """cpu_space.parse_type, plus simdgroup matrix types "<dtype>x8x8" -> (dtype, MATRIX_LANES)."""
    if isinstance(t, str) and t.endswith(f"x{N}x{N}") and t[:-4] in MATRIX_DTYPES:
        return BY_NAME[t[:-4]], MATRIX_LANES
    return parse_scalar_type(t, where)


def mat(v: Any) -> Any:
    return v.array() if type(v) is Aff else v


def _value_np(d: DType) -> np.dtype:
    return np.dtype(np.float32) if d.name == "bfloat16" else d.np


class SimdMatrix:
    """The value of a simdgroup matrix: `a[g, s]` is the 8x8 matrix of simdgroup s of threadgroup g
    (leading axes may be 1: broadcast, as for a filled matrix). bfloat16 matrices hold float32 values
    (rounded to bfloat16), and so do float16 ones loaded from memory (exact: simd_load widens them
    once for every simd_mma that uses them)."""

    __slots__ = ("a",)

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise KernelExecutionError("a simdgroup matrix is merged across divergent control flow (an `if` or "
                                   "loop whose condition differs between the lanes of a simdgroup); "
                                   "simdgroup matrix values need uniform control flow")


# ---------------------------------------------------------------------------------------------------
# the hook

def compile_op(plan: Plan, op: dict, name: str, ins: list, outs: list, attrs: dict, line: int
               ) -> Callable | None:
    """The step running `op`, when it is one of this module's ops (or a view/packed memory op)."""
    memory = name in ("load", "store", "vload", "vstore") and (attrs.get("view") or attrs.get("packed"))
    if name not in OPS and not memory:
        return None
    where = f"kernel {plan.name!r} line {line}"
    types = [parse_type(t, where) for t in op.get("types", [])]
    if len(types) != len(outs):
        raise IRError(f"{where}: op {name!r} has {len(outs)} results but {len(types)} types")
    if memory:
        return _memory(plan, op, name, ins, outs, types, attrs, line)
    return globals()["_op_" + name](plan, op, ins, outs, types, attrs, line)


def _need(plan: Plan, op: dict, ins: list, n: int, outs: list, nout: int) -> None:
    if len(ins) != n or len(outs) != nout:
        raise IRError(f"kernel {plan.name!r} IR, op {op.get('op')!r} at line {op.get('line', 0)}: takes {n} "
                      f"operands and {nout} results, got {len(ins)} and {len(outs)}")


def _bad(plan: Plan, op: dict, msg: str) -> IRError:
    return IRError(f"kernel {plan.name!r} IR, op {op.get('op')!r} at line {op.get('line', 0)}: {msg}")


# ---------------------------------------------------------------------------------------------------
# vectors and bits

def _scalar(x: Any) -> Any:
    return x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x


def _op_extract(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 1, outs, 1)
    k, a_id, out = attrs.get("lane"), ins[0], outs[0]
    if not isinstance(k, int) or k < 0:
        raise _bad(plan, op, f"'lane' must be a lane number, not {k!r}")

    def run(st, env, mask):
        v = np.asarray(mat(env[a_id]))
        if k >= v.shape[-1]:
            raise KernelExecutionError(f"{st.where(line)}: extract of lane {k} from a {v.shape[-1]}-lane "
                                       "vector")
        env[out] = _scalar(v[..., k])
    return run


def _op_pack(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, len(ins), outs, 1)
    d, lanes = types[0]
    if lanes != len(ins):
        raise _bad(plan, op, f"packs {len(ins)} values into a {lanes}-lane vector")
    want, out = _value_np(d), outs[0]

    def run(st, env, mask):
        parts = np.broadcast_arrays(*[np.asarray(mat(env[i])) for i in ins])
        env[out] = np.stack(parts, axis=-1).astype(want)
    return run


def _bits(x: np.ndarray, d: DType) -> np.ndarray:
    return bf16_to_bits(x) if d.name == "bfloat16" else np.asarray(x).astype(d.np)


def _op_bitcast(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 1, outs, 1)
    a_id, out = ins[0], outs[0]
    d, lanes = types[0]
    src = _defs(plan).get(a_id)
    if src is None:
        raise _bad(plan, op, f"the type of operand %{a_id} is unknown")
    sd, slanes = src
    if sd.itemsize * max(slanes, 1) != d.itemsize * max(lanes, 1) or MATRIX_LANES in (lanes, slanes):
        raise _bad(plan, op, f"bitcast between types of different sizes ({sd.name} x{max(slanes, 1)} to "
                             f"{d.name} x{max(lanes, 1)})")
    target = np.dtype(np.uint16) if d.name == "bfloat16" else d.np

    def run(st, env, mask):
        raw = np.ascontiguousarray(_bits(np.asarray(mat(env[a_id])), sd))
        if slanes <= 1:
            raw = raw[..., None]
        r = raw.view(target)
        if d.name == "bfloat16":
            r = bf16_from_bits(r)
        env[out] = _scalar(r if lanes > 1 else r[..., 0])
    return run


def _defs(plan: Plan) -> dict[int, tuple[DType, int]]:
    """Every value's type (built once per plan from the IR: bitcast needs its operand's type)."""
    cache = plan.__dict__.get("fast_types")
    if cache is None:
        cache = {}

        def walk(ops: list) -> None:
            for o in ops:
                for v, t in zip(o.get("out", []), o.get("types", [])):
                    try:
                        cache[v] = parse_type(t, "")
                    except IRError:
                        pass
                for r in o.get("regions", []):
                    for v, t in zip(r.get("args", []), r.get("types", [])):
                        try:
                            cache[v] = parse_type(t, "")
                        except IRError:
                            pass
                    walk(r.get("body", []))
        walk(plan.ir.get("body", []))
        plan.__dict__["fast_types"] = cache
    return cache


# ---------------------------------------------------------------------------------------------------
# memory: views and packed vectors

def memory(st: State, name: str, view: str | None) -> Any:
    """The tensor `name`, or a view of its bytes as dtype `view` (a numpy view: writes go through)."""
    base = st.mem[name]
    if view is None or view == base.dt.name:
        return base
    views = st.__dict__.setdefault("fast_views", {})
    m = views.get((name, view))
    if m is None:
        d = BY_NAME[view]
        raw = base.flat.view(np.uint8)
        n = raw.size // d.itemsize
        # a memory of the base's class (cpu_memory.Memory) over the same bytes
        m = views[(name, view)] = type(base)(name, raw[: n * d.itemsize].view(d.np), d, n, base.shared,
                                             base.written)
    return m


def _index(st: State, m: Any, idx: Any, mask: Any, line: int, kind: str, extent: int) -> np.ndarray:
    """`idx` as int64 lanes, each active one checked to address `extent` elements inside `m`."""
    i = np.asarray(mat(idx), np.int64)
    bad = (i < 0) | (i + extent > m.size)
    if mask is not None:
        bad = bad & mask
    if np.any(bad):
        geo = st.geo
        full = np.broadcast_to(bad, geo.full).reshape(-1)
        pos = int(np.flatnonzero(full)[0])
        at = int(np.broadcast_to(i, geo.full).reshape(-1)[pos])
        what = "threadgroup array" if m.shared else "tensor"
        raise OutOfBoundsError(f"{st.where(line)}: out-of-bounds {kind} of {what} {m.name!r} "
                               f"({m.size} elements of {m.dt.name}) at index {at}"
                               f"{f' (.. {at + extent - 1})' if extent > 1 else ''} by {geo.lane(pos)}; "
                               "check "
                               f"the bounds test guarding the access at line {line}")
    i = np.clip(i, 0, max(m.size - extent, 0))
    if m.shared:
        i = i + st.geo.gid * m.size
    return i


def _memory(plan, op, name, ins, outs, types, attrs, line):
    t = attrs.get("tensor")
    if not isinstance(t, str) or (t not in plan.shared_names and t not in plan.arg_names):
        raise _bad(plan, op, f"'tensor' {t!r} is neither a tensor argument nor a shared array")
    view = attrs.get("view")
    if view is not None and view not in BY_NAME:
        raise _bad(plan, op, f"'view' {view!r} is not a dtype")
    load = name in ("load", "vload")
    _need(plan, op, ins, 1 if load else 2, outs, 1 if load else 0)
    lanes = types[0][1] if load and name == "vload" else 0
    i_id = ins[0]

    def run_load(st, env, mask):
        m = memory(st, t, view)
        width = max(lanes, 1)
        i = _index(st, m, env[i_id], mask, line, name, width)
        v = m.flat[i[..., None] + np.arange(width)] if lanes else m.flat[i]
        env[out] = _scalar(bf16_from_bits(v) if m.dt.name == "bfloat16" else v)

    def run_store(st, env, mask):
        m = memory(st, t, view)
        v = np.asarray(mat(env[ins[1]]))
        width = v.shape[-1] if name == "vstore" else 1
        i = _index(st, m, env[i_id], mask, line, name, width)
        if name == "vstore":
            i = i[..., None] + np.arange(width)
        v = bf16_to_bits(v) if m.dt.name == "bfloat16" else v.astype(m.flat.dtype)
        if not m.flat.flags.writeable:
            raise KernelExecutionError(f"{st.where(line)}: {name} to tensor {m.name!r}, which is read-only")
        m.before_write()
        shape = np.broadcast_shapes(i.shape, v.shape, () if mask is None else
                                    (np.shape(mask) + ((1,) if name == "vstore" else ())))
        ib, vb = np.broadcast_to(i, shape), np.broadcast_to(v, shape)
        if mask is None:
            m.flat[ib.reshape(-1)] = vb.reshape(-1)
        else:
            sel = np.broadcast_to(mask[..., None] if name == "vstore" else mask, shape)
            m.flat[ib[sel]] = vb[sel]

    out = outs[0] if load else None
    return run_load if load else run_store


# ---------------------------------------------------------------------------------------------------
# simdgroup matrices

def _groups(st: State, line: int, what: str) -> tuple[int, int]:
    geo = st.geo
    if geo.tpg % SIMD:
        raise KernelExecutionError(f"{st.where(line)}: {what} needs whole simdgroups, but the threadgroup "
                                   "has "
                                   f"{geo.tpg} threads (not a multiple of {SIMD})")
    return geo.ngroups, geo.tpg // SIMD


def _active(st: State, mask: Any, line: int, what: str) -> np.ndarray | None:
    """Per simdgroup (G, S): whether it runs the op; None when all do. Partial simdgroups: an error."""
    if mask is None:
        return None
    G, S = _groups(st, line, what)
    m = np.broadcast_to(mask, st.geo.full).reshape(G, S, SIMD)
    every, some = m.all(-1), m.any(-1)
    partial = some & ~every
    if partial.any():
        g, s = (int(x[0]) for x in np.nonzero(partial))
        raise KernelExecutionError(f"{st.where(line)}: {what} reached by {int(m[g, s].sum())} of the 32 "
                                   f"lanes of simdgroup {s} of threadgroup {g} (divergent control flow): "
                                   "every lane "
                                   "of a simdgroup must take part in simdgroup matrix operations; make the "
                                   "condition the same for the whole simdgroup")
    return np.asarray(every)


def _per_simdgroup(st: State, x: Any, active: np.ndarray | None, line: int, what: str) -> np.ndarray:
    """A per-thread int value as one value per simdgroup (G, S); it must agree across the lanes.
    Only the axes the value varies along are materialised (a position built from simd_group_id is a
    (S, 32) array, not one per thread of the launch)."""
    G, S = _groups(st, line, what)
    if np.ndim(x) == 0 and type(x) is not Aff:  # uniform
        return np.full((G, S), int(x), np.int64)
    full = st.geo.full
    a = np.asarray(mat(x), np.int64)
    a = a.reshape((1,) * (6 - a.ndim) + a.shape)
    gshape = tuple(full[i] if a.shape[i] != 1 else 1 for i in range(3))  # the threadgroup axes it uses
    t = np.broadcast_to(a, gshape + full[3:]).reshape(-1, S, SIMD)
    first = t[..., 0]
    differ = (t != first[..., None]).any(-1)
    first = np.broadcast_to(first.reshape(gshape + (S,)), full[:3] + (S,)).reshape(G, S)
    differ = np.broadcast_to(differ.reshape(gshape + (S,)), full[:3] + (S,)).reshape(G, S)
    if active is not None:
        differ = differ & active
    if differ.any():
        g, s = (int(v[0]) for v in np.nonzero(differ))
        raise KernelExecutionError(f"{st.where(line)}: {what}: the lanes of simdgroup {s} of threadgroup {g} "
                                   "pass different positions (a simdgroup matrix op takes one block for the "
                                   "whole simdgroup)")
    return first


_R = np.arange(N, dtype=np.int64)


class Positions:
    """The positions (`off`, `ld` operands) of a simdgroup matrix op, one per simdgroup (G, S), and,
    when they allow it, their affine form: `base[g, s] == c0 + sum(coefs * (gz, gy, gx, s1, s2))`
    for a split of the simdgroup index s = s1 * S2 + s2 (`dims` gives the extents), with one ld for
    every simdgroup."""

    __slots__ = ("base", "stride", "affine", "key")

    def __init__(self, base: np.ndarray, stride: np.ndarray, gfull: tuple[int, ...]) -> None:
        self.base, self.stride = base, stride
        self.key: Any = None  # the value key it is cached under (unmasked positions)
        self.affine: tuple[int, tuple[int, ...], tuple[int, ...], int] | None = None
        ld = int(stride.reshape(-1)[0])
        if not (stride == ld).all():
            return
        G, S = base.shape
        c0 = int(base.reshape(-1)[0])
        for s1 in [d for d in range(1, S + 1) if S % d == 0]:
            dims = gfull + (s1, S // s1)
            b = base.reshape(dims)
            pred: Any = c0
            coefs = []
            for ax, n in enumerate(dims):
                k = int(b[tuple(int(i == ax) for i in range(len(dims)))]) - c0 if n > 1 else 0
                coefs.append(k)
                if k:
                    pred = pred + k * np.arange(n, dtype=np.int64).reshape(
                        [n if i == ax else 1 for i in range(len(dims))])
            if (pred == b).all():
                self.affine = (c0, dims, tuple(coefs), ld)
                return


class Block:
    """Where the 8x8 block of every simdgroup of a launch (chunk) lies in a tensor's flat storage:
    element (i, j) of simdgroup s of threadgroup g is `flat[base[g, s] + i * rs[g, s] + j * cs[g, s]]`
    (rs, cs = ld, 1; transposed 1, ld), every active block checked to lie inside the tensor.

    The rows of an untransposed block are 8 consecutive elements, each read or written as one void
    item (`item`); a transposed block is the transpose of the untransposed one at the same position
    (`transposed`: the block is read as rows, then transposed). The elements are reached, fastest
    first:
    - `aligned` = (shift, rows): when every row start is shift + a multiple of 8, the storage from
      `shift` on is a contiguous array of 8-element items, taken and put at item indices `rows`;
    - `rows`: when the positions are affine (Positions), a strided view of the storage whose items are
      the blocks' rows: a load is one strided copy;
    - `q`: the (G, S, 8) row starts, gathered and scattered on the storage read as overlapping items
      (one starting at every element);
    - `idx`: the (G, S, 8, 8) element indices (a non-contiguous storage, or inactive simdgroups,
      whose positions are clipped into the storage)."""

    __slots__ = ("base", "rs", "cs", "G", "S", "_idx", "_q", "aligned", "rows", "item", "transposed")

    def __init__(self, base: np.ndarray, rs: np.ndarray, cs: np.ndarray, G: int, S: int) -> None:
        self.base, self.rs, self.cs, self.G, self.S = base, rs, cs, G, S
        self._idx: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self.aligned: tuple[int, np.ndarray] | None = None
        self.rows: tuple[int, tuple[int, ...], tuple[int, ...]] | None = None  # bytes: offset, shape, strides
        self.item: np.dtype | None = None
        self.transposed = False

    @property
    def idx(self) -> np.ndarray:
        if self._idx is None:
            b, rs, cs = (x[..., None, None] for x in (self.base, self.rs, self.cs))
            self._idx = b + _R[:, None] * rs + _R[None, :] * cs
        return self._idx

    @property
    def q(self) -> np.ndarray:
        if self._q is None:
            ld = self.cs if self.transposed else self.rs  # the untransposed block's row stride
            self._q = (self.base[..., None] + _R * ld[..., None]).reshape(-1)
        return self._q


# Blocks outlive a launch: a plan keeps up to CACHED of those it built (keyed by the op, the launch
# geometry, the operands' values and the tensor's size) for launches of at most CACHED_SIMDGROUPS
# simdgroups, so launches of the same shapes skip the positions, the bounds checks and the index arrays.
CACHED = 128
CACHED_SIMDGROUPS = 1 << 14


def _value_key(x: Any) -> Any:
    """A hashable key of a position operand's value (uniform, Aff or per-thread array)."""
    if type(x) is Aff:
        return ("aff", x.c, x.k)
    a = np.asarray(x)
    if a.ndim == 0:
        return int(a)
    return (a.shape, a.dtype.str, a.tobytes())


def _plan_cache(st: State) -> dict:
    if st.geo.ngroups * (st.geo.tpg // SIMD) > CACHED_SIMDGROUPS:
        return {}  # a launch this large: the blocks are kept for this launch only (State.memo)
    cache = st.plan.__dict__.get("simd_blocks")
    if cache is None or len(cache) >= CACHED:
        cache = st.plan.__dict__["simd_blocks"] = {}
    return cache


def _block_index(st: State, m: Any, off: Any, ld: Any, origin: int, transpose: bool, active: Any,
                 line: int, what: str, key: Any) -> Block:
    """Every simdgroup's block (checked). Memoised per op while its operands are the same objects (a
    loop-invariant position: each iteration of a k loop reloads the same threadgroup tile positions),
    and across launches by value (CACHED); the positions themselves are shared by the ops taking the
    same operands (blocks at other origins of the same tile)."""
    if active is not None:
        return _block_index_new(st, m, _positions(st, off, ld, active, line, what), origin, transpose,
                                active, line, what)
    memo = st.memo.get(key)
    if memo is not None and memo[0] is off and memo[1] is ld and memo[2] is m:
        return memo[3]
    pos = _positions(st, off, ld, None, line, what)
    flat = m.flat
    contiguous = flat.ndim == 1 and flat.strides[0] == flat.itemsize
    vkey = (key, pos.key, m.size, m.shared, flat.dtype.str, contiguous)
    cache = _plan_cache(st)
    blk = cache.get(vkey)
    if blk is None:
        blk = cache[vkey] = _block_index_new(st, m, pos, origin, transpose, None, line, what)
    st.memo[key] = (off, ld, m, blk)
    return blk


def _positions(st: State, off: Any, ld: Any, active: Any, line: int, what: str) -> Positions:
    """The per-simdgroup positions of the operands, memoised for the operand objects and across
    launches by value (unmasked)."""
    if active is not None:
        return Positions(_per_simdgroup(st, off, active, line, what),
                         _per_simdgroup(st, ld, active, line, what), st.geo.full[:3])
    key = ("simd_positions", id(off), id(ld))
    memo = st.memo.get(key)
    if memo is not None and memo[0] is off and memo[1] is ld:
        return memo[2]
    vkey = ("simd_positions", st.geo.full, _value_key(off), _value_key(ld))
    cache = _plan_cache(st)
    pos = cache.get(vkey)
    if pos is None:
        pos = Positions(_per_simdgroup(st, off, None, line, what), _per_simdgroup(st, ld, None, line, what),
                        st.geo.full[:3])
        pos.key = vkey
        cache[vkey] = pos
    st.memo[key] = (off, ld, pos)
    return pos


def _block_index_new(st: State, m: Any, pos: Positions, origin: int, transpose: bool, active: Any,
                     line: int, what: str) -> Block:
    G, S = _groups(st, line, what)
    base, stride = pos.base + origin, pos.stride
    span = (N - 1) * stride  # the block spans base + min(0, 7 ld) .. base + max(0, 7 ld) + 7
    lo, hi = base + np.minimum(span, 0), base + np.maximum(span, 0) + (N - 1)
    bad = (lo < 0) | (hi >= m.size)
    if active is not None:
        bad &= active
    if bad.any():
        g, s = (int(v[0]) for v in np.nonzero(bad))
        what_t = "threadgroup array" if m.shared else "tensor"
        raise OutOfBoundsError(f"{st.where(line)}: out-of-bounds {what} of {what_t} {m.name!r} ({m.size} "
                               f"elements): the 8x8 block of simdgroup {s} of threadgroup {g} spans elements "
                               f"{int(lo[g, s])} .. {int(hi[g, s])}; check the bounds test at line {line}")
    if m.shared:  # threadgroup g's array starts at g * size of the storage
        base = base + (np.arange(G, dtype=np.int64) * m.size)[:, None]
    one = np.ones_like(stride)
    blk = Block(base, one, stride, G, S) if transpose else Block(base, stride, one, G, S)
    flat = m.flat
    if active is not None and not active.all():
        # inactive simdgroups may pass any position: their elements are clipped into the storage
        blk._idx = np.clip(blk.idx, 0, max(flat.size - 1, 0))
    elif flat.ndim == 1 and flat.strides[0] == flat.itemsize and flat.size >= N:
        blk.item, blk.transposed = np.dtype(f"V{N * flat.itemsize}"), transpose
        if pos.affine is not None:
            c0, dims, coefs, ld0 = pos.affine
            if m.shared:
                gz, gy, gx = dims[:3]
                coefs = tuple(k + m.size * g for k, g in zip(coefs, (gy * gx, gx, 1, 0, 0)))
            item = flat.itemsize
            blk.rows = ((c0 + origin) * item, dims + (N,), tuple(k * item for k in coefs + (ld0,)))
        q = blk.q
        shift = int(q[0]) % N
        if not ((q - shift) % N).any():
            blk.aligned = (shift, (q - shift) // N)
    return blk


def _items(flat: np.ndarray, item: np.dtype) -> np.ndarray:
    """`flat` as overlapping void items of len(item) bytes, one starting at every element."""
    return np.ndarray((flat.size - N + 1,), item, buffer=flat, strides=(flat.itemsize,))


def _aligned_items(flat: np.ndarray, item: np.dtype, shift: int) -> np.ndarray:
    """`flat[shift:]` as consecutive void items of len(item) bytes (a contiguous array)."""
    return np.ndarray(((flat.size - shift) // N,), item, buffer=flat, offset=shift * flat.itemsize)


def gather_blocks(m: Any, blk: Block) -> SimdMatrix:
    """The blocks' elements as a matrix value (G, S, 8, 8), a copy (Block says how they are reached)."""
    flat, item = m.flat, blk.item
    if item is None:
        v = np.take(flat, blk.idx)
    else:
        if blk.aligned is not None:
            shift, rows = blk.aligned
            v = _aligned_items(flat, item, shift).take(rows)
        elif blk.rows is not None:
            off, shape, strides = blk.rows
            v = np.ndarray(shape, item, buffer=flat, offset=off, strides=strides).copy()
        else:
            v = _items(flat, item)[blk.q]
        v = v.view(flat.dtype).reshape(blk.G, blk.S, N, N)
        if blk.transposed:
            v = np.ascontiguousarray(v.swapaxes(-1, -2))
    name = m.dt.name
    if name == "float16":  # widened once here rather than by every simd_mma using it
        return SimdMatrix(np.take(_f16_to_f32(), v.view(np.uint16)))
    return SimdMatrix(bf16_from_bits(v) if name == "bfloat16" else v)


_F16_TO_F32: list[np.ndarray] = []


def _f16_to_f32() -> np.ndarray:
    """The float32 value of every float16 bit pattern (numpy's own conversion, built once): a table
    lookup widens a block twice as fast as numpy's float16 cast here."""
    if not _F16_TO_F32:
        _F16_TO_F32.append(np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
                           .astype(np.float32))
    return _F16_TO_F32[0]


def scatter_blocks(m: Any, blk: Block, vals: np.ndarray, active: np.ndarray | None) -> None:
    """Write `vals` (G, S, 8, 8), of the storage's dtype, to the blocks of the active simdgroups, in
    simdgroup, row, column order (where blocks overlap, the later one's element stays)."""
    flat, item = m.flat, blk.item
    if item is not None and active is None:
        rows = np.ascontiguousarray(vals.swapaxes(-1, -2) if blk.transposed else vals).view(item).reshape(-1)
        if blk.aligned is not None:
            shift, at = blk.aligned
            _aligned_items(flat, item, shift)[at] = rows
        else:
            _items(flat, item)[blk.q] = rows
    elif active is None:
        flat[blk.idx.reshape(-1)] = vals.reshape(-1)
    else:
        flat[blk.idx[active].reshape(-1)] = vals[active].reshape(-1)


def _check_matrix_op(plan, op, attrs, what):
    t = attrs.get("tensor")
    if not isinstance(t, str) or (t not in plan.shared_names and t not in plan.arg_names):
        raise _bad(plan, op, f"'tensor' {t!r} is neither a tensor argument nor a shared array")
    origin, tr = attrs.get("origin", 0), attrs.get("transpose", False)
    if not isinstance(origin, int) or isinstance(origin, bool) or not isinstance(tr, bool):
        raise _bad(plan, op, f"{what} needs an int 'origin' and a bool 'transpose'")
    return t, origin, tr


def _op_simd_fill(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 0, outs, 1)
    d, lanes = types[0]
    value = attrs.get("value")
    if lanes != MATRIX_LANES or isinstance(value, (str, type(None))):
        raise _bad(plan, op, "simd_fill makes a matrix type from a number 'value'")
    a = np.full((1, 1, N, N), value, _value_np(d))
    if d.name == "bfloat16":
        a = bf16_round(a)
    out = outs[0]

    def run(st, env, mask):
        _active(st, mask, line, "simd_fill")
        env[out] = SimdMatrix(a)
    return run


def _op_simd_load(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 2, outs, 1)
    t, origin, tr = _check_matrix_op(plan, op, attrs, "simd_load")
    view, out = attrs.get("view"), outs[0]
    off_id, ld_id = ins
    key = ("simd_load", out)

    def run(st, env, mask):
        off, ld = env[off_id], env[ld_id]
        if mask is None and view is None:  # the loop-invariant case: the block memoised (_block_index)
            m = st.mem[t]
            memo = st.memo.get(key)
            if memo is not None and memo[0] is off and memo[1] is ld and memo[2] is m:
                env[out] = gather_blocks(m, memo[3])
                return
        active = _active(st, mask, line, "simd_load")
        m = memory(st, t, view)
        env[out] = gather_blocks(m, _block_index(st, m, off, ld, origin, tr, active, line, "simd_load", key))
    return run


def _op_simd_mma(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 3, outs, 1)
    d, _ = types[0]
    a_id, b_id, c_id = ins
    out, want = outs[0], _value_np(d)
    f32 = np.dtype(np.float32)
    defs = _defs(plan)
    # operands known to be float32 matrices (values of bfloat16 ones are float32 too) need no cast
    cast = [defs.get(i, (None, 0))[0] not in (BY_NAME["float32"], BY_NAME["bfloat16"]) for i in (a_id, b_id)]
    bf16 = d.name == "bfloat16"

    def run(st, env, mask):
        if mask is not None:
            _active(st, mask, line, "simd_mma")
        a, b, c = env[a_id], env[b_id], env[c_id]
        if type(a) is not SimdMatrix or type(b) is not SimdMatrix or type(c) is not SimdMatrix:
            raise KernelExecutionError(f"{st.where(line)}: simd_mma of values that are not simdgroup "
                                       "matrices")
        r = np.matmul(a.a.astype(f32, copy=False) if cast[0] else a.a,
                      b.a.astype(f32, copy=False) if cast[1] else b.a)
        if r.shape == c.a.shape:
            r += c.a
        else:  # a and b filled (one matrix for every simdgroup), c not
            r = r + c.a
        if r.dtype != want:
            r = r.astype(want)
        env[out] = SimdMatrix(bf16_round(r) if bf16 else r)
    return run


def _op_simd_store(plan, op, ins, outs, types, attrs, line):
    _need(plan, op, ins, 3, outs, 0)
    t, origin, tr = _check_matrix_op(plan, op, attrs, "simd_store")
    view = attrs.get("view")
    v_id, off_id, ld_id = ins
    key = ("simd_store", id(op))

    def run(st, env, mask):
        active = _active(st, mask, line, "simd_store")
        mv = env[v_id]
        if type(mv) is not SimdMatrix:
            raise KernelExecutionError(f"{st.where(line)}: simd_store of a value that is not a simdgroup "
                                       "matrix")
        m = memory(st, t, view)
        if not m.flat.flags.writeable:
            raise KernelExecutionError(f"{st.where(line)}: simd_store to tensor {m.name!r}, which is "
                                       "read-only")
        blk = _block_index(st, m, env[off_id], env[ld_id], origin, tr, active, line, "simd_store", key)
        vals = np.broadcast_to(mv.a, (blk.G, blk.S, N, N))
        vals = bf16_to_bits(vals) if m.dt.name == "bfloat16" else vals.astype(m.flat.dtype)
        m.before_write()
        scatter_blocks(m, blk, vals, active)
    return run
