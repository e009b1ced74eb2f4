"""The corpus's downloads (thirdparty.fetch) hold to their pins: an sdist comes from the package
index's simple page (PEP 503) by file name, its sha256 must match, and a file the index lacks fails
under CI=true and skips elsewhere. A local file:// index stands in for PyPI."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import thirdparty


def _index(tmp_path: Path, name: str, filename: str, data: bytes) -> str:
    root = tmp_path / "index"
    (root / name / "files").mkdir(parents=True)
    (root / name / "files" / filename).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (root / name / "index.html").write_text(
        f'<html><body><a href="files/{filename}#sha256={digest}">{filename}</a>\n'
        f'<a href="files/other-1.0.tar.gz">other-1.0.tar.gz</a></body></html>')
    return root.as_uri()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ENIGMA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_sdist_comes_from_the_simple_index_and_is_cached(tmp_path, cache, monkeypatch):
    data = b"pretend sdist" * 100
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, "some-pkg", "some_pkg-1.0.tar.gz", data))
    pin = ("Some_Pkg", "1.0", "some_pkg-1.0.tar.gz", hashlib.sha256(data).hexdigest())
    got = thirdparty.fetch(pin)
    assert got.read_bytes() == data and str(got).startswith(str(cache))
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "nowhere").as_uri())  # cached: no index needed
    assert thirdparty.fetch(pin) == got


def test_a_wrong_sha256_fails(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, "some-pkg", "some_pkg-1.0.tar.gz", b"tampered"))
    pin = ("some-pkg", "1.0", "some_pkg-1.0.tar.gz", "0" * 64)
    with pytest.raises(pytest.fail.Exception, match="sha256 .* expected the pinned 0000"):
        thirdparty.fetch(pin)
    assert not list(cache.rglob("some_pkg-1.0.tar.gz"))


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_file_fails_under_ci_and_skips_elsewhere(tmp_path, cache, monkeypatch, ci):
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, "some-pkg", "some_pkg-1.0.tar.gz", b"x"))
    monkeypatch.setenv("CI", ci)
    pin = ("some-pkg", "2.0", "some_pkg-2.0.tar.gz", "0" * 64)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="some_pkg-2.0.tar.gz is not on"):
        thirdparty.fetch(pin)


def _wheel(tag: str) -> tuple[str, bytes]:
    import io
    import zipfile

    name = f"enigma_fake_wheel-1.0-{tag}.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = "enigma_fake_wheel-1.0.dist-info/"
        z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: enigma-fake-wheel\nVersion: 1.0\n")
        z.writestr(info + "WHEEL",
                   f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
        z.writestr(info + "RECORD", "")
    return name, buf.getvalue()


def test_a_wheel_built_per_python_comes_for_the_version_asked(tmp_path, cache, monkeypatch):
    """pyobjc-framework-Metal's wheels are built per CPython version: `python` picks one, whatever
    Python runs the tests (pip download --python-version, --implementation cp, --abi)."""
    tags = ("cp311-cp311-macosx_10_9_universal2", "cp312-cp312-macosx_10_13_universal2")
    wheels = dict(_wheel(t) for t in tags)
    root = tmp_path / "index" / "enigma-fake-wheel"
    (root / "files").mkdir(parents=True)
    links = []
    for name, data in wheels.items():
        (root / "files" / name).write_bytes(data)
        links.append(f'<a href="files/{name}#sha256={hashlib.sha256(data).hexdigest()}">{name}</a>')
    (root / "index.html").write_text("<html><body>" + "\n".join(links) + "</body></html>")
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "index").as_uri())
    monkeypatch.setenv("CI", "true")  # a wheel pip does not pick fails, never skips
    for python, name in (("3.12", "enigma_fake_wheel-1.0-cp312-cp312-macosx_10_13_universal2.whl"),
                         ("3.11", "enigma_fake_wheel-1.0-cp311-cp311-macosx_10_9_universal2.whl")):
        pin = ("enigma-fake-wheel", "1.0", name, hashlib.sha256(wheels[name]).hexdigest())
        got = thirdparty.fetch(pin, platform="macosx_11_0_universal2", python=python)
        assert got.name == name and got.read_bytes() == wheels[name]
