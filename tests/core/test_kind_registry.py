"""The workflow kinds' registry under the bot's threads: loaded once, never seen half."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from workflows.kind import KINDS, Registry, WorkflowKind


class _Slow(WorkflowKind):
    name: ClassVar[str] = "slow"
    verb: ClassVar[str | None] = "slow"


def test_threads_asking_while_the_kinds_load_wait_for_them() -> None:
    """Ten requests reach a restarted bot at once, each asking for the verb of its command:
    those that ask while the first is still importing the kinds wait for them. (Before,
    the registry counted as loaded as soon as the import began, and answered
    "Unknown command `upgrade`".)"""
    calls = []
    started = threading.Event()

    def load() -> None:
        calls.append(1)
        started.set()
        time.sleep(0.2)  # an import that takes a while (the kinds import the workflows)
        registry.register(_Slow())
        assert registry.by_verb("slow") is not None  # the import may ask: no deadlock

    registry = Registry(load)
    with ThreadPoolExecutor(10) as pool:
        first = pool.submit(registry.by_verb, "slow")
        started.wait(5)
        found = list(pool.map(registry.by_verb, ["slow"] * 9))
    assert first.result() is not None and all(k is not None for k in found), found
    assert calls == [1]  # imported once


def test_a_failed_load_is_tried_again() -> None:
    tries = []

    def load() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ImportError("a module of a kind failed to import")
        registry.register(_Slow())

    registry = Registry(load)
    try:
        registry.by_verb("slow")
    except ImportError:
        pass
    assert registry.by_verb("slow") is not None and len(tries) == 2


def test_the_built_in_kinds_are_registered_by_default() -> None:
    assert {k.verb for k in KINDS} >= {"upgrade", "enable"}
