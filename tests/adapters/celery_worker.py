"""A real ``meshops`` Celery worker in a subprocess, for the tests that take Redis away
from under it or reach it through TLS and Sentinel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def start_worker(redis_url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    """``celery -A workers.tasks.app worker -P solo`` on ``redis_url`` under ``prefix``,
    its output in ``log``; stop it with ``os.killpg(proc.pid, …)``."""
    env = {**os.environ, "REDIS_URL": redis_url, "MESHOPS_REDIS_PREFIX": prefix}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.tasks.app", "worker", "-P", "solo",
             "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_meshops_worker(redis_url: str, prefix: str, log: Path, health_port: int,
                         *options: str) -> subprocess.Popen[bytes]:
    """``meshops worker --concurrency 1`` (the CLI, its health server on ``health_port``)
    with ``options`` on ``redis_url`` under ``prefix`` with the example Azure fleet, its
    output in ``log``; stop it with ``os.killpg(proc.pid, …)``."""
    env = {**os.environ, "REDIS_URL": redis_url, "MESHOPS_REDIS_PREFIX": prefix,
           "MESHOPS_HEALTH_PORT": str(health_port), "MESHOPS_HEALTH_HOST": "127.0.0.1",
           "MESHOPS_FLEET": str(ROOT / "examples" / "fleet.azure.yaml"),
           "SLACK_BOT_TOKEN": "xoxb-test"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "meshops", "worker", "--concurrency",
                                 "1", *options], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
