"""The App Home tab (issue 14): the bot acks ``app_home_opened`` at once and has a worker
publish the fleet at a glance; the worker's ``meshops.home`` task builds it from what
``/mesh fleet`` shows and publishes it with ``views.publish`` on the sandbox's Slack."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot.app import create_app
from sandbox.slack import SlackEmulator
from tests.bot.test_payloads import SECRET, dispatch, slack  # noqa: F401
from tests.conftest import REDIS_URL, ROOT, eventually
from tests.core.fakes import FakeWorld
from workers.config import load_fleet
from workers.engine import Engine
from workers.slack.budget import SlackBudget
from workers.slack.client import make_client
from workers.slack.notifier import SlackNotifier
from workers.store.runs import RedisRunStore
from workers.views import fleet_text, home_blocks
from workers.wiring import FleetPorts
from workflows.kind import StartRun

USER = "U0AAAAAAA"


class World(FakeWorld):
    """The in-memory world, with the control planes' patch versions ``/mesh fleet`` reads,
    counting the clusters read."""

    reads: int = 0

    def get_mesh(self, cluster: str) -> Any:
        self.reads += 1
        return super().get_mesh(cluster)

    def control_plane_versions(self) -> dict[str, str]:
        return {r: "1.25.2" for r in self.revisions}


def app_home_opened(tab: str = "home", user: str = USER) -> str:
    """An Events API request as Slack posts it (application/json)."""
    return json.dumps({
        "token": "verification-token", "team_id": "T0123456789", "api_app_id": "A0123456789",
        "type": "event_callback", "event_id": "Ev0123456789", "event_time": 1764748800,
        "event": {"type": "app_home_opened", "user": user, "channel": "D0123456789",
                  "tab": tab, "event_ts": "1764748800.000100"}})


def app_for(prefix: str, api_url: str):  # type: ignore[no-untyped-def]
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    homes: list[str] = []
    app = create_app(fleet, Engine(fleet, store, FleetPorts(fleet)),
                     WebClient(token="xoxb-test", base_url=api_url), SECRET,
                     lambda run_id, seq: None, lambda run_id: None, lambda *args: None,
                     homes.append)
    return app, store, homes


def forget(store: RedisRunStore) -> None:
    keys = list(store.r.scan_iter(store.p + "*"))
    if keys:
        store.r.delete(*keys)


def test_opening_the_home_tab_is_acked_and_published_by_a_worker(prefix: str, slack) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    app, store, homes = app_for(prefix, slack.base_url + "/api/")
    try:
        resp = dispatch(app, app_home_opened(), content_type="application/json")
        assert resp.status == 200  # type: ignore[attr-defined]
        assert eventually(lambda: homes) == [USER]  # enqueued after the answer
        # the Messages tab asks nothing of meshops
        resp = dispatch(app, app_home_opened(tab="messages"), content_type="application/json")
        assert resp.status == 200  # type: ignore[attr-defined]
        # an unsigned one is refused before any listener
        unsigned = app.dispatch(BoltRequest(body=app_home_opened(), headers={
            "content-type": ["application/json"]}))
        assert unsigned.status == 401
        dispatch(app, app_home_opened(user="U0ZOE00001"), content_type="application/json")
        assert eventually(lambda: len(homes) == 2 and homes) == [USER, "U0ZOE00001"]
        assert slack.homes == {}  # the bot publishes nothing itself
    finally:
        forget(store)


def engine_for(prefix: str) -> tuple[Engine, World]:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    world = cast(World, World.seeded(["a", "b"]))
    world.pod_versions = {("a", "app0"): "1.25.1"}
    store = RedisRunStore.from_url(REDIS_URL, prefix)
    return Engine(fleet, store, world), world  # type: ignore[arg-type]  # the fake's ports


def sections(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


def test_the_home_tab_shows_what_mesh_fleet_shows(prefix: str) -> None:
    engine, _ = engine_for(prefix)
    try:
        now = datetime(2026, 12, 3, tzinfo=UTC)
        ends = {"asm-1-25": datetime(2027, 1, 1).date()}
        run = engine.start(StartRun("upgrade", "dev-weu", "asm-1-26"), USER, "C0987654321")
        blocks = home_blocks(engine, ends, now)
        assert blocks[0] == {"type": "header",
                             "text": {"type": "plain_text", "text": "Mesh fleet"}}
        summary, *clusters = sections(blocks)
        assert summary == "*Fleet*: 2 clusters"
        # the same lines as /mesh fleet, one section each
        text = fleet_text(engine, ends, now)
        assert [f"• {c}" for c in clusters] == text.splitlines()[1:]
        dev = clusters[0]
        assert dev.startswith("`dev-weu` (westeurope): asm-1-25 :hourglass: support ends "
                              "2027-01-01 (in 29 d); Kubernetes 1.30.4; can move to asm-1-26")
        assert "sidecars on an older patch: 4 on asm-1-25 (control plane 1.25.2)" in dev
        assert dev.endswith(f"run `{run.id}` planning")
        context = blocks[-1]
        assert context["type"] == "context"
        assert "2026-12-03 00:00:00Z" in context["elements"][0]["text"]
        assert "`/mesh fleet` for the same in a channel" in context["elements"][0]["text"]
    finally:
        forget(engine.store)  # type: ignore[arg-type]


def test_a_fleet_past_100_blocks_is_clipped_and_the_rest_not_read(prefix: str) -> None:
    engine, world = engine_for(prefix)
    try:
        cfg = engine.fleet.clusters["dev-weu"]
        engine.fleet = engine.fleet.model_copy(update={"clusters": {
            f"c{i:03}": cfg for i in range(120)}})
        blocks = home_blocks(engine, {}, datetime(2026, 12, 3, tzinfo=UTC))
        assert len(blocks) == 100  # Slack's limit of a view
        assert sections(blocks)[-1] == "… 24 more clusters"
        assert sections(blocks)[-2].startswith("`c095`")
        assert world.reads == 96
    finally:
        forget(engine.store)  # type: ignore[arg-type]


def worker_context(engine: Engine, slack: SlackEmulator,  # noqa: F811
                   budget: bool = False) -> SimpleNamespace:
    """What the worker's tasks use: the engine, its store, and a notifier on the worker's
    client (a 429 reaches the task, nothing sleeps on it), within the workspace's budget
    on the test's prefix when ``budget``."""
    client = make_client("xoxb-test", slack.base_url + "/api/", rate_limit_wait_s=0)
    store = engine.store
    r, p = store.r, store.p  # type: ignore[attr-defined]
    notifier = SlackNotifier(client, store, lambda cluster: [],
                             budget=SlackBudget(r, p, "xoxb-test") if budget else None)
    return SimpleNamespace(engine=engine, store=store, notifier=notifier)


