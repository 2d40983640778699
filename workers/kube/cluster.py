"""``KubernetesClusterApi``: one cluster's Kubernetes API on the official ``kubernetes`` client.

Converging writes are absolute: the namespace label ``istio.io/rev=<revision>`` (with
``istio-injection`` removed, which the add-on ignores) and the pod-template annotation
``kubectl.kubernetes.io/restartedAt=<token>``, exactly what ``kubectl label`` and
``kubectl rollout restart`` write (AKS doc ``istio-upgrade.md``). A pod's revision is its
``sidecar.istio.io/status`` revision (else its ``istio.io/rev`` label) and its patch version
the ``istio-proxy`` image tag. The client's exceptions, and only those, are translated by
:func:`workers.kube.errors.translate_kubernetes_error`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import structlog
import yaml
from azure.core.exceptions import AzureError
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.watch.watch import iter_resp_lines

from workers.kube.errors import KUBERNETES_ERRORS, translate_kubernetes_error
from workers.kube.follow import FOLLOW_MAX_WATCHES
from workflows.errors import ClusterApiError, PermanentError, TemporaryError
from workflows.ports import (
    DEFAULT_PROGRESS_DEADLINE_S,
    INJECTION_LABEL,
    REV_LABEL,
    BatchWorkload,
    GatewayApiGateway,
    Namespace,
    Pod,
    Workload,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
INJECT = "sidecar.istio.io/inject"
ISTIO_NS = "aks-istio-system"
TAG_LABEL = "istio.io/tag"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_GROUP = "gateway.networking.k8s.io"
ADDON_REVISION = re.compile(r"asm-\d+-\d+")  # the add-on's revision names; others are tags
#: the API groups a cluster's calls use. The client imports each group's module on its first
#: use (``kubernetes.client``'s lazy ``__getattr__``: ~0.6 s for these five, CoreV1Api most);
#: naming them here imports them when the worker loads its tasks, once, before Celery forks
#: its pool, instead of in every pool process on its first tick (issue 13: ~10 s of pool
#: time when 30 runs start at once)
API_GROUPS = (k8s.CoreV1Api, k8s.AppsV1Api, k8s.BatchV1Api, k8s.AdmissionregistrationV1Api,
              k8s.CustomObjectsApi)
#: (connect, read) seconds for every Kubernetes API call (the client's ``_request_timeout``);
#: a list of every pod of a large cluster must fit in the read timeout
REQUEST_TIMEOUT = (5.0, 30.0)
#: up to this many namespaces a read lists each namespace (so it costs what the wave holds,
#: not what the cluster holds), :data:`LIST_CONCURRENCY` at a time; above it, one paginated
#: list of the whole cluster (a completion reads every migrated namespace)
PER_NAMESPACE_LIMIT = 250
#: namespaced lists in flight at once: a wave of 100 namespaces is 4 lists each (three
#: workload kinds and pods), which one after the other would take a look seconds
LIST_CONCURRENCY = 8
#: items per page of a list (``limit``/``continue``): kubectl's ``--chunk-size`` default
#: (Kubernetes docs "API Concepts", "Retrieving large results sets in chunks")
LIST_PAGE = 500

_list_pool_of: tuple[int, ThreadPoolExecutor] | None = None
_list_pool_lock = threading.Lock()


def list_pool() -> ThreadPoolExecutor:
    """This process' :data:`LIST_CONCURRENCY` threads for namespaced lists, shared by every
    read (a pool made and torn down per read was 7 % of a tick at 30 concurrent runs).

    Made on first use in each process: a Celery pool process is forked from the worker and
    inherits none of its parent's threads, so a pool made before the fork would take work
    and never run it.
    """
    global _list_pool_of
    pid = os.getpid()
    with _list_pool_lock:
        if _list_pool_of is None or _list_pool_of[0] != pid:
            _list_pool_of = (pid, ThreadPoolExecutor(LIST_CONCURRENCY,
                                                     thread_name_prefix="kube-list"))
        return _list_pool_of[1]


def _not_found(exc: ClusterApiError) -> bool:
    """The API server answered 404 (translated from the client's ``ApiException``)."""
    return isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404


def _gone(exc: ClusterApiError) -> bool:
    """The API server answered 410 Gone (an expired ``continue`` token)."""
    return isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 410


#: the apps/v1 client's method suffix of each workload kind (``list_namespaced_<name>``,
#: ``patch_namespaced_<name>``)
WORKLOAD_API_NAMES = {"Deployment": "deployment", "StatefulSet": "stateful_set",
                      "DaemonSet": "daemon_set"}


class KubeObject(dict[str, Any]):
    """An object as the API server's JSON has it, read with the attribute names of the
    client's models (``p.metadata.owner_references`` is ``ownerReferences``; ``_continue``
    is ``continue``); a missing field is None, as in the models.

    Lists meshops converts at once read pages with ``_preload_content=False`` into these
    (``json.loads``): the kubernetes client's models (pydantic, since v34) cost about ten
    times the JSON parse (a V1Pod ~0.8 ms, issue 13), for fields meshops never reads.
    Every name read here is one whose JSON key is its camelCase (no ``IP`` or ``ID``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and the like: not a field
            raise AttributeError(name)
        key = _JSON_KEYS.get(name)
        if key is None:
            head, *rest = name.lstrip("_").split("_")
            key = _JSON_KEYS[name] = head + "".join(w[:1].upper() + w[1:] for w in rest)
        return self.get(key)


_JSON_KEYS: dict[str, str] = {}


def _json_page(response: Any) -> KubeObject:
    """A list page answered without the client's models (``_preload_content=False``)."""
    try:
        page = json.loads(response.data, object_hook=KubeObject)
    except ValueError as exc:  # cut short by a dropped connection, or not JSON
        raise TemporaryError(f"the API server's list answer is not JSON ({exc})") from exc
    if not isinstance(page, KubeObject):
        raise TemporaryError(f"the API server answered a list with {type(page).__name__}")
    return page


def _taken(items: list[Any], take: Callable[[Any], Any] | None) -> list[Any]:
    """``items``, each as ``take`` keeps it (None: dropped); all of them without ``take``."""
    if take is None:
        return list(items)
    return [kept for kept in map(take, items) if kept is not None]


def _items(page: Any) -> list[Any]:
    """A list's items: a typed list's ``.items``, a custom object list's ``["items"]``."""
    return list(page["items"] or []) if isinstance(page, dict) else list(page.items or [])


def _continue_token(page: Any) -> str | None:
    """The ``metadata.continue`` of a list page; None on its last page."""
    if isinstance(page, dict):
        return (page.get("metadata") or {}).get("continue") or None
    return page.metadata._continue if page.metadata else None


log = structlog.get_logger("meshops.kube")
REFRESH_BEFORE_S = 300.0  # renew an Entra token this long before it expires


def entra_server_id(data: dict[str, Any], context: str | None = None) -> str | None:
    """The Microsoft Entra server application of an AKS kubeconfig whose user is the
    kubelogin exec plugin (``--server-id <id>``, as ``listClusterUserCredential`` returns it
    for clusters with Entra ID integration, AKS doc ``kubelogin-authentication.md``)."""
    contexts = {c.get("name"): c.get("context") or {} for c in data.get("contexts") or []}
    name = context or data.get("current-context")
    user_name = (contexts.get(name) or {}).get("user")
    for user in data.get("users") or []:
        if user.get("name") != user_name:
            continue
        args = ((user.get("user") or {}).get("exec") or {}).get("args") or []
        for i, arg in enumerate(args):
            if arg == "--server-id" and i + 1 < len(args):
                return str(args[i + 1])
            if str(arg).startswith("--server-id="):
                return str(arg).split("=", 1)[1]
    return None


class EntraToken:
    """Bearer tokens for the cluster's Entra server application from an azure-identity
    credential (the one meshops uses for ARM), cached and renewed before they expire —
    what kubelogin's ``azurecli``/``msi``/``spn`` modes do, without an exec plugin."""

    def __init__(self, credential: Any, server_id: str):
        self.credential = credential
        self.scope = f"{server_id}/.default"
        self.token: str | None = None
        self.expires_on = 0.0

    def __call__(self, configuration: Any) -> None:
        """``refresh_api_key_hook`` of the kubernetes client: called before each request."""
        if self.token is None or time.time() > self.expires_on - REFRESH_BEFORE_S:
            try:
                got = self.credential.get_token(self.scope)
            except AzureError as exc:
                raise TemporaryError(f"could not get a Microsoft Entra token for "
                                     f"{self.scope}: {exc}") from exc
            self.token, self.expires_on = got.token, float(got.expires_on)
        # the client reads "BearerToken" (alias "authorization"); the kubeconfig loader may
        # have put a full "Bearer …" value under either
        configuration.api_key.pop("authorization", None)
        configuration.api_key_prefix.pop("authorization", None)
        configuration.api_key["BearerToken"] = self.token
        configuration.api_key_prefix["BearerToken"] = "Bearer"


#: a kubeconfig's inline credentials and the file keys the Kubernetes client reads instead
INLINE_CREDENTIALS = {"cluster": (("certificate-authority-data", "certificate-authority"),),
                      "user": (("client-certificate-data", "client-certificate"),
                               ("client-key-data", "client-key"))}


def credentials_in_memory(data: dict[str, Any], context: str | None = None
                          ) -> tuple[dict[str, Any], list[int]]:
    """The kubeconfig ``data`` with its context's inline credentials (the cluster's
    ``certificate-authority-data``, the user's ``client-certificate-data`` and
    ``client-key-data``: base64 PEM, kubeconfig v1) held in anonymous memory files
    (Linux ``memfd_create(2)``) and named by their ``/proc/self/fd/<n>`` paths in the
    ``certificate-authority`` / ``client-certificate`` / ``client-key`` keys, and those
    files' descriptors (the caller closes them when the client is gone). ``data`` itself is
    not changed.

    Why: the Kubernetes client writes each ``*-data`` to a file in the temporary directory
    (urllib3 and ``ssl`` load certificates and keys from paths only) and removes them at
    interpreter exit. A worker process that does not get there (killed, or a pool process
    ending with ``os._exit``) leaves them behind, the client key among them: AKS's
    kubeconfigs for local accounts carry ``client-certificate-data`` and
    ``client-key-data`` (O=system:masters). A memory file has no name on disk and ends with
    the process. Where there are none (not Linux, no ``/proc``), the kubeconfig is
    returned as it is and the client does as it always has.

    Each value the client's TLS will load is checked as it will load it (Python's ``ssl``,
    OpenSSL): the certificates as a CA file (``load_verify_locations``), and the user's
    certificate with its key as one pair (``load_cert_chain``), from the memory files.
    Where there are none, the certificates are checked from their PEM blocks, and the
    pair is not.

    Raises:
        ClusterApiError: a value that is not base64 (the client would decode what it could
            of it, dropping stray characters, into a certificate or key that fails later
            as TLS, or refuse it and write nothing to say which); base64 of something
            that is not a PEM certificate, or a key that is not the certificate's (the
            client would take them, and every request would then fail its TLS handshake
            as if the API server were unreachable). The message names the entry and the
            key, never the value, and carries no exception that holds it.
    """
    name = context or data.get("current-context")
    ctx = next((c.get("context") or {} for c in _list(data.get("contexts"))
                if isinstance(c, dict) and c.get("name") == name), {})
    ctx = ctx if isinstance(ctx, dict) else {}
    user = next((u.get("user") for u in _list(data.get("users"))
                 if isinstance(u, dict) and u.get("name") == ctx.get("user")), None)
    exec_ = user.get("exec") if isinstance(user, dict) else None
    # an exec plugin given the cluster's information reads its certificate-authority-data
    # (client.authentication.k8s.io ExecCredential spec.cluster): there it stays
    keep_cluster = isinstance(exec_, dict) and bool(exec_.get("provideClusterInfo"))
    names = {"cluster": ctx.get("cluster"), "user": ctx.get("user")}
    decoded: dict[tuple[str, str], bytes] = {}  # (kind, *-data key) → the file's bytes
    for section, kind in (("clusters", "cluster"), ("users", "user")):
        body = _body(data, section, kind, names[kind])
        if body is None:
            continue
        for data_key, _ in INLINE_CREDENTIALS[kind]:
            value = body.get(data_key)
            if not value or not isinstance(value, str):
                continue
            try:  # as the client reads it, line breaks and all
                decoded[kind, data_key] = base64.b64decode("".join(value.split()),
                                                           validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ClusterApiError(
                    f"the kubeconfig's {kind} {names[kind]!r}: {data_key} is not base64 "
                    f"({exc}); it holds a PEM file base64-encoded (kubectl config "
                    "view --raw)") from exc
    moved = {k: v for k, v in decoded.items() if not (k[0] == "cluster" and keep_cluster)}
    if moved and hasattr(os, "memfd_create"):
        fds: list[int] = []
        try:
            paths: dict[tuple[str, str], str] = {}
            for (kind, data_key), content in moved.items():
                fd = os.memfd_create(f"kubeconfig-{data_key.removesuffix('-data')}")
                fds.append(fd)
                os.write(fd, content)
                path = f"/proc/self/fd/{fd}"
                if not os.path.isfile(path):  # no /proc: the client's own files
                    raise OSError(f"{path} does not name the memory file")
                paths[kind, data_key] = path
            _check_credentials(names, decoded, paths)
            return _with_paths(data, names, paths), fds
        except OSError as exc:  # no memory files here (seccomp, no /proc, no descriptors)
            _close(fds)
            log.info("kubeconfig.memory_files_unavailable", error=str(exc)[:200])
        except BaseException:
            _close(fds)
            raise
    _check_credentials(names, decoded, {})
    return data, []


def _body(data: dict[str, Any], section: str, kind: str, name: Any) -> dict[str, Any] | None:
    """The ``kind`` mapping of the entry of ``data[section]`` named ``name``, or None."""
    if name is None:
        return None
    for entry in _list(data.get(section)):
        body = entry.get(kind) if isinstance(entry, dict) else None
        if isinstance(body, dict) and entry.get("name") == name:
            return body
    return None


def _with_paths(data: dict[str, Any], names: dict[str, Any],
                paths: dict[tuple[str, str], str]) -> dict[str, Any]:
    """``data`` with each moved ``*-data`` key of the named entries replaced by its file
    key naming the memory file (:data:`INLINE_CREDENTIALS`); ``data`` is not changed."""
    out = dict(data)
    for section, kind in (("clusters", "cluster"), ("users", "user")):
        files = {dk: fk for dk, fk in INLINE_CREDENTIALS[kind] if (kind, dk) in paths}
        if not files:
            continue
        entries = []
        for entry in _list(data.get(section)):
            body = entry.get(kind) if isinstance(entry, dict) else None
            if isinstance(body, dict) and entry.get("name") == names[kind]:
                body = {k: v for k, v in body.items() if k not in files}
                body.update({fk: paths[kind, dk] for dk, fk in files.items()})
                entry = {**entry, kind: body}
            entries.append(entry)
        out[section] = entries
    return out


#: a PEM block (RFC 7468), as OpenSSL's PEM reader finds it among other text
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s:,-]*?-----END \1-----")


def _check_credentials(names: dict[str, Any], decoded: dict[tuple[str, str], bytes],
                       paths: dict[tuple[str, str], str]) -> None:
    """``ClusterApiError`` unless the decoded credentials load as the client's TLS loads
    them (urllib3: the CA file with ``load_verify_locations``, the client's certificate
    and key with ``load_cert_chain``, both OpenSSL's PEM readers, which let text around the
    blocks be): from ``paths`` (the memory files) where they are, else the certificates
    from their PEM blocks (``cadata``) and no pair. The error names the entry and the key
    and holds no exception: an OpenSSL reason, never a value."""
    problem = None
    for kind, data_key in (("cluster", "certificate-authority-data"),
                           ("user", "client-certificate-data")):
        if (kind, data_key) not in decoded:
            continue
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if (kind, data_key) in paths:
                context.load_verify_locations(cafile=paths[kind, data_key])
            else:
                blocks = b"\n".join(m.group(0) for m in _PEM_BLOCK.finditer(
                    decoded[kind, data_key]))
                context.load_verify_locations(cadata=blocks.decode("ascii"))
        except (ssl.SSLError, ValueError) as exc:  # ValueError: no block at all
            problem = (f"the kubeconfig's {kind} {names[kind]!r}: {data_key} is base64 but "
                       f"not of a PEM certificate ({str(exc)[:160]}); it holds a PEM file "
                       "(-----BEGIN CERTIFICATE-----) base64-encoded (kubectl config view "
                       "--raw)")
        if problem is not None:
            raise ClusterApiError(problem)
    cert, key = paths.get(("user", "client-certificate-data")), \
        paths.get(("user", "client-key-data"))
    if cert is None or key is None:
        return
    try:
        # a password callback that gives none: an encrypted key fails here, as it would
        # in the client (which cannot ask for one), rather than prompting on a terminal
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key,
                                                               password=lambda: b"")
    except ssl.SSLError as exc:
        problem = (f"the kubeconfig's user {names['user']!r}: client-key-data is not the "
                   f"private key of client-certificate-data, or not a PEM private key "
                   f"({str(exc)[:160]}); both are PEM files base64-encoded, the key "
                   "unencrypted (kubectl config view --raw)")
    if problem is not None:
        raise ClusterApiError(problem)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def api_client_from_kubeconfig(kubeconfig: bytes | str, context: str | None = None,
                               credential: Any | None = None) -> k8s.ApiClient:
    """An API client for a kubeconfig (YAML); ``ClusterApiError`` if it cannot be used.

    When the kubeconfig's user is AKS's kubelogin exec plugin (a cluster with Microsoft
    Entra ID), the client instead sends a token for the plugin's ``--server-id`` from
    ``credential``, renewed before it expires; without a credential that is refused with
    what to configure.
    """
    try:
        data = yaml.safe_load(kubeconfig)
    except yaml.YAMLError as exc:
        raise ClusterApiError(f"the kubeconfig is not YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ClusterApiError("the kubeconfig is not a kubeconfig (no mapping)")
    data = _checked(data, context)
    server_id = entra_server_id(data, context)
    token: EntraToken | None = None
    if server_id is not None:
        if credential is None:
            raise ClusterApiError("the cluster uses Microsoft Entra ID (a kubelogin "
                                  "kubeconfig) and meshops has no Azure credential for it")
        token = EntraToken(credential, server_id)
        name = context or data.get("current-context")
        user_name = next((c.get("context", {}).get("user") for c in data.get("contexts") or []
                          if c.get("name") == name), None)
        data = {**data, "users": [
            {"name": u.get("name"), "user": {"token": "pending"}} if u.get("name") == user_name
            else u for u in data.get("users") or []]}
    cfg = k8s.Configuration()
    data, fds = credentials_in_memory(data, context)
    try:
        k8s_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            data, context=context, client_configuration=cfg)
    except ConfigException as exc:
        _close(fds)
        raise translate_kubernetes_error(exc, "load", "kubeconfig") from exc
    except ValueError as exc:  # a value the loader decodes (base64, an OIDC token's JSON)
        _close(fds)
        raise ClusterApiError(f"the kubeconfig cannot be used: {exc}") from exc
    except BaseException:
        _close(fds)
        raise
    # a connection for each list thread and each rollout watch (workers/kube/follow.py):
    # beyond the pool's size urllib3 opens and drops a connection per request
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0,
                                      LIST_CONCURRENCY + FOLLOW_MAX_WATCHES)
    # no retries inside the client: urllib3 would sleep out a 429's Retry-After and retry a
    # timed-out read three times in the worker; the run's retry policy waits instead
    cfg.retries = False
    try:
        client = k8s.ApiClient(cfg)
    except BaseException:
        _close(fds)
        raise
    # ssl reads the files at each new connection: they live as long as the client
    weakref.finalize(client, _close, fds)
    if token is not None:
        client.configuration.refresh_api_key_hook = token
    return client


