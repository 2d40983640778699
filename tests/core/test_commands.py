import random
import re
import shlex

import pytest

from workflows.commands import (
    Decide,
    Help,
    Plan,
    PlanCampaign,
    Revisions,
    Runs,
    StartRun,
    Status,
    parse,
    parse_duration,
    split_words,
    usage,
)
from workflows.errors import InvalidCommand, InvalidRevision
from workflows.model import FLEET_SCOPE


def test_upgrade_with_options() -> None:
    cmd = parse("upgrade dev asm-1-26 --bake=5m --interval=30s --wave-size=2 --approve-waves")
    assert cmd == StartRun("upgrade", "dev", "asm-1-26", {
        "bake_s": 300.0, "interval_s": 30.0, "wave_size": 2, "approve_waves": True})


def test_kinds_parse_their_own_verbs() -> None:
    assert parse("enable edge") == StartRun("enable", "edge", "")
    assert parse("enable edge asm-1-26") == StartRun("enable", "edge", "asm-1-26")
    assert parse("ingress dev enable internal") == StartRun(
        "ingress", "dev", fields={"ingress_mode": "Internal", "ingress_enabled": True})
    assert parse("disable dev") == StartRun("disable", "dev")
    with pytest.raises(InvalidCommand, match="Usage: `/mesh disable <cluster>`"):
        parse("disable")


def test_simple_commands() -> None:
    assert parse("") == Help()
    assert parse("help") == Help()
    assert parse("status") == Status()
    assert parse("STATUS prod") == Status("prod")
    assert parse("approve r-0123456789") == Decide("approve", "r-0123456789")
    assert parse("revisions") == Revisions()
    assert parse("revisions prod") == Revisions("prod")
    assert parse("runs") == Runs()
    assert parse("runs prod") == Runs("prod")
    assert parse("runs r-0123456789") == Runs(run_id="r-0123456789")
    assert parse("plan prod asm-1-27 --wave-size=5") == Plan("prod", "asm-1-27",
                                                              {"wave_size": 5})
    assert parse("campaign plan") == PlanCampaign()
    assert parse("Campaign PLAN asm-1-27") == PlanCampaign("asm-1-27")


@pytest.mark.parametrize(("text", "needle"), [
    ("upgrade dev", "takes a cluster and a revision"),
    ("plan dev", "`plan` takes a cluster and a revision"),
    ("runs a b", "takes a cluster or a run id"),
    ("revisions a b", "at most one cluster"),
    ("upgrade dev asm-1-26 extra", "takes a cluster and a revision"),
    ("frobnicate", "Unknown command `frobnicate`"),
    ("approve", "takes one run id"),
    ("approve 42", "is not a run id"),
    ("upgrade dev asm-1-26 --colour=red", "Unknown option `--colour`"),
    ("upgrade dev asm-1-26 --bake=soon", "not a duration"),
    ("upgrade <@U123> asm-1-26", "not mentions"),
    ("status " + "x" * 4000, "characters long"),
    ("upgrade Dev_Cluster asm-1-26", "not a cluster name"),
    ('upgrade "dev asm-1-26', "Could not read"),
    ("campaign", "`campaign` takes `plan [revision]` or `start [revision]`. Usage: "
                 "`/mesh campaign plan|start [revision]`"),
    ("campaign begin asm-1-27", "`campaign` takes `plan [revision]` or `start [revision]`, "
                                "not `begin`"),
    ("campaign plan asm-1-27 asm-1-28", "`campaign plan` takes at most one revision"),
    ("campaign start asm-1-27 asm-1-28", "`campaign start` takes at most one revision"),
])
def test_bad_commands_say_what_would_be_right(text: str, needle: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(needle)):
        parse(text)


def test_campaign_start_is_the_kind_and_plan_stays_a_dry_run() -> None:
    assert parse("campaign start asm-1-27") == StartRun("campaign", FLEET_SCOPE, "asm-1-27")
    assert parse("Campaign START") == StartRun("campaign", "@fleet", "")
    assert parse("campaign plan asm-1-27") == PlanCampaign("asm-1-27")
    with pytest.raises(InvalidRevision, match="Did you mean `asm-1-27`"):
        parse("campaign start 1.27")


def test_help_lists_campaign_once_with_both_forms() -> None:
    lines = usage().splitlines()
    campaign = [line for line in lines if line.startswith("`/mesh campaign")]
    assert campaign == ["`/mesh campaign plan|start [revision]`"]


def test_malformed_revision() -> None:
    with pytest.raises(InvalidRevision, match="Did you mean `asm-1-26`"):
        parse("upgrade dev 1.26")
    with pytest.raises(InvalidRevision, match="Did you mean `asm-1-27`"):
        parse("campaign plan 1.27")


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration("500ms") == 0.5


def test_words_are_split_as_shlex_splits_them() -> None:
    """The split without shlex (text with no quotes or backslashes) reads every text as
    shlex.split does: the same words, or the same refusal (an unclosed quote)."""
    rng = random.Random(7)
    alphabet = ["a", "Z", "-", "1", "=", "#", " ", "  ", "\t", "\n", "\r", "\u00a0", "\x0b",
                "\x0c", "'", '"', "\\", "é"]
    texts = ["upgrade prod asm-1-26 --bake 10m", " status\tprod\n", "", "   ",
             *("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
               for _ in range(3000))]
    for text in texts:
        try:
            expected: list[str] | str = shlex.split(text)
        except ValueError:
            expected = "refused"
        try:
            got: list[str] | str = split_words(text)
        except ValueError:
            got = "refused"
        assert got == expected, text
    assert split_words("upgrade  prod\u00a0x") == ["upgrade", "prod\u00a0x"]
