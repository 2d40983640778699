"""Configuration: the fleet YAML file and the environment (DESIGN.md §7).

Validated with pydantic at start; an invalid file fails with the path of each bad field and
the reason (``clusters.prod.approvers: List should have at least 1 item``), never later.
Secrets come only from the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import promql_parser
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.errors import ConfigError, InvalidCommand, UnknownCluster
from workflows.maintenance import MaintenanceWindow, MaintenanceWindowError, parse_config_window
from workflows.metric_templates import render
from workflows.model import FLEET_SCOPE, GateThresholds, MetricTemplate, UpgradeOptions
from workflows.policy import ClusterPolicy
from workflows.syntax import (
    BAKE_BOUNDS_S,
    CLUSTER_RE,
    INTERVAL_BOUNDS_S,
    WAVE_SIZE_BOUNDS,
    duration_text,
    parse_duration,
    timing_problem,
)

_T = TypeVar("_T")


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except InvalidCommand as exc:
            raise ValueError(str(exc)) from exc
    return value


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
#: a label's key and value as Kubernetes allows them (an optional DNS-subdomain prefix and a
#: name of up to 63 characters; values up to 63, possibly empty): "Labels and Selectors",
#: kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _slack_ids(v: list[str]) -> list[str]:
    bad = [x for x in v if not SLACK_ID.match(x)]
    if bad:
        raise ValueError(f"not Slack user or user group ids (U…, W…, S…): {', '.join(bad)}")
    return v


def _labels(v: dict[str, str]) -> dict[str, str]:
    bad = [f"{k}: {val}" for k, val in v.items()
           if not LABEL_KEY.match(k) or not LABEL_VALUE.match(str(val))]
    if bad:
        raise ValueError(f"not Kubernetes-style labels (key: [prefix/]name of letters, digits, "
                         f"-, _ and . up to 63; value the same or empty): {', '.join(bad)}")
    return v


def _window(value: Any) -> Any:
    """A window in the fleet file's snake_case form (workflows.maintenance), its errors
    naming the field."""
    if isinstance(value, dict):
        try:
            return parse_config_window(value, "maintenance_window")
        except MaintenanceWindowError as exc:
            raise ValueError(str(exc)) from exc
    return value


Window = Annotated[MaintenanceWindow, BeforeValidator(_window)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(Strict):
    command: str = Field("/mesh", pattern=r"^/[a-z0-9_-]{1,31}$")
    api_url: str = Field("https://slack.com/api/", pattern=r"^https?://")
    #: the Slack app's id (A…): requests of any other app are refused
    app_id: str | None = Field(None, pattern=r"^A[A-Z0-9]{2,}$")


#: Azure clouds: ARM endpoint, Entra authority, Azure Monitor managed Prometheus token
#: audience (Azure docs "National clouds", "Query Prometheus metrics using the API and PromQL")
CLOUDS: dict[str, dict[str, str]] = {
    "AzureCloud": {"arm": "https://management.azure.com",
                   "authority": "login.microsoftonline.com",
                   "prometheus": "https://prometheus.monitor.azure.com"},
    "AzureUSGovernment": {"arm": "https://management.usgovcloudapi.net",
                          "authority": "login.microsoftonline.us",
                          "prometheus": "https://prometheus.monitor.azure.us"},
    "AzureChinaCloud": {"arm": "https://management.chinacloudapi.cn",
                        "authority": "login.chinacloudapi.cn",
                        "prometheus": "https://prometheus.monitor.azure.cn"},
}


class AzureConfig(Strict):
    #: the Azure cloud: its ARM endpoint, sign-in authority and token audiences
    cloud: Literal["AzureCloud", "AzureUSGovernment", "AzureChinaCloud"] = "AzureCloud"
    #: ARM's endpoint; by default the cloud's (a proxy, or the sandbox, may differ)
    arm_endpoint: str = Field("", pattern=r"^(https://.*)?$")
    #: PEM bundle to trust for ARM (a TLS-inspecting proxy, or the sandbox's certificate)
    ca_bundle: Path | None = None

    @field_validator("ca_bundle")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no file at {v}")
        return v

    @model_validator(mode="after")
    def _endpoint(self) -> AzureConfig:
        if not self.arm_endpoint:
            object.__setattr__(self, "arm_endpoint", CLOUDS[self.cloud]["arm"])
        return self

    @property
    def arm_scope(self) -> str:
        """The token scope of ARM calls: the ARM endpoint's ``/.default``."""
        return self.arm_endpoint.rstrip("/") + "/.default"

    @property
    def authority(self) -> str:
        """The Microsoft Entra authority host of the cloud (``login.microsoftonline.us``)."""
        return CLOUDS[self.cloud]["authority"]

    @property
    def prometheus_scope(self) -> str:
        """The token scope of Azure Monitor managed Prometheus queries in this cloud."""
        return CLOUDS[self.cloud]["prometheus"] + "/.default"


