"""Fixtures of the adapter tests: the run store on the real Redis under the test's own
prefix (only its keys are deleted afterwards), and the sandbox's Slack emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.adapters.test_error_seams import Service
from tests.conftest import REDIS_URL, free_port_base
from workers.store.runs import RedisRunStore


@pytest.fixture
def store(prefix: str) -> Iterator[RedisRunStore]:
    s = RedisRunStore.from_url(REDIS_URL, prefix)
    yield s
    keys = list(s.r.scan_iter(prefix + "*"))
    if keys:
        s.r.delete(*keys)


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    """A Slack with one channel (C1) and one user (UREQ)."""
    port = free_port_base(15000, 16000)
    emu = SlackEmulator("xoxb-test", {"C1": "mesh"}, {"UREQ": "ana"},
                        base_url=f"http://127.0.0.1:{port}")
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu
    server.shutdown()


@pytest.fixture
def service() -> Iterator[Service]:
    """A local HTTP server answering with canned answers (tests/adapters/test_error_seams)."""
    s = Service()
    yield s
    s.server.shutdown()
