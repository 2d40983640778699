"""The fleet file: the examples validate; an invalid file names the bad field and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meshops.cli import main
from tests.conftest import ROOT
from workers.config import load_fleet
from workflows.errors import ConfigError

GOOD = (ROOT / "examples" / "fleet.azure.yaml").read_text()


def test_examples_validate() -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    assert fleet.upgrade_options("dev-weu", {}).bake_s == 180
    assert fleet.upgrade_options("prod-weu", {"bake_s": 5}).bake_s == 5
    assert fleet.upgrade_options("prod-weu", {}).pilot == ["canary-apps"]
    assert fleet.thresholds("dev-weu").min_requests == 20
    assert fleet.thresholds("prod-weu").rollout_deadline_s == 600
    policy = fleet.policy("prod-weu", {"S0MESHLEADS": frozenset({"U0LEAD"}),
                                       "S0ONCALL": frozenset({"U0PAGER"})})
    assert policy.approvers == {"U0AAAAAAA", "U0LEAD"}
    assert policy.operators == {"U0PAGER"}
    assert fleet.policy("dev-weu").operators == frozenset()  # default: nobody else
    (queue,) = fleet.thresholds("dev-weu").metrics
    assert (queue.name, queue.max, queue.dry_run) == ("queue-errors", 0.5, True)
    assert fleet.clusters["prod-weu"].labels == {"env": "prod", "region": "westeurope"}
    window = fleet.clusters["prod-weu"].maintenance_window
    assert window is not None and window.describe().startswith("every Sunday at 01:00")
    assert fleet.clusters["dev-weu"].maintenance_window is None
    assert fleet.campaigns is not None
    dev, prod = fleet.campaigns.stages
    assert (dev.selector, dev.max_concurrency, dev.soak, dev.approval) == (
        {"env": "dev"}, 2, 3600, False)
    assert (prod.name, prod.approval, prod.max_failures) == ("prod", True, 0)


@pytest.mark.parametrize(("edit", "needle"), [
    (("approvers: [U0AAAAAAA, U0BBBBBBB]", "approvers: []"),
     "clusters.dev-weu.approvers: List should have at least 1 item"),
    (("url: http://prometheus.monitoring.svc:9090", "url: prometheus:9090"),
     "clusters.dev-weu.prometheus.url: String should match pattern"),
    (("    bake: 3m", "    bake: soon"), "clusters.dev-weu.upgrade.bake: `soon` is not a duration"),
    (("    bake: 3m", "    bake: 2s"), "clusters.dev-weu.upgrade: bake must be between 5s and 24h"),
    (('[{{ interval }}]))', '[{{ interval }}])'),
     "defaults.gates.metrics.0: query is not PromQL (unclosed left parenthesis)"),
    (("        max: 0.5 ", "        mx: 0.5 "), "defaults.gates.metrics.0.mx: unknown field"),
    (("    bake: 3m", "    bake: 10s"), "clusters.dev-weu.upgrade: The gate interval (1m)"),
    (("    channel: C0987654321", "    channel: '#mesh-dev'"), "clusters.dev-weu.channel"),
    (("    location: westeurope\n    channel: C0987654321",
      "    location: westeurope\n    chanel: C0987654321"),
     "clusters.dev-weu.chanel: unknown field"),
    (("approvers: [U0AAAAAAA, U0BBBBBBB]", "approvers: [ben]"),
     "not Slack user or user group ids (U…, W…, S…): ben"),
    (("cloud: AzureCloud", "cloud: AzureMoon"), "azure.cloud: Input should be 'AzureCloud'"),
    (("url: https://prom-prod-weu.westeurope.prometheus.monitor.azure.com",
      "url: http://prom-prod-weu.westeurope.prometheus.monitor.azure.com"),
     "auth: azure sends an Entra token: the url must be https://"),
    (("labels: {env: dev, region: westeurope}", "labels: {env: dev, 'tier!': x}"),
     "clusters.dev-weu.labels: not Kubernetes-style labels"),
    (("day_of_week: Sunday}", "day_of_week: Sundy}"),
     "maintenance_window.schedule.weekly.day_of_week: Input should be 'Monday'"),
    (("duration_hours: 4 ", "duration_hours: 2 "),
     "maintenance_window.duration_hours: Input should be greater than or equal to 4"),
    (("end: \"2027-01-02\"", "end: \"2026-12-01\""),
     "not_allowed_dates[0]: end 2026-12-01 is before start 2026-12-23"),
    (("selector: {env: dev}  ", "clusters: [dev-weu, stage-weu]  "),
     "campaigns.stages.0.clusters: no cluster stage-weu in `clusters` (known: dev-weu, "
     "prod-weu)"),
    (("    - name: prod", "    - name: dev"), "campaigns.stages: stage names must be unique"),
    (("      selector: {env: prod}\n", ""),
     "stage 'prod' chooses no cluster: give `clusters` (names) or `selector` (labels)"),
    (("max_concurrency: 2 ", "max_concurrency: 0 "),
     "campaigns.stages.0.max_concurrency: Input should be greater than or equal to 1"),
    (("approvers: [S0MESHLEADS] ", "approvers: [] "),
     "campaigns.approvers: List should have at least 1 item"),
])
def test_invalid_file_names_the_field(tmp_path: Path, edit: tuple[str, str], needle: str
                                      ) -> None:
    assert edit[0] in GOOD
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    assert needle in str(err.value)


@pytest.mark.parametrize(("cloud", "arm", "authority", "prometheus"), [
    ("AzureCloud", "https://management.azure.com", "login.microsoftonline.com",
     "https://prometheus.monitor.azure.com/.default"),
    ("AzureUSGovernment", "https://management.usgovcloudapi.net", "login.microsoftonline.us",
     "https://prometheus.monitor.azure.us/.default"),
    ("AzureChinaCloud", "https://management.chinacloudapi.cn", "login.chinacloudapi.cn",
     "https://prometheus.monitor.azure.cn/.default"),
])
def test_the_cloud_sets_every_endpoint_and_token_scope(
        tmp_path: Path, cloud: str, arm: str, authority: str, prometheus: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD.replace("cloud: AzureCloud", f"cloud: {cloud}", 1))
    fleet = load_fleet(path)
    assert fleet.azure.arm_endpoint == arm and fleet.azure.arm_scope == arm + "/.default"
    assert fleet.azure.authority == authority
    assert fleet.azure.prometheus_scope == prometheus
    from workers.wiring import FleetPorts

    ports = FleetPorts(fleet)
    assert ports.metrics("prod-weu").scope == prometheus
    client = ports.aks.client(fleet.clusters["prod-weu"].subscription)
    assert client._config.credential_scopes == [arm + "/.default"]  # noqa: SLF001


def test_policy_upgrades_per_cluster(tmp_path: Path) -> None:
    """``auto: none|patch|minor`` per cluster (issue 14); none by default; any other value
    names the field and the values it takes."""
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    assert (fleet.clusters["dev-weu"].auto, fleet.clusters["prod-weu"].auto) == ("minor",
                                                                                 "patch")
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD.replace("    auto: minor ", "    auto: none ", 1)
                    .replace("    auto: patch ", "", 1))
    fleet = load_fleet(path)
    assert (fleet.clusters["dev-weu"].auto, fleet.clusters["prod-weu"].auto) == ("none",
                                                                                 "none")
    path.write_text(GOOD.replace("    auto: minor ", "    auto: major ", 1))
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    assert "clusters.dev-weu.auto: Input should be 'none', 'patch' or 'minor'" in str(err.value)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("clusters: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_fleet(bad)
    with pytest.raises(ConfigError, match="no such fleet file"):
        load_fleet(tmp_path / "nope.yaml")


def test_config_check_command_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("clusters: {}\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert "clusters: Dictionary should have at least 1 item" in result.output


def test_worker_refuses_to_start_on_a_broken_fleet(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("clusters:\n  dev: {name: x}\n")
    monkeypatch.setenv("MESHOPS_FLEET", str(path))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 2
    assert "clusters.dev.subscription: Field required" in result.output


def test_prometheus_cache_freshness_defaults_to_mimirs_and_takes_a_duration(
        tmp_path: Path) -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    assert {c.prometheus.cache_freshness for c in fleet.clusters.values()} == {600.0}
    local = "url: http://prometheus.monitoring.svc:9090"
    assert local in GOOD
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD.replace(local, local + "\n      cache_freshness: 1m", 1))
    assert 60.0 in {c.prometheus.cache_freshness for c in load_fleet(path).clusters.values()}
    path.write_text(GOOD.replace(local, local + "\n      cache_freshness: -5s", 1))
    with pytest.raises(ConfigError, match="cache_freshness"):
        load_fleet(path)


def test_a_clusters_options_and_gate_are_made_once_and_a_commands_overrides_are_not_kept(
        ) -> None:
    """The bot's ack reads them for every new run: made once per cluster (the file does not
    change under a process); a command's overrides make their own, and change nothing."""
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    name = sorted(fleet.clusters)[0]
    assert fleet.upgrade_options(name, {}) is fleet.upgrade_options(name, {})
    assert fleet.thresholds(name) is fleet.thresholds(name)
    usual = fleet.upgrade_options(name, {}).bake_s
    told = fleet.upgrade_options(name, {"bake_s": usual + 60})
    assert told.bake_s == usual + 60
    assert fleet.upgrade_options(name, {}).bake_s == usual


def test_a_copy_of_the_fleet_with_other_defaults_answers_with_its_own() -> None:
    fleet = load_fleet(ROOT / "examples" / "fleet.azure.yaml")
    name = sorted(fleet.clusters)[0]
    usual = fleet.upgrade_options(name, {})  # made, and kept, before the copy
    defaults = fleet.defaults.model_copy(update={"upgrade": fleet.defaults.upgrade.model_copy(
        update={"wave_size": usual.wave_size + 1})})
    other = fleet.model_copy(update={"defaults": defaults})
    assert "wave_size" not in fleet.clusters[name].upgrade.as_options()  # the defaults'
    assert other.upgrade_options(name, {}).wave_size == usual.wave_size + 1
    assert fleet.upgrade_options(name, {}) is usual
