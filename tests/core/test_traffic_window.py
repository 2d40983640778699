"""TrafficWindow: a slotted object with the model's fields, validation and JSON (issue 13)."""

from __future__ import annotations

import json
import math
import pickle

import pytest
from pydantic import ValidationError

from workflows.traffic import ISTIO_BUCKETS_MS, TrafficWindow, TrafficWindowJson

FIELDS = {"subject": "shop", "revision": "asm-1-26", "reporter": "destination",
          "start": 60, "end": 120, "requests": 12, "codes": {"200": 9, "503": 2, "grpc:14": 1},
          "buckets": {1: 3, 5.0: 8, math.inf: 12}, "tcp_opened": 4, "tcp_failed": 1}


def test_the_json_line_is_the_models() -> None:
    w = TrafficWindow(**FIELDS)
    line = w.model_dump_json()
    assert line == TrafficWindowJson(**FIELDS).model_dump_json()
    assert json.loads(line) == {
        "subject": "shop", "revision": "asm-1-26", "reporter": "destination", "start": 60.0,
        "end": 120.0, "requests": 12, "codes": {"200": 9, "503": 2, "grpc:14": 1},
        "buckets": {"1.0": 3, "5.0": 8, "inf": 12}, "tcp_opened": 4, "tcp_failed": 1,
        "restarts": 0}
    back = TrafficWindow.model_validate_json(line)
    assert back == w and back.model_dump_json() == line
    assert w.model_dump() == TrafficWindowJson(**FIELDS).model_dump()


def test_fields_are_validated_and_coerced_as_the_model_did() -> None:
    w = TrafficWindow(**FIELDS)
    assert (w.start, w.end) == (60.0, 120.0) and isinstance(w.start, float)
    assert w.buckets == {1.0: 3, 5.0: 8, math.inf: 12}
    assert w.errors == 3  # 503 and gRPC Unavailable
    with pytest.raises(ValidationError, match="reporter"):
        TrafficWindow(**{**FIELDS, "reporter": "sideways"})
    with pytest.raises(ValidationError, match="requests"):
        TrafficWindow(**{**FIELDS, "requests": -1})
    with pytest.raises(ValidationError, match="extra"):
        TrafficWindow(**FIELDS, colour="red")


def test_a_window_is_read_only_and_copied_with_changes() -> None:
    w = TrafficWindow(**FIELDS)
    with pytest.raises(AttributeError):
        w.revision = "asm-1-25"
    before = w.model_copy(update={"revision": "asm-1-25 (before the rollover)"})
    assert before.revision == "asm-1-25 (before the rollover)" and w.revision == "asm-1-26"
    assert before.buckets == w.buckets and before.codes == w.codes and before != w
    assert pickle.loads(pickle.dumps(w)) == w
    with pytest.raises(TypeError):
        hash(w)


def test_windows_of_istios_buckets_share_one_tuple_of_edges() -> None:
    counts = dict(zip(ISTIO_BUCKETS_MS, range(20), strict=True))
    a = TrafficWindow.of_counts("a", None, "source", 0, 60, {"200": 19}, counts, 0, 0)
    b = TrafficWindow.of_counts("b", None, "source", 0, 60, {"200": 19}, dict(counts), 0, 0)
    assert a.bucket_counts()[0] is b.bucket_counts()[0]
    assert all(type(le) is float for le in a.buckets)  # as the model's: JSON "1.0", not "1"
    line = TrafficWindow(**FIELDS).model_dump_json()
    assert line == TrafficWindowJson(**FIELDS).model_dump_json()
    assert a.buckets == counts and a.requests == 19 and a.restarts == 0
    assert a == TrafficWindow(subject="a", revision=None, reporter="source", start=0, end=60,
                              requests=19, codes={"200": 19}, buckets=counts)
