"""What the read-only commands show: status, revisions, plan (a dry run), runs.

``runs`` reads only the run store and the bot answers it within the ack; ``status``,
``revisions`` and ``plan`` read ARM and Kubernetes, so the bot acks and a worker answers
through the command's ``response_url`` (``meshops.answer``). None of them changes anything.
The App Home tab shows what ``fleet`` does, as blocks (:func:`home_blocks`, published by
``meshops.home``).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from workers.campaigns import cluster_facts, stage_specs
from workers.config import Fleet
from workers.engine import Engine
from workflows.campaign import plan_campaign
from workflows.campaign import plan_text as campaign_text
from workflows.errors import InvalidRevision, MeshopsError, PermanentError
from workflows.kind import StartRun, kind_of
from workflows.model import FLEET_SCOPE, Run, revision_minor, system_namespace
from workflows.planning import check_upgrade, plan_waves
from workflows.policy import mention
from workflows.ports import ClusterPorts, RevisionProfile
from workflows.waves import gate_summary, low_traffic_note, plan_notes, sampling_note

MAX_TEXT = 3900


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 20] + "\n… (more not shown)"


def _title(run: Run) -> str:
    try:
        return kind_of(run).title(run)
    except PermanentError:  # a run of a kind this deployment no longer registers
        return f"{run.kind} of {run.cluster}"


def runs_text(engine: Engine, cluster: str | None) -> str:
    if cluster:
        engine.fleet.cluster(cluster)
    runs = engine.store.list_runs(cluster, limit=15)
    if not runs:
        return f"No runs{' on `' + cluster + '`' if cluster else ''} yet."
    lines = [f"`{r.id}` {_title(r)} *{r.phase.value.replace('_', ' ')}* — by "
             f"{mention(r.requester)}, {_when(r.created_at)}" for r in runs]
    return _clip("\n".join(lines))


def run_history_text(run: Run) -> str:
    """The run's decisions, then its history; a gate look that decided nothing shows its
    state only, a deciding one its reason clipped (the thread has every number)."""
    lines = [f"*Run `{run.id}`*: {_title(run)}, {run.phase.value.replace('_', ' ')}"]
    if run.approvals:
        lines.append("*Decisions*: " + "; ".join(
            f"{a.decision} on {a.gate} by <@{a.user}> at {_when(a.at)}" for a in run.approvals))
    for e in run.history:
        text = e.text
        if e.kind == "gate" and not e.data.get("decided", True):
            text = text.split(" — ", 1)[0]
        elif e.kind == "gate" and len(text) > 300:
            text = text[:299] + "…"
        lines.append(f"{_when(e.at)} {text}")
    return _clip("\n".join(lines))


def status_text(engine: Engine, cluster: str | None) -> str:
    """Per cluster: mesh mode and revisions, an upgrade in progress, namespaces and pods per
    revision and patch version, the active run and the last ones."""
    names = [cluster] if cluster else sorted(engine.fleet.clusters)
    blocks = []
    for name in names:
        cfg = engine.fleet.cluster(name)
        lines = [f"*{name}* ({cfg.name}, {cfg.location}, <#{cfg.channel}>)"]
        try:
            mesh = engine.ports.mesh.get_mesh(name)
            state = f"mesh {mesh.mode}, revisions {', '.join(mesh.revisions) or 'none'}"
            if len(mesh.revisions) > 1:
                state += " — *upgrade in progress*"
            lines.append(f"{state}; Kubernetes {mesh.kubernetes_version}, "
                         f"{mesh.provisioning_state}")
            capi = engine.ports.cluster_api(name)
            namespaces = [n for n in capi.list_namespaces() if not system_namespace(n.name)]
            per_rev = Counter(n.revision for n in namespaces if n.revision)
            pods = capi.list_pods([n.name for n in namespaces])
            per_version = Counter((p.revision, p.proxy_version) for p in pods if p.revision)
            lines.append("namespaces: " + (", ".join(f"{c} on {r}" for r, c in
                                                      sorted(per_rev.items())) or "none labelled"))
            lines.append("pods: " + (", ".join(f"{c} on {r} ({v})" for (r, v), c in
                                                sorted(per_version.items(), key=str))
                                      or "none with a sidecar"))
        except MeshopsError as exc:
            lines.append(f":warning: could not read the cluster: {exc}")
        active = engine.store.active_run(name)
        if active:
            run = engine.store.get(active, recent=0)
            lines.append(f"active run `{run.id}`: {run.phase.value.replace('_', ' ')}"
                         + (f", wave {run.wave_index} of {len(run.waves)}" if run.waves else ""))
            slack = engine.store.slack_state(run.id)
            if slack.get("error"):
                lines.append(
                    f":warning: Slack refused this run's messages in <#{run.channel}> "
                    f"({slack['error']}, since {_when(float(slack.get('error_at', 0)))}); the "
                    "run goes on without them. Invite the app to the channel (or fix the "
                    "channel in the fleet file); meshops tries again every 10 minutes.")
        recent = [r for r in engine.store.list_runs(name, limit=20) if r.phase.terminal][:3]
        if recent:
            lines.append("recent: " + ", ".join(
                f"`{r.id}` {r.phase.value} ({r.canary_revision})" for r in recent))
        if not active:
            lines.append("no active run")
        blocks.append("\n".join(lines))
    return _clip("\n\n".join(blocks))


def revisions_text(engine: Engine, cluster: str | None) -> str:
    """meshRevisionProfiles of each region, and each cluster's meshUpgradeProfiles."""
    names = [cluster] if cluster else sorted(engine.fleet.clusters)
    out, seen_regions = [], set()
    for name in names:
        cfg = engine.fleet.cluster(name)
        try:
            if cfg.location not in seen_regions:
                seen_regions.add(cfg.location)
                rows = engine.ports.mesh.revision_profiles(name)
                out.append(f"*Revisions in {cfg.location}*\n" + "\n".join(
                    f"`{r.revision}` Kubernetes {', '.join(r.kubernetes)}"
                    + (f"; upgrades to {', '.join(r.upgrades)}" if r.upgrades
                       else "; newest, no upgrade yet") for r in rows))
            mesh = engine.ports.mesh.get_mesh(name)
            targets = engine.ports.mesh.upgrade_targets(name) if mesh.mode == "Istio" else []
            out.append(f"*{name}* runs {', '.join(mesh.revisions) or 'no mesh'} on Kubernetes "
                       f"{mesh.kubernetes_version}; can upgrade to: "
                       f"{', '.join(f'`{t}`' for t in targets) or 'nothing now'}")
        except MeshopsError as exc:
            out.append(f"*{name}*: :warning: {exc}")
    return _clip("\n\n".join(out))


