"""CPU executor: values in the launch's thread space.

`Geo`, the 6-d thread space (grid z, y, x, block z, y, x) of a launch; `Aff`, an int32
index affine in the builtins kept symbolic, and its arithmetic (folding comparisons against uniform
values).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import BY_NAME, DType, int32
from .dtypes import bf16_from_bits as bf16_from_bits  # re-exported: the bfloat16 helpers live in dtypes
from .dtypes import bf16_round as bf16_round
from .dtypes import bf16_to_bits as bf16_to_bits
from .errors import IRError

I32 = np.dtype(np.int32)


def wrap32(x: int) -> int:
    return int32.wrap(x)


def parse_type(t: Any, where: str) -> tuple[DType, int]:
    """"float32" -> (float32, 0); "float32x4" -> (float32, 4)."""
    if not isinstance(t, str):
        raise IRError(f"{where}: type {t!r} is not a string")
    if t in BY_NAME:
        return BY_NAME[t], 0
    base, _, lanes = t.rpartition("x")
    if base in BY_NAME and lanes.isdigit() and int(lanes) > 1:
        return BY_NAME[base], int(lanes)
    raise IRError(f"{where}: unknown type {t!r}; expected a dtype ({', '.join(BY_NAME)}) or <dtype>x<lanes>")


def value_dtype(dt: DType) -> np.dtype:
    """The numpy dtype a value of `dt` is computed in (bfloat16 in float32)."""
    return dt.value_np


# ---------------------------------------------------------------------------------------------------
# the launch's thread space

class Geo:
    """grid (x, y, z) threadgroups of block (x, y, z) threads as the 6-d space (gz, gy, gx, bz, by, bx)."""

    def __init__(self, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
        self.grid, self.block = grid, block
        self.full = (grid[2], grid[1], grid[0], block[2], block[1], block[0])
        self.ngroups, self.tpg = grid[0] * grid[1] * grid[2], block[0] * block[1] * block[2]
        self.ar = [np.arange(n, dtype=np.int64).reshape([n if i == ax else 1 for i in range(6)])
                   for ax, n in enumerate(self.full)]
        gz, gy, gx = self.full[:3]
        self.group_coefs = (gy * gx, gx, 1, 0, 0, 0)  # linear threadgroup id
        self.gid = self.ar[0] * (gy * gx) + self.ar[1] * gx + self.ar[2]
        bz, by, bx = self.full[3:]
        self.ltid = (self.ar[3] * (by * bx) + self.ar[4] * bx + self.ar[5])  # linear thread id in group
        self.spans: dict[tuple[int, ...], tuple[int, int]] = {}  # Aff coefficients -> (min, max) offsets

    def lane(self, flat_pos: int) -> str:
        """'thread (x, y, z) of threadgroup (x, y, z)' for a position in the C-order thread space."""
        gz, gy, gx, bz, by, bx = np.unravel_index(flat_pos, self.full)
        return f"thread ({bx}, {by}, {bz}) of threadgroup ({gx}, {gy}, {gz})"


class Aff:
    """An int32 value c + sum(k[i] * index along axis i) of the thread space, kept symbolic."""

    __slots__ = ("c", "k", "geo", "_arr", "_range")

    def __init__(self, c: int, k: tuple[int, ...], geo: Geo) -> None:
        self.c, self.k, self.geo = c, k, geo
        self._arr: Any = None  # the int32 lanes, built on demand
        self._range: tuple[int, int] | None = None

    def range(self) -> tuple[int, int]:
        if self._range is None:
            spans = self.geo.spans.get(self.k)
            if spans is None:  # the coefficients repeat across loop iterations; only c changes
                lo = hi = 0
                for ki, n in zip(self.k, self.geo.full):
                    if ki and n > 1:
                        span = ki * (n - 1)
                        lo, hi = lo + min(0, span), hi + max(0, span)
                spans = self.geo.spans[self.k] = (lo, hi)
            self._range = (self.c + spans[0], self.c + spans[1])
        return self._range

    def exact(self) -> bool:
        """No lane wraps around int32, so the affine form is the value itself."""
        lo, hi = self.range()
        return -(2**31) <= lo and hi < 2**31

    def array(self) -> Any:
        if self._arr is None:
            acc: Any = None
            for ax, (ki, n) in enumerate(zip(self.k, self.geo.full)):
                if ki and n > 1:
                    term = self.geo.ar[ax] * ki
                    acc = term if acc is None else acc + term
            self._arr = np.int32(wrap32(self.c)) if acc is None else (acc + self.c).astype(np.int32)
        return self._arr


def mk_aff(c: int, k: tuple[int, ...], geo: Geo) -> Any:
    """An Aff, or a uniform int32 when no coefficient is left; k is 0 on axes of length 1."""
    if not any(k):
        return np.int32(wrap32(c))
    if max(k) >= 2**31 or min(k) < -(2**31):
        k = tuple(wrap32(x) for x in k)
        if not any(k):
            return np.int32(wrap32(c))
    return Aff(c if -(2**31) <= c < 2**31 else wrap32(c), k, geo)


def as_matrix(v: Any) -> Any:
    return v.array() if type(v) is Aff else v


def uniform_int(v: Any) -> int | None:
    t = type(v)
    if t is Aff:
        return None
    if t is int:
        return v
    if v.ndim == 0:
        return int(v)
    return int(v.reshape(-1)[0]) if v.size == 1 else None


# ---------------------------------------------------------------------------------------------------
# affine index arithmetic

AFF_CMP = {"lt": lambda lo, hi, u: (hi < u, lo >= u), "le": lambda lo, hi, u: (hi <= u, lo > u),
        "gt": lambda lo, hi, u: (lo > u, hi <= u), "ge": lambda lo, hi, u: (lo >= u, hi < u),
        "eq": lambda lo, hi, u: (lo == hi == u, u < lo or u > hi),
        "ne": lambda lo, hi, u: (u < lo or u > hi, lo == hi == u)}
_SWAP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq", "ne": "ne"}


def aff_binary(name: str, a: Any, b: Any, geo: Geo) -> Any:
    """add/sub/mul/compare with an Aff operand, kept symbolic when possible (None: materialise)."""
    if name in AFF_CMP:
        if type(a) is not Aff:
            a, b, name = b, a, _SWAP[name]
        u = uniform_int(b)
        if u is None or not a.exact():
            return None
        lo, hi = a.range()
        yes, no = AFF_CMP[name](lo, hi, u)
        return np.bool_(True) if yes else np.bool_(False) if no else None
    ua, ub = uniform_int(a), uniform_int(b)
    if name == "mul":
        if type(a) is Aff and ub is not None:
            return mk_aff(a.c * ub, tuple(k * ub for k in a.k), geo)
        if type(b) is Aff and ua is not None:
            return mk_aff(b.c * ua, tuple(k * ua for k in b.k), geo)
        return None
    sign = -1 if name == "sub" else 1
    if type(a) is Aff and type(b) is Aff:
        return mk_aff(a.c + sign * b.c, tuple(x + sign * y for x, y in zip(a.k, b.k)), geo)
    if type(a) is Aff and ub is not None:  # the common `index + uniform`: coefficients unchanged
        c = a.c + sign * ub
        return Aff(c if -(2**31) <= c < 2**31 else wrap32(c), a.k, geo)
    if type(b) is Aff and ua is not None:
        return mk_aff(ua + sign * b.c, tuple(sign * k for k in b.k), geo)
    return None


