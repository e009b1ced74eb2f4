"""enigma.toolchain.xcrun against a FAKE xcrun (tests/toolchain/fake_xcrun.py): argument plumbing, the
.air cache and every error path. No Apple toolchain runs here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_xcrun  # noqa: E402

from enigma.errors import EnigmaError  # noqa: E402
from enigma.toolchain import xcrun  # noqa: E402

SRC = "#include <metal_stdlib>\nkernel void enigma_kernel_a() {}\n"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake xcrun first on PATH; returns the log file of its invocations."""
    return fake_xcrun.activate(tmp_path, monkeypatch)


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_build_metallib_runs_the_two_steps(fake, tmp_path):
    out = xcrun.build_metallib({"enigma_kernel_a": SRC, "enigma_kernel_b.metal": SRC.replace("_a", "_b")},
                               tmp_path / "work", msl_version="3.0", macos_target="13.0")
    assert out == tmp_path / "work" / "kernels.metallib"
    text = out.read_text().splitlines()
    assert text[0] == "FAKE-METALLIB macos=13.0"
    assert [t.split()[0] for t in text[1:]] == ["enigma_kernel_a.air", "enigma_kernel_b.air"]
    assert (tmp_path / "work" / "enigma_kernel_b.metal").read_text().startswith("#include")
    argvs = calls(fake)
    assert argvs[0] == ["-sdk", "macosx", "--find", "metal"]
    compiles = [a for a in argvs if a[2] == "metal" and "-c" in a]
    assert len(compiles) == 2
    assert compiles[0][3:7] == ["-std=metal3.0", "-mmacosx-version-min=13.0", "-fno-fast-math", "-Wall"]
    link = [a for a in argvs if a[2] == "metallib"]
    assert len(link) == 1 and link[0][-2] == "-o" and len(link[0]) == 3 + 2 + 2


def test_fast_math_and_msl_version_flags(fake, tmp_path):
    air = xcrun.compile_air(SRC, "k", None, out_dir=tmp_path, msl_version="3.2", macos_target="15",
                            fast_math=True)
    flags = air.read_text().split()[2:]
    assert flags == ["-std=metal3.2", "-mmacosx-version-min=15.0", "-ffast-math", "-Wall"]


def test_air_cache_hits_and_keys_on_source_and_flags(fake, tmp_path):
    cache = tmp_path / "cache"
    a1 = xcrun.compile_air(SRC, "k", cache)
    n = len(calls(fake))
    assert xcrun.compile_air(SRC, "k", cache) == a1 and len(calls(fake)) == n  # hit: no tool runs
    a2 = xcrun.compile_air(SRC + "\n", "k", cache)
    a3 = xcrun.compile_air(SRC, "k", cache, macos_target="15.0")
    assert len({a1, a2, a3}) == 3 and all(p.is_file() for p in (a1, a2, a3))
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temp files
    assert xcrun.link_metallib([a1, a2], tmp_path / "x.metallib").read_text().count(".air") == 2


def test_cache_key_depends_on_compiler_version():
    flags = xcrun.compile_flags()
    assert xcrun.air_key(SRC, flags, "metal 1") != xcrun.air_key(SRC, flags, "metal 2")
    assert xcrun.air_key(SRC, flags, "v") == xcrun.air_key(SRC, list(flags), "v")


