"""Every zoo kernel, compiled by enigma, shipped as a package's `_enigma/` artifacts, loaded back by
name with enigma_runtime.load and run on the CPU executor against the zoo's numpy references."""
from __future__ import annotations

import re
import sys

import enigma_runtime
import numpy as np
import pytest
import zoo

import enigma
from enigma.artifacts import write_artifacts


def _copy(args):
    return [np.copy(x) if isinstance(x, np.ndarray) else x for x in args]


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for e in zoo.ZOO:
        ins = e.make_inputs(np.random.default_rng(7))
        out[e.name] = (e, ins, enigma.compile(e.jit, *ins, vec_width=e.vec_width))
    return out


@pytest.fixture(scope="module")
def zoo_package(compiled, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_site")
    pkg = root / "enigma_zoo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write_artifacts(pkg, "enigma_zoo_pkg", [ck for _, _, ck in compiled.values()], metallib=None,
                    msl_version="3.1", macos_target="14.0")
    sys.path.insert(0, str(root))
    yield "enigma_zoo_pkg"
    sys.path.remove(str(root))


def test_package_lists_every_zoo_kernel(compiled, zoo_package):
    lib = enigma_runtime.load(zoo_package)
    assert sorted(lib.names()) == sorted({ck.signature["name"] for _, _, ck in compiled.values()})


def _run_and_compare(k, entry, ins, ck, device: str) -> None:
    """Run loaded kernel `k` on the zoo entry's inputs on `device` (the launch from the signature where
    it has one, else the compiled one) and compare its outputs with the entry's numpy reference."""
    args = _copy(entry.kernel_args(ins))
    expected = entry.reference(*_copy(args))
    grid = None if ck.signature.get("grid") is not None else ck.grid
    block = None if ck.signature.get("block") is not None else ck.block
    k(*args, grid=grid, block=block, device=device)
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)


@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_zoo_kernel_from_the_package_on_cpu(name, compiled, zoo_package):
    entry, ins, ck = compiled[name]
    k = enigma_runtime.load(zoo_package, ck.signature["name"])
    # the specialisation compiled for this entry (a kernel may ship several: the optional mask)
    sp = next(sp for sp in k.specs if sp.spec["kernel_name"] == ck.kernel_name)
    assert sp.metal_source == ck.metal_source
    _run_and_compare(k, entry, ins, ck, "cpu")


@pytest.mark.needs_clang
@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_zoo_kernel_from_the_package_on_msl_cpu(name, compiled, zoo_package):
    """The same loaded kernels through the runtime device "msl-cpu": their shipped Metal source,
    compiled by clang, bound by the runtime's binding (FORMAT.md section 5), agrees with numpy."""
    from toolcheck import need_tool

    need_tool("clang++-22", "clang++-19", "clang++")
    import enigma.verify  # noqa: F401  (registers msl-cpu)

    entry, ins, ck = compiled[name]
    k = enigma_runtime.load(zoo_package, ck.signature["name"])
    _run_and_compare(k, entry, ins, ck, "msl-cpu")


@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_compiled_kernel_call_on_cpu(name, compiled):
    entry, ins, ck = compiled[name]
    args = _copy(entry.kernel_args(ins))
    expected = entry.reference(*_copy(args))
    ck.kernel(*args, device="cpu")
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)


@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_msl_buffer_indices_match_the_binding_abi(name, compiled):
    """The Metal backend binds argument i at signature['args'][i]['buffer'] and the dims buffer at
    'dims_buffer' (FORMAT.md section 5): the generated MSL must declare the same indices."""
    _, _, ck = compiled[name]
    src, spec = ck.metal_source, ck.signature
    for a in spec["args"]:
        if a["kind"] == "none":  # an optional tensor this specialisation leaves out: no parameter
            assert not re.search(rf"\b{re.escape(a['name'])}\s*\[\[", src)
            continue
        m = re.search(rf"\b{re.escape(a['name'])}\s*\[\[\s*buffer\(\s*(\d+)\s*\)\s*\]\]", src)
        assert m and int(m.group(1)) == a["buffer"], (a["name"], src[:2000])
    if spec.get("dims_buffer") is not None:
        m = re.search(r"enigma_dims\s*\[\[\s*buffer\(\s*(\d+)\s*\)\s*\]\]", src)
        assert m and int(m.group(1)) == spec["dims_buffer"]


def test_out_of_bounds_launch_of_a_compiled_kernel_names_the_source_line(compiled):
    entry, ins, ck = compiled["vector_add"]
    a, b, c, n = _copy(entry.kernel_args(ins))
    with pytest.raises(enigma_runtime.OutOfBoundsError, match=r"tensor 'a'.*index 1000.*line \d+|zoo.py:\d+"):
        # n lies about the size: the bounds test lets bad threads through
        ck.kernel(a, b, c, n + 5, device="cpu")


def test_the_cpu_executor_knows_every_op_of_the_compiler():
    from enigma_runtime.cpu_ops import CATALOGUE

    from enigma.ir import ALL_OPS
    assert ALL_OPS - CATALOGUE == {"yield", "condition"} and CATALOGUE <= ALL_OPS


@pytest.mark.parametrize("name", [e.name for e in zoo.ZOO])
def test_zoo_kernel_on_cpu_in_chunks_of_one_threadgroup(name, compiled, monkeypatch):
    """A grid larger than the CPU's chunk runs chunk by chunk (nothing allocated per grid cell up
    front): with one threadgroup per chunk every zoo kernel still computes its reference."""
    from enigma_runtime import cpu

    monkeypatch.setattr(cpu, "THREADS_PER_CHUNK", 1)
    entry, ins, ck = compiled[name]
    args = _copy(entry.kernel_args(ins))
    expected = entry.reference(*_copy(args))
    seen = []
    real = cpu.ChunkGeo

    def spy(grid, block, chunk, origin):
        seen.append(origin)
        return real(grid, block, chunk, origin)
    monkeypatch.setattr(cpu, "ChunkGeo", spy)
    ck.kernel(*args, device="cpu")
    for i, want in zip(entry.outputs, expected):
        np.testing.assert_allclose(args[i], want, rtol=entry.rtol, atol=entry.atol)
    assert len(seen) == len(set(seen)) >= 1


def test_chunked_out_of_bounds_names_the_real_threadgroup(compiled, monkeypatch):
    from enigma_runtime import cpu

    monkeypatch.setattr(cpu, "THREADS_PER_CHUNK", 1)
    entry, ins, ck = compiled["vector_add"]
    a, b, c, n = _copy(entry.kernel_args(ins))
    groups = -(-len(a) // ck.signature["block"][0])
    with pytest.raises(enigma_runtime.OutOfBoundsError, match=rf"of threadgroup \({groups - 1}, 0, 0\)"):
        ck.kernel(a, b, c, n + 5, device="cpu")


def test_signatures_record_the_simd_width_of_kernels_using_simd_ops(compiled):
    def ops(body):
        for op in body:
            yield op["op"]
            for r in op.get("regions", []):
                yield from ops(r["body"])
    seen = set()
    for _, _, ck in compiled.values():
        uses = any(o.startswith("simd_") for o in ops(ck.ir_json["body"]))
        assert ck.signature.get("simd_width") == (32 if uses else None), ck.name
        seen.add(uses)
    assert seen == {True, False}
