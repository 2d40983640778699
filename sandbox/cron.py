"""Cron schedules as the Kubernetes CronJob controller reads them.

The controller parses ``spec.schedule`` with ``robfig/cron``'s standard parser
(``cron.ParseStandard``; Kubernetes docs "CronJob", section "Schedule syntax"): five fields
(minute, hour, day of month, month, day of week) with ``*``, ``?``, lists, ranges and steps,
month and weekday names, Sunday as 0 or 7, and the macros ``@yearly`` (``@annually``),
``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``. When both day fields
are restricted a time matches either of them, as in Vixie cron. ``TZ=``/``CRON_TZ=`` in the
schedule is refused (the API server rejects it since 1.25; ``spec.timeZone`` is the field).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
MONTHS = {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())}
DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
BOUNDS = [(0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, MONTHS), (0, 7, DAYS)]


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool

    def matches(self, t: float) -> bool:
        """Does the minute starting at Unix time ``t`` (UTC) match?"""
        tm = time.gmtime(t)
        if tm.tm_min not in self.minutes or tm.tm_hour not in self.hours \
                or tm.tm_mon not in self.months:
            return False
        dom = tm.tm_mday in self.days
        dow = (tm.tm_wday + 1) % 7 in self.weekdays  # tm_wday: Monday = 0
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


def _field(text: str, lo: int, hi: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step in {text!r}")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            bounds = part.split("-", 1)
            try:
                nums = [names[b.lower()] if b.lower() in names else int(b) for b in bounds]
            except ValueError:
                raise CronError(f"{part!r} is not a number or a name") from None
            start = nums[0]
            end = nums[1] if len(nums) == 2 else (hi if step > 1 else start)
            if not (lo <= start <= hi and lo <= end <= hi) or start > end:
                raise CronError(f"{part!r} is out of range {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def parse(schedule: str) -> Schedule:
    text = schedule.strip()
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise CronError("TZ is not supported in spec.schedule; use spec.timeZone")
    text = MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"unrecognized descriptor {text!r}")
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {schedule!r}")
    parsed = [_field(f, lo, hi, names) for f, (lo, hi, names) in zip(fields, BOUNDS,
                                                                      strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4][0])
    return Schedule(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], weekdays,
                    parsed[2][1], parsed[4][1])
