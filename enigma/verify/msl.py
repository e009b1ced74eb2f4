"""Read what the dispatcher needs from Metal source text: the kernel's parameters (buffer indices and
builtin attributes), the `[[...]]` attributes (a misspelled one is an error naming its .metal line),
and whether the kernel synchronises (barriers, simd-group functions) and so must run as fibers.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

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


_KERNEL_DEF = re.compile(r"(?:\bkernel\b|\[\[\s*kernel\s*\]\])\s+void\s+(\w+)\s*\(")
# `template [[host_name("name")]] [[kernel]] void k<float>(params);`, MLX's
# `template [[host_name("name")]] [[kernel]] decltype(k<float>) k<float>;` or ggml's
# `template [[host_name("name")]] kernel kernel_t k<float>;` (kernel_t a typedef of decltype(k<...>))
_INSTANTIATION = re.compile(r"\btemplate\s*\[\[\s*host_name\s*\(\s*((?:\"[^\"\n]*\"\s*)+)\)\s*\]\]\s*"
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


def _template_params(code: str, kernel_at: int) -> list[tuple[str, str]] | None:
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
    for part in _split_top(head[i + 1:-1]):
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
    for m in _KERNEL_DEF.finditer(code):
        if _template_params(code, m.start()) is not None:
            defs.setdefault(m.group(1), m)
            continue
        out.append(_Kernel(m.group(1), m.group(1), "", m.start(), m.end(), line_of(code, m.start())))
    for m in _INSTANTIATION.finditer(code):
        host = "".join(re.findall(r'"([^"\n]*)"', src[m.start(1):m.end(1)]))  # "v_" "abs": adjacent literals
        func = m.group(2) or m.group(3) or m.group(4)
        lt = m.end() - 1
        gt = _skip_balanced(code, lt, "<", ">")
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


_VECTOR_CAST = re.compile(r"\(\s*((?:metal::)?(?:float|half|bfloat|int|uint|short|ushort|char|uchar|"
                          r"long|ulong)[234])\s*\)[ \t]*")


def _operand_end(code: str, i: int) -> int:
    """End of the postfix expression starting at code[i] (a name or parenthesised expression followed
    by `.x`, `[i]`, `(args)`, `->m`), or -1 if it starts otherwise."""
    num = re.match(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[fFhHuUlL]*", code[i:])
    if num:
        return i + num.end()
    m = re.match(r"\w+", code[i:])
    if m:
        j = i + m.end()
    elif code.startswith("(", i):
        j = _skip_balanced(code, i, "(", ")")
    else:
        return -1
    while True:
        k = len(code[j:]) - len(code[j:].lstrip(" \t"))
        c = code[j + k:j + k + 2]
        if c.startswith("."):
            m = re.match(r"\.\s*\w+", code[j + k:])
            if not m:
                return j
            j += k + m.end()
        elif c == "->":
            m = re.match(r"->\s*\w+", code[j + k:])
            if not m:
                return j
            j += k + m.end()
        elif c.startswith("["):
            j = _skip_balanced(code, j + k, "[", "]")
        elif c.startswith("(") and re.match(r"\w", code[j - 1]):
            j = _skip_balanced(code, j + k, "(", ")")
        else:
            return j


def _vector_cast_edits(src: str, code: str) -> list[tuple[int, int, str]]:
    """`(float4) h` converts lane by lane in Metal (a C-style cast between vector types of other
    sizes is a bitcast error in clang): written as the converting constructor `float4(h)`. A cast
    to a template's type parameter (`(q4_t) x`, ggml: a vector type in some instantiations, a scalar
    in others) is written `metal::enigma_cast<q4_t>(x)`: lane by lane between vectors, `(T) x`
    otherwise."""
    edits = []
    tparams = set(re.findall(r"\btemplate\s*<[^;{]*?\b(?:typename|class)\s+(\w+)", code))
    tparams |= set(re.findall(r"(?:[<,]\s*)(?:typename|class)\s+(\w+)\s*(?=[,>=])", code))
    pats = [_VECTOR_CAST]
    if tparams:
        pats.append(re.compile(r"\(\s*(" + "|".join(sorted(map(re.escape, tparams))) + r")\s*\)[ \t]*"))
    for k, pat in enumerate(pats):
        for m in pat.finditer(code):
            before = code[:m.start()].rstrip()
            if before and (before[-1] in ")]" or (re.search(r"\w$", before)
                                                   and not re.search(r"\b(?:return|else|case|do)$", before))):
                continue  # `f(float4)`, `sizeof(float4)`: a call or declaration, not a cast
            end = _operand_end(code, m.end())
            if end > m.end():
                head = f"{m.group(1)}(" if k == 0 else f"metal::enigma_cast<{m.group(1)}>("
                edits.append((m.start(), end, f"{head}{src[m.end():end]})"))
    return edits


def _template_edits(code: str) -> list[tuple[int, int, str]]:
    """C++ for OpenCL has no template kernels: a template kernel definition becomes a plain function
    template (the entry point calls `f<T>(...)`, which instantiates it) and its `[[host_name]]`
    instantiations are dropped (blanked, lines kept)."""
    edits = []
    for m in _KERNEL_DEF.finditer(code):
        if _template_params(code, m.start()) is not None and code.startswith("kernel", m.start()):
            edits.append((m.start(), m.start() + 6, "      "))
    for m in _INSTANTIATION.finditer(code):
        end = code.find(";", m.end())
        if end >= 0:
            edits.append((m.start(), end + 1, "\n" * code.count("\n", m.start(), end)))
    return edits


_FN_PTR_PARAM = re.compile(r"([A-Za-z_][\w:]*(?:\s+[A-Za-z_][\w:]*)*)\s*\(\s*\*\s*(\w+)\s*\)\s*"
                           r"\(([^()]*)\)\s*$")


def _template_header_end(code: str, lt: int) -> int:
    """The index after the `>` closing the template parameter list opened at code[lt] ('<'), or -1
    (angle brackets counted outside parentheses: `void (*f)(...)` holds none of its own)."""
    depth = paren = 0
    for i in range(lt, len(code)):
        c = code[i]
        if c == "(":
            paren += 1
        elif c == ")":
            paren -= 1
        elif paren == 0 and c == "<":
            depth += 1
        elif paren == 0 and c == ">":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in ";{":
            return -1
    return -1


def _function_pointer_param_edits(code: str) -> list[tuple[int, int, str]]:
    """A function-pointer template parameter `void (*deq)(device const q_t*, short, thread float4&)`
    is spelled `typename metal::enigma_fn_ptr<void (...)>::type deq`: the same type, which clang's C++
    for OpenCL accepts a function (or function template) name for (see enigma_fn_ptr in the layer)."""
    edits = []
    for m in re.finditer(r"\btemplate\s*<", code):
        end = _template_header_end(code, m.end() - 1)
        if end < 0:
            continue
        start = m.end()
        for part_start, part in _split_params(code, start, end - 1):
            fm = _FN_PTR_PARAM.fullmatch(part.strip())
            if not fm:
                continue
            a = part_start + len(part) - len(part.lstrip())
            b = part_start + len(part.rstrip())
            text = f"typename metal::enigma_fn_ptr<{fm.group(1)} ({fm.group(3)})>::type {fm.group(2)}"
            edits.append((a, b, text + "\n" * code.count("\n", a, b)))
    return edits


def _split_params(code: str, start: int, end: int) -> list[tuple[int, str]]:
    """code[start:end] split at its top-level commas: (offset, text) pairs."""
    out, depth, last = [], 0, start
    for i in range(start, end):
        c = code[i]
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            out.append((last, code[last:i]))
            last = i + 1
    out.append((last, code[last:end]))
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
        tparams = _template_params(code, k.at) or []
        args = [a.strip() for a in _split_top(k.targs)]
        for j, (tn, default) in enumerate(tparams):
            if j < len(args):
                subst[tn] = args[j]
            elif default:
                subst[tn] = _substitute(default, subst)
    params = []
    pos = start
    for text in _split_top(code[start:i - 1]):
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
    return Param(type_text, nm.group(1), word, int(idx) if idx is not None else None, line)


# ---------------------------------------------------------------------------------------------------
# threadgroup variables declared in a kernel body

@dataclass(frozen=True)
class ThreadgroupVar:
    """A threadgroup variable of the kernel source: its id in the dispatcher, name, type, line."""

    id: int
    name: str
    type: str  # element type as written, e.g. "float"
    dims: str  # e.g. "[16][17]" ("" for a scalar)
    line: int
    align: int = 16  # bytes (an alignment attribute may ask for more)


_ATTR_SPEC = re.compile(r"__attribute__\s*\(\(|\balignas\s*\(|\[\[")


def _skip_balanced(code: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket that closes the one at code[i] (== open_)."""
    depth = 0
    while i < len(code):
        depth += code[i] == open_
        depth -= code[i] == close
        i += 1
        if depth == 0:
            return i
    return i


