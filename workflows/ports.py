"""Ports: what the core needs from the world, as Protocols (DESIGN.md §3).

Adapters in ``workers/`` implement them on the real SDKs (``AksMeshApi``,
``KubernetesClusterApi``, ``PrometheusMetricsApi``, ``RedisRunStore``). Every method raises
only the errors of :mod:`workflows.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workflows.maintenance import MaintenanceWindow
from workflows.model import Run
from workflows.traffic import TrafficWindow

REV_LABEL = "istio.io/rev"
INJECTION_LABEL = "istio-injection"
ISTIO_NAMESPACE = "aks-istio-system"  # the add-on's control plane and its ConfigMaps


@dataclass(frozen=True)
class MeshState:
    """The mesh as ARM describes it (``properties.serviceMeshProfile`` of managedClusters)."""

    mode: str  # "Istio" or "Disabled"
    revisions: list[str]
    provisioning_state: str  # Succeeded | Updating | Failed | ...
    kubernetes_version: str = ""
    location: str = ""
    osm_enabled: bool = False  # the Open Service Mesh add-on (cannot coexist with Istio)
    ingress: tuple[str, ...] = ()  # enabled ingress gateway modes: External, Internal


@dataclass(frozen=True)
class RevisionProfile:
    """One revision of a region's ``meshRevisionProfiles`` (ARM ``MeshRevision``).

    ``kubernetes`` are the Kubernetes minor versions (``1.30``) it supports, from
    ``compatibleWith`` (``KubernetesOfficial`` and ``AKSLongTermSupport`` together);
    ``upgrades`` the revisions it may move to (empty for the newest).
    """

    revision: str
    upgrades: tuple[str, ...] = ()
    kubernetes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OperationStatus:
    """One poll of an ARM long-running operation (ARM's asynchronous operations contract).

    ``status`` is InProgress | Succeeded | Failed | Canceled (a ``provisioningState`` such as
    Updating while running, when ARM follows the resource itself); ``error_code`` and
    ``error_message`` are the status body's ``error`` (a failed or canceled operation, or an
    InProgress one preempted by another); ``retry_after_s`` is the poll's ``Retry-After`` in
    seconds: ask again no sooner (0 when ARM said nothing).
    """

    status: str
    error_code: str | None = None
    error_message: str | None = None
    retry_after_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.status in ("Succeeded", "Failed", "Canceled")


@dataclass(frozen=True)
class Namespace:
    """A namespace, its labels, and — when its ``istio.io/rev`` label names a revision tag
    (Istio doc "Canary upgrades: stable revision labels"; AKS upgrade guide) — the revision
    that tag points at (``tag_revision``)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    tag_revision: str | None = None

    @property
    def tag(self) -> str | None:
        """The revision tag the namespace is labelled with; None when labelled with a
        revision (or not at all)."""
        return self.labels.get(REV_LABEL) if self.tag_revision else None

    @property
    def revision(self) -> str | None:
        """The revision whose sidecar new pods get: the label, resolved through its tag."""
        return self.tag_revision or self.labels.get(REV_LABEL)


@dataclass(frozen=True)
class GatewayApiGateway:
    """A Kubernetes Gateway API ``Gateway`` (``gateway.networking.k8s.io/v1``) of class
    ``istio``: istiod deploys it as the Deployment ``<name>-istio`` in its namespace, run by
    the revision of the Gateway's own ``istio.io/rev`` label, else its namespace's (Istio
    doc "Gateway API: automated deployment")."""

    namespace: str
    name: str
    revision_label: str | None = None  # the Gateway's own istio.io/rev label, if any

    @property
    def deployment(self) -> str:
        return f"{self.name}-istio"


DEFAULT_PROGRESS_DEADLINE_S = 600.0  # Deployment spec.progressDeadlineSeconds default