def test_the_worker_publishes_the_home_tab(prefix: str, slack,  # type: ignore[no-untyped-def]  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.tasks import app as tasks

    engine, _ = engine_for(prefix)
    store = engine.store
    try:
        # the release notes said when asm-1-25 leaves support (workers.watcher.end_of_support)
        store.r.hset(f"{prefix}:releases:end_of_support", "asm-1-25", "2030-01-01")  # type: ignore[attr-defined]
        monkeypatch.setattr(tasks, "context", lambda: worker_context(engine, slack))
        tasks.home_task.apply(args=(USER,)).get()
        view = slack.homes[USER]
        assert view["type"] == "home" and view["blocks"][0]["text"]["text"] == "Mesh fleet"
        clusters = sections(view["blocks"])[1:]
        assert [c.split(" ")[0] for c in clusters] == ["`dev-weu`", "`prod-weu`"]
        assert all("asm-1-25 :hourglass: support ends 2030-01-01" in c for c in clusters)
        assert [e["kind"] for e in slack.log] == ["home"]
    finally:
        forget(store)  # type: ignore[arg-type]


def test_slack_busy_is_retried_and_a_refusal_dropped(prefix: str, slack,  # type: ignore[no-untyped-def]  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.tasks import app as tasks

    engine, _ = engine_for(prefix)
    try:
        monkeypatch.setattr(tasks, "context", lambda: worker_context(engine, slack))
        countdowns: list[float] = []
        retry = tasks.home_task.retry

        def counted(*args: Any, **kwargs: Any) -> Any:
            countdowns.append(kwargs["countdown"])
            return retry(*args, **kwargs)

        monkeypatch.setattr(tasks.home_task, "retry", counted)
        slack.rate_limit_next = 1  # 429, Retry-After 1
        tasks.home_task.apply(args=(USER,)).get()  # retried (in place, as apply() does)
        assert countdowns == [5.0]  # 5 s at least
        assert slack.calls.count("views.publish") == 2 and USER in slack.homes
        # a user Slack does not know: logged and dropped, never retried
        tasks.home_task.apply(args=("U0GONE0000",)).get()
        assert countdowns == [5.0] and "U0GONE0000" not in slack.homes
        assert slack.calls.count("views.publish") == 3
    finally:
        forget(engine.store)  # type: ignore[arg-type]


def test_the_home_tab_waits_for_the_workspaces_budget_and_is_built_once_a_minute(
        prefix: str, slack,  # type: ignore[no-untyped-def]  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.tasks import app as tasks

    engine, world = engine_for(prefix)
    try:
        ctx = worker_context(engine, slack, budget=True)
        monkeypatch.setattr(tasks, "context", lambda: ctx)
        tasks.home_task.apply(args=(USER,)).get()
        tasks.home_task.apply(args=("U0ZOE00001",)).get()
        assert set(slack.homes) == {USER, "U0ZOE00001"}
        assert world.reads == 2  # two clusters read once: the second tab reused the fleet
        # a 429 another worker got for views.publish: no worker calls it until it is over
        ctx.notifier.budget.back_off("views.publish", 30)
        countdowns: list[float] = []
        monkeypatch.setattr(tasks.home_task, "retry", lambda **kw: (
            countdowns.append(kw["countdown"]), RuntimeError("retried"))[1])
        with pytest.raises(RuntimeError):
            tasks.home_task.apply(args=(USER,), throw=True).get()
        assert countdowns and 29 <= countdowns[0] <= 30
        assert slack.calls.count("views.publish") == 2  # nothing called over the budget
    finally:
        forget(engine.store)  # type: ignore[arg-type]
