"""`enigma-build check`: compile every kernel's Metal source with clang, run it on random inputs, run
the same launch on the runtime's CPU executor (which interprets the portable IR), compare.

    rows = check_package("path/to/project_or_package")    # or an installed package name
    rows = check_kernels([compiled_kernel, ...])
    print(format_rows(rows)); exit code: main([...])

Inputs (plan_inputs): one size S for every tensor dimension and size-like integer scalar (1003 when
every tensor is 1-D, else 37; `size=` overrides; clamped to the scalar's type), changed where the
signature's `requires` ask; other integer scalars 3, float scalars 0.75; float tensors standard
normal, integer tensors uniform in [0, 16). Override single names with `sizes={"n": 100}` (scalar,
shape-name or `arg.axis` values) and `scalars={"alpha": 2.0}`. A failing row says which inputs it
used.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enigma.verify.clang import CompileError
from enigma.verify.harness import KernelError, compile_msl, run_spec

TOLERANCE = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2), "bfloat16": (2e-2, 2e-2)}


@dataclass
class CheckRow:
    """One kernel specialisation checked: `agree` is False on a mismatch or an error (`detail`)."""

    name: str
    kernel_name: str
    agree: bool
    max_error: float
    seconds: float  # compile (possibly cached) + run through the harness
    compile_seconds: float
    detail: str = ""
    skipped: bool = False  # not run: the signature has no grid or block (the caller always gives them)


@dataclass
class _Item:
    name: str
    spec: dict[str, Any]
    ir: dict[str, Any] | None
    metal: str


def _items(kernels: Iterable[Any]) -> list[_Item]:
    out = []
    for k in kernels:
        if isinstance(k, _Item):
            out.append(k)
        elif isinstance(k, tuple):
            spec, ir, metal = k
            out.append(_Item(spec["name"], spec, ir, metal))
        else:  # CompiledKernel or enigma_build Record
            spec = k.signature
            out.append(_Item(spec["name"], spec, getattr(k, "ir_json", None), k.metal_source))
    return out


FLOAT_SCALAR = 0.75  # float scalars: inside (0, 1], so powers and products of them stay small
SMALL_INT = 3  # integer scalars that are not sizes (a mode, a shift, a log2 of a count)
_SIZE_NAME = re.compile(r"(?:n|m|k|size|length|len|count|numel|rows|cols|width|height|stride|"
                        r"num_\w+|\w+_(?:size|len|length|count|rows|cols|numel|stride))$", re.I)
_CANDIDATES = (1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

Var = tuple  # ("sym", name) | ("dim", arg, axis) | ("arg", name)


def _uses(expr: Any, out: set[Var], spec: Mapping[str, Any]) -> set[Var]:
    """The size variables an expression reads."""
    if isinstance(expr, dict):
        v = _leaf(expr, spec)
        if v is not None:
            out.add(v)
        for x in expr.get("args", ()):
            _uses(x, out, spec)
    return out


def _leaf(expr: Any, spec: Mapping[str, Any]) -> Var | None:
    """The variable a leaf expression names (None for an int, an op or a static dimension)."""
    if not isinstance(expr, dict):
        return None
    if "sym" in expr:
        return ("sym", expr["sym"])
    if "arg" in expr:
        return ("arg", expr["arg"])
    if "dim" in expr:
        arg, axis = expr["dim"]
        a = next((x for x in spec["args"] if x["name"] == arg), None)
        s = a["shape"][axis] if a is not None and axis < len(a.get("shape", ())) else None
        return ("sym", s) if isinstance(s, str) else None if isinstance(s, int) else ("dim", arg, axis)
    return None


@dataclass
class InputPlan:
    """The sizes and scalar values `make_inputs` uses for one signature."""

    shapes: dict[str, tuple[int, ...]]
    scalars: dict[str, Any]
    unsatisfied: list[str]  # `requires` texts no choice of sizes satisfied

    def describe(self) -> str:
        shapes = ", ".join(f"{n}{list(s)}" for n, s in self.shapes.items())
        scalars = ", ".join(f"{n}={v!r}" for n, v in self.scalars.items())
        return f"shapes {shapes}" + (f"; scalars {scalars}" if scalars else "")


def plan_inputs(spec: Mapping[str, Any], sizes: Mapping[str, int] | None = None,
                scalars: Mapping[str, Any] | None = None, size: int | None = None) -> InputPlan:
    """Sizes and scalars for a signature: one size S for every dimension and size-like integer scalar
    (1003 when every tensor is 1-D, else 37; `size` overrides), then changed where the signature's
    `requires` ask for it (`y.shape[1] == 2 * qs.shape[1]`, `n % 4 == 0`, `k >= 16`...). An integer
    scalar is size-like if a grid or `requires` expression reads it, a shape names it, or its name
    says so (n, rows, *_size, num_*...); others get 3; float scalars 0.75. `sizes` fixes shape names,
    scalars or `arg.axis` dimensions; `scalars` fixes scalar values."""
    from enigma_runtime.dtypes import from_name
    from enigma_runtime.grid import evaluate

    sizes, given = dict(sizes or {}), dict(scalars or {})
    args = spec["args"]
    default = size or (1003 if all(a["rank"] <= 1 for a in args if a["kind"] == "tensor") else 37)
    syms = {s for a in args if a["kind"] == "tensor" for s in a.get("shape", ()) if isinstance(s, str)}
    read: set[Var] = set()
    for e in [*(spec.get("grid") or ()), *(r["expr"] for r in spec.get("requires", ()))]:
        _uses(e, read, spec)
    value: dict[Var, int] = {}
    fixed: set[Var] = set()
    for a in args:
        if a["kind"] == "tensor":
            for ax, s in enumerate(a.get("shape", ())):
                if isinstance(s, str):
                    value[("sym", s)] = int(sizes.get(s, default))
                    fixed |= {("sym", s)} if s in sizes else set()
                elif s is None:
                    key = f"{a['name']}.{ax}"
                    value[("dim", a["name"], ax)] = int(sizes.get(key, default))
                    fixed |= {("dim", a["name"], ax)} if key in sizes else set()
            continue
        dt = from_name(a["dtype"])
        if not dt.is_int or a["name"] in given:
            continue
        v: Var = ("arg", a["name"])
        size_like = v in read or a["name"] in syms or bool(_SIZE_NAME.match(a["name"]))
        value[v] = int(sizes.get(a["name"], default if size_like else SMALL_INT))
        fixed |= {v} if a["name"] in sizes else set()

    def bounds(v: Var) -> tuple[int, int]:
        if v[0] != "arg":
            return 1, 1 << 24
        info = np.iinfo(from_name(next(a for a in args if a["name"] == v[1])["dtype"]).np)
        return max(int(info.min), -(1 << 24)), min(int(info.max), 1 << 24)

    for v in list(value):
        lo, hi = bounds(v)
        value[v] = min(max(value[v], lo), hi)

    def env() -> tuple[dict[str, int], dict[str, tuple[int, ...]], dict[str, Any]]:
        shapes = {a["name"]: tuple(s if isinstance(s, int) else value[("sym", s)] if isinstance(s, str)
                                   else value[("dim", a["name"], ax)] for ax, s in enumerate(a["shape"]))
                  for a in args if a["kind"] == "tensor"}
        scal = {a["name"]: given.get(a["name"], value.get(("arg", a["name"]))) for a in args
                if a["kind"] == "scalar"}
        return {k[1]: x for k, x in value.items() if k[0] == "sym"}, shapes, scal

    def holds(r: Mapping[str, Any]) -> bool:
        try:
            return bool(evaluate(r["expr"], *env()))
        except Exception:  # noqa: BLE001 (a division by zero etc.: not satisfied)
            return False

    def solve(e: Any) -> bool:
        """Make condition `e` hold by setting one free variable it compares; True if it changed one."""
        if not isinstance(e, dict) or "op" not in e:
            return False
        op, (x, y) = e["op"], e["args"]
        if op == "and":
            return solve(x) or solve(y)
        for lhs, rhs, flip in ((x, y, False), (y, x, True)):
            v = _leaf(lhs, spec)
            if v is None or v in fixed or v not in value:
                continue
            try:
                other = evaluate(rhs, *env())
            except Exception:  # noqa: BLE001
                continue
            o = str({"lt": "gt", "gt": "lt", "le": "ge", "ge": "le"}.get(op, op) if flip else op)
            want = {"eq": other, "le": min(value[v], other), "ge": max(value[v], other),
                    "lt": min(value[v], other - 1), "gt": max(value[v], other + 1)}.get(o)
            lo, hi = bounds(v)
            if want is not None and want != value[v] and lo <= want <= hi:
                value[v] = want
                return True
        return False

    requires = list(spec.get("requires", ()))
    for _ in range(4 * len(requires) + 4):
        bad = [r for r in requires if not holds(r)]
        if not bad or not any(solve(r["expr"]) for r in bad):
            break
    bad = [r for r in requires if not holds(r)]
    if bad:  # search: candidate sizes for the free variables the failing conditions read
        free = sorted({v for r in bad for v in _uses(r["expr"], set(), spec)} - fixed, key=str)
        rng = np.random.default_rng(0)
        saved = dict(value)
        for _ in range(300):
            for v in free:
                if v in value:
                    value[v] = int(rng.choice(_CANDIDATES))
            for _ in range(len(requires) + 1):
                failing = [r for r in requires if not holds(r)]
                if not failing or not any(solve(r["expr"]) for r in failing):
                    break
            if all(holds(r) for r in requires):
                break
        else:
            value.update(saved)
        bad = [r for r in requires if not holds(r)]
    _, shapes, scal = env()
    for a in args:
        if a["kind"] == "scalar" and scal.get(a["name"]) is None:
            dt = from_name(a["dtype"])
            scal[a["name"]] = True if dt.kind == "b" else FLOAT_SCALAR
    return InputPlan(shapes, scal, [r.get("text", "?") for r in bad])


def make_inputs(spec: Mapping[str, Any], rng: np.random.Generator, sizes: Mapping[str, int] | None = None,
                scalars: Mapping[str, Any] | None = None, size: int | None = None) -> list[Any]:
    """Random arguments for a signature, sized by `plan_inputs`: float tensors standard normal,
    integer tensors uniform in [0, 16), written tensors zero."""
    from enigma_runtime.dtypes import from_name

    plan = plan_inputs(spec, sizes, scalars, size)
    out: list[Any] = []
    for a in spec["args"]:
        dt = from_name(a["dtype"])
        if a["kind"] == "none":  # an optional tensor the specialisation leaves out
            out.append(None)
            continue
        if a["kind"] == "scalar":
            v = plan.scalars[a["name"]]
            if dt.kind == "b":
                out.append(np.bool_(bool(v)))
            elif dt.is_int:
                out.append(dt.np.type(int(v)))
            else:  # bfloat16 too: scalars are values (the harness and the runtime bind their bits)
                out.append(np.float32(v) if dt.name == "bfloat16" else dt.np.type(v))
            continue
        shape = plan.shapes[a["name"]]
        if dt.name == "bfloat16":
            x = (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        elif dt.is_float:
            x = rng.standard_normal(shape).astype(dt.np)
        elif dt.kind == "b":
            x = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            x = rng.integers(0, 16, shape).astype(dt.np)
        if a["access"] == "write":
            x = np.zeros(shape, dt.np)
        out.append(np.ascontiguousarray(x))
    return out


def _as_float(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def compare(spec: Mapping[str, Any], got: Sequence[Any], want: Sequence[Any]) -> tuple[bool, float, str]:
    """(agree, max abs error, first mismatch) over the written tensor arguments. An element agrees if
    |got - want| <= rtol * |want| + atol * max(1, max |want|) with (rtol, atol) of its dtype
    (TOLERANCE; integers exact): the absolute part scales with the result's magnitude, since a
    different order of additions errs in proportion to the values added, not to each result."""
    ok, worst, where = True, 0.0, ""
    for a, g, w in zip(spec["args"], got, want):
        if a["kind"] != "tensor" or a["access"] == "read":
            continue
        gf, wf = _as_float(np.asarray(g), a["dtype"]), _as_float(np.asarray(w), a["dtype"])
        err = np.abs(gf - wf)
        err = np.where(np.isnan(gf) & np.isnan(wf), 0.0, np.where(np.isnan(err), np.inf, err))
        if err.size:
            worst = max(worst, float(err.max()))
        rtol, atol = TOLERANCE.get(a["dtype"], (0.0, 0.0))
        finite = np.abs(wf[np.isfinite(wf)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0  # the result's magnitude
        bad = err > atol * scale + rtol * np.abs(wf)
        if bad.any() and ok:
            i = np.unravel_index(int(np.argmax(bad)), bad.shape)
            ok, where = False, (f"{a['name']}{[int(k) for k in i]}: {float(gf[i])!r} vs {float(wf[i])!r} "
                                f"({int(bad.sum())} of {bad.size} elements differ)")
    return ok, worst, where


def check_kernels(kernels: Iterable[Any], *, seed: int = 0, size: int | None = None,
                  sizes: Mapping[str, int] | None = None, scalars: Mapping[str, Any] | None = None,
                  schedule: str = "random", compare_cpu: bool = True, race_check: bool = True
                  ) -> list[CheckRow]:
    """Check each kernel (CompiledKernel, enigma_build Record, or a (spec, ir, metal_source) tuple).

    Besides the comparison with the CPU executor: the threadgroup memory the Metal source declares
    must equal the signature's `threadgroup_memory`, and (race_check) a second run with the threads
    in another order must give the same results (else a barrier is missing or threads race); for
    kernels with threadgroup memory that second run also checks every access to it for races."""
    rows: list[CheckRow] = []
    for it in _items(kernels):
        n_before = len(rows)
        _check_one(it, rows, seed, size, sizes, scalars, schedule, compare_cpu, race_check)
        for r in rows[n_before:]:
            if not r.agree and not r.skipped:  # say which inputs were used, and how to give others
                try:
                    used = plan_inputs(it.spec, sizes, scalars, size).describe()
                except Exception as e:  # noqa: BLE001
                    used = f"(could not be described: {e})"
                r.detail += (f"\n  inputs (seed {seed}): {used}"
                             "\n  other inputs: --seed N, --size N, --size NAME=N, --scalar NAME=VALUE")
    return rows


def _check_one(it: _Item, rows: list[CheckRow], seed: int, size: int | None, sizes: Mapping[str, int] | None,
               scalars: Mapping[str, Any] | None, schedule: str, compare_cpu: bool, race_check: bool) -> None:
    """Check one kernel specialisation, appending its row(s) to `rows` (see check_kernels)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    plan = plan_inputs(it.spec, sizes, scalars, size)
    if plan.unsatisfied:
        rows.append(CheckRow(it.name, it.spec.get("kernel_name", "?"), False, float("nan"), 0.0, 0.0,
                             f"no sizes found that satisfy the kernel's requires: "
                             f"{'; '.join(plan.unsatisfied)}; give them with --size NAME=N"))
        return
    if it.spec.get("grid") is None or it.spec.get("block") is None:
        missing = "grid" if it.spec.get("grid") is None else "block"
        rows.append(CheckRow(it.name, it.spec.get("kernel_name", "?"), True, 0.0, 0.0, 0.0,
                             f"skipped: the signature has no {missing} (callers pass it); check it with "
                             f"enigma.verify.run_msl(kernel, ..., grid=..., block=...)", skipped=True))
        return
    try:
        compile_msl(it.metal, it.spec["kernel_name"], f"{it.spec['kernel_name']}.metal")
        t_compile = time.perf_counter() - t0
        inputs = make_inputs(it.spec, rng, sizes, scalars, size)
        got = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
        prog = run_spec(it.spec, it.metal, *got, schedule=schedule, seed=seed)
        seconds = time.perf_counter() - t0
        other = "reverse" if schedule != "reverse" else "forward"
        again = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
        if race_check:  # kernels with threadgroup memory: an instrumented build finds races on it
            instrumented = bool(it.spec.get("threadgroup_memory"))
            try:
                run_spec(it.spec, it.metal, *again, schedule=other, seed=seed + 1,
                         race_check=instrumented)
            except CompileError:
                if not instrumented:
                    raise
                # this clang cannot build the instrumented variant: compare the schedules only
                again = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
                run_spec(it.spec, it.metal, *again, schedule=other, seed=seed + 1)
    except Exception as e:  # noqa: BLE001 (every failure becomes a row)
        rows.append(CheckRow(it.name, it.spec.get("kernel_name", "?"), False, float("nan"),
                             time.perf_counter() - t0, 0.0, f"{type(e).__name__}: {e}"))
        return
    declared = it.spec.get("threadgroup_memory")
    actual = prog.threadgroup_memory
    if declared is not None and actual is not None and declared != actual:
        rows.append(CheckRow(it.name, it.spec["kernel_name"], False, float("nan"), seconds, t_compile,
                             f"the signature says threadgroup_memory={declared} bytes but the Metal "
                             f"source declares {actual}"))
        return
    if race_check:
        ok, err, where = compare(it.spec, got, again)
        if not ok:
            rows.append(CheckRow(it.name, it.spec["kernel_name"], False, err, seconds, t_compile,
                                 f"results depend on the thread order ({schedule} vs {other} schedule: a "
                                 f"missing barrier or a race between threads): {where}"))
            return
    if not compare_cpu or it.ir is None:
        rows.append(CheckRow(it.name, it.spec["kernel_name"], True, 0.0, seconds, t_compile,
                             "ran (no CPU-executor comparison)"))
        return
    try:
        import enigma_runtime

        want = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
        k = enigma_runtime.Kernel.from_spec(it.spec, it.ir, it.metal)
        k(*want, device="cpu")
    except Exception as e:  # noqa: BLE001
        rows.append(CheckRow(it.name, it.spec["kernel_name"], False, float("nan"), seconds, t_compile,
                             f"CPU executor failed: {type(e).__name__}: {e}"))
        return
    ok, err, where = compare(it.spec, got, want)
    where = f"Metal on CPU vs CPU executor: {where}" if where else ""
    rows.append(CheckRow(it.name, it.spec["kernel_name"], ok, err, seconds, t_compile, where))