def _strip_specifiers(text: str) -> tuple[str, int]:
    """`text` without `__attribute__((...))`, `alignas(...)` and `[[...]]`, and the alignment they ask
    for (0 if none)."""
    align = 0
    out = []
    i = 0
    while True:
        m = _ATTR_SPEC.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()] + " ")
        if m.group(0) == "[[":
            j = text.find("]]", m.end())
            j = len(text) if j < 0 else j + 2
        else:
            j = _skip_balanced(text, text.index("(", m.start()), "(", ")")
        inner = text[m.start():j]
        a = (re.search(r"aligned\s*\(\s*(\d+)\s*\)", inner)
             or re.fullmatch(r"alignas\s*\(\s*(\d+)\s*\)", inner))
        if a:
            align = max(align, int(a.group(1)))
        elif "aligned" in inner:  # __attribute__((aligned)): the largest useful alignment
            align = max(align, 16)
        i = j
    return " ".join("".join(out).split()), align


# what may precede `threadgroup` in a declaration: attributes, alignas, static, volatile
_DECL_HEAD = (r"(?:\s|__attribute__\s*\(\(.*?\)\)|alignas\s*\([^)]*\)|\[\[.*?\]\]"
              r"|\bstatic\b|\bvolatile\b)*")


def _statement_start(code: str, pos: int) -> int:
    """Start of the statement holding code[pos]: after the previous `;`, `{`, `}` or preprocessor line."""
    i = pos
    while i > 0 and code[i - 1] not in ";{}":
        if code[i - 1] == "\n" and code[i:].lstrip(" \t").startswith("#"):
            break
        i -= 1
    return i


