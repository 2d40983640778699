"""Planning a fleet campaign: which revision, which clusters, in which stage, when (issue 14).

A campaign moves every cluster of a fleet to one add-on revision, stage by stage (rings:
``dev`` before ``prod``). Before anything runs, people see the plan: the revision and why it
was chosen, each cluster's path to it (one hop per minor revision), the clusters that cannot
go and what would unblock them, and when each cluster's maintenance window next opens. This
module computes that plan, and its Slack text, from facts the caller has already read from
ARM and the fleet file. No I/O; time comes in as an argument.

The rules follow the AKS doc "Support policy for Istio-based service mesh add-on for Azure
Kubernetes Service" (learn.microsoft.com/azure/aks/istio-support-policy):

- a region's ``meshRevisionProfiles`` lists the revisions it offers, each with the revisions
  it may move to (``upgrades``) and the Kubernetes minor versions it supports
  (``compatibleWith``); a cluster's ``meshUpgradeProfiles`` lists where its current revision
  may go;
- a minor upgrade goes one revision at a time (``asm-1-24`` → ``asm-1-25`` → ``asm-1-26``);
- "If a revision isn't explicitly provided by user during installation, the n-1 revision is
  installed by default": a region's default is its second-newest revision (its only one when
  it offers one), and meshops proposes nothing newer than what AKS itself would install;
- ``n-2`` is deprecated six weeks after ``n`` rolls out: a revision that is deprecated, or whose
  end of support is within :data:`NEAR_END_OF_SUPPORT`, is never proposed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from workflows.errors import PermanentError
from workflows.maintenance import MaintenanceWindow, MaintenanceWindowError, next_window
from workflows.model import Run, parse_revision, revision_minor
from workflows.ports import MeshState, RevisionProfile

#: a revision whose end of support is this close (or past) is never proposed: a campaign over
#: a fleet takes weeks, and landing on a revision about to lose support means another one
NEAR_END_OF_SUPPORT = timedelta(days=60)

UPGRADE = "upgrade"
CURRENT = "current"
BLOCKED = "blocked"
UNREACHABLE = "unreachable"
NO_MESH = "no mesh"
BUSY = "busy"
#: a :class:`ClusterPlan`'s ``status``: one of these
STATUSES = (UPGRADE, CURRENT, BLOCKED, UNREACHABLE, NO_MESH, BUSY)

#: Slack's practical limit for one message's text is 4,000 characters; keep a margin
TEXT_LIMIT = 3_900
#: ARM provisioning states in which no operation is running on the cluster
_SETTLED = ("Succeeded", "Failed", "Canceled", "")


def _frozen(labels: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy: the caller's dict may change later, the plan's input must not."""
    return MappingProxyType(dict(labels))


@dataclass(frozen=True)
class StageSpec:
    """One ring of a campaign, as the fleet file's ``campaigns.stages[]`` gives it.

    ``clusters`` are fleet names; ``selector`` labels that must all match (Kubernetes
    ``matchLabels`` semantics), stored as a read-only copy (equality compares it, hashing
    leaves it out so the spec stays hashable); a stage with neither matches nothing.
    ``max_concurrency`` is how many clusters run at once; ``max_failures`` how many may fail
    or roll back before the campaign halts (0: the first halts it); ``approval`` a person
    approves before the stage starts; ``soak_s`` seconds the stage's clusters are watched
    after its last run completes.
    """

    name: str
    clusters: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=dict, hash=False)
    max_concurrency: int = 1
    max_failures: int = 0
    approval: bool = False
    soak_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "clusters", tuple(self.clusters))
        object.__setattr__(self, "selector", _frozen(self.selector))


@dataclass(frozen=True)
class ClusterFacts:
    """What the caller read for one cluster before planning.

    ``mesh`` is ARM's ``serviceMeshProfile`` (None when it could not be read: then ``error``
    says why); ``upgrades`` the cluster's ``meshUpgradeProfiles`` (revisions its current
    revision may move to); ``profiles`` its region's ``meshRevisionProfiles``; ``window`` its
    maintenance window (None: none, any time will do) and ``window_source`` where the window
    comes from, for people (``AKS aksManagedAutoUpgradeSchedule``, ``fleet file``).
    ``location`` is the Azure region (``westus2``); empty means ``mesh.location``.
    """

    name: str
    location: str
    labels: Mapping[str, str]
    mesh: MeshState | None
    upgrades: tuple[str, ...] = ()
    profiles: tuple[RevisionProfile, ...] = ()
    window: MaintenanceWindow | None = None
    window_source: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))

    @property
    def region(self) -> str:
        """``location``, else the mesh's own, else ``"?"``."""
        return self.location or (self.mesh.location if self.mesh else "") or "?"


