"""One Slack budget for the workspace, shared by every worker process through Redis.

Slack limits Web API calls "per API method per workspace per app" in tiers, counted per
minute (https://docs.slack.dev/apis/web-api/rate-limits; each method's page names its tier):

- **Tier 1** 1+ per minute, **Tier 2** 20+, **Tier 3** 50+, **Tier 4** 100+ per minute,
  "sporadic bursts" tolerated; Slack promises only the lower bound, so that is the budget.
- **Special**: ``chat.postMessage`` "generally allows posting one message per second per
  channel" with short bursts (no guarantee a burst is stored or shown), on top of a
  workspace-wide limit Slack does not publish.

Over a limit Slack answers HTTP 429 ``{"ok": false, "error": "ratelimited"}`` with
``Retry-After`` (seconds). The tiers of the methods meshops calls, from their pages:
``chat.update``, ``conversations.history`` and ``conversations.replies`` Tier 3 (Slack cut
the last two to 1 a minute for commercially distributed, non-Marketplace apps created from
May 2025; :class:`BudgetLimits` takes other numbers), ``chat.postEphemeral``,
``files.getUploadURLExternal``, ``files.completeUploadExternal``, ``users.info``,
``views.publish`` and ``views.update`` Tier 4, ``usergroups.users.list`` Tier 2.
(``views.open`` is Tier 4 too, but the bot calls it with a trigger that lives 3 s: it
cannot wait for a budget, and each call is one person's own click.)

:class:`SlackBudget` asks before each call and never sleeps: :meth:`SlackBudget.take`
answers 0 (go now; the call is counted) or how many seconds to wait, and the caller
re-schedules itself (``meshops.notify`` with a countdown). The counting is ``limits``'
moving window on Redis (an atomic Lua script per limit, shared by every process); a
method's window is a minute plus :attr:`BudgetLimits.margin_s`, so the clocks of the
workers and Slack's may differ by that much without a 429. A 429 that still comes
(another app, a Slack that counts differently) is recorded with :meth:`SlackBudget.back_off`:
every worker then waits out its ``Retry-After`` for that method.

Keys, under the store's prefix: ``{p}:slack-budget:LIMITER/{app}/…`` (``limits``' lists of
timestamps), ``{p}:slack-budget:channel:{app}:{channel}`` (lives the spacing of a
channel's posts), ``{p}:slack-budget:pause:{app}:{method}`` (a 429's ``Retry-After``),
``{p}:slack-budget:waiting:{app}:{method|channel}:{name}`` (who waits, to spread their
wake-ups). ``{app}`` is a digest of the bot token: Slack counts per app per workspace,
which a token names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

#: calls per minute of each Web API tier (Slack's lower bounds)
TIER_PER_MINUTE = {1: 1, 2: 20, 3: 50, 4: 100}

#: the tier of each method meshops calls (Slack's method pages, "Rate limits")
METHOD_TIERS = {
    "chat.update": 3,
    "chat.postEphemeral": 4,
    "conversations.history": 3,
    "conversations.replies": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "usergroups.users.list": 2,
    "users.info": 4,
    "views.publish": 4,
    "views.update": 4,
}

#: methods that post a message into a channel, counted against its 1 a second
#: (sharing a file into a thread posts a ``file_share`` message)
CHANNEL_POSTS = frozenset({"chat.postMessage", "files.completeUploadExternal"})


@dataclass(frozen=True)
class BudgetLimits:
    """The numbers a :class:`SlackBudget` keeps to.

    Attributes:
        per_minute: calls per minute of each method (``chat.update`` → 50); a method not
            named is not limited per method (``chat.postMessage``: Slack publishes only
            its per-channel limit).
        channel_posts_per_s: messages a second into one channel (:data:`CHANNEL_POSTS`);
            None: a channel's posts are not spaced (only the per-method limits count).
        margin_s: seconds added to each method's minute, for clock skew and transit.
        channel_margin: the share of a channel's spacing (``1 / channel_posts_per_s``)
            added to it: Slack counts a post when it arrives, and two posts taken a second
            apart can arrive closer than that (a worker slowed between its take and its
            call), so they are taken 1.25 s apart.
        urgent_share: the share of each per-method limit kept for urgent calls (a root
            message that now asks someone to act, or tells the run's end): routine calls
            (progress) stop while only that much of the minute is left. At 30 runs at
            once, progress updates spend ``chat.update``'s 50 a minute, and without it a
            run's *Complete* button waited up to half a minute behind them (issue 13).
    """

    per_minute: Mapping[str, int] = field(default_factory=lambda: {
        m: TIER_PER_MINUTE[t] for m, t in METHOD_TIERS.items()})
    channel_posts_per_s: float | None = 1
    margin_s: int = 1
    channel_margin: float = 0.25
    urgent_share: float = 0.2


#: Slack's published limits
SLACK_LIMITS = BudgetLimits()


def _slot_s(item: RateLimitItem) -> float:
    """Seconds one call of ``item`` stands for (its window over its calls)."""
    return float(item.get_expiry()) / item.amount


def app_key(token: str) -> str:
    """A short, non-secret name for the app and workspace a bot token stands for."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class SlackBudget:
    """The workspace's Slack budget, shared through Redis by every worker.

    Args:
        client: the Redis client (the run store's: plain, TLS or Sentinel).
        prefix: the key prefix (``meshops``; tests use their own).
        token: the bot token whose app and workspace are counted.
        limits: the numbers (default: Slack's published limits).
        clock: Unix time in seconds (for the pauses; ``limits`` reads ``time.time``).
    """

    def __init__(self, client: redis.Redis, prefix: str, token: str,
                 limits: BudgetLimits = SLACK_LIMITS,
                 clock: Callable[[], float] = time.time):
        self.r = client
        self.p = f"{prefix}:slack-budget"
        self.app = app_key(token)
        self.limits = limits
        self.clock = clock
        storage = RedisStorage("redis://", connection_pool=client.connection_pool,
                               key_prefix=self.p)
        self.limiter = MovingWindowRateLimiter(storage)
        # a channel's posts are spaced (a key that lives the spacing: SET NX PX), as
        # ``limits`` counts in whole seconds and cannot add the margin to one second
        self.channel_spacing_ms = 0 if limits.channel_posts_per_s is None else max(1, round(
            1000 * (1 + limits.channel_margin) / limits.channel_posts_per_s))
        self.method_items: dict[str, RateLimitItem] = {
            m: RateLimitItemPerSecond(n, 60 + limits.margin_s)
            for m, n in limits.per_minute.items()}

    def _channel_key(self, method: str, channel: str | None) -> str | None:
        """The spacing key of ``channel`` for a post; None for calls that post nothing."""
        if channel and method in CHANNEL_POSTS and self.channel_spacing_ms:
            return f"{self.p}:channel:{self.app}:{channel}"
        return None

    def _channel_wait(self, key: str) -> float:
        ms = self.r.pttl(key)
        return max(0.05, ms / 1000) if isinstance(ms, int) and ms > 0 else 0.05

    def _limits_of(self, method: str, channel: str | None
                   ) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        out: list[tuple[RateLimitItem, tuple[str, ...]]] = []
        item = self.method_items.get(method)
        if item is not None:
            out.append((item, (self.app, "method", method)))
        return out

    def _pause_key(self, method: str) -> str:
        return f"{self.p}:pause:{self.app}:{method}"

    def _waiting_key(self, ids: tuple[str, ...]) -> str:
        return f"{self.p}:waiting:{':'.join(ids)}"

    def _wait_of(self, item: RateLimitItem, ids: tuple[str, ...]) -> float:
        stats = self.limiter.get_window_stats(item, *ids)
        return max(0.05, stats.reset_time - time.time())

    def _reserved(self, item: RateLimitItem) -> int:
        """Calls of ``item``'s window kept for urgent callers
        (:attr:`BudgetLimits.urgent_share`)."""
        return int(item.amount * self.limits.urgent_share)

    def take(self, method: str, channel: str | None = None, who: str = "",
             urgent: bool = False) -> float:
        """Ask to call ``method`` (in ``channel``) now; never sleeps.

        Args:
            method: the Web API method, ``chat.update``.
            channel: the channel a post goes to (counted per channel for
                :data:`CHANNEL_POSTS`).
            who: who asks (a run id): among callers refused for the same method, each is
                told a later time than the one before, so they do not all wake at once.
            urgent: the call may use the share of each per-method limit kept for urgent
                calls (:attr:`BudgetLimits.urgent_share`), and is not queued behind
                routine callers; a routine call waits while only that share is left.

        Returns:
            0.0 when the call may go now (it is counted: make it), else the seconds to
            wait before asking again (nothing is counted).
        """
        pause = self.r.pttl(self._pause_key(method))
        if isinstance(pause, int) and pause > 0:
            return pause / 1000
        limits = self._limits_of(method, channel)
        spacing = self._channel_key(method, channel)
        channel_ids = (self.app, "channel", channel or "")
        if spacing is not None and self.r.pttl(spacing) > 0:
            return self._queued(channel_ids, who, self._channel_wait(spacing),
                                self.channel_spacing_ms / 1000)
        for item, ids in limits:
            if urgent or not self._reserved(item):
                if not self.limiter.test(item, *ids):
                    return self._queued(ids, "" if urgent else who, self._wait_of(item, ids),
                                        _slot_s(item))
            elif self.limiter.get_window_stats(item, *ids).remaining <= self._reserved(item):
                # two workers may both pass this with one routine slot left: the reserve
                # is then one call smaller for a minute, the limit itself never passed
                return self._queued(ids, who, self._wait_of(item, ids), _slot_s(item))
        for item, ids in limits:
            # another worker may have taken the last slot since the test: a slot taken
            # here for an earlier limit is then spent unused, never over the limit
            if not self.limiter.hit(item, *ids):
                return self._queued(ids, who, self._wait_of(item, ids), _slot_s(item))
        if spacing is not None and not self.r.set(spacing, "1", nx=True,
                                                  px=self.channel_spacing_ms):
            return self._queued(channel_ids, who, self._channel_wait(spacing),
                                self.channel_spacing_ms / 1000)
        waited = [ids for _, ids in limits] + ([channel_ids] if spacing else [])
        if who and waited:
            pipe = self.r.pipeline()
            for ids in waited:
                pipe.zrem(self._waiting_key(ids), who)
            pipe.execute()
        return 0.0

    def _queued(self, ids: tuple[str, ...], who: str, wait: float, slot_s: float) -> float:
        """``wait``, plus one slot (``slot_s`` seconds) for each caller that has waited
        longer than ``who`` for the same limit."""
        if not who:
            return wait
        key, now = self._waiting_key(ids), self.clock()
        pipe = self.r.pipeline()
        pipe.zremrangebyscore(key, "-inf", now - 120)  # gave up or synced elsewhere
        pipe.zadd(key, {who: now}, nx=True)
        pipe.zrank(key, who)
        pipe.expire(key, 180)
        rank = pipe.execute()[2] or 0
        return wait + rank * slot_s

    def wait_for(self, method: str, channel: str | None = None) -> float:
        """Seconds until a call of ``method`` (in ``channel``) could go (0.0: now), without
        counting anything: what :meth:`take` would say, for a caller with work to do
        before the call (a chart to draw) that must not hold the slot meanwhile."""
        pause = self.r.pttl(self._pause_key(method))
        if isinstance(pause, int) and pause > 0:
            return pause / 1000
        spacing = self._channel_key(method, channel)
        if spacing is not None:
            ms = self.r.pttl(spacing)
            if isinstance(ms, int) and ms > 0:
                return ms / 1000
        return max((self._wait_of(item, ids) for item, ids in self._limits_of(method, channel)
                    if self.limiter.get_window_stats(item, *ids).remaining <= 0), default=0.0)

    def room(self, method: str, channel: str | None = None) -> int:
        """How many calls of ``method`` (in ``channel``) could go now (a large number
        when nothing limits them); nothing is counted."""
        pause = self.r.pttl(self._pause_key(method))
        if isinstance(pause, int) and pause > 0:
            return 0
        rooms = [self.limiter.get_window_stats(item, *ids).remaining
                 for item, ids in self._limits_of(method, channel)]
        spacing = self._channel_key(method, channel)
        if spacing is not None:
            rooms.append(0 if self.r.pttl(spacing) > 0 else 1)
        return min(rooms, default=1_000)

    def back_off(self, method: str, retry_after_s: float) -> None:
        """Slack answered ``method`` with 429: no worker calls it for ``retry_after_s``
        seconds (at least 1; a longer pause already recorded is kept)."""
        ms = int(max(1.0, retry_after_s) * 1000)
        pipe = self.r.pipeline()
        pipe.set(self._pause_key(method), "429", nx=True, px=ms)
        pipe.pexpire(self._pause_key(method), ms, gt=True)
        pipe.execute()
