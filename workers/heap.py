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

What a worker's pool process frees it does not give back whole: at 2,000 namespaces a gate
look takes a pool process ~65 MB higher for a moment, and what survives it (a connection's
buffer, a log record, an entry of a bounded cache) pins the pymalloc arenas and malloc heap
pages around it. Measured on the engine benchmark (issue 13): the live Python objects of
the busiest pool process stayed within a few MB between looks (``tracemalloc``),
``malloc_trim(0)`` gave back 5 MB of its heap, and still its resident set rose about 2 MB a
wave (137 → 188 MB over 21 waves) and would go on with a longer run; glibc's
``MALLOC_ARENA_MAX=2`` with a fixed mmap threshold did not change that. Celery's answer is
its own: a pool process whose peak passes :data:`MAX_MEMORY_PER_CHILD_KIB` is replaced
once its task is done (``worker_max_memory_per_child``), by a fork of the main process,
which holds none of it (``benchmarks/engine.py`` at 2,000 namespaces: peak 189 MB, six
processes replaced over the run, ratio 0.83 against the plain script). A run loses
nothing: its state is in Redis, the task that crossed the line finished first, and a
rollout watch that process held ends with it (the run's scheduled recheck takes over,
:mod:`workers.kube.follow`); its chart interpreter is stopped and reaped on the way out
(:func:`workers.slack.charts.close_chart_interpreter`).
"""

from __future__ import annotations

import gc

#: a pool process whose peak resident set (``ru_maxrss``) passes this many KiB is replaced
#: after its task (``meshops worker --max-memory-per-child``, Celery's
#: ``worker_max_memory_per_child``). A new one is ~120–136 MiB (shared pages of the main
#: process counted); at 200 namespaces none passes it, at 2,000 the one that takes a large
#: look does (six replaced in a 21-wave run, each at 181–189 MiB), so the peak no longer
#: climbs with the run; the deployed worker's five processes and their chart interpreters
#: stay inside its 1.5 GiB limit (deploy/kubernetes/worker.yaml)
MAX_MEMORY_PER_CHILD_KIB = 180 * 1024


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
