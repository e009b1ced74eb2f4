"""Threadgroup memory in Metal source: every threadgroup variable declaration (each form Metal allows:
kernel-scope arrays with attributes, alignas, several declarators) found and rewritten to storage
the dispatcher allocates, poisons and checks; `[[threadgroup(i)]]` parameters; lines of
preprocessed source mapped back to the user's file."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from enigma.verify.msl import KernelSig, line_of, skip_balanced, source_lines, split_top

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
            j = skip_balanced(text, text.index("(", m.start()), "(", ")")
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
        parts = split_top(text)
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


def remap_lines(sig: KernelSig, tvars: list[ThreadgroupVar], code: str, file: str
                ) -> tuple[KernelSig, list[ThreadgroupVar]]:
    """`sig` and `tvars` found in preprocessed `code`, with their lines in `file` (line markers)."""
    m = source_lines(code, file)

    def at(n: int) -> int:
        return m[n] if 0 < n < len(m) else 0

    params = tuple(replace(p, line=at(p.line)) for p in sig.params)
    return (replace(sig, params=params, line=at(sig.line)), [replace(v, line=at(v.line)) for v in tvars])