@dataclass(frozen=True)
class ClusterPlan:
    """One cluster's part in a campaign.

    ``status`` is one of :data:`STATUSES`; ``current`` its revision now (None: no mesh or
    unreadable); ``hops`` each revision it moves to, in order, the target last (status
    ``upgrade`` only); ``reason`` why it is blocked, busy, unreachable, current or without a
    mesh, in a sentence that says what would help; ``window`` the next (or current) occurrence
    of its maintenance window as UTC ``(start, end)``, None for any time; ``window_note`` where
    the window comes from and what it is, or why it has no occurrence ahead.
    """

    cluster: str
    stage: str | None
    status: str
    current: str | None
    hops: tuple[str, ...] = ()
    reason: str = ""
    window: tuple[datetime, datetime] | None = None
    window_note: str = ""


@dataclass(frozen=True)
class StagePlan:
    """A stage and its clusters' plans, in fleet order."""

    spec: StageSpec
    clusters: tuple[ClusterPlan, ...]


@dataclass(frozen=True)
class CampaignPlan:
    """The whole campaign: ``revision`` (the target), ``why`` it (one sentence), the stages
    in order, and ``unstaged`` clusters (in no stage: listed, never upgraded)."""

    revision: str
    why: str
    stages: tuple[StagePlan, ...]
    unstaged: tuple[ClusterPlan, ...]

    @property
    def to_upgrade(self) -> list[ClusterPlan]:
        """The staged clusters with status ``upgrade``, stage by stage, in the order they go."""
        return [c for s in self.stages for c in s.clusters if c.status == UPGRADE]


# ------------------------------------------------------------------ stages


