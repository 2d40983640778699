"""The Kubernetes API emulator: one per cluster, under ``/clusters/<name>`` on one HTTPS port.

It serves what the API server serves, as the Kubernetes API reference describes it
(https://kubernetes.io/docs/reference/using-api/api-concepts/), for every resource the
cluster has (:mod:`sandbox.kinds`: the built-in ones and those of its CRDs):

- ``/version``, ``/healthz``/``/livez``/``/readyz``, and discovery: ``/api``, ``/api/v1``,
  ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>`` (legacy documents; kubectl and
  client-go fall back to them from aggregated discovery);
- ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` otherwise:
  list (one namespace or all, ``labelSelector``, ``fieldSelector``), get, create (POST),
  update (PUT), patch (JSON patch, merge patch, strategic merge patch; not server-side
  apply), delete and deletecollection, the ``status``, ``scale`` and pod ``log``
  subresources;
- watch (``?watch=true``): newline-delimited ``{"type", "object"}`` events after
  ``resourceVersion`` (none or 0: the current objects first, as ADDED); ``410 Gone`` for a
  version older than the events kept; ``sendInitialEvents=true`` (watch-list) ends the
  initial events with a BOOKMARK annotated ``k8s.io/initial-events-end``;
- ``meta.k8s.io/v1`` Tables when the ``Accept`` header asks for them (``kubectl get``,
  ``get -w``; :mod:`sandbox.tables`).

Errors are ``Status`` objects as the API server sends them. Requests need the cluster's
bearer token (the kubeconfig of ``listClusterUserCredential``). The official ``kubernetes``
Python client and kubectl work against it unchanged.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.http import Request, Response, Router, write_chunk
from sandbox.kinds import ApiResource
from sandbox.tables import table, wants_table
from sandbox.world import ApiError, Cluster, World, merge_patch, storage_key

PREFIX = r"/clusters/(?P<cluster>[a-z0-9][a-z0-9_-]*)"

#: the fields each kind may be selected on (``fieldSelector``), besides metadata.name and
#: metadata.namespace (API reference, "Field Selectors")
FIELDS = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
            "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion",
              "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
              "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "ReplicaSet": ("status.replicas",),
    "Job": ("status.successful",),
}


#: how long a paginated list can be continued consistently: the API server's etcd keeps
#: the history of the last 5 minutes (kube-apiserver ``--etcd-compaction-interval``,
#: default 5m); a continue token of a compacted revision answers 410 Expired
COMPACTION_S = 300.0
#: paginated lists the emulator can continue at once (an older one expires early, as if
#: compacted: a client must handle 410 whenever it comes)
SNAPSHOTS = 64
#: the API server's message for a continue token of a compacted revision
#: (k8s.io/apiserver ``storage/etcd3/store.go``, ``inconsistentContinue``)
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You "
    "can start a new list without the continue parameter, or use the continue token in "
    "this response to retrieve the remainder of the results. Continuing with the provided "
    "token results in an inconsistent list - objects that were created, modified, or "
    "deleted between the time the first chunk was returned and now may show up in the "
    "list.")


class ContinueExpired(ApiError):
    """410 Expired for a continue token, with a token that goes on inconsistently."""

    def __init__(self, code: int, reason: str, message: str, continue_token: str) -> None:
        super().__init__(code, reason, message)
        self.continue_token = continue_token


@dataclass
class _Snapshot:
    """A paginated list as it was at its first page: keys below the list's prefix (in
    order) and the objects then."""

    at: float  # time.time() of the first page
    keys: list[str]
    objects: list[dict[str, Any]]


def encode_continue(rv: int, start: str) -> str:
    """A continue token as the API server makes it (k8s.io/apiserver ``storage/continue.go``
    ``EncodeContinue``): unpadded base64url of ``{"v": "meta.k8s.io/v1", "rv": <the list's
    resourceVersion, -1 to continue at the latest>, "start": <the key to go on from, below
    the list's prefix: the last key read + NUL>}``."""
    doc = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start},
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, start key) of a continue token; ApiError 400 as the API server
    answers a token it cannot read (``DecodeContinue``: "continue key is not valid")."""
    def bad(why: str) -> ApiError:
        return ApiError(400, "BadRequest", f"invalid continue token: continue key is not "
                        f"valid: {why}")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise bad(str(exc)) from None
    if not isinstance(doc, dict) or doc.get("v") != "meta.k8s.io/v1":
        version = doc.get("v") if isinstance(doc, dict) else None
        raise bad(f"server does not recognize this encoded version {version!r}")
    rv, start = doc.get("rv"), doc.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0 or rv < -1:
        raise bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise bad("encoded start key empty")
    if start.startswith("/") or any(p in (".", "..") for p in start.split("/")):
        raise bad("path cannot contain '.' or '..'")
    return rv, start


def _limit(text: str | None) -> int | None:
    """A list's ``limit``: None (all) when absent or not positive; 400 when not a number."""
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "BadRequest", f"limit: Invalid value: \"{text}\": must be an "
                       "integer") from None
    return value if value > 0 else None


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


