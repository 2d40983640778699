"""An in-process sandbox (no Prometheus) and meshops' adapters pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from sandbox.app import Sandbox
from tests.conftest import free_port_base
from workers.config import load_fleet
from workers.wiring import FleetPorts


@contextmanager
def running(sb: Sandbox) -> Iterator[Sandbox]:
    """``sb`` started, with its environment set for the adapters (DefaultAzureCredential
    reads IDENTITY_ENDPOINT/HEADER), stopped and the environment restored afterwards."""
    sb.start()
    old = {k: os.environ.get(k) for k in sb.env()}
    os.environ.update(sb.env())
    try:
        yield sb
    finally:
        sb.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    port_base = free_port_base(10000, 15000, 10)  # below the ephemeral port range
    with running(Sandbox(Path(tmp_path_factory.mktemp("sandbox")), port_base,
                         operation_s=0.5, rollout_s=0.3, with_prometheus=False)) as sb:
        yield sb


@pytest.fixture
def ports(sandbox: Sandbox) -> FleetPorts:
    requests.post(sandbox.url["control"] + "/_sandbox/reset", timeout=5).raise_for_status()
    return FleetPorts(load_fleet(sandbox.state_dir / "fleet.yaml"))
