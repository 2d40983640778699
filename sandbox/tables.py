"""Server-side printing: ``meta.k8s.io/v1`` Tables, as ``kubectl get`` asks for them.

``kubectl get`` sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, …`` and prints
the rows the server computed (kubectl ``get.go``, ``transformRequests``); the columns and
cells here follow the API server's printers (``pkg/printers/internalversion/printers.go``:
``printPod``, ``printDeployment``, …) and ``duration.HumanDuration`` for ages. Each row
carries the object as ``PartialObjectMetadata``, or whole with ``includeObject=Object``
(kubectl asks for it to sort). Kinds without a printer get ``Name`` and ``Age``; custom
resources their CRD's ``additionalPrinterColumns``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from sandbox.kinds import ApiResource

Column = tuple[str, str, int]  # name, type, priority (1: -o wide only)
Row = list[Any]


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = hours // 24 % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    import calendar
    return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))


def age(obj: dict[str, Any]) -> str:
    t = _ts(obj.get("metadata", {}).get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration(time.time() - t)


def _since(text: str | None) -> str:
    t = _ts(text)
    return "<none>" if t is None else human_duration(time.time() - t)


def _containers(obj: dict[str, Any]) -> tuple[str, str]:
    spec = (obj.get("spec") or {})
    if "jobTemplate" in spec:
        spec = (spec["jobTemplate"].get("spec") or {})
    ctrs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in ctrs), ",".join(c.get("image", "") for c in ctrs)


def _selector(obj: dict[str, Any]) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    parts = [f"{k}={v}" for k, v in sorted(labels.items()) if isinstance(v, str)]
    for e in sel.get("matchExpressions") or [] if isinstance(sel, dict) else []:
        parts.append(f"{e.get('key')} {e.get('operator', '').lower()} "
                     f"({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def pod_status(pod: dict[str, Any]) -> tuple[str, str, str]:
    """(READY, STATUS, RESTARTS) of ``printPod``."""
    st = pod.get("status") or {}
    spec = pod.get("spec") or {}
    reason = st.get("reason") or st.get("phase") or "Unknown"
    restarts = 0
    sidecars = {c["name"] for c in spec.get("initContainers") or []
                if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = 0
    initializing = False
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        state = cs.get("state") or {}
        if cs["name"] in sidecars:
            if cs.get("ready"):
                ready += 1
            if cs.get("started"):
                continue
        term = state.get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term:
            reason = f"Init:{term.get('reason') or 'Signal:' + str(term.get('signal'))}"
        elif state.get("waiting", {}).get("reason") not in (None, "", "PodInitializing"):
            reason = f"Init:{state['waiting']['reason']}"
        else:
            n = len(spec.get("initContainers") or [])
            reason = f"Init:{i}/{n}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated", {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                reason = f"ExitCode:{state['terminated'].get('exitCode')}"
            elif "running" in state and cs.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in st.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return f"{ready}/{total}", reason, str(restarts)


def _ports(svc: dict[str, Any]) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _external_ip(svc: dict[str, Any]) -> str:
    spec = svc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    ips = list(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips += [i.get("ip") or i.get("hostname") for i in ingress]
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ips) if ips else "<none>"


def _job_status(job: dict[str, Any]) -> str:
    conds = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []
             if c.get("status") == "True"}
    for kind, label in (("Complete", "Complete"), ("Failed", "Failed"),
                        ("FailureTarget", "FailureTarget"), ("Suspended", "Suspended"),
                        ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if kind in conds:
            return label
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return "Running"


def _job_duration(job: dict[str, Any]) -> str:
    st = job.get("status") or {}
    start = _ts(st.get("startTime"))
    if start is None:
        return ""
    end = _ts(st.get("completionTime")) or time.time()
    return human_duration(end - start)


def _data_count(obj: dict[str, Any]) -> str:
    return str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {}))


Printer = tuple[list[Column], Callable[[dict[str, Any]], Row]]


def _rs_like(o: dict[str, Any]) -> Row:
    st = o.get("status") or {}
    c, i = _containers(o)
    return [o["metadata"]["name"], (o.get("spec") or {}).get("replicas", 1),
            st.get("replicas", 0), st.get("readyReplicas", 0), age(o), c, i, _selector(o)]


PRINTERS: dict[str, Printer] = {
    "Pod": ([("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
             ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1),
             ("Node", "string", 1), ("Nominated Node", "string", 1),
             ("Readiness Gates", "string", 1)],
            lambda o: [o["metadata"]["name"], *pod_status(o), age(o),
                       (o.get("status") or {}).get("podIP") or "<none>",
                       (o.get("spec") or {}).get("nodeName") or "<none>", "<none>", "<none>"]),
    "Namespace": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
                  lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                             age(o)]),
    "Node": ([("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0),
              ("Age", "string", 0), ("Version", "string", 0)],
             lambda o: [o["metadata"]["name"], "Ready", "<none>", age(o),
                        (o.get("status") or {}).get("nodeInfo", {}).get("kubeletVersion", "")]),
    "Deployment": ([("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                    ("Available", "integer", 0), ("Age", "string", 0),
                    ("Containers", "string", 1), ("Images", "string", 1),
                    ("Selector", "string", 1)],
                   lambda o: [o["metadata"]["name"],
                              f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                              f"{(o.get('spec') or {}).get('replicas', 1)}",
                              (o.get("status") or {}).get("updatedReplicas", 0),
                              (o.get("status") or {}).get("availableReplicas", 0), age(o),
                              *_containers(o), _selector(o)]),
    "ReplicaSet": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                    ("Ready", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                    ("Images", "string", 1), ("Selector", "string", 1)], _rs_like),
    "StatefulSet": ([("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0),
                     ("Containers", "string", 1), ("Images", "string", 1)],
                    lambda o: [o["metadata"]["name"],
                               f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                               f"{(o.get('spec') or {}).get('replicas', 1)}", age(o),
                               *_containers(o)]),
    "DaemonSet": ([("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
                   ("Ready", "integer", 0), ("Up-to-date", "integer", 0),
                   ("Available", "integer", 0), ("Node Selector", "string", 0),
                   ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1),
                   ("Selector", "string", 1)],
                  lambda o: [o["metadata"]["name"],
                             *[(o.get("status") or {}).get(k, 0) for k in (
                                 "desiredNumberScheduled", "currentNumberScheduled",
                                 "numberReady", "updatedNumberScheduled", "numberAvailable")],
                             ",".join(f"{k}={v}" for k, v in sorted((
                                 ((o.get("spec") or {}).get("template") or {}).get("spec")
                                 or {}).get("nodeSelector", {}).items())) or "<none>",
                             age(o), *_containers(o), _selector(o)]),
    "Job": ([("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0),
             ("Duration", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
             ("Images", "string", 1), ("Selector", "string", 1)],
            lambda o: [o["metadata"]["name"], _job_status(o),
                       f"{(o.get('status') or {}).get('succeeded', 0)}/"
                       f"{(o.get('spec') or {}).get('completions', 1)}", _job_duration(o),
                       age(o), *_containers(o), _selector(o)]),
    "CronJob": ([("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0),
                 ("Suspend", "boolean", 0), ("Active", "integer", 0),
                 ("Last Schedule", "string", 0), ("Age", "string", 0),
                 ("Containers", "string", 1), ("Images", "string", 1),
                 ("Selector", "string", 1)],
                lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("schedule", ""),
                           (o.get("spec") or {}).get("timeZone") or "<none>",
                           bool((o.get("spec") or {}).get("suspend")),
                           len((o.get("status") or {}).get("active") or []),
                           _since((o.get("status") or {}).get("lastScheduleTime")), age(o),
                           *_containers(o), "<none>"]),
    "Service": ([("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                 ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                 ("Selector", "string", 1)],
                lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("type", "ClusterIP"),
                           (o.get("spec") or {}).get("clusterIP") or "<none>", _external_ip(o),
                           _ports(o), age(o),
                           ",".join(f"{k}={v}" for k, v in sorted(
                               ((o.get("spec") or {}).get("selector") or {}).items()))
                           or "<none>"]),
    "ConfigMap": ([("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                  lambda o: [o["metadata"]["name"], int(_data_count(o)), age(o)]),
    "Secret": ([("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0),
                ("Age", "string", 0)],
               lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), int(_data_count(o)),
                          age(o)]),
    "ServiceAccount": ([("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)],
                       lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o)]),
    "Event": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
               ("Object", "string", 0), ("Message", "string", 0)],
              lambda o: [_since(o.get("lastTimestamp") or o.get("eventTime")),
                         o.get("type", ""), o.get("reason", ""),
                         f"{(o.get('involvedObject') or {}).get('kind', '').lower()}/"
                         f"{(o.get('involvedObject') or {}).get('name', '')}",
                         o.get("message", "")]),
    "MutatingWebhookConfiguration": ([("Name", "string", 0), ("Webhooks", "integer", 0),
                                      ("Age", "string", 0)],
                                     lambda o: [o["metadata"]["name"],
                                                len(o.get("webhooks") or []), age(o)]),
    "ValidatingWebhookConfiguration": ([("Name", "string", 0), ("Webhooks", "integer", 0),
                                        ("Age", "string", 0)],
                                       lambda o: [o["metadata"]["name"],
                                                  len(o.get("webhooks") or []), age(o)]),
    "CustomResourceDefinition": ([("Name", "string", 0), ("Created At", "date", 0)],
                                 lambda o: [o["metadata"]["name"],
                                            o["metadata"].get("creationTimestamp", "")]),
}


def _jsonpath(obj: Any, path: str) -> Any:
    """The JSONPath of additionalPrinterColumns (``k8s.io/client-go/util/jsonpath``) as CRDs
    use it: ``.a.b``, ``[n]``, ``[*]`` and ``[?(@.key=="value")]``; several results are
    joined with commas, as the API server's CRD table convertor prints them."""
    values: list[Any] = [obj]
    for m in re.finditer(r"\.?([^.\[]+)?((?:\[[^\]]*\])*)", path.strip()):
        if not m.group(0):
            continue
        if m.group(1):
            values = [v.get(m.group(1)) for v in values if isinstance(v, dict)]
        for sub in re.findall(r"\[([^\]]*)\]", m.group(2) or ""):
            found: list[Any] = []
            flt = re.match(r"^\?\(@\.([\w.-]+)\s*==\s*[\"']([^\"']*)[\"']\)$", sub)
            for v in values:
                if not isinstance(v, list):
                    continue
                if sub == "*":
                    found += v
                elif flt:
                    found += [i for i in v if isinstance(i, dict)
                              and str(i.get(flt.group(1))) == flt.group(2)]
                elif sub.lstrip("-").isdigit() and -len(v) <= int(sub) < len(v):
                    found.append(v[int(sub)])
            values = found
    values = [v for v in values if v is not None]
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return ",".join(json.dumps(v) if isinstance(v, dict | list) else str(v) for v in values)


