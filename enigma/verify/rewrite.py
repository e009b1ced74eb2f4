"""The source rewrite: Metal forms that clang's C++ for OpenCL reads otherwise, each rewritten on its own
lines (diagnostics keep their line numbers): vector casts and direct initialisation, braced
arguments, template kernels, function-pointer template parameters, function constants, `thread`
qualified members, constexpr constant tables, bfloat casts; then the threadgroup declarations
(threadgroup.py). rewrite_source is the entry point."""
from __future__ import annotations

import re

from enigma.verify.msl import (
    INSTANTIATION,
    KERNEL_DEF,
    KernelSig,
    MslError,
    skip_balanced,
    strip_comments,
    template_params,
)
from enigma.verify.threadgroup import ThreadgroupVar, rewrite_threadgroup_vars

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
        j = skip_balanced(code, i, "(", ")")
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
            j = skip_balanced(code, j + k, "[", "]")
        elif c.startswith("(") and re.match(r"\w", code[j - 1]):
            j = skip_balanced(code, j + k, "(", ")")
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


_VECTOR_DIRECT_INIT = re.compile(r"(?<![\w:.>])((?:metal::)?(?:float|half|bfloat|int|uint|short|ushort|char|"
                                 r"uchar|long|ulong)[234])\s+(\w+)\s*\(")
_DECL_PIECE = re.compile(r"^\s*(?:(?:const|volatile|device|thread|threadgroup|constant)\s+)*[A-Za-z_][\w:]*"
                         r"(?:\s*<[^()]*>)?\s+[A-Za-z_]\w*\s*$|^\s*(?:const\s+)?(?:bool|float|half|bfloat|int|uint|"
                         r"short|ushort|char|uchar|long|ulong|size_t|void)[234]?\s*[&*]*\s*$")
_NOT_A_BODY = re.compile(r"(?:\b(?:struct|class|union|enum|namespace)\b[^;{}()]*|=\s*|\bextern\s*\"C\"\s*)$")


def _vector_direct_init_edits(code: str) -> list[tuple[int, int, str]]:
    """`short2 offset(a, b);` in a function body (a vector declared with its constructor's
    arguments: MLX's reduce_col.h) reads `short2 offset = short2(a, b);`: Metal's vector types have
    constructors, clang's ext_vector types do not (`excess elements in scalar initializer`).
    Prototypes (`float4 f(float a);`, `float4 g(float);`) and declarations outside a function body
    are left alone."""
    matches = list(_VECTOR_DIRECT_INIT.finditer(code))
    if not matches:
        return []
    opens: list[int] = []  # innermost unclosed `{` at each match
    inner_brace: list[int] = []
    braces = iter(re.finditer(r"[{}]", code))
    b = next(braces, None)
    for m in matches:
        while b is not None and b.start() < m.start():
            if b.group() == "{":
                opens.append(b.start())
            elif opens:
                opens.pop()
            b = next(braces, None)
        inner_brace.append(opens[-1] if opens else -1)
    edits = []
    for m, brace in zip(matches, inner_brace):
        if brace < 0 or _NOT_A_BODY.search(code[max(0, brace - 200):brace]):
            continue
        close = skip_balanced(code, m.end() - 1, "(", ")")
        if not re.match(r"\s*;", code[close:]) or m.group(2) in ("operator", "return"):
            continue
        inner = code[m.end():close - 1]
        pieces, depth, start = [], 0, 0
        for i, ch in enumerate(inner):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if ch == "," and depth == 0:
                pieces.append(inner[start:i])
                start = i + 1
        pieces.append(inner[start:])
        if not inner.strip() or any(_DECL_PIECE.match(p) for p in pieces):
            continue
        edits.append((m.end(2), m.end(2), f" = {m.group(1)}"))
    return edits


