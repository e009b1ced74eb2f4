"""In-process builds: hatchling's wheel builder and setuptools' build_meta on a tmp copy of a project,
with the enigma hook as installed (entry points), emit-only (no Mac here)."""
from __future__ import annotations

import json
import re
import textwrap

import pytest
from buildutil import (  # noqa: F401
    check_manifest,
    fixture_example_copy,
    fixture_private_cache,
    fixture_st_copy,
    hatch_build,
    no_editables,
    st_build,
    wheel_files,
    wheel_tag,
)

from enigma_build import config, core

KERNELS = {"vector_add", "saxpy", "softmax", "matmul", "histogram", "block_sums", "sum_all",  # kernels
           "add", "add_f16", "axpy", "softmax_rows", "matmul_tiled", "count_values", "total"}  # jits' kernels


def test_hatch_wheel_carries_artifacts(example_copy, tmp_path, capsys):
    whl = hatch_build(example_copy, tmp_path / "dist")
    assert wheel_tag(whl) == "py3-none-any"
    files = wheel_files(whl)
    man = check_manifest(files, "example_pkg")
    assert set(man["kernels"]) == KERNELS and man["metallib"] is None and man["package"] == "example_pkg"
    va = man["kernels"]["vector_add"]
    assert [s["args"][0]["dtype"] for s in va] == ["float32", "float16"]
    assert len({s["kernel_name"] for s in va}) == 2
    assert va[0]["file"] == "example_pkg/kernels.py" and va[0]["grid_unit"] == "threadgroups"
    assert man["kernels"]["saxpy"][0]["vec_width"] == 4
    assert "example_pkg/kernels.py" in files and "example_pkg/_enigma/kernels.metallib" not in files
    # nothing absolute from the build directory leaks into the wheel
    assert not any(str(example_copy).encode() in data for data in files.values())
    err = capsys.readouterr()
    assert "enigma: vector_add" in err.out + err.err


def test_hatch_rebuild_is_byte_identical_and_cached(example_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = hatch_build(example_copy, tmp_path / "a").read_bytes()
    capsys.readouterr()
    second = hatch_build(example_copy, tmp_path / "b").read_bytes()
    assert first == second
    out = capsys.readouterr()
    assert "kernels from the cache" in out.out + out.err


def test_builds_in_two_directories_with_cold_caches_are_byte_identical(example_copy, tmp_path,
                                                                        monkeypatch):
    import shutil
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    other = tmp_path / "elsewhere" / "deeper" / "example_project"
    shutil.copytree(example_copy, other)
    first = hatch_build(example_copy, tmp_path / "a").read_bytes()
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "other-cache"))
    assert hatch_build(other, tmp_path / "b").read_bytes() == first


def test_hatch_editable_writes_into_source_tree(example_copy, tmp_path):
    no_editables(example_copy)
    whl = hatch_build(example_copy, tmp_path / "dist", version="editable")
    man = json.loads((example_copy / "src/example_pkg/_enigma/manifest.json").read_text())
    assert set(man["kernels"]) == KERNELS
    assert not any("_enigma" in n for n in wheel_files(whl))


def test_sdist_carries_sources_not_artifacts(example_copy, tmp_path):
    no_editables(example_copy)
    hatch_build(example_copy, tmp_path / "dist", version="editable")  # leaves src/example_pkg/_enigma
    import tarfile
    sdist = hatch_build(example_copy, tmp_path / "dist", version="standard", target="sdist")
    names = tarfile.open(sdist).getnames()
    assert any(n.endswith("src/example_pkg/kernels.py") for n in names)
    assert not any("_enigma" in n for n in names)


def test_hatch_hook_rejects_settings_in_hook_table(example_copy, tmp_path):
    pp = example_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace("[tool.hatch.build.hooks.enigma]\n",
                                         "[tool.hatch.build.hooks.enigma]\nfast-math = true\n"))
    with pytest.raises(config.ConfigError, match=r"does not take 'fast-math': put enigma settings in"):
        hatch_build(example_copy, tmp_path / "dist")


def test_failures_are_all_reported_with_file_and_line(example_copy, tmp_path):
    (example_copy / "src/example_pkg/bad.py").write_text(textwrap.dedent("""\
        import enigma
        from enigma import Tensor, float32


        @enigma.kernel
        def no_annotation(x):
            pass


        @enigma.kernel
        def returns(x: Tensor[float32]):
            return 1
        """))
    with pytest.raises(core.BuildError) as e:
        hatch_build(example_copy, tmp_path / "dist")
    msg = str(e.value)
    assert msg.startswith("2 of 16 kernels of 'example_pkg' failed to compile:")
    assert "no_annotation (example_pkg/bad.py:6):" in msg and "parameter 'x' has no annotation" in msg
    assert "returns (example_pkg/bad.py:11):" in msg and "returns a value" in msg
    assert str(example_copy) not in msg


def test_setuptools_wheel_carries_artifacts(st_copy, tmp_path):
    whl = st_build(st_copy, tmp_path / "dist")
    assert wheel_tag(whl) == "py3-none-any"
    files = wheel_files(whl)
    man = check_manifest(files, "st_pkg")
    assert list(man["kernels"]) == ["scale"]
    assert man["kernels"]["scale"][0]["block"] == [64, 1, 1]


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_setuptools_editable_writes_into_source_tree(st_copy, tmp_path, mode):
    st_build(st_copy, tmp_path / "dist", "editable", {"editable_mode": mode})
    man = json.loads((st_copy / "st_pkg/_enigma/manifest.json").read_text())
    assert list(man["kernels"]) == ["scale"]
    if mode == "strict":  # the link tree holds the artifacts next to the linked sources
        linked = list((st_copy / "build").glob("__editable__*/st_pkg/_enigma/manifest.json"))
        assert linked and linked[0].read_bytes() == (st_copy / "st_pkg/_enigma/manifest.json").read_bytes()


