"""The Slack Web API client (slack_sdk ``WebClient``) and the members of Slack user groups.

A dropped connection is retried twice. A Slack 429 is waited out in the process only while
the waits add up to ``rate_limit_wait_s`` (the bot's default, 2 s: it must ack within 3 s);
the worker's client waits not at all (``rate_limit_wait_s=0``): its Slack sync asks the
workspace's budget first (:mod:`workers.slack.budget`) and re-schedules itself after a
429's ``Retry-After`` instead of sleeping. What still fails reaches the caller as a
``SlackApiError`` / ``OSError`` for :func:`workers.slack.errors.translate_slack_error`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from workers.config import Fleet
from workers.retry_after import retry_after_s
from workers.slack.errors import SLACK_ERRORS, translate_slack_error
from workflows.errors import DecisionRefused

log = structlog.get_logger("meshops.slack")

GROUP_CACHE_S = 60.0


class ShortRateLimitRetryHandler(RetryHandler):
    """Retries a 429 after its ``Retry-After`` (Slack's rate limits,
    https://docs.slack.dev/apis/web-api/rate-limits) only while the waits of one call add up
    to at most ``max_wait_s`` seconds; a longer one reaches the caller at once.

    slack_sdk's ``RateLimitErrorRetryHandler`` sleeps whatever Slack asks (plus up to a
    second), which would hold a bot's ack or a worker past its turn.
    """

    def __init__(self, max_wait_s: float, max_retry_count: int = 3):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    @staticmethod
    def _wait(response: HttpResponse) -> float:
        return max(1.0, retry_after_s(response.headers))

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        waited = float((state.custom_values or {}).get("rate_limit_waited_s", 0.0))
        return waited + self._wait(response) <= self.max_wait_s

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        if response is None:  # pragma: no cover - _can_retry wants a response
            raise error or RuntimeError("no response to retry")
        wait = self._wait(response)
        values = dict(state.custom_values or {})
        values["rate_limit_waited_s"] = float(values.get("rate_limit_waited_s", 0.0)) + wait
        state.custom_values = values
        state.next_attempt_requested = True
        time.sleep(wait)
        state.increment_current_attempt()


def make_client(token: str, base_url: str, rate_limit_wait_s: float = 2.0) -> WebClient:
    """A ``WebClient`` for ``base_url`` (``https://slack.com/api/`` or an emulator's).

    Args:
        token: the bot token.
        base_url: the Web API's base URL.
        rate_limit_wait_s: how long, in seconds, one call may wait out Slack's 429s in the
            process (:class:`ShortRateLimitRetryHandler`); 0: not at all, the 429 reaches
            the caller (the worker, which re-schedules instead of sleeping).

    Returns:
        The client; connection errors are retried twice.
    """
    client = WebClient(token=token, base_url=base_url)
    if rate_limit_wait_s > 0:
        client.retry_handlers.append(ShortRateLimitRetryHandler(rate_limit_wait_s))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


class UserGroups:
    """Members of Slack user groups (``usergroups.users.list``), cached for a minute.

    When Slack cannot say who is in a group, nobody is taken to be in it: access is refused
    rather than guessed.
    """

    def __init__(self, client: WebClient, fleet: Fleet):
        self.client = client
        self.fleet = fleet
        self.cache: dict[str, tuple[float, frozenset[str]]] = {}

    def members(self, group: str) -> frozenset[str]:
        """The user ids in ``group`` (``S…``). Raises ``DecisionRefused`` when Slack cannot
        say."""
        hit = self.cache.get(group)
        if hit and time.time() - hit[0] < GROUP_CACHE_S:
            return hit[1]
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group)["users"])
        except SLACK_ERRORS as exc:
            log.warning("usergroup.unavailable", group=group,
                        error=str(translate_slack_error(exc, "usergroups.users.list")))
            raise DecisionRefused(f"Slack could not say who is in user group <!subteam^{group}>;"
                                  " refusing until it can.") from exc
        self.cache[group] = (time.time(), users)
        return users

    def __call__(self, cluster: str) -> dict[str, frozenset[str]]:
        """{group id: members} of every user group among the cluster's (or the campaigns')
        approvers and requesters."""
        c = self.fleet.access(cluster)
        out = {g: self.members(g) for g in {*c.approvers, *c.requesters} if g.startswith("S")}
        for g in c.operators:
            if g.startswith("S") and g not in out:
                try:
                    out[g] = self.members(g)
                except DecisionRefused:
                    # an operators group Slack cannot read grants nothing, and must not
                    # stop the approvers and requesters from acting
                    out[g] = frozenset()
                    self.cache[g] = (time.time(), out[g])  # asked again in a minute
        return out


def find_by_metadata(history: Callable[..., Any], channel: str, oldest: float,
                     event_type: str, key: str, value: str) -> dict[str, Any] | None:
    """The first message of ``channel`` since ``oldest`` (Unix s) whose Slack message
    metadata is of ``event_type`` with ``event_payload[key] == value``, else None: how a
    message whose post a killed worker did not record is found before posting it again.

    ``history`` is ``conversations.history`` (a ``WebClient``'s, or one through the
    workspace's budget), paged 200 at a time with ``include_all_metadata`` (Slack Web API
    ``conversations.history``; "Message metadata"). Raises what ``history`` raises.
    """
    cursor = None
    while True:
        page = history(channel=channel, oldest=f"{oldest:.6f}", limit=200,
                       include_all_metadata=True, cursor=cursor)
        for m in page.get("messages", []):
            meta = m.get("metadata") or {}
            if meta.get("event_type") == event_type and \
                    (meta.get("event_payload") or {}).get(key) == value:
                return dict(m)
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
