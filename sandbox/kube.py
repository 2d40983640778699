"""The Kubernetes API emulator: one per cluster, under ``/clusters/<name>`` on one port.

The official ``kubernetes`` Python client works against it unchanged: namespaces, pods,
Deployments, StatefulSets, DaemonSets and (listed only) CustomResourceDefinitions; get,
list (all namespaces or one, with label selectors), patch (merge, strategic-merge on maps,
JSON patch) and watch (``?watch=true``, newline-delimited ``{"type", "object"}`` events
after ``resourceVersion``). Errors are ``Status`` objects as the API server sends them.
Workload ``status`` is computed from the pods the world holds.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

from sandbox.http import Request, Response, Router, write_chunk
from sandbox.world import World, merge_patch

APPS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
CORE = {"namespaces": "Namespace", "pods": "Pod"}
EXT = {"customresourcedefinitions": "CustomResourceDefinition"}
PREFIX = r"/clusters/(?P<cluster>[a-z0-9-]+)"


def status(code: int, reason: str, message: str, **details: Any) -> Response:
    return Response(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": message, "reason": reason,
                           "details": details, "code": code})


def parse_selector(text: str) -> list[tuple[str, str, set[str]]]:
    """Label selector → [(key, op, values)] with op in = != in notin exists !exists."""
    out: list[tuple[str, str, set[str]]] = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text or ""):
        part = part.strip().strip(",").strip()
        if not part:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            out.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}))
        elif "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), "!=", {v.strip()}))
        elif "=" in part:
            k, v = part.split("==" if "==" in part else "=", 1)
            out.append((k.strip(), "=", {v.strip()}))
        elif part.startswith("!"):
            out.append((part[1:].strip(), "!exists", set()))
        else:
            out.append((part, "exists", set()))
    return out


def matches(labels: dict[str, str], selector: list[tuple[str, str, set[str]]]) -> bool:
    for key, op, values in selector:
        has, val = key in labels, labels.get(key)
        if (op in ("=", "in") and (not has or val not in values)) or \
                (op in ("!=", "notin") and has and val in values) or \
                (op == "exists" and not has) or (op == "!exists" and has):
            return False
    return True


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add / replace / remove, enough for labels and annotations."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
    return doc


class KubeEmulator:
    def __init__(self, world: World):
        self.world = world

    def router(self) -> Router:
        r = Router()
        r.add("GET", PREFIX + "/version", self.version)
        r.add("GET", PREFIX + "/api/v1/(?P<res>namespaces|pods)", self.list_objects)
        r.add("GET", PREFIX + "/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>pods)", self.list_objects)
        r.add("GET", PREFIX + "/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>pods)/(?P<name>[^/]+)",
              self.get)
        r.add("GET", PREFIX + "/api/v1/(?P<res>namespaces)/(?P<name>[^/]+)", self.get)
        r.add("PATCH", PREFIX + "/api/v1/(?P<res>namespaces)/(?P<name>[^/]+)", self.patch)
        r.add("GET", PREFIX + "/apis/apiextensions.k8s.io/v1/(?P<res>customresourcedefinitions)",
              self.list_objects)
        apps = "(?P<res>deployments|statefulsets|daemonsets)"
        r.add("GET", PREFIX + "/apis/apps/v1/" + apps, self.list_objects)
        r.add("GET", PREFIX + "/apis/apps/v1/namespaces/(?P<ns>[^/]+)/" + apps, self.list_objects)
        r.add("GET", PREFIX + "/apis/apps/v1/namespaces/(?P<ns>[^/]+)/" + apps
              + "/(?P<name>[^/]+)", self.get)
        r.add("PATCH", PREFIX + "/apis/apps/v1/namespaces/(?P<ns>[^/]+)/" + apps
              + "/(?P<name>[^/]+)", self.patch)
        return r

    # ---------------------------------------------------------------- helpers

    def _auth(self, req: Request) -> Response | None:
        c = self.world.clusters.get(req.params["cluster"])
        if c is None:
            return status(404, "NotFound", f"no cluster {req.params['cluster']}")
        if req.bearer != c.token:
            return status(401, "Unauthorized", "Unauthorized")
        return None

    def _render(self, cluster: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as the API server shows it: workloads get their computed status.

        Shallow: callers serialise it while holding the world's lock, so no deep copy.
        """
        if obj["kind"] in APPS.values():
            return {**obj, "status": self.world.workload_status(self.world.clusters[cluster],
                                                                obj)}
        return obj

    @staticmethod
    def _kind(res: str) -> str:
        return APPS.get(res) or EXT.get(res) or CORE[res]

    # ---------------------------------------------------------------- routes

    def version(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        k8s = self.world.clusters[req.params["cluster"]].kubernetes_version
        major, minor = k8s.split(".")[:2]
        return Response(200, {"major": major, "minor": minor, "gitVersion": f"v{k8s}",
                              "platform": "linux/amd64"})

    def list_objects(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        cluster, res, ns = req.params["cluster"], req.params["res"], req.params.get("ns")
        kind = self._kind(res)
        selector = parse_selector(req.query.get("labelSelector", ""))
        if req.query.get("watch") in ("true", "1"):
            return self._watch(req, cluster, kind, ns, selector)
        api = ("apps/v1" if kind in APPS.values() else
               "apiextensions.k8s.io/v1" if kind in EXT.values() else "v1")
        with self.world.lock:
            self.world.reconcile()
            c = self.world.clusters[cluster]
            items = [self._render(cluster, o) for (k, n, _), o in sorted(c.objects.items())
                     if k == kind and (ns is None or n == ns)
                     and matches(o["metadata"].get("labels") or {}, selector)]
            rv = str(c.events[-1][0] if c.events else 1)
            body = json.dumps({"kind": f"{kind}List", "apiVersion": api,
                               "metadata": {"resourceVersion": rv}, "items": items})
        return Response(200, body)

    def _watch(self, req: Request, cluster: str, kind: str, ns: str | None,
               selector: list[tuple[str, str, set[str]]]) -> Response:
        since = int(req.query.get("resourceVersion") or 0)
        deadline = time.time() + float(req.query.get("timeoutSeconds") or 30)

        def stream(handler: Any) -> None:
            last = since
            try:
                while time.time() < deadline:
                    with self.world.lock:
                        self.world.reconcile()
                        events = [e for e in self.world.clusters[cluster].events if e[0] > last]
                        out = []
                        for rv, typ, obj in events:
                            last = rv
                            if obj["kind"] != kind or (ns and obj["metadata"].get("namespace")
                                                       != ns):
                                continue
                            if not matches(obj["metadata"].get("labels") or {}, selector):
                                continue
                            out.append({"type": typ, "object": self._render(cluster, obj)})
                    for ev in out:
                        write_chunk(handler, json.dumps(ev).encode() + b"\n")
                    time.sleep(0.1)
                write_chunk(handler, b"")
            except (BrokenPipeError, ConnectionResetError):
                pass
        return Response(200, stream=stream)

    def _target(self, req: Request) -> tuple[str, str, str, str, str]:
        """(cluster, resource, kind, namespace, name) of a request for one object."""
        res = req.params["res"]
        return (req.params["cluster"], res, self._kind(res), req.params.get("ns", ""),
                req.params["name"])

    def get(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        cluster, res, kind, ns, name = self._target(req)
        obj = self.world.get(cluster, kind, ns, name)
        if obj is None:
            return status(404, "NotFound", f'{res} "{name}" not found', name=name, kind=res)
        return Response(200, self._render(cluster, obj))

    def patch(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        cluster, res, kind, ns, name = self._target(req)
        try:
            body = req.json()
        except ValueError:
            return status(400, "BadRequest", "the body of the request was in an unknown format")
        ctype = req.headers.get("Content-Type", "")
        with self.world.lock:
            current = self.world.get(cluster, kind, ns, name)
            if current is None:
                return status(404, "NotFound", f'{res} "{name}" not found', name=name, kind=res)
            if "json-patch" in ctype or isinstance(body, list):
                try:
                    target = json_patch(copy.deepcopy(current), body)
                except (KeyError, IndexError, ValueError) as exc:
                    return status(422, "Invalid", f"invalid JSON patch: {exc}")
                patch = _diff_as_merge_patch(current, target)
            else:
                patch = body
            obj = self.world.patch(cluster, kind, ns, name, patch)
        assert obj is not None
        return Response(200, self._render(cluster, obj))


def _diff_as_merge_patch(before: Any, after: Any) -> Any:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    patch: dict[str, Any] = {}
    for k in before.keys() - after.keys():
        patch[k] = None
    for k, v in after.items():
        if k not in before:
            patch[k] = v
        elif before[k] != v:
            patch[k] = _diff_as_merge_patch(before[k], v)
    return patch


__all__ = ["KubeEmulator", "merge_patch", "parse_selector", "matches"]
