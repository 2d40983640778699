"""AKS maintenance windows (workflows/maintenance.py): reading them, and when they are open.

The ARM bodies are the REST spec's own examples (tests/fixtures/aks/maintenance/README.md);
expected times are worked out by hand from the AKS doc's rules, not by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workflows.maintenance import (
    AUTO_UPGRADE,
    NODE_OS_UPGRADE,
    MaintenanceWindow,
    MaintenanceWindowError,
    in_window,
    next_window,
    parse_arm_configuration,
    parse_arm_window,
    parse_config_window,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aks" / "maintenance"


def example(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(schedule: dict[str, Any], start_time: str = "01:00", duration: int = 4,
           offset: str = "+00:00", start_date: str | None = "2026-12-01",
           not_allowed: list[dict[str, str]] | None = None) -> MaintenanceWindow:
    body: dict[str, Any] = {"schedule": schedule, "durationHours": duration,
                            "utcOffset": offset, "startTime": start_time}
    if start_date:
        body["startDate"] = start_date
    if not_allowed:
        body["notAllowedDates"] = not_allowed
    return parse_arm_window(body)


# ------------------------------------------------------------------ the REST spec's examples


def test_create_example_relative_monthly_first_monday_skips_a_not_allowed_quarter() -> None:
    body = example("MaintenanceConfigurationsCreate_Update_MaintenanceWindow.json")
    w = parse_arm_window(body["parameters"]["parameters"]["properties"]["maintenanceWindow"])
    assert w.schedule.kind == "relativeMonthly"
    # every 3 months from January 2023, first Monday, 08:30 at +05:30 (03:00 UTC), 10 hours
    assert next_window(w, utc(2023, 1, 1)) == (utc(2023, 1, 2, 3), utc(2023, 1, 2, 13))
    assert next_window(w, utc(2023, 1, 2, 13)) == (utc(2023, 4, 3, 3), utc(2023, 4, 3, 13))
    # Monday 2024-01-01 lies in the not-allowed 2023-12-23..2024-01-05: the next is April's
    assert next_window(w, utc(2023, 10, 3)) == (utc(2024, 4, 1, 3), utc(2024, 4, 1, 13))
    assert not in_window(w, utc(2024, 1, 1, 5))
    assert in_window(w, utc(2023, 10, 2, 5))


def test_create_example_answer_weekly_every_three_weeks() -> None:
    body = example("MaintenanceConfigurationsCreate_Update_MaintenanceWindow.json")
    name, w = parse_arm_configuration(body["responses"]["200"]["body"])
    assert name == AUTO_UPGRADE and w is not None
    # startDate 2023-01-01 is a Sunday: the first Monday on or after it, then every 3 weeks
    starts = []
    at = utc(2023, 1, 1)
    for _ in range(4):
        start, end = next_window(w, at)
        assert end - start == timedelta(hours=10)
        starts.append(start)
        at = end
    assert starts == [utc(2023, 1, 2, 3), utc(2023, 1, 23, 3), utc(2023, 2, 13, 3),
                      utc(2023, 3, 6, 3)]


def test_get_example_daily_every_three_days_west_of_utc_with_not_allowed_dates() -> None:
    name, w = parse_arm_configuration(
        example("MaintenanceConfigurationsGet_MaintenanceWindow.json")["responses"]["200"]["body"])
    assert name == NODE_OS_UPGRADE and w is not None
    # 09:30 at -07:00 is 16:30 UTC; every 3 days from 2023-01-01: Feb 15, 18, 21, 24, 27;
    # Feb 18-25 are not allowed (from 07:00 UTC on the 18th to 07:00 UTC on the 26th)
    assert next_window(w, utc(2023, 2, 15)) == (utc(2023, 2, 15, 16, 30),
                                                utc(2023, 2, 15, 20, 30))
    assert next_window(w, utc(2023, 2, 16)) == (utc(2023, 2, 27, 16, 30),
                                                utc(2023, 2, 27, 20, 30))
    assert w.blocked()[0] == (utc(2023, 2, 18, 7), utc(2023, 2, 26, 7))


def test_list_example_absolute_monthly_and_the_legacy_default_form() -> None:
    items = example("MaintenanceConfigurationsList_MaintenanceWindow.json")[
        "responses"]["200"]["body"]["value"]
    windows = dict(parse_arm_configuration(i) for i in items)
    assert set(windows) == {AUTO_UPGRADE, NODE_OS_UPGRADE}
    auto = windows[AUTO_UPGRADE]
    assert auto is not None
    # every 3 months on the 15th, 08:30 UTC, 5 hours: Jan 15, Apr 15, ...
    assert next_window(auto, utc(2023, 1, 16)) == (utc(2023, 4, 15, 8, 30),
                                                   utc(2023, 4, 15, 13, 30))
    assert in_window(auto, utc(2023, 4, 15, 8, 30))
    assert in_window(auto, utc(2023, 4, 15, 13, 29))
    assert not in_window(auto, utc(2023, 4, 15, 13, 30))  # the end is not in the window
    assert not in_window(auto, utc(2023, 5, 15, 9))  # not a month of the schedule
    legacy = example("MaintenanceConfigurationsList.json")["responses"]["200"]["body"]["value"]
    assert [parse_arm_configuration(i) for i in legacy] == [("default", None)]


def test_arm_form_round_trips() -> None:
    items = example("MaintenanceConfigurationsList_MaintenanceWindow.json")[
        "responses"]["200"]["body"]["value"]
    for item in items:
        w = parse_arm_window(item["properties"]["maintenanceWindow"])
        assert w.to_arm() == item["properties"]["maintenanceWindow"]


# ------------------------------------------------------------------ schedules


def test_weekly_every_two_weeks_from_the_first_day_on_or_after_the_start_date() -> None:
    # 2026-12-01 is a Tuesday: Fridays Dec 4, Dec 18, Jan 1
    w = window({"weekly": {"intervalWeeks": 2, "dayOfWeek": "Friday"}})
    assert next_window(w, utc(2026, 11, 1)) == (utc(2026, 12, 4, 1), utc(2026, 12, 4, 5))
    assert next_window(w, utc(2026, 12, 4, 5)) == (utc(2026, 12, 18, 1), utc(2026, 12, 18, 5))
    assert next_window(w, utc(2026, 12, 19)) == (utc(2027, 1, 1, 1), utc(2027, 1, 1, 5))
    assert not in_window(w, utc(2026, 12, 11, 2))  # the Friday in between


def test_absolute_monthly_day_31_has_no_window_in_shorter_months() -> None:
    w = window({"absoluteMonthly": {"intervalMonths": 1, "dayOfMonth": 31}},
               start_date="2027-01-01")
    assert next_window(w, utc(2027, 1, 1))[0] == utc(2027, 1, 31, 1)
    # February and April have no 31st: March 31, then May 31
    assert next_window(w, utc(2027, 2, 1))[0] == utc(2027, 3, 31, 1)
    assert next_window(w, utc(2027, 4, 1))[0] == utc(2027, 5, 31, 1)
    assert not in_window(w, utc(2027, 2, 28, 2))
    assert not in_window(w, utc(2027, 4, 30, 2))


def test_relative_monthly_last_friday() -> None:
    w = window({"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Last",
                                    "dayOfWeek": "Friday"}}, start_date="2027-01-01")
    assert next_window(w, utc(2027, 1, 1))[0] == utc(2027, 1, 29, 1)
    assert next_window(w, utc(2027, 1, 30))[0] == utc(2027, 2, 26, 1)


def test_daily_interval_counts_from_the_start_date() -> None:
    w = window({"daily": {"intervalDays": 2}}, start_time="12:00", start_date="2027-03-01")
    assert next_window(w, utc(2027, 3, 1, 17))[0] == utc(2027, 3, 3, 12)
    assert in_window(w, utc(2027, 3, 5, 15))
    assert not in_window(w, utc(2027, 3, 4, 13))
    # before startDate the window is inactive
    assert next_window(w, utc(2027, 1, 1))[0] == utc(2027, 3, 1, 12)


def test_no_start_date_anchors_at_the_day_asked_about() -> None:
    w = window({"daily": {"intervalDays": 1}}, start_time="12:00", start_date=None)
    assert w.start_date is None
    assert next_window(w, utc(2027, 6, 10, 16))[0] == utc(2027, 6, 11, 12)
    assert next_window(w, utc(2027, 6, 10, 11)) == (utc(2027, 6, 10, 12), utc(2027, 6, 10, 16))


def test_utc_offset_moves_the_window_across_the_date_line() -> None:
    # 22:00 at -08:00 is 06:00 UTC the next day
    w = window({"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}}, start_time="22:00",
               offset="-08:00", start_date="2027-01-01")
    # Monday 2027-01-04 22:00 PST = Tuesday 2027-01-05 06:00 UTC
    assert next_window(w, utc(2027, 1, 1)) == (utc(2027, 1, 5, 6), utc(2027, 1, 5, 10))
    w = window({"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}}, start_time="01:30",
               offset="+05:30", start_date="2027-01-01")
    # Monday 01:30 IST = Sunday 20:00 UTC
    assert next_window(w, utc(2027, 1, 1))[0] == utc(2027, 1, 3, 20)


def test_a_window_spanning_midnight_is_current_until_it_ends() -> None:
    w = window({"daily": {"intervalDays": 1}}, start_time="22:00", duration=6,
               start_date="2027-01-01")
    assert in_window(w, utc(2027, 1, 2, 3, 59))
    assert next_window(w, utc(2027, 1, 2, 3, 59)) == (utc(2027, 1, 1, 22), utc(2027, 1, 2, 4))
    assert not in_window(w, utc(2027, 1, 2, 4))
    assert next_window(w, utc(2027, 1, 2, 4)) == (utc(2027, 1, 2, 22), utc(2027, 1, 3, 4))


def test_not_allowed_dates_are_whole_local_days_and_block_overlapping_occurrences() -> None:
    # the REST spec's own example: +02:00, 2022-12-23 to 2023-01-03 blocks
    # 2022-12-22 22:00 to 2023-01-03 22:00 UTC
    w = window({"daily": {"intervalDays": 1}}, start_time="23:00", offset="+02:00",
               start_date="2022-12-01",
               not_allowed=[{"start": "2022-12-23", "end": "2023-01-03"}])
    assert w.blocked() == [(utc(2022, 12, 22, 22), utc(2023, 1, 3, 22))]
    # Dec 22 23:00 local (21:00 UTC) runs into Dec 23: overlapping, so skipped whole; so is
    # Jan 3 (the end date is included); Jan 4 is the next
    assert next_window(w, utc(2022, 12, 22, 12)) == (utc(2023, 1, 4, 21), utc(2023, 1, 5, 1))
    assert not in_window(w, utc(2022, 12, 22, 21, 30))
    assert next_window(w, utc(2022, 12, 21, 12))[0] == utc(2022, 12, 21, 21)


def test_a_window_blocked_for_good_has_no_next_occurrence() -> None:
    w = window({"daily": {"intervalDays": 1}}, start_date="2027-01-01",
               not_allowed=[{"start": "2027-01-01", "end": "2035-12-31"}])
    with pytest.raises(MaintenanceWindowError, match="no occurrence"):
        next_window(w, utc(2027, 1, 1))
    assert not in_window(w, utc(2027, 1, 2, 2))


def test_naive_datetimes_are_refused() -> None:
    w = window({"daily": {"intervalDays": 1}})
    with pytest.raises(ValueError, match="timezone-aware"):
        next_window(w, datetime(2027, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        in_window(w, datetime(2027, 1, 1))


# ------------------------------------------------------------------ the two forms and errors


def test_meshops_config_form_is_the_same_window() -> None:
    config = parse_config_window({
        "schedule": {"relative_monthly": {"interval_months": 3, "week_index": "First",
                                          "day_of_week": "Monday"}},
        "duration_hours": 10, "utc_offset": "+05:30", "start_date": "2023-01-01",
        "start_time": "08:30",
        "not_allowed_dates": [{"start": "2023-02-18", "end": "2023-02-25"},
                              {"start": "2023-12-23", "end": "2024-01-05"}]})
    body = example("MaintenanceConfigurationsCreate_Update_MaintenanceWindow.json")
    assert config == parse_arm_window(
        body["parameters"]["parameters"]["properties"]["maintenanceWindow"])
    assert config.start_date == date(2023, 1, 1)
    assert config.describe() == ("every 3 months on the first Monday at 08:30 (UTC+05:30) "
                                 "for 10 h")


@pytest.mark.parametrize(("change", "says"), [
    ({"durationHours": 3}, "maintenanceWindow.durationHours: Input should be greater than or "
                           "equal to 4 (a window lasts 4 to 24 hours) (got 3)"),
    ({"durationHours": 25}, "a window lasts 4 to 24 hours"),
    ({"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"},
                   "daily": {"intervalDays": 1}}},
     "maintenanceWindow.schedule: a schedule has exactly one of daily"),
    ({"schedule": {}}, "got none"),
    ({"schedule": {"relativeMonthly": {"intervalMonths": 1, "weekIndex": "Fifth",
                                       "dayOfWeek": "Monday"}}},
     "maintenanceWindow.schedule.relativeMonthly.weekIndex: Input should be 'First', "
     "'Second', 'Third', 'Fourth' or 'Last' (got 'Fifth')"),
    ({"schedule": {"weekly": {"intervalWeeks": 5, "dayOfWeek": "Monday"}}},
     "every 1 to 4 weeks"),
    ({"schedule": {"absoluteMonthly": {"intervalMonths": 1, "dayOfMonth": 32}}},
     "a day from 1 to 31"),
    ({"utcOffset": "+5:30"}, "maintenanceWindow.utcOffset: '+5:30' is not a UTC offset: "
                             "+HH:mm or -HH:mm"),
    ({"startTime": "24:00"}, "maintenanceWindow.startTime: '24:00' is not a start time"),
    ({"notAllowedDates": [{"start": "2027-02-01", "end": "2027-01-01"}]},
     "maintenanceWindow.notAllowedDates[0]: end 2027-01-01 is before start 2027-02-01"),
    ({"duration_hours": 4}, "maintenanceWindow.duration_hours: is not a field"),
])
def test_arm_errors_name_the_field_and_what_would_be_right(change: dict[str, Any],
                                                           says: str) -> None:
    body = {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}},
            "durationHours": 4, "startTime": "01:00"} | change
    with pytest.raises(MaintenanceWindowError) as err:
        parse_arm_window(body)
    assert says in str(err.value)


def test_config_errors_use_the_config_path() -> None:
    with pytest.raises(MaintenanceWindowError) as err:
        parse_config_window({"schedule": {"weekly": {"interval_weeks": 1}},
                             "duration_hours": 4, "start_time": "01:00"},
                            where="clusters.shop.maintenance_window")
    assert "clusters.shop.maintenance_window.schedule.weekly.day_of_week: Field required" \
        in str(err.value)


def test_a_missing_start_time_is_named() -> None:
    with pytest.raises(MaintenanceWindowError, match=r"maintenanceWindow\.startTime: Field "
                                                     "required"):
        parse_arm_window({"schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4})


def test_arm_nulls_are_arms_defaults() -> None:
    """ARM's answers may carry null for the other schedule kinds and unset fields."""
    w = parse_arm_window({"schedule": {"daily": None, "weekly": {"intervalWeeks": 1,
                                                                 "dayOfWeek": "Sunday"},
                                       "absoluteMonthly": None, "relativeMonthly": None},
                          "durationHours": 4, "startTime": "01:00", "utcOffset": None,
                          "startDate": None, "notAllowedDates": None})
    assert w.utc_offset == "+00:00" and w.not_allowed_dates == () and w.start_date is None
    assert w.schedule.kind == "weekly"
