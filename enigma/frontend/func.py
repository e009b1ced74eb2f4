"""`@enigma.func`: a device helper called from kernel bodies, inlined at trace time."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from enigma.frontend import control
from enigma.frontend.rewrite import rewrite


class DeviceFunction:
    """`@enigma.func`: a helper called from kernel bodies, with the same control-flow rewrite as a kernel
    (plain helpers also work, but only with Python-valued `if`/`while`)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._rewritten: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._rewritten is None:
            self._rewritten = rewrite(self.fn, control, keep_defaults=True)[0]
        return self._rewritten(*args, **kwargs)


def func(fn: Callable[..., Any]) -> DeviceFunction:
    """`@enigma.func`: a device helper whose `if`/`for range`/`while` on traced values compile to IR."""
    return DeviceFunction(fn)
