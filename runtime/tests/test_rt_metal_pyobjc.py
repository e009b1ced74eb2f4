"""The fake Metal held to the real PyObjC: pyobjc-framework-Metal's macOS wheel, pinned by version and
sha256, is downloaded (never installed) into enigma's cache directory (tests/verify/thirdparty.py's
`fetch`), its `Metal/_metadata.py` read as data (ast, nothing executed) and its extension module's
strings collected. Then launches through the FAKE Metal
(test_rt_metal_fake.py) are recorded, and every selector, function and constant the runtime uses must
exist in the wheel and be called with the conventions its metadata gives: out-parameters (`error:`)
passed as None and returned in a tuple, pointer + length arguments given a bytes-like object of that
length, the variable-length pointer of `contents` read with `as_buffer`. The fake's enum values must be
PyObjC's. Off CI the test skips when the download is impossible; under CI=true it fails.

MTLCompileOptions' scalar properties need no PyObjC metadata, so the wheel does not name their setters
(`properties` below); Apple's documentation of MTLCompileOptions is the reference for them (checked
for macOS 14 and 15+): `languageVersion` (macOS 10.11+), `mathMode` and `mathFloatingPointFunctions`
(macOS 15+; they replace `fastMathEnabled`, deprecated there) are read-write properties, so their
setters are `setLanguageVersion:`, `setMathMode:` and `setMathFloatingPointFunctions:`, the names
metal.py calls; it calls the macOS 15 pair only when the options object has them and
`setFastMathEnabled:` (which the wheel names) otherwise."""
from __future__ import annotations

import ast
import re
import sys
import types
import zipfile
from pathlib import Path

import enigma_runtime
import numpy as np
import pytest
import rt_fixtures
import test_rt_metal_fake as fk
from enigma_runtime import Kernel
from enigma_runtime import metal as rt_metal
from rt_fixtures import vector_add_kernel

make_package = rt_fixtures.make_package  # the fixture


# -- the wheel ------------------------------------------------------------------------------------------

class Wheel:
    def __init__(self, path: Path) -> None:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            meta = z.read("Metal/_metadata.py").decode()
            so = b"".join(z.read(n) for n in names if n.startswith("Metal/_Metal") and n.endswith(".so"))
        self.path = path
        self.selectors: dict[bytes, dict] = {}  # selector -> metadata of its arguments and result
        self.classes: set[str] = set()  # classes (and NSObject for protocols) with metadata
        self.functions: set[str] = set()
        tree = ast.parse(meta)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "r" \
                    and len(node.args) == 3:
                try:
                    owner = ast.literal_eval(node.args[0])
                    sel, info = ast.literal_eval(node.args[1]), ast.literal_eval(node.args[2])
                except ValueError:
                    continue
                self.classes.add(owner.decode())
                self.selectors.setdefault(sel, {}).update(info)
            named_functions = isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "functions" for t in node.targets)
            if named_functions and isinstance(node.value, ast.Dict):
                self.functions |= {ast.literal_eval(k) for k in node.value.keys if k is not None}
        m = re.search(r'enums = """(.*?)"""', meta, re.S)
        assert m, "no enums in Metal/_metadata.py"
        self.enums = {k: int(v) for k, v in re.findall(r"\$(\w+)@(-?\d+)", m.group(1))}
        self.so_strings = {s.decode() for s in re.findall(rb"[A-Za-z_][A-Za-z0-9_:]{2,}", so)}

    def knows(self, selector: str) -> bool:
        return selector.encode() in self.selectors or selector in self.so_strings


# tests/verify/thirdparty.py pins and caches the registry downloads of both test trees
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "verify"))
import thirdparty  # noqa: E402

# (package, version, file name, sha256): the wheel of CPython 3.11 whatever Python runs the tests
PYOBJC_METAL = ("pyobjc-framework-Metal", "12.2.2",
                "pyobjc_framework_metal-12.2.2-cp311-cp311-macosx_10_9_universal2.whl",
                "9e56862fd12eb3d3da429f15d6721f966d5791e27419ea0fa08f5f3dd0981fe8")


@pytest.fixture(scope="module")
def wheel() -> Wheel:
    return Wheel(thirdparty.fetch(PYOBJC_METAL, platform="macosx_11_0_universal2", python="3.11"))


# -- recording the runtime's calls into the fake ---------------------------------------------------------

PLAIN = (int, float, str, bytes, bytearray, memoryview, bool, type(None), np.ndarray, np.generic)


