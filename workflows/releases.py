"""Parsing AKS release notes into mesh revision events (DESIGN.md §5.4). Pure.

Sources: the AKS release notes of the ``Azure/AKS`` GitHub repository, in either of the two
shapes it publishes them, from the add-on's preview (2023) to the notes of 2025–2026 and
whatever comes next:

- ``CHANGELOG.md``: markdown, one section per release. Release headings have changed form
  over the years: ``## Release 2024-10-25``, ``## Release Notes 2025-10-12``,
  ``## Release Notes - 2026-07-17``, ``# Release Notes 2026-02-08``, and (in releases'
  titles or elsewhere) ``AKS Release 2025-07-20``, ``Release 2025.08.29``,
  ``Release Aug 29, 2025``, ``v20250829``, a bare ``Release 2026-01-12`` line. A heading
  that only says "Release notes" is a subheading of the release, not a new one; a release
  heading without a date cannot be placed and its section is skipped.
- the GitHub releases API (``GET /repos/Azure/AKS/releases``): a JSON list of
  ``{"name", "tag_name", "published_at", "body", "html_url"}`` whose body is the same
  markdown (see :func:`parse_releases_json`).

The notes speak of the Istio add-on in free text whose wording changes from release to
release: backticks, bold or links around revisions and versions, lists nested under a
bullet ("Istio add-on revisions have been updated:" and one sub-bullet per revision),
several revisions in one sentence, "available" or "supported", revisions written
``asm-1-21`` or ``Istio revision 1.19``, versions ``1.24.3``, ``v1.24.3``, ``v.1.20.6``,
``[`v1.27.9-6`](…)``, ``1.21.3-hotfix.20240626``. So the parser does not match whole
sentences: it reads each sentence that is about Istio (with the text of the bullets it is
nested under as its context), finds the revisions and versions in it, and classifies each
revision by the nearest predicate that speaks of it:

- ``patched``: a version ``1.NN.P`` in an Istio sentence about a patch or an update (or
  under a bullet that is) patches revision ``asm-1-NN``; the pairs ``asm-1-25 to 1.25.3``,
  ``asm-1-25: 1.25.3``, ``asm-1-25 (1.25.3)`` are patches by themselves. In "from X to Y"
  only Y counts; of two versions of one revision in a release, the higher. One event per
  revision and release, ``version`` without the leading ``v``.
- ``deprecated``: "is deprecated", "has been deprecated", "no longer supported",
  "unsupported", "retired", "end of life", "removed"; also when it lies ahead ("will no
  longer be supported after January 31, 2026", "will be deprecated in March", "supported
  until May 2026"): then ``ahead`` is true and ``expected`` the date given.
- ``announced``: a revision not released yet: "will be released in September 2025",
  "estimated to release in early July", "coming soon", "planned", "upcoming"; ``expected``
  is the estimated month (``YYYY-MM``, the year inferred from the release's date when the
  note gives none) or day when the note gives one.
- ``available``: "is now available", "is now supported", "generally available",
  "released", "now supports revision".
- ``mentioned`` (the safety net): a line that names an ``asm-1-NN`` revision for which
  neither it nor the bullets it is nested in or under yield any event, with the line and
  (for GitHub releases) the release's link, so that a wording nobody foresaw is still seen.

"… is now available and asm-1-23 is deprecated" gives both events. Sentences about Open
Service Mesh, Envoy alone or Kubernetes versions a revision is compatible with are not
events; examples ("for example, asm-1-21 can upgrade to asm-1-23") are not events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

#: the kinds of events a note can carry (what the watcher routes to clusters)
KINDS = ("available", "deprecated", "patched", "announced")
#: the safety net's kind: a line naming a revision that yields no event
MENTIONED = "mentioned"

# ----------------------------------------------------------------------------- dates

MONTH_NAMES = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
               r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
ISO_DATE_RE = re.compile(r"(?<![\d.])(20\d{2})[-./_](\d{1,2})[-./_](\d{1,2})(?![\d])")
COMPACT_DATE_RE = re.compile(r"(?<![\d.])v?(20\d{2})(\d{2})(\d{2})(?!\d)")
US_DATE_RE = re.compile(r"(?<![\d.])(\d{1,2})/(\d{1,2})/(20\d{2})(?!\d)")
YEAR_MONTH_RE = re.compile(r"(?<![\d.])(20\d{2})-(\d{2})(?![-\d])")
#: "Aug 29, 2025", "29 August 2025", "September 2025", "early July", "end of Sept."
MONTH_EXPR_RE = re.compile(
    rf"(?:\b(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?\b(?P<mon>{MONTH_NAMES})\b\.?"
    rf"(?:\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b)?(?:,?\s+(?P<year>20\d{{2}})\b)?",
    re.IGNORECASE)


def _ymd(y: int, m: int, d: int) -> str | None:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


def _month_hits(text: str, release: str | None) -> Iterator[tuple[int, str, bool]]:
    """(position, "YYYY-MM" or "YYYY-MM-DD", year given) for month expressions in text."""
    for m in MONTH_EXPR_RE.finditer(text):
        word = m.group("mon")
        if word.islower():
            continue  # "may", "march": a verb, not a month
        month = MONTHS[word[:3].lower()]
        year = int(m.group("year")) if m.group("year") else None
        given = year is not None
        if year is None:
            if not release:
                continue
            ry, rm = int(release[:4]), int(release[5:7])
            year = ry if month >= rm else ry + 1
        day = m.group("d1") or m.group("d2")
        value = _ymd(year, month, int(day)) if day else f"{year:04d}-{month:02d}"
        if value:
            yield m.start(), value, given


def find_date(text: str) -> str | None:
    """The first full date in text as ``YYYY-MM-DD``: ``2025-08-29``, ``2025.08.29``,
    ``2025/8/29``, ``v20250829``, ``Aug 29, 2025``, ``29 August 2025``, ``08/29/2025``."""
    hits: list[tuple[int, str]] = []
    for m in ISO_DATE_RE.finditer(text):
        d = _ymd(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if d:
            hits.append((m.start(), d))
    for m in COMPACT_DATE_RE.finditer(text):
        d = _ymd(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if d:
            hits.append((m.start(), d))
    for m in US_DATE_RE.finditer(text):
        a, b = int(m.group(1)), int(m.group(2))
        month, day = (a, b) if a <= 12 else (b, a)
        d = _ymd(int(m.group(3)), month, day)
        if d:
            hits.append((m.start(), d))
    for pos, value, given in _month_hits(text, None):
        if given and len(value) == 10:
            hits.append((pos, value))
    return min(hits)[1] if hits else None


def find_when(text: str, release: str) -> tuple[str, bool] | None:
    """The first date or month in text (``YYYY-MM-DD`` or ``YYYY-MM``) and whether its year
    was given; a month without a year is the first one on or after the release's month."""
    hits: list[tuple[int, int, str, bool]] = []
    for m in ISO_DATE_RE.finditer(text):
        d = _ymd(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if d:
            hits.append((m.start(), 0, d, True))
    for m in US_DATE_RE.finditer(text):
        a, b = int(m.group(1)), int(m.group(2))
        month, day = (a, b) if a <= 12 else (b, a)
        d = _ymd(int(m.group(3)), month, day)
        if d:
            hits.append((m.start(), 0, d, True))
    for m in YEAR_MONTH_RE.finditer(text):
        if 1 <= int(m.group(2)) <= 12:
            hits.append((m.start(), 1, f"{m.group(1)}-{m.group(2)}", True))
    for pos, value, given in _month_hits(text, release):
        hits.append((pos, 1, value, given))
    if not hits:
        return None
    _, _, value, given = min(hits)
    return value, given


# ----------------------------------------------------------------------------- headings

#: "## Release 2024-10-25", "# Release Notes - 2026-07-17", "### AKS Release 2025.08.29"
HEADING_LINE_RE = re.compile(r"^\s{0,3}(#{1,6})\s*(.*?)\s*#*\s*$")
RELEASE_WORDS_RE = re.compile(
    r"^\W*(?:(?:azure\s+kubernetes\s+service|aks)\s+)?releases?\b(?:\s+notes?\b)?",
    re.IGNORECASE)
#: "### Release notes", "## Release Notes (continued)": a part of the release, not a release
SUBHEADING_RE = re.compile(r"^\W*(?:aks\s+)?release\s+notes?\b", re.IGNORECASE)
#: a line that is nothing but a release title: "Release 2026-01-12", "**AKS Release …**"
BARE_RELEASE_RE = re.compile(
    r"^[\s*_>]*(?:(?:azure\s+kubernetes\s+service|aks)\s+)?release(?:\s+notes?)?\s*[-–—:]?\s*"
    r"(?P<rest>[\w.,/ -]{6,24}?)\s*(?:\((?:v?\d{8}|[^)]{0,30})\))?[\s*_]*$", re.IGNORECASE)


def _strip_marks(text: str) -> str:
    return re.sub(r"[*_`]", "", text).strip()


def release_heading(line: str) -> tuple[int, str | None, bool] | None:
    """``(level, date, dated)`` when the line starts a release, else None.

    Markdown headings whose text begins with "Release", "Release Notes" or "AKS Release"
    (or with the date itself) start a release; a line that is nothing but such a title
    does too (level 0). "### Release notes" without a date is a subheading: None.
    """
    h = HEADING_LINE_RE.match(line)
    if h:
        text = _strip_marks(h.group(2))
        if RELEASE_WORDS_RE.match(text) or ISO_DATE_RE.match(text) or \
                COMPACT_DATE_RE.match(text) or re.match(rf"^{MONTH_NAMES}\.?\s+\d", text, re.I):
            when = find_date(text)
            if when is None and SUBHEADING_RE.match(text):
                return None
            return len(h.group(1)), when, when is not None
        return None
    if BULLET_RE.match(line) and not line.lstrip().startswith("**"):
        return None  # "* Release 2025-09-01 of …" is a bullet, not a title
    b = BARE_RELEASE_RE.match(line)
    when = find_date(b.group("rest")) if b else None
    return (0, when, True) if when else None


def sections(markdown: str, *, inherit: bool = False) -> Iterator[tuple[str, str]]:
    """(date ``YYYY-MM-DD``, body) for every release section, in document order.

    A release heading without a date cannot be placed: its section is skipped, never
    attributed to the release before it (``inherit``: it continues the release before it,
    as inside one GitHub release whose date is known). A dateless heading deeper than the
    release headings ("#### Release tracker") does not end a release.
    """
    current: str | None = None
    level = 6  # the level of the release headings seen so far
    body: list[str] = []
    started = False
    for line in markdown.splitlines():
        head = release_heading(line)
        if head is not None:
            lvl, when, dated = head
            if dated or lvl <= level:
                if started and current is not None:
                    yield current, "\n".join(body)
                body, started = [], True
                if lvl:
                    level = lvl
                if dated or not inherit:
                    current = when
                continue
        body.append(line)
    if started and current is not None:
        yield current, "\n".join(body)


# ----------------------------------------------------------------------------- lines

BULLET_RE = re.compile(r"^(\s*)(?:[*+-]|\d{1,3}[.)])\s+(.*)$")
HR_RE = re.compile(r"^\s*(?:[-=*_]\s*){3,}$")
TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")


@dataclass(eq=False)
class Line:
    """A line of a release: a bullet (continuation lines joined), a paragraph, a heading
    or a table row, with the line it is nested under (``parent``)."""

    text: str  # markdown as written
    parent: Line | None
    indent: int  # bullets: their indentation; -1 paragraphs and table rows; -2 headings
    table: bool = False
    events: list[ReleaseEvent] = field(default_factory=list)

    def ancestors(self) -> Iterator[Line]:
        p = self.parent
        while p is not None:
            yield p
            p = p.parent


def lines(body: str) -> list[Line]:
    """The lines of a release section in document order, each knowing its parent: a nested
    bullet's parent is the bullet above it; a top-level list's is the paragraph right before
    it; a paragraph's, a list's or a table's is the heading above it."""
    out: list[Line] = []
    heading: Line | None = None
    stack: list[Line] = []
    current: Line | None = None
    header: Line | None = None  # the current table's first row
    blank = False
    for raw in body.splitlines():
        line = re.sub(r"^(?:\s*>)+ ?", "", raw.expandtabs(4))
        stripped = line.strip()
        if not stripped:
            current, header, blank = None, None, True
            continue
        h = HEADING_LINE_RE.match(line)
        if h and h.group(2):
            heading = Line(h.group(2), None, -2)
            out.append(heading)
            stack, current, header, blank = [], None, None, False
            continue
        if HR_RE.match(line):
            current, header, blank = None, None, True
            continue
        if stripped.startswith("|") and stripped.count("|") >= 2:
            if TABLE_SEP_RE.match(stripped):
                continue
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            text = ": ".join(c for c in cells if c)
            if header is None:
                header = Line(text, stack[-1] if stack else heading, -1, table=True)
                out.append(header)
            else:
                out.append(Line(text, header, -1, table=True))
            current, blank = None, False
            continue
        m = BULLET_RE.match(line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1].indent >= 0 and stack[-1].indent >= indent:
                stack.pop()
            item = Line(m.group(2).strip(), stack[-1] if stack else heading, indent)
            out.append(item)
            stack.append(item)
            current, header, blank = item, None, False
            continue
        indent = len(line) - len(line.lstrip())
        if current is not None and not blank:
            current.text += " " + stripped  # a continuation line
            continue
        if blank and stack and stack[-1].indent >= 0 and indent > stack[-1].indent:
            current = stack[-1]  # a paragraph inside a list item
            current.text += " " + stripped
            blank = False
            continue
        paragraph = Line(stripped, heading, -1)
        out.append(paragraph)
        stack = [paragraph]  # a list right after a paragraph is nested under it
        current, header, blank = paragraph, None, False
    return out


def items(body: str) -> Iterator[str]:
    """The text of every line of a section (see :func:`lines`)."""
    for line in lines(body):
        yield line.text


LINK_RE = re.compile(r"!?\[([^\]]*)\]\((?:[^()]|\([^)]*\))*\)")
URL_RE = re.compile(r"<?https?://\S+")
TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>")


def clean(text: str) -> str:
    """Markdown to plain text: links become their text, URLs, HTML tags, backticks and
    emphasis go."""
    text = LINK_RE.sub(r"\1", text)
    text = URL_RE.sub("", text)
    text = TAG_RE.sub(" ", text)
    text = text.replace("`", "").replace("**", "").replace("__", "").replace("&nbsp;", " ")
    return re.sub(r"\s+", " ", text).strip()


def sentences(text: str) -> list[str]:
    """A sentence ends at ". " / "! " / "? " before a capital, a bracket or a revision
    (versions and abbreviations have no space after the dot); "e.g. " is kept inside."""
    protected = re.sub(r"\be\.g\.\s", "e_g_ ", text)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z`\[(*]|asm-)", protected)
    return [p.replace("e_g_ ", "e.g. ").strip() for p in parts if p.strip()]


# ----------------------------------------------------------------------------- sentences

REVISION_RE = re.compile(r"\basm[-_ ]1[-_.](\d{1,3})\b", re.IGNORECASE)
#: "Istio revision 1.19", "Istio 1.17 version", "revision 1.22": a minor without a patch
MINOR_RE = re.compile(r"\b(?:istio|revisions?)\s+(?:revision\s+|version\s+)?v?1\.(\d{1,3})"
                      r"(?![.\d])(?!\s*(?:to|through)\b)", re.IGNORECASE)
VERSION_RE = re.compile(r"(?<![\w.])v?\.?(1\.(\d{1,3})\.\d{1,3}"
                        r"(?:-[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*)?)(?![\w])")
FROM_VERSION_RE = re.compile(r"\bfrom\s+v?\.?1\.\d{1,3}\.\d{1,3}(?:-[0-9A-Za-z.]+)?\s+"
                             r"(?:to|→|->)", re.IGNORECASE)
#: "asm-1-25 to 1.25.3", "asm-1-25: 1.25.3", "asm-1-25 (1.25.3)", "asm-1-25 → v1.25.3"
PAIR_RE = re.compile(r"\basm[-_ ]1[-_.](\d{1,3})\b\s*(?:to|:|=|→|->|-|–|—|\(|\[|,)?\s*"
                     r"(?:(?:istio|version|patch|v)\s*)?v?\.?1\.(\d{1,3})\.\d", re.IGNORECASE)
#: a version that belongs to something else: "Kubernetes 1.33.2", "Envoy 1.34.4", "AKS 1.32.9"
OTHER_PRODUCT_RE = re.compile(
    r"(?:kubernetes|k8s|\baks|node image|cilium|envoy|\bosm|open service mesh|containerd|"
    r"coredns|csi driver|kubelet|ubuntu|azure linux|windows|gatekeeper|\bcni|kube-proxy|"
    r"autoscaler|app routing|nginx|keda|dapr|flux)\s*(?:patch\s+)?(?:versions?\s*)?"
    r"(?:v\.?)?\s*$", re.IGNORECASE)
PATCH_HINT_RE = re.compile(
    r"patch|upgraded to|updated to|bumped|hotfix|images? updated|has been updated|"
    r"have been updated|update[sd]? .* to|\brespectively\b|\bnow (?:at|on)\b|moved to|"
    r"refreshed", re.IGNORECASE)
ABOUT_ISTIO_RE = re.compile(r"istio|\basm[-_ ]1[-_.]\d|azure service mesh", re.IGNORECASE)
NOT_ADDON_RE = re.compile(r"open service mesh|\bOSM\b", re.IGNORECASE)
EXAMPLE_RE = re.compile(r"for example|e\.g\.|such as|for instance", re.IGNORECASE)
#: a sentence about the Kubernetes versions a revision works with: "supported" is not news
K8S_COMPAT_RE = re.compile(r"\b(?:aks|kubernetes|k8s)\s+(?:versions?\s+)?v?1\.\d+|\bLTS\b|"
                           r"long[- ]term support|compatib", re.IGNORECASE)
#: "from asm-1-24", "with asm-1-25": the revision is not what the sentence's verb is about
OBJECT_RE = re.compile(r"(?<![\w-])(?:from|by|with|on|in|using|than|under|into|via)\s+"
                       r"(?:(?:the|istio|add-?on|revisions?|versions?|service mesh)\s+)*$",
                       re.IGNORECASE)
#: "release notes for asm-1-26 are available": the predicate's subject is not the revision
OWNER_RE = re.compile(
    r"\b(?:notes?|documentation|docs|information|details|guidance|guides?|instructions|steps|"
    r"blog|announcement|changelog|fix(?:es)?|images?|features?|capabilit\w*|options?|"
    r"annotations?|fields?|settings?|metrics|dashboards?|customi[sz]ations?|filters?|"
    r"gateways?|CNI|sidecars?|upgrades?|changes?|behaviou?r|defaults?)\s+(?:for|of|in|on|with)"
    r"\s+(?:(?:the|istio|add-?on|service mesh|revisions?)\s+)*$", re.IGNORECASE)
#: "upgrade from asm-1-24 to asm-1-26": an upgrade path, not a release
UPGRADE_PATH_RE = re.compile(r"\bfrom\s+(?:revision\s+)?asm[-_ ]1[-_.]\d+\s+(?:\w+\s+)?"
                             r"to\s+(?:revision\s+)?asm[-_ ]1", re.IGNORECASE)
#: "Deprecated: asm-1-23", "Coming in October: …": a label whose predicate the sentence shares
LABEL_RE = re.compile(r"^\s*((?:\S+\s+){0,4}\S+?):\s")
CLAUSE_RE = re.compile(r",(?!\s*20\d\d\b)\s|[;:]\s|\s(?:and|but|while|whereas)\s|\s[-–—]\s",
                       re.IGNORECASE)
#: words that put a deprecation ahead
FUTURE_RE = re.compile(r"\b(?:will|shall|going to|scheduled|planned|slated|upcoming|nearing|"
                       r"approaching|soon|until|through|till|expected|estimated|targeted)\b",
                       re.IGNORECASE)
#: words that put an availability ahead ("available soon", "in the coming weeks")
SOON_RE = re.compile(r"\b(?:soon|shortly|in the coming (?:days|weeks|months)|later this "
                     r"(?:month|quarter|year)|next (?:week|month|quarter))\b", re.IGNORECASE)

WHEN = (rf"(?:early |mid[- ]|late |the end of |end of |the beginning of )?"
        rf"(?:{MONTH_NAMES}\b|Q[1-4]\b|20\d\d\b|the (?:week|month|quarter) of)")
DEPRECATED = (
    r"(?:will|shall)\s+(?:continue\s+to\s+|only\s+)?be\s+supported\s+(?:until|through|till)\b|"
    r"(?:is|are|remains?|stays?)\s+supported\s+(?:until|through|till)\b|"
    r"supported\s+(?:until|through|till)\b|"
    r"(?:planned|scheduled|slated|set|targeted|expected|estimated)\s+(?:for|to\s+be|to)\s+"
    r"(?:be\s+)?(?:deprecat|retire|remov|end[- ]of[- ]life|EOL|unsupport|out of support|"
    r"reach end|go out of support|lose support)\w*|"
    r"(?:estimated|expected|planned|scheduled)\s+(?:deprecation|retirement|end[- ]of[- ]life|"
    r"EOL|end of support)|"
    r"no longer (?:be )?supported|no longer support\w*|not (?:be )?supported|unsupported|"
    r"deprecat\w*|retir\w*|end[- ]of[- ]life|\bEOL\b|out of support|"
    r"reach(?:ed|es)? (?:its )?end|removed|(?:is|are|been|be) dropped|end of support|"
    r"\blos(?:e|es|ing) support|support (?:ends|ended|will end|is ending)|"
    r"^\s*(?:ends|ended|will end)\s+(?:on|in|after)\b")
ANNOUNCED = (
    r"will (?:soon )?(?:be(?:come)? )?(?:generally )?(?:available|released|supported|GA|"
    r"rolled out|introduced|added|shipped)|"
    r"will (?:soon )?(?:start |begin )?(?:release|ship|roll(?:ing)? out)|"
    r"expected to (?:be )?(?:release|available|roll|ship|land|arrive|GA|launch)\w*|"
    rf"(?:expected|targeted|scheduled|slated|planned) (?:for |in |by |around |on )?{WHEN}|"
    r"(?:targeted|scheduled|slated|planned) (?:for|to) (?:release|availability|GA|roll)|"
    r"(?:is|are) planned|\(planned|\bestimated\b|\bETA\b|upcoming|coming soon|"
    rf"(?:is|are) coming|coming (?:in|by|around) {WHEN}|in the coming (?:days|weeks|months)|"
    r"preview (?:soon|in)|"
    rf"available (?:soon|shortly)|starting (?:from|on|in) {WHEN}")
AVAILABLE = (
    r"(?:now|is|are|becomes?|been)\s+(?:generally\s+)?(?:available|supported|released|GA)\b|"
    r"now in (?:public )?preview|(?:has|have) been (?:released|added)|"
    r"can now (?:be )?(?:install|upgrade|use|enable|deploy)\w*|introducing|(?:was|were) released|"
    r"(?:is|are|has been|have been) introduced|(?:has|have) (?:now )?started rolling out|"
    r"(?:is|are) (?:now )?(?:being )?rolled out|(?:is|are) (?:now )?rolling out|"
    r"\bavailable\b")
#: what only a revision after it can be the object of: "AKS now supports revision asm-1-26"
AVAILABLE_BEFORE = (r"now supports?|adds? support|added support|"
                    r"support for (?:the )?(?:new )?(?:istio )?revision")
ANNOUNCED_BEFORE = r"will (?:soon )?(?:add|introduce|support)"

PREDICATES: list[tuple[str, re.Pattern[str]]] = [
    ("deprecated", re.compile(DEPRECATED, re.IGNORECASE)),
    ("announced", re.compile(ANNOUNCED, re.IGNORECASE)),
    ("available", re.compile(AVAILABLE, re.IGNORECASE)),
]
BEFORE_PREDICATES = PREDICATES + [("announced", re.compile(ANNOUNCED_BEFORE, re.IGNORECASE)),
                                  ("available", re.compile(AVAILABLE_BEFORE, re.IGNORECASE))]
#: nouns a predicate can be about instead of the revision next to it ("asm-1-25 release
#: notes are available", "now supports annotations on revision asm-1-26")
OTHER_SUBJECTS = (r"(?:notes?|documentation|docs|information|details|guidance|guides?|"
                  r"instructions|steps|blog|announcement|changelog|features?|capabilit\w*|"
                  r"options?|annotations?|fields?|settings?|metrics|dashboards?|"
                  r"customi[sz]ations?|filters?|gateways?|CNI|sidecars?)")
SUBJECT_BEFORE_RE = re.compile(
    rf"\s*(?:(?!(?:with|and|including|plus|which|that)\b)[\w-]+\s+){{0,2}}{OTHER_SUBJECTS}\s*",
    re.IGNORECASE)
SUBJECT_AFTER_RE = re.compile(rf"^\s*(?:\w+\s+){{0,2}}?{OTHER_SUBJECTS}\b", re.IGNORECASE)


@dataclass(frozen=True)
class ReleaseEvent:
    """One event of a release.

    ``version``: for ``patched``, without a leading ``v``. ``expected``: for ``announced``,
    the estimated release (``YYYY-MM``, or ``YYYY-MM-DD`` when the note names the day);
    for a deprecation that lies ahead, the date it takes effect. ``ahead``: a
    ``deprecated`` event announced before it takes effect ("will no longer be supported
    after …"). ``line`` and ``link``: for ``mentioned``, the line (plain text) and the
    release's web page when known (GitHub releases' ``html_url``).
    """

    release: str  # YYYY-MM-DD, from the section heading
    kind: str  # available | deprecated | patched | announced | mentioned
    revision: str  # asm-1-NN
    version: str | None = None
    expected: str | None = None
    ahead: bool = False
    line: str | None = None
    link: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        """``{"release", "kind", "revision", "version"}``, plus ``expected``, ``ahead``,
        ``line`` and ``link`` when set."""
        out: dict[str, object] = {"release": self.release, "kind": self.kind,
                                  "revision": self.revision, "version": self.version}
        if self.expected:
            out["expected"] = self.expected
        if self.ahead:
            out["ahead"] = True
        if self.line is not None:
            out["line"] = self.line
        if self.link:
            out["link"] = self.link
        return json.dumps(out)


def _version_key(v: str) -> tuple[int, int, int, int, str]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)(?:-(.*))?", v)
    if not m:
        return (0, 0, 0, 0, v)
    suffix = m.group(4) or ""
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 1 if suffix else 0, suffix)


def _istio_versions(sentence: str) -> list[tuple[str, int]]:
    """(version, minor) of the versions in a sentence that are the add-on's: not the source
    of "from X to Y", not another product's ("Kubernetes 1.33.2")."""
    scan = FROM_VERSION_RE.sub("to", sentence)
    out = []
    for m in VERSION_RE.finditer(scan):
        if OTHER_PRODUCT_RE.search(scan[max(0, m.start() - 40):m.start()]):
            continue
        out.append((m.group(1), int(m.group(2))))
    return out


def _earliest(patterns: list[tuple[str, re.Pattern[str]]], text: str, offset: int
              ) -> tuple[int, int, str] | None:
    """The earliest predicate in text: (start, end, kind), in the coordinates of the text
    text was cut from at ``offset``; on a tie the first pattern's kind."""
    best: tuple[int, int, str] | None = None
    for kind, pattern in patterns:
        for m in pattern.finditer(text):
            if _ignored(kind, m, text):
                continue
            if best is None or m.start() + offset < best[0]:
                best = (m.start() + offset, m.end() + offset, kind)
            break
    return best


def _latest(patterns: list[tuple[str, re.Pattern[str]]], text: str, offset: int
            ) -> tuple[int, int, str] | None:
    best: tuple[int, int, str] | None = None
    for kind, pattern in patterns:
        for m in pattern.finditer(text):
            if _ignored(kind, m, text, before=True):
                continue
            if best is None or m.end() + offset > best[1]:
                best = (m.start() + offset, m.end() + offset, kind)
    return best


def _ignored(kind: str, m: re.Match[str], text: str, before: bool = False) -> bool:
    """A predicate that is not the revision's own news (``before``: text ends where the
    revision starts)."""
    matched = m.group(0).lower()
    # "asm-1-25 is now supported on AKS 1.33", "not supported with Kubernetes 1.31",
    # "will be supported on AKS LTS": compatibility, not the revision's own support
    if "support" in matched and "until" not in matched and "through" not in matched and \
            K8S_COMPAT_RE.search(text[max(0, m.start() - 20):m.end() + 50]):
        return True
    # "removes the deprecated gateway-name label": an adjective
    if kind == "deprecated" and re.search(r"\b(?:the|a|an)\s+$", text[:m.start()],
                                          re.IGNORECASE):
        return True
    # "asm-1-25 release notes are available"
    other = SUBJECT_AFTER_RE.search(text[m.end():]) if before else \
        SUBJECT_BEFORE_RE.fullmatch(text[:m.start()])
    return kind in ("available", "announced") and other is not None


def _clause_start(text: str) -> int:
    starts = [m.end() for m in CLAUSE_RE.finditer(text)]
    return starts[-1] if starts else 0


def _clause_end(text: str, start: int) -> int:
    m = CLAUSE_RE.search(text, start)
    return m.start() if m else len(text)


def parse_sentence(release: str, sentence: str, context: str = "",
                   parent: str = "") -> list[ReleaseEvent]:
    """The events of one plain-text sentence of release ``release`` (``YYYY-MM-DD``).

    ``context``: the text of the lines the sentence's line is nested under (nearest first),
    which can make a bare "asm-1-25: 1.25.3" a patch; ``parent``: the nearest of them, whose
    predicate a short line without one of its own shares ("Deprecated revisions:" / "asm-1-23").
    """
    about = bool(ABOUT_ISTIO_RE.search(sentence))
    context_revisions = {int(m.group(1)) for m in REVISION_RE.finditer(context)}
    if not about and not (ABOUT_ISTIO_RE.search(context) and context_revisions):
        return []
    if NOT_ADDON_RE.search(sentence) and not re.search(r"istio", sentence, re.IGNORECASE):
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
    own_predicate = _earliest(PREDICATES, sentence, 0) is not None
    versions = _istio_versions(sentence)
    if not about:  # a bare version under "asm-1-25 has been patched to:"
        versions = [(v, minor) for v, minor in versions if minor in context_revisions]
    pair = bool(PAIR_RE.search(sentence)) and any(
        m.group(1) == m.group(2) for m in PAIR_RE.finditer(sentence))
    patch = bool(PATCH_HINT_RE.search(sentence)) or not own_predicate and (
        pair or bool(PATCH_HINT_RE.search(context)))
    patched: dict[str, str] = {}
    first_version: dict[str, int] = {}
    if versions and patch:
        for v, minor in versions:
            rev = f"asm-1-{minor}"
            if rev not in patched or _version_key(v) > _version_key(patched[rev]):
                patched[rev] = v
        for m in VERSION_RE.finditer(sentence):
            first_version.setdefault(f"asm-1-{int(m.group(2))}", m.start())
        events += [ReleaseEvent(release, "patched", rev, v) for rev, v in patched.items()]

    if EXAMPLE_RE.search(sentence) or not about:
        return events
    path = bool(UPGRADE_PATH_RE.search(sentence))
    upstream = bool(re.search(r"\bupstream\b", sentence, re.IGNORECASE))  # Istio's own news
    label = LABEL_RE.match(sentence)
    label_text = label.group(1) if label and not REVISION_RE.search(label.group(1)) else ""
    for i, (start, end, rev) in enumerate(mentions):
        nxt = mentions[i + 1][0] if i + 1 < len(mentions) else len(sentence)
        own = _earliest(PREDICATES, sentence[end:nxt], end)
        found, text = own, sentence
        if found is None:
            # "asm-1-22 and asm-1-23 are deprecated": a bare list item shares the next
            # predicate; "AKS now supports revision asm-1-26": the one before it
            found = _earliest(PREDICATES, sentence[end:], end)
            if found is None and not OBJECT_RE.search(sentence[:start]):
                lo = max(_clause_start(sentence[:start]), start - 60)
                found = _latest(BEFORE_PREDICATES, sentence[lo:start], lo)
        if found is None and label and label_text and start >= label.end():
            found, text = _earliest(PREDICATES, label_text, 0), label_text
        if found is None and parent and len(sentence.split()) <= 8:
            found, text = _earliest(PREDICATES, parent, 0), parent  # a short nested line
        if found is None:
            continue
        kind = found[2]
        if rev in patched and (own is None or own[0] > first_version.get(rev, nxt)):
            # "asm-1-26 is now available with patch 1.26.2" is both; "patched to 1.26.4 and
            # now available in all regions" is only a patch
            continue
        if kind in ("available", "announced") and (
                path or upstream or OWNER_RE.search(sentence[max(0, start - 60):start]) or
                own is None and OBJECT_RE.search(sentence[:start])):
            continue  # an upgrade path, upstream Istio, the revision's notes, "… in asm-1-27"
        own_text = sentence[end:nxt] if text is sentence else ""
        before = sentence[end:found[1]] if text is sentence and found[1] > end else ""
        events.append(_event(release, kind, rev, text, found, own_text, before, parent))
    return events


def _future(value: str, release: str) -> bool:
    return value > release[:len(value)]


def _event(release: str, kind: str, rev: str, text: str, found: tuple[int, int, str],
           own: str, before: str, parent: str) -> ReleaseEvent:
    """The event of a revision classified by the predicate ``found`` in ``text`` (the
    sentence, a label before it or the line it is nested under), with the date it expects
    and whether it lies ahead. ``own``: the sentence from the revision to the next one;
    ``before``: from the revision to the end of the predicate."""
    start, stop, _ = found
    clause = text[start:_clause_end(text, stop)]
    if kind == "available" and not re.search(r"\b(?:now|was|were|has|have|been)\b",
                                             text[start:stop], re.IGNORECASE):
        # "available soon", "available in preview starting September 2025": not yet
        tail = text[stop:_clause_end(text, stop)]
        when = find_when(tail, release)
        if SOON_RE.search(tail) or when is not None and _future(when[0], release) and (
                when[1] or re.search(r"\b(?:starting|from|by|in)\b", tail, re.IGNORECASE)):
            kind = "announced"
    if kind == "announced":
        # "… (estimated to release in early July)": the month by the revision, else by the
        # predicate, else anywhere in the text, else in the line it is nested under
        when = find_when(own, release) or find_when(clause, release) or \
            find_when(text, release) or (find_when(parent, release) if parent else None)
        if when is not None and not _future(when[0], release) and \
                when[0] != release[:len(when[0])]:
            when = None  # a past date is not the release's estimate
        return ReleaseEvent(release, kind, rev, expected=when[0] if when else None)
    if kind == "deprecated":
        # "will no longer be supported after October 15, 2025", "scheduled for deprecation in
        # October 2025": ahead; "has been deprecated and will be removed in March": not
        when = find_when(clause, release)
        ahead = bool(FUTURE_RE.search(before + " " + clause)) or (
            when is not None and when[1] and _future(when[0], release))
        return ReleaseEvent(release, kind, rev, expected=when[0] if when and ahead else None,
                            ahead=ahead)
    return ReleaseEvent(release, kind, rev)


def _line_events(release: str, line: Line, plain: dict[int, str]) -> list[ReleaseEvent]:
    context = " ".join(plain[id(a)] for a in line.ancestors())
    parent = "" if line.table or line.parent is None else plain[id(line.parent)]
    out: list[ReleaseEvent] = []
    for sentence in sentences(plain[id(line)]):
        out += parse_sentence(release, sentence, context, parent)
    return out


def _release_events(release: str, body: str, link: str | None) -> list[ReleaseEvent]:
    """Every event of one release section, ``mentioned`` ones included, deduplicated: one
    event per kind and revision (the higher version of a patch), one mention per line and
    revision."""
    if not ABOUT_ISTIO_RE.search(body):
        return []
    all_lines = lines(body)
    plain = {id(line): clean(line.text) for line in all_lines}
    below: dict[int, set[str]] = {id(line): set() for line in all_lines}
    for line in all_lines:
        line.events = _line_events(release, line, plain)
        for a in line.ancestors():  # the revisions of a line's events cover its ancestors
            below[id(a)] |= {e.revision for e in line.events}
    out: list[ReleaseEvent] = []
    index: dict[tuple[str, ...], int] = {}
    for line in all_lines:
        events = list(line.events)
        covered = {e.revision for e in events} | below[id(line)]
        for a in line.ancestors():
            covered |= {e.revision for e in a.events}
        text = plain[id(line)]
        named = dict.fromkeys(f"asm-1-{int(m.group(1))}" for m in REVISION_RE.finditer(text))
        events += [ReleaseEvent(release, MENTIONED, rev, line=text, link=link)
                   for rev in named if rev not in covered]
        for e in events:
            _keep(out, index, (e.kind, e.revision, e.line or ""), e)
    return out


def _keep(out: list[ReleaseEvent], index: dict[tuple[str, ...], int], key: tuple[str, ...],
          e: ReleaseEvent) -> None:
    """Append ``e`` unless an event with ``key`` is there; of two patches of one revision
    the higher version stays (a note may list a revision twice)."""
    if key not in index:
        index[key] = len(out)
        out.append(e)
    elif e.kind == "patched" and _version_key(e.version or "") > _version_key(
            out[index[key]].version or ""):
        out[index[key]] = e


def parse(markdown: str, link: str | None = None, *, inherit: bool = False
          ) -> list[ReleaseEvent]:
    """Every event of every release section of a CHANGELOG.md (or of one GitHub release's
    body under its heading), in document order, without duplicates within a release.

    Events of the kinds in :data:`KINDS`, and ``mentioned`` ones for lines naming a
    revision that yield no event (``link``: the web page given to them). ``inherit``: see
    :func:`sections`.
    """
    out: list[ReleaseEvent] = []
    seen: dict[tuple[str, ...], int] = {}
    for release, body in sections(markdown, inherit=inherit):
        for e in _release_events(release, body, link):
            _keep(out, seen, (e.release, e.kind, e.revision, e.line or ""), e)
    return out


def events(markdown: str) -> list[ReleaseEvent]:
    """:func:`parse` without the ``mentioned`` safety-net events: only :data:`KINDS`."""
    return [e for e in parse(markdown) if e.kind in KINDS]


def parse_releases_json(data: object) -> list[ReleaseEvent]:
    """The GitHub releases API shape: ``[{"name"|"tag_name", "published_at", "body",
    "html_url"}]`` (``GET /repos/Azure/AKS/releases``).

    A release's date is the first date in its name or tag (``Release 2025-10-12``,
    ``AKS Release 2025.08.29``, ``v20250829``, ``Release Aug 29, 2025``), else its
    ``published_at``; a release without one cannot be placed and is skipped. A dated heading
    inside the body wins over it; a dateless one ("## Release Notes") is part of it.
    ``mentioned`` events carry the release's ``html_url``.
    """
    out: list[ReleaseEvent] = []
    if not isinstance(data, list):
        raise ValueError("a GitHub releases document is a JSON list of releases")
    for rel in data:
        if not isinstance(rel, dict):
            continue
        title = f"{rel.get('name') or ''} {rel.get('tag_name') or ''}"
        when = find_date(title) or find_date(str(rel.get("published_at") or "")[:10])
        if not when:
            continue  # a release without a date cannot be placed; skipped
        url = rel.get("html_url")
        out += parse(f"## Release {when}\n{rel.get('body') or ''}",
                     url if isinstance(url, str) else None, inherit=True)
    return out


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """An Istio version as a sortable key: ``1.25.3`` < ``1.25.10`` < ``1.26.0``;
    a hotfix suffix (``1.27.9-6``) sorts after its base."""
    return _version_key(version.removeprefix("v"))
