"""``meshops sandbox``: every emulator, a real Prometheus, the seed fleet, on loopback.

Ports (from ``port_base``): +0 ARM (HTTPS), +1 control API and managed-identity tokens,
+2 Kubernetes API, +3 Istio traffic ``/metrics``, +4 Slack Web API, +5 Prometheus,
+6 Slack Socket Mode (WebSocket).

On start it writes to its state directory:
- ``fleet.yaml``: a meshops fleet file for the seed clusters at these ports;
- ``sandbox.env``: the environment meshops needs for it (Slack token and signing secret,
  ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER`` for ``DefaultAzureCredential``);
- ``sandbox.json``: endpoints and the seed people, for the demo and the tests.

The control API (``/_sandbox/...``) stages faults, counts what changed and resets the seed.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox.arm import ArmEmulator
from sandbox.certs import make_certificate
from sandbox.http import Request, Response, Router, serve
from sandbox.kube import KubeEmulator
from sandbox.prom import start_prometheus
from sandbox.slack import SlackEmulator, SocketModeServer
from sandbox.traffic import TrafficSimulator
from sandbox.world import ISTIO_NS, REV_LABEL, Fault, World

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
APP_NAMESPACES = ["accounts", "catalog", "checkout", "storefront"]

#: people of the seed workspace: (id, name)
REQUESTER = ("U0ANA", "ana")
APPROVER = ("U0BEN", "ben")
BYSTANDER = ("U0CARL", "carl")


@dataclass(frozen=True)
class SeedCluster:
    short: str
    name: str
    resource_group: str
    location: str
    channel: str
    channel_name: str
    kubernetes_version: str = "1.31.2"
    revisions: list[str] = field(default_factory=lambda: ["asm-1-25"])
    namespaces: tuple[str, ...] = tuple(APP_NAMESPACES)
    osm: bool = False  # the Open Service Mesh add-on is enabled
    self_installed_istio: bool = False  # istio-system/istiod outside the add-on


SEED = [
    SeedCluster("dev", "aks-dev-westus2", "rg-mesh-dev", "westus2", "C0DEVMESH", "mesh-dev"),
    SeedCluster("staging", "aks-staging-eastus", "rg-mesh-staging", "eastus", "C0STGMESH",
                "mesh-staging"),
    SeedCluster("prod", "aks-prod-eastus", "rg-mesh-prod", "eastus", "C0PRDMESH", "mesh-prod"),
    # mesh off: a cluster to bring into the mesh, one with OSM, one with its own Istio
    SeedCluster("edge", "aks-edge-westus2", "rg-mesh-edge", "westus2", "C0EDGMESH", "mesh-edge",
                revisions=[], namespaces=("shop", "blog")),
    SeedCluster("osm", "aks-osm-eastus", "rg-mesh-osm", "eastus", "C0OSMMESH", "mesh-osm",
                revisions=[], namespaces=("shop",), osm=True),
    SeedCluster("diy", "aks-diy-eastus", "rg-mesh-diy", "eastus", "C0DIYMESH", "mesh-diy",
                revisions=[], namespaces=("shop",), self_installed_istio=True),
]


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


def seed(world: World, extra_namespaces: int = 0) -> None:
    """The seed fleet: Bookinfo in four namespaces on asm-1-25 per cluster.

    ``extra_namespaces`` adds that many namespaces of five Deployments each to ``dev``
    (the engine benchmark's fleet).
    """
    for s in SEED:
        namespaces = {ns: {REV_LABEL: s.revisions[0]} if s.revisions else {}
                      for ns in s.namespaces}
        if s.revisions:
            namespaces["legacy"] = {"istio-injection": "enabled"}
        c = world.add_cluster(s.name, subscription=SUBSCRIPTION, resource_group=s.resource_group,
                              location=s.location, kubernetes_version=s.kubernetes_version,
                              revisions=s.revisions, namespaces=namespaces,
                              bookinfo_in=list(s.namespaces))
        if s.osm:
            c.arm["properties"]["addonProfiles"]["openServiceMesh"] = {"enabled": True,
                                                                       "config": {}}
        if s.self_installed_istio:
            with world.lock:
                world._put(c, "Namespace", "", "istio-system", {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "istio-system", "labels": {}}, "spec": {},
                    "status": {"phase": "Active"}})
                world._deployment(c, "istio-system", "istiod", {"app": "istiod"}, 1,
                                  "docker.io/istio/pilot:1.24.2")
                for plural, kind, group in (
                        ("virtualservices", "VirtualService", "networking.istio.io"),
                        ("destinationrules", "DestinationRule", "networking.istio.io"),
                        ("peerauthentications", "PeerAuthentication", "security.istio.io")):
                    world._put(c, "CustomResourceDefinition", "", f"{plural}.{group}", {
                        "apiVersion": "apiextensions.k8s.io/v1",
                        "kind": "CustomResourceDefinition",
                        "metadata": {"name": f"{plural}.{group}", "labels": {
                            "app.kubernetes.io/managed-by": "istioctl"}},
                        "spec": {"group": group, "scope": "Namespaced",
                                 "names": {"plural": plural, "kind": kind,
                                           "singular": kind.lower(),
                                           "listKind": f"{kind}List"},
                                 "versions": [{"name": "v1", "served": True,
                                               "storage": True}]}})
        if s.short == "dev" and extra_namespaces:
            with world.lock:
                for i in range(extra_namespaces):
                    ns = f"team-{i:03d}"
                    world._put(c, "Namespace", "", ns, {
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": {REV_LABEL: s.revisions[0]}},
                        "spec": {}, "status": {"phase": "Active"}})
                    for j in range(5):
                        world._deployment(c, ns, f"svc-{j}", {"app": f"svc-{j}"}, 1,
                                          "registry.example/svc:1.0")


class Sandbox:
    def __init__(self, state_dir: Path, port_base: int = 18400, operation_s: float = 2.0,
                 rollout_s: float = 1.0, prometheus_bin: str = "prometheus",
                 extra_namespaces: int = 0, with_prometheus: bool = True,
                 changelog: Path | None = None, unreleased: list[str] | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.ports = {name: port_base + i for i, name in enumerate(
            ["arm", "control", "kube", "traffic", "slack", "prometheus", "socket"])}
        self.url = {
            "arm": f"https://127.0.0.1:{self.ports['arm']}",
            "control": f"http://127.0.0.1:{self.ports['control']}",
            "kube": f"http://127.0.0.1:{self.ports['kube']}",
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
        seed(world, self.extra_namespaces)
        return world

    # ---------------------------------------------------------------- start / stop

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cert, key = make_certificate(self.state_dir / "tls")
        self.arm = ArmEmulator(self.world, self.url["arm"], self.url["kube"],
                               self.identity_secret)
        self.kube = KubeEmulator(self.world)
        self.traffic = TrafficSimulator(self.world)
        self.slack = SlackEmulator(
            self.bot_token,
            channels={s.channel: s.channel_name for s in SEED},
            users=dict([REQUESTER, APPROVER, BYSTANDER]),
            usergroups={"S0MESHAPPROVERS": [APPROVER[0]]},
            base_url=self.url["slack"])
        self.socket = SocketModeServer(self.app_token, "127.0.0.1", self.ports["socket"])
        self.slack.socket = self.socket
        self.servers = [self.socket,
            serve(self.arm.router(), "arm", "127.0.0.1", self.ports["arm"], tls=(str(cert),
                                                                                 str(key))),
            serve(self.control_router(), "control", "127.0.0.1", self.ports["control"]),
            serve(self.kube.router(), "kube", "127.0.0.1", self.ports["kube"]),
            serve(self.traffic.router(), "traffic", "127.0.0.1", self.ports["traffic"]),
            serve(self.slack.router(), "slack", "127.0.0.1", self.ports["slack"]),
        ]
        self.world.start_background()
        if self.with_prometheus:
            self.prometheus = start_prometheus(
                self.state_dir, self.ports["prometheus"],
                [f"127.0.0.1:{self.ports['traffic']}"], self.prometheus_bin)
        self.write_files(cert)

    def stop(self) -> None:
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
            "defaults": {"upgrade": {"bake": "10s", "interval": "5s", "wave_size": 2}},
            "releases": {"feed_url": self.url["control"] + "/_sandbox/github/repos/Azure/AKS/"
                                     "releases",
                         "changelog_url": self.url["control"] + "/_sandbox/github/CHANGELOG.md",
                         "interval": "3s"},
            "clusters": {
                s.short: {
                    "subscription": SUBSCRIPTION, "resource_group": s.resource_group,
                    "name": s.name, "location": s.location, "channel": s.channel,
                    "approvers": [APPROVER[0], REQUESTER[0]],
                    "prometheus": {"url": self.url["prometheus"],
                                   "selector": {"cluster": s.name}},
                } for s in SEED
            },
        }

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": self.bot_token,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "IDENTITY_ENDPOINT": self.url["control"] + "/msi/token",
            "IDENTITY_HEADER": self.identity_secret,
            "MESHOPS_FLEET": str(self.state_dir / "fleet.yaml"),
        }

    def write_files(self, ca_bundle: Path) -> None:
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
                "clusters": {s.short: {"name": s.name, "channel": s.channel,
                                       "mesh": bool(s.revisions)} for s in SEED}}
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
        r.add("POST", "/_sandbox/arm-faults", self.set_arm_faults)
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
        for s in SEED:
            if short_or_name in (s.short, s.name):
                return s.name
        return short_or_name

    def state(self, req: Request) -> Response:
        out = {}
        for s in SEED:
            c = self.world.clusters[s.name]
            namespaces = {o["metadata"]["name"]: o["metadata"].get("labels") or {}
                          for o in self.world.list_objects(s.name, "Namespace")}
            pods = []
            for p in self.world.list_objects(s.name, "Pod"):
                if p["metadata"]["namespace"] in (ISTIO_NS, "kube-system", "aks-istio-ingress"):
                    continue
                proxy = next((ct["image"] for ct in p["spec"]["containers"]
                              if ct["name"] == "istio-proxy"), None)
                pods.append({"namespace": p["metadata"]["namespace"],
                             "name": p["metadata"]["name"],
                             "revision": p["metadata"]["labels"].get(REV_LABEL),
                             "proxy_image": proxy})
            istiod = sorted(o["metadata"]["name"] for o in
                            self.world.list_objects(s.name, "Deployment", ISTIO_NS))
            gateways = sorted(o["metadata"]["name"] for o in
                              self.world.list_objects(s.name, "Deployment", "aks-istio-ingress"))
            out[s.short] = {"name": s.name, "revisions": c.revisions,
                            "provisioningState": c.arm["properties"]["provisioningState"],
                            "namespaces": namespaces, "pods": pods, "istiod": istiod,
                            "gateways": gateways}
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
        self.world.faults[key] = Fault(error_rate=float(body.get("error_rate", 0)),
                                       latency_ms=body.get("latency_ms"),
                                       crashloop=bool(body.get("crashloop", False)))
        return Response(200, {"faults": [list(k) for k in self.world.faults]})

    def clear_faults(self, req: Request) -> Response:
        self.world.faults.clear()
        return Response(200, {"faults": []})

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
        """AKS rolls a new patch of a revision out: ``{"version": "1.25.7"}``; pods created
        from now on get that istio-proxy (restarted workloads pick it up)."""
        entry = self.world.catalog.get(req.params["rev"])
        version = str((req.json() or {}).get("version", ""))
        if entry is None or not re.match(r"^1\.\d+\.\d+", version):
            return Response(400, {"error": "unknown revision or version not 1.NN.P"})
        entry["version"] = version
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
            w.relabels.clear()
            w.restarts.clear()
            w.arm_faults.clear()
            seed(w, self.extra_namespaces)
            for name, token in tokens.items():
                if name in w.clusters:
                    w.clusters[name].token = token
        return Response(200, {"ok": True})
