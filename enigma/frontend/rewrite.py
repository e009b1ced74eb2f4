"""AST rewrite of a kernel's control flow (a "hybrid DSL", as in CuTe's Python DSL).

Each `if`, `while` and `for ... in range(...)` statement becomes code that asks at trace time whether
its condition is a Python value or a traced one. Each body becomes one local function (it exists once,
so nested constructs grow the code linearly), called by Python or traced into an IR region:

    if c:                    __enigma_c1 = c
        x = f(x)      ==>    def __enigma_then2(x): x = f(x); return (x,)
                             if __enigma_rt.is_static(__enigma_c1):
                                 if __enigma_c1: (x,) = __enigma_then2(*__enigma_rt.pick(locals(), ('x',)))
                             else:
                                 (x,) = __enigma_rt.dyn_if(__enigma_c1, __enigma_then2, None, ('x',),
                                                           __enigma_rt.pick(locals(), ('x',)))

`range(...)` loops are always run-time loops (unroll with enigma.range_constexpr). Inside the body
functions, `return` (and `break`/`continue` of the construct) raise an `Escape` carrying the variables'
values: a Python-valued construct's caller catches it and performs the statement; a traced construct
reports it as an error at the statement's own line. `and`/`or`/`not` and `a if c else b` are rewritten
to helpers that work on traced values. Line numbers are preserved.
"""
from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from enigma.errors import EnigmaError

RT = "__enigma_rt"
_PREFIX = "__enigma_"
# ast.FunctionDef has type_params (PEP 695) from Python 3.12 on
_TYPE_PARAMS: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}


def _name(id: str, store: bool = False) -> ast.Name:
    return ast.Name(id=id, ctx=ast.Store() if store else ast.Load())


def _rt(attr: str) -> ast.Attribute:
    return ast.Attribute(value=_name(RT), attr=attr, ctx=ast.Load())


def _call(fn: ast.expr, *args: ast.expr) -> ast.Call:
    return ast.Call(func=fn, args=list(args), keywords=[])


def _strs(names: list[str]) -> ast.Tuple:
    return ast.Tuple(elts=[ast.Constant(n) for n in names], ctx=ast.Load())


def _names_tuple(names: list[str], store: bool = False) -> ast.Tuple:
    return ast.Tuple(elts=[_name(n, store) for n in names], ctx=ast.Store() if store else ast.Load())


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def assigned(stmts: list[ast.stmt]) -> list[str]:
    """Names bound by `stmts` (not looking into nested scopes), in first-binding order."""
    out: dict[str, None] = {}
    stack: list[ast.AST] = list(reversed(stmts))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out[node.id] = None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = None
            continue
        elif isinstance(node, ast.NamedExpr):
            out[node.target.id] = None  # type: ignore[union-attr]
        if isinstance(node, _SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return [n for n in out if not n.startswith(_PREFIX)]


def escapes(stmts: list[ast.stmt]) -> set[str]:
    """The statements among return/break/continue that leave `stmts` (not those of nested scopes, nor
    break/continue of loops inside `stmts`)."""
    out: set[str] = set()
    stack: list[tuple[ast.AST, bool]] = [(s, True) for s in stmts]
    while stack:
        node, loop_level = stack.pop()
        if isinstance(node, ast.Return):
            out.add("return")
        elif isinstance(node, ast.Break) and loop_level:
            out.add("break")
        elif isinstance(node, ast.Continue) and loop_level:
            out.add("continue")
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, (ast.For, ast.While)):
            stack.extend((c, False) for c in node.body)
            stack.extend((c, loop_level) for c in node.orelse)
            stack.append((node.iter if isinstance(node, ast.For) else node.test, loop_level))
            continue
        stack.extend((c, loop_level) for c in ast.iter_child_nodes(node))
    return out


_RERAISE = "_enigma_reraise"  # attribute marking the statements of an escape handler (see _handler)


class _Guard(ast.NodeTransformer):
    """Inside the function made of a construct's body, turn `return` (and break/continue of the
    construct) into `raise escape(...)`: run statically, the caller performs the statement; traced, it
    is an error at the statement's own line. An escape handler's own statements re-raise the escape."""

    def __init__(self, names: list[str], loop_level: bool) -> None:
        self.names, self.loop_level = names, loop_level

    def _pick(self) -> ast.Call:
        return _call(_rt("pick"), _call(_name("locals")), _strs(self.names))

    def _escape(self, node: ast.stmt, kind: str, value: ast.expr | None) -> ast.stmt:
        reraise = getattr(node, _RERAISE, None)
        if reraise is not None:
            exc = _call(_rt("reraise"), _name(reraise), self._pick())
        else:
            thunk = ast.Lambda(args=_noargs(), body=value if value is not None else ast.Constant(None))
            exc = _call(_rt("escape"), ast.Constant(kind), _at(thunk, node), self._pick())
        return _at(ast.Raise(exc=exc), node)

    def visit_Return(self, node: ast.Return) -> ast.stmt:
        return self._escape(node, "return", node.value)

    def visit_Break(self, node: ast.Break) -> ast.stmt:
        return self._escape(node, "break", None) if self.loop_level else node

    def visit_Continue(self, node: ast.Continue) -> ast.stmt:
        return self._escape(node, "continue", None) if self.loop_level else node

    def _loop(self, node: ast.For | ast.While) -> ast.AST:
        saved, self.loop_level = self.loop_level, False  # break/continue here belong to this Python loop
        node.body = [self.visit(s) for s in node.body]
        self.loop_level = saved
        node.orelse = [self.visit(s) for s in node.orelse]
        return node

    visit_For = visit_While = _loop  # type: ignore[assignment]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node

    visit_Lambda = visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef  # type: ignore[assignment]