def plan_text(engine: Engine, cluster: str, revision: str, options: dict[str, object]) -> str:
    """The upgrade plan as ``upgrade`` would post it, computed without changing anything."""
    opts = engine.fleet.upgrade_options(cluster, options)
    th = engine.fleet.thresholds(cluster)
    try:
        mesh = engine.ports.mesh.get_mesh(cluster)
        targets = engine.ports.mesh.upgrade_targets(cluster) if mesh.mode == "Istio" else []
        stable = check_upgrade(mesh, revision, targets)
        capi = engine.ports.cluster_api(cluster)
        namespaces = capi.list_namespaces()
        workloads = capi.list_workloads([n.name for n in namespaces if n.revision == stable])
        plan = plan_waves(namespaces, workloads, stable, revision, opts)
        notes = plan_notes(capi, namespaces, [n for w in plan.waves for n in w.namespaces])
    except (PermanentError, InvalidRevision) as exc:
        return f":no_entry: No plan: {exc}"
    rollout_s = 60.0  # a typical restart of a wave; the deadline is rollout_deadline
    per_wave = opts.bake_s + opts.interval_s + rollout_s
    minutes = (len(plan.waves) * per_wave + 2 * 180) / 60
    lines = [f"*Plan (dry run, nothing changed)*: `{cluster}` {stable} → {revision}"]
    for w in plan.waves:
        lines.append(f"wave {w.index}{' (pilot)' if w.index == 0 else ''}: "
                     f"{', '.join(w.namespaces)} — {w.workloads} workloads")
    if plan.skipped:
        lines.append(f"not migrated (istio-injection=enabled is ignored by the add-on): "
                     f"{', '.join(plan.skipped)}")
    if notes:
        lines.append("handled other than by a rollout restart:")
        lines += [f"• {n}" for n in notes]
    lines.append("gate per wave: " + gate_summary(opts, th)
                 + (" An approval between waves." if opts.approve_waves else ""))
    metrics = engine.ports.metrics(cluster)
    sampling = sampling_note(opts.bake_s, opts.interval_s, metrics.scrape_interval_s)
    if sampling:
        lines.append(sampling)
    low = low_traffic_note(metrics, [w.namespaces for w in plan.waves], opts, th, time.time())
    if low:
        lines.append(low)
    lines.append(f"estimated duration: about {minutes:.0f} minutes, plus the approvals")
    return _clip("\n".join(lines))


