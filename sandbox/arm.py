"""The ARM emulator: the managedClusters subset meshops uses, over HTTPS, and a managed
identity token endpoint.

Contracts followed (examples in ``../shared/data/aks/arm/``, api-version 2026-08-01):
- ``GET|PUT .../managedClusters/{name}``: the body of ``ManagedClustersCreate_AzureServiceMesh``
  (:func:`sandbox.resources.cluster_body`, kept by the world);
  a PUT is a long-running operation: 200 with ``provisioningState: Updating`` and an
  ``Azure-AsyncOperation`` header whose URL answers ``{"name","status","startTime"[,"endTime",
  "error"]}`` (``real_async_operation_bodies_from_cli_recording.json``). A write while an
  operation runs answers 409 ``OperationNotAllowed`` (:func:`busy_message`), whether the
  operation is one of ours or someone's node pool operation a world started with
  (:meth:`sandbox.world.World.start_node_pool_operation`; the cluster shows
  ``provisioningState: Updating`` meanwhile).
- ``serviceMeshProfile`` rules of the add-on (DESIGN.md §1): one revision, or two during a
  canary upgrade where the second is an allowed upgrade of the first that is compatible with
  the cluster's Kubernetes version; from two revisions only one of the two may remain.
- ``GET .../managedClusters/{name}/meshUpgradeProfiles[/istio]`` and
  ``GET .../locations/{location}/meshRevisionProfiles[/istio]`` in the shapes of
  ``ManagedClustersGet_MeshUpgradeProfile`` / ``real_meshRevisionProfiles_westus2_*``.
- ``POST .../listClusterUserCredential`` returns ``{"kubeconfigs": [{"name", "value"}]}`` with
  a base64 kubeconfig for the cluster's Kubernetes emulator (HTTPS, the cluster CA as
  ``certificate-authority-data``, names as AKS gives them: cluster and context ``<name>``,
  user ``clusterUser_<resource group>_<name>`` with a token and, as AKS gives local
  accounts, ``client-certificate-data`` and ``client-key-data`` signed by the cluster CA);
  ``listClusterAdminCredential`` the same for ``clusterAdmin_…`` (context
  ``<name>-admin``), refused with 400 when the cluster has ``disableLocalAccounts`` (AKS doc
  "Manage local accounts with AKS-managed Microsoft Entra integration").
- ``GET .../managedClusters/{name}/maintenanceConfigurations`` (``{"value": [...]}``) and
  ``GET|PUT|DELETE .../maintenanceConfigurations/{configName}`` in the shapes of the REST
  spec's ``MaintenanceConfigurations*_MaintenanceWindow`` examples, with AKS's checks on PUT
  (:mod:`sandbox.maintenance`: the three configuration names, one schedule type, 4-24 hours,
  ...; 400 ``InvalidParameter`` naming the field); PUT answers 201 when it creates, 200 when
  it replaces; GET of a missing one 404 ``NotFound``; DELETE 200, or 204 when there was none.
- Tokens: ``/msi/token`` behaves as the App Service managed identity endpoint
  (``IDENTITY_ENDPOINT`` + ``X-IDENTITY-HEADER``, api-version 2019-08-01), so the product's
  ``DefaultAzureCredential`` works unchanged. ARM accepts only tokens it issued.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import yaml

from sandbox import maintenance
from sandbox.http import Request, Response, Router
from sandbox.resources import PROVIDER
from sandbox.world import World

MC = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
      r"Microsoft\.ContainerService/managedClusters/(?P<name>[^/]+)")
LOC = (r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ContainerService/locations/"
       r"(?P<loc>[^/]+)")


#: the Microsoft Entra server application of AKS-managed Entra ID (every cluster, public
#: cloud), and kubelogin's default client (AKS doc "Use kubelogin to authenticate users")
ENTRA_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
KUBELOGIN_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"


def entra_managed(c: Any) -> bool:
    return bool((c.arm["properties"].get("aadProfile") or {}).get("managed"))


def _err(status: int, code: str, message: str, headers: dict[str, str] | None = None
         ) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, headers=headers)


def busy_message(op: Any) -> str:
    """AKS's 409 ``OperationNotAllowed`` message for a write while ``op`` runs: for a node
    pool operation the wording AKS answers with ("Operation is not allowed because there's
    an in progress update node pool operation (operation ID: …) on the agent pool system
    started on UTC 2026-02-12T03:41:29Z. Please wait for it to finish before starting a new
    operation. You can also use 'az aks nodepool operation-abort ...' to abort the ongoing
    operation.", as recorded from a real 409); for one on the managed cluster the same
    sentence on the managed cluster."""
    if op.agent_pool:
        started = datetime.fromtimestamp(op.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"Operation is not allowed because there's an in progress {op.kind} operation "
                f"(operation ID: {op.id}) on the agent pool {op.agent_pool} started on UTC "
                f"{started}. Please wait for it to finish before starting a new operation. "
                "You can also use 'az aks nodepool operation-abort ...' to abort the ongoing "
                "operation.")
    started = datetime.fromtimestamp(op.started, UTC).isoformat()
    return ("Operation is not allowed because there's an in progress update managed "
            f"cluster operation on the managed cluster started at {started}. "
            "Please wait for it to finish before retrying.")


def _minor(k8s: str) -> str:
    return ".".join(k8s.split(".")[:2])


class ArmEmulator:
    def __init__(self, world: World, base_url: str, kube_url: str, identity_secret: str,
                 kube_ca: bytes = b"", kube_client: tuple[bytes, bytes] | None = None):
        self.world = world
        self.kube_ca = kube_ca
        #: the client certificate and key (PEM) of local accounts' kubeconfigs
        self.kube_client = kube_client
        self.base_url = base_url.rstrip("/")
        self.kube_url = kube_url.rstrip("/")
        self.identity_secret = identity_secret
        #: token → (resource it was issued for, when it expires)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        #: statuses to answer the next maintenanceConfigurations requests with (429 with
        #: ``Retry-After: 1``, else ARM's 5xx), for tests of how readers take them
        self.maintenance_faults: list[int] = []

    # ---------------------------------------------------------------- helpers

    def _cluster(self, req: Request) -> Any:
        c = self.world.clusters.get(req.params["name"])
        if c is None or c.subscription != req.params["sub"] or \
                c.resource_group.lower() != req.params["rg"].lower():
            return None
        return c

    def _not_found(self, req: Request) -> Response:
        return _err(404, "ResourceNotFound",
                    f"The Resource '{PROVIDER}/managedClusters/{req.params['name']}' under "
                    f"resource group '{req.params['rg']}' was not found. For more details "
                    "please go to https://aka.ms/ARMResourceNotFoundFix")

    def guard(self, req: Request) -> Response | None:
        if self.audience_of(req.bearer) is None:
            return _err(401, "AuthenticationFailed",
                        "Authentication failed. The 'Authorization' header is missing or "
                        "carries a token this endpoint did not issue.")
        if "api-version" not in req.query:
            return _err(400, "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is required for all "
                        "requests.")
        return None

    def compatible(self, revision: str, k8s: str) -> bool:
        entry = self.world.catalog.get(revision)
        return entry is not None and _minor(k8s) in entry["kubernetes"]

    # ---------------------------------------------------------------- routes

    def router(self) -> Router:
        r = Router()
        r.add("GET", "/msi/token", self.token)
        r.add("GET", MC, self.guarded(self.get_cluster))
        r.add("PUT", MC, self.guarded(self.put_cluster))
        r.add("GET", MC + "/meshUpgradeProfiles", self.guarded(self.list_upgrade_profiles))
        r.add("GET", MC + "/meshUpgradeProfiles/(?P<mode>[^/]+)",
              self.guarded(self.get_upgrade_profile))
        r.add("GET", MC + "/maintenanceConfigurations",
              self.guarded(self.list_maintenance_configurations))
        config = MC + "/maintenanceConfigurations/(?P<config>[^/]+)"
        r.add("GET", config, self.guarded(self.get_maintenance_configuration))
        r.add("PUT", config, self.guarded(self.put_maintenance_configuration))
        r.add("DELETE", config, self.guarded(self.delete_maintenance_configuration))
        r.add("POST", MC + "/listClusterUserCredential", self.guarded(self.user_credential))
        r.add("POST", MC + "/listClusterAdminCredential", self.guarded(self.admin_credential))
        r.add("GET", LOC + "/meshRevisionProfiles", self.guarded(self.list_revision_profiles))
        r.add("GET", LOC + "/meshRevisionProfiles/(?P<mode>[^/]+)",
              self.guarded(self.get_revision_profile))
        r.add("GET", LOC + "/operations/(?P<op>[^/]+)", self.guarded(self.get_operation))
        return r

    def guarded(self, fn: Any) -> Any:
        def wrapped(req: Request) -> Response:
            resp = self.guard(req)
            if resp is None:
                with self.world.lock:
                    self.world.reconcile()
                    resp = fn(req)
            self.requests.append((req.method, req.path, resp.status))
            return resp
        return wrapped

    def token(self, req: Request) -> Response:
        if req.headers.get("X-IDENTITY-HEADER") != self.identity_secret:
            return Response(401, {"error": "invalid_request",
                                  "error_description": "X-IDENTITY-HEADER is missing or wrong"})
        resource = req.query.get("resource", "")
        tok, expires = self.mint(resource)
        return Response(200, {"access_token": tok, "expires_on": str(int(expires)),
                              "resource": resource, "token_type": "Bearer"})

    def mint(self, resource: str, ttl_s: float = 3600) -> tuple[str, float]:
        """A token for ``resource`` (an audience), valid ``ttl_s`` seconds."""
        tok = "sandbox-" + secrets.token_urlsafe(24)
        expires = time.time() + ttl_s
        self.tokens[tok] = (resource.removesuffix("/.default"), expires)
        return tok, expires

    def audience_of(self, token: str | None) -> str | None:
        """The audience of a token this endpoint issued and that has not expired."""
        entry = self.tokens.get(token or "")
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def get_cluster(self, req: Request) -> Response:
        c = self._cluster(req)
        return Response(200, copy.deepcopy(c.arm)) if c else self._not_found(req)

    def put_cluster(self, req: Request) -> Response:
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        if self.world.arm_faults:
            status = self.world.arm_faults.pop(0)
            if status == 429:
                return _err(429, "TooManyRequests", "Too many requests; retry later.",
                            {"Retry-After": "1"})
            return _err(status, "InternalServerError", "The sandbox was told to fail this write.")
        if c.operation is not None:
            return _err(409, "OperationNotAllowed", busy_message(c.operation))
        try:
            body = req.json()
        except ValueError:
            return _err(400, "InvalidRequestContent", "The request content was invalid.")
        mesh = ((body or {}).get("properties") or {}).get("serviceMeshProfile") or {}
        problem = self.validate_mesh(c, mesh)
        if problem:
            return _err(400, problem[0], problem[1])
        before = copy.deepcopy(c.arm["properties"].get("serviceMeshProfile"))
        new_mesh = copy.deepcopy(mesh)
        if new_mesh.get("mode") == "Istio":
            istio = new_mesh.setdefault("istio", {}) or {}
            new_mesh["istio"] = istio
            if not istio.get("revisions"):
                istio["revisions"] = [self.default_revision(c)]
            istio.setdefault("components", {"ingressGateways": [], "egressGateways": []})
        c.arm["properties"]["serviceMeshProfile"] = new_mesh
        c.arm["properties"]["provisioningState"] = "Updating"
        op = self.world.start_operation(c, c.revisions, before)
        url = (f"{self.base_url}/subscriptions/{c.subscription}/providers/{PROVIDER}/locations/"
               f"{c.location}/operations/{op.id}?api-version=2016-03-30")
        return Response(200, copy.deepcopy(c.arm), headers={"Azure-AsyncOperation": url})

    def validate_mesh(self, c: Any, mesh: dict[str, Any]) -> tuple[str, str] | None:
        """The add-on's rules for a serviceMeshProfile change; (code, message) or None."""
        mode = mesh.get("mode", "Disabled")
        current = c.revisions
        if mode != "Istio":
            return None
        osm = (c.arm["properties"].get("addonProfiles") or {}).get("openServiceMesh") or {}
        if not current and osm.get("enabled"):
            return ("OpenServiceMeshAddonEnabled", "The Istio add-on cannot be enabled while "
                    "the Open Service Mesh add-on is enabled. Disable OSM first.")
        wanted = list((mesh.get("istio") or {}).get("revisions") or [])
        if not wanted and not current:
            return None  # AKS installs its default revision
        if not wanted or len(wanted) > 2 or len(set(wanted)) != len(wanted):
            return ("InvalidParameter", "serviceMeshProfile.istio.revisions must hold one "
                    "revision, or two during a canary upgrade.")
        for rev in wanted:
            if rev not in self.world.catalog:
                return ("InvalidParameter", f"Revision {rev} is not supported in "
                        f"{c.location}. Supported: {', '.join(sorted(self.world.catalog))}.")
        if wanted == current:
            return None
        if not current:
            if len(wanted) != 1:
                return ("InvalidParameter", "Enable the mesh with exactly one revision.")
            if not self.compatible(wanted[0], c.kubernetes_version):
                return ("InvalidParameter", f"Revision {wanted[0]} is not compatible with "
                        f"Kubernetes {c.kubernetes_version}.")
            return None
        if len(current) == 1 and len(wanted) == 2:
            stable, canary = wanted
            if stable != current[0]:
                return ("InvalidParameter", f"A canary upgrade must keep {current[0]} as the "
                        "first revision.")
            if canary not in (self.world.catalog[stable].get("upgrades") or []):
                return ("InvalidParameter", f"Upgrading from {stable} to {canary} is not "
                        "allowed. Check meshUpgradeProfiles for the valid targets.")
            if not self.compatible(canary, c.kubernetes_version):
                return ("InvalidParameter", f"Revision {canary} is not compatible with "
                        f"Kubernetes {c.kubernetes_version}; upgrade the cluster first.")
            return None
        if len(current) == 2 and len(wanted) == 1 and wanted[0] in current:
            return None  # complete (canary) or roll back (stable)
        return ("InvalidParameter", f"Cannot change revisions from {current} to {wanted}; "
                "start a canary upgrade, then complete or roll it back.")

    def default_revision(self, c: Any) -> str:
        """The revision AKS installs when none is given: here, the newest compatible revision
        that still has an upgrade (so new clusters are not on the very newest)."""
        compatible = sorted((r for r in self.world.catalog if self.compatible(
            r, c.kubernetes_version)), key=lambda r: int(r.rsplit("-", 1)[1]))
        with_upgrade = [r for r in compatible if any(
            u in self.world.catalog for u in self.world.catalog[r].get("upgrades") or [])]
        return (with_upgrade or compatible)[-1]

    def get_operation(self, req: Request) -> Response:
        op = self.world.operations.get(req.params["op"])
        if op is None:
            return _err(404, "NotFound", "No such operation.")
        body: dict[str, Any] = {
            "name": op.id, "status": op.status,
            "startTime": datetime.fromtimestamp(op.started, UTC).isoformat()}
        if op.status != "InProgress":
            body["endTime"] = datetime.fromtimestamp(op.due, UTC).isoformat()
        if op.error:
            body["error"] = op.error
        return Response(200, body)

    def upgrade_profile(self, c: Any) -> dict[str, Any] | None:
        if not c.revisions:
            return None
        rev = c.revisions[0]
        entry = self.world.catalog[rev]
        upgrades = [u for u in entry.get("upgrades") or []
                    if self.compatible(u, c.kubernetes_version)]
        props: dict[str, Any] = {
            "revision": rev,
            "compatibleWith": [{"name": "kubernetes", "versions": list(entry["kubernetes"])}]}
        if upgrades:
            props["upgrades"] = upgrades
        return {"id": f"{c.arm['id']}/meshUpgradeProfiles/istio", "name": "istio",
                "type": f"{PROVIDER}/managedClusters/meshUpgradeProfiles", "properties": props}

    def get_upgrade_profile(self, req: Request) -> Response:
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        profile = self.upgrade_profile(c)
        if profile is None or req.params["mode"].lower() != "istio":
            return _err(404, "NotFound", "The service mesh is not enabled on this cluster.")
        return Response(200, profile)

    def list_upgrade_profiles(self, req: Request) -> Response:
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        profile = self.upgrade_profile(c)
        return Response(200, {"value": [profile] if profile else []})

    def revision_profile(self, sub: str, loc: str) -> dict[str, Any]:
        revisions = []
        for entry in self.world.catalog.values():
            item: dict[str, Any] = {"revision": entry["revision"]}
            upgrades = [u for u in entry.get("upgrades") or [] if u in self.world.catalog]
            if upgrades:
                item["upgrades"] = upgrades
            item["compatibleWith"] = [
                {"name": "KubernetesOfficial", "versions": list(entry["kubernetes"])},
                {"name": "AKSLongTermSupport", "versions": list(entry["kubernetes"])}]
            revisions.append(item)
        return {"id": f"/subscriptions/{sub}/providers/{PROVIDER}/locations/{loc}/"
                      "meshRevisionProfiles/istio",
                "name": "istio", "type": f"{PROVIDER}/locations/meshRevisionProfiles",
                "properties": {"meshRevisions": revisions}}

    def get_revision_profile(self, req: Request) -> Response:
        return Response(200, self.revision_profile(req.params["sub"], req.params["loc"]))

    def list_revision_profiles(self, req: Request) -> Response:
        return Response(200, {"value": [self.revision_profile(req.params["sub"],
                                                              req.params["loc"])]})

    # ------------------------------------------------------ maintenance configurations

    def _configuration(self, c: Any, name: str) -> dict[str, Any]:
        return maintenance.configuration_body(c.arm["id"], name,
                                              copy.deepcopy(c.maintenance[name]))

    def _maintenance_fault(self) -> Response | None:
        if not self.maintenance_faults:
            return None
        status = self.maintenance_faults.pop(0)
        if status == 429:
            return _err(429, "TooManyRequests", "Too many requests; retry later.",
                        {"Retry-After": "1"})
        return _err(status, "InternalServerError", "The sandbox was told to fail this request.")

    def list_maintenance_configurations(self, req: Request) -> Response:
        if (fault := self._maintenance_fault()) is not None:
            return fault
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        return Response(200, {"value": [self._configuration(c, n) for n in c.maintenance]})

    def _config_not_found(self, req: Request) -> Response:
        return _err(404, "NotFound", f"Maintenance configuration '{req.params['config']}' was "
                    f"not found in managed cluster '{req.params['name']}'.")

    def get_maintenance_configuration(self, req: Request) -> Response:
        if (fault := self._maintenance_fault()) is not None:
            return fault
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        if req.params["config"] not in c.maintenance:
            return self._config_not_found(req)
        return Response(200, self._configuration(c, req.params["config"]))

    def put_maintenance_configuration(self, req: Request) -> Response:
        if (fault := self._maintenance_fault()) is not None:
            return fault
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        name = req.params["config"]
        try:
            body = req.json()
        except ValueError:
            return _err(400, "InvalidRequestContent", "The request content was invalid.")
        props = (body or {}).get("properties") if isinstance(body, dict) else None
        problems = maintenance.properties_problems(name, props)
        if problems:
            return _err(400, "InvalidParameter", " ".join(problems))
        assert isinstance(props, dict)
        stored = {k: v for k, v in props.items() if v is not None}
        if "maintenanceWindow" in stored:
            stored["maintenanceWindow"] = maintenance.stored_window(
                props["maintenanceWindow"], time.time())
        created = name not in c.maintenance
        c.maintenance[name] = stored
        return Response(201 if created else 200, self._configuration(c, name))

    def delete_maintenance_configuration(self, req: Request) -> Response:
        if (fault := self._maintenance_fault()) is not None:
            return fault
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        if c.maintenance.pop(req.params["config"], None) is None:
            return Response(204, None)
        return Response(200, None)

    def kubeconfig(self, c: Any, admin: bool = False, token: str | None = None
                   ) -> dict[str, Any]:
        """The kubeconfig AKS returns for a cluster (see the module docstring). The user
        credential of a cluster with AKS-managed Entra ID runs the kubelogin exec plugin for
        the AKS Entra server application (AKS doc "Use kubelogin to authenticate users in
        AKS": clusters on Kubernetes 1.24+ get the exec format), unless ``token`` is given."""
        user = f"cluster{'Admin' if admin else 'User'}_{c.resource_group}_{c.name}"
        context = f"{c.name}-admin" if admin else c.name
        cluster: dict[str, Any] = {"server": f"{self.kube_url}/clusters/{c.name}"}
        if self.kube_ca:
            cluster["certificate-authority-data"] = base64.b64encode(self.kube_ca).decode()
        credential: dict[str, Any] = {"token": token or c.token}
        if self.kube_client is not None and token is None:
            # a local account's kubeconfig carries a client certificate beside its token
            # (Azure/AKS#877: O=system:masters, CN=masterclient)
            cert, key = self.kube_client
            credential = {"client-certificate-data": base64.b64encode(cert).decode(),
                          "client-key-data": base64.b64encode(key).decode(), **credential}
        if entra_managed(c) and not admin and token is None:
            credential = {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
                "args": ["get-token", "--environment", "AzurePublicCloud", "--server-id",
                         ENTRA_SERVER_ID, "--client-id", KUBELOGIN_CLIENT_ID, "--tenant-id",
                         c.arm["properties"]["aadProfile"].get("tenantID", ""),
                         "--login", "devicecode"],
                "env": None, "provideClusterInfo": False, "interactiveMode": "IfAvailable",
                "installHint": "kubelogin is not installed which is required to connect to "
                               "AAD enabled cluster.\n\nTo learn more, please go to "
                               "https://aka.ms/aks/kubelogin\n"}}
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": c.name, "cluster": cluster}],
            "contexts": [{"name": context, "context": {"cluster": c.name, "user": user}}],
            "users": [{"name": user, "user": credential}],
            "preferences": {},
        }

    def _credential(self, c: Any, admin: bool) -> Response:
        value = base64.b64encode(yaml.safe_dump(self.kubeconfig(c, admin)).encode()).decode()
        name = "clusterAdmin" if admin else "clusterUser"
        return Response(200, {"kubeconfigs": [{"name": name, "value": value}]})

    def user_credential(self, req: Request) -> Response:
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        return self._credential(c, admin=False)

    def admin_credential(self, req: Request) -> Response:
        c = self._cluster(req)
        if c is None:
            return self._not_found(req)
        if c.arm["properties"].get("disableLocalAccounts"):
            return _err(400, "BadRequest", "Getting static credential is not allowed because "
                        "this cluster is set to disable local accounts.")
        return self._credential(c, admin=True)
