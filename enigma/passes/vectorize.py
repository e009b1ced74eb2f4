"""vec_width = W: each thread handles W consecutive values of its linear index (docs/abi.md, "Vector
width"). A thread computes `g = block_idx().x * block_dim().x + thread_idx().x` as before and takes the
indices `i = W*g .. W*g + W-1`; the launch divides the grid's x dimension by W (`scale_grid`).

The vectorised body is

    base = g * W
    if <every bounds check `if i + c < n` (also <=, >, >=) holds for lane 0 and lane W-1>:
        the body once, on W lanes: t[i + c] -> vload/vstore of W elements at base + c, values computed
        from them -> vector ops (uniform scalars are broadcast), bounds-checked branches -> taken
    else:
        for k in range(W): the original scalar body with i = base + k      (the scalar tail)

so results equal vec_width=0 exactly (same ops per element, same order; a bounds check is monotonic in i,
so holding at both ends means holding on every lane). A kernel outside this shape raises EnigmaError
naming the line and the reason; there is never a silent scalar fallback.

Every elementwise op of the op table vectorises, bool values included: they become boolN, whose
comparisons and select the MSL printer spells as lane-wise logic (Metal has neither for bool vectors;
docs/abi.md), and the table's helpers (integer division, float->int casts, ...) apply lane by lane.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from enigma_runtime.dtypes import bool_, int32

from enigma import ir
from enigma.passes.opbuilder import OpBuilder, clone_op, with_body

WIDTHS = (2, 4)
_LANE_OPS = frozenset(ir.BINARY + ir.COMPARE + ir.UNARY + ir.TERNARY + ("cast",))
_FORBIDDEN = {
    "barrier": "a barrier", "simd_lane_id": "the simd lane id", "simd_group_id": "the simd group id",
    "atomic_add": "an atomic", "atomic_max": "an atomic", "atomic_min": "an atomic", "vload": "a vector load",
    "vstore": "a vector store", "broadcast": "a broadcast", "grid_dim": "grid_dim()",
    **{s: f"{s}()" for s in ir.SIMD},
    **{s: f"a {s} op (vectors, bits, simdgroup matrices)" for s in ir.VECTOR + ir.SIMD_MATRIX},
}
_I32 = ir.Type(int32)
_BOOL = ir.Type(bool_)


def _error(kernel: ir.Kernel, line: int, message: str, hint: str = "") -> Exception:
    from enigma.errors import EnigmaError
    return EnigmaError(f"cannot vectorise kernel {kernel.name!r}: {message}", kernel.file, line,
                       hint=hint or "compile with vec_width=0, or see docs/abi.md (\"Vector width\") for the "
                                    "shape a vectorisable kernel has")


def scale_grid_int(grid: tuple[int, int, int] | list[int], width: int) -> tuple[int, int, int]:
    """The launch grid (in threadgroups) of the kernel vectorised at `width`: x divided, rounded up."""
    x, y, z = grid
    return (-(-int(x) // width) if width > 1 else int(x), int(y), int(z))


def scale_grid(grid: list[Any] | None, width: int) -> list[Any] | None:
    """Same as `scale_grid_int` on FORMAT.md grid expressions: x becomes `ceil_div(x, width)`."""
    if grid is None or width <= 1:
        return grid
    x, y, z = grid
    if isinstance(x, int):
        return [-(-x // width), y, z]
    return [{"op": "ceil_div", "args": [x, width]}, y, z]


# ---------------------------------------------------------------------------------------------------
# analysis: which values are the lane index (+ a constant), bounds checks, per-lane data

class _Shape:
    def __init__(self, kernel: ir.Kernel, width: int):
        self.k, self.w = kernel, width
        self.defs: dict[int, ir.Op] = {}
        for op in ir.walk(kernel.body):
            for r in op.results:
                self.defs[r.id] = op
        self.consts = {op.result.id: op.attrs["value"] for op in ir.walk(kernel.body) if op.name == "const"}
        self.index_op = self._find_index()
        self.affine: dict[int, int] = {self.index_op.result.id: 0}  # value id -> c in i + c
        self.checks: dict[int, tuple[ir.Op, int, int]] = {}  # compare id -> (op, affine side, c)
        self.varying: set[int] = set()
        self._classify()

    def _builtin(self, v: ir.Value, name: str) -> bool:
        op = self.defs.get(v.id)
        return op is not None and op.name == name and op.attrs.get("dim") == 0

    def _group_size(self, v: ir.Value) -> bool:
        return self._builtin(v, "block_dim") or self._int_const(v) is not None

    def _find_index(self) -> ir.Op:
        for op in self.k.body.ops:
            if op.name != "add":
                continue
            for m, t in (op.operands, op.operands[::-1]):
                mop = self.defs.get(m.id)
                if self._builtin(t, "thread_idx") and mop is not None and mop.name == "mul":
                    a, b = mop.operands
                    if (self._builtin(a, "block_idx") and self._group_size(b)) or \
                            (self._builtin(b, "block_idx") and self._group_size(a)):
                        self.index_parts = {m.id, t.id, a.id, b.id}
                        return op
        raise _error(self.k, self.k.line, "it has no linear thread index `i = enigma.block_idx().x * "
                     "enigma.block_dim().x + enigma.thread_idx().x` (or `* <constant>`) at its top level",
                     "compute the element index exactly that way; each thread then handles vec_width "
                     "elements")

    def _classify(self) -> None:
        while True:
            before = (len(self.affine), len(self.checks), len(self.varying))
            self._block(self.k.body)
            if (len(self.affine), len(self.checks), len(self.varying)) == before:
                return

    def _int_const(self, v: ir.Value) -> int | None:
        c = self.consts.get(v.id)
        return c if isinstance(c, int) and not isinstance(c, bool) else None

    def _block(self, block: ir.Block) -> None:
        for op in block.ops:
            ids = [v.id for v in op.operands]
            vary = any(i in self.varying for i in ids)
            c = self._int_const(op.operands[1]) if len(ids) == 2 else None
            if op.name in ("add", "sub") and ids[0] in self.affine and c is not None:
                self.affine[op.result.id] = self.affine[ids[0]] + (c if op.name == "add" else -c)
            elif op.name == "add" and ids[1] in self.affine and self._int_const(op.operands[0]) is not None:
                self.affine[op.result.id] = self.affine[ids[1]] + (self._int_const(op.operands[0]) or 0)
            elif op.name in ("lt", "le", "gt", "ge") and (ids[0] in self.affine) != (ids[1] in self.affine) \
                    and not vary:
                side = 0 if ids[0] in self.affine else 1
                self.checks[op.result.id] = (op, side, self.affine[ids[side]])
            elif op.name == "load" and ids[0] in self.affine:
                self.varying.add(op.result.id)
            elif op.name in ("for", "while"):
                self._loop(op)
            elif op.name == "if":
                for r in op.regions:
                    self._block(r)
                for j, res in enumerate(op.results):
                    if any(r.ops[-1].operands[j].id in self.varying for r in op.regions):
                        self.varying.add(res.id)
            elif vary and op.name in _LANE_OPS:
                self.varying.update(r.id for r in op.results)

    def _loop(self, op: ir.Op) -> None:
        if op.name == "for":
            body = op.regions[0]
            carried, init = body.args[1:], op.operands[3:]
            self._block(body)
            nexts = body.ops[-1].operands
            for j, (a, r) in enumerate(zip(carried, op.results)):
                if init[j].id in self.varying or nexts[j].id in self.varying:
                    self.varying.update((a.id, r.id))
        else:
            before, after = op.regions
            self._block(before)
            cond = before.ops[-1].operands
            for j, (a, r) in enumerate(zip(after.args, op.results)):
                if cond[j + 1].id in self.varying:
                    self.varying.update((a.id, r.id))
            self._block(after)
            nexts = after.ops[-1].operands
            for j, a in enumerate(before.args):
                if op.operands[j].id in self.varying or nexts[j].id in self.varying:
                    self.varying.add(a.id)


# ---------------------------------------------------------------------------------------------------
# the transformation

class _Vectorizer:
    def __init__(self, kernel: ir.Kernel, width: int):
        self.k, self.w = kernel, width
        self.s = _Shape(kernel, width)
        self.vt: Callable[[ir.Type], ir.Type] = lambda t: ir.Type(t.dtype, width)

    def err(self, op: ir.Op, message: str, hint: str = "") -> Exception:
        return _error(self.k, op.line, message, hint)

    # fast-path condition ---------------------------------------------------------------------------
    def hoist(self, v: ir.Value, b: OpBuilder, memo: dict[int, ir.Value], check: ir.Op) -> ir.Value:
        """Recompute uniform `v` at the top of the kernel (its definition only uses scalars)."""
        if v.id in memo:
            return memo[v.id]
        op = self.s.defs.get(v.id)
        per_thread = op is not None and op.name in ir.BUILTIN and op.name != "block_dim" \
            and op.attrs.get("dim") == 0
        if op is None or op.regions or op.name in ir.NOT_PURE or per_thread:
            raise self.err(check, "the bound of a bounds check on the index must be computed from scalar "
                                  "arguments, sizes and constants",
                           "compare the index with e.g. `n` or `x.shape[0]`")
        operands = [self.hoist(x, b, memo, check) for x in op.operands]
        memo[v.id] = b.op(op.name, operands, [r.type for r in op.results], op.attrs, line=op.line).result
        return memo[v.id]

    def fast_path(self, b: OpBuilder, base: ir.Value, checks: list[ir.Op]) -> ir.Value:
        memo: dict[int, ir.Value] = {}
        fast: ir.Value | None = None
        for check in checks:
            op, side, c = self.s.checks[check.result.id]
            b.line = op.line
            bound = self.hoist(op.operands[1 - side], b, memo, op)
            for lane in (0, self.w - 1):
                idx = b.val("add", base, b.const(c + lane, _I32))
                cmp = b.val(op.name, *((idx, bound) if side == 0 else (bound, idx)))
                fast = cmp if fast is None else b.val("and", fast, cmp)
        assert fast is not None, "fast_path needs at least one bounds check"
        return fast

    # vector body -----------------------------------------------------------------------------------
    def vec(self, v: ir.Value, b: OpBuilder, env: dict[Any, ir.Value]) -> ir.Value:
        """`v` (original) as a vector in the vector body: broadcast when it is uniform."""
        m = env.get(v.id, v)
        if m.type.lanes == self.w:
            return m
        return b.val("broadcast", m, type=self.vt(m.type), lanes=self.w)

    def vblock(self, block: ir.Block, env: dict[Any, ir.Value], guarded: bool,
               args: list[ir.Value]) -> ir.Block:
        b = OpBuilder()
        for a, n in zip(block.args, args):
            env[a.id] = n
        for op in block.ops:
            self.vop(op, b, env, guarded)
        return ir.Block(args, b.ops)

    def vop(self, op: ir.Op, b: OpBuilder, env: dict[Any, ir.Value], guarded: bool) -> None:
        s, name = self.s, op.name
        b.line = op.line
        ids = [v.id for v in op.operands]
        if op is s.index_op:
            env[op.result.id] = env["base"]
            return
        for v in op.operands:
            if v.id in s.affine and not self.index_use(op, v):
                raise self.err(op, "the element index is used as a value (only `t[i + c]` accesses and "
                                   "`if i < n` bounds checks of it can be vectorised)")
            if v.id in s.checks and not (name == "if" and v is op.operands[0]):
                raise self.err(op, "a bounds check of the element index is used as a value; only `if` "
                                   "may use it")
        if name in _FORBIDDEN and not (name == "grid_dim" and op.attrs.get("dim") != 0):
            raise self.err(op, f"it uses {_FORBIDDEN[name]}, which sees threads, not elements")
        if name in ("yield", "condition"):
            b.op(name, [env.get(v.id, v) for v in op.operands])
        elif name == "if" and ids[0] in s.checks:
            then = op.regions[0]
            for o in then.ops[:-1]:
                self.vop(o, b, env, True)
            for r, y in zip(op.results, then.ops[-1].operands):
                env[r.id] = self.vec(y, b, env) if r.id in s.varying else env.get(y.id, y)
        elif name in ("load", "store") and ids[0] in s.affine:
            c = s.affine[ids[0]]
            if not guarded:
                raise self.err(op, f"`{op.attrs['tensor']}[i]` is not inside a bounds check of the index",
                               "guard the access with `if i < n:` so the scalar tail handles the last "
                               "elements")
            if c % self.w:
                raise self.err(op, f"`{op.attrs['tensor']}[i + {c}]`: the offset {c} is not a multiple of "
                                   f"vec_width={self.w}, so the vector access would be misaligned")
            idx = env.get(ids[0], op.operands[0])
            if name == "load":
                env[op.result.id] = b.val("vload", idx, type=self.vt(op.result.type),
                                          tensor=op.attrs["tensor"], lanes=self.w)
            else:
                b.op("vstore", [idx, self.vec(op.operands[1], b, env)], attrs={"tensor": op.attrs["tensor"]})
        elif name in ("load", "store") and any(i in s.varying for i in ids[:1]):
            raise self.err(op, f"`{op.attrs['tensor']}` is indexed by per-element data (a gather or scatter)")
        elif name == "store" and ids[1] in s.varying:
            raise self.err(op, f"every element stores to the same place of `{op.attrs['tensor']}`")
        elif name == "if":
            if ids[0] in s.varying:
                raise self.err(op, "a branch on per-element data", "use enigma.where(cond, a, b) instead")
            self.vcontrol(op, b, env, guarded)
        elif name in ("for", "while"):
            if any(i in s.varying for i in (ids[:3] if name == "for" else [])):
                raise self.err(op, "loop bounds that depend on per-element data")
            self.vcontrol(op, b, env, guarded)
        elif any(i in s.varying for i in ids):
            operands = [self.vec(v, b, env) for v in op.operands]
            types = [self.vt(r.type) for r in op.results]
            new = b.op(name, operands, types, op.attrs)
            env.update({r.id: n for r, n in zip(op.results, new.results)})
        else:
            new = b.op(name, [env.get(v.id, v) for v in op.operands], [r.type for r in op.results], op.attrs)
            env.update({r.id: n for r, n in zip(op.results, new.results)})

    def index_use(self, op: ir.Op, v: ir.Value) -> bool:
        s = self.s
        if op.name in ("load", "store") and op.operands[0] is v and v not in op.operands[1:]:
            return True
        return (op.result.id in s.affine or op.result.id in s.checks) if len(op.results) == 1 else False

    def vcontrol(self, op: ir.Op, b: OpBuilder, env: dict[Any, ir.Value], guarded: bool) -> None:
        """if (uniform condition) / for / while: regions vectorised; carried or yielded values that are
        per-element become vectors, uniform ones feeding them are broadcast."""
        s = self.s
        vary = [r.id in s.varying for r in op.results]
        rtypes = [self.vt(r.type) if v else r.type for r, v in zip(op.results, vary)]

        def term(block: ir.Block, flags: list[bool], skip: int = 0) -> None:
            """Broadcast the terminator's uniform operands at positions that carry vectors."""
            t, bb = block.ops[-1], OpBuilder(block.ops[-1].line)
            operands = list(t.operands)
            for j, flag in enumerate(flags):
                x = operands[skip + j]
                if flag and x.type.lanes != self.w:
                    operands[skip + j] = bb.val("broadcast", x, type=self.vt(x.type), lanes=self.w)
            block.ops[-1:] = bb.ops + [ir.Op(t.name, operands, [], t.attrs, [], t.line)]

        def fresh(args: list[ir.Value], flags: list[bool]) -> list[ir.Value]:
            return [ir.Value(self.vt(a.type) if f else a.type) for a, f in zip(args, flags)]

        if op.name == "if":
            regions = [self.vblock(r, env, guarded, []) for r in op.regions]
            for r in regions:
                term(r, vary)
            operands = [env.get(op.operands[0].id, op.operands[0])]
        elif op.name == "for":
            body = op.regions[0]
            flags = [a.id in s.varying for a in body.args[1:]]
            args = [ir.Value(body.args[0].type)] + fresh(body.args[1:], flags)
            reg = self.vblock(body, env, guarded, args)
            term(reg, flags)
            init = [self.vec(x, b, env) if f else env.get(x.id, x) for x, f in zip(op.operands[3:], flags)]
            operands = [env.get(x.id, x) for x in op.operands[:3]] + init
            regions = [reg]
        else:
            before, after = op.regions
            bflags = [a.id in s.varying for a in before.args]
            bargs = fresh(before.args, bflags)
            rb = self.vblock(before, env, guarded, bargs)
            if rb.ops[-1].operands[0].type.lanes != 1:
                raise self.err(op, "a while condition that depends on per-element data")
            term(rb, vary, skip=1)
            ra = self.vblock(after, env, guarded, fresh(after.args, vary))
            term(ra, bflags)
            operands = [self.vec(x, b, env) if f else env.get(x.id, x) for x, f in zip(op.operands, bflags)]
            regions = [rb, ra]
        new = b.op(op.name, operands, rtypes, op.attrs, regions, op.line)
        env.update({r.id: n for r, n in zip(op.results, new.results)})

    # the kernel ------------------------------------------------------------------------------------
    def run(self) -> ir.Kernel:
        k, s = self.k, self.s
        checks = [op for op in ir.walk(k.body) if op.name == "if" and op.operands[0].id in s.checks]
        if not checks:
            access = next((op for op in ir.walk(k.body) if op.name in ("load", "store")
                           and op.operands[0].id in s.affine), None)
            if access is None:
                raise _error(k, k.line, "it accesses no tensor element t[i] at the element index i")
            raise _error(k, access.line, f"`{access.attrs['tensor']}[i]` is not inside a bounds check of "
                         "the index", "guard the access with `if i < n:` so the scalar tail handles the "
                         "last elements")
        top = OpBuilder(k.line)
        index_env: dict[int, ir.Value] = {}
        for op in k.body.ops:  # the index computation, cloned to the top
            if any(r.id in s.index_parts for r in op.results) or op is s.index_op:
                new = top.op(op.name, [index_env.get(v.id, v) for v in op.operands],
                             [r.type for r in op.results], op.attrs, line=op.line)
                index_env.update({r.id: n for r, n in zip(op.results, new.results)})
        g = index_env[s.index_op.result.id]
        base = top.val("mul", g, top.const(self.w, _I32))
        compares = {c.operands[0].id: self.s.defs[c.operands[0].id] for c in checks}
        fast = self.fast_path(top, base, list(compares.values()))

        env: dict[Any, ir.Value] = {"base": base}
        vector = self.vblock(k.body, env, False, [])
        vector.ops.append(ir.Op("yield", line=k.line))

        lane = ir.Value(_I32)
        tb = OpBuilder(k.line)
        idx = tb.val("add", base, lane)
        vmap = {s.index_op.result.id: idx}
        tail = [clone_op(op, vmap) for op in k.body.ops if op is not s.index_op]
        tail_body = ir.Block([lane], tb.ops + tail)
        tail_body.ops.append(ir.Op("yield", line=k.line))
        lb = OpBuilder(k.line)
        zero, w, one = lb.const(0, _I32), lb.const(self.w, _I32), lb.const(1, _I32)
        lb.op("for", [zero, w, one], [], regions=[tail_body])
        lb.op("yield")
        top.op("if", [fast], [], regions=[vector, ir.Block([], lb.ops)])
        return with_body(k, ir.Block([], top.ops), vec_width=self.w)


