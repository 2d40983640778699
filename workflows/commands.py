"""Parsing the text of a ``/mesh`` slash command into a command value (DESIGN.md §6).

Pure: no I/O. The bot validates the cluster against the fleet and authorises the person;
this module only says what was asked, or raises :class:`InvalidCommand` with the usage that
would work.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from workflows.errors import InvalidCommand
from workflows.kind import ACTIONS, KINDS, StartRun
from workflows.model import parse_revision
from workflows.syntax import (
    CLUSTER_RE,
    NAMESPACE_RE,
    UPGRADE_FLAGS,
    cluster_name,
    cluster_revision_options,
    parse_duration,
)

MAX_TEXT = 1000  # characters; Slack allows 4,000 but no valid command is near this long

DECISIONS = ACTIONS

#: Usage of the commands that read or label; the commands that start a run are the
#: registered kinds' (``WorkflowKind.usage``).
USAGE = {
    "help": "help",
    "status": "status [cluster]",
    "revisions": "revisions [cluster]",
    "plan": f"plan <cluster> <revision> {UPGRADE_FLAGS}",
    "runs": "runs [cluster | run-id]",
    "fleet": "fleet",
    "inject": "inject <cluster> <namespace> [namespace …] [--restart]",
    "uninject": "uninject <cluster> <namespace> [namespace …]",
    **{d: f"{d} <run-id>" for d in DECISIONS},
}

RUN_ID_RE = re.compile(r"^r-[0-9a-f]{6,32}$")
_MENTION_RE = re.compile(r"<[@#!][^>]*>")


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    cluster: str | None = None


@dataclass(frozen=True)
class Revisions:
    cluster: str | None = None


@dataclass(frozen=True)
class Plan:
    """A dry run of ``upgrade``: the plan is computed and shown, nothing changes."""

    cluster: str
    revision: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanCampaign:
    """A dry run of a fleet campaign: each cluster's path to ``revision`` (None: the one
    meshops proposes), by stage, with its next maintenance window."""

    revision: str | None = None


@dataclass(frozen=True)
class FleetView:
    """Every cluster at a glance: revisions, support, what it can move to, sidecars on an
    old patch, runs and campaigns in progress."""


@dataclass(frozen=True)
class Runs:
    cluster: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Inject:
    """Label namespaces for sidecar injection (``inject``) or remove it (``uninject``)."""

    cluster: str
    namespaces: tuple[str, ...]
    remove: bool = False
    restart: bool = False  # then restart their workloads in waves behind the metric gate


@dataclass(frozen=True)
class Decide:
    action: str  # one of DECISIONS
    run_id: str


Command = (Help | Status | Revisions | Plan | PlanCampaign | FleetView | Runs | Decide | Inject
           | StartRun)


def _usages() -> dict[str, str]:
    """Every verb's usage: the reading commands, then each kind that a verb starts."""
    usages = {k: v for k, v in USAGE.items() if k not in DECISIONS}
    usages.update({k.verb: k.usage for k in KINDS if k.verb})
    usages.update({d: USAGE[d] for d in DECISIONS})
    return usages


def usage(command_name: str = "/mesh") -> str:
    return "\n".join(f"`{command_name} {u}`" for u in _usages().values())


#: what POSIX shell quoting reads differently from a split at blanks: quotes and escapes
_QUOTING = re.compile(r"['\"\\]")
#: the blanks :func:`shlex.split` splits at (``shlex.whitespace``)
_BLANKS = re.compile(r"[ \t\r\n]+")


def split_words(text: str) -> list[str]:
    """``text``'s words as :func:`shlex.split` reads them (POSIX quoting, no comments);
    text without quotes or backslashes, nearly every command, is split at the same blanks
    without shlex's character-at-a-time reader. Raises ``ValueError`` as shlex does."""
    if _QUOTING.search(text):
        return shlex.split(text)
    return [w for w in _BLANKS.split(text) if w]


