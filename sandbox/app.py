"""``meshops sandbox``: every emulator, a real Prometheus, a world, on loopback.

The world (clusters, namespaces, manifests, traffic, faults) comes from a world file
(:mod:`sandbox.worldfile`; the default fleet is ``data/worlds/default.yaml``).

Ports (from ``port_base``): +0 ARM (HTTPS), +1 control API and managed-identity tokens,
+2 Kubernetes API (HTTPS, its own cluster CA), +3 Istio traffic (every proxy's
``/stats/prometheus/…`` and the service discovery Prometheus finds them with,
:mod:`sandbox.traffic`), +4 Slack Web API, +5 Prometheus, +6 Slack Socket Mode (WebSocket).

On start it writes to its state directory:
- ``fleet.yaml``: a meshops fleet file for the world's clusters at these ports (each with its
  channel; ana and ben approve);
- ``kubeconfig``: every cluster's Kubernetes API for a person with kubectl (a context each);
- ``sandbox.env``: the environment meshops needs for it (Slack token and signing secret,
  ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER`` for ``DefaultAzureCredential``);
- ``sandbox.json``: endpoints and the seed people, for the demo and the tests.

The control API (``/_sandbox/...``) stages faults and incidents, counts what changed and
resets the seed.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import math
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from sandbox.arm import ENTRA_SERVER_ID, ArmEmulator, entra_managed
from sandbox.certs import make_certificate, make_cluster_ca
from sandbox.http import Request, Response, Router, serve
from sandbox.kube import KubeEmulator
from sandbox.prom import start_prometheus
from sandbox.slack import SlackEmulator, SocketModeServer
from sandbox.traffic import TrafficSimulator
from sandbox.world import (
    INGRESS_NS,
    ISTIO_NS,
    REV_LABEL,
    SHARED_MESH_CONFIG,
    SYSTEM_NAMESPACES,
    Fault,
    Incident,
    World,
    proxy_revision,
)
from sandbox.worldfile import (
    DEFAULT_WORLD,
    GeneratedCampaign,
    LoadedWorld,
    apply_faults,
    build,
    generate,
)
from sandbox.worldfile import load as load_world

#: how often the sandbox's Prometheus scrapes the proxies (the fleet file says so too)
SCRAPE_INTERVAL = "1s"
#: (most proxies, scrape interval in seconds): a bigger mesh is scraped less often, as an
#: operator lengthens ``scrape_interval`` until Prometheus keeps up. A process of its own
#: answers the scrapes (:class:`sandbox.http.PublishedServer`), so every sample is kept at
#: 10 s even at 2,000 namespaces (``scripts/scale-sandbox``); but there Prometheus, taking
#: in 76 MB of proxy text every 10 s on the same cores, answers a 100-namespace wave's gate
#: queries in more than 10 s. Beyond 3,000 proxies it scrapes every 30 s, managed
#: Prometheus' default (AKS doc ``istio-metrics-managed-prometheus.md``).
SCRAPE_INTERVALS = ((400, 1), (1000, 2), (2500, 5), (3000, 10))


def scrape_interval_for(proxies: int) -> int:
    """The scrape interval (s) for a mesh of ``proxies`` scrape targets."""
    return next((s for most, s in SCRAPE_INTERVALS if proxies <= most), 30)


#: namespaces per wave in the sandbox fleet's upgrades
WAVE_SIZE = 3
#: a cluster of more namespaces is upgraded in this many waves after the pilot, as a team
#: with thousands of namespaces sizes its waves (``clusters.<name>.upgrade.wave_size``):
#: 2,000 namespaces in waves of 3 would be 667 bakes
MOST_WAVES = 20


def wave_size_for(namespaces: int) -> int:
    """The sandbox fleet's wave size for a cluster of ``namespaces`` app namespaces."""
    return max(WAVE_SIZE, math.ceil(namespaces / MOST_WAVES))
#: people of the sandbox's Slack workspace: (id, name)
REQUESTER = ("U0ANA", "ana")
APPROVER = ("U0BEN", "ben")
BYSTANDER = ("U0CARL", "carl")


#: The sandbox's AKS release history (in the style of Azure/AKS's CHANGELOG.md), consistent
#: with data/revisions.yaml: what ``meshops demo`` serves as the GitHub releases feed.
CHANGELOG = Path(__file__).resolve().parent / "data" / "CHANGELOG.md"


