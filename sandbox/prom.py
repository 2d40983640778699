"""Runs a real Prometheus (Debian's ``prometheus``) that scrapes the traffic simulator.

Its own config file, port and data directory under the sandbox's state directory; a
one-second scrape interval so metric gates can use windows of a few seconds, longer for a
big mesh (``sandbox.app.SCRAPE_INTERVALS``: 30 s at 2,000 namespaces, as Azure Monitor managed
Prometheus scrapes every 30 s; the fleet file says which, ``scrape_interval``).

The proxies are found as Azure Monitor's scrape job for Istio finds them (AKS doc
``istio-metrics-managed-prometheus.md``: job ``workload``, one target per pod, the proxy's
merged endpoint): here through Prometheus' HTTP service discovery (Prometheus docs
``http_sd_config``) from the traffic simulator (:mod:`sandbox.traffic`), refreshed every
scrape interval, each target with its own ``instance`` (``<pod IP>:15020``) and ``cluster`` label.
Static targets, if any, are scraped as they expose their series (``honor_labels``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
import yaml


class PrometheusNotFound(RuntimeError):
    pass


def find_prometheus(binary: str = "prometheus") -> str:
    path = shutil.which(binary) or (binary if Path(binary).exists() else None)
    if not path:
        raise PrometheusNotFound(
            f"`{binary}` not found. Install Debian's package (`apt-get install -y prometheus`) "
            "or pass --prometheus-bin."
        )
    return path


def scrape_config(targets: list[str], sd_url: str | None = None,
                  scrape_interval: str = "1s") -> dict[str, Any]:
    """Prometheus' configuration: the ``workload`` job over HTTP service discovery at
    ``sd_url`` (the proxies), and ``istio-traffic`` over static ``targets`` (host:port).
    ``scrape_timeout`` is the interval itself (Prometheus docs "Configuration":
    ``scrape_timeout`` may not exceed ``scrape_interval``), ``sample_limit`` and
    ``body_size_limit`` stay unset (0: no limit), so no scrape is dropped for its size."""
    jobs: list[dict[str, Any]] = []
    if sd_url:
        jobs.append({"job_name": "workload",
                     # new pods are found within a scrape interval, and a big mesh's
                     # target list is not rebuilt every second
                     "http_sd_configs": [{"url": sd_url,
                                          "refresh_interval": scrape_interval}]})
    if targets:
        jobs.append({"job_name": "istio-traffic", "honor_labels": True,
                     "static_configs": [{"targets": targets}]})
    # a scrape may take its whole interval (Prometheus' default timeout is 10 s, cut to
    # the interval when shorter), and nothing caps a target's samples or body: a
    # proxy's endpoint grows with the workloads that call it
    return {"global": {"scrape_interval": scrape_interval,
                       "scrape_timeout": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "scrape_configs": jobs}


def start_prometheus(state_dir: Path, port: int, targets: list[str], binary: str = "prometheus",
                     scrape_interval: str = "1s", sd_url: str | None = None,
                     keep_data: bool = False) -> subprocess.Popen[bytes]:
    """Start Prometheus scraping the proxies ``sd_url`` lists (HTTP service discovery) and
    ``targets`` (host:port); returns once it is ready. Raises PrometheusNotFound, or
    RuntimeError when it exits or is not ready within 30 s."""
    path = find_prometheus(binary)
    data = state_dir / "prometheus-data"
    # a new sandbox is a new world: the history of an earlier one would be read as this
    # one's baseline by the canary gate (``keep_data``: blocks backfilled with promtool)
    if not keep_data:
        shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True, exist_ok=True)
    config = state_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets, sd_url, scrape_interval)))
    log = open(state_dir / "prometheus.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [path, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=6h",
         "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {proc.returncode}; see "
                               f"{state_dir / 'prometheus.log'}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("Prometheus did not become ready within 30 s")
