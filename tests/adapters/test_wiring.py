"""The bot and the worker build their ``Engine`` through one wiring function, so they give the
same answer to who may request or approve, Slack user groups (``S…``) included.

Both engines are built from the environment and a fleet file, as the processes build them,
against the sandbox's Slack Web API emulator and a real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.http import serve
from sandbox.slack import SlackEmulator
from tests.conftest import REDIS_URL, free_port_base
from workers.config import load_fleet, settings
from workers.engine import Engine
from workers.slack.client import make_client
from workers.tasks.app import Context
from workers.wiring import build_engine

LEAD, PLATFORM, STRANGER = "U0LEAD001", "U0PLAT001", "U0NOBODY1"


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    port = free_port_base(16000, 17000)  # below the ephemeral port range
    emu = SlackEmulator("xoxb-test", {"C0MESH001": "mesh"},
                        {LEAD: "lead", PLATFORM: "platform", STRANGER: "stranger"},
                        usergroups={"S0MESHLEADS": [LEAD], "S0PLATFORM": [PLATFORM]},
                        base_url=f"http://127.0.0.1:{port}")
    server = serve(emu.router(), "slack", "127.0.0.1", port)
    yield emu
    server.shutdown()


@pytest.fixture
def environment(slack: SlackEmulator, prefix: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fleet whose approvers and requesters are user groups, and the environment of a
    meshops process pointed at it."""
    fleet = {
        "slack": {"api_url": slack.base_url + "/api/"},
        "clusters": {"dev": {
            "subscription": "11111111-2222-3333-4444-555555555555",
            "resource_group": "rg-dev", "name": "aks-dev", "location": "westeurope",
            "channel": "C0MESH001", "requesters": ["S0PLATFORM"],
            "approvers": ["S0MESHLEADS"], "prometheus": {"url": "http://127.0.0.1:9"}}},
        "releases": {"enabled": False},
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    for name, value in {"MESHOPS_FLEET": str(path), "REDIS_URL": REDIS_URL,
                        "MESHOPS_REDIS_PREFIX": prefix, "SLACK_BOT_TOKEN": "xoxb-test"}.items():
        monkeypatch.setenv(name, value)
    return path


def answers(engine: Engine, user: str) -> tuple[bool, bool]:
    """(may request, may approve) on cluster ``dev``."""
    policy = engine.policy("dev")
    return policy.may_request(user), user in policy.approvers


def test_bot_and_worker_expand_user_groups_alike(environment: Path,
                                                  slack: SlackEmulator) -> None:
    env = settings()
    fleet = load_fleet(env.meshops_fleet)
    # the bot, as meshops.wiring.run_bot builds it
    bot = build_engine(env, fleet, make_client(env.slack_bot_token, fleet.slack.api_url))
    # the worker, as each worker process builds it
    worker = Context().engine

    assert answers(bot, LEAD) == answers(worker, LEAD) == (True, True)
    assert answers(bot, PLATFORM) == answers(worker, PLATFORM) == (True, False)
    assert answers(bot, STRANGER) == answers(worker, STRANGER) == (False, False)
    assert bot.policy("dev") == worker.policy("dev")
    # both asked Slack who is in the groups: the worker no longer skips the expansion
    assert slack.calls.count("usergroups.users.list") == 4


def test_build_engine_makes_its_own_client_from_the_environment(environment: Path) -> None:
    env = settings()
    engine = build_engine(env, load_fleet(env.meshops_fleet))
    assert answers(engine, LEAD) == (True, True)
    assert engine.store.p == env.meshops_redis_prefix