def test_missing_xcrun(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(xcrun.XcrunError) as e:
        xcrun.build_metallib({"k": SRC}, tmp_path / "w")
    msg = str(e.value)
    assert msg.startswith("xcrun exit code error") and "xcrun -sdk macosx metal -v" in msg
    assert "sudo xcode-select --switch /Applications/Xcode.app" in msg
    assert "xcodebuild -downloadComponent MetalToolchain" in msg
    assert isinstance(e.value, EnigmaError) and isinstance(e.value, RuntimeError)


@pytest.mark.parametrize("step", ["find", "metal", "metallib"])
def test_tool_failure_carries_stderr(fake, tmp_path, monkeypatch, step):
    monkeypatch.setenv("FAKE_XCRUN_FAIL", step)
    monkeypatch.setenv("FAKE_XCRUN_STDERR", f"error: fake {step} failure 42")
    with pytest.raises(xcrun.XcrunError) as e:
        xcrun.build_metallib({"k": SRC}, tmp_path / "w")
    assert str(e.value).startswith("xcrun exit code error")
    assert f"fake {step} failure 42" in str(e.value) and e.value.returncode == 1
    assert f"fake {step} failure 42" in e.value.stderr and "metal -v" in str(e.value)
    assert not (tmp_path / "w" / "kernels.metallib").exists()


def test_compile_error_in_source_is_reported(fake, tmp_path):
    with pytest.raises(xcrun.XcrunError, match="found no 'kernel void'"):
        xcrun.compile_air("int x;", "bad", None, out_dir=tmp_path)


def test_bad_source_names_are_refused(fake, tmp_path):
    with pytest.raises(ValueError, match="bad source name"):
        xcrun.build_metallib({"../evil": SRC}, tmp_path)


def test_concurrent_compiles_share_one_cache_entry(fake, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: xcrun.compile_air(SRC, "k", cache), range(4)))
    assert len(set(paths)) == 1 and paths[0].read_text().startswith("FAKE-AIR ")
    assert [p.name for p in cache.iterdir()] == [paths[0].name]  # no temp files left behind


@pytest.mark.parametrize("msl, target, std", [("2.3", "11.0", "macos-metal2.3"), ("3.0", "13.0", "metal3.0"),
                                              ("3.2", "15.0", "metal3.2"), ("4.0", "26.0", "metal4.0")])
def test_language_versions_are_spelled_as_apple_expects(fake, tmp_path, msl, target, std):
    from enigma.options import CompileOptions
    air = xcrun.compile_air(SRC, "k", None, out_dir=tmp_path, options=CompileOptions(msl, target))
    assert air.read_text().split()[2:4] == [f"-std={std}", f"-mmacosx-version-min={target}"]
    assert std in fake_xcrun.STD_VALUES


def test_options_that_do_not_match_are_refused_before_any_tool_runs(fake, tmp_path):
    with pytest.raises(ValueError, match="older than MSL 3.1 allows"):
        xcrun.compile_air(SRC, "k", None, out_dir=tmp_path, macos_target="13.0")
    assert calls(fake) == []


def test_link_keeps_the_deployment_target_of_the_air_files(fake, tmp_path):
    """A non-default target reaches every .air, and the library's OS floor (taken by `metallib` from
    the first .air) is that target, not the SDK's."""
    from enigma.options import CompileOptions
    opts = CompileOptions("3.1", "14.4")
    out = xcrun.build_metallib({"a": SRC, "b": SRC.replace("_a", "_b")}, tmp_path / "w", options=opts)
    assert out.read_text().splitlines()[0] == "FAKE-METALLIB macos=14.4"
    compiles = [a for a in calls(fake) if a[2] == "metal" and "-c" in a]
    assert len(compiles) == 2 and all("-mmacosx-version-min=14.4" in a for a in compiles)
    assert [a[2] for a in calls(fake) if a[2] in ("metal", "metallib") and "-o" in a][-1] == "metallib"


def test_compiler_warnings_are_shown_also_on_a_cache_hit(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_XCRUN_WARN", "unused variable 'v3'")
    cache = tmp_path / "cache"
    with pytest.warns(xcrun.XcrunWarning, match=r"k\.metal:2:5: warning: unused variable 'v3'"):
        xcrun.compile_air(SRC, "k", cache)
    monkeypatch.delenv("FAKE_XCRUN_WARN")
    n = len(calls(fake))
    with pytest.warns(xcrun.XcrunWarning, match="unused variable 'v3'"):
        xcrun.compile_air(SRC, "k", cache)
    assert len(calls(fake)) == n  # served from the cache, warnings included
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xcrun.compile_air(SRC + "\n", "k", cache)  # a clean compile warns about nothing


def test_build_metallib_through_the_cache_only(fake, tmp_path):
    cache = tmp_path / "c"
    a = xcrun.build_metallib({"k": SRC}, None, cache_dir=cache, name="k.metallib")
    assert a.parent == cache and a.name.startswith("k-") and a.suffix == ".metallib"
    n = len(calls(fake))
    assert xcrun.build_metallib({"k": SRC}, None, cache_dir=cache, name="k.metallib") == a
    assert len(calls(fake)) == n + 1  # only the probe: no compile, no link
    assert sorted(p.suffix for p in cache.iterdir()) == [".air", ".metallib"]
