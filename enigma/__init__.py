"""Enigma: Apple-GPU (Metal) compute kernels written in Python."""
__version__ = "0.1.0"
