"""`[tool.enigma]`: the build settings both adapters read, as one field-documented model.

Each field of `Settings` carries its TOML key, type, choices, default (as the docs show it), help and
parser in its metadata (model: scikit-build-core's settings/skbuild_model.py). Validation
(`from_table`), "did you mean" for unknown keys and the table in docs/build.md (`markdown_table`,
tested against the file) all come from that one model.

The compile options among them (msl-version, macos-target, fast-math) are validated by
enigma.options.CompileOptions, which `Settings.options` returns; that module and enigma.cache are
loaded without the rest of enigma, so a warm build never imports the compiler.
"""
from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from enigma_build.leaf import enigma_leaf

if TYPE_CHECKING:
    from enigma.options import CompileOptions

EMIT_ONLY_CHOICES = ("auto", True, False)
VEC_WIDTH_CHOICES = (0, 1, 2, 4)  # enigma.options.VEC_WIDTHS: Metal vectors have at most 4 lanes
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A `[tool.enigma]` setting is unknown or has the wrong type or value."""


def _default_cache_dir() -> Path:
    return enigma_leaf("cache").cache_root()


def _key(name: str) -> str:
    return f"tool.enigma.{name}"


# ---------------------------------------------------------------------------------------------------
# parsers: (value, key, project root) -> the Settings value; ConfigError names the key

def _str_list(value: Any, key: str, root: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_key(key)} must be a list of strings, got {value!r}")
    return tuple(value)


def _bool(value: Any, key: str, root: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_key(key)} must be true or false, got {value!r}")
    return value


def _msl_version(value: Any, key: str, root: Path) -> str:
    versions = enigma_leaf("options").MSL_VERSIONS
    if not isinstance(value, str) or value not in versions:
        raise ConfigError(f"{_key(key)} must be one of {', '.join(map(repr, versions))}, got {value!r}")
    return value


def _macos_target(value: Any, key: str, root: Path) -> str:
    options = enigma_leaf("options")
    if not isinstance(value, str):
        raise ConfigError(f"{_key(key)} must be a macOS version string such as \"14.0\", got {value!r}")
    try:
        major, minor = options.parse_macos_target(value, _key(key))
    except options.OptionsError as e:
        raise ConfigError(str(e)) from None
    return f"{major}.{minor}"


def _emit_only_value(value: Any, source: str) -> bool | str:
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


def _emit_only(value: Any, key: str, root: Path) -> bool | str:
    return _emit_only_value(value, _key(key))


def _jobs(value: Any, key: str, root: Path) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_key(key)} must be a positive integer or \"auto\", got {value!r}")
    return value


def _cache_dir(value: Any, key: str, root: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{_key(key)} must be a path string, got {value!r}")
    return (root / os.path.expanduser(value)).resolve()


def _vec_width(value: Any, key: str, root: Path) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{_key(key)} must be a table of kernel name = lane width "
                          f"(e.g. saxpy = 4), got {value!r}")
    for k, v in value.items():
        if v not in VEC_WIDTH_CHOICES or isinstance(v, bool):
            raise ConfigError(f"{_key(key)}.{k} must be one of "
                              f"{', '.join(map(str, VEC_WIDTH_CHOICES))}, got {v!r}")
    return tuple(sorted(value.items()))


def setting(key: str, type: str, default: str, help: str, parse: Callable[[Any, str, Path], Any],
            *, choices: tuple[Any, ...] = (), value: Any = None, factory: Callable[[], Any] | None = None
            ) -> Any:
    """A Settings field documented for the model: TOML `key`, `type` and `default` as the docs show
    them, `help`, the `parse` function and the `choices` (when a fixed set)."""
    meta = {"key": key, "type": type, "default": default, "help": help, "parse": parse, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=value, metadata=meta)


def _toml(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one project. `emit_only` is already decided (ENIGMA_EMIT_ONLY, "auto" and
    a probe of the Metal toolchain on macOS); `emit_only_note` says why "auto" chose emit-only."""

    root: Path
    packages: tuple[str, ...] = setting(
        "packages", "list of strings",
        "the build backend's packages, else every top-level package in the root or `src/`",
        "import names of the packages to scan", _str_list, value=())
    paths: tuple[str, ...] = setting(
        "paths", "list of strings", "", "package directories to scan, relative to the project root "
        "(instead of `packages`)", _str_list, value=())
    include: tuple[str, ...] = setting(
        "include", "list of strings", '`["**/*.py"]`', "globs (relative to the project root) of files to "
        "scan", _str_list, value=("**/*.py",))
    exclude: tuple[str, ...] = setting(
        "exclude", "list of strings", "`[]`", "globs of files not to scan", _str_list, value=())
    msl_version: str = setting(
        "msl-version", "string", '`"3.1"`', "Metal Shading Language version (passed as Apple's "
        "`-std=`: `macos-metal2.3`, `metal3.0`, ...); a kernel using bfloat16 needs 3.1, float atomics "
        "3.0", _msl_version, choices=tuple(enigma_leaf("options").MSL_VERSIONS), value="3.1")
    macos_target: str = setting(
        "macos-target", "string", '`"14.0"`', "the oldest macOS the kernels run on: "
        "`-mmacosx-version-min` and the wheel's platform tag (`macosx_<major>_0`); at least what the "
        "MSL version needs", _macos_target, value="14.0")
    emit_only: bool = setting(
        "emit-only", "\"auto\" or boolean", '`"auto"`', "`true`: Metal source + portable IR only; "
        "`false`: also a .metallib (needs Xcode's Metal compiler); `\"auto\"`: a .metallib on macOS when "
        "the Metal compiler works, else emit-only with a warning. The environment variable "
        "`ENIGMA_EMIT_ONLY` (`1/0/true/false/auto`) overrides it", _emit_only,
        choices=EMIT_ONLY_CHOICES, value=True)
    fast_math: bool = setting(
        "fast-math", "boolean", "`false`", "`-ffast-math` instead of `-fno-fast-math`", _bool,
        value=False)
    jobs: int = setting(
        "jobs", "integer or \"auto\"", "CPU count", "`xcrun metal` processes run at once "
        "(`\"auto\"` = CPU count)", _jobs, factory=lambda: os.cpu_count() or 1)
    cache_dir: Path = setting(
        "cache-dir", "string", "`$ENIGMA_CACHE_DIR`, else the user cache directory "
        "(`~/.cache/enigma`, `~/Library/Caches/enigma`)", "where compiled packages and .air files are "
        "cached (a path relative to the project root)", _cache_dir, factory=_default_cache_dir)
    vec_width: tuple[tuple[str, int], ...] = setting(
        "vec-width", "table", "`{}`", "per-kernel vectorisation width, e.g. `{ saxpy = 4 }` "
        "(`enigma.compile(..., vec_width=4)`); a name that is no kernel of the project is an error",
        _vec_width, choices=VEC_WIDTH_CHOICES, value=())
    emit_only_note: str = field(default="", compare=False)

    def vec_width_of(self, kernel: str) -> int:
        return dict(self.vec_width).get(kernel, 0)

    @property
    def options(self) -> CompileOptions:
        """The compile options of every kernel (vec_width 0: `vec_width_of` gives a kernel's own)."""
        return enigma_leaf("options").CompileOptions(self.msl_version, self.macos_target, 0, self.fast_math)

    @property
    def platform_tag(self) -> str:
        """The platform tag of a wheel with a .metallib (enigma_build.tags)."""
        from enigma_build import tags

        return tags.platform_tag(self.macos_target)


