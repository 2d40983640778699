"""The Prometheus adapter's HTTP session takes the environment's proxy, CA bundle and
netrc once, as requests would on each request, and does not read the environment again
(``workers.prom.metrics.settled_session``)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import send_json
from workers.prom.metrics import PrometheusMetricsApi, settled_session


class _Proxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that answers every request itself: a Prometheus with one value."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.path)  # an absolute URI: it was asked as a proxy
        self.rfile.read(int(self.headers["Content-Length"]))  # the query, form-encoded
        send_json(self, {"status": "success", "data": {
            "resultType": "vector", "result": [{"metric": {}, "value": [1, "42"]}]}})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Proxy.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc of the machine's
    return monkeypatch


def test_the_proxy_of_the_environment_is_taken_once(clean_env: pytest.MonkeyPatch,
                                                     proxy: str) -> None:
    clean_env.setenv("HTTP_PROXY", proxy)
    api = PrometheusMetricsApi("http://prometheus.invalid:9090")
    clean_env.delenv("HTTP_PROXY")  # read at the start: a request does not look again
    assert api.value("up") == 42.0
    assert _Proxy.seen and _Proxy.seen[0].startswith("http://prometheus.invalid:9090/api/v1/")


def test_no_proxy_and_the_ca_bundle_as_requests_reads_them(clean_env: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    clean_env.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    clean_env.setenv("NO_PROXY", "localhost,.monitor.azure.com")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    azure = "https://amw-1.westeurope.prometheus.monitor.azure.com"
    other = "https://prometheus.corp.example"
    assert "https" not in settled_session(azure).proxies
    assert settled_session(other).proxies["https"] == "http://proxy.corp.example:3128"
    for url in (azure, other):
        session = settled_session(url)
        assert session.verify == str(bundle) and not session.trust_env
        # what a request gets is what a session trusting the environment would give it
        trusting = requests.Session()
        assert session.merge_environment_settings(url, {}, None, None, None) == \
            trusting.merge_environment_settings(url, {}, None, None, None)


def test_netrc_credentials_are_kept(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine prometheus.corp.example login reader password s3cret\n")
    netrc.chmod(0o600)
    assert settled_session("https://prometheus.corp.example").auth == ("reader", "s3cret")
    assert settled_session("https://elsewhere.example").auth is None
