"""`enigma-build list|build|inspect|check` (also `python -m enigma_build`)."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enigma_build import config, core, discover


def _settings(project: str, args: argparse.Namespace) -> config.Settings:
    root = Path(project).resolve()
    if not (root / "pyproject.toml").is_file():
        raise SystemExit(f"enigma-build: {root} has no pyproject.toml (give the project directory)")
    data = config.read_pyproject(root)
    table = dict(data.get("tool", {}).get("enigma", {}))
    if getattr(args, "emit_only", None) is not None:
        table["emit-only"] = args.emit_only
    if getattr(args, "jobs", None) is not None:
        table["jobs"] = args.jobs
    return config.from_table(root, table)


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args.project, args)
    found = discover.scan(settings)
    if not found:
        print("no @enigma.kernel or @enigma.jit functions found")
        return 0
    width = max(len(f.where) for f in found)
    for f in found:
        print(f"{f.where:<{width}}  {f.package}.{f.name}  @{f.kind} ({f.params})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    settings = _settings(args.project, args)
    out = Path(args.out or settings.root / "build" / "enigma").resolve()
    result = core.build(settings, log=lambda s: print(s, file=sys.stderr))
    for paths in core.write(result, lambda name: out / name).values():
        for p in paths:
            print(p)
    return 0


def _grid_str(grid: Any) -> str:
    from enigma_runtime.grid import to_str
    if grid is None:
        return "none (caller gives it)"
    return "(" + ", ".join(to_str(e) for e in grid) + ")"


def inspect_wheel(path: Path) -> str:
    """A readable summary of the Enigma artifacts in a wheel; hashes are checked against the bytes."""
    from enigma_runtime.binding import describe_arg
    lines = [f"wheel {path.name}"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        wheel_meta = next((n for n in names if n.endswith(".dist-info/WHEEL")), None)
        if wheel_meta:
            tags = [ln.split(":", 1)[1].strip() for ln in zf.read(wheel_meta).decode().splitlines()
                    if ln.startswith("Tag:")]
            lines.append(f"tag: {', '.join(tags)}")
        manifests = sorted(n for n in names if n.endswith("/_enigma/manifest.json"))
        if not manifests:
            lines.append("no Enigma artifacts (no <package>/_enigma/manifest.json)")
        for m in manifests:
            base = m[: -len("manifest.json")]
            man = json.loads(zf.read(m))
            lines.append(f"package {man.get('package')}: schema {man.get('schema')}, enigma "
                         f"{man.get('enigma_version')}, MSL {man.get('msl_version')}, macOS "
                         f"{man.get('macos_target')}, metallib: {man.get('metallib') or 'none (emit-only)'}")
            for kname, specs in sorted(man.get("kernels", {}).items()):
                for i, s in enumerate(specs):
                    tag = " (default)" if i == 0 and len(specs) > 1 else ""
                    lines.append(f"  {kname}{tag}: {s.get('kernel_name')}  {s.get('file')}:{s.get('line')}")
                    args = ", ".join(describe_arg(a, access=True) for a in s.get("args", []))
                    lines.append(f"    ({args})")
                    lines.append(f"    grid {_grid_str(s.get('grid'))} {s.get('grid_unit', '')}, block "
                                 f"{tuple(s['block']) if s.get('block') else 'none (caller gives it)'}"
                                 f", threadgroup memory {s.get('threadgroup_memory', 0)} B, vec_width "
                                 f"{s.get('vec_width', 0)}")
            lines.append("  files:")
            for fname, digest in sorted(man.get("files", {}).items()):
                try:
                    ok = hashlib.sha256(zf.read(base + fname)).hexdigest() == digest
                    state = "ok" if ok else "HASH MISMATCH"
                except KeyError:
                    state = "MISSING"
                lines.append(f"    {fname:<40} {digest[:16]}  {state}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    text = inspect_wheel(Path(args.wheel))
    print(text)
    return 1 if ("HASH MISMATCH" in text or "MISSING" in text) else 0


def cmd_check(argv: Sequence[str]) -> int:
    """Every kernel's Metal source compiled by clang and run on the CPU against the runtime's executor
    (enigma.verify.check owns the options: enigma-build check --help)."""
    try:
        from enigma.verify import check
    except ImportError as e:
        print(f"enigma-build check: enigma.verify is not available ({e})", file=sys.stderr)
        return 2
    return int(check.main(list(argv)) or 0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="enigma-build", description="Precompile Enigma kernels into wheels.")
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="kernels found, with file:line and signature")
    pl.add_argument("project", nargs="?", default=".")
    pb = sub.add_parser("build", help="compile the kernels; artifacts into a directory")
    pb.add_argument("project", nargs="?", default=".")
    pb.add_argument("-o", "--out", help="output directory (default: <project>/build/enigma)")
    pb.add_argument("-j", "--jobs", type=int)
    g = pb.add_mutually_exclusive_group()
    g.add_argument("--emit-only", dest="emit_only", action="store_const", const=True)
    g.add_argument("--metallib", dest="emit_only", action="store_const", const=False,
                   help="build a .metallib with xcrun (macOS)")
    pi = sub.add_parser("inspect", help="kernels, signatures, grid/block, tag and hashes of a wheel")
    pi.add_argument("wheel")
    sub.add_parser("check", add_help=False,
                   help="compile each kernel's Metal source with clang, run it and compare with the CPU "
                        "executor (options: enigma-build check --help)")
    pl.set_defaults(fn=cmd_list)
    pb.set_defaults(fn=cmd_build)
    pi.set_defaults(fn=cmd_inspect)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        return cmd_check(argv[1:])
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (config.ConfigError, discover.DiscoveryError, core.BuildError) as e:
        print(f"enigma-build: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
