"""The plan warns when the gate cannot sample as the run asks (issue 13): each look reads a
window of at least two Prometheus scrapes, so a bake shorter than two such windows, or an
interval shorter than two scrapes, is said in the plan with what would do."""

from __future__ import annotations

from workflows.waves import sampling_note


def test_a_bake_shorter_than_two_windows_of_two_scrapes_is_warned_with_what_would_do() -> None:
    # Azure Managed Prometheus scrapes every 30 s: windows of 1m at least
    note = sampling_note(bake_s=90, interval_s=30, scrape_interval_s=30)
    assert note is not None and note.startswith(":warning: The bake (90s) holds fewer than "
                                                "two of the gate's windows")
    assert "scrape_interval 30s" in note and note.endswith("Bake at least 2m.")


def test_an_interval_shorter_than_two_scrapes_makes_looks_overlap() -> None:
    note = sampling_note(bake_s=600, interval_s=15, scrape_interval_s=30)
    assert note is not None and "looks overlap" in note and "`--interval=1m`" in note


def test_the_defaults_and_the_sandbox_sample_as_asked() -> None:
    assert sampling_note(bake_s=600, interval_s=60, scrape_interval_s=30) is None
    assert sampling_note(bake_s=6, interval_s=3, scrape_interval_s=1) is None
    # exactly two windows is enough
    assert sampling_note(bake_s=120, interval_s=60, scrape_interval_s=30) is None