class UpgradeConfig(Strict):
    """An upgrade's defaults; the same bounds as the command's flags (workflows.syntax)."""

    bake: Seconds | None = None
    interval: Seconds | None = None
    wave_size: int | None = Field(None, ge=WAVE_SIZE_BOUNDS[0], le=WAVE_SIZE_BOUNDS[1])
    pilot: list[str] | None = None
    waves: list[list[str]] | None = None
    approve_waves: bool | None = None

    @model_validator(mode="after")
    def _bounds(self) -> UpgradeConfig:
        for name, (low, high) in (("bake", BAKE_BOUNDS_S), ("interval", INTERVAL_BOUNDS_S)):
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be between {duration_text(low)} and "
                                 f"{duration_text(high)}; {duration_text(value)} is not")
        if self.bake is not None and self.interval is not None:
            problem = timing_problem(self.bake, self.interval)
            if problem:
                raise ValueError(problem)
        return self

    def as_options(self) -> dict[str, Any]:
        names = {"bake": "bake_s", "interval": "interval_s"}
        return {names.get(k, k): v for k, v in self.model_dump().items() if v is not None}


class MetricTemplateConfig(Strict):
    """A gate metric of the team's (``gates.metrics``): its PromQL is parsed at load, with
    the placeholders filled in, so a bad query is refused with the parser's error."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    query: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _valid(self) -> MetricTemplateConfig:
        if self.min is None and self.max is None:
            raise ValueError("a metric needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        sample = render(MetricTemplate(name=self.name, query=self.query), "default", 60)
        try:
            promql_parser.parse(sample)
        except ValueError as exc:
            raise ValueError(f"query is not PromQL ({exc}); with the placeholders filled "
                             f"in it reads: {sample[:200]}") from None
        return self


class CanaryGateConfig(Strict):
    """``gates.canary``: the canary gate's statistics (:class:`workflows.model.
    CanaryThresholds`); rates in percentage points, growth as a fraction (1.0 = ×2)."""

    #: at most this share of healthy waves rolled back / of regressions let through
    false_rollback: float | None = Field(None, gt=0, lt=0.5)
    missed: float | None = Field(None, gt=0, lt=0.5)
    error_tolerance_pts: float | None = Field(None, ge=0, le=100)
    error_detect_pts: float | None = Field(None, gt=0, le=100)
    latency_tolerance: float | None = Field(None, ge=0)
    latency_detect: float | None = Field(None, gt=0)
    tail_detect: float | None = Field(None, gt=0)
    tcp_tolerance_pts: float | None = Field(None, ge=0, le=100)
    tcp_detect_pts: float | None = Field(None, gt=0, le=100)
    restart_detect_per_h: float | None = Field(None, gt=0)
    #: the traffic before the move each namespace is compared with
    baseline: Seconds | None = Field(None, gt=0, le=86400)
    #: the bake grows by at most this × the bake time while traffic is short
    max_extension: float | None = Field(None, ge=0, le=10)
    #: not-yet-migrated namespaces read as the control, at most
    max_control: int | None = Field(None, ge=1, le=200)

    @model_validator(mode="after")
    def _ordered(self) -> CanaryGateConfig:
        for low, high in (("error_tolerance_pts", "error_detect_pts"),
                          ("latency_tolerance", "latency_detect"),
                          ("tcp_tolerance_pts", "tcp_detect_pts")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo >= hi:
                raise ValueError(f"{low} ({lo:g}) must be below {high} ({hi:g}): what is "
                                 "tolerated must be smaller than what must be caught")
        return self

    def as_thresholds(self) -> dict[str, Any]:
        names = {"baseline": "baseline_s"}
        return {names.get(k, k): v for k, v in self.model_dump().items() if v is not None}


class GatesConfig(Strict):
    min_success_rate: float | None = Field(None, ge=0, le=100)
    max_success_rate_drop: float | None = Field(None, ge=0)
    max_p99_ms: float | None = Field(None, gt=0)
    max_p99_ratio: float | None = Field(None, ge=1)
    min_requests: int | None = Field(None, ge=1)
    failure_threshold: int | None = Field(None, ge=1)
    error_limit: int | None = Field(None, ge=1)
    rollout_deadline: Seconds | None = None
    metrics: list[MetricTemplateConfig] | None = None
    canary: CanaryGateConfig | None = None

    def as_thresholds(self) -> dict[str, Any]:
        names = {"rollout_deadline": "rollout_deadline_s"}
        out = {names.get(k, k): v for k, v in self.model_dump().items()
               if v is not None and k != "canary"}
        if self.canary is not None:
            out["canary"] = self.canary.as_thresholds()
        return out


class ApprovalsConfig(Strict):
    #: an approval request (plan, wave, completion, pause) expires after this; unset: never
    timeout: Seconds | None = None
    #: what an expired request does after the plan: hold (wait on) or rollback
    on_timeout: Literal["hold", "rollback"] | None = None

    def as_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timeout is not None:
            out["approval_timeout_s"] = self.timeout
        if self.on_timeout is not None:
            out["on_timeout"] = self.on_timeout
        return out


class Defaults(Strict):
    upgrade: UpgradeConfig = UpgradeConfig()
    gates: GatesConfig = GatesConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()


class PrometheusConfig(Strict):
    url: str = Field(pattern=r"^https?://")
    #: label matchers added to every query, e.g. {cluster: aks-prod} for a shared Prometheus
    selector: dict[str, str] = Field(default_factory=dict)
    #: "azure": an Entra token for Azure Monitor managed Prometheus (DefaultAzureCredential)
    auth: Literal["none", "azure"] = "none"
    #: the label of Istio's series holding the reporting pod's istio.io/rev, when the scrape
    #: job copies pod labels (Azure Monitor's pod-annotation job: istio_io_rev); unset: the
    #: revision is told from the proxy's version, istio_build (workers/prom/windows.py)
    revision_label: str | None = Field(None, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    #: how often Istio's proxies are scraped (Azure Monitor managed Prometheus: 30s); a
    #: traffic window holds two scrapes at least
    scrape_interval: Seconds = Field(30.0, gt=0)
    #: the newest part of the gate's range answers that is always read again, never taken
    #: from meshops' results cache (workers/prom/cache.py): samples may still be arriving
    #: there. Grafana Mimir's query-frontend default, 10m, suits Azure Monitor's ingestion
    #: delay; a Prometheus that scrapes the proxies itself needs two scrape intervals
    cache_freshness: Seconds = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _token_over_tls(self) -> PrometheusConfig:
        if self.auth == "azure" and not self.url.startswith("https://"):
            raise ValueError("auth: azure sends an Entra token: the url must be https://")
        return self


class KubernetesConfig(Strict):
    #: user: listClusterUserCredential; admin: listClusterAdminCredential; or a kubeconfig file
    credential: Literal["user", "admin"] = "user"
    kubeconfig: Path | None = None
    context: str | None = None


class ClusterConfig(Strict):
    subscription: str = Field(pattern=r"^[0-9a-fA-F-]{36}$")
    resource_group: str = Field(min_length=1, max_length=90)
    name: str = Field(min_length=1, max_length=63)
    location: str = Field(pattern=r"^[a-z0-9]+$")
    channel: str = Field(pattern=r"^[CG][A-Z0-9]{2,}$")
    requesters: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(min_length=1)
    allow_self_approval: bool = False
    # who else may pause, resume, cancel and roll back runs (default: only the requester
    # and the approvers)
    operators: list[str] = Field(default_factory=list)
    kubernetes: KubernetesConfig = KubernetesConfig()
    prometheus: PrometheusConfig
    upgrade: UpgradeConfig = UpgradeConfig()
    gates: GatesConfig = GatesConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    #: for campaign stages' selectors (``env: dev``, ``region: westeurope``)
    labels: dict[str, str] = Field(default_factory=dict)
    #: when a campaign may start and complete this cluster's run when the cluster has no AKS
    #: maintenance configuration of its own (AKS's ``aksManagedAutoUpgradeSchedule`` wins)
    maintenance_window: Window | None = None
    #: policy upgrades (issue 14), run by meshops itself as requester ``meshops`` and
    #: approved by the cluster's approvers like any run: ``patch`` starts the rollover of a
    #: patch once the control plane runs it, inside the maintenance window; ``minor`` does
    #: that too and, with ``campaigns``, starts a campaign proposal when a revision becomes
    #: available in the region or the one it runs nears its end of support; ``none``:
    #: notices and buttons only
    auto: Literal["none", "patch", "minor"] = "none"

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @field_validator("requesters", "approvers", "operators")
    @classmethod
    def _slack_ids(cls, v: list[str]) -> list[str]:
        return _slack_ids(v)


class ReleasesConfig(Strict):
    """The release watcher: the GitHub releases API of Azure/AKS and its raw CHANGELOG."""

    feed_url: str = Field("https://api.github.com/repos/Azure/AKS/releases",
                          pattern=r"^https?://")
    changelog_url: str | None = Field(
        "https://raw.githubusercontent.com/Azure/AKS/master/CHANGELOG.md", pattern=r"^https?://")
    interval: Seconds = 600.0
    enabled: bool = True


class StageConfig(Strict):
    """One ring of a campaign: which clusters, how many at once, how many may fail."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    #: by fleet name
    clusters: list[str] = Field(default_factory=list)
    #: by labels: every pair must match (Kubernetes ``matchLabels``)
    selector: dict[str, str] = Field(default_factory=dict)
    max_concurrency: int = Field(1, ge=1, le=50)
    #: clusters rolled back or failed before the campaign halts (0: the first halts it)
    max_failures: int = Field(0, ge=0)
    #: a person approves before the stage starts
    approval: bool = False
    #: after the stage's last run completes, the gate keeps watching its clusters this long
    soak: Seconds = Field(0.0, le=7 * 86400)

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    @model_validator(mode="after")
    def _chooses(self) -> StageConfig:
        if not self.clusters and not self.selector:
            raise ValueError(f"stage {self.name!r} chooses no cluster: give `clusters` "
                             "(names) or `selector` (labels), or both")
        return self


class CampaignsConfig(Strict):
    """Fleet campaigns (issue 14): where they are posted, who approves, the rings."""

    channel: str = Field(pattern=r"^[CG][A-Z0-9]{2,}$")
    #: who may start a campaign (empty: anyone), approve it and its stages, and who else
    #: may pause, halt, resume or cancel one; as a cluster's
    requesters: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(min_length=1)
    allow_self_approval: bool = False
    operators: list[str] = Field(default_factory=list)
    stages: list[StageConfig] = Field(min_length=1)

    @field_validator("requesters", "approvers", "operators")
    @classmethod
    def _slack_ids(cls, v: list[str]) -> list[str]:
        return _slack_ids(v)

    @field_validator("stages")
    @classmethod
    def _unique(cls, v: list[StageConfig]) -> list[StageConfig]:
        names = [s.name for s in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stage names must be unique: {', '.join(twice)} more than once")
        return v


class Fleet(Strict):
    slack: SlackConfig = SlackConfig()
    releases: ReleasesConfig = ReleasesConfig()
    azure: AzureConfig = AzureConfig()
    defaults: Defaults = Defaults()
    clusters: dict[str, ClusterConfig] = Field(min_length=1)
    campaigns: CampaignsConfig | None = None
    #: what :meth:`_memo` made: (what, cluster) → value
    _made: dict[tuple[str, str], Any] = PrivateAttr(default_factory=dict)

    @field_validator("clusters")
    @classmethod
    def _names(cls, v: dict[str, ClusterConfig]) -> dict[str, ClusterConfig]:
        bad = [k for k in v if not CLUSTER_RE.match(k)]
        if bad:
            raise ValueError(f"cluster names must be lowercase letters, digits and dashes: "
                             f"{', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _timing(self) -> Fleet:
        """Each cluster's bake and interval, defaults merged, go together."""
        for short in self.clusters:
            opts = self.upgrade_options(short, {})
            problem = timing_problem(opts.bake_s, opts.interval_s)
            if problem:
                raise ValueError(f"clusters.{short}.upgrade: {problem}")
        return self

    @model_validator(mode="after")
    def _stages(self) -> Fleet:
        """A stage names only clusters of the fleet."""
        for i, stage in enumerate(self.campaigns.stages if self.campaigns else []):
            unknown = [c for c in stage.clusters if c not in self.clusters]
            if unknown:
                raise ValueError(f"campaigns.stages.{i}.clusters: no cluster "
                                 f"{', '.join(unknown)} in `clusters` (known: "
                                 f"{', '.join(sorted(self.clusters))})")
        return self

    def cluster(self, short: str) -> ClusterConfig:
        """The cluster's configuration; ``UnknownCluster`` lists the known names."""
        if short not in self.clusters:
            raise UnknownCluster(short, sorted(self.clusters))
        return self.clusters[short]

    def access(self, scope: str) -> ClusterConfig | CampaignsConfig:
        """Who may act on the runs of ``scope`` and where they are posted: a cluster's
        configuration, or for :data:`FLEET_SCOPE` (campaigns) the ``campaigns`` section.

        Raises:
            UnknownCluster: no such cluster.
            InvalidCommand: a campaign asked of a fleet file without ``campaigns``.
        """
        if scope == FLEET_SCOPE:
            if self.campaigns is None:
                raise InvalidCommand(
                    "The fleet file has no `campaigns:` section: campaigns need its stages "
                    "(clusters by name or labels, in order), a channel and approvers. See "
                    "`examples/fleet.azure.yaml`.")
            return self.campaigns
        return self.cluster(scope)

    def upgrade_options(self, short: str, overrides: dict[str, Any]) -> UpgradeOptions:
        """The cluster's upgrade options (its ``upgrade`` and ``approvals`` over the
        defaults') with a command's ``overrides``; without any, made once per cluster
        (the file does not change under a process, and the bot's ack waits for this)."""
        if not overrides:
            return self._memo(("upgrade_options", short),
                              lambda: self._upgrade_options(short, {}))
        return self._upgrade_options(short, overrides)

    def _upgrade_options(self, short: str, overrides: dict[str, Any]) -> UpgradeOptions:
        own = ({} if short == FLEET_SCOPE else
               {**self.clusters[short].upgrade.as_options(),
                **self.clusters[short].approvals.as_options()})
        merged = {**self.defaults.upgrade.as_options(), **self.defaults.approvals.as_options(),
                  **own, **overrides}
        return UpgradeOptions(**merged)

    def thresholds(self, short: str) -> GateThresholds:
        """The cluster's gate: its ``gates`` over the defaults' (``canary`` merged field
        by field); the defaults' for :data:`FLEET_SCOPE`. Made once per cluster."""
        return self._memo(("thresholds", short), lambda: self._thresholds(short))

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Fleet:
        """A copy (pydantic's), with nothing of :meth:`_memo`'s: a copy with other
        clusters or defaults must not answer with this one's options."""
        copy = super().model_copy(update=update, deep=deep)
        copy._made = {}
        return copy

    def _memo(self, key: tuple[str, str], make: Callable[[], _T]) -> _T:
        if key not in self._made:  # a race makes it twice, equal: harmless
            self._made[key] = make()
        return cast(_T, self._made[key])

    def _thresholds(self, short: str) -> GateThresholds:
        base = self.defaults.gates.as_thresholds()
        own = ({} if short == FLEET_SCOPE else
               self.clusters[short].gates.as_thresholds())
        canary = {**base.get("canary", {}), **own.get("canary", {})}
        return GateThresholds(**{**base, **own, "canary": canary})

    def policy(self, short: str, groups: dict[str, frozenset[str]] | None = None
               ) -> ClusterPolicy:
        """The access policy of a cluster's runs (or, for :data:`FLEET_SCOPE`, of
        campaigns), with user groups (``S…``) expanded through ``groups``."""
        c = self.access(short)

        def expand(ids: list[str]) -> frozenset[str]:
            out: set[str] = set()
            for i in ids:
                out |= (groups or {}).get(i, frozenset()) if i.startswith("S") else {i}
            return frozenset(out)

        return ClusterPolicy(requesters=expand(c.requesters), approvers=expand(c.approvers),
                             allow_self_approval=c.allow_self_approval,
                             operators=expand(c.operators), restricted=bool(c.requesters))


def _format(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid fleet file"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling and place)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid; one line per bad field,
            ``clusters.dev.prometheus.url: String should match pattern '^https?://'``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such fleet file (set MESHOPS_FLEET or --fleet)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the fleet file must be a mapping with `clusters:`")
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, path)) from exc


class Settings(BaseSettings):
    """The environment (secrets and endpoints; DESIGN.md §7)."""

    model_config = SettingsConfigDict(extra="ignore")

    slack_bot_token: str = ""
    slack_app_token: str = ""
    slack_signing_secret: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    meshops_fleet: Path = Path("fleet.yaml")
    meshops_redis_prefix: str = "meshops"
    meshops_log_level: str = "INFO"
    github_token: str = ""  # optional: a higher rate limit for the releases API
    meshops_releases_push_secret: str = ""  # HMAC secret of pushed releases

    def require(self, *names: str) -> None:
        missing = [n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(f"missing environment: {', '.join(missing)}")


def settings() -> Settings:
    """The environment, read now (pydantic-settings matches names case-insensitively)."""
    return Settings()
