"""AKS planned maintenance windows: when a cluster may be changed (issue 14).

A campaign starts a cluster's run, and completes it, only inside the cluster's window: its own
AKS maintenance configuration, or a window written in meshops' fleet file. Both are the same
value here, :class:`MaintenanceWindow`, read from either form:

- ARM's ``maintenanceWindow`` (camelCase, as ARM returns it) of a
  ``Microsoft.ContainerService/managedClusters/maintenanceConfigurations`` resource named
  ``aksManagedAutoUpgradeSchedule``, ``aksManagedNodeOSUpgradeSchedule`` or ``default``
  (REST spec ``MaintenanceWindow``; examples ``MaintenanceConfigurationsCreate_Update_
  MaintenanceWindow.json``, ``MaintenanceConfigurationsGet_MaintenanceWindow.json``,
  ``MaintenanceConfigurationsList_MaintenanceWindow.json``): :func:`parse_arm_window`,
  :func:`parse_arm_configuration`;
- the fleet file's snake_case form of the same fields (``duration_hours``, ``utc_offset``,
  ``start_date``, ``start_time``, ``not_allowed_dates``, ``schedule: {weekly:
  {interval_weeks, day_of_week}}``): :func:`parse_config_window`.

What a window means follows the AKS doc "Use planned maintenance to schedule and control
upgrades for your Azure Kubernetes Service cluster" (learn.microsoft.com/azure/aks/
planned-maintenance) and the REST spec's field descriptions:

- ``schedule`` holds exactly one of ``daily {intervalDays 1-7}``, ``weekly {intervalWeeks 1-4,
  dayOfWeek}``, ``absoluteMonthly {intervalMonths 1-6, dayOfMonth 1-31}``, ``relativeMonthly
  {intervalMonths 1-6, weekIndex First|Second|Third|Fourth|Last, dayOfWeek}``;
- ``durationHours`` 4-24; ``startTime`` ``HH:mm`` (00:00-23:59) and ``utcOffset`` ``±HH:mm``
  (default ``+00:00``): "'02:00' with 'utcOffset: +02:00' means UTC time '00:00'";
- ``startDate``: "the date the maintenance window activates. If the current date is before
  this date, the maintenance window is inactive" (ARM sets it to the creation date when
  omitted); it is also where the recurrence counts its intervals from;
- ``notAllowedDates`` ``[{start, end}]``: whole dates, both included, in ``utcOffset``: "with
  'utcOffset: +02:00' and 'dateSpan' being '2022-12-23' to '2023-01-03', maintenance will be
  blocked from '2022-12-22 22:00' to '2023-01-03 22:00' in UTC time". An occurrence of the
  window that overlaps a blocked span is skipped whole ("maintenance isn't allowed, even if it
  overlaps with a maintenance window"), never shortened: meshops does not start work in what
  is left of it.

Recurrence is python-dateutil's ``rrule`` (RFC 5545) anchored at ``startDate`` + ``startTime``
in the window's offset. Choices the AKS doc leaves open, made the cautious way (never a window
AKS would not have):

- weekly: the first ``dayOfWeek`` on or after ``startDate``, then every ``intervalWeeks``
  weeks; monthly: ``startDate``'s month, then every ``intervalMonths`` months;
- ``absoluteMonthly`` on a day a month does not have (``dayOfMonth: 31`` in April, 30 in
  February): neither the AKS doc nor the REST spec says the window moves to the month's last
  day, so that month has no window (RFC 5545's rule, which rrule follows);
- a fixed offset: ``utcOffset`` has no daylight saving time, so neither has the window.

No I/O; time comes in as an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Literal

from dateutil import rrule
from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workflows.errors import MeshopsError

#: the configuration names AKS accepts (REST API: "Only 'default', 'aksManagedAutoUpgradeSchedule'
#: and 'aksManagedNodeOSUpgradeSchedule' are allowed configNames for maintenance configuration.")
AUTO_UPGRADE = "aksManagedAutoUpgradeSchedule"
NODE_OS_UPGRADE = "aksManagedNodeOSUpgradeSchedule"
DEFAULT = "default"
CONFIG_NAMES = (DEFAULT, AUTO_UPGRADE, NODE_OS_UPGRADE)

DayOfWeek = Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                    "Sunday"]
WeekIndex = Literal["First", "Second", "Third", "Fourth", "Last"]
DAYS: tuple[str, ...] = DayOfWeek.__args__  # type: ignore[attr-defined]
_RR_DAYS = dict(zip(DAYS, (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA,
                           rrule.SU), strict=True))
_WEEK_INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
SCHEDULE_KINDS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")
#: how far ahead :func:`next_window` looks before saying there is no window (a schedule's
#: longest gap is 6 months; not-allowed dates may block a few years)
HORIZON = timedelta(days=5 * 366)


class MaintenanceWindowError(MeshopsError, ValueError):
    """A maintenance window that cannot be read, or that has no occurrence ahead.

    ``str(err)`` names each wrong field by its path in the form it was written in
    (``maintenanceWindow.durationHours``, ``schedule.weekly.day_of_week``) and what would be
    right.
    """


class _Model(BaseModel):
    """Fields by their snake_case name (the fleet file) or ARM's camelCase alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              alias_generator=AliasGenerator(validation_alias=to_camel,
                                                             serialization_alias=to_camel))