def printer(r: ApiResource) -> Printer:
    if r.kind in PRINTERS and r.group in ("", "apps", "batch", "apiextensions.k8s.io",
                                          "admissionregistration.k8s.io"):
        return PRINTERS[r.kind]
    if r.printer_columns:
        cols: list[Column] = [("Name", "string", 0)] + [
            (n, t, 0) for n, t, _ in r.printer_columns]
        has_age = any(n.lower() == "age" for n, _, _ in r.printer_columns)
        if not has_age:
            cols.append(("Age", "date", 0))

        def row(o: dict[str, Any]) -> Row:
            cells: Row = [o["metadata"]["name"]]
            for _, typ, path in r.printer_columns:
                v = _jsonpath(o, path)
                if isinstance(v, dict | list):  # printed as JSON, e.g. ["a.example.com"]
                    v = json.dumps(v, separators=(",", ":"))
                cells.append(human_duration(time.time() - (_ts(v) or time.time()))
                             if typ == "date" and isinstance(v, str) else v)
            if not has_age:
                cells.append(age(o))
            return cells
        return cols, row
    return ([("Name", "string", 0), ("Age", "string", 0)], lambda o: [o["metadata"]["name"],
                                                                       age(o)])


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(r: ApiResource, items: list[dict[str, Any]], resource_version: str,
          include: str = "Metadata", headers: bool = True) -> dict[str, Any]:
    cols, row = printer(r)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                           "metadata": {"resourceVersion": resource_version}, "rows": []}
    if headers:
        out["columnDefinitions"] = [
            {"name": n, "type": t, "format": "name" if n == "Name" else "",
             "description": "", "priority": p} for n, t, p in cols]
    for o in items:
        entry: dict[str, Any] = {"cells": row(o)}
        if include == "Object":
            entry["object"] = o
        elif include != "None":
            entry["object"] = partial(o)
        out["rows"].append(entry)
    return out


def wants_table(accept: str) -> bool:
    """Does an Accept header ask for a meta.k8s.io Table first?"""
    first = accept.split(",")[0].replace(" ", "")
    return "as=Table" in first and "g=meta.k8s.io" in first