def parse(text: str, command_name: str = "/mesh") -> Command:
    """Parse the text after the command name.

    Returns:
        One of :class:`Help`, :class:`Status`, :class:`Revisions`, :class:`Plan`,
        :class:`PlanCampaign`, :class:`FleetView`, :class:`Runs`, :class:`Inject`,
        :class:`Decide`, or a :class:`StartRun` from the registered kind whose verb it is
        (``upgrade``, ``enable``, ``ingress``, …).
    Raises:
        InvalidCommand: unknown subcommand, missing or extra arguments, bad options; the
            message carries the usage that would work.
        InvalidRevision: the revision is not shaped ``asm-1-NN``.
    """
    if len(text) > MAX_TEXT:
        raise InvalidCommand(
            f"That command is {len(text):,} characters long; `{command_name}` commands are "
            f"short. Try `{command_name} help`."
        )
    if _MENTION_RE.search(text):
        raise InvalidCommand(
            "Commands take cluster names and run ids, not mentions or links. "
            f"Try `{command_name} help`."
        )
    try:
        words = split_words(text)
    except ValueError as exc:
        raise InvalidCommand(f"Could not read that command ({exc}).") from exc
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]

    def wrong(expected: str) -> InvalidCommand:
        return InvalidCommand(f"{expected} Usage: `{command_name} {_usages()[verb]}`")

    if verb == "help":
        return Help(args[0] if args else None)
    if verb == "status":
        if len(args) > 1:
            raise wrong("`status` takes at most one cluster.")
        return Status(cluster_name(args[0]) if args else None)
    if verb == "fleet":
        if args:
            raise wrong("`fleet` takes no arguments.")
        return FleetView()
    if verb == "revisions":
        if len(args) > 1:
            raise wrong("`revisions` takes at most one cluster.")
        return Revisions(cluster_name(args[0]) if args else None)
    if verb == "runs":
        if len(args) > 1:
            raise wrong("`runs` takes a cluster or a run id.")
        if args and RUN_ID_RE.match(args[0]):
            return Runs(run_id=args[0])
        return Runs(cluster_name(args[0]) if args else None)
    if verb in ("inject", "uninject"):
        restart = "--restart" in args
        args = [a for a in args if a != "--restart"]
        if len(args) < 2:
            raise wrong(f"`{verb}` takes a cluster and at least one namespace.")
        bad = [ns for ns in args[1:] if not NAMESPACE_RE.match(ns)]
        if bad:
            raise wrong(f"not namespace names: {', '.join(bad)}.")
        if restart and verb == "uninject":
            raise wrong("`--restart` goes with `inject`.")
        return Inject(cluster_name(args[0]), tuple(dict.fromkeys(args[1:])),
                      remove=verb == "uninject", restart=restart)
    if verb == "plan":
        cluster, revision, options = cluster_revision_options(args, verb, wrong)
        return Plan(cluster, parse_revision(revision), options)
    if verb == "campaign" and args and args[0].lower() == "plan":
        # the dry run is read-only; every other ``campaign`` command is the kind's (start)
        if len(args) > 2:
            raise wrong("`campaign plan` takes at most one revision.")
        return PlanCampaign(parse_revision(args[1]) if len(args) == 2 else None)
    if verb in DECISIONS:
        if len(args) != 1:
            raise wrong(f"`{verb}` takes one run id.")
        if not RUN_ID_RE.match(args[0]):
            raise wrong(f"`{args[0]}` is not a run id (they look like `r-3f9a1c2b7d`).")
        return Decide(verb, args[0])
    kind = KINDS.by_verb(verb)
    if kind is not None:
        return kind.parse(args, wrong)
    raise InvalidCommand(
        f"Unknown command `{verb}`. Here is what `{command_name}` understands:\n"
        + usage(command_name)
    )


__all__ = ["CLUSTER_RE", "Command", "StartRun", "parse", "parse_duration", "usage"]
