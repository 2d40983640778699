"""The release-note parser on every Istio-related line of the project's changelog fixtures and
(a contract test) of the real changelog through 2024, expected events written out by hand; on
wordings written for these tests in the styles of the AKS notes of 2025–2026 (one table per
form: headings, nested lists, pairs, several revisions a sentence, "now supported", future
deprecations, estimated months, lines that must give no event); the safety net's
``mentioned`` events and the watcher's quiet notice of them."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshops.cli import main
from tests.conftest import FIXTURES
from workers.watcher import Watcher
from workflows.releases import (
    KINDS,
    MENTIONED,
    ReleaseEvent,
    find_date,
    find_when,
    parse,
    parse_releases_json,
    release_heading,
    sections,
)

P, D, A, N, M = "patched", "deprecated", "available", "announced", MENTIONED

#: tests/fixtures/aks/CHANGELOG.md, written in the style of the AKS changelog
OURS = [
    ("2025-12-08", D, "asm-1-24", None),  # "will no longer be supported after …"
    # 2025-12-08: "for example, asm-1-24 can upgrade directly to asm-1-26": no event
    ("2025-12-08", P, "asm-1-25", "1.25.5"),  # two revisions, "and revision …"
    ("2025-12-08", P, "asm-1-26", "1.26.4"),
    ("2025-10-27", A, "asm-1-26", None),
    # 2025-10-27: Envoy's own 1.34.4 is not an add-on patch: no event
    ("2025-10-27", P, "asm-1-24", "1.24.6"),  # "… respectively"
    ("2025-10-27", P, "asm-1-25", "1.25.4"),
    ("2025-09-14", D, "asm-1-23", None),  # "`asm-1-23` is now unsupported"
    ("2025-09-14", P, "asm-1-24", "1.24.5-hotfix.20250902"),  # "bumped to include", no asm-
    ("2025-09-14", P, "asm-1-25", "1.25.3-hotfix.20250902"),
    ("2025-07-20", A, "asm-1-25", None),
    ("2025-07-20", D, "asm-1-22", None),  # same bullet, next sentence
    ("2025-07-20", P, "asm-1-23", "1.23.6"),  # "patched to versions [1.23.6](…) and …"
    ("2025-07-20", P, "asm-1-24", "1.24.4"),
    # 2025-05-11: the Open Service Mesh add-on's v1.2.11: no event
    ("2025-05-11", P, "asm-1-22", "1.22.8"),  # three revisions in one sentence
    ("2025-05-11", P, "asm-1-23", "1.23.5"),  # written v.1.23.5
    ("2025-05-11", P, "asm-1-24", "1.24.3"),
    ("2025-03-02", A, "asm-1-24", None),  # "default revision … updated to 1.23": no event
    ("2025-03-02", P, "asm-1-23", "1.23.4"),  # "from v1.23.3 to v1.23.4": only the target
    ("2025-01-19", D, "asm-1-21", None),  # "is no longer supported"
]

#: ../shared/data/aks/CHANGELOG-through-2024.md, the real one
EXPECTED = [
    # 2024-10-25, line 24: "for example, asm-1-21 can upgrade directly to asm-1-23": no event
    ("2024-10-06", P, "asm-1-23", "1.23.1"),  # `asm-1-23` to patch [`v1.23.1`](…)
    ("2024-10-06", D, "asm-1-20", None),  # `asm-1-20` is now unsupported
    ("2024-08-27", P, "asm-1-20", "1.20.8"),  # three revisions in one sentence
    ("2024-08-27", P, "asm-1-21", "1.21.5"),
    ("2024-08-27", P, "asm-1-22", "1.22.3"),
    ("2024-08-05", P, "asm-1-21", "1.21.4"),
    ("2024-08-05", P, "asm-1-22", "1.22.2"),
    ("2024-07-16", P, "asm-1-21", "1.21.3-hotfix.20240626"),  # "bumped to include", no asm-
    ("2024-07-16", P, "asm-1-22", "1.22.1-hotfix.20240626"),
    ("2024-06-27", P, "asm-1-19", "1.19.10-hotfix.20240528"),
    ("2024-06-27", P, "asm-1-20", "1.20.7"),
    ("2024-06-27", P, "asm-1-21", "1.21.3"),
    ("2024-06-09", D, "asm-1-19", None),  # "is no longer supported"
    ("2024-05-13", P, "asm-1-19", "1.19.10"),
    ("2024-05-13", P, "asm-1-20", "1.20.6"),  # written v.1.20.6
    ("2024-05-13", P, "asm-1-21", "1.21.2"),
    ("2024-04-28", P, "asm-1-19", "1.19.9"),  # "patched to versions [1.19.9](…), …"
    ("2024-04-28", P, "asm-1-20", "1.20.5"),
    ("2024-04-28", P, "asm-1-21", "1.21.1"),
    ("2024-04-11", A, "asm-1-21", None),
    ("2024-02-26", A, "asm-1-20", None),
    ("2024-02-26", D, "asm-1-18", None),  # same bullet, next sentence
    ("2024-02-07", P, "asm-1-18", "1.18.7-hotfix.20240210"),  # "… respectively"
    ("2024-02-07", P, "asm-1-19", "1.19.7"),
    ("2024-01-23", A, "asm-1-19", None),  # "Istio revision 1.19 is now available"
    ("2024-01-23", D, "asm-1-17", None),  # "Istio 1.17 version is no longer supported"
    # 2023-08-06, line 1245: Envoy's own 1.26.4 is not an add-on patch: no event
    ("2023-07-30", P, "asm-1-17", "1.17.5"),
    ("2023-05-07", P, "asm-1-17", "1.17.2"),  # "from v1.17.1 to v1.17.2": only the target
]


def events(md: str) -> list[tuple[str, str, str, str | None]]:
    return [(e.release, e.kind, e.revision, e.version) for e in parse(md) if e.kind in KINDS]


def mentioned(md: str) -> list[tuple[str, str, str]]:
    return [(e.release, e.revision, (e.line or "")[-55:]) for e in parse(md) if e.kind == M]


def test_the_changelog() -> None:
    md = (FIXTURES / "aks/CHANGELOG.md").read_text()
    assert events(md) == OURS
    # the example gives no event: the safety net quotes its line, once per revision
    assert mentioned(md) == [
        ("2025-12-08", rev, "for example, asm-1-24 can upgrade directly to asm-1-26.")
        for rev in ("asm-1-24", "asm-1-26")]


@pytest.mark.contract
def test_the_real_changelog(shared_data: Path) -> None:
    md = (shared_data / "aks/CHANGELOG-through-2024.md").read_text()
    assert events(md) == EXPECTED
    assert mentioned(md) == [
        ("2024-10-25", rev, "for example, asm-1-21 can upgrade directly to asm-1-23.")
        for rev in ("asm-1-21", "asm-1-23")]


@pytest.mark.contract
def test_the_cli_on_the_real_changelog(shared_data: Path) -> None:
    path = shared_data / "aks/CHANGELOG-through-2024.md"
    out = CliRunner().invoke(main, ["releases", "parse", str(path)])
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [(e["release"], e["kind"], e["revision"], e["version"]) for e in lines] == EXPECTED
    # the safety net's events only when asked for
    out = CliRunner().invoke(main, ["releases", "parse", "--mentions", str(path)])
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [e["kind"] for e in lines].count(M) == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("Istio-based service mesh add-on revisions asm-1-24 and asm-1-25 are now available.",
     [(A, "asm-1-24", None), (A, "asm-1-25", None)]),
    ("Azure Service Mesh revision `asm-1-25` is now supported.", [(A, "asm-1-25", None)]),
    ("AKS now supports Istio add-on revision asm-1-26.", [(A, "asm-1-26", None)]),
    ("Istio add-on revision asm-1-26 is now generally available.", [(A, "asm-1-26", None)]),
    ("Istio add-on revision asm-1-22 will no longer be supported after March 31, 2025.",
     [(D, "asm-1-22", None)]),
    ("Istio revisions asm-1-21 and asm-1-22 are deprecated.",
     [(D, "asm-1-21", None), (D, "asm-1-22", None)]),
    ("Istio add-on revision asm-1-23 has been retired.", [(D, "asm-1-23", None)]),
    ("Istio revision asm-1-27 will be available in the coming weeks.",
     [(N, "asm-1-27", None)]),
    ("Upcoming: Istio add-on revision asm-1-28 (planned for next month).",
     [(N, "asm-1-28", None)]),
    ("Istio add-on revisions asm-1-25 and asm-1-26 have been updated to patch versions "
     "1.25.3 and 1.26.1 respectively.", [(P, "asm-1-25", "1.25.3"), (P, "asm-1-26", "1.26.1")]),
    ("Istio add-on revision asm-1-27 is patched to 1.27.9-6.", [(P, "asm-1-27", "1.27.9-6")]),
    ("Istio-based service mesh add-on revision asm-1-24 has been upgraded to patch "
     "[`v1.24.3`](https://istio.io/latest/news/releases/1.24.x/announcing-1.24.3/).",
     [(P, "asm-1-24", "1.24.3")]),
    ("Istio asm-1-25 is now available and asm-1-22 is no longer supported.",
     [(A, "asm-1-25", None), (D, "asm-1-22", None)]),
    ("Open Service Mesh add-on has been updated to v1.2.9 and is now available.", []),
    ("Istio revision asm-2-1 is now available.", []),  # not an add-on revision name
    ("AKS version 1.32 is now available; Istio users should check compatibility.", []),
])
def test_wordings_to_come(text: str, expected: list[tuple[str, str, str | None]]) -> None:
    md = f"## Release 2025-06-01\n\n### Release Notes\n\n* Features:\n  * {text}\n"
    assert [(k, r, v) for _, k, r, v in events(md)] == expected


def test_continuation_lines_and_headings() -> None:
    md = ("# Azure Kubernetes Service Changelog\n\n## Release 2025-02-03\n\n"
          "* Istio-based service mesh add-on revision asm-1-23 has been upgraded\n"
          "  to patch v1.23.5.\n\n## Release 2025-01-14\n\n### Announcements\n\n"
          "* Istio add-on revision asm-1-21 is no longer supported.\n")
    assert events(md) == [("2025-02-03", P, "asm-1-23", "1.23.5"),
                          ("2025-01-14", D, "asm-1-21", None)]


def test_a_release_without_a_date_is_skipped_not_misattributed() -> None:
    md = ("## Release 2025-03-01\n* Istio add-on revision asm-1-24 is no longer supported.\n"
          "## Release (hotfix)\n* Istio add-on revision asm-1-25 is no longer supported.\n")
    assert events(md) == [("2025-03-01", D, "asm-1-24", None)]


def test_github_releases_json_and_cli(tmp_path: Path) -> None:
    releases = [
        {"tag_name": "2025-03-02", "name": "Release 2025-03-02",
         "body": "* Istio add-on revision asm-1-25 is now available."},
        {"tag_name": "nightly", "name": "no date here", "body": "* asm-1-26 is now available."},
    ]
    assert parse_releases_json(releases) == [ReleaseEvent("2025-03-02", A, "asm-1-25")]
    path = tmp_path / "releases.json"
    path.write_text(json.dumps(releases))
    out = CliRunner().invoke(main, ["releases", "parse", str(path)])
    assert out.exit_code == 0
    assert [json.loads(line) for line in out.output.splitlines()] == [
        {"release": "2025-03-02", "kind": "available", "revision": "asm-1-25", "version": None}]
    path.write_text("[not json")
    bad = CliRunner().invoke(main, ["releases", "parse", str(path)])
    assert bad.exit_code == 2 and "not a GitHub releases document" in bad.output


# ------------------------------------------------------------------ the notes of 2025–2026

def full(md: str) -> list[tuple[str, str, str, str | None, str | None, bool]]:
    """(release, kind, revision, version or line, expected, ahead) of every event."""
    return [(e.release, e.kind, e.revision, e.line if e.kind == M else e.version, e.expected,
             e.ahead) for e in parse(md)]


def one(text: str, release: str = "2025-08-29") -> list[tuple[str, str, str | None, bool]]:
    """(kind, revision, version or expected, ahead) of a bullet under "* Features:"."""
    md = f"## Release {release}\n\n### Release notes\n\n* Features:\n  * {text}\n"
    return [(e.kind, e.revision, e.version or e.expected, e.ahead) for e in parse(md)
            if e.kind in KINDS]


#: tests/fixtures/releases/CHANGELOG-styles.md: headings, nested lists, links, a table,
#: estimated months and future deprecations, as the notes of 2025–2026 write them
STYLES = [
    # "## Release Notes - 2026-08-14 (v20260814)", a blockquote, "####" subsections
    ("2026-08-14", D, "asm-1-28", None, "2026-10-31", True),  # "will no longer be supported
    ("2026-08-14", N, "asm-1-32", None, "2026-10", False),  # after" / "(estimated … early
    # October)"; its nested lines name asm-1-32 again: covered by the parent, no mention
    ("2026-08-14", A, "asm-1-31", None, None, False),  # "is now generally available"
    ("2026-08-14", P, "asm-1-29", "1.29.7-3", None, False),  # "revisions have been refreshed:"
    ("2026-08-14", P, "asm-1-30", "1.30.4-1", None, False),  # nested "`asm-1-30` to
    ("2026-08-14", P, "asm-1-31", "1.31.1", None, False),  # [`v1.30.4-1`](…)"
    *[("2026-08-14", M, f"asm-1-{n}", "Istio-based service mesh add-on revisions asm-1-29, "
       "asm-1-30 and asm-1-31 carry the fixes of an Istio security bulletin. Restart your "
       "workloads to pick up the new istio-proxy.", None, False) for n in (29, 30, 31)],
    # "# Release Notes 2026-06-02" after a "===" line
    ("2026-06-02", D, "asm-1-27", None, None, False),  # "**asm-1-27** … has been deprecated;
    ("2026-06-02", A, "asm-1-30", None, None, False),  # revision **asm-1-30** is now supported"
    ("2026-06-02", P, "asm-1-28", "1.28.11", None, False),  # "Istio add-on patch versions:"
    ("2026-06-02", P, "asm-1-29", "1.29.6", None, False),  # "asm-1-29 (1.29.6)"
    ("2026-06-02", P, "asm-1-30", "1.30.3", None, False),  # "asm-1-30 → [v1.30.3](…)"
    # "## AKS Release 2026.03.22", "-" bullets
    ("2026-03-22", P, "asm-1-27", "1.27.10-1", None, False),  # "`asm-1-27` to `1.27.10-1`, …
    ("2026-03-22", P, "asm-1-28", "1.28.9", None, False),
    ("2026-03-22", A, "asm-1-29", None, None, False),  # "… is now available, and
    ("2026-03-22", D, "asm-1-26", None, None, False),  # `asm-1-26` is deprecated"
    ("2026-03-22", M, "asm-1-29", "For meshes on the Istio add-on, native sidecar injection is "
     "turned on by default when upgrading to asm-1-29.", None, False),
    # a bare "Release Feb 9, 2026" line; Envoy's own 1.36.2: no event
    ("2026-02-09", P, "asm-1-26", "1.26.9", None, False),  # "… [v1.26.9](…) and
    ("2026-02-09", P, "asm-1-27", "1.27.6", None, False),  # [v1.27.6](…) respectively"
    ("2025-11-23", N, "asm-1-28", None, "2025-12", False),  # "expected to be released in …"
    ("2025-11-23", M, "asm-1-26", "Istio-based service mesh add-on revision asm-1-28 is "
     "expected to be released in December 2025. Clusters on asm-1-26 should plan a canary "
     "upgrade.", None, False),
    ("2025-11-23", D, "asm-1-25", None, "2026-01", True),  # "scheduled for deprecation in …"
    ("2025-11-23", A, "asm-1-27", None, None, False),  # "native sidecars … starting asm-1-27"
    ("2025-11-23", M, "asm-1-26", "Istio-based service mesh add-on is now compatible with AKS "
     "LTS versions for revisions asm-1-26+.", None, False),  # compatibility: not an event
    ("2025-11-23", P, "asm-1-26", "1.26.6", None, False),  # no revision named: by the minor
    ("2025-09-07", D, "asm-1-24", None, None, False),  # "has been retired"
    ("2025-09-07", N, "asm-1-27", None, None, False),  # "Coming soon: … asm-1-27."
    ("2025-09-07", P, "asm-1-25", "1.25.6", None, False),  # a table: "| `asm-1-25` |
    ("2025-09-07", P, "asm-1-26", "1.26.5", None, False),  # [1.25.6](…) |"
    ("2025-07-14", A, "asm-1-26", None, None, False),  # "revision [asm-1-26](…) is now …"
    ("2025-07-14", P, "asm-1-25", "1.25.4", None, False),  # "patch releases `1.25.4` and
    ("2025-07-14", P, "asm-1-24", "1.24.7", None, False),  # `1.24.7` for revisions …"
]


def test_the_changelog_in_the_styles_of_2025_2026() -> None:
    assert full((FIXTURES / "releases/CHANGELOG-styles.md").read_text()) == STYLES


def test_github_releases_in_the_styles_of_2025_2026() -> None:
    data = json.loads((FIXTURES / "releases/github-releases-styles.json").read_text())
    got = parse_releases_json(data)
    assert [(e.release, e.kind, e.revision, e.version, e.expected, e.ahead) for e in got] == [
        # "AKS Release 2026-01-12" / "v20260112", its body under "## Release Notes 2026-01-12"
        ("2026-01-12", D, "asm-1-25", None, None, False),
        ("2026-01-12", A, "asm-1-28", None, None, False),
        ("2026-01-12", P, "asm-1-26", "1.26.8", None, False),
        ("2026-01-12", P, "asm-1-27", "1.27.5", None, False),
        ("2026-01-12", M, "asm-1-28", None, None, False),
        # "Release 2025.10.05", its body under "# Release 2025-10-05"
        ("2025-10-05", D, "asm-1-24", None, "2025-10-31", True),
        ("2025-10-05", A, "asm-1-27", None, None, False),
        ("2025-10-05", D, "asm-1-23", None, None, False),
        # "Release Aug 29, 2025"
        ("2025-08-29", N, "asm-1-27", None, "2025-09", False),
        ("2025-08-29", P, "asm-1-24", "1.24.6", None, False),
        ("2025-08-29", P, "asm-1-25", "1.25.3", None, False),
        # no date in name or tag: published_at; "asm-1-26 (v1.26.2) is now available": no patch
        ("2025-08-10", A, "asm-1-26", None, None, False),
        # no date at all: skipped
    ]
    mention = got[4]
    assert mention.line == ("Istio add-on revision asm-1-28 now ships the ambient-ready CNI "
                            "node agent.")
    assert mention.link == "https://github.com/Azure/AKS/releases/tag/v20260112"


@pytest.mark.parametrize(("line", "expected"), [
    ("## Release 2024-10-25", (2, "2024-10-25", True)),
    ("## Release Notes 2025-10-12", (2, "2025-10-12", True)),
    ("## Release Notes - 2026-07-17", (2, "2026-07-17", True)),
    ("## Release Notes - 2026-07-17 (v20260717)", (2, "2026-07-17", True)),
    ("# Release Notes 2026-02-08", (1, "2026-02-08", True)),
    ("# Release 2025-10-05", (1, "2025-10-05", True)),
    ("### AKS Release 2025-07-20", (3, "2025-07-20", True)),
    ("## Release 2025.08.29", (2, "2025-08-29", True)),
    ("## Release 2025/8/29", (2, "2025-08-29", True)),
    ("## Release Aug 29, 2025", (2, "2025-08-29", True)),
    ("## Release notes — 29 August 2025", (2, "2025-08-29", True)),
    ("## Release v20250829", (2, "2025-08-29", True)),
    ("## **Release 2025-08-29**", (2, "2025-08-29", True)),
    ("## 2025-08-29", (2, "2025-08-29", True)),
    ("Release 2026-01-12", (0, "2026-01-12", True)),  # a bare title line
    ("**AKS Release 2026-01-12**", (0, "2026-01-12", True)),
    ("AKS Release Notes: Jan 12, 2026", (0, "2026-01-12", True)),
    ("## Release (hotfix)", (2, None, False)),  # a release that cannot be placed
    ("### Release notes", None),  # a part of a release
    ("### Release Notes", None),
    ("## Release Notes", None),
    ("### Announcements", None),
    ("#### Kubernetes versions", None),
    ("* Release 2025-09-01 of the node image is rolling out.", None),  # a bullet
    ("This release is titled `v20250519`.", None),
    ("Release notes are published weekly.", None),
])
def test_release_headings(line: str, expected: tuple[int, str | None, bool] | None) -> None:
    assert release_heading(line) == expected


def test_a_deeper_dateless_release_heading_does_not_end_a_release() -> None:
    md = ("## Release 2026-01-12\n#### Release tracker\n* Istio revision asm-1-28 is now "
          "supported.\n")
    assert [d for d, _ in sections(md)] == ["2026-01-12"]
    assert events(md) == [("2026-01-12", A, "asm-1-28", None)]


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-08-29", "2025-08-29"), ("2025.08.29", "2025-08-29"), ("2025/08/29", "2025-08-29"),
    ("v20250829", "2025-08-29"), ("Aug 29, 2025", "2025-08-29"),
    ("August 29th 2025", "2025-08-29"), ("29 Aug 2025", "2025-08-29"),
    ("Sept. 3, 2025", "2025-09-03"), ("08/29/2025", "2025-08-29"), ("29/08/2025", "2025-08-29"),
    ("2025-02-30", None), ("1.25.3-hotfix.20250902", None), ("September 2025", None),
])
def test_dates(text: str, expected: str | None) -> None:
    assert find_date(text) == expected


@pytest.mark.parametrize(("text", "release", "expected"), [
    ("in September 2025", "2025-08-29", ("2025-09", True)),
    ("in early July", "2025-12-01", ("2026-07", False)),  # the next July
    ("in early July", "2026-06-19", ("2026-07", False)),
    ("by the end of Sept.", "2025-08-29", ("2025-09", False)),
    ("after October 15, 2025", "2025-08-29", ("2025-10-15", True)),
    ("around 2025-11", "2025-08-29", ("2025-11", True)),
    ("it may ship soon", "2025-08-29", None),  # "may" is a verb
])
def test_months_take_their_year_from_the_release(text: str, release: str,
                                                 expected: tuple[str, bool] | None) -> None:
    assert find_when(text, release) == expected


#: wordings written for these tests, by form; (kind, revision, version or expected, ahead)
FORMS: dict[str, list[tuple[str, list[tuple[str, str, str | None, bool]]]]] = {
    "available: now available / now supported / GA": [
        ("Istio revision asm-1-27 is now available for the Istio-based service mesh add-on.",
         [(A, "asm-1-27", None, False)]),
        ("Istio revision `asm-1-30` is now available with the Istio-based service mesh add-on. "
         "See the supported revisions for details.", [(A, "asm-1-30", None, False)]),
        ("Revision `asm-1-28` is now supported.", [(A, "asm-1-28", None, False)]),
        ("**asm-1-28** is now supported.", [(A, "asm-1-28", None, False)]),
        ("The Istio add-on now supports revision asm-1-29.", [(A, "asm-1-29", None, False)]),
        ("Istio revision [asm-1-26](https://istio.io/latest/news/releases/1.26.x/) is now "
         "available. Other updates:", [(A, "asm-1-26", None, False)]),
        ("Istio add-on revision asm-1-26 (1.26.1) is now available.",
         [(A, "asm-1-26", None, False)]),  # a version in brackets: not a patch
        ("Istio add-on revision asm-1-27 has started rolling out to all regions.",
         [(A, "asm-1-27", None, False)]),
        ("Istio revision asm-1-27 is now available. Native sidecar mode is on by default "
         "starting asm-1-27.", [(A, "asm-1-27", None, False)]),
        ("Istio revision asm-1-27, which turns native sidecars on by default, is now "
         "available.", [(A, "asm-1-27", None, False)]),
        ("Istio revision asm-1-27 with native sidecars is now available.",
         [(A, "asm-1-27", None, False)]),
        ("Istio add-on revision asm-1-26 is generally available in all regions.",
         [(A, "asm-1-26", None, False)]),
        ("Istio add-on revision asm-1-27 was released to all regions.",
         [(A, "asm-1-27", None, False)]),
    ],
    "available and deprecated in one sentence": [
        ("Istio revision asm-1-26 is now available and asm-1-23 is deprecated.",
         [(A, "asm-1-26", None, False), (D, "asm-1-23", None, False)]),
        ("Revision `asm-1-29` is now available, and `asm-1-26` is deprecated.",
         [(A, "asm-1-29", None, False), (D, "asm-1-26", None, False)]),
        ("Revision `asm-1-28` is now supported, and `asm-1-25` has been deprecated.",
         [(A, "asm-1-28", None, False), (D, "asm-1-25", None, False)]),
        ("Istio add-on revision asm-1-25 has been deprecated. Revision asm-1-28 is now "
         "supported.", [(D, "asm-1-25", None, False), (A, "asm-1-28", None, False)]),
        ("asm-1-29 is now available, while asm-1-25 and asm-1-26 are no longer supported.",
         [(A, "asm-1-29", None, False), (D, "asm-1-25", None, False),
          (D, "asm-1-26", None, False)]),
        ("Istio revision asm-1-28 is now supported, asm-1-25 is deprecated and asm-1-26 has "
         "been patched to 1.26.7.", [(P, "asm-1-26", "1.26.7", False),
                                     (A, "asm-1-28", None, False),
                                     (D, "asm-1-25", None, False)]),
    ],
    "deprecated": [
        ("Revision asm-1-24 of the Istio add-on has been deprecated. Please migrate to a "
         "supported revision.", [(D, "asm-1-24", None, False)]),
        ("The asm-1-23 revision for the Istio add-on has been deprecated. Kindly upgrade your "
         "mesh to a supported version.", [(D, "asm-1-23", None, False)]),
        ("Revision `asm-1-27` of the Istio-based service mesh add-on has been deprecated. "
         "Please upgrade to revision 1.28 or later.", [(D, "asm-1-27", None, False)]),
        ("Istio add-on revision asm-1-22 is no longer supported.",
         [(D, "asm-1-22", None, False)]),
        ("Istio add-on revisions **asm-1-23** and **asm-1-24** are now out of support.",
         [(D, "asm-1-23", None, False), (D, "asm-1-24", None, False)]),
        ("Istio add-on revision asm-1-21 has reached end of life.",
         [(D, "asm-1-21", None, False)]),
        ("Istio add-on revision asm-1-25 has been deprecated and will be removed from new "
         "installations in March 2026.", [(D, "asm-1-25", None, False)]),
    ],
    "deprecated, ahead": [
        ("Istio add-on revision asm-1-24 will be deprecated on September 30, 2025.",
         [(D, "asm-1-24", "2025-09-30", True)]),
        ("Istio add-on revision asm-1-24 will no longer be supported after October 15, 2025. "
         "Please upgrade.", [(D, "asm-1-24", "2025-10-15", True)]),
        ("Istio add-on revision `asm-1-25` will no longer be supported after **January 31, "
         "2026**.", [(D, "asm-1-25", "2026-01-31", True)]),
        ("Istio add-on revision asm-1-25 will be supported until January 2026.",
         [(D, "asm-1-25", "2026-01", True)]),
        ("Istio add-on revision asm-1-24 is scheduled for deprecation in October 2025.",
         [(D, "asm-1-24", "2025-10", True)]),
        ("Revision asm-1-26 of the Istio add-on is expected to be deprecated in February.",
         [(D, "asm-1-26", "2026-02", True)]),
        ("Istio add-on revision asm-1-25 will reach end of life soon.",
         [(D, "asm-1-25", None, True)]),
        ("Support for Istio add-on revision asm-1-25 ends on September 30, 2025.",
         [(D, "asm-1-25", "2025-09-30", True)]),
        ("Support for Istio add-on revision asm-1-23 ended on May 30, 2025.",
         [(D, "asm-1-23", None, False)]),  # a date in the past: not ahead
    ],
    "announced, with an estimated month": [
        ("Istio add-on revision asm-1-27 will be released in September 2025.",
         [(N, "asm-1-27", "2025-09", False)]),
        ("The Istio-based service mesh add-on revision asm-1-27 is estimated for release in "
         "September 2025.", [(N, "asm-1-27", "2025-09", False)]),
        ("Azure Service Mesh add-on revision `asm-1-30` (estimated to release in early July) "
         "changes these defaults:", [(N, "asm-1-30", "2026-07", False)]),
        ("Istio revision asm-1-27 (estimated release: mid-September) turns native sidecars "
         "on by default.", [(N, "asm-1-27", "2025-09", False)]),
        ("asm-1-28 is expected to roll out by the end of October.",
         [(N, "asm-1-28", "2025-10", False)]),
        ("Revision asm-1-27 of the Istio add-on is targeted for October 2025.",
         [(N, "asm-1-27", "2025-10", False)]),
        ("Coming in October: Istio add-on revision asm-1-28.",
         [(N, "asm-1-28", "2025-10", False)]),
        ("Istio add-on asm-1-27 is available in preview starting September 2025.",
         [(N, "asm-1-27", "2025-09", False)]),
        ("Istio add-on revision asm-1-28 is coming soon.", [(N, "asm-1-28", None, False)]),
        ("Istio revision asm-1-27 — available soon.", [(N, "asm-1-27", None, False)]),
        ("Istio add-on revision asm-1-27 will be released in September 2025, and asm-1-24 "
         "will be deprecated in October 2025.", [(N, "asm-1-27", "2025-09", False),
                                                 (D, "asm-1-24", "2025-10", True)]),
    ],
    "patched: several revisions in one sentence": [
        ("Istio add-on revisions asm-1-24 and asm-1-25 were patched to 1.24.6 and 1.25.3 "
         "respectively.", [(P, "asm-1-24", "1.24.6", False), (P, "asm-1-25", "1.25.3", False)]),
        ("Istio add-on: asm-1-24 and asm-1-25 to 1.24.6 and 1.25.3 respectively.",
         [(P, "asm-1-24", "1.24.6", False), (P, "asm-1-25", "1.25.3", False)]),
        ("Istio-based service mesh add-on revisions asm-1-25, asm-1-26, and asm-1-27 have been "
         "upgraded to [v1.25.5](https://istio.io/x), [v1.26.4](https://istio.io/y), and "
         "[v1.27.1](https://istio.io/z).", [(P, "asm-1-25", "1.25.5", False),
                                            (P, "asm-1-26", "1.26.4", False),
                                            (P, "asm-1-27", "1.27.1", False)]),
        ("The Istio-based service mesh add-on revisions `asm-1-29` and `asm-1-28` have been "
         "upgraded to patches `1.29.4` and `1.28.8`.",
         [(P, "asm-1-29", "1.29.4", False), (P, "asm-1-28", "1.28.8", False)]),
        ("Istio-based service mesh add-on revisions have been updated: `asm-1-27` to "
         "`1.27.9-2`, `asm-1-28` to `1.28.6-1`, and `asm-1-29` to `1.29.2-1`.",
         [(P, "asm-1-27", "1.27.9-2", False), (P, "asm-1-28", "1.28.6-1", False),
          (P, "asm-1-29", "1.29.2-1", False)]),
        ("Updated the Istio add-on revision asm-1-23 to patch [v1.23.5](https://x) and "
         "[v1.24.3](https://y).", [(P, "asm-1-23", "1.23.5", False),
                                  (P, "asm-1-24", "1.24.3", False)]),
        ("Istio has been patched to 1.23.5 and 1.24.3.",
         [(P, "asm-1-23", "1.23.5", False), (P, "asm-1-24", "1.24.3", False)]),
        ("Istio-based service mesh add-on has been upgraded to [v1.27.4](https://istio.io/x) "
         "to address CVEs: [CVE-2025-66220](https://nvd), [CVE-2025-64527](https://nvd).",
         [(P, "asm-1-27", "1.27.4", False)]),
        ("Istio add-on revision asm-1-22 was patched to v1.22.7, revision asm-1-22 to v1.22.3.",
         [(P, "asm-1-22", "1.22.7", False)]),  # one revision, two versions: the higher
        ("Istio add-on revision asm-1-26 is now available with patch 1.26.2.",
         [(P, "asm-1-26", "1.26.2", False), (A, "asm-1-26", None, False)]),
        ("Istio add-on revisions asm-1-25 and asm-1-26 have been patched to 1.25.5 and 1.26.4 "
         "and are now available in all regions.",
         [(P, "asm-1-25", "1.25.5", False), (P, "asm-1-26", "1.26.4", False)]),
    ],
    "not events": [
        ("Istio-based service mesh add-on is now compatible with AKS Long Term Support for "
         "revisions asm-1-25+ and AKS versions 1.28+.", []),
        ("Istio add-on asm-1-25 is now supported on AKS 1.33.", []),
        ("Istio revision asm-1-24 support has now been extended to include AKS 1.33.", []),
        ("For meshes on the Istio add-on, native sidecar injection is now on by default when "
         "upgrading to asm-1-29.", []),
        ("Istio add-on release notes for asm-1-26 are available here.", []),
        ("Support for Gateway API is now available in asm-1-27.", []),
        ("You can now upgrade from asm-1-24 to asm-1-26 directly.", []),
        ("You can now skip a revision while upgrading, for example from asm-1-24 straight "
         "to asm-1-26.", []),
        ("Istio add-on asm-1-25 upgrades now respect planned maintenance windows.", []),
        ("Envoy filters of all types are now allowed in the Istio add-on.", []),
        ("Envoy Proxy (part of Istio) has been updated to 1.36.2 to fix a CVE.", []),
        ("Fixed AKS support for Istio 1.30 mutating webhook configuration updates.", []),
        ("Kubernetes patch versions 1.36.2, 1.35.6 and 1.34.9 are now available.", []),
        ("Open Service Mesh add-on has been updated to v1.2.11.", []),
        ("Istio-based service mesh add-on revisions `asm-1-28`, `asm-1-29`, and `asm-1-30` "
         "include security fixes. Action required: restart your Istio workload pods to get the "
         "newer istio-proxy patch version.", []),
        ("Fixes an issue in the Istio add-on that prevented TLS origination. Addresses a CVE "
         "in `1.25.3`.", []),
        ("asm-1-25 release notes are available here.", []),
        ("AKS now supports annotations for Istio add-on revision asm-1-26.", []),
        ("Istio add-on revision asm-1-24 removes the deprecated gateway-name label.", []),
        ("Istio 1.27 was released upstream in August.", []),
        ("Istio revisions asm-1-24 and asm-1-25 remain supported.", []),
        ("Istio add-on revision asm-1-26 is now the default revision for new clusters.", []),
        ("Istio add-on revision asm-1-27 is in preview.", []),
    ],
}


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(text, expected, id=f"{form}: {text[:50]}")
    for form, cases in FORMS.items() for text, expected in cases])
def test_the_forms_of_2025_2026(text: str, expected: list[tuple[str, str, str | None, bool]]
                                ) -> None:
    assert one(text, "2026-06-19" if "early July" in text else "2025-08-29") == expected


#: nested lists: the revision context of a parent bullet applies to its children
NESTED = [
    ("* Istio add-on patch versions:\n"
     "    * asm-1-25: [1.25.3](https://istio.io/latest/news/releases/1.25.x/announcing-1.25.3/)\n"
     "    * asm-1-24 to 1.24.6\n"
     "    * asm-1-23 (1.23.6)\n"
     "    * `asm-1-26` → [`v1.26.2`](https://github.com/istio/istio/releases/tag/1.26.2)\n"
     "    * asm-1-27 [1.27.1]\n",
     [(P, "asm-1-25", "1.25.3"), (P, "asm-1-24", "1.24.6"), (P, "asm-1-23", "1.23.6"),
      (P, "asm-1-26", "1.26.2"), (P, "asm-1-27", "1.27.1")]),
    ("* Istio-based service mesh add-on revisions have been updated:\n"
     "  * `asm-1-27` to [`v1.27.9-6`](https://github.com/istio/istio/releases/tag/1.27.9)\n"
     "  * `asm-1-28` to [`v1.28.9-2`](https://github.com/istio/istio/releases/tag/1.28.9)\n",
     [(P, "asm-1-27", "1.27.9-6"), (P, "asm-1-28", "1.28.9-2")]),
    ("Istio add-on patch versions:\n\n- asm-1-25: 1.25.3\n- asm-1-26: 1.26.2\n",
     [(P, "asm-1-25", "1.25.3"), (P, "asm-1-26", "1.26.2")]),  # a list under a paragraph
    ("* Istio add-on revision asm-1-25 has been patched to:\n  * [v1.25.4](https://x)\n",
     [(P, "asm-1-25", "1.25.4")]),  # the revision in the parent, the version in the child
    ("### Deprecations\n\n* asm-1-25\n* asm-1-26 (end of life)\n",
     [(D, "asm-1-25", None), (D, "asm-1-26", None)]),  # a heading's predicate, short lines
    ("* Istio add-on revisions now available:\n  * asm-1-27\n  * asm-1-28\n",
     [(A, "asm-1-27", None), (A, "asm-1-28", None)]),
    ("* Azure Service Mesh add-on revision asm-1-29 (estimated to release in late February) "
     "changes:\n    * New meshes on asm-1-29 and later get Istio CNI by default instead of an "
     "init container.\n    * Meshes upgrading to asm-1-29 are not affected.\n",
     [(N, "asm-1-29", None)]),
    ("* Features:\n  * Application routing gateways now log to stdout.\n"
     "* Component updates:\n  * Cilium images updated to v1.17.3.\n  * asm-1-25 to 1.25.9\n",
     [(P, "asm-1-25", "1.25.9")]),  # Cilium 1.17.3 under the same parent: not Istio's
    ("| Istio add-on revision | Patch version |\n|---|---|\n| `asm-1-25` | [1.25.6](https://x) |\n"
     "| asm-1-26 | 1.26.5 |\n", [(P, "asm-1-25", "1.25.6"), (P, "asm-1-26", "1.26.5")]),
    ("| Revision | Upstream release | End of life |\n|---|---|---|\n"
     "| asm-1-27 | Aug 2025 | ~May 2026 (expected) |\n", []),  # a calendar table: no event
]


@pytest.mark.parametrize(("body", "expected"), NESTED)
def test_nested_lists_and_tables(body: str, expected: list[tuple[str, str, str | None]]) -> None:
    got = [(k, r, v) for _, k, r, v in events(f"## Release 2026-01-12\n\n{body}")]
    assert got == expected


@pytest.mark.parametrize(("written", "normalised"), [
    ("1.25.3", "1.25.3"), ("v1.25.3", "1.25.3"), ("v.1.23.5", "1.23.5"),
    ("[`v1.27.9-6`](https://github.com/istio/istio/releases/tag/1.27.9)", "1.27.9-6"),
    ("1.21.3-hotfix.20240626", "1.21.3-hotfix.20240626"), ("**1.28.8**", "1.28.8"),
])
def test_versions_are_normalised(written: str, normalised: str) -> None:
    md = f"## Release 2026-01-12\n* Istio add-on revision asm-1-2{normalised[3]} is patched " \
         f"to {written}.\n"
    assert [e.version for e in parse(md)] == [normalised]


# ------------------------------------------------------------------ the safety net

def test_a_line_naming_a_revision_without_an_event_is_mentioned() -> None:
    md = ("## Release 2026-03-01\n"
          "* Istio add-on revision asm-1-29 now ships the ambient node agent.\n"
          "* Istio add-on revision asm-1-28 is now available. It replaces asm-1-26 in new "
          "clusters.\n"  # asm-1-26: no event in its line
          "* Istio-based service mesh add-on revisions have been updated:\n"
          "  * asm-1-27 to 1.27.8\n"  # children cover their parent and the other way round
          "* Istio revision asm-1-30 (estimated for April) changes a default:\n"
          "  * Meshes upgrading to asm-1-30 keep their settings.\n"
          "* Kubernetes 1.36 is now generally available.\n")  # no revision: nothing
    got = parse(md, link="https://github.com/Azure/AKS/releases/tag/2026-03-01")
    assert [(e.kind, e.revision, e.line) for e in got if e.kind == M] == [
        (M, "asm-1-29", "Istio add-on revision asm-1-29 now ships the ambient node agent."),
        (M, "asm-1-26", "Istio add-on revision asm-1-28 is now available. It replaces asm-1-26 "
                        "in new clusters.")]
    assert {e.link for e in got if e.kind == M} == {
        "https://github.com/Azure/AKS/releases/tag/2026-03-01"}
    assert [(e.kind, e.revision, e.version or e.expected) for e in got if e.kind in KINDS] == [
        (A, "asm-1-28", None), (P, "asm-1-27", "1.27.8"), (N, "asm-1-30", "2026-04")]


def test_the_release_json_keeps_its_events_and_the_changelog_shape_its_mentions() -> None:
    data = json.loads((FIXTURES / "releases/github-releases-styles.json").read_text())
    md = "\n".join(f"## Release {r['tag_name']}\n{r['body']}" for r in data[1:2])
    assert [e for e in parse_releases_json(data[1:2])] == parse(md)  # the link aside
    assert ReleaseEvent("2025-01-01", M, "asm-1-25", line="x", link="a") == ReleaseEvent(
        "2025-01-01", M, "asm-1-25", line="x", link="b")


@dataclass
class _Cluster:
    name: str
    location: str
    channel: str


@dataclass
class _Mesh:
    mode: str
    revisions: list[str]


@dataclass
class _Profile:
    revision: str


class _FakeMesh:
    def __init__(self, meshes: dict[str, _Mesh]) -> None:
        self.meshes = meshes

    def get_mesh(self, name: str) -> _Mesh:
        return self.meshes[name]

    def revision_profiles(self, name: str) -> list[_Profile]:
        return [_Profile(r) for r in ("asm-1-26", "asm-1-27", "asm-1-28")]

    def upgrade_targets(self, name: str) -> list[str]:
        return []


@dataclass
class _FakeSlack:
    posts: list[dict[str, Any]] = field(default_factory=list)

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:  # noqa: N802
        self.posts.append(kwargs)
        return {"ok": True}


class _FakeRedis:
    """The few Redis commands the watcher uses, in memory."""

    def __init__(self) -> None:
        self.sets: dict[str, builtins.set[str]] = {}
        self.values: dict[str, str] = {}
        self.hashes: dict[str, dict[str, str]] = {}

    def exists(self, key: str) -> int:
        return int(key in self.values or key in self.sets)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def incrby(self, key: str, n: int) -> None:
        self.values[key] = str(int(self.values.get(key, "0")) + n)

    def sadd(self, key: str, *members: str) -> None:
        self.sets.setdefault(key, builtins.set()).update(members)

    def sismember(self, key: str, member: str) -> bool:
        return member in self.sets.get(key, ())

    def smembers(self, key: str) -> builtins.set[str]:
        return builtins.set(self.sets.get(key, ()))

    def hset(self, key: str, field: str | None = None, value: str | None = None,
             mapping: dict[str, str] | None = None) -> None:
        fields = dict(mapping or {})
        if field is not None and value is not None:
            fields[field] = value
        self.hashes.setdefault(key, {}).update(fields)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    def hdel(self, key: str, *fields: str) -> None:
        for f in fields:
            self.hashes.get(key, {}).pop(f, None)

    def hsetnx(self, key: str, field: str, value: str) -> int:
        if field in self.hashes.get(key, {}):
            return 0
        self.hashes.setdefault(key, {})[field] = value
        return 1

    def hlen(self, key: str) -> int:
        return len(self.hashes.get(key, {}))

    def delete(self, *keys: str) -> None:
        for k in keys:
            self.hashes.pop(k, None)
            self.sets.pop(k, None)
            self.values.pop(k, None)

    def hkeys(self, key: str) -> list[str]:
        return list(self.hashes.get(key, {}))

    def hget(self, key: str, field: str) -> str | None:
        return self.hashes.get(key, {}).get(field)

    def pipeline(self, transaction: bool = True) -> _FakePipeline:
        return _FakePipeline(self)


class _FakePipeline:
    """Commands queued, run in order by ``execute`` (one client: nothing interleaves)."""

    def __init__(self, r: _FakeRedis) -> None:
        self.r, self.queued = r, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.queued.append((name, args, kwargs))

    def execute(self) -> list[Any]:
        return [getattr(self.r, name)(*args, **kwargs) for name, args, kwargs in self.queued]


def test_the_watcher_posts_a_mention_quietly_once_per_release_and_line() -> None:
    clusters = {"dev": _Cluster("aks-dev", "westeurope", "C0DEV"),
                "prd": _Cluster("aks-prd", "westeurope", "C0PRD"),
                "prd2": _Cluster("aks-prd2", "northeurope", "C0PRD"),  # a shared channel
                "plain": _Cluster("aks-plain", "westeurope", "C0PLAIN")}
    fleet = type("Fleet", (), {"clusters": clusters})()
    mesh = _FakeMesh({"dev": _Mesh("Istio", ["asm-1-26"]), "prd": _Mesh("Istio", ["asm-1-26"]),
                      "prd2": _Mesh("Istio", ["asm-1-27"]),
                      "plain": _Mesh("Disabled", [])})  # no mesh: nothing to tell
    r, slack = _FakeRedis(), _FakeSlack()
    line = ("* Istio-based service mesh add-on revisions asm-1-27 and asm-1-28 include fixes "
            "for an Istio security bulletin.")
    release = {"tag_name": "2026-07-17", "name": "Release 2026-07-17", "body": line,
               "html_url": "https://github.com/Azure/AKS/releases/tag/2026-07-17"}

    def watcher() -> Watcher:
        return Watcher(fleet, r, "t", mesh, slack, feed=None)  # type: ignore[arg-type]

    new, channels = watcher().run_once(pushed=parse_releases_json([release]))
    assert [(e.kind, e.revision) for e in new] == [(M, "asm-1-27"), (M, "asm-1-28")]
    assert channels == {"C0DEV", "C0PRD"}
    assert sorted(p["channel"] for p in slack.posts) == ["C0DEV", "C0PRD"]  # once a channel,
    for post in slack.posts:  # for both revisions of the line
        assert post["blocks"] == [{"type": "section", "text": {
            "type": "plain_text", "text": post["text"], "emoji": False}}]  # no buttons
        assert post["unfurl_links"] is False and post["unfurl_media"] is False
        assert "2026-07-17" in post["text"] and "include fixes for an Istio security " \
            "bulletin" in post["text"]
        assert "https://github.com/Azure/AKS/releases/tag/2026-07-17" in post["text"]
    # the same release again (a restart, a replayed push): nothing more
    assert watcher().run_once(pushed=parse_releases_json([release]))[1] == set()
    # the same line in another release is another notice
    later = {**release, "tag_name": "2026-08-01", "name": "Release 2026-08-01"}
    assert watcher().run_once(pushed=parse_releases_json([later]))[1] == {"C0DEV", "C0PRD"}
    assert len(slack.posts) == 4


def test_a_cluster_arm_cannot_read_now_gets_its_notice_at_the_next_poll() -> None:
    """ARM throttled or away for one cluster: the others' notices go now, the event is kept,
    and the next poll tells that cluster, without telling the others twice."""
    from workflows.errors import TemporaryError

    class Throttled(_FakeMesh):
        def __init__(self, meshes: dict[str, _Mesh]) -> None:
            super().__init__(meshes)
            self.refuse = {"prd"}

        def get_mesh(self, name: str) -> _Mesh:
            if name in self.refuse:
                raise TemporaryError("ARM 429 TooManyRequests", 7)
            return super().get_mesh(name)

    clusters = {"dev": _Cluster("aks-dev", "westeurope", "C0DEV"),
                "prd": _Cluster("aks-prd", "westeurope", "C0PRD")}
    fleet = type("Fleet", (), {"clusters": clusters})()
    mesh = Throttled({"dev": _Mesh("Istio", ["asm-1-26"]), "prd": _Mesh("Istio", ["asm-1-26"])})
    r, slack = _FakeRedis(), _FakeSlack()
    watcher = Watcher(fleet, r, "t", mesh, slack, feed=None)  # type: ignore[arg-type]
    deprecated = ReleaseEvent("2026-11-30", "deprecated", "asm-1-26")
    with pytest.raises(TemporaryError) as raised:
        watcher.run_once(pushed=[deprecated])
    assert raised.value.delay_s == 7  # the next poll no sooner than ARM asked
    assert [p["channel"] for p in slack.posts] == ["C0DEV"]
    mesh.refuse.clear()
    new, channels = watcher.run_once(pushed=[])  # the next poll, nothing new in the feed
    assert new == [deprecated] and channels == {"C0PRD"}
    assert [p["channel"] for p in slack.posts] == ["C0DEV", "C0PRD"]
    assert watcher.run_once(pushed=[]) == ([], set())


def test_an_event_arm_cannot_route_for_a_day_is_given_up() -> None:
    """A cluster left in the fleet file whose ARM never answers must not hold every poll
    (and its ARM reads) forever: after a day its event is done, with a warning."""
    from workflows.errors import TemporaryError

    class Away(_FakeMesh):
        def get_mesh(self, name: str) -> _Mesh:
            if name == "gone":
                raise TemporaryError("ARM: the request timed out")
            return super().get_mesh(name)

    clusters = {"dev": _Cluster("aks-dev", "westeurope", "C0DEV"),
                "gone": _Cluster("aks-gone", "westeurope", "C0GONE")}
    fleet = type("Fleet", (), {"clusters": clusters})()
    r, slack = _FakeRedis(), _FakeSlack()
    watcher = Watcher(fleet, r, "t", Away({"dev": _Mesh("Istio", ["asm-1-26"])}), slack,
                      feed=None)  # type: ignore[arg-type]
    deprecated = ReleaseEvent("2026-11-30", "deprecated", "asm-1-26")
    with pytest.raises(TemporaryError):
        watcher.run_once(pushed=[deprecated])
    with pytest.raises(TemporaryError):
        watcher.run_once(pushed=[])  # still kept, tried again
    r.hashes["t:releases:unposted_since"] = {
        k: str(float(v) - 86401) for k, v in r.hashes["t:releases:unposted_since"].items()}
    new, _ = watcher.run_once(pushed=[])  # a day later: given up
    assert new == [deprecated]
    assert watcher.run_once(pushed=[]) == ([], set())
    assert [p["channel"] for p in slack.posts] == ["C0DEV"]
    assert not r.hashes.get("t:releases:unposted")


def test_a_watcher_that_lost_its_lock_posts_nothing_and_keeps_the_event() -> None:
    """Its renewals failed past the TTL: another worker may be posting the same notices."""
    from workflows.errors import TemporaryError

    clusters = {"dev": _Cluster("aks-dev", "westeurope", "C0DEV")}
    fleet = type("Fleet", (), {"clusters": clusters})()
    r, slack = _FakeRedis(), _FakeSlack()
    watcher = Watcher(fleet, r, "t", _FakeMesh({"dev": _Mesh("Istio", ["asm-1-26"])}), slack,
                      feed=None)  # type: ignore[arg-type]
    watcher.holds = lambda: False
    deprecated = ReleaseEvent("2026-11-30", "deprecated", "asm-1-26")
    with pytest.raises(TemporaryError, match="lock was lost"):
        watcher.run_once(pushed=[deprecated])
    assert not slack.posts
    watcher.holds = lambda: True
    assert watcher.run_once(pushed=[]) == ([deprecated], {"C0DEV"})
