"""Repository rules that CI enforces: ruff-clean, README's two commands, .ci/run runs the second."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < 20, "README.md must open with its two commands"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["python3 scripts/demo.py", "python3 scripts/test.py"]
    assert all((ROOT / c.split()[1]).exists() for c in commands)
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            try:
                path.read_text()
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def test_the_repository_refers_to_nothing_outside_itself():
    outside = ("../" + "shared", "shared/" + "seed", "shared/" + "reference")  # split: this file is tracked
    files = _tracked_text_files()
    assert len(files) > 50
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in files
            for n, line in enumerate(p.read_text().splitlines(), 1) if any(s in line for s in outside)]
    assert hits == []


def test_star_import_does_not_shadow_builtins():
    import builtins

    import enigma

    assert set(enigma.__all__) & set(dir(builtins)) == set()
    ns: dict = {}
    exec("from enigma import *", ns)  # noqa: S102 - the import under test
    assert "abs" not in ns and "compile" not in ns and "filter" not in ns and "kernel" in ns
    assert callable(enigma.abs) and callable(enigma.compile) and callable(enigma.filter)


# ---------------------------------------------------------------------------------------------------
# layering: imports between modules (including imports inside functions)

PACKAGES = {"enigma": ROOT / "enigma", "enigma_build": ROOT / "enigma_build",
            "enigma_runtime": ROOT / "runtime" / "enigma_runtime"}
KNOWN_CYCLES: list[list[str]] = []  # none: keep it so


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the names imported from it, for every module of ours `name` imports (anywhere in it)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in modules:
                    found.setdefault(sub, set())
                else:
                    found.setdefault(mod, set()).add(a.name)
    return {m: names for m, names in found.items() if m in modules and m != name}


def _graph() -> dict[str, dict[str, set[str]]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def import_cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def test_import_cycle_finder_sees_function_level_imports():
    g = {"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}, "e": {}}
    assert import_cycles(g) == [["a", "b", "c"]]
    tree = ROOT / "enigma" / "layout" / "checks.py"
    assert "enigma.frontend.builder" in _imports("enigma.layout.checks", tree, _modules())  # inside a def


def test_no_import_cycles_between_modules():
    assert import_cycles(_graph()) == KNOWN_CYCLES


def test_layers_point_one_way():
    graph = _graph()
    for m, deps in graph.items():
        if m.startswith("enigma.passes"):  # passes see the IR only
            assert not [d for d in deps if d.startswith(("enigma.frontend", "enigma.backends"))], m
        if m.startswith("enigma_runtime"):
            assert not [d for d in deps if d == "enigma" or d.startswith("enigma.")], m
        if m.startswith("enigma.layout"):  # the tracer's internals stay private
            private = [(d, n) for d, names in deps.items() if d.startswith("enigma.frontend")
                       for n in names if n.startswith("_")]
            assert private == [], m


def _module_names(name: str, path: Path, tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The local names under which `name` binds modules of ours (`from . import devices`, `import x as y`)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname for a in node.names if a.asname and a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {a.asname or a.name for a in node.names if f"{mod}.{a.name}" in modules}
    return out


def private_imports() -> list[str]:
    """`from X import _name` (any module of ours into another), and `module._name` of an imported
    module of ours: what another module needs is that module's public (internal) API."""
    modules = _modules()
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        ours = _module_names(name, path, tree, modules)
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                out += [f"{where}:{node.lineno}: imports {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in ours and node.attr.startswith("_") and not node.attr.startswith("__"):
                out.append(f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return sorted(out)


def test_no_private_names_imported_across_modules():
    assert private_imports() == []


def test_frontend_modules_import_down_the_documented_list():
    """docs/ARCHITECTURE.md lists the frontend's modules in order ("The frontend's modules"): each
    imports only modules listed before it, and every module is listed."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"## The frontend's modules\n.*?```\n(.*?)```", doc, re.S)
    assert block, "docs/ARCHITECTURE.md has no list of the frontend's modules"
    order = [m[:-3] for line in block.group(1).splitlines()  # the names before each description
             for m in re.findall(r"\b\w+\.py\b", line.strip().split("  ")[0])]
    rank = {f"enigma.frontend.{name}": i for i, name in enumerate(order)}
    graph = _graph()
    frontend = [m for m in graph if m.startswith("enigma.frontend.")]
    assert sorted(set(frontend) - set(rank)) == [], "list every frontend module in docs/ARCHITECTURE.md"
    upward = [(m, d) for m in frontend for d in graph[m] if d in rank and rank[d] > rank[m]]
    assert upward == []