@dataclass(frozen=True)
class Workload:
    """A Deployment, StatefulSet or DaemonSet and its rollout status (``apps/v1``)."""

    kind: str  # Deployment | StatefulSet | DaemonSet
    namespace: str
    name: str
    restarted_at: str | None  # pod template annotation kubectl.kubernetes.io/restartedAt
    generation: int
    observed_generation: int
    replicas: int  # spec.replicas (Deployment, StatefulSet); desiredNumberScheduled (DaemonSet)
    updated: int  # updatedReplicas; updatedNumberScheduled
    available: int  # availableReplicas; numberAvailable (DaemonSet)
    ready: int | None = None  # readyReplicas (StatefulSet); None: not reported
    strategy: str = "RollingUpdate"  # RollingUpdate | Recreate (Deployment) | OnDelete
    partition: int = 0  # StatefulSet rollingUpdate.partition: ordinals below it stay
    current_revision: str | None = None  # StatefulSet status.currentRevision
    update_revision: str | None = None  # StatefulSet status.updateRevision
    total: int | None = None  # status.replicas (Deployment): old and new pods together
    progress_deadline_s: float | None = None  # Deployment spec.progressDeadlineSeconds
    deadline_exceeded: bool = False  # condition Progressing=False ProgressDeadlineExceeded
    injection_disabled: bool = False  # pod template sidecar.istio.io/inject: "false"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def restarts_by_deletion(self) -> bool:
        """OnDelete: a changed template replaces no pod; meshops deletes them itself."""
        return self.strategy == "OnDelete"

    @property
    def rolled_out(self) -> bool:
        """What ``kubectl rollout status`` calls done, per kind (kubectl
        ``pkg/polymorphichelpers/rollout_status.go``).

        Deployment: observed the generation, every replica updated, no old replica left,
        every updated replica available. StatefulSet (RollingUpdate): observed, every
        replica ready; with a partition, the replicas from the partition up updated; else
        ``updateRevision == currentRevision``. DaemonSet: observed, every scheduled pod
        updated and available. OnDelete ones have no rollout: meshops follows their pods.
        """
        if self.observed_generation < self.generation:
            return False
        if self.kind == "Deployment":
            total = self.total if self.total is not None else self.updated
            return (self.updated >= self.replicas and total <= self.updated
                    and self.available >= self.updated)
        if self.kind == "StatefulSet":
            ready = self.ready if self.ready is not None else self.available
            if ready < self.replicas:
                return False
            if self.partition > 0:
                return self.updated >= self.replicas - self.partition
            if self.current_revision is not None and self.update_revision is not None:
                return self.current_revision == self.update_revision
            return self.updated >= self.replicas
        return self.updated >= self.replicas and self.available >= self.replicas

    @property
    def healthy(self) -> bool:
        """Every desired replica available (before anyone touches it)."""
        ready = self.ready if self.kind == "StatefulSet" and self.ready is not None \
            else self.available
        return ready >= self.replicas

    def deadline_s(self, default_s: float) -> float:
        """How long its rollout may take: its progress deadline (Deployments), else
        ``default_s``."""
        return self.progress_deadline_s if self.progress_deadline_s is not None else default_s


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    revision: str | None  # the sidecar's revision; None without a sidecar
    proxy_version: str | None  # istio-proxy image tag, e.g. 1.26.4
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    waiting_reason: str | None = None  # e.g. CrashLoopBackOff (istio-proxy included, native
    # sidecars too: init containers with restartPolicy Always)
    restarts: int = 0
    owner_kind: str | None = None  # Deployment | StatefulSet | DaemonSet | Job | None (bare)
    owner: str | None = None  # the owning workload's name (a ReplicaSet's Deployment)
    ordinal: int | None = None  # a StatefulSet pod's ordinal
    ready: bool = True
    reason: str | None = None  # status.reason, e.g. Evicted
    terminating: bool = False  # metadata.deletionTimestamp set

    @property
    def finished(self) -> bool:
        """Succeeded or Failed (a Job's finished pod, an evicted pod): never restarted."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def workload_key(self) -> str | None:
        if self.owner_kind in (None, "Job") or self.owner is None:
            return None
        return f"{self.namespace}/{self.owner_kind}/{self.owner}"

    @property
    def crash_looping(self) -> bool:
        return self.waiting_reason == "CrashLoopBackOff"


@dataclass(frozen=True)
class BatchWorkload:
    """A CronJob, or a Job no CronJob owns: never restarted; their next pods get the sidecar
    of the namespace's revision."""

    kind: str  # CronJob | Job
    namespace: str
    name: str
    injection_disabled: bool = False  # pod template sidecar.istio.io/inject: "false"