#: a kubeconfig's lists and the mapping each entry carries (kubectl's ``Config``:
#: ``NamedCluster``, ``NamedContext``, ``NamedAuthInfo``, k8s.io/client-go/tools/clientcmd/api/v1)
KUBECONFIG_LISTS = {"clusters": "cluster", "contexts": "context", "users": "user"}


def _checked(data: dict[str, Any], context: str | None) -> dict[str, Any]:
    """``data``, its entries' null bodies as empty mappings (``user: null`` is a user with
    no credentials to kubectl, "Expected key user" to the Python client); or
    ``ClusterApiError`` naming the first part that is not shaped as a kubeconfig:
    ``clusters``/``contexts``/``users`` lists of ``{name, cluster|context|user: {…}}``
    (kubectl's ``Config``, k8s.io/client-go/tools/clientcmd/api/v1), ``current-context`` a
    name, the context's cluster a ``server`` URL. The Kubernetes client and
    :func:`entra_server_id` read these without looking: a list that is a string is a
    ``TypeError`` deep in them, and a cluster without a server is, on clients before
    36.0, one at ``http://localhost``. Only types and keys are named, never values: a
    user's entry holds credentials."""
    current = data.get("current-context")
    if isinstance(current, (dict, list)):
        raise ClusterApiError(f"the kubeconfig's current-context is not a name "
                              f"({type(current).__name__}): the name of one of its contexts")
    out = dict(data)
    for key, inner in KUBECONFIG_LISTS.items():
        entries = data.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ClusterApiError(f"the kubeconfig's {key} is not a list "
                                  f"({type(entries).__name__}): a list of {{name, {inner}: "
                                  "{…}} (kubectl config view)")
        for entry in entries:
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(body, dict | None):
                what = (f"its {inner} is {type(body).__name__}" if isinstance(entry, dict)
                        else f"it is {type(entry).__name__}")
                raise ClusterApiError(f"the kubeconfig's {key} holds an entry that is not "
                                      f"{{name, {inner}: {{…}}}} ({what}; kubectl config "
                                      "view)")
        out[key] = [{**e, inner: e.get(inner) or {}} for e in entries]
    name = context or current
    ctx = next((c["context"] for c in out.get("contexts") or [] if c.get("name") == name),
               None)
    if ctx is None:
        return out  # the client says which context is missing
    cluster = next((c["cluster"] for c in out.get("clusters") or []
                    if c.get("name") == ctx.get("cluster")), None)
    server = cluster.get("server") if cluster is not None else None
    if cluster is not None and not (isinstance(server, str) and server.strip()):
        raise ClusterApiError(f"the kubeconfig's cluster {ctx.get('cluster')!r} has no server "
                              "URL (its `server: https://<api-server>:443`)")
    return out


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class KubernetesClusterApi:
    """Implements :class:`workflows.ports.ClusterApi`."""

    KINDS = ("Deployment", "StatefulSet", "DaemonSet")

    def __init__(self, api_client: k8s.ApiClient, name: str = "",
                 timeout: tuple[float, float] = REQUEST_TIMEOUT):
        self.name = name
        self.timeout = timeout
        core, apps, batch, admission, custom = API_GROUPS
        self.core = core(api_client)
        self.apps = apps(api_client)
        self.batch = batch(api_client)
        self.admission = admission(api_client)
        self.custom = custom(api_client)
        self.calls = 0
        self._calls_lock = threading.Lock()

    def _call(self, verb: str, resource: str, namespace: str | None, fn: Any, *args: Any,
              **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its client errors translated naming verb, resource and
        namespace."""
        with self._calls_lock:  # namespaced lists run in threads (:meth:`_per_namespace`)
            self.calls += 1
        # a hung API server costs one step its timeout, never a worker (issue 11, item 8)
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except KUBERNETES_ERRORS as exc:
            raise translate_kubernetes_error(exc, verb, resource, namespace, self.name) from exc

    def _pages(self, resource: str, namespace: str | None, fn: Any, *args: Any,
               take: Callable[[Any], Any] | None = None) -> list[Any]:
        """Every item of a list call, :data:`LIST_PAGE` at a time (``limit``, then the
        ``continue`` token of each page; typed lists and custom objects' dicts alike).

        ``take(item)``: what to keep of each item (None: drop it), applied page by page, so
        that only one page of objects is alive at a time (2,000 V1Pods at once were most
        of a worker's peak at 2,000 namespaces). With ``take``, pages are read as JSON
        (:class:`KubeObject`), not as the client's models.

        A continue token the API server has compacted away answers 410 Expired; as
        client-go's pager does (``tools/pager``, ``FullListIfExpired``), the list then starts
        over without pages, so the items are one consistent list in either case."""
        items: list[Any] = []
        token: str | None = None
        # what meshops converts at once is read as JSON, not as the client's models
        raw: dict[str, Any] = {"_preload_content": False} if take is not None else {}
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_PAGE, **raw}
            if token:
                kwargs["_continue"] = token
            try:
                page = self._call("list", resource, namespace, fn, *args, **kwargs)
            except ClusterApiError as exc:
                if not token or not _gone(exc):
                    raise
                page = self._call("list", resource, namespace, fn, *args, **raw)
                return _taken(_items(_json_page(page) if raw else page), take)
            if raw:
                page = _json_page(page)
            items.extend(_taken(_items(page), take))
            token = _continue_token(page)
            del page  # its objects go before the next page comes
            if not token:
                return items

    def _per_namespace(self, namespaces: list[str], one: Callable[[str], list[Any]]
                       ) -> list[Any]:
        """``one(namespace)`` for each namespace, :data:`LIST_CONCURRENCY` at a time, the
        items in the namespaces' order; the first error is raised."""
        if len(namespaces) <= 1:
            return [i for ns in namespaces for i in one(ns)]
        return [i for items in list_pool().map(one, namespaces) for i in items]

    def list_namespaces(self, labelled: Sequence[str] | None = None) -> list[Namespace]:
        """Namespaces and their labels; an ``istio.io/rev`` label that is not an add-on
        revision (``asm-1-NN``) is looked up among the revision tags. ``labelled``: only
        those whose ``istio.io/rev`` is one of these values, selected by the API server
        (``labelSelector=istio.io/rev in (…)``, Kubernetes' set-based requirement, as
        ``kubectl get ns -l 'istio.io/rev in (…)'``); an empty list reads nothing."""
        fn = self.core.list_namespace
        if labelled is not None:
            if not labelled:
                return []
            fn = partial(fn, label_selector=f"{REV_LABEL} in ({','.join(sorted(set(labelled)))})")
        return self._with_tags(dict(self._pages(
            "namespaces", None, fn,
            take=lambda n: (n.metadata.name, dict(n.metadata.labels or {})))))

    def _with_tags(self, labels: dict[str, dict[str, str]]) -> list[Namespace]:
        """Namespaces of ``{name: labels}``; an ``istio.io/rev`` that is not an add-on
        revision is looked up among the revision tags (read only then)."""
        tags = self.revision_tags() if any(
            lbl.get(REV_LABEL) and not ADDON_REVISION.fullmatch(lbl[REV_LABEL])
            for lbl in labels.values()) else {}
        return [Namespace(name, lbl, tags.get(lbl.get(REV_LABEL, "")))
                for name, lbl in labels.items()]

    def get_namespaces(self, names: list[str]) -> list[Namespace]:
        """The namespaces of ``names`` that exist, in that order, each read by name
        (``GET /api/v1/namespaces/{name}``, as ``kubectl get namespace a b`` reads them),
        :data:`LIST_CONCURRENCY` at a time: a wave's reads grow with the wave, not with the
        cluster (issue 13). Labels and revision tags as :meth:`list_namespaces`."""

        def one(name: str) -> list[tuple[str, dict[str, str]]]:
            try:
                resp = self._call("get", "namespaces", None, self.core.read_namespace, name,
                                  _preload_content=False)
            except ClusterApiError as exc:
                if _not_found(exc):
                    return []
                raise
            meta = _json_page(resp).get("metadata") or {}
            return [(str(meta.get("name", name)), dict(meta.get("labels") or {}))]

        return self._with_tags(dict(self._per_namespace(names, one)))

    def _tag_webhooks(self, tag: str | None = None) -> list[Any]:
        selector = f"{TAG_LABEL}={tag}" if tag else TAG_LABEL
        return list(self._call(
            "list", "mutatingwebhookconfigurations", None,
            self.admission.list_mutating_webhook_configuration,
            label_selector=selector).items)

    def revision_tags(self) -> dict[str, str]:
        """Revision tags: the MutatingWebhookConfigurations ``istioctl tag set`` makes
        (``istio-revision-tag-<tag>``, labels ``istio.io/tag`` and ``istio.io/rev``)."""
        out = {}
        for mwc in self._tag_webhooks():
            lbl = mwc.metadata.labels or {}
            if lbl.get(TAG_LABEL) and lbl.get(REV_LABEL):
                out[lbl[TAG_LABEL]] = lbl[REV_LABEL]
        return out

    def set_revision_tag(self, tag: str, revision: str) -> None:
        """``istioctl tag set <tag> --revision <revision> --overwrite``
        (istio ``istioctl/pkg/tag``): the tag's webhooks take the client config of the
        revision's own injector webhook (labelled ``istio.io/rev=<revision>``, no
        ``istio.io/tag``), else call ``istiod-<revision>`` in aks-istio-system; written
        with its resourceVersion, so a concurrent change is a 409 (temporary: read again)."""
        found = self._tag_webhooks(tag)
        if not found:
            raise PermanentError(f"revision tag {tag} has no MutatingWebhookConfiguration "
                                 f"(istio-revision-tag-{tag}) on {self.name}; create it with "
                                 f"`istioctl tag set {tag} --revision {revision} "
                                 "--istioNamespace aks-istio-system`")
        canonical = [m for m in self._call(
            "list", "mutatingwebhookconfigurations", None,
            self.admission.list_mutating_webhook_configuration,
            label_selector=f"{REV_LABEL}={revision},!{TAG_LABEL}").items if m.webhooks]
        source = canonical[0].webhooks[0].client_config if canonical else None
        for mwc in found:
            mwc.metadata.labels = {**(mwc.metadata.labels or {}), REV_LABEL: revision}
            for wh in mwc.webhooks or []:
                if source is not None:
                    wh.client_config = source
                elif wh.client_config.service is not None:
                    wh.client_config.service.name = f"istiod-{revision}"
                    wh.client_config.service.namespace = ISTIO_NS
            self._call("update", f"mutatingwebhookconfiguration {mwc.metadata.name}", None,
                       self.admission.replace_mutating_webhook_configuration,
                       mwc.metadata.name, mwc)

    def list_gateways(self, namespaces: list[str]) -> list[GatewayApiGateway]:
        """Gateways of class ``istio`` (``gateway.networking.k8s.io/v1``); none where the
        Gateway API CRDs are not installed (404)."""
        resource, wanted = "gateways.gateway.networking.k8s.io", set(namespaces)
        try:
            if len(namespaces) <= PER_NAMESPACE_LIMIT:
                items = self._per_namespace(namespaces, lambda ns: self._pages(
                    resource, ns, self.custom.list_namespaced_custom_object, GATEWAY_GROUP,
                    "v1", ns, "gateways"))
            else:
                items = self._pages(resource, None, self.custom.list_cluster_custom_object,
                                    GATEWAY_GROUP, "v1", "gateways")
        except ClusterApiError as exc:
            if _not_found(exc):
                return []
            raise
        out = []
        for g in items:
            meta = g.get("metadata") or {}
            if (g.get("spec") or {}).get("gatewayClassName") != "istio" \
                    or meta.get("namespace") not in wanted:
                continue
            out.append(GatewayApiGateway(meta["namespace"], meta.get("name", ""),
                                         (meta.get("labels") or {}).get(REV_LABEL)))
        return out

    def set_gateway_revision(self, namespace: str, name: str, revision: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: revision}}}
        self._call("patch", f"gateway {name}", namespace,
                   self.custom.patch_namespaced_custom_object, GATEWAY_GROUP, "v1",
                   namespace, "gateways", name, body)

    def set_namespace_revision(self, namespace: str, revision: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: revision, INJECTION_LABEL: None}}}
        self._call("patch", f"namespace {namespace}", None, self.core.patch_namespace, namespace,
                   body)

    def remove_namespace_revision(self, namespace: str) -> None:
        body = {"metadata": {"labels": {REV_LABEL: None, INJECTION_LABEL: None}}}
        self._call("patch", f"namespace {namespace}", None, self.core.patch_namespace, namespace,
                   body)

    def _list(self, kind: str, namespaces: list[str], take: Callable[[Any], Any]
              ) -> list[Any]:
        """``take`` of each ``kind`` object of ``namespaces``: per namespace, or in one
        cluster-wide list for many namespaces (the objects of the others dropped)."""
        snake = WORKLOAD_API_NAMES[kind]
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            fn = getattr(self.apps, f"list_namespaced_{snake}")
            return self._per_namespace(namespaces, lambda ns: self._pages(
                f"{kind}s", ns, fn, ns, take=take))
        fn = getattr(self.apps, f"list_{snake}_for_all_namespaces")
        wanted = set(namespaces)
        return self._pages(f"{kind}s", None, fn, take=lambda i: take(i)
                           if i.metadata.namespace in wanted else None)

    def list_workloads(self, namespaces: list[str]) -> list[Workload]:
        """Deployments, StatefulSets and DaemonSets of ``namespaces`` with what
        ``kubectl rollout status`` reads (``apps/v1`` status), their update strategy,
        StatefulSet partition, progress deadline, and whether their pods are injected."""
        out: list[Workload] = []
        for kind in self.KINDS:
            out += self._list(kind, namespaces, partial(self._workload, kind))
        return out

    @staticmethod
    def _workload(kind: str, obj: Any) -> Workload:
        tmpl = obj.spec.template.metadata
        template_meta = {**((tmpl.labels or {}) if tmpl else {}),
                         **((tmpl.annotations or {}) if tmpl else {})}
        st = obj.status
        strategy, partition, ready, total = "RollingUpdate", 0, None, None
        current = update = None
        deadline, exceeded = None, False
        if kind == "DaemonSet":
            replicas = st.desired_number_scheduled or 0
            updated, available = st.updated_number_scheduled or 0, st.number_available or 0
            if obj.spec.update_strategy and obj.spec.update_strategy.type:
                strategy = obj.spec.update_strategy.type
        else:
            replicas = obj.spec.replicas if obj.spec.replicas is not None else 1
            updated = st.updated_replicas or 0
            if kind == "Deployment":
                available, total = st.available_replicas or 0, st.replicas or 0
                if obj.spec.strategy and obj.spec.strategy.type:
                    strategy = obj.spec.strategy.type
                pds = obj.spec.progress_deadline_seconds
                deadline = float(pds) if pds is not None else DEFAULT_PROGRESS_DEADLINE_S
                exceeded = any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
                               for c in st.conditions or [])
            else:
                available = ready = st.ready_replicas or 0
                current, update = st.current_revision, st.update_revision
                us = obj.spec.update_strategy
                if us and us.type:
                    strategy = us.type
                if us and us.rolling_update and us.rolling_update.partition:
                    partition = int(us.rolling_update.partition)
        return Workload(
            kind=kind, namespace=obj.metadata.namespace, name=obj.metadata.name,
            restarted_at=((tmpl.annotations or {}) if tmpl else {}).get(RESTARTED_AT),
            generation=obj.metadata.generation or 0,
            observed_generation=st.observed_generation or 0,
            replicas=replicas, updated=updated, available=available, ready=ready,
            strategy=strategy, partition=partition, current_revision=current,
            update_revision=update, total=total, progress_deadline_s=deadline,
            deadline_exceeded=exceeded,
            # Istio: the pod label sidecar.istio.io/inject (or the older annotation)
            # a Gateway API gateway's Deployment says inject "false" because istiod renders
            # the proxy into it (its only container): it is on the mesh all the same
            injection_disabled=str(template_meta.get(INJECT, "")).lower() == "false"
            and GATEWAY_NAME_LABEL not in template_meta)

    def watch_workloads(self, namespace: str, kind: str, name: str | None, timeout_s: float
                        ) -> Iterator[Workload]:
        """The ``kind`` objects of ``namespace`` (only ``name``, if given) as a watch sees
        them for about ``timeout_s`` seconds (``timeoutSeconds``, whole seconds, at least 1),
        each as a :class:`Workload`: first as they are now (a watch without
        ``resourceVersion`` starts with an ADDED event per object), then at each change.
        ``kubectl rollout status`` reads the same stream (Kubernetes docs "API Concepts",
        "Efficient detection of changes"). Ends when the API server ends the watch or sends
        an ERROR event (410 Expired among them). Read as JSON, like the lists.

        Raises:
            ClusterApiError: the API server refused the watch, as for the other reads.
        """
        snake = WORKLOAD_API_NAMES[kind]
        fn = getattr(self.apps, f"list_namespaced_{snake}")
        seconds = max(1, math.ceil(timeout_s))
        kwargs: dict[str, Any] = {
            "watch": True, "timeout_seconds": seconds, "_preload_content": False,
            # the server ends the watch after timeoutSeconds; a hung one, a little later
            "_request_timeout": (self.timeout[0], seconds + self.timeout[0])}
        if name is not None:
            kwargs["field_selector"] = f"metadata.name={name}"
        response = self._call("watch", f"{kind}s", namespace, fn, namespace, **kwargs)
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                event = json.loads(line, object_hook=KubeObject)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    yield self._workload(kind, event["object"])
                elif event.get("type") == "ERROR":
                    return
        finally:
            response.close()
            response.release_conn()

    def restart_workload(self, workload: Workload, token: str) -> None:
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: token}}}}}
        snake = WORKLOAD_API_NAMES[workload.kind]
        fn = getattr(self.apps, f"patch_namespaced_{snake}")
        self._call("patch", f"{workload.kind} {workload.name}", workload.namespace, fn,
                   workload.name, workload.namespace, body)

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod (``kubectl delete pod``); one already gone is fine."""
        try:
            self._call("delete", f"pod {name}", namespace, self.core.delete_namespaced_pod,
                       name, namespace)
        except ClusterApiError as exc:
            if not _not_found(exc):
                raise

    def list_batch(self, namespaces: list[str]) -> list[BatchWorkload]:
        """CronJobs, and the Jobs no CronJob owns, of ``namespaces`` (``batch/v1``)."""

        def items(resource: str, ns: str, fn: Any) -> list[Any]:
            try:
                return self._pages(resource, ns, fn, ns)
            except ClusterApiError as exc:
                if _not_found(exc):  # batch/v1 not served (an API server without it)
                    return []
                raise

        def opted_out(template: Any) -> bool:
            meta = template.metadata if template is not None else None
            labels = {**((meta.labels or {}) if meta else {}),
                      **((meta.annotations or {}) if meta else {})}
            return str(labels.get(INJECT, "")).lower() == "false"

        def of(ns: str) -> list[BatchWorkload]:
            found = [BatchWorkload("CronJob", ns, cj.metadata.name,
                                   opted_out(cj.spec.job_template.spec.template))
                     for cj in items("CronJobs", ns, self.batch.list_namespaced_cron_job)]
            for job in items("Jobs", ns, self.batch.list_namespaced_job):
                owners = job.metadata.owner_references or []
                if not any(o.kind == "CronJob" for o in owners):
                    found.append(BatchWorkload("Job", ns, job.metadata.name,
                                               opted_out(job.spec.template)))
            return found

        return self._per_namespace(namespaces, of)

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = self._call("get", f"ConfigMap {name}", namespace,
                            self.core.read_namespaced_config_map, name, namespace)
        except ClusterApiError as exc:
            if _not_found(exc):
                return None
            raise
        return dict(cm.data or {})

    def create_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "meshops"}},
                "data": data}
        try:
            self._call("create", f"ConfigMap {name}", namespace,
                       self.core.create_namespaced_config_map, namespace, body)
        except ClusterApiError as exc:
            if not (isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 409):
                raise  # 409 AlreadyExists: someone made it meanwhile; theirs stays

    def list_pods(self, namespaces: list[str]) -> list[Pod]:
        if len(namespaces) <= PER_NAMESPACE_LIMIT:
            return self._per_namespace(namespaces, lambda ns: self._pages(
                "pods", ns, self.core.list_namespaced_pod, ns, take=self._pod))
        wanted = set(namespaces)
        return self._pages("pods", None, self.core.list_pod_for_all_namespaces,
                           take=lambda p: self._pod(p) if p.metadata.namespace in wanted
                           else None)

    @staticmethod
    def _owner(p: Any) -> tuple[str | None, str | None, int | None]:
        """(workload kind, workload name, StatefulSet ordinal) from the pod's controller
        ownerReference; a ReplicaSet's Deployment is its name less ``-<pod-template-hash>``
        (the Deployment controller names it so)."""
        labels = p.metadata.labels or {}
        for ref in p.metadata.owner_references or []:
            if not ref.controller:
                continue
            if ref.kind == "ReplicaSet":
                h = labels.get("pod-template-hash")
                if h and ref.name.endswith("-" + h):
                    return "Deployment", ref.name[: -len(h) - 1], None
                return "ReplicaSet", ref.name, None
            if ref.kind == "StatefulSet":
                index = labels.get("apps.kubernetes.io/pod-index")
                if index is None:
                    index = p.metadata.name.rsplit("-", 1)[-1]
                return "StatefulSet", ref.name, int(index) if str(index).isdigit() else None
            if ref.kind in ("DaemonSet", "Job"):
                return ref.kind, ref.name, None
        return None, None, None  # bare (or static: owned by the Node)

    @classmethod
    def _pod(cls, p: Any) -> Pod:
        ann = p.metadata.annotations or {}
        revision = None
        if GATEWAY_NAME_LABEL in (p.metadata.labels or {}):
            # a Gateway API gateway's pod: istiod rendered the proxy into it and names the
            # revision in the istio.io/rev annotation (Istio's kube-gateway template)
            revision = ann.get(REV_LABEL) or (p.metadata.labels or {}).get(REV_LABEL)
        elif "sidecar.istio.io/status" in ann:
            try:
                revision = json.loads(ann["sidecar.istio.io/status"]).get("revision")
            except ValueError:
                revision = None
            revision = revision or (p.metadata.labels or {}).get(REV_LABEL)
        version = None
        # native sidecars (Kubernetes 1.28+): istio-proxy is an init container with
        # restartPolicy Always; its status is among the init container statuses
        for c in (p.spec.containers or []) + (p.spec.init_containers or []):
            if c.name == "istio-proxy" and c.image and ":" in c.image:
                version = c.image.rsplit(":", 1)[1].removesuffix("-distroless")
        waiting, restarts = None, 0
        status = p.status
        statuses = ((status.container_statuses or []) + (status.init_container_statuses or [])
                    if status else [])
        for cs in statuses:
            restarts = max(restarts, cs.restart_count or 0)
            if cs.state and cs.state.waiting and cs.state.waiting.reason and \
                    waiting != "CrashLoopBackOff":
                waiting = cs.state.waiting.reason
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in (status.conditions or []) if status) if status else False
        owner_kind, owner, ordinal = cls._owner(p)
        return Pod(namespace=p.metadata.namespace, name=p.metadata.name, revision=revision,
                   proxy_version=version, phase=(status.phase if status else None)
                   or "Unknown", waiting_reason=waiting, restarts=restarts,
                   owner_kind=owner_kind, owner=owner, ordinal=ordinal, ready=ready,
                   reason=status.reason if status else None,
                   terminating=p.metadata.deletion_timestamp is not None)

    def ingress_gateways(self) -> dict[str, bool]:
        """Modes with an ``aks-istio-ingressgateway-<mode>-<revision>`` Deployment in
        aks-istio-ingress → whether one of them is available."""
        out: dict[str, bool] = {}
        for (mode, _), available in self.revision_gateways().items():
            out[mode] = out.get(mode, False) or available
        return out

    def revision_gateways(self) -> dict[tuple[str, str], bool]:
        try:
            items = self._call("list", "Deployments", "aks-istio-ingress",
                               self.apps.list_namespaced_deployment, "aks-istio-ingress").items
        except ClusterApiError as exc:
            if _not_found(exc):
                return {}
            raise
        out: dict[tuple[str, str], bool] = {}
        for d in items:
            for mode in ("External", "Internal"):
                prefix = f"aks-istio-ingressgateway-{mode.lower()}-"
                if d.metadata.name.startswith(prefix):
                    out[(mode, d.metadata.name[len(prefix):])] = (
                        d.status.available_replicas or 0) >= 1
        return out

    def istio_outside_addon(self) -> list[str]:
        """Signs of an Istio installed outside the add-on, asked before enabling it (so none
        of this can be the add-on's own): an ``istiod`` Deployment in ``istio-system``, and
        Istio CRDs (groups ``*.istio.io``), which an uninstall may leave behind (AKS doc
        ``istio-deploy-addon.md``)."""
        signs = []
        try:
            items = self._call("list", "Deployments", "istio-system",
                               self.apps.list_namespaced_deployment, "istio-system").items
            signs += [f"namespace istio-system runs Deployment {d.metadata.name}"
                      for d in items if d.metadata.name.startswith("istiod")]
        except ClusterApiError as exc:
            if not _not_found(exc):
                raise
        crds = sorted(c.metadata.name for c in self._call(
            "list", "customresourcedefinitions", None,
            k8s.ApiextensionsV1Api(self.core.api_client).list_custom_resource_definition).items
            if c.spec.group == "istio.io" or c.spec.group.endswith(".istio.io"))
        if crds:
            signs.append("Istio CRDs from another installation: " + ", ".join(crds[:5])
                         + (f" and {len(crds) - 5} more" if len(crds) > 5 else ""))
        return signs

    def control_plane_revisions(self) -> dict[str, bool]:
        items = self._call("list", "Deployments app=istiod", ISTIO_NS,
                           self.apps.list_namespaced_deployment, ISTIO_NS,
                           label_selector="app=istiod").items
        out = {}
        for d in items:
            if d.metadata.name.startswith("istiod-"):
                rev = d.metadata.name[len("istiod-"):]
                out[rev] = (d.status.available_replicas or 0) >= 1
        return out

    def control_plane_versions(self) -> dict[str, str]:
        """Revision → the patch its ``istiod-<revision>`` runs: the ``pilot`` image tag
        (``mcr.microsoft.com/oss/istio/pilot:1.25.3-distroless``), once that Deployment has
        rolled out (``kubectl rollout status`` semantics); one still rolling is left out."""
        items = self._call("list", "Deployments app=istiod", ISTIO_NS,
                           self.apps.list_namespaced_deployment, ISTIO_NS,
                           label_selector="app=istiod").items
        out = {}
        for d in items:
            if not d.metadata.name.startswith("istiod-"):
                continue
            if not self._workload("Deployment", d).rolled_out:
                continue
            for c in d.spec.template.spec.containers or []:
                if c.image and "/pilot:" in c.image:
                    tag = c.image.rsplit(":", 1)[1].removesuffix("-distroless")
                    out[d.metadata.name[len("istiod-"):]] = tag
        return out