def _package_items(adir: Path) -> list[_Item]:
    from enigma_runtime.manifest import read_manifest

    man = read_manifest(adir)
    items = []
    for name, specs in man.kernels.items():
        for i, spec in enumerate(specs):
            label = name if len(specs) == 1 else f"{name}[{i}]"
            items.append(_Item(label, spec, man.read_json(spec["ir"]), man.read_text(spec["metal"])))
    return items


def collect(target: str | os.PathLike) -> list[_Item]:
    """Kernels of `target`: a package directory or its `_enigma/` directory, a directory holding built
    packages, or an installed package name. (A project directory is enigma-build's to build first:
    `enigma-build check PROJECT` passes its own collector to `main`.)"""
    path = Path(target)
    if path.exists():
        for cand in (path, path / "_enigma"):
            if (cand / "manifest.json").is_file():
                return _package_items(cand)
        if (path / "pyproject.toml").is_file():
            raise FileNotFoundError(f"{path} is a project directory: run `enigma-build check {path}`, which "
                                    "builds its kernels first")
        found = [p.parent for p in path.rglob("_enigma/manifest.json") if ".venv" not in p.parts]
        if found:
            return [it for d in sorted(found) for it in _package_items(d)]
        raise FileNotFoundError(f"{path}: no pyproject.toml and no _enigma/manifest.json below it; pass a "
                                "project directory, a built package directory or an installed package name")
    from enigma_runtime.manifest import find_artifact_dir

    return _package_items(find_artifact_dir(str(target)))


