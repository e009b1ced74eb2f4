"""Read what the dispatcher needs from Metal source text: the kernel's parameters (buffer indices and
builtin attributes), the `[[...]]` attributes (a misspelled one is an error naming its .metal line),
and whether the kernel synchronises (barriers, simd-group functions) and so must run as fibers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# builtin attributes of kernel parameters -> name of the field in the dispatcher's per-thread Ctx
# (vector builtins) or of a scalar field
BUILTINS_VEC = {
    "thread_position_in_grid": "tpig", "thread_position_in_threadgroup": "tpitg",
    "threadgroup_position_in_grid": "tgpig", "threads_per_threadgroup": "tptg",
    "dispatch_threads_per_threadgroup": "tptg", "threadgroups_per_grid": "tgpg",
    "threads_per_grid": "tpg", "grid_size": "tpg",
}
BUILTINS_SCALAR = {
    "thread_index_in_threadgroup": "tiitg", "thread_index_in_simdgroup": "tiisg",
    "simdgroup_index_in_threadgroup": "sgitg", "simdgroups_per_threadgroup": "sgptg",
    "dispatch_simdgroups_per_threadgroup": "sgptg", "threads_per_simdgroup": "tpsg",
    "thread_execution_width": "tpsg", "quadgroup_index_in_threadgroup": "qgitg",
    "thread_index_in_quadgroup": "tiiqg", "quadgroups_per_threadgroup": "qgptg",
    "dispatch_quadgroups_per_threadgroup": "qgptg",
}
ZERO_BUILTINS = {"grid_origin"}
# attributes with an argument (name -> needs an integer argument)
RESOURCE_ATTRS = {"buffer", "threadgroup", "texture", "sampler"}
OTHER_ATTRS = {
    "kernel", "max_total_threads_per_threadgroup", "maybe_unused", "likely", "unlikely", "fallthrough",
    "nodiscard", "noreturn", "deprecated", "id", "function_constant", "user", "host_name",
    "stage_in", "visible", "clang::optnone", "gnu::always_inline", "clang::always_inline",
    "required_threads_per_threadgroup", "position", "flat", "center_perspective",
}
KNOWN_ATTRS = set(BUILTINS_VEC) | set(BUILTINS_SCALAR) | ZERO_BUILTINS | RESOURCE_ATTRS | OTHER_ATTRS
SYNC_NAMES = re.compile(r"\b(threadgroup_barrier|simdgroup_\w+|simd_\w+|quad_\w+)\s*\(")


class MslError(ValueError):
    """Metal source the harness cannot run; the message names the .metal file and line."""

    def __init__(self, message: str, file: str = "kernel.metal", line: int = 0, hint: str = "") -> None:
        self.file, self.line, self.hint = file, line, hint
        loc = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(loc + message + (f"\n  hint: {hint}" if hint else ""))


def strip_comments(src: str) -> str:
    """`src` with comments and string literals blanked out (newlines kept, so lines still match)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def line_of(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


@dataclass(frozen=True)
class Param:
    """One kernel parameter: `type_text` as written (e.g. "const device float*"), its name and its
    attribute (e.g. "buffer" with index 0, or a builtin name)."""

    type_text: str
    name: str
    attr: str
    index: int | None
    line: int

    @property
    def is_buffer(self) -> bool:
        return self.attr == "buffer"

    @property
    def is_reference(self) -> bool:
        return self.type_text.rstrip().endswith("&")

    @property
    def is_const(self) -> bool:
        t = " " + self.type_text.replace("*", " * ").replace("&", " & ") + " "
        return " constant " in t or " const " in t.split("*")[0].split("&")[0]

    @property
    def base_type(self) -> str:
        """The pointee type without address space and const (e.g. "float")."""
        t = self.type_text.replace("*", " ").replace("&", " ")
        words = [w for w in t.split() if w not in ("const", "device", "constant", "volatile", "threadgroup")]
        return " ".join(words)


@dataclass(frozen=True)
class KernelSig:
    name: str
    params: tuple[Param, ...]
    line: int
    uses_sync: bool

    def buffer(self, index: int) -> Param:
        """The `[[buffer(index)]]` parameter (KeyError if the kernel has none)."""
        for p in self.params:
            if p.is_buffer and p.index == index:
                return p
        raise KeyError(f"kernel {self.name} has no [[buffer({index})]]")

    @property
    def buffer_indices(self) -> list[int]:
        return sorted(p.index for p in self.params if p.is_buffer and p.index is not None)


def check_attributes(src: str, file: str = "kernel.metal") -> None:
    """Raise MslError for any `[[...]]` attribute this harness does not know (e.g. a misspelling)."""
    code = strip_comments(src)
    for m in re.finditer(r"\[\[(.*?)\]\]", code, re.S):
        for item in _split_top(m.group(1)):
            name = re.match(r"\s*([\w:]+)", item)
            word = name.group(1) if name else item.strip()
            if word not in KNOWN_ATTRS:
                close = _closest(word)
                raise MslError(f"unknown attribute [[{item.strip()}]]", file, line_of(code, m.start()),
                               f"did you mean [[{close}]]?" if close else
                               "Metal compute kernels take [[buffer(i)]] and builtin attributes such as "
                               "[[thread_position_in_grid]]")
            if word in RESOURCE_ATTRS and not re.fullmatch(r"\s*\w+\s*\(\s*\d+\s*\)\s*", item):
                raise MslError(f"[[{item.strip()}]] needs an integer index, e.g. [[{word}(0)]]", file,
                               line_of(code, m.start()))


def _split_top(s: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        depth += ch in "(<[{"
        depth -= ch in ")>]}"
        cur.append(ch)
    out.append("".join(cur))
    return [x for x in out if x.strip()]


def _closest(word: str) -> str | None:
    import difflib

    hit = difflib.get_close_matches(word, sorted(KNOWN_ATTRS), n=1, cutoff=0.75)
    return hit[0] if hit else None


def parse_kernel(src: str, name: str | None = None, file: str = "kernel.metal") -> KernelSig:
    """The signature of kernel `name` (or of the only kernel) in `src`."""
    check_attributes(src, file)
    code = strip_comments(src)
    pat = re.compile(r"(?:\bkernel\b|\[\[\s*kernel\s*\]\])\s+void\s+(\w+)\s*\(")
    found = list(pat.finditer(code))
    if not found:
        raise MslError("no `kernel void <name>(...)` function in the source", file)
    if name is None:
        if len(found) > 1:
            raise MslError(f"the source has {len(found)} kernels ({', '.join(m.group(1) for m in found)}); "
                           "pass the name of the one to run", file)
        m = found[0]
    else:
        match = next((f for f in found if f.group(1) == name), None)
        if match is None:
            raise MslError(f"no kernel named {name!r}; the source has "
                           f"{', '.join(f.group(1) for f in found)}", file)
        m = match
    start = m.end()
    depth, i = 1, start
    while depth and i < len(code):
        depth += code[i] == "("
        depth -= code[i] == ")"
        i += 1
    params = []
    pos = start
    for text in _split_top(code[start:i - 1]):
        at = code.index(text, pos)
        pos = at + len(text)
        params.append(_param(text, line_of(code, at + len(text) - len(text.lstrip())), file))
    # body: from the `{` after the signature to its match
    body_start = code.index("{", i)
    depth, j = 1, body_start + 1
    while depth and j < len(code):
        depth += code[j] == "{"
        depth -= code[j] == "}"
        j += 1
    seen: dict[int, Param] = {}
    for p in params:
        if p.is_buffer and p.index is not None:
            if p.index in seen:
                raise MslError(f"[[buffer({p.index})]] is bound twice ({seen[p.index].name} and {p.name})",
                               file, p.line)
            seen[p.index] = p
    return KernelSig(m.group(1), tuple(params), line_of(code, m.start()), bool(SYNC_NAMES.search(code)))


def _param(text: str, line: int, file: str) -> Param:
    m = re.search(r"\[\[(.*?)\]\]", text, re.S)
    if not m:
        raise MslError(f"kernel parameter `{' '.join(text.split())}` has no [[...]] attribute", file, line,
                       "every kernel parameter needs [[buffer(i)]] or a builtin such as "
                       "[[thread_position_in_grid]]")
    decl = text[:m.start()].strip()
    attr = m.group(1).strip()
    nm = re.search(r"(\w+)\s*$", decl)
    if not nm:
        raise MslError(f"cannot read the parameter `{decl}`", file, line)
    type_text = decl[:nm.start()].strip()
    am = re.fullmatch(r"(\w+)\s*(?:\(\s*(\d+)\s*\))?", attr)
    if not am:
        raise MslError(f"cannot read the attribute [[{attr}]]", file, line)
    word, idx = am.group(1), am.group(2)
    if word in ("texture", "sampler", "threadgroup", "stage_in"):
        raise MslError(f"[[{attr}]] parameters are not supported by the CPU harness", file, line,
                       "declare threadgroup arrays in the kernel body; textures are outside the harness")
    if word not in ("buffer",) and word not in BUILTINS_VEC and word not in BUILTINS_SCALAR \
            and word not in ZERO_BUILTINS:
        raise MslError(f"[[{attr}]] is not a kernel parameter attribute", file, line)
    return Param(type_text, nm.group(1), word, int(idx) if idx is not None else None, line)
