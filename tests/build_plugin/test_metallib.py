"""macOS builds through the FAKE xcrun of tests/toolchain (there is no Mac here): one .air per kernel
specialisation, one .metallib per package, the platform tag in step with -mmacosx-version-min, and a
warm rebuild that calls no compiler."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from buildutil import (  # noqa: F401
    check_manifest,
    fixture_example_copy,
    fixture_private_cache,
    fixture_st_copy,
    hatch_build,
    st_build,
    wheel_files,
    wheel_tag,
)

_spec = importlib.util.spec_from_file_location(
    "fake_xcrun", Path(__file__).resolve().parents[1] / "toolchain" / "fake_xcrun.py")
fake_xcrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake_xcrun)


@pytest.fixture
def xcrun_log(tmp_path, monkeypatch):
    """The fake xcrun on PATH, ENIGMA_EMIT_ONLY=0; returns a reader of the argv lines it was called with."""
    log = fake_xcrun.activate(tmp_path, monkeypatch)
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "0")

    def calls(kind: str) -> list[list[str]]:
        lines = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
        if kind == "compile":
            return [a for a in lines if a[2:3] == ["metal"] and "-c" in a]
        return [a for a in lines if a[2:3] == ["metallib"]]
    return calls


def test_fake_mac_build_one_air_per_kernel_one_metallib(example_copy, tmp_path, xcrun_log, capsys):
    whl = hatch_build(example_copy, tmp_path / "a")
    assert wheel_tag(whl) == "py3-none-macosx_14_0_universal2"
    files = wheel_files(whl)
    man = check_manifest(files, "example_pkg")
    assert man["metallib"] == "kernels.metallib" and man["macos_target"] == "14.0"
    specs = [s["kernel_name"] for v in man["kernels"].values() for s in v]
    compiles = xcrun_log("compile")
    assert len(compiles) == len(specs) == 18  # 7 kernels (8: vector_add twice), 7 jits (10 kernels)
    assert all("-mmacosx-version-min=14.0" in c and "-std=metal3.1" in c and "-fno-fast-math" in c
               for c in compiles)
    assert len(xcrun_log("metallib")) == 1
    lib = files["example_pkg/_enigma/kernels.metallib"].decode().splitlines()
    assert lib[0] == "FAKE-METALLIB macos=14.0" and len(lib) == 1 + len(specs)
    # the second build: package cache hit, no compiler or linker call, the same wheel
    capsys.readouterr()
    again = hatch_build(example_copy, tmp_path / "b")
    assert len(xcrun_log("compile")) == 18 and len(xcrun_log("metallib")) == 1
    assert again.read_bytes() == whl.read_bytes()
    assert "kernels from the cache" in "".join(capsys.readouterr())


def test_edited_kernel_recompiles_only_its_air(example_copy, tmp_path, xcrun_log):
    hatch_build(example_copy, tmp_path / "a")
    k = example_copy / "src/example_pkg/kernels.py"
    k.write_text(k.read_text().replace("c[i] = a[i] + b[i]", "c[i] = a[i] - b[i]"))
    hatch_build(example_copy, tmp_path / "b")
    assert len(xcrun_log("compile")) == 18 + 4  # vector_add float32 and float16, and the jits add, add_f16
    assert len(xcrun_log("metallib")) == 2


def test_macos_target_drives_flags_and_tag(example_copy, tmp_path, xcrun_log):
    pp = example_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace('macos-target = "14.0"', 'macos-target = "15.0"'))
    whl = hatch_build(example_copy, tmp_path / "a")
    assert wheel_tag(whl) == "py3-none-macosx_15_0_universal2"
    assert all("-mmacosx-version-min=15.0" in c for c in xcrun_log("compile"))
    lib = wheel_files(whl)["example_pkg/_enigma/kernels.metallib"].decode()
    assert lib.startswith("FAKE-METALLIB macos=15.0\n")  # the link keeps the .air files' floor


def test_minor_target_keeps_its_flag_and_gets_a_major_tag(example_copy, tmp_path, xcrun_log, capsys):
    pp = example_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace('msl-version = "3.1"\nmacos-target = "14.0"',
                                         'msl-version = "3.2"\nmacos-target = "015.4"'))
    whl = hatch_build(example_copy, tmp_path / "a")
    said = capsys.readouterr()
    assert "the wheel is tagged macosx_15_0 (pip accepts only macosx_<major>_0" in said.out + said.err
    assert wheel_tag(whl) == "py3-none-macosx_15_0_universal2"
    compiles = xcrun_log("compile")
    assert compiles and all("-mmacosx-version-min=15.4" in c and "-std=metal3.2" in c for c in compiles)
    man = check_manifest(wheel_files(whl), "example_pkg")
    assert man["macos_target"] == "15.4" and man["msl_version"] == "3.2"
    assert {s["msl_version"] for v in man["kernels"].values() for s in v} == {"3.2"}


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
@pytest.mark.parametrize("target, host, installs", [
    ("14.0", (14, 0), True), ("14.0", (14, 5), True), ("14.0", (15, 3), True), ("14.0", (26, 0), True),
    ("14.0", (13, 6), False), ("15.0", (14, 5), False), ("14.2", (14, 5), True), ("11.0", (11, 0), True)])
def test_metallib_wheels_install_on_both_architectures(arch, target, host, installs):
    """pip's view (packaging.tags.mac_platforms): a metallib wheel installs on arm64 and x86_64 Macs
    (Intel, Rosetta) from its target's major version on, never before."""
    from packaging import tags as ptags

    from enigma_build import tags
    plat = tags.platform_tag(target)
    assert (plat in set(ptags.mac_platforms(host, arch))) is installs
    assert tags.wheel_tag(target) == f"py3-none-{plat}"