def _blank_nested(text: str) -> str:
    """`text` with what is inside <...> and [...] blanked (array sizes, template arguments)."""
    out, depth = [], 0
    for ch in text:
        if ch in "<[":
            depth += 1
            out.append(ch)
        elif ch in ">]":
            depth = max(depth - 1, 0)
            out.append(ch)
        else:
            out.append(" " if depth else ch)
    return "".join(out)


def find_threadgroup_vars(code: str) -> list[tuple[int, int, list[ThreadgroupVar]]]:
    """Declarations of threadgroup variables in comment-stripped `code`, in every form Metal allows:
    `threadgroup T a[N];`, with `__attribute__((aligned(16)))` / `alignas(16)` / `[[...]]` before or
    after the type or the declarator, several declarators (`threadgroup float a[4], b[8];`), template
    types (`threadgroup vec<float, 4> v[2];`), scalars and multi-dimensional arrays. Pointers and
    references (`threadgroup float* p = a;`), parameters and `[[threadgroup(i)]]` are not declarations
    of storage. Returns (start, end, variables) per statement; ids count from 0 in source order."""
    found: list[tuple[int, int, list[ThreadgroupVar]]] = []
    n = 0
    done_to = 0
    for m in re.finditer(r"\bthreadgroup\b(?!\s*\()", code):
        if m.start() < done_to:
            continue
        before = code[:m.start()].rstrip()
        if before.endswith(("(", ",", "<")) or before.endswith("[["):
            continue  # a parameter, a template argument or an attribute
        start = _statement_start(code, m.start())
        # the statement's end: the next `;` outside brackets
        depth, j = 0, m.end()
        while j < len(code):
            c = code[j]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
                if depth < 0:
                    break
            elif c == ";" and depth == 0:
                break
            j += 1
        if j >= len(code) or code[j] != ";":
            continue
        stmt = code[start:j]
        head = stmt[:m.start() - start]
        if head.strip() and not re.fullmatch(_DECL_HEAD, head, re.S):
            continue  # e.g. `return threadgroup ...` or a cast: not a declaration
        text, align = _strip_specifiers(stmt)
        text = re.sub(r"\b(threadgroup|static)\b", " ", text)
        text = " ".join(text.split())
        if not text or any(ch in _blank_nested(text) for ch in "*&=(){}"):
            continue  # a pointer, reference, initialised or function declaration
        parts = _split_top(text)
        first = re.fullmatch(r"(.*?[\w>])\s*\b(\w+)\s*((?:\[[^\]]*\]\s*)*)", parts[0].strip())
        if not first:
            continue
        typ, decls = first.group(1).strip(), [(first.group(2), first.group(3))]
        if not typ or typ in ("const", "volatile"):
            continue
        ok = True
        for p in parts[1:]:
            d = re.fullmatch(r"\s*(\w+)\s*((?:\[[^\]]*\]\s*)*)", p)
            if not d:
                ok = False
                break
            decls.append((d.group(1), d.group(2)))
        if not ok:
            continue
        line = line_of(code, m.start())
        vars_ = []
        for name, dims in decls:
            vars_.append(ThreadgroupVar(n, name, typ, re.sub(r"\s+", "", dims), line, max(align, 16)))
            n += 1
        found.append((start, j + 1, vars_))
        done_to = j + 1
    return found


