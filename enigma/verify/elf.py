"""Read symbols of a shared library (64-bit little-endian ELF) to find threadgroup memory.

clang places each kernel-scope `threadgroup` array of a kernel library in .bss as a local object
named `_ZZ<kernel>E<name>`; the dispatcher fills those ranges with 0xFF before every threadgroup.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int  # address relative to the load base
    size: int
    kind: int  # STT_*: 1 object, 2 function
    local: bool
    section: str


def symbols(path: str | Path) -> list[Symbol]:
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    shstr = secs[shstrndx]

    def cstr(off: int) -> str:
        end = data.index(b"\0", off)
        return data[off:end].decode("utf-8", "replace")

    names = [cstr(shstr[4] + s[0]) for s in secs]
    out: list[Symbol] = []
    for s in secs:
        if s[1] != 2:  # SHT_SYMTAB
            continue
        strtab = secs[s[6]]
        for k in range(s[5] // 24):
            st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", data, s[4] + k * 24)
            sec = names[st_shndx] if 0 < st_shndx < len(names) else ""
            out.append(Symbol(cstr(strtab[4] + st_name), st_value, st_size, st_info & 0xF,
                              (st_info >> 4) == 0, sec))
    return out


def threadgroup_ranges(path: str | Path) -> tuple[list[tuple[int, int, str]], int | None]:
    """([(offset, size, name)] of the threadgroup arrays, offset of `enigma_entry`) of a kernel library."""
    syms = symbols(path)
    tg = [(s.value, s.size, s.name) for s in syms
          if s.kind == 1 and s.local and s.name.startswith("_ZZ") and s.section.startswith(".bss")]
    entry = next((s.value for s in syms if s.name == "enigma_entry" and s.kind == 2), None)
    return tg, entry