def stage_members(stages: Sequence[StageSpec],
                  clusters: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Which stage each cluster belongs to.

    Args:
        stages: the rings, in order.
        clusters: fleet name → its labels.
    Returns:
        cluster name → stage name, for the clusters in some stage. A cluster named by a stage
        or matched by its selector (every pair equal) belongs to the FIRST such stage: stages
        are ordered rings, and a later one never takes a cluster an earlier one has. A stage
        with neither names nor selector matches nothing.
    Raises:
        PermanentError: a stage names a cluster not in ``clusters`` (names the stage, the
            cluster and the known clusters).
    """
    members: dict[str, str] = {}
    for stage in stages:
        for name in stage.clusters:
            if name not in clusters:
                known = ", ".join(sorted(clusters)) or "none"
                raise PermanentError(f"Campaign stage `{stage.name}` names cluster `{name}`, "
                                     f"which is not in the fleet. Known clusters: {known}.")
        for name, labels in clusters.items():
            if name in members:
                continue
            named = name in stage.clusters
            selected = bool(stage.selector) and all(
                labels.get(k) == v for k, v in stage.selector.items())
            if named or selected:
                members[name] = stage.name
    return members


# ------------------------------------------------------------------ which revision


def _newest_first(revisions: Sequence[str] | set[str]) -> list[str]:
    return sorted(set(revisions), key=revision_minor, reverse=True)


def _default(offered: Sequence[str] | set[str]) -> str:
    """AKS's default in a region: n-1 (the second newest), or the only one."""
    ordered = _newest_first(offered)
    return ordered[1] if len(ordered) > 1 else ordered[0]


def _support_problem(revision: str, end_of_support: Mapping[str, date | None],
                     today: date) -> str | None:
    """Why ``revision`` should not be proposed for its support, or None."""
    if revision not in end_of_support:
        return None
    ends = end_of_support[revision]
    if ends is None:
        return f"{revision} is deprecated"
    if ends <= today:
        return f"{revision} ended support {ends.isoformat()}"
    if ends - today <= NEAR_END_OF_SUPPORT:
        return f"{revision} ends support {ends.isoformat()}"
    return None


def _regions(facts: Sequence[ClusterFacts]) -> dict[str, tuple[RevisionProfile, ...]]:
    """Region → its profiles, over the readable clusters (the first that has profiles)."""
    regions: dict[str, tuple[RevisionProfile, ...]] = {}
    for f in facts:
        if f.mesh is None:
            continue
        if not regions.get(f.region):
            regions[f.region] = tuple(f.profiles)
    return regions


def _names(items: Sequence[str]) -> str:
    return ", ".join(items)


def propose_revision(facts: Sequence[ClusterFacts], end_of_support: Mapping[str, date | None],
                     today: date) -> tuple[str, str]:
    """The revision a campaign should move the fleet to, when no one asked for one.

    Candidates are the revisions offered by EVERY region of the readable clusters (the
    ``meshRevisionProfiles`` of each distinct location; clusters whose mesh could not be read
    are ignored), no newer than any region's default (n-1, per the AKS support policy: meshops
    proposes nothing AKS itself would not install), and neither deprecated nor near its end of
    support. The newest candidate wins.

    Args:
        facts: every cluster of the fleet.
        end_of_support: revision → the date its support ends, or None when it is already
            deprecated and the date is unknown (the release watcher's record); a revision
            not in it is supported. "Near" is ``date - today <= NEAR_END_OF_SUPPORT``.
        today: the UTC date.
    Returns:
        ``(revision, why)``: ``why`` is one sentence naming the regions, the default, and each
        newer revision left out and why (``asm-1-28 is newest in eastus, westeurope but AKS
        installs n-1 by default``; ``asm-1-25 ends support 2026-01-15``).
    Raises:
        PermanentError: no cluster's mesh could be read, or no revision qualifies (the
            message says what was left out and why).
    """
    regions = _regions(facts)
    if not regions:
        raise PermanentError("No cluster's mesh could be read, so no revision can be proposed: "
                             "fix access to the clusters or name the revision.")
    offered = {r: {p.revision for p in profiles} for r, profiles in regions.items()}
    names = sorted(regions)
    empty = [r for r in names if not offered[r]]
    if empty:
        raise PermanentError(f"No revision can be proposed: {_names(empty)} offered no "
                             "revisions (meshRevisionProfiles was empty).")
    anywhere = set.union(*offered.values())
    defaults = {r: _default(offered[r]) for r in names}
    cap = min(defaults.values(), key=revision_minor)
    cap_regions = [r for r in names if defaults[r] == cap]
    where = _names(names)
    default_text = (f"the default is {cap} (n-1)" if len(set(defaults.values())) == 1
                    else f"the oldest default is {cap} (n-1 in {_names(cap_regions)})")

    left_out: list[str] = []
    chosen: str | None = None
    for rev in _newest_first(anywhere):
        missing = [r for r in names if rev not in offered[r]]
        problem = _support_problem(rev, end_of_support, today)
        if missing:
            left_out.append(f"{rev} is not offered in {_names(missing)}")
        elif revision_minor(rev) > revision_minor(cap):
            newest_in = [r for r in names if _newest_first(offered[r])[0] == rev]
            left_out.append(f"{rev} is newest in {_names(newest_in)} but AKS installs n-1 by "
                            "default" if newest_in else
                            f"{rev} is newer than the default {cap}")
        elif problem:
            left_out.append(problem)
        else:
            chosen = rev
            break
    if chosen is None:
        raise PermanentError(f"No revision can be proposed for {where} ({default_text}): "
                             + "; ".join(left_out) + ". Name the revision to move to.")
    if chosen != cap:
        why = (f"{chosen} is the newest revision offered in {where} that is no newer than "
               f"AKS's default ({default_text}) and not near its end of support")
    elif len(cap_regions) == len(names):
        why = f"{chosen} is AKS's default (n-1) in {where}"
    else:
        why = f"{chosen} is AKS's default (n-1) in {_names(cap_regions)}, the oldest in {where}"
    if left_out:
        why += "; " + "; ".join(left_out)
    return chosen, why + "."


# ------------------------------------------------------------------ one cluster's path


def hop_path(current: str, target: str, first_hops: Sequence[str],
             profiles: Sequence[RevisionProfile]) -> list[str] | None:
    """The shortest path of revisions from ``current`` to ``target``.

    The first hop is one of ``first_hops`` (the cluster's ``meshUpgradeProfiles``: what ARM
    says its revision may move to); later hops follow the region's ``meshRevisionProfiles``
    ``upgrades`` graph (breadth first, so the fewest hops; ties go to ``first_hops`` order).

    Returns:
        the revisions to move to, in order, ``current`` left out and ``target`` last; ``[]``
        when ``current == target``; None when there is no path (``target`` older than
        ``current``, or not reachable).
    """
    if current == target:
        return []
    graph = {p.revision: p.upgrades for p in profiles}
    parent: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for hop in first_hops:
        if hop not in parent and hop != current:
            parent[hop] = None
            queue.append(hop)
    while queue:
        rev = queue.popleft()
        if rev == target:
            path = [rev]
            while (prev := parent[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        for nxt in graph.get(rev, ()):
            if nxt not in parent and nxt != current:
                parent[nxt] = rev
                queue.append(nxt)
    return None


def _minor(kubernetes_version: str) -> str:
    """``1.28.9`` → ``1.28``; ``1.28`` stays."""
    return ".".join(kubernetes_version.split(".")[:2])


def _status(f: ClusterFacts, target: str) -> tuple[str, str | None, tuple[str, ...], str]:
    """(status, current, hops, reason) of one cluster for ``target``; see plan_campaign."""
    mesh = f.mesh
    if mesh is None:
        return UNREACHABLE, None, (), f.error or "its mesh could not be read"
    if mesh.mode != "Istio" or not mesh.revisions:
        return NO_MESH, None, (), ("the Istio add-on is not enabled (mode "
                                   f"{mesh.mode or 'unset'}): a campaign upgrades, it does not "
                                   "enable; enable the mesh first if it should take part")
    if len(mesh.revisions) > 1:
        stable = min(mesh.revisions, key=revision_minor)
        return BUSY, stable, (), (f"an upgrade is in progress: {', '.join(mesh.revisions)} are "
                                "both installed; complete it or roll it back first")
    current = mesh.revisions[0]
    if mesh.provisioning_state not in _SETTLED:
        return BUSY, current, (), (f"ARM provisioningState is {mesh.provisioning_state}: an "
                                   "operation is running on the cluster; plan again when it "
                                   "has finished")
    if current == target:
        return CURRENT, current, (), f"already on {target}"
    if revision_minor(current) > revision_minor(target):
        return CURRENT, current, (), (f"runs {current}, newer than {target}: left as is "
                                      "(the add-on does not downgrade)")
    region = f.region
    by_revision = {p.revision: p for p in f.profiles}
    if target not in by_revision:
        return BLOCKED, current, (), f"{target} is not offered in {region} yet"
    path = hop_path(current, target, f.upgrades, f.profiles)
    runs = _minor(mesh.kubernetes_version)
    wanted = by_revision[target].kubernetes
    if path is None and runs and wanted and runs not in wanted:
        # meshUpgradeProfiles leaves out what the cluster's Kubernetes cannot run: say so
        return BLOCKED, current, (), (
            f"{target} supports Kubernetes {', '.join(wanted)} (this cluster runs {runs}): "
            "upgrade Kubernetes to one of those first")
    if path is None:
        offers = ", ".join(f.upgrades) or "nothing"
        return BLOCKED, current, (), (f"no upgrade path from {current} to {target}: its "
                                      f"meshUpgradeProfiles offers {offers}")
    for hop in path:
        profile = by_revision.get(hop)
        if profile is None:
            return BLOCKED, current, (), (f"{current} → {' → '.join(path)} goes through {hop}, "
                                          f"which is not offered in {region}")
        # an unknown Kubernetes version or a profile without compatibleWith: nothing to check
        # against here; ARM still refuses an incompatible upgrade when it is asked
        if runs and profile.kubernetes and runs not in profile.kubernetes:
            return BLOCKED, current, (), (
                f"{hop} supports Kubernetes {', '.join(profile.kubernetes)} (this cluster runs "
                f"{runs}): upgrade Kubernetes to one of those first")
    return UPGRADE, current, tuple(path), ""


def _plan_cluster(f: ClusterFacts, stage: str | None, target: str,
                  now: datetime) -> ClusterPlan:
    status, current, hops, reason = _status(f, target)
    window: tuple[datetime, datetime] | None = None
    note = ""
    if f.window is not None:
        source = f.window_source or "maintenance window"
        try:
            window = next_window(f.window, now)
            note = f"{source}: {f.window.describe()}"
        except MaintenanceWindowError as exc:
            # ``window`` None means "any time": a cluster whose window never opens must not
            # be read that way, so one that would be upgraded is blocked instead
            note = f"{source}: {exc}"
            if status == UPGRADE:
                status, hops = BLOCKED, ()
                reason = (f"its maintenance window ({source}) has no occurrence ahead: "
                          "change the window or its not-allowed dates")
    return ClusterPlan(cluster=f.name, stage=stage, status=status, current=current, hops=hops,
                       reason=reason, window=window, window_note=note)


def plan_campaign(facts: Sequence[ClusterFacts], stages: Sequence[StageSpec],
                  revision: str | None, end_of_support: Mapping[str, date | None],
                  now: datetime) -> CampaignPlan:
    """The plan of a campaign to ``revision`` over the fleet (a dry run: nothing changes).

    Each cluster, staged or not, gets a status, checked in this order:

    - ``unreachable``: its mesh could not be read (``reason`` = ``facts.error``);
    - ``no mesh``: mode is not ``Istio`` or no revision is installed;
    - ``busy``: two revisions installed (an upgrade in progress: complete or roll it back
      first), or ARM's provisioningState says an operation is running;
    - ``current``: already on the target, or on a NEWER revision (the add-on does not
      downgrade);
    - ``blocked``: the target is not offered in the cluster's region yet; no path from its
      revision (``reason`` names what its meshUpgradeProfiles offers); a hop not offered in
      the region; a hop whose ``compatibleWith`` leaves out the cluster's Kubernetes minor
      (``reason`` lists the versions that would do); or a maintenance window with no
      occurrence ahead (see below);
    - ``upgrade``: ``hops`` from :func:`hop_path`, one minor revision at a time.

    Window: with ``facts.window``, ``next_window(window, now)`` (the current occurrence when
    ``now`` is inside one) and ``window_note`` = ``"<window_source>: <describe()>"``. A
    window with no occurrence ahead (:class:`MaintenanceWindowError`) gives ``window`` None
    and the error's text as the note, and, since None reads as "any time", turns an
    ``upgrade`` into ``blocked``; other statuses stay.

    Args:
        facts: every cluster of the fleet, in fleet order (plans keep it).
        stages: the campaign's rings, in order.
        revision: the target, or None to use :func:`propose_revision`.
        end_of_support: as for :func:`propose_revision`; for an asked revision, a support
            problem is mentioned in ``why``.
        now: aware UTC datetime.
    Returns:
        the plan; unstaged clusters are listed with their computed status and stage None.
    Raises:
        InvalidRevision: ``revision`` is not shaped ``asm-1-NN``.
        PermanentError: from :func:`stage_members` (a stage names an unknown cluster) or
            :func:`propose_revision` (nothing to propose).
        ValueError: ``now`` is naive.
    """
    today = now.astimezone(UTC).date()
    if revision is None:
        target, why = propose_revision(facts, end_of_support, today)
    else:
        target = parse_revision(revision)
        why = f"{target} was asked for"
        problem = _support_problem(target, end_of_support, today)
        if problem:
            why += f" (note: {problem})"
        why += "."
    members = stage_members(stages, {f.name: f.labels for f in facts})
    plans = [_plan_cluster(f, members.get(f.name), target, now) for f in facts]
    staged = tuple(StagePlan(spec=s, clusters=tuple(p for p in plans if p.stage == s.name))
                   for s in stages)
    unstaged = tuple(p for p in plans if p.stage is None)
    return CampaignPlan(revision=target, why=why, stages=staged, unstaged=unstaged)


# ------------------------------------------------------------------ Slack text


def _span(delta: timedelta) -> str:
    """``2 d 3 h``, ``3 h 10 m``, ``45 m``, ``< 1 m`` (rounded down)."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "< 1 m"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} m" if mins else f"{hours} h"
    return f"{mins} m"


def compact_duration(s: float) -> str:
    """Seconds as ``30m``, ``2h``, ``1h30m``, ``45s`` (whole seconds)."""
    total = int(s)
    hours, rest = divmod(total, 3600)
    mins, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{mins}m" if mins else "")
    out += f"{secs}s" if secs or not out else ""
    return out


def _at(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _when(p: ClusterPlan, now: datetime) -> str:
    if p.window is None:
        return p.window_note or "any time (no maintenance window)"
    start, end = p.window
    if start <= now < end:
        text = f"in window now until {_at(end)} ({_span(end - now)} left)"
    else:
        text = f"window opens {_at(start)} (in {_span(start - now)})"
    return f"{text} — {p.window_note}" if p.window_note else text


def _clip(line: str, limit: int = 400) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _line(p: ClusterPlan, now: datetime, staged: bool) -> str:
    name = f"`{p.cluster}`"
    if p.status == UPGRADE:
        path = " → ".join((p.current or "?", *p.hops))
        if not staged:
            return _clip(f"• {name} {path} possible, but not in any stage: left as is")
        return _clip(f"• {name} {path}, {_when(p, now)}")
    if p.status == CURRENT:
        return _clip(f"• :white_check_mark: {name} {p.current}: {p.reason}")
    on = f" ({p.current})" if p.current else ""
    return _clip(f"• :no_entry: {name}{on} {p.status}: {p.reason}")


#: which clusters a clipped block keeps first: those a person must act on, then the moves
_ATTENTION = {BLOCKED: 0, BUSY: 0, UNREACHABLE: 0, NO_MESH: 1, UPGRADE: 2, CURRENT: 3}


def _most_telling(clusters: Sequence[ClusterPlan], cap: int) -> list[ClusterPlan]:
    """``cap`` of ``clusters``, those needing attention first, shown in their own order."""
    order = sorted(range(len(clusters)), key=lambda i: (_ATTENTION[clusters[i].status], i))
    return [clusters[i] for i in sorted(order[:cap])]


def _stage_header(s: StagePlan) -> str:
    spec = s.spec
    n = len(s.clusters)
    fails = spec.max_failures + 1
    parts = [f"{n} cluster{'s' if n != 1 else ''}", f"{spec.max_concurrency} at a time",
             f"halt after {fails} failure{'s' if fails != 1 else ''}",
             "approval first" if spec.approval else "no approval"]
    if spec.soak_s > 0:
        parts.append(f"soak {compact_duration(spec.soak_s)}")
    return f"*Stage {spec.name}* ({', '.join(parts)})"


def _render(plan: CampaignPlan, now: datetime, cap: int | None) -> str:
    """The text with at most ``cap`` cluster lines per block (None: all)."""
    lines = [_clip(f"*Fleet campaign plan (dry run, nothing changed)*: → {plan.revision} — "
                   f"{plan.why}", 700)]
    blocks = [(_stage_header(s), s.clusters, True) for s in plan.stages]
    if plan.unstaged:
        blocks.append(("*Not in any stage* (listed, never upgraded)", plan.unstaged, False))
    for header, clusters, staged in blocks:
        lines.append(header)
        shown = clusters if cap is None else _most_telling(clusters, cap)
        lines.extend(_line(p, now, staged) for p in shown)
        if len(shown) < len(clusters):
            lines.append(f"… ({len(clusters) - len(shown)} more clusters)")
    staged_plans = [p for s in plan.stages for p in s.clusters]
    count = {status: sum(p.status == status for p in staged_plans) for status in STATUSES}
    hops = sum(len(p.hops) for p in plan.to_upgrade)
    tally = (f"{count[UPGRADE]} clusters to upgrade ({hops} hops), {count[BLOCKED]} blocked, "
             f"{count[CURRENT]} current, {count[UNREACHABLE]} unreachable")
    for status in (BUSY, NO_MESH):
        if count[status]:
            tally += f", {count[status]} {status}"
    if plan.unstaged:
        tally += f", {len(plan.unstaged)} not in any stage"
    lines.append(tally)
    return "\n".join(lines)


def plan_text(plan: CampaignPlan, now: datetime) -> str:
    """The plan as Slack mrkdwn, under :data:`TEXT_LIMIT` (3,900) characters.

    First line ``*Fleet campaign plan (dry run, nothing changed)*: → asm-1-26 — <why>``; then
    per stage ``*Stage dev* (2 clusters, 1 at a time, halt after 1 failure, approval first,
    soak 30m)`` and a line per cluster: ``• `aks-dev-1` asm-1-24 → asm-1-25 → asm-1-26,
    window opens 2026-12-06 01:00Z (in 2 d 3 h) — <source>: <window>``, ``in window now until
    …``, ``any time (no maintenance window)``; ``:no_entry:`` with the status and reason for
    blocked, busy, unreachable and no mesh, ``:white_check_mark:`` for current; then ``*Not in
    any stage*`` and its clusters; last line the count over the staged clusters: ``N clusters
    to upgrade (H hops), B blocked, C current, U unreachable`` (busy, no mesh and unstaged
    added when there are any). A long plan shows the same number of clusters per block,
    as many as fit (blocked, busy and unreachable ones first, then no mesh, upgrades and
    current ones, each kept in fleet order), each clipped block ending ``… (N more
    clusters)``.

    Args:
        plan: from :func:`plan_campaign`.
        now: aware UTC datetime, for "in 2 d 3 h".
    """
    text = _render(plan, now, None)
    longest = max([len(s.clusters) for s in plan.stages] + [len(plan.unstaged)])
    cap = longest
    while len(text) > TEXT_LIMIT and cap > 0:
        cap -= 1
        text = _render(plan, now, cap)
    if len(text) > TEXT_LIMIT:
        # so many stages that even their headers do not fit: keep the head and the count
        head, _, tally = text.rpartition("\n")
        text = head[: TEXT_LIMIT - len(tally) - 20] + "\n… (clipped)\n" + tally
    return text


class CampaignApi(Protocol):
    """What a campaign run needs beyond one cluster's ports (DESIGN.md §3): the fleet's facts
    and rings, and the cluster runs it starts and decides on. Implemented by the worker
    (``workers.campaigns.EngineCampaigns``) on the engine and the run store; reached by a
    step as ``ports.campaign`` (:func:`campaign_api`). Every method raises only the errors
    of :mod:`workflows.errors`."""

    def facts(self) -> list[ClusterFacts]:
        """Each cluster of the fleet as ARM describes it now (mesh, upgrades, region's
        revisions, maintenance window); a cluster ARM does not answer for carries the error."""
        ...

    def stages(self) -> list[StageSpec]:
        """The fleet file's campaign stages, in order."""
        ...

    def end_of_support(self) -> Mapping[str, date | None]:
        """Revision → the date its support ends (None: deprecated, date not given)."""
        ...

    def window(self, cluster: str) -> tuple[MaintenanceWindow | None, str]:
        """The cluster's maintenance window as it stands now and where it comes from (as
        :class:`ClusterFacts`' ``window`` and ``window_source``; None: any time), read again
        at most every few minutes: a window changed after the plan counts from then on.

        Raises:
            TemporaryError: ARM did not answer (the caller keeps the window it had).
        """
        ...

    def find_child(self, campaign_id: str, cluster: str, revision: str) -> Run | None:
        """The newest run of ``cluster`` to ``revision`` that campaign ``campaign_id``
        started (``params["campaign"]``), whatever its phase; None if there is none. A
        campaign adopts it rather than start another: nothing is started twice, even when
        the campaign's worker died between starting a run and saving that it had."""
        ...

    def start_child(self, campaign: Run, cluster: str, revision: str) -> Run:
        """Start an ``upgrade`` run of ``cluster`` to ``revision`` for ``campaign``: requested
        by the campaign's requester, in the cluster's channel with the cluster's options and
        gate, ``params`` ``{"campaign": campaign.id}``; its first tick scheduled.

        Raises:
            ClusterBusy: another run holds the cluster.
            DecisionRefused: the campaign's requester may not change this cluster.
        """
        ...

    def get_run(self, run_id: str) -> Run:
        """A run as last saved (``RunNotFound`` if there is none)."""
        ...

    def decide(self, run_id: str, action: str, user: str) -> Run:
        """Take ``action`` on a cluster run as ``user`` would by clicking (the cluster's
        policy decides whether they may), then schedule its tick and Slack sync.

        Raises:
            DecisionRefused: ``user`` may not, or the run is past that decision.
            RunBusy: the run is in the middle of a step; ask again on the next tick.
        """
        ...

    def soak_check(self, cluster: str, namespaces: list[str], start: float, end: float
                   ) -> str | None:
        """Watch ``namespaces`` of ``cluster`` from ``start`` to ``end`` (Unix seconds) after
        their upgrade: None while they are as healthy as before it, else the regression in
        one sentence (the numbers and what was tolerated). ``MetricsUnavailable`` when
        Prometheus cannot answer."""
        ...


def campaign_api(ports: object) -> CampaignApi:
    """``ports.campaign``: the worker gives it to the ports it ticks runs with.

    Raises:
        PermanentError: these ports have none (a process that does not run campaigns).
    """
    api = getattr(ports, "campaign", None)
    if api is None:
        raise PermanentError("campaigns run in a meshops worker; these ports have no "
                             "campaign API")
    return api  # type: ignore[no-any-return]

