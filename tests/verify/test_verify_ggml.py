"""llama.cpp's ggml-metal kernels in the third-party corpus (issue 13): ggml-metal.metal from the pinned
llama-cpp-python sdist (thirdparty.ggml_metal_dir), compiled exactly as written with its own headers,
each kernel launched the way ggml's host code (ggml-metal.m) launches it: the same argument structs
(`ggml_metal_kargs_*`, laid out from ggml-metal-impl.h's own declarations), buffer indices, grid,
threadgroup size and threadgroup memory. Results are compared with numpy.

ggml's tensors: `ne[i]` elements and `nb[i]` bytes of stride along dimension i, dimension 0 the
innermost; a C-contiguous numpy array of shape (ne3, ne2, ne1, ne0) is one. The argument structs
name src0's fields ne0i/nb0i, src1's ne1i/nb1i and dst's nei/nbi; `kargs` fills those from arrays.

All kernels of one test run come from one library (compile_msl(..., together=...)): one clang run
over ggml-metal.metal's 8,000 lines serves them all."""
from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import thirdparty
from toolcheck import need_tool

pytestmark = pytest.mark.needs_clang
F32, F16, I32 = np.float32, np.float16, np.int32
KNOWN_FAILURES: dict[str, str] = {}  # host_name -> reason (each also in docs/verify.md)


@pytest.fixture(autouse=True, scope="module")
def _clang():
    need_tool("clang++-22", "clang++-19", "clang++")


# ---- ggml's argument structs, from ggml-metal-impl.h ----------------------------------------------

_CTYPES = {"int32_t": "<i4", "uint32_t": "<u4", "int64_t": "<i8", "uint64_t": "<u8", "size_t": "<u8",
           "float": "<f4", "int16_t": "<i2", "uint16_t": "<u2", "int8_t": "i1", "uint8_t": "u1",
           "int": "<i4", "bool": "u1", "ggml_sort_order": "<i4"}


def structs(header: str) -> dict[str, np.dtype]:
    """Every `typedef struct { ... } name;` of the header as a numpy dtype with C's layout."""
    out = {}
    for body, name in re.findall(r"typedef\s+struct\s*\{([^{}]*)\}\s*(\w+)\s*;", header):
        fields = []
        for typ, fname, n in re.findall(r"(\w+)\s+(\w+)\s*(?:\[(\d+)\])?\s*;", re.sub(r"//[^\n]*", "", body)):
            fields.append((fname, _CTYPES[typ], (int(n),)) if n else (fname, _CTYPES[typ]))
        out[name] = np.dtype(fields, align=True)
    return out


def tensor(a: np.ndarray, prefix: str) -> dict[str, int]:
    """ne/nb fields of `a` (numpy shape (ne3, ne2, ne1, ne0), C order) under ggml's names for src0
    ("0"), src1 ("1") or dst ("")."""
    shape = list(a.shape[::-1]) + [1] * (4 - a.ndim)
    strides = list(a.strides[::-1])
    nb = strides[:1] + [0, 0, 0]
    for i in range(1, 4):
        nb[i] = strides[i] if i < len(strides) else nb[i - 1] * shape[i - 1]
    out = {}
    for i in range(4):
        out[f"ne{prefix}{i}"] = shape[i]
        out[f"nb{prefix}{i}"] = nb[i]
    return out


@dataclass
class Ggml:
    source: str
    include: str
    types: dict[str, np.dtype]

    def kargs(self, struct: str, *tensors: dict[str, int], **given: Any) -> np.ndarray:
        """One `ggml_metal_kargs_*` value as bytes: its fields from the tensors' ne/nb and `given`;
        a field that neither names is an error (a launch with a silently zero field proves nothing)."""
        dt = self.types[struct]
        vals: dict[str, Any] = {}
        for t in tensors:
            vals.update(t)
        vals.update(given)
        rec = np.zeros((), dt)
        missing = [f for f in dt.names if f not in vals]
        assert not missing, f"{struct}: no value for {missing}"
        for f in dt.names:
            rec[f] = vals[f]
        return np.frombuffer(rec.tobytes(), np.uint8).copy()


@pytest.fixture(scope="module")
def ggml() -> Ggml:
    d = thirdparty.ggml_metal_dir()
    header = (d / "ggml-metal-impl.h").read_text()
    return Ggml((d / "ggml-metal.metal").read_text(), str(d), structs(header))


# ---- ggml's quantized blocks (ggml-common.h), built and dequantized in numpy ----------------------

Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 32 values: d * (nibble - 8)
Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])  # 32 values: d * q


