"""The independent model: evaluates a generated `Program` directly with numpy, all threads at once
(one array lane per thread, an execution mask for control flow), with the per-op semantics of the op
table (ops_adapter.apply). It shares nothing with the CPU executor but those per-op functions."""
from __future__ import annotations

from typing import Any

import numpy as np
from enigma_runtime import dtypes as dt
from enigma_runtime.dtypes import DType

from .gen import E, Program, S
from .ops_adapter import apply, out, value_np

SIMD = 32


class Model:
    def __init__(self, p: Program, inputs: list[np.ndarray], outputs: list[np.ndarray],
                 counter: np.ndarray | None, scalar: Any = None) -> None:
        """`inputs`/`outputs`/`counter` hold values in their value dtypes (bfloat16 as float32)."""
        self.p = p
        n = p.threads
        self.inputs = inputs
        self.outputs = [o.copy() for o in outputs]
        self.inexact = [np.zeros(n, bool) for _ in outputs]
        self.counter = None if counter is None else counter.copy()
        self.t = np.arange(n, dtype=np.int32) % p.block
        self.g = np.arange(n, dtype=np.int32)
        self.env: dict[str, np.ndarray] = {}
        self.leaves = {"tid": self.t, "gid": self.g, "bdim": np.full(n, p.block, np.int32),
                       "gdim": np.full(n, p.groups, np.int32), "lane": self.t % SIMD, "sgid": self.t // SIMD,
                       "size": np.full(n, n, np.int32)}
        if p.scalar is not None:
            self.leaves["param"] = np.full(n, scalar, dtype=np.asarray(scalar).dtype)

    def run(self) -> None:
        self.block(self.p.body, np.ones(self.p.threads, bool))

    # -- expressions
    def expr(self, e: E) -> np.ndarray:
        n = self.p.threads
        if e.op == "var":
            return self.env[e.value]
        if e.op == "load":
            return self.inputs[e.value]
        if e.op == "const":
            return out(e.dtype, np.full(n, e.value, dtype=np.float64 if e.dtype.is_float else object)
                       if e.dtype.kind != "b" else np.full(n, e.value))
        if e.op in self.leaves:
            return self.leaves[e.op]
        args = [self.expr(a) for a in e.args]
        if e.op.startswith("simd_"):
            return self.simd(e, args[0])
        src = e.args[1].dtype if e.op == "select" else e.args[0].dtype
        return np.broadcast_to(apply(e.op, src, e.dtype, *args), (n,))

    def simd(self, e: E, v: np.ndarray) -> np.ndarray:
        lanes = v.reshape(-1, SIMD)
        d = e.dtype
        if e.op == "simd_shuffle_down":
            src = np.arange(SIMD) + e.value
            src = np.where(src < SIMD, src, np.arange(SIMD))
            return lanes[:, src].reshape(-1)
        if e.op == "simd_broadcast":
            return np.repeat(lanes[:, e.value], SIMD)
        if e.op == "simd_sum" and d.name == "bfloat16":  # lane order in float32, rounded once (FORMAT.md)
            r = lanes[:, 0]
            for k in range(1, SIMD):
                r = apply("add", dt.float32, dt.float32, r, lanes[:, k])
            r = out(d, r)
        else:  # lane order, each addition rounded to the type
            name = {"simd_sum": "add", "simd_max": "max", "simd_min": "min"}[e.op]
            r = lanes[:, 0]
            for k in range(1, SIMD):
                r = apply(name, d, d, r, lanes[:, k])
        return np.repeat(r, SIMD)

    # -- statements
    def assign(self, name: str, value: np.ndarray, mask: np.ndarray) -> None:
        old = self.env.get(name)
        self.env[name] = value.copy() if old is None else np.where(mask, value, old)

    def block(self, body: list[S], mask: np.ndarray) -> None:
        for s in body:
            self.stmt(s, mask)

    def stmt(self, s: S, mask: np.ndarray) -> None:
        if s.kind == "assign":
            self.assign(s.name, self.expr(s.e), mask)  # type: ignore[arg-type]
        elif s.kind == "store":
            assert s.e is not None
            j = s.value
            self.outputs[j] = np.where(mask, self.expr(s.e), self.outputs[j])
            self.inexact[j] = np.where(mask, not exact(s.e), self.inexact[j])
        elif s.kind == "atomic":
            assert s.e is not None and self.counter is not None and self.p.counter is not None
            v = self.expr(s.e)
            d = self.p.counter
            for lane in np.nonzero(mask)[0]:
                k = self.t[lane] % 4
                name = {"atomic_add": "add", "atomic_max": "max", "atomic_min": "min"}[s.value]
                self.counter[k] = apply(name, d, d, self.counter[k], v[lane])
        elif s.kind == "if":
            c = self.expr(s.e).astype(bool)  # type: ignore[arg-type]
            self.block(s.body, mask & c)
            self.block(s.orelse, mask & ~c)
        elif s.kind == "for":
            bound = self.expr(s.e)  # type: ignore[arg-type]
            top = int(bound[mask].max(initial=0))
            for k in range(top):
                m = mask & (k < bound)
                self.env[s.name] = np.full(self.p.threads, k, np.int32)
                self.block(s.body, m)
        elif s.kind == "while":
            self.assign(s.name, np.zeros(self.p.threads, np.int32), mask)
            active = mask.copy()
            while True:
                active = active & (self.env[s.name] < self.expr(s.e))  # type: ignore[arg-type]
                if not active.any():
                    break
                self.block(s.body, active)
                w = self.env[s.name]
                self.env[s.name] = np.where(active, apply("add", dt.int32, dt.int32, w, np.int32(1)), w)
        elif s.kind == "shared":
            assert s.e is not None
            v = self.expr(s.e).reshape(self.p.groups, self.p.block)
            src = (np.arange(self.p.block) + s.value) % self.p.block
            self.assign(s.name, v[:, src].reshape(-1), mask)
        elif s.kind == "simd":
            self.assign(s.name, self.expr(s.e), mask)  # type: ignore[arg-type]
        else:
            raise ValueError(s.kind)


def exact(e: E) -> bool:
    return e.exact and all(exact(a) for a in e.args)


def run_model(p: Program, inputs: list[np.ndarray], outputs: list[np.ndarray], counter: np.ndarray | None,
              scalar: Any = None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
    """(outputs, which output elements are inexact, counter) after the program ran; `scalar` is the
    value of the scalar parameter (in its value dtype)."""
    m = Model(p, inputs, outputs, counter, scalar)
    with np.errstate(all="ignore"):
        m.run()
    return m.outputs, m.inexact, m.counter


def value_dtype(d: DType) -> Any:
    return value_np(d)
