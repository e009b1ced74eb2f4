"""`need_tool`: tests that need an external tool skip on a user's machine without it, but under
CI=true a missing tool fails the test (CI must install it: .ci/run)."""
from __future__ import annotations

import os
import shutil

import pytest


def need_tool(*candidates: str) -> str:
    """Path of the first of `candidates` found on PATH; skip (fail under CI=true) if none is."""
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    msg = f"none of {', '.join(candidates)} found on PATH (.ci/run installs them with apt-get)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " -- under CI=true a missing tool is a failure, not a skip")
    pytest.skip(msg)
