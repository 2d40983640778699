"""The Slack Web API emulator: checks tokens and Block Kit, records every call.

Implements the Web API methods meshops calls (``auth.test``, ``chat.postMessage``,
``chat.update``, ``chat.postEphemeral``, ``conversations.history``,
``conversations.replies`` (message metadata with ``include_all_metadata``, ``oldest``),
``usergroups.users.list``, ``users.info``, the three steps of
``files_upload_v2`` (``files.getUploadURLExternal``, the upload URL,
``files.completeUploadExternal``), ``views.publish`` (the App Home tab; the current view
of each user kept in ``homes``), ``views.open`` / ``views.update`` (modals, opened with a
trigger the emulator issued, kept in ``modals`` by view id), and ``apps.connections.open``
for Socket Mode with an app-level token) with Slack's envelope
(``{"ok": true, ...}`` or ``{"ok": false, "error": "invalid_auth"}``), form or JSON bodies,
and ``response_url`` targets for ephemeral replies to slash commands and clicks. Blocks are
validated with slack_sdk's Block Kit models and Slack's limits (50 blocks a message, 3,000
characters a section text); an invalid message is refused with ``invalid_blocks`` as Slack
does. ``rate_limit_next`` answers the next calls with 429 and ``Retry-After``;
``outage_until`` makes every call answer 503 ``service_unavailable`` until then.

Slack's published rate limits (https://docs.slack.dev/apis/web-api/rate-limits), per app
and workspace, are enforced as Slack answers them: HTTP 429 ``{"ok": false, "error":
"ratelimited"}`` with ``Retry-After`` in whole seconds, the call not made. Each method of
:data:`METHOD_PER_MINUTE` at most its tier's calls in any 60 s (Tier 2 20, Tier 3 50, Tier 4
100 a minute); messages into one channel (``chat.postMessage``, a file shared into it) one a
second, with a burst of :data:`CHANNEL_BURST` ("short bursts >1 allowed"; a refused post
posts nothing and is not counted there). The numbers are
constructor arguments (``per_minute``, ``channel_posts_per_s``, ``channel_burst``;
``enforce_limits=False`` turns them off); ``throttled`` lists every 429 the limits gave
(``GET /_sandbox/slack/throttled``).

Channels the app cannot use, as Slack answers a bot token (method docs, "Errors"): in a
channel the app is not a member of (``not_member``: never invited; the app's manifests in
``examples/`` ask for ``chat:write``, not ``chat:write.public``) ``chat.postMessage``,
``chat.postEphemeral`` and sharing a file answer ``not_in_channel``, and so do
``conversations.history``/``replies`` (``channels:history`` reads only channels the app has
been added to); in an ``archived`` channel posting answers ``is_archived`` and
``chat.update`` ``is_inactive`` ("cannot be edited within a frozen, archived or deleted
channel"), while its history stays readable.

``GET /_sandbox/slack/log?after=N`` returns the recorded conversation for viewers.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

from sandbox.http import Request, Response, Router

#: calls a minute of each method meshops calls, by its tier on Slack's method pages
#: (Tier 2 20, Tier 3 50, Tier 4 100 a minute); a method not named is not limited here
METHOD_PER_MINUTE = {
    "chat.update": 50,  # Tier 3
    "conversations.history": 50,  # Tier 3
    "conversations.replies": 50,  # Tier 3
    "chat.postEphemeral": 100,  # Tier 4
    "files.getUploadURLExternal": 100,  # Tier 4
    "files.completeUploadExternal": 100,  # Tier 4
    "users.info": 100,  # Tier 4
    "views.publish": 100,  # Tier 4
    "views.open": 100,  # Tier 4
    "views.update": 100,  # Tier 4
    "usergroups.users.list": 20,  # Tier 2
}
#: messages a channel takes a second, and the burst it takes at once
CHANNEL_POSTS_PER_S = 1.0
CHANNEL_BURST = 3

MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100  # a modal's or Home tab's view (Slack's views.publish)
MAX_SECTION_TEXT = 3000
#: a modal's title, submit and close texts (Slack's "Modal view" reference: 24 characters)
MAX_MODAL_LABEL = 24
MAX_PRIVATE_METADATA = 3000
MAX_CALLBACK_ID = 255
#: a trigger_id may be exchanged for a modal this long after the interaction that made it
#: ("Triggers expire in three seconds", https://docs.slack.dev/interactivity/handling-user-interaction)
TRIGGER_TTL_S = 3.0
MAX_TEXT = 40000


def check_blocks(blocks: Any, max_blocks: int = MAX_BLOCKS) -> str | None:
    """Why Slack would refuse these blocks (of a message: 50 at most; of a view:
    ``max_blocks`` 100), or None."""
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        return "blocks must be a list"
    if len(blocks) > max_blocks:
        return f"{len(blocks)} blocks; Slack allows {max_blocks}"
    for i, raw in enumerate(blocks):
        try:
            block = Block.parse(raw)
            if block is None:
                return f"block {i} has an unknown type"
            block.validate_json()
        except (SlackObjectFormationError, KeyError, TypeError, ValueError) as exc:
            return f"block {i}: {exc}"
        text = (raw.get("text") or {}).get("text", "") if isinstance(raw, dict) else ""
        if len(text) > MAX_SECTION_TEXT:
            return f"block {i}: text of {len(text)} characters; Slack allows {MAX_SECTION_TEXT}"
    return None


EVENT_TYPE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")


def _metadata(raw: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """``chat.postMessage``'s ``metadata`` argument (Slack "Message metadata": a JSON object
    with ``event_type`` — letters, digits, underscores — and an ``event_payload`` object)."""
    if not raw:
        return None, None
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None, "metadata is not JSON"
    if not isinstance(data, dict) or not EVENT_TYPE.match(str(data.get("event_type", ""))) \
            or not isinstance(data.get("event_payload"), dict):
        return None, "metadata needs an event_type and an event_payload object"
    return {"event_type": data["event_type"], "event_payload": data["event_payload"]}, None


def _shown(msgs: list[dict[str, Any]], args: dict[str, str]) -> list[dict[str, Any]]:
    """Messages as ``conversations.history``/``replies`` return them: the ``metadata`` only
    with ``include_all_metadata=true`` (Slack's documented argument)."""
    with_metadata = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
    out = []
    for m in msgs:
        shown = {k: v for k, v in m.items() if k != "metadata" and v is not None}
        if with_metadata and m.get("metadata"):
            shown["metadata"] = m["metadata"]
        out.append(shown)
    return out


class RateLimits:
    """Slack's limits as the emulator keeps them: a sliding minute per method and a token
    bucket per channel (``rate`` messages a second, ``burst`` at once)."""

    def __init__(self, per_minute: dict[str, int], channel_posts_per_s: float,
                 channel_burst: int, clock: Callable[[], float]):
        self.per_minute = per_minute
        self.rate = channel_posts_per_s
        self.burst = float(channel_burst)
        self.clock = clock
        self.calls: dict[str, deque[float]] = {}
        self.buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)

    def check(self, method: str, channel: str | None) -> int:
        """0 when the call may go (it is counted against its method), else Slack's
        ``Retry-After`` (s); a post is counted against its channel by :meth:`posted`."""
        now = self.clock()
        limit = self.per_minute.get(method)
        calls = self.calls.setdefault(method, deque())
        while calls and calls[0] <= now - 60:
            calls.popleft()
        if limit is not None and len(calls) >= limit:
            return max(1, math.ceil(calls[0] + 60 - now))
        if channel is not None:
            tokens = self._tokens(channel, now)
            if tokens < 1:
                return max(1, math.ceil((1 - tokens) / self.rate))
        calls.append(now)
        return 0

    def _tokens(self, channel: str, now: float) -> float:
        tokens, at = self.buckets.get(channel, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def posted(self, channel: str) -> None:
        """A message went into ``channel`` (a refused call posts none and is not counted)."""
        now = self.clock()
        self.buckets[channel] = (self._tokens(channel, now) - 1, now)


def _posts_into(method: str, args: dict[str, str]) -> str | None:
    """The channel a call posts a message into (counted against its per-second limit)."""
    if method == "chat.postMessage":
        return str(args.get("channel", "")) or None
    if method == "files.completeUploadExternal":
        return str(args.get("channel_id", "")) or None
    return None


class SlackEmulator:
    def __init__(self, bot_token: str, channels: dict[str, str], users: dict[str, str],
                 usergroups: dict[str, list[str]] | None = None, base_url: str = "",
                 not_member: set[str] | None = None, archived: set[str] | None = None,
                 enforce_limits: bool = True, per_minute: dict[str, int] | None = None,
                 channel_posts_per_s: float = CHANNEL_POSTS_PER_S,
                 channel_burst: int = CHANNEL_BURST,
                 clock: Callable[[], float] = time.monotonic):
        self.bot_token = bot_token
        self.channels = channels  # id -> name
        self.not_member = set(not_member or ())  # channel ids the app was never invited to
        self.archived = set(archived or ())  # archived channel ids
        self.users = users  # id -> name
        self.usergroups = usergroups or {}
        self.base_url = base_url.rstrip("/")
        self.lock = threading.Lock()
        self.log: list[dict[str, Any]] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.homes: dict[str, dict[str, Any]] = {}  # user id -> their Home tab's view
        self.modals: dict[str, dict[str, Any]] = {}  # view id -> an open modal (+ "user")
        self.triggers: dict[str, tuple[str, float]] = {}  # trigger id -> (user, issued at)
        self.clock = clock
        self.calls: list[str] = []
        self.rate_limit_next = 0
        self.outage_until = 0.0  # until then every Web API call answers 503
        self.limits = RateLimits(dict(METHOD_PER_MINUTE if per_minute is None else per_minute),
                                 channel_posts_per_s, channel_burst, clock) \
            if enforce_limits else None
        self.throttled: list[dict[str, Any]] = []  # the 429s the limits gave
        self._n = 0
        self.socket: SocketModeServer | None = None  # set by the sandbox

    def _ts(self) -> str:
        self._n += 1
        return f"{int(time.time())}.{self._n:06d}"

    def _record(self, kind: str, **entry: Any) -> dict[str, Any]:
        entry.update(kind=kind, seq=len(self.log) + 1, at=time.time())
        self.log.append(entry)
        return entry

    def router(self) -> Router:
        r = Router()
        r.add("POST", r"/api/(?P<method>[a-zA-Z.]+)", self.api)
        r.add("GET", r"/api/(?P<method>[a-zA-Z.]+)", self.api)
        r.add("POST", r"/_sandbox/slack/response/(?P<id>[\w-]+)", self.response_url)
        r.add("POST", r"/_sandbox/slack/upload/(?P<id>F\w+)", self.upload)
        r.add("GET", r"/_sandbox/slack/files/(?P<id>F\w+)", self.get_file)
        r.add("GET", r"/_sandbox/slack/log", self.get_log)
        r.add("GET", r"/_sandbox/slack/throttled", self.get_throttled)
        r.add("POST", r"/_sandbox/slack/triggers", self.post_trigger)
        r.add("GET", r"/_sandbox/slack/modals/(?P<id>V\w+)", self.get_modal)
        r.add("POST", r"/_sandbox/slack/modals/(?P<id>V\w+)/state", self.post_modal_state)
        r.add("POST", r"/_sandbox/slack/modals/(?P<id>V\w+)/close", self.post_modal_close)
        return r

    def issue_trigger(self, user: str) -> str:
        """A ``trigger_id`` for an interaction of ``user`` (a slash command, a click), as
        Slack puts in the payload it sends the app: exchangeable once for a modal within
        :data:`TRIGGER_TTL_S` (``views.open``)."""
        trigger = f"{int(time.time())}.{len(self.triggers) + 1}.{uuid.uuid4().hex[:24]}"
        with self.lock:
            self.triggers[trigger] = (user, self.clock())
        return trigger

    def post_trigger(self, req: Request) -> Response:
        """``POST /_sandbox/slack/triggers {"user": "U…"}`` → ``{"trigger_id"}``: what the
        people's side (the demo harness, tests) puts in a slash command or click payload."""
        user = str((req.json() or {}).get("user", ""))
        if user not in self.users:
            return Response(400, {"error": f"unknown user {user!r}"})
        return Response(200, {"trigger_id": self.issue_trigger(user)})

    def get_modal(self, req: Request) -> Response:
        """The modal ``id`` as the person sees it (its blocks, ``state`` and ``hash``)."""
        with self.lock:
            view = self.modals.get(req.params["id"])
        if view is None:
            return Response(404, {"error": "not_found"})
        return Response(200, {k: v for k, v in view.items() if k != "user"})

    def post_modal_state(self, req: Request) -> Response:
        """``{"block_id", "action_id", "value"}``: a person fills an input
        (:meth:`person_enters`); answers the view as the next payload carries it."""
        body = req.json() or {}
        if req.params["id"] not in self.modals:
            return Response(404, {"error": "not_found"})
        return Response(200, self.person_enters(req.params["id"], str(body.get("block_id")),
                                                str(body.get("action_id")),
                                                dict(body.get("value") or {})))

    def post_modal_close(self, req: Request) -> Response:
        self.close_modal(req.params["id"])
        return Response(200, {"ok": True})

    def response_url_for(self) -> str:
        return f"{self.base_url}/_sandbox/slack/response/{uuid.uuid4().hex}"

    def get_log(self, req: Request) -> Response:
        after = int(req.query.get("after", 0))
        with self.lock:
            return Response(200, {"entries": [e for e in self.log if e["seq"] > after]})

    def get_throttled(self, req: Request) -> Response:
        """The 429s Slack's limits gave (``{"count", "entries": [{"method", "channel",
        "retry_after", "at"}]}``), for benchmarks that must see none."""
        with self.lock:
            return Response(200, {"count": len(self.throttled),
                                  "entries": list(self.throttled)})

    def response_url(self, req: Request) -> Response:
        body = req.json() or {}
        problem = check_blocks(body.get("blocks"))
        if problem:
            return Response(400, "invalid_blocks", content_type="text/plain")
        with self.lock:
            self._record("response", text=body.get("text", ""), blocks=body.get("blocks"),
                         response_type=body.get("response_type", "ephemeral"),
                         replace_original=body.get("replace_original", False))
        return Response(200, "ok", content_type="text/plain")

    def api(self, req: Request) -> Response:
        method = req.params["method"]
        args = req.form()
        args.update(req.query)
        token = req.bearer or args.get("token")
        with self.lock:
            self.calls.append(method)
            if time.time() < self.outage_until:
                return Response(503, {"ok": False, "error": "service_unavailable"})
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return Response(429, {"ok": False, "error": "ratelimited"},
                                headers={"Retry-After": "1"})
            app_level = method == "apps.connections.open"
            expected = self.socket.app_token if app_level and self.socket else self.bot_token
            if token != expected:
                return Response(200, {"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "m_" + method.replace(".", "_"), None)
            if handler is None:
                return Response(200, {"ok": False, "error": "unknown_method"})
            if self.limits is not None:
                channel = _posts_into(method, args)
                retry_after = self.limits.check(method, channel)
                if retry_after:
                    self.throttled.append({"method": method, "channel": channel,
                                           "retry_after": retry_after, "at": time.time()})
                    return Response(429, {"ok": False, "error": "ratelimited"},
                                    headers={"Retry-After": str(retry_after)})
                answer = handler(args)
                if channel is not None and answer.get("ok"):
                    self.limits.posted(channel)
                return Response(200, answer)
            return Response(200, handler(args))

    # ---------------------------------------------------------------- methods

    def m_apps_connections_open(self, args: dict[str, str]) -> dict[str, Any]:
        if self.socket is None:
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": self.socket.url + f"?ticket={uuid.uuid4().hex}"}

    # files_upload_v2: getUploadURLExternal → POST the bytes → completeUploadExternal
    def m_files_getUploadURLExternal(self, args: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        self.files[file_id] = {"id": file_id, "name": args["filename"],
                               "length": int(args["length"]), "data": None}
        return {"ok": True, "upload_url": f"{self.base_url}/_sandbox/slack/upload/{file_id}",
                "file_id": file_id}

    def upload(self, req: Request) -> Response:
        with self.lock:
            f = self.files.get(req.params["id"])
            if f is None:
                return Response(404, "unknown file", content_type="text/plain")
            f["data"] = req.raw
        return Response(200, f"OK - {len(req.raw)}", content_type="text/plain")

    def get_file(self, req: Request) -> Response:
        f = self.files.get(req.params["id"])
        if f is None or f["data"] is None:
            return Response(404, "unknown file", content_type="text/plain")
        return Response(200, f["data"], content_type="application/octet-stream")

    def m_files_completeUploadExternal(self, args: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        try:
            wanted = json.loads(args.get("files", "[]"))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        channel = args.get("channel_id")
        if channel and channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        refusal = self._refusal(channel, "post") if channel else None
        if refusal:
            return refusal
        out = []
        for item in wanted:
            f = self.files.get(item.get("id", ""))
            if f is None or f["data"] is None:
                return {"ok": False, "error": "file_not_found"}
            if len(f["data"]) != f["length"]:
                return {"ok": False, "error": "file_upload_size_mismatch"}
            f["title"] = item.get("title") or f["name"]
            out.append({"id": f["id"], "name": f["name"], "title": f["title"],
                        "size": f["length"]})
            if channel:
                self._record("file", channel=channel, thread_ts=args.get("thread_ts"),
                             file_id=f["id"], title=f["title"], name=f["name"],
                             size=f["length"], is_png=f["data"][:8] == b"\x89PNG\r\n\x1a\n",
                             text=args.get("initial_comment", ""))
        if channel and out:
            # sharing files into a channel (or a thread) posts a message that carries them,
            # as Slack's file shares do: conversations.history/replies list it with `files`
            ts = self._ts()
            self.messages[(channel, ts)] = {
                "type": "message", "subtype": "file_share", "user": "U0MESHOPS", "ts": ts,
                "text": args.get("initial_comment", ""), "blocks": None,
                "thread_ts": args.get("thread_ts"), "metadata": None,
                "files": [{"id": o["id"], "name": o["name"], "title": o["title"]}
                          for o in out]}
        return {"ok": True, "files": out}

    def m_auth_test(self, args: dict[str, str]) -> dict[str, Any]:
        return {"ok": True, "url": "https://sandbox.slack.com/", "team": "meshops sandbox",
                "user": "meshops", "team_id": "T0SANDBOX", "user_id": "U0MESHOPS",
                "bot_id": "B0MESHOPS", "is_enterprise_install": False}

    def _refusal(self, channel: str, action: str) -> dict[str, Any] | None:
        """Slack's answer to ``action`` (post | update | read) in a channel the app cannot
        use (module docstring), or None."""
        if channel in self.archived and action != "read":
            return {"ok": False, "error": "is_inactive" if action == "update"
                    else "is_archived"}
        if channel in self.not_member:
            return {"ok": False, "error": "not_in_channel"}
        return None

    def _message_args(self, args: dict[str, str], action: str = "post"
                      ) -> tuple[dict[str, Any] | None, Any]:
        channel = args.get("channel", "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}, None
        refusal = self._refusal(channel, action)
        if refusal:
            return refusal, None
        blocks = json.loads(args["blocks"]) if args.get("blocks") else None
        if not args.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}, None
        if len(args.get("text", "")) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}, None
        problem = check_blocks(blocks)
        if problem:
            return {"ok": False, "error": "invalid_blocks", "errors": [problem]}, None
        return None, blocks

    def m_chat_postMessage(self, args: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        error, blocks = self._message_args(args)
        if error:
            return error
        metadata, problem = _metadata(args.get("metadata"))
        if problem:
            return {"ok": False, "error": "invalid_metadata_format", "errors": [problem]}
        ts = self._ts()
        msg = {"type": "message", "user": "U0MESHOPS", "bot_id": "B0MESHOPS", "ts": ts,
               "text": args.get("text", ""), "blocks": blocks,
               "thread_ts": args.get("thread_ts"), "metadata": metadata}
        self.messages[(args["channel"], ts)] = msg
        self._record("post", channel=args["channel"], ts=ts, thread_ts=args.get("thread_ts"),
                     text=msg["text"], blocks=blocks, metadata=metadata)
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": msg}

    def m_chat_update(self, args: dict[str, str]) -> dict[str, Any]:
        error, blocks = self._message_args(args, "update")
        if error:
            return error
        key = (args["channel"], args.get("ts", ""))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        msg = self.messages[key]
        msg.update(text=args.get("text", ""), blocks=blocks)
        self._record("update", channel=args["channel"], ts=key[1], text=msg["text"],
                     blocks=blocks)
        return {"ok": True, "channel": args["channel"], "ts": key[1], "text": msg["text"]}

    def m_chat_postEphemeral(self, args: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        error, blocks = self._message_args(args)
        if error:
            return error
        if args.get("user") not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        self._record("ephemeral", channel=args["channel"], user=args["user"],
                     text=args.get("text", ""), blocks=blocks)
        return {"ok": True, "message_ts": self._ts()}

    def m_conversations_history(self, args: dict[str, str]) -> dict[str, Any]:
        channel = args.get("channel", "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        refusal = self._refusal(channel, "read")
        if refusal:
            return refusal
        oldest = float(args.get("oldest") or 0)
        msgs = [m for (c, _), m in self.messages.items() if c == channel and not m["thread_ts"]
                and float(m["ts"]) > oldest]
        msgs = sorted(msgs, key=lambda m: m["ts"], reverse=True)
        return {"ok": True, "messages": _shown(msgs, args), "has_more": False}

    def m_conversations_replies(self, args: dict[str, str]) -> dict[str, Any]:
        channel, ts = args.get("channel", ""), args.get("ts", "")
        refusal = self._refusal(channel, "read")
        if refusal:
            return refusal
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        msgs = [self.messages[(channel, ts)]] + sorted(
            (m for (c, _), m in self.messages.items() if c == channel and m["thread_ts"] == ts),
            key=lambda m: m["ts"])
        return {"ok": True, "messages": _shown(msgs, args), "has_more": False}

    def m_usergroups_users_list(self, args: dict[str, str]) -> dict[str, Any]:
        group = args.get("usergroup", "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def m_users_info(self, args: dict[str, str]) -> dict[str, Any]:
        user = args.get("user", "")
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user, "name": self.users[user],
                                     "real_name": self.users[user]}}

    def m_views_publish(self, args: dict[str, str]) -> dict[str, Any]:
        """Publish a user's Home tab (https://docs.slack.dev/reference/methods/views.publish):
        ``user_id`` a user of the workspace (else ``user_not_found``), ``view`` a JSON
        object of ``type`` ``home`` (else ``invalid_arguments``) with at most 100 valid
        blocks, section texts of 3,000 characters at most (else ``invalid_blocks``); a
        ``hash`` other than the current view's answers ``hash_conflict``. It replaces the
        user's view and answers it with its ``id`` and new ``hash``, as Slack does."""
        user = args.get("user_id", "")
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        try:
            view = json.loads(args.get("view") or "null")
        except ValueError:
            view = None
        if not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments",
                    "response_metadata": {"messages": ["view must be a JSON object of "
                                                       "type home"]}}
        blocks = view.get("blocks") or []
        problem = check_blocks(blocks, MAX_VIEW_BLOCKS)
        if problem:
            return {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        previous = self.homes.get(user)
        if args.get("hash") and previous and args["hash"] != previous["hash"]:
            return {"ok": False, "error": "hash_conflict"}  # published by another meanwhile
        view_id = previous["id"] if previous else "V" + uuid.uuid4().hex[:10].upper()
        shown = {**view, "id": view_id, "team_id": "T0SANDBOX", "type": "home",
                 "blocks": blocks, "hash": uuid.uuid4().hex[:16],
                 "app_id": "A0MESHOPS", "bot_id": "B0MESHOPS"}
        self.homes[user] = shown
        self._record("home", user=user, blocks=blocks)
        return {"ok": True, "view": shown}

    @staticmethod
    def _modal_problem(args: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The modal view of a ``views.open``/``views.update`` call, or Slack's refusal
        (https://docs.slack.dev/reference/views/modal-views: ``type`` ``modal``; a
        ``title`` of plain text; ``submit`` and ``close`` plain text; each at most 24
        characters; ``submit`` required when an ``input`` block is in ``blocks``; at most
        100 valid blocks; ``private_metadata`` at most 3,000 characters, ``callback_id``
        255)."""
        try:
            view = json.loads(args.get("view") or "null")
        except ValueError:
            view = None

        def refused(message: str, error: str = "invalid_arguments"
                    ) -> tuple[None, dict[str, Any]]:
            return None, {"ok": False, "error": error,
                          "response_metadata": {"messages": [message]}}

        if not isinstance(view, dict) or view.get("type") != "modal":
            return refused("view must be a JSON object of type modal")
        for key in ("title", "submit", "close"):
            text = view.get(key)
            if text is None and key != "title":
                continue
            if not isinstance(text, dict) or text.get("type") != "plain_text" \
                    or not str(text.get("text", "")).strip():
                return refused(f"{key} must be a plain_text object")
            if len(str(text["text"])) > MAX_MODAL_LABEL:
                return refused(f"{key} must be at most {MAX_MODAL_LABEL} characters")
        blocks = view.get("blocks") or []
        problem = check_blocks(blocks, MAX_VIEW_BLOCKS)
        if problem:
            return None, {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        if any(isinstance(b, dict) and b.get("type") == "input" for b in blocks) \
                and view.get("submit") is None:
            return refused("submit is required when an input block is within the blocks")
        if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
            return refused(f"private_metadata must be at most {MAX_PRIVATE_METADATA} "
                           "characters")
        if len(str(view.get("callback_id", ""))) > MAX_CALLBACK_ID:
            return refused(f"callback_id must be at most {MAX_CALLBACK_ID} characters")
        return view, {}

    def _show_modal(self, view: dict[str, Any], view_id: str, user: str,
                    state: dict[str, Any]) -> dict[str, Any]:
        shown = {**view, "id": view_id, "team_id": "T0SANDBOX", "type": "modal",
                 "blocks": view.get("blocks") or [], "hash": uuid.uuid4().hex[:16],
                 "private_metadata": view.get("private_metadata", ""),
                 "callback_id": view.get("callback_id", ""), "state": state,
                 "root_view_id": view_id, "app_id": "A0MESHOPS", "bot_id": "B0MESHOPS"}
        self.modals[view_id] = {**shown, "user": user}
        return shown

    def m_views_open(self, args: dict[str, str]) -> dict[str, Any]:
        """Open a modal (https://docs.slack.dev/reference/methods/views.open): ``trigger_id``
        one the emulator issued (else ``invalid_trigger_id``), at most 3 s old
        (``expired_trigger_id``) and not exchanged before (``exchanged_trigger_id``); the
        view checked as :meth:`_modal_problem` says. Answers the view with its ``id`` and
        ``hash``, its ``state`` empty."""
        trigger = args.get("trigger_id") or args.get("interactivity_pointer") or ""
        if trigger not in self.triggers:
            return {"ok": False, "error": "invalid_trigger_id"}
        user, issued = self.triggers[trigger]
        if issued < 0:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if self.clock() - issued > TRIGGER_TTL_S:
            return {"ok": False, "error": "expired_trigger_id"}
        view, refusal = self._modal_problem(args)
        if view is None:
            return refusal
        self.triggers[trigger] = (user, -1.0)
        shown = self._show_modal(view, "V" + uuid.uuid4().hex[:10].upper(), user,
                                 {"values": {}})
        self._record("modal", user=user, view_id=shown["id"], blocks=shown["blocks"])
        return {"ok": True, "view": shown}

    def m_views_update(self, args: dict[str, str]) -> dict[str, Any]:
        """Replace an open modal (https://docs.slack.dev/reference/methods/views.update):
        ``view_id`` (or ``external_id``) of an open modal (else ``not_found``); a ``hash``
        other than the view's current one answers ``hash_conflict`` (it changed since the
        caller saw it). What the person typed in an input keeps its place when the new
        view has an input of the same ``block_id`` and ``action_id``, as in Slack."""
        view_id = args.get("view_id", "")
        if not view_id and args.get("external_id"):
            view_id = next((i for i, v in self.modals.items()
                            if v.get("external_id") == args["external_id"]), "")
        current = self.modals.get(view_id)
        if current is None:
            return {"ok": False, "error": "not_found"}
        if args.get("hash") and args["hash"] != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        view, refusal = self._modal_problem(args)
        if view is None:
            return refusal
        kept = {(b.get("block_id"), (b.get("element") or {}).get("action_id"))
                for b in view.get("blocks") or [] if isinstance(b, dict)
                and b.get("type") == "input"}
        values = {block: {action: value for action, value in actions.items()
                          if (block, action) in kept}
                  for block, actions in current["state"]["values"].items()}
        shown = self._show_modal(view, view_id, current["user"],
                                 {"values": {b: a for b, a in values.items() if a}})
        self._record("modal", user=current["user"], view_id=view_id, blocks=shown["blocks"])
        return {"ok": True, "view": shown}

    def person_enters(self, view_id: str, block_id: str, action_id: str,
                      value: dict[str, Any]) -> dict[str, Any]:
        """A person fills an input of an open modal (``value`` as Slack reports it in
        ``view.state.values``, e.g. ``{"type": "static_select", "selected_option": …}``);
        returns the view as Slack would send it in the next ``block_actions`` or
        ``view_submission`` payload (the hash unchanged: typing does not change it)."""
        with self.lock:
            view = self.modals[view_id]
            view["state"]["values"].setdefault(block_id, {})[action_id] = value
            return {k: v for k, v in view.items() if k != "user"}

    def close_modal(self, view_id: str) -> None:
        """The modal was submitted (and the app answered to clear it) or closed."""
        with self.lock:
            self.modals.pop(view_id, None)


class SocketModeServer:
    """Slack's Socket Mode side: ``apps.connections.open`` hands out a ``wss``-style URL;
    the app connects, gets ``hello``, and receives envelopes
    ``{"envelope_id", "payload", "type", "accepts_response_payload"}`` that it must ack with
    ``{"envelope_id"[, "payload"]}`` (api.slack.com/apis/socket-mode; shapes in
    ``../shared/data/slack/payloads/socket_mode.*`` and ``*.socket_mode_envelope.*``).

    ``deliver(type, payload)`` sends one envelope to a connected app and returns its ack.
    """

    def __init__(self, app_token: str, host: str, port: int):
        from websockets.sync.server import serve as ws_serve

        self.app_token = app_token
        self.url = f"ws://{host}:{port}/link/"
        self.connections: list[Any] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.server = ws_serve(self._handle, host, port)
        threading.Thread(target=self.server.serve_forever, name="sandbox-socket-mode",
                         daemon=True).start()

    def _handle(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "hello", "num_connections": len(self.connections) + 1,
                            "debug_info": {"host": "sandbox", "approximate_connection_time":
                                           3600},
                            "connection_info": {"app_id": "A0MESHOPS"}}))
        with self.cond:
            self.connections.append(ws)
            self.cond.notify_all()
        try:
            for message in ws:
                ack = json.loads(message)
                with self.cond:
                    self.acks[ack.get("envelope_id", "")] = ack
                    self.cond.notify_all()
        except Exception:  # the app went away; its envelopes will time out
            pass
        finally:
            with self.cond:
                self.connections.remove(ws)

    def deliver(self, kind: str, payload: dict[str, Any], timeout: float = 10.0
                ) -> dict[str, Any]:
        """Send an envelope of ``kind`` (slash_commands | interactive | events_api); return
        the app's ack, or raise TimeoutError if no app acks within ``timeout`` seconds."""
        envelope_id = str(uuid.uuid4())
        with self.cond:
            if not self.cond.wait_for(lambda: self.connections, timeout):
                raise TimeoutError("no app is connected in Socket Mode")
            ws = self.connections[-1]
        ws.send(json.dumps({"envelope_id": envelope_id, "payload": payload, "type": kind,
                            "accepts_response_payload": kind != "events_api"}))
        with self.cond:
            if not self.cond.wait_for(lambda: envelope_id in self.acks, timeout):
                raise TimeoutError(f"the app did not ack envelope {envelope_id}")
            return self.acks.pop(envelope_id)

    def shutdown(self) -> None:
        self.server.shutdown()
