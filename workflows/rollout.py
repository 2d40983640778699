"""Judging a data-plane rollover the way Kubernetes does, and what a plan must say. Pure.

"Rolled out" is what ``kubectl rollout status`` means, per kind
(:attr:`workflows.ports.Workload.rolled_out`). Around it, what real clusters hold
(Kubernetes docs "Workloads", Istio docs "Sidecar injection"):

- **OnDelete** StatefulSets and DaemonSets replace no pod when their template changes:
  meshops deletes their pods itself, one at a time, each replacement ready before the next.
- A StatefulSet **partition** keeps the pods below its ordinal on the old template: they
  stay on the stable revision; the plan names them and completion waits for them.
- **Jobs and CronJobs** are never restarted (a Job's pods would rerun their work): their
  next pods get the new sidecar. Their pods, finished pods (Succeeded, Failed, evicted) and
  bare pods (no controller: a person restarts them) are never waited for.
- Workloads that will not be injected (``sidecar.istio.io/inject: "false"`` on the pod
  template) and namespaces with ``istio-injection=disabled`` next to ``istio.io/rev``
  (the injection label wins) are named, not waited for.
- Workloads **already failing** before a namespace moves (crash-looping or unavailable) are
  recorded then; only new failures on the canary count against it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from workflows.ports import INJECTION_LABEL, BatchWorkload, Namespace, Pod, Workload


@dataclass(frozen=True)
class Rollout:
    """Where the rollover of some namespaces onto a revision stands."""

    pending: list[Workload] = field(default_factory=list)  # still rolling, within deadline
    late: list[Workload] = field(default_factory=list)  # past their deadline
    stale: list[Pod] = field(default_factory=list)  # pods that must still move
    crashing: list[Pod] = field(default_factory=list)  # new crash loops
    delete: list[Pod] = field(default_factory=list)  # OnDelete pods to delete now
    held: list[Pod] = field(default_factory=list)  # kept on the old revision by a partition
    moved: list[Pod] = field(default_factory=list)  # pods on the revision, waited for

    @property
    def done(self) -> bool:
        return not (self.pending or self.late or self.stale or self.delete)


def failing(workloads: list[Workload], pods: list[Pod]) -> list[str]:
    """Keys (``ns/Kind/name``) of the workloads failing now: not every replica available,
    or a pod crash-looping."""
    keys = {w.key for w in workloads if not w.healthy}
    keys |= {p.workload_key for p in pods if p.crash_looping and not p.finished
             and p.workload_key}
    return sorted(k for k in keys if k)


def _wrong(pod: Pod, revision: str, version: str | None) -> bool:
    if pod.revision is None:
        return False  # no sidecar (not injected): nothing to move
    return pod.revision != revision or (version is not None and pod.proxy_version != version)


def assess(workloads: list[Workload], pods: list[Pod], revision: str, *,
           preexisting: list[str], started_at: float, deleted_at: float | None, now: float,
           default_deadline_s: float, version: str | None = None) -> Rollout:
    """Where the rollover onto ``revision`` (and patch ``version``, if pinned) stands.

    Args:
        workloads, pods: of the namespaces moving, as listed now.
        preexisting: keys of workloads that were failing before the move (not waited for,
            their crash loops not counted).
        started_at: when the workloads were restarted (Unix s); ``deleted_at`` when meshops
            last deleted an OnDelete pod.
        default_deadline_s: a workload's deadline when it has no progress deadline of its
            own (StatefulSets, DaemonSets).
    Returns:
        A :class:`Rollout`; ``delete`` holds at most one pod per OnDelete workload, and only
        when every other pod of it is ready.
    """
    by_key = {w.key: w for w in workloads}
    skip = set(preexisting) | {w.key for w in workloads if w.injection_disabled}
    out = Rollout()
    candidates: dict[str, list[Pod]] = defaultdict(list)
    busy: set[str] = set()  # OnDelete workloads with a pod not ready or terminating
    for pod in pods:
        key = pod.workload_key
        if pod.finished or key is None or key not in by_key or key in skip:
            continue
        w = by_key[key]
        if pod.terminating or not pod.ready:
            busy.add(key)
        if pod.terminating:
            continue
        if pod.crash_looping:
            out.crashing.append(pod)
        if not _wrong(pod, revision, version):
            if pod.revision is not None:
                out.moved.append(pod)
            continue
        if w.kind == "StatefulSet" and w.partition > 0 and pod.ordinal is not None \
                and pod.ordinal < w.partition:
            out.held.append(pod)
        elif w.restarts_by_deletion:
            candidates[key].append(pod)
        else:
            out.stale.append(pod)
    for w in workloads:
        if w.key in skip:
            continue
        if w.restarts_by_deletion:
            if candidates.get(w.key) or w.key in busy:
                since = max(started_at, deleted_at or 0.0)
                if now - since > default_deadline_s:
                    out.late.append(w)
                elif w.key in busy or not candidates.get(w.key):
                    out.pending.append(w)
                else:
                    first = min(candidates[w.key], key=lambda p: (p.ordinal or 0, p.name))
                    out.delete.append(first)
            continue
        if w.rolled_out:
            continue
        if w.deadline_exceeded or now - started_at > w.deadline_s(default_deadline_s):
            out.late.append(w)
        else:
            out.pending.append(w)
    return out


def special_handling(namespaces: list[Namespace], workloads: list[Workload], pods: list[Pod],
                     batch: list[BatchWorkload], preexisting: list[str]) -> list[str]:
    """The plan's lines for every workload handled other than by a rollout restart.

    Returns lines like ``"OnDelete (meshops deletes their pods one at a time): shop/
    StatefulSet/db"``; empty when every workload is restarted the ordinary way.
    """
    lines = []

    def line(what: str, names: list[str]) -> None:
        if names:
            shown = ", ".join(names[:15]) + (f" and {len(names) - 15} more"
                                             if len(names) > 15 else "")
            lines.append(f"{what}: {shown}")

    line("OnDelete update strategy (meshops deletes their pods one at a time, each ready "
         "before the next)", [w.key for w in workloads if w.restarts_by_deletion])
    partitioned = [w for w in workloads if w.kind == "StatefulSet" and w.partition > 0]
    line("StatefulSet partition (pods below the partition stay on the stable revision; "
         "completion waits until they have moved)",
         [f"{w.key} (ordinals < {w.partition})" for w in partitioned])
    line("Jobs and CronJobs (not restarted; their next pods get the new sidecar)",
         [f"{b.namespace}/{b.kind}/{b.name}" for b in batch if not b.injection_disabled])
    line("bare pods (no controller: restart them yourself)",
         sorted(f"{p.namespace}/{p.name}" for p in pods
                if p.owner_kind is None and not p.finished))
    line("not injected (sidecar.istio.io/inject: \"false\"; not waited for)",
         [w.key for w in workloads if w.injection_disabled]
         + [f"{b.namespace}/{b.kind}/{b.name}" for b in batch if b.injection_disabled])
    line("not injected (istio-injection=disabled wins over istio.io/rev; not moved)",
         sorted(n.name for n in namespaces if n.labels.get(INJECTION_LABEL) == "disabled"
                and n.revision))
    line("already failing before the upgrade (not waited for; only new failures count)",
         preexisting)
    return lines