def quant_q4_0(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Random q4_0 rows (cols a multiple of 32) and their values: low nibbles are elements 0-15 of a
    block, high nibbles 16-31."""
    b = np.zeros((rows, cols // 32), Q4_0)
    b["d"] = rng.uniform(0.01, 0.1, b.shape).astype(F16)
    b["qs"] = rng.integers(0, 256, b["qs"].shape)
    q = np.concatenate([b["qs"] & 15, b["qs"] >> 4], axis=-1).astype(F32) - 8
    return b, (b["d"].astype(F32)[..., None] * q).reshape(rows, cols)


def quant_q8_0(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.zeros((rows, cols // 32), Q8_0)
    b["d"] = rng.uniform(0.001, 0.01, b.shape).astype(F16)
    b["qs"] = rng.integers(-128, 128, b["qs"].shape)
    return b, (b["d"].astype(F32)[..., None] * b["qs"].astype(F32)).reshape(rows, cols)


Q4_K = np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
Q6_K = np.dtype([("ql", "u1", (128,)), ("qh", "u1", (64,)), ("scales", "i1", (16,)), ("d", "<f2")])


def _scale_min_k4(j: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (q: the blocks' scales)."""
    q = q.astype(np.int32)
    if j < 4:
        return q[..., j] & 63, q[..., j + 4] & 63
    return (q[..., j + 4] & 15) | ((q[..., j - 4] >> 6) << 4), (q[..., j + 4] >> 4) | ((q[..., j] >> 6) << 4)


def quant_q4_K(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Random q4_K rows (cols a multiple of 256) and their values, as ggml's dequantize_row_q4_K."""
    b = np.zeros((rows, cols // 256), Q4_K)
    b["d"] = rng.uniform(0.001, 0.01, b.shape).astype(F16)
    b["dmin"] = rng.uniform(0.001, 0.01, b.shape).astype(F16)
    b["scales"] = rng.integers(0, 256, b["scales"].shape)
    b["qs"] = rng.integers(0, 256, b["qs"].shape)
    d, dmin = b["d"].astype(F32)[..., None], b["dmin"].astype(F32)[..., None]
    out = np.zeros(b.shape + (256,), F32)
    for j in range(4):  # 64 values: 32 low nibbles, then 32 high nibbles of qs[32 j : 32 j + 32]
        q = b["qs"][..., 32 * j:32 * j + 32].astype(F32)
        for half, nib in ((0, q % 16), (1, q // 16)):
            sc, m = _scale_min_k4(2 * j + half, b["scales"])
            at = 64 * j + 32 * half
            out[..., at:at + 32] = (d * sc[..., None]) * nib - dmin * m[..., None]
    return b, out.reshape(rows, cols)


def quant_q6_K(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Random q6_K rows and their values, as ggml's dequantize_row_q6_K."""
    b = np.zeros((rows, cols // 256), Q6_K)
    b["d"] = rng.uniform(0.0005, 0.002, b.shape).astype(F16)
    b["scales"] = rng.integers(-128, 128, b["scales"].shape)
    b["ql"] = rng.integers(0, 256, b["ql"].shape)
    b["qh"] = rng.integers(0, 256, b["qh"].shape)
    d = b["d"].astype(F32)[..., None]
    out = np.zeros(b.shape + (256,), F32)
    ql, qh, sc = b["ql"].astype(np.int32), b["qh"].astype(np.int32), b["scales"].astype(F32)
    for n in (0, 1):  # two halves of 128 values
        lo, hi, s8 = ql[..., 64 * n:64 * n + 64], qh[..., 32 * n:32 * n + 32], sc[..., 8 * n:8 * n + 8]
        l = np.arange(32)
        q = [((lo[..., l] & 15) | ((hi >> 0 & 3) << 4)) - 32,
             ((lo[..., l + 32] & 15) | ((hi >> 2 & 3) << 4)) - 32,
             ((lo[..., l] >> 4) | ((hi >> 4 & 3) << 4)) - 32,
             ((lo[..., l + 32] >> 4) | ((hi >> 6 & 3) << 4)) - 32]
        for k in range(4):
            out[..., 128 * n + 32 * k + l] = d * s8[..., l // 16 + 2 * k] * q[k]
    return b, out.reshape(rows, cols)


# name fragment -> (builder, ggml's N_SG, N_R0 for mul_mv: rows per threadgroup = N_SG * N_R0)
QUANTS: dict[str, tuple[Callable[..., tuple[np.ndarray, np.ndarray]], int, int]] = {
    "q4_0": (quant_q4_0, 2, 4), "q8_0": (quant_q8_0, 2, 4), "q4_K": (quant_q4_K, 2, 4),
    "q6_K": (quant_q6_K, 2, 1),
}


def _quant(name: str) -> tuple[Callable[..., tuple[np.ndarray, np.ndarray]], int, int]:
    return next(v for k, v in QUANTS.items() if f"_{k}" in name)


# ---- the cases ---------------------------------------------------------------------------------

@dataclass
class Launch:
    buffers: dict[int, Any]
    grid: tuple[int, ...]
    block: tuple[int, ...]
    out: np.ndarray
    want: np.ndarray
    rtol: float = 1e-5
    atol: float = 1e-6
    threadgroup_memory: dict[int, int] = field(default_factory=dict)


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x.astype(np.float64))


# unary kernels `(src0, dst, tpig)`, launched n threadgroups of 1 thread (ggml-metal.m)
UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "kernel_relu": lambda x: np.maximum(x, 0),
    "kernel_sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "kernel_tanh": np.tanh,
    "kernel_gelu": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608028654 * x * (1 + 0.044715 * x * x))),
    "kernel_gelu_quick": lambda x: x / (1 + np.exp(-1.702 * x)),
    "kernel_gelu_erf": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "kernel_silu": lambda x: x / (1 + np.exp(-x)),
    "kernel_elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "kernel_sqr": np.square,
    "kernel_sqrt": lambda x: np.sqrt(np.abs(x)),  # input made non-negative below
    "kernel_sin": np.sin,
    "kernel_cos": np.cos,
    "kernel_neg": np.negative,
    "kernel_abs": np.abs,
    "kernel_sgn": np.sign,
    "kernel_step": lambda x: (x > 0).astype(F32),
    "kernel_hardswish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
    "kernel_hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
    "kernel_exp": np.exp,
    "kernel_gelu_4": lambda x: 0.5 * x * (1 + np.tanh(0.7978845608028654 * x * (1 + 0.044715 * x * x))),
    "kernel_silu_4": lambda x: x / (1 + np.exp(-x)),
}


def unary(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal(48).astype(F32)
    if name == "kernel_sqrt":
        x = np.abs(x)
    out = np.zeros_like(x)
    n = x.size // 4 if name.endswith("_4") else x.size
    return Launch({0: x, 1: out}, (n,), (1,), out, UNARY[name](x.astype(np.float64)), rtol=2e-5, atol=2e-6)


def scale(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal(40).astype(F32)
    out = np.zeros_like(x)
    n = x.size // 4 if name.endswith("_4") else x.size
    return Launch({0: x, 1: out, 2: F32(1.5), 3: F32(-0.25)}, (n,), (1,), out, x * F32(1.5) - F32(0.25))


def clamp(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal(37).astype(F32)
    out = np.zeros_like(x)
    return Launch({0: x, 1: out, 2: F32(-0.5), 3: F32(0.75)}, (x.size,), (1,), out, np.clip(x, -0.5, 0.75))


def leaky_relu(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal(37).astype(F32)
    out = np.zeros_like(x)
    args = g.kargs("ggml_metal_kargs_leaky_relu", slope=0.125)
    return Launch({0: x, 1: out, 2: args}, (x.size,), (1,), out, np.where(x > 0, x, x * F32(0.125)))


BINARY = {"kernel_add": np.add, "kernel_sub": np.subtract, "kernel_mul": np.multiply, "kernel_div": np.divide}


def binary(g: Ggml, name: str) -> Launch:
    """src1 broadcast along rows and along dimension 2 (ggml's modulo indexing), as ggml-metal.m
    launches it: (ne01, ne02, ne03) groups of min(1024, ne00) threads."""
    rng = _rng(name)
    a = rng.standard_normal((1, 3, 5, 70)).astype(F32)
    b = rng.uniform(0.5, 2, (1, 1, 5, 70)).astype(F32)
    out = np.zeros_like(a)
    args = g.kargs("ggml_metal_kargs_bin", tensor(a, "0"), tensor(b, "1"), tensor(out, ""), offs=0,
                   o1=[0] * 8)
    return Launch({0: args, 1: a, 2: b, 3: out}, (5, 3, 1), (64,), out, BINARY[name](a, b))


def sum_rows(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((2, 3, 100)).astype(F32)
    out = np.zeros((2, 3, 1), F32)
    args = g.kargs("ggml_metal_kargs_sum_rows", tensor(x, "0"), tensor(x, "1"), tensor(out, ""))
    return Launch({0: args, 1: x, 2: out}, (3, 2, 1), (64,), out, x.sum(-1, keepdims=True, dtype=np.float64),
                  threadgroup_memory={0: 32 * 4})


def soft_max(g: Ggml, name: str) -> Launch:
    """No mask and no sinks: ggml binds src0 again at indices 1 and 2 (the kernel compares the
    pointers), so the same array goes there."""
    x = _rng(name).standard_normal((1, 2, 3, 96)).astype(F32)
    out = np.zeros_like(x)
    vec4 = name.endswith("_4")
    args = g.kargs("ggml_metal_kargs_soft_max", tensor(x, "0"), tensor(out, ""), ne11=3, ne12=2, ne13=1,
                   nb11=0, nb12=0, nb13=0, scale=0.5, max_bias=0.0, m0=1.0, m1=1.0, n_head_log2=2)
    z = x.astype(np.float64) * 0.5
    e = np.exp(z - z.max(-1, keepdims=True))
    nth = 32 if vec4 else 64  # ggml: doubles from 32 while below the row length and nth*rows < 256
    return Launch({0: x, 1: x, 2: x, 3: out, 4: args}, (3, 2, 1), (nth,), out, e / e.sum(-1, keepdims=True),
                  threadgroup_memory={0: 32 * 4})


def rms_norm(g: Ggml, name: str) -> Launch:
    rng = _rng(name)
    x = rng.standard_normal((1, 2, 3, 128)).astype(F32)
    w = rng.standard_normal((1, 1, 1, 128)).astype(F32)
    bias = rng.standard_normal((1, 1, 1, 128)).astype(F32)
    out = np.zeros_like(x)
    t = tensor(x, "0")
    nfuse = {"kernel_rms_norm": 1, "kernel_rms_norm_mul": 2, "kernel_rms_norm_mul_add": 3}[name]
    nef = [[t[f"ne0{i}"], 1, 1] for i in (1, 2, 3)]
    nbf = [[t[f"nb0{i}"], 0, 0] for i in (1, 2, 3)]
    for k in range(1, nfuse):  # the fused operands: one row broadcast over all rows
        for i in range(3):
            nef[i][k] = 1
            nbf[i][k] = 128 * 4
    args = g.kargs("ggml_metal_kargs_rms_norm", tensor(out, ""), ne00=128, ne00_4=32, eps=1e-6,
                   nef1=nef[0], nef2=nef[1], nef3=nef[2], nbf1=nbf[0], nbf2=nbf[1], nbf3=nbf[2])
    y = x.astype(np.float64)
    want = y / np.sqrt((y * y).mean(-1, keepdims=True) + 1e-6)
    if nfuse >= 2:
        want = want * w
    if nfuse == 3:
        want = want + bias
    return Launch({0: args, 1: x, 2: w if nfuse >= 2 else x, 3: bias if nfuse == 3 else x, 4: out}, (3, 2, 1),
                  (32,), out, want, threadgroup_memory={0: 32 * 4})


def norm(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((5, 64)).astype(F32) * 3 + 1
    out = np.zeros_like(x)
    args = g.kargs("ggml_metal_kargs_norm", ne00=64, ne00_4=16, nb01=64 * 4, eps=1e-5)
    y = x.astype(np.float64) - x.mean(-1, keepdims=True)
    want = y / np.sqrt((y * y).mean(-1, keepdims=True) + 1e-5)
    return Launch({0: args, 1: x, 2: out}, (5,), (32,), out, want, rtol=1e-4, atol=1e-5,
                  threadgroup_memory={0: 32 * 4})


def argmax(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((6, 150)).astype(F32)
    out = np.zeros(6, I32)
    return Launch({0: x, 1: out, 2: np.int64(150), 3: np.uint64(150 * 4)}, (6,), (64,), out,
                  x.argmax(-1).astype(I32), threadgroup_memory={0: 32 * 4, 1: 32 * 4})


def swiglu(g: Ggml, name: str) -> Launch:
    """One operand split in halves (src1 absent: ggml binds src0 again), as ggml's SWIGLU/GEGLU."""
    x = _rng(name).standard_normal((4, 2 * 40)).astype(F32)
    out = np.zeros((4, 40), F32)
    args = g.kargs("ggml_metal_kargs_glu", ne00=80, nb01=80 * 4, ne10=80, nb11=80 * 4, ne0=40, nb1=40 * 4,
                   i00=0, i10=40, alpha=0.0, limit=0.0)
    a, b = x[:, :40].astype(np.float64), x[:, 40:].astype(np.float64)
    act = {"kernel_swiglu": a / (1 + np.exp(-a)), "kernel_reglu": np.maximum(a, 0),
           "kernel_geglu": 0.5 * a * (1 + np.tanh(0.7978845608028654 * a * (1 + 0.044715 * a * a)))}[name]
    return Launch({0: x, 1: x, 2: out, 3: args}, (4,), (40,), out, act * b, rtol=1e-5, atol=1e-5)


def diag_mask_inf(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((2, 5, 16)).astype(F32)
    out = np.zeros_like(x)
    args = g.kargs("ggml_metal_kargs_diag_mask_inf", ne00=16, ne01=5, n_past=3)
    i, j = np.arange(5)[:, None], np.arange(16)[None, :]
    want = np.where(j > 3 + i, -np.inf, x)
    grid = (16 * 5 * 2 // 8,) if name.endswith("_8") else (16, 5, 2)
    return Launch({0: x, 1: out, 2: args}, grid, (1,), out, want)


def mul_mv_f32(g: Ggml, name: str) -> Launch:
    """dst = src1 @ src0^T, kernel_mul_mv<float, float4, float, float4>: nr0 = 1, nr1 = 4 (ggml-metal.m)."""
    rng = _rng(name)
    a = rng.standard_normal((1, 1, 7, 96)).astype(F32)   # src0: 7 rows of 96
    b = rng.standard_normal((1, 1, 5, 96)).astype(F32)   # src1: 5 rows
    out = np.zeros((1, 1, 5, 7), F32)
    args = g.kargs("ggml_metal_kargs_mul_mv", tensor(a, "0"), tensor(b, "1"), tensor(out, ""), r2=1, r3=1)
    want = b[0, 0].astype(np.float64) @ a[0, 0].T.astype(np.float64)
    return Launch({0: args, 1: a, 2: b, 3: out}, (7, -(-5 // 4), 1), (32, 1), out, want[None, None])


def mul_mv_quant(g: Ggml, name: str, rows: int = 16) -> Launch:
    """kernel_mul_mv_{q4_0,q8_0,q4_K,q6_K}_f32: N_SG simdgroups of N_R0 rows each (ggml-metal-impl.h).
    A threadgroup reads all its rows whether they exist or not: `rows` a multiple of N_SG * N_R0
    (see test_ggml_mul_mv_q4_0_reads_rows_past_the_matrix)."""
    rng = _rng(name)
    cols, n1 = 512, 3
    quant, nsg, nr0 = _quant(name)
    blocks, vals = quant(rng, rows, cols)
    b = rng.standard_normal((1, 1, n1, cols)).astype(F32)
    out = np.zeros((1, 1, n1, rows), F32)
    src0 = blocks.view(np.uint8).reshape(rows, -1)
    t0 = {"ne00": cols, "ne01": rows, "ne02": 1, "ne03": 1, "nb00": blocks.dtype.itemsize,
          "nb01": src0.shape[1], "nb02": src0.nbytes, "nb03": src0.nbytes}
    args = g.kargs("ggml_metal_kargs_mul_mv", t0, tensor(b, "1"), tensor(out, ""), r2=1, r3=1)
    want = b[0, 0].astype(np.float64) @ vals.T.astype(np.float64)
    return Launch({0: args, 1: src0, 2: b, 3: out}, (-(-rows // (nsg * nr0)), n1, 1), (32, nsg), out,
                  want[None, None], rtol=1e-4, atol=1e-4)


def mul_mm(g: Ggml, name: str) -> Launch:
    """kernel_mul_mm_{f32,f16,q4_0,q8_0}_f32: simdgroup-matrix tiles of 64 x 32, 128 threads, 8 KiB of
    threadgroup memory (ggml-metal.m); sizes not multiples of the tiles."""
    rng = _rng(name)
    rows, n1 = 72, 40  # rows a multiple of 4: see test_ggml_mul_mm_misaligned_float4_store
    cols = 256 if "_K" in name else 64
    b = rng.standard_normal((1, 1, n1, cols)).astype(F32)
    out = np.zeros((1, 1, n1, rows), F32)
    if name[len("kernel_mul_mm_"):].startswith("q"):
        blocks, vals = _quant(name)[0](rng, rows, cols)
        src0 = blocks.view(np.uint8).reshape(rows, -1)
    else:
        dt = F16 if "f16" in name else F32
        src0 = rng.standard_normal((rows, cols)).astype(dt)
        vals = src0.astype(F32)
    t0 = {"ne00": cols, "ne02": 1, "nb01": src0.strides[0], "nb02": src0.nbytes, "nb03": src0.nbytes}
    t1 = tensor(b, "1")
    args = g.kargs("ggml_metal_kargs_mul_mm", t0, t1, ne0=rows, ne1=n1, r2=1, r3=1)
    # these instantiations stage src0's tiles in threadgroup memory as half (T = half), src1's as float
    a16 = vals.astype(F16).astype(np.float64)
    return Launch({0: args, 1: src0, 2: b, 3: out}, (-(-n1 // 32), -(-rows // 64), 1), (128,), out,
                  (b[0, 0].astype(np.float64) @ a16.T)[None, None], rtol=1e-5, atol=1e-5,
                  threadgroup_memory={0: 8192})


def get_rows(g: Ggml, name: str) -> Launch:
    rng = _rng(name)
    idx = np.array([[3, 0, 5, 3]], I32)
    cols = 256 if "_K" in name else 64
    out = np.zeros((1, 4, cols), F32)
    if name == "kernel_get_rows_f32":
        src0 = rng.standard_normal((6, cols)).astype(F32)
        vals = src0
    else:
        blocks, vals = _quant(name)[0](rng, 6, cols)
        src0 = blocks.view(np.uint8).reshape(6, -1)
    args = g.kargs("ggml_metal_kargs_get_rows", ne00=cols, nb01=src0.strides[0], nb02=src0.nbytes, ne10=4,
                   nb10=4, nb11=16, nb1=cols * 4, nb2=4 * cols * 4)
    return Launch({0: args, 1: src0, 2: idx, 3: out}, (4, 1, 1), (32,), out, vals[idx[0]][None])


def rope(g: Ggml, name: str) -> Launch:
    """RoPE over (tokens, heads, head_dim) with positions (src1) and, for neox, per-pair frequency
    factors (src2; for norm ggml binds src0 there); YaRN off (ext_factor 0), dims past n_dims copied.
    (ne01, ne02, ne03) groups of min(1024, ne00) threads."""
    rng = _rng(name)
    tokens, heads, dim, n_dims, base = 3, 2, 24, 16, 10000.0
    x = rng.standard_normal((1, tokens, heads, dim)).astype(F32)
    pos = np.array([0, 5, 37], I32)
    out = np.zeros_like(x)
    neox = "neox" in name
    ff = rng.uniform(1, 2, n_dims // 2).astype(F32)
    args = g.kargs("ggml_metal_kargs_rope", tensor(x, "0"), tensor(out, ""), n_past=0, n_dims=n_dims,
                   n_ctx_orig=4096, freq_base=base, freq_scale=1.0, ext_factor=0.0, attn_factor=1.0,
                   beta_fast=32.0, beta_slow=1.0, sect_0=0, sect_1=0, sect_2=0, sect_3=0)
    y = x.astype(np.float64)
    want = y.copy()
    ic = np.arange(n_dims // 2)
    # (1, tokens, 1, pairs)
    theta = pos[None, :, None, None].astype(np.float64) * base ** (-2.0 * ic / n_dims)
    if neox:
        theta = theta / ff
        i0, i1 = ic, ic + n_dims // 2
    else:
        i0, i1 = 2 * ic, 2 * ic + 1
    c, s_ = np.cos(theta), np.sin(theta)
    want[..., i0] = y[..., i0] * c - y[..., i1] * s_
    want[..., i1] = y[..., i0] * s_ + y[..., i1] * c
    return Launch({0: args, 1: x, 2: pos, 3: ff if neox else x, 4: out}, (heads, tokens, 1), (dim,), out,
                  want, rtol=1e-4, atol=3e-5)


def cpy(g: Ggml, name: str) -> Launch:
    """Convert a (2, 3, 40) tensor, src0 a transposed view (non-contiguous rows); ggml's launch packs
    rows into 64 threads: nth = 40, nrptg = 2."""
    src_t, dst_t = {"kernel_cpy_f32_f16": (F32, F16), "kernel_cpy_f16_f32": (F16, F32),
                    "kernel_cpy_f32_f32": (F32, F32)}[name]
    base = _rng(name).standard_normal((2, 40, 3)).astype(src_t)
    x = base.transpose(0, 2, 1)  # (2, 3, 40) with nb00 = 3 elements
    out = np.zeros((2, 3, 40), dst_t)
    t0 = tensor(np.ascontiguousarray(x), "0")
    t0.update(nb00=base.strides[2] * 3, nb01=base.strides[2], nb02=base.strides[0])
    args = g.kargs("ggml_metal_kargs_cpy", t0, tensor(out, ""))
    return Launch({0: args, 1: base, 2: out}, (2, 2, 1), (40, 2), out, x.astype(dst_t), rtol=0, atol=0)


def argsort(g: Ggml, name: str) -> Launch:
    """Bitonic sort of each row in one threadgroup of the row padded to a power of two."""
    x = _rng(name).permutation(5 * 24).astype(F32).reshape(5, 24)  # distinct keys: one right answer
    out = np.zeros((5, 24), I32)
    args = g.kargs("ggml_metal_kargs_argsort", ncols=24, ncols_pad=32)
    want = np.argsort(x, -1) if name.endswith("asc") else np.argsort(-x, -1)
    return Launch({0: x, 1: out, 2: args}, (1, 5, 1), (32,), out, want, rtol=0, atol=0,
                  threadgroup_memory={0: 32 * 4})


def arange(g: Ggml, name: str) -> Launch:
    out = np.zeros(50, F32)
    args = g.kargs("ggml_metal_kargs_arange", ne0=50, start=-2.0, step=0.25)
    return Launch({0: out, 1: args}, (1,), (50,), out, -2.0 + 0.25 * np.arange(50), rtol=0, atol=0)


def concat(g: Ggml, name: str) -> Launch:
    rng = _rng(name)
    a = rng.standard_normal((1, 2, 3, 20)).astype(F32)
    b = rng.standard_normal((1, 2, 4, 20)).astype(F32)
    out = np.zeros((1, 2, 7, 20), F32)
    args = g.kargs("ggml_metal_kargs_concat", tensor(a, "0"), tensor(b, "1"), tensor(out, ""), dim=1)
    return Launch({0: args, 1: a, 2: b, 3: out}, (7, 2, 1), (20,), out, np.concatenate([a, b], axis=2),
                  rtol=0, atol=0)


def l2_norm(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((4, 64)).astype(F32)
    out = np.zeros_like(x)
    args = g.kargs("ggml_metal_kargs_l2_norm", ne00=64, ne00_4=16, nb01=256, eps=1e-6)
    y = x.astype(np.float64)
    want = y / np.maximum(np.sqrt((y * y).sum(-1, keepdims=True)), 1e-6)
    return Launch({0: args, 1: x, 2: out}, (4,), (16,), out, want, threadgroup_memory={0: 32 * 4})


def group_norm(g: Ggml, name: str) -> Launch:
    """4 groups over 8 channels of 5 x 6: each threadgroup normalises 2 channels."""
    x = _rng(name).standard_normal((8, 5, 6)).astype(F32) * 2 + 1
    out = np.zeros_like(x)
    args = g.kargs("ggml_metal_kargs_group_norm", ne00=6, ne01=5, ne02=8, nb00=4, nb01=24, nb02=120,
                   n_groups=4, eps=1e-6)
    y = x.astype(np.float64).reshape(4, -1)
    y = y - y.mean(-1, keepdims=True)
    want = (y / np.sqrt((y * y).mean(-1, keepdims=True) + 1e-6)).reshape(x.shape)
    return Launch({0: x, 1: out, 2: args}, (4,), (32,), out, want, rtol=1e-4, atol=1e-5,
                  threadgroup_memory={0: 32 * 4})


def pad(g: Ggml, name: str) -> Launch:
    x = _rng(name).standard_normal((2, 3, 10)).astype(F32)
    out = np.full((3, 4, 13), 7, F32)
    args = g.kargs("ggml_metal_kargs_pad", tensor(x, "0"), tensor(out, ""))
    want = np.zeros_like(out)
    want[:2, :3, :10] = x
    return Launch({0: x, 1: out, 2: args}, (4, 3, 1), (13,), out, want, rtol=0, atol=0)


def upscale(g: Ggml, name: str) -> Launch:
    """Nearest-neighbour upscale by 2 in dimensions 0 and 1 (scale factors ne_dst / ne_src)."""
    x = _rng(name).standard_normal((2, 3, 5)).astype(F32)
    out = np.zeros((2, 6, 10), F32)
    args = g.kargs("ggml_metal_kargs_upscale", tensor(x, "0"), tensor(out, ""), sf0=2.0, sf1=2.0, sf2=1.0,
                   sf3=1.0)
    return Launch({0: x, 1: out, 2: args}, (6, 2, 1), (10,), out, x.repeat(2, axis=1).repeat(2, axis=2),
                  rtol=0, atol=0)


def timestep_embedding(g: Ggml, name: str) -> Launch:
    t = np.array([0.0, 1.0, 17.5, 900.0], F32)
    dim, period = 32, 10000
    out = np.zeros((4, dim), F32)
    args = g.kargs("ggml_metal_kargs_timestep_embedding", nb1=dim * 4, dim=dim, max_period=period)
    half = dim // 2
    freq = np.exp(-np.log(period) * np.arange(half) / half)
    arg = t.astype(np.float64)[:, None] * freq
    return Launch({0: t, 1: out, 2: args}, (4,), (half,), out, np.concatenate([np.cos(arg), np.sin(arg)], -1),
                  rtol=1e-4, atol=2e-4)


def flash_attn(g: Ggml, name: str) -> Launch:
    """Attention of 3 queries over 96 cached keys/values (f16) for 4 heads sharing 2 KV heads, with a
    mask (f16, rows padded to 64 as ggml requires; one whole 32-key block masked for every query,
    which the kernels skip) and no sinks (ggml binds Q there). The vec kernel: one query per
    threadgroup of (32, 2) threads; the other: 8 queries per threadgroup of (32, 4), simdgroup
    matrices (ggml-metal.m's FATTN_SMEM sizes)."""
    rng = _rng(name)
    nq, nkv, heads, kv_heads, d = 3, 96, 4, 2, 64
    q = rng.standard_normal((1, heads, nq, d)).astype(F32)
    k = rng.standard_normal((1, kv_heads, nkv, d)).astype(F16)
    v = rng.standard_normal((1, kv_heads, nkv, d)).astype(F16)
    mask = np.zeros((1, 1, 64, nkv), F16)
    mask[..., 32:64] = -np.inf
    mask[0, 0, :nq, 70:75] = -np.inf
    mask[0, 0, :nq, 3] = -1.5
    out = np.zeros((1, nq, heads, d), F32)
    scale = 1 / 8
    args = g.kargs("ggml_metal_kargs_flash_attn_ext", ne01=nq, ne02=heads, ne03=1, nb01=q.strides[2],
                   nb02=q.strides[1], nb03=q.strides[0], ne11=nkv, ne_12_2=kv_heads, ne_12_3=1,
                   nb11=k.strides[2], nb12=k.strides[1], nb13=k.strides[0], nb21=v.strides[2],
                   nb22=v.strides[1], nb23=v.strides[0], ne32=1, ne33=1, nb31=mask.strides[2],
                   nb32=mask.strides[1], nb33=mask.strides[0], ne1=heads, ne2=nq, scale=scale, max_bias=0.0,
                   m0=1.0, m1=1.0, n_head_log2=4, logit_softcap=0.0)
    qh = q[0].astype(F16).astype(np.float64)                  # both kernels stage Q as half
    kk = np.repeat(k[0].astype(np.float64), heads // kv_heads, axis=0)
    vv = np.repeat(v[0].astype(np.float64), heads // kv_heads, axis=0)
    sc = qh @ kk.transpose(0, 2, 1) * scale + mask[0, 0, :nq].astype(np.float64)  # (heads, nq, nkv)
    w = np.exp(sc - sc.max(-1, keepdims=True))
    want = (w / w.sum(-1, keepdims=True)) @ vv                 # (heads, nq, d)
    bufs = {0: args, 1: q, 2: k, 3: v, 4: mask, 5: q, 6: out}
    if "_vec_" in name:
        smem = ((128 + 4 * 32 * 2) + 2 * d * 2) * 2
        return Launch(bufs, (nq, heads, 1), (32, 2), out, want.transpose(1, 0, 2)[None], rtol=2e-3, atol=2e-3,
                      threadgroup_memory={0: smem})
    smem = (8 * (2 * d + 2 * (2 * 32 + 8) * 4)) * 2
    return Launch(bufs, (1, heads, 1), (32, 4), out, want.transpose(1, 0, 2)[None], rtol=1e-2, atol=1e-2,
                  threadgroup_memory={0: smem})


CASES: dict[str, Callable[[Ggml, str], Launch]] = {
    **{k: unary for k in UNARY},
    "kernel_scale": scale, "kernel_scale_4": scale, "kernel_clamp": clamp,
    "kernel_leaky_relu_f32": leaky_relu,
    **{k: binary for k in BINARY},
    "kernel_sum_rows": sum_rows, "kernel_soft_max_f32": soft_max, "kernel_soft_max_f32_4": soft_max,
    "kernel_rms_norm": rms_norm, "kernel_rms_norm_mul": rms_norm, "kernel_rms_norm_mul_add": rms_norm,
    "kernel_norm": norm, "kernel_argmax": argmax,
    "kernel_swiglu": swiglu, "kernel_reglu": swiglu, "kernel_geglu": swiglu,
    "kernel_diag_mask_inf": diag_mask_inf, "kernel_diag_mask_inf_8": diag_mask_inf,
    "kernel_mul_mv_f32_f32": mul_mv_f32, "kernel_mul_mv_q4_0_f32": mul_mv_quant,
    "kernel_mul_mv_q8_0_f32": mul_mv_quant,
    "kernel_mul_mm_f32_f32": mul_mm, "kernel_mul_mm_f16_f32": mul_mm, "kernel_mul_mm_q4_0_f32": mul_mm,
    "kernel_mul_mm_q8_0_f32": mul_mm,
    "kernel_get_rows_f32": get_rows, "kernel_get_rows_q4_0": get_rows, "kernel_get_rows_q8_0": get_rows,
    "kernel_get_rows_q4_K": get_rows, "kernel_get_rows_q6_K": get_rows,
    "kernel_mul_mv_q4_K_f32": mul_mv_quant, "kernel_mul_mv_q6_K_f32": mul_mv_quant,
    "kernel_mul_mm_q4_K_f32": mul_mm, "kernel_mul_mm_q6_K_f32": mul_mm,
    "kernel_rope_norm_f32": rope, "kernel_rope_neox_f32": rope,
    "kernel_cpy_f32_f16": cpy, "kernel_cpy_f16_f32": cpy, "kernel_cpy_f32_f32": cpy,
    "kernel_argsort_f32_i32_asc": argsort, "kernel_argsort_f32_i32_desc": argsort,
    "kernel_arange_f32": arange, "kernel_concat": concat, "kernel_l2_norm": l2_norm,
    "kernel_group_norm": group_norm, "kernel_pad_f32": pad, "kernel_upscale_f32": upscale,
    "kernel_timestep_embedding_f32": timestep_embedding,
    "kernel_flash_attn_ext_vec_f16_h64": flash_attn, "kernel_flash_attn_ext_f16_h64": flash_attn,
}


def _program(g: Ggml, name: str) -> Any:
    from enigma.verify import compile_msl

    return compile_msl(g.source, name, "ggml-metal.metal", include_dirs=[g.include],
                       together=sorted(set(CASES) - set(KNOWN_FAILURES)))


def test_the_ggml_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len(KNOWN_FAILURES) <= 0.1 * len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_ggml_kernels_run_as_written(name, ggml):
    if name in KNOWN_FAILURES:
        pytest.xfail(KNOWN_FAILURES[name])
    launch = CASES[name](ggml, name)
    _program(ggml, name).run(launch.buffers, grid=launch.grid, block=launch.block,
                             threadgroup_memory=launch.threadgroup_memory)
    np.testing.assert_allclose(launch.out.astype(np.float64), np.asarray(launch.want, np.float64),
                               rtol=launch.rtol, atol=launch.atol)


def test_ggml_mul_mv_q4_0_reads_rows_past_the_matrix(ggml):
    """Found by the corpus: with 11 rows, the second threadgroup of kernel_mul_mv_q4_0_f32 reads rows
    11-15 of src0 (its results for them are never stored). ggml's buffers are larger than the
    tensor, so on a GPU the read lands in other data; enigma.verify reports it at ggml's line."""
    from enigma.verify import KernelError

    launch = mul_mv_quant(ggml, "kernel_mul_mv_q4_0_f32", rows=11)
    with pytest.raises(KernelError, match=r"ggml-metal.metal:\d+: out-of-bounds read access to "
                       r"\[\[buffer\(1\)\]\] src0 .* threadgroup \(1, 0, 0\)"):
        _program(ggml, "kernel_mul_mv_q4_0_f32").run(launch.buffers, grid=launch.grid, block=launch.block)


def test_ggml_mul_mm_misaligned_float4_store(ggml):
    """Found by the corpus: kernel_mul_mm stores its edge tiles through `device float4*` at
    dst + (column * ne0 + row) floats, which is not 16-byte aligned when ne0 (src0's rows) is not a
    multiple of 4; Metal requires natural alignment. enigma.verify names the access."""
    from enigma.verify import KernelError

    rng = _rng("misaligned")
    rows, cols, n1 = 70, 64, 40
    a = rng.standard_normal((rows, cols)).astype(F32)
    b = rng.standard_normal((1, 1, n1, cols)).astype(F32)
    out = np.zeros((1, 1, n1, rows), F32)
    t0 = {"ne00": cols, "ne02": 1, "nb01": a.strides[0], "nb02": a.nbytes, "nb03": a.nbytes}
    args = ggml.kargs("ggml_metal_kargs_mul_mm", t0, tensor(b, "1"), ne0=rows, ne1=n1, r2=1, r3=1)
    with pytest.raises(KernelError, match=r"ggml-metal.metal:\d+: misaligned 16-byte write of "
                       r"\[\[buffer\(3\)\]\] dst \(`device char \*`\) at byte offset \d+: Metal requires"):
        _program(ggml, "kernel_mul_mm_f32_f32").run({0: args, 1: a, 2: b, 3: out}, grid=(2, 2, 1),
                                                    block=(128,), threadgroup_memory={0: 8192})
