"""The sandbox's own AKS release history (sandbox/data/CHANGELOG.md, what ``meshops demo``
serves as the GitHub releases feed) agrees with the revisions its ARM emulator offers."""

from __future__ import annotations

from sandbox.app import CHANGELOG, releases_from_changelog
from sandbox.world import load_revisions
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
