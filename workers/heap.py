"""The long-lived heap of a meshops process, kept out of the cyclic garbage collector's way.

A bot or worker process holds a few hundred thousand objects that live as long as it does:
the modules of the Kubernetes, Azure, Celery and Slack SDKs, the fleet, the engine. CPython's
full (generation 2) collection walks all of them: about 130 ms at 225,000 objects on two
cores, during which no other thread of the process runs, so a burst of ten slash commands
each waited that long for its ack (``benchmarks/ack_latency.py``, issue 13).
:func:`gc.freeze` moves what exists into the permanent generation, which no later collection
walks (https://docs.python.org/3/library/gc.html#gc.freeze; it is what the documentation
recommends before a fork, and what Instagram's Django servers do). Objects made later are
collected as before; the frozen ones are never freed, which is right for what lives as long
as the process.
"""

from __future__ import annotations

import gc


def freeze_heap(collect: bool = True) -> int:
    """Collect what is garbage now (unless ``collect`` is False), then freeze every object
    that is left; returns how many objects are frozen in all (``gc.get_freeze_count()``).
    Call it once the process has imported and built what it keeps (and again later: a
    second call freezes what was made in between). The collection walks the whole heap
    (about half a second at 700,000 objects on two slow cores); a process whose parent
    collected and froze before forking it has little garbage to leave, and skips it."""
    if collect:
        gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