class Recorder:
    """Wraps a fake PyObjC object: every method call is logged as (owner, python name, args, result)."""

    def __init__(self, target, log: list, owner: str) -> None:
        self._target, self._log, self._owner = target, log, owner

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if isinstance(attr, type):
            return Recorder(attr, self._log, name)
        if not callable(attr) or name.startswith("__"):
            return attr

        def call(*args):
            result = attr(*args)
            self._log.append((self._owner, name, args, result))
            return _wrap(result, self._log, name)
        return call

    def __enter__(self):  # objc.autorelease_pool() is a context manager
        return self._target.__enter__()

    def __exit__(self, *exc):
        return self._target.__exit__(*exc)


def _wrap(v, log: list, owner: str):
    if isinstance(v, tuple):
        return tuple(_wrap(x, log, owner) for x in v)
    if isinstance(v, PLAIN) or isinstance(v, types.SimpleNamespace) and hasattr(v, "as_buffer"):
        return v
    return Recorder(v, log, owner)


class RecordingMetal(types.ModuleType):
    def __init__(self, fake, log: list) -> None:
        super().__init__("Metal")
        self._fake, self._log = fake, log

    def __getattr__(self, name):
        attr = getattr(self._fake, name)
        if isinstance(attr, type):
            return Recorder(attr, self._log, name)
        if callable(attr):
            def call(*args):
                result = attr(*args)
                self._log.append(("Metal", name, args, result))
                return _wrap(result, self._log, name)
            return call
        self._log.append(("Metal", name, None, attr))  # a constant
        return attr


@pytest.fixture
def recorded(fake_metal, monkeypatch):
    log: list = []
    monkeypatch.setitem(sys.modules, "Metal", RecordingMetal(fake_metal, log))
    rt_metal.reset()
    yield fake_metal, log
    rt_metal.reset()


fake_metal = fk.fake_metal  # the fixture


def _page_aligned(n: int) -> np.ndarray:
    raw = np.zeros(n * 4 + rt_metal.PAGE, np.uint8)
    off = (-raw.ctypes.data) % rt_metal.PAGE
    return raw[off:off + n * 4].view(np.float32)


def _exercise(fake, make_package, monkeypatch):
    """Every path of metal.py that talks to PyObjC: metallib by URL, source with both kinds of
    compile options, a refused metallib, copied and wrapped buffers, copy-back, the dims buffer."""
    fake.emulate = fk.emulate_vector_add
    make_package("pkg_pyobjc", metallib=b"MTLB")
    k = enigma_runtime.load("pkg_pyobjc", "vector_add")
    a, b, c = np.arange(300, dtype=np.float32), np.ones(300, np.float32), np.zeros(300, np.float32)
    k(a, b, c, 300, device="metal")  # from the metallib; copied buffers; copy-back
    np.testing.assert_array_equal(c, a + 1)
    n = rt_metal.PAGE // 4
    x, y, z = _page_aligned(n), _page_aligned(n), _page_aligned(n)
    k(x, y, z, n, device="metal")  # wrapped without copies
    fake.refuse_metallib = True
    rt_metal.reset()
    k = Kernel.from_spec(*vector_add_kernel(), "kernel void enigma_kernel_vector_add();", b"MTLB")
    k(a, b, c, 300, device="metal")  # refused metallib, then source (options before macOS 15)
    rt_metal.reset()
    monkeypatch.setattr(fk.FakeMetal, "MTLCompileOptions", fk.FakeOptions15)
    spec, ir = vector_add_kernel()
    k = Kernel.from_spec(dict(spec, simd_width=32), ir, "kernel void enigma_kernel_vector_add();")
    k(a, b, c, 300, device="metal")  # source, options of macOS 15+; the SIMD width checked