class DailySchedule(_Model):
    """``daily``: "recur every day" or "every 3 days" (REST spec ``DailySchedule``)."""

    interval_days: int = Field(ge=1, le=7)


class WeeklySchedule(_Model):
    """``weekly``: "recur every Monday" or "every 3 weeks on Wednesday"."""

    interval_weeks: int = Field(ge=1, le=4)
    day_of_week: DayOfWeek


class AbsoluteMonthlySchedule(_Model):
    """``absoluteMonthly``: "recur every month on the 15th" or "every 3 months on the 20th"."""

    interval_months: int = Field(ge=1, le=6)
    day_of_month: int = Field(ge=1, le=31)


class RelativeMonthlySchedule(_Model):
    """``relativeMonthly``: "every month on the first Monday" or "every 3 months on the last
    Friday"."""

    interval_months: int = Field(ge=1, le=6)
    week_index: WeekIndex
    day_of_week: DayOfWeek


class Schedule(_Model):
    """Exactly one of the four kinds (REST spec: "One and only one of the schedule types
    should be specified"); ARM's own answers carry the others as ``null``."""

    daily: DailySchedule | None = None
    weekly: WeeklySchedule | None = None
    absolute_monthly: AbsoluteMonthlySchedule | None = None
    relative_monthly: RelativeMonthlySchedule | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        given = [k for k in SCHEDULE_KINDS if getattr(self, _snake(k)) is not None]
        if len(given) != 1:
            raise ValueError(
                "a schedule has exactly one of daily {intervalDays}, weekly {intervalWeeks, "
                "dayOfWeek}, absoluteMonthly {intervalMonths, dayOfMonth} or relativeMonthly "
                "{intervalMonths, weekIndex, dayOfWeek}; got "
                + (" and ".join(given) if given else "none"))
        return self

    @property
    def kind(self) -> str:
        """``daily``, ``weekly``, ``absoluteMonthly`` or ``relativeMonthly``."""
        return next(k for k in SCHEDULE_KINDS if getattr(self, _snake(k)) is not None)


