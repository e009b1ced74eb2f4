"""Find a project's kernels without importing its packages: an AST scan for @enigma.kernel / @enigma.jit
(however enigma was imported), then only the module files that define kernels are loaded, each under a
synthetic module name (the package's `__init__` never runs)."""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from enigma_build.config import Settings

DECORATORS = ("kernel", "jit")
HINT = ("kernel modules are loaded on their own, without their package: they should import only "
        "enigma, numpy and the standard library (move other imports out of the kernel module)")


class DiscoveryError(Exception):
    """Kernels cannot be found or loaded; the message names the file and how to fix it."""


@dataclass(frozen=True)
class Found:
    """A decorated function seen by the AST scan."""

    name: str
    kind: str  # "kernel" | "jit"
    path: Path  # absolute path of the module file
    rel: str  # the file relative to the package's parent directory: "example_pkg/kernels.py"
    line: int  # line of the `def`
    package: str  # top-level package whose _enigma/ receives the kernel
    params: str  # the parameter list as written: "a: enigma.Tensor[float32], n: int32"

    @property
    def where(self) -> str:
        return f"{self.rel}:{self.line}"


@dataclass(frozen=True)
class Package:
    name: str
    path: Path  # the package directory


# ---------------------------------------------------------------------------------------------------
# which packages and files

def _is_pkg(path: Path) -> bool:
    return (path / "__init__.py").is_file()


def find_packages(settings: Settings, hints: Iterable[str] = ()) -> list[Package]:
    """The top-level packages to scan: `paths`, else `packages`, else `hints` (the build backend's own
    package list), else every top-level package under the project root or src/."""
    root = settings.root
    if settings.paths:
        out = []
        for p in settings.paths:
            d = (root / p).resolve()
            if not d.is_dir():
                raise DiscoveryError(f"tool.enigma.paths: {p!r} is not a directory under {root}")
            out.append(Package(d.name, d))
        return out
    names = list(settings.packages) or [h.split(".")[0] for h in hints]
    if names:
        out, seen = [], set()
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            rel = Path(*name.split("."))
            for base in (root, root / "src"):
                if (base / rel).is_dir():
                    out.append(Package(name.split(".")[0], base / rel))
                    break
            else:
                raise DiscoveryError(f"tool.enigma.packages: package {name!r} not found in {root} or "
                                     f"{root / 'src'}")
        return out
    out = []
    for base in (root, root / "src"):
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and _is_pkg(d) and d.name not in ("tests", "test", "build", "dist"):
                    out.append(Package(d.name, d))
    return out


def _glob_re(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def module_files(settings: Settings, packages: list[Package]) -> list[tuple[Package, Path]]:
    inc = [_glob_re(g) for g in settings.include]
    exc = [_glob_re(g) for g in settings.exclude]
    out = []
    for pkg in packages:
        for dirpath, dirs, files in os.walk(pkg.path):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "_enigma") and not d.startswith("."))
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                path = Path(dirpath) / f
                try:
                    rel = path.relative_to(settings.root).as_posix()
                except ValueError:
                    rel = path.as_posix()
                if any(r.match(rel) for r in inc) and not any(r.match(rel) for r in exc):
                    out.append((pkg, path))
    return out


# ---------------------------------------------------------------------------------------------------
# the AST scan

def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local names bound by imports of enigma or its submodules -> the qualified name they stand for:
    `import enigma as e` {e: enigma}, `import enigma.frontend as ef` {ef: enigma.frontend},
    `from enigma import kernel as K` {K: enigma.kernel}, `from enigma.frontend import *` {kernel:
    enigma.frontend.kernel, jit: ...}."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "enigma" or a.name.startswith("enigma."):
                    if a.asname:
                        names[a.asname] = a.name
                    else:  # `import enigma.frontend` binds `enigma`
                        names["enigma"] = "enigma"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "enigma" or node.module.startswith("enigma.")):
            for a in node.names:
                if a.name == "*":
                    names.update((d, f"{node.module}.{d}") for d in DECORATORS)
                else:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _decorator_kind(dec: ast.expr, names: dict[str, str]) -> str | None:
    """"kernel" or "jit" when `dec` (maybe called) is a dotted name resolving to enigma's kernel/jit."""
    if isinstance(dec, ast.Call):
        dec = dec.func
    parts: list[str] = []
    while isinstance(dec, ast.Attribute):
        parts.append(dec.attr)
        dec = dec.value
    if not isinstance(dec, ast.Name) or dec.id not in names:
        return None
    qualified = ".".join([names[dec.id], *reversed(parts)])
    last = qualified.rsplit(".", 1)[-1]
    return last if last in DECORATORS and qualified != last else None


def scan_source(source: str | bytes, path: Path, rel: str, package: str) -> list[Found]:
    """The module-level functions of one file decorated with enigma's kernel or jit."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise DiscoveryError(f"{rel}:{e.lineno}: syntax error: {e.msg}") from None
    names = _aliases(tree)
    if not names:
        return []
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                kind = _decorator_kind(dec, names)
                if kind:
                    found.append(Found(node.name, kind, path, rel, node.lineno, package,
                                       ast.unparse(node.args)))
                    break
    return found


def scan(settings: Settings, hints: Iterable[str] = ()) -> list[Found]:
    """Every kernel of the project, in file then line order. Duplicate names in one package fail."""
    found: list[Found] = []
    for pkg, path in module_files(settings, find_packages(settings, hints)):
        data = path.read_bytes()
        if b"enigma" not in data:
            continue
        rel = path.relative_to(pkg.path.parent).as_posix()
        found += scan_source(data, path, rel, pkg.name)
    check_duplicates(found)
    return found


def check_duplicates(found: list[Found]) -> None:
    seen: dict[tuple[str, str], Found] = {}
    errors = []
    for f in found:
        first = seen.setdefault((f.package, f.name), f)
        if first is not f:
            errors.append(f"two kernels named {f.name!r} in package {f.package!r}: {first.where} and "
                          f"{f.where}; rename one (the runtime loads kernels by name)")
    if errors:
        raise DiscoveryError("\n".join(errors))


# ---------------------------------------------------------------------------------------------------
# loading only the kernel modules

def load_module(path: Path, rel: str) -> ModuleType:
    """Execute one kernel module file under a synthetic name; failures name the module and the hint."""
    # the name covers the path and the bytes: an edited file is loaded afresh in a long-lived process
    digest = hashlib.sha256(str(path).encode() + b"\0" + path.read_bytes()).hexdigest()[:16]
    name = f"_enigma_build_{digest}_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise DiscoveryError(f"{rel}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if isinstance(e, KeyboardInterrupt):
            raise
        raise DiscoveryError(f"{rel}: importing the kernel module failed: {type(e).__name__}: {e}\n"
                             f"hint: {HINT}") from e
    return module


def load(found: list[Found]) -> list[tuple[Found, Any]]:
    """The kernel objects of `found`, loading each module file once."""
    modules: dict[Path, ModuleType] = {}
    out = []
    for f in found:
        if f.path not in modules:
            modules[f.path] = load_module(f.path, f.rel)
        obj = getattr(modules[f.path], f.name, None)
        if obj is None:
            raise DiscoveryError(f"{f.where}: {f.name!r} is not defined after loading the module "
                                 f"(is the definition conditional?)")
        out.append((f, obj))
    return out
