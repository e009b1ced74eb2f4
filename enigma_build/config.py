"""`[tool.enigma]`: the build settings both adapters read, validated with errors that name the key."""
from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MSL_MIN_MACOS = {"2.3": (11, 0), "3.0": (13, 0), "3.1": (14, 0), "3.2": (15, 0), "4.0": (26, 0)}
EMIT_ONLY_CHOICES = ("auto", True, False)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A `[tool.enigma]` setting is unknown or has the wrong type or value."""


def _default_cache_dir() -> Path:
    env = os.environ.get("ENIGMA_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "enigma"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "enigma"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. `emit_only` is already decided (auto, env ENIGMA_EMIT_ONLY and platform)."""

    root: Path
    packages: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    include: tuple[str, ...] = ("**/*.py",)
    exclude: tuple[str, ...] = ()
    msl_version: str = "3.1"
    macos_target: str = "14.0"
    emit_only: bool = True
    fast_math: bool = False
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    vec_width: tuple[tuple[str, int], ...] = ()  # (kernel name, lane width) from [tool.enigma.vec-width]

    def vec_width_of(self, kernel: str) -> int:
        return dict(self.vec_width).get(kernel, 0)

    @property
    def platform_tag(self) -> str:
        """The wheel platform tag in step with `-mmacosx-version-min` (only used with a .metallib)."""
        major, minor = self.macos_target.split(".")
        return f"macosx_{major}_{minor}_arm64"


def _key(name: str) -> str:
    return f"tool.enigma.{name}"


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_key(name)} must be a list of strings, got {value!r}")
    return tuple(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_key(name)} must be true or false, got {value!r}")
    return value


def _msl_version(value: Any) -> str:
    if not isinstance(value, str) or value not in MSL_MIN_MACOS:
        raise ConfigError(f"{_key('msl-version')} must be one of {', '.join(map(repr, MSL_MIN_MACOS))}, "
                          f"got {value!r}")
    return value


def _macos_target(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)?", value):
        raise ConfigError(f"{_key('macos-target')} must be a macOS version string such as \"14.0\", "
                          f"got {value!r}")
    return value if "." in value else value + ".0"


def _emit_only(value: Any, source: str) -> bool | str:
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "auto":
            return "auto"
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    elif isinstance(value, bool):
        return value
    raise ConfigError(f"{source} must be one of \"auto\", true, false, got {value!r}")


def _jobs(value: Any) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_key('jobs')} must be a positive integer or \"auto\", got {value!r}")
    return value


def _vec_width(value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{_key('vec-width')} must be a table of kernel name = lane width "
                          f"(e.g. saxpy = 4), got {value!r}")
    for k, v in value.items():
        if v not in (0, 1, 2, 4, 8) or isinstance(v, bool):
            raise ConfigError(f"{_key('vec-width')}.{k} must be one of 0, 1, 2, 4, 8, got {v!r}")
    return tuple(sorted(value.items()))


_KEYS = {
    "packages": _str_list, "paths": _str_list, "include": _str_list, "exclude": _str_list,
    "msl-version": None, "macos-target": None, "emit-only": None, "fast-math": _bool, "jobs": None,
    "cache-dir": None, "vec-width": None,
}


def resolve_emit_only(value: bool | str) -> bool:
    """`emit-only` after ENIGMA_EMIT_ONLY (which wins) and "auto" (True off macOS)."""
    env = os.environ.get("ENIGMA_EMIT_ONLY")
    if env is not None and env.strip():
        value = _emit_only(env, "environment variable ENIGMA_EMIT_ONLY")
    if value == "auto":
        return sys.platform != "darwin"
    return bool(value)


def from_table(root: Path | str, table: dict[str, Any] | None) -> Settings:
    """Validate a `[tool.enigma]` table (None or {} = all defaults) into Settings."""
    root = Path(root).resolve()
    table = dict(table or {})
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {_key(unknown[0])}; valid keys: {', '.join(_KEYS)}")
    kw: dict[str, Any] = {"root": root}
    for name in ("packages", "paths", "include", "exclude"):
        if name in table:
            kw[name] = _str_list(name, table[name])
    if "fast-math" in table:
        kw["fast_math"] = _bool("fast-math", table["fast-math"])
    if "msl-version" in table:
        kw["msl_version"] = _msl_version(table["msl-version"])
    if "macos-target" in table:
        kw["macos_target"] = _macos_target(table["macos-target"])
    if "jobs" in table:
        kw["jobs"] = _jobs(table["jobs"])
    if "cache-dir" in table:
        if not isinstance(table["cache-dir"], str) or not table["cache-dir"]:
            raise ConfigError(f"{_key('cache-dir')} must be a path string, got {table['cache-dir']!r}")
        kw["cache_dir"] = (root / os.path.expanduser(table["cache-dir"])).resolve()
    if "vec-width" in table:
        kw["vec_width"] = _vec_width(table["vec-width"])
    kw["emit_only"] = resolve_emit_only(_emit_only(table.get("emit-only", "auto"), _key("emit-only")))
    msl = kw.get("msl_version", "3.1")
    target = kw.get("macos_target", "14.0")
    need = MSL_MIN_MACOS[msl]
    if tuple(int(p) for p in target.split(".")) < need:
        raise ConfigError(f"{_key('macos-target')} = {target!r} is older than MSL {msl} allows "
                          f"(it needs macOS {need[0]}.{need[1]} or newer); raise macos-target or lower "
                          f"msl-version")
    return Settings(**kw)


def read_pyproject(root: Path | str) -> dict[str, Any]:
    path = Path(root) / "pyproject.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None


def has_enigma_table(root: Path | str) -> bool:
    return "enigma" in read_pyproject(root).get("tool", {})


def load(root: Path | str) -> Settings:
    """Settings from `<root>/pyproject.toml`; warns when enigma-runtime is not a dependency."""
    data = read_pyproject(root)
    table = data.get("tool", {}).get("enigma", {})
    if not isinstance(table, dict):
        raise ConfigError("[tool.enigma] must be a table")
    check_runtime_dependency(data.get("project", {}))
    return from_table(root, table)


def check_runtime_dependency(project: dict[str, Any]) -> bool:
    """Warn (and return False) when `enigma-runtime` is not in [project] dependencies."""
    deps = project.get("dependencies")
    if deps is None and "dependencies" in project.get("dynamic", []):
        return True  # declared dynamically (setup.cfg / setup.py): cannot tell here
    names = {re.split(r"[\s;<>=!~\[(@]", d.strip(), maxsplit=1)[0].lower().replace("_", "-")
             for d in deps or []}
    if "enigma-runtime" in names:
        return True
    warnings.warn("enigma-runtime is not in [project] dependencies: the wheel's kernels are loaded by "
                  "enigma_runtime at run time and build hooks cannot add dependencies; add "
                  "\"enigma-runtime\" to [project] dependencies", stacklevel=2)
    return False
