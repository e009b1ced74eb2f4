"""CPU executor: dot products fused into one matrix product.

1. Chains. A chain is what an unrolled inner product compiles to, inside one region:

    t1 = mul(x1, y1); acc1 = add(acc0, t1); t2 = mul(x2, y2); acc2 = add(acc1, t2); ...

(float32 scalars; every t and every intermediate acc used once, by the next add). When at launch
every x has one shape and every y another, and they vary along different thread axes (the tile rows
and tile columns of a tiled matmul), the chain is acc0 + X^T Y for the stacked X and Y: one matrix
product instead of 2 x L array operations over the whole thread space. Otherwise the chain's own
steps run one after the other, exactly as without fusion.

2. Loops. A for loop with uniform bounds whose one carried float32 value only accumulates products
(`acc = fma(x, y, acc)` or `acc = add(acc, mul(x, y))`): the rest of the body runs for every iteration,
then the products are summed the same way (`LoopDot`).

The matrix product sums the products in another order than the IR, with fused multiply-adds: a
float32 rounding difference of at most about n * 2^-24 * sum|a*b| for n products (docs/abi.md,
"Semantics of every op"; tested to stay inside enigma.verify.check's tolerance), as between the CPU
and a GPU. ENABLED = False runs the loop exactly as the IR says.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MIN_CHAIN = 4  # shorter chains (and loops of fewer iterations) are not worth a matrix product
ENABLED = True  # read when a plan is built; tests turn it off to compare with the unfused executor

Step = tuple[Callable[[Any, dict, Any], None], dict]


def count_uses(body: list[dict], uses: dict[int, int] | None = None) -> dict[int, int]:
    """How many times each value id is an operand in `body` (nested regions and terminators too)."""
    uses = {} if uses is None else uses
    for op in body:
        for v in op.get("in", []):
            uses[v] = uses.get(v, 0) + 1
        for reg in op.get("regions", []):
            count_uses(reg.get("body", []), uses)
    return uses


def _is_f32_scalar(op: dict) -> bool:
    return op.get("types") == ["float32"] and len(op.get("in", [])) == 2 and len(op.get("out", [])) == 1


def fuse_dot_chains(steps: list[Step], uses: dict[int, int], mat: Callable[[Any], Any]) -> list[Step]:
    """`steps` of one region with each chain of MIN_CHAIN or more links replaced by one step, placed
    where the chain's last add was. `mat` turns an executor value into a numpy array."""
    if not ENABLED:
        return steps
    muls = {op["out"][0]: i for i, (_, op) in enumerate(steps) if op["op"] == "mul" and _is_f32_scalar(op)}
    chains: list[list[tuple[int, int]]] = []  # each link: (index of the mul step, index of the add step)
    chain_of: dict[int, int] = {}  # an add's result id -> its chain's position in `chains`
    for i, (_, op) in enumerate(steps):
        if op["op"] != "add" or not _is_f32_scalar(op):
            continue
        p, q = op["in"]
        # the product operand: a single-use mul of this region; prefer the one whose partner continues a chain
        cands = [(t, acc) for t, acc in ((p, q), (q, p)) if t in muls and uses.get(t) == 1 and muls[t] < i]
        if not cands:
            continue
        t, acc = next(((t, a) for t, a in cands if a in chain_of and uses.get(a) == 1), cands[0])
        if acc in chain_of and uses.get(acc) == 1:
            c = chain_of.pop(acc)
            chains[c].append((muls[t], i))
        else:
            c = len(chains)
            chains.append([(muls[t], i)])
        chain_of[op["out"][0]] = c
    fused: dict[int, Step] = {}  # index of a chain's last add -> the fused step
    dropped: set[int] = set()
    for chain in chains:
        if len(chain) < MIN_CHAIN:
            continue
        links = [(steps[m], steps[a]) for m, a in chain]
        fused[chain[-1][1]] = (_fused_step(links, mat), steps[chain[-1][1]][1])
        dropped.update(m for m, _ in chain)
        dropped.update(a for _, a in chain[:-1])
    if not fused:
        return steps
    return [fused.get(i, st) for i, st in enumerate(steps) if i not in dropped]


def _fused_step(links: list[tuple[Step, Step]], mat: Callable[[Any], Any]) -> Callable:
    first_add = links[0][1][1]
    t0 = links[0][0][1]["out"][0]
    acc0 = next(v for v in first_add["in"] if v != t0)
    out = links[-1][1][1]["out"][0]
    pairs = [tuple(m[1]["in"]) for m, _ in links]
    chain_steps = [fn for m, a in links for fn in (m[0], a[0])]

    def run(st: Any, env: dict, mask: Any) -> None:
        r = _outer_sum([mat(env[x]) for x, _ in pairs], [mat(env[y]) for _, y in pairs])
        if r is None:  # not the outer-product shape: the chain as written
            for fn in chain_steps:
                fn(st, env, mask)
            return
        acc = mat(env[acc0])
        env[out] = np.add(r, acc, out=r) if r.shape == np.broadcast_shapes(r.shape, np.shape(acc)) \
            else (r + acc).astype(np.float32)
    return run