def _innermost_open(code: str, i: int) -> str:
    """The innermost bracket (`(`, `[`, `{`) still open at code[i] ("" at file scope; looks back at
    most 2,000 characters)."""
    depth = {")": 0, "]": 0, "}": 0}
    pairs = {"(": ")", "[": "]", "{": "}"}
    for j in range(i - 1, max(-1, i - 2000), -1):
        ch = code[j]
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            if depth[pairs[ch]]:
                depth[pairs[ch]] -= 1
            else:
                return ch
    return ""


def _braced_argument_edits(code: str) -> list[tuple[int, int, str]]:
    """`f({x, y, z}, ...)`: a braced list of 2 to 4 values passed as a call argument (MLX's
    `elem_to_loc<IdxT>({N * index.x, index.y, index.z}, ...)` for a uint3 parameter) reads
    `f(metal::enigma_list(x, y, z), ...)`, which converts to a vector of as many lanes or to any type
    built as T{x, y, z} (C++ for OpenCL cannot list-initialise a vector parameter)."""
    edits = []
    for m in re.finditer(r"[(,]\s*(\{)", code):
        open_at = m.start(1)
        close = skip_balanced(code, open_at, "{", "}")
        inner = code[open_at + 1:close - 1]
        if "{" in inner or ";" in inner or not re.match(r"\s*[,)]", code[close:]):
            continue
        if _innermost_open(code, open_at) != "(":
            continue
        depth, commas = 0, 0
        for ch in inner:
            depth += ch in "(["
            depth -= ch in ")]"
            commas += ch == "," and depth == 0
        if not 1 <= commas <= 3 or not inner.strip():
            continue
        # two point edits, so that edits inside the list still apply
        edits += [(open_at, open_at + 1, "metal::enigma_list("), (close - 1, close, ")")]
    return edits


def _template_edits(code: str) -> list[tuple[int, int, str]]:
    """C++ for OpenCL has no template kernels: a template kernel definition becomes a plain function
    template (the entry point calls `f<T>(...)`, which instantiates it) and its `[[host_name]]`
    instantiations are dropped (blanked, lines kept)."""
    edits = []
    for m in KERNEL_DEF.finditer(code):
        if template_params(code, m.start()) is not None and code.startswith("kernel", m.start()):
            edits.append((m.start(), m.start() + 6, "      "))
    for m in INSTANTIATION.finditer(code):
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


# ---------------------------------------------------------------------------------------------------
# source rewrites for what Metal accepts and C++ for OpenCL does not (each keeps the line numbers)

_VEC_NAMES = "float|half|bfloat|int|uint|short|ushort|char|uchar|long|ulong"
_BRACE_INIT = re.compile(r"\b((?:metal::)?(?:" + _VEC_NAMES + r")[234])\s+(\w+)\s*=\s*\{")
# (MLX's STEEL_CONST spells `static constant constexpr const bool name [[function_constant(i)]];`)
_FUNCTION_CONSTANT = re.compile(r"\bconstant\s+(?:(?:constexpr|const)\s+)*([\w:]+(?:\s*<[^;{}]*?>)?)\s+(\w+)"
                                r"\s*\[\[\s*function_constant\s*\(")
_BFLOAT_ALIAS = re.compile(r"\btypedef\s+(?:metal::)?bfloat\s+(\w+)\s*;"
                           r"|\busing\s+(\w+)\s*=\s*(?:metal::)?bfloat\s*;")
_THREAD_CTOR = re.compile(r"\)\s*(thread)\s*(?=:[^:])")
_THREAD_CONVERSION = re.compile(r"\boperator\b[^;{}()]*\(\s*\)\s*(?:const\s+)?(thread)\s*(?=\{)")
# a constructor (no return type: after METAL_FUNC/constexpr/inline/explicit, a template header or a
# new member) with a body
_THREAD_CTOR_BODY = re.compile(r"(?:[;{}:>]|\b(?:METAL_FUNC|constexpr|inline|explicit))\s*"
                               r"(?!(?:if|for|while|switch|return)\b)\w+\s*"
                               r"\([^;{}()]*(?:\([^;{}()]*\)[^;{}()]*)*\)\s*(thread)\s*(?=\{)")
