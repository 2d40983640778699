"""The release-note parser on every Istio-related line of the project's changelog fixture and
(a contract test) of the real changelog, expected events written out by hand, and on wordings
the newer notes may use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshops.cli import main
from tests.conftest import FIXTURES
from workflows.releases import ReleaseEvent, parse, parse_releases_json

P, D, A, N = "patched", "deprecated", "available", "announced"

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
    return [(e.release, e.kind, e.revision, e.version) for e in parse(md)]


def test_the_changelog() -> None:
    assert events((FIXTURES / "aks/CHANGELOG.md").read_text()) == OURS


@pytest.mark.contract
def test_the_real_changelog(shared_data: Path) -> None:
    md = (shared_data / "aks/CHANGELOG-through-2024.md").read_text()
    assert events(md) == EXPECTED


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
