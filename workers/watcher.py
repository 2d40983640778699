"""The release watcher (DESIGN.md §5.4): AKS release notes and ARM revision profiles → notices.

- :class:`workers.github.feed.ReleaseFeed` polls the AKS release notes on GitHub.
- :class:`Watcher` turns new events into Slack notices, each posted once per channel
  (deduplicated in Redis, so a restart or a replayed push posts nothing twice). ARM's
  ``meshRevisionProfiles`` of every region of the fleet are the source of truth: a revision
  that appears there without a note is announced as available too, and a note whose
  revision is not yet in a cluster's region says so.
- The first poll only learns what exists (nothing is posted for history).
- Nothing read is lost: the events a poll reads are kept in Redis (``unposted``) until all
  their notices are posted, because the feed answers the next poll with 304 (its ETag is
  remembered as it is read). When Slack cannot take a notice now (down, 429, or the
  workspace's budget spent: the worker posts through :class:`~workers.slack.notifier.
  BudgetedSlack`), the next poll posts the rest, as soon as Slack said it could.

Routing: ``available`` → clusters that can upgrade to it (``meshUpgradeProfiles``), with a
*Plan upgrade* button; ``announced`` → clusters on an older revision; ``deprecated`` →
clusters still on it, with the support-policy consequence; ``patched`` → clusters on it;
``mentioned`` (a line of a note that names a revision but yields no event) → a quiet
plain-text notice with the line and the note's link to every mesh cluster's channel, at
most once per channel, release and line.

Policy upgrades (issue 14; the fleet file's ``auto`` per cluster, requester
:data:`~workflows.model.POLICY_REQUESTER`), when the watcher is given ``start_run``:

- ``auto: patch`` (and ``minor``): where the *Restart workloads* offer would be made, the
  watcher starts the rollover run itself, inside the cluster's maintenance window (its AKS
  ``aksManagedAutoUpgradeSchedule``, else the fleet file's ``maintenance_window``, else any
  time); outside it the patch stays pending and is tried again on each poll. The run waits for
  the cluster's approvers like any run.
- ``auto: minor`` with ``campaigns``: a revision newly available in the region of a cluster
  with ``auto: minor`` that it would upgrade to, or a deprecation announced ahead for a
  revision one of them runs, starts a campaign over those clusters (``params.only``) to that
  revision (a deprecation: to the revision the campaign proposes); it plans and waits for a
  campaigns approver: the proposal. Once per (kind, revision).

Exactly once: each start is claimed in Redis (``HSETNX``) before ``start_run`` and the claim
then holds the run id; a start that raises (``ClusterBusy``: a run holds the cluster or a
campaign the fleet) drops the claim, so it is tried again. A crash between the claim and the
start leaves a claim without a run: at most once wins over at least once (a second rollover
or campaign nobody asked for is worse than none); after :data:`CLAIM_STALE_S` such a patch
claim is turned into the ordinary *Restart workloads* offer so that a person can. A crash after
the start and before the run id is recorded changes nothing either: the claim is there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import redis
import structlog
from redis.typing import EncodableT

from workers.github.feed import ReleaseFeed
from workers.slack.client import find_by_metadata
from workers.slack.errors import (
    SLACK_ERRORS,
    SlackOverBudget,
    SlackRateLimited,
    translate_slack_error,
)
from workflows.errors import MeshopsError, TemporaryError
from workflows.kind import StartRun
from workflows.maintenance import (
    AUTO_UPGRADE,
    MaintenanceWindow,
    MaintenanceWindowError,
    in_window,
    next_window,
)
from workflows.model import FLEET_SCOPE, REVISION_RE, Run, revision_minor
from workflows.releases import MENTIONED, ReleaseEvent, parse_releases_json, version_key

log = structlog.get_logger("meshops.watcher")

PLAN_ACTION = "meshops_plan_upgrade"
ROLLOVER_ACTION = "meshops_rollover"
CAMPAIGN_ACTION = "meshops_plan_campaign"
#: seconds after which a policy start claimed but never recorded (the process died between the
#: claim and the start) is given up: the patch is offered to people instead
CLAIM_STALE_S = 600.0
AUTO_PATCH = ("patch", "minor")


def event_key(e: ReleaseEvent) -> str:
    if e.kind == MENTIONED:
        return f"{e.release}|{e.kind}|{e.revision}|{line_digest(e.line)}"
    return f"{e.release}|{e.kind}|{e.revision}|{e.version or ''}"


def line_digest(line: str | None) -> str:
    return hashlib.sha256((line or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Notice:
    cluster: str
    channel: str
    text: str
    plan_target: str | None = None  # a *Plan upgrade to <revision>* button
    rollover_button: bool = False
    variant: str = ""  # "pending": released but not yet in the region; told again when it is
    quiet: bool = False  # plain text, no buttons, no link previews
    campaign_target: str | None = None  # a *Plan fleet campaign to <revision>* button


#: the events read and not yet done (hash: event key → event JSON), under the watcher's key
UNPOSTED = "{}:unposted"
#: notices being posted (hash: notice key → when), for a post whose record a kill lost
NOTICE_PENDING = "{}:notice_pending"
NOTICE_EVENT = "meshops_notice"  # the notices' Slack message metadata event type
#: since when each kept event has been kept (hash: event key → Unix s)
KEPT_AT = "{}:unposted_since"
#: an event ARM cannot route whole for this long is given up, with a warning (s): a
#: cluster left in the fleet file after it was deleted must not hold every poll forever
GIVE_UP_S = 86400.0


class Watcher:
    def __init__(self, fleet: Any, r: redis.Redis, prefix: str, mesh: Any, slack: Any,
                 feed: ReleaseFeed, clusters: Callable[[str], Any] | None = None,
                 start_run: Callable[[StartRun, str], Run] | None = None):
        """``clusters``: a cluster's Kubernetes API (``ClusterApi``) by short name, to offer
        a patch rollover only once the cluster's control plane runs the patch; without it
        the offer comes with the notice. ``start_run(request, origin_channel)``: starts a
        run as :data:`POLICY_REQUESTER` and schedules its first tick (the worker's engine),
        for the fleet file's ``auto`` policies; without it policies only notify.

        Raises (``start_run``): ``ClusterBusy`` when a run holds the cluster (the fleet,
        for a campaign); other ``MeshopsError`` when it cannot start."""
        self.fleet = fleet
        self.r = r
        self.key = f"{prefix}:releases"
        self.mesh = mesh
        self.slack = slack
        self.feed = feed
        self.clusters = clusters
        self.start_run = start_run
        #: the event being handled could not be routed whole (ARM's TemporaryError): it is
        #: kept for the next poll, whose posts skip the notices already made
        self.incomplete: TemporaryError | None = None
        #: whether this watcher still holds the lock its poll runs under (the worker's:
        #: ``RenewedLock.held``); None: no lock, a caller's own business
        self.holds: Callable[[], bool] | None = None

    # ------------------------------------------------------------------ sources

    def arm_events(self, today: str,
                   keep: Callable[[list[tuple[str, ReleaseEvent]]], None] | None = None
                   ) -> list[tuple[str, ReleaseEvent]]:
        """(key, event) for revisions newly listed in a region's meshRevisionProfiles;
        ``keep`` is called with a region's before its revisions are recorded as known (as
        :meth:`ReleaseFeed.poll`'s)."""
        out = []
        for region, cluster in self._regions().items():
            try:
                revisions = {r.revision for r in self.mesh.revision_profiles(cluster)}
            except MeshopsError as exc:
                log.warning("releases.arm_unavailable", region=region, error=str(exc))
                continue
            known_key = f"{self.key}:arm:{region}"
            known = self.r.smembers(known_key)
            listed = [(f"arm|{region}|{rev}", ReleaseEvent(today, "available", rev))
                      for rev in sorted(revisions - known) if REVISION_RE.match(rev)]
            if known:  # the first look only learns
                if keep is not None and listed:
                    keep(listed)
                out += listed
            if revisions:
                self.r.sadd(known_key, *revisions)
        return out

    def _regions(self) -> dict[str, str]:
        regions: dict[str, str] = {}
        for name, c in sorted(self.fleet.clusters.items()):
            regions.setdefault(c.location, name)
        return regions

    # ------------------------------------------------------------------ routing

    def campaign_notice(self, e: ReleaseEvent) -> Notice | None:
        """A revision now offered in a region of the fleet, told once in the campaigns'
        channel (when the fleet file has campaigns) with *Plan fleet campaign*: the dry
        run of ``/mesh campaign plan <revision>``."""
        campaigns = getattr(self.fleet, "campaigns", None)
        if campaigns is None or e.kind != "available":
            return None
        regions = sorted({c.location for c in self.fleet.clusters.values()})
        return Notice("", campaigns.channel, variant="campaign", text=(
            f":new: Istio add-on revision *{e.revision}* is available ({e.release}). A "
            f"campaign can move the fleet ({len(self.fleet.clusters)} clusters in "
            f"{', '.join(regions)}) to it ring by ring; the plan shows each cluster's path "
            "and window."), campaign_target=e.revision)

    def route(self, e: ReleaseEvent, now: float | None = None) -> list[Notice]:
        """The notices of event ``e`` for each mesh cluster; ``now`` (Unix seconds) is when
        a patch policy checks maintenance windows."""
        now = time.time() if now is None else now
        notices = []
        for name, c in sorted(self.fleet.clusters.items()):
            try:
                mesh = self.mesh.get_mesh(name)
                if mesh.mode != "Istio":
                    continue
                region = {r.revision for r in self.mesh.revision_profiles(name)}
                notice = self._notice(e, name, c, mesh.revisions, region, now)
            except TemporaryError as exc:
                # told again at the next poll (the event stays kept): ARM throttled or away
                # must not lose this cluster's notice
                log.warning("releases.route_failed", cluster=name, error=str(exc))
                self.incomplete = self.incomplete or exc
                continue
            except MeshopsError as exc:
                log.warning("releases.route_failed", cluster=name, error=str(exc))
                continue
            if notice:
                notices.append(notice)
        return notices

    def _notice(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                region: set[str], now: float) -> Notice | None:
        where = f"`{name}` ({c.name}, {c.location})"
        missing = "" if e.revision in region else (
            f" It is not yet offered in {c.location}; meshops will tell you when "
            "meshRevisionProfiles lists it.")
        handlers: dict[str, Callable[..., Notice | None]] = {
            "available": self._available, "announced": self._announced,
            "deprecated": self._deprecated, "patched": partial(self._patched, now=now),
            MENTIONED: self._mentioned}
        handler = handlers.get(e.kind)
        return handler(e, name, c, current, region, where, missing) if handler else None

    def _available(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                   region: set[str], where: str, missing: str) -> Notice | None:
        """A released revision: a *Plan upgrade* where meshUpgradeProfiles allows it; said
        once more when the region offers it."""
        if e.revision in current:
            return None
        if e.revision not in region:
            if any(revision_minor(r) < revision_minor(e.revision) for r in current):
                return Notice(name, c.channel, f":new: Istio add-on revision "
                              f"*{e.revision}* was released ({e.release}).{missing}",
                              variant="pending")
            return None
        if e.revision in self.mesh.upgrade_targets(name):
            return Notice(name, c.channel,
                          f":new: Istio add-on revision *{e.revision}* is available "
                          f"({e.release}); {where} on {', '.join(current)} can upgrade to "
                          "it.", plan_target=e.revision)
        return None

    def _announced(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                   region: set[str], where: str, missing: str) -> Notice | None:
        """A pre-announced revision: told to clusters it would be an upgrade for."""
        if any(revision_minor(r) < revision_minor(e.revision) for r in current):
            when = f", expected {e.expected}" if e.expected else ""
            return Notice(name, c.channel, f":mega: Istio add-on revision *{e.revision}* "
                          f"is announced ({e.release}{when}) but not released yet.{missing}")
        return None

    def _deprecated(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                    region: set[str], where: str, missing: str) -> Notice | None:
        """A revision out of support: warns the clusters still on it, with the newest
        upgrade they may plan."""
        if e.revision not in current:
            return None
        targets = self.mesh.upgrade_targets(name)
        status = (f"will no longer be supported after {e.expected}" if e.ahead and e.expected
                  else "will soon no longer be supported" if e.ahead
                  else "is no longer supported")
        return Notice(name, c.channel, (
            f":warning: Istio add-on revision *{e.revision}* {status} "
            f"({e.release}) and {where} still runs it. AKS supports only the most recent "
            "revisions: an unsupported one gets no patches, and upgrading from it is "
            "not supported by Microsoft. Upgrade to "
            + (", ".join(f"`{t}`" for t in targets) or "a supported revision") + "."),
            plan_target=targets[-1] if targets else None,
            variant="ahead" if e.ahead else "")  # the deprecation itself is told again

    def _patched(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                 region: set[str], where: str, missing: str, now: float) -> Notice | None:
        """A new patch of a revision the cluster runs: offers a staged restart (starts it,
        under ``auto: patch``)."""
        if e.revision not in current:
            return None
        if not self._runs_patch(name, e):
            self.r.hset(f"{self.key}:patch_pending", f"{name}|{e.revision}|{e.version}",
                        e.to_json())
            then = ("meshops restarts the workloads itself (fleet policy `auto: "
                    f"{c.auto}`), inside the maintenance window," if self._auto_patch(c)
                    else "meshops offers to restart the workloads")
            return Notice(name, c.channel, (
                f":adhesive_bandage: Istio add-on revision *{e.revision}* is patched to "
                f"*{e.version}* ({e.release}). AKS rolls it out to the control plane of "
                f"{where} itself; {then} once istiod-{e.revision} runs {e.version}."),
                variant="pending")
        notice, settled = self._patch_ready(e, name, c, where, now, "")
        if not settled:  # waits for the window or the cluster: tried again on each poll
            self.r.hset(f"{self.key}:patch_pending", f"{name}|{e.revision}|{e.version}",
                        e.to_json())
        return notice

    def _patch_offer(self, e: ReleaseEvent, name: str, c: Any, where: str,
                     variant: str = "", note: str = "") -> Notice:
        return Notice(name, c.channel, (
            f":adhesive_bandage: Istio add-on revision *{e.revision}* is patched to "
            f"*{e.version}* ({e.release}), and the control plane of {where} runs it. "
            "Sidecars pick the patch up when their workloads restart: *Restart workloads* "
            "does it in waves behind the metric gate." + note), rollover_button=True,
            variant=variant)

    # ------------------------------------------------------------------ policy upgrades

    def _auto_patch(self, c: Any) -> bool:
        return self.start_run is not None and getattr(c, "auto", "none") in AUTO_PATCH

    def _window(self, name: str, c: Any) -> tuple[MaintenanceWindow | None, str]:
        """The cluster's maintenance window and where it comes from: its AKS
        ``aksManagedAutoUpgradeSchedule``, else the fleet file's ``maintenance_window``
        (also when ARM cannot say), else (None, "") — any time."""
        window: MaintenanceWindow | None = getattr(c, "maintenance_window", None)
        source = "the fleet file's maintenance window" if window is not None else ""
        try:
            own = self.mesh.maintenance_windows(name).get(AUTO_UPGRADE)
        except MeshopsError as exc:
            log.warning("releases.window_unreadable", cluster=name, error=str(exc))
            own = None
        if own is not None:
            window, source = own, f"AKS {AUTO_UPGRADE}"
        return window, source

    def _claim(self, claims: str, field: str, now: float) -> str | None:
        """Claim the policy start ``field`` of hash ``claims``: None when claimed now; else
        what the claim holds (a run id, or ``starting|<unix seconds>``)."""
        if self.r.hsetnx(claims, field, f"starting|{now}"):
            return None
        held = self.r.hget(claims, field)
        return (held.decode() if isinstance(held, bytes) else str(held or "")) or "starting|0"

    def _patch_ready(self, e: ReleaseEvent, name: str, c: Any, where: str, now: float,
                     variant: str) -> tuple[Notice | None, bool]:
        """What to do for a patch the cluster's control plane runs: the *Restart workloads*
        offer (``variant``), or under ``auto: patch`` the rollover started by policy.
        Returns (the notice, settled: False while it waits for the window or the cluster)."""
        if not self._auto_patch(c):
            return self._patch_offer(e, name, c, where, variant), True
        assert self.start_run is not None
        head = (f":adhesive_bandage: Istio add-on revision *{e.revision}* is patched to "
                f"*{e.version}* ({e.release}), and the control plane of {where} runs it.")
        claims, field = f"{self.key}:auto_rollover", f"{name}|{e.revision}|{e.version}"
        held = self.r.hget(claims, field)
        if held is None:
            at = datetime.fromtimestamp(now, UTC)
            window, source = self._window(name, c)
            if window is not None and not in_window(window, at):
                try:
                    opens = next_window(window, at)[0]
                    when = f"it opens {opens:%Y-%m-%d %H:%M} UTC"
                except MaintenanceWindowError as exc:
                    when = str(exc)
                return Notice(name, c.channel, (
                    f"{head} Fleet policy `auto: {c.auto}`: meshops restarts the workloads "
                    f"itself inside the maintenance window ({source}: {window.describe()}); "
                    f"{when}."), variant="window"), False
        held_text = self._claim(claims, field, now) if held is None else (
            held.decode() if isinstance(held, bytes) else str(held))
        if held_text is None:  # claimed now: start it
            request = StartRun("rollover", name, e.revision,
                               fields={"target_version": e.version or None})
            try:
                run = self.start_run(request, c.channel)
            except MeshopsError as exc:
                self.r.hdel(claims, field)
                log.warning("releases.auto_rollover_refused", cluster=name,
                            revision=e.revision, version=e.version, error=str(exc))
                return Notice(name, c.channel, (
                    f"{head} Fleet policy `auto: {c.auto}`: meshops could not start the "
                    f"restart of the workloads yet ({exc}); it tries again on each poll."),
                    variant="waiting"), False
            self.r.hset(claims, field, run.id)
            log.info("releases.auto_rollover", cluster=name, revision=e.revision,
                     version=e.version, run_id=run.id)
            held_text = run.id
        if held_text.startswith("starting|"):
            if now - float(held_text.split("|", 1)[1] or 0) < CLAIM_STALE_S:
                return None, False  # another watcher is starting it right now
            log.warning("releases.auto_rollover_orphaned", cluster=name, revision=e.revision,
                        version=e.version)
            return self._patch_offer(e, name, c, where, "orphaned", (
                f" (Fleet policy `auto: {c.auto}` claimed this restart but meshops cannot "
                "tell whether it started: check `/mesh runs` before restarting.)")), True
        return Notice(name, c.channel, (
            f"{head} Fleet policy `auto: {c.auto}`: meshops started the restart of the "
            f"workloads as run `{held_text}`; it waits for an approver of `{name}`."),
            variant="auto"), True

    def auto_campaign(self, e: ReleaseEvent, now: float | None = None) -> Run | None:
        """Under ``auto: minor`` (see the module docstring), the campaign event ``e`` starts;
        None when it starts none (not such an event, no policy, already started once for
        this kind and revision, or a campaign already holds the fleet)."""
        campaigns = getattr(self.fleet, "campaigns", None)
        if self.start_run is None or campaigns is None:
            return None
        if e.kind != "available" and not (e.kind == "deprecated" and e.ahead):
            return None
        only = sorted(n for n, c in self.fleet.clusters.items()
                      if getattr(c, "auto", "none") == "minor")
        if not only or not self._campaign_concerns(e, only):
            return None
        claims, field = f"{self.key}:auto_campaign", f"{e.kind}|{e.revision}"
        if self._claim(claims, field, time.time() if now is None else now) is not None:
            return None
        target = e.revision if e.kind == "available" else ""
        try:
            run = self.start_run(StartRun("campaign", FLEET_SCOPE, target,
                                          fields={"params": {"only": only}}), campaigns.channel)
        except MeshopsError as exc:  # ClusterBusy: a campaign already moves the fleet
            self.r.hdel(claims, field)
            log.warning("releases.auto_campaign_refused", kind=e.kind, revision=e.revision,
                        error=str(exc))
            return None
        self.r.hset(claims, field, run.id)
        log.info("releases.auto_campaign", kind=e.kind, revision=e.revision, run_id=run.id,
                 clusters=len(only))
        return run

    def _campaign_concerns(self, e: ReleaseEvent, only: list[str]) -> bool:
        """Whether event ``e`` concerns a cluster of ``only``: an available revision its
        region offers and that is newer than what it runs; a deprecated one it runs."""
        for name in only:
            try:
                current = self.mesh.get_mesh(name).revisions
                if e.kind == "deprecated":
                    if e.revision in current:
                        return True
                    continue
                if current and any(revision_minor(r) < revision_minor(e.revision)
                                   for r in current) and e.revision in {
                        p.revision for p in self.mesh.revision_profiles(name)}:
                    return True
            except TemporaryError as exc:
                log.warning("releases.auto_campaign_check_failed", cluster=name,
                            error=str(exc))
                self.incomplete = self.incomplete or exc  # looked at again next poll
            except MeshopsError as exc:
                log.warning("releases.auto_campaign_check_failed", cluster=name,
                            error=str(exc))
        return False

    def _runs_patch(self, name: str, e: ReleaseEvent) -> bool:
        """Whether ``istiod-<revision>`` of cluster ``name`` runs the patch (or a later one);
        True when meshops cannot look (no Kubernetes access given to the watcher)."""
        if self.clusters is None or not e.version:
            return True
        running = self.clusters(name).control_plane_versions().get(e.revision)
        return running is not None and version_key(running) >= version_key(e.version)

    def _post(self, n: Notice, e: ReleaseEvent, variant: str | None = None) -> bool:
        """Post notice ``n`` of event ``e`` unless it was posted already; True when posted
        now. One notice per channel and fact, whichever source told it first; a quiet
        notice once per channel, release and line.

        Raises ``TemporaryError`` when Slack cannot take it now (nothing is marked, so the
        next poll posts it); a refusal for good is logged and skipped (False).
        """
        variant = n.variant if variant is None else variant
        posted_key = (f"{e.kind}|{e.release}|{line_digest(e.line)}|{n.channel}"
                      if e.kind == MENTIONED else
                      f"{e.kind}|{e.revision}|{e.version or ''}|{variant}|{n.channel}")
        if self.r.sismember(f"{self.key}:posted", posted_key):
            return False
        digest = hashlib.sha256(posted_key.encode()).hexdigest()[:24]
        pending = self.r.hget(NOTICE_PENDING.format(self.key), posted_key)
        try:
            if pending is not None and self._found(n.channel, digest, float(_text(pending))):
                self._record_posted(posted_key)  # posted before a kill, unrecorded: not again
                return False
        except TemporaryError:
            raise
        except MeshopsError as exc:  # the channel cannot be read (the app left it): the
            # post below says whether it can be posted to
            log.warning("releases.notice_unchecked", channel=n.channel, error=str(exc))
        if self.holds is not None and not self.holds():
            # its renewals failed past the TTL: another worker may be posting these
            raise TemporaryError("the release watcher's lock was lost; the next poll posts")
        quiet = {"unfurl_links": False, "unfurl_media": False} if n.quiet else {}
        # the marker first: a kill between the post and its record is reconciled from the
        # message's metadata, never answered with a second notice
        self.r.hset(NOTICE_PENDING.format(self.key), posted_key, f"{time.time():.3f}")
        try:
            self.slack.chat_postMessage(
                channel=n.channel, text=n.text, blocks=self.blocks(n, e),
                metadata={"event_type": NOTICE_EVENT, "event_payload": {"notice": digest}},
                **quiet)
        except SLACK_ERRORS as exc:  # a bare WebClient's
            error: MeshopsError = translate_slack_error(exc, "chat.postMessage")
        except MeshopsError as exc:  # a budgeted client's, translated already
            error = exc
        else:
            self._record_posted(posted_key)
            return True
        if not isinstance(error, TemporaryError) or isinstance(
                error, SlackRateLimited | SlackOverBudget):
            # Slack answered: nothing was posted (a timeout leaves the marker: it may have)
            self.r.hdel(NOTICE_PENDING.format(self.key), posted_key)
        if isinstance(error, TemporaryError):
            raise error
        log.warning("releases.notice_refused", cluster=n.cluster, channel=n.channel,
                    error=str(error))
        return False

    def _record_posted(self, posted_key: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.sadd(f"{self.key}:posted", posted_key)
        pipe.hdel(NOTICE_PENDING.format(self.key), posted_key)
        pipe.execute()

    def _found(self, channel: str, digest: str, since: float) -> bool:
        """Whether a notice with metadata ``digest`` was posted in ``channel`` since a
        minute before ``since`` (Unix s): ``conversations.history`` with
        ``include_all_metadata``, as the runs' messages are reconciled. Raises
        ``TemporaryError`` when Slack cannot say now."""
        try:
            found = find_by_metadata(self.slack.conversations_history, channel, since - 60,
                                     NOTICE_EVENT, "notice", digest)
        except SLACK_ERRORS as exc:  # a bare WebClient's
            raise translate_slack_error(exc, "conversations.history") from exc
        return found is not None

    def offer_ready_patches(self, now: float | None = None) -> list[Notice]:
        """Patch offers held until the control plane runs the patch, for the clusters whose
        control plane now does; each is offered once and forgotten. Under ``auto: patch``
        the rollover starts instead, once inside the maintenance window (``now``, Unix
        seconds); until then the patch stays pending."""
        now = time.time() if now is None else now
        if self.clusters is None and not any(self._auto_patch(c)
                                             for c in self.fleet.clusters.values()):
            return []  # without Kubernetes access every patch is offered with its notice
        ready = []
        for field, raw in self.r.hgetall(f"{self.key}:patch_pending").items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            cluster = name.split("|", 1)[0]
            e = ReleaseEvent(**json.loads(raw))
            c = self.fleet.clusters.get(cluster)
            try:
                if c is None or e.revision not in self.mesh.get_mesh(cluster).revisions:
                    self.r.hdel(f"{self.key}:patch_pending", name)  # moved on: no offer
                    continue
                if not self._runs_patch(cluster, e):
                    continue
            except MeshopsError as exc:
                log.warning("releases.patch_check_failed", cluster=cluster, error=str(exc))
                continue
            ready.append((name, e, cluster, c))
        out = []
        for name, e, cluster, c in ready:
            notice, settled = self._patch_ready(
                e, cluster, c, f"`{cluster}` ({c.name}, {c.location})", now, "ready")
            if notice is not None and self._post(notice, e):
                out.append(notice)
            if settled:
                self.r.hdel(f"{self.key}:patch_pending", name)
        return out

    def _mentioned(self, e: ReleaseEvent, name: str, c: Any, current: list[str],
                   region: set[str], where: str, missing: str) -> Notice | None:
        """The safety net: a note's line naming a revision that meshops could not read as
        an event, quoted for a person to read."""
        line = e.line or ""
        if len(line) > 1500:
            line = line[:1500] + "…"
        source = e.link or "the AKS release notes (Azure/AKS CHANGELOG.md)"
        return Notice(name, c.channel, (
            f"AKS release {e.release} mentions Istio add-on revision {e.revision} in a line "
            f"meshops could not read as an event; please read it yourself: \"{line}\" "
            f"({source})"), quiet=True)

    def blocks(self, n: Notice, e: ReleaseEvent) -> list[dict[str, Any]]:
        if n.quiet:
            return [{"type": "section", "text": {"type": "plain_text", "text": n.text[:2900],
                                                 "emoji": False}}]
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn",
                                                                     "text": n.text[:2900]}}]
        if n.rollover_button:
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "action_id": ROLLOVER_ACTION,
                "text": {"type": "plain_text", "text": "Restart workloads"},
                "value": f"{n.cluster}|{e.revision}|{e.version or ''}"}]})
        if n.campaign_target:
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "action_id": CAMPAIGN_ACTION, "style": "primary",
                "text": {"type": "plain_text",
                         "text": f"Plan fleet campaign to {n.campaign_target}"},
                "value": n.campaign_target}]})
        if n.plan_target:
            target = n.plan_target
            blocks.append({"type": "actions", "elements": [{
                "type": "button", "action_id": PLAN_ACTION, "style": "primary",
                "text": {"type": "plain_text", "text": f"Plan upgrade to {target}"},
                "value": f"{n.cluster}|{target}"}]})
        return blocks

    # ------------------------------------------------------------------ support dates

    def record_end_of_support(self, notes: list[ReleaseEvent]) -> None:
        """Keep each deprecated revision's end of support, for campaigns to avoid it: the
        date a deprecation announced ahead takes effect (its ``expected``; a month alone
        counts from its first day), else the release that deprecated it; "" when announced
        ahead without a date. The earliest date a note gives wins."""
        ends: dict[str, str] = {}
        for e in notes:
            if e.kind != "deprecated":
                continue
            when = (e.expected or "") if e.ahead else e.release
            if len(when) == 7:  # YYYY-MM
                when += "-01"
            old = ends.get(e.revision, self.r.hget(f"{self.key}:end_of_support", e.revision))
            if isinstance(old, bytes):
                old = old.decode()
            if old is None or (when and (not old or when < old)):
                ends[e.revision] = when
        if ends:
            mapping: dict[EncodableT, EncodableT] = {k: v for k, v in ends.items()}
            self.r.hset(f"{self.key}:end_of_support", mapping=mapping)

    # ------------------------------------------------------------------ the loop

    def keep(self, events: list[tuple[str, ReleaseEvent]]) -> None:
        """Keep ``events`` ((key, event)) not seen yet until all their notices are posted
        (``unposted``; :meth:`run_once` posts them first)."""
        seen_key = f"{self.key}:seen"
        unseen = {k: e.to_json() for k, e in events if not self.r.sismember(seen_key, k)}
        if unseen:
            mapping: dict[EncodableT, EncodableT] = {k: v for k, v in unseen.items()}
            self.r.hset(UNPOSTED.format(self.key), mapping=mapping)
            for k in unseen:  # since when, for giving up on one ARM never answers for
                self.r.hsetnx(KEPT_AT.format(self.key), k, f"{time.time():.0f}")

    def run_once(self, now: float | None = None, pushed: list[ReleaseEvent] | None = None
                 ) -> tuple[list[ReleaseEvent], set[str]]:
        """Poll (or take ``pushed`` events), post what is new. Returns (new events, channels
        notified).

        Raises ``TemporaryError`` when Slack cannot take a notice now (``delay_s``: when it
        can, 0 when it did not say); the events not yet posted are kept (``unposted``) and
        the next call posts them first, whatever the feed answers then. A notice Slack
        refuses for good (a channel the app is not in) is logged and skipped.
        """
        now = time.time() if now is None else now
        today = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        first = pushed is None and not self.r.exists(f"{self.key}:initialized")
        seen_key = f"{self.key}:seen"
        # what a poll reads is kept (or, on the first poll, which only learns, marked seen)
        # before the feed's validators are stored: after them the feed answers 304
        keep = self.learn if first else self.keep
        if pushed is not None:
            notes = list(pushed)
            self.keep([(event_key(e), e) for e in notes])
        else:
            notes = self.feed.poll(lambda events: keep([(event_key(e), e) for e in events]))
        self.record_end_of_support(notes)
        keyed = [(event_key(e), e) for e in notes] + self.arm_events(today, keep)
        unposted = UNPOSTED.format(self.key)
        new = [(k, e) for k, e in keyed if not self.r.sismember(seen_key, k)]
        if first:
            self.learn(new)
            self.r.set(f"{self.key}:initialized", "1")
            log.info("releases.baseline", events=len(new))
            return [], set()
        fresh = {k for k, _ in new}
        kept = sorted(((_text(k), ReleaseEvent(**json.loads(raw)))
                       for k, raw in self.r.hgetall(unposted).items()
                       if _text(k) not in fresh), key=lambda ke: (ke[1].release, ke[0]))
        done = [k for k, _ in kept if self.r.sismember(seen_key, k)]
        if done:  # seen, its record left by a kill between the two writes: done
            self.r.hdel(unposted, *done)
        kept = [(k, e) for k, e in kept if k not in done]
        # a kept deprecation's date too: its poll may have been killed before recording it
        self.record_end_of_support([e for _, e in kept])
        new = kept + new
        channels: set[str] = set()
        incomplete: TemporaryError | None = None
        for key, e in new:
            self.incomplete = None
            fleet_wide = self.campaign_notice(e)
            for n in self.route(e, now) + ([fleet_wide] if fleet_wide else []):
                if self._post(n, e):
                    channels.add(n.channel)
            self.auto_campaign(e, now)
            if self.incomplete is not None:  # kept: the next poll tells the rest
                kept_at = self.r.hget(KEPT_AT.format(self.key), key)
                if kept_at is None or float(_text(kept_at)) > time.time() - GIVE_UP_S:
                    incomplete = incomplete or self.incomplete
                    continue
                log.warning("releases.event_given_up", kind=e.kind, revision=e.revision,
                            release=e.release, error=str(self.incomplete)[:200],
                            kept_for_s=round(time.time() - float(_text(kept_at))))
            pipe = self.r.pipeline(transaction=True)
            pipe.sadd(seen_key, key)
            pipe.hdel(unposted, key)
            pipe.hdel(KEPT_AT.format(self.key), key)
            pipe.execute()
            log.info("releases.event", kind=e.kind, revision=e.revision, version=e.version,
                     release=e.release)
        channels |= {n.channel for n in self.offer_ready_patches(now)}
        if channels:
            self.r.incrby(f"{self.key}:notified", len(channels))
        if not self.r.hlen(unposted):
            # nothing is being told again: a marker left (a post that timed out, for a
            # notice the event no longer makes) concerns nothing any more
            self.r.delete(NOTICE_PENDING.format(self.key), KEPT_AT.format(self.key))
        if incomplete is not None:
            raise TemporaryError(f"release notices not all told: {incomplete}",
                                 incomplete.delay_s)
        return [e for _, e in new], channels

    def learn(self, events: list[tuple[str, ReleaseEvent]]) -> None:
        """The first poll's :meth:`keep`: ``events`` are history, marked seen (nothing is
        posted for them), except those a push kept meanwhile."""
        waiting = {_text(k) for k in self.r.hkeys(UNPOSTED.format(self.key))}
        learned = [k for k, _ in events if k not in waiting]
        if learned:
            self.r.sadd(f"{self.key}:seen", *learned)