class DateSpan(_Model):
    """A ``notAllowedDates`` entry: whole dates, ``start`` to ``end``, both included."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateSpan:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}; a span runs from "
                             "its start date to its end date, both included")
        return self


class MaintenanceWindow(_Model):
    """An AKS maintenance window (REST spec ``MaintenanceWindow``), in either form.

    ``start_time`` is ``HH:mm`` and ``utc_offset`` ``±HH:mm``, both as ARM writes them;
    ``start_date`` None means "from the day asked about" (ARM fills in the creation date, so
    windows read from ARM have one).
    """

    schedule: Schedule
    duration_hours: int = Field(ge=4, le=24)
    utc_offset: str = "+00:00"
    start_date: date | None = None
    start_time: str
    not_allowed_dates: tuple[DateSpan, ...] = ()

    @field_validator("utc_offset", mode="before")
    @classmethod
    def _default_offset(cls, v: Any) -> Any:
        return "+00:00" if v is None else v  # ARM may answer null: its default

    @field_validator("not_allowed_dates", mode="before")
    @classmethod
    def _no_dates(cls, v: Any) -> Any:
        return () if v is None else v

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, v: str) -> str:
        m = _OFFSET.match(v)
        if not m or int(m[2]) > 14 or int(m[3]) > 59 or (int(m[2]) == 14 and int(m[3])):
            raise ValueError(f"{v!r} is not a UTC offset: +HH:mm or -HH:mm from -14:00 to "
                             "+14:00, e.g. +05:30 or -08:00")
        return v

    @field_validator("start_time")
    @classmethod
    def _time(cls, v: str) -> str:
        m = _TIME.match(v)
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError(f"{v!r} is not a start time: HH:mm from 00:00 to 23:59, e.g. "
                             "01:00")
        return v

    @property
    def tz(self) -> tzinfo:
        """``utc_offset`` as a fixed-offset time zone."""
        m = _OFFSET.match(self.utc_offset)
        assert m is not None  # validated
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        return timezone(-delta if m[1] == "-" else delta)

    @property
    def starts_at(self) -> time:
        """``start_time`` as a ``time`` (in the window's offset)."""
        hours, minutes = self.start_time.split(":")
        return time(int(hours), int(minutes))

    @property
    def duration(self) -> timedelta:
        return timedelta(hours=self.duration_hours)

    def to_arm(self) -> dict[str, Any]:
        """The window as ARM's ``maintenanceWindow`` JSON (camelCase, no nulls, no empty
        ``notAllowedDates``)."""
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not body["notAllowedDates"]:
            del body["notAllowedDates"]
        return body

    def blocked(self) -> list[tuple[datetime, datetime]]:
        """``not_allowed_dates`` as UTC intervals ``[start, end)``: from the start date's
        00:00 to the day after the end date's 00:00, in ``utc_offset``."""
        tz = self.tz
        return [(datetime.combine(s.start, time(), tz).astimezone(UTC),
                 datetime.combine(s.end + timedelta(days=1), time(), tz).astimezone(UTC))
                for s in self.not_allowed_dates]

    def describe(self) -> str:
        """The window for people: ``every 3 weeks on Monday at 08:30 (UTC+05:30) for 10 h``."""
        s = self.schedule
        when: str
        if s.daily:
            n = s.daily.interval_days
            when = "every day" if n == 1 else f"every {n} days"
        elif s.weekly:
            n = s.weekly.interval_weeks
            when = (f"every {s.weekly.day_of_week}" if n == 1
                    else f"every {n} weeks on {s.weekly.day_of_week}")
        elif s.absolute_monthly:
            n = s.absolute_monthly.interval_months
            when = (("every month" if n == 1 else f"every {n} months")
                    + f" on day {s.absolute_monthly.day_of_month}")
        else:
            r = s.relative_monthly
            assert r is not None
            when = (("every month" if r.interval_months == 1
                     else f"every {r.interval_months} months")
                    + f" on the {r.week_index.lower()} {r.day_of_week}")
        return f"{when} at {self.start_time} (UTC{self.utc_offset}) for {self.duration_hours} h"


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)


