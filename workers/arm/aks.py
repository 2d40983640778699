"""``AksMeshApi``: the managed cluster's service mesh through ARM, on azure-mgmt-containerservice.

Contracts: Microsoft.ContainerService managedClusters (``serviceMeshProfile``,
``meshUpgradeProfiles``, ``listClusterUserCredential``) and ARM's asynchronous operations
("Track asynchronous Azure operations": ``Azure-AsyncOperation``, else ``Location``, else the
resource's ``provisioningState``; ``Retry-After``), examples in ``../shared/data/aks/arm/``.

A PUT is a long-running operation that no worker waits on. It is followed with azure-core's
own LRO machinery (azure-mgmt-core's ``ARMPolling``), one step a workflow tick: the PUT hands
back ARMPolling's continuation token (the PUT's request and first answer; JSON, not pickle,
since azure-core 1.41), the run keeps it, and each later tick, in whichever worker, restores
the poller from it and asks ARM once (``update_status``). ``LROPoller``'s own loop (a thread
that sleeps ``Retry-After`` between polls; ``result()``) is never used: ARM's ``Retry-After``
goes back to the workflow as the delay of its next tick.

azure-core's exceptions, and only those, are translated by
:func:`workers.arm.errors.translate_azure_error` (409, 429 and 5xx are temporary; the rest
permanent, with ARM's code and message); the poller's own (``BadStatus``, ``BadResponse``)
become azure-core's first, as ``LROBasePolling.run`` turns them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, DecodeError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling.base_polling import BadResponse, BadStatus
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.polling.arm_polling import ARMPolling

from workers.arm.errors import translate_azure_error
from workers.config import ClusterConfig, Fleet
from workflows.errors import ArmError
from workflows.maintenance import MaintenanceWindow, MaintenanceWindowError, parse_arm_window
from workflows.ports import MeshState, OperationStatus, RevisionProfile

#: ARM's final operation statuses as the core spells them (azure-core reads them case-blind)
_FINAL = {s.lower(): s for s in ("Succeeded", "Failed", "Canceled")}
#: only for reading ``Retry-After`` as azure-core reads it (``Retry-After`` in seconds or as
#: an HTTP-date, else ``retry-after-ms`` / ``x-ms-retry-after-ms``), the reading
#: LROBasePolling spaces its own polls by
_RETRY_AFTER = RetryPolicy()


class TickPolling(ARMPolling):
    """azure-mgmt-core's ARM poller, stepped by the caller: at most one status GET a step.

    ARMPolling chooses how to follow the operation from the PUT's first answer
    (``Azure-AsyncOperation``, else ``Location``, else the resource's ``provisioningState``)
    and gives and takes continuation tokens. Its ``run`` would poll until the operation ends,
    sleeping in between, in the thread the SDK's ``LROPoller`` starts; here ``run`` does
    nothing, so that thread ends at once, and :meth:`step` polls once.
    """

    def run(self) -> None:
        """Nothing: the workflow steps the operation, one :meth:`step` a tick."""

    def step(self) -> bool:
        """One GET of the polling URL, unless the operation has already ended.

        Returns:
            whether ARM was asked.
        Raises:
            HttpResponseError: ARM answered the poll outside 2xx (status, headers and ARM's
                error body kept), as ``LROBasePolling.run`` raises it.
            DecodeError: the answer is not JSON, or has no ``status``.
            AzureError: no answer (``ServiceRequestError``, ``ServiceResponseError``).
        """
        if self.finished():
            return False
        try:
            self.update_status()
        except BadStatus as err:
            raise HttpResponseError(response=self.last_response().http_response,
                                    error_format=ARMErrorFormat) from err
        except BadResponse as err:
            raise DecodeError(str(err), response=self.last_response().http_response) from err
        return True

    def last_response(self) -> Any:
        """The PipelineResponse of the last poll; the PUT's (restored) before the first."""
        return self._pipeline_response

    def operation_status(self) -> OperationStatus:
        """The status of the last answer, its ``error`` (code, message) and ``Retry-After``.

        The status is ARM's: ``InProgress``, or a ``provisioningState`` (``Updating``) when
        ARM gave no status URL; the final ones spelt ``Succeeded``, ``Failed``,
        ``Canceled``. ``Retry-After`` is read from a poll's answer only (0 before the first):
        the PUT's own is as old as the run's last tick.
        """
        response = self.last_response()
        status = str(self.status())
        status = _FINAL.get(status.lower(), status)
        try:
            body = json.loads(response.http_response.text() or "{}")
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        delay = 0.0
        if response is not self._initial_response:
            try:
                delay = _RETRY_AFTER.get_retry_after(response) or 0.0
            except ValueError:  # a Retry-After that is neither seconds nor an HTTP-date
                delay = 0.0
        return OperationStatus(status, error.get("code"), error.get("message"), delay)


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
                                      # no retry inside a worker (it would sleep): a 429
                                      # or 5xx is a TemporaryError the run waits out
                                      retry_total=0, **kwargs)

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

    def _put(self, cluster: str, mutate: Any, what: str) -> str:
        """GET the managed cluster, ``mutate`` it and PUT it back without waiting.

        Returns:
            ARMPolling's continuation token for the operation, for :meth:`operation_status`.
        """
        cfg, mc_ops = self._c(cluster)
        self.calls += 2
        try:
            mc = mc_ops.get(cfg.resource_group, cfg.name)
        except AzureError as exc:
            raise translate_azure_error(exc, f"reading cluster {cfg.name}") from exc
        mutate(mc)
        try:
            poller = mc_ops.begin_create_or_update(cfg.resource_group, cfg.name, mc,
                                                   polling=TickPolling())
        except AzureError as exc:
            raise translate_azure_error(exc, f"{what} on {cfg.name}") from exc
        return str(poller.continuation_token())

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

    def operation_status(self, cluster: str, token: str) -> OperationStatus:
        """One poll of the operation a ``set_*`` call started, by its continuation token.

        Any worker may call it, a fresh ``AksMeshApi`` too: the poller is restored from
        ``token`` (the SDK's ``continuation_token=``) and asks ARM once, unless the PUT's
        answer had already ended the operation. A ``token`` that is an ``https://`` URL was
        stored before meshops kept tokens (the ``Azure-AsyncOperation`` URL): that operation
        is followed by the cluster's ``provisioningState`` instead, without ARM's error.

        Returns:
            the status, ARM's error code and message when the status body has an ``error``
            (a Failed or Canceled operation), and the answer's ``Retry-After`` in seconds
            (0 when absent).
        Raises:
            TemporaryError: no answer, 409, 429 or 5xx (``delay_s``: ARM's ``Retry-After``).
            ArmError: any other refusal, an unreadable answer, or a ``token`` that is not a
                continuation token.
        """
        cfg, mc_ops = self._c(cluster)
        what = f"following the ARM operation on {cfg.name}"
        if token.startswith(("https://", "http://")):
            state = _FINAL.get(self.get_mesh(cluster).provisioning_state.lower(), "InProgress")
            unknown = ("ARM's error is not known here (the run was stored before meshops kept "
                       "operation tokens); see the cluster's activity log in the Azure portal")
            return OperationStatus(state, None,
                                   unknown if state in ("Failed", "Canceled") else None)
        polling = TickPolling()
        try:
            # the SDK's resume path restores the poller on its own pipeline client;
            # ``parameters`` is not sent when resuming
            mc_ops.begin_create_or_update(cfg.resource_group, cfg.name, None,
                                          continuation_token=token, polling=polling)
        except ValueError as exc:
            raise ArmError(f"{what}: the run's operation token cannot be read ({exc}). Look "
                           "at the cluster in the Azure portal, then retry or cancel the run."
                           ) from exc
        except AzureError as exc:
            raise translate_azure_error(exc, what) from exc
        try:
            if polling.step():
                self.calls += 1
        except AzureError as exc:
            raise translate_azure_error(exc, what) from exc
        return polling.operation_status()

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

    def maintenance_windows(self, cluster: str) -> dict[str, MaintenanceWindow]:
        """The cluster's planned maintenance windows by configuration name, from
        ``GET .../managedClusters/{name}/maintenanceConfigurations``
        (``maintenance_configurations.list_by_managed_cluster``; AKS doc "Use planned
        maintenance to schedule and control upgrades"). Only configurations with a
        ``maintenanceWindow``: the legacy ``default`` with ``timeInWeek`` hour slots is left
        out (see :meth:`workflows.ports.MeshApi.maintenance_windows`).

        Each window is read from ARM's own JSON (the SDK model's ``as_dict()``: camelCase, as
        ARM answered), the form :func:`workflows.maintenance.parse_arm_window` reads; a field
        that form does not know is refused rather than ignored, since it could move the window.

        Raises:
            TemporaryError: no answer, 409, 429 or 5xx (``delay_s``: ARM's ``Retry-After``).
            ArmError: any other refusal (a missing cluster: 404), or a window that cannot be
                read (the message names the configuration and the field).
        """
        cfg = self.fleet.cluster(cluster)
        ops = self.client(cfg.subscription).maintenance_configurations
        what = f"reading maintenanceConfigurations of {cfg.name}"
        self.calls += 1
        try:
            configs = list(ops.list_by_managed_cluster(cfg.resource_group, cfg.name))
        except AzureError as exc:
            raise translate_azure_error(exc, what) from exc
        out: dict[str, MaintenanceWindow] = {}
        for config in configs:
            if config.maintenance_window is None:
                continue
            try:
                out[str(config.name)] = parse_arm_window(
                    config.maintenance_window.as_dict(),
                    f"maintenance configuration {config.name!r} of {cfg.name}")
            except MaintenanceWindowError as exc:
                raise ArmError(f"{what}: {exc}. Fix it with `az aks maintenanceconfiguration "
                               "update`, or remove it.") from exc
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
