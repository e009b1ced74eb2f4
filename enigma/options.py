"""CompileOptions: every option that changes what a compile produces, in one frozen object.

`enigma.compile` builds one from its keyword arguments and enigma-build from `[tool.enigma]`; it goes
to the passes (`vec_width`), the MSL printer (`msl_version`: the header line and version-dependent
spellings), the signature and the manifest (`msl_version`, `macos_target`), xcrun (`compile_flags()`)
and every cache key (`hash()`, stable across processes and machines). Model: Triton's compiler, whose
options object is hashed into each cache key.

Metal Shading Language versions follow the OS that runs them (Apple's MSL specification, "Metal
Shading Language versions"; MTLLanguageVersion):

| MSL | macOS | adds (what the emitter uses)   | `metal` flag          |
|-----|-------|--------------------------------|-----------------------|
| 2.3 | 11    | simd-group functions           | `-std=macos-metal2.3` |
| 2.4 | 12    |                                | `-std=macos-metal2.4` |
| 3.0 | 13    | `atomic_float`                 | `-std=metal3.0`       |
| 3.1 | 14    | `bfloat`                       | `-std=metal3.1`       |
| 3.2 | 15    |                                | `-std=metal3.2`       |
| 4.0 | 26    |                                | `-std=metal4.0`       |

Apple's compiler spells versions before 3.0 per platform (`macos-metal2.3`) and unified from 3.0 on
(`metal3.0`). A kernel that uses a feature its MSL version lacks is refused with the reason
(`requirement`). This module imports nothing of enigma: enigma-build reads it on a warm build without
loading the compiler.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_MSL_VERSION = "3.1"
DEFAULT_MACOS_TARGET = "14.0"
VEC_WIDTHS = (0, 1, 2, 4)  # Metal vectors have at most 4 lanes (passes/vectorize.py refuses others)


@dataclass(frozen=True)
class MslVersion:
    version: str
    macos: tuple[int, int]  # the oldest macOS that runs it
    std: str  # the value of Apple's `metal -std=`

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))


MSL_VERSIONS: dict[str, MslVersion] = {v.version: v for v in (
    MslVersion("2.3", (11, 0), "macos-metal2.3"),
    MslVersion("2.4", (12, 0), "macos-metal2.4"),
    MslVersion("3.0", (13, 0), "metal3.0"),
    MslVersion("3.1", (14, 0), "metal3.1"),
    MslVersion("3.2", (15, 0), "metal3.2"),
    MslVersion("4.0", (26, 0), "metal4.0"),
)}
# what the emitted Metal may use, and the MSL version that brought it
FEATURES = {"bfloat": ("3.1", "bfloat (bfloat16 values)"),
            "atomic_float": ("3.0", "atomic_float (atomic operations on float32)")}


class OptionsError(ValueError):
    """An option has a value the compiler cannot target; the message says which values it can."""


def parse_macos_target(value: Any, what: str = "macos_target") -> tuple[int, int]:
    """A macOS version as (major, minor), parsed with `packaging.version` (so "014.00" is 14.0);
    refuses anything but one or two release numbers from macOS 11 on (MSL 2.3, Apple silicon)."""
    from packaging.version import InvalidVersion, Version

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise OptionsError(f"{what} must be a macOS version string such as \"14.0\", got {value!r}")
    try:
        v = Version(str(value))
    except InvalidVersion:
        raise OptionsError(f"{what} must be a macOS version string such as \"14.0\", got {value!r}") from None
    if v.epoch or v.pre or v.post or v.dev or v.local or len(v.release) > 2:
        raise OptionsError(f"{what} must be a macOS version \"MAJOR.MINOR\" such as \"14.0\", got {value!r}")
    major, minor = (tuple(v.release) + (0,))[:2]
    if (major, minor) < (11, 0):
        raise OptionsError(f"{what} = {value!r} is older than macOS 11.0, the oldest macOS Enigma's "
                           f"Metal (MSL 2.3) runs on")
    return major, minor


@dataclass(frozen=True)
class CompileOptions:
    """The options of one compile. Values are validated and normalised on construction
    (`macos_target="014.00"` becomes "14.0"); `OptionsError` names the option and the valid values."""

    msl_version: str = DEFAULT_MSL_VERSION
    macos_target: str = DEFAULT_MACOS_TARGET
    vec_width: int = 0
    fast_math: bool = False

    def __post_init__(self) -> None:
        if self.msl_version not in MSL_VERSIONS:
            raise OptionsError(f"msl_version must be one of {', '.join(map(repr, MSL_VERSIONS))} (the MSL "
                               f"versions the emitter targets), got {self.msl_version!r}")
        major, minor = parse_macos_target(self.macos_target)
        object.__setattr__(self, "macos_target", f"{major}.{minor}")
        need = MSL_VERSIONS[self.msl_version].macos
        if (major, minor) < need:
            raise OptionsError(f"macos_target {self.macos_target!r} is older than MSL {self.msl_version} "
                               f"allows (it needs macOS {need[0]}.{need[1]} or newer); raise macos_target "
                               f"or lower msl_version")
        if isinstance(self.vec_width, bool) or not isinstance(self.vec_width, int) or self.vec_width < 0:
            # which widths a kernel can take is the vectorize pass's to say (at the kernel's line)
            raise OptionsError(f"vec_width must be 0 (scalar) or a lane count such as 4, "
                               f"got {self.vec_width!r}")
        if not isinstance(self.fast_math, bool):
            raise OptionsError(f"fast_math must be True or False, got {self.fast_math!r}")

    @property
    def macos(self) -> tuple[int, int]:
        major, minor = self.macos_target.split(".")
        return int(major), int(minor)

    @property
    def std(self) -> str:
        """Apple's spelling of the language version: `metal -std=<std>`."""
        return MSL_VERSIONS[self.msl_version].std

    def compile_flags(self) -> list[str]:
        """The flags of `xcrun -sdk macosx metal ... -c` for these options."""
        return [f"-std={self.std}", f"-mmacosx-version-min={self.macos_target}",
                "-ffast-math" if self.fast_math else "-fno-fast-math", "-Wall"]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """sha256 hex of the options as canonical JSON: the same options give the same hash in every
        process and on every machine (part of every cache key)."""
        data = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"CompileOptions\0{data}".encode()).hexdigest()

    def replace(self, **changes: Any) -> CompileOptions:
        return dataclasses.replace(self, **changes)

    def refusal(self, features: Iterable[str]) -> str | None:
        """Why the emitted Metal cannot target `msl_version` when it uses `features` (names of
        FEATURES), or None when it can."""
        have = MSL_VERSIONS[self.msl_version].key
        for f in sorted(features):
            need, what = FEATURES[f]
            if have < MSL_VERSIONS[need].key:
                return f"{what} needs MSL {need} or newer (macOS {MSL_VERSIONS[need].macos[0]}+), but " \
                       f"msl_version is {self.msl_version}"
        return None
