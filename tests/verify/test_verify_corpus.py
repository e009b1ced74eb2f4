"""Fidelity corpus: GLSL compute shaders turned into real-world MSL by glslangValidator + spirv-cross at
test time, run through enigma.verify, checked against known results. This checks the compatibility
layer against MSL we did not write (spirv-cross's struct references, helper templates, atomics casts,
<simd/simd.h>, ...)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from toolcheck import need_tool

from enigma.verify import compile_msl

pytestmark = pytest.mark.needs_clang
CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def tools():
    need_tool("clang++-22", "clang++-19", "clang++")
    return need_tool("glslangValidator"), need_tool("spirv-cross")


def to_msl(tools, name: str, tmp: Path) -> str:
    glslang, spirv_cross = tools
    spv, metal = tmp / f"{name}.spv", tmp / f"{name}.metal"
    src = str(CORPUS / f"{name}.comp")
    r = subprocess.run([glslang, "-V", "--target-env", "vulkan1.1", src, "-o", str(spv)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([spirv_cross, str(spv), "--msl", "--msl-version", "30100", "--output", str(metal)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return metal.read_text()


def run(tools, tmp_path, name: str, arrays: dict, grid, block, schedule="random"):
    """Bind arrays to the kernel's parameters by name (spirv-cross numbers buffers its own way)."""
    prog = compile_msl(to_msl(tools, name, tmp_path), "main0", f"{name}.metal")
    bufs = {}
    for p in prog.sig.params:
        if p.is_buffer:
            assert p.name in arrays, f"{name}: no array for parameter {p.name} ({p.type_text})"
            bufs[p.index] = arrays[p.name]
    prog.run(bufs, grid=grid, block=block, schedule=schedule, seed=11)
    return prog


def test_corpus_has_every_kind():
    names = {p.stem for p in CORPUS.glob("*.comp")}
    assert {"elementwise", "reduce_shared", "subgroup", "atomics", "vec4", "struct_arg", "grid2d",
            "loop"} <= names


def test_elementwise(tools, tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    a, b = rng.standard_normal(n, np.float32), rng.standard_normal(n, np.float32)
    c = np.zeros(n, np.float32)
    sizes = np.zeros(32, np.uint32)
    sizes[0] = c.nbytes  # spirv-cross's spvBufferSizeConstants: bytes of the buffers (for .length())
    run(tools, tmp_path, "elementwise", {"inA": a, "inB": b, "outC": c, "spvBufferSizeConstants": sizes},
        grid=4, block=64)
    np.testing.assert_allclose(c, a * 2 + np.sqrt(np.abs(b)), rtol=1e-6)


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_reduce_shared(tools, tmp_path, schedule):
    x = np.random.default_rng(1).standard_normal(128 * 6).astype(np.float32)
    sums = np.zeros(6, np.float32)
    run(tools, tmp_path, "reduce_shared", {"inp": x, "outp": sums}, grid=6, block=128, schedule=schedule)
    np.testing.assert_allclose(sums, x.reshape(6, 128).sum(axis=1), rtol=1e-5, atol=1e-5)


def test_subgroup(tools, tmp_path):
    v = np.random.default_rng(2).integers(-50, 50, 128).astype(np.int32)
    r = np.zeros(128 * 5, np.int32)
    run(tools, tmp_path, "subgroup", {"inp": v, "outp": r}, grid=2, block=64)
    r = r.reshape(128, 5)
    g = v.reshape(4, 32)
    lane = np.arange(128) % 32
    np.testing.assert_array_equal(r[:, 0], np.repeat(g.sum(axis=1), 32))
    np.testing.assert_array_equal(r[:, 1], np.repeat(g.max(axis=1), 32))
    np.testing.assert_array_equal(r[:, 2], np.cumsum(g, axis=1).ravel())
    np.testing.assert_array_equal(r[:, 3], np.where(lane < 31, np.roll(v, -1), v))
    np.testing.assert_array_equal(r[:, 4], np.repeat(g[:, 0], 32) + lane)


def test_atomics(tools, tmp_path):
    keys = np.random.default_rng(3).integers(0, 1000, 128 * 5).astype(np.uint32)
    hist = np.zeros(17, np.uint32)  # uint bins[16]; int total;
    hist[16] = 7
    run(tools, tmp_path, "atomics", {"inp": keys, "hist": hist}, grid=5, block=128)
    np.testing.assert_array_equal(hist[:16], np.bincount(keys % 16, minlength=16))
    assert hist[16] == 7 + 128 * 5


def test_vec4(tools, tmp_path):
    v = np.random.default_rng(4).standard_normal((64, 4)).astype(np.float32)
    w = np.zeros((64, 4), np.float32)
    run(tools, tmp_path, "vec4", {"inp": v, "outp": w}, grid=2, block=32)
    b = v[:, ::-1] * np.array([1, 2, 3, 4], np.float32) + np.stack([v[:, 0], v[:, 1], np.full(64, 0.5),
                                                                    np.full(64, 0.25)], axis=1)
    want = np.stack([b[:, 0], b[:, 1], np.maximum(b[:, 2], 0), v.sum(axis=1)], axis=1)
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6)