def _guarded(stmts: list[ast.stmt], names: list[str]) -> list[ast.stmt]:
    """`stmts` (rewritten in place, never copied: each body exists once) as a construct's function body."""
    g = _Guard(names, True)
    return [g.visit(s) for s in stmts]


class Rewriter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.n = 0

    def fresh(self, base: str) -> str:
        self.n += 1
        return f"{_PREFIX}{base}{self.n}"

    def _def(self, name: str, params: list[str], body: list[ast.stmt], returns: list[str],
             at: ast.AST) -> ast.FunctionDef:
        args = ast.arguments(posonlyargs=[], args=[ast.arg(arg=p) for p in params], vararg=None,
                             kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
        ret = ast.Return(value=_names_tuple(returns))
        fn = ast.FunctionDef(name=name, args=args, body=(body or [ast.Pass()]) + [ret], decorator_list=[],
                             returns=None, **_TYPE_PARAMS)
        for node in (fn, ret):
            _at(node, at)
        return fn

    def _bind(self, names: list[str], call: ast.Call, at: ast.AST) -> ast.stmt:
        stmt: ast.stmt = (ast.Assign(targets=[_names_tuple(names, True)], value=call) if names
                          else ast.Expr(value=call))
        return _at(stmt, at)

    def _pick(self, names: list[str]) -> ast.Call:
        return _call(_rt("pick"), _call(_name("locals")), _strs(names))

    def _static_call(self, fn: str, names: list[str], kinds: set[str], at: ast.AST) -> list[ast.stmt]:
        """Run a construct's function in Python (its condition is a Python value) and bind what it
        assigns; a return/break/continue inside it escapes as an exception the handler performs here."""
        call = self._bind(names, _call(_name(fn), ast.Starred(value=self._pick(names), ctx=ast.Load())), at)
        if not kinds:
            return [call]
        e = self.fresh("e")
        handler: list[ast.stmt] = []
        if names:
            handler.append(_at(ast.Assign(targets=[_names_tuple(names, True)],
                                          value=ast.Attribute(value=_name(e), attr="values", ctx=ast.Load())),
                               at))
        for kind in sorted(kinds):
            if kind == "return":
                stmt: ast.stmt = ast.Return(value=_call(ast.Attribute(value=_name(e), attr="value",
                                                                      ctx=ast.Load())))
            else:
                stmt = ast.Break() if kind == "break" else ast.Continue()
            setattr(stmt, _RERAISE, e)
            test = ast.Compare(left=ast.Attribute(value=_name(e), attr="kind", ctx=ast.Load()),
                               ops=[ast.Eq()], comparators=[ast.Constant(kind)])
            handler.append(_at(ast.If(test=test, body=[_at(stmt, at)], orelse=[]), at))
        h = ast.ExceptHandler(type=_rt("Escape"), name=e, body=handler)
        return [_at(ast.Try(body=[call], handlers=[_at(h, at)], orelse=[], finalbody=[]), at)]

    def visit_If(self, node: ast.If) -> list[ast.stmt]:
        self.generic_visit(node)
        c, then, other = self.fresh("c"), self.fresh("then"), self.fresh("else")
        names = assigned(node.body + node.orelse)
        kinds_then, kinds_else = escapes(node.body), escapes(node.orelse)
        defs = [self._def(then, names, _guarded(node.body, names), names, node)]
        if node.orelse:
            defs.append(self._def(other, names, _guarded(node.orelse, names), names, node.orelse[0]))
        other_fn = _name(other) if node.orelse else ast.Constant(None)
        call = _call(_rt("dyn_if"), _name(c), _name(then), other_fn, _strs(names), self._pick(names))
        static = ast.If(test=_name(c), body=self._static_call(then, names, kinds_then, node),
                        orelse=(self._static_call(other, names, kinds_else, node.orelse[0])
                                if node.orelse else []))
        out = [ast.Assign(targets=[_name(c, True)], value=node.test), *defs,
               ast.If(test=_call(_rt("is_static"), _name(c)), body=[static],
                      orelse=[self._bind(names, call, node)])]
        return [_at(s, node) for s in out]

    def visit_For(self, node: ast.For) -> Any:
        self.generic_visit(node)
        it = node.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and not it.keywords and not any(isinstance(a, ast.Starred) for a in it.args)):
            return node  # a Python loop over a Python iterable (range_constexpr, lists): unrolled
        if node.orelse or not isinstance(node.target, ast.Name):
            raise EnigmaError("a run-time `for ... in range(...)` loop needs a single loop variable and no "
                              "`else:`", self.file, node.lineno,
                              hint="use enigma.range_constexpr(...) to unroll it in Python instead")
        body = self.fresh("body")
        names = [n for n in assigned(node.body) if n != node.target.id]
        fn = self._def(body, [node.target.id] + names, _guarded(node.body, names), names, node)
        call = _call(_rt("dyn_for"), ast.Tuple(elts=it.args, ctx=ast.Load()), _name(body), _strs(names),
                     self._pick(names))
        after = _at(ast.Assign(targets=[_name(node.target.id, True)],
                               value=_call(_rt("loop_var_after"), ast.Constant(node.target.id))), node)
        return [fn, self._bind(names, call, node), after]

    def visit_While(self, node: ast.While) -> Any:
        self.generic_visit(node)
        if node.orelse:
            return node
        cond, body = self.fresh("cond"), self.fresh("wbody")
        names = assigned(node.body)
        kinds = escapes(node.body)
        cond_fn = self._def(cond, names, [], [], node)
        cond_fn.body = [_at(ast.Return(value=node.test), node)]
        body_fn = self._def(body, names, _guarded(node.body, names), names, node)
        call = _call(_rt("dyn_while"), _name(cond), _name(body), _strs(names), self._pick(names))
        test = _call(_name(cond), ast.Starred(value=self._pick(names), ctx=ast.Load()))
        static = ast.While(test=_at(test, node), body=self._static_call(body, names, kinds, node),
                           orelse=[])
        out = [cond_fn, body_fn,
               ast.If(test=_call(_rt("while_static"), _name(cond), self._pick(names)), body=[static],
                      orelse=[self._bind(names, call, node)])]
        return [_at(s, node) for s in out]

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        self.generic_visit(node)
        fn = "and_" if isinstance(node.op, ast.And) else "or_"
        lams = [ast.Lambda(args=_noargs(), body=v) for v in node.values]
        return _at(_call(_rt(fn), *lams), node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return _at(_call(_rt("not_"), node.operand), node)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        lam = [ast.Lambda(args=_noargs(), body=x) for x in (node.body, node.orelse)]
        return _at(_call(_rt("ifexp"), node.test, *lam), node)

    file = ""


def _at(node: Any, at: ast.AST) -> Any:
    """Place a generated node on `at`'s first line (a one-line span: CPython 3.11 attributes method calls
    to the end line of their span, which must stay the statement's own line)."""
    node.lineno = node.end_lineno = at.lineno  # type: ignore[attr-defined]
    node.col_offset = node.end_col_offset = at.col_offset  # type: ignore[attr-defined]
    return node


def _noargs() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                         defaults=[])