class MeshApi(Protocol):
    """The AKS managed cluster's service mesh, through ARM."""

    def get_mesh(self, cluster: str) -> MeshState: ...

    def upgrade_targets(self, cluster: str) -> list[str]:
        """``meshUpgradeProfiles/istio`` ``upgrades``: the revisions the cluster may move to."""
        ...

    def set_revisions(self, cluster: str, revisions: list[str]) -> str | None:
        """PUT the cluster with ``istio.revisions = revisions`` without waiting; returns the
        operation's token for :meth:`operation_status` (opaque text a run keeps as JSON).

        Raises ``TemporaryError`` on 409 (another operation runs) and 429.
        """
        ...

    def operation_status(self, cluster: str, token: str) -> OperationStatus:
        """Poll the operation of ``token`` (what a ``set_*`` call returned) once, never
        waiting; any worker can, across restarts. For AKS: azure-core's ARM poller restored
        from its continuation token, one ``update_status``.

        Raises ``TemporaryError`` when ARM does not answer or answers 429 / 5xx (with its
        ``Retry-After``), ``ArmError`` for other refusals or an unreadable token.
        """
        ...

    def set_mesh(self, cluster: str, mode: str, revision: str | None) -> str | None:
        """PUT ``serviceMeshProfile`` with ``mode`` (Istio | Disabled) and, for Istio, the
        revision (None: the default AKS chooses); returns the operation's token, as
        :meth:`set_revisions` does."""
        ...

    def set_ingress(self, cluster: str, mode: str, enabled: bool) -> str | None:
        """PUT ``istio.components.ingressGateways`` with gateway ``mode`` (External |
        Internal) enabled or not, keeping the other; returns the operation's token, as
        :meth:`set_revisions` does."""
        ...

    def revision_profiles(self, cluster: str) -> list[RevisionProfile]:
        """``meshRevisionProfiles`` of the cluster's region, oldest revision first."""
        ...

    def maintenance_windows(self, cluster: str) -> dict[str, MaintenanceWindow]:
        """The cluster's AKS planned maintenance windows, by configuration name
        (``aksManagedAutoUpgradeSchedule``, ``aksManagedNodeOSUpgradeSchedule``, ``default``):
        ARM ``managedClusters/{name}/maintenanceConfigurations``, those with a
        ``maintenanceWindow``. A legacy ``default`` configuration holding only ``timeInWeek``
        hour slots is left out (it governs AKS's weekly releases, not upgrades, and is no
        single window); none configured: ``{}``.

        Raises ``TemporaryError`` (no answer, 429, 5xx) and ``ArmError`` (other refusals, or a
        window ARM returned that :mod:`workflows.maintenance` cannot read).
        """
        ...