def rewrite_threadgroup_vars(src: str, code: str) -> tuple[str, list[ThreadgroupVar]]:
    """`src` with each threadgroup declaration (found in its comment-stripped twin `code`, same
    length) rewritten into references to storage from the dispatcher (`enigma_rt_tg_alloc`), on the
    declaration's own lines (line numbers do not move); and the variables."""
    out: list[str] = []
    tvars: list[ThreadgroupVar] = []
    last = 0
    for start, end, vars_ in find_threadgroup_vars(code):
        out.append(src[last:start])
        text = []
        for v in vars_:
            et = f"enigma_type<{v.type}>"  # `float4 (` would expand the float4(...) constructor macro
            text.append(f"threadgroup {et} (&{v.name}){v.dims} = *(threadgroup {et} (*){v.dims})"
                        f"enigma_rt_tg_alloc({v.id}, sizeof({et}{v.dims}), {v.align});")
        out.append(" ".join(text) + "\n" * src.count("\n", start, end))
        tvars += vars_
        last = end
    out.append(src[last:])
    return "".join(out), tvars


def threadgroup_param_vars(sig: KernelSig, first_id: int) -> list[ThreadgroupVar]:
    """The `[[threadgroup(i)]]` parameters of `sig` as threadgroup variables (for reports): parameter
    i has id first_id + i in the dispatcher (see enigma_set_tg_params)."""
    out = []
    for p in sig.threadgroup_params:
        assert p.index is not None
        out.append(ThreadgroupVar(first_id + p.index, p.name, p.base_type.replace("threadgroup", "").strip(),
                                  "[]", p.line))
    return out


# ---------------------------------------------------------------------------------------------------
# source rewrites for what Metal accepts and C++ for OpenCL does not (each keeps the line numbers)

_VEC_NAMES = "float|half|bfloat|int|uint|short|ushort|char|uchar|long|ulong"
_BRACE_INIT = re.compile(r"\b((?:metal::)?(?:" + _VEC_NAMES + r")[234])\s+(\w+)\s*=\s*\{")
_FUNCTION_CONSTANT = re.compile(r"\bconstant\s+([\w:]+(?:\s*<[^;{}]*?>)?)\s+(\w+)\s*"
                                r"\[\[\s*function_constant\s*\(")
_BFLOAT_ALIAS = re.compile(r"\btypedef\s+(?:metal::)?bfloat\s+(\w+)\s*;"
                           r"|\busing\s+(\w+)\s*=\s*(?:metal::)?bfloat\s*;")
_THREAD_CTOR = re.compile(r"\)\s*(thread)\s*(?=:[^:])")
_CONSTEXPR_CONSTANT = re.compile(r"\b(?:constexpr\s+constant|constant\s+constexpr)\b")


def _fc_literal(v: object, name: str, file: str) -> str:
    item = getattr(v, "item", None)  # a numpy scalar: its Python value
    if callable(item) and not isinstance(v, (bool, int, float)):
        v = item()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return v.hex() + "f"
    raise MslError(f"function constant {name}: value {v!r} is not a bool, int or float", file)


def function_constants(code: str) -> list[tuple[str, str, str, int, int]]:
    """`constant T name [[function_constant(index)]];` declarations: (type, name, index text, start,
    end) in comment-stripped `code`."""
    out = []
    for m in _FUNCTION_CONSTANT.finditer(code):
        close = _skip_balanced(code, m.end() - 1, "(", ")")
        tail = re.match(r"\s*\]\]\s*;", code[close:])
        if not tail:
            continue
        out.append((" ".join(m.group(1).split()), m.group(2), " ".join(code[m.end():close - 1].split()),
                    m.start(), close + tail.end()))
    return out


