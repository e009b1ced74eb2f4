"""`enigma-build check` (enigma.verify.check): project directories, built packages, disagreements,
failures and the exit code; plus clang discovery and the compile cache."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import need_tool

from enigma.verify import check, clang

pytestmark = pytest.mark.needs_clang
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_project"


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


@pytest.fixture(scope="module")
def built_package(tmp_path_factory) -> Path:
    """example_project's package built emit-only into a temporary directory."""
    from enigma_build import config, core

    out = tmp_path_factory.mktemp("built")
    core.write(core.build(config.load(EXAMPLE), log=lambda s: None), lambda name: out / name)
    return out / "example_pkg"


def test_check_project_directory_is_enigma_builds(capsys):
    # enigma.verify does not build projects (it never imports enigma_build): `enigma-build check
    # PROJECT` does (tests/build_plugin/test_cli.py)
    assert check.main([str(EXAMPLE)]) == 2
    assert "run `enigma-build check" in capsys.readouterr().err


def test_check_built_package_and_rows(built_package):
    rows = check.check_package(built_package, schedule="reverse", size=45)
    names = {r.name for r in rows}
    assert {"vector_add[0]", "vector_add[1]", "softmax", "matmul", "histogram", "saxpy"} <= names
    assert all(r.agree for r in rows), check.format_rows(rows)
    assert check.check_package(built_package / "_enigma", compare_cpu=False)[0].detail.startswith("ran")


def test_check_reports_a_disagreement_and_a_failure(built_package, tmp_path, capsys):
    pkg = tmp_path / "pkg"
    shutil.copytree(built_package, pkg)
    adir = pkg / "_enigma"
    man = json.loads((adir / "manifest.json").read_text())
    # corrupt two kernels' Metal source: a wrong result and an out-of-bounds write
    edits = {"enigma_kernel_saxpy.metal": ("alpha *", "(alpha + 1.0f) *"),
             "enigma_kernel_vector_add.metal": ("c[", "c[1 + ")}
    import hashlib

    for fname, (old, new) in edits.items():
        text = (adir / fname).read_text()
        assert old in text, (fname, old)
        (adir / fname).write_text(text.replace(old, new, 1))
        man["files"][fname] = hashlib.sha256((adir / fname).read_bytes()).hexdigest()
    (adir / "manifest.json").write_text(json.dumps(man))
    assert check.main([str(pkg)]) == 1
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1] if line and not line.startswith(" ")}
    assert rows["saxpy"].split()[1] == "NO" and "Metal on CPU vs CPU executor: y[" in rows["saxpy"]
    assert rows["vector_add[0]"].split()[1] == "NO" and "out-of-bounds write" in rows["vector_add[0]"]
    assert rows["softmax"].split()[1] == "yes"


