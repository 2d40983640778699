"""The Celery app and its tasks: thin, each takes a run id, never an object.

- ``meshops.tick(run_id, seq)``: one step of a run; schedules the next with a countdown
  (a step never sleeps) and asks for a Slack sync when the history grew.
- ``meshops.notify(run_id)``: bring Slack up to date with the stored run, within the
  workspace's Slack budget: when it must wait (or Slack answered 429) it re-schedules
  itself with a countdown, once per run however many syncs were asked for meanwhile.
- ``meshops.sweep()`` (beat, every 5 s): expire approval requests that waited too long;
  re-enqueue runs whose next tick is overdue, which is how a run goes on after its worker
  was killed (``acks_late`` also redelivers, but only after the broker's visibility
  timeout); re-sync Slack for runs it has not caught up with.
- ``meshops.resume()`` (once a worker is ready to consume, Celery's ``worker_ready``): a
  worker that starts, after a crash or a deploy, takes up at once what the one before
  dropped: a tick for every run waiting for one (now when due, else at its time, within
  ``RESUME_HORIZON_S``) and a Slack sync for every run Slack has not caught up with,
  rather than after the sweep's grace. A tick still held by a live worker meets its
  twin's saved seq and changes nothing, as any stale tick.
- ``meshops.home(user_id)``: publish a person's App Home tab, the fleet at a glance, when
  they open it (``views.publish``).
- ``meshops.form(form, view_id, user, cluster, private_metadata, fill)``: fill in what an
  open form (``/mesh upgrade`` or ``/mesh campaign`` without arguments) needs from ARM
  (``views.update``).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import structlog
from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from redis.exceptions import LockError, RedisError
from structlog.contextvars import bind_contextvars, unbind_contextvars

from workers.apierrors import counted_slack_client
from workers.campaigns import EngineCampaigns
from workers.config import Fleet, load_fleet, settings
from workers.engine import Engine
from workers.github.feed import ReleaseFeed
from workers.health import HealthProbe, HealthServer
from workers.heap import freeze_heap
from workers.kube.follow import follower
from workers.metrics import RunMetrics
from workers.prom.cache import RedisWindowCache
from workers.retry_after import retry_after_s
from workers.slack.budget import SlackBudget
from workers.slack.charts import close_chart_interpreter
from workers.slack.client import make_client
from workers.slack.errors import (
    SlackOverBudget,
    SlackRateLimited,
    translate_slack_error,
)
from workers.slack.notifier import BudgetedSlack, SlackNotifier
from workers.store.connect import celery_broker
from workers.store.lock import RenewedLock
from workers.store.runs import RedisRunStore
from workers.views import answer, home_blocks
from workers.watcher import Watcher, end_of_support, event_key, pushed_events
from workers.wiring import FleetPorts, build_engine
from workflows.errors import PermanentError, RunBusy, RunNotFound, TemporaryError
from workflows.kind import StartRun
from workflows.model import POLICY_REQUESTER, Run
from workflows.ports import Workload
from workflows.releases import ReleaseEvent

log = structlog.get_logger("meshops.worker")

PREFIX = os.environ.get("MESHOPS_REDIS_PREFIX", "meshops")

app = Celery("meshops")
app.conf.update(
    # the broker: plain, TLS (rediss://) or Sentinel, on kombu's Redis transport made to
    # outlive a Redis restart; every key under our prefix, so several deployments (or test
    # runs) share a Redis (workers/store/connect.py, workers/tasks/broker.py)
    **celery_broker(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                    f"{PREFIX}:kombu:"),
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=PREFIX,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # a step that hangs despite every client timeout is stopped (soft: an exception the
    # task logs; hard: the pool process is replaced); the sweep re-enqueues the run
    task_soft_time_limit=120,
    task_time_limit=150,
    beat_schedule={"meshops-sweep": {"task": "meshops.sweep", "schedule": 5.0},
                   "meshops-releases": {"task": "meshops.watch_releases", "schedule": 5.0}},
    timezone="UTC",
    # beat stamps each tick for its liveness probe and the metrics (workers/tasks/beat.py)
    beat_scheduler="workers.tasks.beat:HeartbeatScheduler",
)
# /livez, /readyz and /metrics on MESHOPS_HEALTH_PORT (workers/health.py)
app.steps["worker"].add(HealthServer)
app.steps["consumer"].add(HealthProbe)


class Context:
    """What a worker process needs, built once per process from the environment; its
    engine is built like the bot's (:func:`workers.wiring.build_engine`)."""

    def __init__(self) -> None:
        env = settings()
        self.fleet: Fleet = load_fleet(env.meshops_fleet)
        self.store = RedisRunStore.from_url(env.redis_url, env.meshops_redis_prefix)
        # Slack's errors counted by code for /metrics (workers/apierrors.py); a 429 is
        # not slept on in the worker: the sync re-schedules itself (notify_task)
        client = counted_slack_client(make_client(env.slack_bot_token,
                                                  self.fleet.slack.api_url,
                                                  rate_limit_wait_s=0),
                                      RunMetrics(self.store.r, self.store.p))
        # the looks of a bake go to whichever pool process is free: their windows are
        # shared through Redis, so each look reads only what is newer from Prometheus
        self.ports = FleetPorts(self.fleet, window_cache=RedisWindowCache(self.store.r,
                                                                          self.store.p))
        self.engine: Engine = build_engine(env, self.fleet, client, store=self.store,
                                           ports=self.ports)
        # what a campaign's steps reach through ports.campaign (workflows/kinds/campaign.py):
        # the runs it starts and decides on are scheduled like anyone's
        self.ports.campaign = EngineCampaigns(
            self.engine, lambda: end_of_support(self.store.r, self.store.p),
            lambda run_id, seq: enqueue_tick(run_id, seq), lambda run_id: enqueue_notify(run_id))
        self.notifier = SlackNotifier(client, self.store,
                                      lambda c: self.fleet.access(c).approvers,
                                      audit=self.engine.audit,
                                      budget=SlackBudget(self.store.r, self.store.p,
                                                         env.slack_bot_token))