def rewrite_source(src: str, fc_values: dict[object, object] | None = None,
                   file: str = "kernel.metal") -> tuple[str, list[ThreadgroupVar]]:
    """`src` as clang compiles it, and its threadgroup variables (see rewrite_threadgroup_vars):
    - `constant T name [[function_constant(i)]];` gets its value from `fc_values` (keyed by index or
      name; Metal's run-time specialisation happens here at compile time), or T() when not given;
      `is_function_constant_defined(name)` says whether it was given;
    - `float4 v = {0.f};` fills the lanes in order and zeroes the rest, as in Metal (C++ for OpenCL
      wants every lane);
    - `constexpr constant T table[N] = {...};`: Metal's constant address space is read-only anyway, so
      the table converts to a `constant T*` parameter (OpenCL keeps the `const` and refuses);
    - `constant char*` reads `constant const char*`: string literals bind to it, as in Metal (where
      the constant address space is read-only anyway; MLX's os_log fallback takes its format so);
    - `static_cast<bfloat>(x)` (or through a typedef of bfloat) calls metal::enigma_bfloat_cast: Metal
      converts half to bfloat explicitly, clang refuses (__bf16 from _Float16), so half goes via float;
    - a function-pointer template parameter `void (*f)(ARGS)` reads
      `typename metal::enigma_fn_ptr<void (ARGS)>::type f` (clang refuses every argument of the
      spelled type in C++ for OpenCL; ggml's quantized kernels take their dequantizers so);
    - constructors qualified `thread` (with an initialiser list: `complex_t(T r, T i) thread : ...`,
      MLX) lose the qualifier:
      in Metal they also serve temporaries (`return {re, im};`), which clang's `__private` method
      cannot construct; unqualified (generic) they serve every object in thread memory.
    """
    fc_values = dict(fc_values or {})
    code = strip_comments(src)
    edits: list[tuple[int, int, str]] = []
    defined: dict[str, bool] = {}
    for typ, name, index, start, end in function_constants(code):
        key: object = next((k for k in (name, index, int(index) if index.isdigit() else None)
                            if k is not None and k in fc_values), None)
        given = key is not None
        defined[name] = given
        value = _fc_literal(fc_values.pop(key), name, file) if given else f"{typ}()"
        edits.append((start, end, f"constant {typ} {name} = ({typ})({value});"
                      + "\n" * code.count("\n", start, end)))
    if fc_values:
        raise MslError(f"no function constant {', '.join(map(str, fc_values))} in the source (it declares "
                       f"{', '.join(defined) or 'none'})", file)
    for m in re.finditer(r"\bis_function_constant_defined\s*\(\s*(\w+)\s*\)", code):
        if m.group(1) in defined:
            edits.append((m.start(), m.end(), "true" if defined[m.group(1)] else "false"))
    for m in _BRACE_INIT.finditer(code):
        brace = m.end() - 1
        while True:  # `float4 a = {0.f}, b = {1.f};`: every declarator of the statement
            close = _skip_balanced(code, brace, "{", "}")
            edits.append((brace, close, f"metal::enigma_brace<{m.group(1)}>({src[brace + 1:close - 1]})"))
            more = re.match(r"\s*,\s*\w+\s*=\s*\{", code[close:])
            if not more:
                break
            brace = close + more.end() - 1
    for m in _CONSTEXPR_CONSTANT.finditer(code):
        eq = code.find("=", m.end())
        semi = code.find(";", m.end())
        if 0 <= eq < semi and "[" in code[m.end():eq]:
            edits.append((m.start(), m.end(), "constant".ljust(m.end() - m.start())))
    aliases = [a or b for a, b in _BFLOAT_ALIAS.findall(code)]
    bfloat_names = "|".join(["bfloat", *map(re.escape, aliases)])
    for m in re.finditer(r"\bstatic_cast\s*<\s*(?:metal::)?(?:" + bfloat_names + r")\s*>\s*\(", code):
        edits.append((m.start(), m.end(), "metal::enigma_bfloat_cast("))
    for m in re.finditer(r"\bconstant\s+(char\s*\*)", code):  # a string literal binds to it, as in Metal
        edits.append((m.start(1), m.start(1), "const "))
    for m in _THREAD_CTOR.finditer(code):
        edits.append((m.start(1), m.end(1), " " * len(m.group(1))))
    edits += _template_edits(code)
    edits += _function_pointer_param_edits(code)
    edits += _vector_cast_edits(src, code)
    for a, b, text in sorted(edits, reverse=True):
        src = src[:a] + text + src[b:]
        code = code[:a] + text + code[b:]
    return rewrite_threadgroup_vars(src, code)


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


def remap_lines(sig: KernelSig, tvars: list[ThreadgroupVar], code: str, file: str
                ) -> tuple[KernelSig, list[ThreadgroupVar]]:
    """`sig` and `tvars` found in preprocessed `code`, with their lines in `file` (line markers)."""
    m = source_lines(code, file)

    def at(n: int) -> int:
        return m[n] if 0 < n < len(m) else 0

    params = tuple(replace(p, line=at(p.line)) for p in sig.params)
    return (replace(sig, params=params, line=at(sig.line)), [replace(v, line=at(v.line)) for v in tvars])
