"""Parsing AKS release notes into mesh revision events (DESIGN.md §5.4). Pure.

The notes (``Azure/AKS`` CHANGELOG.md and GitHub releases) speak of the Istio add-on in
free text whose wording changes from release to release: backticks or not, links, several
revisions in one sentence, "available" or "supported", revisions written ``asm-1-21`` or
``Istio revision 1.19``, versions ``1.24.3``, ``v1.24.3``, ``v.1.20.6``,
``1.21.3-hotfix.20240626`` or ``1.27.9-6``. So the parser does not match whole sentences;
it reads each sentence that is about Istio, finds the revisions and versions in it, and
classifies each revision by the nearest predicate that speaks of it:

- ``patched``: a version ``1.NN.P`` in an Istio sentence patches revision ``asm-1-NN``
  (``respectively`` pairs lists; in "from X to Y" only Y counts). One event per revision.
- ``deprecated``: "no longer supported", "unsupported", "deprecated", "retired", "end of
  life", "removed", also when it lies ahead ("will no longer be supported").
- ``announced``: a revision that "will be available", "is coming", "is planned".
- ``available``: "now available", "now supported", "generally available", "released",
  "now supports revision".

Sentences about Open Service Mesh or Envoy alone are not about the add-on; examples
("for example, asm-1-21 can upgrade to asm-1-23") are not events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

KINDS = ("available", "deprecated", "patched", "announced")

# "## Release 2024-10-25" starts a release; "### Release Notes" inside it does not
HEADING_RE = re.compile(r"^#{1,3}\s*(?:AKS\s+)?Release(?![ \t]+notes\b)\b[^\n]*$",
                        re.IGNORECASE | re.MULTILINE)
DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
REVISION_RE = re.compile(r"\basm[-_ ]1[-.](\d{1,3})\b", re.IGNORECASE)
#: "Istio revision 1.19", "Istio 1.17 version", "revision 1.22": a minor without a patch
MINOR_RE = re.compile(r"\b(?:istio|revisions?)\s+(?:revision\s+|version\s+)?v?1\.(\d{1,3})"
                      r"(?![.\d])(?!\s*(?:to|through)\b)", re.IGNORECASE)
VERSION_RE = re.compile(r"(?<![\w.])v?\.?(1\.(\d{1,3})\.\d{1,3}"
                        r"(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?)(?![\w])")
FROM_VERSION_RE = re.compile(r"\bfrom\s+v?\.?1\.\d{1,3}\.\d{1,3}(?:-[0-9A-Za-z.]+)?\s+to\b",
                             re.IGNORECASE)
LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
URL_RE = re.compile(r"https?://\S+")

PREDICATES = [
    ("deprecated", re.compile(
        r"no longer (?:be )?supported|no longer support|not (?:be )?supported|unsupported|"
        r"deprecat\w*|retir\w*|end[- ]of[- ]life|\bEOL\b|out of support|reached end|"
        r"removed|(?:is|are|been) dropped|end of support", re.IGNORECASE)),
    ("announced", re.compile(
        r"will (?:soon )?(?:be(?:come)? )?(?:available|released|supported|generally available|"
        r"rolled out|introduced|added)|will (?:soon )?(?:release|add|introduce|support|ship)|"
        r"upcoming|coming soon|is coming|are coming|planned|expected (?:to|in)|"
        r"in the coming (?:weeks|months)|preview (?:soon|in)|starting (?:from|on|in)\s+\w+",
        re.IGNORECASE)),
    ("available", re.compile(
        r"(?:now|is|are|becomes?|been)\s+(?:generally\s+)?(?:available|supported|released|GA)|"
        r"now in (?:public )?preview|now supports?|(?:has|have) been (?:released|added)|"
        r"can now (?:be )?(?:install|upgrade|use|enable|deploy)\w*|adds? support|"
        r"added support|support for (?:the )?(?:new )?(?:istio )?revision|introduc\w+|"
        r"\bavailable\b", re.IGNORECASE)),
]
PATCH_HINT = re.compile(r"patch|upgraded to|updated to|bumped|hotfix|images? updated|"
                        r"has been updated|have been updated|update[sd]? .* to", re.IGNORECASE)
ABOUT_ISTIO = re.compile(r"istio|\basm[-_ ]1[-.]\d|azure service mesh", re.IGNORECASE)
NOT_ADDON = re.compile(r"open service mesh|\bOSM\b", re.IGNORECASE)
EXAMPLE = re.compile(r"for example|e\.g\.|such as", re.IGNORECASE)


@dataclass(frozen=True)
class ReleaseEvent:
    """One event of a release: ``version`` only for ``patched``, without a leading ``v``."""

    release: str  # YYYY-MM-DD, from the section heading
    kind: str  # available | deprecated | patched | announced
    revision: str  # asm-1-NN
    version: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def sections(markdown: str) -> Iterator[tuple[str, str]]:
    """(date, body) for every ``## Release YYYY-MM-DD`` section, in document order.

    A release heading without a date cannot be placed: its section is skipped, never
    attributed to the release before it.
    """
    heads = list(HEADING_RE.finditer(markdown))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(markdown)
        date = DATE_RE.search(head.group(0))
        if date:
            yield date.group(0), markdown[head.end():end]


def items(body: str) -> Iterator[str]:
    """Bullet items (continuation lines joined) and paragraphs of a section."""
    current: list[str] = []
    for raw in body.splitlines():
        line = raw.strip()
        starts_item = bool(re.match(r"^([*+-]|\d+\.)\s+", line)) or line.startswith("#")
        if not line or starts_item:
            if current:
                yield " ".join(current)
            current = []
            if not line or line.startswith("#"):
                continue
            line = re.sub(r"^([*+-]|\d+\.)\s+", "", line)
        current.append(line)
    if current:
        yield " ".join(current)


def clean(text: str) -> str:
    text = LINK_RE.sub(r"\1", text)
    text = URL_RE.sub("", text)
    text = text.replace("`", "").replace("**", "").replace("__", "")
    return re.sub(r"\s+", " ", text).strip()


def sentences(text: str) -> list[str]:
    # A sentence ends at ". " / "! " / "? " (versions and abbreviations have no space after
    # the dot); "e.g. " is kept inside.
    protected = re.sub(r"\be\.g\.\s", "e_g_ ", text)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z`\[(*]|asm-)", protected)
    return [p.replace("e_g_ ", "e.g. ").strip() for p in parts if p.strip()]


def _classify(after: str, before: str) -> str | None:
    """The kind named by the earliest predicate after a revision, else just before it."""
    best: tuple[int, str] | None = None
    for kind, pattern in PREDICATES:
        m = pattern.search(after)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), kind)
    if best:
        return best[1]
    window = before[-60:]
    best_before: tuple[int, str] | None = None
    for kind, pattern in PREDICATES:
        for m in pattern.finditer(window):
            if best_before is None or m.end() > best_before[0]:
                best_before = (m.end(), kind)
    return best_before[1] if best_before else None


def parse_sentence(release: str, sentence: str) -> list[ReleaseEvent]:
    if not ABOUT_ISTIO.search(sentence) or NOT_ADDON.search(sentence) and not re.search(
            r"istio", sentence, re.IGNORECASE):
        return []
    if re.search(r"envoy", sentence, re.IGNORECASE) and not re.search(
            r"istio-based|add-?on|istiod|\basm[-_ ]1", sentence, re.IGNORECASE):
        return []  # Envoy's own version, e.g. "Envoy Proxy (part of OSM and Istio) 1.26.4"
    events: list[ReleaseEvent] = []
    # revisions named in the sentence, with their positions
    mentions: list[tuple[int, int, str]] = []
    for m in REVISION_RE.finditer(sentence):
        mentions.append((m.start(), m.end(), f"asm-1-{int(m.group(1))}"))
    for m in MINOR_RE.finditer(sentence):
        if not any(s <= m.start(1) < e for s, e, _ in mentions):
            mentions.append((m.start(), m.end(), f"asm-1-{int(m.group(1))}"))
    mentions.sort()

    # patched: versions of the add-on
    patched: dict[str, str] = {}
    scan = FROM_VERSION_RE.sub("to", sentence)
    versions = [(m.group(1), int(m.group(2))) for m in VERSION_RE.finditer(scan)]
    if versions and PATCH_HINT.search(sentence):
        if re.search(r"\brespectively\b", sentence, re.IGNORECASE) and len(mentions) == len(
                versions):
            pairs = [(rev, v) for (_, _, rev), (v, _) in zip(mentions, versions, strict=True)]
        else:
            pairs = [(f"asm-1-{minor}", v) for v, minor in versions]
        for rev, version in pairs:
            patched[rev] = version
        events += [ReleaseEvent(release, "patched", rev, v) for rev, v in patched.items()]

    if EXAMPLE.search(sentence):
        return events
    for i, (start, end, rev) in enumerate(mentions):
        if rev in patched:
            continue
        nxt = mentions[i + 1][0] if i + 1 < len(mentions) else len(sentence)
        after = sentence[end:]
        own = sentence[end:nxt]
        # "asm-1-22 and asm-1-23 are deprecated": a bare list item shares the next predicate
        kind = _classify(own, "") or _classify(after, sentence[:start])
        if kind:
            events.append(ReleaseEvent(release, kind, rev))
    return events


def parse(markdown: str) -> list[ReleaseEvent]:
    """Every event of every release section, in document order, without duplicates."""
    out: list[ReleaseEvent] = []
    for release, body in sections(markdown):
        seen: set[tuple[str, str]] = set()
        for item in items(body):
            for sentence in sentences(clean(item)):
                for event in parse_sentence(release, sentence):
                    key = (event.kind, event.revision)
                    if key not in seen:
                        seen.add(key)
                        out.append(event)
    return out


def parse_releases_json(data: object) -> list[ReleaseEvent]:
    """The GitHub releases API shape: ``[{"name"|"tag_name", "published_at", "body"}]``."""
    out: list[ReleaseEvent] = []
    if not isinstance(data, list):
        raise ValueError("a GitHub releases document is a JSON list of releases")
    for rel in data:
        if not isinstance(rel, dict):
            continue
        title = f"{rel.get('name') or ''} {rel.get('tag_name') or ''}"
        m = re.search(r"(\d{4})-?(\d{2})-?(\d{2})", title) or re.search(
            r"(\d{4})-(\d{2})-(\d{2})", str(rel.get("published_at") or ""))
        if not m:
            continue  # a release without a date cannot be placed; skipped
        date = f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
        out += parse(f"## Release {date}\n{rel.get('body') or ''}")
    return out
