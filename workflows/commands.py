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
from workflows.model import parse_revision

MAX_TEXT = 1000  # characters; Slack allows 4,000 but no valid command is near this long

DECISIONS = ("approve", "reject", "pause", "resume", "rollback", "complete", "cancel")

USAGE = {
    "help": "help",
    "status": "status [cluster]",
    "revisions": "revisions [cluster]",
    "plan": "plan <cluster> <revision> [upgrade options]",
    "runs": "runs [cluster | run-id]",
    "enable": "enable <cluster> [revision]",
    "inject": "inject <cluster> <namespace> [namespace …] [--restart]",
    "uninject": "uninject <cluster> <namespace> [namespace …]",
    "ingress": "ingress <cluster> enable|disable external|internal",
    "disable": "disable <cluster>",
    "upgrade": (
        "upgrade <cluster> <revision> [--bake=10m] [--interval=1m] [--wave-size=3] "
        "[--pilot=ns1,ns2] [--approve-waves]"
    ),
    **{d: f"{d} <run-id>" for d in DECISIONS},
}

RUN_ID_RE = re.compile(r"^r-[0-9a-f]{6,32}$")
CLUSTER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_MENTION_RE = re.compile(r"<[@#!][^>]*>")


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Status:
    cluster: str | None = None


@dataclass(frozen=True)
class Upgrade:
    cluster: str
    revision: str
    options: dict[str, object] = field(default_factory=dict)


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
class Runs:
    cluster: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Enable:
    cluster: str
    revision: str | None = None  # None: the default revision AKS chooses


@dataclass(frozen=True)
class Inject:
    """Label namespaces for sidecar injection (``inject``) or remove it (``uninject``)."""

    cluster: str
    namespaces: tuple[str, ...]
    remove: bool = False
    restart: bool = False  # then restart their workloads in waves behind the metric gate


@dataclass(frozen=True)
class Ingress:
    cluster: str
    mode: str  # External | Internal
    enabled: bool


@dataclass(frozen=True)
class Disable:
    cluster: str


@dataclass(frozen=True)
class Decide:
    action: str  # one of DECISIONS
    run_id: str


Command = (Help | Status | Revisions | Plan | Runs | Upgrade | Decide | Enable | Inject | Ingress
           | Disable)

NAMESPACE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def usage(command_name: str = "/mesh") -> str:
    return "\n".join(f"`{command_name} {u}`" for u in USAGE.values())


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"500ms"``, ``"30"`` (seconds) → seconds."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise InvalidCommand(
            f"`{text}` is not a duration; write it like `30s`, `10m` or `1h`."
        )
    value = float(m.group(1))
    unit = m.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def _option(name: str, value: str | None) -> tuple[str, object]:
    if name in ("bake", "interval"):
        if value is None:
            raise InvalidCommand(f"`--{name}` needs a value, e.g. `--{name}=5m`.")
        seconds = parse_duration(value)
        if name == "interval" and seconds < 1:
            raise InvalidCommand("`--interval` must be at least 1s.")
        return f"{name}_s", seconds
    if name == "wave-size":
        if value is None or not value.isdigit() or int(value) < 1:
            raise InvalidCommand("`--wave-size` takes a whole number ≥ 1, e.g. `--wave-size=3`.")
        return "wave_size", int(value)
    if name == "pilot":
        if not value:
            raise InvalidCommand("`--pilot` takes namespaces, e.g. `--pilot=shop,cart`.")
        return "pilot", [ns for ns in value.split(",") if ns]
    if name == "approve-waves":
        if value not in (None, "true", "false", "yes", "no"):
            raise InvalidCommand("`--approve-waves` is a flag; write it alone.")
        return "approve_waves", value in (None, "true", "yes")
    raise InvalidCommand(
        f"Unknown option `--{name}`. Options of upgrade: --bake, --interval, --wave-size, "
        "--pilot, --approve-waves."
    )


def parse(text: str, command_name: str = "/mesh") -> Command:
    """Parse the text after the command name.

    Returns:
        One of :class:`Help`, :class:`Status`, :class:`Revisions`, :class:`Plan`,
        :class:`Runs`, :class:`Upgrade`, :class:`Decide`.
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
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidCommand(f"Could not read that command ({exc}).") from exc
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]

    def wrong(expected: str) -> InvalidCommand:
        return InvalidCommand(f"{expected} Usage: `{command_name} {USAGE[verb]}`")

    if verb == "help":
        return Help(args[0] if args else None)
    if verb == "status":
        if len(args) > 1:
            raise wrong("`status` takes at most one cluster.")
        if args:
            _cluster_name(args[0])
        return Status(args[0] if args else None)
    if verb == "revisions":
        if len(args) > 1:
            raise wrong("`revisions` takes at most one cluster.")
        return Revisions(_cluster_name(args[0]) if args else None)
    if verb == "runs":
        if len(args) > 1:
            raise wrong("`runs` takes a cluster or a run id.")
        if args and RUN_ID_RE.match(args[0]):
            return Runs(run_id=args[0])
        return Runs(_cluster_name(args[0]) if args else None)
    if verb == "enable":
        if not 1 <= len(args) <= 2:
            raise wrong("`enable` takes a cluster and, optionally, a revision.")
        return Enable(_cluster_name(args[0]), parse_revision(args[1]) if len(args) > 1
                      else None)
    if verb == "ingress":
        if len(args) != 3 or args[1].lower() not in ("enable", "disable") or \
                args[2].lower() not in ("external", "internal"):
            raise wrong("`ingress` takes a cluster, enable or disable, external or internal.")
        return Ingress(_cluster_name(args[0]), args[2].capitalize(),
                       args[1].lower() == "enable")
    if verb == "disable":
        if len(args) != 1:
            raise wrong("`disable` takes one cluster.")
        return Disable(_cluster_name(args[0]))
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
        return Inject(_cluster_name(args[0]), tuple(dict.fromkeys(args[1:])),
                      remove=verb == "uninject", restart=restart)
    if verb in ("upgrade", "plan"):
        positional = [a for a in args if not a.startswith("--")]
        flags = [a for a in args if a.startswith("--")]
        if len(positional) != 2:
            raise wrong(f"`{verb}` takes a cluster and a revision.")
        cluster, revision = positional
        _cluster_name(cluster)
        options: dict[str, object] = {}
        for flag in flags:
            name, _, value = flag[2:].partition("=")
            key, parsed = _option(name, value if "=" in flag else None)
            options[key] = parsed
        if verb == "plan":
            return Plan(cluster, parse_revision(revision), options)
        return Upgrade(cluster, parse_revision(revision), options)
    if verb in DECISIONS:
        if len(args) != 1:
            raise wrong(f"`{verb}` takes one run id.")
        if not RUN_ID_RE.match(args[0]):
            raise wrong(f"`{args[0]}` is not a run id (they look like `r-3f9a1c2b7d`).")
        return Decide(verb, args[0])
    raise InvalidCommand(
        f"Unknown command `{verb}`. Here is what `{command_name}` understands:\n"
        + usage(command_name)
    )


def _cluster_name(name: str) -> str:
    if not CLUSTER_RE.match(name):
        raise InvalidCommand(
            f"`{name}` is not a cluster name: lowercase letters, digits and dashes, "
            "as in the fleet file."
        )
    return name
