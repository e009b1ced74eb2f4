#!/usr/bin/env python3
"""Seeded mutation fuzzer of the artifact format (runtime/FORMAT.md): every load and launch of a
corrupted package must end in success or a named error of enigma-runtime, never another exception,
a crash or a hang.

    python scripts/fuzz_artifacts.py --cases 2000 --seed 1     # as many as you like
    python scripts/fuzz_artifacts.py --seed 7 --case 123 -v    # replay one case

The base package holds example_project's kernels (vector_add, saxpy, softmax, matmul, histogram),
compiled by enigma and written by enigma.artifacts. Each case copies it and applies one to three
mutations: a JSON value of manifest.json or of an .ir.json replaced by a hostile one (negative,
huge, 10**40, 1e24, NaN text, wrong types, deep nesting, grid expressions of huge integers), a key
deleted, a list entry duplicated or swapped, the bytes truncated or flipped, a file replaced by a
FIFO, a directory or a symlink to /dev/zero, or removed. The sha256 of a mutated artifact is updated
in the manifest most of the time, so validation past the hash is reached. Then the package is
loaded, every kernel's artifacts are read and every kernel runs on the CPU with inputs made from its
(mutated) signature, when the launch has at most 2**16 threads.

Allowed outcomes: success; ManifestError, IRError, GridError, LaunchError (and its subclasses),
KernelNotFoundError, PackageNotFoundError; TypeError/ValueError raised by the argument binding
(enigma_runtime/binding.py, kernel.py: the mutated signature no longer fits the inputs). Anything
else, or a case running longer than --timeout seconds, is a failure: the script prints the seed,
the case and its mutations, and exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "example_project" / "src" / "example_pkg" / "kernels.py"
PACKAGE = "enigma_fuzz_pkg"
MAX_THREADS = 2**16

HOSTILE: list[Any] = [
    -1, 0, 1, 2, 31, 32, 1025, 2**31 - 1, 2**31, 2**32 + 1, 2**63, -(2**63) - 1, 10**40, 1e24, -1e308,
    0.5, True, False, None, "", "x" * 300, "float64", "float32", "tensor", "scalar", "../x", "write",
    [], [1], [None], {}, {"float": "inf"}, {"float": "nan"}, {"op": "mul", "args": [2**62, 2**62]},
    {"sym": "nope"}, {"dim": ["a", 99]}, {"arg": "n"}, {"op": "floordiv", "args": [1, 0]},
    [1, 1, 1], [0, 1, 1], [2**31, 1, 1], [4096, 1, 1],
]


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = {"op": "add", "args": [v, 1]}
    return v


@dataclass
class Case:
    seed: int
    index: int
    mutations: list[str] = field(default_factory=list)
    outcome: str = ""
    detail: str = ""


# ---------------------------------------------------------------------------------------------------
# the base package

def build_base(out: Path) -> Path:
    """`out/PACKAGE/_enigma/` with example_project's kernels (emit-only)."""
    import enigma
    from enigma.artifacts import write_artifacts

    spec = importlib.util.spec_from_file_location("enigma_fuzz_kernels", KERNELS)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    compiled = [enigma.compile(getattr(mod, n), emit_only=True)
                for n in ("vector_add", "saxpy", "softmax", "matmul", "histogram")]
    pkg = out / PACKAGE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    return write_artifacts(pkg, PACKAGE, compiled, metallib=b"MTLB not a real library", msl_version="3.1",
                           macos_target="14.0")


# ---------------------------------------------------------------------------------------------------
# mutations