def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def end_of_support(r: redis.Redis, prefix: str) -> dict[str, date | None]:
    """Revision → the date its support ends (None: deprecated, the date not given), as the
    release notes the watcher has read said (:meth:`Watcher.record_end_of_support`)."""
    out: dict[str, date | None] = {}
    for rev, when in r.hgetall(f"{prefix}:releases:end_of_support").items():
        rev = rev.decode() if isinstance(rev, bytes) else rev
        when = when.decode() if isinstance(when, bytes) else when
        try:
            out[rev] = date.fromisoformat(when) if when else None
        except ValueError:
            out[rev] = None
    return out


def verify_push(secret: str, body: bytes, timestamp: str, signature: str,
                now: float | None = None) -> bool:
    """A pushed release is signed like Slack requests: ``v0=HMAC-SHA256(secret,
    "v0:{timestamp}:{body}")`` in ``X-Meshops-Signature``, at most 5 minutes old."""
    now = time.time() if now is None else now
    try:
        if abs(now - int(timestamp)) > 300:
            return False
    except ValueError:
        return False
    expected = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body,
                                hashlib.sha256).hexdigest()
    # bytes: compare_digest refuses non-ASCII str (a forged header must be False, not 500)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def pushed_events(body: bytes) -> list[ReleaseEvent]:
    """Events of a pushed release: ``{"name"|"tag_name", "body"}`` or a list of them."""
    data = json.loads(body)
    return parse_releases_json(data if isinstance(data, list) else [data])
