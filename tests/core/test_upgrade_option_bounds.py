"""Upgrade options within bounds that say what would be right; an option given twice is
refused by name instead of its last value silently winning."""

from __future__ import annotations

import pytest

from workflows.commands import Plan, StartRun, parse
from workflows.errors import InvalidCommand
from workflows.syntax import (
    BAKE_BOUNDS_S,
    INTERVAL_BOUNDS_S,
    duration_text,
    parse_duration,
    timing_problem,
)


@pytest.mark.parametrize(("flags", "needle"), [
    ("--bake=0", "`--bake` must be between 5s and 24h; `0` is not."),
    ("--bake=4s", "`--bake` must be between 5s and 24h; `4s` is not."),
    ("--bake=99999999h", "`--bake` must be between 5s and 24h; `99999999h` is not."),
    ("--bake=" + "9" * 400, "`--bake` must be between 5s and 24h"),
    ("--interval=500ms", "`--interval` must be between 1s and 5m; `500ms` is not."),
    ("--interval=10m --bake=1h", "`--interval` must be between 1s and 5m; `10m` is not."),
    ("--bake=5m --interval=301", "`--interval` must be between 1s and 5m; `301` is not."),
    ("--wave-size=0", "`--wave-size` takes a whole number from 1 to 1000 (namespaces per "
                      "wave), e.g. `--wave-size=3`."),
    ("--wave-size=99999999999999999999", "`--wave-size` takes a whole number from 1 to 1000"),
    ("--wave-size=²", "`--wave-size` takes a whole number from 1 to 1000"),
    ("--bake=١٠m", "`١٠m` is not a duration"),
    ("--bake=1m --interval=2m", "The gate interval (2m) is longer than the bake (1m): the "
                                "gate would not sample once per wave. Make `--interval` at "
                                "most `--bake`."),
    ("--bake=5m --bake=1h", "`--bake` is given more than once (`--bake=5m`, `--bake=1h`); "
                            "give it once."),
    ("--wave-size=2 --interval=30s --wave-size=3", "`--wave-size` is given more than once"),
    ("--approve-waves --approve-waves=no", "`--approve-waves` is given more than once"),
])
@pytest.mark.parametrize("verb", ["upgrade", "plan"])
def test_out_of_bounds_and_repeated_options_are_refused(verb: str, flags: str,
                                                        needle: str) -> None:
    with pytest.raises(InvalidCommand) as err:
        parse(f"{verb} dev asm-1-26 {flags}")
    assert needle in str(err.value)


def test_the_bounds_take_what_the_demo_the_tests_and_the_defaults_use() -> None:
    # meshops demo (10s / 5s), the e2e suite (5s / 2s, 6s / 3s), the defaults (10m / 1m)
    for bake, interval in (("10s", "5s"), ("5s", "2s"), ("6s", "3s"), ("10m", "1m"),
                           ("24h", "5m"), ("5s", "1s"), ("5s", "5s")):
        cmd = parse(f"upgrade dev asm-1-26 --bake={bake} --interval={interval}")
        assert cmd == StartRun("upgrade", "dev", "asm-1-26", {
            "bake_s": parse_duration(bake), "interval_s": parse_duration(interval)})
    assert parse("plan dev asm-1-26 --wave-size=1000") == Plan("dev", "asm-1-26",
                                                               {"wave_size": 1000})


def test_timing_and_duration_texts() -> None:
    assert timing_problem(60, 60) is None and timing_problem(60, 61) is not None
    assert [duration_text(s) for s in (*BAKE_BOUNDS_S, *INTERVAL_BOUNDS_S, 90, 2.5)] == [
        "5s", "24h", "1s", "5m", "90s", "2.5s"]