def test_setuptools_plugin_is_inert_without_tool_enigma(st_copy, tmp_path):
    pp = st_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace("[tool.enigma]\n", ""))
    files = wheel_files(st_build(st_copy, tmp_path / "dist"))
    assert not any("_enigma" in n for n in files)


def test_output_does_not_depend_on_worker_order(example_copy, tmp_path):
    def files(jobs: int, cache: str) -> dict:
        s = config.from_table(example_copy, {"jobs": jobs, "cache-dir": str(tmp_path / cache),
                                             "vec-width": {"saxpy": 4}})
        return core.build(s, log=lambda _: None).packages[0].files
    assert files(1, "c1") == files(2, "c2")


def test_jit_launchers_and_import_styles(tmp_path):
    proj = tmp_path / "proj"
    (proj / "jpkg").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[project]\nname = "jpkg"\ndependencies = ["enigma-runtime"]\n')
    (proj / "jpkg/__init__.py").write_text("raise ImportError('never imported by the build')\n")
    (proj / "jpkg/k.py").write_text(textwrap.dedent("""\
        import enigma as e
        from enigma import Tensor, float32, int32, jit, kernel


        @kernel
        def add1(x: Tensor[float32], y: Tensor[float32], n: int32):
            i = e.block_idx().x * e.block_dim().x + e.thread_idx().x
            if i < n:
                y[i] = x[i] + 1.0


        @jit
        def launch_add1(x: Tensor[float32, ("n",)], y: Tensor[float32, ("n",)]):
            n = x.shape[0]
            add1(x, y, n).launch(grid=(e.ceil_div(n, 64), 1, 1), block=(64, 1, 1))
        """))
    s = config.from_table(proj, {})
    files = core.build(s, log=lambda _: None).packages[0].files
    man = json.loads(files["manifest.json"])
    plain, launched = man["kernels"]["add1"][0], man["kernels"]["launch_add1"][0]
    assert plain["grid"] is None and plain["block"] is None
    assert launched["kernel_name"] == "enigma_kernel_launch_add1_jit" and launched["block"] == [64, 1, 1]
    assert launched["grid"] == [{"op": "ceil_div", "args": [{"sym": "n"}, 64]}, 1, 1]
    source = files["enigma_kernel_launch_add1_jit.metal"].decode()
    assert "kernel void enigma_kernel_launch_add1_jit(" in source
    # the runtime runs what was built
    import numpy as np
    from enigma_runtime import Kernel
    k = Kernel.from_spec(launched, json.loads(files["enigma_kernel_launch_add1_jit.ir.json"]),
                         files["enigma_kernel_launch_add1_jit.metal"].decode())
    x, y = np.arange(100, dtype=np.float32), np.zeros(100, np.float32)
    k(x, y, np.int32(100), device="cpu")
    np.testing.assert_array_equal(y, x + 1)


def test_hatch_clean_removes_editable_artifacts(example_copy, tmp_path):
    from hatchling.builders.wheel import WheelBuilder
    no_editables(example_copy)
    hatch_build(example_copy, tmp_path / "dist", version="editable")
    assert (example_copy / "src/example_pkg/_enigma").is_dir()
    list(WheelBuilder(str(example_copy)).build(directory=str(tmp_path / "dist"), versions=["editable"],
                                               clean_only=True))
    assert not (example_copy / "src/example_pkg/_enigma").exists()


def test_warns_when_editable_leftovers_would_be_packaged(example_copy, tmp_path, capsys):
    no_editables(example_copy)
    hatch_build(example_copy, tmp_path / "e", version="editable")
    capsys.readouterr()
    hatch_build(example_copy, tmp_path / "a")  # .gitignore has _enigma/: nothing to say
    assert "would be packaged" not in "".join(capsys.readouterr())
    (example_copy / ".gitignore").write_text("build/\n")
    hatch_build(example_copy, tmp_path / "b")
    assert "(left by an editable install) would be packaged" in "".join(capsys.readouterr())


def test_setuptools_sdist_then_wheel_equals_direct_wheel(st_copy, tmp_path, monkeypatch):
    import tarfile

    from setuptools import build_meta
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    direct = st_build(st_copy, tmp_path / "direct")
    monkeypatch.chdir(st_copy)
    (tmp_path / "sdist").mkdir()
    sdist = tmp_path / "sdist" / build_meta.build_sdist(str(tmp_path / "sdist"))
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        assert any(n.endswith("st_pkg/kernels.py") for n in names)
        assert not any("_enigma" in n for n in names)
        tf.extractall(tmp_path / "unpacked", filter="data")
    (src,) = (tmp_path / "unpacked").iterdir()
    from_sdist = st_build(src, tmp_path / "from_sdist")
    assert from_sdist.read_bytes() == direct.read_bytes()


def test_both_adapters_warn_when_enigma_runtime_is_not_a_dependency(example_copy, st_copy, tmp_path, capsys):
    for project in (example_copy, st_copy):
        pp = project / "pyproject.toml"
        text = pp.read_text()
        assert "enigma-runtime" in text
        pp.write_text(re.sub(r'"enigma-runtime[^"]*",?\s*', "", text))
    hatch_build(example_copy, tmp_path / "h")
    out = capsys.readouterr()
    assert "enigma: enigma-runtime is not in [project] dependencies" in out.out + out.err
    st_build(st_copy, tmp_path / "s")
    out = capsys.readouterr()
    assert "enigma: enigma-runtime is not in [project] dependencies" in out.out + out.err
