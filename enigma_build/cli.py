"""`enigma-build list|build|inspect|check` (also `python -m enigma_build`)."""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import shutil
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


class CliError(Exception):
    """A usage problem reported as one line (no traceback)."""


def cmd_build(args: argparse.Namespace) -> int:
    if args.emit_only is False and shutil.which("xcrun") is None:
        raise CliError("--metallib needs Apple's Metal toolchain, and xcrun is not on PATH (a .metallib "
                       "can only be built on macOS with Xcode); leave out --metallib to build the Metal "
                       "source and portable IR only (the runtime compiles the source on the Mac)")
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


def _record_problems(zf: zipfile.ZipFile, dist_info: str) -> list[str]:
    """Entries of the wheel's RECORD whose sha256 or size disagree with the bytes, files missing from
    it and listed files missing from the archive (the wheel spec's RECORD rules)."""
    record = f"{dist_info}/RECORD"
    try:
        rows = list(csv.reader(io.StringIO(zf.read(record).decode())))
    except KeyError:
        return [f"{record}: missing"]
    problems, listed = [], set()
    for row in rows:
        if not row:
            continue
        name, digest, size = (row + ["", "", ""])[:3]
        listed.add(name)
        if name == record:
            continue
        try:
            data = zf.read(name)
        except KeyError:
            problems.append(f"{name}: listed in RECORD but not in the wheel")
            continue
        algo, _, want = digest.partition("=")
        if algo != "sha256":
            problems.append(f"{name}: RECORD hash is not sha256 ({digest or 'none'})")
            continue
        got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if got != want or (size and int(size) != len(data)):
            problems.append(f"{name}: RECORD MISMATCH (sha256 or size differs from the bytes)")
    problems += [f"{n}: not listed in RECORD" for n in zf.namelist()
                 if n not in listed and not n.endswith("/")]
    return problems


def inspect_wheel(path: Path) -> str:
    """A readable summary of the Enigma artifacts in a wheel; the file name is parsed and the WHEEL
    tags and RECORD hashes are checked (packaging.utils), artifact hashes against their bytes.
    CliError (one line) for a missing file or one that is not a wheel."""
    from enigma_runtime.binding import describe_arg
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        dist, version, _, file_tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as e:
        raise CliError(f"{path}: not a wheel file name ({e})") from None
    if not zipfile.is_zipfile(path):
        raise CliError(f"{path}: not a wheel (not a zip archive)")
    lines = [f"wheel {path.name}"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        wheel_meta = next((n for n in names if n.endswith(".dist-info/WHEEL")
                           and canonicalize_name(n.split("-", 1)[0]) == dist), None)
        if wheel_meta is None:
            raise CliError(f"{path}: not a wheel (no {dist}-{version}.dist-info/WHEEL)")
        tags = [ln.split(":", 1)[1].strip() for ln in zf.read(wheel_meta).decode().splitlines()
                if ln.startswith("Tag:")]
        lines.append(f"tag: {', '.join(tags)}")
        if {str(t) for t in file_tags} != set(tags):
            lines.append(f"  TAG MISMATCH: the file name says {', '.join(sorted(map(str, file_tags)))}")
        for problem in _record_problems(zf, wheel_meta.rsplit("/", 1)[0]):
            lines.append(f"  {problem}")
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
    bad = ("HASH MISMATCH", "MISSING", "RECORD MISMATCH", "TAG MISMATCH", "RECORD: missing", "in RECORD")
    return 1 if any(b in text for b in bad) else 0


def cmd_check(argv: Sequence[str]) -> int:
    """Every kernel's Metal source compiled by clang and run on the CPU against the runtime's executor
    (enigma.verify.check owns the options: enigma-build check --help)."""
    try:
        from enigma_build import check
    except ImportError as e:
        print(f"enigma-build check: enigma.verify is not available ({e})", file=sys.stderr)
        return 2
    return check.main(argv)


def parser() -> argparse.ArgumentParser:
    from enigma_build import __version__

    p = argparse.ArgumentParser(prog="enigma-build", description="Precompile Enigma kernels into wheels: "
                                "Metal source, portable IR and (on macOS) a .metallib per package.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    project_help = "the project directory, holding pyproject.toml (default: the current directory)"
    pl = sub.add_parser("list", help="kernels found, with file:line and signature",
                        description="List the @enigma.kernel and @enigma.jit functions of a project.")
    pl.add_argument("project", nargs="?", default=".", help=project_help)
    pb = sub.add_parser("build", help="compile the kernels; artifacts into a directory",
                        description="Compile a project's kernels into OUT/<package>/_enigma/.")
    pb.add_argument("project", nargs="?", default=".", help=project_help)
    pb.add_argument("-o", "--out", metavar="DIR", help="output directory (default: <project>/build/enigma)")
    pb.add_argument("-j", "--jobs", type=int, metavar="N",
                    help="xcrun metal processes at once (default: [tool.enigma] jobs, else the CPU count)")
    g = pb.add_mutually_exclusive_group()
    g.add_argument("--emit-only", dest="emit_only", action="store_const", const=True,
                   help="Metal source and portable IR only, no .metallib")
    g.add_argument("--metallib", dest="emit_only", action="store_const", const=False,
                   help="also build a .metallib with xcrun (macOS with Xcode)")
    pi = sub.add_parser("inspect", help="kernels, signatures, grid/block, tag and hashes of a wheel",
                        description="Show the Enigma artifacts of a wheel and check its file name, tags, "
                                    "RECORD and artifact hashes (exit 1 on a mismatch).")
    pi.add_argument("wheel", help="path to a .whl file")
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
    except (CliError, config.ConfigError, discover.DiscoveryError, core.BuildError) as e:
        print(f"enigma-build: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