_THREAD_CONST_REF = re.compile(r"\b(thread)\s+const\s+[\w:]+(?:\s*<[^;{}()]*?>)?\s*&(?!&)"
                               r"|\bconst\s+(thread)\s+[\w:]+(?:\s*<[^;{}()]*?>)?\s*&(?!&)")
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
        close = skip_balanced(code, m.end() - 1, "(", ")")
        tail = re.match(r"\s*\]\]\s*;", code[close:])
        if not tail:
            continue
        out.append((" ".join(m.group(1).split()), m.group(2), " ".join(code[m.end():close - 1].split()),
                    m.start(), close + tail.end()))
    return out


def absent_params(sig: KernelSig, code: str, fc_values: dict[object, object] | None = None,
                  file: str = "kernel.metal") -> set[int]:
    """Buffer indices of `sig`'s conditional parameters (`[[buffer(i), function_constant(c)]]`) that do
    not exist for these function constant values: `c` false or not given (as in Metal, a launch
    need not bind them)."""
    fc_values = dict(fc_values or {})
    declared = {name: index for _, name, index, _, _ in function_constants(strip_comments(code))}
    out = set()
    for p in sig.params:
        if not p.condition or p.index is None or not p.is_buffer:
            continue
        if p.condition not in declared:
            raise MslError(f"[[buffer({p.index}), function_constant({p.condition})]]: {p.condition} is not a "
                           f"function constant of the source", file, p.line)
        index = declared[p.condition]
        keys = (p.condition, index, int(index) if index.isdigit() else None)
        value = next((fc_values[k] for k in keys if k is not None and k in fc_values), False)
        if not bool(value):
            out.add(p.index)
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
      cannot construct; unqualified (generic) they serve every object in thread memory; so do
      constructors without an initialiser list (`MMATile() thread {}`, MLX's steel GEMM: a member
      default-constructed), conversion operators qualified `thread` (`operator U() const thread`,
      complex.h: a `static_cast<float>` of a returned complex64_t converts a temporary) and
      `thread const T&` references (a temporary binds to them in Metal: `f(short(i))` for a
      `thread const short&` parameter); overloads qualified `device`/`threadgroup`/`constant` still
      serve objects there;
    - `short2 v(a, b);` reads `short2 v = short2(a, b);` (clang's vectors have no constructors).
    - `f({x, y, z})` (a braced list of 2 to 4 values as a call argument) reads
      `f(metal::enigma_list(x, y, z))`, which converts to a vector parameter too.
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
            close = skip_balanced(code, brace, "{", "}")
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
    for m in re.finditer(r"\b(?:metal::)?vec\s*<\s*bool\s*,", code):  # OpenCL has no bool vectors: boolN
        edits.append((m.start(), m.end(), "metal::enigma_bool_vec<"))
    for m in re.finditer(r"\bconstant\s+(char\s*\*)", code):  # a string literal binds to it, as in Metal
        edits.append((m.start(1), m.start(1), "const "))
    spans = {m.span(1) for m in [*_THREAD_CTOR.finditer(code), *_THREAD_CONVERSION.finditer(code),
                                 *_THREAD_CTOR_BODY.finditer(code)]}
    spans |= {m.span(1) if m.group(1) else m.span(2) for m in _THREAD_CONST_REF.finditer(code)}
    for a, b in spans:
        edits.append((a, b, " " * (b - a)))
    edits += _template_edits(code)
    edits += _function_pointer_param_edits(code)
    edits += _vector_cast_edits(src, code)
    edits += _vector_direct_init_edits(code)
    edits += _braced_argument_edits(code)
    for a, b, text in sorted(edits, reverse=True):
        src = src[:a] + text + src[b:]
        code = code[:a] + text + code[b:]
    return rewrite_threadgroup_vars(src, code)
