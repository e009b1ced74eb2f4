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
