"""`enigma-build check`: compile every kernel's Metal source with clang, run it on random inputs, run
the same launch on the runtime's CPU executor (which interprets the portable IR), compare.

    rows = check_package("path/to/project_or_package")    # or an installed package name
    rows = check_kernels([compiled_kernel, ...])
    print(format_rows(rows)); exit code: main([...])

Inputs: every tensor dimension and every integer scalar get one size S (1003 when every tensor is
1-D, else 37; `size=` overrides), so size scalars (n, rows, k, ...) agree with the arrays whatever
their names (an integer scalar is clamped to its type's range: an int8 or uint8 one gets 127 or
255); float tensors are standard normal, integer tensors uniform in [0, 16), float scalars 1.5.
Override single names with `sizes={"n": 100}` (scalar or shape-name values) and
`scalars={"alpha": 2.0}`.
"""
from __future__ import annotations

import argparse
import os
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


def make_inputs(spec: Mapping[str, Any], rng: np.random.Generator, sizes: Mapping[str, int] | None = None,
                scalars: Mapping[str, Any] | None = None, size: int | None = None) -> list[Any]:
    """Random arguments for a signature (see the module docstring)."""
    from enigma_runtime.dtypes import from_name

    sizes, scalars = dict(sizes or {}), dict(scalars or {})
    args = spec["args"]
    default = size or (1003 if all(a["rank"] <= 1 for a in args if a["kind"] == "tensor") else 37)
    out: list[Any] = []
    for a in args:
        dt = from_name(a["dtype"])
        if a["kind"] == "none":  # an optional tensor the specialisation leaves out
            out.append(None)
            continue
        if a["kind"] == "scalar":
            if a["name"] in scalars:
                out.append(np.array(scalars[a["name"]], dt.np)[()])
            elif dt.is_int:  # the size, clamped to the type (an int8 scalar gets 127, not 1003 wrapped)
                info = np.iinfo(dt.np)
                size_value = min(max(int(sizes.get(a["name"], default)), int(info.min)), int(info.max))
                out.append(dt.np.type(size_value))
            elif dt.kind == "b":
                out.append(np.bool_(True))
            else:  # bfloat16 too: scalars are values (the harness and the runtime bind their bits)
                out.append(np.float32(1.5) if dt.name == "bfloat16" else dt.np.type(1.5))
            continue
        shape = tuple(s if isinstance(s, int) else sizes.get(s, default) if isinstance(s, str) else default
                      for s in a["shape"])
        if dt.name == "bfloat16":
            v = (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        elif dt.is_float:
            v = rng.standard_normal(shape).astype(dt.np)
        elif dt.kind == "b":
            v = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            v = rng.integers(0, 16, shape).astype(dt.np)
        if a["access"] == "write":
            v = np.zeros(shape, dt.np)
        out.append(np.ascontiguousarray(v))
    return out


def _as_float(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def compare(spec: Mapping[str, Any], got: Sequence[Any], want: Sequence[Any]) -> tuple[bool, float, str]:
    """(agree, max abs error, first mismatch) over the written tensor arguments."""
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
        bad = err > atol + rtol * np.abs(wf)
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
    rows = []
    for it in _items(kernels):
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        if it.spec.get("grid") is None or it.spec.get("block") is None:
            missing = "grid" if it.spec.get("grid") is None else "block"
            rows.append(CheckRow(it.name, it.spec.get("kernel_name", "?"), True, 0.0, 0.0, 0.0,
                                 f"skipped: the signature has no {missing} (callers pass it); check it with "
                                 f"enigma.verify.run_msl(kernel, ..., grid=..., block=...)", skipped=True))
            continue
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
            continue
        declared = it.spec.get("threadgroup_memory")
        actual = prog.threadgroup_memory
        if declared is not None and actual is not None and declared != actual:
            rows.append(CheckRow(it.name, it.spec["kernel_name"], False, float("nan"), seconds, t_compile,
                                 f"the signature says threadgroup_memory={declared} bytes but the Metal "
                                 f"source declares {actual}"))
            continue
        if race_check:
            ok, err, where = compare(it.spec, got, again)
            if not ok:
                rows.append(CheckRow(it.name, it.spec["kernel_name"], False, err, seconds, t_compile,
                                     f"results depend on the thread order ({schedule} vs {other} schedule: a "
                                     f"missing barrier or a race between threads): {where}"))
                continue
        if not compare_cpu or it.ir is None:
            rows.append(CheckRow(it.name, it.spec["kernel_name"], True, 0.0, seconds, t_compile,
                                 "ran (no CPU-executor comparison)"))
            continue
        try:
            import enigma_runtime

            want = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
            k = enigma_runtime.Kernel.from_spec(it.spec, it.ir, it.metal)
            k(*want, device="cpu")
        except Exception as e:  # noqa: BLE001
            rows.append(CheckRow(it.name, it.spec["kernel_name"], False, float("nan"), seconds, t_compile,
                                 f"CPU executor failed: {type(e).__name__}: {e}"))
            continue
        ok, err, where = compare(it.spec, got, want)
        where = f"Metal on CPU vs CPU executor: {where}" if where else ""
        rows.append(CheckRow(it.name, it.spec["kernel_name"], ok, err, seconds, t_compile, where))
    return rows


def _package_items(adir: Path) -> list[_Item]:
    from enigma_runtime.manifest import read_manifest

    man = read_manifest(adir)
    items = []
    for name, specs in man.kernels.items():
        for i, spec in enumerate(specs):
            label = name if len(specs) == 1 else f"{name}[{i}]"
            items.append(_Item(label, spec, man.read_json(spec["ir"]), man.read_text(spec["metal"])))
    return items


def _project_items(root: Path) -> list[_Item]:
    import tempfile

    from enigma_build import config, core

    result = core.build(config.load(root), log=lambda s: print(s, file=sys.stderr))
    with tempfile.TemporaryDirectory() as tmp:
        written = core.write(result, lambda name: Path(tmp) / name)
        items: list[_Item] = []
        for pkg in sorted(written):
            for it in _package_items(Path(tmp) / pkg / "_enigma"):
                it.name = f"{pkg}.{it.name}"
                items.append(it)
    return items


def collect(target: str | os.PathLike) -> list[_Item]:
    """Kernels of `target`: a project directory (pyproject.toml: built in memory, emit-only), a
    package directory or its `_enigma/` directory, or an installed package name."""
    path = Path(target)
    if path.exists():
        for cand in (path, path / "_enigma"):
            if (cand / "manifest.json").is_file():
                return _package_items(cand)
        if (path / "pyproject.toml").is_file():
            return _project_items(path)
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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI body of `enigma-build check`: exit 0 if every kernel agrees, 1 if any does not, 2 on usage
    errors or a missing clang."""
    from enigma.verify.clang import ClangNotFound

    p = argparse.ArgumentParser(prog="enigma-build check", description=__doc__.splitlines()[0])
    p.add_argument("target", nargs="?", default=".", help="project dir, package dir or package name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", choices=("forward", "reverse", "random"), default="random")
    p.add_argument("--size", action="append", default=[], metavar="N|NAME=N",
                   help="the size S of every dimension and integer scalar (N), or of one shape name or "
                        "scalar (NAME=N; repeatable)")
    p.add_argument("--no-cpu", action="store_true", help="only run the Metal source (no CPU executor)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        sizes = {k: int(v) for k, v in (s.split("=", 1) for s in a.size if "=" in s)}
        whole = [int(s) for s in a.size if "=" not in s]
    except ValueError:
        print("enigma-build check: --size takes N or NAME=N", file=sys.stderr)
        return 2
    try:
        items = collect(a.target)
        rows = check_kernels(items, seed=a.seed, size=whole[-1] if whole else None, sizes=sizes,
                             schedule=a.schedule, compare_cpu=not a.no_cpu)
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
