"""Differential fuzzing of the compiler: random kernels run on the CPU executor, through enigma.verify
(clang) and by an independent numpy model of the IR (tests/fuzz), which must agree.

    .venv/bin/python scripts/fuzz.py --seed 0 --count 200            # seeds 0..199
    .venv/bin/python scripts/fuzz.py --seed 1234 --count 1 --show     # print one kernel's source
    .venv/bin/python scripts/fuzz.py --seed 0 --count 500 --no-verify --minimize

Prints one line per failing seed (and, with --minimize, the smallest failing kernel found); exits 1 if
any seed failed.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.gen import generate, render  # noqa: E402
from fuzz.run import minimize, run_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--count", type=int, default=100, help="number of kernels (default 100)")
    ap.add_argument("--no-verify", action="store_true", help="skip enigma.verify (clang): CPU vs model only")
    ap.add_argument("--minimize", action="store_true", help="shrink each failing kernel before printing it")
    ap.add_argument("--show", action="store_true", help="print each kernel's source")
    ap.add_argument("--quiet", action="store_true", help="only the summary line")
    args = ap.parse_args(argv)
    counts: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="enigma-fuzz-") as tmp:
        for seed in range(args.seed, args.seed + args.count):
            if args.show:
                print(render(generate(seed), f"fuzz_{seed}"))
            o = run_seed(seed, Path(tmp), verify=not args.no_verify)
            counts[o.status] += 1
            if o.status != "ok" and not args.quiet:
                if args.minimize:
                    o = minimize(o, Path(tmp), verify=not args.no_verify)
                print(o.report() if args.minimize else f"seed {seed}: {o.status}: {o.detail.splitlines()[0]}",
                      flush=True)
    total = sum(counts.values())
    print(f"{total} kernels in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0 if counts["ok"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