def campaign_plan_text(fleet: Fleet, ports: ClusterPorts, revision: str | None,
                       end_of_support: Mapping[str, date | None], now: datetime) -> str:
    """``/mesh campaign plan [revision]``: every cluster of the fleet by stage, its path to
    the revision (proposed when not given) or why it cannot move, and its next window.
    Nothing changes."""
    if fleet.campaigns is None:
        return (":no_entry: The fleet file has no `campaigns:` section (its stages, channel "
                "and approvers).")
    stages = stage_specs(fleet)
    try:
        plan = plan_campaign(cluster_facts(fleet, ports), stages, revision, end_of_support, now)
    except (PermanentError, InvalidRevision) as exc:
        return f":no_entry: No campaign plan: {exc}"
    return _clip(campaign_text(plan, now))


def _support(revision: str, end_of_support: Mapping[str, date | None], today: date) -> str:
    """A revision's support as the release notes told it (AKS support policy)."""
    if revision not in end_of_support:
        return "supported"
    ends = end_of_support[revision]
    if ends is None:
        return ":warning: deprecated"
    if ends <= today:
        return f":warning: out of support since {ends.isoformat()}"
    return f":hourglass: support ends {ends.isoformat()} (in {(ends - today).days} d)"


def fleet_text(engine: Engine, end_of_support: Mapping[str, date | None], now: datetime
               ) -> str:
    """``/mesh fleet``: a line per cluster (:func:`cluster_lines`), the campaign in progress
    first. Reads only."""
    lines = fleet_summary(engine)
    lines += [f"• {line}" for line in cluster_lines(engine, end_of_support, now)]
    return _clip("\n".join(lines))


def fleet_summary(engine: Engine) -> list[str]:
    """The fleet's size, then the campaign in progress if there is one."""
    lines = [f"*Fleet*: {len(engine.fleet.clusters)} clusters"]
    campaign = engine.store.active_run(FLEET_SCOPE)
    if campaign:
        run = engine.store.get(campaign, recent=0)
        lines.append(f"campaign `{run.id}` {_title(run)}: *{run.phase.value.replace('_', ' ')}*")
    return lines


