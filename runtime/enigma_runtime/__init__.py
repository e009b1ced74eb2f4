"""enigma-runtime: load prebuilt Enigma kernels by name and run them (Metal on macOS, CPU elsewhere)."""
__version__ = "0.1.0"
