"""[tool.enigma] validation: defaults, every key, and errors that name the key and the choices."""
from __future__ import annotations

import os
import warnings

import pytest

from enigma_build import config
from enigma_build.config import ConfigError, from_table


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)
    s = from_table(tmp_path, None)
    assert s.msl_version == "3.1" and s.macos_target == "14.0"
    assert s.emit_only is True  # auto: not macOS here
    assert s.jobs == (os.cpu_count() or 1)
    assert s.include == ("**/*.py",) and s.exclude == ()
    assert s.platform_tag == "macosx_14_0_universal2"


def test_every_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)
    s = from_table(tmp_path, {"packages": ["pkg"], "paths": ["src/pkg"], "include": ["pkg/*.py"],
                              "exclude": ["**/test_*.py"], "msl-version": "3.2", "macos-target": "15",
                              "emit-only": False, "fast-math": True, "jobs": 3, "cache-dir": ".c"})
    assert s.packages == ("pkg",) and s.paths == ("src/pkg",) and s.exclude == ("**/test_*.py",)
    assert s.msl_version == "3.2" and s.macos_target == "15.0" and s.platform_tag == "macosx_15_0_universal2"
    assert s.emit_only is False and s.fast_math is True and s.jobs == 3
    assert s.cache_dir == (tmp_path / ".c").resolve()


@pytest.mark.parametrize("table, needle", [
    ({"msl_version": "3.1"}, "unknown key tool.enigma.msl_version (did you mean 'msl-version'?); valid keys: "
                             "packages, paths"),
    ({"fastmath": True}, "unknown key tool.enigma.fastmath (did you mean 'fast-math'?)"),
    ({"colour": 1}, "unknown key tool.enigma.colour; valid keys"),
    ({"macos-target": "14.2b1"}, 'tool.enigma.macos-target must be a macOS version "MAJOR.MINOR"'),
    ({"macos-target": "10.15"}, "tool.enigma.macos-target = '10.15' is older than macOS 11.0"),
    ({"macos-target": "fourteen"}, "tool.enigma.macos-target must be a macOS version string"),
    ({"vec-width": {"saxpy": 8}}, "tool.enigma.vec-width.saxpy must be one of 0, 1, 2, 4, got 8"),
    ({"msl-version": "3.3"},
     "tool.enigma.msl-version must be one of '2.3', '2.4', '3.0', '3.1', '3.2', '4.0'"),
    ({"msl-version": 3.1}, "tool.enigma.msl-version must be one of"),
    ({"macos-target": 14}, "tool.enigma.macos-target must be a macOS version string"),
    ({"emit-only": "maybe"}, 'tool.enigma.emit-only must be one of "auto", true, false'),
    ({"jobs": 0}, 'tool.enigma.jobs must be a positive integer or "auto", got 0'),
    ({"jobs": True}, "tool.enigma.jobs must be a positive integer"),
    ({"fast-math": "yes"}, "tool.enigma.fast-math must be true or false, got 'yes'"),
    ({"packages": "pkg"}, "tool.enigma.packages must be a list of strings, got 'pkg'"),
    ({"exclude": [1]}, "tool.enigma.exclude must be a list of strings"),
    ({"cache-dir": 5}, "tool.enigma.cache-dir must be a path string"),
    ({"msl-version": "3.2", "macos-target": "14.0"}, "older than MSL 3.2 allows (it needs macOS 15.0"),
])
def test_errors_name_the_key(tmp_path, table, needle):
    with pytest.raises(ConfigError) as e:
        from_table(tmp_path, table)
    assert needle in str(e.value)


@pytest.mark.parametrize("env, table, expected", [
    ("1", {"emit-only": False}, True), ("false", {"emit-only": True}, False),
    ("auto", {}, True), ("", {"emit-only": False}, False),
])
def test_env_overrides_emit_only(tmp_path, monkeypatch, env, table, expected):
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", env)
    assert from_table(tmp_path, table).emit_only is expected


def test_bad_env_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "sometimes")
    with pytest.raises(ConfigError, match="environment variable ENIGMA_EMIT_ONLY must be one of"):
        from_table(tmp_path, {})