def test_check_json_output(built_package, capsys):
    assert check.main([str(built_package), "--json", "--size", "64", "--schedule", "forward"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"softmax", "matmul"} and all(r["agree"] for r in rows)
    assert set(rows[0]) == {"name", "kernel_name", "agree", "max_error", "seconds", "compile_seconds",
                            "detail", "skipped"}


def test_check_usage_errors(tmp_path, capsys):
    assert check.main([str(tmp_path)]) == 2
    assert "no pyproject.toml" in capsys.readouterr().err
    assert check.main(["--size", "n=x", str(tmp_path)]) == 2


def test_make_inputs_uses_one_size_for_dims_and_int_scalars():
    spec = {"args": [{"name": "a", "kind": "tensor", "dtype": "float32", "rank": 2, "shape": [None, 5],
                      "access": "read"},
                     {"name": "out", "kind": "tensor", "dtype": "int32", "rank": 1, "shape": ["m"],
                      "access": "write"},
                     {"name": "m", "kind": "scalar", "dtype": "int32", "rank": 0, "shape": [],
                      "access": "read"},
                     {"name": "s", "kind": "scalar", "dtype": "float16", "rank": 0, "shape": [],
                      "access": "read"}]}
    a, out, m, s = check.make_inputs(spec, np.random.default_rng(0))
    assert a.shape == (37, 5) and out.shape == (37,) and m == 37 and not out.any()
    assert s.dtype == np.float16 and s == 0.75
    a, out, m, s = check.make_inputs(spec, np.random.default_rng(0), sizes={"m": 9})
    assert out.shape == (9,) and m == 9


def test_find_clang_env_and_cache(monkeypatch, tmp_path):
    clang.find_clang.cache_clear()
    try:
        monkeypatch.setenv("ENIGMA_CLANG", str(tmp_path / "no-such-clang"))
        with pytest.raises(clang.ClangNotFound, match="ENIGMA_CLANG"):
            clang.find_clang()
        monkeypatch.setenv("ENIGMA_CLANG", need_tool("clang++-19", "clang++-22", "clang++"))
        assert "clang" in clang.find_clang().version
    finally:
        clang.find_clang.cache_clear()
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    src = "#include <metal_stdlib>\nkernel void k(device int* a [[buffer(0)]]) { a[0] = 1; }\n" \
          "extern \"C\" void enigma_entry(const void*) {}\n"
    lib = clang.compile_kernel_library(src)
    assert lib.parent == tmp_path / "cache" / "verify" and lib.exists()  # enigma.cache.cache_dir("verify")
    assert clang.compile_kernel_library(src) == lib  # cached by content
    assert clang.compile_kernel_library(src.replace("= 1", "= 2")) != lib
    assert not list((tmp_path / "cache" / "verify").glob("tmp*"))  # temporary build directories are gone


def test_no_clang_error_says_how_to_get_one(monkeypatch):
    import sys

    monkeypatch.delenv("ENIGMA_CLANG", raising=False)
    monkeypatch.setattr(clang, "CANDIDATES", ("enigma-no-such-clang++",))
    monkeypatch.setitem(sys.modules, "ziglang", None)  # `import ziglang` fails
    clang.find_clang.cache_clear()
    try:
        with pytest.raises(clang.ClangNotFound, match=r"apt-get install clang-19.*pip install ziglang"):
            clang.find_clang()
    finally:
        clang.find_clang.cache_clear()


def test_check_flags_races_and_threadgroup_memory_mismatch(built_package):
    from enigma_runtime.manifest import read_manifest

    man = read_manifest(built_package / "_enigma")
    spec = dict(man.kernels["softmax"][0])
    metal, ir = man.read_text(spec["metal"]), man.read_json(spec["ir"])
    assert spec["threadgroup_memory"] > 0
    ok = check.check_kernels([(spec, ir, metal)])[0]
    assert ok.agree, ok.detail
    wrong = dict(spec, threadgroup_memory=spec["threadgroup_memory"] + 16)
    row = check.check_kernels([(wrong, ir, metal)])[0]
    assert not row.agree and f"declares {spec['threadgroup_memory']}" in row.detail
    # drop the barrier after the per-simdgroup partial results: the result now depends on the order
    first = metal.index("threadgroup_barrier(")
    racy = metal[:first] + "(void)0;" + metal[metal.index(";", first) + 1:]
    row = check.check_kernels([(spec, ir, racy)], compare_cpu=False)[0]
    assert not row.agree and "data race on threadgroup memory " in row.detail, row.detail
    assert "put a threadgroup_barrier between" in row.detail and "from example_pkg/kernels.py:" in row.detail
    unknown = {k: v for k, v in spec.items() if k != "threadgroup_memory"}  # no race-checking build
    row = check.check_kernels([(unknown, ir, racy)], compare_cpu=False)[0]
    assert not row.agree and "depend on the thread order" in row.detail, row.detail


def test_enigma_build_cli_runs_check(built_package, capsys):
    from enigma_build import cli

    assert cli.main(["check", str(built_package), "--size", "40"]) == 0
    assert "0 disagree or fail" in capsys.readouterr().out


def test_kernels_without_launch_metadata_are_skipped(built_package):
    from enigma_runtime.manifest import read_manifest

    man = read_manifest(built_package / "_enigma")
    spec = dict(man.kernels["saxpy"][0], grid=None)
    rows = check.check_kernels([(spec, man.read_json(spec["ir"]), man.read_text(spec["metal"]))])
    assert rows[0].skipped and rows[0].agree and "no grid" in rows[0].detail
    assert "0 kernel(s) checked, 0 disagree or fail, 1 skipped" in check.format_rows(rows)


def test_run_msl_takes_a_kernel_loaded_by_the_runtime(built_package):
    import enigma_runtime

    from enigma.verify import run_msl

    k = enigma_runtime.load(built_package, "vector_add")
    a = np.arange(300, dtype=np.float32)
    c = np.zeros(300, np.float32)
    run_msl(k, a, a, c, np.int32(300))  # grid/block from the manifest's grid expressions
    np.testing.assert_array_equal(c, 2 * a)


def _t(name, rank, shape=None, dtype="float32", access="read"):
    return {"name": name, "kind": "tensor", "dtype": dtype, "rank": rank,
            "shape": shape if shape is not None else [None] * rank, "access": access}


def _s(name, dtype="int32"):
    return {"name": name, "kind": "scalar", "dtype": dtype, "rank": 0, "shape": [], "access": "read"}


def _dim(a, ax):
    return {"dim": [a, ax]}


def _op(op, x, y):
    return {"op": op, "args": [x, y]}


def test_inputs_satisfy_requires_and_keep_scalars_sane():
    spec = {"args": [_t("qs", 2, dtype="uint8"), _t("y", 2, access="write"), _s("n"), _s("n_head_log2"),
                     _s("max_bias", "float32"), _s("chunk")],
            "grid": [_op("ceil_div", {"arg": "n"}, 32), 1, 1],
            "requires": [
                {"expr": _op("eq", _dim("y", 1), _op("mul", 2, _dim("qs", 1))),
                 "text": "y.shape[1] == 2 * qs.shape[1]"},
                {"expr": _op("eq", _op("mod", {"arg": "chunk"}, 4), 0), "text": "chunk % 4 == 0"},
                {"expr": _op("ge", _dim("qs", 0), 64), "text": "qs.shape[0] >= 64"}]}
    plan = check.plan_inputs(spec)
    assert plan.shapes["y"][1] == 2 * plan.shapes["qs"][1] and plan.shapes["qs"][0] >= 64
    assert plan.scalars["chunk"] % 4 == 0 and plan.scalars["n"] == 37  # read by the grid: a size
    assert plan.scalars["n_head_log2"] == 3 and plan.scalars["max_bias"] == 0.75  # sane, not 37 and 1.5
    assert not plan.unsatisfied
    qs, y, n, log2, bias, chunk = check.make_inputs(spec, np.random.default_rng(0))
    assert y.shape[1] == 2 * qs.shape[1] and chunk % 4 == 0 and log2 == 3
    # what the user fixes stays fixed; what cannot hold is reported
    fixed = check.plan_inputs(spec, sizes={"qs.1": 10, "chunk": 6})
    assert fixed.shapes["y"][1] == 20 and fixed.unsatisfied == ["chunk % 4 == 0"]
    assert "qs[" in fixed.describe() and "chunk=6" in fixed.describe()
    rows = check.check_kernels([(dict(spec, kernel_name="k", name="k"), None, "")], sizes={"chunk": 6})
    assert not rows[0].agree and "no sizes found that satisfy the kernel's requires: chunk % 4 == 0" in \
        rows[0].detail and "--size NAME=N" in rows[0].detail


def test_tolerance_scales_with_the_result_magnitude():
    spec = {"args": [_t("y", 1, access="write")]}
    want = [np.array([1e4, 0.0, -3.0], np.float32)]
    assert check.compare(spec, [np.array([1e4, 0.5, -3.0], np.float32)], want)[0]  # 0.5 << 1e4 * 1e-4
    ok, err, where = check.compare(spec, [np.array([1e4, 2.0, -3.0], np.float32)], want)
    assert not ok and err == 2.0 and "y[1]" in where
    small = [np.array([1.0, 0.0], np.float32)]
    assert not check.compare(spec, [np.array([1.0, 5e-4], np.float32)], small)[0]  # magnitude 1: atol 1e-4


def test_disagreement_names_the_inputs_and_how_to_give_others(built_package, capsys):
    from enigma_runtime.manifest import read_manifest

    man = read_manifest(built_package / "_enigma")
    spec = dict(man.kernels["saxpy"][0])
    metal, ir = man.read_text(spec["metal"]), man.read_json(spec["ir"])
    wrong = metal.replace("alpha *", "(alpha + 1.0f) *", 1)
    row = check.check_kernels([(spec, ir, wrong)], scalars={"alpha": 0.5})[0]
    assert not row.agree and "inputs (seed 0): shapes x[1003], y[1003]; scalars alpha=0.5, n=1003" in \
        row.detail, row.detail
    assert "--scalar NAME=VALUE" in row.detail and "--size NAME=N" in row.detail
    assert check.main([str(built_package), "--scalar", "alpha=-2"]) == 0
    assert check.main([str(built_package), "--scalar", "alpha"]) == 2
    assert "--scalar takes NAME=VALUE" in capsys.readouterr().err