def github_release(date: str, body: str, number: int) -> dict[str, Any]:
    """A release in the shape of the GitHub REST API (the fields the watcher reads)."""
    return {"id": number, "tag_name": date, "name": f"Release {date}", "body": body,
            "draft": False, "prerelease": False, "published_at": f"{date}T00:00:00Z",
            "html_url": f"https://github.com/Azure/AKS/releases/tag/{date}"}


def releases_from_changelog(path: Path) -> list[dict[str, Any]]:
    """GitHub releases (newest first) from a CHANGELOG.md with ``## Release YYYY-MM-DD``."""
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"^## Release\s+(\d{4}-\d{2}-\d{2})[^\n]*$", text, flags=re.MULTILINE)
    pairs = list(zip(parts[1::2], parts[2::2], strict=True))
    return [github_release(date, body.strip(), len(pairs) - i)
            for i, (date, body) in enumerate(pairs)]


def seed(world: World, loaded: LoadedWorld, extra_namespaces: int = 0) -> None:
    """Build the world of a world file; ``extra_namespaces`` adds that many namespaces of
    five Deployments (each behind a Service) to ``dev``, else the first cluster with the
    mesh on (the engine benchmark's fleet)."""
    # a world of thousands of namespaces is a million dicts that all stay: the cyclic
    # collector would walk them over and over while they are made (a third of the time)
    collecting = gc.isenabled()
    gc.disable()
    try:
        build(world, loaded)
    finally:
        if collecting:
            gc.enable()
    if not extra_namespaces:
        return
    meshed = [c for c in loaded.spec.clusters if c.revisions]
    target = next((c for c in meshed if c.key == "dev"), meshed[0] if meshed else None)
    if target is None:
        return
    c = world.clusters[target.name]
    world.seeding = True
    try:
        with world.lock:
            for i in range(extra_namespaces):
                ns = f"team-{i:03d}"
                world.ensure_namespace(c, ns, {REV_LABEL: target.revisions[0]})
                for j in range(5):
                    world._workload(c, ns, f"svc-{j}", {"app": f"svc-{j}"}, 1,
                                    "registry.example/svc:1.0")
                    world._create(c, {"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": f"svc-{j}", "namespace": ns},
                                      "spec": {"selector": {"app": f"svc-{j}"},
                                               "ports": [{"port": 80}]}})
            world._settle()
    finally:
        world.seeding = False


