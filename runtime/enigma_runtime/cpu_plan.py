"""CPU executor: the plan, a kernel's IR (FORMAT.md section 4) checked and compiled once into
closures, one per op, each running its op for all threads of a launch at once (cpu.py runs a plan;
control flow runs through cpu_flow.py; the fast-kernel ops are cpu_simdgroup.py's)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import cpu_simdgroup
from .cpu_dot import count_uses, fuse_dot_chains, loop_dot
from .cpu_flow import (
    Region,
    for_divergent,
    inner_ids,
    merge,
    narrow,
    run_region,
    run_while,
    same_trip_count,
)
from .cpu_memory import atomic_op, load_op, store_op
from .cpu_ops import BINARY, CATALOGUE, UNARY, elementwise, outer_mul, simd_op
from .cpu_space import (
    AFF_CMP,
    I32,
    Aff,
    aff_binary,
    as_matrix,
    bf16_round,
    mk_aff,
    uniform_int,
    value_dtype,
    wrap32,
)
from .dtypes import BY_NAME, bool_
from .errors import IRError, KernelExecutionError
from .jsonnum import number_from_json
from .ops import OPS


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
        return Region(args, fuse_dot_chains(steps, self.uses, as_matrix), term_ids)

    # -- compile one op -----------------------------------------------------------------------------
    def _compile(self, op: dict, defined: set[int]) -> Callable:
        name, ins, outs = op["op"], list(op.get("in", [])), list(op.get("out", []))
        attrs, line = op.get("attrs", {}) or {}, op.get("line", 0)
        fast = cpu_simdgroup.compile_op(self, op, name, ins, outs, attrs, line)  # vectors, views, matrices
        if fast is not None:
            return fast
        where = f"kernel {self.name!r} line {line}"
        types = [cpu_simdgroup.parse_type(t, where) for t in op.get("types", [])]
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
        if isinstance(t, str) and (t in self.shared_names
                                   or (t in self.arg_names and self.arg_names[t]["kind"] == "tensor")):
            return t
        raise self._err(op, f"'tensor' {t!r} is neither a tensor argument nor a shared array")

    def _op_const(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 0, outs)
        (dt, lanes) = types[0]
        try:  # FORMAT.md: a number, a bool, or {"float": "inf" | "-inf" | "nan"}
            value = number_from_json(attrs.get("value"))
        except ValueError as e:
            raise self._err(op, f"'value' {e}") from None
        vd = value_dtype(dt)
        if dt.is_int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise self._err(op, f"'value' {value!r} of an integer constant is not an integer")
            value = dt.wrap(int(value))
        elif dt.is_float and not isinstance(value, bool):
            value = float(value)
        with np.errstate(all="ignore"):  # a float beyond float16's range is inf, as in IEEE
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
            if axis is not None:  # a chunk of the grid starts at threadgroup geo.origin
                c = geo.origin[d] if name == "block_idx" else 0
                v = mk_aff(c, tuple(int(i == axis and geo.full[i] > 1) for i in range(6)), geo)
            else:
                v = np.int32((geo.block if name == "block_dim" else geo.grid)[d])
            env[out] = v if want == I32 else as_matrix(v).astype(want)
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
        cmp = name in AFF_CMP
        if not cmp:
            self._check_operands(op, name, dt)
        aff = name in ("add", "sub", "mul") and dt.name == "int32" and not lanes
        src: list = [None if cmp else dt]  # a comparison's operand type: known at the first run
        fast_mul = name == "mul" and dt.name == "float32"

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
                r = aff_binary(name, a, b, (a if type(a) is Aff else b).geo) if aff or cmp else None
                if r is not None:
                    return r
                a, b = as_matrix(a), as_matrix(b)
            if fast_mul and (r := outer_mul(a, b)) is not None:
                return r
            if src[0] is None:
                src[0] = self._operand_type(op, a)
            return elementwise(name, src[0], bool_ if cmp else dt, a, b)
        return run

    def _check_operands(self, op: dict, name: str, dt: Any) -> None:
        """The op table's operand kinds: float math takes floats, bitwise ops ints and bools, arithmetic
        numbers (FORMAT.md section 4)."""
        kinds = OPS[name].operands
        if kinds == "float" and not dt.is_float:
            raise self._err(op, f"{name} takes a float operand, not {dt.name}")
        if kinds == "int" and dt.is_float:
            raise self._err(op, f"{name} takes integer or bool operands, not {dt.name}")
        if kinds == "number" and dt.kind == "b":
            raise self._err(op, f"{name} of a bool")

    def _operand_type(self, op: dict, a: Any):
        """The dtype of a comparison's operands (not written in the IR): from the operand's numpy dtype;
        float32 arrays stand for bfloat16 too, whose comparisons are the same."""
        try:
            return BY_NAME[np.asarray(a).dtype.name]
        except KeyError:
            raise self._err(op, f"operand of dtype {np.asarray(a).dtype} is not an enigma type") from None

    def _op_unary(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        dt, _ = types[0]
        self._check_operands(op, name, dt)
        is_neg = name == "neg" and dt.name == "int32"

        def run(st, env, mask):
            a = env[a_id]
            if type(a) is Aff:
                if is_neg:
                    env[out] = mk_aff(-a.c, tuple(-k for k in a.k), a.geo)
                    return
                a = a.array()
            env[out] = elementwise(name, dt, dt, a)
        return run

    def _op_fma(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 3, outs)
        a_id, b_id, c_id = ins
        out = outs[0]
        dt, _ = types[0]

        def run(st, env, mask):  # one rounding (ops.py): the product and the sum in float64
            env[out] = elementwise("fma", dt, dt, as_matrix(env[a_id]), as_matrix(env[b_id]),
                                   as_matrix(env[c_id]))
        return run

    def _op_select(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 3, outs)
        c_id, a_id, b_id = ins
        out = outs[0]
        lanes = types[0][1]

        def run(st, env, mask):
            c = env[c_id]
            if np.ndim(c) == 0 or np.size(c) == 1 and type(c) is not Aff:
                env[out] = env[a_id] if bool(np.reshape(c, -1)[0]) else env[b_id]
                return
            env[out] = merge(as_matrix(c), env[a_id], env[b_id], bool(lanes) and np.ndim(c) == 6)
        return run

    def _op_cast(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        dt, _ = types[0]
        src: list = [None]

        def run(st, env, mask):
            a = as_matrix(env[a_id])
            if src[0] is None:  # the operand's type is not written in the IR: bfloat16 values are float32
                src[0] = self._operand_type(op, a)
            env[out] = elementwise("cast", src[0], dt, a)
        return run

    def _op_broadcast(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 1, outs)
        a_id, out = ins[0], outs[0]
        lanes = attrs.get("lanes", types[0][1])
        if not isinstance(lanes, int) or lanes < 1:
            raise self._err(op, f"'lanes' must be a positive int, not {lanes!r}")

        def run(st, env, mask):
            a = np.asarray(as_matrix(env[a_id]))
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
            env[out] = load_op(st, st.mem[t], env[i_id], mask, lanes, line, name)
        return run

    _op_vload = _op_load

    def _op_store(self, op, name, ins, outs, types, attrs, line):
        self._need(op, ins, 2, outs, 0)
        t, i_id, v_id = self._tensor(op, attrs), ins[0], ins[1]
        vec = name == "vstore"

        def run(st, env, mask):
            v = as_matrix(env[v_id])
            lanes = np.shape(v)[-1] if vec else 0
            store_op(st, st.mem[t], env[i_id], v, mask, lanes, line, name)
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
            env[out] = atomic_op(st, st.mem[t], env[i_id], as_matrix(env[v_id]), mask, ufunc, line, name)
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
                gz, gy, gx = (int(i) + o for i, o in zip(np.unravel_index(g, geo.full[:3]), geo.origin[::-1]))
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
            x = None if x_id is None else as_matrix(env[x_id])
            r = simd_op(st.geo, name, as_matrix(env[v_id]), x, mask)
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
            c = as_matrix(env[c_id])
            if np.ndim(c) == 0 or np.size(c) == 1:
                vals = run_region(st, then if bool(np.reshape(c, -1)[0]) else other, env, mask, ())
                env.update(zip(outs, vals))
                return
            m_then, any_then = narrow(mask, c)
            m_else, any_else = narrow(mask, ~c)
            if not any_else:
                env.update(zip(outs, run_region(st, then, env, mask, ())))
            elif not any_then:
                env.update(zip(outs, run_region(st, other, env, mask, ())))
            else:
                tv = run_region(st, then, env, m_then, ())
                ev = run_region(st, other, env, m_else, ())
                for o, a, b, v in zip(outs, tv, ev, vec):
                    env[o] = merge(c, a, b, v)
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
        inner = inner_ids(op)
        # a loop that only accumulates float32 products (cpu_dot.py): one matrix product
        dot = loop_dot(body.args, body.steps, body.term, self.uses) \
            if n == 1 and types[0] == (BY_NAME["float32"], 0) else None
        dot_rest = None if dot is None else Region(body.args[:1], dot.rest, [])

        def run(st, env, mask):
            lbv = env[lb_id]
            lb, ub, step = uniform_int(lbv), uniform_int(env[ub_id]), uniform_int(env[st_id])
            carried = [env[i] for i in init]
            if step == 0:
                raise KernelExecutionError(f"{st.where(line)}: for loop with step 0 never ends")
            if dot is not None and lb is not None and ub is not None and step is not None:
                ivs = [ivt.type(i) for i in range(lb, ub, step)]
                carried = [dot.run(st, env, mask, ivs, carried[0],
                                   lambda iv: run_region(st, dot_rest, env, mask, (iv,)), as_matrix)]
            elif lb is not None and ub is not None and step is not None:
                for i in range(lb, ub, step):
                    carried = run_region(st, body, env, mask, (ivt.type(i), *carried))
            elif step is not None and (trips := same_trip_count(lbv, env[ub_id], step)) is not None:
                # per-thread start, same trip count everywhere (a strided loop): no masks needed
                for k in range(trips):
                    iv = aff_binary("add", lbv, np.int32(wrap32(k * step)), st.geo) if type(lbv) is Aff \
                        else (np.asarray(lbv, np.int64) + k * step).astype(ivt)
                    carried = run_region(st, body, env, mask, (iv, *carried))
            else:
                bounds = [as_matrix(env[i]) for i in (lb_id, ub_id, st_id)]
                carried = for_divergent(st, body, env, mask, bounds,
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

        inner = inner_ids(op)

        def run(st, env, mask):
            env.update(zip(outs, run_while(st, before, after, env, mask, [env[i] for i in ins], vec)))
            for i in inner:
                env.pop(i, None)
        return run

