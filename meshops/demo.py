"""``meshops demo``: the main job on the sandbox, played from the Slack side.

Starts what is not running yet (the sandbox with its Prometheus, a Celery worker, beat and
the bot in HTTP mode; Redis comes from ``REDIS_URL``), then acts as people in Slack would:
a requester types ``/mesh upgrade``, a different person who is an approver clicks
*Approve* and later *Complete*. Requests are signed with the signing secret and shaped like
the real payloads in ``../shared/data/slack/payloads/`` (``slash_command.*.form.txt``,
``block_actions.message_button.*``). The conversation is printed as it happens; the exit
status says whether the scenario ended as it should.

:class:`Harness` is also what the end-to-end tests drive.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests

from sandbox.app import CHANGELOG
from workflows.syntax import parse_duration

RUN_ID_RE = re.compile(r"\br-[0-9a-f]{10}\b")
TERMINAL = {"completed", "rolled_back", "cancelled", "rejected", "refused", "failed"}


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for ``body`` (HMAC-SHA256 of v0:ts:body)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Harness:
    """Processes of a sandboxed meshops and the hands of the people in its Slack."""

    def __init__(self, state_dir: Path, port_base: int = 18400, bot_port: int = 18480,
                 redis_url: str | None = None, prefix: str | None = None,
                 echo: Callable[[str], None] | None = None, socket_mode: bool = False,
                 unreleased: list[str] | None = None, changelog: Path | None = None,
                 world_file: Path | None = None, generated: tuple[int, ...] | None = None):
        self.socket_mode = socket_mode
        self.world_file = world_file.resolve() if world_file else None
        #: (namespaces, clusters[, replicas]) of a generated world (``meshops sandbox
        #: --namespaces``)
        self.generated = generated
        self.unreleased = list(unreleased or [])
        self.changelog = changelog
        self.state_dir = state_dir.resolve()
        self.port_base = port_base
        self.bot_port = bot_port
        self.redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.prefix = prefix or f"meshops-demo-{secrets.token_hex(4)}"
        self.echo = echo or (lambda line: print(line, flush=True))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.info: dict[str, Any] = {}
        self.seen = 0
        self.printing = False
        self.push_secret = secrets.token_hex(16)
        self.specs: dict[str, tuple[str, ...]] = {}  # how each process was started
        self.supervised: set[str] = set()  # restarted by the supervisor when they die
        self.restarts: Counter[str] = Counter()
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ processes

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SLACK_APP_TOKEN"}
        env.update(self.info.get("env", {}))
        env.update(REDIS_URL=self.redis_url, MESHOPS_REDIS_PREFIX=self.prefix,
                   PYTHONUNBUFFERED="1", MESHOPS_RELEASES_PUSH_SECRET=self.push_secret)
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.state_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen([sys.executable, "-m", "meshops", *args], env=self.env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.specs[name] = args
        return proc

    def supervise(self, *names: str) -> None:
        """Restart these processes (worker, beat, bot) whenever they die, as systemd,
        docker compose (``restart: unless-stopped``) or a Kubernetes Deployment would."""
        self.supervised.update(names)
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                                name="supervisor")
            self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            for name in sorted(self.supervised):
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None and name in self.specs:
                    self.restarts[name] += 1
                    self._spawn(name, *self.specs[name])

    def crash(self, name: str) -> None:
        """SIGKILL a process and its children (a supervised one comes back by itself)."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            redis.Redis.from_url(self.redis_url).ping()
        except redis.RedisError as exc:
            raise RuntimeError(f"Redis at {self.redis_url} is not reachable ({exc}); start it "
                               "or set REDIS_URL") from exc
        sandbox_dir = self.state_dir / "sandbox"
        info_file = sandbox_dir / "sandbox.json"
        if port_open(self.port_base + 1) and info_file.exists():
            self.echo(f"(using the sandbox already running on port {self.port_base + 1})")
        else:
            info_file.unlink(missing_ok=True)
            sandbox_dir.mkdir(parents=True, exist_ok=True)
            extra: list[str] = [a for r in self.unreleased for a in ("--unreleased", r)]
            if self.changelog is not None:
                extra += ["--changelog", str(self.changelog)]
            if self.world_file is not None:
                extra += ["--world", str(self.world_file)]
            if self.generated is not None:
                extra += ["--namespaces", str(self.generated[0]),
                          "--clusters", str(self.generated[1])]
                if len(self.generated) > 2:
                    extra += ["--replicas", str(self.generated[2])]
            # a generated world of thousands of namespaces takes a while to build
            size = self.generated[0] * self.generated[1] if self.generated else 0
            self._spawn("sandbox", "sandbox", "--state-dir", str(sandbox_dir), "--port-base",
                        str(self.port_base), *extra)
            self._wait(lambda: info_file.exists(), 60 + 0.05 * size, "the sandbox to start",
                       proc=self.procs["sandbox"])
        self.info = json.loads(info_file.read_text())
        self.start_worker()
        self._spawn("beat", "beat", "--schedule", str(self.state_dir / "celerybeat-schedule"))
        if self.socket_mode:
            self.start_socket_bot()
        elif not port_open(self.bot_port):
            self.start_bot()
        self.seen = self.slack_log_len()

    def start_bot(self) -> None:
        """Start the bot in HTTP mode on :attr:`bot_port` and wait until it listens."""
        self._spawn("bot", "bot", "--host", "127.0.0.1", "--port", str(self.bot_port))
        self._wait(lambda: port_open(self.bot_port), 60, "the bot to listen",
                   proc=self.procs["bot"])

    def start_socket_bot(self, name: str = "socket-bot") -> None:
        """A bot in Socket Mode: SLACK_APP_TOKEN set, no signing secret; its port serves only
        the health probes (one past the HTTP bot's)."""
        log = open(self.state_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        env = {**self.env(), "SLACK_APP_TOKEN": self.info["slack_app_token"]}
        env.pop("SLACK_SIGNING_SECRET", None)
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "meshops", "bot", "--host",
                                             "127.0.0.1", "--port", str(self.bot_port + 1)],
                                            env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._wait(lambda: self.control("GET", "/_sandbox/socket-mode")["connections"], 60,
                   "the bot to connect in Socket Mode", proc=self.procs[name])

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        # the CLI's default concurrency, as deployed: the demo and the benchmarks run the
        # worker people run (issue 13: 30 runs at once wait 1.13 × the unavoidable with 4
        # pool processes, 1.29 × with 2, 1.16 × with 8 on 2 cores)
        return self._spawn(name, "worker")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)  # the worker and its pool children
        proc.wait(10)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()
        r = redis.Redis.from_url(self.redis_url)
        keys = list(r.scan_iter(f"{self.prefix}*", count=1000))
        if keys:
            r.delete(*keys)  # only what this harness's prefix created

    def _wait(self, cond: Callable[[], Any], timeout: float, what: str,
              proc: subprocess.Popen[bytes] | None = None) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.printing:
                try:
                    self.print_new()
                except requests.RequestException:
                    pass
            value = cond()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"gave up waiting for {what}: the process exited "
                                   f"with {proc.returncode}")
            time.sleep(0.2)
        raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")

    # ------------------------------------------------------------------ sandbox

    def control(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, self.info["url"]["control"] + path, json=body,
                                timeout=10)
        resp.raise_for_status()
        return resp.json()

    def slack_log(self, after: int = 0) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = requests.get(
            self.info["url"]["slack"] + "/_sandbox/slack/log", params={"after": after},
            timeout=10).json()["entries"]
        return entries

    def slack_log_len(self) -> int:
        entries = self.slack_log()
        return entries[-1]["seq"] if entries else 0

    # ------------------------------------------------------------------ people

    def default_channel(self) -> str:
        """Where people type by default: dev's channel, else the world's first cluster's."""
        clusters = self.info["clusters"]
        return str((clusters.get("dev") or next(iter(clusters.values())))["channel"])

    def channel_of(self, cluster: str) -> str:
        return str(self.info["clusters"][cluster]["channel"])

    def person(self, role: str) -> str:
        return str(self.info["people"][role])

    def post_signed(self, body: str, content_type: str = "application/x-www-form-urlencoded",
                    secret: str | None = None, timestamp: int | None = None
                    ) -> requests.Response:
        headers = {"Content-Type": content_type}
        headers.update(sign(secret or self.info["env"]["SLACK_SIGNING_SECRET"], body,
                            timestamp))
        return requests.post(f"http://127.0.0.1:{self.bot_port}/slack/events", data=body,
                             headers=headers, timeout=10)

    def slash(self, user_role: str, text: str, channel: str | None = None, **kw: Any
              ) -> requests.Response:
        """Type ``/mesh <text>`` as a person, shaped like Slack's slash command form body."""
        user = self.person(user_role)
        channel = channel or self.default_channel()
        fields = {
            "token": "sandbox-verification-token", "team_id": "T0SANDBOX",
            "team_domain": "meshops-sandbox", "channel_id": channel,
            "channel_name": "mesh", "user_id": user, "user_name": user_role,
            "command": "/mesh", "text": text, "api_app_id": "A0MESHOPS",
            "is_enterprise_install": "false",
            "response_url": self.control("GET", "/_sandbox/response-url")["url"],
            "trigger_id": self.trigger(user),
        }
        if self.printing:
            self.print_new()
        self.echo(f"{user_role} ({user}) types: /mesh {text}")
        if self.socket_mode:
            resp = self.over_socket("slash_commands", fields)
        else:
            resp = self.post_signed(urllib.parse.urlencode(fields), **kw)
        if resp.status_code == 200 and resp.text:
            try:
                self.echo(indented(f"  ↳ only {user_role} sees: ",
                                   resp.json().get("text", "")))
            except ValueError:
                self.echo(f"  ↳ {resp.text}")
        elif resp.status_code != 200:
            self.echo(f"  ↳ HTTP {resp.status_code}")
        return resp

    def ask(self, user_role: str, text: str, timeout: float = 30) -> str:
        """Type a command whose answer comes after the ack (through ``response_url``)."""
        before = self.slack_log_len()
        self.slash(user_role, text)

        def answered() -> str | None:
            replies = [e["text"] for e in self.slack_log(before) if e["kind"] == "response"]
            return replies[0] if replies else None
        return self._wait(answered, timeout, f"the answer to /mesh {text}")  # type: ignore[no-any-return]

    def click(self, user_role: str, run_id: str, action: str, message: dict[str, Any]
              ) -> requests.Response:
        """Click a run button as a person: a block_actions payload, as Slack sends it."""
        user = self.person(user_role)
        button = next((e for b in message.get("blocks") or [] if b.get("type") == "actions"
                       for e in b["elements"] if e.get("action_id") == f"meshops_{action}"),
                      None)
        label = button["text"]["text"] if button else action
        block_id = f"run:{run_id}"
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user_role, "name": user_role,
                     "team_id": "T0SANDBOX"},
            "api_app_id": "A0MESHOPS", "token": "sandbox-verification-token",
            "container": {"type": "message", "message_ts": message["ts"],
                          "channel_id": message["channel"], "is_ephemeral": False},
            "trigger_id": f"{int(time.time())}.1.{secrets.token_hex(8)}",
            "team": {"id": "T0SANDBOX", "domain": "meshops-sandbox"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": message["channel"], "name": "mesh"},
            "message": {"bot_id": "B0MESHOPS", "type": "message", "text": message["text"],
                        "user": "U0MESHOPS", "ts": message["ts"],
                        "blocks": message.get("blocks") or []},
            "state": {"values": {}},
            "response_url": self.control("GET", "/_sandbox/response-url")["url"],
            "actions": [{"action_id": f"meshops_{action}", "block_id": block_id,
                         "text": {"type": "plain_text", "text": label}, "value": run_id,
                         "type": "button", "action_ts": f"{time.time():.6f}"}],
        }
        if self.printing:
            self.print_new()
        self.echo(f"{user_role} ({user}) clicks [{label}] on run {run_id}")
        if self.socket_mode:
            return self.over_socket("interactive", payload)
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        return self.post_signed(body)

    def trigger(self, user: str) -> str:
        """A ``trigger_id`` the sandbox's Slack issued for an interaction of ``user`` (it
        opens a modal once, within 3 s, as Slack's)."""
        resp = requests.post(self.info["url"]["slack"] + "/_sandbox/slack/triggers",
                             json={"user": user}, timeout=10)
        resp.raise_for_status()
        return str(resp.json()["trigger_id"])

    # ------------------------------------------------------------------ modals

    def modal_of(self, user_role: str, after: int, timeout: float = 15) -> dict[str, Any]:
        """The modal the app opened for ``user_role`` since log entry ``after``, as shown
        now (waits for it)."""
        user = self.person(user_role)

        def opened() -> str | None:
            ids = [e["view_id"] for e in self.slack_log(after)
                   if e["kind"] == "modal" and e["user"] == user]
            return ids[0] if ids else None
        view_id = self._wait(opened, timeout, f"a modal for {user_role}")
        return self.modal(str(view_id))

    def modal(self, view_id: str) -> dict[str, Any]:
        resp = requests.get(f"{self.info['url']['slack']}/_sandbox/slack/modals/{view_id}",
                            timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def choose(self, user_role: str, view: dict[str, Any], block_id: str,
               value: dict[str, Any]) -> dict[str, Any]:
        """Enter ``value`` (as Slack reports it in ``state.values``: ``{"type":
        "static_select", "selected_option": {...}}``, ``{"type": "plain_text_input",
        "value": "10s"}``…) into an input of the open modal ``view``; when the input
        has ``dispatch_action``, Slack sends the app a ``block_actions`` at once, as here.
        Returns the modal as it stands after."""
        block = next(b for b in view["blocks"] if b.get("block_id") == block_id)
        action_id = block["element"]["action_id"]
        resp = requests.post(f"{self.info['url']['slack']}/_sandbox/slack/modals/"
                             f"{view['id']}/state", timeout=10,
                             json={"block_id": block_id, "action_id": action_id,
                                   "value": value})
        resp.raise_for_status()
        shown = dict(resp.json())
        self.echo(f"{user_role} sets {block_id} in the form: "
                  f"{(value.get('selected_option') or {}).get('value', value.get('value'))}")
        if block.get("dispatch_action"):
            user = self.person(user_role)
            payload = {
                "type": "block_actions", "api_app_id": "A0MESHOPS", "token": "x",
                "user": {"id": user, "username": user_role, "team_id": "T0SANDBOX"},
                "container": {"type": "view", "view_id": view["id"]},
                "trigger_id": self.trigger(user),
                "team": {"id": "T0SANDBOX", "domain": "meshops-sandbox"}, "enterprise": None,
                "is_enterprise_install": False, "view": shown,
                "actions": [{**value, "action_id": action_id, "block_id": block_id,
                             "action_ts": f"{time.time():.6f}"}],
            }
            if self.socket_mode:
                self.over_socket("interactive", payload)
            else:
                self.post_signed("payload=" + urllib.parse.quote(json.dumps(payload)))
        return shown

    def submit(self, user_role: str, view_id: str) -> dict[str, Any]:
        """Press the modal's submit button: a ``view_submission`` payload (shaped as
        bolt-python's fixture and Slack's reference); the app's answer is returned
        (``{}`` closes the modal, ``{"response_action": "errors", ...}`` keeps it open)."""
        user = self.person(user_role)
        view = self.modal(view_id)
        payload = {
            "type": "view_submission", "team": {"id": "T0SANDBOX",
                                                "domain": "meshops-sandbox"},
            "user": {"id": user, "username": user_role, "name": user_role,
                     "team_id": "T0SANDBOX"},
            "api_app_id": "A0MESHOPS", "token": "x", "trigger_id": self.trigger(user),
            "view": view, "response_urls": [], "is_enterprise_install": False,
            "enterprise": None,
        }
        self.echo(f"{user_role} submits the form")
        if self.socket_mode:
            resp = self.over_socket("interactive", payload)
        else:
            resp = self.post_signed("payload=" + urllib.parse.quote(json.dumps(payload)))
        resp.raise_for_status()
        answer = dict(resp.json()) if resp.text.strip() else {}
        inputs = {b.get("block_id") for b in view["blocks"] if b.get("type") == "input"}
        if answer.get("response_action") == "errors" and not set(answer["errors"]) <= inputs:
            # Slack shows its own failure instead: errors must name the view's inputs
            raise ValueError(f"Slack would refuse this answer: errors on "
                             f"{sorted(set(answer['errors']) - inputs)}, not input blocks of "
                             "the view")
        if answer.get("response_action") != "errors":
            requests.post(f"{self.info['url']['slack']}/_sandbox/slack/modals/{view_id}/close",
                          timeout=10)
        else:
            self.echo(f"  ↳ the form shows: {answer.get('errors')}")
        return answer

    def over_socket(self, kind: str, payload: dict[str, Any]) -> requests.Response:
        """Deliver a payload as a Socket Mode envelope; the app's ack is the response."""
        resp = requests.post(self.info["url"]["control"] + "/_sandbox/socket-mode",
                             json={"type": kind, "payload": payload}, timeout=15)
        if resp.ok:  # present the ack's payload as the HTTP reply would be
            ack = resp.json()
            resp._content = json.dumps(ack.get("payload") or {}).encode()
        return resp

    # ------------------------------------------------------------------ reading Slack

    def print_new(self) -> None:
        for e in self.slack_log(self.seen):
            self.seen = e["seq"]
            self.echo(format_entry(e, self.info))

    def follow(self) -> None:
        """Print the conversation as it happens, while waiting for anything."""
        self.printing = True

    def root_message(self, run_id: str) -> dict[str, Any] | None:
        """The run's root message as it stands now (last post or update)."""
        root = None
        for e in self.slack_log():
            if e["kind"] in ("post", "update") and not e.get("thread_ts") and \
                    f"(run {run_id})" in e["text"]:
                root = {**e, "channel": e["channel"]}
        return root

    def wait_for_button(self, run_id: str, action: str, timeout: float) -> dict[str, Any]:
        """The run's root message once it offers ``action``'s button; a run that pauses
        meanwhile (for a person, with other buttons) fails at once with its reason."""
        def ready() -> dict[str, Any] | None:
            if action not in ("resume", "rollback") and self.run_phase(run_id) == "paused":
                raise RuntimeError(f"run {run_id} paused while waiting for its [{action}] "
                                   f"button: {self.pause_reason(run_id)}")
            root = self.root_message(run_id)
            if root and any(el.get("action_id") == f"meshops_{action}"
                            for b in root.get("blocks") or [] if b.get("type") == "actions"
                            for el in b["elements"]):
                return root
            return None
        return self._wait(ready, timeout, f"the [{action}] button of run {run_id}")  # type: ignore[no-any-return]

    def run_phase(self, run_id: str) -> str:
        """The run's phase as stored; ``unknown`` while Redis does not answer (it may be
        restarting: the demo waits, as a person would)."""
        from workers.store.runs import RedisRunStore
        from workflows.errors import TemporaryError

        store = RedisRunStore.from_url(self.redis_url, self.prefix)
        try:
            return store.get(run_id).phase.value
        except TemporaryError:
            return "unknown"

    def pause_reason(self, run_id: str) -> str:
        """Why the run paused, as stored (``unknown`` while Redis does not answer)."""
        from workers.store.runs import RedisRunStore
        from workflows.errors import TemporaryError

        try:
            run = RedisRunStore.from_url(self.redis_url, self.prefix).get(run_id)
        except TemporaryError:
            return "unknown"
        return run.pause_reason or "no reason recorded"

    def wait_for_phase(self, run_id: str, phases: set[str], timeout: float) -> str:
        return self._wait(lambda: (p := self.run_phase(run_id)) in phases and p,  # type: ignore[no-any-return]
                          timeout, f"run {run_id} to reach {sorted(phases)}")


    # ------------------------------------------------------------------ releases

    def release_flow(self, revision: str = "asm-1-27", timeout: float = 90
                     ) -> tuple[set[str], str]:
        """Publish a release note and the ARM revision, wait for the notices, click *Plan
        upgrade* in dev's channel as the requester; returns (channels notified, the plan)."""
        r = redis.Redis.from_url(self.redis_url)
        self._wait(lambda: r.exists(f"{self.prefix}:releases:initialized"), 60,
                   "the release watcher's first poll")
        before = self.slack_log_len()
        note = (f"* Features:\n  * Istio-based service mesh add-on revision `{revision}` is now "
                "available. More information on performing canary upgrade for the new minor "
                "revision of Istio can be found [here](https://learn.microsoft.com/azure/aks/"
                "istio-upgrade).")
        self.echo(f"(AKS publishes a release note: {revision} is available, and ARM lists it)")
        self.control("POST", "/_sandbox/releases", {"body": note})
        self.control("POST", f"/_sandbox/revisions/{revision}/release")
        clusters = {k: c for k, c in self.info["clusters"].items() if c.get("mesh", True)}

        def notices() -> dict[str, dict[str, Any]]:
            found = {}
            for e in self.slack_log(before):
                for b in e.get("blocks") or []:
                    for el in b.get("elements", []) if b.get("type") == "actions" else []:
                        if el.get("action_id") == "meshops_plan_upgrade" and \
                                el.get("value", "").endswith("|" + revision):
                            found[e["channel"]] = e
            return found if len(found) >= len(clusters) else {}

        found = self._wait(notices, timeout, f"notices of {revision} in every channel")
        first = clusters.get("dev") or next(iter(clusters.values()))
        dev = found[first["channel"]]
        button = next(el for b in dev["blocks"] if b["type"] == "actions" for el in b["elements"])
        payload_msg = {**dev, "channel": dev["channel"]}
        n = self.slack_log_len()
        self.click_button("requester", button, payload_msg)

        def plan() -> str | None:
            replies = [e["text"] for e in self.slack_log(n) if e["kind"] == "response"]
            return replies[0] if replies else None
        return set(found), self._wait(plan, 60, "the plan")

    def click_button(self, user_role: str, button: dict[str, Any], message: dict[str, Any]
                     ) -> requests.Response:
        """Click any button of a message (as :meth:`click`, for non-run buttons)."""
        user = self.person(user_role)
        if self.printing:
            self.print_new()
        self.echo(f"{user_role} ({user}) clicks [{button['text']['text']}]")
        payload = {
            "type": "block_actions", "api_app_id": "A0MESHOPS", "token": "x",
            "user": {"id": user, "username": user_role, "team_id": "T0SANDBOX"},
            "container": {"type": "message", "message_ts": message["ts"],
                          "channel_id": message["channel"], "is_ephemeral": False},
            "trigger_id": f"{int(time.time())}.1.{secrets.token_hex(8)}",
            "team": {"id": "T0SANDBOX", "domain": "meshops-sandbox"}, "enterprise": None,
            "is_enterprise_install": False, "channel": {"id": message["channel"]},
            "message": {"type": "message", "ts": message["ts"], "text": message["text"],
                        "blocks": message.get("blocks") or []},
            "state": {"values": {}},
            "response_url": self.control("GET", "/_sandbox/response-url")["url"],
            "actions": [{**button, "block_id": "notice", "action_ts": f"{time.time():.6f}"}],
        }
        if self.socket_mode:
            return self.over_socket("interactive", payload)
        return self.post_signed("payload=" + urllib.parse.quote(json.dumps(payload)))


def indented(first: str, text: str) -> str:
    """``first`` + ``text``, the continuation lines of ``text`` indented like the first line."""
    indent = first[:len(first) - len(first.lstrip(" "))]
    return (first + text.replace("\n", "\n" + indent)).rstrip()


def format_entry(e: dict[str, Any], info: dict[str, Any]) -> str:
    """One entry of the sandbox Slack's log as a line (or lines) of the demo's transcript."""
    # a cluster's channel by its cluster's name; others (the campaigns') by their own name
    channels = {**info.get("channels", {}),
                **{c["channel"]: f"mesh-{short}" for short, c in info.get("clusters", {}).items()}}
    where = f"#{channels.get(e.get('channel', ''), e.get('channel', ''))}"
    text = e.get("text", "")
    if e["kind"] == "post" and e.get("thread_ts"):
        return indented(f"  [{where} thread] ", text)
    if e["kind"] == "post":
        return indented(f"[{where}] meshops: ", text)
    if e["kind"] == "file":  # files_upload_v2: files.completeUploadExternal into a channel
        title = e.get("title") or e.get("name", "")
        if e.get("thread_ts"):
            return indented(f"  [{where} thread] (file in the thread: {title}) ", text)
        return indented(f"[{where}] meshops: (file: {title}) ", text)
    if e["kind"] == "update":
        gate = next((b["text"]["text"] for b in e.get("blocks") or []
                     if b.get("type") == "section" and "text" in b
                     and b["text"]["text"].startswith("*Gate")), "")
        return f"[{where}] (root message updated) {text}" + (
            f"\n    {gate.replace(chr(10), chr(10) + '    ')}" if gate else "")
    if e["kind"] == "ephemeral":
        return indented(f"[{where}] (only {e.get('user')} sees) ", text)
    if e["kind"] == "response":  # through response_url, to whoever typed or clicked
        return indented("  ↳ (reply, only that person sees) ", text)
    if e["kind"] == "modal":  # views.open / views.update: what the form shows its person
        shown = [b.get("label", {}).get("text") or " ".join(
            el.get("text", "") for el in b.get("elements", [])) for b in e.get("blocks") or []]
        return indented(f"  [form for {e.get('user')}] ", " | ".join(s for s in shown if s))
    return indented(f"  ({e['kind']}) ", text)


def run_demo(scenario: str, state_dir: Path, port_base: int, bot_port: int, bake: str,
             interval: str, cluster: str | None, timeout: float,
             socket_mode: bool = False, world_file: Path | None = None,
             to_revision: str | None = None, generated: tuple[int, ...] | None = None) -> int:
    """Play ``scenario``; the last line is the run's final state (``run <id>: <phase>``;
    ``campaign <id>: <phase>`` for ``fleet`` and ``fleet-halt``, on the fleet world).
    ``generated``: (namespaces, clusters) of a generated world for the sandbox."""
    if scenario in ("fleet", "fleet-halt") and world_file is None and generated is None:
        world_file = FLEET_WORLD
    h = Harness(state_dir, port_base, bot_port, socket_mode=socket_mode,
                unreleased=["asm-1-27"] if scenario == "release" else None,
                changelog=CHANGELOG,  # the sandbox's own release history
                world_file=world_file, generated=generated)
    a_world = world_file is not None or generated is not None
    try:
        h.echo(f"meshops demo --scenario {scenario}"
               + (f" --world {world_file}" if world_file else "")
               + (f" --namespaces {generated[0]} --clusters {generated[1]}" if generated
                  else "")
               + ": starting sandbox, Prometheus, worker, beat and bot …")
        h.start()
        h.supervise("worker", "beat", "bot")  # a process that dies comes back by itself
        h.follow()
        if scenario in ("fleet", "fleet-halt"):
            return campaign_demo(h, scenario, timeout)
        state = h.control("GET", "/_sandbox/state")
        if cluster is None:
            cluster = default_cluster(scenario, state, a_world)
        if cluster not in state:
            h.echo(f"demo failed: no cluster {cluster!r} in the world ({', '.join(state)})")
            return 1
        if scenario == "enable":
            return enable_demo(h, cluster, timeout)
        if scenario == "release":
            channels, plan = h.release_flow()
            h.print_new()
            ok = "Plan (dry run, nothing changed)" in plan and "asm-1-25 → asm-1-27" in plan
            if not ok:
                h.echo(f"demo check failed: the plan button led to: {plan}")
            h.echo(f"release: notified {len(channels)} channels")
            return 0 if ok else 1
        stable = (state[cluster]["revisions"] or [None])[0]
        target = to_revision or ("asm-1-26" if not a_world else
                                 newest(state[cluster]["upgrades"]))
        if stable is None or target is None:
            h.echo(f"demo failed: {cluster} has " + ("the mesh off" if stable is None else
                   f"no upgrade offered from {stable} (meshUpgradeProfiles)"))
            return 1
        channel = h.channel_of(cluster) if a_world else None
        watched = "checkout"
        if scenario == "rollback":
            labelled = sorted(ns for ns, lbl in state[cluster]["namespaces"].items()
                              if lbl.get("istio.io/rev") == stable)
            watched = "checkout" if "checkout" in labelled else (labelled or ["default"])[0]
            h.control("POST", "/_sandbox/faults", {"cluster": cluster, "namespace": watched,
                                                   "revision": target, "error_rate": 0.3})
            h.echo(f"(sandbox: {target} sidecars in {cluster}/{watched} will answer 30% 5xx)")
        resp = h.slash("requester", f"upgrade {cluster} {target} --bake={bake} "
                                    f"--interval={interval}", channel=channel)
        m = RUN_ID_RE.search(resp.text)
        if resp.status_code != 200 or not m:
            h.echo(f"the upgrade was not accepted: HTTP {resp.status_code} {resp.text}")
            return 1
        run_id = m.group(0)
        typed = not h.info["clusters"].get(cluster, {}).get("app_can_post", True)
        if typed:
            decide_by_typing(h, run_id, cluster, channel, scenario, timeout)
        else:
            root = h.wait_for_button(run_id, "approve", 120)
            busy = h.info["clusters"].get(cluster, {}).get("operation_at_approval")
            if busy:  # the world's "someone's node pool update, just before the canary"
                h.control("POST", "/_sandbox/operations", {"cluster": cluster, **busy})
                h.echo(f"(sandbox: someone starts an {busy['kind']} on {cluster} for "
                       f"{busy['seconds']:.0f}s)")
            h.click("approver", run_id, "approve", root)
        if scenario == "incident":
            incident_during_bake(h, run_id, cluster, parse_duration(bake), timeout)
        if scenario in ("upgrade", "incident") and not typed:
            def completable() -> Any:
                phase = h.run_phase(run_id)
                if phase in TERMINAL:
                    return True  # ended without asking for completion (rolled back, …)
                if phase == "paused":
                    # a person decides a paused run; the demo clicks only what it expects
                    raise RuntimeError(f"run {run_id} paused for a person to decide, which "
                                       f"this unattended demo does not: "
                                       f"{h.pause_reason(run_id)}")
                root = h.root_message(run_id)
                if root and any(el.get("action_id") == "meshops_complete"
                                for b in root.get("blocks") or [] if b.get("type") == "actions"
                                for el in b["elements"]):
                    return root
                return None
            found = h._wait(completable, timeout, f"the [complete] button of run {run_id}")
            if isinstance(found, dict):
                h.click("approver", run_id, "complete", found)
        phase = h.wait_for_phase(run_id, TERMINAL, timeout)
        time.sleep(2)  # let the last Slack messages land before the summary
        h.print_new()
        notes: list[str] = []
        configs = state[cluster].get("mesh_configs") or {}
        problems = check_outcome(h, scenario, cluster, run_id, phase, stable, target, watched,
                                 strict_pods=world_file is None, notes=notes,
                                 copies_mesh_config=f"istio-shared-configmap-{stable}" in
                                 configs and f"istio-shared-configmap-{target}" not in configs)
        if typed:
            refusals = slack_refusals(h, run_id)
            notes.append(f"audit: {len(refusals)} Slack refusal(s) recorded for run {run_id}"
                         + (f": {'; '.join(refusals)}" if refusals else ""))
            if len(refusals) != 1:
                problems.append(f"Slack's refusal of the run's messages is recorded "
                                f"{len(refusals)} times, not once")
        for n in notes:
            h.echo(f"({n})")
        for p in problems:
            h.echo(f"demo check failed: {p}")
        h.echo(f"run {run_id}: {phase}")
        return 1 if problems else 0
    except (RuntimeError, TimeoutError, requests.RequestException) as exc:
        h.echo(f"demo failed: {exc} (logs in {state_dir})")
        return 1
    finally:
        h.stop()


FLEET_WORLD = Path(__file__).resolve().parent.parent / "sandbox" / "data" / "worlds" / \
    "fleet.yaml"
CAMPAIGN_TARGET = "asm-1-27"
#: fleet.yaml's cast: the cluster whose window the demo sets, the one needing two hops, the
#: one its Kubernetes version blocks, and fleet-halt's two bad canaries (budget one)
WINDOWED, TWO_HOPS, BLOCKED, BAD_CANARIES = "prod-2", "dev-2", "prod-3", ("staging-1",
                                                                         "staging-2")


def set_window(h: Harness, cluster: str, lead_s: float) -> float:
    """As a platform engineer would, give ``cluster`` an AKS maintenance window (ARM
    ``maintenanceConfigurations/aksManagedAutoUpgradeSchedule``, through the Azure SDK):
    daily, 4 hours, opening at the first whole minute ``lead_s`` from now (UTC). Returns
    when it opens (Unix s)."""
    from datetime import UTC, datetime, timedelta

    from workers.config import load_fleet
    from workers.wiring import FleetPorts
    from workflows.maintenance import AUTO_UPGRADE

    logging.getLogger("azure").setLevel(logging.WARNING)  # not the SDK's HTTP log
    opens = datetime.now(UTC) + timedelta(seconds=lead_s + 59)
    opens = opens.replace(second=0, microsecond=0)
    os.environ.update(h.info["env"])  # the SDK's credential (the sandbox's managed identity)
    fleet = load_fleet(h.info["env"]["MESHOPS_FLEET"])
    cfg = fleet.cluster(cluster)
    mesh = FleetPorts(fleet).aks
    mesh.client(cfg.subscription).maintenance_configurations.create_or_update(
        cfg.resource_group, cfg.name, AUTO_UPGRADE, {"properties": {"maintenanceWindow": {
            "schedule": {"daily": {"intervalDays": 1}}, "durationHours": 4,
            "utcOffset": "+00:00", "startDate": (opens - timedelta(days=1)).date().isoformat(),
            "startTime": opens.strftime("%H:%M")}}})
    h.echo(f"(platform engineer: {cluster} gets an AKS maintenance window, daily from "
           f"{opens:%H:%M} UTC for 4 h: aksManagedAutoUpgradeSchedule)")
    return opens.timestamp()


def campaign_demo(h: Harness, scenario: str, timeout: float) -> int:
    """``fleet``: a campaign to asm-1-27 across fleet.yaml's three rings, one cluster
    waiting for its window, one taking two hops, one blocked by its Kubernetes version; the
    last line ``campaign <id>: completed``. ``fleet-halt``: two of staging's canaries answer
    30 % 5xx, the budget is one: ``campaign <id>: halted``, prod untouched."""
    from workers.config import load_fleet
    from workers.store.runs import RedisRunStore

    fleet = load_fleet(h.info["env"]["MESHOPS_FLEET"])
    if fleet.campaigns is None:
        h.echo("demo failed: the world has no `campaigns:` (use sandbox/data/worlds/fleet.yaml)")
        return 1
    before = h.control("GET", "/_sandbox/state")
    if scenario == "fleet":
        # opening after dev and staging have had their turn: prod-2 waits for it
        set_window(h, WINDOWED, 150)
    else:
        for cluster in BAD_CANARIES:
            h.control("POST", "/_sandbox/faults", {"cluster": cluster, "namespace": "shop",
                                                   "revision": CAMPAIGN_TARGET,
                                                   "error_rate": 0.3})
        h.echo(f"(sandbox: {CAMPAIGN_TARGET} sidecars in {' and '.join(BAD_CANARIES)} will "
               "answer 30% 5xx)")
    h.ask("requester", "campaign plan " + CAMPAIGN_TARGET, timeout=60)
    resp = h.slash("requester", f"campaign start {CAMPAIGN_TARGET}",
                   channel=fleet.campaigns.channel)
    m = RUN_ID_RE.search(resp.text)
    if resp.status_code != 200 or not m:
        h.echo(f"the campaign was not accepted: HTTP {resp.status_code} {resp.text}")
        return 1
    run_id = m.group(0)
    h.click("approver", run_id, "approve", h.wait_for_button(run_id, "approve", 120))
    ends = {*TERMINAL, "halted"}
    deadline = time.time() + timeout
    approved_stages = 0
    while (phase := h.run_phase(run_id)) not in ends:
        if time.time() > deadline:
            raise TimeoutError(f"campaign {run_id} still {phase} after {timeout:.0f}s")
        if phase == "awaiting_wave_approval":  # a stage that asks for a person first
            root = h.root_message(run_id)
            if root and "meshops_approve" in json.dumps(root.get("blocks")) and \
                    approved_stages < 5:
                h.click("approver", run_id, "approve", root)
                approved_stages += 1
                h.wait_for_phase(run_id, ends | {"migrating"}, 60)
        time.sleep(1)
    # the campaign's last lines and root message come after its phase (a Slack sync, paced
    # by the workspace's budget): wait for the root message to say how it ended
    shown = phase.replace("_", " ")
    h._wait(lambda: shown in (h.root_message(run_id) or {}).get("text", ""), 60,
            f"campaign {run_id}'s root message to say {shown}")
    time.sleep(2)
    h.print_new()
    after = h.control("GET", "/_sandbox/state")
    store = RedisRunStore.from_url(h.redis_url, h.prefix)
    children = [r for r in store.list_runs(limit=200) if r.params.get("campaign") == run_id]
    problems = campaign_problems(scenario, phase, before, after, children)
    h.echo(f"(campaign {run_id}: {len(children)} cluster runs: " + ", ".join(
        f"{r.cluster} {r.canary_revision} {r.phase.value}"
        for r in sorted(children, key=lambda r: r.created_at)) + ")")
    for p in problems:
        h.echo(f"demo check failed: {p}")
    h.echo(f"campaign {run_id}: {phase}")
    return 1 if problems else 0


def campaign_problems(scenario: str, phase: str, before: dict[str, Any],
                      after: dict[str, Any], children: list[Any]) -> list[str]:
    """What is wrong with a campaign demo's end; empty when it ended as it should."""
    problems = []
    started: dict[str, list[str]] = {}
    for r in sorted(children, key=lambda r: r.created_at):
        started.setdefault(r.cluster, []).append(r.canary_revision)
    twice = [f"{c} {revs}" for c, revs in started.items() if len(revs) != len(set(revs))]
    if twice:
        problems.append(f"a hop was started twice: {'; '.join(twice)}")
    if BLOCKED in started:
        problems.append(f"{BLOCKED} (blocked by its Kubernetes version) got a run")
    if after[BLOCKED]["revisions"] != before[BLOCKED]["revisions"]:
        problems.append(f"{BLOCKED} changed: {after[BLOCKED]['revisions']}")
    if scenario == "fleet":
        if phase != "completed":
            problems.append(f"the campaign ended {phase}")
        wrong = [c for c in after if c != BLOCKED and after[c]["revisions"] != [CAMPAIGN_TARGET]]
        if wrong:
            problems.append("not on " + CAMPAIGN_TARGET + ": " + ", ".join(
                f"{c} {after[c]['revisions']}" for c in wrong))
        if len(started.get(TWO_HOPS, [])) != 2:
            problems.append(f"{TWO_HOPS} took {started.get(TWO_HOPS)} instead of two hops")
    else:
        if phase != "halted":
            problems.append(f"the campaign ended {phase}, not halted")
        touched = [c for c in started if c.startswith("prod-")]
        if touched:
            problems.append(f"the third stage was touched: {', '.join(touched)}")
        for c in BAD_CANARIES:
            if after[c]["revisions"] != before[c]["revisions"]:
                problems.append(f"{c} was not rolled back: {after[c]['revisions']}")
    return problems


def decide_by_typing(h: Harness, run_id: str, cluster: str, channel: str | None,
                     scenario: str, timeout: float) -> None:
    """Decide a run by typing, as people do when Slack refuses meshops' posts in the
    cluster's channel (the app never invited, the channel archived): there is no message
    with buttons, so the approver types ``/mesh approve <run>`` and, once the run waits for
    it, ``/mesh complete <run>``; before completing, the requester asks ``/mesh status``,
    which says that Slack refused the run's messages. Slash commands reach the app in any
    channel, and their answers come back through ``response_url``."""
    parked = {"awaiting_approval"} | TERMINAL
    if h.wait_for_phase(run_id, parked, 120) in TERMINAL:
        return
    h.slash("approver", f"approve {run_id}", channel=channel)
    if scenario != "upgrade":
        return
    if h.wait_for_phase(run_id, {"awaiting_completion"} | TERMINAL, timeout) in TERMINAL:
        return
    h.ask("requester", f"status {cluster}")
    h.slash("approver", f"complete {run_id}", channel=channel)


def slack_refusals(h: Harness, run_id: str) -> list[str]:
    """What the audit recorded of Slack refusing the run's messages (one entry a refusal)."""
    from workers.store.audit import AuditLog

    audit = AuditLog(redis.Redis.from_url(h.redis_url), h.prefix)
    return [e["what"] for e in audit.read(run=run_id) if e["kind"] == "slack"]


def newest(revisions: list[str]) -> str | None:
    """The newest of ``asm-1-NN`` revisions."""
    return max(revisions, key=lambda r: int(r.rsplit("-", 1)[1]), default=None)


def default_cluster(scenario: str, state: dict[str, Any], world: bool) -> str:
    """The cluster a scenario plays on: the default fleet's dev / staging / edge; in a
    world, its first cluster with the mesh on (with it off, for ``enable``)."""
    if not world:
        return {"rollback": "staging", "enable": "edge"}.get(scenario, "dev")
    meshed = [k for k, c in state.items() if bool(c["revisions"]) != (scenario == "enable")]
    return (meshed or list(state))[0]


def enable_demo(h: Harness, cluster: str, timeout: float) -> int:
    """Enable the mesh on a cluster where it is off, then inject two of its namespaces."""
    resp = h.slash("requester", f"enable {cluster}")
    m = RUN_ID_RE.search(resp.text)
    if resp.status_code != 200 or not m:
        h.echo(f"the enable was not accepted: HTTP {resp.status_code} {resp.text}")
        return 1
    run_id = m.group(0)
    h.click("approver", run_id, "approve", h.wait_for_button(run_id, "approve", 120))
    phase = h.wait_for_phase(run_id, TERMINAL, timeout)
    ingress = h.slash("requester", f"ingress {cluster} enable external")
    ingress_run = RUN_ID_RE.search(ingress.text)
    ingress_phase = "not started"
    if ingress_run:
        h.click("approver", ingress_run.group(0), "approve",
                h.wait_for_button(ingress_run.group(0), "approve", 120))
        ingress_phase = h.wait_for_phase(ingress_run.group(0), TERMINAL, timeout)
    names = list(h.control("GET", "/_sandbox/state")[cluster]["namespaces"])
    namespaces = [ns for ns in names if ns in ("shop", "blog")] or [
        ns for ns in names if not ns.startswith(("kube-", "aks-istio-"))
        and ns not in ("default", "istio-system")][:2]
    answer = h.ask("requester", f"inject {cluster} {' '.join(namespaces)}")
    time.sleep(2)
    h.print_new()
    state = h.control("GET", "/_sandbox/state")[cluster]
    problems = []
    if phase != "completed":
        problems.append(f"run ended {phase}")
    if len(state["revisions"]) != 1 or state["istiod"] != [f"istiod-{state['revisions'][0]}"]:
        problems.append(f"mesh not on: revisions {state['revisions']}, {state['istiod']}")
    if ingress_phase != "completed" or not any(
            d.startswith("aks-istio-ingressgateway-external-") for d in state["gateways"]):
        problems.append(f"external ingress gateway: {ingress_phase}, {state['gateways']}")
    labelled = {ns: lbl.get("istio.io/rev") for ns, lbl in state["namespaces"].items()
                if ns in namespaces}
    if not namespaces or set(labelled.values()) != set(state["revisions"][:1]):
        problems.append(f"namespaces not injected: {labelled} ({answer})")
    for p in problems:
        h.echo(f"demo check failed: {p}")
    h.echo(f"run {run_id}: {phase}")
    return 1 if problems else 0


def check_outcome(h: Harness, scenario: str, cluster: str, run_id: str, phase: str,
                  stable: str = "asm-1-25", target: str = "asm-1-26", watched: str = "checkout",
                  strict_pods: bool = True, notes: list[str] | None = None,
                  copies_mesh_config: bool = False) -> list[str]:
    """What is wrong with the end state of a scenario; empty when it ended as it should.
    Pods left off the expected sidecar are a problem on the default fleet; in a world (Jobs,
    OnDelete StatefulSets, bare pods, pods not injected) they are added to ``notes``.
    ``copies_mesh_config``: the stable revision had a shared MeshConfig and the canary none
    when the run started, so the canary's must now hold the same data."""
    state = h.control("GET", "/_sandbox/state")[cluster]
    upgrade = scenario in ("upgrade", "incident")
    want = target if upgrade else stable
    problems: list[str] = []
    notes = notes if notes is not None else []
    if phase != ("completed" if upgrade else "rolled_back"):
        problems.append(f"run ended {phase}")
    if state["revisions"] != [want]:
        problems.append(f"cluster revisions are {state['revisions']}, not [{want}]")
    apps = [ns for ns, labels in state["namespaces"].items() if "istio.io/rev" in labels]
    tags = state.get("revision_tags") or {}
    wrong = [ns for ns in apps if tags.get(state["namespaces"][ns]["istio.io/rev"],
                                           state["namespaces"][ns]["istio.io/rev"]) != want]
    if wrong or not apps:
        problems.append(f"namespaces not labelled {want} (nor with a tag pointing at it): "
                        f"{wrong or 'none labelled'}")
    version = want[4:].replace("-", ".")
    pods = [p for p in state["pods"] if p["namespace"] in apps and not p.get("terminating")]
    off = [p for p in pods if p["revision"] != want
           or not (p["proxy_image"] or "").split(":")[-1].startswith(version)]
    if strict_pods and (off or not pods):
        problems.append(f"pods not on the {want} sidecar: "
                        f"{[p['name'] for p in off][:5] or 'no pods'}")
    elif off := [p for p in off if p.get("phase") not in ("Succeeded", "Failed")]:
        by_owner = sorted({f"{p['namespace']}/{p['owner']} ({p['phase']}, "
                           f"{p['revision'] or 'no sidecar'})" for p in off})
        notes.append(f"{len(off)} pods not on the {want} sidecar: " + ", ".join(by_owner[:8])
                     + (f" and {len(by_owner) - 8} more" if len(by_owner) > 8 else ""))
    configs = state.get("mesh_configs") or {}
    stable_cm, canary_cm = (f"istio-shared-configmap-{r}" for r in (stable, target))
    if upgrade and copies_mesh_config and stable_cm in configs:
        # AKS doc istio-meshconfig.md: the canary's MeshConfig is made before its start
        if configs.get(canary_cm) != configs[stable_cm]:
            problems.append(f"MeshConfig: {canary_cm} is {configs.get(canary_cm)}, not the "
                            f"data of {stable_cm} ({configs[stable_cm]})")
        else:
            notes.append(f"MeshConfig: {canary_cm} holds the same data as {stable_cm}: "
                         f"{json.dumps(configs[stable_cm], sort_keys=True)}")
    thread = " ".join(e["text"] for e in h.slack_log() if e.get("thread_ts"))
    if scenario == "rollback" and not re.search(
            rf"✗ {re.escape(watched)} 5xx/gRPC errors \((?:destination|source)\) "
            rf"\d+\.\d+% — expected .*regressed at [>\d.]+% confidence", thread):
        # what it says of them instead, so that a failed check shows why
        said = [line[:200] for line in re.findall(rf"[✓✗…?] {re.escape(watched)} [^✓✗…?\n]*",
                                                  thread)][-3:]
        problems.append(f"the thread does not name {watched}'s errors with the expected "
                        f"rate and the confidence; its last lines on {watched}: "
                        f"{said or 'none'}")
    if scenario == "incident" and re.search(r"gate look [^*]*: FAIL", thread):
        problems.append("a gate look failed during the fleet-wide incident")
    return problems


def incident_during_bake(h: Harness, run_id: str, cluster: str, bake_s: float,
                         timeout: float, wave: int = 1) -> None:
    """Once ``wave`` bakes (the default fleet's last), start a fleet-wide incident on
    ``cluster`` for half the bake: 5xx up in every namespace, migrated or not, as a shared
    dependency failing (``POST /_sandbox/incidents``). (An incident during an earlier wave
    lands in the next wave's baseline, which can leave that wave undecided: issue 12.)"""
    def baking() -> bool:
        return any(e.get("thread_ts") and f"wave {wave} " in e["text"]
                   and "baking" in e["text"] for e in h.slack_log())
    h._wait(baking, timeout, f"wave {wave} of run {run_id} to bake")
    h.control("POST", "/_sandbox/incidents", {"seconds": bake_s / 2, "error_rate": 0.05,
                                              "clusters": [cluster]})
    h.echo(f"(sandbox: a fleet-wide incident on {cluster} for {bake_s / 2:.0f}s: 5% more 5xx "
           "in every namespace, migrated or not)")
