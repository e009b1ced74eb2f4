"""Compile errors. Every error names the kernel author's file:line, shows the source line and says
how to fix it:

    path/to/kernels.py:12: <message>
        <source line>
      hint: <how to fix it>
"""
from __future__ import annotations

import collections
import linecache
import os
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep


class EnigmaError(Exception):
    """A kernel or launcher that cannot be compiled, located at the user's source line."""

    def __init__(self, message: str, file: str = "", line: int = 0, source_line: str | None = None,
                 hint: str = "") -> None:
        self.message, self.file, self.line, self.hint = message, file, line, hint
        if source_line is None and file and line:
            source_line = linecache.getline(file, line).strip()
        self.source_line = source_line or ""
        super().__init__(self.format())

    def format(self) -> str:
        out = f"{self.file}:{self.line}: {self.message}" if self.file else self.message
        if self.source_line:
            out += f"\n    {self.source_line}"
        if self.hint:
            out += f"\n  hint: {self.hint}"
        return out


class EnigmaTypeError(EnigmaError, TypeError):
    """Python values and traced (run-time) values mixed in a way that cannot work."""


def user_frame(depth: int = 1) -> tuple[str, int]:
    """(file, line) of the innermost caller outside the enigma package: the kernel author's line.
    Frames of generated code (`<string>`: dataclass methods, ...) are passed over when a frame of a real
    file follows."""
    f: FrameType | None = sys._getframe(depth)
    first: tuple[str, int] | None = None
    while f is not None:
        name = f.f_code.co_filename
        if not name.startswith(_PKG):
            if not _synthetic(name):
                return name, f.f_lineno
            first = first or (name, f.f_lineno)
        f = f.f_back
    return first or ("", 0)


def error_here(message: str, hint: str = "", cls: type[EnigmaError] = EnigmaError) -> EnigmaError:
    """An error located at the kernel author's current line (raise it)."""
    file, line = user_frame(2)
    return cls(message, file, line, hint=hint)


def _synthetic(path: str) -> bool:
    """A code object's file name that is no file (`<string>`, `<frozen ...>`, `<stdin>`)."""
    return path.startswith("<") and path.endswith(">")


def is_user_file(path: str) -> bool:
    """Whether `path` is the kernel author's source: a real file outside the enigma package."""
    return not path.startswith(_PKG) and not _synthetic(path)


def wrap_error(e: Exception, what: str) -> EnigmaError:
    """A Python exception raised while tracing, located at the innermost user line."""
    file, line = "", 0
    user = [(fs.filename, fs.lineno or 0) for fs in traceback.extract_tb(e.__traceback__)
            if is_user_file(fs.filename)]
    if user:
        file, line = user[-1]
    if isinstance(e, RecursionError) and user:  # the recursive call: the user line repeated most often
        file, line = collections.Counter(user).most_common(1)[0][0]
    cls = EnigmaTypeError if isinstance(e, TypeError) else EnigmaError
    hint = "this Python error was raised by the kernel code itself at trace time"
    if isinstance(e, RecursionError):
        hint = ("a function calls itself without end: helpers (@enigma.func too) are inlined at trace time, "
                "so recursion must stop on a Python (compile-time) condition; use a loop for run-time "
                "repetition")
    return cls(f"{type(e).__name__} while tracing {what}: {e}", file, line, hint=hint)


def def_line(fn: Callable[..., Any]) -> int:
    """The line of `def` (co_firstlineno is the first decorator's line)."""
    code = fn.__code__
    for line in range(code.co_firstlineno, code.co_firstlineno + 50):
        if linecache.getline(code.co_filename, line).lstrip().startswith(("def ", "async def ")):
            return line
    return code.co_firstlineno
