"""Discovery: the AST scan finds kernels however enigma was imported; only kernel modules load."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from enigma_build import discover
from enigma_build.config import from_table
from enigma_build.discover import DiscoveryError


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def project(tmp_path):
    write(tmp_path, "pkg/__init__.py", "raise RuntimeError('the package __init__ must never run')\n")
    write(tmp_path, "pkg/plain.py", "import enigma\n\ndef helper():\n    return enigma\n")
    write(tmp_path, "pkg/a.py", """\
        import enigma as e

        @e.kernel
        def one(x: e.Tensor[e.float32], n: e.int32):
            pass

        @e.jit
        def launch_one(x):
            pass
        """)
    write(tmp_path, "pkg/sub/__init__.py", "")
    write(tmp_path, "pkg/sub/b.py", """\
        from enigma import kernel as K, float32
        import numpy

        @K(block=(64, 1, 1))
        def two(y, *, z=1):
            pass

        def not_a_kernel():
            pass
        """)
    write(tmp_path, "pkg/sub/c.py", """\
        import enigma.frontend

        class Holder:
            @enigma.kernel
            def method(self):  # not module level: ignored
                pass

        @enigma.kernel()
        def three():
            pass
        """)
    return tmp_path


def test_scan_finds_every_import_style(project):
    found = discover.scan(from_table(project, {}))
    got = [(f.name, f.kind, f.rel, f.line, f.package) for f in found]
    assert got == [("one", "kernel", "pkg/a.py", 4, "pkg"), ("launch_one", "jit", "pkg/a.py", 8, "pkg"),
                   ("two", "kernel", "pkg/sub/b.py", 5, "pkg"), ("three", "kernel", "pkg/sub/c.py", 9, "pkg")]
    assert found[0].params == "x: e.Tensor[e.float32], n: e.int32"
    assert found[2].params == "y, *, z=1"
    assert found[0].where == "pkg/a.py:4"


def test_star_import(project):
    write(project, "pkg/star.py", "from enigma import *\n\n\n@jit\ndef seven(x):\n    pass\n")
    found = [f for f in discover.scan(from_table(project, {})) if f.rel == "pkg/star.py"]
    assert [(f.name, f.kind, f.line) for f in found] == [("seven", "jit", 5)]


def test_submodule_import_styles(project):
    write(project, "pkg/subimports.py", """\
        import enigma.frontend as ef
        from enigma.frontend import kernel as fk
        from enigma import frontend

        @ef.kernel
        def s1():
            pass

        @fk(block=(32, 1, 1))
        def s2():
            pass

        @frontend.jit
        def s3():
            pass

        @ef.other
        def not_one():
            pass
        """)
    found = [f for f in discover.scan(from_table(project, {})) if f.rel == "pkg/subimports.py"]
    assert [(f.name, f.kind, f.line) for f in found] == [("s1", "kernel", 6), ("s2", "kernel", 10),
                                                           ("s3", "jit", 14)]


def test_include_exclude_globs(project):
    found = discover.scan(from_table(project, {"exclude": ["pkg/sub/**"]}))
    assert [f.name for f in found] == ["one", "launch_one"]
    found = discover.scan(from_table(project, {"include": ["**/c.py"]}))
    assert [f.name for f in found] == ["three"]


def test_packages_and_paths(project):
    write(project, "src/other/__init__.py", "")
    write(project, "src/other/k.py", "import enigma\n@enigma.kernel\ndef four():\n    pass\n")
    assert [f.name for f in discover.scan(from_table(project, {"packages": ["other"]}))] == ["four"]
    assert [f.package for f in discover.scan(from_table(project, {"paths": ["src/other"]}))] == ["other"]
    with pytest.raises(DiscoveryError, match="tool.enigma.packages: package 'nope' not found"):
        discover.scan(from_table(project, {"packages": ["nope"]}))
    with pytest.raises(DiscoveryError, match="tool.enigma.paths: 'src/x' is not a directory"):
        discover.scan(from_table(project, {"paths": ["src/x"]}))


def test_duplicate_names_name_both_places(project):
    write(project, "pkg/dup.py", "import enigma\n\n\n@enigma.kernel\ndef one():\n    pass\n")
    with pytest.raises(DiscoveryError) as e:
        discover.scan(from_table(project, {}))
    assert str(e.value) == ("two kernels named 'one' in package 'pkg': pkg/a.py:4 and pkg/dup.py:5; "
                            "rename one (the runtime loads kernels by name)")


def test_syntax_error_names_file_and_line(project):
    write(project, "pkg/bad.py", "import enigma\n\ndef f(:\n")
    with pytest.raises(DiscoveryError, match=r"pkg/bad.py:3: syntax error"):
        discover.scan(from_table(project, {}))


def test_load_runs_only_kernel_modules(project):
    # pkg/__init__.py raises: loading must not run it. The decorators are stand-ins for enigma's here.
    write(project, "pkg/ok.py", """\
        import types

        import enigma
        enigma = types.SimpleNamespace(kernel=lambda f: ("kernel", f.__name__))

        @enigma.kernel
        def five():
            pass
        """)
    found = [f for f in discover.scan(from_table(project, {})) if f.rel == "pkg/ok.py"]
    (f, obj), = discover.load(found)
    assert obj == ("kernel", "five")


def test_import_failure_names_module_exception_and_hint(project):
    write(project, "pkg/broken.py", """\
        import enigma
        from . import helpers

        @enigma.kernel
        def six():
            pass
        """)
    found = [f for f in discover.scan(from_table(project, {})) if f.name == "six"]
    with pytest.raises(DiscoveryError) as e:
        discover.load(found)
    msg = str(e.value)
    assert msg.startswith("pkg/broken.py: importing the kernel module failed: ImportError:")
    assert "should import only enigma, numpy and the standard library" in msg