def vectorize(kernel: ir.Kernel, width: int) -> ir.Kernel:
    """The kernel with each thread handling `width` consecutive elements (see the module docstring).
    `width` 0 or 1 returns the kernel unchanged (vec_width set); other widths than 2 and 4 are refused."""
    if width in (0, 1):
        return with_body(kernel, kernel.body, vec_width=width)
    if width not in WIDTHS:
        raise _error(kernel, kernel.line, f"vec_width={width}: Metal vectors have at most 4 lanes",
                     "use vec_width=4 (or 2)")
    for op in ir.walk(kernel.body):
        if op.name in _FORBIDDEN and (op.name != "grid_dim" or op.attrs.get("dim") == 0):
            raise _error(kernel, op.line, f"it uses {_FORBIDDEN[op.name]}, which sees threads, not elements",
                         "vec_width applies to elementwise kernels (one element per thread, no threadgroup "
                         "cooperation); compile this one with vec_width=0")
    if kernel.shared:
        raise _error(kernel, kernel.line, "it uses threadgroup memory (shared_tensor)",
                     "vec_width applies to elementwise kernels; compile this one with vec_width=0")
    s = _Shape(kernel, width)
    for op in ir.walk(kernel.body):
        if op.name in ("thread_idx", "block_idx") and op.attrs.get("dim") == 0:
            users = [u for u in ir.walk(kernel.body) if any(v is op.result for v in u.operands)]
            if any(u.result.id not in s.index_parts and u is not s.index_op for u in users):
                raise _error(kernel, op.line, f"{op.name}().x is used other than in the element index",
                             "use only i = block_idx().x * block_dim().x + thread_idx().x")
    return _Vectorizer(kernel, width).run()