def parse_fields(kind: str, text: str) -> list[tuple[str, bool, str]]:
    """Field selector → [(field, equal, value)]; ApiError 400 for an unsupported field."""
    out = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([\w.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid selector: '{text}'; can't understand "
                           f"'{part}'")
        field = m.group(1)
        if field not in ("metadata.name", "metadata.namespace") + FIELDS.get(kind, ()):
            raise ApiError(400, "BadRequest", f'field label not supported: {field}')
        out.append((field, m.group(2) != "!=", m.group(3)))
    return out


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if path == "source" and isinstance(cur, dict):
        cur = cur.get("component")
    if path == "status.successful":
        cur = (obj.get("status") or {}).get("succeeded")
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def fields_match(obj: dict[str, Any], fields: list[tuple[str, bool, str]]) -> bool:
    return all((field_value(obj, f) == v) == eq for f, eq, v in fields)


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add / replace / remove / test, enough for labels and annotations."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if op["op"] == "replace":
                    parent[int(last)] = op["value"]
                else:
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                if op["op"] == "replace" and last not in parent:
                    raise KeyError(op["path"])
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        elif op["op"] == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
    return doc


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch (``k8s.io/apimachinery/pkg/util/strategicpatch``) reduced to
    what the patch directives and merge keys of pod templates need: maps merge, ``null``
    deletes, lists of objects that all have a ``name`` merge by name (containers, env,
    ports, volumes), ``$patch: delete``/``replace`` and ``$setElementOrder``/``$retainKeys``
    directives are honoured or dropped."""
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch") or \
                k.startswith("$deleteFromPrimitiveList/"):
            continue
        if v is None:
            target.pop(k, None)
        elif isinstance(v, list) and isinstance(target.get(k), list) and v and all(
                isinstance(i, dict) and "name" in i for i in v) and all(
                isinstance(i, dict) and "name" in i for i in target[k]):
            merged = [copy.deepcopy(i) for i in target[k]]
            for item in v:
                idx = next((n for n, i in enumerate(merged) if i["name"] == item["name"]), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        merged.pop(idx)
                elif idx is None:
                    merged.append({a: b for a, b in item.items() if a != "$patch"})
                else:
                    merged[idx] = strategic_merge(merged[idx], item)
            target[k] = merged
        else:
            target[k] = strategic_merge(target.get(k), v)
    return target


class KubeEmulator:
    """``audience_of(token)``: the audience of a valid Entra token, for clusters with
    AKS-managed Entra ID, which take a token for the AKS Entra server application, and the
    local account's static token only while local accounts are enabled (AKS docs
    "AKS-managed Microsoft Entra integration", "Manage local accounts")."""

    def __init__(self, world: World, audience_of: Callable[[str | None], str | None]
                 | None = None, entra_server_id: str = ""):
        self.world = world
        self.audience_of = audience_of or (lambda token: None)
        self.entra_server_id = entra_server_id
        #: staged faults, each for the next matching request (``/_sandbox/kube-faults``)
        self.faults: list[dict[str, Any]] = []
        self.faults_lock = threading.Lock()
        #: (cluster, kind key, namespace or None, resourceVersion) → a paginated list's
        #: snapshot, oldest first (guarded by the world's lock)
        self.snapshots: OrderedDict[tuple[str, str, str | None, int], _Snapshot] = \
            OrderedDict()

    def _fault(self, req: Request, path: str) -> Response | None:
        """The next staged fault for this request, as the API server would answer it:

        - ``{"status": 429, "retry_after": 1}``: API Priority and Fairness rejecting the
          request ("Too many requests, please try again later.", reason TooManyRequests,
          ``Retry-After`` header; Kubernetes doc "API Priority and Fairness");
        - ``{"status": 500|503|504}``: an InternalError / ServiceUnavailable / Timeout
          ``Status``;
        - ``{"status": 409}``: a Conflict on a write ("the object has been modified");
        - ``{"hang_s": 40}``: an API server that accepts the request and answers nothing
          for that long (then the request's own answer).

        Optional ``"method"`` and ``"path"`` (a regular expression searched in the path)
        choose which requests a fault takes; ``"cluster"`` one cluster."""
        with self.faults_lock:
            for i, f in enumerate(self.faults):
                if f.get("cluster") not in (None, req.params["cluster"]):
                    continue
                if f.get("method") not in (None, req.method):
                    continue
                if f.get("path") and not re.search(str(f["path"]), path):
                    continue
                fault = self.faults.pop(i)
                break
            else:
                return None
        if fault.get("hang_s"):
            time.sleep(float(fault["hang_s"]))
            return None
        code = int(fault.get("status", 500))
        if code == 429:
            resp = status(429, "TooManyRequests", "Too many requests, please try again later.",
                          retryAfterSeconds=int(fault.get("retry_after", 1)))
            resp.headers["Retry-After"] = str(int(fault.get("retry_after", 1)))
            return resp
        if code == 409:
            return status(409, "Conflict", "Operation cannot be fulfilled: the object has been "
                          "modified; please apply your changes to the latest version and try "
                          "again")
        reason = {503: "ServiceUnavailable", 504: "Timeout"}.get(code, "InternalError")
        return status(code, reason, "an error on the server (\"\") has prevented the request "
                      "from succeeding")

    def router(self) -> Router:
        r = Router()
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            r.add(method, PREFIX + r"(?P<path>/.*)?", self.dispatch)
        return r

    # ---------------------------------------------------------------- helpers

    def _auth(self, req: Request) -> Response | None:
        c = self.world.clusters.get(req.params["cluster"])
        if c is None:
            return status(404, "NotFound", f"no cluster {req.params['cluster']}")
        props = c.arm["properties"]
        if (props.get("aadProfile") or {}).get("managed"):
            if self.audience_of(req.bearer) in (self.entra_server_id,
                                                f"api://{self.entra_server_id}"):
                return None
            if req.bearer == c.token and not props.get("disableLocalAccounts"):
                return None
            return status(401, "Unauthorized", "Unauthorized")
        if req.bearer != c.token:
            return status(401, "Unauthorized", "Unauthorized")
        return None

    def dispatch(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        c = self.world.clusters[req.params["cluster"]]
        path = (req.params.get("path") or "/").rstrip("/") or "/"
        if self.faults:
            faulted = self._fault(req, path)
            if faulted is not None:
                return faulted
        try:
            return self._route(req, c, path)
        except ContinueExpired as exc:
            resp = status(exc.code, exc.reason, exc.message)
            resp.body["metadata"]["continue"] = exc.continue_token
            return resp
        except ApiError as exc:
            return status(exc.code, exc.reason, exc.message, **exc.details)

    def _route(self, req: Request, c: Cluster, path: str) -> Response:
        if path == "/version" and req.method == "GET":
            major, minor = c.kubernetes_version.split(".")[:2]
            return Response(200, {"major": major, "minor": minor,
                                  "gitVersion": f"v{c.kubernetes_version}",
                                  "gitCommit": "0000000000000000000000000000000000000000",
                                  "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                                  "goVersion": "go1.24.4", "compiler": "gc",
                                  "platform": "linux/amd64"})
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, "ok", content_type="text/plain; charset=utf-8")
        parts = path.strip("/").split("/")
        if req.method == "GET":
            if parts == ["api"]:
                host = req.headers.get("Host", "127.0.0.1")
                return Response(200, c.registry.api_versions(host))
            if parts == ["apis"]:
                return Response(200, c.registry.api_group_list())
            if parts == ["api", "v1"]:
                return Response(200, c.registry.resource_list("", "v1"))
            if len(parts) == 2 and parts[0] == "apis":
                if parts[1] not in c.registry.groups():
                    raise ApiError(404, "NotFound", "the server could not find the requested "
                                   "resource")
                return Response(200, c.registry.api_group(parts[1]))
            if len(parts) == 3 and parts[0] == "apis":
                doc = c.registry.resource_list(parts[1], parts[2])
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested "
                                   "resource")
                return Response(200, doc)
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) > 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (
                group == "" and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        r = c.registry.by_plural(group, version, rest[0])
        if r is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not r.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in r.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if req.method == "GET":
                return self.list_or_watch(req, c, r, version, ns)
            if req.method == "POST":
                return self.create(req, c, r, ns)
            if req.method == "DELETE":
                return self.delete_collection(req, c, r, ns)
            raise ApiError(405, "MethodNotAllowed", f"{req.method} is not allowed on "
                           f"{r.plural}")
        if r.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = ns or ""
        if req.method == "GET":
            return self.get(req, c, r, version, ns, name, sub)
        if req.method == "PATCH":
            return self.patch(req, c, r, version, ns, name, sub)
        if req.method == "PUT":
            return self.update(req, c, r, version, ns, name, sub)
        if req.method == "DELETE" and sub is None:
            return self.delete(req, c, r, ns, name)
        raise ApiError(405, "MethodNotAllowed", f"{req.method} is not allowed here")

    @staticmethod
    def _as(obj: dict[str, Any], r: ApiResource, version: str) -> dict[str, Any]:
        """The object served at ``version`` (the sandbox converts nothing but the
        ``apiVersion`` of a resource served in several versions)."""
        api_version = f"{r.group}/{version}" if r.group else version
        if obj.get("apiVersion") == api_version:
            return obj
        return {**obj, "apiVersion": api_version}

    def _not_found(self, r: ApiResource, name: str) -> ApiError:
        group = f".{r.group}" if r.group else ""
        return ApiError(404, "NotFound", f'{r.plural}{group} "{name}" not found', name=name,
                        group=r.group, kind=r.plural)

    # ---------------------------------------------------------------- reads

    def list_or_watch(self, req: Request, c: Cluster, r: ApiResource, version: str,
                      ns: str | None) -> Response:
        """A list (or a watch, ``?watch=true``) of one kind, in one namespace or all.

        It visits only the objects of that kind (in that namespace), through the cluster's
        index (:class:`sandbox.world.KeyIndex`), as the API server reads one etcd range,
        and answers them in its order (``<namespace>/<name>``). ``limit`` and ``continue``
        page through a consistent snapshot as the API server does (API concepts,
        "Retrieving large results sets in chunks"): at most ``limit`` items, then
        ``metadata.continue`` (and ``remainingItemCount`` when there is no selector) while
        more objects are stored after the last one read, even when none of them match; a
        continuation serves the list as it was at the first page's ``resourceVersion``, or
        ``410 Expired`` (with an inconsistent continue token) once that is older than
        :data:`COMPACTION_S` or than the :data:`SNAPSHOTS` latest paginated lists."""
        selector = parse_selector(req.query.get("labelSelector", ""))
        fields = parse_fields(r.kind, req.query.get("fieldSelector", ""))
        if req.query.get("watch") in ("true", "1"):
            return self._watch(req, c, r, version, ns, selector, fields)
        limit = _limit(req.query.get("limit"))
        token = req.query.get("continue") or ""
        if token and req.query.get("resourceVersion") not in (None, "", "0"):
            raise ApiError(400, "BadRequest", "specifying resource version is not allowed "
                           "when using continue")
        with self.world.lock:
            self.world.reconcile()
            rv = c.events[-1][0] if c.events else 1
            start = ""
            snapshot: _Snapshot | None = None
            if token:
                token_rv, start = decode_continue(token)
                if token_rv >= 0:
                    snapshot = self._snapshot_at(c, r, ns, token_rv, start)
                    rv = token_rv
            if snapshot is not None:
                i = bisect.bisect_left(snapshot.keys, start) if start else 0
                stored = list(zip(snapshot.keys[i:], snapshot.objects[i:], strict=True))
            else:
                index = c.index.get(r.key)
                keys = index.keys(ns, start) if index is not None else []
                stored = [(self._relative(k, ns), c.objects[k]) for k in keys]
            items: list[dict[str, Any]] = []
            read = 0
            for _, o in stored:
                if limit is not None and len(items) == limit:
                    break
                read += 1
                if matches(o["metadata"].get("labels") or {}, selector) \
                        and fields_match(o, fields):
                    items.append(self._as(o, r, version))
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if read < len(stored):
                meta["continue"] = encode_continue(rv, stored[read - 1][0] + "\x00")
                if not selector and not fields:
                    meta["remainingItemCount"] = len(stored) - read
                if snapshot is None:
                    self._keep_snapshot(c, r, ns, rv, stored)
            if wants_table(req.headers.get("Accept", "")):
                doc = table(r, items, str(rv), req.query.get("includeObject", "Metadata"))
                doc["metadata"] = meta
                body = json.dumps(doc)
            else:
                body = json.dumps({"kind": f"{r.kind}List",
                                   "apiVersion": f"{r.group}/{version}" if r.group else version,
                                   "metadata": meta, "items": items})
        return Response(200, body)

    @staticmethod
    def _relative(key: tuple[str, str, str], ns: str | None) -> str:
        """A key below the list's etcd prefix (the ``start`` of a continue token)."""
        return key[2] if ns is not None else storage_key(key)

    def _keep_snapshot(self, c: Cluster, r: ApiResource, ns: str | None, rv: int,
                       stored: list[tuple[str, dict[str, Any]]]) -> None:
        """Keep what a paginated list's next pages read: the objects stored at ``rv`` from
        this page on (stored objects are replaced, never changed in place, so references
        keep that state)."""
        now = time.time()
        for k in [k for k, s in self.snapshots.items() if now - s.at > COMPACTION_S]:
            del self.snapshots[k]
        self.snapshots[(c.name, r.key, ns, rv)] = _Snapshot(
            now, [k for k, _ in stored], [o for _, o in stored])
        while len(self.snapshots) > SNAPSHOTS:
            self.snapshots.popitem(last=False)

    def _snapshot_at(self, c: Cluster, r: ApiResource, ns: str | None, rv: int,
                     start: str) -> _Snapshot:
        """The snapshot a continue token reads, or ApiError 410 Expired with a token that
        continues from ``start`` at the current state (k8s.io/apiserver storage/etcd3
        ``handleCompactedErrorForPaging``)."""
        snap = self.snapshots.get((c.name, r.key, ns, rv))
        if snap is None or time.time() - snap.at > COMPACTION_S or not snap.keys or \
                start < snap.keys[0]:
            raise ContinueExpired(410, "Expired", INCONSISTENT_CONTINUE,
                           continue_token=encode_continue(-1, start))
        return snap

    def _watch(self, req: Request, c: Cluster, r: ApiResource, version: str, ns: str | None,
               selector: list[tuple[str, str, set[str]]],
               fields: list[tuple[str, bool, str]]) -> Response:
        as_table = wants_table(req.headers.get("Accept", ""))
        include = req.query.get("includeObject", "Metadata")
        rv_text = req.query.get("resourceVersion") or ""
        initial = req.query.get("sendInitialEvents") == "true" or rv_text in ("", "0")
        deadline = time.time() + float(req.query.get("timeoutSeconds") or 1800)

        def wanted(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            return (ns is None or meta.get("namespace", "") == ns) and matches(
                meta.get("labels") or {}, selector) and fields_match(obj, fields)

        def encode(typ: str, obj: dict[str, Any]) -> bytes:
            obj = self._as(obj, r, version)
            if as_table and typ != "BOOKMARK":
                obj = table(r, [obj], obj["metadata"].get("resourceVersion", ""), include)
            return json.dumps({"type": typ, "object": obj}).encode() + b"\n"

        with self.world.lock:
            self.world.reconcile()
            first: list[bytes] = []
            oldest = c.events[0][0] if c.events else 0
            last = c.events[-1][0] if c.events else 0
            if initial:
                index = c.index.get(r.key)
                first = [encode("ADDED", c.objects[k]) for k in
                         (index.keys(ns) if index is not None else []) if wanted(c.objects[k])]
                if req.query.get("sendInitialEvents") == "true":
                    first.append(encode("BOOKMARK", {
                        "kind": r.kind, "apiVersion": r.api_version,
                        "metadata": {"resourceVersion": str(last), "annotations": {
                            "k8s.io/initial-events-end": "true"}}}))
            else:
                last = int(rv_text) if rv_text.isdigit() else 0
                if last < oldest - 1:
                    gone = {"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": f"too old resource version: {last} ({oldest - 1})"}}
                    first = [json.dumps(gone).encode() + b"\n"]
                    deadline = 0.0

        def stream(handler: Any) -> None:
            since = last
            try:
                for chunk in first:
                    write_chunk(handler, chunk)
                while time.time() < deadline:
                    with self.world.lock:
                        self.world.reconcile()
                        out = []
                        start = bisect.bisect_right(c.events, since, key=lambda e: e[0])
                        for rv, typ, obj, key in c.events[start:]:
                            since = rv
                            if key[0] == r.key and wanted(obj):
                                out.append(encode(typ, obj))
                    for chunk in out:
                        write_chunk(handler, chunk)
                    time.sleep(0.1)
                write_chunk(handler, b"")
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass
        return Response(200, stream=stream)

    def get(self, req: Request, c: Cluster, r: ApiResource, version: str, ns: str, name: str,
            sub: str | None) -> Response:
        obj = self.world.get(c.name, r.key, ns, name)
        if obj is None:
            raise self._not_found(r, name)
        if sub == "log":
            container = req.query.get("container") or obj["spec"]["containers"][0]["name"]
            return Response(200, f"(sandbox) {name}/{container}: started\n",
                            content_type="text/plain")
        if sub == "scale":
            return Response(200, _scale(obj))
        if wants_table(req.headers.get("Accept", "")):
            return Response(200, table(r, [self._as(obj, r, version)],
                                       obj["metadata"]["resourceVersion"],
                                       req.query.get("includeObject", "Metadata")))
        return Response(200, self._as(obj, r, version))

    # ---------------------------------------------------------------- writes

    def create(self, req: Request, c: Cluster, r: ApiResource, ns: str | None) -> Response:
        try:
            body = req.json()
        except ValueError:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown "
                           "format") from None
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request is not an object")
        body.setdefault("apiVersion", r.api_version)
        body.setdefault("kind", r.kind)
        if body["kind"] != r.kind:
            raise ApiError(400, "BadRequest", f"the kind {body['kind']} of the body is not "
                           f"{r.kind}")
        if req.query.get("dryRun"):
            return Response(201, body)
        return Response(201, self.world.create(c.name, body, ns))

    def patch(self, req: Request, c: Cluster, r: ApiResource, version: str, ns: str,
              name: str, sub: str | None) -> Response:
        ctype = req.headers.get("Content-Type", "")
        if "apply-patch" in ctype:
            raise ApiError(415, "UnsupportedMediaType", "the sandbox does not do server-side "
                           "apply; use client-side apply or a patch")
        try:
            body = req.json()
        except ValueError:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown "
                           "format") from None
        with self.world.lock:
            current = self.world.get(c.name, r.key, ns, name)
            if current is None:
                raise self._not_found(r, name)
            if sub == "scale":
                target = merge_patch(_scale(current), body)
                replicas = (target.get("spec") or {}).get("replicas")
                out = self.world.patch(c.name, r.key, ns, name, {"spec": {"replicas":
                                                                          replicas}})
                assert out is not None
                return Response(200, _scale(out))
            try:
                if "json-patch" in ctype or isinstance(body, list):
                    target = json_patch(copy.deepcopy(current), body)
                elif "strategic" in ctype:
                    target = strategic_merge(copy.deepcopy(current), body)
                else:
                    target = merge_patch(copy.deepcopy(current), body)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise ApiError(422, "Invalid", f"the patch could not be applied: {exc}") \
                    from None
            if sub != "status":
                target["status"] = current.get("status")
                if target["status"] is None:
                    target.pop("status")
            if req.query.get("dryRun"):
                return Response(200, self._as(target, r, version))
            # a patch that names a resourceVersion is a precondition (409 when stale)
            precondition = isinstance(body, dict) and isinstance(body.get("metadata"), dict) \
                and bool(body["metadata"].get("resourceVersion"))
            obj = self.world.update(c.name, r.key, ns, name, {
                **target, "metadata": {k: v for k, v in target["metadata"].items()
                                       if k != "resourceVersion" or precondition}},
                keep_status=sub != "status")
        assert obj is not None
        return Response(200, self._as(obj, r, version))

    def update(self, req: Request, c: Cluster, r: ApiResource, version: str, ns: str,
               name: str, sub: str | None) -> Response:
        try:
            body = req.json()
        except ValueError:
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown "
                           "format") from None
        if sub == "scale":
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            out = self.world.patch(c.name, r.key, ns, name, {"spec": {"replicas": replicas}})
            if out is None:
                raise self._not_found(r, name)
            return Response(200, _scale(out))
        obj = self.world.update(c.name, r.key, ns, name, body, keep_status=sub != "status")
        if obj is None:
            raise self._not_found(r, name)
        return Response(200, self._as(obj, r, version))

    def delete(self, req: Request, c: Cluster, r: ApiResource, ns: str, name: str) -> Response:
        try:
            opts = req.json() or {}
        except ValueError:
            opts = {}
        propagation = req.query.get("propagationPolicy") or opts.get("propagationPolicy") \
            or "Background"
        if req.query.get("dryRun"):
            obj = self.world.get(c.name, r.key, ns, name)
        else:
            obj = self.world.delete(c.name, r.key, ns, name, propagation)
        if obj is None:
            raise self._not_found(r, name)
        if obj["metadata"].get("deletionTimestamp"):
            return Response(200, obj)
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "details": {
                                  "name": name, "group": r.group, "kind": r.plural,
                                  "uid": obj["metadata"].get("uid")}})

    def delete_collection(self, req: Request, c: Cluster, r: ApiResource, ns: str | None
                          ) -> Response:
        selector = parse_selector(req.query.get("labelSelector", ""))
        fields = parse_fields(r.kind, req.query.get("fieldSelector", ""))
        with self.world.lock:
            index = c.index.get(r.key)
            names = [(n, nm) for (_, n, nm) in (index.keys(ns) if index is not None else [])
                     if matches(c.objects[(r.key, n, nm)]["metadata"].get("labels") or {},
                                selector) and fields_match(c.objects[(r.key, n, nm)], fields)]
            for n, nm in names:
                self.world.delete(c.name, r.key, n, nm)
        return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success"})


def _scale(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``autoscaling/v1`` Scale of a workload (its ``scale`` subresource)."""
    sel = (obj.get("spec") or {}).get("selector") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in (
                "name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in obj["metadata"]},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(
                           (sel.get("matchLabels") or {}).items()))}}


__all__ = ["KubeEmulator", "merge_patch", "parse_selector", "matches", "strategic_merge"]
