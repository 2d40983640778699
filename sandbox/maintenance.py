"""AKS planned maintenance configurations as the ARM emulator keeps and checks them.

Contracts (the sandbox imports nothing of the product, so it reads them itself):

- ARM REST spec ``Microsoft.ContainerService/managedClusters/maintenanceConfigurations``
  (``MaintenanceConfiguration``, ``MaintenanceWindow``, ``Schedule``; examples
  ``MaintenanceConfigurationsCreate_Update_MaintenanceWindow.json``,
  ``MaintenanceConfigurationsGet_MaintenanceWindow.json``,
  ``MaintenanceConfigurationsList_MaintenanceWindow.json``): a configuration is
  ``{"id", "name", "type", "properties": {"maintenanceWindow": {...}}}``; ``schedule`` holds one
  and only one of ``daily {intervalDays 1-7}``, ``weekly {intervalWeeks 1-4, dayOfWeek}``,
  ``absoluteMonthly {intervalMonths 1-6, dayOfMonth 1-31}``, ``relativeMonthly
  {intervalMonths 1-6, weekIndex, dayOfWeek}``; ``durationHours`` 4-24; ``startTime``
  ``^\\d{2}:\\d{2}$`` (00:00-23:59); ``utcOffset`` ``^(-|\\+)[0-9]{2}:[0-9]{2}$``;
  ``startDate`` and ``notAllowedDates[].start|end`` dates.
- AKS doc "Use planned maintenance to schedule and control upgrades for your AKS cluster":
  the configuration names are ``default``, ``aksManagedAutoUpgradeSchedule`` and
  ``aksManagedNodeOSUpgradeSchedule`` (AKS answers any other with 400 ``InvalidParameter``
  "Only 'default', 'aksManagedAutoUpgradeSchedule' and 'aksManagedNodeOSUpgradeSchedule' are
  allowed configNames for maintenance configuration."); ``default`` takes a ``Weekly``
  schedule only, or the deprecated ``timeInWeek`` hour slots; ``utcOffset`` defaults to
  ``+00:00`` and ``startDate`` to the date of creation, which ARM then returns.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeGuard

PROVIDER = "Microsoft.ContainerService"
TYPE = f"{PROVIDER}/managedClusters/maintenanceConfigurations"
CONFIG_NAMES = ("default", "aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule")
NAME_ERROR = ("Only 'default', 'aksManagedAutoUpgradeSchedule' and "
              "'aksManagedNodeOSUpgradeSchedule' are allowed configNames for maintenance "
              "configuration.")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEK_INDEXES = ("First", "Second", "Third", "Fourth", "Last")
#: each schedule kind's fields: name → (low, high) for integers, or the allowed values
KINDS: dict[str, dict[str, tuple[int, int] | tuple[str, ...]]] = {
    "daily": {"intervalDays": (1, 7)},
    "weekly": {"intervalWeeks": (1, 4), "dayOfWeek": DAYS},
    "absoluteMonthly": {"intervalMonths": (1, 6), "dayOfMonth": (1, 31)},
    "relativeMonthly": {"intervalMonths": (1, 6), "weekIndex": WEEK_INDEXES,
                        "dayOfWeek": DAYS},
}
WINDOW_FIELDS = ("schedule", "durationHours", "utcOffset", "startDate", "startTime",
                 "notAllowedDates")
_OFFSET = re.compile(r"^(-|\+)([0-9]{2}):([0-9]{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _date(v: Any) -> date | None:
    if not isinstance(v, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", v):
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        return None


def window_problems(name: str, window: Any, at: str = "maintenanceWindow") -> list[str]:
    """What AKS would refuse in a ``maintenanceWindow`` of configuration ``name``: one
    sentence per problem, each starting with the field's path under ``at``; empty if valid."""
    if not isinstance(window, dict):
        return [f"{at}: a maintenance window is an object with schedule, durationHours and "
                "startTime"]
    problems = [f"{at}.{k}: not a field of a maintenance window (fields: "
                f"{', '.join(WINDOW_FIELDS)})" for k in window if k not in WINDOW_FIELDS]
    schedule = window.get("schedule")
    if not isinstance(schedule, dict):
        problems.append(f"{at}.schedule: required: one of {', '.join(KINDS)}")
    else:
        given = [k for k, v in schedule.items() if v is not None]
        unknown = [k for k in given if k not in KINDS]
        if unknown:
            problems.append(f"{at}.schedule.{unknown[0]}: not a schedule type (types: "
                            f"{', '.join(KINDS)})")
        elif len(given) != 1:
            problems.append(f"{at}.schedule: one and only one of the schedule types "
                            f"({', '.join(KINDS)}) should be specified; got "
                            + (" and ".join(given) if given else "none"))
        else:
            kind = given[0]
            if name == "default" and kind != "weekly":
                problems.append(f"{at}.schedule.{kind}: the default configuration takes a "
                                "weekly schedule only")
            problems += _kind_problems(f"{at}.schedule.{kind}", kind, schedule[kind])
    hours = window.get("durationHours")
    if not _is_int(hours) or not 4 <= hours <= 24:
        problems.append(f"{at}.durationHours: required, a whole number of hours from 4 to 24"
                        + ("" if hours is None else f" (got {hours!r})"))
    start = window.get("startTime")
    m = _TIME.match(start) if isinstance(start, str) else None
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        problems.append(f"{at}.startTime: required, HH:mm from 00:00 to 23:59"
                        + ("" if start is None else f" (got {start!r})"))
    offset = window.get("utcOffset")
    if offset is not None and not (isinstance(offset, str) and _OFFSET.match(offset)):
        problems.append(f"{at}.utcOffset: +HH:mm or -HH:mm, e.g. +05:30 or -08:00 "
                        f"(got {offset!r})")
    if window.get("startDate") is not None and _date(window["startDate"]) is None:
        problems.append(f"{at}.startDate: a date YYYY-MM-DD (got {window['startDate']!r})")
    spans = window.get("notAllowedDates")
    if spans is not None and not isinstance(spans, list):
        problems.append(f"{at}.notAllowedDates: a list of {{start, end}} dates")
    for i, span in enumerate(spans if isinstance(spans, list) else []):
        where = f"{at}.notAllowedDates[{i}]"
        if not isinstance(span, dict) or set(span) - {"start", "end"}:
            problems.append(f"{where}: an object with start and end dates (YYYY-MM-DD)")
            continue
        s, e = _date(span.get("start")), _date(span.get("end"))
        if s is None or e is None:
            problems.append(f"{where}: start and end are required dates YYYY-MM-DD (got "
                            f"{span.get('start')!r} to {span.get('end')!r})")
        elif e < s:
            problems.append(f"{where}: end {e} is before start {s}")
    return problems


