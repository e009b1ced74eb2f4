"""Artifacts are strict JSON: non-finite constants are written as FORMAT.md's {"float": ...} objects
(never `-Infinity`/`NaN`, which strict parsers refuse), read back by the runtime and run."""
from __future__ import annotations

import json
import sys

import enigma_runtime
import numpy as np
import pytest
from enigma_runtime import ManifestError
from enigma_runtime.manifest import number_from_json, number_to_json

import enigma
from enigma import Tensor, float32, int32
from enigma.artifacts import write_artifacts
from enigma.backends import portable


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@enigma.kernel(block=(32, 1, 1), grid=lambda x, lo, hi, n: (enigma.ceil_div(n, 32), 1, 1))
def limits(x: Tensor[float32], lo: Tensor[float32], hi: Tensor[float32], n: int32):
    i = enigma.block_idx().x * enigma.block_dim().x + enigma.thread_idx().x
    if i < n:
        lo[i] = -float("inf")
        hi[i] = x[i] * 0.0 + float("nan")


def test_non_finite_constants_round_trip_as_strict_json(tmp_path):
    ck = enigma.compile(limits, emit_only=True)
    text = json.dumps(ck.ir_json)
    assert "Infinity" not in text and "NaN" not in text
    assert '{"float": "-inf"}' in text
    pkg = tmp_path / "enigma_strict_pkg"
    pkg.mkdir()
    adir = write_artifacts(pkg, "enigma_strict_pkg", [ck], metallib=None, msl_version="3.1",
                           macos_target="14.0")
    for f in adir.iterdir():
        if f.suffix == ".json":
            _strict(f.read_text())  # every JSON artifact parses strictly
    # the writer itself refuses a bare non-finite float anywhere
    with pytest.raises(ValueError):
        from enigma.artifacts import dumps
        dumps({"x": float("inf")})
    # and the portable IR reads back to the same kernel
    assert portable.ir_to_json(portable.json_to_ir(ck.ir_json)) == ck.ir_json
    sys.path.insert(0, str(tmp_path))
    try:
        k = enigma_runtime.load("enigma_strict_pkg", "limits")
        x = np.arange(40, dtype=np.float32)
        lo, hi = np.zeros_like(x), np.zeros_like(x)
        k(x, lo, hi, 40, device="cpu")
    finally:
        sys.path.remove(str(tmp_path))
    assert (lo == -np.inf).all() and np.isnan(hi).all()


def test_number_encoding():
    for v in (1, -2, 2.5, True, float("inf"), float("-inf")):
        assert number_from_json(number_to_json(v)) == v
    assert np.isnan(number_from_json(number_to_json(float("nan"))))
    assert number_to_json(float("-inf")) == {"float": "-inf"}
    for bad in ([1], "1", None, {"float": "infinity"}, {"float": "inf", "x": 1}, float("nan")):
        with pytest.raises(ValueError):
            number_from_json(bad)


def test_a_non_strict_artifact_is_refused(tmp_path, monkeypatch):
    import hashlib
    ck = enigma.compile(limits, emit_only=True)
    pkg = tmp_path / "enigma_lax_pkg"
    pkg.mkdir()
    adir = write_artifacts(pkg, "enigma_lax_pkg", [ck], metallib=None, msl_version="3.1",
                           macos_target="14.0")
    ir = adir / f"{ck.kernel_name}.ir.json"
    lax = ir.read_text().replace('{"float":"-inf"}', "-Infinity").encode()
    assert b"-Infinity" in lax
    ir.write_bytes(lax)
    man = json.loads((adir / "manifest.json").read_text())
    man["files"][ir.name] = hashlib.sha256(lax).hexdigest()
    (adir / "manifest.json").write_text(json.dumps(man))
    monkeypatch.syspath_prepend(str(tmp_path))
    k = enigma_runtime.load("enigma_lax_pkg", "limits")
    with pytest.raises(ManifestError, match=r"ir.json: invalid JSON \(-Infinity is not strict JSON"):
        _ = k.ir
