"""Wheel platform tags for wheels that carry a .metallib, computed and checked with `packaging.tags`.

- pip accepts only `macosx_<major>_0_<arch>` for macOS 11 and later (`packaging.tags.mac_platforms`
  never yields `macosx_14_2`), so a `macos-target` of "14.2" is tagged `macosx_14_0`, with a note;
  delocate normalises the same way (`_calculate_minimum_wheel_name`). The .air files keep the full
  target (`-mmacosx-version-min=14.2`).
- A .metallib holds AIR, Apple's GPU-independent form (the GPU code is made on the user's Mac when a
  pipeline is created), and the wheel holds no Mach-O binary: one wheel serves Apple-silicon and Intel
  Macs alike. It is tagged `universal2`, which pip accepts on arm64 and x86_64 (including x86_64
  Pythons under Rosetta), so neither falls back to building the sdist.
"""
from __future__ import annotations

ARCH = "universal2"
INTERPRETER, ABI = "py3", "none"


def _parse(macos_target: str) -> tuple[int, int]:
    from enigma_build.leaf import enigma_leaf

    return enigma_leaf("options").parse_macos_target(macos_target, "tool.enigma.macos-target")


def platform_tag(macos_target: str) -> str:
    """`macosx_<major>_0_universal2` for `macos_target` (macOS 11 or later), checked to be a tag pip
    accepts on arm64 and x86_64 Macs running that version."""
    from packaging import tags

    major, minor = _parse(macos_target)
    tag = f"macosx_{major}_0_{ARCH}"
    for arch in ("arm64", "x86_64"):
        if tag not in tags.mac_platforms((major, minor), arch):  # pragma: no cover - packaging changed
            raise ValueError(f"{tag} is not a platform tag pip accepts on macOS {major}.{minor} {arch}")
    return tag


def wheel_tag(macos_target: str) -> str:
    """The full wheel tag, e.g. `py3-none-macosx_14_0_universal2` (parsed back with packaging.tags)."""
    from packaging import tags

    text = f"{INTERPRETER}-{ABI}-{platform_tag(macos_target)}"
    (parsed,) = tags.parse_tag(text)
    return str(parsed)


def normalisation_note(macos_target: str) -> str | None:
    """A note when the tag cannot say the exact target (minor version not 0), else None."""
    major, minor = _parse(macos_target)
    if minor == 0:
        return None
    return (f"macos-target = \"{macos_target}\": the wheel is tagged macosx_{major}_0 (pip accepts only "
            f"macosx_<major>_0 tags for macOS 11 and later, as delocate normalises), so pip installs it "
            f"on macOS {major}.0 too; the .metallib still needs macOS {major}.{minor} (set macos-target "
            f"= \"{major}.0\" to run on every macOS {major})")