class ClusterApi(Protocol):
    """One cluster's Kubernetes API."""

    def list_namespaces(self, labelled: Sequence[str] | None = None) -> list[Namespace]:
        """Every namespace; with ``labelled``, only those whose ``istio.io/rev`` label is
        one of these values (revisions or revision tags), chosen by the API server (a
        label selector), so the read grows with what it finds, not with the cluster."""
        ...

    def get_namespaces(self, names: list[str]) -> list[Namespace]:
        """Those of ``names`` that exist, in that order (as :meth:`list_namespaces` gives
        them), read by name: what a wave needs, whatever the cluster's size."""
        ...

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        """Label ``istio.io/rev=revision`` and drop ``istio-injection`` (ignored by the add-on)."""
        ...

    def remove_namespace_revision(self, namespace: str) -> None:
        """Remove the ``istio.io/rev`` label (``/mesh uninject``): new pods get no sidecar."""
        ...

    def set_revision_tag(self, tag: str, revision: str) -> None:
        """Point the revision tag at ``revision``, as ``istioctl tag set <tag> --revision
        <revision> --overwrite`` does: the tag's MutatingWebhookConfiguration
        ``istio-revision-tag-<tag>`` gets label ``istio.io/rev=<revision>`` and calls that
        revision's istiod. Raises ``PermanentError`` when the tag does not exist."""
        ...

    def revision_tags(self) -> dict[str, str]:
        """Revision tags → the revision each points at."""
        ...

    def list_gateways(self, namespaces: list[str]) -> list[GatewayApiGateway]:
        """Gateway API Gateways of class ``istio`` in ``namespaces``; none without the CRD."""
        ...

    def set_gateway_revision(self, namespace: str, name: str, revision: str) -> None:
        """Label the Gateway ``istio.io/rev=revision`` (the istiod that deploys it)."""
        ...

    def list_workloads(self, namespaces: list[str]) -> list[Workload]: ...

    def restart_workload(self, workload: Workload, token: str) -> None:
        """Set the ``kubectl.kubernetes.io/restartedAt`` pod-template annotation to ``token``."""
        ...

    def list_pods(self, namespaces: list[str]) -> list[Pod]: ...

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (its controller makes a new one); a pod already gone is fine."""
        ...

    def list_batch(self, namespaces: list[str]) -> list[BatchWorkload]:
        """CronJobs and the Jobs no CronJob owns (``batch/v1``)."""
        ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's ``data``; None when there is no such ConfigMap."""
        ...

    def create_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create a ConfigMap; one that exists already is left as it is."""
        ...

    def control_plane_revisions(self) -> dict[str, bool]:
        """``istiod-<revision>`` Deployments in ``aks-istio-system`` → available or not."""
        ...

    def control_plane_versions(self) -> dict[str, str]:
        """Revision → the Istio patch version its ``istiod-<revision>`` runs once rolled out
        (the ``pilot`` image tag); a revision still rolling to a new patch is absent."""
        ...

    def ingress_gateways(self) -> dict[str, bool]:
        """Ingress gateway modes (External | Internal) with a Deployment in
        ``aks-istio-ingress`` → available or not."""
        ...

    def revision_gateways(self) -> dict[tuple[str, str], bool]:
        """The add-on's ingress gateways per (mode, revision) — one Deployment each,
        ``aks-istio-ingressgateway-<external|internal>-<revision>`` (AKS doc
        ``istio-deploy-ingress.md``: during a canary upgrade both revisions' gateways run) —
        → available or not."""
        ...

    def istio_outside_addon(self) -> list[str]:
        """Signs of an Istio installed outside the add-on (e.g. ``istio-system/istiod``)."""
        ...


class MetricsApi(Protocol):
    """Istio's standard metrics of one cluster."""

    #: how often this cluster's Prometheus scrapes the proxies (s; the fleet file's
    #: ``prometheus.scrape_interval``, 30 s by default as Azure Managed Prometheus): a
    #: traffic window spans at least two scrapes, since a rate needs two samples
    scrape_interval_s: float

    def value(self, query: str) -> float | None:
        """The one value of an instant PromQL query (a team's metric template); None when
        it returns no sample. Raises ``MetricsUnavailable`` when Prometheus cannot be
        queried or the query returns more than one series (a template must aggregate)."""
        ...

    def windows(self, namespaces: list[str], gateways: list[str], start: float, end: float,
                step_s: float, repeat: bool = False, background: bool = False
                ) -> list[TrafficWindow]:
        """The wave's traffic windows between ``start`` and ``end`` (Unix s); one query per
        signal for the whole wave.

        Args:
            namespaces: the wave's namespaces (subjects as reported by destination and
                source proxies).
            gateways: the add-on's ingress gateway Deployments in ``aks-istio-ingress``
                (``aks-istio-ingressgateway-<external|internal>-<revision>``), subjects
                ``gateway/<deployment>``.
            step_s: the window length in seconds; at least two scrape intervals are used.
            repeat: the same read is made again at the next look, from the same ``start``
                to a later ``end`` (a bake): the adapter may keep the final part of the
                answer and read only newer times next time (same windows either way).
            background: a read ahead of need (a wave's baseline while the run waits
                anyway): the adapter may refuse it, raising ``MetricsBusy``, while as many
                background reads as it allows are under way, so they never take all of
                the workers and Prometheus that runs' own steps wait for.

        Returns:
            One :class:`TrafficWindow` per window (``(end - step, end]``, ends multiples of
            the step), subject, revision (None when it cannot be told) and reporter with
            traffic; ``restarts`` 0 (Prometheus does not count them). Sorted by end.

        Raises ``MetricsUnavailable`` when Prometheus cannot be queried, ``MetricsBusy``
        for a ``background`` read refused.
        """
        ...


class RunLock(Protocol):
    """A run's step lock (held while a tick or a decision reads, decides and saves)."""

    def acquire(self, blocking: bool | None = None) -> bool: ...

    def release(self) -> None: ...


class RunStore(Protocol):
    """Durable runs with compare-and-set on ``Run.seq`` and one lease per cluster."""

    def create(self, run: Run, unsynced_at: float | None = None) -> None:
        """Store a new run and take the cluster's lease; ``ClusterBusy`` when held.
        ``unsynced_at``: also mark it unsynced from then, as :meth:`mark_unsynced`."""
        ...

    def get(self, run_id: str, recent: int | None = None,
            history_from: int | None = None, samples_from: int | None = None) -> Run:
        """The run as last saved; ``RunNotFound`` if there is none. ``recent``: only what a
        step works on (its last ``recent`` history events, the samples of its current wave
        and later), for a save through the same store to extend; ``history_from``: the
        history from that event on instead (a Slack sync's read); ``samples_from``: the
        samples of that wave and later ones instead (a wave's chart)."""
        ...

    def save(self, run: Run, expected_seq: int, unsynced_at: float | None = None) -> Run:
        """Write ``run`` with ``seq = expected_seq + 1`` if the stored seq is ``expected_seq``.

        Releases the cluster lease when the run is terminal. Raises ``StaleRun`` otherwise.
        ``unsynced_at``: also mark it unsynced from then, as :meth:`mark_unsynced`, in the
        same write (a save that fails marks nothing).
        """
        ...

    def list_runs(self, cluster: str | None = None, active_only: bool = False,
                  limit: int = 50) -> list[Run]:
        """Runs, newest first; of one cluster, only the active ones, at most ``limit``."""
        ...

    def active_run(self, cluster: str) -> str | None: ...

    def lock(self, run_id: str, timeout: float = 6,
             blocking_timeout: float | None = None, renew: bool = True) -> RunLock:
        """The run's step lock, renewed while held (not when ``renew`` is False: a holder
        done well within ``timeout``); free ``timeout`` s after its holder died.
        ``acquire`` raises ``TemporaryError`` when the store does not answer."""
        ...

    def queue_decision(self, entry: str) -> None:
        """Persist a decision (JSON: run, action, user, respond_to, at) taken while its run
        was busy; ``TemporaryError`` when the store does not answer."""
        ...

    def queued_decisions(self) -> list[str]:
        """The queued decisions, oldest first."""
        ...

    def drop_decision(self, entry: str) -> None:
        """Remove one queued decision (applied or refused)."""
        ...

    def mark_unsynced(self, run_id: str, at: float) -> None:
        """Slack has not caught up with the run since ``at`` (the sweep re-syncs it)."""
        ...

    def slack_state(self, run_id: str) -> dict[str, str]:
        """Where the run's Slack messages are (``root_channel``, ``root_ts``, …) and the
        refusal Slack last answered (``error``, ``error_at``), if any."""
        ...


class ClusterPorts(Protocol):
    """Reaches the per-cluster adapters by the cluster's short name."""

    mesh: MeshApi

    def cluster_api(self, cluster: str) -> ClusterApi: ...

    def metrics(self, cluster: str) -> MetricsApi: ...
