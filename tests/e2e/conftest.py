"""The sandboxed meshops of the end-to-end tests: real Redis, real Celery worker and beat,
real Prometheus, the bot in HTTP mode, all started by the same harness as ``meshops demo``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshops.demo import Harness
from tests.conftest import REDIS_URL, free_port_base


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    base = free_port_base(20000, 26000, 100)  # below the ephemeral port range
    lines: list[str] = []
    h = Harness(Path(tmp_path_factory.mktemp("e2e")), port_base=base, bot_port=base + 80,
                redis_url=REDIS_URL, echo=lines.append)
    h.lines = lines  # type: ignore[attr-defined]
    h.start()
    try:
        yield h
    finally:
        h.stop()
