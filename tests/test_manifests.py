"""The Slack app manifests ask for exactly what meshops uses."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

#: the Web API methods meshops calls and the bot scope each needs
USED = {"chat.postMessage": "chat:write", "chat.update": "chat:write",
        "chat.postEphemeral": "chat:write", "usergroups.users.list": "usergroups:read",
        "files.getUploadURLExternal": "files:write",
        "files.completeUploadExternal": "files:write",
        # public and private channels (Slack's scopes for conversations.history/replies)
        "conversations.history": ("channels:history", "groups:history"),
        "conversations.replies": ("channels:history", "groups:history")}
SCOPES = {s for v in USED.values() for s in ((v,) if isinstance(v, str) else v)}


def test_manifests_scopes_commands_and_interactivity() -> None:
    for name, socket in (("slack-app.manifest.yaml", True),
                         ("slack-app.http.manifest.yaml", False)):
        m = yaml.safe_load((ROOT / "examples" / name).read_text())
        assert set(m["oauth_config"]["scopes"]["bot"]) == {"commands", *SCOPES}, name
        (cmd,) = m["features"]["slash_commands"]
        assert cmd["command"] == "/mesh"
        assert m["settings"]["interactivity"]["is_enabled"] is True
        assert m["settings"]["socket_mode_enabled"] is socket
        if not socket:
            assert cmd["url"].endswith("/slack/events")
            assert m["settings"]["interactivity"]["request_url"].endswith("/slack/events")