@cache
def context() -> Context:
    ctx = Context()
    # what the process keeps is built: full collections need not walk it again (its
    # clients and fleet; the modules were frozen before the fork: workers.heap)
    freeze_heap(collect=False)
    return ctx


@worker_init.connect
def _freeze_before_fork(**_: Any) -> None:
    """The worker's main process, before it forks its pool: what is imported is frozen
    once, and no child's collection walks it (nor writes to its pages: the Python
    documentation's advice for a fork without exec, :func:`gc.freeze`)."""
    log.info("worker.heap_frozen", objects=freeze_heap())


@worker_process_init.connect
def _fresh_context(**_: Any) -> None:
    context.cache_clear()  # clients must not be shared across a fork


@worker_process_shutdown.connect
def _on_process_exit(pid: int | None = None, exitcode: int | None = None, **_: Any) -> None:
    """A pool process' last acts, in that process: its chart interpreter stopped and reaped
    (:func:`close_chart_interpreter`), and a line with its peak resident set (``ru_maxrss``,
    KiB on Linux), so a process replaced for passing ``--max-memory-per-child``
    (:mod:`workers.heap`) leaves its peak in the log."""
    close_chart_interpreter()
    log.info("worker.process_exit", pid=pid, exitcode=exitcode,
             peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


RUN_TASKS = frozenset({"meshops.tick", "meshops.notify"})  # their first argument: a run id


@task_prerun.connect
def _bind_run(task: Any = None, args: Any = None, **_: Any) -> None:
    """Every line logged while a run's task runs (Celery's own too) carries its run_id;
    the engine and notify add the cluster once they have read the run."""
    if task is not None and task.name in RUN_TASKS and args:
        bind_contextvars(run_id=str(args[0]))


@task_postrun.connect
def _unbind_run(**_: Any) -> None:
    unbind_contextvars("run_id", "cluster")


#: steps one tick takes in a row while each asks for the next at once (``recheck_after``
#: 0: the canary control plane found deployed, its istiod available, then the first wave's
#: baseline, label and restart; the next wave after a gate PASS). Each is
#: saved before the next, as separate ticks are, so a worker killed between two leaves
#: the run where the last save put it; taking them here spares each a trip through the
#: queue behind every other run's tick (about 3 s a trip at 30 runs on two cores, issue
#: 13), as a controller's reconcile loop goes on while it has work. Bounded, so one run
#: cannot keep a worker process from the others.
CHAINED_STEPS = 6
#: a tick that found its run locked tries again after this long, doubling each time it
#: finds it locked again (s): a step or a decision holds the lock for milliseconds to
#: seconds, and a tick of a stale seq that meets a free lock leaves at once
LOCKED_TICK_RETRY_S = 0.5
MAX_LOCKED_TICK_RETRY_S = 8.0


@app.task(name="meshops.tick")
def tick_task(run_id: str, seq: int, busy: int = 0) -> None:
    """``busy``: how many times in a row this tick found the run locked."""
    ctx = context()
    last = None  # the last step taken
    logged = False
    try:
        for _ in range(CHAINED_STEPS):
            advanced = ctx.engine.advance(run_id, seq if last is None else last.run.seq)
            if advanced is None:  # stale: whoever moved it schedules it
                break
            last, logged = advanced, logged or advanced.logged
            if advanced.recheck_after != 0:
                break
    except RunBusy:
        # the holder may be a stale tick that leaves at once, or a decision whose own tick
        # met this lock in turn: dropping this one could leave the run with no tick until
        # the sweep's grace (seen: a campaign's "complete" and a stale tick, 18 s lost)
        if last is None:
            tick_task.apply_async((run_id, seq), {"busy": busy + 1},
                                  countdown=min(LOCKED_TICK_RETRY_S * 2 ** busy,
                                                MAX_LOCKED_TICK_RETRY_S))
    except RunNotFound:
        log.warning("tick.unknown_run", run_id=run_id)
        return
    finally:
        # a chained step that raised leaves the run saved as the step before it left it
        # (due at once: the sweep ticks it); its lines are shown meanwhile
        if logged and last is not None:
            notify_task.delay(run_id)
            nudge_campaign(ctx, last.run)
    if last is not None and last.recheck_after is not None:
        # as after any step: a tick of the seq saved (stale, and so harmless, when a
        # decision or another tick moved the run meanwhile), when the step asked for it:
        # ``recheck_after`` counts from the step's start, and a look that took 0.5 s at
        # fleet load would otherwise push every later look of its bake 0.5 s back
        due = last.run.next_tick_at
        countdown = max(0.0, due - time.time()) if due is not None else last.recheck_after
        tick_task.apply_async((run_id, last.run.seq), countdown=countdown)
        if last.wake:
            follow_rollouts(ctx, last.run, last.wake, countdown)


def follow_rollouts(ctx: Context, run: Run, workloads: tuple[Workload, ...],
                    recheck_after: float) -> None:
    """Watch the workloads ``run`` waits for and tick it as soon as they are rolled out,
    before its recheck (:mod:`workers.kube.follow`); the recheck stays scheduled. The tick
    is of the seq saved now: stale, and harmless, once anything else moved the run."""
    run_id, seq = run.id, run.seq

    def wake() -> None:
        log.info("follow.settled", run_id=run_id, seq=seq)
        tick_task.delay(run_id, seq)

    try:
        follower().follow(run_id, ctx.ports.cluster_api(run.cluster), workloads, recheck_after,
                          wake)
    except (PermanentError, TemporaryError) as exc:  # no client for the cluster: the recheck
        log.info("follow.not_started", run_id=run_id, error=str(exc)[:200])


def nudge_campaign(ctx: Context, run: Run) -> None:
    """A campaign's cluster run that just ended or began waiting for a person: tick the
    campaign now rather than at its next look, so the next cluster starts at once."""
    parent = run.params.get("campaign")
    if not parent or not (run.phase.terminal or run.phase.waiting_for_person):
        return
    try:
        campaign = ctx.store.get(str(parent), recent=0)
    except RunNotFound:
        return
    if not campaign.phase.terminal and not campaign.phase.waiting_for_person:
        tick_task.delay(campaign.id, campaign.seq)


NOTIFY_RETRY_S = 5.0  # the least wait before a Slack sync is tried again
LOCKED_SYNC_RETRY_S = 1.0  # a sync that found another one of the same run running


def defer_notify(ctx: Context, run_id: str, wait_s: float) -> bool:
    """Schedule the run's Slack sync ``wait_s`` seconds from now, unless one is already
    scheduled: syncs asked for meanwhile come to one (it shows the run as it is then).

    Returns:
        True when this call scheduled it.
    """
    key = ctx.store.key("notify-deferred", run_id)
    # the marker outlives the countdown a little; a sync lost with its worker is picked
    # up by the sweep (the run stays unsynced)
    if not ctx.store.r.set(key, f"{wait_s:.3f}", nx=True, px=int((wait_s + 30) * 1000)):
        return False
    notify_task.apply_async((run_id,), {"deferred": True}, countdown=wait_s)
    return True


def sync_scheduled(ctx: Context, run_ids: list[str]) -> list[bool]:
    """Whether each run has a Slack sync scheduled by :func:`defer_notify` (its marker
    stands), in one round trip; all False when Redis does not answer (the sweep then
    enqueues them, as it did before there were markers)."""
    if not run_ids:
        return []
    try:
        pipe = ctx.store.r.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.exists(ctx.store.key("notify-deferred", run_id))
        return [bool(n) for n in pipe.execute()]
    except RedisError as exc:
        log.warning("sweep.sync_markers_unread", error=str(exc)[:200])
        return [False] * len(run_ids)


@app.task(name="meshops.notify", bind=True, max_retries=12)
def notify_task(self: Any, run_id: str, deferred: bool = False) -> None:
    ctx = context()
    if deferred:
        ctx.store.r.delete(ctx.store.key("notify-deferred", run_id))
    # one sync of a run at a time; never waited for in the worker (two waiting syncs would
    # hold both processes), and freed within seconds of a holder killed mid-sync (renewed,
    # short-lived): a sync that finds it held comes back shortly, as a 429 does
    lock = RenewedLock(ctx.store.r, ctx.store.key("notify-lock", run_id))
    if not lock.acquire(blocking=False):
        scheduled = defer_notify(ctx, run_id, LOCKED_SYNC_RETRY_S)
        log.info("notify.deferred", run_id=run_id, wait_s=LOCKED_SYNC_RETRY_S,
                 scheduled=scheduled, reason="another sync of the run is running")
        return
    try:
        run = ctx.notifier.read(run_id)  # what is new, not the whole run
        bind_contextvars(cluster=run.cluster)
        ctx.notifier.sync(run)
    except (SlackOverBudget, SlackRateLimited) as exc:
        # Slack's budget (or Slack's 429) says wait: no sleeping in the worker, and no
        # retry counted; a sync already scheduled will show this run's news too
        scheduled = defer_notify(ctx, run_id, max(exc.delay_s, 0.05))
        log.info("notify.deferred", run_id=run_id, wait_s=round(exc.delay_s, 2),
                 scheduled=scheduled, reason=type(exc).__name__)
    except TemporaryError as exc:
        log.warning("notify.retry", run_id=run_id, error=str(exc))
        # Slack's Retry-After when it gave one, at least 5 s, growing with each attempt
        wait = max(exc.delay_s, NOTIFY_RETRY_S) * (self.request.retries + 1)
        raise self.retry(countdown=min(60, wait)) from exc
    finally:
        try:
            lock.release()
        except LockError:  # expired while we worked (paused past its TTL): nothing to free
            log.warning("notify.lock_expired", run_id=run_id)


@app.task(name="meshops.answer", bind=True, max_retries=3)
def answer_task(self: Any, command_text: str, response_url: str, user: str = "",
                channel: str = "") -> None:
    """Answer a slow read-only command (status, revisions, plan, campaign plan) through its
    response_url."""
    from slack_sdk.webhook import WebhookClient

    ctx = context()
    text = answer(ctx.engine, command_text, ctx.fleet.slack.command, user, channel,
                  enqueue_tick, lambda: end_of_support(ctx.store.r, ctx.store.p))
    if text is None:
        return
    try:
        resp = WebhookClient(response_url).send(text=text, response_type="ephemeral",
                                                replace_original=False)
    except OSError as exc:  # no answer from Slack: try again
        log.warning("answer.retry", error=str(translate_slack_error(exc, "response_url")))
        raise self.retry(countdown=5) from exc
    if resp.status_code >= 500 or resp.status_code == 429:
        raise self.retry(countdown=max(5.0, retry_after_s(resp.headers or {})))
    if resp.status_code != 200:
        log.warning("answer.refused", status=resp.status_code, body=resp.body[:200])


@app.task(name="meshops.respond", bind=True, max_retries=3)
def respond_task(self: Any, response_url: str, text: str) -> None:
    """Tell a person, through their click's or command's response_url, what became of a
    decision applied later (it was queued while its run was busy)."""
    from slack_sdk.webhook import WebhookClient

    try:
        resp = WebhookClient(response_url).send(text=text, response_type="ephemeral",
                                                replace_original=False)
    except OSError as exc:
        raise self.retry(countdown=5) from exc
    if resp.status_code >= 500 or resp.status_code == 429:
        raise self.retry(countdown=max(5.0, retry_after_s(resp.headers or {})))


def enqueue_answer(command_text: str, response_url: str, user: str = "",
                   channel: str = "") -> None:
    answer_task.delay(command_text, response_url, user, channel)


HOME_RETRY_S = 5.0  # the least wait before a Home tab Slack could not take is tried again


@app.task(name="meshops.home", bind=True, max_retries=3)
def home_task(self: Any, user_id: str) -> None:
    """Publish ``user_id``'s App Home tab: the fleet at a glance
    (:func:`workers.views.home_blocks`) through ``views.publish``
    (https://docs.slack.dev/reference/methods/views.publish). Slack down or a 429: tried
    again after its ``Retry-After`` (5 s at least); any other refusal is logged and dropped,
    as the answer to a command is."""
    ctx = context()
    blocks = cached_home_blocks(ctx)
    try:
        ctx.notifier.call("views_publish", who=user_id, user_id=user_id,
                          view={"type": "home", "blocks": blocks})
    except TemporaryError as exc:  # over the workspace's budget, a 429, Slack down
        log.warning("home.retry", user=user_id, error=str(exc))
        raise self.retry(countdown=max(HOME_RETRY_S, exc.delay_s)) from exc
    except PermanentError as exc:
        log.warning("home.refused", user=user_id, error=str(exc))
        return
    log.info("home.published", user=user_id, blocks=len(blocks))


#: how long the Home tab's fleet is reused (s): people opening the tab within it cost no
#: ARM reads (each tab reads every cluster's mesh and upgrades)
HOME_CACHE_S = 60


def cached_home_blocks(ctx: Any) -> list[dict[str, Any]]:
    """The Home tab's blocks (:func:`workers.views.home_blocks`), the same for everyone,
    built at most once every :data:`HOME_CACHE_S` by any worker (kept in Redis; Redis not
    answering builds them anew)."""
    key = f"{ctx.store.p}:home:blocks"
    try:
        cached = ctx.store.r.get(key)
        if cached:
            return list(json.loads(cached))
    except RedisError:
        cached = None
    blocks = home_blocks(ctx.engine, end_of_support(ctx.store.r, ctx.store.p),
                         datetime.now(UTC))
    try:
        ctx.store.r.set(key, json.dumps(blocks), ex=HOME_CACHE_S)
    except RedisError:
        pass
    return blocks


def enqueue_home(user_id: str) -> None:
    home_task.delay(user_id)


@app.task(name="meshops.form", bind=True, max_retries=3)
def form_task(self: Any, form: str, view_id: str, user: str, cluster: str,
              private_metadata: str, fill: int = 0) -> None:
    """Fill in an open form from ARM (:mod:`workers.forms`) and show it with
    ``views.update`` (https://docs.slack.dev/reference/methods/views.update), unless the
    person asked for a later fill meanwhile (:class:`workers.forms.FormFills`). Slack down
    or a 429: tried again after its ``Retry-After``; a modal already closed (``not_found``)
    or any other refusal is logged and dropped."""
    from workers.forms import UPGRADE_FORM, FormFills, Origin, campaign_fill, upgrade_fill

    ctx = context()
    fills = FormFills(ctx.store.r, ctx.store.p)
    origin = Origin.load(private_metadata)
    if form == UPGRADE_FORM:
        view = upgrade_fill(ctx.engine, user, cluster, origin)
    else:
        view = campaign_fill(ctx.engine, user, origin,
                             end_of_support(ctx.store.r, ctx.store.p), datetime.now(UTC).date())
    if not fills.is_latest(view_id, fill):
        log.info("form.superseded", view_id=view_id, fill=fill)
        return
    try:
        ctx.notifier.call("views_update", who=view_id, view_id=view_id, view=view)
    except TemporaryError as exc:  # over the workspace's budget, a 429, Slack down
        # a modal is looked at now: wait the budget's time, not HOME_RETRY_S
        raise self.retry(countdown=max(1.0, exc.delay_s)) from exc
    except PermanentError as exc:  # not_found: the person closed it meanwhile
        log.info("form.not_updated", view_id=view_id, error=str(exc))
        return
    log.info("form.filled", form=form, view_id=view_id, cluster=cluster)


def enqueue_form(form: str, view_id: str, user: str, cluster: str, private_metadata: str,
                 fill: int = 0) -> None:
    form_task.delay(form, view_id, user, cluster, private_metadata, fill)


SYNC_RETRY_S = 20.0  # a run Slack has not caught up with is synced again this often


@app.task(name="meshops.sweep")
def sweep_task() -> None:
    """Re-enqueue overdue runs, and Slack syncs that did not finish (Slack was down)."""
    ctx = context()
    for entry, applied, refusal in ctx.engine.apply_queued():  # clicks taken while busy
        if applied is not None:
            if not applied.phase.waiting_for_person and not applied.phase.terminal:
                tick_task.delay(applied.id, applied.seq)
            notify_task.delay(applied.id)
        elif entry.get("respond_to"):
            respond_task.delay(entry["respond_to"], f":warning: {refusal}")
    for run in ctx.engine.expire_due():
        if not run.phase.waiting_for_person and not run.phase.terminal:
            tick_task.delay(run.id, run.seq)
        notify_task.delay(run.id)
    for run in ctx.engine.overdue():
        log.info("sweep.reenqueue", run_id=run.id, cluster=run.cluster, seq=run.seq)
        tick_task.delay(run.id, run.seq)
    stale = ctx.store.unsynced(time.time() - SYNC_RETRY_S)
    for run_id, scheduled in zip(stale, sync_scheduled(ctx, stale), strict=True):
        # a sync already scheduled (Slack's budget or a 429 said when) shows the run then;
        # one more now would only be deferred to it, and at fleet load, when the budget
        # holds many runs' updates for tens of seconds, those would fill the pool every
        # sweep. Its marker outlives its countdown by 30 s: a sync lost with its worker
        # is taken up here after that.
        if not scheduled:
            log.info("sweep.resync", run_id=run_id)
            notify_task.delay(run_id)


#: runs due within this long (s) get their tick from :func:`resume_task`; a later one is
#: left to the sweep: an ETA further out than the broker's visibility timeout (600 s) is
#: delivered again each time it passes (Celery docs "Using Redis": visibility timeout)
RESUME_HORIZON_S = 300.0


@app.task(name="meshops.resume")
def resume_task() -> None:
    """Tick every run waiting for a tick and sync every unsynced run, without the sweep's
    grace: the ticks and syncs held by a worker that died (its ETA tasks and those it had
    taken, which the broker gives back only after its visibility timeout) are lost."""
    ctx = context()
    now = time.time()
    for run in ctx.engine.scheduled():
        assert run.next_tick_at is not None
        if run.next_tick_at > now + RESUME_HORIZON_S:
            continue  # the sweep takes it up 15 s after its time, as before
        log.info("resume.tick", run_id=run.id, cluster=run.cluster, seq=run.seq,
                 due_in_s=round(run.next_tick_at - now, 3))
        tick_task.apply_async((run.id, run.seq), countdown=max(0.0, run.next_tick_at - now))
    for run_id in ctx.store.unsynced(now):
        notify_task.delay(run_id)


@worker_ready.connect
def _resume_on_start(sender: Any = None, **_: Any) -> None:
    """Ask for :func:`resume_task` once this worker consumes (in its main process, which
    only publishes: Redis away is logged, and the sweep does the same after its grace)."""
    try:
        resume_task.delay()
    except Exception as exc:  # noqa: BLE001 - a worker must start whatever the broker says
        log.warning("resume.not_asked", error=str(exc))


def watcher(ctx: Context) -> Watcher:
    env = settings()
    rel = ctx.fleet.releases
    feed = ReleaseFeed(ctx.store.r, ctx.store.p, rel.feed_url, rel.changelog_url,
                       env.github_token or None)
    # the engine's ports: their API errors are counted (workers/apierrors.py)
    return Watcher(ctx.fleet, ctx.store.r, ctx.store.p, ctx.engine.ports.mesh,
                   BudgetedSlack(ctx.notifier), feed, clusters=ctx.engine.ports.cluster_api,
                   start_run=partial(start_policy_run, ctx))


def start_policy_run(ctx: Context, request: StartRun, channel: str) -> Run:
    """A run the fleet file's ``auto`` policy starts (the watcher's ``start_run``): started
    as ``POLICY_REQUESTER``, its first tick and its Slack message scheduled as after a
    person's command. Raises what ``Engine.start`` raises (``ClusterBusy``…)."""
    run = ctx.engine.start(request, POLICY_REQUESTER, channel)
    enqueue_tick(run.id, run.seq)
    enqueue_notify(run.id)
    return run


@app.task(name="meshops.watch_releases")
def watch_releases_task() -> None:
    """Poll the release notes and ARM when the configured interval has passed."""
    ctx = context()
    rel = ctx.fleet.releases
    if not rel.enabled:
        return
    key = ctx.store.key("releases", "next_poll")
    # one poll per interval across every worker and beat restart
    if not ctx.store.r.set(key, "1", nx=True, px=int(rel.interval * 1000)):
        return
    run_watcher(ctx)


#: the soonest the watcher polls again after Slack could not take a notice (s), doubled at
#: each poll in a row that could not (beat sends the watch every 5 s; each poll reads ARM
#: for every cluster an event concerns: an outage must not turn into ARM's throttling)
NOTICE_RETRY_S = 5.0
#: the watcher's lock's time to live (s), renewed while the poll runs (a big fleet's poll
#: reads ARM for every cluster of every event): a killed poller frees it within this
WATCH_LOCK_S = 60.0


def run_watcher(ctx: Context, pushed: list[ReleaseEvent] | None = None) -> None:
    """One poll of the watcher (or the ``pushed`` events), one worker at a time: a push and
    a poll in two workers would both post the same kept events. ``pushed`` events are kept
    first, so a push that finds another poll running is posted by the next one."""
    w = watcher(ctx)
    if pushed:
        w.keep([(event_key(e), e) for e in pushed])
    lock = RenewedLock(ctx.store.r, ctx.store.key("releases", "lock"), ttl_s=WATCH_LOCK_S)
    if not lock.acquire(blocking=False):
        poll_soon(ctx, TemporaryError("another worker is posting release notices"),
                  backoff=False)
        return
    w.holds = lock.held  # each notice posted under the lock, or not at all
    try:
        new, channels = w.run_once(pushed=pushed)
    except TemporaryError as exc:
        poll_soon(ctx, exc)
        return
    finally:
        try:
            lock.release()
        except (LockError, TemporaryError):  # lost, or Redis away: it expires by itself
            pass
    ctx.store.r.delete(ctx.store.key("releases", "retries"))
    if new:
        log.info("releases.polled", events=len(new), channels=len(channels))


def poll_soon(ctx: Context, exc: TemporaryError, backoff: bool = True) -> None:
    """Slack could not take a notice now (or, ``backoff`` False, another poll runs): the
    watcher kept what it did not post, and the next poll comes when Slack said it could
    take more, at least :data:`NOTICE_RETRY_S` doubled for each poll in a row that could
    not, at most the interval; not a whole interval later."""
    interval = ctx.fleet.releases.interval
    retries = ctx.store.key("releases", "retries")
    n = 1
    if backoff:
        n = int(ctx.store.r.incr(retries))
        ctx.store.r.expire(retries, int(4 * interval) + 60)
    wait_s = min(max(NOTICE_RETRY_S * 2 ** min(n - 1, 16), exc.delay_s), interval)
    ctx.store.r.set(ctx.store.key("releases", "next_poll"), "1", px=int(wait_s * 1000))
    log.warning("releases.notices_deferred", error=str(exc)[:200], retry_in_s=wait_s)


@app.task(name="meshops.push_release")
def push_release_task(body: str) -> None:
    """A release pushed by a relay (already verified by the bot's endpoint)."""
    run_watcher(context(), pushed_events(body.encode()))


def enqueue_push(body: str) -> None:
    push_release_task.delay(body)


def enqueue_tick(run_id: str, seq: int) -> None:
    tick_task.delay(run_id, seq)


def enqueue_notify(run_id: str) -> None:
    notify_task.delay(run_id)


logging.getLogger("azure").setLevel(logging.WARNING)
