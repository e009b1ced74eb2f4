"""The one cache directory of Enigma: the build's package cache (`packages/`), the .air cache (`air/`)
and enigma.verify's compiled kernels (`verify/`) all live below `cache_root()`.

`$ENIGMA_CACHE_DIR` wins when set (read here and nowhere else); otherwise the user cache directory of
the platform from `platformdirs` (`~/Library/Caches/enigma` on macOS, `$XDG_CACHE_HOME/enigma` or
`~/.cache/enigma` on Linux, `%LOCALAPPDATA%\\enigma\\Cache` on Windows). When that default is not
writable (a read-only home in a build sandbox), a per-user directory under the system's temporary
directory is used instead; an explicit `$ENIGMA_CACHE_DIR` that cannot be created is an error.

This module imports nothing of enigma (enigma_build loads it on a warm build without the compiler).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "ENIGMA_CACHE_DIR"
KINDS = ("packages", "air", "verify")


def cache_root() -> Path:
    """`$ENIGMA_CACHE_DIR`, else the platform's user cache directory for "enigma" (not created)."""
    env = os.environ.get(ENV)
    if env:
        return Path(os.path.expanduser(env))
    import platformdirs

    return Path(platformdirs.user_cache_dir("enigma", appauthor=False))


def cache_dir(kind: str, *, root: str | os.PathLike[str] | None = None, create: bool = False) -> Path:
    """The cache directory of `kind` ("packages", "air" or "verify") below `root` (default
    `cache_root()`). With `create`, the directory exists on return (see the module docstring for the
    fallback when the default location is not writable)."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; one of {', '.join(KINDS)}")
    base = Path(root) if root is not None else cache_root()
    d = base / kind
    if not create:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        if root is not None or os.environ.get(ENV):
            raise
        uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
        d = Path(tempfile.gettempdir()) / f"enigma-cache-{uid}" / kind
        d.mkdir(parents=True, exist_ok=True)
    return d
