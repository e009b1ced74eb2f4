"""enigma-build: precompile a package's Enigma kernels into its wheel (hatchling and setuptools)."""
from enigma_build.config import ConfigError, Settings
from enigma_build.core import BuildError, BuildResult, build, write
from enigma_build.discover import DiscoveryError

__all__ = ["BuildError", "BuildResult", "ConfigError", "DiscoveryError", "Settings", "build", "write"]