def test_struct_arg(tools, tmp_path):
    particle = np.dtype([("pos", np.float32, 2), ("mass", np.float32), ("id", np.uint32)])
    params = np.zeros(1, np.dtype([("dt", np.float32), ("count", np.uint32), ("gravity", np.float32, 2)]))
    params[0] = (0.5, 40, (0.0, -9.75))
    parts = np.zeros(48, particle)
    parts["pos"] = np.random.default_rng(5).standard_normal((48, 2))
    parts["mass"] = np.arange(48) / 8
    parts["id"] = np.arange(48)
    before = parts.copy()
    raw = parts.view(np.uint8)
    run(tools, tmp_path, "struct_arg", {"params": params.tobytes(), "parts": raw}, grid=3, block=16)
    after = raw.view(particle)
    gravity = np.array([0.0, -9.75], np.float32)
    moved = before["pos"][:40] + gravity * np.float32(0.5) * before["mass"][:40, None]
    np.testing.assert_allclose(after["pos"][:40], moved, rtol=1e-6)
    np.testing.assert_array_equal(after["id"][:40], before["id"][:40] * 2 + 1)
    np.testing.assert_array_equal(after[40:], before[40:])  # past params.count: untouched


def test_grid2d(tools, tmp_path):
    wd, ht = 21, 13
    m = np.random.default_rng(6).standard_normal((ht, wd)).astype(np.float32)
    t = np.zeros((wd, ht), np.float32)
    run(tools, tmp_path, "grid2d", {"size": np.array([wd, ht], np.uint32), "inp": m, "outp": t},
        grid=(3, 2), block=(8, 8))
    np.testing.assert_array_equal(t, m.T + (np.arange(ht) // 8).astype(np.float32)[None, :])


def test_loop(tools, tmp_path):
    coef = np.array([1.0, -2.0, 0.5, 0.25], np.float32)
    x = np.linspace(-1, 1, 128).astype(np.float32)
    steps = np.zeros(128, np.int32)
    run(tools, tmp_path, "loop", {"pc": np.int32(4), "coef": coef, "xs": x.copy(), "st": steps}, grid=2,
        block=64)

    def collatz(n: int) -> int:
        k = 0
        while n != 1:
            n, k = (n // 2 if n % 2 == 0 else 3 * n + 1), k + 1
        return k

    np.testing.assert_array_equal(steps, [collatz(i + 1) for i in range(128)])
    xs = {"pc": np.int32(4), "coef": coef, "xs": x.copy(), "st": steps}
    run(tools, tmp_path, "loop", xs, grid=2, block=64)
    np.testing.assert_allclose(xs["xs"], np.polyval(coef[::-1], x), rtol=1e-5, atol=1e-6)


def test_bits(tools, tmp_path):
    rng = np.random.default_rng(7)
    u = rng.integers(0, 2**32, 32, dtype=np.uint64).astype(np.uint32)
    u[0] = 0
    f = (rng.standard_normal(32) * 3).astype(np.float32)
    bits = np.zeros(64, np.int32)
    g = np.zeros(32, np.float32)
    run(tools, tmp_path, "bits", {"inp": np.concatenate([u.view(np.uint8), f.view(np.uint8)]), "outp": bits,
                                  "outf": g}, grid=1, block=32)
    np.testing.assert_array_equal(bits[0::2], [bin(int(x)).count("1") for x in u])
    np.testing.assert_array_equal(bits[1::2], [int(x).bit_length() - 1 for x in u])  # findMSB(0) = -1
    fl = np.floor(f)
    np.testing.assert_allclose(g, fl + (f - fl - fl) * 0.25 + np.clip(f, -1, 1), rtol=1e-5, atol=1e-6)


def test_matrix_array(tools, tmp_path):
    rng = np.random.default_rng(8)
    m = rng.standard_normal((4, 4)).astype(np.float32)  # rows of this array are the matrix's columns
    v = rng.standard_normal((32, 4)).astype(np.float32)
    buf = np.concatenate([m.ravel(), v.ravel()])
    pts = rng.standard_normal((32, 4)).astype(np.float32)  # float3 has a 16-byte stride
    before = pts.copy()
    run(tools, tmp_path, "matrix_array", {"buf": buf, "pts": pts}, grid=1, block=32)
    t = v * np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(buf[16:].reshape(32, 4), t @ m + m[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pts[:, :3], np.cross(before[:, :3], [0, 0, 1]) * 0.5, rtol=1e-6)


@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_ballot_half(tools, tmp_path, schedule):
    rng = np.random.default_rng(9)
    v = rng.integers(-50, 50, 128).astype(np.int32)
    ubo = np.zeros(8, np.float32)  # std140: vec3 offset, float scale, ivec4 lim
    ubo[:4] = [0.0, 3.0, 0.0, 2.0]
    ubo[4:].view(np.int32)[:] = [-20, 20, 0, 0]
    acc = np.array([1000, -1000, 7, 0], np.int32)
    h = rng.standard_normal(128).astype(np.float16)
    r = np.zeros(128 * 4, np.uint32)
    hh = h.copy()
    run(tools, tmp_path, "ballot_half", {"u": ubo.tobytes(), "iv": v, "acc": acc, "hv": hh, "res": r},
        grid=2, block=64, schedule=schedule)
    idx = np.arange(128)
    g, l = idx // 64, idx % 64
    t = v[g * 64 + (l % 8) * 8 + l // 8]  # the transposed 8x8 tile
    r = r.reshape(128, 4)
    assert acc[0] == t.min() and acc[1] == t.max() and acc[2] in t and acc[3] == 5
    np.testing.assert_array_equal(r[:, 0], np.repeat((t.reshape(4, 32) > 0).sum(axis=1), 32))
    np.testing.assert_array_equal(r[:, 1], (idx % 32 == 0).astype(np.uint32))
    np.testing.assert_array_equal(r[:, 2], (t[idx ^ 1] + 1).astype(np.uint32))
    np.testing.assert_array_equal(r[:, 3], (np.clip(t, -20, 20) + 100 + 6).astype(np.uint32))
    np.testing.assert_array_equal(hh, (h * np.float16(2) + np.float16(0.5)).astype(np.float16))