def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _mutate_json(doc: Any, rng: random.Random) -> tuple[Any, str]:
    paths = list(_paths(doc))[1:]
    if not paths:
        return HOSTILE[rng.randrange(len(HOSTILE))], "replaced the whole document"
    path = paths[rng.randrange(len(paths))]
    parent, key = _get(doc, path[:-1]), path[-1]
    what = rng.randrange(6)
    if what == 0 and isinstance(parent, dict):
        del parent[key]
        return doc, f"deleted {path}"
    if what == 1 and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
        return doc, f"duplicated {path}"
    if what == 2 and isinstance(parent, list) and len(parent) > 1:
        j = rng.randrange(len(parent))
        parent[key], parent[j] = parent[j], parent[key]
        return doc, f"swapped {path} with index {j}"
    if what == 3:
        value = _deep(rng.choice([10, 70, 300]))
        parent[key] = value
        return doc, f"set {path} to an expression nested deep"
    if what == 4 and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + rng.choice([-1, 1, 2**31, -(2**31), 2**64])
        return doc, f"shifted the int at {path}"
    value = copy.deepcopy(HOSTILE[rng.randrange(len(HOSTILE))])
    parent[key] = value
    return doc, f"set {path} to {str(value)[:60]}"


def _text_mutation(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    what = rng.randrange(5)
    if what == 0:
        n = rng.randrange(len(data) + 1)
        return data[:n], f"truncated to {n} bytes"
    if what == 1 and data:
        i = rng.randrange(len(data))
        flipped = bytes([data[i] ^ (1 << rng.randrange(8))])
        return data[:i] + flipped + data[i + 1:], f"flipped a bit of byte {i}"
    if what == 2:
        i = rng.randrange(len(data) + 1)
        ins = rng.choice([b"NaN", b"-Infinity", b"[" * 5000, b"9" * 5000, b"\xff\xfe", b"\x00", b"{"])
        return data[:i] + ins + data[i:], f"inserted {ins[:10]!r} at byte {i}"
    if what == 3:
        return data.replace(b"1", b"9" * 30, 3), "made some ints huge"
    return data * 2, "doubled the bytes"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def mutate(adir: Path, rng: random.Random) -> list[str]:
    files = sorted(p.name for p in adir.iterdir())
    done: list[str] = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        target = "manifest.json" if rng.random() < 0.45 else rng.choice(files)
        path = adir / target
        kind = rng.random()
        if kind < 0.06 and hasattr(os, "mkfifo"):
            _remove(path)
            os.mkfifo(path)
            done.append(f"{target}: replaced by a FIFO")
            continue
        if kind < 0.10:
            _remove(path)
            if os.path.exists("/dev/zero"):
                path.symlink_to("/dev/zero")
                done.append(f"{target}: replaced by a symlink to /dev/zero")
            else:
                done.append(f"{target}: removed")
            continue
        if kind < 0.12:
            _remove(path)
            path.mkdir()
            done.append(f"{target}: replaced by a directory")
            continue
        if kind < 0.14:
            _remove(path)
            done.append(f"{target}: removed")
            continue
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if target.endswith(".json") and kind < 0.8:
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            doc, what = _mutate_json(doc, rng)
            try:
                data = json.dumps(doc).encode()
            except (ValueError, RecursionError):
                continue
        else:
            data, what = _text_mutation(data, rng)
        path.write_bytes(data)
        done.append(f"{target}: {what}")
        if target != "manifest.json" and rng.random() < 0.85:  # let the hash check pass
            _rehash(adir, target, data)
    return done


def _rehash(adir: Path, name: str, data: bytes) -> None:
    man = adir / "manifest.json"
    if man.is_symlink() or not man.is_file():  # a FIFO would block the fuzzer itself
        return
    try:
        doc = json.loads(man.read_bytes())
        doc["files"][name] = hashlib.sha256(data).hexdigest()
        man.write_text(json.dumps(doc))
    except Exception:  # the manifest is itself mutated beyond repair: leave it
        pass


# ---------------------------------------------------------------------------------------------------
# one case

class Timeout(BaseException):
    pass


def _inputs(spec: dict) -> tuple | None:
    import numpy as np
    from enigma_runtime.dtypes import BY_NAME

    out: list[Any] = []
    for a in spec["args"]:
        dt = BY_NAME[a["dtype"]]
        if a["kind"] == "scalar":
            out.append(True if dt.kind == "b" else 1.5 if dt.is_float else 16)
            continue
        shape = [16 if not isinstance(s, int) else s for s in a.get("shape", [])]
        if np.prod(shape, dtype=np.int64) > 2**16:
            return None
        out.append(np.zeros(shape, dt.np))
    return tuple(out)


def exercise(adir: Path) -> None:
    """Load the package, read every kernel's artifacts and run each on the CPU."""
    import enigma_runtime
    from enigma_runtime import devices

    lib = enigma_runtime.load(adir)
    lib.metallib_bytes()
    for name in lib.names():
        k = lib[name]
        for sp in k.specs:
            _ = sp.metal_source, sp.ir
        args = _inputs(k.spec)
        if args is None:
            continue
        sp, bound = k.select(args)
        grid, block = k.launch_dims(sp, bound, None, None)
        threads = grid[0] * grid[1] * grid[2] * block[0] * block[1] * block[2]
        if threads > MAX_THREADS:
            continue
        k.launch(args, device=devices.get("cpu"))


ALLOWED_BINDING_FILES = ("binding.py", "kernel.py", "devices.py")


def classify(exc: BaseException) -> tuple[str, bool]:
    """(outcome name, allowed?)"""
    import enigma_runtime as rt

    named = (rt.ManifestError, rt.IRError, rt.GridError, rt.LaunchError, rt.KernelNotFoundError,
             rt.PackageNotFoundError)
    if isinstance(exc, named):
        return type(exc).__name__, True
    if isinstance(exc, (TypeError, ValueError)) and not isinstance(exc, rt.EnigmaRuntimeError):
        tb = traceback.extract_tb(exc.__traceback__)
        where = Path(tb[-1].filename).name if tb else ""
        inside = tb and "enigma_runtime" in tb[-1].filename and where in ALLOWED_BINDING_FILES
        return f"{type(exc).__name__} (argument check)" if inside else type(exc).__name__, bool(inside)
    return type(exc).__name__, False


def run_case(base: Path, work: Path, seed: int, index: int, timeout: float) -> Case:
    case = Case(seed, index)
    rng = random.Random(f"{seed}:{index}")
    root = work / f"case{index}"
    adir = root / PACKAGE / "_enigma"
    shutil.copytree(base.parent, root / PACKAGE, symlinks=True)
    try:
        case.mutations = mutate(adir, rng)
        old = signal.signal(signal.SIGALRM, _on_alarm) if hasattr(signal, "SIGALRM") else None
        if old is not None:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            exercise(adir)
            case.outcome = "success"
        except Timeout:
            case.outcome, case.detail = "HANG", f"still running after {timeout} s"
        except BaseException as e:  # noqa: BLE001 (the fuzzer classifies everything)
            name, ok = classify(e)
            case.outcome = name if ok else f"BAD {name}"
            case.detail = f"{e}"[:300] if ok else "".join(traceback.format_exception(e))[-3000:]
        finally:
            if old is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return case


def _on_alarm(signum: int, frame: Any) -> None:
    raise Timeout()


def fuzz(seed: int, cases: int, timeout: float = 10.0, only: int | None = None,
         verbose: bool = False) -> tuple[Counter, list[Case]]:
    """Run `cases` cases (or only case `only`); returns (outcome counts, failed cases)."""
    counts: Counter = Counter()
    bad: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="enigma-fuzz-") as tmp:
        base = build_base(Path(tmp) / "base")
        work = Path(tmp) / "work"
        work.mkdir()
        for i in ([only] if only is not None else range(cases)):
            c = run_case(base, work, seed, i, timeout)
            counts[c.outcome.split(" (")[0]] += 1
            if verbose:
                print(f"case {i}: {c.outcome}: {'; '.join(c.mutations)}\n    {c.detail[:300]}")
            if c.outcome.startswith(("BAD", "HANG")):
                bad.append(c)
    return counts, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the run (cases are seed:index)")
    ap.add_argument("--cases", type=int, default=500, help="number of cases")
    ap.add_argument("--case", type=int, default=None, help="replay only this case of the seed")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a case may take")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    counts, bad = fuzz(args.seed, args.cases, args.timeout, args.case, args.verbose)
    print(f"{sum(counts.values())} cases in {time.perf_counter() - t0:.1f} s (seed {args.seed}): "
          + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for c in bad:
        print(f"\nFAILED case {c.index} (replay: --seed {c.seed} --case {c.index}): {c.outcome}\n"
              f"  mutations: {'; '.join(c.mutations)}\n{c.detail}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
