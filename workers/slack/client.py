"""The Slack Web API client (slack_sdk ``WebClient``) and the members of Slack user groups.

Slack 429s are retried after ``Retry-After`` by slack_sdk's own handler, and a dropped
connection twice; what still fails reaches the caller as a ``SlackApiError`` / ``OSError``
for :func:`workers.slack.errors.translate` to translate.
"""

from __future__ import annotations

import time

import structlog
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from workers.config import Fleet
from workers.slack.errors import SLACK_ERRORS, translate_slack_error
from workflows.errors import DecisionRefused

log = structlog.get_logger("meshops.slack")

GROUP_CACHE_S = 60.0


def make_client(token: str, base_url: str) -> WebClient:
    """A ``WebClient`` for ``base_url`` (``https://slack.com/api/`` or an emulator's) that
    retries rate limits (3 times) and connection errors (twice)."""
    client = WebClient(token=token, base_url=base_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
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
        """{group id: members} of every user group among the cluster's approvers and
        requesters."""
        c = self.fleet.clusters[cluster]
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