def test_every_selector_the_runtime_calls_exists_in_pyobjc(wheel, recorded, make_package, monkeypatch):
    fake, log = recorded
    _exercise(fake, make_package, monkeypatch)
    # plain Objective-C properties of MTLCompileOptions with scalar values need no PyObjC metadata, so
    # the wheel does not name their setters; Apple's documentation is the reference (module docstring)
    properties = {"setLanguageVersion:", "setMathMode:", "setMathFloatingPointFunctions:"}
    nsobject = {"new"}  # +[NSObject new], inherited by every class
    called: set[str] = set()
    for owner, name, args, result in log:
        if owner == "Metal" and args is None:
            assert name in wheel.enums, f"constant Metal.{name} is not in pyobjc-framework-Metal"
            assert result == wheel.enums[name], f"the fake's {name} = {result}, PyObjC's {wheel.enums[name]}"
            continue
        if owner == "Metal" and name[:3] == "MTL":
            assert name in wheel.functions, f"Metal.{name}() is not a function of pyobjc-framework-Metal"
            continue
        selector = name.replace("_", ":")
        assert selector.count(":") == len(args), f"{selector} called with {len(args)} arguments"
        called.add(selector)
        if owner[:3] == "MTL" and owner[3:4].isupper() and not owner.startswith("MTLCreate"):
            if isinstance(getattr(fk.FakeMetal, owner, None), type):  # a class used by name
                assert owner in wheel.classes, f"class Metal.{owner} is not in pyobjc-framework-Metal"
        if selector in properties or selector in nsobject:
            continue
        assert wheel.knows(selector), f"{selector} (called on {owner}) is not in pyobjc-framework-Metal"
        meta = wheel.selectors.get(selector.encode(), {})
        arguments = meta.get("arguments", {})
        outs = [i for i, a in arguments.items() if a.get("type_modifier") == b"o"]
        for i in outs:
            assert args[i - 2] is None, f"{selector}: out-parameter {i - 2} must be passed as None"
        if outs:
            assert isinstance(result, tuple) and len(result) == 1 + len(outs), \
                f"{selector} returns (result, {len(outs)} out values) in PyObjC; the fake returned {result!r}"
        else:
            assert not isinstance(result, tuple), f"{selector} returns one value in PyObjC, the fake a tuple"
        for i, a in arguments.items():
            if "c_array_length_in_arg" in a:
                data, length = args[i - 2], args[a["c_array_length_in_arg"] - 2]
                view = memoryview(data)  # bytes-like
                assert view.nbytes == length, f"{selector}: {view.nbytes} bytes given with length {length}"
        if meta.get("retval", {}).get("c_array_of_variable_length"):
            assert hasattr(result, "as_buffer"), f"{selector} returns a varlist: read it with as_buffer(n)"
    # what the exercise must have covered
    assert {"newLibraryWithURL:error:", "newLibraryWithSource:options:error:",
            "newComputePipelineStateWithFunction:error:", "newBufferWithBytes:length:options:",
            "newBufferWithBytesNoCopy:length:options:deallocator:", "setBytes:length:atIndex:",
            "setBuffer:offset:atIndex:", "dispatchThreadgroups:threadsPerThreadgroup:", "contents",
            "threadExecutionWidth", "maxTotalThreadsPerThreadgroup", "setFastMathEnabled:",
            "setMathMode:", "setMathFloatingPointFunctions:", "setLanguageVersion:"} <= called


def test_the_fakes_constants_are_pyobjcs(wheel):
    for name in ("MTLResourceStorageModeShared", "MTLLanguageVersion3_0", "MTLLanguageVersion3_1",
                 "MTLMathModeSafe", "MTLMathFloatingPointFunctionsPrecise"):
        assert getattr(fk.FakeMetal, name) == wheel.enums[name], name
    assert rt_metal.COMMAND_BUFFER_COMPLETED == wheel.enums["MTLCommandBufferStatusCompleted"]
    # the languages the runtime may be asked for are spelled as PyObjC spells them
    assert "MTLLanguageVersion3_1" in wheel.enums and "MTLLanguageVersion3_2" in wheel.enums


def test_the_metadata_conventions_the_runtime_relies_on(wheel):
    """Spelled out for the calls of metal.py (the generic check above covers what a launch calls)."""
    for sel in (b"newLibraryWithURL:error:", b"newLibraryWithSource:options:error:",
                b"newComputePipelineStateWithFunction:error:"):
        args = wheel.selectors[sel]["arguments"]
        last = max(args)
        assert args[last].get("type_modifier") == b"o", sel  # error: out-parameter
    nocopy = wheel.selectors[b"newBufferWithBytesNoCopy:length:options:deallocator:"]["arguments"]
    assert nocopy[2]["c_array_length_in_arg"] == 3 and nocopy[2]["type"] == b"^v"
    assert wheel.selectors[b"setBytes:length:atIndex:"]["arguments"][2]["c_array_length_in_arg"] == 3
    assert wheel.selectors[b"contents"]["retval"]["c_array_of_variable_length"]