def test_load_warns_without_runtime_dependency(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["numpy"]\n'
                                             '[tool.enigma]\nfast-math = true\n')
    with pytest.warns(UserWarning, match="enigma-runtime is not in \\[project\\] dependencies"):
        s = config.load(tmp_path)
    assert s.fast_math is True
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "p"\n'
                                             'dependencies = ["Enigma_Runtime>=0.1; python_version>\'3\'"]\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.load(tmp_path)


def test_has_enigma_table(tmp_path):
    assert not config.has_enigma_table(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.other]\nx = 1\n")
    assert not config.has_enigma_table(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.enigma]\n")
    assert config.has_enigma_table(tmp_path)


def test_macos_target_is_parsed_as_a_version(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "1")
    assert from_table(tmp_path, {"macos-target": "014.00"}).macos_target == "14.0"
    assert from_table(tmp_path, {"macos-target": "15"}).macos_target == "15.0"
    s = from_table(tmp_path, {"macos-target": "14.2"})
    assert s.macos_target == "14.2" and s.platform_tag == "macosx_14_0_universal2"
    assert s.options.compile_flags()[1] == "-mmacosx-version-min=14.2"


def test_minor_target_warns_about_the_normalised_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "0")
    with pytest.warns(UserWarning, match=r"tagged macosx_14_0 \(pip accepts only macosx_<major>_0"):
        from_table(tmp_path, {"macos-target": "14.2"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_table(tmp_path, {"macos-target": "14.0"})


def test_settings_model_documents_every_key():
    keys = [f.metadata["key"] for f in config.model()]
    assert keys == list(config.KEYS) and len(keys) == len(set(keys)) == 11
    for f in config.model():
        m = f.metadata
        assert m["type"] and m["help"] and callable(m["parse"]), m["key"]
    # choices come from what the compiler can target
    from enigma.options import MSL_VERSIONS
    msl = next(f for f in config.model() if f.metadata["key"] == "msl-version")
    assert msl.metadata["choices"] == tuple(MSL_VERSIONS)


def test_docs_table_is_the_model():
    from buildutil import REPO
    doc = (REPO / "docs" / "build.md").read_text()
    assert config.markdown_table() in doc, "regenerate with: python -c 'from enigma_build import " \
        "config; print(config.markdown_table())'"


def test_every_documented_choice_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_EMIT_ONLY", "1")
    for f in config.model():
        for choice in f.metadata["choices"]:
            key = f.metadata["key"]
            table = {key: choice}
            if key == "msl-version":
                table["macos-target"] = "26.0"
            elif key == "vec-width":
                table = {key: {"k": choice}}
            from_table(tmp_path, table)


@pytest.mark.parametrize("dep", ["Enigma.Runtime", "enigma_runtime>=0.1",
                                 "ENIGMA-runtime[cpu] ; python_version>'3'"])
def test_runtime_dependency_names_are_canonicalised(dep):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.check_runtime_dependency({"dependencies": ["numpy", dep]})


def test_emit_only_auto_on_macos_probes_the_toolchain(tmp_path, monkeypatch):
    """"auto" on macOS: a .metallib when the (FAKE) Metal compiler works, else emit-only with one
    warning that names the fix."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "fake_xcrun", Path(__file__).resolve().parents[1] / "toolchain" / "fake_xcrun.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    fake.activate(tmp_path, monkeypatch)
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)
    monkeypatch.setattr("sys.platform", "darwin")
    assert from_table(tmp_path, {}).emit_only is False
    monkeypatch.setenv("FAKE_XCRUN_FAIL", "version")
    monkeypatch.setenv("FAKE_XCRUN_STDERR", "error: cannot execute tool 'metal' due to missing Metal "
                                            "Toolchain; use: xcodebuild -downloadComponent MetalToolchain")
    from enigma.toolchain import xcrun
    xcrun.forget_versions()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = from_table(tmp_path, {})
    assert s.emit_only is True
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "ships Metal source only" in msg and "xcodebuild -downloadComponent MetalToolchain" in msg
    assert "xcode-select --switch" in msg and "emit-only = true" in msg
    # an explicit emit-only = false keeps failing loudly (no silent fallback)
    assert from_table(tmp_path, {"emit-only": False}).emit_only is False