def model() -> list[Any]:
    """The documented fields of Settings, in table order (dataclasses.Field objects)."""
    return [f for f in fields(Settings) if "key" in f.metadata]


KEYS = tuple(f.metadata["key"] for f in model())


def markdown_table() -> str:
    """The `[tool.enigma]` table of docs/build.md, made from the model."""
    rows = ["| key | type | default | choices | meaning |", "|---|---|---|---|---|"]
    for f in model():
        m = f.metadata
        choices = " ".join(f"`{_toml(c)}`" for c in m["choices"])
        rows.append(f"| `{m['key']}` | {m['type']} | {m['default']} | {choices} | {m['help']} |")
    return "\n".join(rows)


def unknown_key_message(key: str, valid: tuple[str, ...] = KEYS, prefix: str = "tool.enigma") -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {prefix}.{key}{hint}; valid keys: {', '.join(valid)}"


def probe_metal_compiler() -> str | None:
    """None when `xcrun metal` works here, else the toolchain's error (with the fix)."""
    from enigma.toolchain import xcrun

    try:
        xcrun.metal_version()
    except xcrun.XcrunError as e:
        return str(e)
    return None


NO_COMPILER = ("emit-only = \"auto\": the Metal compiler does not work here, so this wheel ships Metal "
               "source only (the runtime compiles it on first use). To ship a .metallib: install Xcode and "
               "`sudo xcode-select --switch /Applications/Xcode.app`, or on Xcode 26 and later run "
               "`xcodebuild -downloadComponent MetalToolchain`; diagnose with `xcrun -sdk macosx metal -v`. "
               "Set emit-only = true (or ENIGMA_EMIT_ONLY=1) to silence this warning.")


