"""hatchling build hook `enigma`: `[tool.hatch.build.hooks.enigma]` turns it on, `[tool.enigma]`
configures it. Wheels get `<pkg>/_enigma/` through force_include; editable installs get it written into
the source tree (where the editable package is imported from)."""
from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.plugin import hookimpl

from enigma_build import config, core, discover, tags

# keys hatchling itself reads from every hook table
_HATCH_KEYS = {"dependencies", "require-runtime-dependencies", "require-runtime-features",
               "enable-by-default"}


class EnigmaBuildHook(BuildHookInterface):
    PLUGIN_NAME = "enigma"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        extra = sorted(set(self.config) - _HATCH_KEYS)
        if extra:
            raise config.ConfigError(f"[tool.hatch.build.hooks.enigma] does not take {extra[0]!r}: put "
                                     f"enigma settings in [tool.enigma]")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            settings = config.load(self.root)
        for w in caught:
            self.app.display_warning(f"enigma: {w.message}")
        result = core.build(settings, self._package_hints(), log=self.app.display_info)
        if version == "editable":
            roots = {p.name: p.path for p in discover.find_packages(settings, self._package_hints())}
            core.write(result, lambda name: roots[name])
            return
        self._stage = Path(tempfile.mkdtemp(prefix="enigma-hatch-"))
        written = core.write(result, lambda name: self._stage / name)
        for pkg, paths in written.items():
            for path in paths:
                build_data["force_include"][str(path)] = f"{pkg}/_enigma/{path.name}"
            self._warn_stale_source_artifacts(settings, pkg)
        if result.has_metallib:
            build_data["pure_python"] = False
            build_data["infer_tag"] = False
            build_data["tag"] = tags.wheel_tag(settings.macos_target)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        stage = getattr(self, "_stage", None)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)

    def clean(self, versions: list[str]) -> None:
        """`hatch clean`: remove the artifacts editable builds wrote into the source tree."""
        try:
            settings = config.load(self.root)
            packages = discover.find_packages(settings, self._package_hints())
        except (config.ConfigError, discover.DiscoveryError):
            return
        for p in packages:
            shutil.rmtree(p.path / "_enigma", ignore_errors=True)

    def _package_hints(self) -> list[str]:
        """The wheel target's `packages` option, when the author set it."""
        try:
            pkgs = self.build_config.packages
        except AttributeError:
            return []
        return [Path(p).name for p in pkgs]

    def _warn_stale_source_artifacts(self, settings: config.Settings, pkg: str) -> None:
        """An editable install leaves <pkg>/_enigma/ in the source tree; warn if hatchling would ship it
        (only files that are not .gitignored/excluded, e.g. a removed kernel's .metal, would leak)."""
        for p in discover.find_packages(settings, self._package_hints()):
            d = p.path / "_enigma"
            if p.name != pkg or not d.is_dir():
                continue
            rel = [f.relative_to(self.root).as_posix() for f in d.iterdir()]
            if any(self.build_config.include_path(r) for r in rel):
                self.app.display_warning(
                    f"enigma: {d} (left by an editable install) would be packaged: add `_enigma/` to "
                    f".gitignore or to [tool.hatch.build] exclude")


@hookimpl
def hatch_register_build_hook() -> type[BuildHookInterface]:
    return EnigmaBuildHook
