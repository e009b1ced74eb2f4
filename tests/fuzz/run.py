"""Run generated kernels three ways (CPU executor, enigma.verify, the numpy model) and compare."""
from __future__ import annotations

import importlib.util
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from enigma_runtime.dtypes import DType

import enigma

from .gen import Program, S, generate, render
from .model import run_model
from .ops_adapter import int_range, out, value_np

SPECIALS = (0.0, -0.0, float("inf"), float("-inf"), float("nan"), 65504.0, 6e-8, 1e-30, 3e38, -1.0)
TOLERANCE = {"float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}  # inexact ops (exp, sin, ...): ~2 ulps


@dataclass
class Outcome:
    seed: int
    status: str  # "ok", "disagree" (executors or model differ), "error" (an exception somewhere)
    detail: str
    source: str

    def report(self) -> str:
        return f"seed {self.seed}: {self.status}\n{self.detail}\n--- kernel ---\n{self.source}"


def make_values(d: DType, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` values of `d` in its value dtype, edge values included."""
    if d.kind == "b":
        return rng.random(n) < 0.5
    if d.is_float:
        v = rng.uniform(-4, 4, n)
        pick = rng.random(n)
        v = np.where(pick < 0.15, rng.integers(-8, 9, n), v)
        v = np.where(pick > 0.88, rng.choice(SPECIALS, n), v)
        with np.errstate(over="ignore"):  # 3e38 becomes inf in float16: meant
            return out(d, v)
    lo, hi = int_range(d)
    v = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
    pick = rng.random(n)
    v = np.where(pick < 0.4, rng.integers(max(lo, -9), 10, n), v)
    v = np.where(pick > 0.85, rng.choice([lo, hi, 0, 1, lo + 1, hi - 1], n), v)
    return v.astype(d.np)


def to_storage(d: DType, v: np.ndarray) -> np.ndarray:
    if d.name == "bfloat16":
        return (np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return np.array(v, dtype=d.np)  # a copy: the runs write in place


def from_storage(d: DType, a: np.ndarray) -> np.ndarray:
    if d.name == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a


def _bits(d: DType, v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, value_np(d))
    return v.view(np.uint16 if d.name == "float16" else np.uint32) if d.is_float else v


def differences(d: DType, got: np.ndarray, want: np.ndarray, inexact: np.ndarray) -> list[int]:
    """Indices where `got` is not `want` (floats: NaN == NaN; +0 != -0; `inexact` elements within
    TOLERANCE)."""
    if not d.is_float:
        return [int(k) for k in np.nonzero(got != want)[0]]
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    same = (_bits(d, got) == _bits(d, want)) | (np.isnan(g) & np.isnan(w))
    with np.errstate(all="ignore"):
        close = (g == w) | (np.isfinite(g) & np.isfinite(w)
                            & (np.abs(g - w) <= TOLERANCE[d.name] * np.maximum(np.abs(g), np.abs(w)) + 1e-30))
    ok = same | (inexact & (close | (np.isnan(g) & np.isnan(w))))
    return [int(k) for k in np.nonzero(~ok)[0]]


def load_kernel(source: str, name: str, directory: Path) -> Any:
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def _describe(what: str, d: DType, idx: list[int], got: np.ndarray, want: np.ndarray) -> str:
    shown = ", ".join(f"[{k}] {got[k]!r} vs {want[k]!r}" for k in idx[:4])
    return f"{what} ({d.name}): {len(idx)} element(s) differ: {shown}"


def run_seed(seed: int, directory: Path, verify: bool = True) -> Outcome:
    return run_program(generate(seed), directory, verify)


def run_program(p: Program, directory: Path, verify: bool = True, tag: str = "") -> Outcome:
    seed = p.seed
    name = f"fuzz_{seed}{tag}"
    source = render(p, name)
    try:
        return _run(p, seed, name, source, directory, verify)
    except Exception as e:  # noqa: BLE001 - every failure is a finding, reported with its kernel
        first = str(e).strip().splitlines()[:3]
        return Outcome(seed, "error", f"{type(e).__name__}: " + "\n".join(first) + "\n"
                       + traceback.format_exc(limit=-3), source)


def _run(p: Program, seed: int, name: str, source: str, directory: Path, verify: bool) -> Outcome:
    kernel = load_kernel(source, name, directory)
    ck = enigma.compile(kernel, emit_only=True, vec_width=p.vec)
    rng = np.random.default_rng(seed)
    n = p.threads
    ins = [make_values(d, n, rng) for d in p.inputs]
    outs = [make_values(d, n, rng) for d in p.outputs]
    cnt = make_values(p.counter, 4, rng) if p.counter is not None else None
    scalar = make_values(p.scalar, 1, rng)[0] if p.scalar is not None else None
    grid, block = (-(-p.groups // max(p.vec, 1)), 1, 1), (p.block, 1, 1)

    def storage() -> list[np.ndarray]:
        arrays = [to_storage(d, v) for d, v in zip(p.inputs + p.outputs, ins + outs)]
        arrays += [to_storage(p.counter, cnt)] if p.counter is not None and cnt is not None else []
        # scalars are passed as numbers (bfloat16 too: the binding rounds and encodes it)
        return arrays + ([np.asarray(scalar, p.scalar.value_np)[()]] if p.scalar is not None else [])

    runs: dict[str, list[np.ndarray]] = {}
    cpu = storage()
    ck(*cpu, grid=grid, block=block, device="cpu")
    runs["cpu"] = cpu
    if verify:
        from enigma.verify import run_msl

        msl = storage()
        run_msl(ck, *msl, grid=grid, block=block)
        runs["verify"] = msl
    want, inexact, want_cnt = run_model(p, ins, outs, cnt, scalar)
    problems = []
    k_in = len(p.inputs)
    for who, arrays in runs.items():
        for j, d in enumerate(p.outputs):
            got = from_storage(d, arrays[k_in + j])
            idx = differences(d, got, want[j], inexact[j])
            if idx:
                problems.append(_describe(f"{who} vs model: out{j}", d, idx, got, want[j]))
        if p.counter is not None and want_cnt is not None:
            got = arrays[k_in + len(p.outputs)]
            idx = [int(k) for k in np.nonzero(got != want_cnt)[0]]
            if idx:
                problems.append(_describe(f"{who} vs model: cnt", p.counter, idx, got, want_cnt))
    if problems:
        return Outcome(seed, "disagree", "\n".join(problems), source)
    return Outcome(seed, "ok", "", source)


def signature(o: Outcome) -> str:
    """What kind of failure `o` is (kept while minimising): the status and the first line's subject."""
    first = o.detail.splitlines()[0] if o.detail else ""
    return f"{o.status}: {first.split(':')[0]}"


def _blocks(body: list[S]) -> list[list[S]]:
    out = [body]
    for s in body:
        out += _blocks(s.body) + _blocks(s.orelse)
    return out


def _slots(body: list[S]) -> list[tuple[Any, str, int | None]]:
    """(holder, attribute, index) of every expression slot, depth first."""
    out: list[tuple[Any, str, int | None]] = []

    def walk(holder: Any, attr: str, i: int | None) -> None:
        e = getattr(holder, attr) if i is None else getattr(holder, attr)[i]
        if e is None:
            return
        out.append((holder, attr, i))
        for k in range(len(e.args)):
            walk(e, "args", k)

    for st in body:
        walk(st, "e", None)
        for sub in (st.body, st.orelse):
            out.extend(_slots(sub))
    return out


def _get(holder: Any, attr: str, i: int | None) -> Any:
    return getattr(holder, attr) if i is None else getattr(holder, attr)[i]


def _put(holder: Any, attr: str, i: int | None, value: Any) -> None:
    if i is None:
        setattr(holder, attr, value)
    else:
        args = list(getattr(holder, attr))
        args[i] = value
        setattr(holder, attr, tuple(args))


def minimize(o: Outcome, directory: Path, verify: bool = True, budget: int = 200) -> Outcome:
    """A smaller kernel failing the same way (same `signature`), greedily, in at most `budget` runs:
    drop statements (and branches), replace expressions by an operand of the same type, and repeat
    while either shrinks the kernel."""
    import copy

    want = signature(o)
    best = generate(o.seed)
    runs = 0

    def attempt(cand: Program) -> bool:
        nonlocal runs, best, o
        runs += 1
        r = run_program(cand, directory, verify, tag=f"_m{runs}")
        if signature(r) != want:
            return False
        best, o = cand, r
        return True

    changed = True
    while changed and runs < budget:
        changed = False
        for bi in range(len(_blocks(best.body))):  # statements
            k = 0
            while runs < budget:
                cand = copy.deepcopy(best)
                blk = _blocks(cand.body)
                if bi >= len(blk) or k >= len(blk[bi]):
                    break
                del blk[bi][k]
                if attempt(cand):
                    changed = True
                else:
                    k += 1
        slot = 0
        while runs < budget:  # expressions
            cand = copy.deepcopy(best)
            slots = _slots(cand.body)
            if slot >= len(slots):
                break
            e = _get(*slots[slot])
            kids = [x for x in e.args if x.dtype == e.dtype]
            if kids:
                _put(*slots[slot], kids[0])
                if attempt(cand):
                    changed = True
                    continue
            slot += 1
    return o
