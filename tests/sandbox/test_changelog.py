"""The sandbox's own AKS release history (sandbox/data/CHANGELOG.md, what ``meshops demo``
serves as the GitHub releases feed) agrees with the revisions its ARM emulator offers; the
feed the sandbox makes of a changelog gives the watcher the changelog's events."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox.app import CHANGELOG, releases_from_changelog
from sandbox.world import load_revisions
from tests.conftest import FIXTURES
from workflows.releases import parse, parse_releases_json


def test_the_history_matches_the_sandbox_revisions() -> None:
    catalog = {r["revision"]: r for r in load_revisions()}
    newest = max(catalog, key=lambda r: int(r.rsplit("-", 1)[1]))
    events = parse(CHANGELOG.read_text(encoding="utf-8"))
    available = {e.revision for e in events if e.kind == "available"}
    deprecated = {e.revision for e in events if e.kind == "deprecated"}
    # every revision ARM offers was announced, except the newest: `demo --scenario release`
    # holds it back and publishes its note while the demo runs
    assert available == set(catalog) - {newest}
    assert not deprecated & set(catalog)
    latest: dict[str, str] = {}
    for e in events:  # newest release first
        if e.kind == "patched":
            latest.setdefault(e.revision, e.version or "")
    for revision, version in latest.items():
        if revision in catalog:
            assert catalog[revision]["version"] == version, revision


def test_the_history_is_served_as_github_releases() -> None:
    releases = releases_from_changelog(CHANGELOG)
    dates = [r["tag_name"] for r in releases]
    assert dates == sorted(dates, reverse=True) and len(dates) >= 3
    assert all(r["name"] == f"Release {r['tag_name']}" for r in releases)
    assert parse_releases_json(releases) == parse(CHANGELOG.read_text(encoding="utf-8"))


def test_a_changelog_served_as_github_releases_keeps_its_events() -> None:
    md = FIXTURES / "aks/CHANGELOG.md"  # the e2e release tests' history
    assert parse_releases_json(releases_from_changelog(md)) == parse(md.read_text())


@pytest.mark.contract
def test_the_real_changelog_served_as_github_releases_keeps_its_events(shared_data: Path
                                                                       ) -> None:
    md = shared_data / "aks/CHANGELOG-through-2024.md"
    releases = releases_from_changelog(md)
    dated = re.findall(r"^## Release \d{4}-\d{2}-\d{2}", md.read_text(), re.MULTILINE)
    assert len(releases) == len(dated) > 200
    assert parse_releases_json(releases) == parse(md.read_text())
