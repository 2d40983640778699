"""``AksMeshApi``: the managed cluster's service mesh through ARM, on azure-mgmt-containerservice.

Contracts: Microsoft.ContainerService managedClusters (``serviceMeshProfile``,
``meshUpgradeProfiles``, ``listClusterUserCredential``) and the ARM long-running-operation
protocol (``Azure-AsyncOperation``), examples in ``../shared/data/aks/arm/``.

The PUT is sent with ``polling=False``: the run stores the ``Azure-AsyncOperation`` URL and
later ticks poll it, so no worker waits on an operation. azure-core's exceptions, and only
those, are translated by :func:`workers.arm.errors.translate_azure_error` (409, 429 and 5xx
are temporary; the rest permanent, with ARM's code and message).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerservice import ContainerServiceClient

from workers.arm.errors import translate_azure_error
from workers.config import ClusterConfig, Fleet
from workers.retry_after import retry_after_s
from workflows.errors import ArmError
from workflows.ports import MeshState, OperationStatus, RevisionProfile


class AksMeshApi:
    """Implements :class:`workflows.ports.MeshApi` for the clusters of a fleet."""

    def __init__(self, fleet: Fleet, credential: TokenCredential | None = None):
        self.fleet = fleet
        # sign in where the configured cloud signs in (public, US Government, China)
        self.credential = credential or DefaultAzureCredential(
            authority=fleet.azure.authority)
        self.calls = 0

    @lru_cache(maxsize=32)  # noqa: B019 - one client per subscription for the process
    def client(self, subscription: str) -> ContainerServiceClient:
        kwargs: dict[str, Any] = {}
        if self.fleet.azure.ca_bundle:
            kwargs["connection_verify"] = str(self.fleet.azure.ca_bundle)
        return ContainerServiceClient(self.credential, subscription,
                                      base_url=self.fleet.azure.arm_endpoint,
                                      credential_scopes=[self.fleet.azure.arm_scope],
                                      retry_total=2, **kwargs)

    def _c(self, cluster: str) -> tuple[ClusterConfig, Any]:
        cfg = self.fleet.cluster(cluster)
        return cfg, self.client(cfg.subscription).managed_clusters

    def get_mesh(self, cluster: str) -> MeshState:
        cfg, mc_ops = self._c(cluster)
        self.calls += 1
        try:
            mc = mc_ops.get(cfg.resource_group, cfg.name)
        except AzureError as exc:
            raise translate_azure_error(exc, f"reading cluster {cfg.name}") from exc
        profile = mc.service_mesh_profile
        revisions = list(profile.istio.revisions or []) if profile and profile.istio else []
        mode = getattr(profile.mode, "value", profile.mode) if profile else None
        osm = (mc.addon_profiles or {}).get("openServiceMesh")
        gateways = (profile.istio.components.ingress_gateways or []) if profile and \
            profile.istio and profile.istio.components else []
        ingress = tuple(str(getattr(g.mode, "value", g.mode)) for g in gateways if g.enabled)
        return MeshState(mode=str(mode or "Disabled"), osm_enabled=bool(osm and osm.enabled),
                         ingress=ingress,
                         revisions=revisions,
                         provisioning_state=mc.provisioning_state or "Unknown",
                         kubernetes_version=mc.current_kubernetes_version
                         or mc.kubernetes_version or "",
                         location=mc.location)

    def upgrade_targets(self, cluster: str) -> list[str]:
        cfg, mc_ops = self._c(cluster)
        self.calls += 1
        try:
            profile = mc_ops.get_mesh_upgrade_profile(cfg.resource_group, cfg.name, "istio")
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise translate_azure_error(exc, f"reading meshUpgradeProfiles of {cfg.name}") from exc
        return list(profile.properties.upgrades or []) if profile.properties else []

    def _put(self, cluster: str, mutate: Any, what: str) -> str | None:
        """GET the managed cluster, ``mutate`` it, PUT it back without waiting
        (``polling=False``); returns the ``Azure-AsyncOperation`` URL to follow."""
        cfg, mc_ops = self._c(cluster)
        headers: dict[str, str] = {}
        self.calls += 2
        try:
            mc = mc_ops.get(cfg.resource_group, cfg.name)
        except AzureError as exc:
            raise translate_azure_error(exc, f"reading cluster {cfg.name}") from exc
        mutate(mc)
        try:
            mc_ops.begin_create_or_update(
                cfg.resource_group, cfg.name, mc, polling=False,
                raw_response_hook=lambda r: headers.update(r.http_response.headers))
        except AzureError as exc:
            raise translate_azure_error(exc, f"{what} on {cfg.name}") from exc
        return headers.get("Azure-AsyncOperation") or headers.get("azure-asyncoperation")

    def set_revisions(self, cluster: str, revisions: list[str]) -> str | None:
        def mutate(mc: Any) -> None:
            mc.service_mesh_profile.istio.revisions = list(revisions)

        return self._put(cluster, mutate, f"setting revisions {revisions}")

    def set_mesh(self, cluster: str, mode: str, revision: str | None) -> str | None:
        from azure.mgmt.containerservice.models import IstioServiceMesh, ServiceMeshProfile

        def mutate(mc: Any) -> None:
            if mode == "Istio":
                mc.service_mesh_profile = ServiceMeshProfile(
                    mode="Istio", istio=IstioServiceMesh(revisions=[revision] if revision
                                                         else None))
            else:
                mc.service_mesh_profile = ServiceMeshProfile(mode="Disabled")

        return self._put(cluster, mutate, f"setting the mesh to {mode}")

    def set_ingress(self, cluster: str, mode: str, enabled: bool) -> str | None:
        from azure.mgmt.containerservice.models import IstioComponents, IstioIngressGateway

        def mutate(mc: Any) -> None:
            istio = mc.service_mesh_profile.istio
            if istio.components is None:
                istio.components = IstioComponents(ingress_gateways=[])
            gateways = [g for g in istio.components.ingress_gateways or []
                        if str(getattr(g.mode, "value", g.mode)) != mode]
            gateways.append(IstioIngressGateway(mode=mode, enabled=enabled))
            istio.components.ingress_gateways = gateways

        return self._put(cluster, mutate, f"setting the {mode} ingress gateway")

    def operation_status(self, cluster: str, url: str) -> OperationStatus:
        cfg, _ = self._c(cluster)
        self.calls += 1
        what = f"polling the operation on {cfg.name}"
        try:
            resp = self.client(cfg.subscription).send_request(HttpRequest("GET", url))
            resp.raise_for_status()
        except AzureError as exc:
            raise translate_azure_error(exc, what) from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise ArmError(f"{what}: ARM's answer is not JSON ({resp.text()[:200]})") from exc
        error = body.get("error") or {}
        return OperationStatus(body.get("status", "InProgress"), error.get("code"),
                               error.get("message"), retry_after_s(resp.headers))

    def revision_profiles(self, cluster: str) -> list[RevisionProfile]:
        """``meshRevisionProfiles`` of the cluster's region, from
        ``GET .../locations/{location}/meshRevisionProfiles``; ``kubernetes`` joins the
        versions of every ``compatibleWith`` entry (KubernetesOfficial, AKSLongTermSupport)."""
        cfg, mc_ops = self._c(cluster)
        self.calls += 1
        try:
            profiles = list(mc_ops.list_mesh_revision_profiles(cfg.location))
        except AzureError as exc:
            raise translate_azure_error(
                exc, f"reading meshRevisionProfiles of {cfg.location}") from exc
        out = []
        for profile in profiles:
            for rev in (profile.properties.mesh_revisions or []) if profile.properties else []:
                versions = sorted({v for c in rev.compatible_with or [] for v in c.versions or []},
                                  key=lambda v: tuple(int(x) for x in v.split(".")))
                out.append(RevisionProfile(rev.revision, tuple(rev.upgrades or []),
                                           tuple(versions)))
        return out

    def kubeconfig(self, cluster: str, admin: bool = False) -> bytes:
        """The kubeconfig of ``listClusterUserCredential`` (or ``...AdminCredential``)."""
        cfg, mc_ops = self._c(cluster)
        try:
            if admin:
                result = mc_ops.list_cluster_admin_credentials(cfg.resource_group, cfg.name)
            else:
                result = mc_ops.list_cluster_user_credentials(cfg.resource_group, cfg.name)
        except AzureError as exc:
            raise translate_azure_error(exc, f"getting credentials of {cfg.name}") from exc
        return bytes(result.kubeconfigs[0].value)