def _kind_problems(at: str, kind: str, body: Any) -> list[str]:
    fields = KINDS[kind]
    if not isinstance(body, dict):
        return [f"{at}: an object with {', '.join(fields)}"]
    problems = [f"{at}.{k}: not a field of a {kind} schedule (fields: {', '.join(fields)})"
                for k in body if k not in fields]
    for field, allowed in fields.items():
        v = body.get(field)
        if isinstance(allowed[0], int):
            low, high = int(allowed[0]), int(allowed[1])
            if not _is_int(v) or not low <= v <= high:
                problems.append(f"{at}.{field}: required, a whole number from {low} to {high}"
                                + ("" if v is None else f" (got {v!r})"))
        elif v not in allowed:
            problems.append(f"{at}.{field}: required, one of {', '.join(map(str, allowed))}"
                            + ("" if v is None else f" (got {v!r})"))
    return problems


def properties_problems(name: str, properties: Any) -> list[str]:
    """What AKS would refuse in a PUT's ``properties`` for configuration ``name``."""
    if name not in CONFIG_NAMES:
        return [NAME_ERROR]
    if not isinstance(properties, dict):
        return ["properties: required, with maintenanceWindow"]
    window, legacy = properties.get("maintenanceWindow"), properties.get("timeInWeek")
    if window is None and legacy is None:
        return ["properties.maintenanceWindow: required (schedule, durationHours, startTime)"]
    if legacy is not None:
        if name != "default":
            return [f"properties.timeInWeek: only the default configuration takes timeInWeek; "
                    f"{name} takes a maintenanceWindow"]
        if window is not None:
            return ["properties: either maintenanceWindow or the deprecated timeInWeek, not "
                    "both"]
        return []
    return window_problems(name, window, "properties.maintenanceWindow")


def stored_window(window: dict[str, Any], now: float) -> dict[str, Any]:
    """The window as AKS keeps it: ``utcOffset`` ``+00:00`` and ``startDate`` today (in that
    offset) when not given; no nulls."""
    out = {k: v for k, v in window.items() if v is not None}
    out["schedule"] = {k: v for k, v in window["schedule"].items() if v is not None}
    out.setdefault("utcOffset", "+00:00")
    if "startDate" not in out:
        m = _OFFSET.match(out["utcOffset"])
        assert m is not None
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        tz = timezone(-delta if m[1] == "-" else delta)
        out["startDate"] = datetime.fromtimestamp(now, UTC).astimezone(tz).date().isoformat()
    return out


def configuration_body(cluster_id: str, name: str, properties: dict[str, Any]
                       ) -> dict[str, Any]:
    """A configuration as ARM returns it."""
    return {"id": f"{cluster_id}/maintenanceConfigurations/{name}", "name": name,
            "type": TYPE, "properties": properties}
