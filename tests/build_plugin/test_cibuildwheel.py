"""example_project's [tool.cibuildwheel] recipe, read by cibuildwheel itself (it runs on Linux for
--print-build-identifiers and for reading options): one macOS build, no delocate repair, and the
environment that keeps the .metallib required and the deployment target in step."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from buildutil import EXAMPLE

from enigma_build.config import tomllib  # tomllib, or tomli before Python 3.11


def _cibuildwheel():
    try:
        import cibuildwheel.options as options
    except ImportError as e:  # the test extra installs it; same policy as tests/conftest.py need_tool
        if os.environ.get("CI") == "true":
            pytest.fail(f"cibuildwheel is not installed ({e}) -- under CI=true a missing tool is a failure")
        pytest.skip(f"cibuildwheel is not installed ({e})")
    return options


def _build_options(project: Path, identifier: str):
    options = _cibuildwheel()
    args = options.CommandLineArguments.defaults()
    args.platform, args.package_dir, args.config_file = "macos", Path("."), ""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        opts = options.compute_options(platform="macos", command_line_arguments=args, env={})
        return opts.build_options(identifier)
    finally:
        os.chdir(cwd)


def test_cibuildwheel_accepts_the_recipe_and_builds_once():
    _cibuildwheel()
    exe = shutil.which("cibuildwheel", path=str(Path(sys.executable).parent)) or "cibuildwheel"
    p = subprocess.run([exe, "--print-build-identifiers", "--platform", "macos"], cwd=EXAMPLE,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["cp312-macosx_arm64"]


def test_delocate_is_not_asked_to_repair(tmp_path):
    b = _build_options(EXAMPLE, "cp312-macosx_arm64")
    assert b.repair_command == ""
    # without the recipe cibuildwheel would run delocate, which rejects a wheel with no Mach-O binary
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    assert "delocate-wheel" in _build_options(bare, "cp312-macosx_arm64").repair_command


def test_environment_requires_the_metallib_and_matches_the_target():
    b = _build_options(EXAMPLE, "cp312-macosx_arm64")
    env = b.environment.as_dictionary(prev_environment={})
    target = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["tool"]["enigma"]["macos-target"]
    assert env["ENIGMA_EMIT_ONLY"] == "0" and env["MACOSX_DEPLOYMENT_TARGET"] == target