def test_setuptools_fake_mac_wheel_tag(st_copy, tmp_path, xcrun_log):
    whl = st_build(st_copy, tmp_path / "dist")
    assert whl.name.endswith("-py3-none-macosx_14_0_universal2.whl")
    assert wheel_tag(whl) == "py3-none-macosx_14_0_universal2"
    assert "st_pkg/_enigma/kernels.metallib" in wheel_files(whl)


def test_toolchain_failure_fails_the_build_with_the_fix(example_copy, tmp_path, xcrun_log, monkeypatch):
    from enigma_build import core
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "find")
    with pytest.raises(Exception) as e:
        hatch_build(example_copy, tmp_path / "a")
    msg = str(e.value)
    assert isinstance(e.value, core.BuildError)
    assert "xcrun exit code error" in msg and "xcode-select --switch" in msg and "ENIGMA_EMIT_ONLY=1" in msg


def test_missing_toolchain_fails_before_any_kernel_compiles(example_copy, xcrun_log, monkeypatch):
    from enigma_build import config, core
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "find")
    lines: list[str] = []
    with pytest.raises(core.BuildError, match="xcrun exit code error"):
        core.build(config.load(example_copy), log=lines.append)
    assert lines == []  # nothing was traced or compiled first


def test_unknown_kernel_in_vec_width_is_an_error(example_copy, monkeypatch):
    from enigma_build import config, core
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "1")
    pp = example_copy / "pyproject.toml"
    pp.write_text(pp.read_text().replace("vec-width = { saxpy = 4, axpy = 4 }", "vec-width = { saxpyy = 4 }"))
    with pytest.raises(config.ConfigError, match="no kernel named tool.enigma.vec-width.saxpyy "
                                                 r"\(did you mean 'saxpy'\?\)"):
        core.build(config.load(example_copy), log=lambda _: None)


def test_two_concurrent_builds_share_the_cache_safely(example_copy, tmp_path, xcrun_log):
    import os
    import subprocess
    import sys
    procs = [subprocess.Popen([sys.executable, "-m", "enigma_build", "build", str(example_copy), "-o",
                               str(tmp_path / f"out{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=os.environ.copy()) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    a, b = (tmp_path / "out0/example_pkg/_enigma", tmp_path / "out1/example_pkg/_enigma")
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert all((a / n.name).read_bytes() == (b / n.name).read_bytes() for n in a.iterdir())
    assert (a / "kernels.metallib").read_text().startswith("FAKE-METALLIB macos=14.0")
    assert not list((tmp_path / "cache").rglob("*.tmp")) and not list((tmp_path / "cache").rglob(".tmp-*"))


def test_auto_on_a_mac_without_metal_compiler_builds_emit_only_with_one_warning(
        example_copy, tmp_path, xcrun_log, monkeypatch, capsys):
    """emit-only = "auto" on macOS (sys.platform patched; the FAKE xcrun answers like Xcode 26 before
    its Metal Toolchain download): the wheel still builds, emit-only, and says how to get a .metallib."""
    monkeypatch.delenv("ENIGMA_EMIT_ONLY")
    monkeypatch.setattr("sys.platform", "darwin")
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "version")
    monkeypatch.setenv("FAKE_XCRUN_STDERR", "error: error: cannot execute tool 'metal' due to missing Metal "
                                            "Toolchain; use: xcodebuild -downloadComponent MetalToolchain")
    whl = hatch_build(example_copy, tmp_path / "a")
    assert wheel_tag(whl) == "py3-none-any"
    assert check_manifest(wheel_files(whl), "example_pkg")["metallib"] is None
    said = "".join(capsys.readouterr())
    assert said.count("the Metal compiler does not work here") == 1
    assert "xcodebuild -downloadComponent MetalToolchain" in said and "xcode-select --switch" in said
    assert xcrun_log("compile") == []
    monkeypatch.delenv("FAKE_XCRUN_FAIL")
    from enigma.toolchain import xcrun
    xcrun.forget_versions()
    assert wheel_tag(hatch_build(example_copy, tmp_path / "b")) == "py3-none-macosx_14_0_universal2"


def test_compiler_warnings_reach_the_build_output(example_copy, tmp_path, xcrun_log, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_XCRUN_WARN", "unused variable 'v9'")
    hatch_build(example_copy, tmp_path / "a")
    said = "".join(capsys.readouterr())
    assert "enigma: warning: xcrun metal: warnings compiling enigma_kernel_saxpy.metal:" in said
    assert said.count("warning: unused variable 'v9' [-Wunused-variable]") == 18  # one per .air
