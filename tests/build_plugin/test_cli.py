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
    bad = tmp_path / "bad.whl"
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