def cluster_lines(engine: Engine, end_of_support: Mapping[str, date | None], now: datetime
                  ) -> Iterator[str]:
    """One line per cluster of the fleet, by name, read as it is asked for (a caller that
    stops early reads no further cluster): its revisions and their support (end-of-support
    dates from the release notes), Kubernetes version, the revisions it can move to
    (``meshUpgradeProfiles``) and the newer ones of its region its Kubernetes version
    cannot run (``meshRevisionProfiles``' ``compatibleWith``), sidecars still on an older
    patch than their control plane, and the run on it. A cluster that cannot be read says
    why in its line."""
    fleet, ports, store = engine.fleet, engine.ports, engine.store
    profiles: dict[str, list[RevisionProfile]] = {}
    for name, cfg in sorted(fleet.clusters.items()):
        head = f"`{name}` ({cfg.location})"
        try:
            mesh = ports.mesh.get_mesh(name)
            k8s = ".".join(mesh.kubernetes_version.split(".")[:2])
            if mesh.mode != "Istio" or not mesh.revisions:
                yield f"{head}: mesh off; Kubernetes {mesh.kubernetes_version}"
                continue
            revs = "; ".join(f"{r} {_support(r, end_of_support, now.date())}"
                             for r in mesh.revisions)
            parts = [f"{revs}; Kubernetes {mesh.kubernetes_version}"]
            if len(mesh.revisions) == 1:
                targets = ports.mesh.upgrade_targets(name)
                if cfg.location not in profiles:
                    profiles[cfg.location] = ports.mesh.revision_profiles(name)
                newest = revision_minor(mesh.revisions[0])
                cannot = [f"{p.revision} (needs Kubernetes {p.kubernetes[0]}+)"
                          for p in profiles[cfg.location]
                          if revision_minor(p.revision) > newest and p.revision not in targets
                          and p.kubernetes and k8s not in p.kubernetes]
                parts.append("can move to " + (", ".join(targets) or "nothing now"))
                if cannot:
                    parts.append("not with its Kubernetes: " + ", ".join(cannot))
            capi = ports.cluster_api(name)
            versions = capi.control_plane_versions()
            labelled = [n.name for n in capi.list_namespaces() if n.revision]
            old = Counter(p.revision for p in capi.list_pods(labelled)
                          if p.revision in versions and p.proxy_version
                          and p.proxy_version != versions[p.revision])
            if old:
                parts.append("sidecars on an older patch: " + ", ".join(
                    f"{n} on {r} (control plane {versions[r]})" for r, n in sorted(old.items())))
        except MeshopsError as exc:
            yield f"{head}: :warning: {exc}"
            continue
        active = store.active_run(name)
        if active:
            run = store.get(active, recent=0)
            parts.append(f"run `{run.id}` {run.phase.value.replace('_', ' ')}")
        yield f"{head}: " + "; ".join(parts)


#: Slack's limits of a Home tab view (https://docs.slack.dev/reference/methods/views.publish,
#: https://docs.slack.dev/reference/block-kit/blocks/section-block)
MAX_HOME_BLOCKS = 100
MAX_SECTION_TEXT = 3000


def _section(text: str) -> dict[str, Any]:
    if len(text) > MAX_SECTION_TEXT:
        text = text[: MAX_SECTION_TEXT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def home_blocks(engine: Engine, end_of_support: Mapping[str, date | None], now: datetime
                ) -> list[dict[str, Any]]:
    """The App Home tab: what ``/mesh fleet`` shows, as Block Kit blocks for ``views.publish``.

    Args:
        end_of_support: revision → the date its support ends (None: deprecated), as the
            release notes said.
        now: the time shown as "Updated" (timezone-aware).

    Returns:
        A ``header`` "Mesh fleet", a section with the fleet's size and the campaign in
        progress, a section per cluster (:func:`cluster_lines`, each text at most 3,000
        characters), and a ``context`` with the time and the command that shows the same in
        a channel: at most 100 blocks (Slack's limit of a view), the clusters past it told as
        a last section "… N more clusters" (and not read).
    """
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Mesh fleet"}},
        _section("\n".join(fleet_summary(engine)))]
    ts = int(now.timestamp())
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"Updated <!date^{ts}^{{date_short_pretty}} at {{time}}|{_when(ts)}> · "
        f"`{engine.fleet.slack.command} fleet` for the same in a channel")}]}
    room = MAX_HOME_BLOCKS - len(blocks) - 1  # the context comes last
    total = len(engine.fleet.clusters)
    shown = room if total <= room else room - 1
    lines = cluster_lines(engine, end_of_support, now)
    for line in itertools.islice(lines, shown):
        blocks.append(_section(line))
    if total > shown:
        blocks.append(_section(f"… {total - shown} more clusters"))
    blocks.append(context)
    return blocks


