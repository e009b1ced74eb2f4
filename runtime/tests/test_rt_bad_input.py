"""Bad input to the runtime (issue "no hangs on bad input"): every corrupt or hostile artifact is a
ManifestError / IRError / GridError naming its file, never a hang, a crash or a memory blow-up."""
from __future__ import annotations

import hashlib
import json
import os
import sys

import enigma_runtime
import numpy as np
import pytest
import rt_fixtures
from enigma_runtime import GridError, IRError, Kernel, LaunchError, ManifestError
from enigma_runtime import manifest as rt_manifest
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture

IR = "enigma_kernel_vector_add.ir.json"


def _manifest(adir):
    return json.loads((adir / "manifest.json").read_text())


def _rewrite(adir, doc):
    (adir / "manifest.json").write_text(json.dumps(doc))


def _replace_artifact(adir, name, data: bytes):
    (adir / name).write_bytes(data)
    doc = _manifest(adir)
    doc["files"][name] = hashlib.sha256(data).hexdigest()
    _rewrite(adir, doc)


def _run(pkg):
    k = enigma_runtime.load(pkg, "vector_add")
    a = np.arange(10, dtype=np.float32)
    k(a, a, np.zeros_like(a), 10, device="cpu")


# -- files --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("which", ["manifest.json", IR])
def test_a_fifo_is_refused_not_waited_on(make_package, which):
    adir = make_package("pkg_fifo")
    (adir / which).unlink()
    os.mkfifo(adir / which)
    with pytest.raises(ManifestError, match=rf"{which}: a FIFO, not a regular file"):
        _run("pkg_fifo")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("which", ["manifest.json", IR])
def test_a_symlink_leaving_the_package_is_refused(make_package, which):
    adir = make_package("pkg_zero")
    (adir / which).unlink()
    (adir / which).symlink_to("/dev/zero")
    with pytest.raises(ManifestError, match=rf"{which}: a symlink leaving the package \(to /dev/zero\)"):
        _run("pkg_zero")


def test_symlinks_inside_the_package_and_editable_links_are_read(make_package, tmp_path):
    adir = make_package("pkg_links")
    (adir.parent / "real.ir.json").write_bytes((adir / IR).read_bytes())
    (adir / IR).unlink()
    (adir / IR).symlink_to(adir.parent / "real.ir.json")
    _run("pkg_links")
    # an editable install linking every file of _enigma/ to the source tree's _enigma/
    src = tmp_path / "src_tree" / "pkg_src" / "_enigma"
    src.parent.mkdir(parents=True)
    os.rename(adir, src)
    adir.mkdir()
    for f in src.iterdir():
        (adir / f.name).symlink_to(f)
    (src / IR).unlink()
    (src / IR).write_bytes((adir.parent / "real.ir.json").read_bytes())
    _run("pkg_links")


def test_files_beyond_the_size_bound_are_refused(make_package, monkeypatch):
    adir = make_package("pkg_big")
    monkeypatch.setattr(rt_manifest, "MAX_ARTIFACT_BYTES", 100)
    with pytest.raises(ManifestError, match=rf"{IR}: \d+ bytes, more than the bound of 100 bytes"):
        _run("pkg_big")
    monkeypatch.setattr(rt_manifest, "MAX_MANIFEST_BYTES", 100)
    os.utime(adir / "manifest.json", ns=(1, 1))  # the cached manifest is read again
    with pytest.raises(ManifestError, match=r"manifest.json: \d+ bytes, more than the bound"):
        _run("pkg_big")


# -- the manifest as data, with bounds ---------------------------------------------------------------

def _spec(d):
    return d["kernels"]["vector_add"][0]


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: _spec(d)["args"][0].update(buffer=-1), r"'buffer' must be an int in \[0, 30\], not -1"),
    (lambda d: _spec(d)["args"][1].update(buffer=0), "'buffer' 0 is also the buffer of argument 'a'"),
    (lambda d: _spec(d)["args"][0].update(buffer=2**40), "'buffer' must be an int in"),
    (lambda d: _spec(d)["args"][0].update(dims_offset=-1), "'dims_offset' must be an int in"),
    (lambda d: _spec(d)["args"][0].update(dims_offset=2**63), "'dims_offset' must be an int in"),
    (lambda d: _spec(d).update(dims_buffer=2**31), "'dims_buffer' must be an int in"),
    (lambda d: _spec(d).update(dims_buffer=1), "'dims_buffer' 1 is also the buffer of argument 'b'"),
    (lambda d: _spec(d).update(threadgroup_memory=1e24), "'threadgroup_memory' must be an int"),
    (lambda d: _spec(d).update(threadgroup_memory=10**24), "'threadgroup_memory' must be an int"),
    (lambda d: _spec(d)["args"][0].update(dtype={}), "'dtype' is an unknown dtype {}"),
    (lambda d: _spec(d)["args"][0].update(dtype=["float32"]), "'dtype' is an unknown dtype"),
    (lambda d: _spec(d)["args"][0].pop("kind"), "argument 0: 'kind' is required"),
    (lambda d: _spec(d).update(kernel_name={"a": 1}), "'kernel_name' must be an identifier"),
    (lambda d: _spec(d).update(block=[1024, 2, 1]), "more than 1024 threads"),
    (lambda d: _spec(d).update(grid=[10**40, 1, 1]),
     r"grid expression int an int of about \d+ digits is beyond"),
    (lambda d: _spec(d).update(grid=[{"op": ["add"], "args": [1, 2]}, 1, 1]), "unknown op"),
    (lambda d: _spec(d).update(requires=[{"expr": 1}]), "'requires' entry 0: 'text' is required"),
    (lambda d: d.update(package=7), "'package' must be a string"),
    (lambda d: d["kernels"].update(vector_add={}), "non-empty list"),
])
def test_manifest_fields_are_checked_with_bounds(make_package, mutate, problem):
    adir = make_package("pkg_bounds")
    doc = _manifest(adir)
    mutate(doc)
    _rewrite(adir, doc)
    with pytest.raises(ManifestError, match=problem) as e:
        _run("pkg_bounds")
    assert "manifest.json" in str(e.value)


