"""The Enigma-dialect MLIR printer: every zoo kernel and every hand-built kernel (all ops of the
catalogue) parses and verifies with the real mlir-opt, and mlir-opt's output parses again."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
import handir  # noqa: E402
import zoo  # noqa: E402
from enigma_runtime.dtypes import bfloat16, float16  # noqa: E402

from enigma import ir, passes  # noqa: E402
from enigma.backends import mlir  # noqa: E402
from enigma.passes.opbuilder import OpBuilder  # noqa: E402


def verify(mlir_opt: str, text: str) -> str:
    """mlir-opt's output for `text` (fails the test with mlir-opt's diagnostics), parsed a second time."""
    cmd = [mlir_opt, "--allow-unregistered-dialect"]
    first = subprocess.run(cmd, input=text, capture_output=True, text=True)
    assert first.returncode == 0, f"mlir-opt rejected:\n{first.stderr}\n--- input ---\n{text}"
    again = subprocess.run(cmd, input=first.stdout, capture_output=True, text=True)
    assert again.returncode == 0, f"round trip failed:\n{again.stderr}\n--- printed ---\n{first.stdout}"
    return first.stdout


@pytest.mark.needs_mlir
@pytest.mark.parametrize("entry", zoo.ZOO, ids=lambda e: e.name)
def test_zoo_kernel_verifies(mlir_opt, entry):
    traced = entry.kernel.trace()
    for k in (traced, passes.run(traced, entry.vec_width)):
        text = mlir.emit(k)
        assert f"func.func @{k.kernel_name}(" in text and text.startswith("module {")
        out = verify(mlir_opt, text)
        assert f"@{k.kernel_name}" in out


@pytest.mark.needs_mlir
@pytest.mark.parametrize("make", handir.ALL, ids=lambda f: f.__name__)
def test_hand_built_kernel_verifies(mlir_opt, make):
    k = make()
    verify(mlir_opt, mlir.emit(k))
    verify(mlir_opt, mlir.emit(passes.run(k)))


def test_every_catalogue_op_is_covered_by_the_hand_built_kernels():
    seen = {op.name for make in handir.ALL for op in ir.walk(make().body)}
    assert ir.ALL_OPS - seen == set()


def test_op_spelling():
    text = mlir.emit(handir.every_op())
    for s in ['"enigma.thread_idx"() {dim = 0 : i32} : () -> i32', "arith.divf", "arith.remf",
              '"enigma.div"(', '"enigma.mod"(', '"enigma.shr"(', '"enigma.shl"(', '"enigma.min"(',
              "arith.maxsi", "arith.cmpf une",
              "arith.cmpi slt",
              "math.rsqrt",
              "math.fma", "math.absi", "scf.while", "scf.condition(", "vector.broadcast", "arith.extf",
              "arith.truncf", "bf16", "vector<4xf32>", '"enigma.vload"(%m, ', "lanes = 4 : i32",
              '"enigma.simd_shuffle_down"', "memref<?x?xf32>", 'loc("kernels.py":11:0)']:
        assert s in text, s
    shared = mlir.emit(handir.row_sum())
    assert '"enigma.shared_alloc"() {name = "partial", shape = [32]} : () -> memref<32xf32, 3>' in shared
    assert '"enigma.barrier"() : () -> ()' in shared
    static = mlir.emit(handir.histogram())
    assert "%bins: memref<256xi32>" in static and '"enigma.atomic_add"(%bins' in static


def test_for_with_positive_constant_step_is_scf_for_with_i32(mlir_opt):
    b = OpBuilder(3)
    zero, ten, one = b.const(0, handir.I32), b.const(10, handir.I32), b.const(1, handir.I32)
    acc, = handir.for_(b, zero, ten, one, [b.const(0.0, handir.F32)],
                       lambda r, iv, a: [r.val("add", a, r.val("cast", iv, type=handir.F32))])
    down, = handir.for_(b, ten, zero, b.const(-2, handir.I32), [acc], lambda r, iv, a: [r.val("add", a, a)])
    b.op("store", [zero, down], attrs={"tensor": "out"})
    k = ir.Kernel("loops", [handir.tensor("out", access="write")], ir.Block([], b.ops), file="f.py", line=2)
    text = mlir.emit(k)
    assert "scf.for" in text and ": i32 {" in text
    assert "scf.while" in text  # the negative step cannot be an scf.for
    verify(mlir_opt, text)


def test_special_float_constants(mlir_opt):
    b = OpBuilder(1)
    vals = [b.const(v, handir.F32) for v in (float("inf"), float("-inf"), float("nan"), 1e30, -0.0, 0.1)]
    acc = vals[0]
    for v in vals[1:]:
        acc = b.val("add", acc, v)
    b.op("store", [b.const(0, handir.I32), acc], attrs={"tensor": "out"})
    H, BF = ir.Type(float16), ir.Type(bfloat16)
    halves = [b.const(v, H) for v in (65504.0, 1e5, 0.1)] + [b.const(v, BF) for v in (0.1, 1e39, 3.0)]
    for v in halves:
        b.op("store", [b.const(1, handir.I32), b.val("cast", v, type=handir.F32)], attrs={"tensor": "out"})
    b.op("store", [b.const(2, handir.I32), b.const(1e-45, handir.F32)], attrs={"tensor": "out"})
    k = ir.Kernel("consts", [handir.tensor("out", access="write")], ir.Block([], b.ops))
    text = mlir.emit(k)
    assert "0x7F800000" in text and "0xFF800000" in text and "1.0e+30" in text and "-0.0" in text
    assert "6.55e+04 : f16" in text and "0x7C00 : f16" in text and "0x7F80 : bf16" in text
    assert "0.10009765625 : bf16" in text and "1.0e-45 : f32" in text
    verify(mlir_opt, text)


def test_odd_file_names_in_locations(mlir_opt):
    k = handir.vector_add()
    k.file = '/tmp/wéird "dir"\\x/k\tpy.py'
    text = mlir.emit(k)
    assert 'loc("/tmp/wéird \\"dir\\"\\\\x/k\\09py.py":' in text
    verify(mlir_opt, text)  # mlir-opt parses the escaped location


@pytest.mark.needs_mlir
@pytest.mark.parametrize("lanes", [1, 4])
def test_every_op_of_the_table_prints_and_verifies_for_every_dtype(mlir_opt, lanes):
    """The printer covers every op of the op table (generic form unless a standard op has exactly the
    table's semantics), on every dtype the op takes, scalar and vector."""
    from enigma_runtime import ops
    from enigma_runtime.dtypes import ALL
    module = []
    for d in ALL:
        text = mlir.emit(handir.every_elementwise(d, lanes))
        module.append(text)
        for name, o in ops.OPS.items():
            if o.elementwise and name not in ("cast", "select") and handir.accepts(name, d):
                spelled = f'"enigma.{name}"(' in text or any(
                    s in text for s in (mlir.MLIR_FLOAT.get(name), *(mlir.MLIR_INT.get(name) or ()),
                                        "arith.cmp", "arith.xori", "arith.subi", "arith.muli") if s)
                assert spelled, (name, d.name)
        verify(mlir_opt, text)
    assert '"enigma.cast"(' in "".join(module)  # float -> int saturates: not arith.fptosi


@pytest.mark.needs_mlir
def test_an_op_the_printer_has_never_seen_prints_generically(mlir_opt):
    """A new op (here one made up for the test, e.g. what a later simdgroup-matrix op looks like)
    never breaks dump_mlir: any op without regions prints as "enigma.<name>"."""
    b = OpBuilder(3)
    x = b.val("param", type=handir.F32, name="x")
    y = b.val("frobnicate", x, x, type=handir.F32, mode=2)
    b.op("store", [b.const(0, handir.I32), y], attrs={"tensor": "out"})
    k = ir.Kernel("k", [handir.tensor("out", access="write"), handir.scalar("x", handir.float32)],
                  ir.Block([], b.ops), file="k.py", line=2)
    text = mlir.emit(k)
    assert '"enigma.frobnicate"(%x, %x) {mode = 2 : i32} : (f32, f32) -> f32' in text
    verify(mlir_opt, text)