def rewrite(fn: Callable[..., Any], rt: Any, keep_defaults: bool = False) -> tuple[Callable[..., Any], int]:
    """The rewritten function (same globals; closure values bound) and the line of its `def`."""
    file = fn.__code__.co_filename
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise EnigmaError(f"cannot read the source of kernel {fn.__name__!r} ({e})", file,
                          fn.__code__.co_firstlineno,
                          hint="kernels must be defined in a .py file (not typed into a REPL or exec'd)",
                          ) from e
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first - 1)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise EnigmaError(f"{fn.__name__!r} is not a plain function definition", file, first)
    fdef.decorator_list = []
    fdef.returns = None
    a = fdef.args
    for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
        arg.annotation = None
    if not keep_defaults:
        a.defaults, a.kw_defaults = [], [None] * len(a.kwonlyargs)
    rw = Rewriter()
    rw.file = file
    fdef.body = [s for stmt in fdef.body for s in _as_list(rw.visit(stmt))]
    free = list(fn.__code__.co_freevars)
    factory = ast.FunctionDef(
        name=f"{_PREFIX}factory",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=RT)] + [ast.arg(arg=f) for f in free],
                           vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=[fdef, ast.Return(value=_name(fdef.name))], decorator_list=[], returns=None, **_TYPE_PARAMS)
    _at(factory, fdef)
    module = ast.fix_missing_locations(ast.Module(body=[factory], type_ignores=[]))
    code = compile(module, file, "exec")
    ns: dict[str, Any] = {}
    exec(code, fn.__globals__, ns)
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:
            cells.append(None)
    return ns[f"{_PREFIX}factory"](rt, *cells), fdef.lineno


def _as_list(x: Any) -> list[ast.stmt]:
    return x if isinstance(x, list) else [x]