class Sandbox:
    def __init__(self, state_dir: Path, port_base: int = 18400, operation_s: float = 2.0,
                 rollout_s: float = 1.0, prometheus_bin: str = "prometheus",
                 extra_namespaces: int = 0, with_prometheus: bool = True,
                 changelog: Path | None = None, unreleased: list[str] | None = None,
                 world_file: Path | None = None, generated: tuple[int, ...] | None = None,
                 campaign: GeneratedCampaign | None = None) -> None:
        """``generated``: (namespaces, clusters[, replicas]) of a generated world
        (:func:`sandbox.worldfile.generate`) instead of a world file; ``campaign``: the
        campaign that generated world carries (ring labels and ``campaigns:``), if any."""
        self.state_dir = state_dir.resolve()
        #: the world: raises WorldError (file, field or document, what was expected)
        self.loaded = generate(
            generated[0], generated[1] if len(generated) > 1 else 1,
            generated[2] if len(generated) > 2 else 2, campaign) if generated else \
            load_world(world_file or DEFAULT_WORLD)
        self.ports = {name: port_base + i for i, name in enumerate(
            ["arm", "control", "kube", "traffic", "slack", "prometheus", "socket"])}
        self.url = {
            "arm": f"https://127.0.0.1:{self.ports['arm']}",
            "control": f"http://127.0.0.1:{self.ports['control']}",
            "kube": f"https://127.0.0.1:{self.ports['kube']}",
            "traffic": f"http://127.0.0.1:{self.ports['traffic']}",
            "slack": f"http://127.0.0.1:{self.ports['slack']}",
            "prometheus": f"http://127.0.0.1:{self.ports['prometheus']}",
        }
        self.operation_s, self.rollout_s = operation_s, rollout_s
        self.extra_namespaces = extra_namespaces
        self.prometheus_bin = prometheus_bin
        self.with_prometheus = with_prometheus
        self.identity_secret = secrets.token_hex(16)
        self.bot_token = "xoxb-sandbox-" + secrets.token_hex(12)
        self.app_token = "xapp-sandbox-" + secrets.token_hex(12)
        self.signing_secret = secrets.token_hex(16)
        self.unreleased = list(unreleased or [])
        self.world = self._new_world()
        self.releases = releases_from_changelog(changelog) if changelog else []
        self.github_faults: list[str] = []
        self.servers: list[Any] = []
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.stopped = threading.Event()

    def _new_world(self) -> World:
        world = World(operation_s=self.operation_s, rollout_s=self.rollout_s)
        world.hold_back(self.unreleased)
        seed(world, self.loaded, self.extra_namespaces)
        return world

    # ---------------------------------------------------------------- start / stop

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cert, key = make_certificate(self.state_dir / "tls")
        kube = make_cluster_ca(self.state_dir / "tls")
        self.arm = ArmEmulator(self.world, self.url["arm"], self.url["kube"],
                               self.identity_secret, kube.ca.read_bytes(),
                               (kube.client_cert.read_bytes(), kube.client_key.read_bytes()))
        self.kube = KubeEmulator(self.world, self.arm.audience_of, ENTRA_SERVER_ID)
        self.traffic = TrafficSimulator(self.world)
        # the clusters' channels, and the campaigns' when the world has campaigns
        channels = [c.slack for c in self.loaded.spec.clusters]
        if self.loaded.spec.campaigns is not None:
            channels.append(self.loaded.spec.campaigns.channel)
        self.slack = SlackEmulator(
            self.bot_token,
            channels={ch.id: ch.name for ch in channels},
            users=dict([REQUESTER, APPROVER, BYSTANDER]),
            usergroups={"S0MESHAPPROVERS": [APPROVER[0]]},
            base_url=self.url["slack"],
            not_member={ch.id for ch in channels if not ch.member},
            archived={ch.id for ch in channels if ch.archived})
        self.socket = SocketModeServer(self.app_token, "127.0.0.1", self.ports["socket"])
        self.slack.socket = self.socket
        self.servers = [self.socket,
            serve(self.arm.router(), "arm", "127.0.0.1", self.ports["arm"], tls=(str(cert),
                                                                                 str(key))),
            serve(self.control_router(), "control", "127.0.0.1", self.ports["control"]),
            serve(self.kube.router(), "kube", "127.0.0.1", self.ports["kube"],
                  tls=(str(kube.cert), str(kube.key)), client_ca=str(kube.ca)),
            self.traffic.serve("127.0.0.1", self.ports["traffic"]),
            serve(self.slack.router(), "slack", "127.0.0.1", self.ports["slack"]),
        ]
        self.world.start_background()
        if self.with_prometheus:
            # the proxies' counters advance on a clock of their own, rendered once a tick,
            # so that a scrape never waits for the traffic of a big mesh to be computed
            self.traffic.start(tick_s=max(0.5, self.scrape_s / 2))
            self.prometheus = start_prometheus(
                self.state_dir, self.ports["prometheus"], [], self.prometheus_bin,
                scrape_interval=self.scrape_interval,
                sd_url=self.url["traffic"] + "/sd/targets")
        self.write_files(cert)

    @property
    def scrape_s(self) -> int:
        """:attr:`scrape_interval` in whole seconds."""
        return int(self.scrape_interval.removesuffix("s"))

    @functools.cached_property
    def scrape_interval(self) -> str:
        """Prometheus' scrape interval for this world (``"1s"``; longer for a big mesh:
        :data:`SCRAPE_INTERVALS`)."""
        proxies = len(self.traffic.view().targets)
        return f"{scrape_interval_for(proxies)}s" if proxies > SCRAPE_INTERVALS[0][0] \
            else SCRAPE_INTERVAL

    def stop(self) -> None:
        if hasattr(self, "traffic"):
            self.traffic.stop()
        for s in self.servers:
            s.shutdown()
        if self.prometheus and self.prometheus.poll() is None:
            self.prometheus.send_signal(signal.SIGTERM)
            try:
                self.prometheus.wait(10)
            except subprocess.TimeoutExpired:
                self.prometheus.kill()
        self.stopped.set()

    # ---------------------------------------------------------------- files

    def fleet(self, ca_bundle: Path) -> dict[str, Any]:
        return {
            "slack": {"command": "/mesh", "api_url": self.url["slack"] + "/api/",
                      "app_id": "A0MESHOPS"},
            "azure": {"arm_endpoint": self.url["arm"], "ca_bundle": str(ca_bundle)},
            # Bakes of seconds at production's noise cannot rule out slow requests ×2 near
            # the p99 (that takes minutes: benchmarks/gate.py); the sandbox fleet's gate asks
            # to rule out ×3, as a team with short bakes would configure it. Errors keep the
            # product's 0.5 points.
            "defaults": {"upgrade": {"bake": "6s", "interval": "3s", "wave_size": WAVE_SIZE},
                         "gates": {"canary": {"latency_detect": 2.0, "tail_detect": 2.0}}},
            "releases": {"feed_url": self.url["control"] + "/_sandbox/github/repos/Azure/AKS/"
                                     "releases",
                         "changelog_url": self.url["control"] + "/_sandbox/github/CHANGELOG.md",
                         "interval": "3s"},
            "clusters": {
                c.key: {
                    "subscription": c.subscription, "resource_group": c.rg,
                    "name": c.name, "location": c.location, "channel": c.slack.id,
                    "approvers": [APPROVER[0], REQUESTER[0]],
                    "prometheus": {"url": self.url["prometheus"],
                                   "selector": {"cluster": c.name},
                                   "scrape_interval": self.scrape_interval,
                                   # this Prometheus scrapes the proxies itself: a window
                                   # is final once every scrape inside it has ended
                                   # (scrape_timeout ≤ scrape_interval, Prometheus' docs)
                                   "cache_freshness": f"{2 * self.scrape_s}s"},
                    **({"upgrade": {"wave_size": size}}
                       if (size := wave_size_for(len(c.namespaces))) > WAVE_SIZE else {}),
                    **({"labels": dict(c.labels)} if c.labels else {}),
                } for c in self.loaded.spec.clusters
            },
            **({"campaigns": {
                "channel": campaigns.channel.id, "approvers": [APPROVER[0]],
                "stages": [s.model_dump(exclude_defaults=True) | {"name": s.name}
                           for s in campaigns.stages]}}
               if (campaigns := self.loaded.spec.campaigns) else {}),
        }

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": self.bot_token,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "IDENTITY_ENDPOINT": self.url["control"] + "/msi/token",
            "IDENTITY_HEADER": self.identity_secret,
            "MESHOPS_FLEET": str(self.state_dir / "fleet.yaml"),
        }

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    def kubeconfig(self) -> dict[str, Any]:
        """One kubeconfig with every cluster, as ``az aks get-credentials`` merges them:
        a context per cluster named as in /mesh commands, the first one current."""
        merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [],
                                  "contexts": [], "users": [], "preferences": {}}
        for spec in self.loaded.spec.clusters:
            c = self.world.clusters[spec.name]
            # an Entra cluster: a week's Entra token instead of kubelogin (which the sandbox
            # cannot reach), as `kubelogin convert-kubeconfig` would leave one in the cache
            token = self.arm.mint(ENTRA_SERVER_ID, 7 * 86400)[0] if entra_managed(c) \
                else None
            one = self.arm.kubeconfig(c, token=token)
            merged["clusters"] += one["clusters"]
            merged["users"] += one["users"]
            merged["contexts"] += [{"name": spec.key, "context": one["contexts"][0]["context"]}]
        merged["current-context"] = self.loaded.spec.clusters[0].key
        return merged

    def write_files(self, ca_bundle: Path) -> None:
        self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        self.kubeconfig_path.chmod(0o600)
        (self.state_dir / "fleet.yaml").write_text(
            "# Written by `meshops sandbox` for its own ports; regenerated at every start.\n"
            + yaml.safe_dump(self.fleet(ca_bundle), sort_keys=False))
        env_path = self.state_dir / "sandbox.env"
        env_path.write_text("".join(f"{k}={v}\n" for k, v in self.env().items()))
        env_path.chmod(0o600)
        info = {"url": self.url, "ports": self.ports, "env": self.env(),
                "slack_app_token": self.app_token,
                "people": {"requester": REQUESTER[0], "approver": APPROVER[0],
                           "bystander": BYSTANDER[0]},
                "world": str(self.loaded.path), "kubeconfig": str(self.kubeconfig_path),
                "clusters": {c.key: {"name": c.name, "channel": c.slack.id,
                                     "mesh": bool(c.revisions),
                                     "app_can_post": c.slack.member and not c.slack.archived,
                                     "operation_at_approval": (
                                         c.operation_in_progress.model_dump(exclude={"starts"})
                                         if c.operation_in_progress is not None
                                         and c.operation_in_progress.starts == "approval"
                                         else None)}
                             for c in self.loaded.spec.clusters},
                # every channel by id: the clusters' and the campaigns' (names as in Slack)
                "channels": {ch.id: ch.name for ch in [
                    *(c.slack for c in self.loaded.spec.clusters),
                    *([self.loaded.spec.campaigns.channel] if self.loaded.spec.campaigns
                      else [])]}}
        ready = self.state_dir / "sandbox.json"
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(ready)  # atomically: its presence means "ready"

    # ---------------------------------------------------------------- control API

    def control_router(self) -> Router:
        r = Router()
        r.add("GET", "/msi/token", self._token)
        r.add("GET", "/_sandbox/health", lambda req: Response(200, {"ok": True}))
        r.add("GET", "/_sandbox/state", self.state)
        r.add("GET", "/_sandbox/counters", self.counters)
        r.add("POST", "/_sandbox/faults", self.set_fault)
        r.add("DELETE", "/_sandbox/faults", self.clear_faults)
        r.add("POST", "/_sandbox/incidents", self.start_incident)
        r.add("DELETE", "/_sandbox/incidents", self.end_incidents)
        r.add("POST", "/_sandbox/operations", self.start_operation)
        r.add("POST", "/_sandbox/arm-faults", self.set_arm_faults)
        r.add("POST", "/_sandbox/kube-faults", self.set_kube_faults)
        r.add("DELETE", "/_sandbox/kube-faults", self.set_kube_faults)
        r.add("POST", "/_sandbox/slack-rate-limit", self.set_slack_rate_limit)
        r.add("POST", "/_sandbox/slack-outage", self.set_slack_outage)
        r.add("POST", "/_sandbox/reset", self.reset)
        r.add("GET", "/_sandbox/github/repos/Azure/AKS/releases", self.github_releases)
        r.add("GET", "/_sandbox/github/CHANGELOG.md", self.github_changelog)
        r.add("POST", "/_sandbox/github-faults", self.set_github_faults)
        r.add("POST", "/_sandbox/releases", self.publish_release)
        r.add("POST", r"/_sandbox/revisions/(?P<rev>asm-1-\d+)/release", self.release_revision)
        r.add("POST", r"/_sandbox/revisions/(?P<rev>asm-1-\d+)/patch", self.patch_revision)
        r.add("GET", "/_sandbox/arm-requests", lambda req: Response(
            200, {"requests": self.arm.requests}))
        r.add("GET", "/_sandbox/response-url", lambda req: Response(
            200, {"url": self.slack.response_url_for()}))
        r.add("POST", "/_sandbox/socket-mode", self.socket_deliver)
        r.add("GET", "/_sandbox/socket-mode", lambda req: Response(
            200, {"connections": len(self.socket.connections)}))
        return r

    def socket_deliver(self, req: Request) -> Response:
        """Deliver ``{"type", "payload"}`` to the app over Socket Mode; answer with its ack."""
        body = req.json() or {}
        try:
            ack = self.socket.deliver(body["type"], body["payload"])
        except TimeoutError as exc:
            return Response(504, {"error": str(exc)})
        return Response(200, ack)

    def _token(self, req: Request) -> Response:
        return self.arm.token(req)

    def _cluster_name(self, short_or_name: str) -> str:
        for c in self.loaded.spec.clusters:
            if short_or_name in (c.key, c.name):
                return c.name
        return short_or_name

    def state(self, req: Request) -> Response:
        """Each cluster (by its name in /mesh commands): revisions, the upgrades ARM offers,
        namespaces and the labels set on them (without the API server's
        ``kubernetes.io/metadata.name``), app pods with their sidecar, istiod, gateways,
        revision tags and the revision each points at, the shared MeshConfig ConfigMaps
        (``istio-shared-configmap-<revision>`` → its data)."""
        out = {}
        for spec in self.loaded.spec.clusters:
            c = self.world.clusters[spec.name]
            namespaces = {o["metadata"]["name"]: {
                k: v for k, v in (o["metadata"].get("labels") or {}).items()
                if k != "kubernetes.io/metadata.name"}
                for o in self.world.list_objects(spec.name, "Namespace")}
            pods = []
            with self.world.lock:
                for p in self.world.list_objects(spec.name, "Pod"):
                    if p["metadata"]["namespace"] in SYSTEM_NAMESPACES:
                        continue
                    proxy = next((ct["image"] for ct in p["spec"]["containers"]
                                  + (p["spec"].get("initContainers") or [])
                                  if ct["name"] == "istio-proxy"), None)
                    kind, name = self.world._workload_of(c, p)
                    pods.append({"namespace": p["metadata"]["namespace"],
                                 "name": p["metadata"]["name"],
                                 "revision": proxy_revision(p),
                                 "proxy_image": proxy, "owner": f"{kind}/{name}",
                                 "phase": p["status"].get("phase"),
                                 "terminating": "deletionTimestamp" in p["metadata"]})
                profile = self.arm.upgrade_profile(c)
            istiod = sorted(o["metadata"]["name"] for o in
                            self.world.list_objects(spec.name, "Deployment", ISTIO_NS))
            gateways = sorted(o["metadata"]["name"] for o in
                              self.world.list_objects(spec.name, "Deployment", INGRESS_NS))
            tags = {}  # revision tag → revision, from istioctl's webhooks
            for hook in self.world.list_objects(spec.name, "MutatingWebhookConfiguration"):
                labels = hook["metadata"].get("labels") or {}
                if labels.get("istio.io/tag") and labels.get("istio.io/rev"):
                    tags[labels["istio.io/tag"]] = labels["istio.io/rev"]
            mesh_configs = {o["metadata"]["name"]: o.get("data") or {} for o in
                            self.world.list_objects(spec.name, "ConfigMap", ISTIO_NS)
                            if o["metadata"]["name"].startswith(SHARED_MESH_CONFIG)}
            out[spec.key] = {"name": spec.name, "revisions": c.revisions,
                             "upgrades": (profile or {}).get("properties", {}).get(
                                 "upgrades", []),
                             "provisioningState": c.arm["properties"]["provisioningState"],
                             "namespaces": namespaces, "pods": pods, "istiod": istiod,
                             "gateways": gateways, "revision_tags": tags,
                             "mesh_configs": mesh_configs}
        return Response(200, out)

    def counters(self, req: Request) -> Response:
        return Response(200, {"relabels": dict(self.world.relabels),
                              "restarts": dict(self.world.restarts)})

    def set_fault(self, req: Request) -> Response:
        body = req.json() or {}
        try:
            key = (self._cluster_name(body["cluster"]), body["namespace"], body["revision"])
        except KeyError as exc:
            return Response(400, {"error": f"missing {exc}; need cluster, namespace, revision"})
        try:
            fault = Fault(error_rate=float(body.get("error_rate", 0)),
                          latency_ms=body.get("latency_ms"),
                          crashloop=bool(body.get("crashloop", False)),
                          source_error_rate=float(body.get("source_error_rate", 0)),
                          grpc_status=int(body.get("grpc_status", 14)))
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": f"not a fault: {exc}"})
        if body.get("workload"):
            self.world.workload_faults[(key[0], key[1], str(body["workload"]), key[2])] = fault
        else:
            self.world.faults[key] = fault
        return Response(200, {"faults": [list(k) for k in self.world.faults]
                              + [list(k) for k in self.world.workload_faults]})

    def start_incident(self, req: Request) -> Response:
        """A fleet-wide incident from now on (:class:`sandbox.world.Incident`):
        ``{"seconds": 30, "error_rate": 0.05, "latency_x": 3, "clusters": ["dev"]}`` (no
        ``clusters``: every cluster). Answers the incidents of the world."""
        body = req.json() or {}
        try:
            seconds = float(body.get("seconds", 60))
            error_rate = float(body.get("error_rate", 0))
            latency_x = float(body.get("latency_x", 1))
            clusters = body.get("clusters")
            if not 0 < seconds <= 86400 or not 0 <= error_rate <= 1 or latency_x < 1:
                raise ValueError("seconds in (0, 86400], error_rate in [0, 1], latency_x >= 1")
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": f"not an incident: {exc}"})
        now = time.time()
        self.world.weather.incidents.append(Incident(
            now, now + seconds, error_rate, latency_x,
            tuple(self._cluster_name(str(c)) for c in clusters) if clusters else None))
        return Response(200, {"incidents": self._incidents()})

    def start_operation(self, req: Request) -> Response:
        """Someone else's node pool operation from now on
        (:meth:`sandbox.world.World.start_node_pool_operation`):
        ``{"cluster": "prod", "kind": "update node pool", "seconds": 15}``. A cluster already
        busy answers 409, as ARM refuses a second operation while one runs."""
        body = req.json() or {}
        name = self._cluster_name(str(body.get("cluster", "")))
        c = self.world.clusters.get(name)
        if c is None:
            return Response(404, {"error": f"no cluster {body.get('cluster')!r} in the world"})
        try:
            seconds = float(body.get("seconds", 15))
            if not 0 < seconds <= 3600:
                raise ValueError("seconds in (0, 3600]")
            if c.operation is not None:
                return Response(409, {"error": f"{name} is busy: {c.operation.kind}"})
            op = self.world.start_node_pool_operation(
                c, str(body.get("kind", "update node pool")), seconds)
        except (TypeError, ValueError) as exc:
            return Response(400, {"error": f"not an operation: {exc}"})
        return Response(200, {"id": op.id, "cluster": name, "kind": op.kind,
                              "due": op.due})

    def end_incidents(self, req: Request) -> Response:
        """End every one-off incident now (the world file's recurring ones go on)."""
        now = time.time()
        self.world.weather.incidents[:] = [
            Incident(i.start, min(i.end, now), i.error_rate, i.latency_x, i.clusters)
            for i in self.world.weather.incidents if i.start < now]
        return Response(200, {"incidents": self._incidents()})

    def _incidents(self) -> list[dict[str, Any]]:
        return [{"start": i.start, "end": i.end, "error_rate": i.error_rate,
                 "latency_x": i.latency_x, "clusters": list(i.clusters or [])}
                for i in self.world.weather.incidents]

    def _world_faults(self) -> None:
        apply_faults(self.world, self.loaded)

    def clear_faults(self, req: Request) -> Response:
        """Clear the faults staged through this API (the world file's own stay)."""
        self.world.faults.clear()
        self.world.workload_faults.clear()
        self._world_faults()
        return Response(200, {"faults": []})

    def set_kube_faults(self, req: Request) -> Response:
        """``{"faults": [{"status": 429, "retry_after": 2}, {"hang_s": 40, "path": "pods"}]}``:
        answer the next matching Kubernetes API requests so (:meth:`KubeEmulator._fault`);
        DELETE clears them."""
        body = req.json() or {} if req.method == "POST" else {}
        faults = body.get("faults", [])
        if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
            return Response(400, {"error": "faults: a list of objects"})
        with self.kube.faults_lock:
            if req.method == "DELETE":
                self.kube.faults.clear()
            self.kube.faults.extend(faults)
            return Response(200, {"faults": list(self.kube.faults)})

    def set_arm_faults(self, req: Request) -> Response:
        """``{"statuses": [429, 500]}``: answer the next writes so; ``{"fail_operations": 1}``:
        the next long-running operations end Failed and leave the cluster as it was."""
        body = req.json() or {}
        self.world.arm_faults[:] = [int(s) for s in body.get("statuses", [])]
        self.world.failing_operations = int(body.get("fail_operations", 0))
        return Response(200, {"statuses": self.world.arm_faults,
                              "fail_operations": self.world.failing_operations})

    def set_slack_rate_limit(self, req: Request) -> Response:
        self.slack.rate_limit_next = int((req.json() or {}).get("count", 1))
        return Response(200, {"count": self.slack.rate_limit_next})

    # ---------------------------------------------------------------- release feed

    def _github_fault(self) -> Response | None:
        if not self.github_faults:
            return None
        fault = self.github_faults.pop(0)
        if fault == "html":
            return Response(200, "<html><body><h1>Unicorn!</h1>This page is taking too long"
                                 "</body></html>", content_type="text/html")
        if fault == "malformed":
            return Response(200, '{"message": "not a list"}')
        status = int(fault)
        headers = {"X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(int(time.time()) + 60)} if status == 403 else {}
        return Response(status, {"message": "API rate limit exceeded" if status == 403
                                 else "Server Error"}, headers=headers)

    def _conditional(self, req: Request, body: str, content_type: str) -> Response:
        etag = '"' + hashlib.sha1(body.encode()).hexdigest() + '"'
        if req.headers.get("If-None-Match") == etag:
            return Response(304, None, headers={"ETag": etag})
        return Response(200, body, content_type=content_type, headers={"ETag": etag})

    def github_releases(self, req: Request) -> Response:
        """The GitHub REST API's ``GET /repos/{owner}/{repo}/releases``, with ETags."""
        return self._github_fault() or self._conditional(
            req, json.dumps(self.releases), "application/json; charset=utf-8")

    def github_changelog(self, req: Request) -> Response:
        body = "# Azure Kubernetes Service Changelog\n\n" + "\n".join(
            f"## {r['name']}\n\n{r['body']}\n" for r in self.releases)
        return self._conditional(req, body, "text/plain; charset=utf-8")

    def set_github_faults(self, req: Request) -> Response:
        self.github_faults[:] = [str(s) for s in (req.json() or {}).get("faults", [])]
        return Response(200, {"faults": self.github_faults})

    def publish_release(self, req: Request) -> Response:
        """Publish a new release note: ``{"date": "YYYY-MM-DD", "body": markdown}``."""
        body = req.json() or {}
        date = str(body.get("date") or time.strftime("%Y-%m-%d", time.gmtime()))
        release = github_release(date, str(body.get("body", "")), len(self.releases) + 1)
        self.releases.insert(0, release)
        return Response(201, release)

    def patch_revision(self, req: Request) -> Response:
        """AKS rolls a new patch of a revision out: ``{"version": "1.25.7"}``. AKS updates
        ``istiod-<revision>`` itself (its pilot image; AKS doc ``istio-upgrade.md``, "Patch
        version upgrade"), and pods injected from now on get that istio-proxy; running
        workloads keep theirs until they restart."""
        entry = self.world.catalog.get(req.params["rev"])
        version = str((req.json() or {}).get("version", ""))
        if entry is None or not re.match(r"^1\.\d+\.\d+", version):
            return Response(400, {"error": "unknown revision or version not 1.NN.P"})
        entry["version"] = version
        self.world.roll_control_plane(req.params["rev"], version)
        return Response(200, entry)

    def release_revision(self, req: Request) -> Response:
        """Make a held-back revision appear in ARM (meshRevisionProfiles, upgrades)."""
        if not self.world.release(req.params["rev"]):
            return Response(404, {"error": f"{req.params['rev']} is not held back"})
        return Response(200, {"catalog": sorted(self.world.catalog)})

    def set_slack_outage(self, req: Request) -> Response:
        seconds = float((req.json() or {}).get("seconds", 10))
        self.slack.outage_until = time.time() + seconds
        return Response(200, {"until": self.slack.outage_until})

    def reset(self, req: Request) -> Response:
        """Re-seed every cluster in place (same tokens, same ports) and zero the counters."""
        w = self.world
        with w.lock:
            tokens = {name: c.token for name, c in w.clusters.items()}
            w.clusters.clear()
            w.operations.clear()
            w.faults.clear()
            w.workload_faults.clear()
            with self.kube.faults_lock:
                self.kube.faults.clear()
            w.traffic.clear()
            w._timers.clear()
            w.relabels.clear()
            w.restarts.clear()
            w.arm_faults.clear()
            seed(w, self.loaded, self.extra_namespaces)
            for name, token in tokens.items():
                if name in w.clusters:
                    w.clusters[name].token = token
        return Response(200, {"ok": True})
