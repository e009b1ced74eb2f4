"""The tinygrad corpus cases: name -> (input specs, tinygrad expression, numpy reference, rtol). Shared
by tinygrad_render.py (which imports tinygrad) and the tests (which do not)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

F = "float32"
Case = tuple[list[tuple[tuple[int, ...], str]], Callable[..., Any], Callable[..., Any], float]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _layernorm(x: np.ndarray) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + 1e-5)


def _conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + h - kh + 1, j:j + wd - kw + 1], w[:, :, i, j])
    return out


CASES: dict[str, Case] = {
    "add": ([((64, 33), F)] * 2, lambda a, b: a + b, lambda a, b: a + b, 0),
    "mul_broadcast_row": ([((16, 40), F), ((1, 40), F)], lambda a, b: a * b, lambda a, b: a * b, 0),
    "sub_broadcast_col": ([((16, 40), F), ((16, 1), F)], lambda a, b: a - b, lambda a, b: a - b, 0),
    "div": ([((100,), F)] * 2, lambda a, b: a / (b.abs() + 1), lambda a, b: a / (np.abs(b) + 1), 1e-6),
    "neg_abs": ([((257,), F)], lambda a: -a.abs(), lambda a: -np.abs(a), 0),
    "exp": ([((300,), F)], lambda a: a.exp(), np.exp, 1e-5),
    "log": ([((300,), F)], lambda a: (a.abs() + 0.1).log(), lambda a: np.log(np.abs(a) + 0.1), 1e-5),
    "sqrt": ([((300,), F)], lambda a: a.abs().sqrt(), lambda a: np.sqrt(np.abs(a)), 1e-6),
    "sin": ([((300,), F)], lambda a: a.sin(), np.sin, 1e-5),
    "relu": ([((31, 7), F)], lambda a: a.relu(), lambda a: np.maximum(a, 0), 0),
    "sigmoid": ([((200,), F)], lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), 1e-5),
    "tanh": ([((200,), F)], lambda a: a.tanh(), np.tanh, 1e-5),
    "gelu": ([((200,), F)], lambda a: a.gelu(),
             lambda a: 0.5 * a * (1 + np.tanh(0.7978845608 * (a + 0.044715 * a ** 3))), 1e-5),
    "where_compare": ([((128,), F)] * 2, lambda a, b: (a > b).where(a, b * 2),
                      lambda a, b: np.where(a > b, a, b * 2), 0),
    "maximum": ([((90,), F)] * 2, lambda a, b: a.maximum(b), np.maximum, 0),
    "clip": ([((90,), F)], lambda a: a.clip(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), 0),
    "pow_square": ([((90,), F)], lambda a: a.square() * 3 + 1, lambda a: a * a * 3 + 1, 1e-6),
    "int_add_mul": ([((77,), "int32")] * 2, lambda a, b: a * b + a, lambda a, b: a * b + a, 0),
    "cast_int_to_float": ([((77,), "int32")], lambda a: a.float() * 0.5,
                          lambda a: a.astype(np.float32) * 0.5, 0),
    "half_add": ([((64,), "float16")] * 2, lambda a, b: a + b, lambda a, b: a + b, 1e-3),
    "sum_all": ([((1000,), F)], lambda a: a.sum(), lambda a: a.sum(dtype=np.float64), 1e-5),
    "sum_axis0": ([((33, 20), F)], lambda a: a.sum(axis=0), lambda a: a.sum(0, dtype=np.float64), 1e-5),
    "sum_axis1": ([((20, 33), F)], lambda a: a.sum(axis=1), lambda a: a.sum(1, dtype=np.float64), 1e-5),
    "max_axis1": ([((20, 33), F)], lambda a: a.max(axis=1), lambda a: a.max(1), 0),
    "mean": ([((40, 50), F)], lambda a: a.mean(), lambda a: a.mean(dtype=np.float64), 1e-5),
    "int_sum": ([((500,), "int32")], lambda a: a.sum(), lambda a: a.sum(), 0),
    "argmax": ([((10, 37), F)], lambda a: a.argmax(axis=1), lambda a: a.argmax(1), 0),
    "softmax": ([((8, 50), F)], lambda a: a.softmax(), _softmax, 1e-5),
    "log_softmax": ([((8, 50), F)], lambda a: a.log_softmax(),
                    lambda a: np.log(_softmax(a.astype(np.float64))), 1e-5),
    "layernorm": ([((6, 64), F)], lambda a: a.layernorm(), _layernorm, 1e-4),
    "matmul": ([((17, 23), F), ((23, 19), F)], lambda a, b: a @ b,
               lambda a, b: a.astype(np.float64) @ b, 1e-5),
    "matmul_square": ([((32, 32), F)] * 2, lambda a, b: a @ b, lambda a, b: a.astype(np.float64) @ b, 1e-5),
    "matvec": ([((64, 48), F), ((48,), F)], lambda a, b: a @ b, lambda a, b: a.astype(np.float64) @ b, 1e-5),
    "cumsum": ([((50,), F)], lambda a: a.cumsum(), lambda a: np.cumsum(a, dtype=np.float64), 1e-5),
    "transpose": ([((13, 29), F)], lambda a: a.T.contiguous(), lambda a: a.T, 0),
    "pad": ([((5, 6), F)], lambda a: a.pad(((1, 2), (0, 3))),
            lambda a: np.pad(a, ((1, 2), (0, 3))), 0),
    "shrink_flip": ([((30, 12), F)], lambda a: a[3:20, ::-1].contiguous(), lambda a: a[3:20, ::-1], 0),
    "conv2d": ([((2, 3, 9, 9), F), ((4, 3, 3, 3), F)], lambda x, w: x.conv2d(w), _conv2d, 1e-4),
}
