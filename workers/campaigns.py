"""Campaigns' port on the worker: :class:`EngineCampaigns` implements
:class:`workflows.campaign.CampaignApi` on the engine, its run store and the fleet's ports.

A campaign's steps (``workflows/kinds/campaign.py``) read the fleet through it and start,
watch and decide on ordinary cluster runs through the same engine a person's command and
click go through: the cluster's lease, policy and audit apply to them as to anyone's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date

import structlog

from workers.config import Fleet
from workers.engine import Engine
from workflows.campaign import ClusterFacts, StageSpec
from workflows.canary import soak_regression
from workflows.errors import MeshopsError, RunNotFound, TemporaryError
from workflows.kind import StartRun
from workflows.maintenance import AUTO_UPGRADE, MaintenanceWindow
from workflows.model import Run
from workflows.ports import ClusterPorts, RevisionProfile

log = structlog.get_logger("meshops.campaigns")

#: the soak's traffic windows (s): wide enough for two scrapes at managed Prometheus' 30 s
SOAK_STEP_S = 60.0


def cluster_facts(fleet: Fleet, ports: ClusterPorts) -> list[ClusterFacts]:
    """What a campaign plan needs of each cluster of ``fleet``, read through ``ports``: its
    mesh (``managedClusters``), upgrades (``meshUpgradeProfiles``), its region's
    ``meshRevisionProfiles`` (read once a region) and its maintenance window: the
    cluster's AKS ``aksManagedAutoUpgradeSchedule`` when it has one, else the fleet file's
    ``maintenance_window``. A cluster ARM does not answer for is in the list with the
    error; a maintenance configuration ARM does not answer for falls back to the fleet
    file's window, the error noted."""
    profiles: dict[str, tuple[RevisionProfile, ...]] = {}
    facts = []
    for name, cfg in sorted(fleet.clusters.items()):
        labels = dict(cfg.labels)
        try:
            mesh = ports.mesh.get_mesh(name)
            upgrades = (tuple(ports.mesh.upgrade_targets(name))
                        if mesh.mode == "Istio" and len(mesh.revisions) == 1 else ())
            if cfg.location not in profiles:
                profiles[cfg.location] = tuple(ports.mesh.revision_profiles(name))
        except MeshopsError as exc:
            facts.append(ClusterFacts(name, cfg.location, labels, None, error=str(exc)))
            continue
        try:
            window, source = cluster_window(fleet, ports, name)
        except MeshopsError as exc:
            window = cfg.maintenance_window
            source = ("fleet file; " if window else "") + (
                f"AKS maintenance configurations unreadable ({exc})")
        facts.append(ClusterFacts(name, cfg.location, labels, mesh, upgrades,
                                  profiles[cfg.location], window, source))
    return facts


def cluster_window(fleet: Fleet, ports: ClusterPorts, name: str
                   ) -> tuple[MaintenanceWindow | None, str]:
    """The cluster's maintenance window and where it comes from: its AKS
    ``aksManagedAutoUpgradeSchedule`` (ARM ``maintenanceConfigurations``) when it has one,
    else the fleet file's ``maintenance_window`` (None: any time).

    Raises:
        MeshopsError: ARM did not answer for the maintenance configurations.
    """
    cfg = fleet.clusters[name]
    own = ports.mesh.maintenance_windows(name).get(AUTO_UPGRADE)
    if own is not None:
        return own, f"AKS {AUTO_UPGRADE}"
    return cfg.maintenance_window, "fleet file" if cfg.maintenance_window else ""


#: how long a cluster's maintenance window read for a running campaign is trusted: a
#: window changed in ARM counts within this, and a campaign waiting on 50 clusters' windows
#: does not read ARM for each on every look
WINDOW_CACHE_S = 300.0


def stage_specs(fleet: Fleet) -> list[StageSpec]:
    """The fleet file's campaign stages as the planner takes them (none without
    ``campaigns``)."""
    if fleet.campaigns is None:
        return []
    return [StageSpec(s.name, tuple(s.clusters), dict(s.selector), s.max_concurrency,
                      s.max_failures, s.approval, s.soak) for s in fleet.campaigns.stages]


