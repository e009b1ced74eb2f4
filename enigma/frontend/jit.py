"""@enigma.jit: host code run once at compile time (on numpy arrays or TensorSpecs) to choose one
kernel launch (its arguments, grid and block); `launch_of` is what enigma.compile traces."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from enigma_runtime.dtypes import DType

from enigma.errors import EnigmaError, user_frame
from enigma.frontend.grid import Expr
from enigma.frontend.kernel import KernelFunction, Launch, _jit, _wrap, def_line, host_value


class JitFunction:
    """Host code run once at compile time (on numpy arrays or TensorSpecs) that launches one kernel."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn, self.name = fn, fn.__name__

    def __repr__(self) -> str:
        return f"<enigma.jit {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        file, line = user_frame(2)
        raise EnigmaError(f"an @enigma.jit function ({self.name}) is not called directly", file, line,
                          hint=f"compile it: ck = enigma.compile({self.name}, *arrays); then run ck(...) "
                               "with "
                               "the kernel's arguments")

    def run(self, *args: Any) -> Launch:
        """Run the host function on `args` (arrays / TensorSpecs / numbers) and return its launch."""
        sig = inspect.signature(self.fn)
        try:
            sig.bind(*args)
        except TypeError as e:
            raise EnigmaError(f"@jit function {self.name!r} got the wrong arguments: {e}",
                              self.fn.__code__.co_filename, def_line(self.fn),
                              hint=f"pass its arguments to enigma.compile: enigma.compile({self.name}, "
                                   f"{', '.join(sig.parameters)})") from None
        names = list(sig.parameters)
        hosts = []
        for k, a in enumerate(args):
            label = names[k] if k < len(names) else f"arg{k}"
            # a dtype stands for a scalar known only at launch (a build has no values): symbolic
            hosts.append(Expr("arg", name=label) if isinstance(a, DType) else host_value(a, label))
        launches: list[Launch] = []
        _jit.stack.append(launches)
        try:
            self.fn(*hosts)
        except EnigmaError:
            raise
        except Exception as e:  # noqa: BLE001 - relocated to the user's line
            raise _wrap(e, f"@jit function {self.name!r}") from e
        finally:
            _jit.stack.pop()
        if len(launches) != 1:
            file, line = self.fn.__code__.co_filename, def_line(self.fn)
            raise EnigmaError(f"@jit function {self.name!r} launched {len(launches)} kernels; it must launch "
                              "exactly one", file, line,
                              hint="call kernel(args...).launch(grid=..., block=...) once")
        return launches[0]


def jit(fn: Callable[..., Any]) -> JitFunction:
    """`@enigma.jit`: host function that launches one kernel; compiled with enigma.compile(fn, *args)."""
    return JitFunction(fn)


def launch_of(fn: Any, args: tuple) -> Launch:
    if isinstance(fn, JitFunction):
        return fn.run(*args)
    if isinstance(fn, KernelFunction):
        return fn.launch_from_annotations(args)
    file, line = user_frame(3)
    raise EnigmaError(f"enigma.compile expects an @enigma.kernel or @enigma.jit function, got "
                      f"{type(fn).__name__}", file, line, hint="decorate the function with @enigma.kernel")


