"""Read what the dispatcher needs from Metal source text: the kernel's parameters (buffer indices and
builtin attributes), the `[[...]]` attributes (a misspelled one is an error naming its .metal line),
and whether the kernel synchronises (barriers, simd-group functions) and so must run as fibers.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

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


# Metal element type names -> the numpy dtype a buffer of them holds
MSL_NUMPY = {
    "float": np.float32, "half": np.float16, "bfloat": np.uint16, "int": np.int32, "uint": np.uint32,
    "short": np.int16, "ushort": np.uint16, "char": np.int8, "uchar": np.uint8, "bool": np.bool_,
    "long": np.int64, "ulong": np.uint64, "int32_t": np.int32, "uint32_t": np.uint32,
    "atomic_int": np.int32, "atomic_uint": np.uint32, "atomic_float": np.float32,
}


MSL_SIZES = {n: np.dtype(t).itemsize for n, t in MSL_NUMPY.items()}
MSL_SIZES.update({f"{n}{k}": MSL_SIZES[n] * (4 if k == 3 else k)  # a 3-vector is padded to 4 lanes
                  for n in ("float", "half", "int", "uint", "short", "ushort", "char", "uchar", "bool")
                  for k in (2, 3, 4)})


class MslError(ValueError):
    """Metal source the harness cannot run; the message names the .metal file and line."""

    def __init__(self, message: str, file: str = "kernel.metal", line: int = 0, hint: str = "") -> None:
        self.file, self.line, self.hint = file, line, hint
        loc = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(loc + message + (f"\n  hint: {hint}" if hint else ""))


_COMMENT_OR_LITERAL = re.compile(r"//[^\n]*|/\*.*?(?:\*/|\Z)"
                                 r"|\"(?:\\.|[^\"\\\n])*(?:\\\Z)?(?:[\"\n]|\Z)"
                                 r"|'(?:\\.|[^'\\\n])*(?:\\\Z)?(?:['\n]|\Z)", re.S)


def _blank(m: re.Match[str]) -> str:
    text = m.group()
    if text.startswith("//"):
        return " " * len(text)
    if text.startswith("/*"):
        return re.sub(r"[^\n]", " ", text)
    q = text[0]  # a literal: its quotes kept (one that ends at a newline closes there), contents blank
    if len(text) > 1 and text[-1] in (q, "\n") and not _escaped_end(text):
        return q + " " * (len(text) - 2) + q
    return q + " " * (len(text) - 1)


def _escaped_end(text: str) -> bool:
    """Whether the last character of a literal's match is escaped (odd run of backslashes before it)."""
    k = len(text) - 2
    while k >= 1 and text[k] == "\\":
        k -= 1
    return (len(text) - 2 - k) % 2 == 1


def strip_comments(src: str) -> str:
    """`src` with comments and string literals blanked out (newlines kept, so lines still match)."""
    return _COMMENT_OR_LITERAL.sub(_blank, src)


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
    # `[[buffer(2), function_constant(use_c)]]`: the parameter exists only when the bool function
    # constant `use_c` is true (MLX's steel GEMM); "" for an unconditional parameter
    condition: str = ""

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
    callee: str = ""  # what the entry point calls: the function, with template arguments if any

    @property
    def threadgroup_params(self) -> list[Param]:
        """`[[threadgroup(i)]]` parameters (their length is given at dispatch)."""
        return [p for p in self.params if p.attr == "threadgroup"]

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
        for item in split_top(m.group(1)):
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


def split_top(s: str) -> list[str]:
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


