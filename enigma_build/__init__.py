"""enigma-build: precompile a package's Enigma kernels into its wheel (hatchling and setuptools)."""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from enigma_build.config import ConfigError, Settings
from enigma_build.core import BuildError, BuildResult, build, write
from enigma_build.discover import DiscoveryError

try:
    __version__ = _dist_version("enigma-build")  # pyproject.toml's version, the one definition
except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
    __version__ = "unknown"

__all__ = ["BuildError", "BuildResult", "ConfigError", "DiscoveryError", "Settings", "build", "write"]
