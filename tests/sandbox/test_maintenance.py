"""AKS maintenance configurations in the ARM emulator, through the real
azure-mgmt-containerservice SDK (``maintenance_configurations``) and the product's
``AksMeshApi.maintenance_windows``; world files that give clusters their windows.

The bodies PUT are the REST spec's own examples (tests/fixtures/aks/maintenance/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from sandbox.app import Sandbox
from sandbox.worldfile import WorldError, load
from tests.conftest import free_port_base
from tests.sandbox.conftest import running
from workers.arm.aks import AksMeshApi
from workers.wiring import FleetPorts
from workflows.errors import ArmError, TemporaryError
from workflows.maintenance import AUTO_UPGRADE, NODE_OS_UPGRADE, next_window, parse_arm_window

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aks" / "maintenance"
TYPE = "Microsoft.ContainerService/managedClusters/maintenanceConfigurations"

#: the window the world file gives dev: Saturdays 22:00 at +01:00, 6 hours, not over New Year
WORLD_WINDOW = {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Saturday"}},
                "durationHours": 6, "utcOffset": "+01:00", "startDate": "2026-11-01",
                "startTime": "22:00",
                "notAllowedDates": [{"start": "2026-12-20", "end": "2027-01-03"}]}


def example(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def create_example_window() -> dict[str, Any]:
    body = example("MaintenanceConfigurationsCreate_Update_MaintenanceWindow.json")
    return body["parameters"]["parameters"]["properties"]["maintenanceWindow"]  # type: ignore[no-any-return]


def world_file(tmp: Path, maintenance: dict[str, Any]) -> Path:
    path = tmp / "world.yaml"
    path.write_text(yaml.safe_dump({"traffic": {"noise": "none"}, "clusters": [
        {"name": "aks-dev-westus2", "alias": "dev", "resource_group": "rg-mesh-dev",
         "location": "westus2", "kubernetes_version": "1.31.2", "revisions": ["asm-1-25"],
         "maintenance": maintenance},
        {"name": "aks-quiet-westus2", "alias": "quiet", "resource_group": "rg-quiet",
         "location": "westus2", "kubernetes_version": "1.31.2", "revisions": ["asm-1-25"]},
    ]}))
    return path


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tmp = Path(tmp_path_factory.mktemp("maintenance"))
    port_base = free_port_base(10000, 15000, 10)
    with running(Sandbox(tmp / "state", port_base, operation_s=0.5, rollout_s=0.3,
                         with_prometheus=False,
                         world_file=world_file(tmp, {AUTO_UPGRADE: WORLD_WINDOW}))) as sb:
        yield sb


def configs(ports: FleetPorts, cluster: str = "dev") -> tuple[Any, str, str]:
    """The SDK's maintenance_configurations operations and the cluster's resource group
    and AKS name."""
    cfg = ports.fleet.cluster(cluster)
    assert isinstance(ports.mesh, AksMeshApi)
    return (ports.mesh.client(cfg.subscription).maintenance_configurations,
            cfg.resource_group, cfg.name)


def raw(sb: Sandbox, ports: FleetPorts, method: str, name: str, body: Any = None
        ) -> requests.Response:
    """A request to the configuration ``name`` of dev, for what the SDK hides (statuses)."""
    cfg = ports.fleet.cluster("dev")
    assert isinstance(ports.mesh, AksMeshApi)
    token = ports.mesh.credential.get_token("https://management.azure.com/.default").token
    path = (f"/subscriptions/{cfg.subscription}/resourceGroups/{cfg.resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{cfg.name}/maintenanceConfigurations"
            f"/{name}")
    return requests.request(method, sb.url["arm"] + path, params={"api-version": "2026-08-01"},
                            json=body, headers={"Authorization": f"Bearer {token}"},
                            verify=str(sb.state_dir / "tls" / "arm.pem"), timeout=5)


def test_the_world_files_window_is_served_and_read_by_the_adapter(ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    listed = [c.as_dict() for c in ops.list_by_managed_cluster(rg, name)]
    assert len(listed) == 1
    assert set(listed[0]) == {"id", "name", "type", "properties"}
    assert listed[0]["properties"] == {"maintenanceWindow": WORLD_WINDOW}
    assert listed[0]["name"] == AUTO_UPGRADE and listed[0]["type"] == TYPE
    assert listed[0]["id"].endswith(f"/managedClusters/{name}/maintenanceConfigurations/"
                                    f"{AUTO_UPGRADE}")
    windows = ports.mesh.maintenance_windows("dev")
    assert windows == {AUTO_UPGRADE: parse_arm_window(WORLD_WINDOW)}
    # Saturday 2026-12-05 22:00 at +01:00 is 21:00 UTC; the ones from Dec 19 (its 6 hours run
    # into the 20th) to Jan 2 are not allowed: Jan 9 is the next after Dec 12's
    assert next_window(windows[AUTO_UPGRADE], datetime(2026, 12, 3, tzinfo=UTC))[0] == \
        datetime(2026, 12, 5, 21, tzinfo=UTC)
    assert next_window(windows[AUTO_UPGRADE], datetime(2026, 12, 13, 3, tzinfo=UTC))[0] == \
        datetime(2027, 1, 9, 21, tzinfo=UTC)
    assert ports.mesh.maintenance_windows("quiet") == {}


def test_put_get_list_delete_the_spec_example_through_the_sdk(sandbox: Sandbox,
                                                              ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    window = create_example_window()
    created = ops.create_or_update(rg, name, NODE_OS_UPGRADE,
                                   {"properties": {"maintenanceWindow": window}})
    assert created.name == NODE_OS_UPGRADE
    assert created.maintenance_window.as_dict() == window  # every field given, as given
    got = ops.get(rg, name, NODE_OS_UPGRADE)
    assert got.as_dict() == created.as_dict()
    assert {c.name for c in ops.list_by_managed_cluster(rg, name)} == {AUTO_UPGRADE,
                                                                       NODE_OS_UPGRADE}
    windows = ports.mesh.maintenance_windows("dev")
    assert windows[NODE_OS_UPGRADE] == parse_arm_window(window)
    assert windows[NODE_OS_UPGRADE].schedule.kind == "relativeMonthly"
    # PUT creates with 201, replaces with 200; DELETE answers 200, then 204 (none left)
    assert raw(sandbox, ports, "PUT", NODE_OS_UPGRADE,
               {"properties": {"maintenanceWindow": window}}).status_code == 200
    ops.delete(rg, name, NODE_OS_UPGRADE)
    assert raw(sandbox, ports, "DELETE", NODE_OS_UPGRADE).status_code == 204
    with pytest.raises(ResourceNotFoundError):
        ops.get(rg, name, NODE_OS_UPGRADE)
    assert raw(sandbox, ports, "PUT", NODE_OS_UPGRADE,
               {"properties": {"maintenanceWindow": window}}).status_code == 201
    assert set(ports.mesh.maintenance_windows("dev")) == {AUTO_UPGRADE, NODE_OS_UPGRADE}


def test_aks_fills_in_utc_offset_and_start_date(ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    created = ops.create_or_update(rg, name, NODE_OS_UPGRADE, {"properties": {
        "maintenanceWindow": {"schedule": {"daily": {"intervalDays": 3}}, "durationHours": 4,
                              "startTime": "09:30"}}})
    stored = created.maintenance_window.as_dict()
    assert stored["utcOffset"] == "+00:00"
    assert stored["startDate"] == datetime.now(UTC).date().isoformat()


def test_the_legacy_default_form_is_kept_but_has_no_window(ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    legacy = example("MaintenanceConfigurationsList.json")["responses"]["200"]["body"][
        "value"][0]
    ops.create_or_update(rg, name, "default", {"properties": legacy["properties"]})
    assert ops.get(rg, name, "default").as_dict()["properties"] == legacy["properties"]
    assert set(ports.mesh.maintenance_windows("dev")) == {AUTO_UPGRADE}


@pytest.mark.parametrize(("config", "window", "says"), [
    ("autoUpgradeSchedule", None, "Only 'default', 'aksManagedAutoUpgradeSchedule' and "
                                  "'aksManagedNodeOSUpgradeSchedule' are allowed configNames"),
    (AUTO_UPGRADE, {"durationHours": 2},
     "properties.maintenanceWindow.durationHours: required, a whole number of hours from 4 "
     "to 24 (got 2)"),
    (AUTO_UPGRADE, {"durationHours": 25}, "from 4 to 24 (got 25)"),
    (AUTO_UPGRADE, {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"},
                                 "daily": {"intervalDays": 1}}},
     "one and only one of the schedule types"),
    (AUTO_UPGRADE, {"schedule": {"relativeMonthly": {"intervalMonths": 7, "weekIndex": "Fifth",
                                                     "dayOfWeek": "Monday"}}},
     "relativeMonthly.intervalMonths: required, a whole number from 1 to 6 (got 7)"),
    (AUTO_UPGRADE, {"startTime": "8:30"}, "startTime: required, HH:mm"),
    (AUTO_UPGRADE, {"utcOffset": "+5:30"}, "utcOffset: +HH:mm or -HH:mm"),
    (AUTO_UPGRADE, {"notAllowedDates": [{"start": "2027-02-01", "end": "2027-01-01"}]},
     "notAllowedDates[0]: end 2027-01-01 is before start 2027-02-01"),
    ("default", {"schedule": {"daily": {"intervalDays": 1}}},
     "the default configuration takes a weekly schedule only"),
])
def test_aks_refuses_what_it_refuses_with_400(ports: FleetPorts, config: str,
                                              window: dict[str, Any] | None, says: str) -> None:
    ops, rg, name = configs(ports)
    body = {"schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Monday"}},
            "durationHours": 4, "startTime": "01:00"} | (window or {})
    with pytest.raises(HttpResponseError) as raised:
        ops.create_or_update(rg, name, config, {"properties": {"maintenanceWindow": body}})
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "InvalidParameter"
    assert says in str(raised.value.error.message)
    assert set(ports.mesh.maintenance_windows("dev")) == {AUTO_UPGRADE}  # nothing stored


def test_missing_clusters_and_configurations_are_404(ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    with pytest.raises(ResourceNotFoundError) as raised:
        ops.get(rg, name, NODE_OS_UPGRADE)
    assert raised.value.error is not None and raised.value.error.code == "NotFound"
    fleet = ports.fleet.model_copy(deep=True)
    cfg = fleet.clusters["dev"].model_copy(update={"name": "aks-missing"})
    fleet = fleet.model_copy(update={"clusters": {**fleet.clusters, "dev": cfg}})
    with pytest.raises(ArmError, match="maintenanceConfigurations of aks-missing: not found"):
        FleetPorts(fleet).mesh.maintenance_windows("dev")


def test_throttling_and_arm_errors_are_temporary_with_retry_after(sandbox: Sandbox,
                                                                  ports: FleetPorts) -> None:
    sandbox.arm.maintenance_faults[:] = [429, 503]
    try:
        with pytest.raises(TemporaryError, match="maintenanceConfigurations of "
                                                 "aks-dev-westus2: ARM answered 429") as raised:
            ports.mesh.maintenance_windows("dev")
        assert raised.value.delay_s == 1  # ARM's Retry-After
        with pytest.raises(TemporaryError, match="503 InternalServerError"):
            ports.mesh.maintenance_windows("dev")
    finally:
        sandbox.arm.maintenance_faults.clear()
    assert set(ports.mesh.maintenance_windows("dev")) == {AUTO_UPGRADE}


def test_a_window_meshops_cannot_read_is_a_permanent_error_naming_it(sandbox: Sandbox,
                                                                      ports: FleetPorts) -> None:
    """A field a later API version might add (it could move the window) is not ignored."""
    with sandbox.world.lock:
        sandbox.world.clusters["aks-dev-westus2"].maintenance[NODE_OS_UPGRADE] = {
            "maintenanceWindow": {**WORLD_WINDOW, "skipHolidays": "US"}}
    with pytest.raises(ArmError) as raised:
        ports.mesh.maintenance_windows("dev")
    assert f"maintenance configuration '{NODE_OS_UPGRADE}' of aks-dev-westus2" in str(raised.value)
    assert "maintenanceWindow.skipHolidays: is not a field of a maintenance window" in \
        str(raised.value)


def test_a_reset_restores_the_world_files_windows(sandbox: Sandbox, ports: FleetPorts) -> None:
    ops, rg, name = configs(ports)
    ops.delete(rg, name, AUTO_UPGRADE)
    assert ports.mesh.maintenance_windows("dev") == {}
    requests.post(sandbox.url["control"] + "/_sandbox/reset", timeout=5).raise_for_status()
    assert set(ports.mesh.maintenance_windows("dev")) == {AUTO_UPGRADE}


# ------------------------------------------------------------------ world files


def test_world_file_maintenance_is_checked_at_load(tmp_path: Path) -> None:
    bad = {AUTO_UPGRADE: {**WORLD_WINDOW, "durationHours": 3,
                          "schedule": {"weekly": {"intervalWeeks": 1, "dayOfWeek": "Caturday"}}},
           "nightly": WORLD_WINDOW}
    with pytest.raises(WorldError) as raised:
        load(world_file(tmp_path, bad))
    text = str(raised.value)
    assert str(tmp_path / "world.yaml") in text
    assert (f"clusters[0].maintenance.{AUTO_UPGRADE}.schedule.weekly.dayOfWeek: required, one "
            "of Monday, Tuesday") in text and "(got 'Caturday')" in text
    assert f"clusters[0].maintenance.{AUTO_UPGRADE}.durationHours: required, a whole number " \
           "of hours from 4 to 24 (got 3)" in text
    assert "clusters[0].maintenance.nightly: not a maintenance configuration name AKS " \
           "accepts (default, aksManagedAutoUpgradeSchedule, aksManagedNodeOSUpgradeSchedule)" \
           in text


def test_world_file_maintenance_must_be_a_mapping_of_windows(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match=r"clusters\[0\]\.maintenance"):
        load(world_file(tmp_path, ["weekly"]))  # type: ignore[arg-type]