def resolve_emit_only(value: bool | str) -> bool:
    """`emit-only` after ENIGMA_EMIT_ONLY (which wins) and "auto" (True off macOS; on macOS, False
    when the Metal compiler works, else True with one warning naming the fix)."""
    return _resolve_emit_only(value)[0]


def _resolve_emit_only(value: bool | str) -> tuple[bool, str]:
    env = os.environ.get("ENIGMA_EMIT_ONLY")
    if env is not None and env.strip():
        value = _emit_only_value(env, "environment variable ENIGMA_EMIT_ONLY")
    if value != "auto":
        return bool(value), ""
    if sys.platform != "darwin":
        return True, ""
    problem = probe_metal_compiler()
    if problem is None:
        return False, ""
    first = problem.splitlines()[0]
    note = f"{NO_COMPILER}\n  ({first})"
    warnings.warn(note, stacklevel=3)
    return True, note


def from_table(root: Path | str, table: dict[str, Any] | None) -> Settings:
    """Validate a `[tool.enigma]` table (None or {} = all defaults) into Settings."""
    root = Path(root).resolve()
    table = dict(table or {})
    for k in sorted(table):
        if k not in KEYS:
            raise ConfigError(unknown_key_message(k))
    kw: dict[str, Any] = {"root": root}
    for f in model():
        key = f.metadata["key"]
        if key in table:
            kw[f.name] = f.metadata["parse"](table[key], key, root)
    kw["emit_only"], kw["emit_only_note"] = _resolve_emit_only(kw.get("emit_only", "auto"))
    options = enigma_leaf("options")
    try:
        options.CompileOptions(kw.get("msl_version", "3.1"), kw.get("macos_target", "14.0"), 0,
                               kw.get("fast_math", False))
    except options.OptionsError as e:
        raise ConfigError(f"{_key('msl-version')} = {kw.get('msl_version', '3.1')!r} with "
                          f"{_key('macos-target')} = {kw.get('macos_target', '14.0')!r}: {e}") from None
    settings = Settings(**kw)
    if not settings.emit_only:
        from enigma_build import tags

        note = tags.normalisation_note(settings.macos_target)
        if note:
            warnings.warn(note, stacklevel=2)
    return settings


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
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = set()
    for d in deps or []:
        try:
            names.add(canonicalize_name(Requirement(d).name))
        except InvalidRequirement:
            raise ConfigError(f"[project] dependencies: {d!r} is not a valid requirement") from None
    if canonicalize_name("enigma-runtime") in names:
        return True
    warnings.warn("enigma-runtime is not in [project] dependencies: the wheel's kernels are loaded by "
                  "enigma_runtime at run time and build hooks cannot add dependencies; add "
                  "\"enigma-runtime\" to [project] dependencies", stacklevel=2)
    return False
