"""Wiring: the adapters of a fleet (``FleetPorts``) and the one ``Engine`` the bot and the
worker both use, built from the environment and the fleet file."""

from __future__ import annotations

from workers.arm.aks import AksMeshApi
from workers.config import Fleet
from workers.kube.cluster import KubernetesClusterApi, api_client_from_kubeconfig
from workers.prom.metrics import PrometheusMetricsApi


class FleetPorts:
    """Implements :class:`workflows.ports.ClusterPorts` over a fleet file, caching clients."""

    def __init__(self, fleet: Fleet, mesh: AksMeshApi | None = None):
        self.fleet = fleet
        self.mesh = mesh or AksMeshApi(fleet)
        self._clusters: dict[str, KubernetesClusterApi] = {}
        self._metrics: dict[str, PrometheusMetricsApi] = {}

    def cluster_api(self, cluster: str) -> KubernetesClusterApi:
        if cluster not in self._clusters:
            cfg = self.fleet.cluster(cluster)
            if cfg.kubernetes.kubeconfig:
                raw = cfg.kubernetes.kubeconfig.read_bytes()
            else:
                raw = self.mesh.kubeconfig(cluster, admin=cfg.kubernetes.credential == "admin")
            self._clusters[cluster] = KubernetesClusterApi(
                api_client_from_kubeconfig(raw, cfg.kubernetes.context), cluster)
        return self._clusters[cluster]

    def metrics(self, cluster: str) -> PrometheusMetricsApi:
        if cluster not in self._metrics:
            p = self.fleet.cluster(cluster).prometheus
            cred = self.mesh.credential if p.auth == "azure" else None
            self._metrics[cluster] = PrometheusMetricsApi(p.url, p.selector, cred)
        return self._metrics[cluster]
