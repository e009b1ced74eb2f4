"""Generate the per-kernel C++ entry point that the CPU dispatcher calls once per thread.

The entry point `enigma_entry(const enigma_ctx*)` is appended to the Metal source (after a `#line`
directive, so clang's diagnostics still name the .metal lines) and calls the kernel with its buffers
(cast to the declared address space and type) and its builtin values. The `enigma_ctx` layout must
match `Ctx` in runtime/dispatch.cpp.
"""
from __future__ import annotations

import re

from enigma.verify.msl import BUILTINS_SCALAR, BUILTINS_VEC, KernelSig, MslError, Param, strip_comments
from enigma.verify.rewrite import rewrite_source
from enigma.verify.threadgroup import ThreadgroupVar

CTX_DECL = """
struct enigma_ctx {
  void* const* bufs;
  uint tpig[3], tpitg[3], tgpig[3], tptg[3], tgpg[3], tpg[3];
  uint tiitg, tiisg, sgitg, sgptg, tpsg, qgitg, tiiqg, qgptg;
};
"""


def prepare_source(src: str, function_constants: dict[object, object] | None = None,
                   file: str = "kernel.metal") -> tuple[str, list[ThreadgroupVar]]:
    """The source as the harness compiles it, and its threadgroup variables.

    Each threadgroup declaration (threadgroup.find_threadgroup_vars: every form Metal allows) becomes a
    reference to storage from the dispatcher (`enigma_rt_tg_alloc`): a mapping whose end touches a
    guard page (an out-of-bounds access is reported with the variable's name), filled with 0xFF
    before every threadgroup. The address also escapes, so clang cannot fold a read of a
    never-written element away. The rewrite stays on the declaration's lines.
    """
    code = strip_comments(src)
    # `[[kernel]] void f(...)` is Metal's attribute spelling of `kernel`: OpenCL needs the keyword
    # (threadgroup variables are only allowed in kernels); same length, so columns stay. Attributes
    # listed with it (`[[kernel, max_total_threads_per_threadgroup(256)]]`, a hint to Metal's
    # compiler) go with it.
    for m in reversed(list(re.finditer(r"\[\[\s*kernel\s*(?:,[^\]\[]*)?\]\]", code))):
        word = "kernel".ljust(m.end() - m.start())
        src = src[:m.start()] + word + src[m.end():]
        code = code[:m.start()] + word + code[m.end():]
    del code
    return rewrite_source(src, function_constants, file)


def _builtin_expr(p: Param, file: str) -> str:
    t = " ".join(p.type_text.split())
    m = re.fullmatch(r"(?:const\s+)?(u?int|u?short|u?long|uchar|char)([234]?)", t)
    if not m:
        raise MslError(f"builtin [[{p.attr}]] has type `{t}`; use uint, ushort or their 2/3-vectors", file,
                       p.line)
    scalar, n = m.group(1), int(m.group(2) or 1)
    if p.attr in BUILTINS_SCALAR:
        if n != 1:
            raise MslError(f"[[{p.attr}]] is a scalar builtin; declare it as uint, not {t}", file, p.line)
        return f"({scalar})c->{BUILTINS_SCALAR[p.attr]}"
    if p.attr not in BUILTINS_VEC:  # grid_origin: always 0 for dispatchThreadgroups
        return f"({t})(({scalar})0)" if n > 1 else f"({scalar})0"
    f = BUILTINS_VEC[p.attr]
    if n == 1:
        return f"({scalar})c->{f}[0]"
    return f"({t})(" + ", ".join(f"({scalar})c->{f}[{i}]" for i in range(n)) + ")"


def _buffer_expr(p: Param) -> str:
    t = " ".join(p.type_text.split())
    slot = f"(unsigned long)c->bufs[{p.index}]"
    if p.is_reference:
        return f"*({t[:-1].rstrip()}*){slot}"
    return f"({t}){slot}"


def _tg_param_expr(p: Param) -> str:
    """A `[[threadgroup(i)]]` parameter: storage the dispatcher allocates with the length given at
    dispatch (checked and poisoned like a declared threadgroup array)."""
    return f"({' '.join(p.type_text.split())})enigma_rt_tg_param({p.index})"


ENTRY_SYMBOL = "enigma_entry"


def entry_symbol(i: int | None) -> str:
    """The entry point's name: `enigma_entry` for a library of one kernel, `enigma_entry_<i>` for the
    i-th of a library built for several kernels of one source (see entries_source)."""
    return ENTRY_SYMBOL if i is None else f"{ENTRY_SYMBOL}_{i}"


def _entry(sig: KernelSig, file: str, symbol: str) -> str:
    args = [_buffer_expr(p) if p.is_buffer else _tg_param_expr(p) if p.attr == "threadgroup"
            else _builtin_expr(p, file) for p in sig.params]
    call = f"{sig.callee or sig.name}(" + ",\n      ".join(args) + ");"
    return (f'\n#line 1 "<enigma entry for {sig.name}>"\n'
            # the entry point only reads the dispatcher's context: no access checks (kernel calls are)
            f'extern "C" __attribute__((no_sanitize("thread")))\n'
            f'void {symbol}(const enigma_ctx* c) {{\n  {call}\n}}\n')


def entry_source(sig: KernelSig, file: str = "kernel.metal") -> str:
    """C++ (for OpenCL) text defining `enigma_entry` for kernel `sig`."""
    return CTX_DECL + _entry(sig, file, entry_symbol(None))


def entries_source(sigs: list[KernelSig], file: str = "kernel.metal") -> str:
    """C++ text defining `enigma_entry_<i>` for each kernel sigs[i] of one source: one library (one
    clang run over the source) serves them all."""
    return CTX_DECL + "".join(_entry(sig, file, entry_symbol(i)) for i, sig in enumerate(sigs))