class EngineCampaigns:
    """Implements :class:`workflows.campaign.CampaignApi`.

    Args:
        engine: the worker's engine (its fleet, store, counted ports).
        end_of_support: the revisions the release notes say leave support
            (``workers.watcher.end_of_support`` on the store's Redis).
        enqueue_tick / enqueue_notify: how a run's tick and Slack sync are scheduled
            (Celery in the worker), for the runs a campaign starts or decides on.
    """

    def __init__(self, engine: Engine,
                 end_of_support: Callable[[], Mapping[str, date | None]],
                 enqueue_tick: Callable[[str, int], None],
                 enqueue_notify: Callable[[str], None]):
        self.engine = engine
        self._end_of_support = end_of_support
        self.enqueue_tick = enqueue_tick
        self.enqueue_notify = enqueue_notify
        self._windows: dict[str, tuple[float, MaintenanceWindow | None, str]] = {}

    def facts(self) -> list[ClusterFacts]:
        return cluster_facts(self.engine.fleet, self.engine.ports)

    def stages(self) -> list[StageSpec]:
        return stage_specs(self.engine.fleet)

    def window(self, cluster: str) -> tuple[MaintenanceWindow | None, str]:
        """The cluster's window now (:func:`cluster_window`), kept :data:`WINDOW_CACHE_S`.

        Raises:
            TemporaryError: ARM did not answer (nothing is cached).
        """
        now = time.monotonic()
        hit = self._windows.get(cluster)
        if hit is not None and now - hit[0] < WINDOW_CACHE_S:
            return hit[1], hit[2]
        try:
            window, source = cluster_window(self.engine.fleet, self.engine.ports, cluster)
        except MeshopsError as exc:
            raise TemporaryError(f"{cluster}'s maintenance configurations: {exc}") from exc
        self._windows[cluster] = (now, window, source)
        return window, source

    def end_of_support(self) -> Mapping[str, date | None]:
        return self._end_of_support()

    def find_child(self, campaign_id: str, cluster: str, revision: str) -> Run | None:
        """The newest such run among the runs created since the campaign was (the run
        index by creation time), so a long history of other runs costs nothing."""
        store = self.engine.store
        since = store.get(campaign_id, recent=0).created_at
        found: Run | None = None
        for run_id in store.run_ids_since(since):  # type: ignore[attr-defined]
            try:
                run = store.get(run_id, recent=0)  # its fields: a summary
            except RunNotFound:
                continue
            if (run.params.get("campaign") == campaign_id and run.cluster == cluster
                    and run.canary_revision == revision
                    and (found is None or run.created_at > found.created_at)):
                found = run
        return found

    def start_child(self, campaign: Run, cluster: str, revision: str) -> Run:
        run = self.engine.start(
            StartRun("upgrade", cluster, revision, fields={"params": {"campaign": campaign.id}}),
            campaign.requester, campaign.channel)
        self.enqueue_tick(run.id, run.seq)
        self.enqueue_notify(run.id)
        log.info("campaign.child_started", run_id=campaign.id, child=run.id, cluster=cluster,
                 revision=revision)
        return run

    def get_run(self, run_id: str) -> Run:
        # its phase, outcome and waves' namespaces: a summary, not megabytes of samples
        return self.engine.store.get(run_id, recent=0)

    def decide(self, run_id: str, action: str, user: str) -> Run:
        run = self.engine.decide(run_id, action, user)
        # as after a person's click (bot.deps.BotDeps.after_decision)
        if not run.phase.terminal and not run.phase.waiting_for_person:
            self.enqueue_tick(run.id, run.seq)
        self.enqueue_notify(run.id)
        return run

    def soak_check(self, cluster: str, namespaces: list[str], start: float, end: float
                   ) -> str | None:
        if not namespaces or end <= start:
            return None
        th = self.engine.fleet.thresholds(cluster).canary
        windows = self.engine.ports.metrics(cluster).windows(
            namespaces, [], start - th.baseline_s, end, SOAK_STEP_S)
        return soak_regression(windows, start, th)