class LoopDot:
    """A for loop whose one carried float32 value only accumulates products:
    `acc = fma(x, y, acc)` or `acc = add(acc, mul(x, y))`, x and y independent of acc. With uniform
    bounds it runs the rest of the body for every iteration first, then sums the products as one
    matrix product (`_outer_sum`), or, when they are not outer products, applies the accumulation
    steps in iteration order exactly as written."""

    def __init__(self, rest: list[Step], accumulate: list[Step], x: int, y: int, acc: int, out: int) -> None:
        self.rest, self.accumulate, self.x, self.y, self.acc, self.out = rest, accumulate, x, y, acc, out

    def run(self, st: Any, env: dict, mask: Any, ivs: list[Any], acc: Any,
            run_rest: Callable[[Any], Any], mat: Callable[[Any], Any]) -> Any:
        """The final accumulator; `run_rest(iv)` runs the body's other steps for one iteration."""
        xs, ys = [], []
        for iv in ivs:
            run_rest(iv)
            xs.append(env[self.x])
            ys.append(env[self.y])
        r = _outer_sum([mat(x) for x in xs], [mat(y) for y in ys]) if len(xs) >= MIN_CHAIN else None
        if r is not None:
            a = mat(acc)
            return np.add(r, a, out=r) if r.shape == np.broadcast_shapes(r.shape, np.shape(a)) \
                else (r + a).astype(np.float32)
        for x, y in zip(xs, ys):
            env[self.x], env[self.y], env[self.acc] = x, y, acc
            for fn, _ in self.accumulate:
                fn(st, env, mask)
            acc = env[self.out]
        return acc


def loop_dot(args: list[int], steps: list[Step], term: list[int], uses: dict[int, int]) -> LoopDot | None:
    """The LoopDot of a for loop's body (region args: iv, acc; yields one value), or None."""
    if not ENABLED or len(args) != 2 or len(term) != 1:
        return None
    acc, out = args[1], term[0]
    if uses.get(acc) != 1 or uses.get(out) != 1:
        return None
    index = {op["out"][0]: i for i, (_, op) in enumerate(steps) if len(op.get("out", [])) == 1}
    last = index.get(out)
    if last is None:
        return None
    op = steps[last][1]
    if op["op"] == "fma" and op.get("types") == ["float32"] and len(op["in"]) == 3 and op["in"][2] == acc \
            and acc not in op["in"][:2]:
        x, y = op["in"][:2]
        chosen = [last]
    elif op["op"] == "add" and _is_f32_scalar(op) and acc in op["in"]:
        t = op["in"][1] if op["in"][0] == acc else op["in"][0]
        m = index.get(t)
        if m is None or t == acc or uses.get(t) != 1 or steps[m][1]["op"] != "mul" \
                or not _is_f32_scalar(steps[m][1]) or acc in steps[m][1]["in"]:
            return None
        x, y = steps[m][1]["in"]
        chosen = [m, last]
    else:
        return None
    rest = [st for i, st in enumerate(steps) if i not in chosen]
    return LoopDot(rest, [steps[i] for i in chosen], x, y, acc, out)


def _outer_sum(xs: list[Any], ys: list[Any]) -> np.ndarray | None:
    """sum_j xs[j] * ys[j] as one (batched) matrix product, when every x has one shape and every y
    another, all float32 arrays of one rank, and each has an axis of length > 1 that the other lacks
    (axes both vary along, such as the threadgroup axes of threadgroup memory, are batch axes; swapped
    pairs are put back in order); else None."""
    x0, y0 = xs[0], ys[0]
    if type(x0) is not np.ndarray or type(y0) is not np.ndarray or x0.ndim != y0.ndim:
        return None
    sx, sy = x0.shape, y0.shape
    for j, (x, y) in enumerate(zip(xs, ys)):
        if type(x) is not np.ndarray or type(y) is not np.ndarray or x.dtype != np.float32 \
                or y.dtype != np.float32:
            return None
        if x.shape != sx or y.shape != sy:
            if x.shape == sy and y.shape == sx:
                xs[j], ys[j] = y, x
            else:
                return None
    ax = [i for i, n in enumerate(sx) if n > 1]
    ay = [i for i, n in enumerate(sy) if n > 1]
    both = [i for i in ax if i in ay]
    xo = [i for i in ax if i not in both]
    yo = [i for i in ay if i not in both]
    if not xo or not yo:
        return None
    n = len(xs)
    size = lambda axes, s: int(np.prod([s[i] for i in axes]))  # noqa: E731
    nb, nx, ny = size(both, sx), size(xo, sx), size(yo, sy)
    mx = np.stack(xs).reshape([n] + [sx[i] for i in ax])
    mx = mx.transpose([0] + [1 + ax.index(i) for i in both + xo]).reshape(n, nb, nx)
    my = np.stack(ys).reshape([n] + [sy[i] for i in ay])
    my = my.transpose([0] + [1 + ay.index(i) for i in both + yo]).reshape(n, nb, ny)
    prod = np.matmul(mx.transpose(1, 2, 0), my.transpose(1, 0, 2))  # (nb, nx, ny)
    # back to the thread space: axes in the space's order, the others of length 1
    labels = both + xo + yo
    prod = prod.reshape([sx[i] if i in ax else sy[i] for i in labels]).transpose(np.argsort(labels))
    return np.ascontiguousarray(prod).reshape([max(a, b) for a, b in zip(sx, sy)])
