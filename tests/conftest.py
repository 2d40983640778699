"""Shared fixtures: paths to ../shared, a Redis prefix of the test run's own."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REDIS_URL = os.environ.get("MESHOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read the real examples from ../shared")
    return SHARED


@pytest.fixture
def prefix() -> str:
    return f"meshops-test-{secrets.token_hex(4)}"
