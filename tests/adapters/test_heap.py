"""The bot and the worker freeze what they keep, so a full collection does not walk it
(:mod:`workers.heap`)."""

from __future__ import annotations

import gc

from workers.heap import freeze_heap


def test_what_exists_at_the_freeze_is_left_out_of_every_later_collection() -> None:
    kept = [[i] for i in range(1000)]  # lists: the collector always tracks them
    try:
        assert freeze_heap() >= len(kept)
        assert all(gc.is_tracked(k) for k in kept)
        walked = {id(o) for o in gc.get_objects()}  # generations 0-2, what collections walk
        assert not any(id(k) in walked for k in kept)
        made_later = [-1]
        assert id(made_later) in {id(o) for o in gc.get_objects(generation=0)}
    finally:
        gc.unfreeze()  # this test process goes on as before
    assert id(kept[0]) in {id(o) for o in gc.get_objects()}
