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
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$", re.ASCII)

UPGRADE_FLAGS = "[--bake=10m] [--interval=1m] [--wave-size=3] [--pilot=ns1,ns2] [--approve-waves]"

#: ``--bake`` (s): at least 5 s, what the sandbox demo and the end-to-end suite bake a wave
#: (production bakes minutes: 10 min by default); at most a day, beyond which a wave is not
#: canary-testing any more but waiting, which an approval gate between waves does better.
BAKE_BOUNDS_S = (5.0, 24 * 3600.0)
#: ``--interval`` (s): how often the metric gate samples, and the window of each sample
#: (Flagger's analysis ``interval``, 1 min by default as here). At least 1 s (the sandbox
#: demo samples every 2 s); at most 5 min, half the Celery broker's ``visibility_timeout``
#: (600 s, workers/tasks/app.py): the next sample is a task with that countdown, and a task
#: held longer than the visibility timeout is delivered a second time.
INTERVAL_BOUNDS_S = (1.0, 300.0)
#: ``--wave-size``: namespaces per wave
WAVE_SIZE_BOUNDS = (1, 1000)


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


def duration_text(seconds: float) -> str:
    """Seconds as a ``/mesh`` duration: ``300`` → ``5m``, ``86400`` → ``24h``, ``2.5`` →
    ``2.5s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def timing_problem(bake_s: float, interval_s: float) -> str | None:
    """Why a bake time and a gate interval (s) do not go together, or None."""
    if interval_s > bake_s:
        return (f"The gate interval ({duration_text(interval_s)}) is longer than the bake "
                f"({duration_text(bake_s)}): the gate would not sample once per wave. Make "
                "`--interval` at most `--bake`.")
    return None


def upgrade_option(name: str, value: str | None) -> tuple[str, object]:
    """One ``--name[=value]`` flag of an upgrade → (``UpgradeOptions`` field, value).

    Raises:
        InvalidCommand: an unknown flag, a missing or malformed value, or one outside its
            bounds (:data:`BAKE_BOUNDS_S`, :data:`INTERVAL_BOUNDS_S`,
            :data:`WAVE_SIZE_BOUNDS`); the message says what would be right.
    """
    if name in ("bake", "interval"):
        if value is None:
            raise InvalidCommand(f"`--{name}` needs a value, e.g. `--{name}=5m`.")
        seconds = parse_duration(value)
        low, high = BAKE_BOUNDS_S if name == "bake" else INTERVAL_BOUNDS_S
        if not low <= seconds <= high:
            raise InvalidCommand(
                f"`--{name}` must be between {duration_text(low)} and {duration_text(high)}; "
                f"`{value}` is not.")
        return f"{name}_s", seconds
    if name == "wave-size":
        low_n, high_n = WAVE_SIZE_BOUNDS
        if (value is None or not (value.isascii() and value.isdigit())
                or not low_n <= int(value) <= high_n):
            raise InvalidCommand(f"`--wave-size` takes a whole number from {low_n} to {high_n} "
                                 "(namespaces per wave), e.g. `--wave-size=3`.")
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
            positional words; a bad flag says what the flag takes; a flag given twice is
            named; ``--interval`` longer than ``--bake`` (:func:`timing_problem`).
    """
    positional = [a for a in args if not a.startswith("--")]
    flags = [a for a in args if a.startswith("--")]
    if len(positional) != 2:
        raise wrong(f"`{verb}` takes a cluster and a revision.")
    cluster, revision = positional
    cluster_name(cluster)
    options: dict[str, object] = {}
    given: dict[str, list[str]] = {}
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        given.setdefault(name, []).append(flag)
        if len(given[name]) > 1:
            raise InvalidCommand(f"`--{name}` is given more than once "
                                 f"({', '.join(f'`{f}`' for f in given[name])}); give it once.")
        key, parsed = upgrade_option(name, value if "=" in flag else None)
        options[key] = parsed
    bake, interval = options.get("bake_s"), options.get("interval_s")
    if isinstance(bake, float) and isinstance(interval, float):
        problem = timing_problem(bake, interval)
        if problem:
            raise InvalidCommand(problem)
    return cluster, revision, options
