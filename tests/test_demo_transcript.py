"""The transcript ``meshops demo`` prints of the sandbox Slack's log."""

from __future__ import annotations

from meshops.demo import format_entry, indented

INFO = {"clusters": {"dev": {"channel": "C0DEVMESH"}}}


def test_a_chart_uploaded_into_the_thread_is_a_file_in_the_thread() -> None:
    entry = {"kind": "file", "channel": "C0DEVMESH", "thread_ts": "1.000001",
             "title": "dev wave 0: gate PASS", "name": "dev-wave-0.png",
             "text": "Success rate and p99 per namespace up to wave 0 (PASS)"}
    assert format_entry(entry, INFO) == (
        "  [#mesh-dev thread] (file in the thread: dev wave 0: gate PASS) Success rate and p99 "
        "per namespace up to wave 0 (PASS)")
    assert format_entry({**entry, "text": ""}, INFO) == \
        "  [#mesh-dev thread] (file in the thread: dev wave 0: gate PASS)"
    assert format_entry({**entry, "thread_ts": None}, INFO).startswith(
        "[#mesh-dev] meshops: (file: dev wave 0: gate PASS)")


def test_continuation_lines_are_indented_like_the_first_line() -> None:
    text = "*wave 0 (accounts): gate sample 1: PASS*\n✓ accounts success\n✓ accounts p99"
    thread = {"kind": "post", "channel": "C0DEVMESH", "thread_ts": "1.000001", "text": text}
    assert format_entry(thread, INFO).splitlines() == [
        "  [#mesh-dev thread] *wave 0 (accounts): gate sample 1: PASS*",
        "  ✓ accounts success",
        "  ✓ accounts p99"]
    reply = {"kind": "response", "text": "*Plan*: `dev`\nwave 0 (pilot): accounts"}
    assert format_entry(reply, INFO).splitlines() == [
        "  ↳ (reply, only that person sees) *Plan*: `dev`", "  wave 0 (pilot): accounts"]
    root = {"kind": "post", "channel": "C0DEVMESH", "text": "a\nb"}
    assert format_entry(root, INFO) == "[#mesh-dev] meshops: a\nb"
    assert indented("    ↳ ", "x\ny") == "    ↳ x\n    y"
