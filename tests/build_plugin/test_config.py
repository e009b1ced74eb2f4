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
    assert s.platform_tag == "macosx_14_0_arm64"


def test_every_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ENIGMA_EMIT_ONLY", raising=False)
    s = from_table(tmp_path, {"packages": ["pkg"], "paths": ["src/pkg"], "include": ["pkg/*.py"],
                              "exclude": ["**/test_*.py"], "msl-version": "3.2", "macos-target": "15",
                              "emit-only": False, "fast-math": True, "jobs": 3, "cache-dir": ".c"})
    assert s.packages == ("pkg",) and s.paths == ("src/pkg",) and s.exclude == ("**/test_*.py",)
    assert s.msl_version == "3.2" and s.macos_target == "15.0" and s.platform_tag == "macosx_15_0_arm64"
    assert s.emit_only is False and s.fast_math is True and s.jobs == 3
    assert s.cache_dir == (tmp_path / ".c").resolve()


@pytest.mark.parametrize("table, needle", [
    ({"msl_version": "3.1"}, "unknown key tool.enigma.msl_version; valid keys: packages, paths"),
    ({"msl-version": "3.3"}, "tool.enigma.msl-version must be one of '2.3', '3.0', '3.1', '3.2', '4.0'"),
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
