"""Wiring: the adapters of a fleet (``FleetPorts``) and the one ``Engine`` the bot and the
worker both use, built from the environment and the fleet file."""

from __future__ import annotations

from slack_sdk import WebClient

from workers.arm.aks import AksMeshApi
from workers.config import Fleet, Settings
from workers.engine import Engine
from workers.kube.cluster import KubernetesClusterApi, api_client_from_kubeconfig
from workers.prom.cache import WindowCache
from workers.prom.metrics import PrometheusMetricsApi
from workers.slack.client import UserGroups, make_client
from workers.store.audit import AuditLog
from workers.store.runs import RedisRunStore
from workflows.campaign import CampaignApi
from workflows.ports import MeshApi


class FleetPorts:
    """Implements :class:`workflows.ports.ClusterPorts` over a fleet file, caching clients."""

    def __init__(self, fleet: Fleet, mesh: AksMeshApi | None = None,
                 window_cache: WindowCache | None = None):
        """``window_cache``: where the clusters' bake looks keep their windows (a worker's:
        :class:`RedisWindowCache`, shared by its pool processes); None: the process's."""
        self.fleet = fleet
        self.window_cache = window_cache
        self.aks = mesh or AksMeshApi(fleet)  # also the credentials and kubeconfigs
        self.mesh: MeshApi = self.aks
        self._clusters: dict[str, KubernetesClusterApi] = {}
        self._metrics: dict[str, PrometheusMetricsApi] = {}
        #: the campaign API a worker gives its steps (workflows.campaign.campaign_api); a
        #: process that does not tick runs (the bot) has none
        self.campaign: CampaignApi | None = None

    def cluster_api(self, cluster: str) -> KubernetesClusterApi:
        if cluster not in self._clusters:
            cfg = self.fleet.cluster(cluster)
            if cfg.kubernetes.kubeconfig:
                raw = cfg.kubernetes.kubeconfig.read_bytes()
            else:
                raw = self.aks.kubeconfig(cluster, admin=cfg.kubernetes.credential == "admin")
            self._clusters[cluster] = KubernetesClusterApi(
                api_client_from_kubeconfig(raw, cfg.kubernetes.context, self.aks.credential),
                cluster)
        return self._clusters[cluster]

    def metrics(self, cluster: str) -> PrometheusMetricsApi:
        if cluster not in self._metrics:
            p = self.fleet.cluster(cluster).prometheus
            cred = self.aks.credential if p.auth == "azure" else None
            self._metrics[cluster] = PrometheusMetricsApi(
                p.url, p.selector, cred, scope=self.fleet.azure.prometheus_scope,
                revision_label=p.revision_label, scrape_interval_s=p.scrape_interval,
                cache_freshness_s=p.cache_freshness, cache=self.window_cache)
        return self._metrics[cluster]


def build_engine(env: Settings, fleet: Fleet, client: WebClient | None = None, *,
                 store: RedisRunStore | None = None, ports: FleetPorts | None = None
                 ) -> Engine:
    """The ``Engine`` of the bot and of every worker, built the same way for both.

    Args:
        env: the environment: ``REDIS_URL`` and ``MESHOPS_REDIS_PREFIX`` for the run store and
            the audit stream, ``SLACK_BOT_TOKEN`` when ``client`` is not given.
        fleet: the validated fleet file.
        client: the Slack Web API client the process already has; by default one for
            ``fleet.slack.api_url`` with ``env.slack_bot_token``.
        store / ports: the run store and adapters when the caller uses them directly too
            (the worker's sweep and watcher); by default made from ``env`` and ``fleet``.

    Returns:
        An engine over a :class:`RedisRunStore`, the fleet's adapters (:class:`FleetPorts`),
        the audit stream, and Slack user groups (``S…``) among approvers and requesters
        expanded through ``usergroups.users.list`` (:class:`UserGroups`), so the bot and the
        worker give the same answer to who may request or approve.
    """
    if client is None:
        client = make_client(env.slack_bot_token, fleet.slack.api_url)
    if store is None:
        store = RedisRunStore.from_url(env.redis_url, env.meshops_redis_prefix)
    return Engine(fleet, store, ports or FleetPorts(fleet), groups=UserGroups(client, fleet),
                  audit=AuditLog(store.r, store.p))
