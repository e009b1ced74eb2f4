"""Render the tinygrad corpus cases to Metal with tinygrad's own MetalRenderer (run by thirdparty.py in a
subprocess with the pinned tinygrad wheel on PYTHONPATH); prints JSON on stdout."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tinygrad import Tensor, dtypes  # noqa: E402
from tinygrad.engine.realize import get_program  # noqa: E402
from tinygrad.renderer.cstyle import MetalRenderer  # noqa: E402
from tinygrad.uop.ops import Ops  # noqa: E402
from tinygrad_cases import CASES  # noqa: E402

DT = {"float32": dtypes.float32, "float16": dtypes.float16, "int32": dtypes.int32}


def render(name, specs, fn):
    ins = [Tensor.empty(*shape, dtype=DT[dt], device="CPU") for shape, dt in specs]
    out = fn(*ins).contiguous()
    sched = out.schedule()
    kernels, buffers = [], {}
    for si in sched:
        if si.ast.op is not Ops.SINK:
            raise RuntimeError(f"{name}: schedule item {si.ast.op} is not a kernel")
        p = get_program(si.ast, MetalRenderer())
        if p.vars:
            raise RuntimeError(f"{name}: symbolic variables")
        for b in si.bufs:
            buffers[id(b)] = (b.dtype.base.fmt and __import__("numpy").dtype(b.dtype.base.fmt).name, b.size)
        kernels.append({"src": p.src, "function": re.search(r"kernel void (\w+)", p.src).group(1),
                        "global": list(p.global_size), "local": list(p.local_size),
                        "bufs": [id(b) for b in si.bufs]})
    return {"kernels": kernels, "buffers": buffers, "inputs": [id(t.uop.buffer) for t in ins],
            "output": id(out.uop.buffer), "input_specs": specs, "out_shape": list(out.shape)}


result = {}
for name, (specs, fn, _ref, _rtol) in CASES.items():
    result[name] = render(name, specs, fn)
json.dump(result, sys.stdout)
