"""setuptools plugin: `finalize_distribution_options` appends the `build_enigma` command to `build`
when the project's pyproject.toml has `[tool.enigma]` (nothing happens otherwise; no setup.py needed).

build_enigma writes `<pkg>/_enigma/` into build_lib (reported by get_outputs/get_output_mapping); in
editable mode (strict and lenient) it writes into the source tree, where the package is imported from.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from setuptools import Command

from enigma_build import config, core, discover


def _root(dist: Any) -> Path:
    return Path(getattr(dist, "src_root", None) or ".").resolve()


def finalize_distribution_options(dist: Any) -> None:
    root = _root(dist)
    if not config.has_enigma_table(root):
        return
    build = dist.get_command_class("build")
    if not any(name == "build_enigma" for name, _ in build.sub_commands):
        # the build class is shared by every distribution of the process: the predicate keeps the
        # command off for projects without [tool.enigma]
        build.sub_commands = [*build.sub_commands, ("build_enigma", _wanted)]
    dist.cmdclass["bdist_wheel"] = _platform_wheel(dist.get_command_class("bdist_wheel"))


def _wanted(cmd: Any) -> bool:
    return config.has_enigma_table(_root(cmd.distribution))


def _platform_wheel(base: type) -> type:
    """bdist_wheel tagged py3-none-macosx_<major>_0_universal2 when build_enigma linked a .metallib
    (enigma_build.tags)."""
    if getattr(base, "_enigma", False):
        return base

    class bdist_wheel(base):  # type: ignore[misc, valid-type]
        _enigma = True

        def get_tag(self) -> tuple[str, str, str]:
            plat = getattr(self.distribution, "enigma_platform_tag", None)
            return ("py3", "none", plat) if plat else super().get_tag()

    return bdist_wheel


class build_enigma(Command):
    """Compile the project's Enigma kernels into <package>/_enigma/."""

    description = "compile Enigma kernels (@enigma.kernel) into the packages"
    user_options: list[tuple[str, str | None, str]] = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False
        self._outputs: list[str] = []
        self._mapping: dict[str, str] = {}

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self) -> None:
        root = _root(self.distribution)
        if not config.has_enigma_table(root):
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = config.load(root)
        for w in caught:
            self.announce(f"enigma: {w.message}", level=3)
            print(f"WARNING enigma: {w.message}")
        hints = [p for p in (self.distribution.packages or []) if "." not in p]
        result = core.build(settings, hints, log=print)
        # read by bdist_wheel.get_tag, which runs after the build
        self.distribution.enigma_platform_tag = settings.platform_tag if result.has_metallib else None
        build_lib = self.build_lib
        assert build_lib is not None
        written = core.write(result, lambda name: Path(build_lib, name))
        self._outputs = [str(p) for paths in written.values() for p in paths]
        self._mapping = {}
        if self.editable_mode:
            # lenient mode imports the package from the source tree: the artifacts go there; strict
            # mode links build_lib outputs to these source-tree files (get_output_mapping)
            roots = {p.name: p.path for p in discover.find_packages(settings, hints)}
            in_source = core.write(result, lambda name: roots[name])
            for pkg, paths in in_source.items():
                for lib, src in zip(written[pkg], paths):
                    self._mapping[str(lib)] = str(src)

    def get_outputs(self) -> list[str]:
        return list(self._outputs)

    def get_output_mapping(self) -> dict[str, str]:
        """Editable mode: build_lib artifact -> its copy in the source tree; otherwise generated files
        have no source."""
        return dict(self._mapping)

    def get_source_files(self) -> list[str]:
        return []