def check_package(target: str | os.PathLike, **options: Any) -> list[CheckRow]:
    """check_kernels over every kernel of `target` (see `collect`); options as for check_kernels."""
    return check_kernels(collect(target), **options)


def format_rows(rows: Sequence[CheckRow]) -> str:
    w = max([len(r.name) for r in rows] + [6])
    lines = [f"{'kernel':<{w}}  {'agree':<5}  {'max error':>10}  {'time':>8}  detail"]
    for r in rows:
        verdict = "skip" if r.skipped else "yes" if r.agree else "NO"
        lines.append(f"{r.name:<{w}}  {verdict:<5}  {r.max_error:>10.3g}  "
                     f"{r.seconds * 1e3:>6.0f}ms  {r.detail.splitlines()[0] if r.detail else ''}")
        for extra in r.detail.splitlines()[1:8] if not r.agree else []:
            lines.append(" " * (w + 2) + extra)
    bad = sum(not r.agree for r in rows)
    skipped = sum(r.skipped for r in rows)
    lines.append((f"{len(rows) - skipped} kernel(s) checked, {bad} disagree or fail"
                  + (f", {skipped} skipped" if skipped else "")) if rows else "no kernels found")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, collect: Any = collect) -> int:
    """CLI body of `enigma-build check`: exit 0 if every kernel agrees, 1 if any does not, 2 on usage
    errors or a missing clang. `collect(target)` finds the kernels (enigma-build passes one that also
    builds project directories)."""
    from enigma.verify.clang import ClangNotFound

    p = argparse.ArgumentParser(prog="enigma-build check", description=__doc__.splitlines()[0])
    p.add_argument("target", nargs="?", default=".", help="project dir, package dir or package name")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random inputs and thread order (default 0)")
    p.add_argument("--schedule", choices=("forward", "reverse", "random"), default="random",
                   help="order in which the threads of a threadgroup run (default random)")
    p.add_argument("--size", action="append", default=[], metavar="N|NAME=N",
                   help="the size S of every dimension and integer scalar (N), or of one shape name or "
                        "scalar (NAME=N; repeatable)")
    p.add_argument("--scalar", action="append", default=[], metavar="NAME=VALUE",
                   help="the value of one scalar argument (repeatable), e.g. --scalar alpha=0.5")
    p.add_argument("--no-cpu", action="store_true", help="only run the Metal source (no CPU executor)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        sizes = {k: int(v) for k, v in (s.split("=", 1) for s in a.size if "=" in s)}
        whole = [int(s) for s in a.size if "=" not in s]
    except ValueError:
        print("enigma-build check: --size takes N or NAME=N", file=sys.stderr)
        return 2
    scalars: dict[str, Any] = {}
    for item in a.scalar:
        name, eq, text = item.partition("=")
        try:
            scalars[name] = int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else float(text)
        except ValueError:
            eq = ""
        if not eq or not name:
            print(f"enigma-build check: --scalar takes NAME=VALUE (a number), got {item!r}", file=sys.stderr)
            return 2
    try:
        items = collect(a.target)
        rows = check_kernels(items, seed=a.seed, size=whole[-1] if whole else None, sizes=sizes,
                             scalars=scalars, schedule=a.schedule, compare_cpu=not a.no_cpu)
    except ClangNotFound as e:
        print(f"enigma-build check: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, KernelError) as e:
        print(f"enigma-build check: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (a manifest or project that cannot be read)
        print(f"enigma-build check: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if a.json:
        import dataclasses
        import json

        print(json.dumps([{k: (None if isinstance(v, float) and v != v else v)
                           for k, v in dataclasses.asdict(r).items()} for r in rows], indent=1))
    else:
        print(format_rows(rows))
    return 0 if rows and all(r.agree for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