def answer(engine: Engine, command_text: str, command_name: str = "/mesh", user: str = "",
           channel: str = "", enqueue_tick: Callable[[str, int], None] | None = None,
           end_of_support: Callable[[], Mapping[str, date | None]] | None = None
           ) -> str | None:
    """The answer to a slow read-only command, or None if ``command_text`` is not one.

    ``enqueue_tick(run_id, seq)`` schedules the first tick of a run started here (the
    rollover of ``inject --restart``); without it no run is started. ``end_of_support()``:
    the revisions the release notes say leave support, and when (a campaign never proposes
    them); without it, none is known.
    """
    from workflows.commands import (
        FleetView,
        Inject,
        Plan,
        PlanCampaign,
        Revisions,
        Status,
        parse,
    )

    try:
        cmd = parse(command_text, command_name)
        if isinstance(cmd, Inject):
            text = inject_text(engine, cmd.cluster, list(cmd.namespaces), cmd.remove)
            if cmd.restart and enqueue_tick and text.startswith(":white_check_mark:"):
                text += "\n" + restart_after_inject(engine, cmd.cluster, list(cmd.namespaces),
                                                    user, channel, enqueue_tick)
            return text
        if isinstance(cmd, Status):
            return status_text(engine, cmd.cluster)
        if isinstance(cmd, Revisions):
            return revisions_text(engine, cmd.cluster)
        if isinstance(cmd, Plan):
            return plan_text(engine, cmd.cluster, cmd.revision, dict(cmd.options))
        if isinstance(cmd, FleetView):
            return fleet_text(engine, end_of_support() if end_of_support else {},
                              datetime.now(UTC))
        if isinstance(cmd, PlanCampaign):
            return campaign_plan_text(engine.fleet, engine.ports, cmd.revision,
                                      end_of_support() if end_of_support else {},
                                      datetime.now(UTC))
    except MeshopsError as exc:
        return f":warning: {exc}"
    return None


def inject_text(engine: Engine, cluster: str, namespaces: list[str], remove: bool) -> str:
    """Label namespaces ``istio.io/rev=<the cluster's revision>`` (dropping
    ``istio-injection``, which the add-on ignores), or remove the label. Refused during an
    upgrade, for system namespaces, for namespaces that do not exist, with the mesh off.
    New pods get the sidecar; running ones keep what they have until they restart."""
    from workflows.model import system_namespace

    active = engine.store.active_run(cluster)
    if active:
        return (f":no_entry: Run `{active}` is acting on `{cluster}`; change injection when it "
                "has ended. Nothing changed.")
    system = [ns for ns in namespaces if system_namespace(ns)]
    if system:
        return (f":no_entry: {', '.join(system)}: system namespaces never get sidecars. "
                "Nothing changed.")
    mesh = engine.ports.mesh.get_mesh(cluster)
    if mesh.mode != "Istio" or len(mesh.revisions) != 1:
        return (f":no_entry: `{cluster}` runs {', '.join(mesh.revisions) or 'no mesh'}; "
                "injection needs exactly one revision. Nothing changed.")
    capi = engine.ports.cluster_api(cluster)
    existing = {n.name: n for n in capi.list_namespaces()}
    missing = [ns for ns in namespaces if ns not in existing]
    if missing:
        return (f":no_entry: No namespace {', '.join(missing)} on `{cluster}`. "
                "Nothing changed.")
    revision = mesh.revisions[0]
    for ns in namespaces:
        if remove:
            if existing[ns].revision is not None:
                capi.remove_namespace_revision(ns)
        elif existing[ns].revision != revision:
            capi.set_namespace_revision(ns, revision)
    verb = "no longer injected" if remove else f"labelled istio.io/rev={revision}"
    return (f":white_check_mark: {', '.join(namespaces)} on `{cluster}`: {verb}. Restart their "
            "workloads for running pods to follow.")


def restart_after_inject(engine: Engine, cluster: str, namespaces: list[str], user: str,
                         channel: str, enqueue_tick: Callable[[str, int], None]) -> str:
    """Start a rollover run over the injected namespaces only: one namespace a wave, behind
    the metric gate, approved like an upgrade; ``enqueue_tick`` schedules its first tick."""
    revision = engine.ports.mesh.get_mesh(cluster).revisions[0]
    run = engine.start(StartRun("rollover", cluster, revision,
                                {"only": namespaces, "wave_size": 1}), user, channel)
    enqueue_tick(run.id, run.seq)
    return (f"Restarting their workloads in waves as run `{run.id}`; the plan will be posted "
            f"in <#{run.channel}> for an approver.")
