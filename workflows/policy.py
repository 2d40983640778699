"""Who may act on a cluster's runs (DESIGN.md §6 Access). Pure.

A kind says, per decision, which role may take it (:class:`Role`); :func:`authorise`
answers the one question the bot and the worker both ask, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from workflows.errors import DecisionRefused
from workflows.model import POLICY_REQUESTER


@dataclass(frozen=True)
class ClusterPolicy:
    """Who may act on one cluster: Slack user ids (user groups already expanded)."""

    requesters: frozenset[str] = field(default_factory=frozenset)
    approvers: frozenset[str] = field(default_factory=frozenset)
    allow_self_approval: bool = False
    # who else may pause, resume, cancel or roll back any run (e.g. on-call); by default
    # only the run's requester and the cluster's approvers may
    operators: frozenset[str] = field(default_factory=frozenset)
    #: whether the fleet file names requesters at all: without, anyone may request. Kept
    #: apart from ``requesters`` because a named user group may have no members (or none
    #: Slack reported): that restricts to nobody, never opens to everyone.
    restricted: bool | None = None

    def may_request(self, user: str) -> bool:
        restricted = bool(self.requesters) if self.restricted is None else self.restricted
        return not restricted or user in self.requesters or user in self.approvers


def mention(who: str) -> str:
    """Slack's mention of a user (``U…``/``W…``) or a user group (``S…``), as in Slack's
    "Formatting text for app surfaces": ``<@U123>``, ``<!subteam^S123>``; meshops itself
    (:data:`~workflows.model.POLICY_REQUESTER`, a run a fleet-file policy started) is
    ``meshops (fleet policy)``."""
    if who == POLICY_REQUESTER:
        return f"{POLICY_REQUESTER} (fleet policy)"
    return f"<!subteam^{who}>" if who.startswith("S") else f"<@{who}>"


class Role(StrEnum):
    """Who may take a decision on a run."""

    APPROVER = "approver"  # an approver of the cluster (four eyes on ``approve``)
    PARTICIPANT = "participant"  # the run's requester, an approver or an operator


def authorise(role: Role, action: str, user: str, requester: str, cluster: str, run_id: str,
              policy: ClusterPolicy) -> None:
    """Refuse ``user`` taking ``action`` on run ``run_id`` unless ``role`` allows it.

    Raises:
        DecisionRefused: saying who may (the approvers by mention), or that the requester
            may not approve their own run (four eyes) unless the policy allows it.
    """
    if role == Role.APPROVER:
        if user not in policy.approvers:
            who = ", ".join(mention(u) for u in sorted(policy.approvers)) or "nobody"
            raise DecisionRefused(
                f"Only approvers of `{cluster}` may {action} run `{run_id}`: {who}.")
        if action == "approve" and user == requester and not policy.allow_self_approval:
            raise DecisionRefused(
                f"You requested run `{run_id}`; another approver must approve it (four eyes).")
        return
    if user != requester and user not in policy.approvers | policy.operators:
        approvers = ", ".join(mention(u) for u in sorted(policy.approvers)) or "none"
        operators = ", ".join(mention(u) for u in sorted(policy.operators))
        raise DecisionRefused(
            f"Only the requester ({mention(requester)}), an approver of `{cluster}` "
            f"({approvers})" + (f" or an operator ({operators})" if operators else "")
            + f" may {action} run `{run_id}`.")
