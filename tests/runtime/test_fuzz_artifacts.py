"""The artifact-format mutation fuzzer (scripts/fuzz_artifacts.py) in CI: a few hundred seeded
mutations of a package of example_project's kernels, each ending in success or a named error of
enigma-runtime within its timeout; and the fuzzer itself reports what it must report."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_artifacts.py"


@pytest.fixture(scope="module")
def fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_artifacts", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_artifacts"] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("fuzz_artifacts", None)


def test_300_mutations_end_in_success_or_a_named_error(fuzzer):
    counts, bad = fuzzer.fuzz(seed=20261204, cases=300, timeout=20.0)
    assert not bad, "\n\n".join(f"case {c.index}: {c.outcome}: {c.mutations}\n{c.detail}" for c in bad)
    assert sum(counts.values()) == 300
    # the mutations reach every layer: the files, the manifest, the IR and launches that run
    assert counts["success"] > 10 and counts["ManifestError"] > 10 and counts["IRError"] > 5


def test_the_fuzzer_reports_other_exceptions_and_hangs(fuzzer, monkeypatch):
    import enigma_runtime.validation as v

    def broken(*a, **k):
        raise KeyError("kind")
    monkeypatch.setattr(v, "check_args", broken)  # what every specialisation's check calls
    counts, bad = fuzzer.fuzz(seed=1, cases=3, timeout=5.0)
    assert bad and all(c.outcome == "BAD KeyError" for c in bad)
    monkeypatch.undo()

    def slow(adir):
        time.sleep(30)
    monkeypatch.setattr(fuzzer, "exercise", slow)
    t0 = time.perf_counter()
    counts, bad = fuzzer.fuzz(seed=1, cases=1, timeout=0.5)
    assert [c.outcome for c in bad] == ["HANG"] and time.perf_counter() - t0 < 20


def test_binding_errors_are_allowed_only_from_the_binding(fuzzer):
    import numpy as np
    from enigma_runtime import binding

    spec = {"name": "k", "args": [{"name": "a", "kind": "tensor", "dtype": "float32", "shape": [4]}]}
    with pytest.raises(ValueError) as e:
        binding.bind(spec, (np.zeros(3, np.float32),), "k")
    assert fuzzer.classify(e.value) == ("ValueError (argument check)", True)
    try:
        {}["x"]
    except KeyError as err:
        assert fuzzer.classify(err) == ("KeyError", False)
    try:
        int("x")
    except ValueError as err:
        assert fuzzer.classify(err) == ("ValueError", False)
