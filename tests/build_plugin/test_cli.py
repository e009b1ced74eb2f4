"""enigma-build list | build | inspect | check."""
from __future__ import annotations

import json
import os
import shutil
import zipfile

import pytest
from buildutil import fixture_example_copy, fixture_private_cache, fixture_st_copy, hatch_build  # noqa: F401

from enigma_build.cli import main


def test_list_shows_file_line_and_signature(example_copy, capsys):
    assert main(["list", str(example_copy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 14  # 7 kernels and 7 jits
    assert out[0].split() == ["example_pkg/kernels.py:11", "example_pkg.vector_add", "@kernel",
                              "(a:", "Tensor[float32],", "b:", "Tensor[float32],", "c:", "Tensor[float32],",
                              "n:", "int32)"]
    assert any("example_pkg.matmul" in ln and "TILE: Constexpr[int]=16" in ln for ln in out)


def test_build_writes_artifacts(example_copy, tmp_path, capsys):
    assert main(["build", str(example_copy), "-o", str(tmp_path / "out"), "-j", "1"]) == 0
    man = json.loads((tmp_path / "out/example_pkg/_enigma/manifest.json").read_text())
    assert set(man["kernels"]) >= {"vector_add", "saxpy", "softmax", "matmul", "histogram"}
    assert set(man["entries"]) == {"add", "add_f16", "axpy", "softmax_rows", "matmul_tiled", "count_values",
                                   "total"}
    captured = capsys.readouterr()
    assert str(tmp_path / "out/example_pkg/_enigma/manifest.json") in captured.out
    assert "enigma: softmax" in captured.err


def test_build_reports_config_errors(example_copy, capsys):
    pp = example_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace('msl-version = "3.1"', 'msl-version = "9"'))
    assert main(["build", str(example_copy)]) == 1
    assert "enigma-build: error: tool.enigma.msl-version must be one of" in capsys.readouterr().err


def test_inspect_wheel(example_copy, tmp_path, capsys):
    whl = hatch_build(example_copy, tmp_path / "dist")
    assert main(["inspect", str(whl)]) == 0
    out = capsys.readouterr().out
    assert "tag: py3-none-any" in out
    assert "vector_add (default): enigma_kernel_vector_add  example_pkg/kernels.py:11" in out
    assert "(a: float32[?] read, b: float32[?] read, c: float32[?] write, n: int32)" in out
    assert "grid (ceil_div(n, 256), 1, 1) threadgroups, block (256, 1, 1)" in out
    assert "manifest.json" not in out.split("files:")[1] and " ok" in out
    # a tampered artifact is reported
    bad = tmp_path / "bad" / whl.name
    bad.parent.mkdir()
    with zipfile.ZipFile(whl) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("enigma_kernel_saxpy.metal"):
                data += b"// tampered\n"
            dst.writestr(item, data)
    assert main(["inspect", str(bad)]) == 1
    assert "enigma_kernel_saxpy.metal" in (out := capsys.readouterr().out) and "HASH MISMATCH" in out


def test_check_runs_enigma_verify(st_copy, capsys):
    from enigma.verify.clang import ClangNotFound, find_clang
    try:
        find_clang()
    except ClangNotFound as e:  # same policy as tests/conftest.py need_tool
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e} -- under CI=true a missing tool is a failure")
        pytest.skip(str(e))
    assert main(["check", str(st_copy)]) == 0
    out = capsys.readouterr().out
    assert "st_pkg.scale" in out and "0 disagree" in out


def test_no_pyproject(tmp_path):
    with pytest.raises(SystemExit, match="has no pyproject.toml"):
        main(["list", str(tmp_path)])
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_version_and_help_for_every_argument(capsys):
    from enigma_build import __version__
    from enigma_build.cli import parser
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"enigma-build {__version__}"
    from buildutil import REPO

    from enigma_build.config import tomllib
    assert __version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    p = parser()
    subs = next(a for a in p._actions if a.dest == "command").choices
    for name, sp in subs.items():
        for action in sp._actions:
            if action.dest != "help":
                assert action.help, f"enigma-build {name}: {action.dest} has no help text"
    for action in p._actions:
        assert action.help or action.dest == "command", action.dest


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing-1.0-py3-none-any.whl", "no such file"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "not a wheel file name"),
    (lambda d: (d / "x-1.0-py3-none-any.whl").write_text("x") and d / "x-1.0-py3-none-any.whl",
     "not a wheel (not a zip archive)"),
])
def test_inspect_bad_input_is_one_line(tmp_path, capsys, make, needle):
    assert main(["inspect", str(make(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_inspect_checks_record_and_tags(example_copy, tmp_path, capsys):
    whl = hatch_build(example_copy, tmp_path / "dist")
    assert main(["inspect", str(whl)]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad" / whl.name
    bad.parent.mkdir()
    with zipfile.ZipFile(whl) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "example_pkg/__init__.py":
                data += b"# changed after the build\n"
            dst.writestr(item, data)
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "example_pkg/__init__.py: RECORD MISMATCH" in out
    renamed = tmp_path / whl.name.replace("py3-none-any", "py3-none-macosx_14_0_universal2")
    shutil.copy(whl, renamed)
    assert main(["inspect", str(renamed)]) == 1
    assert "TAG MISMATCH" in capsys.readouterr().out


def test_build_metallib_without_xcrun_fails_at_once(example_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["build", str(example_copy), "--metallib"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("enigma-build: error: --metallib needs Apple's Metal toolchain, and xcrun is not")
    assert "enigma: " not in err  # nothing was compiled first


def test_unknown_key_and_vec_width_name_through_the_cli(example_copy, capsys):
    pp = example_copy / "pyproject.toml"
    text = pp.read_text()
    pp.write_text(text.replace("vec-width", "vec_width"))
    assert main(["list", str(example_copy)]) == 1
    assert "unknown key tool.enigma.vec_width (did you mean 'vec-width'?)" in capsys.readouterr().err
    pp.write_text(text.replace("saxpy = 4", "sxpy = 4"))
    assert main(["build", str(example_copy), "--emit-only"]) == 1
    assert "no kernel named tool.enigma.vec-width.sxpy (did you mean 'saxpy'?)" in capsys.readouterr().err


@pytest.mark.slow
def test_check_project_directory(capsys):
    """The project-directory mode of check lives in enigma_build (it builds the project first)."""
    from enigma.verify.clang import ClangNotFound, find_clang
    try:
        find_clang()
    except ClangNotFound as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e} -- under CI=true a missing tool is a failure")
        pytest.skip(str(e))
    from buildutil import EXAMPLE
    assert main(["check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "example_pkg.vector_add" in out and "0 disagree or fail" in out
    for line in out.splitlines()[1:-1]:
        assert line.split()[1] == "yes", line


def test_enigma_never_imports_enigma_build():
    import ast

    from buildutil import REPO
    for path in (REPO / "enigma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "enigma_build" for n in names), f"{path} imports enigma_build"


def test_check_help_documents_every_option(monkeypatch):
    import argparse

    class Seen(Exception):
        pass

    def parse_args(self, args=None, namespace=None):
        raise Seen(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    with pytest.raises(Seen) as e:
        main(["check", "--help"])
    parser = e.value.args[0]
    dests = {a.dest for a in parser._actions}
    assert {"seed", "schedule", "size", "no_cpu", "json", "target"} <= dests
    for action in parser._actions:
        assert action.help, f"enigma-build check: {action.dest} has no help text"