def skip_balanced(code: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket that closes the one at code[i] (== open_)."""
    depth = 0
    while i < len(code):
        depth += code[i] == open_
        depth -= code[i] == close
        i += 1
        if depth == 0:
            return i
    return i


def _closest(word: str) -> str | None:
    import difflib

    hit = difflib.get_close_matches(word, sorted(KNOWN_ATTRS), n=1, cutoff=0.75)
    return hit[0] if hit else None


# `[[kernel, max_total_threads_per_threadgroup(N)]]` too (MLX's sort.h)
KERNEL_DEF = re.compile(r"(?:\bkernel\b|\[\[\s*kernel\s*(?:,[^\]\[]*)?\]\])\s+void\s+(\w+)\s*\(")
# `template [[host_name("name")]] [[kernel]] void k<float>(params);`, MLX's
# `template [[host_name("name")]] [[kernel]] decltype(k<float>) k<float>;` or ggml's
# `template [[host_name("name")]] kernel kernel_t k<float>;` (kernel_t a typedef of decltype(k<...>))
INSTANTIATION = re.compile(r"\btemplate\s*\[\[\s*host_name\s*\(\s*((?:\"[^\"\n]*\"\s*)+)\)\s*\]\]\s*"
                            r"(?:\[\[\s*kernel\s*\]\]\s*|\bkernel\s+)?"
                            r"(?:void\s+(\w+)\s*<|decltype\s*\(\s*(\w+)\s*<|\w+\s+(\w+)\s*<)")


@dataclass(frozen=True)
class _Kernel:
    name: str  # the name a caller uses (a template instantiation's host_name)
    func: str  # the function
    targs: str  # template arguments ("" for a plain kernel)
    at: int  # position of the definition's `kernel` (the parameters follow)
    params_at: int  # position after the `(` of the parameter list to read
    line: int


def template_params(code: str, kernel_at: int) -> list[tuple[str, str]] | None:
    """(name, default) of the `template <...>` right before the definition at kernel_at, or None."""
    head = code[:kernel_at].rstrip()
    if not head.endswith(">"):
        return None
    depth, i = 0, len(head) - 1
    while i >= 0:
        depth += head[i] == ">"
        depth -= head[i] == "<"
        if depth == 0:
            break
        i -= 1
    m = re.search(r"\btemplate\s*$", head[:i])
    if not m:
        return None
    out = []
    for part in split_top(head[i + 1:-1]):
        d = re.fullmatch(r"\s*(?:typename|class|[\w:]+(?:\s+[\w:]+)*)\s+(\w+)\s*(?:=\s*(.*?))?\s*", part,
                         re.S)
        if d:
            out.append((d.group(1), (d.group(2) or "").strip()))
    return out


def _kernels(src: str, code: str) -> list[_Kernel]:
    """Every kernel a caller can name: plain `kernel void f(...)` definitions and the
    `[[host_name]]` instantiations of template kernels (`template <typename T> kernel void f(...)`)."""
    out: list[_Kernel] = []
    defs: dict[str, re.Match[str]] = {}
    for m in KERNEL_DEF.finditer(code):
        if template_params(code, m.start()) is not None:
            defs.setdefault(m.group(1), m)
            continue
        out.append(_Kernel(m.group(1), m.group(1), "", m.start(), m.end(), line_of(code, m.start())))
    for m in INSTANTIATION.finditer(code):
        host = "".join(re.findall(r'"([^"\n]*)"', src[m.start(1):m.end(1)]))  # "v_" "abs": adjacent literals
        func = m.group(2) or m.group(3) or m.group(4)
        lt = m.end() - 1
        gt = skip_balanced(code, lt, "<", ">")
        targs = " ".join(code[lt + 1:gt - 1].split())
        d = defs.get(func)
        if d is None:
            continue
        after = code[gt:].lstrip()
        params_at = d.end()
        if m.group(2) and after.startswith("("):  # the instantiation lists concrete parameters
            params_at = gt + code[gt:].index("(") + 1
        out.append(_Kernel(host, func, targs, d.start(), params_at, line_of(code, m.start())))
    return out



def _substitute(text: str, names: dict[str, str]) -> str:
    if not names:
        return text
    return re.sub(r"\b(" + "|".join(map(re.escape, names)) + r")\b", lambda m: names[m.group(1)], text)


def parse_kernel(src: str, name: str | None = None, file: str = "kernel.metal") -> KernelSig:
    """The signature of kernel `name` (or of the only kernel) in `src`: a plain kernel by its function
    name, a template kernel by the `host_name` of its instantiation."""
    return parse_kernels(src, [name], file)[0]


def parse_kernels(src: str, names: Sequence[str | None], file: str = "kernel.metal") -> list[KernelSig]:
    """parse_kernel for several kernels of one source (the source is scanned once)."""
    check_attributes(src, file)
    code = strip_comments(src)
    found = _kernels(src, code)
    uses_sync = bool(SYNC_NAMES.search(code))
    return [_signature(code, found, name, file, uses_sync) for name in names]


def _signature(code: str, found: list[_Kernel], name: str | None, file: str, uses_sync: bool) -> KernelSig:
    if not found:
        raise MslError("no `kernel void <name>(...)` function (or [[host_name]] instantiation of a template "
                       "kernel) in the source", file)
    if name is None:
        if len(found) > 1:
            raise MslError(f"the source has {len(found)} kernels ({', '.join(k.name for k in found)}); "
                           "pass the name of the one to run", file)
        k = found[0]
    else:
        match = next((f for f in found if f.name == name), None)
        if match is None:
            raise MslError(f"no kernel named {name!r}; the source has "
                           f"{', '.join(f.name for f in found)}", file)
        k = match
    start = k.params_at
    depth, i = 1, start
    while depth and i < len(code):
        depth += code[i] == "("
        depth -= code[i] == ")"
        i += 1
    subst: dict[str, str] = {}
    if k.targs:
        tparams = template_params(code, k.at) or []
        args = [a.strip() for a in split_top(k.targs)]
        for j, (tn, default) in enumerate(tparams):
            if j < len(args):
                subst[tn] = args[j]
            elif default:
                subst[tn] = _substitute(default, subst)
    params = []
    pos = start
    for text in split_top(code[start:i - 1]):
        at = code.index(text, pos)
        pos = at + len(text)
        line = line_of(code, at + len(text) - len(text.lstrip()))
        params.append(_param(_substitute(text, subst), line, file))
    params = _assign_indices(params)
    seen: dict[tuple[str, int], Param] = {}
    for p in params:
        if p.attr in ("buffer", "threadgroup") and p.index is not None:
            if (p.attr, p.index) in seen:
                raise MslError(f"[[{p.attr}({p.index})]] is bound twice ({seen[p.attr, p.index].name} and "
                               f"{p.name})", file, p.line)
            seen[p.attr, p.index] = p
    callee = f"{k.func}<{k.targs}>" if k.targs else k.func
    return KernelSig(k.name, tuple(params), k.line, uses_sync, callee)


def _assign_indices(params: list[Param]) -> list[Param]:
    """Parameters without an index get the next free one of their kind in order, as Metal assigns."""
    params = list(params)
    for kind in ("buffer", "threadgroup"):
        used = {p.index for p in params if p.attr == kind and p.index is not None}
        nxt = 0
        for j, p in enumerate(params):
            if p.attr == kind and p.index is None:
                while nxt in used:
                    nxt += 1
                params[j] = replace(p, index=nxt)
                used.add(nxt)
    return params


def _param(text: str, line: int, file: str) -> Param:
    m = re.search(r"\[\[(.*?)\]\]", text, re.S)
    decl = (text[:m.start()] if m else text).strip()
    arr = re.fullmatch(r"(.*?\w)\s*\[\s*\w*\s*\]", decl, re.S)
    if arr:  # `constant const int64_t strides[3]` (MLX's binary_g_nd3): an array parameter is a pointer
        head = re.fullmatch(r"(.*?)(\w+)", arr.group(1), re.S)
        if head:
            decl = f"{head.group(1).rstrip()}* {head.group(2)}"
    nm = re.search(r"(\w+)\s*$", decl)
    if not nm:
        raise MslError(f"cannot read the parameter `{decl}`", file, line)
    type_text = decl[:nm.start()].strip()
    if not m:  # Metal assigns buffer (and threadgroup) indices in order to parameters without one
        words = set(type_text.replace("*", " ").replace("&", " ").split())
        indirect = "*" in type_text or "&" in type_text
        if indirect and ("device" in words or "constant" in words):
            return Param(type_text, nm.group(1), "buffer", None, line)
        if indirect and "threadgroup" in words:
            return Param(type_text, nm.group(1), "threadgroup", None, line)
        raise MslError(f"kernel parameter `{' '.join(text.split())}` has no [[...]] attribute", file, line,
                       "a kernel parameter is a device/constant pointer or reference (a buffer), or needs "
                       "a builtin attribute such as [[thread_position_in_grid]]")
    attr = m.group(1).strip()
    cond = re.fullmatch(r"(.*?)\s*,\s*function_constant\s*\(\s*(\w+)\s*\)|function_constant\s*\(\s*(\w+)\s*\)"
                        r"\s*,\s*(.*)", attr, re.S)
    condition = ""
    if cond:  # present only when the function constant is true
        attr, condition = (cond.group(1), cond.group(2)) if cond.group(2) else (cond.group(4), cond.group(3))
    am = re.fullmatch(r"(\w+)\s*(?:\(\s*(\d+)\s*\))?", attr)
    if not am:
        raise MslError(f"cannot read the attribute [[{attr}]]", file, line)
    word, idx = am.group(1), am.group(2)
    if word in ("texture", "sampler", "stage_in"):
        raise MslError(f"[[{attr}]] parameters are not supported by the CPU harness", file, line,
                       "textures and samplers are outside the harness")
    if word not in ("buffer", "threadgroup") and word not in BUILTINS_VEC and word not in BUILTINS_SCALAR \
            and word not in ZERO_BUILTINS:
        raise MslError(f"[[{attr}]] is not a kernel parameter attribute", file, line)
    return Param(type_text, nm.group(1), word, int(idx) if idx is not None else None, line, condition)


# ---------------------------------------------------------------------------------------------------
# sources whose kernels or threadgroup arrays are written by their own macros

_MACRO_WITH_DECLS = re.compile(r"^[ \t]*#[ \t]*define[ \t]+\w+(?:\([^)]*\))?[^\n]*?"
                               r"(?:\bthreadgroup\b|\bhost_name\b|\bkernel\b|\bfunction_constant\b)",
                               re.M)
_LINE_MARKER = re.compile(r'^#\s*(?:line\s+)?(\d+)\s+"([^"]*)"[^\n]*$', re.M)


def expand_macros(src: str, file: str = "kernel.metal",
                  include_dirs: Sequence[str | os.PathLike] = ()) -> str:
    """`src` itself, or, when one of its own `#define`s writes kernels, instantiations, function
    constants or threadgroup declarations (`#define instantiate_kernel(name, f, T) template
    [[host_name(name)]] [[kernel]] decltype(f<T>) f<T>;`), `src` with its macros expanded by clang's
    preprocessor, line markers kept (diagnostics and reports still name `file`'s lines). With
    `include_dirs` the source's own headers (`#include "utils.h"`) are inlined the same way."""
    if not include_dirs and not _MACRO_WITH_DECLS.search(strip_comments(src).replace("\\\n", "  ")):
        return src  # (continued #define lines joined above)
    from enigma.verify.clang import preprocess

    return preprocess(src, file, include_dirs)


def source_lines(code: str, file: str) -> list[int]:
    """For each line of `code` (1-based; index 0 unused), the line of `file` it comes from according
    to the preprocessor's line markers (0 for lines of other files); identity without markers."""
    lines = code.split("\n")
    if not _LINE_MARKER.search(code):
        return list(range(len(lines) + 1))
    out, cur, in_file = [0], 0, False
    for ln in lines:
        m = _LINE_MARKER.match(ln)
        if m:
            cur, in_file = int(m.group(1)), m.group(2) == file
            out.append(0)
            continue
        out.append(cur if in_file else 0)
        cur += 1
    return out