def test_deep_nesting_and_huge_integers_in_json(make_package):
    adir = make_package("pkg_deep")
    text = (adir / "manifest.json").read_text()
    (adir / "manifest.json").write_text(text[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ManifestError, match=r"manifest.json: JSON nested \d+ deep, more than the bound"):
        _run("pkg_deep")
    if hasattr(sys, "set_int_max_str_digits"):
        (adir / "manifest.json").write_text(text[:-1] + ', "x": ' + "9" * 5000 + "}")
        with pytest.raises(ManifestError, match="manifest.json: invalid JSON"):
            _run("pkg_deep")
    (adir / "manifest.json").write_text(text.replace('"schema": 1', '"schema": NaN'))
    with pytest.raises(ManifestError, match="NaN is not strict JSON"):
        _run("pkg_deep")


def test_huge_values_in_grid_expressions_are_grid_errors():
    spec, ir = vector_add_kernel()
    big = {"op": "mul", "args": [2**62, {"op": "mul", "args": [2**62, {"sym": "n"}]}]}
    k = Kernel.from_spec(dict(spec, grid=[big, 1, 1]), ir, "")
    a = np.zeros(4, np.float32)
    with pytest.raises(GridError, match=r"kernel 'vector_add' \(from_spec\): grid .* overflows"):
        k(a, a, a.copy(), 4, device="cpu")
    deep: object = {"sym": "n"}
    for _ in range(100):
        deep = {"op": "add", "args": [deep, 1]}
    with pytest.raises(ManifestError, match="nested more than 64 deep"):
        Kernel.from_spec(dict(spec, grid=[deep, 1, 1]), ir, "")


def test_grid_errors_name_the_manifest(make_package):
    adir = make_package("pkg_griderr")
    doc = _manifest(adir)
    _spec(doc)["grid"] = [{"op": "floordiv", "args": [{"sym": "n"}, 0]}, 1, 1]
    _rewrite(adir, doc)
    with pytest.raises(GridError, match=r"manifest.json, kernel 'vector_add' specialisation 0: grid "
                       r"\(\(n // 0\), 1, 1\): division by zero"):
        _run("pkg_griderr")


def test_grid_limits_are_launch_errors_and_nothing_is_allocated_up_front():
    spec, ir = vector_add_kernel()
    k = Kernel.from_spec(dict(spec, grid=[2**32 + 1, 1, 1], block=[1, 1, 1]), ir, "")
    a = np.zeros(4, np.float32)
    with pytest.raises(LaunchError, match="at most 4294967295"):
        k(a, a, a.copy(), 4, device="cpu")


# -- the IR as data ----------------------------------------------------------------------------------

def _ir_doc(mutate):
    _, ir = vector_add_kernel()
    ir = json.loads(json.dumps(ir))
    mutate(ir)
    return ir


def _const(value, t="float32"):
    return lambda ir: ir["body"].insert(0, {"op": "const", "out": [900], "types": [t],
                                            "attrs": {"value": value}})


@pytest.mark.parametrize("mutate, problem", [
    (lambda ir: ir["body"].append([1, 2]), "must be an op object, not list"),
    (lambda ir: ir["body"].append(7), "must be an op object, not int"),
    (lambda ir: ir["body"][-1]["regions"].append(3), "must be a region object, not int"),
    (lambda ir: ir["args"][0].pop("kind"), "'args', argument 0: 'kind' is required"),
    (lambda ir: ir["args"][0].update(dtype="float99"), "unknown dtype 'float99'"),
    (lambda ir: ir.update(shared=[{"name": "t", "dtype": "float32", "shape": [2**20, 2**20]}]),
     "more than 16777216 elements"),
    (lambda ir: ir["body"][0].update(out=[10**30]), "'out' must be a list of value ids"),
    (lambda ir: ir["body"][0].update(attrs={"dim": 10**100}), "'attrs' must be an object"),
    (_const([1]), r"'value' \[1\] is not a number"),
    (_const("1"), "'value' '1' is not a number"),
    (_const({"float": "infinite"}), "'attrs' must be an object of names to numbers"),
    (_const(1.5, "int32"), "is not an integer"),
    (lambda ir: ir["body"].insert(0, dict(ir["body"][0])), "is defined twice"),
    (lambda ir: ir["args"].reverse(), "disagree with the signature"),
    (lambda ir: next(op for op in ir["body"] if op["op"] == "param")["attrs"].update(name=[1]),
     "'attrs': 'name' must be a non-empty string"),  # found by scripts/fuzz_artifacts.py
    (lambda ir: ir["body"].insert(0, {"op": "thread_idx", "out": [901], "types": ["int32"],
                                      "attrs": {"dim": 7}}), "'dim' must be an int in"),
])
def test_malformed_ir_is_an_ir_error_naming_the_file(make_package, mutate, problem):
    adir = make_package("pkg_ir")
    ir = _ir_doc(mutate)
    _replace_artifact(adir, IR, json.dumps(ir).encode())
    with pytest.raises(IRError, match=problem) as e:
        _run("pkg_ir")
    assert str(adir / IR) in str(e.value)


def test_deeply_nested_regions_are_refused(make_package):
    adir = make_package("pkg_nest")
    ir = _ir_doc(lambda ir: None)
    body = []
    top = body
    for _ in range(70):
        inner: list = []
        body.append({"op": "if", "in": [0], "regions": [{"body": inner}, {"body": []}]})
        body = inner
    ir["body"] = top + ir["body"]
    _replace_artifact(adir, IR, json.dumps(ir).encode())
    with pytest.raises(IRError, match="regions nested more than 64 deep"):
        _run("pkg_nest")


def test_nan_constants_run_when_encoded(make_package):
    _, ir = vector_add_kernel()
    ir = json.loads(json.dumps(ir))
    # c[i] = a[i] + b[i]  becomes  c[i] = a[i] + nan
    ir["body"].insert(0, {"op": "const", "out": [900], "types": ["float32"],
                          "attrs": {"value": {"float": "nan"}}})
    store_if = next(op for op in ir["body"] if op["op"] == "if")
    add = next(op for op in store_if["regions"][0]["body"] if op["op"] == "add")
    add["in"][1] = 900
    spec, _ = vector_add_kernel()
    k = Kernel.from_spec(spec, ir, "")
    a = np.ones(8, np.float32)
    c = np.zeros_like(a)
    k(a, a, c, 8, device="cpu")
    assert np.isnan(c).all()


def test_a_large_grid_runs_in_bounded_memory(monkeypatch):
    """16M threads of vector_add in chunks of 64K: the peak stays far below one int64 per thread."""
    import tracemalloc

    from enigma_runtime import cpu
    monkeypatch.setattr(cpu, "THREADS_PER_CHUNK", 1 << 16)
    spec, ir = vector_add_kernel()
    k = Kernel.from_spec(spec, ir, "")
    a, c = np.ones(10, np.float32), np.zeros(10, np.float32)
    k(a, a, c, 10, grid=(4, 1, 1), device="cpu")  # plan built outside the measurement
    tracemalloc.start()
    try:
        k(a, a, c, 10, grid=(2**16, 1, 1), device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, peak  # one int64 per thread alone would be 128 MiB
    np.testing.assert_array_equal(c, 2)


def test_chunks_cover_the_grid_once(monkeypatch):
    from enigma_runtime import cpu
    monkeypatch.setattr(cpu, "THREADS_PER_CHUNK", 8)
    for grid, block in [((5, 3, 2), (1, 1, 1)), ((3, 4, 5), (2, 2, 1)), ((1, 1, 7), (8, 1, 1)),
                        ((2, 9, 1), (1, 2, 1))]:
        cells = []
        for (cx, cy, cz), (ox, oy, oz) in cpu.chunks(grid, block, 0):
            assert cx * cy * cz * block[0] * block[1] * block[2] <= max(8, block[0] * block[1] * block[2])
            cells += [(x, y, z) for z in range(oz, oz + cz) for y in range(oy, oy + cy)
                      for x in range(ox, ox + cx)]
        assert sorted(cells) == sorted((x, y, z) for z in range(grid[2]) for y in range(grid[1])
                                       for x in range(grid[0]))
    monkeypatch.setattr(cpu, "THREADS_PER_CHUNK", 1 << 20)
    monkeypatch.setattr(cpu, "SHARED_BYTES_PER_CHUNK", 1 << 16)
    assert all(c[0] <= 2 for c, _ in cpu.chunks((100, 1, 1), (32, 1, 1), 32768))
