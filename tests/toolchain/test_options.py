"""CompileOptions (enigma/options.py), the one cache directory (enigma/cache.py) and how enigma.compile
carries both: to the signature, the manifest, xcrun (a FAKE xcrun: tests/toolchain/fake_xcrun.py) and
the caches."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import fake_xcrun  # noqa: E402
import kernels_bf16  # noqa: E402
import zoo  # noqa: E402

import enigma  # noqa: E402
from enigma import cache  # noqa: E402
from enigma.errors import EnigmaError  # noqa: E402
from enigma.options import MSL_VERSIONS, CompileOptions, OptionsError  # noqa: E402


def test_options_are_frozen_validated_and_normalised():
    o = CompileOptions(macos_target="014.00")
    assert o.macos_target == "14.0" and o.msl_version == "3.1" and o.vec_width == 0 and not o.fast_math
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.msl_version = "3.2"  # type: ignore[misc]
    assert CompileOptions("4.0", "26").std == "metal4.0"
    assert CompileOptions("2.3", "11.0").std == "macos-metal2.3"
    for bad, match in [({"msl_version": "3.3"}, "msl_version must be one of .2.3., .2.4., .3.0., .3.1."),
                       ({"msl_version": "3.2"}, "older than MSL 3.2 allows .it needs macOS 15.0"),
                       ({"macos_target": "10.15"}, "older than macOS 11.0"),
                       ({"macos_target": "14.0rc1"}, "MAJOR.MINOR"),
                       ({"vec_width": -1}, "vec_width must be 0"), ({"fast_math": 1}, "fast_math")]:
        with pytest.raises(OptionsError, match=match):
            CompileOptions(**bad)


def test_hash_is_stable_across_processes_and_covers_every_field():
    o = CompileOptions()
    code = "from enigma.options import CompileOptions; print(CompileOptions().hash())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == o.hash() and len(o.hash()) == 64
    assert CompileOptions(macos_target="014.0").hash() == o.hash()
    variants = [o.replace(msl_version="3.2", macos_target="15.0"), o.replace(macos_target="14.1"),
                o.replace(vec_width=4), o.replace(fast_math=True)]
    assert len({v.hash() for v in variants} | {o.hash()}) == 5
    assert {f.name for f in dataclasses.fields(CompileOptions)} == set(o.as_dict())


def test_compile_carries_options_to_signature_and_manifest(tmp_path):
    ck = enigma.compile(zoo.vector_add, msl_version="3.2", macos_target="15.0")
    assert ck.options == CompileOptions("3.2", "15.0")
    assert ck.signature["msl_version"] == "3.2"
    man = json.loads((ck.save(tmp_path / "pkg") / "manifest.json").read_text())
    assert man["msl_version"] == "3.2" and man["macos_target"] == "15.0"
    same = enigma.compile(zoo.vector_add, options=CompileOptions("3.2", "15.0"))
    assert same.options == ck.options and same.metal_source == ck.metal_source
    # the keyword arguments override the options object
    assert enigma.compile(zoo.vector_add, options=ck.options, fast_math=True).options.fast_math is True
    with pytest.raises(ValueError, match="msl_version must be one of"):
        enigma.compile(zoo.vector_add, msl_version="5.0")
    with pytest.raises(ValueError, match="vec_width must be 0"):
        enigma.compile(zoo.vector_add, vec_width=-2)


def test_printer_gets_the_msl_version():
    """The MSL version reaches the printer (its header names it) and the source hash with it; the
    printer's table of versions is the options' table."""
    from enigma.backends import msl
    src = enigma.compile(zoo.vector_add, msl_version="3.2", macos_target="15.0").metal_source
    assert "Targets Metal Shading Language 3.2 (macOS 15+)" in src.split("#include")[0]
    assert "Metal Shading Language 3.1 (macOS 14+)" in enigma.compile(zoo.vector_add).metal_source
    h = [enigma.compile(zoo.vector_add, msl_version=v, macos_target="15").signature["source_hash"]
         for v in ("3.1", "3.2")]
    assert h[0] != h[1]
    assert msl.MSL_VERSIONS == {v: str(m.macos[0]) for v, m in MSL_VERSIONS.items()}


def test_versions_the_emitter_cannot_target_are_refused_with_the_reason():
    ok = enigma.compile(kernels_bf16.bf_scale)
    assert ok.options.msl_version == "3.1" and "bfloat" in ok.metal_source
    with pytest.raises(EnigmaError, match=r"uses bfloat16, which Metal Shading Language has only from "
                                          r"version 3.1 \(macOS 14\); the target is MSL 3.0") as e:
        enigma.compile(kernels_bf16.bf_scale, msl_version="3.0", macos_target="13.0")
    assert e.value.file.endswith("kernels_bf16.py") and e.value.line == 8
    with pytest.raises(EnigmaError, match=r"atomic_float .* needs MSL 3.0"):
        enigma.compile(zoo.sum_reduce, msl_version="2.3", macos_target="11.0")
    assert enigma.compile(zoo.vector_add, msl_version="2.3", macos_target="11.0").signature["msl_version"] \
        == "2.3"
    assert set(MSL_VERSIONS) == {"2.3", "2.4", "3.0", "3.1", "3.2", "4.0"}


def test_name_gives_the_metal_function_its_name():
    ck = enigma.compile(zoo.vector_add, name="add_half")
    assert ck.kernel_name == "enigma_kernel_add_half" and ck.signature["name"] == "add_half"
    assert ck.signature["kernel_name"] == ck.ir_json["kernel_name"] == "enigma_kernel_add_half"
    assert "kernel void enigma_kernel_add_half(" in ck.metal_source
    assert "enigma_kernel_vector_add" not in ck.metal_source
    with pytest.raises(ValueError, match="name must be a Python identifier"):
        enigma.compile(zoo.vector_add, name="not a name")


def test_cache_dir_env_wins_and_default_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir("air") == tmp_path / "c" / "air"
    assert cache.cache_dir("verify", create=True).is_dir()
    monkeypatch.delenv("ENIGMA_CACHE_DIR")
    import platformdirs
    assert cache.cache_root() == Path(platformdirs.user_cache_dir("enigma", appauthor=False))
    with pytest.raises(ValueError, match="unknown cache kind"):
        cache.cache_dir("other")


def test_unwritable_default_cache_falls_back_but_an_explicit_one_fails(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.delenv("ENIGMA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # platformdirs' default on Linux: not writable
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    d = cache.cache_dir("air", create=True)
    assert d.is_dir() and d.is_relative_to(tmp_path / "tmp")
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(blocker / "enigma"))
    with pytest.raises(OSError):
        cache.cache_dir("air", create=True)
    with pytest.raises(OSError):
        cache.cache_dir("air", root=blocker, create=True)


def test_every_cache_lives_under_one_directory(tmp_path, monkeypatch):
    from enigma.verify import clang
    from enigma_build import config
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "one"))
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "1")
    assert clang.cache_dir() == tmp_path / "one" / "verify"
    assert config.from_table(tmp_path, {}).cache_dir == tmp_path / "one"


@pytest.fixture
def fake_mac(tmp_path, monkeypatch):
    log = fake_xcrun.activate(tmp_path, monkeypatch)
    monkeypatch.setattr("sys.platform", "darwin")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    return log, tmp


def _calls(log: Path, tool: str) -> list[list[str]]:
    lines = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    return [a for a in lines if a[2:3] == [tool] and "-o" in a]


def test_compile_on_macos_uses_the_air_cache_and_leaves_no_temporary_directory(fake_mac, tmp_path):
    log, tmp = fake_mac
    ck = enigma.compile(zoo.vector_add, macos_target="14.3")  # emit_only=None: macOS compiles
    assert ck.metallib_bytes is not None and ck.metallib_bytes.startswith(b"FAKE-METALLIB macos=14.3")
    assert Path(ck.metallib_path).is_file() and Path(ck.metallib_path).is_relative_to(tmp_path / "cache")
    compiles = _calls(log, "metal")
    assert len(compiles) == 1 and "-mmacosx-version-min=14.3" in compiles[0]
    assert list(tmp.iterdir()) == []  # every temporary directory was removed
    again = enigma.compile(zoo.vector_add, macos_target="14.3")
    assert len(_calls(log, "metal")) == 1 and len(_calls(log, "metallib")) == 1  # all from the cache
    assert again.metallib_bytes == ck.metallib_bytes and list(tmp.iterdir()) == []
    enigma.compile(zoo.vector_add, macos_target="14.4")
    assert len(_calls(log, "metal")) == 2  # another target is another .air


def test_compile_shows_xcrun_warnings(fake_mac, monkeypatch):
    from enigma.toolchain.xcrun import XcrunWarning
    monkeypatch.setenv("FAKE_XCRUN_WARN", "unused variable 'v7'")
    with pytest.warns(XcrunWarning, match=r"enigma_kernel_vector_add\.metal:2:5: warning: unused variable"):
        enigma.compile(zoo.vector_add, emit_only=False)


def test_compile_asked_for_a_metallib_still_raises_the_xcrun_error(fake_mac, monkeypatch):
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "version")
    monkeypatch.setenv("FAKE_XCRUN_STDERR", "error: cannot execute tool 'metal' due to missing Metal "
                                            "Toolchain")
    with pytest.raises(EnigmaError, match="xcrun exit code error") as e:
        enigma.compile(zoo.vector_add, emit_only=False)
    assert "missing Metal Toolchain" in str(e.value) and "xcrun -sdk macosx metal -v" in str(e.value)


def test_the_fake_refuses_a_std_spelling_apple_refuses(tmp_path):
    src = tmp_path / "k.metal"
    src.write_text("kernel void k() {}\n")
    p = subprocess.run([sys.executable, fake_xcrun.__file__, "-sdk", "macosx", "metal", "-std=metal2.3",
                        "-mmacosx-version-min=11.0", "-fno-fast-math", "-Wall", "-c", str(src), "-o",
                        str(tmp_path / "k.air")], capture_output=True, text=True)
    assert p.returncode == 64 and "bad arguments" in p.stderr
