"""The words of ``/mesh`` commands: cluster and namespace names, durations, upgrade options.

Pure. Shared by :mod:`workflows.commands` and the kinds' own ``parse`` methods, so a new
kind reads its arguments the way every other command does. Each function raises
:class:`InvalidCommand` with what would be right.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from workflows.errors import InvalidCommand

CLUSTER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")

UPGRADE_FLAGS = "[--bake=10m] [--interval=1m] [--wave-size=3] [--pilot=ns1,ns2] [--approve-waves]"


def cluster_name(name: str) -> str:
    """``name`` if it can be a cluster's short name (DNS label, as in the fleet file)."""
    if not CLUSTER_RE.match(name):
        raise InvalidCommand(
            f"`{name}` is not a cluster name: lowercase letters, digits and dashes, "
            "as in the fleet file."
        )
    return name


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


def upgrade_option(name: str, value: str | None) -> tuple[str, object]:
    """One ``--name[=value]`` flag of an upgrade → (``UpgradeOptions`` field, value)."""
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


def cluster_revision_options(args: list[str], verb: str,
                             wrong: Callable[[str], InvalidCommand]
                             ) -> tuple[str, str, dict[str, object]]:
    """``<cluster> <revision> [--flags]`` → (cluster, revision text, options).

    Raises:
        InvalidCommand: ``wrong(reason)`` (with the usage) unless there are exactly two
            positional words; a bad flag says what the flag takes.
    """
    positional = [a for a in args if not a.startswith("--")]
    flags = [a for a in args if a.startswith("--")]
    if len(positional) != 2:
        raise wrong(f"`{verb}` takes a cluster and a revision.")
    cluster, revision = positional
    cluster_name(cluster)
    options: dict[str, object] = {}
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        key, parsed = upgrade_option(name, value if "=" in flag else None)
        options[key] = parsed
    return cluster, revision, options