def _path(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


#: what AKS allows, by field (REST spec constraints), added to pydantic's own message
_RANGES = {"duration_hours": "a window lasts 4 to 24 hours",
           "interval_days": "every 1 to 7 days", "interval_weeks": "every 1 to 4 weeks",
           "interval_months": "every 1 to 6 months", "day_of_month": "a day from 1 to 31"}


def _error(exc: ValidationError, prefix: str, what: str) -> MaintenanceWindowError:
    lines = []
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after",))
        msg = e["msg"].removeprefix("Value error, ")
        hint = _RANGES.get(_snake(str(loc[-1]))) if loc else None
        if hint and e["type"] not in ("missing", "extra_forbidden"):
            msg += f" ({hint})"
        if e["type"] == "extra_forbidden":
            msg = "is not a field of a maintenance window"
        got = "" if e["type"] in ("missing", "extra_forbidden") or isinstance(
            e.get("input"), dict | list) else f" (got {e['input']!r})"
        lines.append(f"  {_path(loc, prefix)}: {msg}{got}")
    return MaintenanceWindowError(f"{what} is not a valid maintenance window:\n"
                                  + "\n".join(lines))


def parse_arm_window(body: Mapping[str, Any], what: str = "ARM's maintenanceWindow"
                     ) -> MaintenanceWindow:
    """ARM's ``maintenanceWindow`` object (camelCase; other schedule kinds may be null).

    Raises:
        MaintenanceWindowError: naming each wrong field as ``maintenanceWindow.<path>``.
    """
    try:
        return MaintenanceWindow.model_validate(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise _error(exc, "maintenanceWindow", what) from None


def parse_arm_configuration(body: Mapping[str, Any]) -> tuple[str, MaintenanceWindow | None]:
    """A ``maintenanceConfigurations`` resource as ARM returns it (``{"name", "properties":
    {"maintenanceWindow" | "timeInWeek", ...}}``).

    Returns:
        its name and its window; None for a configuration without ``maintenanceWindow`` (the
        legacy ``default`` form with ``timeInWeek`` hour slots, which this model leaves out).
    Raises:
        MaintenanceWindowError: a ``maintenanceWindow`` that is not valid.
    """
    name = str(body.get("name") or "")
    window = (body.get("properties") or {}).get("maintenanceWindow")
    if window is None:
        return name, None
    return name, parse_arm_window(window, f"maintenance configuration {name!r}")


def parse_config_window(body: Mapping[str, Any], where: str = "maintenance_window"
                        ) -> MaintenanceWindow:
    """meshops' own form of a window (the fleet file's snake_case fields).

    Raises:
        MaintenanceWindowError: naming each wrong field as ``<where>.<path>``.
    """
    try:
        return MaintenanceWindow.model_validate(body, by_alias=False, by_name=True)
    except ValidationError as exc:
        raise _error(exc, where, where) from None


def _rule(window: MaintenanceWindow, anchor: date) -> rrule.rrule:
    """The occurrences' starts, aware datetimes in the window's offset."""
    dtstart = datetime.combine(anchor, window.starts_at, window.tz)
    s = window.schedule
    if s.daily:
        return rrule.rrule(rrule.DAILY, dtstart=dtstart, interval=s.daily.interval_days)
    if s.weekly:
        # weeks counted from the start date's own weekday: the first occurrence is the first
        # dayOfWeek on or after startDate, then every intervalWeeks weeks
        return rrule.rrule(rrule.WEEKLY, dtstart=dtstart, interval=s.weekly.interval_weeks,
                           byweekday=_RR_DAYS[s.weekly.day_of_week], wkst=anchor.weekday())
    if s.absolute_monthly:
        return rrule.rrule(rrule.MONTHLY, dtstart=dtstart,
                           interval=s.absolute_monthly.interval_months,
                           bymonthday=s.absolute_monthly.day_of_month)
    r = s.relative_monthly
    assert r is not None
    return rrule.rrule(rrule.MONTHLY, dtstart=dtstart, interval=r.interval_months,
                       byweekday=_RR_DAYS[r.day_of_week](_WEEK_INDEX[r.week_index]))


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {at!r}")
    return at


def occurrences(window: MaintenanceWindow, after: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The window's occurrences that end after ``after``, in order, as UTC ``(start, end)``,
    those overlapping ``not_allowed_dates`` left out; up to :data:`HORIZON` ahead."""
    after = _aware(after, "after").astimezone(UTC)
    anchor = window.start_date or after.astimezone(window.tz).date()
    rule = _rule(window, anchor)
    blocked = window.blocked()
    first = (after - window.duration).astimezone(window.tz)
    until = after + HORIZON
    for start in rule.xafter(first, inc=False):
        start_utc = start.astimezone(UTC)
        if start_utc > until:
            return
        end_utc = start_utc + window.duration
        if any(start_utc < b_end and end_utc > b_start for b_start, b_end in blocked):
            continue
        yield start_utc, end_utc


def next_window(window: MaintenanceWindow, after: datetime) -> tuple[datetime, datetime]:
    """The first occurrence of ``window`` that ends after ``after``: the current one when
    ``after`` is inside it, else the next to open.

    Args:
        window: the maintenance window.
        after: an aware datetime (any zone; UTC by convention).
    Returns:
        ``(start, end)`` as UTC-aware datetimes, ``end - start`` = ``duration_hours``.
    Raises:
        MaintenanceWindowError: no occurrence within :data:`HORIZON` (five years) of
            ``after`` (a window whose every occurrence is on not-allowed dates).
        ValueError: ``after`` is naive.
    """
    for occurrence in occurrences(window, after):
        return occurrence
    raise MaintenanceWindowError(
        f"the maintenance window ({window.describe()}) has no occurrence in the five years "
        f"after {after.isoformat()} outside its not-allowed dates")


def in_window(window: MaintenanceWindow, at: datetime) -> bool:
    """Whether ``at`` (aware) is inside an occurrence of ``window`` (start included, end
    not) that no not-allowed date blocks."""
    at = _aware(at, "at").astimezone(UTC)
    for start, end in occurrences(window, at):
        return start <= at < end
    return False
