"""Shared fixtures. Import `need_tool` from `toolcheck` (not from conftest: runtime/tests has its own
conftest.py, and both are imported under the name `conftest`)."""
from __future__ import annotations

import pytest
from toolcheck import need_tool


@pytest.fixture(scope="session")
def mlir_opt() -> str:
    return need_tool("mlir-opt-19", "mlir-opt")
